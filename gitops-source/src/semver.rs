//! Semantic version constraints with the semantics of Go's `Masterminds/semver` v3, which Flux
//! uses for `GitRepository.spec.ref.semver`, `OCIRepository.spec.ref.semver` and Helm chart
//! versions.
//!
//! The rules, as Masterminds documents them:
//!
//! - `||` separates alternatives; within one, constraints are separated by spaces or commas
//!   and all must hold (`>=1.0.0 <2.0.0`, `>= 1.2, < 3.0.0`).
//! - Operators `=` (or none), `!=`, `>`, `<`, `>=` (`=>`), `<=` (`=<`), `~` (`~>`), `^`.
//! - Hyphen ranges: `1.2 - 1.4.5` is `>= 1.2, <= 1.4.5`.
//! - Wildcards `x`, `X`, `*`: `1.2.x` is `>= 1.2.0, < 1.3.0`; `>= 1.2.x` is `>= 1.2.0`;
//!   `<= 2.x` is `< 3`; `*` is any release.
//! - Tilde: `~1.2.3` is `>= 1.2.3, < 1.3.0`; `~1` is `>= 1, < 2`; `~2.3` is `>= 2.3, < 2.4`.
//! - Caret: `^1.2.3` is `>= 1.2.3, < 2.0.0`; `^0.2.3` is `>= 0.2.3, < 0.3.0`;
//!   `^0.0.3` is `>= 0.0.3, < 0.0.4`; `^0` is `>= 0.0.0, < 1.0.0`.
//! - Pre-releases: an alternative admits pre-release versions only when one of its
//!   constraints names a pre-release (`>=1.2.3-0 <2.0.0`); otherwise they are skipped.
//! - Versions may carry a `v` prefix and may be partial (`v1.2` is `1.2.0`), as Masterminds'
//!   `NewVersion` coerces them; build metadata is ignored when comparing.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Why a version or constraint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SemverError {
    /// The version is not a semantic version, even when coerced.
    #[error("{input:?} is not a semantic version")]
    InvalidVersion {
        /// The refused input.
        input: String,
    },
    /// The constraint cannot be parsed.
    #[error("invalid semver constraint {input:?}: {reason}")]
    InvalidConstraint {
        /// The refused constraint string.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A semantic version as Masterminds' `NewVersion` reads it (optional `v`, partial versions
/// coerced, build metadata kept but not compared).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    inner: semver::Version,
}

