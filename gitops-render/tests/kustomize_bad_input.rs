//! Bad input gives typed errors naming the file (and line), never a panic.

use std::path::{Path, PathBuf};

use gitops_render::kustomize::{BuildOptions, KustomizeError, build};
use gitops_render::yaml::YamlError;

fn scratch(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gitops-kbad-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (p, text) in files {
        let f = dir.join(p);
        std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        std::fs::write(&f, text).expect("write");
    }
    dir
}

fn opts(root: &Path) -> BuildOptions {
    BuildOptions {
        confine_root: Some(root.to_path_buf()),
        ..BuildOptions::default()
    }
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let d = scratch(
        "malformed",
        &[
            ("kustomization.yaml", "resources:\n- cm.yaml\n"),
            (
                "cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [a\n",
            ),
        ],
    );
    match build(&d, &opts(&d)) {
        Err(KustomizeError::Yaml { path, source }) => {
            assert!(path.ends_with("cm.yaml"), "{}", path.display());
            assert!(
                matches!(source, YamlError::Syntax { line, .. } if line >= 4),
                "{source}"
            );
        }
        other => panic!("expected a YAML error, got {other:?}"),
    }
}

#[test]
fn unknown_kustomization_field_is_rejected() {
    let d = scratch(
        "unknown",
        &[("kustomization.yaml", "resourcez:\n- a.yaml\n")],
    );
    let err = build(&d, &opts(&d)).expect_err("unknown field");
    assert!(
        matches!(err, KustomizeError::Kustomization { ref message, .. } if message.contains("resourcez")),
        "{err}"
    );
}

#[test]
fn alias_bomb_is_bounded() {
    let mut bomb = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n",
    );
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "  a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let d = scratch(
        "bomb",
        &[
            ("kustomization.yaml", "resources:\n- cm.yaml\n"),
            ("cm.yaml", &bomb),
        ],
    );
    let err = build(&d, &opts(&d)).expect_err("alias bomb");
    assert!(
        matches!(
            err,
            KustomizeError::Yaml {
                source: YamlError::TooLarge { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn oversized_files_are_refused_not_read_whole() {
    let d = scratch("big", &[("kustomization.yaml", "resources:\n- big.yaml\n")]);
    let line = "# padding padding padding padding padding padding padding padding\n";
    std::fs::write(d.join("big.yaml"), line.repeat(40_000)).expect("write");
    let small = BuildOptions {
        max_file_bytes: 1024 * 1024,
        ..opts(&d)
    };
    let err = build(&d, &small).expect_err("too large");
    assert!(
        matches!(err, KustomizeError::Resource { ref message, .. } if message.contains("limit")),
        "{err}"
    );
}

#[test]
fn remote_resources_are_never_fetched() {
    let d = scratch(
        "remote",
        &[(
            "kustomization.yaml",
            "resources:\n- https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v5.5.0\n",
        )],
    );
    let err = build(&d, &opts(&d)).expect_err("remote");
    assert!(matches!(err, KustomizeError::Remote { .. }), "{err}");
}

#[test]
fn an_object_without_a_name_or_kind_is_refused_as_kustomize_does() {
    // `kubectl kustomize` 5.5 on these files: "missing metadata.name in object {{v1
    // ConfigMap} {{ demo} map[] map[app:web]}}" and "missing kind in object {{v1 } {{a }
    // map[] map[]}}"; a List needs no name.
    let d = scratch(
        "noname",
        &[
            ("kustomization.yaml", "resources:\n- cm.yaml\n"),
            (
                "cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  namespace: demo\n  annotations:\n    app: web\n  generateName: x-\n",
            ),
        ],
    );
    match build(&d, &opts(&d)) {
        Err(KustomizeError::Resource { path, message }) => {
            assert!(path.ends_with("cm.yaml"), "{}", path.display());
            assert_eq!(
                message,
                "missing metadata.name in object {{v1 ConfigMap} {{ demo} map[] map[app:web]}}"
            );
        }
        other => panic!("expected a resource error, got {other:?}"),
    }
    let d = scratch(
        "nokind",
        &[
            ("kustomization.yaml", "resources:\n- cm.yaml\n"),
            ("cm.yaml", "apiVersion: v1\nmetadata:\n  name: a\n"),
        ],
    );
    let err = build(&d, &opts(&d)).expect_err("no kind");
    assert!(
        err.to_string()
            .contains("missing kind in object {{v1 } {{a } map[] map[]}}"),
        "{err}"
    );
    let d = scratch(
        "list",
        &[
            ("kustomization.yaml", "resources:\n- list.yaml\n"),
            (
                "list.yaml",
                "apiVersion: v1\nkind: ConfigMapList\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: a\n",
            ),
        ],
    );
    let out = build(&d, &opts(&d)).expect("a List needs no name");
    assert_eq!(out.resources.len(), 1);
}
