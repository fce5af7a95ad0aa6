//! `GitHttpServer`: real `git` clients against `git http-backend` through the in-process server.

use std::ffi::OsStr;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};

use gitops_testkit::fixture::{GitFixture, GitRepo};
use gitops_testkit::servers::{GitHttpServer, ServerError, TestCa};

/// Runs the git CLI as a client: no prompts, no user or system configuration.
fn git<I, S>(cwd: &Path, args: I, env: &[(&str, &OsStr)]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("git");
    cmd.current_dir(cwd)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_ASKPASS", "/bin/false")
        .env_remove("SSH_ASKPASS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run git")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "git failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fixture with `app.git`: main (2 commits, tag v1.0.0 lightweight, v1.1.0 annotated), dev.
fn fixture() -> (GitFixture, GitRepo, String, String) {
    let fx = GitFixture::new().expect("fixture");
    let repo = fx.repo("app").expect("repo");
    repo.write("deploy/app.yaml", "kind: ConfigMap\n")
        .expect("write");
    let c1 = repo.commit("first").expect("commit");
    repo.tag("v1.0.0").expect("tag");
    repo.write("deploy/app.yaml", "kind: Secret\n")
        .expect("write");
    let c2 = repo.commit("second").expect("commit");
    repo.tag_annotated("v1.1.0", "release").expect("tag");
    repo.branch("dev").expect("branch");
    fx.publish(&repo, "app.git").expect("publish");
    (fx, repo, c1, c2)
}

#[test]
fn clone_and_ls_remote_over_plain_http() {
    let (fx, _repo, c1, c2) = fixture();
    let server = GitHttpServer::start(fx.serve_dir()).expect("server");
    let url = server.url_for("app.git");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let refs = ok(&git(fx.path(), ["ls-remote", &url], &[]));
    assert!(refs.contains(&format!("{c2}\trefs/heads/main")), "{refs}");
    assert!(refs.contains(&format!("{c2}\trefs/heads/dev")), "{refs}");
    assert!(refs.contains(&format!("{c1}\trefs/tags/v1.0.0")), "{refs}");
    assert!(
        refs.contains(&format!("{c2}\trefs/tags/v1.1.0^{{}}")),
        "{refs}"
    );

    let dest = fx.path().join("clone");
    ok(&git(
        fx.path(),
        [OsStr::new("clone"), OsStr::new(&url), dest.as_os_str()],
        &[],
    ));
    assert_eq!(
        std::fs::read_to_string(dest.join("deploy/app.yaml")).expect("cloned file"),
        "kind: Secret\n"
    );
    assert_eq!(ok(&git(&dest, ["rev-parse", "HEAD"], &[])).trim(), c2);

    // Protocol v2 over smart HTTP went through the CGI (the advertisement and a fetch).
    let requests = server.requests();
    assert!(
        requests.iter().any(|r| r.path == "/app.git/info/refs"
            && r.query.as_deref() == Some("service=git-upload-pack")),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.method == "POST" && r.path == "/app.git/git-upload-pack" && r.status == 200),
        "{requests:?}"
    );
}

#[test]
fn requests_record_which_git_command_was_asked_for() {
    let (fx, ..) = fixture();
    let server = GitHttpServer::start(fx.serve_dir()).expect("server");
    let url = server.url_for("app.git");
    let dest = fx.path().join("clone");
    ok(&git(
        fx.path(),
        [OsStr::new("clone"), OsStr::new(&url), dest.as_os_str()],
        &[],
    ));
    let count = |name: &str| {
        server
            .requests()
            .iter()
            .filter(|r| r.git_command.as_deref() == Some(name))
            .count()
    };
    assert_eq!(count("fetch"), 1, "{:?}", server.requests());
    let ls_refs = count("ls-refs");
    assert!(ls_refs >= 1, "{:?}", server.requests());

    // Up to date: the refs are listed again but no pack is fetched.
    ok(&git(&dest, ["fetch", "origin"], &[]));
    assert_eq!(count("ls-refs"), ls_refs + 1, "{:?}", server.requests());
    assert_eq!(count("fetch"), 1, "{:?}", server.requests());
}

#[test]
fn parallel_clients_are_served_at_once() {
    let (fx, _repo, _c1, c2) = fixture();
    let server = GitHttpServer::builder()
        .basic_auth("git", "pw")
        .start(fx.serve_dir())
        .expect("server");
    let url = server.url_with_credentials("app.git");
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let dest = fx.path().join(format!("parallel-{i}"));
                let url = url.clone();
                let cwd = fx.path().to_path_buf();
                scope.spawn(move || {
                    ok(&git(
                        &cwd,
                        [OsStr::new("clone"), OsStr::new(&url), dest.as_os_str()],
                        &[],
                    ));
                    ok(&git(&dest, ["rev-parse", "HEAD"], &[]))
                        .trim()
                        .to_string()
                })
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.join().expect("clone thread"), c2);
        }
    });
}

