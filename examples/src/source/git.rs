//! Flux's `GitRepository` (`source.toolkit.fluxcd.io/v1`) and its controller: acquire the
//! repository with [`gitops_source::GitSource`] into the artifact store served over HTTP, and
//! publish the artifact in `status.artifact`.

use std::sync::Arc;
use std::time::Duration;

use gitops_source::{GitAuth, GitReference, GitSource, ProxySettings, Source as _, SourceError};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ArtifactStatus, Failure, KindContext, SourceContext, SourceControllerError, SourceObject,
    collect_garbage, drive, duration, impl_source_status, last_artifact, object_ref,
    report_failure, report_ready, secret_data, start_status,
};
use crate::meta::{self, Condition, LocalObjectReference};

/// `GitRepository.spec`.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "source.toolkit.fluxcd.io",
    version = "v1",
    kind = "GitRepository",
    plural = "gitrepositories",
    shortname = "gitrepo",
    namespaced,
    status = "GitRepositoryStatus",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositorySpec {
    /// The repository URL (`http`, `https`, `ssh`).
    #[schemars(regex(pattern = r"^(http|https|ssh)://.*$"))]
    pub url: String,
    /// A Secret with credentials (`username`/`password`, `bearerToken`, `identity`/`known_hosts`,
    /// `ca.crt`, `tls.crt`/`tls.key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// How often to check the repository.
    #[schemars(schema_with = "meta::duration_schema")]
    pub interval: String,
    /// The limit of one Git operation (default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "meta::duration_schema")]
    pub timeout: Option<String>,
    /// The reference to check out (default: the remote HEAD, Flux defaults to `master`).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "ref")]
    pub reference: Option<GitRepositoryRef>,
    /// Ignore patterns (gitignore syntax), replacing the default exclusions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: Option<String>,
    /// Stop reconciling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Fetch submodules, recursively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurse_submodules: Option<bool>,
    /// Only these directories end up in the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparse_checkout: Option<Vec<String>>,
    /// A Secret with `address` (and optional `username`/`password`) of a proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalObjectReference>,
    /// The OIDC provider for Git authentication; only `generic` (the Secret's credentials)
    /// is supported by this controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "git_provider_schema")]
    pub provider: Option<String>,
    /// Commit signature verification (accepted, not supported: the object stalls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::opaque_object_schema")]
    pub verify: Option<serde_json::Value>,
    /// Artifacts of other GitRepositories to include (accepted, not supported: the object
    /// stalls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "include_schema")]
    pub include: Option<Vec<serde_json::Value>>,
}

fn include_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    })
}

fn git_provider_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    super::string_default_schema("generic", Some(&["generic", "azure", "github"]))
}

/// `GitRepository.spec.ref`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GitRepositoryRef {
    /// A branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// A tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// A semver range over the tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    /// A full reference name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// `GitRepository.status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositoryStatus {
    /// The last generation reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled, ArtifactInStorage, FetchFailed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last artifact stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactStatus>,
    /// The ignore patterns of the last artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_ignore: Option<String>,
    /// Whether the last artifact includes submodules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_recurse_submodules: Option<bool>,
    /// The sparse checkout of the last artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_sparse_checkout: Option<Vec<String>>,
    /// The last `reconcile.fluxcd.io/requestedAt` value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

/// Runs the GitRepository controller until the stream ends (on shutdown of `api`'s watches).
pub(crate) async fn run(
    ctx: Arc<SourceContext>,
    api: Api<GitRepository>,
    config: watcher::Config,
    concurrency: u16,
) {
    super::run_controller(ctx, api, config, concurrency, |obj, ctx| {
        drive(obj, ctx, reconcile_once)
    })
    .await;
}

impl SourceObject for GitRepository {
    const KIND: &'static str = "GitRepository";
    type Status = GitRepositoryStatus;
    fn suspended(&self) -> bool {
        self.spec.suspend == Some(true)
    }
    fn status_or_default(&self) -> GitRepositoryStatus {
        self.status.clone().unwrap_or_default()
    }
}

impl_source_status!(GitRepositoryStatus);

