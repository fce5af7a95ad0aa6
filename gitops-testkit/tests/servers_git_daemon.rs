//! `GitDaemon`: real `git` clients against `git daemon` over `git://`.

use std::ffi::OsStr;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};

use gitops_testkit::fixture::{GitFixture, GitRepo};
use gitops_testkit::servers::{GitDaemon, ServerError};

fn git<I, S>(cwd: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new("git")
        .current_dir(cwd)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("run git")
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

fn fixture() -> (GitFixture, String) {
    let fx = GitFixture::new().expect("fixture");
    let repo = fx.repo("app").expect("repo");
    repo.write("kustomization.yaml", "resources: []\n")
        .expect("write");
    let c1 = repo.commit("first").expect("commit");
    repo.tag_annotated("v0.1.0", "first release").expect("tag");
    fx.publish(&repo, "app.git").expect("publish");
    (fx, c1)
}

#[test]
fn clone_and_ls_remote_over_git_protocol() {
    let (fx, c1) = fixture();
    let daemon = GitDaemon::start(fx.serve_dir()).expect("daemon");
    let url = daemon.url_for("app.git");
    assert_eq!(url, format!("git://127.0.0.1:{}/app.git", daemon.port()));

    let refs = ok(&git(fx.path(), ["ls-remote", &url]));
    assert!(refs.contains(&format!("{c1}\trefs/heads/main")), "{refs}");
    assert!(refs.contains("refs/tags/v0.1.0"), "{refs}");

    let dest = fx.path().join("clone");
    ok(&git(
        fx.path(),
        [OsStr::new("clone"), OsStr::new(&url), dest.as_os_str()],
    ));
    assert_eq!(
        std::fs::read_to_string(dest.join("kustomization.yaml")).expect("cloned file"),
        "resources: []\n"
    );
    assert_eq!(ok(&git(&dest, ["rev-parse", "HEAD"])).trim(), c1);
}

#[test]
fn pushes_are_refused_by_default_and_accepted_when_allowed() {
    let (fx, c1) = fixture();
    let dest = fx.path().join("clone");
    let served = GitRepo::open(fx.serve_dir().join("app.git")).expect("served");
    {
        let daemon = GitDaemon::start(fx.serve_dir()).expect("daemon");
        ok(&git(
            fx.path(),
            [
                OsStr::new("clone"),
                OsStr::new(&daemon.url_for("app.git")),
                dest.as_os_str(),
            ],
        ));
        let out = git(&dest, ["push", "origin", "HEAD:refs/heads/pushed"]);
        assert!(!out.status.success(), "read-only daemon accepted a push");
        assert!(served.rev_parse("refs/heads/pushed").is_err());
    }
    let daemon = GitDaemon::builder()
        .allow_push()
        .start(fx.serve_dir())
        .expect("daemon");
    ok(&git(
        &dest,
        [
            OsStr::new("push"),
            OsStr::new(&daemon.url_for("app.git")),
            OsStr::new("HEAD:refs/heads/pushed"),
        ],
    ));
    assert_eq!(served.rev_parse("refs/heads/pushed").expect("pushed"), c1);
}

#[test]
fn after_drop_the_port_refuses_connections() {
    let (fx, _) = fixture();
    let daemon = GitDaemon::start(fx.serve_dir()).expect("daemon");
    let addr = daemon.addr();
    let url = daemon.url_for("app.git");
    ok(&git(fx.path(), ["ls-remote", &url]));
    drop(daemon);
    assert!(
        TcpStream::connect(addr).is_err(),
        "{addr} still accepts after drop"
    );
    assert!(!git(fx.path(), ["ls-remote", &url]).status.success());
}

#[test]
fn a_missing_git_binary_names_the_package() {
    let (fx, _) = fixture();
    let err = GitDaemon::builder()
        .git_binary("/nonexistent/git")
        .start(fx.serve_dir())
        .expect_err("no git there");
    assert!(
        matches!(&err, ServerError::MissingBinary { package, .. } if package == "git"),
        "{err}"
    );
    assert!(err.to_string().contains("apt-get install git"), "{err}");
}
