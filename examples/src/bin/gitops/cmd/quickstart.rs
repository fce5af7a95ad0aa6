//! `gitops quickstart`: the whole pipeline on an embedded test cluster.

use std::{path::PathBuf, process::ExitCode};

/// Arguments of `gitops quickstart`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run against a real cluster instead of the embedded test cluster.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

/// What the quickstart will do, printed until it lands.
const PLAN: &str = "\
gitops quickstart will run the whole GitOps pipeline on this machine:
  1. start the embedded Kubernetes API server (gitops-testkit's TestCluster) and a local Git server;
  2. create a demo repository from examples/quickstart/ (a kustomize overlay and a small Helm chart);
  3. run the reference controllers in-process: a GitRepository produces an artifact, a Kustomization
     applies it with server-side apply, health is awaited, and an Alert posts events to a local webhook;
  4. commit a change (an edit and a removed object) and show the second reconcile (configured, deleted).";

/// Runs `gitops quickstart`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    println!("{PLAN}");
    Err(super::not_yet(
        "quickstart",
        10,
        "the assembled pipeline (source, render, apply, events)",
    ))
}
