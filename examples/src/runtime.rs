//! Every reference controller in one process: the artifact server, the event endpoint, the
//! receiver endpoint, and the GitRepository, Kustomization and notification controllers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gitops_events::EventEmitter;
use gitops_source::{ArtifactServer, ArtifactStore};
use kube::Client;
use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::events::EventRecorder;
use crate::kustomize::{self, Backoff, KustomizationContext};
use crate::notification::{self, EventHub, ReceiverHub};
use crate::source::{self, GitRepositoryContext};

/// Why the controllers could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Creating the artifact store failed.
    #[error("artifact store {path}: {message}")]
    Store {
        /// The store directory.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// Binding a listener failed.
    #[error("binding the {what} listener on {addr}: {source}")]
    Bind {
        /// Which server.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The event emitter could not be built.
    #[error("event emitter: {0}")]
    Emitter(String),
}

/// Options of [`Controllers::start`].
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// The artifact store directory (default: a temporary directory removed on shutdown).
    pub store_dir: Option<PathBuf>,
    /// The address the artifact, event and receiver servers bind.
    pub bind: IpAddr,
    /// The artifact server's port (0: any free port).
    pub artifact_port: u16,
    /// The event endpoint's port (0: any free port).
    pub events_port: u16,
    /// The receiver endpoint's port (0: any free port).
    pub receiver_port: u16,
    /// The hostname written into artifact URLs (default: the bound address).
    pub advertise: Option<String>,
    /// Which objects the controllers watch (`--watch-label-selector`).
    pub watch_label_selector: Option<String>,
    /// Reconciles run at once per controller (`--concurrent`).
    pub concurrency: u16,
    /// How soon a Kustomization checks an unready dependency again.
    pub requeue_dependency: Duration,
    /// How soon a failed source is retried the first time (Flux's `--min-retry-delay` of
    /// source-controller); consecutive failures double it up to `retry_backoff.max`.
    pub source_retry_interval: Duration,
    /// The back-off of failed reconciles of every controller (Flux's `--min-retry-delay` and
    /// `--max-retry-delay`: 750 ms doubling up to 15 min). The source controllers start from
    /// `source_retry_interval` instead of `retry_backoff.min`.
    pub retry_backoff: Backoff,
    /// The configuration the client was built from: Kustomizations with `serviceAccountName`
    /// impersonate on top of it (without it they fail and say why).
    pub client_config: Option<kube::Config>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            store_dir: None,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            artifact_port: 0,
            events_port: 0,
            receiver_port: 0,
            advertise: None,
            watch_label_selector: None,
            concurrency: 4,
            requeue_dependency: Duration::from_secs(30),
            source_retry_interval: Backoff::default().min,
            retry_backoff: Backoff::default(),
            client_config: None,
        }
    }
}

/// The running controllers and their servers.
pub struct Controllers {
    /// Where artifacts are served (`http://ADDR:PORT/`).
    pub artifact_url: url::Url,
    /// The event endpoint controllers post to.
    pub events_url: url::Url,
    /// The receiver endpoint (`/hook/<digest>` below it).
    pub receiver_url: url::Url,
    hub: EventHub,
    tasks: Vec<JoinHandle<()>>,
    servers: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    _store_dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Controllers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controllers")
            .field("artifact_url", &self.artifact_url.as_str())
            .field("events_url", &self.events_url.as_str())
            .field("receiver_url", &self.receiver_url.as_str())
            .finish()
    }
}

async fn bind(
    what: &'static str,
    ip: IpAddr,
    port: u16,
) -> Result<(tokio::net::TcpListener, SocketAddr), RuntimeError> {
    let addr = SocketAddr::new(ip, port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RuntimeError::Bind { what, addr, source })?;
    let local =
        listener
            .local_addr()
            .map_err(|source| RuntimeError::Bind { what, addr, source })?;
    Ok((listener, local))
}

/// The host to reach a listener on this machine (loopback for an unspecified address).
fn local_host(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    }
}

fn url_of(host: &str, addr: SocketAddr) -> url::Url {
    let text = format!("http://{host}:{}/", addr.port());
    url::Url::parse(&text).expect("a host and a port always form a valid http URL")
}

