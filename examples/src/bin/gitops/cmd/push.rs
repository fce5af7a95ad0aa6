//! `gitops push artifact`: push a directory as a Flux OCI artifact.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use gitops_source::oci::{OciRepositoryUrl, PushOptions, push_artifact};

/// What to push.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Push a directory to `oci://HOST/REPO` as a Flux artifact (as `flux push artifact`);
    /// prints `{"reference","digest"}`.
    Artifact(ArtifactArgs),
}

/// Arguments of `gitops push artifact`.
#[derive(Debug, clap::Args)]
pub struct ArtifactArgs {
    /// The repository, `oci://host[:port]/repo`.
    pub url: String,
    /// The directory to pack.
    #[arg(long)]
    pub path: PathBuf,
    /// `org.opencontainers.image.source`: where the content came from.
    #[arg(long)]
    pub source: String,
    /// `org.opencontainers.image.revision`: the source revision.
    #[arg(long)]
    pub revision: String,
    /// The tag.
    #[arg(long, default_value = "latest")]
    pub tag: String,
    /// An extra manifest annotation `key=value`; repeatable.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// An ignore pattern (gitignore syntax); repeatable; replaces Flux's default exclusions.
    #[arg(long = "ignore-path", value_name = "PATTERN")]
    pub ignore: Vec<String>,
    /// How to reach the registry.
    #[command(flatten)]
    pub registry: super::source::RegistryArgs,
}

/// Runs `gitops push`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::Artifact(args) = command;
    let repo = OciRepositoryUrl::parse(&args.url)?;
    let mut options = PushOptions::new(args.source, args.revision);
    options.tag = args.tag;
    for pair in &args.annotations {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("annotation {pair:?}: expected KEY=VALUE"))?;
        options.annotations.insert(k.to_owned(), v.to_owned());
    }
    if !args.ignore.is_empty() {
        options.ignore = Some(args.ignore.join("\n"));
    }
    options.auth = args.registry.auth(&repo.registry)?;
    options.insecure = args.registry.insecure;
    options.tls.ca_pem = args.registry.ca_pem()?;
    options.tls.client_identity_pem = args.registry.client_identity_pem()?;
    options.proxy = args.registry.proxy();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let pushed = runtime
        .block_on(push_artifact(&args.url, &args.path, &options))
        .map_err(|e| anyhow::anyhow!("{}: {e}", e.reason()))?;
    println!(
        "{}",
        serde_json::json!({"reference": pushed.reference, "digest": pushed.digest.to_string()})
    );
    Ok(ExitCode::SUCCESS)
}