impl Version {
    /// Parses a version, accepting a `v` prefix and `1` / `1.2` as `1.0.0` / `1.2.0`.
    pub fn parse(input: &str) -> Result<Self, SemverError> {
        let invalid = || SemverError::InvalidVersion {
            input: input.to_owned(),
        };
        let s = input.strip_prefix('v').unwrap_or(input);
        let (s, build) = match s.split_once('+') {
            Some((head, build)) => (head, Some(build)),
            None => (s, None),
        };
        let (core, pre) = match s.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (s, None),
        };
        let mut parts = [0u64; 3];
        let segments: Vec<&str> = core.split('.').collect();
        if segments.is_empty() || segments.len() > 3 {
            return Err(invalid());
        }
        for (slot, seg) in parts.iter_mut().zip(&segments) {
            if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            *slot = seg.parse().map_err(|_| invalid())?;
        }
        let pre = match pre {
            Some(p) => semver::Prerelease::new(p).map_err(|_| invalid())?,
            None => semver::Prerelease::EMPTY,
        };
        if pre.as_str().is_empty() && s.ends_with('-') {
            return Err(invalid());
        }
        let build = match build {
            Some("") => return Err(invalid()),
            Some(b) => semver::BuildMetadata::new(b).map_err(|_| invalid())?,
            None => semver::BuildMetadata::EMPTY,
        };
        Ok(Version {
            inner: semver::Version {
                major: parts[0],
                minor: parts[1],
                patch: parts[2],
                pre,
                build,
            },
        })
    }

    /// The major number.
    pub fn major(&self) -> u64 {
        self.inner.major
    }
    /// The minor number.
    pub fn minor(&self) -> u64 {
        self.inner.minor
    }
    /// The patch number.
    pub fn patch(&self) -> u64 {
        self.inner.patch
    }
    /// The pre-release, empty for a release.
    pub fn prerelease(&self) -> &str {
        self.inner.pre.as_str()
    }
    /// Whether this is a pre-release.
    pub fn is_prerelease(&self) -> bool {
        !self.inner.pre.is_empty()
    }
    /// The version as the `semver` crate's type.
    pub fn as_semver(&self) -> &semver::Version {
        &self.inner
    }

    /// The build metadata after `+`, empty when there is none.
    pub fn build_metadata(&self) -> &str {
        self.inner.build.as_str()
    }

    /// This version with its build metadata replaced by `metadata` (Masterminds'
    /// `SetMetadata`, which Flux uses for HelmChart revision suffixes); an empty `metadata`
    /// removes it. `Display` then writes the normalised `major.minor.patch[-pre][+metadata]`.
    pub fn with_build_metadata(&self, metadata: &str) -> Result<Version, SemverError> {
        let build = if metadata.is_empty() {
            semver::BuildMetadata::EMPTY
        } else {
            semver::BuildMetadata::new(metadata).map_err(|_| SemverError::InvalidVersion {
                input: format!("{}+{metadata}", self.inner),
            })?
        };
        let mut inner = self.inner.clone();
        inner.build = build;
        Ok(Version { inner })
    }

    /// Semantic version precedence, ignoring build metadata.
    pub fn precedence(&self, other: &Version) -> Ordering {
        (self.inner.major, self.inner.minor, self.inner.patch)
            .cmp(&(other.inner.major, other.inner.minor, other.inner.patch))
            .then_with(|| self.inner.pre.cmp(&other.inner.pre))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl FromStr for Version {
    type Err = SemverError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equal,
    NotEqual,
    Greater,
    Less,
    GreaterEqual,
    LessEqual,
    Tilde,
    Caret,
}

#[derive(Debug, Clone)]
struct Constraint {
    op: Op,
    con: Version,
    /// A wildcard or missing part somewhere (`1.x`, `1`, `*`).
    dirty: bool,
    /// The minor part is a wildcard or missing (`1`, `1.x`).
    minor_dirty: bool,
    /// The patch part is a wildcard or missing (`1.2`, `1.2.x`).
    patch_dirty: bool,
}

#[derive(Debug, Clone)]
struct Group {
    constraints: Vec<Constraint>,
    admits_prerelease: bool,
}

/// A parsed constraint expression, such as `>=1.0.0 <2.0.0 || ^3`.
#[derive(Debug, Clone)]
pub struct Constraints {
    source: String,
    groups: Vec<Group>,
}

/// Masterminds caps constraint strings at 512 bytes and 32 alternatives.
const MAX_CONSTRAINT_LEN: usize = 512;
const MAX_GROUPS: usize = 32;

fn is_wildcard(s: &str) -> bool {
    matches!(s, "x" | "X" | "*")
}

fn split_operator(token: &str) -> (Op, &str) {
    for (prefix, op) in [
        ("!=", Op::NotEqual),
        (">=", Op::GreaterEqual),
        ("=>", Op::GreaterEqual),
        ("<=", Op::LessEqual),
        ("=<", Op::LessEqual),
        ("~>", Op::Tilde),
    ] {
        if let Some(rest) = token.strip_prefix(prefix) {
            return (op, rest);
        }
    }
    for (prefix, op) in [
        ("=", Op::Equal),
        (">", Op::Greater),
        ("<", Op::Less),
        ("~", Op::Tilde),
        ("^", Op::Caret),
    ] {
        if let Some(rest) = token.strip_prefix(prefix) {
            return (op, rest);
        }
    }
    (Op::Equal, token)
}

fn parse_constraint(op: Op, text: &str, whole: &str) -> Result<Constraint, SemverError> {
    let bad = |reason: String| SemverError::InvalidConstraint {
        input: whole.to_owned(),
        reason,
    };
    let s = text.strip_prefix('v').unwrap_or(text);
    let (s, _build) = match s.split_once('+') {
        Some((head, build)) => (head, Some(build)),
        None => (s, None),
    };
    let (core, pre) = match s.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (s, None),
    };
    let segments: Vec<&str> = core.split('.').collect();
    if core.is_empty() || segments.len() > 3 {
        return Err(bad(format!("{text:?} is not a version")));
    }
    for seg in &segments {
        if seg.is_empty() || !(is_wildcard(seg) || seg.bytes().all(|b| b.is_ascii_digit())) {
            return Err(bad(format!("{text:?} is not a version")));
        }
    }
    let number = |seg: &str| -> Result<u64, SemverError> {
        seg.parse::<u64>()
            .map_err(|_| bad(format!("{seg:?} in {text:?} is not a number")))
    };
    let (mut major, mut minor, mut patch) = (0, 0, 0);
    let (mut dirty, mut minor_dirty, mut patch_dirty) = (false, false, false);
    if is_wildcard(segments[0]) {
        dirty = true;
    } else if segments.len() < 2 || is_wildcard(segments[1]) {
        dirty = true;
        minor_dirty = true;
        major = number(segments[0])?;
    } else if segments.len() < 3 || is_wildcard(segments[2]) {
        dirty = true;
        patch_dirty = true;
        major = number(segments[0])?;
        minor = number(segments[1])?;
    } else {
        major = number(segments[0])?;
        minor = number(segments[1])?;
        patch = number(segments[2])?;
    }
    let pre = match pre {
        Some(p) => semver::Prerelease::new(p)
            .map_err(|_| bad(format!("{p:?} in {text:?} is not a valid pre-release")))?,
        None => semver::Prerelease::EMPTY,
    };
    Ok(Constraint {
        op,
        con: Version {
            inner: semver::Version {
                major,
                minor,
                patch,
                pre,
                build: semver::BuildMetadata::EMPTY,
            },
        },
        dirty,
        minor_dirty,
        patch_dirty,
    })
}

