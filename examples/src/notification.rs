//! Flux's notification API: `Provider` and `Alert` (`notification.toolkit.fluxcd.io/v1beta3`)
//! feed a `gitops-events` [`Dispatcher`] behind the event endpoint the other controllers post
//! to; `Receiver` (`notification.toolkit.fluxcd.io/v1`) gets its `status.webhookPath` and is
//! served, and an accepted webhook sets `reconcile.fluxcd.io/requestedAt` on its resources
//! (those its CEL `resourceFilter` accepts, when it has one).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use futures::StreamExt as _;
use gitops_events::{
    Alert as CompiledAlert, AlertSpec as EventsAlertSpec, Dispatcher, Event, ProviderConfig,
    ProviderOptions, ProviderType, ReceiverConfig, ReceiverType, ReconcileRequest,
    ReconcileTrigger, ResourceRef as EventsResourceRef, TriggerError, build_notifier,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use kube::{Client, CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{self, Condition, LocalObjectReference};

/// `Provider.spec` (v1beta3).
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "notification.toolkit.fluxcd.io",
    version = "v1beta3",
    kind = "Provider",
    plural = "providers",
    namespaced,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSpec {
    /// The provider type (`generic`, `generic-hmac`, `slack`, `msteams`, `github`, ...).
    #[serde(rename = "type")]
    pub type_: String,
    /// Deprecated in v1beta3; accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "meta::duration_schema")]
    pub interval: Option<String>,
    /// The channel (Slack, Discord, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The bot user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The HTTP(S) address (or the Secret's `address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The timeout of one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "meta::duration_schema")]
    pub timeout: Option<String>,
    /// A proxy URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// A Secret with `address`, `token`, `username`, `password`, `headers`, `proxy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// A Secret with `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<LocalObjectReference>,
    /// Stop sending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// `Alert.spec` (v1beta3).
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "notification.toolkit.fluxcd.io",
    version = "v1beta3",
    kind = "Alert",
    plural = "alerts",
    namespaced,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AlertSpec {
    /// The provider in the same namespace.
    pub provider_ref: LocalObjectReference,
    /// `info` or `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_severity: Option<String>,
    /// Which objects' events match.
    pub event_sources: Vec<CrossNamespaceObjectReference>,
    /// Regexes a message must match one of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inclusion_list: Option<Vec<String>>,
    /// Metadata added to every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_metadata: Option<BTreeMap<String, String>>,
    /// Regexes dropping a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusion_list: Option<Vec<String>>,
    /// Deprecated summary, added as metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Stop matching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// An object (or `*` with labels) an Alert or Receiver refers to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrossNamespaceObjectReference {
    /// API version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind.
    pub kind: String,
    /// Name, or `*`.
    pub name: String,
    /// Namespace (default: the referrer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels when the name is `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

/// `Receiver.spec` (v1).
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "notification.toolkit.fluxcd.io",
    version = "v1",
    kind = "Receiver",
    plural = "receivers",
    namespaced,
    status = "ReceiverStatus",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverSpec {
    /// `generic`, `generic-hmac`, `github`, `gitlab`, `bitbucket`, `harbor`, `dockerhub`,
    /// `quay`, `gcr`, `nexus`, `acr`, `cdevents`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Deprecated; accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "meta::duration_schema")]
    pub interval: Option<String>,
    /// Event types to accept (empty: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// What to reconcile.
    pub resources: Vec<CrossNamespaceObjectReference>,
    /// A CEL expression returning a bool, evaluated for each resource of an accepted webhook
    /// with the resource as `res` (`apiVersion`, `kind`, `metadata`) and the JSON request body
    /// as `req`: only resources it accepts are asked to reconcile. An expression that does not
    /// compile makes the Receiver not Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_filter: Option<String>,
    /// The Secret whose `token` secures the webhook.
    pub secret_ref: LocalObjectReference,
    /// Stop serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// `Receiver.status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverStatus {
    /// The last generation reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// `/hook/<sha256(token+name+namespace)>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_path: Option<String>,
    /// The last `reconcile.fluxcd.io/requestedAt` value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

/// The current dispatcher, rebuilt whenever Providers or Alerts change.
#[derive(Clone, Default)]
pub struct EventHub {
    current: Arc<RwLock<Option<Dispatcher>>>,
    alerts: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub").finish_non_exhaustive()
    }
}

impl EventHub {
    /// How many Alerts the current dispatcher serves.
    pub fn alerts(&self) -> usize {
        self.alerts.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn replace(&self, dispatcher: Dispatcher, alerts: usize) {
        let old = self
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .replace(dispatcher);
        self.alerts
            .store(alerts, std::sync::atomic::Ordering::SeqCst);
        if let Some(old) = old {
            tokio::spawn(async move { old.shutdown().await });
        }
    }

    /// Dispatches one event; `false` when it was dropped as a duplicate.
    pub fn dispatch(&self, event: &Event) -> bool {
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(d) => !d.dispatch(event).rate_limited,
            None => true,
        }
    }

    /// Sends what is queued and stops the current dispatcher.
    pub async fn shutdown(&self) {
        let current = self
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(d) = current {
            d.shutdown().await;
        }
    }
}

/// The event endpoint (`POST /`, any path): what notification-controller serves on `:9090`.
pub fn event_router(hub: EventHub) -> axum::Router {
    async fn handle(State(hub): State<EventHub>, body: Bytes) -> axum::response::Response {
        match serde_json::from_slice::<Event>(&body) {
            Ok(event) => {
                if hub.dispatch(&event) {
                    StatusCode::ACCEPTED.into_response()
                } else {
                    StatusCode::TOO_MANY_REQUESTS.into_response()
                }
            }
            Err(e) => (StatusCode::BAD_REQUEST, format!("invalid event: {e}\n")).into_response(),
        }
    }
    axum::Router::new()
        .route("/", axum::routing::post(handle))
        .route("/{*rest}", axum::routing::post(handle))
        .with_state(hub)
}

async fn secret_data(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(s)) => Ok(s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()),
        Ok(None) => Err(format!("Secret '{namespace}/{name}' not found")),
        Err(e) => Err(format!("reading Secret '{namespace}/{name}': {e}")),
    }
}

/// The notifier configuration of a Provider, with its Secrets read.
pub async fn provider_config(
    client: &Client,
    provider: &Provider,
) -> Result<ProviderConfig, String> {
    let namespace = provider.namespace().unwrap_or_default();
    let spec = &provider.spec;
    let provider_type: ProviderType = spec
        .type_
        .parse()
        .map_err(|e| format!("Provider '{namespace}/{}': {e}", provider.name_any()))?;
    let mut config = ProviderConfig::new(provider_type, spec.address.clone().unwrap_or_default());
    if let Some(channel) = &spec.channel {
        config = config.with_channel(channel.clone());
    }
    if let Some(username) = &spec.username {
        config = config.with_username(username.clone());
    }
    config.uid = provider.uid().unwrap_or_default();
    config.http.timeout = spec
        .timeout
        .as_deref()
        .and_then(|t| meta::parse_duration(t).ok());
    config.http.proxy = spec.proxy.clone().map(Into::into);
    if let Some(secret_ref) = &spec.secret_ref {
        let data = secret_data(client, &namespace, &secret_ref.name).await?;
        let text = |k: &str| {
            data.get(k)
                .map(|v| String::from_utf8_lossy(v).trim().to_string())
        };
        if let Some(address) = text("address") {
            config.address = address;
        }
        if let Some(token) = text("token") {
            config = config.with_token(token);
        }
        if let Some(username) = text("username") {
            config = config.with_username(username);
        }
        if let Some(password) = text("password") {
            config = config.with_password(password);
        }
        if let Some(proxy) = text("proxy") {
            config.http.proxy = Some(proxy.into());
        }
        if let Some(headers) = text("headers") {
            let map: BTreeMap<String, String> = serde_saphyr::from_str(&headers).map_err(|e| {
                format!("Secret '{namespace}/{}' key headers: {e}", secret_ref.name)
            })?;
            for (k, v) in map {
                config = config.with_header(k, v);
            }
        }
    }
    if let Some(cert_ref) = &spec.cert_secret_ref {
        let data = secret_data(client, &namespace, &cert_ref.name).await?;
        config.http.ca_pem = data.get("ca.crt").cloned();
    }
    Ok(config)
}

/// Builds a dispatcher from the current Providers and Alerts, and counts the Alerts it
/// serves (with their Provider). Providers or Alerts that are invalid are left out (and
/// logged).
pub async fn build_dispatcher(
    client: &Client,
    providers: &[Arc<Provider>],
    alerts: &[Arc<Alert>],
) -> (Dispatcher, usize) {
    let mut builder = Dispatcher::builder();
    let mut count = 0;
    let mut served = std::collections::HashSet::new();
    for provider in providers {
        if provider.spec.suspend == Some(true) {
            continue;
        }
        let key = format!(
            "{}/{}",
            provider.namespace().unwrap_or_default(),
            provider.name_any()
        );
        match provider_config(client, provider).await {
            Ok(config) => match build_notifier(&config) {
                Ok(notifier) => {
                    served.insert(key.clone());
                    builder = builder.provider(key, notifier, ProviderOptions::default());
                }
                Err(error) => tracing::warn!(provider = %key, %error, "building the provider"),
            },
            Err(error) => tracing::warn!(provider = %key, %error, "reading the provider"),
        }
    }
    for alert in alerts {
        let namespace = alert.namespace().unwrap_or_default();
        let mut value = match serde_json::to_value(&alert.spec) {
            Ok(v) => v,
            Err(_) => continue,
        };
        let provider_key = format!("{namespace}/{}", alert.spec.provider_ref.name);
        let has_provider = served.contains(&provider_key);
        value["providerRef"]["name"] = provider_key.into();
        let spec: EventsAlertSpec = match serde_json::from_value(value) {
            Ok(s) => s,
            Err(error) => {
                tracing::warn!(alert = %alert.name_any(), %error, "reading the alert");
                continue;
            }
        };
        match CompiledAlert::from_spec(&namespace, alert.name_any(), &spec) {
            Ok(compiled) => {
                count += usize::from(has_provider && alert.spec.suspend != Some(true));
                builder = builder.alert(compiled);
            }
            Err(error) => tracing::warn!(alert = %alert.name_any(), %error, "compiling the alert"),
        }
    }
    (builder.build(), count)
}

/// Keeps `hub`'s dispatcher in step with the cluster's Providers and Alerts until the watches
/// end.
pub async fn sync_dispatcher(client: Client, hub: EventHub, config: watcher::Config) {
    let (provider_store, provider_writer) = reflector::store::<Provider>();
    let (alert_store, alert_writer) = reflector::store::<Alert>();
    let providers = watcher(Api::<Provider>::all(client.clone()), config.clone())
        .default_backoff()
        .reflect(provider_writer)
        .map(|_| ())
        .boxed();
    let alerts = watcher(Api::<Alert>::all(client.clone()), config)
        .default_backoff()
        .reflect(alert_writer)
        .map(|_| ())
        .boxed();
    let mut changes = futures::stream::select(providers, alerts);
    while changes.next().await.is_some() {
        let (dispatcher, alerts) =
            build_dispatcher(&client, &provider_store.state(), &alert_store.state()).await;
        hub.replace(dispatcher, alerts);
    }
}

/// The served receivers, rebuilt whenever Receivers change.
#[derive(Clone)]
pub struct ReceiverHub {
    router: Arc<RwLock<axum::Router>>,
    trigger: Arc<dyn ReconcileTrigger>,
    filters: Filters,
}

/// The compiled `resourceFilter`s, by Receiver namespace and name.
type Filters = Arc<RwLock<HashMap<(String, String), ResourceFilter>>>;

/// A compiled `Receiver.spec.resourceFilter` (Flux's CEL filter).
#[derive(Clone)]
pub struct ResourceFilter {
    expression: String,
    program: Arc<cel::Program>,
}

impl std::fmt::Debug for ResourceFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ResourceFilter")
            .field(&self.expression)
            .finish()
    }
}

