//! Incident and observability providers: PagerDuty, Opsgenie, Alertmanager, Grafana, Datadog
//! and Sentry.

use std::collections::BTreeMap;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::json;

use super::{HttpClient, ProviderConfig, basic_auth};
use crate::event::{Event, PROGRESSING_REASON, Severity, reason_words, rfc3339_seconds};
use crate::http::{RedactedUrl, Secret};
use crate::notifier::{Notifier, NotifyError};

/// `kind/name` lower-cased, as Flux names an object in summaries.
fn lower_name(event: &Event) -> String {
    format!(
        "{}/{}",
        event.involved_object.kind, event.involved_object.name
    )
    .to_lowercase()
}

/// `scheme://host[:port]` of a URL as a base URL.
fn origin_url(url: &url::Url) -> Result<url::Url, NotifyError> {
    let mut base = url.clone();
    base.set_path("");
    base.set_query(None);
    base.set_fragment(None);
    Ok(base)
}

fn join(base: &url::Url, path: &str) -> url::Url {
    let mut u = base.clone();
    u.set_path(&format!("{}{}", base.path().trim_end_matches('/'), path));
    u
}

/// `pagerduty`: Events API v2. Errors trigger an incident, other events resolve it (deduped
/// on the object's UID); info events also send a change event. `Progressing` events are
/// skipped. The token is the integration's routing key; requests go to the address's origin.
#[derive(Debug)]
pub struct PagerDuty {
    http: HttpClient,
    base: RedactedUrl,
    routing_key: Secret,
}

impl PagerDuty {
    /// Validates the configuration.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        let url = config.parse_address()?;
        let routing_key = match (&config.token, &config.channel) {
            (Some(t), _) if !t.is_empty() => t.clone(),
            (_, Some(c)) if !c.is_empty() => Secret::new(c.clone()),
            _ => {
                return Err(NotifyError::config(
                    "pagerduty",
                    "a routing key (token or channel) is required",
                ));
            }
        };
        Ok(PagerDuty {
            http: config.client()?,
            base: RedactedUrl(origin_url(&url)?),
            routing_key,
        })
    }
}

#[async_trait]
impl Notifier for PagerDuty {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        if event.has_reason(PROGRESSING_REASON) {
            return Ok(());
        }
        let summary = format!("{}: {}", reason_words(&event.reason), lower_name(event));
        let source = format!("Flux {}", event.reporting_controller);
        let timestamp = rfc3339_seconds::format(&event.timestamp);
        let details = json!({"message": event.message, "metadata": event.metadata});
        let mut v2 = json!({
            "routing_key": self.routing_key.expose(),
            "event_action": "resolve",
            "dedup_key": event.involved_object.uid,
        });
        if event.severity == Severity::Error
            && let Some(m) = v2.as_object_mut()
        {
            m.insert("event_action".into(), json!("trigger"));
            m.insert(
                "payload".into(),
                json!({
                    "summary": summary,
                    "source": source,
                    "severity": "error",
                    "timestamp": timestamp,
                    "component": event.involved_object.name,
                    "group": event.involved_object.kind,
                    "custom_details": details,
                }),
            );
        }
        let req = self
            .http
            .json(Method::POST, join(&self.base, "/v2/enqueue"), &v2)?;
        self.http.send(&req).await?;
        if event.severity == Severity::Info {
            let change = json!({
                "routing_key": self.routing_key.expose(),
                "payload": {
                    "summary": summary,
                    "source": source,
                    "timestamp": timestamp,
                    "custom_details": details,
                },
            });
            let req = self.http.json(
                Method::POST,
                join(&self.base, "/v2/change/enqueue"),
                &change,
            )?;
            self.http.send(&req).await?;
        }
        Ok(())
    }
}

/// `opsgenie`: an alert with `Kind/name` as message, the event message as description and
/// the metadata plus severity as details, authorised with `GenieKey <token>`.
#[derive(Debug)]
pub struct Opsgenie {
    http: HttpClient,
    url: RedactedUrl,
    api_key: Secret,
}

