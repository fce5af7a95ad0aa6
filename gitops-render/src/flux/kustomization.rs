//! Flux's kustomize layer: what kustomize-controller does around `kustomize build`.
//!
//! * **The generated kustomization.** A directory without `kustomization.yaml`,
//!   `kustomization.yml` or `Kustomization` gets one listing, in file-system walk order (names
//!   sorted per directory, as Go's `filepath.Walk`), every `.yaml`/`.yml` file under it and every
//!   sub-directory holding its own kustomization (added as one resource, not descended into).
//!   A YAML file that is not Kubernetes YAML fails the build, as in Flux
//!   (`failed to decode Kubernetes YAML from <file>`). An empty directory builds to no objects.
//! * **The overrides** of a Flux `Kustomization`'s spec, merged into that (generated or
//!   existing) kustomization: `targetNamespace` → `namespace`, `namePrefix`, `nameSuffix`
//!   (replace), `patches` (appended), `images` (an entry with the same `name` is replaced, others
//!   appended), `components` (appended; only local relative paths; missing ones skipped when
//!   `ignoreMissingComponents`).
//! * **The build** as Flux's SecureBuild: files may be loaded from anywhere inside the artifact
//!   root (`LoadRestrictionsNone`) but never outside it; no remote bases, exec or plugins.
//! * **After the build**: optional post-build substitution ([`super::substitute`]), then
//!   `commonMetadata` labels and annotations set on every object's `metadata` (common keys win),
//!   which Flux applies after substitution.
//!
//! * **Ignore rules** (opt-in, [`FluxKustomization::build_ignoring`]): as `flux build
//!   kustomization` / `flux diff kustomization` on a local directory (fluxcd/pkg's
//!   `NewGeneratorWithIgnore`), the `.sourceignore` files below the directory and an ignore list
//!   (gitignore syntax, last match wins; each `.sourceignore` scoped to its directory; the
//!   list scoped to the kustomization directory): when they give any pattern, ignored files and
//!   directories are skipped while generating; and the kustomization's `resources`,
//!   `components` and `crds` that the rules (with Flux's default exclusions) exclude are
//!   dropped, remote URLs and paths outside the directory kept. kustomize-controller builds
//!   artifacts its source already filtered and does neither ([`FluxKustomization::build`]).
//!
//! The kustomization file is written into the directory for the build and the directory is
//! restored afterwards (the original file put back, a generated one removed), as Flux does in
//! its temporary copy of the artifact. Callers build in a directory they own.
//!
//! ```no_run
//! use gitops_render::flux::FluxKustomization;
//!
//! // The `spec` of a Flux Kustomization, as found in a cluster or a Git repository.
//! let spec = serde_json::json!({
//!     "targetNamespace": "apps",
//!     "images": [{"name": "nginx", "newTag": "1.27"}],
//! });
//! let flux: FluxKustomization = serde_json::from_value(spec).expect("a Flux spec");
//! let built = flux.build(std::path::Path::new("/tmp/artifact"), std::path::Path::new("./deploy"))?;
//! print!("{}", built.to_yaml());
//! # Ok::<(), gitops_render::flux::BuildError>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::kustomize::{Build, BuildOptions, KustomizeError, LoadRestrictor, Resource, build};
use crate::yaml::{Map, Value, parse_stream, to_yaml};

use super::FluxError;
use super::sourceignore::SourceIgnore;

/// The file names kustomize recognises, in the order it looks for them.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// The kustomization file of `dir`, if it has one.
pub fn find_kustomization_file(dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// The build-shaping fields of a Flux `Kustomization` spec
/// (`kustomize.toolkit.fluxcd.io/v1`), with Flux's field names: deserialise it straight from a
/// Kustomization's `spec` (other fields are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxKustomization {
    /// Sets `namespace` of the kustomization: every namespaced object goes there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
    /// Replaces the kustomization's `namePrefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
    /// Replaces the kustomization's `nameSuffix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_suffix: Option<String>,
    /// Patches appended to the kustomization's `patches`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<Patch>,
    /// Image overrides merged by name into the kustomization's `images`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
    /// Components appended to the kustomization's `components` (local relative paths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    /// Skip components whose directory does not exist instead of failing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_missing_components: bool,
    /// Labels and annotations set on every object after the build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_metadata: Option<CommonMetadata>,
}

