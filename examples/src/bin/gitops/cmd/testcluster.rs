//! `gitops testcluster`: run the in-process Kubernetes API server.

use std::{path::PathBuf, process::ExitCode};

/// Arguments of `gitops testcluster`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write a kubeconfig for kubectl and kube-rs.
    #[arg(long)]
    pub kubeconfig_out: PathBuf,
}

/// Runs `gitops testcluster`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    Err(super::not_yet("testcluster", 6, "the in-process API server"))
}