#[test]
fn a_missing_repository_is_not_found() {
    let (fx, ..) = fixture();
    let server = GitHttpServer::start(fx.serve_dir()).expect("server");
    let out = git(fx.path(), ["ls-remote", &server.url_for("nope.git")], &[]);
    assert!(!out.status.success());
    assert!(server.requests().iter().any(|r| r.status == 404));
}

#[test]
fn basic_auth_accepts_the_password_and_refuses_a_wrong_one() {
    let (fx, _repo, _c1, c2) = fixture();
    let server = GitHttpServer::builder()
        .basic_auth("git", "s3cret")
        .start(fx.serve_dir())
        .expect("server");

    let refs = ok(&git(
        fx.path(),
        ["ls-remote", &server.url_with_credentials("app.git")],
        &[],
    ));
    assert!(refs.contains(&format!("{c2}\trefs/heads/main")), "{refs}");
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.user.as_deref() == Some("git"))
    );

    let wrong = server
        .url_for("app.git")
        .replace("http://", "http://git:wrong@");
    let out = git(fx.path(), ["ls-remote", &wrong], &[]);
    assert!(!out.status.success(), "a wrong password must be refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Authentication failed") || stderr.contains("401"),
        "{stderr}"
    );

    let out = git(fx.path(), ["ls-remote", &server.url_for("app.git")], &[]);
    assert!(!out.status.success(), "no credentials must be refused");
}

#[test]
fn bearer_token_is_accepted_and_a_wrong_one_refused() {
    let (fx, _repo, _c1, c2) = fixture();
    let server = GitHttpServer::builder()
        .bearer_token("t0ken")
        .start(fx.serve_dir())
        .expect("server");
    let url = server.url_for("app.git");
    let refs = ok(&git(
        fx.path(),
        [
            "-c",
            "http.extraHeader=Authorization: Bearer t0ken",
            "ls-remote",
            &url,
        ],
        &[],
    ));
    assert!(refs.contains(&format!("{c2}\trefs/heads/main")), "{refs}");
    let out = git(
        fx.path(),
        [
            "-c",
            "http.extraHeader=Authorization: Bearer wrong",
            "ls-remote",
            &url,
        ],
        &[],
    );
    assert!(!out.status.success(), "a wrong token must be refused");
    assert!(server.requests().iter().any(|r| r.status == 401));
}

#[test]
fn tls_is_trusted_only_with_the_generated_ca() {
    let (fx, _repo, _c1, c2) = fixture();
    let server = GitHttpServer::builder()
        .tls()
        .start(fx.serve_dir())
        .expect("server");
    let url = server.url_for("app.git");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = server.ca_pem_path().expect("CA path");
    assert!(server.ca_pem().expect("CA").contains("BEGIN CERTIFICATE"));

    let refs = ok(&git(
        fx.path(),
        ["ls-remote", &url],
        &[("GIT_SSL_CAINFO", ca.as_os_str())],
    ));
    assert!(refs.contains(&format!("{c2}\trefs/heads/main")), "{refs}");

    // Another CA's certificate does not vouch for this server.
    let other = TestCa::generate().expect("other CA");
    let out = git(
        fx.path(),
        ["ls-remote", &url],
        &[("GIT_SSL_CAINFO", other.cert_path().as_os_str())],
    );
    assert!(
        !out.status.success(),
        "an untrusted server certificate must be refused"
    );
}

#[test]
fn client_certificates_are_required_when_asked() {
    let (fx, _repo, _c1, c2) = fixture();
    let ca = TestCa::generate().expect("CA");
    let server = GitHttpServer::builder()
        .tls_with_ca(&ca)
        .require_client_cert()
        .start(fx.serve_dir())
        .expect("server");
    assert_eq!(server.ca_pem_path(), Some(ca.cert_path()));
    let client = server
        .issue_client_cert("flux")
        .expect("TLS on")
        .expect("client cert");
    let url = server.url_for("app.git");
    let ca_env = [("GIT_SSL_CAINFO", ca.cert_path().as_os_str())];

    let refs = ok(&git(
        fx.path(),
        [
            OsStr::new("-c"),
            OsStr::new(&format!("http.sslCert={}", client.cert_path.display())),
            OsStr::new("-c"),
            OsStr::new(&format!("http.sslKey={}", client.key_path.display())),
            OsStr::new("ls-remote"),
            OsStr::new(&url),
        ],
        &ca_env,
    ));
    assert!(refs.contains(&format!("{c2}\trefs/heads/main")), "{refs}");

    let out = git(fx.path(), ["ls-remote", &url], &ca_env);
    assert!(
        !out.status.success(),
        "a client without a certificate must be refused"
    );
}

