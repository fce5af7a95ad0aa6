//! `gitops push artifact` and `gitops source oci` as real processes against Debian's
//! `docker-registry` with htpasswd auth: what one pushes the other pulls, with the revision
//! `<tag>@sha256:<manifest digest>`, and a wrong password fails both with a typed error.

use std::process::{Command, Output};

use gitops_testkit::servers::OciRegistry;
use serde_json::Value;

const GITOPS: &str = env!("CARGO_BIN_EXE_gitops");

fn gitops(args: &[&str], password: &str) -> Output {
    Command::new(GITOPS)
        .args(args)
        .env("GITOPS_OCI_PASSWORD", password)
        .output()
        .expect("gitops runs")
}

#[test]
fn push_then_pull_with_basic_auth_and_a_wrong_password_fails() {
    let registry = OciRegistry::builder()
        .basic_auth("flux", "s3cret")
        .start()
        .expect("docker-registry");
    let url = registry.oci_url("demo");
    let content = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        content.path().join("app.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n",
    )
    .expect("write");
    let dir = content.path().to_str().expect("utf-8 path");

    let push = |password: &str| {
        gitops(
            &[
                "push",
                "artifact",
                &url,
                "--path",
                dir,
                "--source",
                "https://example.org/demo.git",
                "--revision",
                "main@sha1:0c9c2e41d2f94f9b9c419b6f0c6b5a8e01234567",
                "--tag",
                "v1.0.0",
                "--insecure",
                "--username",
                "flux",
            ],
            password,
        )
    };
    let wrong = push("not-the-password");
    assert!(
        !wrong.status.success(),
        "a wrong password must fail the push"
    );
    assert!(
        !String::from_utf8_lossy(&wrong.stderr).contains("not-the-password"),
        "the password is never printed"
    );
    let pushed = push("s3cret");
    assert!(
        pushed.status.success(),
        "push failed: {}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let pushed: Value = serde_json::from_slice(&pushed.stdout).expect("push prints JSON");
    let digest = pushed["digest"].as_str().expect("digest").to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");

    let store = tempfile::tempdir().expect("tempdir");
    let out = store.path().to_str().expect("utf-8 path");
    let pull = |password: &str| {
        gitops(
            &[
                "source",
                "oci",
                &url,
                "--tag",
                "v1.0.0",
                "--insecure",
                "--username",
                "flux",
                "--out",
                out,
            ],
            password,
        )
    };
    assert!(!pull("not-the-password").status.success());
    let pulled = pull("s3cret");
    assert!(
        pulled.status.success(),
        "pull failed: {}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let pulled: Value = serde_json::from_slice(&pulled.stdout).expect("pull prints JSON");
    assert_eq!(pulled["revision"], format!("v1.0.0@{digest}"));
    let archive = std::path::Path::new(pulled["path"].as_str().expect("path"));
    assert!(archive.is_file());
}
