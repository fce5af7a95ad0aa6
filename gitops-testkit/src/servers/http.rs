//! The in-process HTTP(S) server under [`super::GitHttpServer`] and [`super::HelmRepoServer`]:
//! an axum router on a dedicated thread with its own tokio runtime, optional Basic / bearer
//! authentication, optional TLS (and client certificates), and a record of the requests served.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hyper_util::rt::TokioIo;

use super::tls::TestCa;
use super::{LOCALHOST, ServerError};

/// One request an in-process server answered, for tests that assert on traffic (which paths a
/// client fetched, whether it authenticated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The HTTP method.
    pub method: String,
    /// The path, as sent (still percent-encoded).
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// Who was authenticated: the Basic user name, `"bearer"` for a valid bearer token, `None`
    /// when the server has no authentication or the request was refused.
    pub user: Option<String>,
    /// The status code of the response.
    pub status: u16,
    /// For git smart-HTTP requests, what the client asked for: `ls-refs` or `fetch` (protocol
    /// v2 commands; a protocol v0/v1 negotiation counts as `fetch`), or `receive-pack` for a
    /// push. `None` for the ref advertisement and for non-git servers.
    pub git_command: Option<String>,
}

/// Set by a handler on its response to fill [`RecordedRequest::git_command`].
#[derive(Debug, Clone)]
pub(crate) struct GitCommand(pub String);

/// Whether and how a server speaks TLS.
#[derive(Debug, Clone, Default)]
pub(crate) enum TlsMode {
    #[default]
    Off,
    /// Generate a CA for this server.
    Generate,
    /// Use a CA the caller shares between servers.
    WithCa(TestCa),
}

/// Options shared by the HTTP launchers' builders.
#[derive(Debug, Clone, Default)]
pub(crate) struct HttpOptions {
    pub basic: Option<(String, String)>,
    pub bearer: Option<String>,
    pub tls: TlsMode,
    pub client_auth: bool,
    /// Held before each response (after authentication), to exercise client timeouts.
    pub delay: Option<std::time::Duration>,
}

/// The authenticated principal, passed to handlers as a request extension.
#[derive(Debug, Clone)]
pub(crate) struct Principal(pub String);

struct Guard {
    basic: Option<(String, String)>,
    bearer: Option<String>,
    delay: Option<std::time::Duration>,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
}

impl Guard {
    /// `Ok(None)`: no authentication configured; `Ok(Some(user))`: authenticated; `Err`: refused.
    fn authorize(&self, headers: &HeaderMap) -> Result<Option<String>, ()> {
        if self.basic.is_none() && self.bearer.is_none() {
            return Ok(None);
        }
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(())?;
        let (scheme, credentials) = value.split_once(' ').ok_or(())?;
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let (user, pass) = self.basic.as_ref().ok_or(())?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(credentials)
                .map_err(|_| ())?;
            let decoded = String::from_utf8(decoded).map_err(|_| ())?;
            let (u, p) = decoded.split_once(':').ok_or(())?;
            if u == user && p == pass {
                return Ok(Some(u.to_string()));
            }
        } else if scheme.eq_ignore_ascii_case("bearer") {
            let token = self.bearer.as_ref().ok_or(())?;
            if credentials == token {
                return Ok(Some("bearer".to_string()));
            }
        }
        Err(())
    }

    fn record(&self, request: RecordedRequest) {
        if let Ok(mut requests) = self.requests.lock() {
            requests.push(request);
        }
    }

    fn challenge(&self) -> HeaderValue {
        if self.basic.is_some() {
            HeaderValue::from_static("Basic realm=\"gitops-testkit\"")
        } else {
            HeaderValue::from_static("Bearer realm=\"gitops-testkit\"")
        }
    }
}

async fn guard(State(guard): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    match guard.authorize(req.headers()) {
        Ok(user) => {
            if let Some(user) = &user {
                req.extensions_mut().insert(Principal(user.clone()));
            }
            if let Some(delay) = guard.delay {
                tokio::time::sleep(delay).await;
            }
            let response = next.run(req).await;
            guard.record(RecordedRequest {
                method,
                path,
                query,
                user,
                status: response.status().as_u16(),
                git_command: response
                    .extensions()
                    .get::<GitCommand>()
                    .map(|c| c.0.clone()),
            });
            response
        }
        Err(()) => {
            guard.record(RecordedRequest {
                method,
                path,
                query,
                user: None,
                status: StatusCode::UNAUTHORIZED.as_u16(),
                git_command: None,
            });
            let mut response =
                (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, guard.challenge());
            response
        }
    }
}

