//! Registry credentials: anonymous, Basic, a bearer token, or docker `config.json`.

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
    /// No entry gives `Anonymous`. Credential helpers (`credsStore`, `credHelpers`) are not run.
    pub fn from_docker_config(json: &[u8], registry: &str) -> Result<Self, OciError> {
        #[derive(serde::Deserialize)]
        struct Config {
            #[serde(default)]
            auths: BTreeMap<String, Entry>,
        }
        #[derive(serde::Deserialize, Default)]
        struct Entry {
            auth: Option<String>,
            username: Option<String>,
            password: Option<String>,
            registrytoken: Option<String>,
        }
        let config: Config =
            serde_json::from_slice(json).map_err(|e| OciError::DockerConfig(e.to_string()))?;
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

    /// [`OciAuth::from_docker_config`] on a file.
    pub fn from_docker_config_file(path: &Path, registry: &str) -> Result<Self, OciError> {
        let bytes = std::fs::read(path)
            .map_err(|e| OciError::DockerConfig(format!("reading {}: {e}", path.display())))?;
        Self::from_docker_config(&bytes, registry)
    }
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