impl ResourceFilter {
    /// Compiles `expression`.
    pub fn compile(expression: &str) -> Result<Self, String> {
        let program = cel::Program::compile(expression)
            .map_err(|e| format!("invalid CEL expression in spec.resourceFilter: {e}"))?;
        Ok(Self {
            expression: expression.to_string(),
            program: Arc::new(program),
        })
    }

    /// Whether the resource `res` passes, for the request body `req`; an expression that fails
    /// or gives something other than a bool is an error.
    pub fn accepts(
        &self,
        res: &serde_json::Value,
        req: &serde_json::Value,
    ) -> Result<bool, String> {
        let mut context = cel::Context::default();
        context
            .add_variable("res", res)
            .map_err(|e| format!("resourceFilter: the resource as CEL: {e}"))?;
        context
            .add_variable("req", req)
            .map_err(|e| format!("resourceFilter: the request body as CEL: {e}"))?;
        match self.program.execute(&context) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "resourceFilter {:?} must return a bool, got {other:?}",
                self.expression
            )),
            Err(e) => Err(format!("resourceFilter {:?} failed: {e}", self.expression)),
        }
    }
}

tokio::task_local! {
    /// The body of the webhook being handled, for `resourceFilter`'s `req`.
    static REQUEST_BODY: Bytes;
}

