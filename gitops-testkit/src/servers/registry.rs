//! Debian's `docker-registry` (CNCF distribution v2) with a generated configuration,
//! filesystem storage, optional htpasswd (bcrypt) authentication and optional TLS.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::process::{
    Package, ServerProcess, port_open, raw_http, resolve_binary, start_with_port_retry, temp_dir,
    write_file,
};
use super::tls::TestCa;
use super::{LOCALHOST, ServerError};

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const DOCKER_REGISTRY: Package = Package::debian("docker-registry");
const APACHE2_UTILS: Package = Package::debian("apache2-utils");

/// Configures an [`OciRegistry`].
#[derive(Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct OciRegistryBuilder {
    registry: PathBuf,
    htpasswd: PathBuf,
    credentials: Option<(String, String)>,
    tls: Option<Option<TestCa>>,
}

impl std::fmt::Debug for OciRegistryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciRegistryBuilder")
            .field("registry", &self.registry)
            .field("htpasswd", &self.htpasswd)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Default for OciRegistryBuilder {
    fn default() -> Self {
        OciRegistryBuilder {
            registry: PathBuf::from("docker-registry"),
            htpasswd: PathBuf::from("htpasswd"),
            credentials: None,
            tls: None,
        }
    }
}

impl OciRegistryBuilder {
    /// Requires HTTP Basic authentication (the registry's htpasswd backend, bcrypt) for every
    /// request.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// Serves HTTPS with a certificate from a CA generated for this registry; see
    /// [`OciRegistry::ca_pem_path`].
    pub fn tls(mut self) -> Self {
        self.tls = Some(None);
        self
    }

    /// Serves HTTPS with a certificate from `ca`.
    pub fn tls_with_ca(mut self, ca: &TestCa) -> Self {
        self.tls = Some(Some(ca.clone()));
        self
    }

    /// Uses this registry binary (a path, or a name on `PATH`) instead of `docker-registry`.
    pub fn registry_binary(mut self, registry: impl Into<PathBuf>) -> Self {
        self.registry = registry.into();
        self
    }

    /// Uses this `htpasswd` (a path, or a name on `PATH`).
    pub fn htpasswd_binary(mut self, htpasswd: impl Into<PathBuf>) -> Self {
        self.htpasswd = htpasswd.into();
        self
    }

    /// Writes the configuration and starts the registry. Returns once it answers `/v2/`
    /// (over TLS: once it accepts connections).
    pub fn start(self) -> Result<OciRegistry, ServerError> {
        let registry = resolve_binary(&self.registry, DOCKER_REGISTRY)?;
        let dir = temp_dir("testkit-registry-")?;
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage)
            .map_err(|e| ServerError::io("create directory", &storage, e))?;

        let htpasswd_file = match &self.credentials {
            Some((user, password)) => {
                let htpasswd = resolve_binary(&self.htpasswd, APACHE2_UTILS)?;
                let path = dir.path().join("htpasswd");
                write_file(&path, bcrypt_entry(&htpasswd, user, password)?)?;
                Some(path)
            }
            None => None,
        };
        let ca = match self.tls {
            None => None,
            Some(None) => Some(TestCa::generate()?),
            Some(Some(ca)) => Some(ca),
        };
        let server_cert = ca.as_ref().map(TestCa::issue_server_cert).transpose()?;
        let secret = random_hex(16)?;

        let (process, port) = start_with_port_retry(|port| {
            let mut config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
                 \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: {LOCALHOST}:{port}\n  secret: {secret}\n",
                storage = storage.display(),
            );
            if let Some(cert) = &server_cert {
                config.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    cert.cert_path.display(),
                    cert.key_path.display()
                ));
            }
            if let Some(path) = &htpasswd_file {
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: gitops-testkit\n    path: {}\n",
                    path.display()
                ));
            }
            let config_path = dir.path().join(format!("config-{port}.yml"));
            write_file(&config_path, config).map_err(|e| (e, false))?;
            let mut cmd = Command::new(&registry);
            cmd.arg("serve").arg(&config_path);
            // The registry lets REGISTRY_* variables override its file; ours must win.
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("REGISTRY_") {
                    cmd.env_remove(key);
                }
            }
            let log = dir.path().join(format!("registry-{port}.log"));
            let mut process =
                ServerProcess::spawn("docker-registry", &mut cmd, &log).map_err(|e| (e, false))?;
            let addr = SocketAddr::from((LOCALHOST, port));
            let tls = server_cert.is_some();
            let ready = || {
                if tls {
                    port_open(addr)
                } else {
                    matches!(raw_http(addr, "GET", "/v2/", b""), Ok((200 | 401, _)))
                }
            };
            match process.wait_ready(&addr.to_string(), READY_TIMEOUT, ready) {
                Ok(()) => Ok((process, port)),
                Err(e) => {
                    let raced = process.lost_port_race();
                    Err((e, raced))
                }
            }
        })?;
        tracing::debug!(
            port,
            tls = ca.is_some(),
            auth = htpasswd_file.is_some(),
            "docker-registry ready"
        );
        Ok(OciRegistry {
            process,
            port,
            ca,
            credentials: self.credentials,
            storage,
            _dir: dir,
        })
    }
}