/// A running in-process HTTP(S) server. Dropping it stops the thread and closes the port.
pub(crate) struct HttpServerThread {
    name: &'static str,
    addr: SocketAddr,
    ca: Option<TestCa>,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HttpServerThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServerThread")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("tls", &self.ca.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpServerThread {
    /// Binds `127.0.0.1:0` and serves `router` behind the authentication guard. The listener is
    /// bound before this returns, so the server is ready: connections queue until accepted.
    pub(crate) fn start(
        name: &'static str,
        router: Router,
        options: &HttpOptions,
    ) -> Result<Self, ServerError> {
        let ca = match &options.tls {
            TlsMode::Off => None,
            TlsMode::Generate => Some(TestCa::generate()?),
            TlsMode::WithCa(ca) => Some(ca.clone()),
        };
        if options.client_auth && ca.is_none() {
            return Err(ServerError::InvalidArgument(format!(
                "{name}: client certificates need TLS: call .tls() or .tls_with_ca()"
            )));
        }
        let acceptor = ca
            .as_ref()
            .map(|ca| ca.server_config(options.client_auth))
            .transpose()?
            .map(tokio_rustls::TlsAcceptor::from);

        let listener =
            std::net::TcpListener::bind((LOCALHOST, 0)).map_err(|source| ServerError::Os {
                what: format!("{name}: bind 127.0.0.1:0"),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Os {
            what: format!("{name}: read bound address"),
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| ServerError::Os {
                what: format!("{name}: make listener non-blocking"),
                source,
            })?;

        let requests = Arc::new(Mutex::new(Vec::new()));
        let guard_state = Arc::new(Guard {
            basic: options.basic.clone(),
            bearer: options.bearer.clone(),
            delay: options.delay,
            requests: requests.clone(),
        });
        let router = router.layer(axum::middleware::from_fn_with_state(guard_state, guard));

        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let thread = std::thread::Builder::new()
            .name(format!("testkit-{name}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    accept_loop(name, listener, router, acceptor, shutdown_rx).await;
                });
                // Dropping the runtime here cancels every connection task; the CGI children
                // they own are killed on drop.
            })
            .map_err(|source| ServerError::Os {
                what: format!("{name}: spawn server thread"),
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                return Err(ServerError::Os {
                    what: format!("{name}: start server runtime"),
                    source,
                });
            }
            Err(_) => {
                return Err(ServerError::Os {
                    what: format!("{name}: server thread"),
                    source: std::io::Error::other("the server thread ended before it was ready"),
                });
            }
        }
        tracing::debug!(server = name, %addr, tls = ca.is_some(), "in-process HTTP server ready");
        Ok(HttpServerThread {
            name,
            addr,
            ca,
            requests,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub(crate) fn base_url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub(crate) fn ca(&self) -> Option<&TestCa> {
        self.ca.as_ref()
    }

    pub(crate) fn ca_pem_path(&self) -> Option<&Path> {
        self.ca.as_ref().map(TestCa::cert_path)
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for HttpServerThread {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        tracing::debug!(server = self.name, addr = %self.addr, "in-process HTTP server stopped");
    }
}

async fn accept_loop(
    name: &'static str,
    listener: tokio::net::TcpListener,
    router: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::debug!(server = name, %error, "accept failed");
                        continue;
                    }
                };
                let router = router.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        tower::Service::call(&mut router.clone(), req)
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    let result = match acceptor {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(tls) => builder.serve_connection(TokioIo::new(tls), service).await,
                            Err(error) => {
                                tracing::debug!(server = name, %error, "TLS handshake failed");
                                return;
                            }
                        },
                        None => builder.serve_connection(TokioIo::new(stream), service).await,
                    };
                    if let Err(error) = result {
                        tracing::debug!(server = name, %error, "connection ended with an error");
                    }
                });
            }
        }
    }
}