/// The resource as a filter sees it: `apiVersion`, `kind` and `metadata`.
fn filter_view(object: &DynamicObject) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": object.types.as_ref().map(|t| t.api_version.clone()).unwrap_or_default(),
        "kind": object.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default(),
        "metadata": serde_json::to_value(&object.metadata).unwrap_or_default(),
    })
}

impl std::fmt::Debug for ReceiverHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverHub").finish_non_exhaustive()
    }
}

impl ReceiverHub {
    /// A hub whose accepted webhooks annotate resources through `client`.
    pub fn new(client: Client) -> Self {
        let filters = Filters::default();
        let trigger: Arc<dyn ReconcileTrigger> = Arc::new(AnnotateTrigger {
            client,
            filters: filters.clone(),
        });
        Self {
            router: Arc::new(RwLock::new(gitops_events::receiver::router(
                Vec::new(),
                trigger.clone(),
                RECEIVER_BODY_LIMIT,
            ))),
            trigger,
            filters,
        }
    }

    /// The router serving `/hook/<digest>` for the current receivers.
    pub fn router(&self) -> axum::Router {
        let hub = self.clone();
        axum::Router::new().fallback(move |request: axum::extract::Request| {
            let router = hub.router.read().unwrap_or_else(|e| e.into_inner()).clone();
            async move {
                use tower::ServiceExt as _;
                // The body is kept for the resource filters (`req`), then handed on.
                let (parts, body) = request.into_parts();
                let Ok(bytes) = axum::body::to_bytes(body, RECEIVER_BODY_LIMIT).await else {
                    return (StatusCode::PAYLOAD_TOO_LARGE, "payload too large").into_response();
                };
                let request = axum::extract::Request::from_parts(
                    parts,
                    axum::body::Body::from(bytes.clone()),
                );
                match REQUEST_BODY.scope(bytes, router.oneshot(request)).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        })
    }
}

const RECEIVER_BODY_LIMIT: usize = 3 * 1024 * 1024;

/// Sets `reconcile.fluxcd.io/requestedAt` on the resources of an accepted webhook.
struct AnnotateTrigger {
    client: Client,
    filters: Filters,
}

#[async_trait::async_trait]
impl ReconcileTrigger for AnnotateTrigger {
    async fn reconcile(&self, request: ReconcileRequest) -> Result<(), TriggerError> {
        let now = meta::now_rfc3339();
        let filter = self
            .filters
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(
                request.receiver_namespace.clone(),
                request.receiver_name.clone(),
            ))
            .cloned();
        // `req`: the JSON body (an empty map when the body is not JSON).
        let body = filter.as_ref().map(|_| {
            REQUEST_BODY
                .try_with(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .ok()
                .flatten()
                .unwrap_or_else(|| serde_json::json!({}))
        });
        for resource in &request.resources {
            let (group, version) = match resource.api_version.split_once('/') {
                Some((g, v)) => (g.to_string(), v.to_string()),
                None => (String::new(), resource.api_version.clone()),
            };
            let gvk = kube::api::GroupVersionKind::gvk(&group, &version, &resource.kind);
            let (api_resource, _) = kube::discovery::pinned_kind(&self.client, &gvk)
                .await
                .map_err(|e| TriggerError(format!("resolving {}: {e}", resource.kind)))?;
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), &resource.namespace, &api_resource);
            let objects: Vec<DynamicObject> = if resource.name == "*" {
                let selector = resource
                    .match_labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                api.list(&ListParams::default().labels(&selector))
                    .await
                    .map_err(|e| TriggerError(format!("listing {}: {e}", resource.kind)))?
                    .items
            } else if filter.is_some() {
                // The filter reads the object.
                vec![api.get(&resource.name).await.map_err(|e| {
                    TriggerError(format!(
                        "getting {}/{}/{}: {e}",
                        resource.kind, resource.namespace, resource.name
                    ))
                })?]
            } else {
                let mut placeholder = DynamicObject::new(&resource.name, &api_resource);
                placeholder.metadata.namespace = Some(resource.namespace.clone());
                vec![placeholder]
            };
            let mut names = Vec::with_capacity(objects.len());
            for mut object in objects {
                if let (Some(filter), Some(req)) = (&filter, &body) {
                    if object.types.is_none() {
                        object.types = Some(kube::api::TypeMeta {
                            api_version: resource.api_version.clone(),
                            kind: resource.kind.clone(),
                        });
                    }
                    let accepted = filter
                        .accepts(&filter_view(&object), req)
                        .map_err(TriggerError)?;
                    if !accepted {
                        tracing::debug!(resource = %object.name_any(), "filtered out by resourceFilter");
                        continue;
                    }
                }
                names.push(object.name_any());
            }
            let patch = serde_json::json!({"metadata": {"annotations": {meta::RECONCILE_REQUEST_ANNOTATION: now}}});
            for name in names {
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| {
                        TriggerError(format!(
                            "annotating {}/{}/{name}: {e}",
                            resource.kind, resource.namespace
                        ))
                    })?;
            }
        }
        Ok(())
    }
}

