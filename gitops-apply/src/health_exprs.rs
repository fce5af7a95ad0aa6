//! Custom health checks in CEL: Flux's Kustomization `spec.healthCheckExprs` (RFC-0009).
//!
//! For kinds whose status does not follow kstatus, a check names the kind and gives CEL
//! expressions over the live object. The object's top-level fields are the variables
//! (`metadata`, `spec`, `status`, and any other a custom resource has):
//!
//! ```
//! use gitops_apply::health_exprs::{HealthCheckExprSpec, HealthCheckExprs};
//! use gitops_apply::Status;
//!
//! let checks = HealthCheckExprs::compile(&[HealthCheckExprSpec {
//!     api_version: "cert-manager.io/v1".into(),
//!     kind: "Certificate".into(),
//!     current: "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')".into(),
//!     in_progress: Some("status.conditions.exists(e, e.type == 'Issuing' && e.status == 'True')".into()),
//!     failed: Some("status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'False')".into()),
//! }])?;
//! let certificate = serde_json::json!({
//!     "apiVersion": "cert-manager.io/v1",
//!     "kind": "Certificate",
//!     "metadata": {"name": "web", "generation": 1},
//!     "status": {"conditions": [{"type": "Ready", "status": "True"}]},
//! });
//! assert_eq!(checks.health(&certificate).map(|h| h.status), Some(Status::Current));
//! # Ok::<(), gitops_apply::health_exprs::HealthExprError>(())
//! ```
//!
//! The evaluation is Flux's: a `status.observedGeneration` that differs from
//! `metadata.generation` is `InProgress` without evaluating anything; then `inProgress`,
//! `failed` and `current` are evaluated in that order and the first that is true gives the
//! status; when none is true the object is `InProgress`. An expression that cannot be
//! evaluated (a field the object does not have yet, a result that is not a bool) gives
//! `Unknown` with the reason, so a wait keeps watching and reports it at its timeout. A check
//! applies to every object of its API group and kind, whatever the version.

use std::sync::Arc;

use serde_json::Value;

use crate::health::{Health, Status};

/// One entry of `spec.healthCheckExprs`, as Flux's API writes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckExprSpec {
    /// The API version of the kind checked (`group/version`; only the group is matched).
    pub api_version: String,
    /// The kind checked.
    pub kind: String,
    /// True when the object has reached its desired state (required).
    pub current: String,
    /// True when the object is still making progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<String>,
    /// True when the object failed to reach its desired state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// A `healthCheckExprs` entry that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HealthExprError {
    /// `current` is empty.
    #[error("healthCheckExprs[{index}] ({api_version} {kind}): the current expression is required")]
    MissingCurrent {
        /// The entry's index.
        index: usize,
        /// Its apiVersion.
        api_version: String,
        /// Its kind.
        kind: String,
    },
    /// `kind` is empty.
    #[error("healthCheckExprs[{index}]: kind is required")]
    MissingKind {
        /// The entry's index.
        index: usize,
    },
    /// An expression does not parse.
    #[error(
        "healthCheckExprs[{index}] ({api_version} {kind}): invalid CEL expression in {field}: {message}"
    )]
    Invalid {
        /// The entry's index.
        index: usize,
        /// Its apiVersion.
        api_version: String,
        /// Its kind.
        kind: String,
        /// `current`, `inProgress` or `failed`.
        field: &'static str,
        /// The parser's message.
        message: String,
    },
}

#[derive(Clone)]
struct Expr {
    field: &'static str,
    source: String,
    program: Arc<cel::Program>,
}

impl Expr {
    fn compile(
        spec: &HealthCheckExprSpec,
        index: usize,
        field: &'static str,
        source: &str,
    ) -> Result<Self, HealthExprError> {
        let program = cel::Program::compile(source).map_err(|e| HealthExprError::Invalid {
            index,
            api_version: spec.api_version.clone(),
            kind: spec.kind.clone(),
            field,
            message: e.to_string(),
        })?;
        Ok(Self {
            field,
            source: source.to_string(),
            program: Arc::new(program),
        })
    }

