//! Confined file access for one kustomization directory.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::KustomizeError;

/// Reads files for one kustomization, confined as kustomize's loader and Flux's SecureBuild do.
#[derive(Debug, Clone)]
pub(crate) struct Loader {
    /// The kustomization directory (canonical).
    pub dir: PathBuf,
    /// Nothing is read outside this directory (canonical).
    pub confine: PathBuf,
    /// kustomize's `LoadRestrictionsRootOnly`: files must be in or below `dir`.
    pub root_only: bool,
    /// Largest file read.
    pub max_file_bytes: u64,
}

pub(crate) const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Removes `.` and resolves `..` lexically.
pub(crate) fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

pub(crate) fn canonical(p: &Path) -> Result<PathBuf, KustomizeError> {
    std::fs::canonicalize(p).map_err(|e| KustomizeError::io(p, e))
}

pub(crate) fn is_remote(s: &str) -> bool {
    s.contains("://")
        || s.starts_with("github.com/")
        || s.starts_with("gitlab.com/")
        || s.starts_with("bitbucket.org/")
        || s.starts_with("git@")
        || s.starts_with("git::")
        || s.starts_with("ssh::")
}

impl Loader {
    /// The path `rel` names, resolved (symlinks too) and checked against the confinement.
    /// `file` is true for files (subject to the root-only rule), false for directories of
    /// other kustomizations.
    pub fn resolve(&self, rel: &str, file: bool) -> Result<PathBuf, KustomizeError> {
        let joined = clean(&self.dir.join(rel));
        if !joined.starts_with(&self.confine) {
            return Err(KustomizeError::Security {
                path: joined,
                root: self.confine.clone(),
            });
        }
        let real = canonical(&joined)?;
        if !real.starts_with(&self.confine) {
            return Err(KustomizeError::Security {
                path: real,
                root: self.confine.clone(),
            });
        }
        if file && self.root_only && !real.starts_with(&self.dir) {
            return Err(KustomizeError::Security {
                path: real,
                root: self.dir.clone(),
            });
        }
        Ok(real)
    }

    /// Reads a file named relative to the kustomization.
    pub fn read(&self, rel: &str) -> Result<(PathBuf, Vec<u8>), KustomizeError> {
        let p = self.resolve(rel, true)?;
        let bytes = read_limited(&p, self.max_file_bytes)?;
        Ok((p, bytes))
    }

    /// Reads a UTF-8 text file named relative to the kustomization.
    pub fn read_text(&self, rel: &str) -> Result<(PathBuf, String), KustomizeError> {
        let (p, bytes) = self.read(rel)?;
        let text = String::from_utf8(bytes).map_err(|_| KustomizeError::Resource {
            path: p.clone(),
            message: "not UTF-8 text".into(),
        })?;
        Ok((p, text))
    }
}

pub(crate) fn read_limited(p: &Path, max: u64) -> Result<Vec<u8>, KustomizeError> {
    let f = std::fs::File::open(p).map_err(|e| KustomizeError::io(p, e))?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| KustomizeError::io(p, e))?;
    if buf.len() as u64 > max {
        return Err(KustomizeError::Resource {
            path: p.to_path_buf(),
            message: format!("file is larger than the {max}-byte limit"),
        });
    }
    Ok(buf)
}

/// Finds the kustomization file in `dir`.
pub(crate) fn find_kustomization(dir: &Path) -> Result<PathBuf, KustomizeError> {
    let mut found = Vec::new();
    for n in KUSTOMIZATION_FILES {
        let p = dir.join(n);
        if p.is_file() {
            found.push(p);
        }
    }
    match found.len() {
        0 => Err(KustomizeError::NoKustomization {
            dir: dir.to_path_buf(),
        }),
        1 => Ok(found.remove(0)),
        _ => Err(KustomizeError::MultipleKustomizations {
            dir: dir.to_path_buf(),
        }),
    }
}
