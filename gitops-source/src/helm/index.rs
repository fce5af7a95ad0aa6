//! Helm repository `index.yaml`: parsed once, streaming, keeping only what chart selection
//! needs.

use std::collections::BTreeMap;
use std::io::Read;

use super::HelmError;
use crate::semver::{Constraints, Version};

/// One version of a chart in an index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ChartVersion {
    /// The chart name.
    #[serde(default)]
    pub name: String,
    /// The chart version (semver).
    #[serde(default)]
    pub version: String,
    /// Where the packaged chart can be downloaded, relative to the repository URL or absolute.
    #[serde(default)]
    pub urls: Vec<String>,
    /// `sha256` hex of the packaged chart, as `helm repo index` writes it.
    #[serde(default)]
    pub digest: Option<String>,
}

/// The parts of a Helm repository index this crate uses. Unknown fields (descriptions,
/// maintainers, annotations…) are skipped while parsing, so a large index never exists twice
/// in memory: the file is read once, streaming, into this.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexFile {
    /// `v1`.
    #[serde(default)]
    pub api_version: String,
    /// Chart name → versions.
    #[serde(default)]
    pub entries: BTreeMap<String, Vec<ChartVersion>>,
}

impl IndexFile {
    /// Parses an index from `reader`, reading at most `max_bytes`. `origin` names it in errors.
    pub fn from_reader<R: Read>(
        reader: R,
        max_bytes: u64,
        origin: &str,
    ) -> Result<Self, HelmError> {
        let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let options = serde_saphyr::options! {
            budget: serde_saphyr::budget! {
                max_reader_input_bytes: Some(max),
                max_events: 100_000_000,
                max_nodes: 50_000_000,
                max_total_scalar_bytes: max,
            },
        };
        let index: IndexFile =
            serde_saphyr::from_reader_with_options(reader, options).map_err(|e| {
                HelmError::InvalidIndex {
                    url: origin.to_owned(),
                    message: e.to_string(),
                }
            })?;
        if index.api_version.is_empty() {
            return Err(HelmError::InvalidIndex {
                url: origin.to_owned(),
                message: "no apiVersion: not a Helm repository index".into(),
            });
        }
        Ok(index)
    }

    /// The highest version of `chart` satisfying `constraint` (Masterminds; `*` and ranges
    /// without a pre-release leave pre-releases out, as Helm does).
    pub fn select(
        &self,
        chart: &str,
        constraint: &str,
        origin: &str,
    ) -> Result<&ChartVersion, HelmError> {
        let versions = self
            .entries
            .get(chart)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| HelmError::ChartNotFound {
                url: origin.to_owned(),
                chart: chart.to_owned(),
            })?;
        let constraints =
            Constraints::parse(constraint).map_err(|e| HelmError::InvalidVersion {
                constraint: constraint.to_owned(),
                message: e.to_string(),
            })?;
        let mut best: Option<(&ChartVersion, Version)> = None;
        for cv in versions {
            let Ok(v) = Version::parse(&cv.version) else {
                continue;
            };
            if !constraints.matches(&v) {
                continue;
            }
            if best
                .as_ref()
                .is_none_or(|(_, b)| v.precedence(b) == std::cmp::Ordering::Greater)
            {
                best = Some((cv, v));
            }
        }
        best.map(|(cv, _)| cv)
            .ok_or_else(|| HelmError::NoMatchingVersion {
                url: origin.to_owned(),
                chart: chart.to_owned(),
                constraint: constraint.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"apiVersion: v1
entries:
  app:
  - name: app
    version: 1.2.0
    description: skipped
    maintainers: [{name: x}]
    urls: [app-1.2.0.tgz]
    digest: abc
  - name: app
    version: 2.0.0-rc.1
    urls: [app-2.0.0-rc.1.tgz]
  - name: app
    version: 1.10.0
    urls: [https://cdn.example/app-1.10.0.tgz]
generated: "2026-01-01T00:00:00Z"
"#;

    #[test]
    fn selects_the_newest_stable_version_and_ranges() {
        let index = IndexFile::from_reader(INDEX.as_bytes(), 1 << 20, "t").expect("parses");
        assert_eq!(
            index.select("app", "*", "t").expect("found").version,
            "1.10.0"
        );
        assert_eq!(
            index.select("app", "~1.2", "t").expect("found").version,
            "1.2.0"
        );
        assert_eq!(
            index
                .select("app", ">=2.0.0-0", "t")
                .expect("found")
                .version,
            "2.0.0-rc.1"
        );
        assert!(matches!(
            index.select("app", ">=3", "t"),
            Err(HelmError::NoMatchingVersion { .. })
        ));
        assert!(matches!(
            index.select("other", "*", "t"),
            Err(HelmError::ChartNotFound { .. })
        ));
    }

    #[test]
    fn refuses_oversized_and_non_index_documents() {
        assert!(matches!(
            IndexFile::from_reader(INDEX.as_bytes(), 64, "t"),
            Err(HelmError::InvalidIndex { .. })
        ));
        assert!(matches!(
            IndexFile::from_reader("kind: ConfigMap\n".as_bytes(), 1 << 20, "t"),
            Err(HelmError::InvalidIndex { .. })
        ));
    }
}
