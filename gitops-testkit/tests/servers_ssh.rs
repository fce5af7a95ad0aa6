//! `SshGitServer`: real `git` over `ssh` against `sshd`, with strict host key checking.

use std::ffi::{OsStr, OsString};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};

use gitops_testkit::fixture::GitFixture;
use gitops_testkit::servers::{ServerError, SshGitServer, SshKeyType};

fn git<I, S>(cwd: &Path, args: I, env: &[(String, OsString)]) -> Output
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
        .env_remove("SSH_AUTH_SOCK")
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

fn fixture() -> (GitFixture, String) {
    let fx = GitFixture::new().expect("fixture");
    let repo = fx.repo("app").expect("repo");
    repo.write("deploy/app.yaml", "kind: ConfigMap\n")
        .expect("write");
    let c1 = repo.commit("first").expect("commit");
    repo.tag("v1.0.0").expect("tag");
    fx.publish(&repo, "app.git").expect("publish");
    (fx, c1)
}

/// `GIT_SSH_COMMAND` with the server's client key but another `known_hosts` file.
fn env_with_known_hosts(server: &SshGitServer, known_hosts: &Path) -> Vec<(String, OsString)> {
    let cmd = server.git_ssh_command().replace(
        &format!("UserKnownHostsFile={}", server.known_hosts_path().display()),
        &format!("UserKnownHostsFile={}", known_hosts.display()),
    );
    assert!(cmd.contains(&known_hosts.display().to_string()));
    vec![("GIT_SSH_COMMAND".to_string(), cmd.into())]
}

#[test]
fn clone_and_ls_remote_over_ssh_with_a_checked_host_key() {
    let (fx, c1) = fixture();
    let server = SshGitServer::start(fx.serve_dir()).expect("sshd");
    let url = server.url_for("app.git");
    assert_eq!(
        url,
        format!(
            "ssh://{}@127.0.0.1:{}/app.git",
            server.user(),
            server.port()
        )
    );
    assert!(
        server
            .known_hosts_line()
            .starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", server.port())),
        "{}",
        server.known_hosts_line()
    );

    let refs = ok(&git(fx.path(), ["ls-remote", &url], &server.git_env()));
    assert!(refs.contains(&format!("{c1}\trefs/heads/main")), "{refs}");
    assert!(refs.contains(&format!("{c1}\trefs/tags/v1.0.0")), "{refs}");

    let dest = fx.path().join("clone");
    ok(&git(
        fx.path(),
        [OsStr::new("clone"), OsStr::new(&url), dest.as_os_str()],
        &server.git_env(),
    ));
    assert_eq!(
        std::fs::read_to_string(dest.join("deploy/app.yaml")).expect("cloned"),
        "kind: ConfigMap\n"
    );
}

#[test]
fn absolute_paths_work_and_other_commands_and_paths_are_refused() {
    let (fx, c1) = fixture();
    let server = SshGitServer::start(fx.serve_dir()).expect("sshd");
    let absolute = server.absolute_url_for("app.git");
    assert!(
        absolute.contains(&fx.serve_dir().display().to_string()),
        "{absolute}"
    );
    let refs = ok(&git(fx.path(), ["ls-remote", &absolute], &server.git_env()));
    assert!(refs.contains(&format!("{c1}\trefs/heads/main")), "{refs}");

    // A repository outside the served directory is out of reach.
    let outside = fx.path().join("outside.git");
    gitops_testkit::fixture::GitRepo::init_bare(&outside).expect("bare repo outside");
    let url = format!(
        "ssh://{}@127.0.0.1:{}/../outside.git",
        server.user(),
        server.port()
    );
    let out = git(fx.path(), ["ls-remote", &url], &server.git_env());
    assert!(
        !out.status.success(),
        "a path escaping the served directory was served"
    );

    // A shell command is not a git transport command.
    let mut ssh: Vec<String> = server
        .git_ssh_command()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let program = ssh.remove(0);
    let out = Command::new(program)
        .args(&ssh)
        .args(["-p", &server.port().to_string()])
        .arg(format!("{}@127.0.0.1", server.user()))
        .arg("id")
        .output()
        .expect("ssh");
    assert!(
        !out.status.success(),
        "a shell command ran over the git SSH server"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("only git-upload-pack"), "{stderr}");
}

#[test]
fn an_unknown_host_key_is_refused() {
    let (fx, _) = fixture();
    let server = SshGitServer::start(fx.serve_dir()).expect("sshd");
    let empty = fx.path().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write");
    let out = git(
        fx.path(),
        ["ls-remote", &server.url_for("app.git")],
        &env_with_known_hosts(&server, &empty),
    );
    assert!(!out.status.success(), "an unknown host key must be refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Host key verification failed"), "{stderr}");
}

#[test]
fn a_mismatched_host_key_is_refused() {
    let (fx, _) = fixture();
    let server = SshGitServer::start(fx.serve_dir()).expect("sshd");
    let other = SshGitServer::start(fx.serve_dir()).expect("another sshd");
    // The other server's key, recorded for this server's address.
    let (_, other_key) = other
        .known_hosts_line()
        .split_once(' ')
        .expect("known_hosts line");
    let wrong = fx.path().join("wrong_known_hosts");
    std::fs::write(
        &wrong,
        format!("[127.0.0.1]:{} {other_key}\n", server.port()),
    )
    .expect("write");
    let out = git(
        fx.path(),
        ["ls-remote", &server.url_for("app.git")],
        &env_with_known_hosts(&server, &wrong),
    );
    assert!(
        !out.status.success(),
        "a mismatched host key must be refused"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{stderr}"
    );
}

