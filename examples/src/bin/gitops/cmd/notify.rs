//! `gitops notify`: send one event through one provider, to test a provider's configuration.
//!
//! Exits 0 when the provider accepted the event, 1 with the provider's answer when it did
//! not. Secrets can come from the environment (`GITOPS_NOTIFY_TOKEN`,
//! `GITOPS_NOTIFY_PASSWORD`) so they stay out of shell history; they are never printed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use gitops_events::{
    Event, ObjectReference, ProviderConfig, ProviderType, RetryPolicy, Secret, Severity,
    build_notifier,
};

/// Arguments of `gitops notify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The provider type (generic, generic-hmac, slack, msteams, discord, rocket, googlechat,
    /// telegram, matrix, webex, pagerduty, opsgenie, alertmanager, grafana, datadog, sentry,
    /// github, gitlab, gitea, bitbucket, bitbucketserver, azuredevops).
    #[arg(long = "type")]
    pub provider: String,
    /// The provider address (webhook URL, API URL, repository URL or DSN).
    #[arg(long)]
    pub address: String,
    /// The provider token.
    #[arg(long, env = "GITOPS_NOTIFY_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// The channel (Slack channel, Telegram chat, Matrix/Webex room, Sentry environment).
    #[arg(long)]
    pub channel: Option<String>,
    /// The username.
    #[arg(long)]
    pub username: Option<String>,
    /// The password (basic auth for Alertmanager, Grafana, Bitbucket Server).
    #[arg(long, env = "GITOPS_NOTIFY_PASSWORD", hide_env_values = true)]
    pub password: Option<Secret>,
    /// The event severity.
    #[arg(long, default_value = "info", value_parser = ["info", "error"])]
    pub severity: String,
    /// The event reason, in UpperCamelCase.
    #[arg(long, default_value = "ReconciliationSucceeded")]
    pub reason: String,
    /// The event message.
    #[arg(long)]
    pub message: String,
    /// The involved object, `Kind/namespace/name`.
    #[arg(long)]
    pub object: String,
    /// The object's apiVersion (guessed from Flux kinds when omitted).
    #[arg(long)]
    pub api_version: Option<String>,
    /// The revision (`main@sha1:<hex>`), required by commit-status providers.
    #[arg(long)]
    pub revision: Option<String>,
    /// Extra metadata, `key=value` (repeatable).
    #[arg(long = "metadata", value_name = "KEY=VALUE")]
    pub metadata: Vec<String>,
    /// Extra request headers for generic providers, `Name=value` (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    pub headers: Vec<String>,
    /// The Provider UID, whose first segment ends commit-status keys.
    #[arg(long, default_value = "")]
    pub provider_uid: String,
    /// The HMAC hash of generic-hmac (sha256 or sha512).
    #[arg(long, default_value = "sha256")]
    pub hmac: String,
    /// An API base replacing a provider's fixed public endpoint (Bitbucket Cloud, Telegram).
    #[arg(long)]
    pub api_base: Option<String>,
    /// A PEM file with the CA certificates to trust instead of the system roots.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// A proxy URL.
    #[arg(long, env = "GITOPS_NOTIFY_PROXY", hide_env_values = true)]
    pub proxy: Option<Secret>,
    /// Request timeout in seconds.
    #[arg(long, default_value_t = 15)]
    pub timeout: u64,
    /// Retries on connection errors, timeouts, 429 and 5xx answers.
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
}

/// The apiVersion of a Flux kind, so the revision lands under the right metadata group.
fn flux_api_version(kind: &str) -> &'static str {
    match kind {
        "Kustomization" => "kustomize.toolkit.fluxcd.io/v1",
        "HelmRelease" => "helm.toolkit.fluxcd.io/v2",
        "GitRepository" | "OCIRepository" | "HelmRepository" | "HelmChart" | "Bucket" => {
            "source.toolkit.fluxcd.io/v1"
        }
        "ImageRepository" | "ImagePolicy" | "ImageUpdateAutomation" => "image.toolkit.fluxcd.io/v1",
        _ => "",
    }
}

fn key_value(s: &str, what: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("{what} {s:?} is not KEY=VALUE"),
    }
}

fn build(args: &Args) -> anyhow::Result<(ProviderConfig, Event, RetryPolicy)> {
    let provider_type: ProviderType = args.provider.parse()?;
    let mut config = ProviderConfig::new(provider_type, args.address.clone());
    config.token = args.token.clone();
    config.password = args.password.clone();
    config.channel = args.channel.clone();
    config.username = args.username.clone();
    config.uid = args.provider_uid.clone();
    config.api_base = args.api_base.clone();
    config.hmac = args.hmac.parse().map_err(anyhow::Error::msg)?;
    config.http.timeout = Some(Duration::from_secs(args.timeout));
    config.http.proxy = args.proxy.clone();
    if let Some(path) = &args.ca_file {
        config.http.ca_pem =
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?);
    }
    for h in &args.headers {
        let (k, v) = key_value(h, "--header")?;
        config.headers.insert(k, Secret::new(v));
    }

    let parts: Vec<&str> = args.object.split('/').collect();
    let [kind, namespace, name] = parts.as_slice() else {
        bail!("--object {:?} is not Kind/namespace/name", args.object);
    };
    let mut object = ObjectReference::new(*kind, *namespace, *name);
    object.api_version = args
        .api_version
        .clone()
        .unwrap_or_else(|| flux_api_version(kind).to_string());
    let severity: Severity = args.severity.parse()?;
    let mut event = Event::new(object, severity, args.reason.clone(), args.message.clone())
        .with_reporting_controller("gitops-notify");
    if let Some(rev) = &args.revision {
        event = event.with_revision(rev.clone());
    }
    for m in &args.metadata {
        let (k, v) = key_value(m, "--metadata")?;
        let key = event.group_key(&k);
        event.metadata.insert(key, v);
    }
    let retry = RetryPolicy {
        max_retries: args.retries,
        min_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(10),
    };
    Ok((config, gitops_events::alert::for_provider(&event), retry))
}

/// Runs `gitops notify`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (config, event, retry) = build(&args)?;
    let notifier = build_notifier(&config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (result, attempts) =
        runtime.block_on(retry.run(gitops_events::NotifyError::is_retryable, || {
            notifier.send(&event)
        }));
    match result {
        Ok(()) => {
            println!(
                "{}: event about {} sent ({attempts} attempt(s))",
                config.provider_type, event.involved_object
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("{err} ({attempts} attempt(s))");
            Ok(ExitCode::from(1))
        }
    }
}
