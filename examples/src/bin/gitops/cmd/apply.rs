//! `gitops apply DIR`: server-side apply in stages, optionally pruning and waiting.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use gitops_apply::{
    ApplyOptions, Impersonation, Inventory, Owner, PruneOptions, ReconcileOptions, ResourceManager,
    kube::core::DynamicObject,
};

/// Arguments of `gitops apply`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to render and apply: a kustomization, or plain YAML files (read recursively).
    pub dir: PathBuf,
    /// The kubeconfig of the cluster to apply to (default: KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
    /// The server-side apply field manager.
    #[arg(long, default_value = "gitops")]
    pub field_manager: String,
    /// The owner name written to the owner labels (default: the directory's name).
    #[arg(long)]
    pub owner: Option<String>,
    /// The owner namespace written to the owner labels.
    #[arg(long, default_value = "default")]
    pub owner_namespace: String,
    /// The owner label prefix (`<group>/name`, `<group>/namespace`).
    #[arg(long, default_value = "gitops.toolkit")]
    pub owner_group: String,
    /// Delete objects of the previous inventory that are no longer in DIR.
    #[arg(long, requires = "inventory_file")]
    pub prune: bool,
    /// Where the inventory is kept (Flux's `{"entries":[{"id","v"}]}` JSON); read, then rewritten.
    #[arg(long)]
    pub inventory_file: Option<PathBuf>,
    /// Wait until every applied object is ready (kstatus).
    #[arg(long)]
    pub wait: bool,
    /// Bound for waiting (`90s`, `2m`, `1h`).
    #[arg(long, default_value = "2m", value_parser = super::diff::parse_duration)]
    pub timeout: Duration,
    /// Recreate objects whose change hits an immutable field.
    #[arg(long)]
    pub force: bool,
    /// Impersonate this user (`system:serviceaccount:NS:NAME` for a service account).
    #[arg(long = "as")]
    pub as_user: Option<String>,
}

/// Runs `gitops apply`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let objects = super::diff::read_dir_objects(&args.dir)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(apply(args, objects))
}

fn owner_name(args: &Args) -> String {
    args.owner.clone().unwrap_or_else(|| {
        args.dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "gitops".to_string())
    })
}

fn read_inventory(path: &Path) -> anyhow::Result<Inventory> {
    match std::fs::read_to_string(path) {
        Ok(text) => Inventory::from_json(&text)
            .with_context(|| format!("reading inventory {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Inventory::new()),
        Err(e) => Err(e).with_context(|| format!("reading inventory {}", path.display())),
    }
}

fn write_inventory(path: &Path, inventory: &Inventory) -> anyhow::Result<()> {
    std::fs::write(path, inventory.to_json())
        .with_context(|| format!("writing inventory {}", path.display()))
}

async fn apply(args: Args, objects: Vec<DynamicObject>) -> anyhow::Result<ExitCode> {
    let impersonation = args.as_user.as_ref().map(|name| Impersonation::User {
        name: name.clone(),
        groups: Vec::new(),
    });
    let client = super::diff::client(
        args.kubeconfig.as_deref(),
        args.context.as_deref(),
        impersonation.as_ref(),
    )
    .await?;
    let owner = Owner::new(
        args.field_manager.clone(),
        args.owner_group.clone(),
        owner_name(&args),
        args.owner_namespace.clone(),
    );
    let manager = ResourceManager::new(client, owner);
    let previous = match &args.inventory_file {
        Some(path) => read_inventory(path)?,
        None => Inventory::new(),
    };
    let opts = ReconcileOptions {
        apply: ApplyOptions {
            force: args.force,
            ..ApplyOptions::default()
        },
        prune: args.prune.then(PruneOptions::default),
        wait: args.wait.then_some(args.timeout),
    };
    match manager.reconcile(&objects, &previous, &opts).await {
        Ok(done) => {
            print!("{}", done.change_set);
            if let Some(path) = &args.inventory_file {
                write_inventory(path, &done.inventory)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(failed) => {
            print!("{}", failed.error.partial);
            if let Some(path) = &args.inventory_file {
                write_inventory(path, &failed.inventory)?;
            }
            Err(anyhow::Error::new(failed.error))
        }
    }
}
