//! Reading objects from a multi-document YAML stream, as `kubectl apply -f` and Flux's
//! `ssa.ReadObjects` do: empty documents are skipped, `kind: List` is expanded.

use kube::core::DynamicObject;
use serde_json::Value;

/// Why a YAML stream did not yield objects.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The text is not valid YAML.
    #[error("{origin}: invalid YAML: {source}")]
    Yaml {
        /// Where the text came from.
        origin: String,
        /// The parser's error (with line and column).
        source: Box<serde_saphyr::Error>,
    },
    /// A document is not a Kubernetes object.
    #[error("{origin}: document {document} is not a Kubernetes object: {reason}")]
    NotAnObject {
        /// Where the text came from.
        origin: String,
        /// The document's position, counting from 1.
        document: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Reads every object of a multi-document YAML stream. `origin` names the source in errors.
pub fn read_objects(text: &str, origin: &str) -> Result<Vec<DynamicObject>, ReadError> {
    // Booleans as YAML 1.2 (kustomize's kyaml): `on`, `y`, `no` stay strings; octal `0755`
    // as Go's YAML readers accept it.
    let options = serde_saphyr::options! { legacy_octal_numbers: true, strict_booleans: true };
    let docs: Vec<Value> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|source| {
            ReadError::Yaml {
                origin: origin.to_string(),
                source: Box::new(source),
            }
        })?;
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let document = i + 1;
        let not_object = |reason: String| ReadError::NotAnObject {
            origin: origin.to_string(),
            document,
            reason,
        };
        match doc {
            Value::Null => continue,
            Value::Object(ref map) => {
                let is_list = map.get("kind").and_then(Value::as_str) == Some("List")
                    && map.get("items").is_some_and(Value::is_array);
                let items = if is_list {
                    map.get("items")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                } else {
                    vec![doc.clone()]
                };
                for item in items {
                    if item.get("apiVersion").and_then(Value::as_str).is_none()
                        || item.get("kind").and_then(Value::as_str).is_none()
                    {
                        return Err(not_object("it has no apiVersion or kind".into()));
                    }
                    let obj: DynamicObject =
                        serde_json::from_value(item).map_err(|e| not_object(e.to_string()))?;
                    out.push(obj);
                }
            }
            _ => return Err(not_object("it is not a mapping".into())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_documents_skips_empty_ones_and_expands_lists() {
        let text = "---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  mode: 0755\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata:\n    name: apps\n";
        let objs = read_objects(text, "test.yaml").expect("valid stream");
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].metadata.name.as_deref(), Some("a"));
        assert_eq!(objs[0].data["data"]["mode"], serde_json::json!(493));
        assert_eq!(
            objs[1].types.as_ref().map(|t| t.kind.as_str()),
            Some("Namespace")
        );
    }

    #[test]
    fn errors_name_the_origin_and_document() {
        let err = read_objects("a: 1\n", "dir/x.yaml").expect_err("not an object");
        assert_eq!(
            err.to_string(),
            "dir/x.yaml: document 1 is not a Kubernetes object: it has no apiVersion or kind"
        );
        let err = read_objects("a: [1\n", "dir/y.yaml").expect_err("invalid YAML");
        assert!(
            err.to_string().starts_with("dir/y.yaml: invalid YAML"),
            "{err}"
        );
    }
}
