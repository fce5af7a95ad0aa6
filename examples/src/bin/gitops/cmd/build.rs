//! `gitops build DIR`: build a kustomization the way `kubectl kustomize` does, in-process,
//! optionally followed by Flux's post-build variable substitution.
//!
//! With `--kustomization-file` or `--ignore-paths` it builds DIR as
//! `flux build kustomization --path DIR --dry-run` does: the Flux Kustomization's spec shapes
//! the build (a kustomization file is generated when DIR has none), `.sourceignore` files
//! below DIR and the ignore patterns skip files, and loads are confined to the enclosing Git
//! work tree (what a GitRepository artifact would hold), or to DIR outside one.

use std::io::Write;
use std::{path::PathBuf, process::ExitCode};

use std::collections::BTreeMap;

use anyhow::Context as _;
use gitops_render::flux::{self, FluxKustomization, Substitution};
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
    /// A Flux Kustomization (`kustomize.toolkit.fluxcd.io/v1`) whose spec shapes the build, as
    /// `flux build kustomization --kustomization-file FILE --dry-run`: targetNamespace,
    /// namePrefix, nameSuffix, patches, images, components, commonMetadata and
    /// postBuild.substitute (postBuild.substituteFrom needs a cluster and is skipped, with a
    /// note). DIR is the local checkout of its spec.path.
    #[arg(long, value_name = "FILE")]
    pub kustomization_file: Option<PathBuf>,
    /// Paths to ignore, in .gitignore format, comma-separated (Flux's `--ignore-paths`); with
    /// this or --kustomization-file, the `.sourceignore` files below DIR apply too.
    #[arg(long, value_delimiter = ',', value_name = "PATTERNS")]
    pub ignore_paths: Vec<String>,
}

/// What `--kustomization-file` contributes: the build-shaping spec and postBuild.
struct FluxFile {
    spec: FluxKustomization,
    /// `spec.postBuild` is set (Flux substitutes only then).
    post_build: bool,
    substitute: BTreeMap<String, String>,
    substitute_from: bool,
}

fn read_flux_file(path: &std::path::Path) -> anyhow::Result<FluxFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --kustomization-file {}", path.display()))?;
    let object: serde_json::Value = serde_saphyr::from_str(&text)
        .with_context(|| format!("--kustomization-file {}: not YAML", path.display()))?;
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    if object["kind"] != "Kustomization" || !api_version.starts_with("kustomize.toolkit.fluxcd.io/")
    {
        anyhow::bail!(
            "--kustomization-file {}: expected a Flux Kustomization (kustomize.toolkit.fluxcd.io), found kind {} apiVersion {}",
            path.display(),
            object["kind"],
            object["apiVersion"]
        );
    }
    let spec = object.get("spec").cloned().unwrap_or_default();
    let shaping: FluxKustomization = serde_json::from_value(spec.clone())
        .with_context(|| format!("--kustomization-file {}: spec", path.display()))?;
    let post_build = spec.get("postBuild").filter(|p| !p.is_null());
    let mut substitute = BTreeMap::new();
    if let Some(vars) = post_build.and_then(|p| p.get("substitute")) {
        let vars = vars.as_object().with_context(|| {
            format!(
                "--kustomization-file {}: spec.postBuild.substitute is not a map",
                path.display()
            )
        })?;
        for (k, v) in vars {
            let v = v.as_str().with_context(|| {
                format!(
                    "--kustomization-file {}: spec.postBuild.substitute.{k} is not a string",
                    path.display()
                )
            })?;
            substitute.insert(k.clone(), v.to_string());
        }
    }
    let substitute_from = post_build
        .and_then(|p| p.get("substituteFrom"))
        .and_then(|f| f.as_array())
        .is_some_and(|f| !f.is_empty());
    Ok(FluxFile {
        spec: shaping,
        post_build: post_build.is_some(),
        substitute,
        substitute_from,
    })
}

/// The directory loads are confined to: the Git work tree holding `dir`, or `dir` itself.
fn source_root(dir: &std::path::Path) -> std::path::PathBuf {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(dir)
        .to_path_buf()
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
    let flux_mode = args.kustomization_file.is_some() || !args.ignore_paths.is_empty();
    if flux_mode {
        if args.enable_managedby_label {
            anyhow::bail!(
                "--enable-managedby-label is a kustomize option: not with --kustomization-file or --ignore-paths"
            );
        }
        let file = match &args.kustomization_file {
            Some(path) => Some(read_flux_file(path)?),
            None => None,
        };
        let dir = args
            .dir
            .canonicalize()
            .with_context(|| format!("reading {}", args.dir.display()))?;
        let root = source_root(&dir);
        let rel = dir
            .strip_prefix(&root)
            .expect("the root is an ancestor of the directory")
            .to_path_buf();
        let (spec, post_build, mut vars) = match file {
            Some(f) => {
                if f.substitute_from {
                    eprintln!(
                        "note: spec.postBuild.substituteFrom skipped: it reads ConfigMaps and Secrets from a cluster (use --substitute-from FILE.env)"
                    );
                }
                (f.spec, f.post_build, f.substitute)
            }
            None => (FluxKustomization::default(), false, BTreeMap::new()),
        };
        // The command line wins over the file's postBuild.substitute.
        vars.extend(flux::merge_vars(&from, &inline));
        let substitution = (post_build
            || substituting_flags(&from, &inline, args.strict_substitute))
        .then_some(Substitution {
            vars,
            strict: args.strict_substitute,
        });
        let ignore = args.ignore_paths.join("\n");
        let ignore = (!args.ignore_paths.is_empty()).then_some(ignore.as_str());
        return match spec.build_ignoring(&root, &rel, ignore, substitution.as_ref()) {
            Ok(built) => print_build(&built),
            Err(e) => {
                eprintln!("Error: {e}");
                Ok(ExitCode::FAILURE)
            }
        };
    }
    let substituting = substituting_flags(&from, &inline, args.strict_substitute);
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
    print_build(&built)
}

fn substituting_flags(
    from: &[BTreeMap<String, String>],
    inline: &BTreeMap<String, String>,
    strict: bool,
) -> bool {
    !from.is_empty() || !inline.is_empty() || strict
}

fn print_build(built: &gitops_render::kustomize::Build) -> anyhow::Result<ExitCode> {
    for w in &built.warnings {
        eprintln!("{w}");
    }
    let out = built.to_yaml();
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}
