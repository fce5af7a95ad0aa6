//! Flux's `GitRepository` (`source.toolkit.fluxcd.io/v1`) and its controller: acquire the
//! repository with [`gitops_source::GitSource`] into an [`ArtifactStore`] served over HTTP, and
//! publish the artifact in `status.artifact`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use gitops_events::Severity;
use gitops_source::{
    Acquired, Artifact, ArtifactStore, GitAuth, GitReference, GitSource, ObjectRef, Source as _,
    SourceError,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::events::EventRecorder;
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

/// Flux's `Artifact` status shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactStatus {
    /// Path relative to the store root (`gitrepository/<ns>/<name>/<digest>.tar.gz`).
    pub path: String,
    /// Where the artifact is served.
    pub url: String,
    /// The source revision (`main@sha1:<hex>`).
    pub revision: String,
    /// The archive digest (`sha256:<hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// When the archive was written.
    pub last_update_time: String,
    /// Archive size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Metadata of the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl ArtifactStatus {
    /// The status shape of a stored artifact.
    pub fn from_artifact(artifact: &Artifact) -> Self {
        ArtifactStatus {
            path: artifact.path.to_string_lossy().into_owned(),
            url: artifact
                .url
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            revision: artifact.revision.to_string(),
            digest: Some(artifact.digest.to_string()),
            last_update_time: artifact.last_update_time.to_string(),
            size: i64::try_from(artifact.size).ok(),
            metadata: (!artifact.metadata.is_empty()).then(|| artifact.metadata.clone()),
        }
    }

    /// The stored artifact this status describes, when every field parses.
    pub fn to_artifact(&self) -> Option<Artifact> {
        Some(Artifact {
            revision: self.revision.parse().ok()?,
            digest: self.digest.as_deref()?.parse().ok()?,
            size: u64::try_from(self.size?).ok()?,
            path: PathBuf::from(&self.path),
            url: url::Url::parse(&self.url).ok(),
            metadata: self.metadata.clone().unwrap_or_default(),
            last_update_time: self.last_update_time.parse().ok()?,
        })
    }
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

/// Why a GitRepository reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum GitRepositoryError {
    /// A Kubernetes API request failed.
    #[error("{what} of GitRepository {namespace}/{name}: {source}")]
    Kube {
        /// What was being done.
        what: &'static str,
        /// The object's namespace.
        namespace: String,
        /// The object's name.
        name: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

/// What the GitRepository controller needs.
pub struct GitRepositoryContext {
    /// The cluster.
    pub client: Client,
    /// Where artifacts are written (with the base URL of its HTTP server).
    pub store: ArtifactStore,
    /// Where events go.
    pub events: EventRecorder,
    /// The delay before retrying a failed reconcile (Flux retries with backoff; this is fixed).
    pub retry_interval: Duration,
}

/// Runs the GitRepository controller until the stream ends (on shutdown of `api`'s watches).
pub async fn run(
    ctx: Arc<GitRepositoryContext>,
    api: Api<GitRepository>,
    config: watcher::Config,
    concurrency: u16,
) {
    Controller::new(api, config)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "GitRepository reconcile");
            }
        })
        .await;
}

fn error_policy(
    _object: Arc<GitRepository>,
    _error: &GitRepositoryError,
    ctx: Arc<GitRepositoryContext>,
) -> Action {
    Action::requeue(ctx.retry_interval)
}

