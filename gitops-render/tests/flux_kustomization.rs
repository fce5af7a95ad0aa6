//! Flux's kustomize layer against its oracle. Each case under `testdata/flux/<name>/` holds
//! `input/` (an artifact root), `flux.yaml` (a Flux Kustomization) and either:
//! * `kustomization.flux.yaml` — the kustomization Flux's generator writes into `spec.path`
//!   (generated, or the existing one with the overrides merged), and `expected.yaml` — what
//!   `kubectl kustomize` (v5.5.0) builds from it, with `commonMetadata` set afterwards
//!   (`testdata/flux/regen.sh`); or
//! * `expected-error.txt` — a text the build's error must contain.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gitops_render::flux::{BuildError, FluxKustomization, Substitution};
use gitops_render::yaml::parse_stream;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/flux");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("testdata/flux exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("flux.yaml").is_file())
        .collect();
    cases.sort();
    cases
}

fn spec(case: &Path) -> (FluxKustomization, String) {
    let text = std::fs::read_to_string(case.join("flux.yaml")).expect("flux.yaml");
    let doc = parse_stream(&text).expect("flux.yaml parses").remove(0);
    let spec = doc.to_json()["spec"].clone();
    let path = spec["path"].as_str().unwrap_or(".").to_string();
    (serde_json::from_value(spec).expect("a Flux spec"), path)
}

/// Every file under `dir` with its bytes, to prove a build leaves the tree as it found it.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)
            .expect("readable")
            .filter_map(|e| e.ok())
        {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).expect("inside").to_path_buf(),
                    std::fs::read(&p).expect("file"),
                );
            }
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    for (rel, bytes) in snapshot(from) {
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::write(dest, bytes).expect("write");
    }
    // Directories without files (none in git) are made by the cases that need them.
}

#[test]
fn flux_builds_match_kubectl_kustomize_on_the_kustomization_flux_writes() {
    let cases = cases();
    assert!(cases.len() >= 6, "fixtures missing: {cases:?}");
    let mut checked = 0;
    for case in cases {
        let name = case
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let (flux, path) = spec(&case);
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        copy_tree(&case.join("input"), &root);
        let before = snapshot(&root);
        let result = flux.build(&root, Path::new(&path));
        assert_eq!(
            snapshot(&root),
            before,
            "{name}: the build must restore the tree"
        );
        if let Ok(want) = std::fs::read_to_string(case.join("expected-error.txt")) {
            let err = result.err().unwrap_or_else(|| panic!("{name} must fail"));
            assert!(
                err.to_string().contains(want.trim()),
                "{name}: error {err:?} does not contain {want:?}"
            );
            continue;
        }
        // The kustomization we would write is the one Flux writes (as data).
        let written = std::fs::read_to_string(case.join("kustomization.flux.yaml")).expect("file");
        let want_k = parse_stream(&written).expect("yaml").remove(0).to_json();
        let dir = root.join(&path);
        let ours = flux.kustomization(&root, &dir).expect("kustomization");
        assert_eq!(
            ours.value.to_json(),
            want_k,
            "{name}: kustomization differs"
        );
        // And the objects are kubectl kustomize's, byte for byte.
        let built = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = std::fs::read_to_string(case.join("expected.yaml")).expect("expected.yaml");
        assert_eq!(built.to_yaml(), want, "{name}: output differs");
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} successful cases checked");
}

#[test]
fn the_path_may_not_leave_the_root() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = FluxKustomization::default()
        .build(tmp.path(), Path::new("../elsewhere"))
        .expect_err("escape");
    assert!(matches!(err, BuildError::PathNotFound { .. }), "{err:?}");
    let err = FluxKustomization::default()
        .build(tmp.path(), Path::new("./missing"))
        .expect_err("missing");
    assert!(matches!(err, BuildError::PathNotFound { .. }), "{err:?}");
}

#[test]
fn a_symlink_out_of_the_root_is_refused_while_generating() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let outside = tmp.path().join("secret.yaml");
    std::fs::write(
        &outside,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: leak\n",
    )
    .expect("write");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("deploy")).expect("mkdir");
    std::os::unix::fs::symlink(&outside, root.join("deploy/link.yaml")).expect("symlink");
    let err = FluxKustomization::default()
        .build(&root, Path::new("deploy"))
        .expect_err("escape through a link");
    assert!(matches!(err, BuildError::Security { .. }), "{err:?}");
    assert!(!root.join("deploy/kustomization.yaml").exists());
}

#[test]
fn substitution_runs_before_common_metadata() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(tmp.path().join("app")).expect("mkdir");
    std::fs::write(
        tmp.path().join("app/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-${env}\ndata:\n  replicas: ${n:=2}\n",
    )
    .expect("write");
    let flux: FluxKustomization = serde_json::from_value(serde_json::json!({
        "commonMetadata": {"labels": {"literal": "${env}"}}
    }))
    .expect("spec");
    let vars = Substitution {
        vars: [("env".to_string(), "prod".to_string())].into(),
        strict: true,
    };
    let built = flux
        .build_with(tmp.path(), Path::new("app"), Some(&vars))
        .expect("builds");
    assert_eq!(
        built.to_yaml(),
        "apiVersion: v1\ndata:\n  replicas: 2\nkind: ConfigMap\nmetadata:\n  labels:\n    literal: ${env}\n  name: cm-prod\n"
    );
    let strict = Substitution {
        vars: BTreeMap::new(),
        strict: true,
    };
    let err = flux
        .build_with(tmp.path(), Path::new("app"), Some(&strict))
        .expect_err("unset in strict mode");
    assert!(matches!(err, BuildError::Substitute(_)), "{err:?}");
}