fn parse_group(group: &str, whole: &str) -> Result<Group, SemverError> {
    let bad = |reason: &str| SemverError::InvalidConstraint {
        input: whole.to_owned(),
        reason: reason.to_owned(),
    };
    // Tokens are separated by whitespace or commas; an operator may stand apart from its version.
    let raw: Vec<&str> = group
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .collect();
    if raw.is_empty() {
        return Err(bad("an alternative is empty"));
    }
    let is_operator_only = |t: &str| {
        matches!(
            t,
            "=" | "!=" | ">" | "<" | ">=" | "=>" | "<=" | "=<" | "~" | "~>" | "^"
        )
    };
    let mut constraints = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let token = raw[i];
        // Hyphen range: `A - B`, where A and B are bare versions.
        if i + 2 < raw.len() && raw.get(i + 1) == Some(&"-") {
            let (op_a, _) = split_operator(token);
            let lower_bare = op_a == Op::Equal && !token.starts_with('=');
            let upper = raw.get(i + 2).copied().unwrap_or_default();
            let (op_b, _) = split_operator(upper);
            if !lower_bare || op_b != Op::Equal || upper.starts_with('=') {
                return Err(bad("a hyphen range needs bare versions on both sides"));
            }
            constraints.push(parse_constraint(Op::GreaterEqual, token, whole)?);
            constraints.push(parse_constraint(Op::LessEqual, upper, whole)?);
            i += 3;
            continue;
        }
        if token == "-" {
            return Err(bad("a hyphen range needs versions on both sides"));
        }
        let (op, version) = if is_operator_only(token) {
            let Some(next) = raw.get(i + 1) else {
                return Err(bad("an operator has no version"));
            };
            i += 1;
            (split_operator(token).0, *next)
        } else {
            split_operator(token)
        };
        if version.is_empty() {
            return Err(bad("an operator has no version"));
        }
        constraints.push(parse_constraint(op, version, whole)?);
        i += 1;
    }
    let admits_prerelease = constraints.iter().any(|c| c.con.is_prerelease());
    Ok(Group {
        constraints,
        admits_prerelease,
    })
}

