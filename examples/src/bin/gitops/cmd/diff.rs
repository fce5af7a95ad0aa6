//! `gitops diff DIR`: drift between a directory and the cluster.

use std::{path::PathBuf, process::ExitCode};

/// Arguments of `gitops diff`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to render and compare.
    pub dir: PathBuf,
}

/// Runs `gitops diff`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    Err(super::not_yet("diff", 7, "the drift diff"))
}