/// `spec.patches[]`: a strategic merge or JSON 6902 patch, optionally targeted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patch {
    /// The patch document (YAML or JSON).
    pub patch: String,
    /// The objects it applies to (default: the object its own metadata names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Selector>,
}

/// `spec.patches[].target`: kustomize's patch selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// API group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// API version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name (a regular expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace (a regular expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A label selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// An annotation selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_selector: Option<String>,
}

/// `spec.images[]`: kustomize's image override.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// The image name to match.
    pub name: String,
    /// A new name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    /// A new tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tag: Option<String>,
    /// A digest, replacing the tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// `spec.commonMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommonMetadata {
    /// Labels set on every object's metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations set on every object's metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Post-build substitution for [`FluxKustomization::build_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Substitution {
    /// The variables (see [`super::merge_vars`]).
    pub vars: BTreeMap<String, String>,
    /// Fail on a variable without value or default.
    pub strict: bool,
}

/// The kustomization Flux builds a directory with.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveKustomization {
    /// The file it is written to (the directory's own, or `kustomization.yaml` when generated).
    pub file: PathBuf,
    /// Whether the directory had none and it was generated.
    pub generated: bool,
    /// Whether it differs from the file on disk (generated, or changed by overrides).
    pub changed: bool,
    /// The kustomization.
    pub value: Value,
}

impl EffectiveKustomization {
    /// The kustomization as YAML.
    pub fn to_yaml(&self) -> String {
        to_yaml(&self.value)
    }
}