    /// The expression's value for `context`: a bool, or why there is none.
    fn evaluate(&self, context: &cel::Context<'_, '_>) -> Result<bool, String> {
        match self.program.execute(context) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "the {} expression {:?} gave {other:?}, not a bool",
                self.field, self.source
            )),
            Err(e) => Err(format!(
                "the {} expression {:?} failed: {e}",
                self.field, self.source
            )),
        }
    }
}

/// One compiled check.
#[derive(Clone)]
struct Check {
    group: String,
    kind: String,
    in_progress: Option<Expr>,
    failed: Option<Expr>,
    current: Expr,
}

/// Compiled `healthCheckExprs`: each kind's CEL health rules, used instead of kstatus for the
/// objects of that kind.
#[derive(Clone, Default)]
pub struct HealthCheckExprs {
    checks: Arc<Vec<Check>>,
}

impl std::fmt::Debug for HealthCheckExprs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.checks
                    .iter()
                    .map(|c| format!("{}/{}", c.group, c.kind)),
            )
            .finish()
    }
}

fn group_of(api_version: &str) -> &str {
    api_version
        .rsplit_once('/')
        .map(|(group, _)| group)
        .unwrap_or("")
}

impl HealthCheckExprs {
    /// Compiles the entries; an empty `current`, an empty `kind` or an expression that does
    /// not parse is an error naming the entry and the field.
    pub fn compile(specs: &[HealthCheckExprSpec]) -> Result<Self, HealthExprError> {
        let mut checks = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            if spec.kind.is_empty() {
                return Err(HealthExprError::MissingKind { index });
            }
            if spec.current.trim().is_empty() {
                return Err(HealthExprError::MissingCurrent {
                    index,
                    api_version: spec.api_version.clone(),
                    kind: spec.kind.clone(),
                });
            }
            let optional = |field, source: &Option<String>| {
                source
                    .as_deref()
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| Expr::compile(spec, index, field, s))
                    .transpose()
            };
            checks.push(Check {
                group: group_of(&spec.api_version).to_string(),
                kind: spec.kind.clone(),
                in_progress: optional("inProgress", &spec.in_progress)?,
                failed: optional("failed", &spec.failed)?,
                current: Expr::compile(spec, index, "current", &spec.current)?,
            });
        }
        Ok(Self {
            checks: Arc::new(checks),
        })
    }

    /// Whether there are no checks.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// The object's health by the first check for its group and kind, or `None` when no check
    /// is for its kind (kstatus decides then).
    pub fn health(&self, obj: &Value) -> Option<Health> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str)?;
        let kind = obj.get("kind").and_then(Value::as_str)?;
        let group = group_of(api_version);
        let check = self
            .checks
            .iter()
            .find(|c| c.kind == kind && c.group == group)?;
        Some(evaluate(check, obj))
    }
}

fn health(status: Status, message: impl Into<String>) -> Health {
    Health {
        status,
        message: message.into(),
    }
}

