//! A SOCKS5 proxy on `127.0.0.1` (RFC 1928 `CONNECT`, optional RFC 1929 username/password),
//! in process, recording every connection it was asked for.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{LOCALHOST, ServerError};

/// One `CONNECT` the proxy was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocksConnection {
    /// `host:port` as the client sent it (a domain name is kept as a name: `socks5h`).
    pub target: String,
    /// The user name the client authenticated with, if the proxy requires one.
    pub user: Option<String>,
    /// Whether the proxy connected the client (authenticated, target reachable).
    pub granted: bool,
}

/// Configures a [`Socks5Proxy`].
#[derive(Clone, Default)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct Socks5ProxyBuilder {
    credentials: Option<(String, String)>,
}

impl std::fmt::Debug for Socks5ProxyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socks5ProxyBuilder")
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl Socks5ProxyBuilder {
    /// Requires username/password authentication (RFC 1929) with these credentials; clients
    /// offering no credentials or wrong ones are refused.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// Binds `127.0.0.1:0` and starts serving; ready when this returns.
    pub fn start(self) -> Result<Socks5Proxy, ServerError> {
        let listener =
            std::net::TcpListener::bind((LOCALHOST, 0)).map_err(|source| ServerError::Os {
                what: "socks5: bind 127.0.0.1:0".into(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Os {
            what: "socks5: read bound address".into(),
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| ServerError::Os {
                what: "socks5: make listener non-blocking".into(),
                source,
            })?;
        let connections = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(State {
            credentials: self.credentials,
            connections: connections.clone(),
        });
        let (shutdown_tx, mut shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let thread = std::thread::Builder::new()
            .name("testkit-socks5".into())
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
                    loop {
                        tokio::select! {
                            _ = &mut shutdown_rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                let state = state.clone();
                                tokio::spawn(async move {
                                    if let Err(error) = serve(stream, &state).await {
                                        tracing::debug!(%error, "socks5 connection ended");
                                    }
                                });
                            }
                        }
                    }
                });
            })
            .map_err(|source| ServerError::Os {
                what: "socks5: spawn server thread".into(),
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                return Err(ServerError::Os {
                    what: "socks5: start server runtime".into(),
                    source,
                });
            }
            Err(_) => {
                return Err(ServerError::Os {
                    what: "socks5: server thread".into(),
                    source: std::io::Error::other("the server thread ended before it was ready"),
                });
            }
        }
        tracing::debug!(%addr, "SOCKS5 proxy ready");
        Ok(Socks5Proxy {
            addr,
            connections,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }
}

/// A SOCKS5 proxy on `127.0.0.1` that connects clients to any TCP target and records each
/// `CONNECT`. Stops when dropped: afterwards its port refuses connections.
///
/// ```no_run
/// # use gitops_testkit::servers::Socks5Proxy;
/// # fn main() -> Result<(), gitops_testkit::servers::ServerError> {
/// let proxy = Socks5Proxy::builder().credentials("u", "p").start()?;
/// assert!(proxy.url().starts_with("socks5://127.0.0.1:"));
/// # Ok(()) }
/// ```
pub struct Socks5Proxy {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<SocksConnection>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Socks5Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socks5Proxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Socks5Proxy {
    /// A builder (credentials).
    pub fn builder() -> Socks5ProxyBuilder {
        Socks5ProxyBuilder::default()
    }

    /// Starts a proxy without authentication.
    pub fn start() -> Result<Self, ServerError> {
        Self::builder().start()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `socks5://127.0.0.1:PORT` (the client resolves names).
    pub fn url(&self) -> String {
        format!("socks5://{}", self.addr)
    }

    /// `socks5h://127.0.0.1:PORT` (the proxy resolves names).
    pub fn url_remote_dns(&self) -> String {
        format!("socks5h://{}", self.addr)
    }

    /// The `CONNECT`s so far, in order.
    pub fn connections(&self) -> Vec<SocksConnection> {
        self.connections
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }
}

impl Drop for Socks5Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct State {
    credentials: Option<(String, String)>,
    connections: Arc<Mutex<Vec<SocksConnection>>>,
}

impl State {
    fn record(&self, connection: SocksConnection) {
        if let Ok(mut all) = self.connections.lock() {
            all.push(connection);
        }
    }
}

fn protocol_error(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// Reads a length-prefixed string (RFC 1929 fields, RFC 1928 domain names).
async fn read_short_string(stream: &mut tokio::net::TcpStream) -> std::io::Result<String> {
    let len = stream.read_u8().await? as usize;
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    String::from_utf8(buf).map_err(|_| protocol_error("not UTF-8"))
}

/// A reply with `code` and an all-zero IPv4 bound address.
async fn reply(stream: &mut tokio::net::TcpStream, code: u8) -> std::io::Result<()> {
    stream.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await
}

async fn serve(mut client: tokio::net::TcpStream, state: &State) -> std::io::Result<()> {
    // Greeting: version 5, the offered methods.
    if client.read_u8().await? != 5 {
        return Err(protocol_error("not SOCKS5"));
    }
    let count = client.read_u8().await? as usize;
    let mut methods = vec![0u8; count];
    client.read_exact(&mut methods).await?;
    let user = match &state.credentials {
        Some((want_user, want_password)) => {
            if !methods.contains(&2) {
                client.write_all(&[5, 0xff]).await?;
                return Err(protocol_error("client offered no username/password"));
            }
            client.write_all(&[5, 2]).await?;
            if client.read_u8().await? != 1 {
                return Err(protocol_error("bad username/password version"));
            }
            let user = read_short_string(&mut client).await?;
            let password = read_short_string(&mut client).await?;
            if &user != want_user || &password != want_password {
                // Recorded before answering, so a client that saw the answer sees the record.
                state.record(SocksConnection {
                    target: String::new(),
                    user: Some(user),
                    granted: false,
                });
                client.write_all(&[1, 1]).await?;
                return Ok(());
            }
            client.write_all(&[1, 0]).await?;
            Some(user)
        }
        None => {
            if !methods.contains(&0) {
                client.write_all(&[5, 0xff]).await?;
                return Err(protocol_error("client offered no acceptable method"));
            }
            client.write_all(&[5, 0]).await?;
            None
        }
    };
    // Request: version, command, reserved, address type, address, port.
    let mut head = [0u8; 4];
    client.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Err(protocol_error("not SOCKS5"));
    }
    let (host, ip): (String, Option<std::net::IpAddr>) = match head[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip).await?;
            let ip = std::net::Ipv4Addr::from(ip);
            (ip.to_string(), Some(ip.into()))
        }
        3 => (read_short_string(&mut client).await?, None),
        4 => {
            let mut ip = [0u8; 16];
            client.read_exact(&mut ip).await?;
            let ip = std::net::Ipv6Addr::from(ip);
            (format!("[{ip}]"), Some(ip.into()))
        }
        _ => {
            reply(&mut client, 8).await?;
            return Err(protocol_error("unknown address type"));
        }
    };
    let port = client.read_u16().await?;
    let target = format!("{host}:{port}");
    if head[1] != 1 {
        state.record(SocksConnection {
            target,
            user,
            granted: false,
        });
        reply(&mut client, 7).await?;
        return Ok(());
    }
    let connected = match ip {
        Some(ip) => tokio::net::TcpStream::connect(SocketAddr::new(ip, port)).await,
        None => tokio::net::TcpStream::connect((host.as_str(), port)).await,
    };
    let mut upstream = match connected {
        Ok(s) => s,
        Err(_) => {
            state.record(SocksConnection {
                target,
                user,
                granted: false,
            });
            reply(&mut client, 5).await?;
            return Ok(());
        }
    };
    state.record(SocksConnection {
        target,
        user,
        granted: true,
    });
    reply(&mut client, 0).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
