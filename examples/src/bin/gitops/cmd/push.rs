//! `gitops push artifact`: push a directory as a Flux OCI artifact.

use std::process::ExitCode;

/// What to push.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Push a directory to `oci://HOST/REPO` as a Flux artifact.
    Artifact {
        /// The `oci://` URL.
        url: String,
    },
}

/// Runs `gitops push`.
pub fn run(_command: Command) -> anyhow::Result<ExitCode> {
    Err(super::not_yet("push artifact", 9, "the OCI push"))
}
