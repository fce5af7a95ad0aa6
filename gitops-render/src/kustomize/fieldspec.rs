//! Field specs (which fields of which kinds a transformer touches) and kustomize's default
//! transformer configuration.
//!
//! The defaults follow kustomize v5.5's built-in configuration
//! (`api/internal/konfig/builtinpluginconsts`), written in kustomize's own `configurations:`
//! file format and parsed with the same code that reads user configurations.

use std::sync::LazyLock;

use super::resource::{Gvk, Resource};
use crate::yaml::{Map, Value};

/// One field spec: a path in objects of matching group/version/kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldSpec {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub path: Vec<String>,
    pub create: bool,
}

impl FieldSpec {
    pub fn matches(&self, gvk: &Gvk) -> bool {
        (self.group.is_empty() || self.group == gvk.group)
            && (self.version.is_empty() || self.version == gvk.version)
            && (self.kind.is_empty() || self.kind == gvk.kind)
    }

    pub fn from_value(v: &Value) -> Option<FieldSpec> {
        let m = v.as_map()?;
        let s = |k: &str| m.get(k).and_then(Value::scalar_text).unwrap_or_default();
        Some(FieldSpec {
            group: s("group"),
            version: s("version"),
            kind: s("kind"),
            path: split_path(&s("path")),
            create: matches!(m.get("create"), Some(Value::Bool(true))),
        })
    }
}

/// Splits a field-spec path on unescaped `/`.
pub(crate) fn split_path(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'/') {
            cur.push('/');
            chars.next();
        } else if c == '/' {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() || !out.is_empty() {
        out.push(cur);
    }
    out.retain(|s| !s.is_empty());
    out
}

/// A name-reference rule: objects of `target` kind are referred to by `referrers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameRef {
    pub target: Gvk,
    pub referrers: Vec<FieldSpec>,
}

/// A transformer configuration (kustomize's `TransformerConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TransformerConfig {
    pub name_prefix: Vec<FieldSpec>,
    pub name_suffix: Vec<FieldSpec>,
    pub namespace: Vec<FieldSpec>,
    pub common_labels: Vec<FieldSpec>,
    pub template_labels: Vec<FieldSpec>,
    pub labels: Vec<FieldSpec>,
    pub common_annotations: Vec<FieldSpec>,
    pub name_reference: Vec<NameRef>,
    pub var_reference: Vec<FieldSpec>,
    pub images: Vec<FieldSpec>,
    pub replicas: Vec<FieldSpec>,
}

fn merge_specs(a: &mut Vec<FieldSpec>, b: &[FieldSpec]) {
    for f in b {
        if !a.contains(f) {
            a.push(f.clone());
        }
    }
}

impl TransformerConfig {
    /// Parses kustomize's configuration file format.
    pub fn parse(v: &Value) -> Result<TransformerConfig, String> {
        let mut c = TransformerConfig::default();
        let Some(m) = v.as_map() else {
            return Ok(c);
        };
        let specs = |k: &str| -> Result<Vec<FieldSpec>, String> {
            match m.get(k) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Seq(s)) => Ok(s.iter().filter_map(FieldSpec::from_value).collect()),
                Some(_) => Err(format!("{k} must be a list of field specs")),
            }
        };
        for k in m.keys() {
            match k.as_str() {
                "namePrefix" | "nameSuffix" | "namespace" | "commonLabels" | "templateLabels"
                | "labels" | "commonAnnotations" | "nameReference" | "varReference" | "images"
                | "replicas" => {}
                other => return Err(format!("json: unknown field \"{other}\"")),
            }
        }
        c.name_prefix = specs("namePrefix")?;
        c.name_suffix = specs("nameSuffix")?;
        c.namespace = specs("namespace")?;
        c.common_labels = specs("commonLabels")?;
        c.template_labels = specs("templateLabels")?;
        c.labels = specs("labels")?;
        c.common_annotations = specs("commonAnnotations")?;
        c.var_reference = specs("varReference")?;
        c.images = specs("images")?;
        c.replicas = specs("replicas")?;
        if let Some(Value::Seq(refs)) = m.get("nameReference") {
            for r in refs {
                let Some(rm) = r.as_map() else { continue };
                let s = |k: &str| rm.get(k).and_then(Value::scalar_text).unwrap_or_default();
                let mut target = Gvk {
                    group: s("group"),
                    version: s("version"),
                    kind: s("kind"),
                };
                if let Some(av) = rm.get("apiVersion").and_then(Value::as_str) {
                    let g = Gvk::from_api_version(av, &target.kind);
                    target.group = g.group;
                    target.version = g.version;
                }
                let referrers = match rm.get("fieldSpecs") {
                    Some(Value::Seq(s)) => s.iter().filter_map(FieldSpec::from_value).collect(),
                    _ => Vec::new(),
                };
                c.name_reference.push(NameRef { target, referrers });
            }
        }
        Ok(c)
    }

    /// Adds another configuration's specs.
    pub fn merge(&mut self, o: &TransformerConfig) {
        merge_specs(&mut self.name_prefix, &o.name_prefix);
        merge_specs(&mut self.name_suffix, &o.name_suffix);
        merge_specs(&mut self.namespace, &o.namespace);
        merge_specs(&mut self.common_labels, &o.common_labels);
        merge_specs(&mut self.template_labels, &o.template_labels);
        merge_specs(&mut self.labels, &o.labels);
        merge_specs(&mut self.common_annotations, &o.common_annotations);
        merge_specs(&mut self.var_reference, &o.var_reference);
        merge_specs(&mut self.images, &o.images);
        merge_specs(&mut self.replicas, &o.replicas);
        for r in &o.name_reference {
            if let Some(mine) = self
                .name_reference
                .iter_mut()
                .find(|m| m.target == r.target)
            {
                merge_specs(&mut mine.referrers, &r.referrers);
            } else {
                self.name_reference.push(r.clone());
            }
        }
    }
}

