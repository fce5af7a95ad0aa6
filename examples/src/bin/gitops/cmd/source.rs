//! `gitops source …`: acquire sources as artifacts, serve a store.

use std::process::ExitCode;

/// The source kinds.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Acquire a Git repository at a reference as an artifact.
    Git {
        /// The repository URL.
        url: String,
    },
    /// Acquire an OCI artifact.
    Oci {
        /// The `oci://` URL.
        url: String,
    },
    /// Acquire a chart from a Helm repository (HTTP or OCI).
    Helm {
        /// The repository URL.
        repo_url: String,
        /// The chart name.
        chart: String,
    },
    /// Acquire an S3-compatible bucket.
    Bucket,
    /// Serve an artifact store over HTTP.
    Serve {
        /// The store directory.
        dir: std::path::PathBuf,
    },
}

/// Runs `gitops source`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    Err(match command {
        Command::Git { .. } => super::not_yet("source git", 3, "the Git source"),
        Command::Serve { .. } => super::not_yet("source serve", 3, "the artifact server"),
        Command::Oci { .. } => super::not_yet("source oci", 9, "the OCI source"),
        Command::Helm { .. } => super::not_yet("source helm", 9, "the Helm chart source"),
        Command::Bucket => super::not_yet("source bucket", 9, "the bucket source"),
    })
}
