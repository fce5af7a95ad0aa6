//! `gitops receive`: run one webhook receiver.

use std::process::ExitCode;

/// Arguments of `gitops receive`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The receiver type (generic, github, gitlab, …).
    #[arg(long = "type")]
    pub receiver: String,
}

/// Runs `gitops receive`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    Err(super::not_yet("receive", 8, "the webhook receivers"))
}
