//! Rendering a loaded chart: template namespace, per-chart data, execution, Helm's manifest
//! sorting and `helm template`'s output format.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::HelmError;
use super::chart::{Chart, glob_match};
use super::funcs;
use super::template::{self, Exec, ExecError, Limits, Set};
use super::value::{Object, Value};
use super::values;
use super::yaml;

/// Helm's default API versions (`chartutil.DefaultVersionSet`, Helm 3.17).
pub const DEFAULT_API_VERSIONS: &[&str] = &[
    "v1",
    "admissionregistration.k8s.io/v1",
    "admissionregistration.k8s.io/v1alpha1",
    "admissionregistration.k8s.io/v1beta1",
    "internal.apiserver.k8s.io/v1alpha1",
    "apps/v1",
    "apps/v1beta1",
    "apps/v1beta2",
    "authentication.k8s.io/v1",
    "authentication.k8s.io/v1alpha1",
    "authentication.k8s.io/v1beta1",
    "authorization.k8s.io/v1",
    "authorization.k8s.io/v1beta1",
    "autoscaling/v1",
    "autoscaling/v2",
    "autoscaling/v2beta1",
    "autoscaling/v2beta2",
    "batch/v1",
    "batch/v1beta1",
    "certificates.k8s.io/v1",
    "certificates.k8s.io/v1beta1",
    "certificates.k8s.io/v1alpha1",
    "coordination.k8s.io/v1alpha2",
    "coordination.k8s.io/v1beta1",
    "coordination.k8s.io/v1",
    "discovery.k8s.io/v1",
    "discovery.k8s.io/v1beta1",
    "events.k8s.io/v1",
    "events.k8s.io/v1beta1",
    "extensions/v1beta1",
    "flowcontrol.apiserver.k8s.io/v1",
    "flowcontrol.apiserver.k8s.io/v1beta1",
    "flowcontrol.apiserver.k8s.io/v1beta2",
    "flowcontrol.apiserver.k8s.io/v1beta3",
    "networking.k8s.io/v1",
    "networking.k8s.io/v1alpha1",
    "networking.k8s.io/v1beta1",
    "node.k8s.io/v1",
    "node.k8s.io/v1alpha1",
    "node.k8s.io/v1beta1",
    "policy/v1",
    "policy/v1beta1",
    "rbac.authorization.k8s.io/v1",
    "rbac.authorization.k8s.io/v1beta1",
    "rbac.authorization.k8s.io/v1alpha1",
    "resource.k8s.io/v1beta1",
    "resource.k8s.io/v1alpha3",
    "scheduling.k8s.io/v1alpha1",
    "scheduling.k8s.io/v1beta1",
    "scheduling.k8s.io/v1",
    "storage.k8s.io/v1beta1",
    "storage.k8s.io/v1",
    "storage.k8s.io/v1alpha1",
    "storagemigration.k8s.io/v1alpha1",
    "apiextensions.k8s.io/v1beta1",
    "apiextensions.k8s.io/v1",
];

/// Helm's install order of kinds (3.17: webhook configurations are not in it, so they sort
/// with the unknown kinds, alphabetically, after every known kind).
pub const INSTALL_ORDER: &[&str] = &[
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
];

/// What to render and how (the arguments of `helm template`).
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The release name.
    pub release_name: String,
    /// The release namespace.
    pub namespace: String,
    /// The Kubernetes version, e.g. `v1.31.0`.
    pub kube_version: String,
    /// API versions added to Helm's default set.
    pub api_versions: Vec<String>,
    /// Print CRDs from `crds/` first.
    pub include_crds: bool,
    /// Leave test hooks out.
    pub skip_tests: bool,
    /// The user-supplied values (already merged from files and `--set`).
    pub values: Value,
    /// Maximum nesting of include/tpl/template.
    pub max_depth: usize,
    /// Maximum bytes of output of one template.
    pub max_output: usize,
    /// Time limit for the whole render.
    pub timeout: Option<Duration>,
    /// The cluster `lookup` asks; `None` (the default) renders offline like `helm template`,
    /// `lookup` returning empty maps.
    pub lookup: Option<std::sync::Arc<dyn super::lookup::Lookup + Send + Sync>>,
    /// Split the rendered manifests and read their heads on a second thread while later
    /// templates execute. Output and errors are the same either way; this lowers the wall
    /// time of one large render on an idle multi-core machine, at the cost of some extra CPU
    /// time (a thread and a channel per render), so it is off by default (a controller
    /// rendering many charts at once keeps its cores busy already).
    pub parallel: bool,
}

/// The Kubernetes version `helm template` assumes without `--kube-version`: helm 3.17.3's
/// release binary is built with client-go 0.32, so `.Capabilities.KubeVersion` is `v1.32.0`.
pub const DEFAULT_KUBE_VERSION: &str = "v1.32.0";

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            release_name: "release-name".into(),
            namespace: "default".into(),
            kube_version: DEFAULT_KUBE_VERSION.into(),
            api_versions: Vec::new(),
            include_crds: false,
            skip_tests: false,
            values: Value::new_map(),
            max_depth: 1000,
            max_output: 256 * 1024 * 1024,
            timeout: None,
            lookup: None,
            parallel: false,
        }
    }
}

