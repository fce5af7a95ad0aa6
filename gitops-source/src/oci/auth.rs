//! Registry credentials: anonymous, Basic, a bearer token, or docker `config.json` (with its
//! credential helpers, for files on disk).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;

use super::OciError;

/// How to authenticate to an OCI registry.
///
/// With `Basic`, the client first asks the registry's `/v2/`: a `Bearer` challenge starts the
/// registry token flow (the credentials go to the token realm), a `Basic` challenge sends them
/// on every request. `Debug` never prints a secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum OciAuth {
    /// No credentials.
    #[default]
    Anonymous,
    /// A user name and password (or token as password).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// A registry bearer token, sent as is.
    Bearer(String),
}

impl std::fmt::Debug for OciAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OciAuth::Anonymous => f.write_str("Anonymous"),
            OciAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            OciAuth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

impl OciAuth {
    pub(crate) fn to_registry_auth(&self) -> oci_client::secrets::RegistryAuth {
        use oci_client::secrets::RegistryAuth;
        match self {
            OciAuth::Anonymous => RegistryAuth::Anonymous,
            OciAuth::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            OciAuth::Bearer(token) => RegistryAuth::Bearer(token.clone()),
        }
    }

    /// The credentials for `registry` (`host[:port]`) in a docker `config.json` (the format
    /// of a `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson` key): the `auths`
    /// entry whose key is the registry, with or without a scheme and path; `auth` (base64 of
    /// `user:password`) or `username`/`password`, or `registrytoken` as a bearer token.
    /// No entry gives `Anonymous`. Credential helpers (`credsStore`, `credHelpers`) are not
    /// run: this is the form for Kubernetes Secrets, where naming a program to execute must
    /// not be possible. [`OciAuth::from_docker_config_file`] runs them.
    pub fn from_docker_config(json: &[u8], registry: &str) -> Result<Self, OciError> {
        let config: DockerConfig =
            serde_json::from_slice(json).map_err(|e| OciError::DockerConfig(e.to_string()))?;
        Self::from_auths(config, registry)
    }

    fn from_auths(config: DockerConfig, registry: &str) -> Result<Self, OciError> {
        let wanted = normalise_registry(registry);
        let Some(entry) = config
            .auths
            .into_iter()
            .find(|(key, _)| normalise_registry(key) == wanted)
            .map(|(_, e)| e)
        else {
            return Ok(OciAuth::Anonymous);
        };
        if let Some(token) = entry.registrytoken.filter(|t| !t.is_empty()) {
            return Ok(OciAuth::Bearer(token));
        }
        if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| {
                    OciError::DockerConfig(format!("auths.{registry}.auth is not base64: {e}"))
                })?;
            let decoded = String::from_utf8(decoded).map_err(|_| {
                OciError::DockerConfig(format!("auths.{registry}.auth is not UTF-8"))
            })?;
            let Some((username, password)) = decoded.split_once(':') else {
                return Err(OciError::DockerConfig(format!(
                    "auths.{registry}.auth is not of the form user:password"
                )));
            };
            return Ok(OciAuth::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            });
        }
        match (entry.username, entry.password) {
            (Some(username), Some(password)) => Ok(OciAuth::Basic { username, password }),
            _ => Ok(OciAuth::Anonymous),
        }
    }

    /// The credentials for `registry` in a docker `config.json` file, as the docker CLI reads
    /// it: the registry's credential helper (`credHelpers`, keyed by registry) or else the
    /// default store (`credsStore`) is asked first — `docker-credential-<name> get` from `PATH`,
    /// the server address on stdin, `{"Username","Secret"}` on stdout — and when it has
    /// nothing for the registry, the `auths` entry applies as in
    /// [`OciAuth::from_docker_config`]. Helpers that fail, hang for 30 s or answer with an
    /// identity token (OAuth2 refresh token, not supported) are typed errors.
    pub fn from_docker_config_file(path: &Path, registry: &str) -> Result<Self, OciError> {
        let bytes = std::fs::read(path)
            .map_err(|e| OciError::DockerConfig(format!("reading {}: {e}", path.display())))?;
        let config: DockerConfig =
            serde_json::from_slice(&bytes).map_err(|e| OciError::DockerConfig(e.to_string()))?;
        let wanted = normalise_registry(registry);
        let helper = config
            .cred_helpers
            .iter()
            .find(|(key, _)| normalise_registry(key) == wanted)
            .map(|(_, helper)| helper.clone())
            .or_else(|| config.creds_store.clone())
            .filter(|h| !h.is_empty());
        if let Some(helper) = helper
            && let Some(auth) = run_credential_helper(&helper, registry)?
        {
            return Ok(auth);
        }
        Self::from_auths(config, registry)
    }
}

#[derive(serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(serde::Deserialize, Default)]
struct Entry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    registrytoken: Option<String>,
}