/// Serves the cluster's Receivers through `hub` and writes their status until the watch ends.
pub async fn sync_receivers(client: Client, hub: ReceiverHub, config: watcher::Config) {
    let (store, writer) = reflector::store::<Receiver>();
    let mut changes = watcher(Api::<Receiver>::all(client.clone()), config)
        .default_backoff()
        .reflect(writer)
        .boxed();
    while changes.next().await.is_some() {
        let mut configs = Vec::new();
        let mut filters = HashMap::new();
        for receiver in store.state() {
            match receiver_config(&client, &receiver).await {
                Ok(Some((config, filter))) => {
                    let path = config.webhook_path();
                    write_receiver_status(&client, &receiver, Ok(path)).await;
                    configs.push(config);
                    if let Some(filter) = filter {
                        filters.insert(
                            (
                                receiver.namespace().unwrap_or_default(),
                                receiver.name_any(),
                            ),
                            filter,
                        );
                    }
                }
                Ok(None) => {}
                Err(message) => write_receiver_status(&client, &receiver, Err(message)).await,
            }
        }
        *hub.filters.write().unwrap_or_else(|e| e.into_inner()) = filters;
        let router =
            gitops_events::receiver::router(configs, hub.trigger.clone(), RECEIVER_BODY_LIMIT);
        *hub.router.write().unwrap_or_else(|e| e.into_inner()) = router;
    }
}

