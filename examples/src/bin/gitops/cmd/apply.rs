//! `gitops apply DIR`: server-side apply in stages.

use std::{path::PathBuf, process::ExitCode};

/// Arguments of `gitops apply`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to render and apply.
    pub dir: PathBuf,
}

/// Runs `gitops apply`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    Err(super::not_yet("apply", 7, "the server-side applier"))
}