/// Why a Flux build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The path leaves the root, or the directory does not exist.
    #[error("kustomization path not found: {path}")]
    PathNotFound {
        /// The path asked for, relative to the root.
        path: PathBuf,
    },
    /// A file or directory could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A YAML file found while generating the kustomization is not Kubernetes YAML.
    #[error("failed to decode Kubernetes YAML from {path}: {message}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A symbolic link points outside the root.
    #[error("security; file '{path}' is not in or below '{root}'")]
    Security {
        /// The link.
        path: PathBuf,
        /// The root.
        root: PathBuf,
    },
    /// The existing kustomization file cannot be read as a kustomization.
    #[error("{path}: {message}")]
    Kustomization {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An ignore pattern (`.sourceignore` or the ignore list) is not gitignore syntax.
    #[error("{origin}: invalid ignore pattern {pattern:?}: {message}")]
    IgnorePattern {
        /// Where the pattern came from (the `.sourceignore` file, or the ignore list).
        origin: String,
        /// The pattern.
        pattern: String,
        /// What is wrong.
        message: String,
    },
    /// A component is not a local relative path.
    #[error("component path '{component}' must be local")]
    RemoteComponent {
        /// The component.
        component: String,
    },
    /// kustomize failed.
    #[error(transparent)]
    Kustomize(#[from] KustomizeError),
    /// Post-build substitution failed.
    #[error(transparent)]
    Substitute(#[from] FluxError),
}

impl BuildError {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl FluxKustomization {
    /// Whether any override changes the kustomization file.
    pub fn has_overrides(&self) -> bool {
        self.target_namespace.is_some()
            || self.name_prefix.is_some()
            || self.name_suffix.is_some()
            || !self.patches.is_empty()
            || !self.images.is_empty()
            || !self.components.is_empty()
    }

    /// The kustomization Flux would write into `dir` (the existing one with the overrides
    /// merged, or a generated one), without touching the disk. `root` bounds the scan.
    pub fn kustomization(
        &self,
        root: &Path,
        dir: &Path,
    ) -> Result<EffectiveKustomization, BuildError> {
        self.effective(root, dir, None)
    }

    /// [`kustomization`](Self::kustomization) with Flux's ignore rules for a local directory
    /// (`flux build kustomization --ignore-paths`): the `.sourceignore` files below `dir` and
    /// `ignore` (gitignore patterns, one per line) skip files while generating, and the
    /// kustomization's `resources`, `components` and `crds` they exclude are dropped.
    pub fn kustomization_ignoring(
        &self,
        root: &Path,
        dir: &Path,
        ignore: Option<&str>,
    ) -> Result<EffectiveKustomization, BuildError> {
        let canonical =
            std::fs::canonicalize(dir).map_err(|e| BuildError::io("reading", dir, e))?;
        let rules = SourceIgnore::load(&canonical, ignore)?;
        self.effective(root, dir, Some(&rules))
    }

    fn effective(
        &self,
        root: &Path,
        dir: &Path,
        rules: Option<&SourceIgnore>,
    ) -> Result<EffectiveKustomization, BuildError> {
        let (file, generated, mut value) = match find_kustomization_file(dir) {
            Some(file) => {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| BuildError::io("reading", &file, e))?;
                let value = parse_kustomization(&file, &text)?;
                (file, false, value)
            }
            None => (
                dir.join(KUSTOMIZATION_FILES[0]),
                true,
                generate_with(root, dir, rules)?,
            ),
        };
        let filtered = match rules {
            Some(rules) => filter_ignored(dir, rules, &mut value)?,
            None => false,
        };
        let changed = generated || filtered || self.has_overrides();
        self.merge_into(dir, &file, &mut value)?;
        Ok(EffectiveKustomization {
            file,
            generated,
            changed,
            value,
        })
    }

    fn merge_into(&self, dir: &Path, file: &Path, value: &mut Value) -> Result<(), BuildError> {
        let Value::Map(map) = value else {
            return Err(BuildError::Kustomization {
                path: file.to_path_buf(),
                message: "not a mapping".into(),
            });
        };
        if let Some(ns) = &self.target_namespace {
            map.insert("namespace".into(), Value::Str(ns.clone()));
        }
        if let Some(p) = &self.name_prefix {
            map.insert("namePrefix".into(), Value::Str(p.clone()));
        }
        if let Some(s) = &self.name_suffix {
            map.insert("nameSuffix".into(), Value::Str(s.clone()));
        }
        if !self.patches.is_empty() {
            let list = seq_entry(map, "patches", file)?;
            for p in &self.patches {
                list.push(to_value(p));
            }
        }
        if !self.images.is_empty() {
            let list = seq_entry(map, "images", file)?;
            for image in &self.images {
                let new = to_value(image);
                match list
                    .iter_mut()
                    .find(|i| i.str_at(&["name"]) == Some(image.name.as_str()))
                {
                    Some(existing) => *existing = new,
                    None => list.push(new),
                }
            }
        }
        if !self.components.is_empty() {
            let mut add = Vec::new();
            for c in &self.components {
                if !is_local_relative_path(c) {
                    return Err(BuildError::RemoteComponent {
                        component: c.clone(),
                    });
                }
                let local = c.strip_prefix("file://").unwrap_or(c);
                if self.ignore_missing_components && !dir.join(local).exists() {
                    tracing::debug!(component = %c, "skipping missing component");
                    continue;
                }
                add.push(Value::Str(c.clone()));
            }
            if !add.is_empty() {
                seq_entry(map, "components", file)?.extend(add);
            }
        }
        Ok(())
    }

    /// Builds `path` (relative to `root`) as kustomize-controller does: generate or merge the
    /// kustomization, build it confined to `root`, then set `commonMetadata`.
    pub fn build(&self, root: &Path, path: &Path) -> Result<Build, BuildError> {
        self.build_with(root, path, None)
    }

    /// [`build`](Self::build) with post-build substitution between the build and
    /// `commonMetadata`, in Flux's order.
    pub fn build_with(
        &self,
        root: &Path,
        path: &Path,
        substitution: Option<&Substitution>,
    ) -> Result<Build, BuildError> {
        self.build_inner(root, path, substitution, None)
    }

    /// [`build_with`](Self::build_with) as `flux build kustomization` builds a local
    /// directory: with the ignore rules of
    /// [`kustomization_ignoring`](Self::kustomization_ignoring) (the `.sourceignore` files
    /// below the path and `ignore`, Flux's `--ignore-paths` one pattern per line).
    pub fn build_ignoring(
        &self,
        root: &Path,
        path: &Path,
        ignore: Option<&str>,
        substitution: Option<&Substitution>,
    ) -> Result<Build, BuildError> {
        self.build_inner(root, path, substitution, Some(ignore))
    }

    fn build_inner(
        &self,
        root: &Path,
        path: &Path,
        substitution: Option<&Substitution>,
        ignore: Option<Option<&str>>,
    ) -> Result<Build, BuildError> {
        let rel = clean_relative(path).ok_or_else(|| BuildError::PathNotFound {
            path: path.to_path_buf(),
        })?;
        let dir = root.join(&rel);
        if !dir.is_dir() {
            return Err(BuildError::PathNotFound { path: rel });
        }
        let effective = match ignore {
            Some(list) => self.kustomization_ignoring(root, &dir, list)?,
            None => self.kustomization(root, &dir)?,
        };
        let mut built = {
            let _written = if effective.changed {
                Some(WrittenKustomization::write(&effective)?)
            } else {
                None
            };
            let opts = BuildOptions {
                load_restrictor: LoadRestrictor::None,
                confine_root: Some(root.to_path_buf()),
                ..BuildOptions::default()
            };
            build(&dir, &opts)?
            // `_written` restores the directory here, whatever the outcome.
        };
        if let Some(s) = substitution {
            super::substitute(&mut built.resources, &s.vars, s.strict)?;
        }
        if let Some(cm) = &self.common_metadata {
            set_common_metadata(&mut built.resources, cm);
        }
        Ok(built)
    }
}

/// Sets `labels` and `annotations` on every object's metadata, replacing values of the same
/// keys (Flux's `commonMetadata`; selectors and templates are left alone).
pub fn set_common_metadata(resources: &mut [Resource], common: &CommonMetadata) {
    for r in resources.iter_mut() {
        let Value::Map(object) = &mut r.value else {
            continue;
        };
        let metadata = object
            .entry("metadata".to_string())
            .or_insert_with(|| Value::Map(Map::new()));
        if !matches!(metadata, Value::Map(_)) {
            *metadata = Value::Map(Map::new());
        }
        let Value::Map(metadata) = metadata else {
            continue;
        };
        for (field, pairs) in [
            ("labels", &common.labels),
            ("annotations", &common.annotations),
        ] {
            if pairs.is_empty() {
                continue;
            }
            let entry = metadata
                .entry(field.to_string())
                .or_insert_with(|| Value::Map(Map::new()));
            if !matches!(entry, Value::Map(_)) {
                *entry = Value::Map(Map::new());
            }
            if let Value::Map(m) = entry {
                for (k, v) in pairs {
                    m.insert(k.clone(), Value::Str(v.clone()));
                }
            }
        }
    }
}

/// Writes an effective kustomization for the build and restores the directory when dropped.
struct WrittenKustomization {
    file: PathBuf,
    original: Option<Vec<u8>>,
}

impl WrittenKustomization {
    fn write(k: &EffectiveKustomization) -> Result<Self, BuildError> {
        let original = if k.generated {
            None
        } else {
            Some(std::fs::read(&k.file).map_err(|e| BuildError::io("reading", &k.file, e))?)
        };
        std::fs::write(&k.file, k.to_yaml()).map_err(|e| BuildError::io("writing", &k.file, e))?;
        Ok(Self {
            file: k.file.clone(),
            original,
        })
    }
}

impl Drop for WrittenKustomization {
    fn drop(&mut self) {
        let result = match &self.original {
            Some(bytes) => std::fs::write(&self.file, bytes),
            None => std::fs::remove_file(&self.file),
        };
        if let Err(error) = result {
            tracing::warn!(file = %self.file.display(), %error, "restoring the kustomization file");
        }
    }
}

fn parse_kustomization(file: &Path, text: &str) -> Result<Value, BuildError> {
    let mut docs = parse_stream(text).map_err(|e| BuildError::Kustomization {
        path: file.to_path_buf(),
        message: e.to_string(),
    })?;
    docs.retain(|d| !d.is_null());
    match docs.len() {
        0 => Ok(Value::Map(Map::new())),
        1 => Ok(docs.remove(0)),
        n => Err(BuildError::Kustomization {
            path: file.to_path_buf(),
            message: format!("expected one document, found {n}"),
        }),
    }
}

fn seq_entry<'a>(
    map: &'a mut Map,
    key: &str,
    file: &Path,
) -> Result<&'a mut Vec<Value>, BuildError> {
    let entry = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Seq(Vec::new()));
    if entry.is_null() {
        *entry = Value::Seq(Vec::new());
    }
    entry.as_seq_mut().ok_or_else(|| BuildError::Kustomization {
        path: file.to_path_buf(),
        message: format!("{key} is not a list"),
    })
}