/// How long a credential helper may take (a helper waiting on a passphrase prompt never ends).
const HELPER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs `docker-credential-<helper> get` for `registry`; `None` when it has no credentials.
fn run_credential_helper(helper: &str, registry: &str) -> Result<Option<OciAuth>, OciError> {
    use std::io::{Read as _, Write as _};
    let fail = |message: String| OciError::CredentialHelper {
        helper: helper.to_owned(),
        registry: registry.to_owned(),
        message,
    };
    if !helper
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(fail(
            "the helper name must be a plain program suffix".into(),
        ));
    }
    // Docker Hub's credentials are stored under its v1 URL; others under host[:port].
    let server = match normalise_registry(registry).as_str() {
        "index.docker.io" => "https://index.docker.io/v1/".to_owned(),
        other => other.to_owned(),
    };
    let program = format!("docker-credential-{helper}");
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("starting {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| fail(format!("writing to {program}: {e}")))?;
    }
    let deadline = std::time::Instant::now() + HELPER_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("no answer within {HELPER_TIMEOUT:?}")));
            }
            Err(e) => return Err(fail(format!("waiting for {program}: {e}"))),
        }
    };
    let mut stdout = Vec::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_end(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    if !status.success() {
        // The helpers' protocol: this message means "nothing stored for this server".
        let said = String::from_utf8_lossy(&stdout).into_owned() + &stderr;
        if said.contains("credentials not found") {
            return Ok(None);
        }
        let first_line = said.lines().next().unwrap_or("").trim().to_owned();
        return Err(fail(format!("exited with {status}: {first_line}")));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    // Only the position: serde's message may quote a value, and values are secrets here.
    let answer: Answer = serde_json::from_slice(&stdout).map_err(|e| {
        fail(format!(
            "unreadable answer (not the helper JSON, at line {} column {})",
            e.line(),
            e.column()
        ))
    })?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    if answer.username == "<token>" {
        return Err(fail(
            "the helper holds an identity token (OAuth2 refresh token), which is not supported"
                .into(),
        ));
    }
    Ok(Some(OciAuth::Basic {
        username: answer.username,
        password: answer.secret,
    }))
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `127.0.0.1:5000` stays.
fn normalise_registry(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "docker.io" | "registry-1.docker.io" => "index.docker.io".to_owned(),
        other => other.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_auth_field_and_schemes() {
        let json = br#"{"auths":{"https://127.0.0.1:5000/v1/":{"auth":"dXNlcjpwYTpzcw=="}}}"#;
        let auth = OciAuth::from_docker_config(json, "127.0.0.1:5000").expect("parses");
        assert_eq!(
            auth,
            OciAuth::Basic {
                username: "user".into(),
                password: "pa:ss".into()
            }
        );
        let other = OciAuth::from_docker_config(json, "127.0.0.1:5001").expect("parses");
        assert_eq!(other, OciAuth::Anonymous);
    }

    #[test]
    fn docker_config_username_password_and_token() {
        let json =
            br#"{"auths":{"reg:1":{"username":"u","password":"p"},"reg:2":{"registrytoken":"t"}}}"#;
        assert_eq!(
            OciAuth::from_docker_config(json, "reg:1").expect("parses"),
            OciAuth::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        assert_eq!(
            OciAuth::from_docker_config(json, "reg:2").expect("parses"),
            OciAuth::Bearer("t".into())
        );
    }

    #[test]
    fn docker_config_files_consult_credential_helpers() {
        let dir = tempfile::tempdir().expect("tmp");
        let write = |json: &str| {
            let path = dir.path().join("config.json");
            std::fs::write(&path, json).expect("write");
            path
        };
        // The registry's helper is consulted (here: not installed, a typed error)...
        let path = write(
            r#"{"credHelpers":{"reg:1":"gitops-no-such-helper"},"auths":{"reg:1":{"username":"u","password":"p"}}}"#,
        );
        match OciAuth::from_docker_config_file(&path, "reg:1") {
            Err(OciError::CredentialHelper {
                helper, registry, ..
            }) => {
                assert_eq!(helper, "gitops-no-such-helper");
                assert_eq!(registry, "reg:1");
            }
            other => panic!("expected CredentialHelper, got {other:?}"),
        }
        // ...another registry's helper is not: its auths entry applies.
        assert_eq!(
            OciAuth::from_docker_config_file(
                &write(
                    r#"{"credHelpers":{"other:2":"gitops-no-such-helper"},"auths":{"reg:1":{"username":"u","password":"p"}}}"#
                ),
                "reg:1"
            )
            .expect("auths"),
            OciAuth::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        // The default store applies to every registry.
        assert!(matches!(
            OciAuth::from_docker_config_file(
                &write(r#"{"credsStore":"gitops-no-such-helper"}"#),
                "reg:9"
            ),
            Err(OciError::CredentialHelper { .. })
        ));
        // A helper name cannot name a path.
        match OciAuth::from_docker_config_file(&write(r#"{"credsStore":"../../bin/sh"}"#), "reg:1")
        {
            Err(OciError::CredentialHelper { message, .. }) => {
                assert!(message.contains("plain program suffix"), "{message}")
            }
            other => panic!("expected CredentialHelper, got {other:?}"),
        }
        // Secrets-style parsing never runs helpers.
        assert_eq!(
            OciAuth::from_docker_config(br#"{"credsStore":"gitops-no-such-helper"}"#, "reg:1")
                .expect("no helper run"),
            OciAuth::Anonymous
        );
    }

    #[test]
    fn docker_config_errors_never_carry_the_secret() {
        let json = br#"{"auths":{"reg":{"auth":"bm9jb2xvbg=="}}}"#;
        let err = OciAuth::from_docker_config(json, "reg").expect_err("no colon");
        assert!(!err.to_string().contains("nocolon"), "{err}");
        let dbg = format!(
            "{:?}",
            OciAuth::Basic {
                username: "u".into(),
                password: "hunter2".into()
            }
        );
        assert!(!dbg.contains("hunter2"));
    }
}