impl Controllers {
    /// Starts the servers and every controller on `client`.
    pub async fn start(client: Client, options: ControllerOptions) -> Result<Self, RuntimeError> {
        let (store_dir, tmp) = match &options.store_dir {
            Some(d) => (d.clone(), None),
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix("gitops-artifacts-")
                    .tempdir()
                    .map_err(|e| RuntimeError::Store {
                        path: std::env::temp_dir(),
                        message: e.to_string(),
                    })?;
                (tmp.path().to_path_buf(), Some(tmp))
            }
        };
        let (stop, stopped) = watch::channel(false);
        let until_stopped = move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut servers = Vec::new();

        let (artifact_listener, artifact_addr) =
            bind("artifact", options.bind, options.artifact_port).await?;
        let host = options
            .advertise
            .clone()
            .unwrap_or_else(|| local_host(artifact_addr));
        let artifact_url = url_of(&host, artifact_addr);
        let store = ArtifactStore::new(&store_dir)
            .map_err(|e| RuntimeError::Store {
                path: store_dir.clone(),
                message: e.to_string(),
            })?
            .with_base_url(artifact_url.clone());
        let server = ArtifactServer::new(&store);
        let shutdown = until_stopped();
        servers.push(tokio::spawn(async move {
            if let Err(error) = server.serve(artifact_listener, shutdown).await {
                tracing::error!(%error, "artifact server");
            }
        }));

        let hub = EventHub::default();
        let (event_listener, event_addr) = bind("event", options.bind, options.events_port).await?;
        let events_url = url_of(&local_host(event_addr), event_addr);
        let router = notification::event_router(hub.clone());
        let shutdown = until_stopped();
        servers.push(tokio::spawn(async move {
            if let Err(error) = axum::serve(event_listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "event server");
            }
        }));

        let receivers = ReceiverHub::new(client.clone());
        let (receiver_listener, receiver_addr) =
            bind("receiver", options.bind, options.receiver_port).await?;
        let receiver_url = url_of(&local_host(receiver_addr), receiver_addr);
        let router = receivers.router();
        let shutdown = until_stopped();
        servers.push(tokio::spawn(async move {
            if let Err(error) = axum::serve(receiver_listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "receiver server");
            }
        }));

        let emitter = |component: &str| {
            EventEmitter::new(events_url.as_str(), component)
                .map(|e| {
                    EventRecorder::new(Some(e)).with_kubernetes_events(client.clone(), component)
                })
                .map_err(|e| RuntimeError::Emitter(e.to_string()))
        };
        let mut config = watcher::Config::default();
        if let Some(selector) = &options.watch_label_selector {
            config = config.labels(selector);
        }

        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(notification::sync_dispatcher(
            client.clone(),
            hub.clone(),
            config.clone(),
        )));
        tasks.push(tokio::spawn(notification::sync_receivers(
            client.clone(),
            receivers,
            config.clone(),
        )));
        let source_ctx = Arc::new(GitRepositoryContext {
            client: client.clone(),
            store,
            events: emitter("source-controller")?,
            retry_interval: options.source_retry_interval,
            max_retry_delay: options.retry_backoff.max,
        });
        tasks.push(tokio::spawn(source::run_all(
            source_ctx,
            config.clone(),
            options.concurrency,
        )));
        let mut ks_ctx =
            KustomizationContext::new(client.clone(), emitter("kustomize-controller")?);
        ks_ctx.requeue_dependency = options.requeue_dependency;
        ks_ctx.retry_backoff = options.retry_backoff;
        ks_ctx.client_config = options.client_config.clone();
        tasks.push(tokio::spawn(kustomize::run(
            Arc::new(ks_ctx),
            Api::all(client.clone()),
            Api::all(client.clone()),
            config,
            options.concurrency,
        )));
        Ok(Self {
            artifact_url,
            events_url,
            receiver_url,
            hub,
            tasks,
            servers,
            stop,
            _store_dir: tmp,
        })
    }

    /// How many Alerts the event endpoint currently dispatches to.
    pub fn alerts(&self) -> usize {
        self.hub.alerts()
    }

    /// Stops the controllers, delivers the notifications already queued, and stops the servers.
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        self.hub.shutdown().await;
        let _ = self.stop.send(true);
        for server in self.servers {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
    }
}
