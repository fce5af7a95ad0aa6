//! Flux's ignore rules for a local directory (`flux build kustomization` with `.sourceignore`
//! files and `--ignore-paths`) against kubectl kustomize. Each case under
//! `testdata/flux-sourceignore/<name>/` holds `input/`, `flux.yaml` (a Flux Kustomization),
//! optionally `ignore-paths.txt` (the ignore list), `kustomization.flux.yaml` (what Flux's
//! generator with ignore rules writes into `spec.path`) and `expected.yaml` (what kubectl
//! kustomize v5.5.0 builds from it; `regen.sh`). The same trees built without the rules (as
//! kustomize-controller builds an artifact its source already filtered) fail or differ.

use std::path::{Path, PathBuf};

use gitops_render::flux::{BuildError, FluxKustomization};
use gitops_render::yaml::parse_stream;

fn case_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/flux-sourceignore")
        .join(name)
}

fn spec(case: &Path) -> (FluxKustomization, String) {
    let text = std::fs::read_to_string(case.join("flux.yaml")).expect("flux.yaml");
    let doc = parse_stream(&text).expect("flux.yaml parses").remove(0);
    let spec = doc.to_json()["spec"].clone();
    let path = spec["path"].as_str().unwrap_or(".").to_string();
    (serde_json::from_value(spec).expect("a Flux spec"), path)
}

/// A copy of the case's input (the fixtures stay untouched), with its ignore list.
fn prepare(case: &Path) -> (tempfile::TempDir, Option<String>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = case.join("input");
    let mut stack = vec![input.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)
            .expect("readable")
            .map(|e| e.expect("entry"))
        {
            let path = entry.path();
            let dest = tmp.path().join(path.strip_prefix(&input).expect("inside"));
            if path.is_dir() {
                std::fs::create_dir_all(&dest).expect("mkdir");
                stack.push(path);
            } else {
                std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
                std::fs::copy(&path, &dest).expect("copy");
            }
        }
    }
    let ignore = std::fs::read_to_string(case.join("ignore-paths.txt")).ok();
    (tmp, ignore)
}

fn check_case(name: &str) {
    let case = case_dir(name);
    let (flux, path) = spec(&case);
    let (root, ignore) = prepare(&case);
    let dir = root.path().join(&path);
    let ours = flux
        .kustomization_ignoring(root.path(), &dir, ignore.as_deref())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let written = std::fs::read_to_string(case.join("kustomization.flux.yaml")).expect("file");
    let want = parse_stream(&written).expect("yaml").remove(0).to_json();
    assert_eq!(ours.value.to_json(), want, "{name}: kustomization differs");
    assert!(
        ours.changed,
        "{name}: the filtered kustomization must be written"
    );
    let built = flux
        .build_ignoring(root.path(), Path::new(&path), ignore.as_deref(), None)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let expected = std::fs::read_to_string(case.join("expected.yaml")).expect("expected.yaml");
    assert_eq!(built.to_yaml(), expected, "{name}: output differs");
}

#[test]
fn generated_kustomization_skips_sourceignored_files_at_every_level() {
    check_case("generated");
    // Without the rules, the generator reads the values file and the SOPS config, which are not
    // Kubernetes YAML, as Flux's does.
    let case = case_dir("generated");
    let (flux, path) = spec(&case);
    let (root, _) = prepare(&case);
    let err = flux
        .build(root.path(), Path::new(&path))
        .expect_err("not Kubernetes YAML");
    assert!(matches!(err, BuildError::Decode { .. }), "{err:?}");
    // Without the ignore list, the .sourceignore files still skip the drafts and the secret,
    // but values.yaml is read and refused.
    let err = flux
        .build_ignoring(root.path(), Path::new(&path), None, None)
        .expect_err("values.yaml is not Kubernetes YAML");
    assert!(err.to_string().contains("values.yaml"), "{err}");
    // The tree is left as it was.
    assert!(!root.path().join(&path).join("kustomization.yaml").exists());
}

#[test]
fn existing_kustomization_drops_excluded_resources_and_components() {
    check_case("existing");
    // Without the rules the encrypted Secret is built and the dev component applies.
    let case = case_dir("existing");
    let (flux, path) = spec(&case);
    let (root, _) = prepare(&case);
    let before = std::fs::read(root.path().join(&path).join("kustomization.yaml")).expect("read");
    let unfiltered = flux
        .build(root.path(), Path::new(&path))
        .expect("builds")
        .to_yaml();
    assert!(unfiltered.contains("name: db"), "{unfiltered}");
    assert!(unfiltered.contains("env: dev"), "{unfiltered}");
    // The original kustomization is restored after the filtered build.
    flux.build_ignoring(root.path(), Path::new(&path), None, None)
        .expect("builds");
    let after = std::fs::read(root.path().join(&path).join("kustomization.yaml")).expect("read");
    assert_eq!(before, after);
}

#[test]
fn remote_and_outside_resources_are_kept_and_the_list_can_re_include() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("deploy");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::create_dir_all(tmp.path().join("base")).expect("mkdir");
    std::fs::write(dir.join(".sourceignore"), "/*\n").expect("write");
    std::fs::write(
        dir.join("kustomization.yaml"),
        "resources:\n- https://example.com/remote.yaml\n- ../base\n- cm.yaml\n- keep.yaml\n- missing.yaml\n",
    )
    .expect("write");
    for file in ["cm.yaml", "keep.yaml"] {
        std::fs::write(dir.join(file), "apiVersion: v1\nkind: ConfigMap\n").expect("write");
    }
    let flux = FluxKustomization::default();
    let k = flux
        .kustomization_ignoring(tmp.path(), &dir, Some("!keep.yaml"))
        .expect("kustomization");
    assert_eq!(
        k.value.to_json()["resources"],
        serde_json::json!([
            "https://example.com/remote.yaml",
            "../base",
            "keep.yaml",
            "missing.yaml"
        ])
    );
    // An invalid pattern names where it came from.
    let err = flux
        .kustomization_ignoring(tmp.path(), &dir, Some("{a,b"))
        .expect_err("invalid pattern");
    assert!(
        matches!(&err, BuildError::IgnorePattern { origin, .. } if origin == "the ignore list"),
        "{err:?}"
    );
}
