//! A Helm chart repository: static files (`index.yaml`, chart archives) over HTTP(S).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::Router;
use tower_http::services::ServeDir;

use super::ServerError;
use super::http::{HttpOptions, HttpServerThread, RecordedRequest, TlsMode};
use super::tls::TestCa;

/// Configures a [`HelmRepoServer`].
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct HelmRepoServerBuilder {
    http: HttpOptions,
}

impl HelmRepoServerBuilder {
    /// Requires HTTP Basic authentication with this user name and password.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.http.basic = Some((user.into(), password.into()));
        self
    }

    /// Serves HTTPS with a certificate from a CA generated for this server.
    pub fn tls(mut self) -> Self {
        self.http.tls = TlsMode::Generate;
        self
    }

    /// Serves HTTPS with a certificate from `ca`.
    pub fn tls_with_ca(mut self, ca: &TestCa) -> Self {
        self.http.tls = TlsMode::WithCa(ca.clone());
        self
    }

    /// Requires clients to present a certificate issued by the server's CA (mutual TLS).
    pub fn require_client_cert(mut self) -> Self {
        self.http.client_auth = true;
        self
    }

    /// Holds every response for `delay` before answering (to test client timeouts).
    pub fn response_delay(mut self, delay: std::time::Duration) -> Self {
        self.http.delay = Some(delay);
        self
    }

    /// Starts serving the files under `dir` (`<dir>/index.yaml` is `<url>/index.yaml`).
    pub fn start(self, dir: impl AsRef<Path>) -> Result<HelmRepoServer, ServerError> {
        let dir = dir.as_ref();
        let root = dir
            .canonicalize()
            .map_err(|e| ServerError::io("open chart repository directory", dir, e))?;
        if !root.is_dir() {
            return Err(ServerError::io(
                "serve",
                &root,
                std::io::Error::other("not a directory"),
            ));
        }
        let router = Router::new().fallback_service(ServeDir::new(&root));
        let http = HttpServerThread::start("helm-repo", router, &self.http)?;
        Ok(HelmRepoServer { http, root })
    }
}

/// A static HTTP(S) server for a Helm chart repository directory (`index.yaml` and chart
/// `.tgz` archives), with optional Basic authentication and TLS. Stops when dropped.
///
/// Flux's `HelmRepository` `spec.url` and `helm repo add` take [`url`](Self::url); the index
/// is at [`index_url`](Self::index_url).
#[derive(Debug)]
pub struct HelmRepoServer {
    http: HttpServerThread,
    root: PathBuf,
}

impl HelmRepoServer {
    /// A builder: authentication, TLS.
    pub fn builder() -> HelmRepoServerBuilder {
        HelmRepoServerBuilder::default()
    }

    /// Starts an anonymous plain-HTTP server for the files under `dir`.
    pub fn start(dir: impl AsRef<Path>) -> Result<Self, ServerError> {
        Self::builder().start(dir)
    }

    /// `http://127.0.0.1:PORT` (or `https://`).
    pub fn url(&self) -> String {
        self.http.base_url()
    }

    /// `<url>/index.yaml`.
    pub fn index_url(&self) -> String {
        self.url_for("index.yaml")
    }

    /// The URL of a file of the repository: `url_for("app-1.0.0.tgz")`.
    pub fn url_for(&self, path: &str) -> String {
        format!("{}/{}", self.url(), path.trim_start_matches('/'))
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// The directory being served (canonical path).
    pub fn dir(&self) -> &Path {
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

    /// The path of the CA certificate PEM file, with TLS.
    pub fn ca_pem_path(&self) -> Option<&Path> {
        self.http.ca_pem_path()
    }

    /// The requests served so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.http.requests()
    }
}
