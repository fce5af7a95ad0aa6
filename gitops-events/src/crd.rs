//! Flux's `Provider` (notification.toolkit.fluxcd.io/v1beta3) and `Receiver`
//! (notification.toolkit.fluxcd.io/v1) specs, and how their secrets fill a
//! [`ProviderConfig`] or [`ReceiverConfig`], so a controller can serve existing Flux objects.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http::Secret;
use crate::providers::{ProviderConfig, ProviderType};
use crate::receiver::{ReceiverConfig, ReceiverType, ResourceRef};

/// What turning a spec into a configuration can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The type is not one this crate implements.
    #[error("{object}: unsupported type {kind:?}")]
    UnsupportedType {
        /// `Provider/<ns>/<name>` or `Receiver/<ns>/<name>`.
        object: String,
        /// The type.
        kind: String,
    },
    /// A field does not parse.
    #[error("{object}: field {field}: {reason}")]
    Field {
        /// `Provider/<ns>/<name>` or `Receiver/<ns>/<name>`.
        object: String,
        /// The field (`spec.timeout`, `secret key headers`, …).
        field: String,
        /// Why.
        reason: String,
    },
    /// A required value is missing.
    #[error("{object}: {what} is required")]
    Missing {
        /// `Provider/<ns>/<name>` or `Receiver/<ns>/<name>`.
        object: String,
        /// What is missing.
        what: String,
    },
}

/// A reference to a secret in the same namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalObjectReference {
    /// The secret's name.
    pub name: String,
}

/// `Provider.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSpec {
    /// The provider type.
    #[serde(rename = "type")]
    pub provider_type: String,
    /// Channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Timeout, a Go duration (`20s` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Proxy URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Secret with `address`, `token`, `username`, `password`, `proxy`, `headers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Secret with `ca.crt` (or the legacy `caFile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<LocalObjectReference>,
    /// Suspended providers send nothing.
    #[serde(default)]
    pub suspend: bool,
    /// CEL expression for the commit-status key (not evaluated by this crate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_status_expr: Option<String>,
}

/// Parses a Go duration (`1h2m3.5s`, `500ms`, `20s`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * factor;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

fn text(
    object: &str,
    key: &str,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<Option<String>, SpecError> {
    data.get(key)
        .map(|v| {
            String::from_utf8(v.clone()).map_err(|_| SpecError::Field {
                object: object.to_string(),
                field: format!("secret key {key}"),
                reason: "not UTF-8".into(),
            })
        })
        .transpose()
        .map(|o| o.map(|s| s.trim_end_matches('\n').to_string()))
}

impl ProviderSpec {
    /// The configuration for `Provider/<namespace>/<name>` with UID `uid`, its `secretRef`
    /// data and its `certSecretRef` data, with Flux's precedence (secret values override
    /// spec values).
    pub fn to_config(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        secret: Option<&BTreeMap<String, Vec<u8>>>,
        cert_secret: Option<&BTreeMap<String, Vec<u8>>>,
    ) -> Result<ProviderConfig, SpecError> {
        let object = format!("Provider/{namespace}/{name}");
        let provider_type: ProviderType =
            self.provider_type
                .parse()
                .map_err(|_| SpecError::UnsupportedType {
                    object: object.clone(),
                    kind: self.provider_type.clone(),
                })?;
        if self
            .commit_status_expr
            .as_deref()
            .is_some_and(|e| !e.is_empty())
        {
            // Silently using the default key would post statuses under keys the user did not
            // ask for.
            return Err(SpecError::Field {
                object,
                field: "spec.commitStatusExpr".into(),
                reason: "CEL expressions are not supported; set ProviderConfig::commit_status"
                    .into(),
            });
        }
        let mut config =
            ProviderConfig::new(provider_type, self.address.clone().unwrap_or_default());
        config.channel = self.channel.clone();
        config.username = self.username.clone();
        config.uid = uid.to_string();
        config.http.proxy = self.proxy.clone().map(Secret::new);
        config.http.timeout = Some(match &self.timeout {
            Some(t) => parse_go_duration(t).ok_or_else(|| SpecError::Field {
                object: object.clone(),
                field: "spec.timeout".into(),
                reason: format!("{t:?} is not a duration"),
            })?,
            None => crate::providers::DEFAULT_PROVIDER_TIMEOUT,
        });
        if let Some(data) = secret {
            if let Some(v) = text(&object, "address", data)? {
                config.address = v;
            }
            if let Some(v) = text(&object, "token", data)? {
                config.token = Some(Secret::new(v));
            }
            if let Some(v) = text(&object, "username", data)? {
                config.username = Some(v);
            }
            if let Some(v) = text(&object, "password", data)? {
                config.password = Some(Secret::new(v));
            }
            if let Some(v) = text(&object, "proxy", data)? {
                config.http.proxy = Some(Secret::new(v));
            }
            if let Some(v) = text(&object, "headers", data)? {
                let headers: BTreeMap<String, String> =
                    serde_saphyr::from_str(&v).map_err(|e| SpecError::Field {
                        object: object.clone(),
                        field: "secret key headers".into(),
                        reason: format!("not a YAML map of strings: {e}"),
                    })?;
                config.headers = headers
                    .into_iter()
                    .map(|(k, v)| (k, Secret::new(v)))
                    .collect();
            }
        }
        if let Some(data) = cert_secret {
            let ca = data
                .get("ca.crt")
                .or_else(|| data.get("caFile"))
                .ok_or_else(|| SpecError::Missing {
                    object: object.clone(),
                    what: "certSecretRef key ca.crt".into(),
                })?;
            config.http.ca_pem = Some(ca.clone());
        }
        if config.address.is_empty() && provider_type != ProviderType::Telegram {
            return Err(SpecError::Missing {
                object,
                what: "an address (spec.address or secret key address)".into(),
            });
        }
        Ok(config)
    }
}

/// `Receiver.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverSpec {
    /// The receiver type.
    #[serde(rename = "type")]
    pub receiver_type: String,
    /// Event types to accept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// What to reconcile.
    #[serde(default)]
    pub resources: Vec<ResourceRef>,
    /// Secret with `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Suspended receivers answer nothing.
    #[serde(default)]
    pub suspend: bool,
}

