//! A native Kustomize engine whose output is the same as `kubectl kustomize` (kustomize v5.5).
//!
//! [`build`] turns a directory holding a `kustomization.yaml` into an ordered list of
//! [`Resource`]s; [`Build::to_yaml`] prints them byte-for-byte as kustomize does.
//! [`KustomizeRenderer`] puts the engine behind the crate's [`Renderer`](crate::Renderer) trait.
//!
//! Reads are confined: with [`LoadRestrictor::RootOnly`] (kustomize's default) files must lie
//! in or below the kustomization that names them, and with any restrictor nothing is read
//! outside the confinement root, through `..` or through symlinks. Remote resources, exec and Go
//! plugins are never used. `helmCharts` are rendered in-process by this crate's Helm engine
//! (see [`BuildOptions::enable_helm`]); a chart that is not on disk is refused, never pulled.
//!
//! Strategic merges take list merge keys from OpenAPI schemas as kustomize does: the
//! embedded Kubernetes v1.21.2 schema, or a kustomization's `openapi:` schema (see
//! [`crate::openapi`]); `crds:` definitions add name references and field specs.

mod crds;
mod engine;
mod fieldspec;
mod fs;
mod generators;
mod helmchart;
mod jsonpatch;
mod nameref;
mod resource;
mod smp;
mod types;
mod vars;

use std::path::{Path, PathBuf};

pub use engine::{Build, BuildOptions, LoadRestrictor, SortOrder, build};
pub use resource::Resource;

use crate::yaml::YamlError;

/// Why a kustomize build failed.
#[derive(Debug, thiserror::Error)]
pub enum KustomizeError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not valid YAML.
    #[error("{path}: {source}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// What was wrong, with the line.
        source: YamlError,
    },
    /// A read would leave the directory it is confined to.
    #[error("security; file '{path}' is not in or below '{root}'")]
    Security {
        /// The file asked for.
        path: PathBuf,
        /// The directory reads are confined to.
        root: PathBuf,
    },
    /// A directory used as a kustomization has no kustomization file.
    #[error(
        "unable to find one of 'kustomization.yaml', 'kustomization.yml' or 'Kustomization' in directory '{dir}'"
    )]
    NoKustomization {
        /// The directory.
        dir: PathBuf,
    },
    /// A directory has more than one kustomization file.
    #[error("found multiple kustomization files under: {dir}")]
    MultipleKustomizations {
        /// The directory.
        dir: PathBuf,
    },
    /// Kustomizations include each other in a cycle.
    #[error("cycle detected: {dir} is already being built")]
    Cycle {
        /// The directory met twice.
        dir: PathBuf,
    },
    /// A remote resource was asked for; this engine never fetches.
    #[error("{path}: remote resource {url} is not allowed")]
    Remote {
        /// The kustomization naming it.
        path: PathBuf,
        /// The URL.
        url: String,
    },
    /// The kustomization file is invalid (unknown field, wrong type, bad value).
    #[error("{path}: invalid kustomization: {message}")]
    Kustomization {
        /// The kustomization file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A resource file holds something that is not a Kubernetes object.
    #[error("{path}: {message}")]
    Resource {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Two resources have the same identity.
    #[error("may not add resource with an already registered id: {id}")]
    Conflict {
        /// The resource id (`Kind.version.group/name.namespace`).
        id: String,
    },
    /// A patch could not be applied.
    #[error("{patch}: {message}")]
    Patch {
        /// The patch (file or a short form of the inline text).
        patch: String,
        /// What went wrong.
        message: String,
    },
    /// A generator failed.
    #[error("generator {name}: {message}")]
    Generator {
        /// The generated object's name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The Helm engine failed to render a `helmCharts` entry.
    #[error("helm chart {chart}: {source}")]
    Helm {
        /// The chart directory.
        chart: PathBuf,
        /// Helm's error.
        source: crate::helm::HelmError,
    },
    /// A transformer failed.
    #[error("{transformer}: {message}")]
    Transform {
        /// The transformer.
        transformer: String,
        /// What went wrong.
        message: String,
    },
}

impl KustomizeError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn transform(t: &str, message: impl Into<String>) -> Self {
        Self::Transform {
            transformer: t.to_string(),
            message: message.into(),
        }
    }
}

/// The Kustomize engine behind the [`Renderer`](crate::Renderer) trait.
#[derive(Debug, Clone, Default)]
pub struct KustomizeRenderer {
    /// Options for every build.
    pub options: BuildOptions,
}

impl crate::Renderer for KustomizeRenderer {
    fn render(&self, input: &crate::RenderInput) -> Result<crate::Rendered, crate::RenderError> {
        let mut opts = self.options.clone();
        opts.confine_root = Some(input.root.clone());
        let b = build(&input.dir(), &opts)?;
        let mut objects = Vec::with_capacity(b.resources.len());
        for r in &b.resources {
            let object: kube_core::DynamicObject = serde_json::from_value(r.value.to_json())
                .map_err(|e| KustomizeError::Resource {
                    path: r.origin.clone().unwrap_or_default(),
                    message: format!("not a Kubernetes object: {e}"),
                })?;
            let origin = r
                .origin
                .as_ref()
                .map(|p| p.strip_prefix(&input.root).unwrap_or(p).to_path_buf());
            objects.push(crate::RenderedObject { object, origin });
        }
        Ok(crate::Rendered {
            objects,
            warnings: b.warnings,
        })
    }
}
