//! The build: accumulate resources, run generators and transformers in kustomize's order.

use std::path::{Path, PathBuf};

use super::KustomizeError;
use super::crds;
use super::fieldspec::{DEFAULT_CONFIG, FieldSpec, TransformerConfig, apply_specs, visit_field};
use super::fs::{Loader, canonical, find_kustomization, is_remote};
use super::generators::{self, GenOptions};
use super::helmchart;
use super::jsonpatch;
use super::nameref;
use super::resource::Resource;
use super::smp;
use super::types::Kustomization;
use super::vars::{self, Selector, Var};
use crate::openapi::Schema;
use crate::yaml::{Map, Value, parse_stream, to_yaml};
use std::sync::Arc;

/// kustomize's `--load-restrictor`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LoadRestrictor {
    /// Files must be in or below the kustomization that names them (the default).
    #[default]
    RootOnly,
    /// Files may be anywhere inside the confinement root.
    None,
}

/// Output order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// kustomize's legacy kind order (the default).
    #[default]
    Legacy,
    /// The order resources were read in.
    Fifo,
}

/// Options of a build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// kustomize's load restrictor.
    pub load_restrictor: LoadRestrictor,
    /// Add `app.kubernetes.io/managed-by: kustomize-(devel)` (`--enable-managedby-label`).
    pub managed_by_label: bool,
    /// Nothing is read outside this directory (defaults to the file-system root, i.e. only
    /// kustomize's own rules apply).
    pub confine_root: Option<PathBuf>,
    /// Largest file read, in bytes.
    pub max_file_bytes: u64,
    /// Render `helmCharts` with the in-process Helm engine (kustomize's `--enable-helm`).
    /// On by default: unlike kustomize, rendering runs no program. When off, a kustomization
    /// with `helmCharts` fails as kustomize does without `--enable-helm`.
    pub enable_helm: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            load_restrictor: LoadRestrictor::RootOnly,
            managed_by_label: false,
            confine_root: None,
            max_file_bytes: 64 * 1024 * 1024,
            enable_helm: true,
        }
    }
}

/// The result of a build.
#[derive(Debug, Clone, Default)]
pub struct Build {
    /// The resources, in output order.
    pub resources: Vec<Resource>,
    /// Warnings kustomize prints on stderr (deprecated fields).
    pub warnings: Vec<String>,
}

impl Build {
    /// The YAML stream exactly as `kubectl kustomize` prints it.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        for (i, r) in self.resources.iter().enumerate() {
            if i > 0 {
                out.push_str("---\n");
            }
            out.push_str(&to_yaml(&r.value));
        }
        out
    }
}

#[derive(Default)]
struct Acc {
    resources: Vec<Resource>,
    config: TransformerConfig,
    vars: Vec<Var>,
}

/// The OpenAPI schema in force, as kyaml's global `SetSchema` state: the top kustomization's
/// `openapi:` if it has one, else the first one met while loading the others.
#[derive(Clone, Default)]
struct OpenApi {
    /// A custom schema (`openapi: {path: ...}`); `None` is the built-in one.
    custom: Option<Arc<Schema>>,
    /// Whether a kustomization has chosen the schema.
    set: bool,
    /// Whether resources were read while the built-in schema was in force: kyaml has then
    /// scheduled the built-in definitions for indexing, and they join a custom schema set
    /// later (replacing same-named custom definitions).
    builtin_pending: bool,
}

impl OpenApi {
    fn schema(&self) -> Arc<Schema> {
        self.custom.clone().unwrap_or_else(Schema::builtin)
    }
}

struct Ctx<'a> {
    opts: &'a BuildOptions,
    openapi: OpenApi,
    confine: PathBuf,
    stack: Vec<PathBuf>,
    warnings: Vec<String>,
    next_id: usize,
}

const MANAGED_BY: &str = "kustomize-(devel)";

/// Builds the kustomization in `dir`.
pub fn build(dir: &Path, opts: &BuildOptions) -> Result<Build, KustomizeError> {
    let confine = match &opts.confine_root {
        Some(r) => canonical(r)?,
        None => PathBuf::from("/"),
    };
    let dir_abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| KustomizeError::io(dir, e))?
            .join(dir)
    };
    let cleaned = super::fs::clean(&dir_abs);
    if !cleaned.starts_with(&confine) {
        return Err(KustomizeError::Security {
            path: cleaned,
            root: confine,
        });
    }
    let dir = canonical(&cleaned)?;
    if !dir.starts_with(&confine) {
        return Err(KustomizeError::Security {
            path: dir,
            root: confine,
        });
    }
    let mut ctx = Ctx {
        opts,
        confine,
        stack: Vec::new(),
        warnings: Vec::new(),
        next_id: 0,
        openapi: OpenApi::default(),
    };
    let top = load_kustomization(&dir)?;
    if top.is_component {
        return Err(KustomizeError::Kustomization {
            path: top.file.clone(),
            message: "a Component cannot be built on its own; list it under components".into(),
        });
    }
    let mut acc = accumulate(&mut ctx, &dir, false, Acc::default())?;
    // Hash suffixes, then name references, then vars: kustomize does these once, at the top.
    for r in acc.resources.iter_mut() {
        if r.needs_hash {
            let h = generators::name_hash(r);
            let n = format!("{}-{}", r.name(), h);
            r.set_name(&n);
        }
    }
    let mut config = DEFAULT_CONFIG.clone();
    config.merge(&acc.config);
    nameref::fix(&mut acc.resources, &config)?;
    check_unique_vars(&acc.vars)?;
    vars::resolve_vars(&mut acc.resources, &acc.vars, &config.var_reference)?;
    let build_meta = top.str_list("buildMetadata")?;
    for b in &build_meta {
        if !matches!(
            b.as_str(),
            "originAnnotations" | "transformerAnnotations" | "managedByLabel"
        ) {
            return Err(KustomizeError::Kustomization {
                path: top.file.clone(),
                message: format!("unknown buildMetadata option {b:?}"),
            });
        }
    }
    let origins = build_meta.iter().any(|b| b == "originAnnotations");
    let transformations = build_meta.iter().any(|b| b == "transformerAnnotations");
    for r in acc.resources.iter_mut() {
        let mut annos = Vec::new();
        if origins {
            let text = match (&r.gen_origin, &r.origin) {
                (Some((kf, kind)), _) => Some(format!(
                    "configuredIn: {}\nconfiguredBy:\n{}",
                    relative(&dir, kf),
                    configured_by_lines(kind, "  ")
                )),
                (None, Some(p)) => Some(format!("path: {}\n", relative(&dir, p))),
                _ => None,
            };
            if let Some(t) = text {
                annos.push(("config.kubernetes.io/origin", t));
            }
        }
        if transformations && !r.transforms.is_empty() {
            let mut t = String::new();
            for (kf, kind) in &r.transforms {
                t.push_str(&format!(
                    "- configuredIn: {}\n  configuredBy:\n{}",
                    relative(&dir, kf),
                    configured_by_lines(kind, "    ")
                ));
            }
            annos.push(("alpha.config.kubernetes.io/transformations", t));
        }
        if !annos.is_empty() {
            let md = super::resource::metadata_mut(r.map_mut());
            let am = super::resource::child_map(md, "annotations");
            for (k, v) in annos {
                am.insert(k.to_string(), Value::Str(v));
            }
        }
    }
    if opts.managed_by_label || build_meta.iter().any(|b| b == "managedByLabel") {
        for r in acc.resources.iter_mut() {
            let md = super::resource::metadata_mut(r.map_mut());
            let labels = super::resource::child_map(md, "labels");
            labels.insert(
                "app.kubernetes.io/managed-by".into(),
                Value::Str(MANAGED_BY.into()),
            );
        }
    }
    for r in acc.resources.iter_mut() {
        r.value.normalize_numbers();
    }
    let order = sort_options(&top)?;
    match order {
        SortSpec::Fifo => {}
        SortSpec::Legacy { first, last } => legacy_sort(&mut acc.resources, &first, &last),
    }
    Ok(Build {
        resources: acc.resources,
        warnings: ctx.warnings,
    })
}

