//! Flux's ignore rules for artifacts (`fluxcd/pkg/sourceignore` as source-controller applies it).
//!
//! Layering, lowest priority first, with gitignore's "last match wins":
//!
//! 1. the VCS patterns `.git/`, `.gitignore`, `.gitmodules`, `.gitattributes` (always);
//! 2. the default exclusions (images and archives, CI configs, `.goreleaser.yml`,
//!    `.sops.yaml`, `.flux.yaml`) — **only when no other pattern exists**: as in Flux, a
//!    `.sourceignore` file anywhere or a spec-level ignore list replaces them;
//! 3. every `.sourceignore` file, the root's first, then each directory's in lexical walk
//!    order, each scoped to its own directory;
//! 4. the spec-level ignore list (`GitRepository.spec.ignore`), scoped to the root, which can
//!    therefore re-include what a `.sourceignore` excluded.
//!
//! Patterns use gitignore syntax through the `ignore` crate's matcher.

use std::path::{Path, PathBuf};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// The name of the ignore files looked for in every directory.
pub const IGNORE_FILE: &str = ".sourceignore";

/// Version control files, always excluded first.
pub const EXCLUDE_VCS: &[&str] = &[".git/", ".gitignore", ".gitmodules", ".gitattributes"];

/// Flux's default exclusions: image and archive extensions, CI configs, extra tool files.
pub const DEFAULT_EXCLUSIONS: &[&str] = &[
    "*.jpg",
    "*.jpeg",
    "*.gif",
    "*.png",
    "*.wmv",
    "*.flv",
    "*.tar.gz",
    "*.zip",
    ".github/",
    ".circleci/",
    ".travis.yml",
    ".gitlab-ci.yml",
    "appveyor.yml",
    ".drone.yml",
    "cloudbuild.yaml",
    "codeship-services.yml",
    "codeship-steps.yml",
    "**/.goreleaser.yml",
    "**/.sops.yaml",
    "**/.flux.yaml",
];

/// Why ignore rules could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    /// An ignore file could not be read.
    #[error("reading ignore file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A pattern is not valid gitignore syntax.
    #[error("invalid ignore pattern {pattern:?} from {origin}: {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Where it came from (a file path or `spec.ignore`).
        origin: String,
        /// The matcher's message.
        message: String,
    },
}

#[derive(Debug, Clone)]
struct Layer {
    /// The directory the patterns are scoped to (absolute).
    root: PathBuf,
    matcher: Gitignore,
}

/// The ignore rules for one directory tree, ready to answer "is this path excluded?".
#[derive(Debug, Clone)]
pub struct IgnoreRules {
    base: PathBuf,
    layers: Vec<Layer>,
}

fn build_layer<'a>(
    root: &Path,
    patterns: impl IntoIterator<Item = &'a str>,
    origin: &str,
) -> Result<Option<Layer>, IgnoreError> {
    let mut builder = GitignoreBuilder::new(root);
    let mut any = false;
    for line in patterns {
        // Flux skips comments and blank lines itself before parsing.
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        builder
            .add_line(None, line)
            .map_err(|e| IgnoreError::Pattern {
                pattern: line.to_owned(),
                origin: origin.to_owned(),
                message: e.to_string(),
            })?;
        any = true;
    }
    if !any {
        return Ok(None);
    }
    let matcher = builder.build().map_err(|e| IgnoreError::Pattern {
        pattern: String::new(),
        origin: origin.to_owned(),
        message: e.to_string(),
    })?;
    Ok(Some(Layer {
        root: root.to_path_buf(),
        matcher,
    }))
}

fn collect_ignore_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), IgnoreError> {
    let file = dir.join(IGNORE_FILE);
    if file.is_file() {
        out.push(file);
    }
    let entries = std::fs::read_dir(dir).map_err(|source| IgnoreError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| IgnoreError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let ty = entry.file_type().map_err(|source| IgnoreError::Read {
            path: entry.path(),
            source,
        })?;
        if ty.is_dir() && entry.file_name() != ".git" {
            dirs.push(entry.file_name());
        }
    }
    dirs.sort();
    for name in dirs {
        collect_ignore_files(&dir.join(name), out)?;
    }
    Ok(())
}

