//! `gitops receive`: run one webhook receiver and print each accepted trigger.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use gitops_events::{
    ReceiverConfig, ReceiverType, ReconcileRequest, ReconcileTrigger, ResourceRef, Secret,
    TriggerError, async_trait,
};

/// Arguments of `gitops receive`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The receiver type (generic, generic-hmac, github, gitlab, bitbucket, harbor, dockerhub,
    /// quay, nexus, gcr, acr, cdevents).
    #[arg(long = "type")]
    pub receiver: String,
    /// The shared token (HMAC key or expected header value).
    #[arg(long, env = "GITOPS_RECEIVER_TOKEN", hide_env_values = true)]
    pub token: Secret,
    /// The receiver's name (part of the webhook path).
    #[arg(long)]
    pub name: String,
    /// The receiver's namespace (part of the webhook path).
    #[arg(long, default_value = "flux-system")]
    pub namespace: String,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:9292")]
    pub addr: String,
    /// Event types to accept (repeatable; all when omitted).
    #[arg(long = "event")]
    pub events: Vec<String>,
    /// Resources to reconcile, `Kind/name` or `Kind/namespace/name` (repeatable).
    #[arg(long = "resource")]
    pub resources: Vec<String>,
    /// The largest accepted body, in bytes.
    #[arg(long, default_value_t = gitops_events::receiver::DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
}

/// Prints each accepted trigger on its own line.
struct PrintTrigger;

#[async_trait]
impl ReconcileTrigger for PrintTrigger {
    async fn reconcile(&self, request: ReconcileRequest) -> Result<(), TriggerError> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{request}")
            .and_then(|_| out.flush())
            .map_err(|e| TriggerError(format!("writing to stdout: {e}")))
    }
}

fn resource(s: &str) -> anyhow::Result<ResourceRef> {
    let parts: Vec<&str> = s.split('/').collect();
    let (kind, namespace, name) = match parts.as_slice() {
        [kind, name] => (*kind, "", *name),
        [kind, namespace, name] => (*kind, *namespace, *name),
        _ => bail!("--resource {s:?} is not Kind/name or Kind/namespace/name"),
    };
    Ok(ResourceRef {
        kind: kind.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        ..Default::default()
    })
}

/// Runs `gitops receive`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let receiver_type: ReceiverType = args.receiver.parse()?;
    let mut receiver = ReceiverConfig::new(
        args.namespace.clone(),
        args.name.clone(),
        receiver_type,
        args.token.clone(),
    );
    receiver.events = args.events.clone();
    receiver.resources = args
        .resources
        .iter()
        .map(|r| resource(r))
        .collect::<anyhow::Result<_>>()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("listening on {}", args.addr))?;
        let local = listener.local_addr()?;
        eprintln!(
            "{receiver_type} receiver {}/{} listening on http://{local}{}",
            args.namespace,
            args.name,
            receiver.webhook_path()
        );
        let router = gitops_events::receiver::router(
            vec![receiver],
            Arc::new(PrintTrigger),
            args.body_limit,
        );
        gitops_events::receiver::serve(listener, router, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving webhooks")?;
        Ok(ExitCode::SUCCESS)
    })
}