/// The acquisition settings a GitRepository spec asks for, with the credentials of its Secret.
async fn git_source(client: &Client, repo: &GitRepository) -> Result<GitSource, Failure> {
    let namespace = repo.namespace().unwrap_or_default();
    let object = object_ref(repo)?;
    let spec = &repo.spec;
    super::refuse_unsupported(&[
        ("verify", spec.verify.is_some()),
        (
            "include",
            spec.include.as_ref().is_some_and(|i| !i.is_empty()),
        ),
        (
            "provider",
            spec.provider.as_deref().is_some_and(|p| p != "generic"),
        ),
    ])?;
    let mut source = GitSource::new(spec.url.clone(), object);
    if let Some(r) = &spec.reference {
        source.reference = GitReference {
            branch: r.branch.clone(),
            tag: r.tag.clone(),
            semver: r.semver.clone(),
            name: r.name.clone(),
            commit: r.commit.clone(),
        };
    }
    source.ignore = spec.ignore.clone();
    source.sparse_checkout = spec.sparse_checkout.clone().unwrap_or_default();
    source.recurse_submodules = spec.recurse_submodules.unwrap_or(false);
    source.timeout =
        duration("timeout", spec.timeout.as_deref())?.unwrap_or(Duration::from_secs(60));
    if let Some(secret_ref) = &spec.secret_ref {
        let data = secret_data(client, &namespace, &secret_ref.name).await?;
        let get = |k: &str| data.get(k).cloned();
        let text = |k: &str| get(k).map(|v| String::from_utf8_lossy(&v).into_owned());
        source.auth = GitAuth {
            basic: text("username").zip(text("password")),
            bearer_token: text("bearerToken"),
            ca_pem: get("ca.crt").or_else(|| get("caFile")),
            client_identity_pem: get("tls.crt").zip(get("tls.key")),
            ssh_private_key: get("identity"),
            ssh_passphrase: if get("identity").is_some() {
                text("password")
            } else {
                None
            },
            known_hosts: get("known_hosts"),
        };
    }
    if let Some(proxy_ref) = &spec.proxy_secret_ref {
        let data = secret_data(client, &namespace, &proxy_ref.name).await?;
        let text = |k: &str| data.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
        let Some(address) = text("address").filter(|a| !a.is_empty()) else {
            return Err(Failure::retry(
                meta::FETCH_FAILED,
                "AuthenticationFailed",
                format!(
                    "invalid proxy secret '{namespace}/{}': key 'address' is missing",
                    proxy_ref.name
                ),
            ));
        };
        source.proxy = Some(ProxySettings {
            address,
            basic: text("username").zip(text("password")),
        });
    }
    Ok(source)
}

/// One reconcile of a GitRepository, measured (`gotk_reconcile_duration_seconds`,
/// `gotk_suspend_status`): the finalizer, suspend, then the acquisition. Called alone, a
/// failure is retried after the context's minimum delay (the controller run by
/// [`run`](super::run) backs off over consecutive failures).
pub async fn reconcile(
    repo: Arc<GitRepository>,
    ctx: Arc<SourceContext>,
) -> Result<Action, SourceControllerError> {
    drive(repo, Arc::new(KindContext::new(ctx)), reconcile_once).await
}

async fn reconcile_once(
    repo: Arc<GitRepository>,
    ctx: Arc<KindContext>,
) -> Result<Action, SourceControllerError> {
    let interval = meta::parse_duration(&repo.spec.interval).unwrap_or(Duration::from_secs(60));
    let mut status = start_status(&*repo);
    let source = match git_source(&ctx.client, &repo).await {
        Ok(s) => s,
        Err(failure) => return report_failure(&ctx, &*repo, status, failure).await,
    };
    let last = last_artifact(&ctx.store, status.artifact.as_ref());
    match source.acquire(last.as_ref(), &ctx.store).await {
        Ok(acquired) => {
            let is_new = acquired.is_new();
            let artifact = acquired.into_artifact();
            let message = format!("stored artifact for revision '{}'", artifact.revision);
            status.artifact = Some(ArtifactStatus::from_artifact(&artifact));
            status.observed_ignore = repo.spec.ignore.clone();
            status.observed_recurse_submodules = repo.spec.recurse_submodules;
            status.observed_sparse_checkout = repo.spec.sparse_checkout.clone();
            if is_new {
                collect_garbage(&ctx.store, &source.object, &artifact);
            }
            let revision = artifact.revision.to_string();
            report_ready(
                &ctx,
                &*repo,
                status,
                super::SUCCEEDED,
                &message,
                is_new.then_some(revision.as_str()),
                Some(interval),
            )
            .await
        }
        Err(error) => {
            let failure =
                Failure::retry(meta::FETCH_FAILED, error.reason(), failure_message(&error));
            report_failure(&ctx, &*repo, status, failure).await
        }
    }
}

fn failure_message(error: &SourceError) -> String {
    error.to_string()
}
