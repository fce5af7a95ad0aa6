//! `gitops template RELEASE CHART`: render a chart in-process, printing what `helm template`
//! prints (Helm 3.17.3), byte for byte.

use std::io::Write;
use std::{path::PathBuf, process::ExitCode};

use gitops_render::helm::values::{SetKind, merge_maps, parse_set};
use gitops_render::helm::{HelmError, RenderOptions, Value, read_values_file, template};

/// Arguments of `gitops template`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The release name.
    pub release: String,
    /// The chart directory or archive (.tgz).
    pub chart: PathBuf,
    /// A values file (may be repeated; later files win).
    #[arg(short = 'f', long = "values")]
    pub values: Vec<PathBuf>,
    /// Set a value on the command line (`a.b=c,d[0]=e`).
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// Set a string value on the command line.
    #[arg(long = "set-string")]
    pub set_string: Vec<String>,
    /// Set a value from a file (`key=path`).
    #[arg(long = "set-file")]
    pub set_file: Vec<String>,
    /// Set a JSON value (`key=json`).
    #[arg(long = "set-json")]
    pub set_json: Vec<String>,
    /// The release namespace.
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
    /// The Kubernetes version for `.Capabilities.KubeVersion`.
    #[arg(long = "kube-version")]
    pub kube_version: Option<String>,
    /// Extra API versions for `.Capabilities.APIVersions` (may be repeated).
    #[arg(short = 'a', long = "api-versions")]
    pub api_versions: Vec<String>,
    /// Print the CRDs from `crds/` first.
    #[arg(long = "include-crds")]
    pub include_crds: bool,
    /// Leave test hooks out.
    #[arg(long = "skip-tests")]
    pub skip_tests: bool,
}

fn user_values(args: &Args) -> Result<Value, HelmError> {
    let mut base = Value::new_map();
    for f in &args.values {
        let v = read_values_file(f)?;
        base = merge_maps(&base, &v);
    }
    for s in &args.set_json {
        parse_set(s, &base, SetKind::Json)?;
    }
    for s in &args.set {
        parse_set(s, &base, SetKind::Typed)?;
    }
    for s in &args.set_string {
        parse_set(s, &base, SetKind::String)?;
    }
    for s in &args.set_file {
        let (k, path) = s.split_once('=').ok_or_else(|| {
            HelmError::Values(format!(
                "failed parsing --set-file data: key {s:?} has no value"
            ))
        })?;
        let content = std::fs::read_to_string(path).map_err(|e| HelmError::Io {
            path: PathBuf::from(path),
            source: e,
        })?;
        parse_set(&format!("{k}={content}"), &base, SetKind::Literal)?;
    }
    Ok(base)
}

fn run_inner(args: &Args) -> Result<(String, Vec<String>), HelmError> {
    let values = user_values(args)?;
    let kube_version = match &args.kube_version {
        Some(v) if v.starts_with('v') => v.clone(),
        Some(v) => format!("v{v}"),
        None => gitops_render::helm::DEFAULT_KUBE_VERSION.to_string(),
    };
    let opts = RenderOptions {
        release_name: args.release.clone(),
        namespace: args.namespace.clone(),
        kube_version,
        api_versions: args.api_versions.clone(),
        include_crds: args.include_crds,
        skip_tests: args.skip_tests,
        values,
        ..RenderOptions::default()
    };
    let rendered = template(&args.chart, &opts)?;
    Ok((rendered.to_helm_output(), rendered.warnings))
}

/// Runs `gitops template`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Deeply nested include/tpl chains recurse; give the renderer a generous stack.
    let handle = std::thread::Builder::new()
        .name("helm-template".into())
        .stack_size(512 * 1024 * 1024)
        .spawn(move || run_inner(&args).map_err(|e| e.to_string()))?;
    let result = handle
        .join()
        .map_err(|_| anyhow::anyhow!("the renderer thread panicked"))?;
    match result {
        Ok((out, warnings)) => {
            for w in warnings {
                eprintln!("WARNING: {w}");
            }
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(out.as_bytes())?;
            stdout.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("Error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