/// The acquisition settings a GitRepository spec asks for, with the credentials of its Secret.
async fn git_source(
    client: &Client,
    repo: &GitRepository,
) -> Result<GitSource, (String, String, bool)> {
    let namespace = repo.namespace().unwrap_or_default();
    let name = repo.name_any();
    let object = ObjectRef::new("GitRepository", &namespace, &name)
        .map_err(|e| ("InvalidName".to_string(), e.to_string(), true))?;
    let spec = &repo.spec;
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
    source.timeout = match &spec.timeout {
        Some(t) => meta::parse_duration(t)
            .map_err(|e| ("InvalidTimeout".to_string(), e.to_string(), true))?,
        None => Duration::from_secs(60),
    };
    if let Some(secret_ref) = &spec.secret_ref {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let secret = secrets.get_opt(&secret_ref.name).await.map_err(|e| {
            (
                "AuthenticationFailed".to_string(),
                format!("reading Secret '{namespace}/{}': {e}", secret_ref.name),
                false,
            )
        })?;
        let Some(secret) = secret else {
            return Err((
                "AuthenticationFailed".to_string(),
                format!("Secret '{namespace}/{}' not found", secret_ref.name),
                false,
            ));
        };
        let data = secret.data.unwrap_or_default();
        let get = |k: &str| data.get(k).map(|v| v.0.clone());
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
    Ok(source)
}

async fn patch_status(
    api: &Api<GitRepository>,
    repo: &GitRepository,
    status: &GitRepositoryStatus,
) -> Result<(), GitRepositoryError> {
    meta::write_status(api, "GitRepository", repo, status, &status.conditions)
        .await
        .map_err(|source| GitRepositoryError::Kube {
            what: "writing the status",
            namespace: repo.namespace().unwrap_or_default(),
            name: repo.name_any(),
            source,
        })
}

/// One reconcile of a GitRepository, measured (`gotk_reconcile_duration_seconds`,
/// `gotk_suspend_status`).
pub async fn reconcile(
    repo: Arc<GitRepository>,
    ctx: Arc<GitRepositoryContext>,
) -> Result<Action, GitRepositoryError> {
    let namespace = repo.namespace().unwrap_or_default();
    let name = repo.name_any();
    let suspended = repo.spec.suspend == Some(true);
    crate::metrics::measure(
        "GitRepository",
        &namespace,
        &name,
        suspended,
        reconcile_once(repo, ctx),
    )
    .await
}

async fn reconcile_once(
    repo: Arc<GitRepository>,
    ctx: Arc<GitRepositoryContext>,
) -> Result<Action, GitRepositoryError> {
    if repo.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = repo.namespace().unwrap_or_default();
    let api: Api<GitRepository> = Api::namespaced(ctx.client.clone(), &namespace);
    let interval = meta::parse_duration(&repo.spec.interval).unwrap_or(Duration::from_secs(60));
    if repo.spec.suspend == Some(true) {
        tracing::debug!(name = %repo.name_any(), "suspended");
        return Ok(Action::await_change());
    }
    let generation = repo.metadata.generation;
    let mut status = repo.status.clone().unwrap_or_default();
    if let Some(requested) = repo.annotations().get(meta::RECONCILE_REQUEST_ANNOTATION) {
        status.last_handled_reconcile_at = Some(requested.clone());
    }

    let source = match git_source(&ctx.client, &repo).await {
        Ok(s) => s,
        Err((reason, message, stalled)) => {
            meta::set_condition(
                &mut status.conditions,
                meta::READY,
                false,
                &reason,
                &message,
                generation,
            );
            if stalled {
                meta::set_condition(
                    &mut status.conditions,
                    meta::STALLED,
                    true,
                    &reason,
                    &message,
                    generation,
                );
                meta::remove_condition(&mut status.conditions, meta::RECONCILING);
                status.observed_generation = generation;
            } else {
                meta::set_condition(
                    &mut status.conditions,
                    meta::RECONCILING,
                    true,
                    "ProgressingWithRetry",
                    &message,
                    generation,
                );
            }
            patch_status(&api, &repo, &status).await?;
            ctx.events
                .record(&*repo, Severity::Error, &reason, &message, None);
            return Ok(if stalled {
                Action::await_change()
            } else {
                Action::requeue(ctx.retry_interval)
            });
        }
    };

    let last = status
        .artifact
        .as_ref()
        .and_then(ArtifactStatus::to_artifact)
        .filter(|a| ctx.store.exists(&a.path));
    match source.acquire(last.as_ref(), &ctx.store).await {
        Ok(acquired) => {
            let is_new = acquired.is_new();
            let artifact = match acquired {
                Acquired::New(a) | Acquired::Unchanged(a) => a,
            };
            let message = format!("stored artifact for revision '{}'", artifact.revision);
            status.artifact = Some(ArtifactStatus::from_artifact(&artifact));
            status.observed_ignore = repo.spec.ignore.clone();
            status.observed_recurse_submodules = repo.spec.recurse_submodules;
            status.observed_sparse_checkout = repo.spec.sparse_checkout.clone();
            status.observed_generation = generation;
            meta::set_condition(
                &mut status.conditions,
                meta::READY,
                true,
                "Succeeded",
                &message,
                generation,
            );
            meta::set_condition(
                &mut status.conditions,
                meta::ARTIFACT_IN_STORAGE,
                true,
                "Succeeded",
                &message,
                generation,
            );
            for gone in [meta::RECONCILING, meta::STALLED, meta::FETCH_FAILED] {
                meta::remove_condition(&mut status.conditions, gone);
            }
            patch_status(&api, &repo, &status).await?;
            if is_new {
                ctx.events.record(
                    &*repo,
                    Severity::Info,
                    "NewArtifact",
                    &message,
                    Some(&artifact.revision.to_string()),
                );
                if let Err(error) = ctx.store.gc(&source.object, Some(&artifact.path)) {
                    tracing::warn!(%error, "garbage-collecting old artifacts");
                }
            }
            Ok(Action::requeue(interval))
        }
        Err(error) => {
            let reason = error.reason();
            let message = failure_message(&error);
            meta::set_condition(
                &mut status.conditions,
                meta::FETCH_FAILED,
                true,
                reason,
                &message,
                generation,
            );
            meta::set_condition(
                &mut status.conditions,
                meta::READY,
                false,
                reason,
                &message,
                generation,
            );
            meta::set_condition(
                &mut status.conditions,
                meta::RECONCILING,
                true,
                "ProgressingWithRetry",
                &message,
                generation,
            );
            patch_status(&api, &repo, &status).await?;
            ctx.events
                .record(&*repo, Severity::Error, reason, &message, None);
            Ok(Action::requeue(ctx.retry_interval.min(interval)))
        }
    }
}

fn failure_message(error: &SourceError) -> String {
    error.to_string()
}