/// A rendered document with the template it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `# Source:` path (`chart/templates/x.yaml`).
    pub source: String,
    /// The document text.
    pub content: String,
    /// Its `kind`.
    pub kind: String,
    /// Whether it is a hook.
    pub hook: bool,
}

/// The result of a render.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// CRDs from `crds/` (when asked for), then manifests in install order, then hooks.
    pub manifests: Vec<Manifest>,
    /// CRD files printed first: source path and raw text.
    pub crds: Vec<(String, String)>,
    /// Warnings helm prints on stderr.
    pub warnings: Vec<String>,
}

impl Rendered {
    /// The exact text `helm template` prints on stdout.
    pub fn to_helm_output(&self) -> String {
        const HEAD: &str = "---\n# Source: ";
        let doc_len = |src: &str, text: &str| HEAD.len() + src.len() + 1 + text.len() + 1;
        let size = self
            .crds
            .iter()
            .map(|(s, t)| doc_len(s, t))
            .chain(
                self.manifests
                    .iter()
                    .map(|m| doc_len(&m.source, &m.content)),
            )
            .sum::<usize>()
            + 1;
        let mut out = String::with_capacity(size);
        let push = |out: &mut String, src: &str, text: &str| {
            out.push_str(HEAD);
            out.push_str(src);
            out.push('\n');
            out.push_str(text);
            out.push('\n');
        };
        for (src, text) in &self.crds {
            push(&mut out, src, text);
        }
        for m in self.manifests.iter().filter(|m| !m.hook) {
            push(&mut out, &m.source, &m.content);
        }
        // Helm trims the non-hook part (which, when not empty, starts with `---`).
        let kept = out.trim_end_matches(go_space).len();
        out.truncate(kept);
        out.push('\n');
        for m in self.manifests.iter().filter(|m| m.hook) {
            push(&mut out, &m.source, &m.content);
        }
        out
    }
}

fn go_space(c: char) -> bool {
    c.is_whitespace()
}

// ---------------------------------------------------------------------------------------------
// Objects exposed to templates

struct Files {
    files: BTreeMap<String, Rc<Vec<u8>>>,
}

impl Object for Files {
    fn type_name(&self) -> &str {
        "engine.files"
    }
    fn field(&self, _name: &str) -> Option<Value> {
        None
    }
    fn call(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        let arg = |i: usize| args.get(i).map(funcs::strval).unwrap_or_default();
        Some(Ok(match name {
            "Get" => Value::from(
                self.files
                    .get(&arg(0))
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default(),
            ),
            "GetBytes" => Value::Bytes(self.files.get(&arg(0)).cloned().unwrap_or_default()),
            "Glob" => {
                let pattern = arg(0);
                let matches = glob_matcher(&pattern);
                let files = self
                    .files
                    .iter()
                    .filter(|(n, _)| matches(n))
                    .map(|(n, d)| (n.clone(), d.clone()))
                    .collect();
                Value::Object(Rc::new(Files { files }))
            }
            "Lines" => {
                let Some(d) = self.files.get(&arg(0)) else {
                    return Some(Ok(Value::from(Vec::new())));
                };
                let mut s = String::from_utf8_lossy(d).into_owned();
                if s.ends_with('\n') {
                    s.pop();
                }
                Value::from(s.split('\n').map(Value::from).collect::<Vec<_>>())
            }
            "AsConfig" => {
                let mut m = BTreeMap::new();
                for (k, v) in &self.files {
                    m.insert(
                        base(k),
                        Value::from(String::from_utf8_lossy(v).into_owned()),
                    );
                }
                Value::from(
                    yaml::to_yaml(&Value::from(m))
                        .trim_end_matches('\n')
                        .to_string(),
                )
            }
            "AsSecrets" => {
                use base64::Engine as _;
                let mut m = BTreeMap::new();
                for (k, v) in &self.files {
                    m.insert(
                        base(k),
                        Value::from(base64::engine::general_purpose::STANDARD.encode(&***v)),
                    );
                }
                Value::from(
                    yaml::to_yaml(&Value::from(m))
                        .trim_end_matches('\n')
                        .to_string(),
                )
            }
            _ => return None,
        }))
    }
    fn display(&self) -> String {
        let parts: Vec<String> = self
            .files
            .iter()
            .map(|(k, v)| format!("{k}:{}", Value::Bytes(v.clone()).to_go_string()))
            .collect();
        format!("map[{}]", parts.join(" "))
    }
    fn range_items(&self) -> Option<Vec<(Value, Value)>> {
        Some(
            self.files
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()), Value::Bytes(v.clone())))
                .collect(),
        )
    }
    fn len(&self) -> Option<usize> {
        Some(self.files.len())
    }
}