impl Opsgenie {
    /// Validates the configuration.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        Ok(Opsgenie {
            http: config.client()?,
            url: RedactedUrl(config.parse_address()?),
            api_key: config.require_token()?.clone(),
        })
    }
}

#[async_trait]
impl Notifier for Opsgenie {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        let mut details = event.metadata.clone();
        details.insert("severity".into(), event.severity.to_string());
        let payload = json!({
            "message": format!("{}/{}", event.involved_object.kind, event.involved_object.name),
            "description": event.message,
            "details": details,
        });
        let req = self
            .http
            .json(Method::POST, self.url.clone(), &payload)?
            .header(
                "Authorization",
                format!("GenieKey {}", self.api_key.expose()),
            );
        self.http.send(&req).await.map(|_| ())
    }
}

/// Go's `cases.Title(language.Und)` on one word: first letter upper, the rest lower.
fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if c.is_alphanumeric() {
            if start {
                out.extend(c.to_uppercase());
            } else {
                out.extend(c.to_lowercase());
            }
            start = false;
        } else {
            out.push(c);
            start = true;
        }
    }
    out
}

/// `alertmanager`: one firing alert, POSTed as a JSON array to the address (Alertmanager's
/// `/api/v2/alerts`). Labels are the metadata plus `alertname` (`Flux<Kind><Reason>`),
/// severity, reason, kind, name, namespace and reporting controller; `summary` moves to the
/// annotations next to the message. Bearer token or basic auth when configured.
#[derive(Debug)]
pub struct Alertmanager {
    http: HttpClient,
    url: RedactedUrl,
    token: Option<Secret>,
    basic: Option<(String, Secret)>,
}

impl Alertmanager {
    /// Validates the configuration.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        let basic = match (&config.username, &config.password) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Some((u.clone(), p.clone())),
            _ => None,
        };
        Ok(Alertmanager {
            http: config.client()?,
            url: RedactedUrl(config.parse_address()?),
            token: config.token.clone().filter(|t| !t.is_empty()),
            basic,
        })
    }
}

#[async_trait]
impl Notifier for Alertmanager {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        let mut labels = event.metadata.clone();
        let mut annotations = BTreeMap::new();
        annotations.insert("message".to_string(), event.message.clone());
        if let Some(summary) = labels.remove("summary") {
            annotations.insert("summary".to_string(), summary);
        }
        let o = &event.involved_object;
        labels.insert(
            "alertname".into(),
            format!("Flux{}{}", o.kind, title_case(&event.reason)),
        );
        labels.insert("severity".into(), event.severity.to_string());
        labels.insert("reason".into(), event.reason.clone());
        labels.insert("kind".into(), o.kind.clone());
        labels.insert("name".into(), o.name.clone());
        labels.insert("namespace".into(), o.namespace.clone());
        labels.insert(
            "reportingcontroller".into(),
            event.reporting_controller.clone(),
        );
        let payload = json!([{
            "status": "firing",
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339_seconds::format(&event.timestamp),
        }]);
        let mut req = self.http.json(Method::POST, self.url.clone(), &payload)?;
        if let Some(token) = &self.token {
            req = req.header("Authorization", format!("Bearer {}", token.expose()));
        } else if let Some((u, p)) = &self.basic {
            req = req.header("Authorization", basic_auth(u, p.expose()));
        }
        self.http.send(&req).await.map(|_| ())
    }
}

/// `grafana`: an annotation (`/api/annotations/graphite` format) tagged `flux`, the
/// controller, each metadata entry as `key: value` (colons inside become `|`) and the
/// object's kind, name and namespace.
#[derive(Debug)]
pub struct Grafana {
    http: HttpClient,
    url: RedactedUrl,
    token: Option<Secret>,
    basic: Option<(String, Secret)>,
}