fn to_value<T: Serialize>(v: &T) -> Value {
    // Serialising these plain structs cannot fail; an empty map would only drop an override.
    Value::from_json(&serde_json::to_value(v).unwrap_or_default())
}

/// The kustomization Flux generates for `dir` (which has none): every Kubernetes YAML file and
/// every sub-directory with a kustomization, in walk order.
pub fn generate(root: &Path, dir: &Path) -> Result<Value, BuildError> {
    generate_with(root, dir, None)
}

/// [`generate`], skipping what `rules` exclude when they hold any pattern of a `.sourceignore`
/// file or an ignore list.
fn generate_with(
    root: &Path,
    dir: &Path,
    rules: Option<&SourceIgnore>,
) -> Result<Value, BuildError> {
    let root = std::fs::canonicalize(root).map_err(|e| BuildError::io("reading", root, e))?;
    let skip = match rules.filter(|r| r.has_custom_patterns()) {
        Some(rules) => Some((
            rules,
            std::fs::canonicalize(dir).map_err(|e| BuildError::io("reading", dir, e))?,
        )),
        None => None,
    };
    let mut resources = Vec::new();
    walk(&root, dir, dir, skip, &mut resources)?;
    let mut map = Map::new();
    map.insert(
        "apiVersion".into(),
        Value::Str("kustomize.config.k8s.io/v1beta1".into()),
    );
    map.insert("kind".into(), Value::Str("Kustomization".into()));
    // An explicit empty list keeps an empty directory buildable (kustomize refuses a
    // kustomization with no fields at all).
    map.insert(
        "resources".into(),
        Value::Seq(resources.into_iter().map(Value::Str).collect()),
    );
    Ok(Value::Map(map))
}