fn base(p: &str) -> String {
    p.rsplit('/').next().unwrap_or(p).to_string()
}

/// gobwas/glob with `/` as separator: `**` crosses directories, `*` does not.
#[cfg(test)]
fn glob_doublestar(pattern: &str, name: &str) -> bool {
    glob_matcher(pattern)(name)
}

/// The matcher for one pattern, compiled once for all the files it is tried on.
fn glob_matcher(pattern: &str) -> Box<dyn Fn(&str) -> bool + '_> {
    if !pattern.contains("**") && !pattern.contains('{') {
        return Box::new(move |name| glob_match(pattern, name));
    }
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                re.push_str(".*");
                i += 1;
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '{' => re.push('('),
            '}' => re.push(')'),
            ',' => re.push('|'),
            '[' | ']' => re.push(c),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    re.push('$');
    match regex::Regex::new(&re) {
        Ok(r) => Box::new(move |name| r.is_match(name)),
        Err(_) => Box::new(|_| false),
    }
}

struct KubeVersion {
    version: String,
    major: String,
    minor: String,
}

impl Object for KubeVersion {
    fn type_name(&self) -> &str {
        "chartutil.KubeVersion"
    }
    fn field(&self, name: &str) -> Option<Value> {
        Some(Value::from(match name {
            "Version" | "GitVersion" => self.version.clone(),
            "Major" => self.major.clone(),
            "Minor" => self.minor.clone(),
            _ => return None,
        }))
    }
    fn call(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        if name == "String" && args.is_empty() {
            return Some(Ok(Value::from(self.version.as_str())));
        }
        None
    }
    fn display(&self) -> String {
        self.version.clone()
    }
}

struct VersionSet(Vec<String>);

impl Object for VersionSet {
    fn type_name(&self) -> &str {
        "chartutil.VersionSet"
    }
    fn field(&self, _name: &str) -> Option<Value> {
        None
    }
    fn call(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        if name == "Has" {
            let want = args.first().map(funcs::strval).unwrap_or_default();
            return Some(Ok(Value::Bool(self.0.contains(&want))));
        }
        None
    }
    fn display(&self) -> String {
        format!("[{}]", self.0.join(" "))
    }
    fn range_items(&self) -> Option<Vec<(Value, Value)>> {
        Some(
            self.0
                .iter()
                .enumerate()
                .map(|(i, v)| (Value::Int(i as i64), Value::from(v.as_str())))
                .collect(),
        )
    }
    fn len(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

fn capabilities(opts: &RenderOptions) -> Value {
    let kv = if opts.kube_version.starts_with('v') {
        opts.kube_version.clone()
    } else {
        format!("v{}", opts.kube_version)
    };
    let trimmed = kv.trim_start_matches('v');
    let mut parts = trimmed.split('.');
    let major = parts.next().unwrap_or("1").to_string();
    let minor = parts.next().unwrap_or("0").to_string();
    let mut apis: Vec<String> = DEFAULT_API_VERSIONS.iter().map(|s| s.to_string()).collect();
    apis.extend(opts.api_versions.iter().cloned());
    let mut hv = BTreeMap::new();
    hv.insert("Version".into(), Value::from("v3.17.3"));
    hv.insert(
        "GitCommit".into(),
        Value::from("e4da49785aa6e6ee2b86efd5dd9e43400318262b"),
    );
    hv.insert("GitTreeState".into(), Value::from("clean"));
    hv.insert("GoVersion".into(), Value::from("go1.23.7"));
    let mut caps = BTreeMap::new();
    caps.insert(
        "KubeVersion".into(),
        Value::Object(Rc::new(KubeVersion {
            version: kv.clone(),
            major,
            minor,
        })),
    );
    caps.insert(
        "APIVersions".into(),
        Value::Object(Rc::new(VersionSet(apis))),
    );
    caps.insert("HelmVersion".into(), Value::from(hv));
    Value::from(caps)
}

// ---------------------------------------------------------------------------------------------
// Rendering

struct Renderable {
    text: Rc<str>,
    vals: Value,
    base_path: String,
}

fn collect_templates(
    c: &Chart,
    parent_path: Option<&str>,
    top: &Value,
    parent_vals: &Value,
    out: &mut BTreeMap<String, Renderable>,
) -> Value {
    let full_path = match parent_path {
        None => c.name.clone(),
        Some(p) => format!("{p}/charts/{}", c.name),
    };
    let mut meta = c.metadata.clone();
    meta.insert("Name".into(), Value::from(c.name.as_str()));
    meta.insert("IsRoot".into(), Value::Bool(parent_path.is_none()));
    let files = Files {
        files: c
            .files
            .iter()
            .map(|(n, d)| (n.clone(), d.clone()))
            .collect(),
    };
    let subcharts = Value::new_map();
    let values = if parent_path.is_none() {
        top.get("Values").unwrap_or_else(Value::new_map)
    } else {
        match parent_vals.get("Values").and_then(|v| v.get(&c.name)) {
            Some(v @ Value::Map(_)) => v,
            _ => Value::new_map(),
        }
    };
    let mut next = BTreeMap::new();
    next.insert("Chart".to_string(), Value::from(meta));
    next.insert("Files".to_string(), Value::Object(Rc::new(files)));
    next.insert(
        "Release".to_string(),
        top.get("Release").unwrap_or_default(),
    );
    next.insert(
        "Capabilities".to_string(),
        top.get("Capabilities").unwrap_or_default(),
    );
    next.insert("Values".to_string(), values);
    next.insert("Subcharts".to_string(), subcharts.clone());
    let next = Value::from(next);
    for child in &c.subcharts {
        let v = collect_templates(child, Some(&full_path), top, &next, out);
        if let Some(m) = subcharts.as_map() {
            m.borrow_mut().insert(child.name.clone(), v);
        }
    }
    for (name, text) in &c.templates {
        if c.is_library() && !base(name).starts_with('_') {
            continue;
        }
        out.insert(
            format!("{full_path}/{name}"),
            Renderable {
                text: text.clone(),
                vals: next.clone(),
                base_path: format!("{full_path}/templates"),
            },
        );
    }
    next
}

/// A template's text as a map key: hashed by its length and its first and last bytes (not the
/// whole text), compared whole.
#[derive(PartialEq, Eq)]
struct TextKey<'t>(&'t str);

impl std::hash::Hash for TextKey<'_> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        const ENDS: usize = 128;
        let b = self.0.as_bytes();
        h.write_usize(b.len());
        h.write(&b[..b.len().min(ENDS)]);
        h.write(&b[b.len().saturating_sub(ENDS)..]);
    }
}

