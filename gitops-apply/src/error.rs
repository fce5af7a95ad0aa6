//! Errors: what failed, on which object, and what had been done before it failed.

use crate::{changeset::ChangeSet, health::Status, object::ObjectRef};

/// An apply (or prune, or wait) that stopped early: the failure, and the change set of what
/// had been done up to then. It displays as its failure (which names the object and the
/// cause), so it reports no `source` of its own: error chains print each cause once.
#[derive(Debug, thiserror::Error)]
#[error("{failure}")]
pub struct ApplyError {
    /// What failed.
    pub failure: ApplyFailure,
    /// What had been done before the failure, in order.
    pub partial: ChangeSet,
}

impl ApplyError {
    /// An error with the change set so far.
    pub fn new(failure: ApplyFailure, partial: ChangeSet) -> Self {
        Self { failure, partial }
    }

    /// The object the failure is about, when it is about one.
    pub fn object(&self) -> Option<&ObjectRef> {
        self.failure.object()
    }
}

/// What failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyFailure {
    /// An object in the set has no identity.
    #[error(transparent)]
    InvalidObject(#[from] crate::object::ObjectRefError),
    /// The same object appears twice in the set.
    #[error("{object} appears more than once in the set")]
    Duplicate {
        /// The object.
        object: ObjectRef,
    },
    /// API discovery failed.
    #[error("API discovery failed: {source}")]
    Discovery {
        /// The client's error.
        source: kube::Error,
    },
    /// The cluster does not serve the object's kind.
    #[error("{object}: no matches for kind {kind:?} in version {api_version:?}")]
    UnknownKind {
        /// The object.
        object: ObjectRef,
        /// Its kind.
        kind: String,
        /// Its apiVersion.
        api_version: String,
    },
    /// A namespaced object has no namespace.
    #[error("{object}: namespaced kind without metadata.namespace")]
    MissingNamespace {
        /// The object.
        object: ObjectRef,
    },
    /// A request about one object failed.
    #[error("{object}: {operation} failed: {source}")]
    Request {
        /// The object.
        object: ObjectRef,
        /// What was being done: `get`, `dry-run apply`, `apply`, `managed fields takeover`, `delete`.
        operation: &'static str,
        /// The client's error.
        source: kube::Error,
    },
    /// The change hits an immutable field and recreating was not allowed.
    #[error(
        "{object}: immutable field changed ({message}); set force or the kustomize.toolkit.fluxcd.io/force: Enabled annotation to recreate it"
    )]
    Immutable {
        /// The object.
        object: ObjectRef,
        /// The API server's message.
        message: String,
    },
    /// An object could not be encoded.
    #[error("{object}: cannot encode: {source}")]
    Encode {
        /// The object.
        object: ObjectRef,
        /// The encoder's error.
        source: serde_json::Error,
    },
    /// Waiting for objects failed.
    #[error(transparent)]
    Wait(#[from] WaitError),
    /// A drift report could not be rendered.
    #[error(transparent)]
    Diff(#[from] crate::diff::DiffError),
}

impl ApplyFailure {
    /// The object the failure is about, when it is about one.
    pub fn object(&self) -> Option<&ObjectRef> {
        match self {
            ApplyFailure::Duplicate { object }
            | ApplyFailure::UnknownKind { object, .. }
            | ApplyFailure::MissingNamespace { object }
            | ApplyFailure::Request { object, .. }
            | ApplyFailure::Immutable { object, .. }
            | ApplyFailure::Encode { object, .. } => Some(object),
            ApplyFailure::Wait(WaitError::Failed { object, .. })
            | ApplyFailure::Wait(WaitError::Watch { object, .. }) => Some(object),
            _ => None,
        }
    }
}

/// One object that did not become ready, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReady {
    /// The object.
    pub object: ObjectRef,
    /// Its last status.
    pub status: Status,
    /// Its last message.
    pub message: String,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} status: '{}': {}",
            self.object, self.status, self.message
        )
    }
}

/// Why waiting for objects did not end with all of them ready.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The timeout passed; these objects were not ready.
    #[error("timeout waiting for: [{}]", not_ready.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Timeout {
        /// Every object not Current (or, when waiting for deletion, not gone), with its status.
        not_ready: Vec<NotReady>,
    },
    /// An object reached `Failed` (fail-fast).
    #[error("{object} failed: {message}")]
    Failed {
        /// The object.
        object: ObjectRef,
        /// Why.
        message: String,
    },
    /// Watching an object failed.
    #[error("{object}: watch failed: {message}")]
    Watch {
        /// The object.
        object: ObjectRef,
        /// The watcher's error.
        message: String,
    },
}

/// True when an API error says the change hits an immutable field: the API server answers
/// `422 Invalid` with "field is immutable", and CEL rules and webhooks answer with messages
/// such as "is immutable" or "immutable field" (Invalid, Conflict or Forbidden).
pub fn is_immutable_error(err: &kube::Error) -> bool {
    let kube::Error::Api(status) = err else {
        return false;
    };
    let message = status.message.to_ascii_lowercase();
    let says_immutable = message.contains("field is immutable")
        || message.contains("is immutable")
        || message.contains("immutable field");
    let reason_fits = matches!(status.reason.as_str(), "Invalid" | "Conflict" | "Forbidden")
        || matches!(status.code, 409 | 422 | 403);
    says_immutable && (reason_fits || status.reason.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "code": code, "reason": reason, "message": message
        }))
        .expect("valid Status");
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn detects_immutable_errors_by_reason_and_message() {
        assert!(is_immutable_error(&api(
            422,
            "Invalid",
            "Deployment.apps \"web\" is invalid: spec.selector: Invalid value: v1.LabelSelector{...}: field is immutable"
        )));
        assert!(is_immutable_error(&api(
            422,
            "Invalid",
            "Job.batch \"migrate\" is invalid: spec.template: Invalid value: ...: field is immutable"
        )));
        assert!(is_immutable_error(&api(
            422,
            "Invalid",
            "Widget.example.com \"w\" is invalid: spec.size: Invalid value: \"string\": Value is immutable"
        )));
        assert!(is_immutable_error(&api(
            403,
            "Forbidden",
            "admission webhook denied the request: immutable field spec.storageClassName"
        )));
        assert!(!is_immutable_error(&api(
            422,
            "Invalid",
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        )));
        assert!(!is_immutable_error(&api(
            403,
            "Forbidden",
            "user cannot patch deployments"
        )));
        assert!(!is_immutable_error(&api(
            500,
            "InternalError",
            "etcd is immutable today"
        )));
    }

    #[test]
    fn errors_name_the_object() {
        let obj = ObjectRef::new("apps", "Deployment", "a", "web");
        let err = ApplyError::new(
            ApplyFailure::Immutable {
                object: obj.clone(),
                message: "spec.selector: field is immutable".into(),
            },
            ChangeSet::new(),
        );
        assert_eq!(err.object(), Some(&obj));
        assert!(
            err.to_string()
                .starts_with("Deployment/a/web: immutable field changed")
        );
        let timeout = WaitError::Timeout {
            not_ready: vec![NotReady {
                object: obj,
                status: Status::InProgress,
                message: "Ready: 0/1".into(),
            }],
        };
        assert_eq!(
            timeout.to_string(),
            "timeout waiting for: [Deployment/a/web status: 'InProgress': Ready: 0/1]"
        );
    }
}
