//! `gitops notify`: send one event through one provider.

use std::process::ExitCode;

/// Arguments of `gitops notify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The provider type (generic, slack, msteams, …).
    #[arg(long = "type")]
    pub provider: String,
    /// The provider address.
    #[arg(long)]
    pub address: String,
}

/// Runs `gitops notify`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    Err(super::not_yet("notify", 8, "the notification providers"))
}