impl Grafana {
    /// Validates the configuration.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        let basic = match (&config.username, &config.password) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Some((u.clone(), p.clone())),
            _ => None,
        };
        Ok(Grafana {
            http: config.client()?,
            url: RedactedUrl(config.parse_address()?),
            token: config.token.clone().filter(|t| !t.is_empty()),
            basic,
        })
    }
}

#[async_trait]
impl Notifier for Grafana {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        let o = &event.involved_object;
        let mut tags = vec!["flux".to_string(), event.reporting_controller.clone()];
        for (k, v) in &event.metadata {
            tags.push(format!("{}: {}", k.replace(':', "|"), v.replace(':', "|")));
        }
        tags.push(format!("kind: {}", o.kind));
        tags.push(format!("name: {}", o.name));
        tags.push(format!("namespace: {}", o.namespace));
        let payload = json!({
            "when": event.timestamp.as_second(),
            "text": event.object_title(),
            "tags": tags,
        });
        let mut req = self.http.json(Method::POST, self.url.clone(), &payload)?;
        if let Some(token) = &self.token {
            req = req.header("Authorization", format!("Bearer {}", token.expose()));
        } else if let Some((u, p)) = &self.basic {
            req = req.header("Authorization", basic_auth(u, p.expose()));
        }
        self.http.send(&req).await.map(|_| ())
    }
}

/// `datadog`: an event on `/api/v1/events` of the address's origin, with the API key in
/// `DD-API-KEY`, lower-cased tags (`flux_reporting_controller`, `flux_reason`, `kube_kind`,
/// `kube_name`, `kube_namespace`, metadata) and `source_type_name: fluxcd`.
#[derive(Debug)]
pub struct Datadog {
    http: HttpClient,
    url: RedactedUrl,
    api_key: Secret,
}

impl Datadog {
    /// Validates the configuration.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        let base = origin_url(&config.parse_address()?)?;
        Ok(Datadog {
            http: config.client()?,
            url: RedactedUrl(join(&base, "/api/v1/events")),
            api_key: config.require_token()?.clone(),
        })
    }
}

#[async_trait]
impl Notifier for Datadog {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        let o = &event.involved_object;
        let mut tags = vec![
            format!("flux_reporting_controller:{}", event.reporting_controller),
            format!("flux_reason:{}", event.reason),
            format!("kube_kind:{}", o.kind),
            format!("kube_name:{}", o.name),
            format!("kube_namespace:{}", o.namespace),
        ];
        for (k, v) in &event.metadata {
            tags.push(format!("{k}:{v}"));
        }
        let tags: Vec<String> = tags.into_iter().map(|t| t.to_lowercase()).collect();
        let payload = json!({
            "title": format!("Events from the {} {}/{}", o.kind, o.name, o.namespace),
            "text": event.message,
            "tags": tags,
            "source_type_name": "fluxcd",
            "date_happened": event.timestamp.as_second(),
            "alert_type": match event.severity { Severity::Error => "error", Severity::Info => "info" },
        });
        let req = self
            .http
            .json(Method::POST, self.url.clone(), &payload)?
            .header("Accept", "application/json")
            .header("DD-API-KEY", self.api_key.expose().to_string());
        self.http.send(&req).await.map(|_| ())
    }
}

/// `sentry`: the address is the project DSN (`https://<key>@<host>/<project>`). Errors are
/// sent as error events, other events as transactions (so they show as activity without
/// alerting), both through the envelope endpoint `/api/<project>/envelope/`. The channel
/// is the Sentry environment.
#[derive(Debug)]
pub struct Sentry {
    http: HttpClient,
    url: RedactedUrl,
    dsn_public: Secret,
    public_key: Secret,
    environment: String,
}

