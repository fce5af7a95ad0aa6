//! Debian's `docker-registry` (CNCF distribution v2) with a generated configuration,
//! filesystem storage, optional htpasswd (bcrypt) authentication, optional registry token
//! authentication (the registry's `auth: token` backend with an in-process token server issuing
//! ES256 JWTs) and optional TLS, optionally requiring client certificates (mutual TLS).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::http::{HttpOptions, HttpServerThread, RecordedRequest};
use super::process::{
    Package, ServerProcess, port_open, raw_http, resolve_binary, start_with_port_retry, temp_dir,
    write_file,
};
use super::tls::{IssuedCert, TestCa};
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
    token: Option<(String, String)>,
    tls: Option<Option<TestCa>>,
    client_certs: bool,
}

impl std::fmt::Debug for OciRegistryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciRegistryBuilder")
            .field("registry", &self.registry)
            .field("htpasswd", &self.htpasswd)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("token_user", &self.token.as_ref().map(|(u, _)| u))
            .field("tls", &self.tls.is_some())
            .field("client_certs", &self.client_certs)
            .finish()
    }
}

impl Default for OciRegistryBuilder {
    fn default() -> Self {
        OciRegistryBuilder {
            registry: PathBuf::from("docker-registry"),
            htpasswd: PathBuf::from("htpasswd"),
            credentials: None,
            token: None,
            tls: None,
            client_certs: false,
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

    /// Requires registry token authentication (distribution's `auth: token`): the registry
    /// answers `401` with a `Bearer realm=…,service=…` challenge, and an in-process token server
    /// at the realm checks these Basic credentials and issues short-lived ES256 JWTs whose
    /// `access` claim grants the requested `pull`/`push` scopes. Anonymous token requests get
    /// a token with no access; wrong credentials get `401` from the token server. The JWTs are
    /// signed with a key generated per registry, whose certificate is the registry's
    /// `rootcertbundle`. See [`OciRegistry::token_requests`].
    pub fn token_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.token = Some((user.into(), password.into()));
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

    /// Serves HTTPS (with a generated CA unless [`tls_with_ca`](Self::tls_with_ca) is used) and
    /// requires every client to present a certificate issued by that CA (the registry's
    /// `http.tls.clientcas`); connections without one are refused during the TLS handshake. A
    /// client certificate is issued for tests: [`OciRegistry::client_cert`].
    pub fn require_client_certificates(mut self) -> Self {
        if self.tls.is_none() {
            self.tls = Some(None);
        }
        self.client_certs = true;
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
        let client_cert = match (&ca, self.client_certs) {
            (Some(ca), true) => Some(ca.issue_client_cert("gitops-testkit-client")?),
            _ => None,
        };
        let secret = random_hex(16)?;
        if htpasswd_file.is_some() && self.token.is_some() {
            return Err(ServerError::InvalidArgument(
                "registry: choose basic_auth or token_auth, not both".into(),
            ));
        }
        let token_server = match &self.token {
            Some((user, password)) => Some(TokenServer::start(dir.path(), user, password)?),
            None => None,
        };

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
                if client_cert.is_some()
                    && let Some(ca) = &ca
                {
                    config.push_str(&format!(
                        "    clientcas:\n      - {}\n",
                        ca.cert_path().display()
                    ));
                }
            }
            if let Some(path) = &htpasswd_file {
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: gitops-testkit\n    path: {}\n",
                    path.display()
                ));
            }
            if let Some(token) = &token_server {
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    \
                     issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    token.realm(),
                    token.cert_path.display()
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
            client_certs = client_cert.is_some(),
            auth = htpasswd_file.is_some(),
            "docker-registry ready"
        );
        Ok(OciRegistry {
            process,
            port,
            ca,
            client_cert,
            credentials: self.credentials.or(self.token),
            token_server,
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
    client_cert: Option<IssuedCert>,
    credentials: Option<(String, String)>,
    token_server: Option<TokenServer>,
    storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for OciRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciRegistry")
            .field("port", &self.port)
            .field("tls", &self.ca.is_some())
            .field("client_certs", &self.client_cert.is_some())
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

    /// The token realm (`http://127.0.0.1:PORT/token`), with token authentication.
    pub fn token_realm(&self) -> Option<String> {
        self.token_server.as_ref().map(TokenServer::realm)
    }

    /// The requests the token server answered so far (query with `scope` and `service`, and
    /// the status: `200` with a token, `401` for wrong credentials), with token
    /// authentication; empty otherwise.
    pub fn token_requests(&self) -> Vec<RecordedRequest> {
        self.token_server
            .as_ref()
            .map(|t| t.http.requests())
            .unwrap_or_default()
    }

    /// The user name and password the registry requires (Basic or token), if any.
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

    /// The client certificate (and key) issued by the registry's CA, when the registry requires
    /// client certificates ([`OciRegistryBuilder::require_client_certificates`]).
    pub fn client_cert(&self) -> Option<&IssuedCert> {
        self.client_cert.as_ref()
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

/// The `service` the registry names in its challenge and the JWTs' audience.
const TOKEN_SERVICE: &str = "gitops-testkit-registry";
/// The JWTs' issuer, as the registry is configured to trust.
const TOKEN_ISSUER: &str = "gitops-testkit-token-server";
/// How long an issued token is valid.
const TOKEN_TTL_SECS: i64 = 300;

/// A registry token server (the Docker registry v2 token protocol): `GET /token?service=…&scope=…`
/// with optional Basic credentials answers `{"token": <JWT>, …}`.
struct TokenServer {
    http: HttpServerThread,
    cert_path: PathBuf,
}

struct TokenState {
    user: String,
    password: String,
    key: rcgen::KeyPair,
    /// base64 (standard) DER of the signing certificate, for the JWT `x5c` header.
    cert_b64: String,
}

impl TokenServer {
    fn start(dir: &Path, user: &str, password: &str) -> Result<Self, ServerError> {
        use base64::Engine as _;
        if user.contains(':') || user.is_empty() {
            return Err(ServerError::InvalidArgument(format!(
                "registry user name {user:?} must be non-empty and without ':'"
            )));
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| ServerError::tls("generate token signing key", e))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| ServerError::tls("token signing certificate", e))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, TOKEN_ISSUER);
        let cert = params
            .self_signed(&key)
            .map_err(|e| ServerError::tls("sign token certificate", e))?;
        let cert_path = dir.join("token-signer.pem");
        write_file(&cert_path, cert.pem())?;
        let state = std::sync::Arc::new(TokenState {
            user: user.to_owned(),
            password: password.to_owned(),
            key,
            cert_b64: base64::engine::general_purpose::STANDARD.encode(cert.der()),
        });
        let router = axum::Router::new()
            .route("/token", axum::routing::get(issue_token))
            .with_state(state);
        let http = HttpServerThread::start("registry-token", router, &HttpOptions::default())?;
        Ok(TokenServer { http, cert_path })
    }

    fn realm(&self) -> String {
        format!("{}/token", self.http.base_url())
    }
}

/// One `resource:name:actions` scope the client asked for.
fn parse_scope(scope: &str) -> Option<(&str, &str, Vec<&str>)> {
    let (rest, actions) = scope.rsplit_once(':')?;
    let (kind, name) = rest.split_once(':')?;
    Some((
        kind,
        name,
        actions.split(',').filter(|a| !a.is_empty()).collect(),
    ))
}

async fn issue_token(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<TokenState>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse as _;
    use base64::Engine as _;
    let unauthorized = || {
        (
            StatusCode::UNAUTHORIZED,
            [(
                axum::http::header::WWW_AUTHENTICATE,
                "Basic realm=\"gitops-testkit-token\"",
            )],
            "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"invalid credentials\"}]}",
        )
            .into_response()
    };
    // Basic credentials: absent is anonymous, wrong is refused.
    let subject = match headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        None => None,
        Some(value) => {
            let Some(("Basic" | "basic", encoded)) = value.split_once(' ') else {
                return unauthorized();
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((u, p)) if u == state.user && p == state.password => Some(u.to_owned()),
                _ => return unauthorized(),
            }
        }
    };
    let pairs: Vec<(String, String)> = query.as_deref().map(url_decode_pairs).unwrap_or_default();
    if pairs
        .iter()
        .any(|(k, v)| k == "service" && v != TOKEN_SERVICE)
    {
        return (StatusCode::BAD_REQUEST, "unknown service").into_response();
    }
    // Grant what was asked for (pull, push on repositories) to the authenticated user;
    // anonymous tokens carry no access.
    let mut access = Vec::new();
    for (_, scope) in pairs.iter().filter(|(k, _)| k == "scope") {
        for one in scope.split(' ') {
            let Some((kind, name, actions)) = parse_scope(one) else {
                return (StatusCode::BAD_REQUEST, "malformed scope").into_response();
            };
            let granted: Vec<&str> = if subject.is_some() && kind == "repository" {
                actions
                    .into_iter()
                    .filter(|a| matches!(*a, "pull" | "push"))
                    .collect()
            } else {
                Vec::new()
            };
            access.push(serde_json::json!({"type": kind, "name": name, "actions": granted}));
        }
    }
    let now = jiff::Timestamp::now().as_second();
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [state.cert_b64]});
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER,
        "sub": subject.clone().unwrap_or_default(),
        "aud": TOKEN_SERVICE,
        "exp": now + TOKEN_TTL_SECS,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signing_input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let signature = match rcgen::SigningKey::sign(&state.key, signing_input.as_bytes())
        .map_err(|e| e.to_string())
        .and_then(|der| ecdsa_der_to_jose(&der, 32))
    {
        Ok(sig) => sig,
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("signing: {e}")).into_response();
        }
    };
    let token = format!("{signing_input}.{}", b64.encode(signature));
    axum::Json(serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": TOKEN_TTL_SECS,
        "issued_at": jiff::Timestamp::from_second(now).map(|t| t.to_string()).unwrap_or_default(),
    }))
    .into_response()
}