impl Constraints {
    /// Parses a constraint expression.
    pub fn parse(input: &str) -> Result<Self, SemverError> {
        if input.len() > MAX_CONSTRAINT_LEN {
            return Err(SemverError::InvalidConstraint {
                input: input.chars().take(64).collect(),
                reason: format!("longer than {MAX_CONSTRAINT_LEN} bytes"),
            });
        }
        let alternatives: Vec<&str> = input.split("||").collect();
        if alternatives.len() > MAX_GROUPS {
            return Err(SemverError::InvalidConstraint {
                input: input.to_owned(),
                reason: format!("more than {MAX_GROUPS} alternatives"),
            });
        }
        let groups = alternatives
            .iter()
            .map(|g| parse_group(g, input))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Constraints {
            source: input.to_owned(),
            groups,
        })
    }

    /// Whether the version satisfies the constraints.
    pub fn matches(&self, version: &Version) -> bool {
        self.groups.iter().any(|group| {
            group
                .constraints
                .iter()
                .all(|c| c.check(version, group.admits_prerelease))
        })
    }

    /// Picks the highest version among `candidates` (for example Git tag names) that parses
    /// as a version and satisfies the constraints. Ties between names of the same version
    /// (`v1.0.0` and `1.0.0`) go to the lexically greater name, so the choice is stable.
    pub fn select_highest<'a, I>(&self, candidates: I) -> Option<(&'a str, Version)>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut best: Option<(&'a str, Version)> = None;
        for name in candidates {
            let Ok(version) = Version::parse(name) else {
                continue;
            };
            if !self.matches(&version) {
                continue;
            }
            let better = match &best {
                None => true,
                Some((best_name, best_version)) => match version.precedence(best_version) {
                    Ordering::Greater => true,
                    Ordering::Equal => name > *best_name,
                    Ordering::Less => false,
                },
            };
            if better {
                best = Some((name, version));
            }
        }
        best
    }
}

impl fmt::Display for Constraints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for Constraints {
    type Err = SemverError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Constraints::parse(s)
    }
}

impl Constraint {
    fn check(&self, v: &Version, include_pre: bool) -> bool {
        if v.is_prerelease() && !include_pre {
            return false;
        }
        match self.op {
            Op::Equal => {
                if self.dirty {
                    self.tilde(v)
                } else {
                    v.precedence(&self.con) == Ordering::Equal
                }
            }
            Op::NotEqual => self.not_equal(v),
            Op::Greater => self.greater(v),
            Op::Less => v.precedence(&self.con) == Ordering::Less,
            Op::GreaterEqual => v.precedence(&self.con) != Ordering::Less,
            Op::LessEqual => self.less_equal(v),
            Op::Tilde => self.tilde(v),
            Op::Caret => self.caret(v),
        }
    }

    fn not_equal(&self, v: &Version) -> bool {
        let c = &self.con;
        if self.dirty {
            if c.major() != v.major() {
                return true;
            }
            if self.minor_dirty {
                return false;
            }
            if c.minor() != v.minor() {
                return true;
            }
            if self.patch_dirty {
                return v.prerelease() != c.prerelease();
            }
            // A wildcard major with everything else equal: `!= *` matches nothing.
            return false;
        }
        v.precedence(c) != Ordering::Equal
    }

    fn greater(&self, v: &Version) -> bool {
        let c = &self.con;
        if !self.dirty {
            return v.precedence(c) == Ordering::Greater;
        }
        if v.major() > c.major() {
            true
        } else if v.major() < c.major() || self.minor_dirty {
            // `>11` needs 12 or higher: 11.1.0 is not greater than 11.
            false
        } else if self.patch_dirty {
            // `>11.1` needs 11.2 or higher.
            v.minor() > c.minor()
        } else {
            // `>*`: Masterminds compares against 0.0.0.
            v.precedence(c) == Ordering::Greater
        }
    }

    fn less_equal(&self, v: &Version) -> bool {
        let c = &self.con;
        if !self.dirty {
            return v.precedence(c) != Ordering::Greater;
        }
        if v.major() > c.major() {
            return false;
        }
        if v.major() == c.major() && v.minor() > c.minor() && !self.minor_dirty {
            return false;
        }
        true
    }

    fn tilde(&self, v: &Version) -> bool {
        let c = &self.con;
        if v.precedence(c) == Ordering::Less {
            return false;
        }
        // `~0.0.0` (and `*`, which holds 0.0.0 with only the major dirty) accept everything.
        if c.major() == 0
            && c.minor() == 0
            && c.patch() == 0
            && !self.minor_dirty
            && !self.patch_dirty
        {
            return true;
        }
        if v.major() != c.major() {
            return false;
        }
        if v.minor() != c.minor() && !self.minor_dirty {
            return false;
        }
        true
    }

