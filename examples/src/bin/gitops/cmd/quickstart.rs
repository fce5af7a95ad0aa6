//! `gitops quickstart`: the whole pipeline on an embedded test cluster (or a real one).

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use gitops_examples::quickstart::{self, QuickstartOptions};

/// Arguments of `gitops quickstart`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run against a real cluster instead of the embedded test cluster (the Git server and the
    /// controllers still run on this machine).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

/// Runs `gitops quickstart`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let options = QuickstartOptions {
        kubeconfig: args.kubeconfig,
        timeout: None,
    };
    let mut stdout = std::io::stdout();
    runtime.block_on(quickstart::run(options, &mut stdout))?;
    Ok(ExitCode::SUCCESS)
}
