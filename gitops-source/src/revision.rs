//! Flux's revision and digest strings as types.
//!
//! A [`Digest`] is `<algorithm>:<hex>` (`sha256:…`, `sha1:…`). A [`Revision`] is an optional
//! human-readable name followed by `@` and a digest: `main@sha1:<40 hex>` for a branch,
//! `v1.2.3@sha1:<hex>` for a tag or semver match, `refs/pull/1/head@sha1:<hex>` for a ref name,
//! a bare `sha1:<hex>` for a commit-only reference, `sha256:<hex>` for content addressed
//! sources and `<tag>@sha256:<hex>` for OCI. A HelmChart's revision is different: Flux writes
//! the bare chart version (`1.2.3`, or with build metadata `1.2.3+abcdef123456`, `1.2.3+4`),
//! with no digest; [`Revision::chart_version`] expresses it. All round-trip through
//! `Display`/`FromStr`.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// The hash algorithms Flux writes into revisions and digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-1, 40 hex characters (Git object ids).
    Sha1,
    /// SHA-256, 64 hex characters (artifact digests, OCI manifests).
    Sha256,
    /// SHA-384, 96 hex characters.
    Sha384,
    /// SHA-512, 128 hex characters.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as written before the colon.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// The number of hex characters of a value of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 40,
            Algorithm::Sha256 => 64,
            Algorithm::Sha384 => 96,
            Algorithm::Sha512 => 128,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a digest or revision string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The string has no `<algorithm>:` prefix.
    #[error("digest {input:?} has no `<algorithm>:` prefix")]
    MissingAlgorithm {
        /// The refused input.
        input: String,
    },
    /// The algorithm is not one Flux writes.
    #[error("digest {input:?} names the unsupported algorithm {algorithm:?}")]
    UnsupportedAlgorithm {
        /// The refused input.
        input: String,
        /// The algorithm found.
        algorithm: String,
    },
    /// The hex part has the wrong length or characters that are not lower-case hex.
    #[error("digest {input:?} must have {expected} lower-case hex characters after `{algorithm}:`")]
    BadHex {
        /// The refused input.
        input: String,
        /// The algorithm found.
        algorithm: Algorithm,
        /// The expected number of hex characters.
        expected: usize,
    },
    /// A chart version revision that is not a semantic version.
    #[error("revision {input:?} is not a chart version (semver) nor `<algorithm>:<hex>`")]
    NotAVersion {
        /// The refused input.
        input: String,
    },
    /// A revision whose name before `@` is empty.
    #[error("revision {input:?} has an empty name before `@`")]
    EmptyName {
        /// The refused input.
        input: String,
    },
}

