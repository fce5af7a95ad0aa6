//! Git's smart HTTP protocol: `git http-backend` run as a CGI program for each request, behind
//! the in-process HTTP server (Basic auth, bearer token, TLS, client certificates).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::http::{GitCommand, HttpOptions, HttpServerThread, Principal, RecordedRequest, TlsMode};
use super::process::{GIT, resolve_binary, temp_dir};
use super::tls::{IssuedCert, TestCa};
use super::{LOCALHOST, ServerError};

/// The largest request body the server accepts (a push of a big fixture).
const MAX_REQUEST_BODY: usize = 512 * 1024 * 1024;

/// Configures a [`GitHttpServer`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct GitHttpServerBuilder {
    git: PathBuf,
    http: HttpOptions,
    push: bool,
    config: Vec<(String, String)>,
}

impl Default for GitHttpServerBuilder {
    fn default() -> Self {
        GitHttpServerBuilder {
            git: PathBuf::from("git"),
            http: HttpOptions::default(),
            push: true,
            config: Vec::new(),
        }
    }
}

impl GitHttpServerBuilder {
    /// Requires HTTP Basic authentication with this user name and password.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.http.basic = Some((user.into(), password.into()));
        self
    }

    /// Requires `Authorization: Bearer <token>` (accepted besides Basic when both are set).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.http.bearer = Some(token.into());
        self
    }

    /// Serves HTTPS with a certificate from a CA generated for this server; see
    /// [`GitHttpServer::ca_pem_path`].
    pub fn tls(mut self) -> Self {
        self.http.tls = TlsMode::Generate;
        self
    }

    /// Serves HTTPS with a certificate from `ca` (to share one CA between servers).
    pub fn tls_with_ca(mut self, ca: &TestCa) -> Self {
        self.http.tls = TlsMode::WithCa(ca.clone());
        self
    }

    /// Requires clients to present a certificate issued by the server's CA (mutual TLS); see
    /// [`GitHttpServer::issue_client_cert`]. Needs [`tls`](Self::tls) or
    /// [`tls_with_ca`](Self::tls_with_ca).
    pub fn require_client_cert(mut self) -> Self {
        self.http.client_auth = true;
        self
    }

    /// Holds every response for `delay` before answering (to test client timeouts).
    pub fn response_delay(mut self, delay: std::time::Duration) -> Self {
        self.http.delay = Some(delay);
        self
    }

    /// Refuses pushes (`git-receive-pack`); by default pushes are accepted.
    pub fn read_only(mut self) -> Self {
        self.push = false;
        self
    }

    /// Sets a git configuration value for the backend (for example
    /// `uploadpack.allowAnySHA1InWant`, `true`).
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.push((key.into(), value.into()));
        self
    }

    /// Uses this `git` binary (a path, or a name searched on `PATH`) instead of `git`.
    pub fn git_binary(mut self, git: impl Into<PathBuf>) -> Self {
        self.git = git.into();
        self
    }

    /// Starts serving the bare repositories under `repos_dir` (`<repos_dir>/app.git` is
    /// `<url>/app.git`). Returns once the server accepts connections.
    pub fn start(self, repos_dir: impl AsRef<Path>) -> Result<GitHttpServer, ServerError> {
        let git = resolve_binary(&self.git, GIT)?;
        let repos_dir = repos_dir.as_ref();
        let root = repos_dir
            .canonicalize()
            .map_err(|e| ServerError::io("open repositories directory", repos_dir, e))?;
        let dir = temp_dir("testkit-git-http-")?;
        let log_path = dir.path().join("http-backend.log");
        let mut config = vec![
            ("safe.directory".to_string(), "*".to_string()),
            ("http.receivepack".to_string(), self.push.to_string()),
            ("http.uploadpack".to_string(), "true".to_string()),
        ];
        config.extend(self.config);
        let state = Arc::new(CgiState {
            git,
            root: root.clone(),
            config,
            log_path: log_path.clone(),
        });
        let router = Router::new().fallback(cgi).with_state(state);
        let http = HttpServerThread::start("git-http", router, &self.http)?;
        Ok(GitHttpServer {
            http,
            root,
            basic: self.http.basic,
            log_path,
            _dir: dir,
        })
    }
}