/// Ignore rules applied while walking, with the canonical form of the walked directory.
type Skip<'a> = Option<(&'a SourceIgnore, PathBuf)>;

fn walk(
    root: &Path,
    base: &Path,
    dir: &Path,
    skip: Skip<'_>,
    out: &mut Vec<String>,
) -> Result<(), BuildError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| BuildError::io("reading", dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    // Go's filepath.Walk visits the entries of a directory sorted by name (bytewise).
    entries.sort_by(|a, b| {
        a.file_name()
            .map(|n| n.as_encoded_bytes())
            .cmp(&b.file_name().map(|n| n.as_encoded_bytes()))
    });
    for path in entries {
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| BuildError::io("reading", &path, e))?;
        let rel = path.strip_prefix(base).unwrap_or(&path);
        if let Some((rules, canonical)) = &skip
            && rules.is_ignored(&canonical.join(rel), meta.is_dir())
        {
            continue;
        }
        let resource = format!("./{}", rel.to_string_lossy());
        if meta.is_dir() {
            if find_kustomization_file(&path).is_some() {
                out.push(resource);
            } else {
                walk(root, base, &path, skip.clone(), out)?;
            }
            continue;
        }
        let ext = path.extension().and_then(|e| e.to_str());
        if !matches!(ext, Some("yaml" | "yml")) {
            continue;
        }
        if meta.file_type().is_symlink() {
            // As Flux's secure file system: a link may not lead out of the root.
            let target =
                std::fs::canonicalize(&path).map_err(|e| BuildError::io("reading", &path, e))?;
            if !target.starts_with(root) {
                return Err(BuildError::Security {
                    path,
                    root: root.to_path_buf(),
                });
            }
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| BuildError::io("reading", &path, e))?;
        check_kubernetes_yaml(&path, &text)?;
        out.push(resource);
    }
    Ok(())
}