fn evaluate(check: &Check, obj: &Value) -> Health {
    let observed = obj
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64);
    if let (Some(observed), Some(generation)) = (observed, generation)
        && observed != generation
    {
        return health(
            Status::InProgress,
            format!(
                "status.observedGeneration {observed} is behind metadata.generation {generation}"
            ),
        );
    }
    let mut context = cel::Context::default();
    if let Some(fields) = obj.as_object() {
        for (name, value) in fields {
            if let Err(e) = context.add_variable(name.as_str(), value) {
                return health(
                    Status::Unknown,
                    format!("the object's field {name} as CEL: {e}"),
                );
            }
        }
    }
    let rules = [
        (&check.in_progress, Status::InProgress),
        (&check.failed, Status::Failed),
    ];
    for (expr, status) in rules {
        let Some(expr) = expr else { continue };
        match expr.evaluate(&context) {
            Ok(true) => {
                return health(
                    status,
                    format!("healthCheckExprs: {} is true: {}", expr.field, expr.source),
                );
            }
            Ok(false) => {}
            Err(message) => return health(Status::Unknown, message),
        }
    }
    match check.current.evaluate(&context) {
        Ok(true) => health(Status::Current, "healthCheckExprs: current is true"),
        Ok(false) => health(
            Status::InProgress,
            format!(
                "healthCheckExprs: waiting for current to be true: {}",
                check.current.source
            ),
        ),
        Err(message) => health(Status::Unknown, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn certificate_checks() -> HealthCheckExprs {
        HealthCheckExprs::compile(&[HealthCheckExprSpec {
            api_version: "cert-manager.io/v1".into(),
            kind: "Certificate".into(),
            in_progress: Some(
                "status.conditions.filter(e, e.type == 'Issuing').all(e, e.observedGeneration == metadata.generation && e.status == 'True')"
                    .into(),
            ),
            failed: Some(
                "status.conditions.filter(e, e.type == 'Ready').all(e, e.observedGeneration == metadata.generation && e.status == 'False')"
                    .into(),
            ),
            current: "status.conditions.filter(e, e.type == 'Ready').all(e, e.observedGeneration == metadata.generation && e.status == 'True')"
                .into(),
        }])
        .expect("compiles")
    }

    fn certificate(conditions: Value) -> Value {
        json!({
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": {"name": "web", "namespace": "apps", "generation": 2},
            "spec": {"secretName": "web-tls"},
            "status": {"conditions": conditions},
        })
    }

    fn status_of(checks: &HealthCheckExprs, obj: &Value) -> Status {
        checks.health(obj).expect("a check applies").status
    }

    #[test]
    fn expressions_are_evaluated_in_progress_then_failed_then_current() {
        let checks = certificate_checks();
        // Issuing and Ready=True at once: inProgress is evaluated first.
        let issuing = certificate(json!([
            {"type": "Issuing", "status": "True", "observedGeneration": 2},
            {"type": "Ready", "status": "True", "observedGeneration": 2},
        ]));
        assert_eq!(status_of(&checks, &issuing), Status::InProgress);
        // Issuing done, Ready=False: failed comes before current.
        let failed = certificate(json!([
            {"type": "Issuing", "status": "False", "observedGeneration": 2},
            {"type": "Ready", "status": "False", "observedGeneration": 2},
        ]));
        let h = checks.health(&failed).expect("applies");
        assert_eq!(h.status, Status::Failed);
        assert!(h.message.contains("failed is true"), "{}", h.message);
        let ready = certificate(json!([
            {"type": "Issuing", "status": "False", "observedGeneration": 2},
            {"type": "Ready", "status": "True", "observedGeneration": 2},
        ]));
        assert_eq!(status_of(&checks, &ready), Status::Current);
        // Ready for an older generation: none is true, so in progress.
        let stale = certificate(json!([
            {"type": "Issuing", "status": "False", "observedGeneration": 2},
            {"type": "Ready", "status": "True", "observedGeneration": 1},
        ]));
        assert_eq!(status_of(&checks, &stale), Status::InProgress);
    }

    #[test]
    fn an_observed_generation_behind_is_in_progress_without_evaluating() {
        let checks = certificate_checks();
        let mut obj = certificate(json!([
            {"type": "Issuing", "status": "False", "observedGeneration": 2},
            {"type": "Ready", "status": "True", "observedGeneration": 2},
        ]));
        obj["status"]["observedGeneration"] = json!(1);
        let h = checks.health(&obj).expect("applies");
        assert_eq!(h.status, Status::InProgress);
        assert!(h.message.contains("observedGeneration 1"), "{}", h.message);
        obj["status"]["observedGeneration"] = json!(2);
        assert_eq!(status_of(&checks, &obj), Status::Current);
    }

    #[test]
    fn all_over_no_matching_condition_is_true_as_in_flux() {
        // `filter(...).all(...)` over a list with no Issuing condition is true, so the
        // inProgress expression above holds: Flux's documented pitfall, kept as it is.
        let checks = certificate_checks();
        let obj =
            certificate(json!([{"type": "Ready", "status": "True", "observedGeneration": 2}]));
        assert_eq!(status_of(&checks, &obj), Status::InProgress);
    }

    #[test]
    fn a_missing_field_is_unknown_with_the_reason_not_a_failure() {
        let checks = certificate_checks();
        let mut obj = certificate(json!([]));
        obj.as_object_mut().expect("object").remove("status");
        let h = checks.health(&obj).expect("applies");
        assert_eq!(h.status, Status::Unknown);
        assert!(h.message.contains("inProgress"), "{}", h.message);
    }

    #[test]
    fn a_result_that_is_not_a_bool_is_unknown() {
        let checks = HealthCheckExprs::compile(&[HealthCheckExprSpec {
            api_version: "example.com/v1".into(),
            kind: "Widget".into(),
            current: "status.phase".into(),
            ..Default::default()
        }])
        .expect("compiles");
        let obj = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "status": {"phase": "Running"}});
        let h = checks.health(&obj).expect("applies");
        assert_eq!(h.status, Status::Unknown);
        assert!(h.message.contains("not a bool"), "{}", h.message);
    }

    #[test]
    fn checks_match_group_and_kind_in_any_version_and_nothing_else() {
        let checks = HealthCheckExprs::compile(&[HealthCheckExprSpec {
            api_version: "example.com/v1".into(),
            kind: "Widget".into(),
            current: "status.phase == 'Running'".into(),
            failed: Some("status.phase == 'Broken'".into()),
            ..Default::default()
        }])
        .expect("compiles");
        let widget = |api_version: &str, kind: &str, phase: &str| json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "w"}, "status": {"phase": phase}});
        assert_eq!(
            status_of(&checks, &widget("example.com/v2", "Widget", "Running")),
            Status::Current
        );
        assert_eq!(
            status_of(&checks, &widget("example.com/v1", "Widget", "Broken")),
            Status::Failed
        );
        assert_eq!(
            status_of(&checks, &widget("example.com/v1", "Widget", "Starting")),
            Status::InProgress
        );
        assert!(
            checks
                .health(&widget("other.io/v1", "Widget", "Running"))
                .is_none()
        );
        assert!(
            checks
                .health(&widget("example.com/v1", "Gadget", "Running"))
                .is_none()
        );
        // A core kind is matched by its empty group.
        let core = HealthCheckExprs::compile(&[HealthCheckExprSpec {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            current: "has(data.ready)".into(),
            ..Default::default()
        }])
        .expect("compiles");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"ready": "yes"}});
        assert_eq!(status_of(&core, &cm), Status::Current);
    }

    #[test]
    fn bad_entries_are_typed_errors_naming_the_entry_and_field() {
        let err = HealthCheckExprs::compile(&[
            HealthCheckExprSpec {
                api_version: "example.com/v1".into(),
                kind: "Widget".into(),
                current: "true".into(),
                ..Default::default()
            },
            HealthCheckExprSpec {
                api_version: "example.com/v1".into(),
                kind: "Gadget".into(),
                current: "status.phase == 'Running'".into(),
                failed: Some("status.phase ==".into()),
                ..Default::default()
            },
        ])
        .expect_err("does not parse");
        let text = err.to_string();
        assert!(
            text.starts_with(
                "healthCheckExprs[1] (example.com/v1 Gadget): invalid CEL expression in failed:"
            ),
            "{text}"
        );
        let err = HealthCheckExprs::compile(&[HealthCheckExprSpec {
            api_version: "example.com/v1".into(),
            kind: "Widget".into(),
            current: " ".into(),
            ..Default::default()
        }])
        .expect_err("current is required");
        assert!(matches!(
            err,
            HealthExprError::MissingCurrent { index: 0, .. }
        ));
    }

    #[test]
    fn the_spec_reads_flux_json() {
        let spec: HealthCheckExprSpec = serde_json::from_value(json!({
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "current": "true",
            "inProgress": "false",
        }))
        .expect("Flux's field names");
        assert_eq!(spec.in_progress.as_deref(), Some("false"));
        assert_eq!(spec.failed, None);
    }
}
