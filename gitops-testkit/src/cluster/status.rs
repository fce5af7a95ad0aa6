//! `Status` error bodies shaped like kube-apiserver's (`k8s.io/apimachinery/pkg/api/errors`).

use serde_json::{Value, json};

/// One `details.causes` entry of a `Status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    /// `reason`, e.g. `FieldValueInvalid`.
    pub reason: String,
    /// `message`.
    pub message: String,
    /// `field`, e.g. `spec.selector`.
    pub field: String,
}

/// A failed API call, rendered as a `Status` object with an HTTP code.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code (and `Status.code`).
    pub code: u16,
    /// `Status.reason`.
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    /// `details.name`.
    pub name: Option<String>,
    /// `details.group`.
    pub group: Option<String>,
    /// `details.kind`.
    pub kind: Option<String>,
    /// `details.causes`.
    pub causes: Vec<Cause>,
    /// `details.retryAfterSeconds` (also a `Retry-After` header).
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// `resource` or `resource.group` as the API server prints a qualified resource.
pub fn qualified(resource: &str, group: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

impl ApiError {
    fn base(code: u16, reason: &'static str, message: String) -> Self {
        ApiError {
            code,
            reason,
            message,
            name: None,
            group: None,
            kind: None,
            causes: Vec::new(),
            retry_after: None,
        }
    }

    fn with_details(mut self, name: &str, group: &str, kind: &str) -> Self {
        if !name.is_empty() {
            self.name = Some(name.to_string());
        }
        if !group.is_empty() {
            self.group = Some(group.to_string());
        }
        if !kind.is_empty() {
            self.kind = Some(kind.to_string());
        }
        self
    }

    /// 404 `<resource>[.<group>] "<name>" not found`.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::base(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(resource, group)),
        )
        .with_details(name, group, resource)
    }

    /// 409 `<resource> "<name>" already exists`.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::base(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(resource, group)),
        )
        .with_details(name, group, resource)
    }

    /// 409 optimistic-concurrency conflict.
    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        Self::base(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                qualified(resource, group)
            ),
        )
        .with_details(name, group, resource)
    }

    /// 409 stale resourceVersion.
    pub fn stale(group: &str, resource: &str, name: &str) -> Self {
        Self::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 `<Kind>[.<group>] "<name>" is invalid: ...`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let parts: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let joined = if parts.len() == 1 {
            parts[0].clone()
        } else {
            format!("[{}]", parts.join(", "))
        };
        let mut e = Self::base(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {joined}", qualified(kind, group)),
        )
        .with_details(name, group, kind);
        e.causes = causes;
        e
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::base(400, "BadRequest", message.into())
    }

    /// 403 Forbidden for a request.
    pub fn forbidden(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let msg = if name.is_empty() {
            format!("{} is forbidden: {why}", qualified(resource, group))
        } else {
            format!(
                "{} \"{name}\" is forbidden: {why}",
                qualified(resource, group)
            )
        };
        Self::base(403, "Forbidden", msg).with_details(name, group, resource)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(verb: &str, group: &str, resource: &str) -> Self {
        Self::base(
            405,
            "MethodNotAllowed",
            format!(
                "{verb} is not supported on resources of kind \"{}\"",
                qualified(resource, group)
            ),
        )
        .with_details("", group, resource)
    }

    /// 410 Expired (too old resource version).
    pub fn gone(message: impl Into<String>) -> Self {
        Self::base(410, "Expired", message.into())
    }

    /// 415 UnsupportedMediaType for a patch type.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::base(415, "UnsupportedMediaType", message.into())
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::base(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
        .with_cause("UnexpectedServerResponse", "")
    }

    fn with_cause(mut self, reason: &str, field: &str) -> Self {
        self.causes.push(Cause {
            reason: reason.to_string(),
            message: self.message.clone(),
            field: field.to_string(),
        });
        self
    }

    /// 429 TooManyRequests with `Retry-After`.
    pub fn too_many_requests(retry_after: u64) -> Self {
        let mut e = Self::base(
            429,
            "TooManyRequests",
            "The server has received too many requests and has asked us to try again later"
                .to_string(),
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// A 5xx reason for an injected server error.
    pub fn server_error(code: u16) -> Self {
        let (reason, msg) = match code {
            503 => (
                "ServiceUnavailable",
                "The server is currently unable to handle the request",
            ),
            504 => (
                "Timeout",
                "The server was unable to return a response in the time allotted, but may still be processing the request",
            ),
            _ => (
                "InternalError",
                "An error on the server (\"injected fault\") has prevented the request from succeeding",
            ),
        };
        Self::base(code, reason, msg.to_string())
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        let mut details = serde_json::Map::new();
        if let Some(n) = &self.name {
            details.insert("name".into(), json!(n));
        }
        if let Some(g) = &self.group {
            details.insert("group".into(), json!(g));
        }
        if let Some(k) = &self.kind {
            details.insert("kind".into(), json!(k));
        }
        if !self.causes.is_empty() {
            let causes: Vec<Value> = self
                .causes
                .iter()
                .map(|c| {
                    let mut m = serde_json::Map::new();
                    m.insert("reason".into(), json!(c.reason));
                    m.insert("message".into(), json!(c.message));
                    if !c.field.is_empty() {
                        m.insert("field".into(), json!(c.field));
                    }
                    Value::Object(m)
                })
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if let Some(r) = self.retry_after {
            details.insert("retryAfterSeconds".into(), json!(r));
        }
        if !details.is_empty() {
            v["details"] = Value::Object(details);
        }
        if self.reason.is_empty()
            && let Some(o) = v.as_object_mut()
        {
            o.remove("reason");
        }
        v
    }
}

/// A `FieldValueInvalid` cause.
pub fn invalid_value(field: &str, value: &Value, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: {}: {detail}", go_value(value)),
        field: field.into(),
    }
}

/// A `FieldValueRequired` cause.
pub fn required(field: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired".into(),
        message: if detail.is_empty() {
            "Required value".into()
        } else {
            format!("Required value: {detail}")
        },
        field: field.into(),
    }
}

/// A `FieldValueForbidden` cause.
pub fn forbidden(field: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueForbidden".into(),
        message: format!("Forbidden: {detail}"),
        field: field.into(),
    }
}

/// A `FieldValueNotSupported` cause.
pub fn not_supported(field: &str, value: &Value, supported: &[String]) -> Cause {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    Cause {
        reason: "FieldValueNotSupported".into(),
        message: format!(
            "Unsupported value: {}: supported values: {}",
            go_value(value),
            list.join(", ")
        ),
        field: field.into(),
    }
}

/// Renders a value as field.ErrorList does for simple values (strings quoted).
pub fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_body_matches_the_api_shape() {
        let s = ApiError::not_found("apps", "deployments", "web").to_status();
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["details"]["kind"], "deployments");
        assert_eq!(s["details"]["group"], "apps");
        assert_eq!(s["code"], 404);
        let core = ApiError::not_found("", "configmaps", "c").to_status();
        assert!(core["details"].get("group").is_none());
    }

    #[test]
    fn invalid_joins_several_causes_in_brackets() {
        let e = ApiError::invalid(
            "",
            "ConfigMap",
            "c",
            vec![required("a", ""), forbidden("b", "nope")],
        );
        assert_eq!(
            e.message,
            "ConfigMap \"c\" is invalid: [a: Required value, b: Forbidden: nope]"
        );
    }
}