/// Helm's parse order: deeper paths first, then reverse lexical order.
fn sort_templates(keys: Vec<String>) -> Vec<String> {
    // Each path's depth is counted once, not at every comparison.
    let mut k: Vec<(usize, String)> = keys
        .into_iter()
        .map(|p| (p.bytes().filter(|&c| c == b'/').count(), p))
        .collect();
    k.sort_by(|(da, a), (db, b)| db.cmp(da).then_with(|| b.cmp(a)));
    k.into_iter().map(|(_, p)| p).collect()
}

fn reformat_exec_error(filename: &str, msg: &str) -> String {
    let tokens: Vec<&str> = msg.splitn(3, ": ").collect();
    if tokens.len() != 3 {
        return format!("execution error in ({filename}): {msg}");
    }
    let location = tokens[1];
    if let (Some(s), Some(e)) = (
        tokens[2].find("HELM_ERR_START"),
        tokens[2].rfind("HELM_ERR_END"),
    ) && s + "HELM_ERR_START".len() <= e
    {
        return format!(
            "execution error at ({location}): {}",
            &tokens[2][s + "HELM_ERR_START".len()..e]
        );
    }
    msg.to_string()
}

/// The CRD files of the chart and its subcharts (path, text). Each file's bytes move into the
/// text when nothing else holds them (no copy); otherwise they are copied.
fn crd_objects(c: &mut Chart, parent_path: Option<&str>, out: &mut Vec<(String, String)>) {
    let full_path = match parent_path {
        None => c.name.clone(),
        Some(p) => format!("{p}/charts/{}", c.name),
    };
    for (name, data) in &mut c.files {
        if name.starts_with("crds/")
            && (name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json"))
        {
            let text = match Rc::try_unwrap(std::mem::take(data)) {
                Ok(bytes) => super::chart::into_string_lossy(bytes),
                Err(shared) => {
                    let text = String::from_utf8_lossy(&shared).into_owned();
                    *data = shared;
                    text
                }
            };
            out.push((format!("{full_path}/{name}"), text));
        }
    }
    for sub in &mut c.subcharts {
        crd_objects(sub, Some(&full_path), out);
    }
}

/// Renders a chart as `helm template` does.
pub fn render(mut chart: Chart, opts: &RenderOptions) -> Result<Rendered, HelmError> {
    let mut warnings = Vec::new();
    if chart.is_library() {
        return Err(HelmError::Chart {
            chart: chart.name.clone(),
            message: "library charts are not installable".into(),
        });
    }
    if chart.deprecated {
        warnings.push("This chart is deprecated".to_string());
    }
    let caps = capabilities(opts);
    let kv = caps
        .get("KubeVersion")
        .map(|k| k.to_go_string())
        .unwrap_or_default();
    if !chart.kube_version.is_empty()
        && !super::semver::constraint_matches(&chart.kube_version, &kv).unwrap_or(false)
    {
        return Err(HelmError::Chart {
            chart: chart.name.clone(),
            message: format!(
                "chart requires kubeVersion: {} which is incompatible with Kubernetes {kv}",
                chart.kube_version
            ),
        });
    }
    let user = match &opts.values {
        v @ Value::Map(_) => v.clone(),
        _ => Value::new_map(),
    };
    values::process_dependencies(&mut chart, &user)?;
    let vals = values::coalesce_values(&chart, &user, false)?;
    super::schema::validate_chart(&chart, &vals)?;

    let mut release = BTreeMap::new();
    release.insert("Name".to_string(), Value::from(opts.release_name.as_str()));
    release.insert(
        "Namespace".to_string(),
        Value::from(opts.namespace.as_str()),
    );
    release.insert("IsUpgrade".to_string(), Value::Bool(false));
    release.insert("IsInstall".to_string(), Value::Bool(true));
    release.insert("Revision".to_string(), Value::Int(1));
    release.insert("Service".to_string(), Value::from("Helm"));
    let mut top = BTreeMap::new();
    top.insert("Chart".to_string(), Value::from(chart.metadata.clone()));
    top.insert("Capabilities".to_string(), caps);
    top.insert("Release".to_string(), Value::from(release));
    top.insert("Values".to_string(), vals);
    let top = Value::from(top);

    let mut tpls = BTreeMap::new();
    collect_templates(&chart, None, &top, &top, &mut tpls);
    let keys = sort_templates(tpls.keys().cloned().collect());

    let fmap = funcs::func_map();
    let mut set = Set::default();
    // Identical files (a library chart vendored by several subcharts) are parsed once.
    let mut parsed_texts: std::collections::HashMap<
        TextKey<'_>,
        template::Parsed,
        template::FastHash,
    > = std::collections::HashMap::default();
    for k in &keys {
        let r = &tpls[k];
        if let Some(p) = parsed_texts.get(&TextKey(&r.text)) {
            set.add(p.renamed(k));
            continue;
        }
        let parsed = template::parse::parse_shared(k, r.text.clone(), &|n| fmap.contains_key(n))
            .map_err(|e| {
                let msg = e.to_string();
                let tokens: Vec<&str> = msg.split(": ").collect();
                if tokens.len() == 1 {
                    HelmError::Parse(format!("parse error in ({k}): {msg}"))
                } else {
                    HelmError::Parse(format!(
                        "parse error at ({}): {}",
                        tokens[1],
                        tokens[tokens.len() - 1]
                    ))
                }
            })?;
        set.add(parsed.renamed(k));
        parsed_texts.insert(TextKey(&r.text), parsed);
    }
    drop(parsed_texts);
    let limits = Limits {
        max_depth: opts.max_depth,
        max_output: opts.max_output,
        deadline: opts.timeout.map(|t| Instant::now() + t),
    };
    // Each rendered file is split into documents and their heads are read (YAML) on a
    // second thread while the next templates execute; the results are combined in path
    // order afterwards, so output and errors are those of the sequential order.
    let skip_tests = opts.skip_tests;
    let (classified, executed) = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<(String, String)>();
        let worker = if !opts.parallel {
            drop(rx);
            None
        } else {
            Some(
                std::thread::Builder::new()
                    .name("helm-manifests".into())
                    .stack_size(MANIFEST_WORKER_STACK)
                    .spawn_scoped(scope, move || {
                        rx.into_iter()
                            .map(|(path, content)| {
                                let docs = classify_file(&path, &content, skip_tests);
                                (path, docs)
                            })
                            .collect::<Vec<_>>()
                    }),
            )
        };
        // Without a second thread (not asked for, or spawning failed), files are classified
        // here at the end.
        let (tx, mut pending) = match worker {
            Some(Ok(w)) => (Some((tx, w)), Vec::new()),
            _ => (None, Vec::new()),
        };
        let mut executed = Ok(());
        for k in &keys {
            if base(k).starts_with('_') {
                continue;
            }
            let r = &tpls[k];
            let mut tmpl_info = BTreeMap::new();
            tmpl_info.insert("Name".to_string(), Value::from(k.as_str()));
            tmpl_info.insert("BasePath".to_string(), Value::from(r.base_path.as_str()));
            if let Some(m) = r.vals.as_map() {
                m.borrow_mut()
                    .insert("Template".into(), Value::from(tmpl_info));
            }
            let mut ex = Exec::new(&set, &fmap, limits);
            ex.cluster = opts.lookup.clone();
            let out = match ex.execute(k, r.vals.clone()) {
                Ok(out) => out,
                Err(e) => {
                    executed = Err(match e {
                        ExecError::Exec(m) => HelmError::Exec(reformat_exec_error(k, &m)),
                        ExecError::Depth(name) => HelmError::RecursionLimit {
                            template: k.clone(),
                            name,
                        },
                        ExecError::OutputTooLarge(n) => HelmError::OutputLimit {
                            template: k.clone(),
                            limit: n,
                        },
                        ExecError::Timeout => HelmError::Timeout {
                            template: k.clone(),
                        },
                    });
                    break;
                }
            };
            // NOTES.txt is not a manifest.
            if k.ends_with("NOTES.txt") {
                continue;
            }
            let out = if out.contains("<no value>") {
                out.replace("<no value>", "")
            } else {
                out
            };
            match &tx {
                Some((tx, _)) => {
                    if let Err(std::sync::mpsc::SendError(item)) = tx.send((k.clone(), out)) {
                        pending.push(item);
                    }
                }
                None => pending.push((k.clone(), out)),
            }
        }
        let mut classified = match tx {
            Some((tx, worker)) => {
                drop(tx);
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }
            None => Vec::new(),
        };
        if executed.is_ok() {
            for (path, content) in pending {
                let docs = classify_file(&path, &content, skip_tests);
                classified.push((path, docs));
            }
        }
        (classified, executed)
    });
    executed?;
    let (manifests, hooks) = sort_manifests(classified)?;
    let mut all = manifests;
    all.extend(hooks);
    let mut crds = Vec::new();
    if opts.include_crds {
        // The templates' data (and the `.Files` they share with the chart) go first, so that
        // the CRD files' bytes are the chart's alone.
        drop(tpls);
        crd_objects(&mut chart, None, &mut crds);
    }
    Ok(Rendered {
        manifests: all,
        crds,
        warnings,
    })
}