/// Debian's `docker-registry` (distribution v2) on `127.0.0.1`, storing blobs in a temporary
/// directory. Stops when dropped.
///
/// Image references are `127.0.0.1:PORT/<name>:<tag>` ([`host`](Self::host)); Helm's OCI
/// support and Flux's `OCIRepository` use `oci://127.0.0.1:PORT/<name>`.
pub struct OciRegistry {
    process: ServerProcess,
    port: u16,
    ca: Option<TestCa>,
    credentials: Option<(String, String)>,
    storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for OciRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciRegistry")
            .field("port", &self.port)
            .field("tls", &self.ca.is_some())
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

impl OciRegistry {
    /// A builder: authentication, TLS, binaries.
    pub fn builder() -> OciRegistryBuilder {
        OciRegistryBuilder::default()
    }

    /// Starts an anonymous plain-HTTP registry.
    pub fn start() -> Result<Self, ServerError> {
        Self::builder().start()
    }

    /// `127.0.0.1:PORT`: the registry part of image references.
    pub fn host(&self) -> String {
        format!("{LOCALHOST}:{}", self.port)
    }

    /// `http://127.0.0.1:PORT` (or `https://`).
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// `oci://127.0.0.1:PORT/<name>`, as Helm and Flux's `OCIRepository` write it.
    pub fn oci_url(&self, name: &str) -> String {
        format!("oci://{}/{}", self.host(), name.trim_start_matches('/'))
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((LOCALHOST, self.port))
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name and password the registry requires, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The CA that issued the registry's certificate, with TLS.
    pub fn ca(&self) -> Option<&TestCa> {
        self.ca.as_ref()
    }

    /// The CA certificate PEM, with TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca.as_ref().map(TestCa::cert_pem)
    }

    /// The path of the CA certificate PEM file, with TLS.
    pub fn ca_pem_path(&self) -> Option<&Path> {
        self.ca.as_ref().map(TestCa::cert_path)
    }

    /// Where the registry stores blobs and manifests.
    pub fn storage_dir(&self) -> &Path {
        &self.storage
    }

    /// The registry's log so far (last lines).
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

/// An htpasswd line with a bcrypt hash, made by `htpasswd -iBn` (the password goes through
/// stdin, never the command line).
fn bcrypt_entry(htpasswd: &Path, user: &str, password: &str) -> Result<String, ServerError> {
    if user.contains(':') || user.is_empty() {
        return Err(ServerError::InvalidArgument(format!(
            "registry user name {user:?} must be non-empty and without ':'"
        )));
    }
    let mut child = Command::new(htpasswd)
        .args(["-i", "-B", "-n", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ServerError::Os {
            what: format!("run {}", htpasswd.display()),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(password.as_bytes())
            .map_err(|source| ServerError::Os {
                what: format!("write the password to {}", htpasswd.display()),
                source,
            })?;
    }
    let output = child.wait_with_output().map_err(|source| ServerError::Os {
        what: format!("wait for {}", htpasswd.display()),
        source,
    })?;
    let line = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || !line.starts_with(&format!("{user}:$2")) {
        return Err(ServerError::Command {
            command: format!("{} -i -B -n {user}", htpasswd.display()),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(format!("{line}\n"))
}

/// `n` random bytes from the OS, as hex.
fn random_hex(n: usize) -> Result<String, ServerError> {
    let path = Path::new("/dev/urandom");
    let mut bytes = vec![0u8; n];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| ServerError::io("read", path, e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
