//! A TLS front for plain-TCP servers: terminates TLS (optionally requiring a client
//! certificate) and relays the bytes to a backend on 127.0.0.1, as stunnel or a TLS-terminating
//! load balancer in front of an S3 server does.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use super::tls::TestCa;
use super::{LOCALHOST, ServerError};

/// A running TLS front. Dropping it stops the thread and closes the port.
pub(crate) struct TlsFront {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TlsFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFront")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TlsFront {
    /// Binds `127.0.0.1:0` and relays every TLS connection (with a server certificate from
    /// `ca`; with `require_client_cert`, only clients presenting a certificate `ca` issued) to
    /// `backend`. The listener is bound before this returns.
    pub(crate) fn start(
        name: &'static str,
        ca: &TestCa,
        require_client_cert: bool,
        backend: SocketAddr,
    ) -> Result<Self, ServerError> {
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(require_client_cert)?);
        let os = |what: &str, source: std::io::Error| ServerError::Os {
            what: format!("{name} TLS front: {what}"),
            source,
        };
        let listener =
            std::net::TcpListener::bind((LOCALHOST, 0)).map_err(|e| os("bind 127.0.0.1:0", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| os("read bound address", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| os("make listener non-blocking", e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| os("start runtime", e))?;
        let (shutdown_tx, mut shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("testkit-{name}-tls"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(error) => {
                            tracing::warn!(server = name, %error, "TLS front listener");
                            return;
                        }
                    };
                    loop {
                        tokio::select! {
                            _ = &mut shutdown_rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                tokio::spawn(relay(name, acceptor.clone(), stream, backend));
                            }
                        }
                    }
                });
                // Dropping the runtime cancels the relays in flight.
            })
            .map_err(|e| os("spawn thread", e))?;
        tracing::debug!(server = name, %addr, %backend, require_client_cert, "TLS front ready");
        Ok(TlsFront {
            addr,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// The TLS address clients connect to.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn relay(
    name: &'static str,
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    backend: SocketAddr,
) {
    let mut tls = match acceptor.accept(stream).await {
        Ok(tls) => tls,
        Err(error) => {
            tracing::debug!(server = name, %error, "TLS handshake failed");
            return;
        }
    };
    let mut plain = match tokio::net::TcpStream::connect(backend).await {
        Ok(s) => s,
        Err(error) => {
            tracing::debug!(server = name, %error, "TLS front: backend unreachable");
            return;
        }
    };
    if let Err(error) = tokio::io::copy_bidirectional(&mut tls, &mut plain).await {
        tracing::debug!(server = name, %error, "TLS front: relay ended with an error");
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