    fn caret(&self, v: &Version) -> bool {
        let c = &self.con;
        if v.precedence(c) == Ordering::Less {
            return false;
        }
        if c.major() > 0 || self.minor_dirty {
            return v.major() == c.major();
        }
        if v.major() > 0 {
            return false;
        }
        if c.minor() > 0 || self.patch_dirty {
            return v.minor() == c.minor();
        }
        if v.minor() > 0 {
            return false;
        }
        c.patch() == v.patch()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_metadata_is_replaced_like_masterminds_set_metadata() {
        let v = Version::parse("v1.2").expect("valid");
        assert_eq!(
            v.with_build_metadata("abcdef123456")
                .expect("valid")
                .to_string(),
            "1.2.0+abcdef123456"
        );
        let v = Version::parse("2.0.0-rc.1+old").expect("valid");
        assert_eq!(v.build_metadata(), "old");
        assert_eq!(
            v.with_build_metadata("3").expect("valid").to_string(),
            "2.0.0-rc.1+3"
        );
        assert_eq!(
            v.with_build_metadata("").expect("valid").to_string(),
            "2.0.0-rc.1"
        );
        assert!(v.with_build_metadata("a b").is_err());
        assert!(v.with_build_metadata("a..b").is_err());
        assert!(Version::parse("1.2.3+").is_err());
    }

    /// Golden table from Masterminds' documented rules (README sections on basic comparisons,
    /// pre-releases, hyphen ranges, wildcards, tilde and caret).
    #[test]
    fn masterminds_golden_table() {
        let table: &[(&str, &str, bool)] = &[
            // basic comparisons
            ("=1.2.3", "1.2.3", true),
            ("1.2.3", "1.2.4", false),
            ("!=1.2.3", "1.2.4", true),
            ("!=1.2.3", "1.2.3", false),
            (">1.2.3", "1.2.4", true),
            (">1.2.3", "1.2.3", false),
            ("<1.2.3", "1.2.2", true),
            ("<1.2.3", "1.2.3", false),
            (">=1.2.3", "1.2.3", true),
            ("=>1.2.3", "1.2.3", true),
            ("<=1.2.3", "1.2.3", true),
            ("=<1.2.3", "1.2.4", false),
            (">= 1.2.3", "1.3", true),
            (">=1.0.0 <2.0.0", "1.5.0", true),
            (">=1.0.0 <2.0.0", "2.0.0", false),
            (">=1.0.0 <2.0.0", "0.9.9", false),
            (">= 1.2, < 3.0.0", "2.9.9", true),
            (">= 1.2, < 3.0.0 || >= 4.2.3", "3.5.0", false),
            (">= 1.2, < 3.0.0 || >= 4.2.3", "4.2.3", true),
            ("^1 || ^3", "3.1.0", true),
            ("^1 || ^3", "2.0.0", false),
            // v prefix on either side
            ("v1.2.3", "1.2.3", true),
            (">=v1.0.0", "v1.0.1", true),
            // pre-releases
            (">=1.2.3", "1.2.4-beta", false),
            (">=1.2.3-0", "1.2.4-beta", true),
            (">=1.2.3-0 <2.0.0", "1.5.0-rc.1", true),
            // 2.0.0-rc.1 precedes 2.0.0, and the group admits pre-releases.
            (">=1.2.3-0 <2.0.0", "2.0.0-rc.1", true),
            (">=1.2.3-BETA", "1.2.3-alpha", true),
            (">=1.2.3-beta.2", "1.2.3-beta.10", true),
            (">=1.2.3-beta.2", "1.2.3-beta.1", false),
            ("*", "1.2.3-alpha", false),
            ("^1", "1.5.0-rc.1", false),
            ("1.2.3-beta", "1.2.3-beta", true),
            // hyphen ranges
            ("1.2 - 1.4.5", "1.2.0", true),
            ("1.2 - 1.4.5", "1.4.5", true),
            ("1.2 - 1.4.5", "1.4.6", false),
            ("1.2 - 1.4.5", "1.1.9", false),
            ("2.3.4 - 4.5", "4.5.0", true),
            ("2.3.4 - 4.5", "4.5.1", true),
            ("2.3.4 - 4.5", "4.6.0", false),
            // wildcards
            ("1.2.x", "1.2.9", true),
            ("1.2.x", "1.3.0", false),
            ("1.x", "1.9.0", true),
            ("1.x", "2.0.0", false),
            ("1.X", "1.0.0", true),
            (">= 1.2.x", "1.2.0", true),
            (">= 1.2.x", "1.1.9", false),
            ("<= 2.x", "2.9.9", true),
            ("<= 2.x", "3.0.0", false),
            ("*", "0.0.1", true),
            ("*", "99.0.0", true),
            ("x", "1.0.0", true),
            (">11", "11.1.0", false),
            (">11", "12.0.0", true),
            (">11.1", "11.1.1", false),
            (">11.1", "11.2.0", true),
            ("!=4.x", "4.1.0", false),
            ("!=4.x", "5.0.0", true),
            // tilde
            ("~1.2.3", "1.2.3", true),
            ("~1.2.3", "1.2.9", true),
            ("~1.2.3", "1.3.0", false),
            ("~1.2.3", "1.2.2", false),
            ("~1", "1.9.9", true),
            ("~1", "2.0.0", false),
            ("~2.3", "2.3.5", true),
            ("~2.3", "2.4.0", false),
            ("~1.2.x", "1.2.7", true),
            ("~1.x", "1.7.0", true),
            ("~>1.2", "1.2.1", true),
            ("~1.2", "1.3.0", false),
            // caret
            ("^1.2.3", "1.9.9", true),
            ("^1.2.3", "2.0.0", false),
            ("^1.2.3", "1.2.2", false),
            ("^1.2.x", "1.2.0", true),
            ("^2.3", "2.9.0", true),
            ("^2.x", "2.0.0", true),
            ("^2.x", "3.0.0", false),
            ("^0.2.3", "0.2.9", true),
            ("^0.2.3", "0.3.0", false),
            ("^0.2", "0.2.0", true),
            ("^0.2", "0.3.0", false),
            ("^0.0.3", "0.0.3", true),
            ("^0.0.3", "0.0.4", false),
            ("^0.0", "0.0.9", true),
            ("^0.0", "0.1.0", false),
            ("^0", "0.9.9", true),
            ("^0", "1.0.0", false),
            ("^1", "1.0.0", true),
            ("^1", "2.0.0", false),
        ];
        for (constraint, version, expected) in table {
            let c = Constraints::parse(constraint).expect("constraint parses");
            let v = Version::parse(version).expect("version parses");
            assert_eq!(
                c.matches(&v),
                *expected,
                "{constraint:?} against {version:?} should be {expected}"
            );
        }
    }

    #[test]
    fn invalid_constraints_are_refused() {
        for bad in [
            "", "   ", ">=", "1.2.3.4", "abc", ">=1.0 ||", "1.2 -", "- 1.2", ">=1.a",
        ] {
            assert!(Constraints::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn versions_are_coerced_like_new_version() {
        assert_eq!(Version::parse("v1.2").expect("parses").to_string(), "1.2.0");
        assert_eq!(Version::parse("2").expect("parses").to_string(), "2.0.0");
        assert_eq!(
            Version::parse("1.2.3-rc.1+build.5")
                .expect("parses")
                .prerelease(),
            "rc.1"
        );
        for bad in [
            "",
            "v",
            "1.2.3.4",
            "release-1",
            "1..2",
            "1.2.3-",
            "1.2.3-01",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn selects_the_highest_matching_tag() {
        let tags = [
            "v1.0.0",
            "v1.2.0",
            "v1.10.0",
            "v2.0.0",
            "v1.11.0-rc.1",
            "latest",
            "1.10.0",
        ];
        let c = Constraints::parse(">=1.0.0 <2.0.0").expect("parses");
        let (name, version) = c.select_highest(tags).expect("a match");
        assert_eq!((name, version.to_string().as_str()), ("v1.10.0", "1.10.0"));
        let pre = Constraints::parse(">=1.11.0-0").expect("parses");
        let (name, _) = pre.select_highest(tags).expect("a match");
        assert_eq!(name, "v2.0.0");
        let only_pre = Constraints::parse(">=1.11.0-0 <2.0.0").expect("parses");
        assert_eq!(
            only_pre.select_highest(tags).map(|t| t.0),
            Some("v1.11.0-rc.1")
        );
        assert!(
            Constraints::parse("^3")
                .expect("parses")
                .select_highest(tags)
                .is_none()
        );
    }
}