impl ReceiverSpec {
    /// The configuration for `Receiver/<namespace>/<name>` with its secret's data.
    pub fn to_config(
        &self,
        namespace: &str,
        name: &str,
        secret: &BTreeMap<String, Vec<u8>>,
    ) -> Result<ReceiverConfig, SpecError> {
        let object = format!("Receiver/{namespace}/{name}");
        let receiver_type: ReceiverType =
            self.receiver_type
                .parse()
                .map_err(|_| SpecError::UnsupportedType {
                    object: object.clone(),
                    kind: self.receiver_type.clone(),
                })?;
        let token = text(&object, "token", secret)?.ok_or_else(|| SpecError::Missing {
            object: object.clone(),
            what: "secret key token".into(),
        })?;
        let mut config = ReceiverConfig::new(namespace, name, receiver_type, token);
        config.events = self.events.clone();
        config.resources = self.resources.clone();
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("20s"), Some(Duration::from_secs(20)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("abc"), None);
    }

    #[test]
    fn provider_yaml_and_secret() {
        let spec: ProviderSpec = serde_saphyr::from_str(
            "type: slack\nchannel: general\naddress: https://hooks.slack.com/old\ntimeout: 45s\nsecretRef:\n  name: slack-url\n",
        )
        .unwrap();
        let secret = BTreeMap::from([
            (
                "address".to_string(),
                b"https://hooks.slack.com/services/new".to_vec(),
            ),
            ("token".to_string(), b"xoxb-1\n".to_vec()),
            ("headers".to_string(), b"X-A: one\nX-B: two\n".to_vec()),
        ]);
        let cert = BTreeMap::from([("ca.crt".to_string(), b"PEM".to_vec())]);
        let c = spec
            .to_config("flux-system", "slack", "uid-1", Some(&secret), Some(&cert))
            .unwrap();
        assert_eq!(c.provider_type, ProviderType::Slack);
        assert_eq!(c.address, "https://hooks.slack.com/services/new");
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("xoxb-1"));
        assert_eq!(c.channel.as_deref(), Some("general"));
        assert_eq!(c.http.timeout, Some(Duration::from_secs(45)));
        assert_eq!(c.headers.len(), 2);
        assert_eq!(c.http.ca_pem.as_deref(), Some(&b"PEM"[..]));
        assert_eq!(c.uid, "uid-1");

        let bad = ProviderSpec {
            provider_type: "carrier-pigeon".into(),
            ..Default::default()
        };
        let err = bad
            .to_config("ns", "p", "", None, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Provider/ns/p") && err.contains("carrier-pigeon"),
            "{err}"
        );
        let cel = ProviderSpec {
            provider_type: "github".into(),
            address: Some("https://github.com/o/r".into()),
            commit_status_expr: Some("event.involvedObject.name".into()),
            ..Default::default()
        };
        let err = cel
            .to_config("ns", "p", "", None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("commitStatusExpr"), "{err}");
        let no_addr = ProviderSpec {
            provider_type: "generic".into(),
            ..Default::default()
        };
        assert!(no_addr.to_config("ns", "p", "", None, None).is_err());
    }

    #[test]
    fn receiver_yaml_and_secret() {
        let spec: ReceiverSpec = serde_saphyr::from_str(
            "type: github\nevents: [\"ping\", \"push\"]\nresources:\n  - apiVersion: source.toolkit.fluxcd.io/v1\n    kind: GitRepository\n    name: webapp\nsecretRef:\n  name: webhook-token\n",
        )
        .unwrap();
        let secret = BTreeMap::from([("token".to_string(), b"tok".to_vec())]);
        let c = spec.to_config("flux-system", "gh", &secret).unwrap();
        assert_eq!(c.receiver_type, ReceiverType::GitHub);
        assert_eq!(c.events, ["ping", "push"]);
        assert_eq!(c.resources[0].kind, "GitRepository");
        assert_eq!(
            c.webhook_path(),
            crate::receiver::webhook_path("tok", "gh", "flux-system")
        );
        assert!(
            spec.to_config("flux-system", "gh", &BTreeMap::new())
                .is_err()
        );
    }
}
