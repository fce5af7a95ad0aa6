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
