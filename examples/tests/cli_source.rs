//! `gitops source git` as a real process against a real `git http-backend` server.
//!
//! It prints one JSON object naming the artifact; a missing branch exits non-zero with the
//! typed error; and the usual proxy environment variables are honoured (a dead proxy from
//! `HTTP_PROXY` makes the fetch fail before anything reaches the server).

use std::net::TcpListener;
use std::process::{Command, Output};

use gitops_testkit::fixture::GitFixture;
use gitops_testkit::servers::GitHttpServer;
use serde_json::Value;

const GITOPS: &str = env!("CARGO_BIN_EXE_gitops");

struct Served {
    _fixture: GitFixture,
    server: GitHttpServer,
    head: String,
}

fn served_repo() -> Served {
    let fixture = GitFixture::new().expect("fixture");
    let repo = fixture.repo("app").expect("repo");
    repo.write(
        "deploy/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n",
    )
    .expect("write");
    let head = repo.commit("first").expect("commit");
    fixture.publish(&repo, "app.git").expect("publish");
    let server = GitHttpServer::start(fixture.serve_dir()).expect("git http server");
    Served {
        _fixture: fixture,
        server,
        head,
    }
}

/// Runs `gitops source git URL ARGS… --out OUT` with a clean proxy environment plus `env`.
fn source_git(url: &str, out: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(GITOPS);
    cmd.args(["source", "git", url])
        .args(args)
        .arg("--out")
        .arg(out);
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("gitops source git runs")
}

#[test]
fn prints_the_artifact_as_json() {
    let served = served_repo();
    let out = tempfile::tempdir().expect("tempdir");
    let run = source_git(
        &served.server.url_for("app.git"),
        out.path(),
        &["--branch", "main"],
        &[],
    );
    assert!(
        run.status.success(),
        "gitops source git failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json: Value = serde_json::from_slice(&run.stdout).expect("one JSON object on stdout");
    assert_eq!(json["revision"], format!("main@sha1:{}", served.head));
    let digest = json["digest"].as_str().expect("digest");
    assert!(
        digest.starts_with("sha256:") && digest.len() == "sha256:".len() + 64,
        "{digest}"
    );
    let path = std::path::Path::new(json["path"].as_str().expect("path"));
    assert!(path.is_file(), "the artifact exists: {}", path.display());
    assert_eq!(
        json["size"].as_u64(),
        Some(std::fs::metadata(path).expect("artifact").len())
    );
}

#[test]
fn a_missing_branch_exits_non_zero_with_the_typed_error() {
    let served = served_repo();
    let out = tempfile::tempdir().expect("tempdir");
    let run = source_git(
        &served.server.url_for("app.git"),
        out.path(),
        &["--branch", "no-such-branch"],
        &[],
    );
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("no-such-branch"),
        "the error names the ref: {stderr}"
    );
}

#[test]
fn the_proxy_from_the_environment_is_used() {
    let served = served_repo();
    // A port nothing listens on: bind, note it, close.
    let dead = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let proxy = format!("http://{dead}");
    let out = tempfile::tempdir().expect("tempdir");
    let run = source_git(
        &served.server.url_for("app.git"),
        out.path(),
        &["--branch", "main"],
        &[("HTTP_PROXY", proxy.as_str())],
    );
    assert!(
        !run.status.success(),
        "a dead proxy from HTTP_PROXY must make the fetch fail"
    );
    assert!(
        served.server.requests().is_empty(),
        "nothing may reach the server past the proxy"
    );
    // Without the variable the same fetch goes straight to the server.
    let run = source_git(
        &served.server.url_for("app.git"),
        out.path(),
        &["--branch", "main"],
        &[],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!served.server.requests().is_empty());
}

/// `--verify head --verify-keys F`: an unsigned commit is refused with the typed reason and
/// no artifact is written.
#[test]
fn verify_refuses_an_unsigned_commit() {
    let served = served_repo();
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keys.path().join("trusted");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs");
    assert!(made.success());
    let out = tempfile::tempdir().expect("tempdir");
    let pub_key = key.with_extension("pub");
    let run = source_git(
        &served.server.url_for("app.git"),
        out.path(),
        &[
            "--branch",
            "main",
            "--verify",
            "head",
            "--verify-keys",
            pub_key.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("InvalidCommitSignature"), "{stderr}");
    assert!(stderr.contains("is not signed"), "{stderr}");
    assert!(run.stdout.is_empty());
    let written = walkdir::WalkDir::new(out.path())
        .into_iter()
        .filter_map(Result::ok)
        .any(|e| e.path().extension().is_some_and(|x| x == "gz"));
    assert!(!written, "no artifact for an unverified commit");
}