/// Helm's `releaseutil.SplitManifests`: trim, split on `(?:^|\s*\n)---\s*` (Go's `\s` is
/// `[\t\n\f\r ]`), drop empty pieces, trim each. The separator is matched by hand: a match
/// starts at the whitespace run that ends with the `\n` before `---` (leftmost-first), or at
/// the very start, and swallows the whitespace after `---`.
fn split_manifests(big: &str) -> Vec<String> {
    fn go_re_space(c: u8) -> bool {
        matches!(c, b'\t' | b'\n' | b'\x0C' | b'\r' | b' ')
    }
    let trimmed = big.trim_matches(char::is_whitespace);
    let b = trimmed.as_bytes();
    let mut docs = Vec::new();
    let mut push = |d: &str| {
        if !d.is_empty() {
            docs.push(d.trim_matches(char::is_whitespace).to_string());
        }
    };
    let skip_space = |mut i: usize| {
        while i < b.len() && go_re_space(b[i]) {
            i += 1;
        }
        i
    };
    // `^---` at the start.
    let mut piece_start = 0;
    if trimmed.starts_with("---") {
        push("");
        piece_start = skip_space(3);
    }
    let mut search = piece_start;
    while let Some(off) = trimmed[search..].find("\n---") {
        let nl = search + off;
        // The leftmost start: back over the whitespace run ending at this newline, but not
        // into the previous match.
        let mut start = nl;
        while start > search && go_re_space(b[start - 1]) {
            start -= 1;
        }
        push(&trimmed[piece_start..start]);
        piece_start = skip_space(nl + 4);
        search = piece_start;
    }
    push(&trimmed[piece_start..]);
    docs
}

