//! `gitops build DIR`: build a kustomization the way `kubectl kustomize` does, in-process,
//! optionally followed by Flux's post-build variable substitution.

use std::io::Write;
use std::{path::PathBuf, process::ExitCode};

use std::collections::BTreeMap;

use gitops_render::flux;
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
    /// Flux post-build substitution: a variable `KEY=VALUE` (wins over --substitute-from).
    #[arg(long = "substitute", value_name = "KEY=VALUE")]
    pub substitute: Vec<String>,
    /// Flux post-build substitution: variables from a `.env` file (later files win).
    #[arg(long = "substitute-from", value_name = "FILE.env")]
    pub substitute_from: Vec<PathBuf>,
    /// Fail when a `${var}` has no value and no default (Flux's strict substitution).
    #[arg(long)]
    pub strict_substitute: bool,
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
    let mut from = Vec::new();
    for f in &args.substitute_from {
        let text = std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", f.display()))?;
        from.push(flux::parse_env_file(&text));
    }
    let mut inline = BTreeMap::new();
    for kv in &args.substitute {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--substitute {kv:?} is not KEY=VALUE"))?;
        inline.insert(k.to_string(), v.to_string());
    }
    let substituting = !from.is_empty() || !inline.is_empty() || args.strict_substitute;
    let mut built = match build(&args.dir, &opts) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("Error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if substituting {
        let vars = flux::merge_vars(&from, &inline);
        if let Err(e) = flux::substitute(&mut built.resources, &vars, args.strict_substitute) {
            eprintln!("Error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    }
    for w in &built.warnings {
        eprintln!("{w}");
    }
    let out = built.to_yaml();
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}