/// `git http-backend` behind an in-process HTTP(S) server on `127.0.0.1`.
///
/// Serves the bare repositories of one directory for clone, fetch and (unless
/// [`read_only`](GitHttpServerBuilder::read_only)) push. Stops when dropped: afterwards its port
/// refuses connections.
///
/// ```no_run
/// # use gitops_testkit::servers::GitHttpServer;
/// # fn main() -> Result<(), gitops_testkit::servers::ServerError> {
/// let server = GitHttpServer::builder().bearer_token("t0ken").start("/srv/git")?;
/// assert!(server.url_for("app.git").starts_with("http://127.0.0.1:"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct GitHttpServer {
    http: HttpServerThread,
    root: PathBuf,
    basic: Option<(String, String)>,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl GitHttpServer {
    /// A builder: authentication, TLS, push, git binary.
    pub fn builder() -> GitHttpServerBuilder {
        GitHttpServerBuilder::default()
    }

    /// Starts a plain-HTTP server without authentication for the bare repositories under
    /// `repos_dir`.
    pub fn start(repos_dir: impl AsRef<Path>) -> Result<Self, ServerError> {
        Self::builder().start(repos_dir)
    }

    /// `http://127.0.0.1:PORT` (or `https://`).
    pub fn url(&self) -> String {
        self.http.base_url()
    }

    /// The URL of one repository: `url_for("app.git")` is `http://127.0.0.1:PORT/app.git`.
    pub fn url_for(&self, repo: &str) -> String {
        format!("{}/{}", self.url(), repo.trim_start_matches('/'))
    }

    /// The URL of one repository with the Basic credentials in it
    /// (`http://user:password@127.0.0.1:PORT/app.git`), for clients that take them from the
    /// URL (the git CLI). Without Basic auth it is [`url_for`](Self::url_for).
    pub fn url_with_credentials(&self, repo: &str) -> String {
        match &self.basic {
            Some((user, password)) => {
                let url = self.url_for(repo);
                let (scheme, rest) = url.split_once("://").unwrap_or(("http", &url));
                format!(
                    "{scheme}://{}:{}@{rest}",
                    percent_encode(user),
                    percent_encode(password)
                )
            }
            None => self.url_for(repo),
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.http.addr().port()
    }

    /// The directory of bare repositories being served (canonical path).
    pub fn repos_dir(&self) -> &Path {
        &self.root
    }

    /// The CA that issued the server certificate, with TLS.
    pub fn ca(&self) -> Option<&TestCa> {
        self.http.ca()
    }

    /// The CA certificate PEM, with TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.http.ca().map(TestCa::cert_pem)
    }

    /// The path of the CA certificate PEM file, with TLS (for `GIT_SSL_CAINFO`).
    pub fn ca_pem_path(&self) -> Option<&Path> {
        self.http.ca_pem_path()
    }

    /// Issues a client certificate from the server's CA (for
    /// [`require_client_cert`](GitHttpServerBuilder::require_client_cert)); `None` without TLS.
    pub fn issue_client_cert(&self, name: &str) -> Option<Result<IssuedCert, ServerError>> {
        self.http.ca().map(|ca| ca.issue_client_cert(name))
    }

    /// The requests served so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.http.requests()
    }

    /// What `git http-backend` wrote on stderr so far (last lines).
    pub fn log_tail(&self) -> String {
        super::process::log_tail(&self.log_path)
    }
}

struct CgiState {
    git: PathBuf,
    root: PathBuf,
    config: Vec<(String, String)>,
    log_path: PathBuf,
}

async fn cgi(State(state): State<Arc<CgiState>>, req: Request) -> Response {
    match run_cgi(&state, req).await {
        Ok(response) => response,
        Err(message) => {
            tracing::warn!(%message, "git http-backend failed");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{message}\n")).into_response()
        }
    }
}

