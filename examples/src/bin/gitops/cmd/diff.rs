//! `gitops diff DIR`: drift between a directory and the cluster (exit 0 in sync, 1 drifted,
//! 2 on error, as `kubectl diff`).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use gitops_apply::{
    Action, Impersonation, Owner, ResourceManager,
    kube::{Client, core::DynamicObject},
};

/// Arguments of `gitops diff`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to render and compare: a kustomization, or plain YAML files (read recursively).
    pub dir: PathBuf,
    /// The kubeconfig of the cluster to compare with (default: KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
    /// The server-side apply field manager the dry-run applies as.
    #[arg(long, default_value = "gitops")]
    pub field_manager: String,
}

/// Runs `gitops diff`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let objects = read_dir_objects(&args.dir)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let client = client(args.kubeconfig.as_deref(), args.context.as_deref(), None).await?;
        // Owner labels are part of what apply writes, so the dry-run carries them too.
        let owner_name = args
            .dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "gitops".to_string());
        let owner = Owner::new(
            args.field_manager.clone(),
            "gitops.toolkit",
            owner_name,
            "default",
        );
        let manager = ResourceManager::new(client, owner);
        let diffs = manager.diff(&objects).await?;
        let mut drifted = false;
        for d in &diffs {
            if matches!(d.action, Action::Created | Action::Configured) {
                drifted = true;
                print!("{}", d.diff);
            }
        }
        Ok(if drifted {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// A client from `--kubeconfig` (and `--context`), or from the environment.
pub async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    impersonation: Option<&Impersonation>,
) -> anyhow::Result<Client> {
    Ok(match kubeconfig {
        Some(path) => {
            gitops_apply::client::client_from_kubeconfig_file(path, context, impersonation).await?
        }
        None => gitops_apply::client::default_client(impersonation).await?,
    })
}

/// Renders `dir`: with gitops-render's Kustomize engine when it holds a kustomization
/// (`kustomization.yaml`, `kustomization.yml` or `Kustomization`), else by reading every
/// `*.yaml` / `*.yml` file under it (sorted by path, hidden entries skipped) as a
/// multi-document stream of objects.
pub fn read_dir_objects(dir: &Path) -> anyhow::Result<Vec<DynamicObject>> {
    let is_kustomization = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .any(|name| dir.join(name).is_file());
    if is_kustomization {
        use gitops_render::Renderer as _;
        let rendered = gitops_render::kustomize::KustomizeRenderer::default()
            .render(&gitops_render::RenderInput::new(dir, "."))
            .with_context(|| format!("building the kustomization in {}", dir.display()))?;
        for warning in &rendered.warnings {
            eprintln!("Warning: {warning}");
        }
        return Ok(rendered.objects.into_iter().map(|o| o.object).collect());
    }
    let mut files = Vec::new();
    collect_yaml_files(dir, &mut files)?;
    files.sort();
    let mut objects = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        objects.extend(gitops_apply::yaml::read_objects(
            &text,
            &file.display().to_string(),
        )?);
    }
    Ok(objects)
}

fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading directory {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading directory {}", dir.display()))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", path.display()))?;
        if kind.is_dir() {
            collect_yaml_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Parses a duration as `500ms`, `90s`, `2m`, `1h` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration {text:?}: expected a number"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|e| format!("invalid duration {text:?}: {e}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        total += match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            other => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {other:?} (use ms, s, m, h)"
                ));
            }
        };
    }
    Ok(total)
}