async fn receiver_config(
    client: &Client,
    receiver: &Receiver,
) -> Result<Option<(ReceiverConfig, Option<ResourceFilter>)>, String> {
    if receiver.spec.suspend == Some(true) {
        return Ok(None);
    }
    let namespace = receiver.namespace().unwrap_or_default();
    let filter = match receiver.spec.resource_filter.as_deref() {
        Some(expression) if !expression.trim().is_empty() => {
            Some(ResourceFilter::compile(expression)?)
        }
        _ => None,
    };
    let receiver_type: ReceiverType = receiver.spec.type_.parse().map_err(|e| format!("{e}"))?;
    let data = secret_data(client, &namespace, &receiver.spec.secret_ref.name).await?;
    let token = data
        .get("token")
        .map(|t| String::from_utf8_lossy(t).trim().to_string())
        .ok_or_else(|| {
            format!(
                "Secret '{namespace}/{}' has no 'token' key",
                receiver.spec.secret_ref.name
            )
        })?;
    let mut config = ReceiverConfig::new(&namespace, receiver.name_any(), receiver_type, token);
    config.events = receiver.spec.events.clone().unwrap_or_default();
    config.resources = receiver
        .spec
        .resources
        .iter()
        .map(|r| EventsResourceRef {
            api_version: r.api_version.clone().unwrap_or_default(),
            kind: r.kind.clone(),
            name: r.name.clone(),
            namespace: r.namespace.clone().unwrap_or_else(|| namespace.clone()),
            match_labels: r.match_labels.clone().unwrap_or_default(),
        })
        .collect();
    Ok(Some((config, filter)))
}

