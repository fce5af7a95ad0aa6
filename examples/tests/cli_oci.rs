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

/// Runs a program of the credential-helper setup, failing with its output.
fn setup(program: &str, args: &[&str], env: &[(&str, &std::path::Path)], stdin: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program}: {e} (Debian packages gnupg, pass, golang-docker-credential-helpers)")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("waits");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `--docker-config` with `credHelpers`: the credentials come from the real
/// `docker-credential-pass` (a `pass` store encrypted to a generated GnuPG key), as the docker
/// CLI would use them; a store without the registry leaves the pull anonymous and refused.
#[test]
fn docker_config_credential_helper_supplies_the_credentials() {
    let registry = OciRegistry::builder()
        .basic_auth("flux", "helper-pass")
        .start()
        .expect("docker-registry");
    let url = registry.oci_url("helped");
    let content = tempfile::tempdir().expect("tempdir");
    std::fs::write(content.path().join("app.yaml"), "kind: ConfigMap\n").expect("write");
    let pushed = gitops(
        &[
            "push",
            "artifact",
            &url,
            "--path",
            content.path().to_str().expect("utf-8"),
            "--source",
            "https://example.org/helped.git",
            "--revision",
            "main@sha1:0c9c2e41d2f94f9b9c419b6f0c6b5a8e01234567",
            "--tag",
            "v1",
            "--insecure",
            "--username",
            "flux",
        ],
        "helper-pass",
    );
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );

    // A pass store with the registry's credentials, encrypted to a fresh key.
    let home = tempfile::tempdir().expect("tempdir");
    let gnupg = home.path().join("gnupg");
    std::fs::create_dir(&gnupg).expect("mkdir");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    // gpg starts an agent for this home; stop it when the test ends, pass or fail.
    struct Agent(std::path::PathBuf);
    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = Command::new("gpgconf")
                .args(["--kill", "gpg-agent"])
                .env("GNUPGHOME", &self.0)
                .output();
        }
    }
    let _agent = Agent(gnupg.clone());
    let store = home.path().join("password-store");
    let env = [
        ("GNUPGHOME", gnupg.as_path()),
        ("PASSWORD_STORE_DIR", store.as_path()),
    ];
    setup(
        "gpg",
        &[
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "gitops-test@example.org",
            "default",
            "default",
            "never",
        ],
        &env,
        "",
    );
    let listing = setup("gpg", &["--list-keys", "--with-colons"], &env, "");
    let fingerprint = listing
        .lines()
        .find_map(|l| {
            l.strip_prefix("fpr:")
                .map(|r| r.trim_matches(':').to_owned())
        })
        .expect("a key fingerprint");
    setup("pass", &["init", &fingerprint], &env, "");
    setup(
        "docker-credential-pass",
        &["store"],
        &env,
        &format!(
            r#"{{"ServerURL":"{}","Username":"flux","Secret":"helper-pass"}}"#,
            registry.host()
        ),
    );

    let config = home.path().join("config.json");
    std::fs::write(
        &config,
        format!(r#"{{"credHelpers":{{"{}":"pass"}}}}"#, registry.host()),
    )
    .expect("write config");
    let out = tempfile::tempdir().expect("tempdir");
    let pull = |env: &[(&str, &std::path::Path)]| {
        Command::new(GITOPS)
            .args(["source", "oci", &url, "--tag", "v1", "--insecure"])
            .arg("--docker-config")
            .arg(&config)
            .arg("--out")
            .arg(out.path())
            .env_remove("GITOPS_OCI_PASSWORD")
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .output()
            .expect("gitops runs")
    };
    let pulled = pull(&env);
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let json: Value = serde_json::from_slice(&pulled.stdout).expect("JSON");
    assert!(
        json["revision"]
            .as_str()
            .is_some_and(|r| r.starts_with("v1@sha256:")),
        "{json}"
    );

    // An empty store: the helper has nothing, the pull is anonymous and refused.
    let empty = home.path().join("empty-store");
    setup(
        "pass",
        &["init", &fingerprint],
        &[
            ("GNUPGHOME", gnupg.as_path()),
            ("PASSWORD_STORE_DIR", empty.as_path()),
        ],
        "",
    );
    let refused = pull(&[
        ("GNUPGHOME", gnupg.as_path()),
        ("PASSWORD_STORE_DIR", empty.as_path()),
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("AuthenticationFailed"), "{stderr}");
    assert!(!stderr.contains("helper-pass"), "{stderr}");
}

/// Runs `gitops` without registry credentials in its environment.
fn anonymous(args: &[&str]) -> Output {
    Command::new(GITOPS)
        .args(args)
        .env_remove("GITOPS_OCI_PASSWORD")
        .output()
        .expect("gitops runs")
}

/// A registry requiring client certificates: `push artifact` and `source oci` succeed with
/// `--client-cert`/`--client-key` (and `--ca-file`) and fail without them, never printing the key.
#[test]
fn mtls_push_and_pull_need_the_client_certificate() {
    let registry = OciRegistry::builder()
        .require_client_certificates()
        .start()
        .expect("docker-registry");
    let url = registry.oci_url("mtls");
    let ca = registry.ca_pem_path().expect("CA").to_str().expect("utf-8");
    let issued = registry.client_cert().expect("client certificate");
    let cert = issued.cert_path.to_str().expect("utf-8");
    let key = issued.key_path.to_str().expect("utf-8");
    let content = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        content.path().join("app.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n",
    )
    .expect("write");
    let dir = content.path().to_str().expect("utf-8 path");
    let push = |extra: &[&str]| {
        let mut args = vec![
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
            "v1",
            "--ca-file",
            ca,
        ];
        args.extend_from_slice(extra);
        anonymous(&args)
    };
    assert!(
        !push(&[]).status.success(),
        "a push without a client certificate must fail"
    );
    let pushed = push(&["--client-cert", cert, "--client-key", key]);
    assert!(
        pushed.status.success(),
        "push failed: {}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let pushed: Value = serde_json::from_slice(&pushed.stdout).expect("push prints JSON");
    let digest = pushed["digest"].as_str().expect("digest").to_string();

    let store = tempfile::tempdir().expect("tempdir");
    let out = store.path().to_str().expect("utf-8 path");
    let pull = |extra: &[&str]| {
        let mut args = vec![
            "source",
            "oci",
            &url,
            "--tag",
            "v1",
            "--ca-file",
            ca,
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        anonymous(&args)
    };
    let refused = pull(&[]);
    assert!(
        !refused.status.success(),
        "a pull without a client certificate must fail"
    );
    let pulled = pull(&["--client-cert", cert, "--client-key", key]);
    assert!(
        pulled.status.success(),
        "pull failed: {}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let json: Value = serde_json::from_slice(&pulled.stdout).expect("pull prints JSON");
    assert_eq!(json["revision"], format!("v1@{digest}"));
    let key_pem = issued.key_pem.lines().nth(1).expect("key body").to_owned();
    for output in [&refused, &pulled] {
        assert!(!String::from_utf8_lossy(&output.stderr).contains(&key_pem));
        assert!(!String::from_utf8_lossy(&output.stdout).contains(&key_pem));
    }
}
