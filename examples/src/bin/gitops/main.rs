//! `gitops`: the GitOps Toolkit on the command line.
//!
//! Each subcommand is a thin shell over one crate of the toolkit; see `gitops --help`.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The GitOps Toolkit on the command line: acquire sources, render them as kustomize and helm
/// do, apply them to a cluster, and send and receive notifications.
#[derive(Debug, Parser)]
#[command(name = "gitops", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a kustomization (or a plain YAML directory) and print the YAML stream, as `kubectl kustomize` does.
    Build(cmd::build::Args),
    /// Render a Helm chart and print the manifests, as `helm template` does.
    Template(cmd::template::Args),
    /// Acquire a source (git, oci, helm, bucket) as an artifact, or serve an artifact store.
    #[command(subcommand)]
    Source(cmd::source::Command),
    /// Push a directory to an OCI registry as a Flux artifact.
    #[command(subcommand)]
    Push(cmd::push::Command),
    /// Show the drift between a directory and the cluster (exit 1 when drifted).
    Diff(cmd::diff::Args),
    /// Server-side apply a directory to the cluster, optionally pruning and waiting.
    Apply(cmd::apply::Args),
    /// Send one event through one notification provider.
    Notify(cmd::notify::Args),
    /// Run one webhook receiver and print each accepted trigger.
    Receive(cmd::receive::Args),
    /// Run the in-process Kubernetes API server until interrupted.
    Testcluster(cmd::testcluster::Args),
    /// Run the whole pipeline on an embedded test cluster: Git -> kustomize/helm -> apply -> events.
    Quickstart(cmd::quickstart::Args),
}

fn main() -> ExitCode {
    // One process-wide TLS crypto provider (aws-lc-rs), installed before any client is built, so
    // a second provider pulled in by a dependency can never make client construction panic.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GITOPS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(args) => cmd::build::run(args),
        Command::Template(args) => cmd::template::run(args),
        Command::Source(command) => cmd::source::run(command),
        Command::Push(command) => cmd::push::run(command),
        Command::Diff(args) => cmd::diff::run(args),
        Command::Apply(args) => cmd::apply::run(args),
        Command::Notify(args) => cmd::notify::run(args),
        Command::Receive(args) => cmd::receive::run(args),
        Command::Testcluster(args) => cmd::testcluster::run(args),
        Command::Quickstart(args) => cmd::quickstart::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::from(2)
        }
    }
}