/// kustomize's built-in configuration plus what `configurations:` added (borrowed when
/// nothing was added, which is the common case).
fn effective_config(extra: &TransformerConfig) -> std::borrow::Cow<'static, TransformerConfig> {
    if *extra == TransformerConfig::default() {
        std::borrow::Cow::Borrowed(&*DEFAULT_CONFIG)
    } else {
        let mut c = DEFAULT_CONFIG.clone();
        c.merge(extra);
        std::borrow::Cow::Owned(c)
    }
}

/// A builtin kind plus the plugin config's name and namespace, for the `configuredBy`
/// annotations ("Kind|name|namespace").
fn configured_by(kind: &str, cfg: &Value) -> String {
    format!(
        "{kind}|{}|{}",
        cfg.str_at(&["metadata", "name"]).unwrap_or(""),
        cfg.str_at(&["metadata", "namespace"]).unwrap_or("")
    )
}

/// The `configuredBy` body lines at `indent`.
fn configured_by_lines(spec: &str, indent: &str) -> String {
    let mut parts = spec.split('|');
    let kind = parts.next().unwrap_or("");
    let name = parts.next().unwrap_or("");
    let ns = parts.next().unwrap_or("");
    let mut s = format!("{indent}apiVersion: builtin\n{indent}kind: {kind}\n");
    if !name.is_empty() {
        s.push_str(&format!("{indent}name: {name}\n"));
    }
    if !ns.is_empty() {
        s.push_str(&format!("{indent}namespace: {ns}\n"));
    }
    s
}

/// `p` relative to `base` (with `..` where needed).
fn relative(base: &Path, p: &Path) -> String {
    let b: Vec<_> = base.components().collect();
    let t: Vec<_> = p.components().collect();
    let common = b.iter().zip(t.iter()).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    out.to_string_lossy().into_owned()
}

fn check_unique_vars(vars: &[Var]) -> Result<(), KustomizeError> {
    for (i, v) in vars.iter().enumerate() {
        if vars[..i].iter().any(|o| o.name == v.name && o != v) {
            return Err(KustomizeError::transform(
                "vars",
                format!("var '{}' already encountered", v.name),
            ));
        }
    }
    Ok(())
}

enum SortSpec {
    Fifo,
    Legacy {
        first: Vec<String>,
        last: Vec<String>,
    },
}