impl IgnoreRules {
    /// Loads the rules for the tree at `dir`: `.sourceignore` files at any depth plus the
    /// optional spec-level list (gitignore syntax, one pattern per line).
    pub fn load(dir: &Path, spec_ignore: Option<&str>) -> Result<Self, IgnoreError> {
        let mut files = Vec::new();
        collect_ignore_files(dir, &mut files)?;
        let mut custom = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|source| IgnoreError::Read {
                path: file.clone(),
                source,
            })?;
            let scope = file.parent().unwrap_or(dir);
            if let Some(layer) = build_layer(scope, text.lines(), &file.display().to_string())? {
                custom.push(layer);
            }
        }
        if let Some(spec) = spec_ignore
            && let Some(layer) = build_layer(dir, spec.lines(), "spec.ignore")?
        {
            custom.push(layer);
        }
        Self::from_layers(dir, custom)
    }

    /// Only the VCS patterns and Flux's default exclusions, no files consulted.
    pub fn defaults(dir: &Path) -> Result<Self, IgnoreError> {
        Self::from_layers(dir, Vec::new())
    }

    fn from_layers(dir: &Path, custom: Vec<Layer>) -> Result<Self, IgnoreError> {
        let mut layers = Vec::new();
        if let Some(vcs) = build_layer(dir, EXCLUDE_VCS.iter().copied(), "VCS exclusions")? {
            layers.push(vcs);
        }
        if custom.is_empty()
            && let Some(defaults) = build_layer(
                dir,
                DEFAULT_EXCLUSIONS.iter().copied(),
                "default exclusions",
            )?
        {
            layers.push(defaults);
        }
        layers.extend(custom);
        Ok(IgnoreRules {
            base: dir.to_path_buf(),
            layers,
        })
    }

    /// Whether `relative` (a path below the tree's root) is excluded.
    pub fn is_ignored(&self, relative: &Path, is_dir: bool) -> bool {
        let path = self.base.join(relative);
        for layer in self.layers.iter().rev() {
            if !path.starts_with(&layer.root) || path == layer.root {
                continue;
            }
            match layer.matcher.matched(&path, is_dir) {
                Match::Ignore(_) => return true,
                Match::Whitelist(_) => return false,
                Match::None => {}
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, body) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
            std::fs::write(p, body).expect("write");
        }
        dir
    }

    #[test]
    fn defaults_exclude_vcs_ci_and_images() {
        let dir = tree(&[("a.yaml", "")]);
        let rules = IgnoreRules::load(dir.path(), None).expect("rules");
        assert!(rules.is_ignored(Path::new(".git"), true));
        assert!(rules.is_ignored(Path::new(".gitignore"), false));
        assert!(rules.is_ignored(Path::new(".github"), true));
        assert!(rules.is_ignored(Path::new("docs/logo.png"), false));
        assert!(rules.is_ignored(Path::new("x/y/.sops.yaml"), false));
        assert!(rules.is_ignored(Path::new("release.tar.gz"), false));
        assert!(!rules.is_ignored(Path::new("a.yaml"), false));
        assert!(!rules.is_ignored(Path::new(".sourceignore"), false));
        // `.github/` is a directory pattern: a file of that name is kept.
        assert!(!rules.is_ignored(Path::new(".github"), false));
    }

    #[test]
    fn sourceignore_replaces_defaults_but_not_vcs() {
        let dir = tree(&[(".sourceignore", "# comment\n*.txt\n"), ("a.png", "")]);
        let rules = IgnoreRules::load(dir.path(), None).expect("rules");
        assert!(rules.is_ignored(Path::new("notes.txt"), false));
        assert!(rules.is_ignored(Path::new("deep/notes.txt"), false));
        assert!(
            !rules.is_ignored(Path::new("a.png"), false),
            "defaults dropped as in Flux"
        );
        assert!(rules.is_ignored(Path::new(".git"), true));
    }

    #[test]
    fn nested_sourceignore_is_scoped_to_its_directory() {
        let dir = tree(&[
            ("apps/.sourceignore", "*.yaml\n!keep.yaml\n"),
            ("x.yaml", ""),
        ]);
        let rules = IgnoreRules::load(dir.path(), None).expect("rules");
        assert!(rules.is_ignored(Path::new("apps/a.yaml"), false));
        assert!(rules.is_ignored(Path::new("apps/sub/b.yaml"), false));
        assert!(!rules.is_ignored(Path::new("apps/keep.yaml"), false));
        assert!(!rules.is_ignored(Path::new("x.yaml"), false));
        assert!(!rules.is_ignored(Path::new("other/x.yaml"), false));
    }

    #[test]
    fn spec_ignore_overrides_sourceignore() {
        let dir = tree(&[(".sourceignore", "secret/\n")]);
        let rules = IgnoreRules::load(dir.path(), Some("!secret/\n/only-root.md")).expect("rules");
        assert!(!rules.is_ignored(Path::new("secret"), true));
        assert!(rules.is_ignored(Path::new("only-root.md"), false));
        assert!(!rules.is_ignored(Path::new("sub/only-root.md"), false));
    }

    #[test]
    fn spec_ignore_alone_drops_defaults() {
        let dir = tree(&[("a.yaml", "")]);
        let rules = IgnoreRules::load(dir.path(), Some("*.md")).expect("rules");
        assert!(rules.is_ignored(Path::new("README.md"), false));
        assert!(!rules.is_ignored(Path::new(".github"), true));
        assert!(rules.is_ignored(Path::new(".git"), true));
    }
}