impl Sentry {
    /// Validates the DSN.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        let dsn = config.parse_address()?;
        let key = dsn.username().to_string();
        if key.is_empty() {
            return Err(NotifyError::config(
                "sentry",
                "the DSN has no public key (https://<key>@<host>/<project>)",
            ));
        }
        let mut segments: Vec<&str> = dsn
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).collect())
            .unwrap_or_default();
        let project = segments
            .pop()
            .ok_or_else(|| NotifyError::config("sentry", "the DSN has no project id"))?
            .to_string();
        let mut base = dsn.clone();
        // Fails only for cannot-be-a-base URLs, which parse_http_url already rejected.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let prefix = if segments.is_empty() {
            String::new()
        } else {
            format!("/{}", segments.join("/"))
        };
        base.set_path(&format!("{prefix}/api/{project}/envelope/"));
        let mut dsn_public = dsn.clone();
        let _ = dsn_public.set_password(None);
        Ok(Sentry {
            http: config.client()?,
            url: RedactedUrl(base),
            dsn_public: Secret::new(dsn_public.to_string()),
            public_key: Secret::new(key),
            environment: config.channel().to_string(),
        })
    }

    fn event_id(event: &Event) -> String {
        // A stable id per event: a retry does not create a duplicate.
        event.key()[..32].to_string()
    }
}

#[async_trait]
impl Notifier for Sentry {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        let o = &event.involved_object;
        let transaction = format!("{}: {}/{}", o.kind, o.namespace, o.name);
        let timestamp = event.timestamp.as_second();
        let event_id = Self::event_id(event);
        let (item_type, payload) = match event.severity {
            Severity::Error => (
                "event",
                json!({
                    "event_id": event_id,
                    "timestamp": timestamp,
                    "platform": "other",
                    "level": "error",
                    "server_name": event.reporting_controller,
                    "transaction": transaction,
                    "environment": self.environment,
                    "message": event.message,
                    "extra": event.metadata,
                }),
            ),
            Severity::Info => {
                let mut tags: BTreeMap<String, String> = event.metadata.clone();
                tags.insert("flux_involved_object_kind".into(), o.kind.clone());
                tags.insert("flux_involved_object_namespace".into(), o.namespace.clone());
                tags.insert("flux_involved_object_name".into(), o.name.clone());
                tags.insert(
                    "flux_reporting_controller".into(),
                    event.reporting_controller.clone(),
                );
                tags.insert(
                    "flux_reporting_instance".into(),
                    event.reporting_instance.clone(),
                );
                tags.insert("flux_reason".into(), event.reason.clone());
                (
                    "transaction",
                    json!({
                        "event_id": event_id,
                        "type": "transaction",
                        "platform": "other",
                        "transaction": transaction,
                        "environment": self.environment,
                        "message": event.message,
                        "start_timestamp": timestamp,
                        "timestamp": timestamp,
                        "tags": tags,
                        "contexts": {"trace": {
                            "trace_id": event.key()[..32].to_string(),
                            "span_id": event.key()[32..48].to_string(),
                            "op": "event",
                        }},
                        "spans": [],
                    }),
                )
            }
        };
        let payload = serde_json::to_string(&payload).map_err(|source| NotifyError::Encode {
            provider: "sentry".into(),
            source,
        })?;
        let header = json!({"event_id": event_id, "dsn": self.dsn_public.expose()});
        let item = json!({"type": item_type, "length": payload.len()});
        let body = format!("{header}\n{item}\n{payload}\n");
        let req = crate::http::Request {
            method: Method::POST,
            url: self.url.clone(),
            headers: vec![
                (
                    "Content-Type".to_string(),
                    "application/x-sentry-envelope".to_string(),
                ),
                (
                    "X-Sentry-Auth".to_string(),
                    format!(
                        "Sentry sentry_version=7, sentry_client=gitops-events/{}, sentry_key={}",
                        env!("CARGO_PKG_VERSION"),
                        self.public_key.expose()
                    ),
                ),
            ],
            body: body.into_bytes(),
        };
        self.http.send(&req).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_case_like_go_cases_title() {
        assert_eq!(title_case("ReconciliationFailed"), "Reconciliationfailed");
        assert_eq!(title_case("progressing"), "Progressing");
    }
}