/// Parses a document for its head (kind, annotations). go-yaml v2 accepts quoted scalars whose
/// continuation lines are not indented, which our stricter parser rejects; for that one case
/// the head is read from the top-level `apiVersion`/`kind`/`metadata` lines alone.
/// The top-level keys Helm's `SimpleHead` reads.
const HEAD_KEYS: &[&str] = &["apiVersion", "kind", "metadata"];

fn parse_head(doc: &str) -> Result<Value, yaml::YamlError> {
    match yaml::parse_keys(doc, HEAD_KEYS) {
        Ok(v) => Ok(v),
        Err(e) if e.0.contains("invalid indentation in quoted scalar") => {
            let mut head = String::new();
            let mut in_meta = false;
            for line in doc.lines() {
                let top = !line.starts_with([' ', '\t']) && !line.is_empty();
                if top {
                    in_meta = line.starts_with("metadata:");
                    if in_meta || line.starts_with("kind:") || line.starts_with("apiVersion:") {
                        head.push_str(line);
                        head.push('\n');
                    }
                } else if in_meta {
                    head.push_str(line);
                    head.push('\n');
                }
            }
            yaml::parse_keys(&head, HEAD_KEYS).map_err(|_| e)
        }
        Err(e) => Err(e),
    }
}

/// A document's head read by the YAML parser (the whole document is parsed, as Helm does).
fn full_head(doc: &str) -> Result<super::head::Head, yaml::YamlError> {
    let head = parse_head(doc)?;
    let kind = head
        .get("kind")
        .map(|k| funcs::strval(&k))
        .unwrap_or_default();
    let annotations = head.get("metadata").and_then(|m| m.get("annotations"));
    let has_annotations = matches!(&annotations, Some(Value::Map(m)) if !m.borrow().is_empty());
    let hook = annotations
        .as_ref()
        .and_then(|a| a.get("helm.sh/hook"))
        .filter(|_| has_annotations)
        .map(|h| funcs::strval(&h));
    Ok(super::head::Head { kind, hook })
}