/// Visits every value at `path` in `v`, creating missing mappings when `create` is set.
/// Sequences met on the way are walked element by element. The callback gets the parent
/// mapping and the key, so it can create, read or replace the field.
pub(crate) fn visit_field(
    v: &mut Value,
    path: &[String],
    create: bool,
    f: &mut dyn FnMut(&mut Map, &str) -> Result<(), String>,
) -> Result<(), String> {
    if path.is_empty() {
        return Ok(());
    }
    match v {
        Value::Seq(items) => {
            for it in items {
                visit_field(it, path, create, f)?;
            }
            Ok(())
        }
        Value::Map(m) => {
            let seg = path[0].trim_end_matches("[]");
            let is_seq_seg = path[0].ends_with("[]");
            if path.len() == 1 {
                return f(m, seg);
            }
            match m.get_mut(seg) {
                Some(child) if !child.is_null() => visit_field(child, &path[1..], create, f),
                _ => {
                    if create && !is_seq_seg && !path.iter().any(|p| p.ends_with("[]")) {
                        m.insert(seg.to_string(), Value::Map(Map::new()));
                        if let Some(child) = m.get_mut(seg) {
                            visit_field(child, &path[1..], create, f)?;
                        }
                    }
                    Ok(())
                }
            }
        }
        _ => Ok(()),
    }
}

/// Applies `f` at every field spec matching the resource.
pub(crate) fn apply_specs(
    r: &mut Resource,
    specs: &[FieldSpec],
    f: &mut dyn FnMut(&mut Map, &str, bool) -> Result<(), String>,
) -> Result<(), String> {
    let gvk = r.gvk();
    for fs in specs.iter().filter(|fs| fs.matches(&gvk)) {
        let create = fs.create;
        visit_field(&mut r.value, &fs.path, create, &mut |m, k| f(m, k, create))?;
    }
    Ok(())
}

/// kustomize's built-in configuration.
pub(crate) static DEFAULT_CONFIG: LazyLock<TransformerConfig> = LazyLock::new(|| {
    let docs = crate::yaml::parse_stream(DEFAULT_CONFIG_YAML).unwrap_or_default();
    let mut c = TransformerConfig::default();
    for d in &docs {
        if let Ok(p) = TransformerConfig::parse(d) {
            c.merge(&p);
        }
    }
    c
});

const POD_TEMPLATE_KINDS: &[(&str, &str, &str)] = &[
    ("", "v1", "ReplicationController"),
    ("", "", "Deployment"),
    ("", "", "ReplicaSet"),
    ("", "", "DaemonSet"),
    ("apps", "", "StatefulSet"),
    ("batch", "", "Job"),
];

static DEFAULT_CONFIG_YAML: &str = include_str!("default_config.yaml");

#[allow(dead_code)]
fn _kinds() -> &'static [(&'static str, &'static str, &'static str)] {
    POD_TEMPLATE_KINDS
}