async fn run_cgi(state: &CgiState, req: Request) -> Result<Response, String> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_REQUEST_BODY)
        .await
        .map_err(|e| format!("read request body: {e}"))?;
    let path_info = percent_decode(parts.uri.path());
    let git_command = classify_git_command(&parts, &body);

    let mut cmd = tokio::process::Command::new(&state.git);
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", &state.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "gitops-testkit")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", &path_info)
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", LOCALHOST.to_string())
        .env("GIT_CONFIG_COUNT", state.config.len().to_string());
    for (i, (key, value)) in state.config.iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), key)
            .env(format!("GIT_CONFIG_VALUE_{i}"), value);
    }
    if let Some(content_type) = parts.headers.get(axum::http::header::CONTENT_TYPE) {
        cmd.env("CONTENT_TYPE", content_type.to_str().unwrap_or(""));
    }
    if let Some(Principal(user)) = parts.extensions.get::<Principal>() {
        cmd.env("REMOTE_USER", user).env("AUTH_TYPE", "Basic");
    }
    // CGI passes request headers as HTTP_*: http-backend reads HTTP_CONTENT_ENCODING (gzip
    // request bodies) and HTTP_GIT_PROTOCOL (protocol v2) from there. Credentials stay out.
    for (name, value) in &parts.headers {
        if *name == axum::http::header::AUTHORIZATION {
            continue;
        }
        if let Ok(value) = value.to_str() {
            let var = format!(
                "HTTP_{}",
                name.as_str().to_ascii_uppercase().replace('-', "_")
            );
            cmd.env(var, value);
        }
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&state.log_path)
        .map_err(|e| format!("open {}: {e}", state.log_path.display()))?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawn {} http-backend: {e}", state.git.display()))?;

    let mut stdin = child.stdin.take().ok_or("http-backend has no stdin")?;
    tokio::spawn(async move {
        // http-backend may answer without reading everything (an error); a broken pipe is fine.
        let _ = stdin.write_all(&body).await;
        let _ = stdin.shutdown().await;
    });
    let stdout = child.stdout.take().ok_or("http-backend has no stdout")?;
    let mut reader = BufReader::new(stdout);

    let mut status = StatusCode::OK;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .await
            .map_err(|e| format!("read http-backend headers: {e}"))?;
        if n == 0 {
            return Err("http-backend ended before its headers were complete".to_string());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!(
                "http-backend wrote a malformed header line: {line:?}"
            ));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("");
            status = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| format!("http-backend wrote a bad status: {value:?}"))?;
        } else {
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|e| format!("http-backend header name {name:?}: {e}"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| format!("http-backend header value for {name}: {e}"))?;
            headers.push((name, value));
        }
    }

    // Stream the rest of stdout as the body; the child lives as long as the stream.
    let stream = futures::stream::unfold(Some((reader, child)), |state| async move {
        let (mut reader, mut child) = state?;
        let mut buf = vec![0u8; 64 * 1024];
        match reader.read(&mut buf).await {
            Ok(0) => {
                let _ = child.wait().await;
                None
            }
            Ok(n) => {
                buf.truncate(n);
                Some((
                    Ok::<Bytes, std::io::Error>(Bytes::from(buf)),
                    Some((reader, child)),
                ))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    if let Some(command) = git_command {
        response.extensions_mut().insert(GitCommand(command));
    }
    *response.status_mut() = status;
    for (name, value) in headers {
        response.headers_mut().append(name, value);
    }
    Ok(response)
}

/// What a git smart-HTTP POST asks for: the protocol v2 `command=` of its first pkt-line,
/// `fetch` for a v0/v1 negotiation (or a gzip-compressed body, which git only sends for
/// large negotiations), `receive-pack` for a push; `None` for anything else.
fn classify_git_command(parts: &axum::http::request::Parts, body: &[u8]) -> Option<String> {
    if parts.method != axum::http::Method::POST {
        return None;
    }
    let path = parts.uri.path();
    if path.ends_with("/git-receive-pack") {
        return Some("receive-pack".to_string());
    }
    if !path.ends_with("/git-upload-pack") {
        return None;
    }
    let gzip = parts
        .headers
        .get(axum::http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    if gzip {
        return Some("fetch".to_string());
    }
    // A pkt-line: four hex digits giving the line's length (prefix included), then the payload.
    let first_line = body
        .get(..4)
        .and_then(|len| std::str::from_utf8(len).ok())
        .and_then(|len| usize::from_str_radix(len, 16).ok())
        .filter(|len| *len > 4)
        .and_then(|len| body.get(4..len));
    match first_line.and_then(|line| line.strip_prefix(b"command=")) {
        Some(command) => {
            let command = command.strip_suffix(b"\n").unwrap_or(command);
            Some(String::from_utf8_lossy(command).into_owned())
        }
        None => Some("fetch".to_string()),
    }
}

/// Decodes `%XX` escapes in a URL path (invalid escapes are kept as they are).
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes a URL userinfo component.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_round_trip() {
        assert_eq!(percent_decode("/a%20b.git/info/refs"), "/a b.git/info/refs");
        assert_eq!(percent_decode("/bad%zz%4"), "/bad%zz%4");
        assert_eq!(percent_encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
    }
}
