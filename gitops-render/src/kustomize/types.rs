//! Reading a kustomization file.

use std::path::{Path, PathBuf};

use super::KustomizeError;
use crate::yaml::{Map, Value};

/// Every field kustomize v5.5 accepts in a Kustomization or Component.
const KNOWN_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "openapi",
    "namePrefix",
    "nameSuffix",
    "namespace",
    "commonLabels",
    "labels",
    "commonAnnotations",
    "patchesStrategicMerge",
    "patchesJson6902",
    "patches",
    "images",
    "imageTags",
    "replacements",
    "replicas",
    "vars",
    "sortOptions",
    "resources",
    "components",
    "crds",
    "bases",
    "configMapGenerator",
    "secretGenerator",
    "helmGlobals",
    "helmCharts",
    "helmChartInflationGenerator",
    "generatorOptions",
    "configurations",
    "generators",
    "transformers",
    "validators",
    "buildMetadata",
];

/// A parsed kustomization: the file's mapping plus where it lives.
#[derive(Debug, Clone)]
pub(crate) struct Kustomization {
    pub file: PathBuf,
    pub m: Map,
    pub is_component: bool,
}

impl Kustomization {
    pub fn parse(file: &Path, text: &str) -> Result<Kustomization, KustomizeError> {
        let limits = crate::yaml::ParseLimits {
            allow_duplicate_keys: true,
            ..crate::yaml::ParseLimits::default()
        };
        let docs = crate::yaml::parse_stream_with_limits(text, limits).map_err(|source| {
            KustomizeError::Yaml {
                path: file.to_path_buf(),
                source,
            }
        })?;
        let kerr = |message: String| KustomizeError::Kustomization {
            path: file.to_path_buf(),
            message,
        };
        let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
        if docs.len() > 1 {
            return Err(kerr("a kustomization file must hold one document".into()));
        }
        let raw = match docs.into_iter().next() {
            None => Map::new(),
            Some(Value::Map(m)) => m,
            Some(_) => return Err(kerr("a kustomization must be a mapping".into())),
        };
        // Go's encoding/json matches field names case-insensitively.
        let mut m = Map::new();
        for (k, v) in raw {
            match KNOWN_FIELDS.iter().find(|f| f.eq_ignore_ascii_case(&k)) {
                Some(f) => {
                    m.insert((*f).to_string(), v);
                }
                None => return Err(kerr(format!("json: unknown field \"{k}\""))),
            }
        }
        let kind = m.get("kind").and_then(Value::as_str).unwrap_or("");
        let api = m.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let is_component = kind == "Component";
        match kind {
            "" | "Kustomization" => {
                if !api.is_empty() && api != "kustomize.config.k8s.io/v1beta1" {
                    return Err(kerr(format!(
                        "apiVersion for Kustomization should be kustomize.config.k8s.io/v1beta1, got {api:?}"
                    )));
                }
            }
            "Component" => {
                if !api.is_empty() && api != "kustomize.config.k8s.io/v1alpha1" {
                    return Err(kerr(format!(
                        "apiVersion for Component should be kustomize.config.k8s.io/v1alpha1, got {api:?}"
                    )));
                }
            }
            other => {
                return Err(kerr(format!(
                    "kind should be Kustomization or Component, got {other:?}"
                )));
            }
        }
        Ok(Kustomization {
            file: file.to_path_buf(),
            m,
            is_component,
        })
    }

    pub fn get(&self, k: &str) -> Option<&Value> {
        self.m.get(k).filter(|v| !v.is_null())
    }

    pub fn str(&self, k: &str) -> Option<String> {
        self.get(k).and_then(Value::scalar_text)
    }

    pub fn list(&self, k: &str) -> Result<Vec<Value>, KustomizeError> {
        match self.get(k) {
            None => Ok(Vec::new()),
            Some(Value::Seq(s)) => Ok(s.clone()),
            Some(_) => Err(KustomizeError::Kustomization {
                path: self.file.clone(),
                message: format!("{k} must be a list"),
            }),
        }
    }

    pub fn str_list(&self, k: &str) -> Result<Vec<String>, KustomizeError> {
        self.list(k)?
            .into_iter()
            .map(|v| {
                v.scalar_text()
                    .ok_or_else(|| KustomizeError::Kustomization {
                        path: self.file.clone(),
                        message: format!("{k} must be a list of strings"),
                    })
            })
            .collect()
    }

    pub fn string_map(&self, k: &str) -> Result<Vec<(String, String)>, KustomizeError> {
        match self.get(k) {
            None => Ok(Vec::new()),
            Some(Value::Map(m)) => Ok(m
                .iter()
                .map(|(k, v)| (k.clone(), v.scalar_text().unwrap_or_default()))
                .collect()),
            Some(_) => Err(KustomizeError::Kustomization {
                path: self.file.clone(),
                message: format!("{k} must be a map of strings"),
            }),
        }
    }
}