#[test]
fn push_updates_the_served_repository_unless_read_only() {
    let (fx, _repo, _c1, c2) = fixture();
    let server = GitHttpServer::start(fx.serve_dir()).expect("server");
    let dest = fx.path().join("work-clone");
    let url = server.url_for("app.git");
    ok(&git(
        fx.path(),
        [OsStr::new("clone"), OsStr::new(&url), dest.as_os_str()],
        &[],
    ));
    std::fs::write(dest.join("new.txt"), "new\n").expect("write");
    ok(&git(&dest, ["add", "new.txt"], &[]));
    ok(&git(
        &dest,
        [
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "commit",
            "-q",
            "-m",
            "push me",
        ],
        &[],
    ));
    let pushed = ok(&git(&dest, ["rev-parse", "HEAD"], &[]))
        .trim()
        .to_string();
    assert_ne!(pushed, c2);
    ok(&git(&dest, ["push", "origin", "HEAD:refs/heads/main"], &[]));
    let served = GitRepo::open(fx.serve_dir().join("app.git")).expect("open served");
    assert_eq!(served.rev_parse("refs/heads/main").expect("main"), pushed);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.git_command.as_deref() == Some("receive-pack") && r.status == 200),
        "{:?}",
        server.requests()
    );
    drop(server);

    let read_only = GitHttpServer::builder()
        .read_only()
        .start(fx.serve_dir())
        .expect("server");
    let out = git(
        &dest,
        [
            OsStr::new("push"),
            OsStr::new(&read_only.url_for("app.git")),
            OsStr::new("HEAD:refs/heads/other"),
        ],
        &[],
    );
    assert!(
        !out.status.success(),
        "a read-only server must refuse pushes"
    );
    assert!(served.rev_parse("refs/heads/other").is_err());
}

#[test]
fn after_drop_the_port_refuses_connections_and_clones_fail() {
    let (fx, ..) = fixture();
    let server = GitHttpServer::start(fx.serve_dir()).expect("server");
    let addr = server.addr();
    let url = server.url_for("app.git");
    TcpStream::connect(addr).expect("running server accepts");
    drop(server);
    assert!(
        TcpStream::connect(addr).is_err(),
        "{addr} still accepts after drop"
    );
    let out = git(fx.path(), ["ls-remote", &url], &[]);
    assert!(
        !out.status.success(),
        "ls-remote against a stopped server must fail"
    );
}

#[test]
fn a_missing_git_binary_names_the_package() {
    let (fx, ..) = fixture();
    let err = GitHttpServer::builder()
        .git_binary("/nonexistent/bin/git")
        .start(fx.serve_dir())
        .expect_err("no git there");
    match err {
        ServerError::MissingBinary {
            package, binary, ..
        } => {
            assert_eq!(package, "git");
            assert_eq!(binary, "/nonexistent/bin/git");
        }
        other => panic!("expected MissingBinary, got {other}"),
    }
}

#[test]
fn a_missing_repositories_directory_is_an_io_error_with_its_path() {
    let err = GitHttpServer::start("/nonexistent/repos").expect_err("no such dir");
    assert!(err.to_string().contains("/nonexistent/repos"), "{err}");
}

#[test]
fn a_large_negotiation_with_a_gzip_request_body_goes_through_the_cgi() {
    // Forty tags on forty commits: the fetch request lists forty wants (over 1 KiB), which
    // git sends gzip-compressed; http-backend must be told the body's Content-Encoding.
    let fx = GitFixture::new().expect("fixture");
    let repo = fx.repo("many").expect("repo");
    let mut last = String::new();
    for i in 0..40 {
        repo.write("n.txt", format!("{i}\n")).expect("write");
        last = repo.commit(&format!("commit {i}")).expect("commit");
        repo.tag(&format!("v0.{i}.0")).expect("tag");
    }
    repo.switch_orphan("other").expect("orphan");
    repo.write("o.txt", "o\n").expect("write");
    repo.commit("unrelated").expect("commit");
    fx.publish(&repo, "many.git").expect("publish");
    let server = GitHttpServer::start(fx.serve_dir()).expect("server");
    let dest = fx.path().join("many-clone");
    ok(&git(
        fx.path(),
        [
            OsStr::new("clone"),
            OsStr::new("--mirror"),
            OsStr::new(&server.url_for("many.git")),
            dest.as_os_str(),
        ],
        &[],
    ));
    let cloned = GitRepo::open(&dest).expect("open clone");
    assert_eq!(cloned.rev_parse("v0.39.0").expect("last tag"), last);
    assert!(cloned.rev_parse("refs/heads/other").is_ok());
}