const ORDER_FIRST: &[&str] = &[
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];
const ORDER_LAST: &[&str] = &[
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

fn sort_options(k: &Kustomization) -> Result<SortSpec, KustomizeError> {
    let kerr = |m: &str| KustomizeError::Kustomization {
        path: k.file.clone(),
        message: m.to_string(),
    };
    let default = || SortSpec::Legacy {
        first: ORDER_FIRST.iter().map(|s| s.to_string()).collect(),
        last: ORDER_LAST.iter().map(|s| s.to_string()).collect(),
    };
    let Some(so) = k.get("sortOptions") else {
        return Ok(default());
    };
    let order = so.get("order").and_then(Value::as_str).unwrap_or("");
    match order {
        "fifo" => {
            if so.get("legacySortOptions").is_some() {
                return Err(kerr(
                    "the field 'sortOptions.legacySortOptions' must not be set when 'sortOptions.order' is 'fifo'",
                ));
            }
            Ok(SortSpec::Fifo)
        }
        "legacy" => match so.get("legacySortOptions") {
            None => Ok(default()),
            Some(l) => {
                let list = |key: &str| -> Vec<String> {
                    l.get(key)
                        .and_then(Value::as_seq)
                        .map(|s| s.iter().filter_map(Value::scalar_text).collect())
                        .unwrap_or_default()
                };
                Ok(SortSpec::Legacy {
                    first: list("orderFirst"),
                    last: list("orderLast"),
                })
            }
        },
        "" => {
            if so.get("legacySortOptions").is_some() {
                return Err(kerr(
                    "the field 'sortOptions.legacySortOptions' is set but 'sortOptions.order' is not",
                ));
            }
            Ok(default())
        }
        other => Err(kerr(&format!(
            "the field 'sortOptions.order' must be one of [fifo, legacy], got {other:?}"
        ))),
    }
}

fn legacy_sort(rs: &mut [Resource], first: &[String], last: &[String]) {
    let index = |k: &str| -> i64 {
        if let Some(i) = first.iter().position(|f| f == k) {
            return i as i64 - first.len() as i64;
        }
        if let Some(i) = last.iter().position(|f| f == k) {
            return i as i64 + 1;
        }
        0
    };
    // By kind priority, then type, then namespace and name; stable.
    rs.sort_by_cached_key(|r| {
        let g = r.gvk();
        (
            index(&g.kind),
            g.sort_string(),
            format!("{}|{}", ns_or_default(r.namespace()), r.name()),
        )
    });
}

fn ns_or_default(ns: &str) -> &str {
    if ns.is_empty() { "~X" } else { ns }
}

fn load_kustomization(dir: &Path) -> Result<Kustomization, KustomizeError> {
    let file = find_kustomization(dir)?;
    let text = std::fs::read_to_string(&file).map_err(|e| KustomizeError::io(&file, e))?;
    Kustomization::parse(&file, &text)
}

/// Reads the objects in a YAML stream (expanding `kind: List`).
pub(crate) fn read_resources(path: &Path, text: &str) -> Result<Vec<Resource>, KustomizeError> {
    let docs = parse_stream(text).map_err(|source| KustomizeError::Yaml {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for d in docs {
        push_object(path, d, &mut out)?;
    }
    Ok(out)
}

fn push_object(path: &Path, d: Value, out: &mut Vec<Resource>) -> Result<(), KustomizeError> {
    match d {
        Value::Null => Ok(()),
        Value::Map(m) if m.is_empty() => Ok(()),
        Value::Map(m) => {
            let kind = m.get("kind").and_then(Value::as_str).unwrap_or("");
            if kind.ends_with("List")
                && let Some(Value::Seq(items)) = m.get("items")
            {
                for it in items.clone() {
                    push_object(path, it, out)?;
                }
                return Ok(());
            }
            if kind.is_empty() {
                return Err(KustomizeError::Resource {
                    path: path.to_path_buf(),
                    message: format!("missing kind in object {}", go_resource_meta(&m)),
                });
            }
            let name = m
                .get("metadata")
                .and_then(|md| md.get("name"))
                .and_then(Value::scalar_text)
                .unwrap_or_default();
            if name.is_empty() && !kind.ends_with("List") {
                return Err(KustomizeError::Resource {
                    path: path.to_path_buf(),
                    message: format!("missing metadata.name in object {}", go_resource_meta(&m)),
                });
            }
            let mut m = m;
            if let Some(Value::Map(md)) = m.get_mut("metadata") {
                for field in ["labels", "annotations"] {
                    if let Some(Value::Map(lm)) = md.get_mut(field) {
                        for v in lm.values_mut() {
                            if !matches!(v, Value::Str(_) | Value::Map(_) | Value::Seq(_)) {
                                *v = Value::Str(v.scalar_text().unwrap_or_default());
                            }
                        }
                    }
                }
            }
            out.push(Resource::new(Value::Map(m), Some(path.to_path_buf())));
            Ok(())
        }
        Value::Seq(items) => {
            for it in items {
                push_object(path, it, out)?;
            }
            Ok(())
        }
        other => Err(KustomizeError::Resource {
            path: path.to_path_buf(),
            message: format!(
                "expected a Kubernetes object, found {}",
                other.scalar_text().unwrap_or_default()
            ),
        }),
    }
}

/// An object's type and identity as kustomize prints them in its errors (Go's `%v` of its
/// `ResourceMeta`): `{{v1 ConfigMap} {{name namespace} map[labels] map[annotations]}}`.
fn go_resource_meta(m: &Map) -> String {
    let text = |v: Option<&Value>| v.and_then(Value::scalar_text).unwrap_or_default();
    let metadata = m.get("metadata");
    let field = |name: &str| metadata.and_then(|md| md.get(name));
    let go_map = |v: Option<&Value>| {
        let mut pairs: Vec<(String, String)> = match v {
            Some(Value::Map(entries)) => entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.scalar_text().unwrap_or_default()))
                .collect(),
            _ => Vec::new(),
        };
        pairs.sort();
        let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        format!("map[{}]", inner.join(" "))
    };
    format!(
        "{{{{{} {}}} {{{{{} {}}} {} {}}}}}",
        text(m.get("apiVersion")),
        text(m.get("kind")),
        text(field("name")),
        text(field("namespace")),
        go_map(field("labels")),
        go_map(field("annotations")),
    )
}

/// Whether `old` had (at any point) the identity `new` has now.
fn any_id_matches(old: &Resource, new: &Resource) -> bool {
    let g = new.gvk();
    if old.gvk() != g {
        return false;
    }
    let nns = super::resource::effective_ns(&g, new.namespace());
    old.all_names()
        .any(|(n, ns)| n == new.name() && super::resource::effective_ns(&g, ns) == nns)
}

fn id_key(r: &Resource) -> (super::resource::Gvk, String, String) {
    (r.gvk(), r.name().to_string(), r.effective_ns())
}

/// Appends resources, refusing an id already present. `ids` holds the ids of
/// `acc.resources` (kept up to date across the appends of one resources list, while nothing
/// else changes them).
fn append_all(
    acc: &mut Acc,
    ids: &mut std::collections::HashSet<(super::resource::Gvk, String, String)>,
    rs: Vec<Resource>,
) -> Result<(), KustomizeError> {
    for r in rs {
        if !ids.insert(id_key(&r)) {
            return Err(KustomizeError::Conflict { id: r.id_string() });
        }
        acc.resources.push(r);
    }
    Ok(())
}

fn absorb_generated(acc: &mut Acc, mut r: Resource) -> Result<(), KustomizeError> {
    let matches: Vec<usize> = acc
        .resources
        .iter()
        .enumerate()
        .filter(|(_, o)| any_id_matches(o, &r))
        .map(|(i, _)| i)
        .collect();
    let behavior = r.behavior.clone().unwrap_or_else(|| "create".into());
    match matches.len() {
        0 => {
            if behavior == "merge" || behavior == "replace" {
                return Err(KustomizeError::Generator {
                    name: r.name().to_string(),
                    message: format!(
                        "id {} does not exist; cannot merge or replace",
                        r.id_string()
                    ),
                });
            }
            acc.resources.push(r);
            Ok(())
        }
        1 => {
            let i = matches[0];
            match behavior.as_str() {
                "replace" | "merge" => {
                    let old = acc.resources[i].clone();
                    generators::merge_generated(&mut r, &old, behavior == "merge");
                    r.behavior = None;
                    acc.resources[i] = r;
                    Ok(())
                }
                _ => Err(KustomizeError::Generator {
                    name: r.name().to_string(),
                    message: format!(
                        "id {} exists; behavior must be merge or replace",
                        r.id_string()
                    ),
                }),
            }
        }
        _ => Err(KustomizeError::Generator {
            name: r.name().to_string(),
            message: format!("found multiple objects {} to merge into", r.id_string()),
        }),
    }
}

fn warn_deprecated(ctx: &mut Ctx<'_>, k: &Kustomization) {
    let msgs = [
        (
            "commonLabels",
            "Warning: 'commonLabels' is deprecated. Please use 'labels' instead. Run 'kustomize edit fix' to update your Kustomization automatically.",
        ),
        (
            "patchesStrategicMerge",
            "Warning: 'patchesStrategicMerge' is deprecated. Please use 'patches' instead. Run 'kustomize edit fix' to update your Kustomization automatically.",
        ),
        (
            "patchesJson6902",
            "Warning: 'patchesJson6902' is deprecated. Please use 'patches' instead. Run 'kustomize edit fix' to update your Kustomization automatically.",
        ),
        (
            "vars",
            "Warning: 'vars' is deprecated. Please use 'replacements' instead. [EXPERIMENTAL] Run 'kustomize edit fix' to update your Kustomization automatically.",
        ),
        (
            "bases",
            "Warning: 'bases' is deprecated. Please use 'resources' instead. Run 'kustomize edit fix' to update your Kustomization automatically.",
        ),
        (
            "imageTags",
            "Warning: 'imageTags' is deprecated. Please use 'images' instead. Run 'kustomize edit fix' to update your Kustomization automatically.",
        ),
    ];
    for (field, msg) in msgs {
        if k.m.contains_key(field) {
            ctx.warnings.push(msg.to_string());
        }
    }
}

fn accumulate(
    ctx: &mut Ctx<'_>,
    dir: &Path,
    component: bool,
    mut acc: Acc,
) -> Result<Acc, KustomizeError> {
    if ctx.stack.iter().any(|d| d == dir) {
        return Err(KustomizeError::Cycle {
            dir: dir.to_path_buf(),
        });
    }
    let k = load_kustomization(dir)?;
    if component && !k.is_component {
        return Err(KustomizeError::Kustomization {
            path: k.file.clone(),
            message: format!(
                "expected kind 'Component' for path '{}' but got 'Kustomization'",
                dir.display()
            ),
        });
    }
    if !component && k.is_component {
        return Err(KustomizeError::Kustomization {
            path: k.file.clone(),
            message: format!("expected kind != 'Component' for path '{}'", dir.display()),
        });
    }
    warn_deprecated(ctx, &k);
    let ldr = Loader {
        dir: dir.to_path_buf(),
        confine: ctx.confine.clone(),
        root_only: ctx.opts.load_restrictor == LoadRestrictor::RootOnly,
        max_file_bytes: ctx.opts.max_file_bytes,
    };
    let top = ctx.stack.is_empty();
    set_openapi(ctx, &ldr, &k, top)?;
    ctx.stack.push(dir.to_path_buf());
    let id = ctx.next_id;
    ctx.next_id += 1;
    let result = accumulate_inner(ctx, &ldr, &k, id, &mut acc);
    ctx.stack.pop();
    result?;
    if !component {
        for r in acc.resources.iter_mut() {
            r.lineage.push(id);
        }
    }
    Ok(acc)
}

/// kyaml's `SetSchema` for one kustomization: the top one (`reset`) always decides, the
/// others only while no kustomization has. The custom schema file is read either way.
fn set_openapi(
    ctx: &mut Ctx<'_>,
    ldr: &Loader,
    k: &Kustomization,
    reset: bool,
) -> Result<(), KustomizeError> {
    let Some(o) = k.get("openapi") else {
        if reset {
            ctx.openapi.custom = None;
            ctx.openapi.set = false;
        }
        return Ok(());
    };
    let kerr = |message: String| KustomizeError::Kustomization {
        path: k.file.clone(),
        message,
    };
    let version = o.get("version").and_then(Value::scalar_text);
    let path = o.get("path").and_then(Value::scalar_text);
    if version.is_some() && path.is_some() {
        return Err(kerr(
            "builtin version and custom schema provided, cannot use both".into(),
        ));
    }
    let file = match &path {
        Some(p) => Some(ldr.read_text(p)?),
        None => None,
    };
    if ctx.openapi.set && !reset {
        return Ok(());
    }
    match (file, version.as_deref()) {
        (Some((p, text)), _) => {
            let docs = parse_stream(&text).map_err(|source| KustomizeError::Yaml {
                path: p.clone(),
                source,
            })?;
            let doc = docs
                .into_iter()
                .next()
                .map(|d| d.to_json())
                .unwrap_or(serde_json::Value::Null);
            let mut schema = Schema::from_json(&doc).map_err(|e| KustomizeError::Resource {
                path: p.clone(),
                message: format!("invalid schema file: {e}"),
            })?;
            let pending = ctx.openapi.custom.is_none() && ctx.openapi.builtin_pending;
            if pending {
                schema = schema.with(&Schema::builtin());
            }
            ctx.openapi = OpenApi {
                custom: Some(Arc::new(schema)),
                set: true,
                builtin_pending: pending,
            };
        }
        (None, None | Some("")) => {
            ctx.openapi.custom = None;
            ctx.openapi.set = false;
        }
        (None, Some("v1.21.2")) => {
            ctx.openapi.custom = None;
            ctx.openapi.set = true;
        }
        (None, Some(v)) => {
            return Err(kerr(format!(
                "the specified OpenAPI version {v:?} is not built in"
            )));
        }
    }
    Ok(())
}

fn accumulate_inner(
    ctx: &mut Ctx<'_>,
    ldr: &Loader,
    k: &Kustomization,
    _id: usize,
    acc: &mut Acc,
) -> Result<(), KustomizeError> {
    // resources (and the deprecated bases)
    let mut entries = k.str_list("bases")?;
    entries.extend(k.str_list("resources")?);
    let mut ids: std::collections::HashSet<_> = acc.resources.iter().map(id_key).collect();
    for e in entries {
        if is_remote(&e) {
            return Err(KustomizeError::Remote {
                path: k.file.clone(),
                url: e,
            });
        }
        let target = ldr.resolve(&e, false)?;
        if target.is_dir() {
            let sub = accumulate(ctx, &target, false, Acc::default())?;
            append_all(acc, &mut ids, sub.resources)?;
            acc.config.merge(&sub.config);
            acc.vars.extend(sub.vars);
        } else {
            let (p, text) = ldr.read_text(&e)?;
            let rs = read_resources(&p, &text)?;
            append_all(acc, &mut ids, rs)?;
        }
        if !acc.resources.is_empty() && ctx.openapi.custom.is_none() {
            ctx.openapi.builtin_pending = true;
        }
    }
    // configurations and CRDs
    for c in k.str_list("configurations")? {
        let (p, text) = ldr.read_text(&c)?;
        let docs = parse_stream(&text).map_err(|source| KustomizeError::Yaml {
            path: p.clone(),
            source,
        })?;
        for d in docs {
            let cfg =
                TransformerConfig::parse(&d).map_err(|message| KustomizeError::Kustomization {
                    path: p.clone(),
                    message,
                })?;
            acc.config.merge(&cfg);
        }
    }
    for c in k.str_list("crds")? {
        let (p, text) = ldr.read_text(&c)?;
        let cfg = crds::config_from_crds(&p, &text)?;
        acc.config.merge(&cfg);
    }
    // generators
    let global = GenOptions::from_value(k.get("generatorOptions"));
    for g in k.list("configMapGenerator")? {
        let mut r = generators::generate(ldr, &g, false, &global, None)?;
        r.gen_origin = Some((k.file.clone(), "ConfigMapGenerator".into()));
        absorb_generated(acc, r)?;
    }
    for g in k.list("secretGenerator")? {
        let mut r = generators::generate(ldr, &g, true, &global, None)?;
        r.gen_origin = Some((k.file.clone(), "SecretGenerator".into()));
        absorb_generated(acc, r)?;
    }
    if ["helmCharts", "helmChartInflationGenerator", "helmGlobals"]
        .iter()
        .any(|f| k.get(f).is_some())
    {
        let text = std::fs::read_to_string(&k.file).map_err(|e| KustomizeError::io(&k.file, e))?;
        let (globals, charts) = helmchart::charts_of(&k.file, &text, &k.m)?;
        if !charts.is_empty() && !ctx.opts.enable_helm {
            return Err(KustomizeError::Kustomization {
                path: k.file.clone(),
                message: "helmCharts: must specify --enable-helm".into(),
            });
        }
        for c in &charts {
            for mut r in helmchart::inflate(ldr, &globals, c)? {
                r.gen_origin = Some((k.file.clone(), "HelmChartInflationGenerator".into()));
                absorb_generated(acc, r)?;
            }
        }
    }
    for g in k.str_list("generators")? {
        run_plugin_entry(ctx, ldr, k, &g, acc, true)?;
    }
    if !acc.resources.is_empty() && ctx.openapi.custom.is_none() {
        ctx.openapi.builtin_pending = true;
    }
    // components
    for c in k.str_list("components")? {
        if is_remote(&c) {
            return Err(KustomizeError::Remote {
                path: k.file.clone(),
                url: c,
            });
        }
        let target = ldr.resolve(&c, false)?;
        if !target.is_dir() {
            return Err(KustomizeError::Kustomization {
                path: k.file.clone(),
                message: format!("component {c} must be a directory"),
            });
        }
        let taken = std::mem::take(acc);
        *acc = accumulate(ctx, &target, true, taken)?;
    }
    // builtin transformers, in kustomize's order
    let config = effective_config(&acc.config);
    for p in k.list("patchesStrategicMerge")? {
        let text = p.scalar_text().unwrap_or_default();
        let (name, content) = load_patch_text(ldr, &text)?;
        apply_patch_content(acc, &ctx.openapi, &name, &content, None, false, false)?;
    }
    for p in k.list("patches")? {
        apply_patch_entry(ldr, acc, &ctx.openapi, &p, &k.file)?;
    }
    if let Some(ns) = k.str("namespace").filter(|s| !s.is_empty()) {
        namespace_transform(acc, &ns, &config.namespace)?;
    }
    let prefix = k.str("namePrefix").unwrap_or_default();
    let suffix = k.str("nameSuffix").unwrap_or_default();
    if !prefix.is_empty() || !suffix.is_empty() {
        prefix_suffix(acc, &prefix, &suffix, &config.name_prefix)?;
        for r in acc.resources.iter_mut() {
            if !prefix.is_empty() {
                r.transforms
                    .push((k.file.clone(), "PrefixTransformer".into()));
            }
            if !suffix.is_empty() {
                r.transforms
                    .push((k.file.clone(), "SuffixTransformer".into()));
            }
        }
    }
    let common = k.string_map("commonLabels")?;
    if !common.is_empty() {
        set_map_fields(acc, &common, &config.common_labels, "commonLabels")?;
    }
    for l in k.list("labels")? {
        let pairs: Vec<(String, String)> = l
            .get("pairs")
            .and_then(Value::as_map)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.scalar_text().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let sel = matches!(l.get("includeSelectors"), Some(Value::Bool(true)));
        let tmpl = matches!(l.get("includeTemplates"), Some(Value::Bool(true)));
        let mut specs: Vec<FieldSpec> = if sel {
            config.common_labels.clone()
        } else {
            let mut v = vec![FieldSpec {
                group: String::new(),
                version: String::new(),
                kind: String::new(),
                path: vec!["metadata".into(), "labels".into()],
                create: true,
            }];
            if tmpl {
                v.extend(config.template_labels.iter().cloned());
            }
            v
        };
        specs.extend(config.labels.iter().cloned());
        if let Some(Value::Seq(fs)) = l.get("fields") {
            specs.extend(fs.iter().filter_map(FieldSpec::from_value));
        }
        if !pairs.is_empty() {
            set_map_fields(acc, &pairs, &specs, "labels")?;
        }
    }
    let annos = k.string_map("commonAnnotations")?;
    if !annos.is_empty() {
        set_map_fields(acc, &annos, &config.common_annotations, "commonAnnotations")?;
    }
    for p in k.list("patchesJson6902")? {
        apply_json6902_entry(ldr, acc, &p, &k.file)?;
    }
    for r in k.list("replicas")? {
        replicas_transform(acc, &r, &config.replicas)?;
    }
    let mut images = k.list("images")?;
    images.extend(k.list("imageTags")?);
    for i in images {
        image_transform(acc, &i, &config.images)?;
    }
    for rep in k.list("replacements")? {
        for r in load_replacements(ldr, &rep)? {
            vars::apply_replacement(&mut acc.resources, &r)?;
        }
    }
    for t in k.str_list("transformers")? {
        run_plugin_entry(ctx, ldr, k, &t, acc, false)?;
    }
    for v in k.list("vars")? {
        let var = Var::from_value(&v).map_err(|message| KustomizeError::Kustomization {
            path: k.file.clone(),
            message,
        })?;
        vars::bind_var(&mut acc.resources, &var)?;
        acc.vars.push(var);
    }
    Ok(())
}

fn load_replacements(ldr: &Loader, rep: &Value) -> Result<Vec<Value>, KustomizeError> {
    if let Some(p) = rep.get("path").and_then(Value::as_str) {
        let (path, text) = ldr.read_text(p)?;
        let docs = parse_stream(&text).map_err(|source| KustomizeError::Yaml { path, source })?;
        let mut out = Vec::new();
        for d in docs {
            match d {
                Value::Seq(s) => out.extend(s),
                Value::Null => {}
                other => out.push(other),
            }
        }
        return Ok(out);
    }
    Ok(vec![rep.clone()])
}

/// A patch given as a path or inline: returns a display name and the text.
fn load_patch_text(ldr: &Loader, text: &str) -> Result<(String, String), KustomizeError> {
    let looks_inline = text.contains('\n') || text.trim_start().starts_with('{');
    if !looks_inline {
        match ldr.read_text(text.trim()) {
            Ok((_, t)) => return Ok((text.trim().to_string(), t)),
            Err(e @ KustomizeError::Security { .. }) => return Err(e),
            Err(e) => {
                // kustomize falls back to reading the string as inline YAML.
                if parse_stream(text)
                    .ok()
                    .is_some_and(|d| d.iter().any(|v| matches!(v, Value::Map(_))))
                {
                    return Ok(("inline patch".into(), text.to_string()));
                }
                return Err(e);
            }
        }
    }
    Ok(("inline patch".into(), text.to_string()))
}

fn patch_err(name: &str, message: impl Into<String>) -> KustomizeError {
    KustomizeError::Patch {
        patch: name.to_string(),
        message: message.into(),
    }
}

fn apply_patch_entry(
    ldr: &Loader,
    acc: &mut Acc,
    oa: &OpenApi,
    p: &Value,
    kfile: &Path,
) -> Result<(), KustomizeError> {
    let m = p.as_map().ok_or_else(|| KustomizeError::Kustomization {
        path: kfile.to_path_buf(),
        message: "each entry of patches must be a mapping".into(),
    })?;
    let path = m.get("path").and_then(Value::as_str);
    let inline = m.get("patch").and_then(Value::as_str);
    let (name, text) = match (path, inline) {
        (Some(_), Some(_)) => {
            return Err(KustomizeError::Kustomization {
                path: kfile.to_path_buf(),
                message: "patch and path can't be set at the same time".into(),
            });
        }
        (Some(p), None) => {
            let (_, t) = ldr.read_text(p)?;
            (p.to_string(), t)
        }
        (None, Some(t)) => ("inline patch".to_string(), t.to_string()),
        (None, None) => {
            return Err(KustomizeError::Kustomization {
                path: kfile.to_path_buf(),
                message: "must specify one of patch and path in patches".into(),
            });
        }
    };
    let target = m.get("target").map(Selector::from_value);
    let opts = m.get("options");
    let allow_name = matches!(
        opts.and_then(|o| o.get("allowNameChange")),
        Some(Value::Bool(true))
    );
    let allow_kind = matches!(
        opts.and_then(|o| o.get("allowKindChange")),
        Some(Value::Bool(true))
    );
    apply_patch_content(
        acc,
        oa,
        &name,
        &text,
        target.as_ref(),
        allow_name,
        allow_kind,
    )
}

fn apply_patch_content(
    acc: &mut Acc,
    oa: &OpenApi,
    name: &str,
    text: &str,
    target: Option<&Selector>,
    allow_name: bool,
    allow_kind: bool,
) -> Result<(), KustomizeError> {
    let docs = parse_stream(text).map_err(|source| KustomizeError::Yaml {
        path: PathBuf::from(name),
        source,
    })?;
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    if docs.is_empty() {
        return Err(patch_err(name, "patch is empty"));
    }
    // A JSON 6902 patch is a list of operations.
    if docs.len() == 1
        && let Value::Seq(_) = &docs[0]
    {
        let ops = jsonpatch::parse_ops(&docs[0]).map_err(|e| patch_err(name, e))?;
        let sel =
            target.ok_or_else(|| patch_err(name, "must specify a target for JSON 6902 patch"))?;
        return apply_json_ops(acc, name, &ops, sel);
    }
    for d in docs {
        if !matches!(d, Value::Map(_)) {
            return Err(patch_err(name, "a strategic merge patch must be a mapping"));
        }
        apply_smp(acc, oa, name, &d, target, allow_name, allow_kind)?;
    }
    Ok(())
}

fn apply_json_ops(
    acc: &mut Acc,
    name: &str,
    ops: &[jsonpatch::Op],
    sel: &Selector,
) -> Result<(), KustomizeError> {
    for r in acc.resources.iter_mut() {
        if !sel.matches(r) {
            continue;
        }
        let before = (r.name().to_string(), r.namespace().to_string());
        let mut v = r.value.clone();
        jsonpatch::apply(&mut v, ops).map_err(|e| patch_err(name, e))?;
        r.value = v;
        let after = (r.name().to_string(), r.namespace().to_string());
        if before != after && r.prev.last() != Some(&before) {
            r.prev.push(before);
        }
    }
    Ok(())
}

fn apply_smp(
    acc: &mut Acc,
    oa: &OpenApi,
    name: &str,
    patch: &Value,
    target: Option<&Selector>,
    allow_name: bool,
    allow_kind: bool,
) -> Result<(), KustomizeError> {
    let selected: Vec<usize> = match target {
        Some(sel) => acc
            .resources
            .iter()
            .enumerate()
            .filter(|(_, r)| sel.matches(r))
            .map(|(i, _)| i)
            .collect(),
        None => {
            let pr = Resource::new(patch.clone(), None);
            let found: Vec<usize> = acc
                .resources
                .iter()
                .enumerate()
                .filter(|(_, r)| any_id_matches(r, &pr))
                .map(|(i, _)| i)
                .collect();
            if found.len() != 1 {
                return Err(patch_err(
                    name,
                    format!(
                        "no resource matches strategic merge patch \"{}\": failed to find unique target for patch {}",
                        pr.id_string(),
                        pr.id_string()
                    ),
                ));
            }
            found
        }
    };
    let mut deleted = Vec::new();
    let schema = oa.schema();
    for i in selected {
        let r = &mut acc.resources[i];
        let (n, ns, kind) = (
            r.name().to_string(),
            r.namespace().to_string(),
            r.kind().to_string(),
        );
        let api = r.api_version().to_string();
        let mut p = patch.clone();
        if target.is_some()
            && let Some(pm) = p.as_map_mut()
            && !allow_kind
        {
            pm.insert("kind".into(), Value::Str(kind.clone()));
            if api.is_empty() {
                pm.shift_remove("apiVersion");
            } else {
                pm.insert("apiVersion".into(), Value::Str(api.clone()));
            }
        }
        if allow_name || allow_kind {
            r.remember_id();
        }
        let mut v = r.value.clone();
        if !smp::merge_object(&mut v, &p, Some(&schema)) {
            deleted.push(i);
            continue;
        }
        r.value = v;
        if !allow_kind {
            r.map_mut().insert("kind".into(), Value::Str(kind));
            if api.is_empty() {
                r.map_mut().shift_remove("apiVersion");
            } else {
                r.map_mut().insert("apiVersion".into(), Value::Str(api));
            }
        }
        let md = super::resource::metadata_mut(r.map_mut());
        if !allow_name {
            md.insert("name".into(), Value::Str(n));
        }
        if ns.is_empty() {
            md.shift_remove("namespace");
        } else {
            md.insert("namespace".into(), Value::Str(ns));
        }
    }
    for i in deleted.into_iter().rev() {
        acc.resources.remove(i);
    }
    Ok(())
}

fn apply_json6902_entry(
    ldr: &Loader,
    acc: &mut Acc,
    p: &Value,
    kfile: &Path,
) -> Result<(), KustomizeError> {
    let kerr = |m: &str| KustomizeError::Kustomization {
        path: kfile.to_path_buf(),
        message: m.to_string(),
    };
    let m = p
        .as_map()
        .ok_or_else(|| kerr("each patchesJson6902 entry must be a mapping"))?;
    let target = m
        .get("target")
        .map(Selector::from_value)
        .ok_or_else(|| kerr("patchesJson6902 entry without target"))?;
    let (name, text) = match (
        m.get("path").and_then(Value::as_str),
        m.get("patch").and_then(Value::as_str),
    ) {
        (Some(p), None) => {
            let (_, t) = ldr.read_text(p)?;
            (p.to_string(), t)
        }
        (None, Some(t)) => ("inline patch".to_string(), t.to_string()),
        _ => return Err(kerr("exactly one of path and patch must be set")),
    };
    let docs = parse_stream(&text).map_err(|source| KustomizeError::Yaml {
        path: PathBuf::from(&name),
        source,
    })?;
    let doc = docs.into_iter().next().unwrap_or(Value::Null);
    let ops = jsonpatch::parse_ops(&doc).map_err(|e| patch_err(&name, e))?;
    apply_json_ops(acc, &name, &ops, &target)
}

fn namespace_transform(acc: &mut Acc, ns: &str, specs: &[FieldSpec]) -> Result<(), KustomizeError> {
    let extra: Vec<FieldSpec> = specs
        .iter()
        .filter(|f| f.path != ["metadata", "namespace"])
        .cloned()
        .collect();
    for r in acc.resources.iter_mut() {
        let gvk = r.gvk();
        if !gvk.is_cluster_scoped() {
            let old = r.namespace().to_string();
            if old != ns {
                r.remember_id();
            }
            super::resource::metadata_mut(r.map_mut())
                .insert("namespace".into(), Value::Str(ns.to_string()));
        }
        apply_specs(r, &extra, &mut |m, k, create| {
            if create || m.contains_key(k) {
                m.insert(k.to_string(), Value::Str(ns.to_string()));
            }
            Ok(())
        })
        .map_err(|e| KustomizeError::transform("namespace", e))?;
        match gvk.kind.as_str() {
            "RoleBinding" | "ClusterRoleBinding" => {
                if let Some(Value::Seq(subjects)) = r.value.get_mut("subjects") {
                    for s in subjects.iter_mut() {
                        let Some(sm) = s.as_map_mut() else { continue };
                        if sm.get("kind").and_then(Value::as_str) != Some("ServiceAccount") {
                            continue;
                        }
                        if sm.get("name").and_then(Value::as_str) == Some("default") {
                            sm.insert("namespace".into(), Value::Str(ns.to_string()));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn skip_prefix(r: &Resource) -> bool {
    let g = r.gvk();
    match g.kind.as_str() {
        "CustomResourceDefinition" => true,
        "APIService" => g.group == "apiregistration.k8s.io",
        "Namespace" => g.group.is_empty(),
        _ => false,
    }
}

fn prefix_suffix(
    acc: &mut Acc,
    prefix: &str,
    suffix: &str,
    specs: &[FieldSpec],
) -> Result<(), KustomizeError> {
    for r in acc.resources.iter_mut() {
        if skip_prefix(r) {
            continue;
        }
        let gvk = r.gvk();
        for fs in specs.iter().filter(|f| f.matches(&gvk)) {
            if fs.path == ["metadata", "name"] {
                let n = format!("{prefix}{}{suffix}", r.name());
                r.set_name(&n);
            } else {
                visit_field(&mut r.value, &fs.path, false, &mut |m, k| {
                    if let Some(Value::Str(s)) = m.get_mut(k) {
                        *s = format!("{prefix}{s}{suffix}");
                    }
                    Ok(())
                })
                .map_err(|e| KustomizeError::transform("namePrefix", e))?;
            }
        }
    }
    Ok(())
}

fn set_map_fields(
    acc: &mut Acc,
    pairs: &[(String, String)],
    specs: &[FieldSpec],
    name: &str,
) -> Result<(), KustomizeError> {
    for r in acc.resources.iter_mut() {
        apply_specs(r, specs, &mut |m, k, create| {
            let entry = m.get_mut(k);
            match entry {
                Some(Value::Map(mm)) => {
                    for (lk, lv) in pairs {
                        mm.insert(lk.clone(), Value::Str(lv.clone()));
                    }
                }
                Some(Value::Null) | None => {
                    if create {
                        let mm: Map = pairs
                            .iter()
                            .map(|(a, b)| (a.clone(), Value::Str(b.clone())))
                            .collect();
                        m.insert(k.to_string(), Value::Map(mm));
                    }
                }
                Some(_) => {
                    return Err(format!("{k} is not a map"));
                }
            }
            Ok(())
        })
        .map_err(|e| KustomizeError::transform(name, e))?;
    }
    Ok(())
}

fn replicas_transform(
    acc: &mut Acc,
    spec: &Value,
    specs: &[FieldSpec],
) -> Result<(), KustomizeError> {
    let name = spec
        .get("name")
        .and_then(Value::scalar_text)
        .unwrap_or_default();
    let count = match spec.get("count") {
        Some(Value::Int(i)) => *i,
        Some(other) => other
            .scalar_text()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| KustomizeError::transform("replicas", "count must be an integer"))?,
        None => 0,
    };
    for r in acc.resources.iter_mut() {
        if !r.all_names().any(|(n, _)| n == name) {
            continue;
        }
        apply_specs(r, specs, &mut |m, k, create| {
            if create || m.contains_key(k) {
                m.insert(k.to_string(), Value::Int(count));
            }
            Ok(())
        })
        .map_err(|e| KustomizeError::transform("replicas", e))?;
    }
    Ok(())
}

/// Splits an image reference into name, tag and digest as kustomize does.
fn split_image(image: &str) -> (String, String, String) {
    let slash = image.find('/').filter(|i| *i > 0).unwrap_or(0);
    let search = &image[slash..];
    let id = search.find('@');
    let ic = search.find(':');
    match (ic, id) {
        (None, None) => (image.to_string(), String::new(), String::new()),
        (ic, Some(id)) if ic.is_none_or(|c| id < c) => {
            let id = id + slash;
            (
                image[..id].to_string(),
                String::new(),
                image[id + 1..].to_string(),
            )
        }
        (Some(ic), Some(id)) => {
            let (ic, id) = (ic + slash, id + slash);
            (
                image[..ic].to_string(),
                image[ic + 1..id].to_string(),
                image[id + 1..].to_string(),
            )
        }
        (Some(ic), None) => {
            let ic = ic + slash;
            (
                image[..ic].to_string(),
                image[ic + 1..].to_string(),
                String::new(),
            )
        }
        _ => (image.to_string(), String::new(), String::new()),
    }
}

struct ImageSpec {
    re: ImageMatcher,
    new_name: String,
    new_tag: String,
    digest: String,
}

impl ImageSpec {
    fn update(&self, s: &mut String) {
        if !self.re.is_match(s) {
            return;
        }
        let (mut name, mut tag, mut digest) = split_image(s);
        if !self.new_name.is_empty() {
            name = self.new_name.clone();
        }
        if !self.new_tag.is_empty() && !self.digest.is_empty() {
            tag = self.new_tag.clone();
            digest = self.digest.clone();
        } else if !self.new_tag.is_empty() {
            tag = self.new_tag.clone();
            digest.clear();
        } else if !self.digest.is_empty() {
            digest = self.digest.clone();
            tag.clear();
        }
        if !tag.is_empty() {
            name = format!("{name}:{tag}");
        }
        if !digest.is_empty() {
            name = format!("{name}@{digest}");
        }
        *s = name;
    }
}

/// kustomize's image match, `^NAME(@sha256)?(:[a-zA-Z0-9_.{}-]*)?$` with NAME as a regular
/// expression. A name whose only regex syntax is `.` (any character), the usual case
/// (`registry.example.com/app`), is matched without compiling an expression.
enum ImageMatcher {
    Literal(String),
    Regex(regex::Regex),
}

impl ImageMatcher {
    fn new(name: &str) -> Result<Self, KustomizeError> {
        if name.split('.').all(|part| regex::escape(part) == part) {
            return Ok(ImageMatcher::Literal(name.to_string()));
        }
        regex::Regex::new(&format!("^{name}(@sha256)?(:[a-zA-Z0-9_.{{}}-]*)?$"))
            .or_else(|_| {
                regex::Regex::new(&format!(
                    "^{}(@sha256)?(:[a-zA-Z0-9_.{{}}-]*)?$",
                    regex::escape(name)
                ))
            })
            .map(ImageMatcher::Regex)
            .map_err(|e| KustomizeError::transform("images", e.to_string()))
    }

    fn is_match(&self, s: &str) -> bool {
        match self {
            ImageMatcher::Regex(re) => re.is_match(s),
            ImageMatcher::Literal(name) => {
                let mut chars = s.chars();
                for n in name.chars() {
                    match chars.next() {
                        Some(c) if c == n || (n == '.' && c != '\n') => {}
                        _ => return false,
                    }
                }
                let rest = chars.as_str();
                let rest = rest.strip_prefix("@sha256").unwrap_or(rest);
                match rest.strip_prefix(':') {
                    None => rest.is_empty(),
                    Some(tag) => tag
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"_.{}-".contains(&c)),
                }
            }
        }
    }
}

fn walk_containers(v: &mut Value, spec: &ImageSpec) {
    match v {
        Value::Map(m) => {
            for (k, c) in m.iter_mut() {
                if (k == "containers" || k == "initContainers") && matches!(c, Value::Seq(_)) {
                    if let Value::Seq(items) = c {
                        for it in items.iter_mut() {
                            if let Some(Value::Str(img)) = it.get_mut("image") {
                                spec.update(img);
                            }
                        }
                    }
                } else {
                    walk_containers(c, spec);
                }
            }
        }
        Value::Seq(s) => s.iter_mut().for_each(|e| walk_containers(e, spec)),
        _ => {}
    }
}

fn image_transform(acc: &mut Acc, i: &Value, specs: &[FieldSpec]) -> Result<(), KustomizeError> {
    let s = |k: &str| i.get(k).and_then(Value::scalar_text).unwrap_or_default();
    let name = s("name");
    let re = ImageMatcher::new(&name)?;
    let spec = ImageSpec {
        re,
        new_name: s("newName"),
        new_tag: s("newTag"),
        digest: s("digest"),
    };
    for r in acc.resources.iter_mut() {
        walk_containers(&mut r.value, &spec);
        apply_specs(r, specs, &mut |m, k, _| {
            if let Some(Value::Str(img)) = m.get_mut(k) {
                spec.update(img);
            }
            Ok(())
        })
        .map_err(|e| KustomizeError::transform("images", e))?;
    }
    Ok(())
}

/// Runs one entry of `generators:` / `transformers:`: a file (or inline text) holding builtin
/// plugin configurations, or a directory whose kustomization produces them.
fn run_plugin_entry(
    ctx: &mut Ctx<'_>,
    ldr: &Loader,
    k: &Kustomization,
    entry: &str,
    acc: &mut Acc,
    generator: bool,
) -> Result<(), KustomizeError> {
    let configs: Vec<(Option<PathBuf>, Value)> = if entry.contains('\n') {
        parse_stream(entry)
            .map_err(|source| KustomizeError::Yaml {
                path: k.file.clone(),
                source,
            })?
            .into_iter()
            .map(|v| (None, v))
            .collect()
    } else {
        if is_remote(entry) {
            return Err(KustomizeError::Remote {
                path: k.file.clone(),
                url: entry.to_string(),
            });
        }
        let target = ldr.resolve(entry, false)?;
        if target.is_dir() {
            let sub = accumulate(ctx, &target, false, Acc::default())?;
            sub.resources
                .into_iter()
                .map(|r| (r.origin.clone(), r.value))
                .collect()
        } else {
            let (p, text) = ldr.read_text(entry)?;
            parse_stream(&text)
                .map_err(|source| KustomizeError::Yaml {
                    path: p.clone(),
                    source,
                })?
                .into_iter()
                .map(|v| (Some(p.clone()), v))
                .collect()
        }
    };
    for (_, cfg) in configs {
        if cfg.is_null() {
            continue;
        }
        run_builtin(ldr, acc, &ctx.openapi, &cfg, generator, &k.file)?;
    }
    Ok(())
}

fn builtin_err(kind: &str, m: impl Into<String>) -> KustomizeError {
    KustomizeError::transform(kind, m)
}

fn field_specs(v: Option<&Value>) -> Vec<FieldSpec> {
    match v {
        Some(Value::Seq(s)) => s.iter().filter_map(FieldSpec::from_value).collect(),
        _ => Vec::new(),
    }
}

fn run_builtin(
    ldr: &Loader,
    acc: &mut Acc,
    oa: &OpenApi,
    cfg: &Value,
    _generator: bool,
    kfile: &Path,
) -> Result<(), KustomizeError> {
    let kind = cfg.str_at(&["kind"]).unwrap_or("").to_string();
    let api = cfg.str_at(&["apiVersion"]).unwrap_or("").to_string();
    if api != "builtin" && !api.is_empty() && api.contains('/') && !api.starts_with("builtin") {
        return Err(builtin_err(
            &kind,
            format!("plugin {api}/{kind} is not a builtin; exec and Go plugins are not supported"),
        ));
    }
    let config = effective_config(&acc.config);
    let get = |k: &str| cfg.get(k).filter(|v| !v.is_null());
    match kind.as_str() {
        "ConfigMapGenerator" | "SecretGenerator" => {
            let mut r = generators::generate(
                ldr,
                &strip_meta_into_generator(cfg),
                kind == "SecretGenerator",
                &GenOptions::default(),
                None,
            )?;
            r.gen_origin = Some((kfile.to_path_buf(), configured_by(&kind, cfg)));
            absorb_generated(acc, r)
        }
        "PrefixSuffixTransformer" | "PrefixTransformer" | "SuffixTransformer" => {
            let prefix = get("prefix")
                .and_then(Value::scalar_text)
                .unwrap_or_default();
            let suffix = get("suffix")
                .and_then(Value::scalar_text)
                .unwrap_or_default();
            let specs = field_specs(get("fieldSpecs"));
            prefix_suffix(acc, &prefix, &suffix, &specs)?;
            for r in acc.resources.iter_mut() {
                r.transforms
                    .push((kfile.to_path_buf(), configured_by(&kind, cfg)));
            }
            Ok(())
        }
        "LabelTransformer" | "AnnotationsTransformer" => {
            let key = if kind == "LabelTransformer" {
                "labels"
            } else {
                "annotations"
            };
            let pairs: Vec<(String, String)> = get(key)
                .and_then(Value::as_map)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.scalar_text().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            let specs = field_specs(get("fieldSpecs"));
            set_map_fields(acc, &pairs, &specs, &kind)
        }
        "NamespaceTransformer" => {
            let ns = cfg
                .str_at(&["metadata", "namespace"])
                .unwrap_or("")
                .to_string();
            let mut specs = field_specs(get("fieldSpecs"));
            if specs.is_empty() {
                specs = config.namespace.clone();
            }
            namespace_transform(acc, &ns, &specs)?;
            for r in acc.resources.iter_mut() {
                r.transforms
                    .push((kfile.to_path_buf(), configured_by(&kind, cfg)));
            }
            Ok(())
        }
        "PatchTransformer" => {
            let target = get("target").map(Selector::from_value);
            let opts = get("options");
            let allow_name = matches!(
                opts.and_then(|o| o.get("allowNameChange")),
                Some(Value::Bool(true))
            );
            let allow_kind = matches!(
                opts.and_then(|o| o.get("allowKindChange")),
                Some(Value::Bool(true))
            );
            let (name, text) = match (
                get("path").and_then(Value::as_str),
                get("patch").and_then(Value::as_str),
            ) {
                (Some(p), _) => {
                    let (_, t) = ldr.read_text(p)?;
                    (p.to_string(), t)
                }
                (None, Some(t)) => ("inline patch".to_string(), t.to_string()),
                _ => return Err(builtin_err(&kind, "must specify one of patch and path")),
            };
            apply_patch_content(
                acc,
                oa,
                &name,
                &text,
                target.as_ref(),
                allow_name,
                allow_kind,
            )
        }
        "PatchStrategicMergeTransformer" => {
            let mut texts = Vec::new();
            if let Some(Value::Seq(paths)) = get("paths") {
                for p in paths.iter().filter_map(Value::scalar_text) {
                    let (_, t) = ldr.read_text(&p)?;
                    texts.push((p, t));
                }
            }
            if let Some(t) = get("patches").and_then(Value::as_str) {
                texts.push(("inline patch".into(), t.to_string()));
            }
            for (n, t) in texts {
                apply_patch_content(acc, oa, &n, &t, None, false, false)?;
            }
            Ok(())
        }
        "PatchJson6902Transformer" => {
            let target = get("target")
                .map(Selector::from_value)
                .ok_or_else(|| builtin_err(&kind, "must specify the target field"))?;
            let (name, text) = match (
                get("path").and_then(Value::as_str),
                get("jsonOp").and_then(Value::as_str),
            ) {
                (Some(p), _) => {
                    let (_, t) = ldr.read_text(p)?;
                    (p.to_string(), t)
                }
                (None, Some(t)) => ("inline patch".to_string(), t.to_string()),
                _ => return Err(builtin_err(&kind, "must specify one of path and jsonOp")),
            };
            let doc = parse_stream(&text)
                .map_err(|source| KustomizeError::Yaml {
                    path: PathBuf::from(&name),
                    source,
                })?
                .into_iter()
                .next()
                .unwrap_or(Value::Null);
            let ops = jsonpatch::parse_ops(&doc).map_err(|e| patch_err(&name, e))?;
            apply_json_ops(acc, &name, &ops, &target)
        }
        "ImageTagTransformer" => {
            let image = get("imageTag").cloned().unwrap_or(Value::Null);
            let mut specs = field_specs(get("fieldSpecs"));
            if specs.is_empty() {
                specs = config.images.clone();
            }
            image_transform(acc, &image, &specs)
        }
        "ReplicaCountTransformer" => {
            let replica = get("replica").cloned().unwrap_or(Value::Null);
            let mut specs = field_specs(get("fieldSpecs"));
            if specs.is_empty() {
                specs = config.replicas.clone();
            }
            replicas_transform(acc, &replica, &specs)
        }
        "ReplacementTransformer" => {
            if let Some(Value::Seq(reps)) = get("replacements") {
                for rep in reps {
                    for r in load_replacements(ldr, rep)? {
                        vars::apply_replacement(&mut acc.resources, &r)?;
                    }
                }
            }
            Ok(())
        }
        "ValueAddTransformer" => value_add(acc, cfg, ldr),
        "IAMPolicyGenerator" => {
            let cloud = cfg.str_at(&["cloud"]).unwrap_or("");
            if cloud != "gke" {
                return Err(builtin_err(
                    &kind,
                    format!("cloud {cloud:?} is not supported"),
                ));
            }
            let sa_name = cfg.str_at(&["kubernetesService", "name"]).unwrap_or("");
            let sa_ns = cfg
                .str_at(&["kubernetesService", "namespace"])
                .unwrap_or("");
            let gsa = cfg.str_at(&["serviceAccount", "name"]).unwrap_or("");
            let project = cfg.str_at(&["serviceAccount", "projectId"]).unwrap_or("");
            let mut md = Map::new();
            let mut annos = Map::new();
            annos.insert(
                "iam.gke.io/gcp-service-account".into(),
                Value::Str(format!("{gsa}@{project}.iam.gserviceaccount.com")),
            );
            md.insert("annotations".into(), Value::Map(annos));
            md.insert("name".into(), Value::Str(sa_name.to_string()));
            if !sa_ns.is_empty() {
                md.insert("namespace".into(), Value::Str(sa_ns.to_string()));
            }
            let mut obj = Map::new();
            obj.insert("apiVersion".into(), Value::Str("v1".into()));
            obj.insert("kind".into(), Value::Str("ServiceAccount".into()));
            obj.insert("metadata".into(), Value::Map(md));
            let mut r = Resource::new(Value::Map(obj), None);
            r.generated = true;
            r.gen_origin = Some((kfile.to_path_buf(), kind.clone()));
            absorb_generated(acc, r)
        }
        other => Err(builtin_err(
            other,
            "unsupported plugin kind (only kustomize's builtin plugins are available)",
        )),
    }
}

/// A builtin generator config uses `metadata.name`/`namespace` for the generated object.
fn strip_meta_into_generator(cfg: &Value) -> Value {
    let mut m = cfg.as_map().cloned().unwrap_or_default();
    if let Some(n) = cfg.str_at(&["metadata", "name"])
        && !m.contains_key("name")
    {
        m.insert("name".into(), Value::Str(n.to_string()));
    }
    if let Some(n) = cfg.str_at(&["metadata", "namespace"])
        && !m.contains_key("namespace")
    {
        m.insert("namespace".into(), Value::Str(n.to_string()));
    }
    Value::Map(m)
}

fn value_add(acc: &mut Acc, cfg: &Value, ldr: &Loader) -> Result<(), KustomizeError> {
    // Without a value, kustomize uses the name of the kustomization's directory.
    let value = match cfg.str_at(&["value"]) {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => ldr
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let targets = cfg
        .get("targets")
        .and_then(Value::as_seq)
        .cloned()
        .unwrap_or_default();
    for t in targets {
        let sel = t
            .get("selector")
            .map(Selector::from_value)
            .unwrap_or_default();
        let fp = t.str_at(&["fieldPath"]).unwrap_or("").to_string();
        let file_path = t
            .get("filePathPosition")
            .and_then(Value::scalar_text)
            .and_then(|s| s.parse::<usize>().ok());
        let segs: Vec<String> = fp
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        for r in acc.resources.iter_mut() {
            if !sel.matches(r) {
                continue;
            }
            if segs == ["metadata", "namespace"] {
                r.set_namespace(&value);
                continue;
            }
            visit_field(&mut r.value, &segs, true, &mut |m, k| {
                let newv = match (file_path, m.get(k).and_then(Value::as_str)) {
                    (Some(pos), Some(cur)) if pos > 0 => {
                        let mut parts: Vec<&str> = cur.split('/').collect();
                        let idx = (pos - 1).min(parts.len());
                        parts.insert(idx, &value);
                        parts.join("/")
                    }
                    _ => value.clone(),
                };
                m.insert(k.to_string(), Value::Str(newv));
                Ok(())
            })
            .map_err(|e| KustomizeError::transform("ValueAddTransformer", e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ImageMatcher;

    #[test]
    fn image_names_match_as_kustomize_regex_does() {
        for name in ["registry.example.com/app", "nginx", "a.b", "app[0-9]", "x+"] {
            let literal = ImageMatcher::new(name).expect("matcher");
            let re = regex::Regex::new(&format!("^{name}(@sha256)?(:[a-zA-Z0-9_.{{}}-]*)?$"))
                .expect("regex");
            for img in [
                name,
                "registry.example.com/app:1.0",
                "registry.example.com/app@sha256:abc",
                "registryXexample.com/app:v1",
                "registry.example.com/app2",
                "registry.example.com/app:bad/tag",
                "nginx:1.25",
                "nginx@sha256",
                "nginxx",
                "axb:1",
                "app7:1",
                "xx:1",
                "",
            ] {
                assert_eq!(literal.is_match(img), re.is_match(img), "{name} vs {img}");
            }
        }
    }
}
