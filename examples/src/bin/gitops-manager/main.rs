//! `gitops-manager`: every reference controller in one process (GitRepository,
//! Kustomization, Provider/Alert, Receiver), with leader election on a Lease, Prometheus
//! metrics with Flux's names, health probes and graceful shutdown.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use gitops_examples::kustomize::Backoff;
use gitops_examples::runtime::{ControllerOptions, Controllers};
use kube::Client;

/// Runs the GitOps Toolkit's reference controllers.
#[derive(Debug, Parser)]
#[command(name = "gitops-manager", version, about, long_about = None)]
struct Args {
    /// The kubeconfig (default: KUBECONFIG, ~/.kube/config, then the in-cluster config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Only reconcile objects with these labels (`--watch-label-selector=shard=one`).
    #[arg(long)]
    watch_label_selector: Option<String>,
    /// Reconciles run at once, per controller.
    #[arg(long, default_value_t = 4)]
    concurrent: u16,
    /// Where Prometheus metrics are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Where /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:9440")]
    health_addr: SocketAddr,
    /// The address the artifact, event and receiver servers bind.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// The artifact server's port.
    #[arg(long, default_value_t = 9090)]
    storage_port: u16,
    /// The hostname written into artifact URLs (e.g. the Service's DNS name).
    #[arg(long)]
    storage_adv_addr: Option<String>,
    /// The artifact store directory (default: a temporary directory).
    #[arg(long)]
    storage_path: Option<PathBuf>,
    /// The event endpoint's port.
    #[arg(long, default_value_t = 9690)]
    events_port: u16,
    /// The webhook receiver's port.
    #[arg(long, default_value_t = 9292)]
    receiver_port: u16,
    /// How soon a Kustomization checks an unready dependency again (seconds).
    #[arg(long, default_value_t = 30)]
    requeue_dependency: u64,
    /// The delay before the first retry of a failed reconcile (Flux's `--min-retry-delay`, a
    /// Go duration such as `750ms`); each consecutive failure of an object doubles it.
    #[arg(long, default_value = "750ms", value_parser = parse_delay)]
    min_retry_delay: Duration,
    /// The longest delay between retries of a failing object (Flux's `--max-retry-delay`).
    #[arg(long, default_value = "15m", value_parser = parse_delay)]
    max_retry_delay: Duration,
    /// Elect one leader among replicas before reconciling.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    enable_leader_election: bool,
    /// The Lease's name.
    #[arg(long, default_value = "gitops-manager-leader-election")]
    leader_election_id: String,
    /// The Lease's namespace (default: POD_NAMESPACE, else flux-system).
    #[arg(long, env = "POD_NAMESPACE", default_value = "flux-system")]
    leader_election_namespace: String,
    /// How long a lease is valid without renewal (seconds).
    #[arg(long, default_value_t = 35)]
    lease_duration: u64,
    /// This replica's identity in the Lease (default: HOSTNAME or a random id).
    #[arg(long, env = "HOSTNAME")]
    identity: Option<String>,
}

/// A Go duration (`750ms`, `15m`, `1h30m`) as Flux's flags take it.
fn parse_delay(text: &str) -> Result<Duration, String> {
    gitops_examples::meta::parse_duration(text).map_err(|e| e.to_string())
}