async fn write_receiver_status(
    client: &Client,
    receiver: &Receiver,
    outcome: Result<String, String>,
) {
    let namespace = receiver.namespace().unwrap_or_default();
    let generation = receiver.metadata.generation;
    let mut status = receiver.status.clone().unwrap_or_default();
    let before = status.clone();
    match &outcome {
        Ok(path) => {
            let message = format!("Receiver initialized for path: {path}");
            meta::set_condition(
                &mut status.conditions,
                meta::READY,
                true,
                "Succeeded",
                &message,
                generation,
            );
            status.webhook_path = Some(path.clone());
        }
        Err(message) => {
            meta::set_condition(
                &mut status.conditions,
                meta::READY,
                false,
                "ReconciliationFailed",
                message,
                generation,
            );
            status.webhook_path = None;
        }
    }
    status.observed_generation = generation;
    if let Some(requested) = receiver
        .annotations()
        .get(meta::RECONCILE_REQUEST_ANNOTATION)
    {
        status.last_handled_reconcile_at = Some(requested.clone());
    }
    // Conditions keep their transition time, so an unchanged outcome writes nothing.
    let same = |a: &ReceiverStatus, b: &ReceiverStatus| {
        a.webhook_path == b.webhook_path
            && a.observed_generation == b.observed_generation
            && a.last_handled_reconcile_at == b.last_handled_reconcile_at
            && a.conditions
                .iter()
                .map(|c| (&c.status, &c.reason, &c.message))
                .eq(b
                    .conditions
                    .iter()
                    .map(|c| (&c.status, &c.reason, &c.message)))
    };
    if same(&before, &status) {
        return;
    }
    let api: Api<Receiver> = Api::namespaced(client.clone(), &namespace);
    let patch = serde_json::json!({ "status": status });
    if let Err(error) = api
        .patch_status(
            &receiver.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::warn!(receiver = %receiver.name_any(), %error, "writing the Receiver status");
    }
}

#[cfg(test)]
mod filter_tests {
    use super::*;

    #[test]
    fn a_filter_reads_the_resource_and_the_request() {
        let filter = ResourceFilter::compile(
            "res.metadata.name == req.repository && res.kind == 'GitRepository'",
        )
        .expect("compiles");
        let res = serde_json::json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "app"}});
        assert_eq!(
            filter.accepts(&res, &serde_json::json!({"repository": "app"})),
            Ok(true)
        );
        assert_eq!(
            filter.accepts(&res, &serde_json::json!({"repository": "other"})),
            Ok(false)
        );
        let labels = ResourceFilter::compile(
            "has(res.metadata.labels) && res.metadata.labels['team'] in req.teams",
        )
        .expect("compiles");
        let labelled = serde_json::json!({"kind": "GitRepository", "metadata": {"name": "x", "labels": {"team": "a"}}});
        assert_eq!(
            labels.accepts(&labelled, &serde_json::json!({"teams": ["a", "b"]})),
            Ok(true)
        );
        assert_eq!(
            labels.accepts(&res, &serde_json::json!({"teams": ["a"]})),
            Ok(false)
        );
    }

    #[test]
    fn bad_expressions_and_non_bool_results_are_errors() {
        assert!(ResourceFilter::compile("res.metadata.name ==").is_err());
        let not_bool = ResourceFilter::compile("res.metadata.name").expect("compiles");
        let err = not_bool
            .accepts(
                &serde_json::json!({"metadata": {"name": "app"}}),
                &serde_json::json!({}),
            )
            .expect_err("a string is not a bool");
        assert!(err.contains("must return a bool"), "{err}");
    }
}
