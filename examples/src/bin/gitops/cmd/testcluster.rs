//! `gitops testcluster`: run the in-process Kubernetes API server until interrupted.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use gitops_testkit::cluster::{TestCluster, TestClusterOptions};

/// Arguments of `gitops testcluster`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write a kubeconfig for kubectl and kube-rs.
    #[arg(long)]
    pub kubeconfig_out: PathBuf,
    /// Address to listen on (default: a free port on 127.0.0.1).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// Simulate workload controllers: rollouts complete, Jobs finish, Pods run.
    #[arg(long)]
    pub simulate_controllers: bool,
    /// Serve HTTPS with a generated CA (written into the kubeconfig) instead of plain HTTP.
    #[arg(long)]
    pub tls: bool,
    /// With --simulate-controllers: how long a rollout takes, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub rollout_delay_ms: u64,
}

/// Runs `gitops testcluster`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    gitops_testkit::cluster::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let options = TestClusterOptions {
            addr: args.addr,
            simulate_controllers: args.simulate_controllers,
            rollout_delay: Duration::from_millis(args.rollout_delay_ms),
            tls: args.tls,
            ..Default::default()
        };
        let cluster = TestCluster::start(options)
            .await
            .context("starting the test cluster")?;
        cluster
            .write_kubeconfig(&args.kubeconfig_out)
            .context("writing the kubeconfig")?;
        println!(
            "test cluster serving at {}; kubeconfig written to {}",
            cluster.url(),
            args.kubeconfig_out.display()
        );
        wait_for_signal().await?;
        drop(cluster);
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