impl Args {
    /// The controllers' options from the flags (the client configuration aside).
    fn controller_options(&self) -> ControllerOptions {
        ControllerOptions {
            store_dir: self.storage_path.clone(),
            bind: self.bind,
            artifact_port: self.storage_port,
            events_port: self.events_port,
            receiver_port: self.receiver_port,
            advertise: self.storage_adv_addr.clone(),
            watch_label_selector: self.watch_label_selector.clone(),
            concurrency: self.concurrent,
            requeue_dependency: Duration::from_secs(self.requeue_dependency),
            source_retry_interval: self.min_retry_delay,
            retry_backoff: Backoff {
                min: self.min_retry_delay,
                max: self.max_retry_delay.max(self.min_retry_delay),
            },
            ..ControllerOptions::default()
        }
    }
}

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GITOPS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<(Client, kube::Config)> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok((Client::try_from(config.clone())?, config))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn serve_health(addr: SocketAddr, ready: Arc<AtomicBool>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the health probes on {addr}"))?;
    let router = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let ready = ready.clone();
                async move {
                    if ready.load(Ordering::SeqCst) {
                        (axum::http::StatusCode::OK, "ok")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        );
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "health server");
        }
    });
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (client, client_config) = client(args.kubeconfig.as_ref()).await?;
    // A histogram with Flux's buckets (ExponentialBuckets(10e-3, 10, 5)): a few counters per
    // object, where the exporter's default summary keeps a quantile sketch of up to hundreds
    // of KiB per object.
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(args.metrics_addr)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                gitops_examples::metrics::RECONCILE_DURATION.to_string(),
            ),
            &gitops_examples::metrics::RECONCILE_DURATION_BUCKETS,
        )
        .context("the reconcile duration buckets")?
        .install()
        .with_context(|| format!("serving metrics on {}", args.metrics_addr))?;
    let ready = Arc::new(AtomicBool::new(false));
    serve_health(args.health_addr, ready.clone()).await?;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);

    // Leader election: reconcile only while holding the Lease.
    let mut leadership = if args.enable_leader_election {
        let mut builder =
            kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &args.leader_election_id)
                .with_namespace(&args.leader_election_namespace)
                .with_duration(args.lease_duration)
                .with_grace((args.lease_duration / 4).clamp(1, 10));
        if let Some(identity) = &args.identity {
            builder = builder.with_identity(identity);
        }
        let manager = builder
            .build()
            .await
            .context("creating the leader election Lease")?;
        let (mut rx, task) = manager.watch().await;
        tracing::info!(lease = %args.leader_election_id, namespace = %args.leader_election_namespace, "waiting for leadership");
        let elected = tokio::select! {
            _ = &mut shutdown => false,
            changed = rx.wait_for(|leader| *leader) => {
                changed.context("leader election stopped")?;
                true
            }
        };
        if !elected {
            drop(rx);
            let _ = task.await;
            return Ok(ExitCode::SUCCESS);
        }
        tracing::info!("acquired leadership");
        Some((rx, task))
    } else {
        None
    };

    let options = ControllerOptions {
        client_config: Some(client_config),
        ..args.controller_options()
    };
    let controllers = Controllers::start(client, options).await?;
    ready.store(true, Ordering::SeqCst);
    tracing::info!(artifacts = %controllers.artifact_url, events = %controllers.events_url, receivers = %controllers.receiver_url, "controllers started");

    let lost = async {
        match leadership.as_mut() {
            Some((rx, _)) => {
                let _ = rx.wait_for(|leader| !*leader).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    let code = tokio::select! {
        _ = &mut shutdown => {
            tracing::info!("shutting down");
            ExitCode::SUCCESS
        }
        _ = lost => {
            tracing::error!("lost leadership; stopping");
            ExitCode::from(1)
        }
    };
    ready.store(false, Ordering::SeqCst);
    controllers.shutdown().await;
    if let Some((rx, task)) = leadership {
        // Closing the channel releases the Lease, so another replica takes over at once.
        drop(rx);
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_flags_reach_every_controller_with_fluxs_defaults() {
        let defaults = Args::try_parse_from(["gitops-manager"]).expect("no flags");
        let options = defaults.controller_options();
        assert_eq!(
            options.retry_backoff,
            Backoff {
                min: Duration::from_millis(750),
                max: Duration::from_secs(15 * 60)
            }
        );
        assert_eq!(options.source_retry_interval, Duration::from_millis(750));
        let set = Args::try_parse_from([
            "gitops-manager",
            "--min-retry-delay",
            "2s",
            "--max-retry-delay",
            "1m30s",
        ])
        .expect("flags");
        let options = set.controller_options();
        assert_eq!(
            options.retry_backoff,
            Backoff {
                min: Duration::from_secs(2),
                max: Duration::from_secs(90)
            }
        );
        assert_eq!(options.source_retry_interval, Duration::from_secs(2));
        assert_eq!(options.retry_backoff.delay(3), Duration::from_secs(8));
        assert_eq!(options.retry_backoff.delay(10), Duration::from_secs(90));
        // A maximum below the minimum never shortens the first delay.
        let inverted = Args::try_parse_from([
            "gitops-manager",
            "--min-retry-delay",
            "5m",
            "--max-retry-delay",
            "1m",
        ])
        .expect("flags");
        assert_eq!(
            inverted.controller_options().retry_backoff.delay(1),
            Duration::from_secs(300)
        );
        assert!(
            Args::try_parse_from(["gitops-manager", "--min-retry-delay", "soon"]).is_err(),
            "not a duration"
        );
    }
}
