//! `gitops build DIR`: build a kustomization the way `kubectl kustomize` does, in-process.

use std::io::Write;
use std::{path::PathBuf, process::ExitCode};

use gitops_render::kustomize::{BuildOptions, LoadRestrictor, build};

/// Arguments of `gitops build`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to build (holding a kustomization.yaml).
    pub dir: PathBuf,
    /// kustomize's load restrictor: LoadRestrictionsRootOnly (default) or LoadRestrictionsNone.
    #[arg(long, default_value = "LoadRestrictionsRootOnly")]
    pub load_restrictor: String,
    /// Add the label app.kubernetes.io/managed-by to every object.
    #[arg(long)]
    pub enable_managedby_label: bool,
}

/// Runs `gitops build`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let load_restrictor = match args.load_restrictor.as_str() {
        "LoadRestrictionsRootOnly" | "rootOnly" => LoadRestrictor::RootOnly,
        "LoadRestrictionsNone" | "none" => LoadRestrictor::None,
        other => anyhow::bail!("unknown --load-restrictor {other:?}"),
    };
    let opts = BuildOptions {
        load_restrictor,
        managed_by_label: args.enable_managedby_label,
        ..BuildOptions::default()
    };
    let built = match build(&args.dir, &opts) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("Error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in &built.warnings {
        eprintln!("{w}");
    }
    let out = built.to_yaml();
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}