/// A content digest, `<algorithm>:<lower-case hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Builds a digest from an algorithm and its hex value, checking length and characters.
    pub fn new(algorithm: Algorithm, hex: &str) -> Result<Self, ParseError> {
        let valid = hex.len() == algorithm.hex_len()
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(ParseError::BadHex {
                input: format!("{algorithm}:{hex}"),
                algorithm,
                expected: algorithm.hex_len(),
            });
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// The `sha256:` digest of a byte slice.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(sha2::Sha256::digest(bytes)),
        }
    }

    /// The `sha256:` digest from a finished hasher.
    pub fn from_sha256(hasher: sha2::Sha256) -> Self {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(hasher.finalize()),
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lower-case hex value.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl FromStr for Digest {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((algo, hex)) = s.split_once(':') else {
            return Err(ParseError::MissingAlgorithm {
                input: s.to_owned(),
            });
        };
        let algorithm = match algo {
            "sha1" => Algorithm::Sha1,
            "sha256" => Algorithm::Sha256,
            "sha384" => Algorithm::Sha384,
            "sha512" => Algorithm::Sha512,
            other => {
                return Err(ParseError::UnsupportedAlgorithm {
                    input: s.to_owned(),
                    algorithm: other.to_owned(),
                });
            }
        };
        Digest::new(algorithm, hex).map_err(|_| ParseError::BadHex {
            input: s.to_owned(),
            algorithm,
            expected: algorithm.hex_len(),
        })
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A Flux revision: an optional name (branch, tag, ref name) and the digest it resolved to, or
/// — for a HelmChart — a bare chart version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revision {
    repr: Repr,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Repr {
    /// `<name>@<digest>` or a bare `<digest>`.
    Digest {
        name: Option<String>,
        digest: Digest,
    },
    /// A chart version, kept exactly as written (`1.2.3`, `1.2.3-rc.1+abcdef123456`).
    ChartVersion(String),
}

impl Revision {
    /// A revision with a name, such as `main@sha1:<hex>` or `v1.2.3@sha256:<hex>`.
    pub fn named(name: impl Into<String>, digest: Digest) -> Self {
        Revision {
            repr: Repr::Digest {
                name: Some(name.into()),
                digest,
            },
        }
    }

    /// A bare revision, such as `sha1:<hex>` for a commit-only reference.
    pub fn bare(digest: Digest) -> Self {
        Revision {
            repr: Repr::Digest { name: None, digest },
        }
    }

    /// A Git revision: `<name>@sha1:<commit>` or `sha1:<commit>` without a name.
    pub fn git(name: Option<&str>, commit_hex: &str) -> Result<Self, ParseError> {
        let digest = Digest::new(Algorithm::Sha1, commit_hex)?;
        Ok(match name {
            Some(n) if !n.is_empty() => Revision::named(n, digest),
            _ => Revision::bare(digest),
        })
    }

    /// A HelmChart revision: the bare chart version as Flux writes it into
    /// `status.artifact.revision` (`1.2.3`, `1.2.3+4`, `1.2.3+abcdef123456`). The version must
    /// be semver as Helm reads it (a `v` prefix and partial versions are allowed); it is kept
    /// verbatim so it round-trips.
    pub fn chart_version(version: impl Into<String>) -> Result<Self, ParseError> {
        let version = version.into();
        if version.contains('@')
            || version.contains(':')
            || crate::semver::Version::parse(&version).is_err()
        {
            return Err(ParseError::NotAVersion { input: version });
        }
        Ok(Revision {
            repr: Repr::ChartVersion(version),
        })
    }

    /// The name before `@`, if any (`None` for bare digests and chart versions).
    pub fn name(&self) -> Option<&str> {
        match &self.repr {
            Repr::Digest { name, .. } => name.as_deref(),
            Repr::ChartVersion(_) => None,
        }
    }

    /// The digest after `@` (the commit for Git); `None` for a chart version revision.
    pub fn digest(&self) -> Option<&Digest> {
        match &self.repr {
            Repr::Digest { digest, .. } => Some(digest),
            Repr::ChartVersion(_) => None,
        }
    }

    /// The chart version of a HelmChart revision.
    pub fn as_chart_version(&self) -> Option<&str> {
        match &self.repr {
            Repr::ChartVersion(v) => Some(v),
            Repr::Digest { .. } => None,
        }
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Digest {
                name: Some(name),
                digest,
            } => write!(f, "{name}@{digest}"),
            Repr::Digest { name: None, digest } => write!(f, "{digest}"),
            Repr::ChartVersion(v) => f.write_str(v),
        }
    }
}

impl FromStr for Revision {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A name may itself hold `@` (rare in refs, but legal); the digest is after the last one.
        match s.rsplit_once('@') {
            Some((name, digest)) => {
                if name.is_empty() {
                    return Err(ParseError::EmptyName {
                        input: s.to_owned(),
                    });
                }
                Ok(Revision::named(name, digest.parse()?))
            }
            None => match s.parse() {
                Ok(digest) => Ok(Revision::bare(digest)),
                // No `<algorithm>:` at all: a HelmChart's bare chart version, or nothing valid.
                Err(e @ ParseError::MissingAlgorithm { .. }) => {
                    Revision::chart_version(s).map_err(|_| e)
                }
                Err(e) => Err(e),
            },
        }
    }
}