/// `k=v&k=v` with `%XX` and `+` decoded.
fn url_decode_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// An ASN.1 DER ECDSA signature (`SEQUENCE { INTEGER r, INTEGER s }`) as JOSE wants it: `r`
/// and `s` as fixed-size big-endian integers, concatenated.
fn ecdsa_der_to_jose(der: &[u8], size: usize) -> Result<Vec<u8>, String> {
    fn read_len(der: &[u8], at: &mut usize) -> Result<usize, String> {
        let first = *der.get(*at).ok_or("truncated length")?;
        *at += 1;
        if first < 0x80 {
            return Ok(first as usize);
        }
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 2 {
            return Err("unsupported length".into());
        }
        let mut len = 0usize;
        for _ in 0..n {
            len = (len << 8) | *der.get(*at).ok_or("truncated length")? as usize;
            *at += 1;
        }
        Ok(len)
    }
    fn read_int<'a>(der: &'a [u8], at: &mut usize) -> Result<&'a [u8], String> {
        if der.get(*at) != Some(&0x02) {
            return Err("expected INTEGER".into());
        }
        *at += 1;
        let len = read_len(der, at)?;
        let value = der.get(*at..*at + len).ok_or("truncated INTEGER")?;
        *at += len;
        Ok(value)
    }
    let mut at = 0;
    if der.first() != Some(&0x30) {
        return Err("expected SEQUENCE".into());
    }
    at += 1;
    read_len(der, &mut at)?;
    let mut out = Vec::with_capacity(size * 2);
    for _ in 0..2 {
        let int = read_int(der, &mut at)?;
        let trimmed: &[u8] = {
            let skip = int.iter().take_while(|b| **b == 0).count();
            &int[skip..]
        };
        if trimmed.len() > size {
            return Err("integer larger than the curve size".into());
        }
        out.extend(std::iter::repeat_n(0u8, size - trimmed.len()));
        out.extend_from_slice(trimmed);
    }
    Ok(out)
}