#[test]
fn a_key_that_is_not_authorized_is_refused() {
    let (fx, _) = fixture();
    let server = SshGitServer::start(fx.serve_dir()).expect("sshd");
    let other = SshGitServer::start(fx.serve_dir()).expect("another sshd");
    // This server's host key, but the other server's client key.
    let cmd = server.git_ssh_command().replace(
        &server.client_key_path().display().to_string(),
        &other.client_key_path().display().to_string(),
    );
    let out = git(
        fx.path(),
        ["ls-remote", &server.url_for("app.git")],
        &[("GIT_SSH_COMMAND".to_string(), cmd.into())],
    );
    assert!(!out.status.success(), "an unauthorized key must be refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Permission denied"), "{stderr}");
}

#[test]
fn a_passphrase_protected_client_key_works_with_its_passphrase() {
    let (fx, c1) = fixture();
    let server = SshGitServer::builder()
        .client_key_passphrase("correct horse")
        .start(fx.serve_dir())
        .expect("sshd");
    assert_eq!(server.client_key_passphrase(), Some("correct horse"));
    assert!(
        server
            .client_key_pem()
            .expect("key")
            .contains("OPENSSH PRIVATE KEY")
    );

    // The key really is encrypted: an empty passphrase does not open it.
    let out = Command::new("ssh-keygen")
        .args(["-y", "-P", ""])
        .arg("-f")
        .arg(server.client_key_path())
        .output()
        .expect("ssh-keygen");
    assert!(
        !out.status.success(),
        "the key opened without its passphrase"
    );
    let out = Command::new("ssh-keygen")
        .args(["-y", "-P", "correct horse"])
        .arg("-f")
        .arg(server.client_key_path())
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success());
    assert!(
        server
            .client_public_key()
            .starts_with(String::from_utf8_lossy(&out.stdout).trim())
    );

    let refs = ok(&git(
        fx.path(),
        ["ls-remote", &server.url_for("app.git")],
        &server.git_env(),
    ));
    assert!(refs.contains(&format!("{c1}\trefs/heads/main")), "{refs}");
}

#[test]
fn ecdsa_host_keys_and_rsa_client_keys_work_too() {
    let (fx, c1) = fixture();
    let server = SshGitServer::builder()
        .host_key_type(SshKeyType::EcdsaP256)
        .client_key_type(SshKeyType::Rsa)
        .start(fx.serve_dir())
        .expect("sshd");
    assert!(
        server.known_hosts_line().contains(" ecdsa-sha2-nistp256 "),
        "{}",
        server.known_hosts_line()
    );
    assert!(server.client_public_key().starts_with("ssh-rsa "));
    let refs = ok(&git(
        fx.path(),
        ["ls-remote", &server.url_for("app.git")],
        &server.git_env(),
    ));
    assert!(refs.contains(&format!("{c1}\trefs/heads/main")), "{refs}");
}

#[test]
fn after_drop_the_port_refuses_connections() {
    let (fx, _) = fixture();
    let server = SshGitServer::start(fx.serve_dir()).expect("sshd");
    let addr = server.addr();
    let env = server.git_env();
    let url = server.url_for("app.git");
    ok(&git(fx.path(), ["ls-remote", &url], &env));
    drop(server);
    assert!(
        TcpStream::connect(addr).is_err(),
        "{addr} still accepts after drop"
    );
}

#[test]
fn a_missing_sshd_names_the_package() {
    let (fx, _) = fixture();
    let err = SshGitServer::builder()
        .sshd_binary("/nonexistent/sbin/sshd")
        .start(fx.serve_dir())
        .expect_err("no sshd there");
    assert!(
        matches!(&err, ServerError::MissingBinary { package, .. } if package == "openssh-server"),
        "{err}"
    );
    let err = SshGitServer::builder()
        .ssh_keygen_binary("/nonexistent/bin/ssh-keygen")
        .start(fx.serve_dir())
        .expect_err("no ssh-keygen there");
    assert!(
        matches!(&err, ServerError::MissingBinary { package, .. } if package == "openssh-client"),
        "{err}"
    );
}

#[test]
fn push_over_ssh_updates_the_served_repository() {
    let (fx, c1) = fixture();
    let server = SshGitServer::start(fx.serve_dir()).expect("sshd");
    let env = server.git_env();
    let dest = fx.path().join("clone");
    ok(&git(
        fx.path(),
        [
            OsStr::new("clone"),
            OsStr::new(&server.url_for("app.git")),
            dest.as_os_str(),
        ],
        &env,
    ));
    std::fs::write(dest.join("pushed.txt"), "pushed\n").expect("write");
    ok(&git(&dest, ["add", "pushed.txt"], &env));
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
            "over ssh",
        ],
        &env,
    ));
    let pushed = ok(&git(&dest, ["rev-parse", "HEAD"], &env))
        .trim()
        .to_string();
    assert_ne!(pushed, c1);
    ok(&git(
        &dest,
        ["push", "origin", "HEAD:refs/heads/main"],
        &env,
    ));
    let served = gitops_testkit::fixture::GitRepo::open(fx.serve_dir().join("app.git"))
        .expect("served repo");
    assert_eq!(served.rev_parse("refs/heads/main").expect("main"), pushed);
}