/// Drops the entries of `resources`, `components` and `crds` that `rules` exclude (Flux's
/// `filterKsWithIgnoreFiles`): remote URLs are kept, as are paths outside `dir` (no pattern
/// reaches them) and paths that do not exist (kustomize reports those). Returns whether
/// anything was dropped.
fn filter_ignored(dir: &Path, rules: &SourceIgnore, value: &mut Value) -> Result<bool, BuildError> {
    let Value::Map(map) = value else {
        return Ok(false);
    };
    let base = std::fs::canonicalize(dir).map_err(|e| BuildError::io("reading", dir, e))?;
    let mut dropped = false;
    for field in ["resources", "components", "crds"] {
        let Some(Value::Seq(entries)) = map.get_mut(field) else {
            continue;
        };
        entries.retain(|entry| {
            let Value::Str(entry) = entry else {
                return true;
            };
            if field != "crds" && entry.contains("://") {
                return true;
            }
            let path = lexical_join(&base, entry);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                return true;
            };
            let keep = !rules.is_ignored(&path, meta.is_dir());
            dropped |= !keep;
            keep
        });
    }
    Ok(dropped)
}

/// `base` joined with `relative`, `.` and `..` resolved without touching the disk (Go's
/// `filepath.Join`).
fn lexical_join(base: &Path, relative: &str) -> PathBuf {
    let mut out = base.to_path_buf();
    for component in Path::new(relative).components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(c) => out.push(c),
            Component::RootDir => out = PathBuf::from("/"),
            Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// kustomize's resource factory check, as Flux's generator runs it on every YAML file: the text
/// parses and every document is a mapping with at least one of `apiVersion`, `kind`, `metadata`.
fn check_kubernetes_yaml(path: &Path, text: &str) -> Result<(), BuildError> {
    let docs = parse_stream(text).map_err(|e| BuildError::Decode {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    for doc in docs {
        match &doc {
            Value::Null => {}
            Value::Map(m) => {
                if !["apiVersion", "kind", "metadata"]
                    .iter()
                    .any(|k| m.get(*k).is_some_and(|v| !v.is_null()))
                {
                    return Err(BuildError::Decode {
                        path: path.to_path_buf(),
                        message: "missing Resource metadata".into(),
                    });
                }
            }
            _ => {
                return Err(BuildError::Decode {
                    path: path.to_path_buf(),
                    message: "a document is not a mapping".into(),
                });
            }
        }
    }
    Ok(())
}

/// Whether a component reference is a local path relative to the kustomization (Flux refuses
/// absolute paths and remote references: URLs, `git@host:` and `host.tld/owner/repo`).
pub fn is_local_relative_path(path: &str) -> bool {
    let path = match path.strip_prefix("file://") {
        Some(rest) => rest,
        None if path.contains("://") => return false,
        None => path,
    };
    if path.is_empty() || path.starts_with('/') || path.starts_with("git@") {
        return false;
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let host_like = segments.first().is_some_and(|s| {
        *s != "." && *s != ".." && s.contains('.') && !s.ends_with(".yaml") && !s.ends_with(".yml")
    });
    !(host_like && segments.len() >= 3)
}

/// `path` relative to its root, refusing anything that climbs out of it.
pub fn clean_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths() {
        for (p, want) in [
            ("foobar.yaml", true),
            ("./foobar.yaml", true),
            ("../components/a", true),
            ("file://foobar.yaml", true),
            ("file:///foobar.yaml", false),
            ("/foobar.yaml", false),
            ("https://github.com/owner/repo", false),
            ("git@github.com:owner/repo", false),
            ("ssh://git@github.com/owner/repo", false),
            ("github.com/owner/repo", false),
        ] {
            assert_eq!(is_local_relative_path(p), want, "{p}");
        }
    }

    #[test]
    fn clean_paths_stay_inside() {
        assert_eq!(
            clean_relative(Path::new("./apps/../base")),
            Some(PathBuf::from("base"))
        );
        assert_eq!(clean_relative(Path::new("./")), Some(PathBuf::from(".")));
        assert_eq!(clean_relative(Path::new("../x")), None);
    }

    #[test]
    fn images_replace_by_name_and_patches_append() {
        let flux = FluxKustomization {
            images: vec![
                Image {
                    name: "nginx".into(),
                    new_tag: Some("1.27".into()),
                    ..Image::default()
                },
                Image {
                    name: "redis".into(),
                    digest: Some("sha256:abc".into()),
                    ..Image::default()
                },
            ],
            patches: vec![Patch {
                patch: "- op: add".into(),
                target: Some(Selector {
                    kind: Some("Deployment".into()),
                    ..Selector::default()
                }),
            }],
            ..FluxKustomization::default()
        };
        let mut value = parse_stream(
            "resources: [a.yaml]\nimages:\n- name: nginx\n  newName: x\n- name: other\n  newTag: '2'\npatches:\n- path: p.yaml\n",
        )
        .expect("yaml")
        .remove(0);
        flux.merge_into(Path::new("/nonexistent"), Path::new("k.yaml"), &mut value)
            .expect("merges");
        let json = value.to_json();
        assert_eq!(
            json["images"],
            serde_json::json!([
                {"name": "nginx", "newTag": "1.27"},
                {"name": "other", "newTag": "2"},
                {"name": "redis", "digest": "sha256:abc"}
            ])
        );
        assert_eq!(
            json["patches"],
            serde_json::json!([
                {"path": "p.yaml"},
                {"patch": "- op: add", "target": {"kind": "Deployment"}}
            ])
        );
    }

    #[test]
    fn remote_components_are_refused() {
        let flux = FluxKustomization {
            components: vec!["https://example.com/c".into()],
            ..FluxKustomization::default()
        };
        let mut value = Value::Map(Map::new());
        let err = flux
            .merge_into(Path::new("/x"), Path::new("k.yaml"), &mut value)
            .expect_err("remote");
        assert!(matches!(err, BuildError::RemoteComponent { .. }));
    }

    #[test]
    fn deserialises_from_a_flux_spec() {
        let spec = serde_json::json!({
            "interval": "10m", "prune": true, "sourceRef": {"kind": "GitRepository", "name": "x"},
            "targetNamespace": "apps", "namePrefix": "p-",
            "commonMetadata": {"labels": {"team": "a"}},
            "patches": [{"patch": "x", "target": {"labelSelector": "app=web"}}]
        });
        let flux: FluxKustomization = serde_json::from_value(spec).expect("spec");
        assert_eq!(flux.target_namespace.as_deref(), Some("apps"));
        assert_eq!(flux.name_prefix.as_deref(), Some("p-"));
        assert_eq!(
            flux.patches[0]
                .target
                .as_ref()
                .and_then(|t| t.label_selector.as_deref()),
            Some("app=web")
        );
        assert_eq!(
            flux.common_metadata
                .as_ref()
                .map(|c| c.labels["team"].as_str()),
            Some("a")
        );
    }
}