impl serde::Serialize for Revision {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Revision {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA1: &str = "0123456789abcdef0123456789abcdef01234567";
    const SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn revisions_round_trip_flux_formats() {
        for s in [
            format!("main@sha1:{SHA1}"),
            format!("v1.2.3@sha1:{SHA1}"),
            format!("refs/pull/1/head@sha1:{SHA1}"),
            format!("sha1:{SHA1}"),
            format!("sha256:{SHA256}"),
            format!("latest@sha256:{SHA256}"),
            format!("feature/a-b@sha1:{SHA1}"),
            "1.2.3".to_owned(),
            "1.2.3+abcdef123456".to_owned(),
            "1.2.3+4".to_owned(),
            "2.0.0-rc.1+abcdef123456.7".to_owned(),
            "v1.2".to_owned(),
        ] {
            let parsed: Revision = s.parse().expect("valid revision");
            assert_eq!(parsed.to_string(), s);
        }
    }

    #[test]
    fn revision_parts() {
        let r: Revision = format!("v1.2.3@sha1:{SHA1}").parse().expect("valid");
        assert_eq!(r.name(), Some("v1.2.3"));
        assert_eq!(r.digest().map(Digest::algorithm), Some(Algorithm::Sha1));
        assert_eq!(r.digest().map(Digest::hex), Some(SHA1));
        assert_eq!(r.as_chart_version(), None);
        let bare: Revision = format!("sha256:{SHA256}").parse().expect("valid");
        assert_eq!(bare.name(), None);
        assert_eq!(
            Revision::git(Some("main"), SHA1)
                .expect("valid")
                .to_string(),
            format!("main@sha1:{SHA1}")
        );
        assert_eq!(
            Revision::git(None, SHA1).expect("valid").to_string(),
            format!("sha1:{SHA1}")
        );
    }

    #[test]
    fn chart_versions_are_bare_revisions() {
        let r: Revision = "1.2.3+abcdef123456".parse().expect("valid");
        assert_eq!(
            r,
            Revision::chart_version("1.2.3+abcdef123456").expect("valid")
        );
        assert_eq!(r.as_chart_version(), Some("1.2.3+abcdef123456"));
        assert_eq!(r.name(), None);
        assert_eq!(r.digest(), None);
        assert_ne!(
            r,
            Revision::chart_version("1.2.3+abcdef123457").expect("valid")
        );
        for bad in ["main", "1.2.3.4", "", "1.2.3+", "x1.0.0", "1.0.0@x"] {
            assert!(
                Revision::chart_version(bad).is_err(),
                "{bad:?} is not a chart version"
            );
        }
        let json = serde_json::to_string(&r).expect("serialises");
        assert_eq!(json, "\"1.2.3+abcdef123456\"");
        let back: Revision = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, r);
    }

    #[test]
    fn bad_strings_are_refused() {
        assert!(matches!(
            "main".parse::<Revision>(),
            Err(ParseError::MissingAlgorithm { .. })
        ));
        assert!(matches!(
            format!("md5:{SHA1}").parse::<Digest>(),
            Err(ParseError::UnsupportedAlgorithm { .. })
        ));
        assert!(matches!(
            "sha1:abc".parse::<Digest>(),
            Err(ParseError::BadHex { .. })
        ));
        assert!(matches!(
            format!("sha1:{}", SHA1.to_uppercase()).parse::<Digest>(),
            Err(ParseError::BadHex { .. })
        ));
        assert!(matches!(
            format!("@sha1:{SHA1}").parse::<Revision>(),
            Err(ParseError::EmptyName { .. })
        ));
        assert!(format!("sha256:{SHA1}").parse::<Digest>().is_err());
    }

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            Digest::sha256_of(b"").to_string(),
            format!("sha256:{SHA256}")
        );
    }
}
