//! # gitops-render: the second stage of the GitOps pipeline
//!
//! Turns a directory of files into Kubernetes objects, the way the tools our users already
//! trust do it: plain YAML directories, a native Kustomize engine that prints what
//! `kubectl kustomize` (kustomize v5.5) prints, a native Helm chart engine that prints what
//! `helm template` (Helm 3.17) prints, and Flux's post-build variable substitution.
//!
//! The crate knows nothing of Git or clusters: its input is a directory, its output is an
//! ordered list of objects with the file each came from. The centre is the [`Renderer`] trait;
//! engines keep their own order-preserving, YAML-faithful node type inside and hand over
//! [`kube_core::DynamicObject`]s at the boundary.

pub mod flux;
pub mod helm;
pub mod kustomize;
pub mod openapi;
pub mod yaml;

use std::path::{Path, PathBuf};

pub use kube_core::DynamicObject;

/// What a renderer is asked to render: a directory inside a confined root.
///
/// Every file read is confined to `root`; `path` is relative to it (`"."` for the root itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderInput {
    /// The directory that bounds every read (the artifact's extraction directory).
    pub root: PathBuf,
    /// The directory to render, relative to `root`.
    pub path: PathBuf,
}

impl RenderInput {
    /// Renders `path` (relative) inside `root`.
    pub fn new(root: impl Into<PathBuf>, path: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            path: path.into(),
        }
    }

    /// The directory to render, joined onto the root.
    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.path)
    }
}

/// One rendered Kubernetes object and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedObject {
    /// The object, as kube's well-known dynamic object.
    pub object: DynamicObject,
    /// The file (relative to the render root) the object was read or generated from, when known.
    pub origin: Option<PathBuf>,
}

/// The output of a render: objects in output order, plus warnings for people.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    /// The objects, in the order the engine prints them.
    pub objects: Vec<RenderedObject>,
    /// Warnings the engine would print on stderr (deprecated fields and the like).
    pub warnings: Vec<String>,
}

/// A renderer: a directory in, ordered objects out.
///
/// Object safe, so a caller can hold `Box<dyn Renderer>` and choose the engine at run time.
pub trait Renderer: Send + Sync {
    /// Renders `input`.
    fn render(&self, input: &RenderInput) -> Result<Rendered, RenderError>;
}

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The Kustomize engine failed.
    #[error(transparent)]
    Kustomize(#[from] kustomize::KustomizeError),
    /// The Helm chart engine failed.
    #[error(transparent)]
    Helm(#[from] helm::HelmError),
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl RenderError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