const HOOK_EVENTS: &[&str] = &[
    "pre-install",
    "post-install",
    "pre-delete",
    "post-delete",
    "pre-upgrade",
    "post-upgrade",
    "pre-rollback",
    "post-rollback",
    "test",
    "test-success",
];

fn kind_rank(kind: &str) -> Option<usize> {
    INSTALL_ORDER.iter().position(|k| *k == kind)
}

fn less_by_kind(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (kind_rank(a), kind_rank(b)) {
        (None, None) => a.cmp(b),
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x.cmp(&y),
    }
}

/// Stack of the thread that reads rendered documents (YAML nesting is converted recursively).
const MANIFEST_WORKER_STACK: usize = 256 * 1024 * 1024;

/// The documents of one rendered file, each with its kind and whether it is a hook (Helm's
/// `SimpleHead` of each document); documents whose hook annotation names an unknown event,
/// or test hooks when tests are skipped, are left out.
fn classify_file(path: &str, content: &str, skip_tests: bool) -> Result<Vec<Manifest>, HelmError> {
    let mut out = Vec::new();
    if base(path).starts_with('_') || content.trim().is_empty() {
        return Ok(out);
    }
    for doc in split_manifests(content) {
        let head = match super::head::read(&doc) {
            Some(head) => head,
            None => full_head(&doc).map_err(|e| HelmError::Yaml {
                source_path: path.to_string(),
                message: e.0.clone(),
            })?,
        };
        let kind = head.kind;
        let hook = match head.hook {
            Some(types) => {
                let events: Vec<String> =
                    types.split(',').map(|t| t.trim().to_lowercase()).collect();
                if events.iter().any(|e| !HOOK_EVENTS.contains(&e.as_str())) {
                    continue;
                }
                if skip_tests && events.iter().any(|e| e == "test" || e == "test-success") {
                    continue;
                }
                true
            }
            None => false,
        };
        out.push(Manifest {
            source: path.to_string(),
            content: doc,
            kind,
            hook,
        });
    }
    Ok(out)
}

