//! Flux's `.sourceignore` rules for a local directory, as `flux build kustomization` and
//! `flux diff kustomization` apply them (fluxcd/pkg `kustomize.NewGeneratorWithIgnore` with
//! `--ignore-paths`): kustomize-controller itself builds artifacts the source-controller has
//! already filtered, so it generates without them.
//!
//! The patterns, lowest priority first, gitignore's "last match wins":
//!
//! 1. the VCS patterns (`.git/`, `.gitignore`, `.gitmodules`, `.gitattributes`) and Flux's
//!    default exclusions (images and archives, CI configs, `.goreleaser.yml`, `.sops.yaml`,
//!    `.flux.yaml`), always (sourceignore's `NewDefaultMatcher`);
//! 2. every `.sourceignore` file below the kustomization directory, its own first, then each
//!    sub-directory's in lexical walk order (`.git` skipped), each scoped to its directory
//!    (sourceignore's `LoadIgnorePatterns`);
//! 3. the caller's ignore list (one gitignore pattern per line), scoped to the kustomization
//!    directory, which can therefore re-include what a `.sourceignore` excluded.
//!
//! A pattern that names a directory excludes everything below it. Paths outside the
//! kustomization directory (`../base`) never match.

use std::path::{Path, PathBuf};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use super::kustomization::BuildError;

/// The name of the ignore files looked for in every directory.
pub(crate) const IGNORE_FILE: &str = ".sourceignore";

/// Version control files, always excluded first.
const EXCLUDE_VCS: &[&str] = &[".git/", ".gitignore", ".gitmodules", ".gitattributes"];

/// Flux's default exclusions (sourceignore's `ExcludeExt`, `ExcludeCI`, `ExcludeExtra`).
const DEFAULT_EXCLUSIONS: &[&str] = &[
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

/// Patterns scoped to one directory.
#[derive(Debug, Clone)]
struct Layer {
    root: PathBuf,
    matcher: Gitignore,
}

/// The ignore rules of one kustomization directory.
#[derive(Debug, Clone)]
pub(crate) struct SourceIgnore {
    /// The defaults first, then the `.sourceignore` files, then the caller's list.
    layers: Vec<Layer>,
    /// Whether any pattern came from a `.sourceignore` file or the caller's list.
    custom: bool,
}

fn layer<'a>(
    root: &Path,
    patterns: impl IntoIterator<Item = &'a str>,
    origin: &str,
) -> Result<Option<Layer>, BuildError> {
    let invalid = |pattern: &str, message: String| BuildError::IgnorePattern {
        origin: origin.to_owned(),
        pattern: pattern.to_owned(),
        message,
    };
    let mut builder = GitignoreBuilder::new(root);
    let mut any = false;
    for line in patterns {
        // Flux's reader skips comments and blank lines before parsing.
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        builder
            .add_line(None, line)
            .map_err(|e| invalid(line, e.to_string()))?;
        any = true;
    }
    if !any {
        return Ok(None);
    }
    let matcher = builder.build().map_err(|e| invalid("", e.to_string()))?;
    Ok(Some(Layer {
        root: root.to_path_buf(),
        matcher,
    }))
}

/// The `.sourceignore` files below `dir` (its own first, then sub-directories sorted by name,
/// depth first, `.git` skipped), as sourceignore's `LoadIgnorePatterns` reads them.
fn ignore_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), BuildError> {
    let file = dir.join(IGNORE_FILE);
    if std::fs::symlink_metadata(&file).is_ok_and(|m| m.is_file()) {
        out.push(file);
    }
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| BuildError::io("reading", dir, e))? {
        let entry = entry.map_err(|e| BuildError::io("reading", dir, e))?;
        let ty = entry
            .file_type()
            .map_err(|e| BuildError::io("reading", &entry.path(), e))?;
        if ty.is_dir() && entry.file_name() != ".git" {
            dirs.push(entry.file_name());
        }
    }
    dirs.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for name in dirs {
        ignore_files(&dir.join(name), out)?;
    }
    Ok(())
}

