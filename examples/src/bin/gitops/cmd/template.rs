//! `gitops template RELEASE CHART`: helm template.

use std::{path::PathBuf, process::ExitCode};

/// Arguments of `gitops template`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The release name.
    pub release: String,
    /// The chart directory or archive.
    pub chart: PathBuf,
}

/// Runs `gitops template`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    Err(super::not_yet("template", 5, "the Helm chart engine"))
}