/// Helm's `sortManifestsByKind` over the classified files, taken in path order (the first
/// file in that order with an unreadable document is the error): generic manifests, then
/// hooks.
fn sort_manifests(
    mut files: Vec<(String, Result<Vec<Manifest>, HelmError>)>,
) -> Result<(Vec<Manifest>, Vec<Manifest>), HelmError> {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut generic = Vec::new();
    let mut hooks = Vec::new();
    for (_, docs) in files {
        for m in docs? {
            if m.hook {
                hooks.push(m);
            } else {
                generic.push(m);
            }
        }
    }
    generic.sort_by(|a, b| less_by_kind(&a.kind, &b.kind));
    hooks.sort_by(|a, b| less_by_kind(&a.kind, &b.kind));
    Ok((generic, hooks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn splits_like_helm() {
        let docs = split_manifests("\n---\na: 1\n---\n\nb: 2\n--- \n");
        assert_eq!(docs, vec!["a: 1".to_string(), "b: 2".to_string()]);
    }

    /// What Go's `regexp.Split` does with Helm's separator, written the slow way.
    fn split_with_pattern(big: &str) -> Vec<String> {
        let sep = regex::Regex::new(r"(?:^|[\t\n\x0C\r ]*\n)---[\t\n\x0C\r ]*").expect("pattern");
        sep.split(big.trim_matches(char::is_whitespace))
            .filter(|d| !d.is_empty())
            .map(|d| d.trim_matches(char::is_whitespace).to_string())
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn hand_split_agrees_with_the_pattern(s in "([-a \n\t\x0B]|---|\n---){0,30}") {
            proptest::prop_assert_eq!(split_manifests(&s), split_with_pattern(&s), "{:?}", s);
        }
    }

    #[test]
    fn split_corner_cases() {
        for s in [
            "---",
            "a\n---b",
            "a\n----",
            "a\n---\n---\nb",
            "a \n \n---\n",
            "---\n---",
        ] {
            assert_eq!(split_manifests(s), split_with_pattern(s), "{s:?}");
        }
        assert_eq!(split_manifests("a\n---b"), vec!["a", "b"]);
    }

    #[test]
    fn manifest_errors_follow_path_order_not_arrival_order() {
        let file = |p: &str, text: &str| (p.to_string(), classify_file(p, text, false));
        // Classified out of order (as a second thread may finish them): the error reported is
        // the one of the first path, as when the files are read one after the other.
        let files = vec![
            file("c/templates/b.yaml", "kind: A\n---\na: [\n"),
            file("c/templates/c.yaml", "kind: Service\n"),
            file("c/templates/a.yaml", "x: {\n"),
        ];
        let err = sort_manifests(files).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with("YAML parse error on c/templates/a.yaml")),
            "{err:?}"
        );
        let ok = sort_manifests(vec![
            file(
                "c/templates/b.yaml",
                "kind: Service\n---\nkind: Namespace\n",
            ),
            file(
                "c/templates/a.yaml",
                "kind: Service\nmetadata:\n  name: a\n",
            ),
        ])
        .expect("valid documents");
        let order: Vec<(&str, &str)> =
            ok.0.iter()
                .map(|m| (m.source.as_str(), m.kind.as_str()))
                .collect();
        assert_eq!(
            order,
            vec![
                ("c/templates/b.yaml", "Namespace"),
                ("c/templates/a.yaml", "Service"),
                ("c/templates/b.yaml", "Service"),
            ]
        );
    }

    /// Every document the line reader accepts reads the same with the YAML parser.
    fn same_head_both_ways(doc: &str) -> bool {
        match super::super::head::read(doc) {
            Some(fast) => {
                assert_eq!(full_head(doc).as_ref(), Ok(&fast), "{doc:?}");
                true
            }
            None => false,
        }
    }

    proptest::proptest! {
        #[test]
        fn line_reader_agrees_with_the_parser(lines in proptest::collection::vec(proptest::sample::select(vec![
            "kind: Service", "kind: 'Job'", "kind: \"Pod\"", "kind: 3", "kind: true", "kind:", "kind: |",
            "apiVersion: v1", "metadata:", "metadata: {}", "metadata: []", "metadata: x",
            "  name: x", "  annotations:", "  annotations: {}", "  annotations: []",
            "    helm.sh/hook: pre-install", "    \"helm.sh/hook\": test", "    'helm.sh/hook': post-install,pre-upgrade",
            "    helm.sh/hook: 1", "    helm.sh/hook:", "    helm.sh/hook: |", "    helm.sh/hook: a # c",
            "    a: 1", "    a: x", "  labels: {}", "spec:", "  - a", "- b", "  x: |", "  x: |-", "  x: >+",
            "  x: |2", "    text", "      more", "  y: 'it''s'", "  z: \"q\"", "  z: \"q\\\"\"", "  w: a: b",
            "  w: a:", "  v: [1]", "  u: []", "    - c", "  - d: 1", "    e: 2", "  # c", "#c", "", "   ",
            "  k: v # c", "  k: v#c", "key:value", "  n: -1", "  n: - 1", "  m: >-", "\tt: 1", "  o: &a x",
            "  p: *a", "  q: !!str x", "...", "---", "  <<: {}", "  r: '", "  s: \"", "? x", "  t: {a: 1}",
            "  - - x", "  -", "      deep: 1", " odd: 1", "   odd3: 1", "  é: 1", "  u: ~", "  v: null",
            "  - |", "      block", "  w: \"a\" b", "  x: 'a' # c", "  y: {} # c", "  z: []x",
        ]), 0..14)) {
            let doc = lines.join("\n");
            same_head_both_ways(&doc);
        }
    }

    #[test]
    fn line_reader_agrees_with_the_parser_on_the_corpus() {
        let cases =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/helm/cases");
        let Ok(dirs) = std::fs::read_dir(&cases) else {
            panic!("the conformance corpus is at {}", cases.display());
        };
        let (mut docs, mut fast) = (0, 0);
        for d in dirs.flatten() {
            let Ok(text) = std::fs::read_to_string(d.path().join("expected.yaml")) else {
                continue;
            };
            for doc in split_manifests(&text) {
                docs += 1;
                if same_head_both_ways(&doc) {
                    fast += 1;
                }
                // Broken copies: whatever the line reader accepts, the parser must read alike.
                if doc.len() > 8192 {
                    continue;
                }
                for (i, _) in doc.match_indices('\n').take(12) {
                    for insert in ["\n  - x", "\nx", " [", ": y", "\n   z: 1", "\t"] {
                        let mut broken = doc.clone();
                        broken.insert_str(i, insert);
                        same_head_both_ways(&broken);
                    }
                }
            }
        }
        eprintln!("{fast} of {docs} documents read by the line reader");
        if let Ok(path) = std::env::var("HELM_HEAD_MISSES") {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            for doc in split_manifests(&text) {
                if super::super::head::read(&doc).is_none() {
                    eprintln!("MISS {} bytes: {}", doc.len(), &doc[..doc.len().min(300)]);
                }
            }
        }
        assert!(docs > 500 && fast * 10 > docs * 6, "{fast} of {docs}");
    }

    #[test]
    fn template_order() {
        let k = sort_templates(vec![
            "a/templates/x".into(),
            "a/charts/b/templates/y".into(),
            "a/templates/z".into(),
        ]);
        assert_eq!(
            k,
            vec!["a/charts/b/templates/y", "a/templates/z", "a/templates/x"]
        );
    }

    #[test]
    fn doublestar_glob() {
        assert!(glob_doublestar("files/**.yaml", "files/a/b.yaml"));
        assert!(glob_doublestar("files/*", "files/a"));
        assert!(!glob_doublestar("files/*", "files/a/b"));
    }
}