impl SourceIgnore {
    /// The rules of the kustomization directory `dir` (absolute, canonical): the defaults, the
    /// `.sourceignore` files below it and `ignore` (gitignore patterns, one per line).
    pub(crate) fn load(dir: &Path, ignore: Option<&str>) -> Result<Self, BuildError> {
        let mut layers = Vec::new();
        for (patterns, origin) in [
            (EXCLUDE_VCS, "VCS exclusions"),
            (DEFAULT_EXCLUSIONS, "default exclusions"),
        ] {
            layers.extend(layer(dir, patterns.iter().copied(), origin)?);
        }
        let defaults = layers.len();
        let mut files = Vec::new();
        ignore_files(dir, &mut files)?;
        for file in files {
            let text =
                std::fs::read_to_string(&file).map_err(|e| BuildError::io("reading", &file, e))?;
            let scope = file.parent().unwrap_or(dir);
            layers.extend(layer(scope, text.lines(), &file.display().to_string())?);
        }
        if let Some(list) = ignore {
            layers.extend(layer(dir, list.lines(), "the ignore list")?);
        }
        let custom = layers.len() > defaults;
        Ok(SourceIgnore { layers, custom })
    }

    /// Whether a `.sourceignore` file or the caller's list gave any pattern.
    pub(crate) fn has_custom_patterns(&self) -> bool {
        self.custom
    }

    /// Whether `path` (absolute, lexically clean) is excluded: the last pattern that matches it
    /// or one of its parent directories decides; a path outside a pattern's directory is never
    /// matched by it.
    pub(crate) fn is_ignored(&self, path: &Path, is_dir: bool) -> bool {
        for layer in self.layers.iter().rev() {
            if path == layer.root || !path.starts_with(&layer.root) {
                continue;
            }
            match layer.matcher.matched_path_or_any_parents(path, is_dir) {
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
    fn layers_scope_and_last_match_wins() {
        let tmp = tree(&[
            (
                ".sourceignore",
                "# all but deployments\n/*\n!deployment.yaml\n!apps/\n",
            ),
            ("apps/.sourceignore", "secret.yaml\n"),
            ("apps/secret.yaml", ""),
            ("deployment.yaml", ""),
        ]);
        let dir = std::fs::canonicalize(tmp.path()).expect("canonical");
        let rules = SourceIgnore::load(&dir, Some("!config.yaml")).expect("rules");
        assert!(rules.has_custom_patterns());
        let ignored = |p: &str, is_dir| rules.is_ignored(&dir.join(p), is_dir);
        assert!(ignored("service.yaml", false));
        assert!(!ignored("deployment.yaml", false));
        // The caller's list comes last and re-includes.
        assert!(!ignored("config.yaml", false));
        // A sub-directory's file applies below it only.
        assert!(ignored("apps/secret.yaml", false));
        assert!(!ignored("apps/cm.yaml", false));
        // A re-included directory re-includes what is below it, defaults included (go-git's
        // matcher: the last pattern matching the path or a parent decides).
        assert!(!ignored("apps/.sops.yaml", false));
        assert!(ignored(".git", true));
        // Outside the directory nothing matches.
        assert!(!rules.is_ignored(&dir.parent().expect("parent").join("x.yaml"), false));
    }

    #[test]
    fn without_files_or_list_only_the_defaults_apply() {
        let tmp = tree(&[("cm.yaml", "")]);
        let dir = std::fs::canonicalize(tmp.path()).expect("canonical");
        let rules = SourceIgnore::load(&dir, None).expect("rules");
        assert!(!rules.has_custom_patterns());
        assert!(rules.is_ignored(&dir.join(".sops.yaml"), false));
        assert!(!rules.is_ignored(&dir.join("cm.yaml"), false));
        let blank = SourceIgnore::load(&dir, Some("\n# nothing\n")).expect("rules");
        assert!(!blank.has_custom_patterns());
        // With custom patterns the defaults still apply, and a directory pattern covers what is
        // below it.
        let custom = SourceIgnore::load(&dir, Some("secret.yaml")).expect("rules");
        assert!(custom.has_custom_patterns());
        assert!(custom.is_ignored(&dir.join("app/secret.yaml"), false));
        assert!(custom.is_ignored(&dir.join("app/.sops.yaml"), false));
        assert!(custom.is_ignored(&dir.join(".github/workflows/ci.yaml"), false));
        assert!(!custom.is_ignored(&dir.join("app/cm.yaml"), false));
    }

    #[test]
    fn an_invalid_pattern_names_its_file() {
        let tmp = tree(&[("sub/.sourceignore", "ok.yaml\n{a,b\n")]);
        let dir = std::fs::canonicalize(tmp.path()).expect("canonical");
        let err = SourceIgnore::load(&dir, None).expect_err("invalid glob");
        let text = err.to_string();
        assert!(
            text.contains("sub/.sourceignore") && text.contains("{a,b"),
            "{text}"
        );
    }
}
