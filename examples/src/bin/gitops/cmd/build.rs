//! `gitops build DIR`: kustomize build.

use std::{path::PathBuf, process::ExitCode};

/// Arguments of `gitops build`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to build.
    pub dir: PathBuf,
}

/// Runs `gitops build`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    Err(super::not_yet("build", 4, "the Kustomize engine"))
}
