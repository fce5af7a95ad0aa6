//! `crds:`: OpenAPI definitions of custom kinds turned into transformer configuration, as
//! kustomize's `LoadConfigFromCRDs` does.
//!
//! A file maps type names (`github.com/x/apis/v1beta1.MyKind`) to `{Schema, Dependencies}`.
//! Every definition with `kind`, `apiVersion` and `metadata` properties is a kind (named by
//! the last dot-separated part of its type name); walking its properties (and the
//! definitions their `$ref`s name in the same file):
//! - `x-kubernetes-object-ref-kind` with `x-kubernetes-object-ref-api-version` makes the
//!   field's `name` (or `x-kubernetes-object-ref-name-key`) a name reference to that kind;
//! - `x-kubernetes-annotation` adds the field to commonAnnotations' field specs;
//! - `x-kubernetes-label-selector` adds it to commonLabels';
//! - `x-kubernetes-identity` adds it to namePrefix'.

use std::path::Path;

use serde_json::Value as Json;

use super::KustomizeError;
use super::fieldspec::{FieldSpec, NameRef, TransformerConfig};
use super::resource::Gvk;

/// Deepest `$ref` chain followed (kustomize has no limit and overflows its stack on a cycle).
const MAX_DEPTH: usize = 64;

/// Reads one `crds:` file into configuration.
pub(crate) fn config_from_crds(
    path: &Path,
    text: &str,
) -> Result<TransformerConfig, KustomizeError> {
    let bad = |message: String| KustomizeError::Kustomization {
        path: path.to_path_buf(),
        message: format!(
            "unable to parse open API definition from '{}': {message}",
            path.display()
        ),
    };
    let doc: Json = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| bad(e.to_string()))?
    } else {
        let docs = crate::yaml::parse_stream(text).map_err(|source| KustomizeError::Yaml {
            path: path.to_path_buf(),
            source,
        })?;
        docs.into_iter()
            .next()
            .map(|d| d.to_json())
            .unwrap_or(Json::Null)
    };
    let defs = match &doc {
        Json::Object(m) => m,
        Json::Null => return Ok(TransformerConfig::default()),
        _ => return Err(bad("expected a mapping of type names to definitions".into())),
    };
    let mut names: Vec<&String> = defs.keys().collect();
    names.sort();
    let mut tc = TransformerConfig::default();
    for name in names {
        let props = properties(&defs[name]);
        let is_kind = props.is_some_and(|p| {
            p.contains_key("kind") && p.contains_key("apiVersion") && p.contains_key("metadata")
        });
        if !is_kind {
            continue;
        }
        let kind = name.rsplit('.').next().unwrap_or(name).to_string();
        let mut one = TransformerConfig::default();
        load(&mut one, &kind, defs, name, &mut Vec::new(), 0);
        tc.merge(&one);
    }
    Ok(tc)
}

fn properties(def: &Json) -> Option<&serde_json::Map<String, Json>> {
    def.get("Schema")?.get("properties")?.as_object()
}

fn spec(kind: &str, path: &[String]) -> FieldSpec {
    FieldSpec {
        group: String::new(),
        version: String::new(),
        kind: kind.to_string(),
        path: path.to_vec(),
        create: false,
    }
}

fn load(
    tc: &mut TransformerConfig,
    kind: &str,
    defs: &serde_json::Map<String, Json>,
    type_name: &str,
    path: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let Some(props) = defs.get(type_name).and_then(properties) else {
        return;
    };
    let mut names: Vec<&String> = props.keys().collect();
    names.sort();
    for prop_name in names {
        let prop = &props[prop_name];
        // go-openapi's extension getters only see string values.
        let ext = |k: &str| prop.get(k).and_then(Json::as_str);
        path.push(prop_name.clone());
        if ext("x-kubernetes-annotation").is_some() {
            tc.common_annotations.push(spec(kind, path));
        }
        if ext("x-kubernetes-label-selector").is_some() {
            tc.common_labels.push(spec(kind, path));
        }
        if ext("x-kubernetes-identity").is_some() {
            tc.name_prefix.push(spec(kind, path));
        }
        if let (Some(version), Some(ref_kind)) = (
            ext("x-kubernetes-object-ref-api-version"),
            ext("x-kubernetes-object-ref-kind"),
        ) {
            let key = ext("x-kubernetes-object-ref-name-key").unwrap_or("name");
            let mut p = path.clone();
            p.push(key.to_string());
            tc.name_reference.push(NameRef {
                target: Gvk {
                    group: String::new(),
                    version: version.to_string(),
                    kind: ref_kind.to_string(),
                },
                referrers: vec![spec(kind, &p)],
            });
        }
        if let Some(r) = prop.get("$ref").and_then(Json::as_str)
            && !r.is_empty()
        {
            load(tc, kind, defs, r, path, depth + 1);
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_refs_annotations_labels_and_identity() {
        let text = r#"{
          "x/v1.Thing": {"Schema": {"properties": {
            "apiVersion": {}, "kind": {}, "metadata": {},
            "spec": {"$ref": "x/v1.ThingSpec"}}}},
          "x/v1.ThingSpec": {"Schema": {"properties": {
            "secretRef": {"x-kubernetes-object-ref-api-version": "v1",
                          "x-kubernetes-object-ref-kind": "Secret"},
            "cm": {"x-kubernetes-object-ref-api-version": "v1",
                   "x-kubernetes-object-ref-kind": "ConfigMap",
                   "x-kubernetes-object-ref-name-key": "cmName"},
            "notes": {"x-kubernetes-annotation": ""},
            "selector": {"x-kubernetes-label-selector": ""},
            "id": {"x-kubernetes-identity": ""},
            "bad": {"x-kubernetes-annotation": true}}}}
        }"#;
        let tc = config_from_crds(Path::new("crd.json"), text).expect("parses");
        let refs: Vec<(String, Vec<String>)> = tc
            .name_reference
            .iter()
            .map(|r| (r.target.kind.clone(), r.referrers[0].path.clone()))
            .collect();
        assert_eq!(
            refs,
            vec![
                (
                    "ConfigMap".into(),
                    vec!["spec".into(), "cm".into(), "cmName".into()]
                ),
                (
                    "Secret".into(),
                    vec!["spec".into(), "secretRef".into(), "name".into()]
                ),
            ]
        );
        assert!(
            tc.name_reference
                .iter()
                .all(|r| r.referrers[0].kind == "Thing")
        );
        assert_eq!(tc.common_annotations.len(), 1);
        assert_eq!(tc.common_labels[0].path, vec!["spec", "selector"]);
        assert_eq!(tc.name_prefix[0].path, vec!["spec", "id"]);
    }
}
