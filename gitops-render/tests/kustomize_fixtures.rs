//! Per-feature fixtures under `testdata/kustomize/<name>/`: `input/` (built at `input/overlay`
//! when that exists, else `input/`), and either `expected.yaml` (made with `kubectl kustomize`,
//! compared byte for byte) or `expected-error.txt` (the build must fail with a typed error).

use std::path::Path;

use gitops_render::kustomize::{BuildOptions, KustomizeError, build};

#[test]
fn fixtures_match_kubectl_kustomize() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/kustomize");
    let mut names: Vec<_> = std::fs::read_dir(&root)
        .expect("testdata/kustomize exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    names.sort();
    assert!(names.len() >= 5, "fixtures missing");
    for case in names {
        let input = case.join("input");
        let dir = [input.join("overlay"), input.join("app"), input.join("a")]
            .into_iter()
            .find(|d| d.is_dir())
            .unwrap_or(input.clone());
        let opts = BuildOptions {
            confine_root: Some(input.clone()),
            ..BuildOptions::default()
        };
        let result = build(&dir, &opts);
        if case.join("expected-error.txt").is_file() {
            let err = result.expect_err(&format!("{} must fail", case.display()));
            assert!(
                matches!(
                    err,
                    KustomizeError::Security { .. } | KustomizeError::Cycle { .. }
                ),
                "{}: unexpected error {err}",
                case.display()
            );
        } else {
            let built = result.unwrap_or_else(|e| panic!("{}: {e}", case.display()));
            let want = std::fs::read_to_string(case.join("expected.yaml")).expect("expected.yaml");
            assert_eq!(built.to_yaml(), want, "{}", case.display());
        }
    }
}
