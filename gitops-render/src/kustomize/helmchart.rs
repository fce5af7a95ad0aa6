//! kustomize's `helmCharts` (the builtin HelmChartInflationGenerator), rendered in-process by
//! this crate's Helm engine instead of a `helm` subprocess.
//!
//! kustomize v5.5 runs `helm template` with arguments built from each entry; this module
//! reproduces what that command line means:
//! - the chart is `{chartHome}/{name}`, or `{chartHome}/{name}-{version}/{name}` when both
//!   `version` and `repo` are set (`chartHome` defaults to `charts`, relative to the
//!   kustomization); a chart that is not there would have to be pulled, which this engine
//!   never does ([`KustomizeError::Remote`]);
//! - values: the `valuesFile` (default: the chart's own `values.yaml`), combined with
//!   `valuesInline` as `valuesMerge` says (`override`: inline wins, `merge`: the file wins,
//!   `replace`: inline only), then each of `additionalValuesFiles` merged on top as Helm merges
//!   `-f` files. Every file is read through the kustomization's confined loader;
//! - the release name is `releaseName`, else `nameTemplate` rendered, else `release-name`
//!   (what `helm template --generate-name` prints); `namespace`, `kubeVersion`, `apiVersions`,
//!   `includeCRDs`, `skipTests` and `skipHooks` (`--no-hooks`) as their flags do.
//!
//! The rendered stream is read back as kustomize reads helm's stdout.

use std::path::{Path, PathBuf};

use super::KustomizeError;
use super::fs::Loader;
use super::resource::Resource;
use crate::helm;
use crate::yaml::{Map, Value};

/// Fields of a `helmCharts` entry kustomize v5.5 accepts (its JSON decoder rejects others).
const CHART_FIELDS: &[&str] = &[
    "name",
    "version",
    "repo",
    "releaseName",
    "namespace",
    "additionalValuesFiles",
    "valuesFile",
    "valuesInline",
    "valuesMerge",
    "includeCRDs",
    "skipHooks",
    "apiVersions",
    "kubeVersion",
    "nameTemplate",
    "skipTests",
    "debug",
];

/// Fields of `helmGlobals`.
const GLOBAL_FIELDS: &[&str] = &["chartHome", "configHome"];

/// The deprecated `helmChartInflationGenerator` entries' fields.
const LEGACY_FIELDS: &[&str] = &[
    "chartName",
    "chartVersion",
    "chartRepoUrl",
    "chartHome",
    "chartRepoName",
    "helmBin",
    "helmHome",
    "values",
    "valuesLocal",
    "valuesMerge",
    "releaseName",
    "releaseNamespace",
    "extraArgs",
];

/// The Kubernetes version `helm template` 3.17 assumes without `--kube-version` (the
/// client-go version it is built with).
pub(crate) const DEFAULT_KUBE_VERSION: &str = "v1.32.0";

/// Helm's release-name rule (`chartutil.ValidateReleaseName`).
const MAX_RELEASE_NAME: usize = 53;

/// How `valuesInline` combines with the values file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValuesMerge {
    Override,
    Merge,
    Replace,
}

/// `helmGlobals`.
#[derive(Debug, Clone, Default)]
pub(crate) struct HelmGlobals {
    chart_home: Option<String>,
}

/// One `helmCharts` entry.
#[derive(Debug, Clone, Default)]
pub(crate) struct HelmChart {
    name: String,
    version: String,
    repo: String,
    release_name: String,
    namespace: String,
    additional_values_files: Vec<String>,
    values_file: String,
    /// `valuesInline` as `sigs.k8s.io/yaml` decodes it (YAML 1.1 scalars, float64 numbers).
    values_inline: Option<helm::Value>,
    values_merge: Option<String>,
    include_crds: bool,
    skip_hooks: bool,
    api_versions: Vec<String>,
    kube_version: String,
    name_template: String,
    skip_tests: bool,
}

fn kerr(file: &Path, message: impl Into<String>) -> KustomizeError {
    KustomizeError::Kustomization {
        path: file.to_path_buf(),
        message: message.into(),
    }
}

fn check_fields(file: &Path, m: &Map, known: &[&str]) -> Result<(), KustomizeError> {
    for k in m.keys() {
        if !known.iter().any(|f| f.eq_ignore_ascii_case(k)) {
            return Err(kerr(file, format!("json: unknown field \"{k}\"")));
        }
    }
    Ok(())
}

/// A field of a mapping, matched case-insensitively as Go's JSON decoder does.
fn field<'a>(m: &'a Map, name: &str) -> Option<&'a Value> {
    m.get(name)
        .or_else(|| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

fn string_field(file: &Path, m: &Map, name: &str) -> Result<String, KustomizeError> {
    match field(m, name) {
        None => Ok(String::new()),
        Some(Value::Str(s)) => Ok(s.clone()),
        Some(_) => Err(kerr(
            file,
            format!("json: cannot unmarshal non-string into Go struct field {name} of type string"),
        )),
    }
}

fn bool_field(file: &Path, m: &Map, name: &str) -> Result<bool, KustomizeError> {
    match field(m, name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(kerr(
            file,
            format!("json: cannot unmarshal non-bool into Go struct field {name} of type bool"),
        )),
    }
}

fn strings_field(file: &Path, m: &Map, name: &str) -> Result<Vec<String>, KustomizeError> {
    match field(m, name) {
        None => Ok(Vec::new()),
        Some(Value::Seq(s)) => s
            .iter()
            .map(|v| match v {
                Value::Str(s) => Ok(s.clone()),
                _ => Err(kerr(
                    file,
                    format!(
                        "json: cannot unmarshal non-string into Go struct field {name} of type string"
                    ),
                )),
            })
            .collect(),
        Some(_) => Err(kerr(
            file,
            format!("json: cannot unmarshal non-list into Go struct field {name} of type []string"),
        )),
    }
}

impl HelmGlobals {
    pub(crate) fn parse(file: &Path, v: Option<&Value>) -> Result<Self, KustomizeError> {
        match v {
            None | Some(Value::Null) => Ok(Self::default()),
            Some(Value::Map(m)) => {
                check_fields(file, m, GLOBAL_FIELDS)?;
                let chart_home = string_field(file, m, "chartHome")?;
                // configHome only tells a helm subprocess where its configuration lives.
                string_field(file, m, "configHome")?;
                Ok(Self {
                    chart_home: Some(chart_home).filter(|s| !s.is_empty()),
                })
            }
            Some(_) => Err(kerr(file, "helmGlobals must be a mapping")),
        }
    }
}

/// The `valuesInline` (or legacy `valuesLocal`) mappings of a kustomization's chart entries,
/// read again from the file's text with `sigs.k8s.io/yaml`'s YAML 1.1 rules, as kustomize
/// decodes them.
fn inline_values(
    file: &Path,
    text: &str,
    list_field: &str,
    inline_field: &str,
) -> Result<Vec<Option<helm::Value>>, KustomizeError> {
    let doc = helm::yaml::parse(text).map_err(|e| kerr(file, e.to_string()))?;
    let Some(top) = doc.as_map() else {
        return Ok(Vec::new());
    };
    let top = top.borrow();
    let list = top
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(list_field))
        .map(|(_, v)| v.clone());
    let Some(helm::Value::List(items)) = list else {
        return Ok(Vec::new());
    };
    Ok(items
        .iter()
        .map(|item| {
            let m = item.as_map()?.borrow();
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(inline_field))
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_nil())
        })
        .collect())
}

/// Reads a kustomization's `helmGlobals`, `helmCharts` and the deprecated
/// `helmChartInflationGenerator`, as kustomize's `FixKustomization` combines them.
pub(crate) fn charts_of(
    file: &Path,
    text: &str,
    m: &Map,
) -> Result<(HelmGlobals, Vec<HelmChart>), KustomizeError> {
    let mut globals = HelmGlobals::parse(file, field(m, "helmGlobals"))?;
    let mut charts = Vec::new();
    if let Some(v) = field(m, "helmCharts") {
        let Value::Seq(items) = v else {
            return Err(kerr(file, "helmCharts must be a list"));
        };
        let inline = inline_values(file, text, "helmCharts", "valuesInline")?;
        for (i, item) in items.iter().enumerate() {
            let Value::Map(e) = item else {
                return Err(kerr(file, "helmCharts entries must be mappings"));
            };
            check_fields(file, e, CHART_FIELDS)?;
            if field(e, "valuesInline").is_some_and(|v| !matches!(v, Value::Map(_))) {
                return Err(kerr(file, "helmCharts valuesInline must be a mapping"));
            }
            bool_field(file, e, "debug")?;
            charts.push(HelmChart {
                name: string_field(file, e, "name")?,
                version: string_field(file, e, "version")?,
                repo: string_field(file, e, "repo")?,
                release_name: string_field(file, e, "releaseName")?,
                namespace: string_field(file, e, "namespace")?,
                additional_values_files: strings_field(file, e, "additionalValuesFiles")?,
                values_file: string_field(file, e, "valuesFile")?,
                values_inline: inline.get(i).cloned().flatten(),
                values_merge: Some(string_field(file, e, "valuesMerge")?).filter(|s| !s.is_empty()),
                include_crds: bool_field(file, e, "includeCRDs")?,
                skip_hooks: bool_field(file, e, "skipHooks")?,
                api_versions: strings_field(file, e, "apiVersions")?,
                kube_version: string_field(file, e, "kubeVersion")?,
                name_template: string_field(file, e, "nameTemplate")?,
                skip_tests: bool_field(file, e, "skipTests")?,
            });
        }
    }
    if let Some(v) = field(m, "helmChartInflationGenerator") {
        let Value::Seq(items) = v else {
            return Err(kerr(file, "helmChartInflationGenerator must be a list"));
        };
        let inline = inline_values(file, text, "helmChartInflationGenerator", "valuesLocal")?;
        let mut legacy_home = None;
        for (i, item) in items.iter().enumerate() {
            let Value::Map(e) = item else {
                return Err(kerr(
                    file,
                    "helmChartInflationGenerator entries must be mappings",
                ));
            };
            check_fields(file, e, LEGACY_FIELDS)?;
            let home = string_field(file, e, "chartHome")?;
            if !home.is_empty() {
                legacy_home = Some(home);
            }
            charts.push(HelmChart {
                name: string_field(file, e, "chartName")?,
                version: string_field(file, e, "chartVersion")?,
                repo: string_field(file, e, "chartRepoUrl")?,
                values_file: string_field(file, e, "values")?,
                values_inline: inline.get(i).cloned().flatten(),
                values_merge: Some(string_field(file, e, "valuesMerge")?).filter(|s| !s.is_empty()),
                release_name: string_field(file, e, "releaseName")?,
                ..HelmChart::default()
            });
        }
        if globals.chart_home.is_none() {
            globals.chart_home = legacy_home;
        }
    }
    Ok((globals, charts))
}

fn gen_err(chart: &HelmChart, message: impl Into<String>) -> KustomizeError {
    KustomizeError::Generator {
        name: chart.name.clone(),
        message: message.into(),
    }
}

/// Helm's `ValidateReleaseName`.
fn valid_release_name(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_RELEASE_NAME {
        return false;
    }
    name.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    })
}

/// `chartutil.ParseKubeVersion`: `1.30` and `v1.30` both mean `v1.30.0`.
fn parse_kube_version(v: &str) -> Option<String> {
    let s = v.strip_prefix('v').unwrap_or(v);
    let end = s.find(['-', '+']).unwrap_or(s.len());
    let (core, rest) = s.split_at(end);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let mut nums = [0u64; 3];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        nums[i] = p.parse().ok()?;
    }
    Some(format!("v{}.{}.{}{rest}", nums[0], nums[1], nums[2]))
}

/// `helm template --name-template`: the template rendered with no data.
fn render_name_template(chart: &HelmChart) -> Result<String, KustomizeError> {
    use helm::template::exec::{Exec, Limits};
    use helm::template::parse::{Set, parse};
    let funcs = helm::funcs::func_map();
    let parsed = parse("name-template", &chart.name_template, &|f| {
        funcs.contains_key(f)
    })
    .map_err(|e| gen_err(chart, e.to_string()))?;
    let mut set = Set::default();
    set.add(parsed);
    let mut exec = Exec::new(&set, &funcs, Limits::default());
    exec.execute("name-template", helm::Value::Nil)
        .map_err(|e| gen_err(chart, e.to_string()))
}

/// kyaml's `merge2.Merge(src, dest)` over the values, then the JSON round trip kustomize
/// makes when it writes the merged values file for helm.
fn merge_values(
    file_text: &str,
    file_path: &Path,
    inline: &helm::Value,
    how: ValuesMerge,
) -> Result<helm::Value, KustomizeError> {
    let docs = crate::yaml::parse_stream(file_text).map_err(|source| KustomizeError::Yaml {
        path: file_path.to_path_buf(),
        source,
    })?;
    let file_values = match docs.into_iter().next() {
        None | Some(Value::Null) => Value::Map(Map::new()),
        Some(v @ Value::Map(_)) => v,
        Some(_) => {
            return Err(KustomizeError::Resource {
                path: file_path.to_path_buf(),
                message: "could not parse merged values into map".into(),
            });
        }
    };
    let json: serde_json::Value =
        serde_json::from_str(&helm::yaml::to_json(inline)).map_err(|e| {
            KustomizeError::Resource {
                path: file_path.to_path_buf(),
                message: format!("valuesInline: {e}"),
            }
        })?;
    let inline_values = Value::from_json(&json);
    let merged = match how {
        ValuesMerge::Override => {
            let mut dest = file_values;
            super::smp::merge_object(&mut dest, &inline_values, None);
            dest
        }
        ValuesMerge::Merge => {
            let mut dest = inline_values;
            super::smp::merge_object(&mut dest, &file_values, None);
            dest
        }
        ValuesMerge::Replace => inline_values,
    };
    Ok(helm::yaml::from_serde_json(&merged.to_json()))
}

/// Reads a values file the way `helm -f` does (an empty file is an empty map).
fn helm_values(path: &Path, text: &str) -> Result<helm::Value, KustomizeError> {
    let bad = |message: String| KustomizeError::Resource {
        path: path.to_path_buf(),
        message,
    };
    match helm::yaml::parse(text) {
        Ok(helm::Value::Nil) => Ok(helm::Value::new_map()),
        Ok(v @ helm::Value::Map(_)) => Ok(v),
        Ok(_) => Err(bad(
            "error unmarshaling JSON: json: cannot unmarshal array into Go value of type map[string]interface {}"
                .into(),
        )),
        Err(e) => Err(bad(format!("failed to parse values: {e}"))),
    }
}

/// Checks that nothing in the chart directory links outside the confinement root.
fn check_chart_tree(dir: &Path, confine: &Path) -> Result<(), KustomizeError> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| KustomizeError::io(&d, e))?;
        for e in entries {
            let e = e.map_err(|e| KustomizeError::io(&d, e))?;
            let p = e.path();
            let ft = e.file_type().map_err(|e| KustomizeError::io(&p, e))?;
            if ft.is_symlink() {
                let real = super::fs::canonical(&p)?;
                if !real.starts_with(confine) {
                    return Err(KustomizeError::Security {
                        path: real,
                        root: confine.to_path_buf(),
                    });
                }
            } else if ft.is_dir() {
                stack.push(p);
            }
        }
    }
    Ok(())
}

/// Renders one chart entry into resources, as kustomize's HelmChartInflationGenerator does.
pub(crate) fn inflate(
    ldr: &Loader,
    globals: &HelmGlobals,
    chart: &HelmChart,
) -> Result<Vec<Resource>, KustomizeError> {
    if chart.name.is_empty() {
        return Err(gen_err(chart, "chart name cannot be empty"));
    }
    let how = match chart.values_merge.as_deref() {
        None | Some("override") => ValuesMerge::Override,
        Some("merge") => ValuesMerge::Merge,
        Some("replace") => ValuesMerge::Replace,
        Some(_) => {
            return Err(gen_err(
                chart,
                "valuesMerge must be one of [merge override replace]",
            ));
        }
    };
    let home = globals.chart_home.as_deref().unwrap_or("charts");
    let mut chart_home = if Path::new(home).is_absolute() {
        PathBuf::from(home)
    } else {
        ldr.dir.join(home)
    };
    if !chart.version.is_empty() && !chart.repo.is_empty() {
        chart_home = chart_home.join(format!("{}-{}", chart.name, chart.version));
    }
    let chart_home = super::fs::clean(&chart_home);
    let chart_dir = chart_home.join(&chart.name);
    if !chart_dir.is_dir() {
        if chart.repo.is_empty() {
            return Err(gen_err(
                chart,
                format!(
                    "no repo specified for pull, no chart found at '{}'",
                    chart_dir.display()
                ),
            ));
        }
        let mut url = format!("{} chart {}", chart.repo, chart.name);
        if !chart.version.is_empty() {
            url.push_str(&format!(" version {}", chart.version));
        }
        return Err(KustomizeError::Remote {
            path: chart_dir,
            url,
        });
    }
    let chart_dir = ldr.resolve(&chart_dir.to_string_lossy(), false)?;
    check_chart_tree(&chart_dir, &ldr.confine)?;

    // Values, as the temporary values file kustomize hands to `helm -f`.
    let values_file = if chart.values_file.is_empty() {
        chart_home.join(&chart.name).join("values.yaml")
    } else {
        PathBuf::from(&chart.values_file)
    };
    let (vpath, vtext) = ldr.read_text(&values_file.to_string_lossy())?;
    let mut values = match &chart.values_inline {
        Some(inline) if inline.as_map().is_some_and(|m| !m.borrow().is_empty()) => {
            merge_values(&vtext, &vpath, inline, how)?
        }
        _ => helm_values(&vpath, &vtext)?,
    };
    for f in &chart.additional_values_files {
        let (p, text) = ldr.read_text(f)?;
        let more = helm_values(&p, &text)?;
        values = helm::values::merge_maps(&values, &more);
    }

    let release_name = if !chart.release_name.is_empty() {
        if !chart.name_template.is_empty() {
            return Err(gen_err(
                chart,
                "cannot set --name-template and also specify a name",
            ));
        }
        chart.release_name.clone()
    } else if !chart.name_template.is_empty() {
        render_name_template(chart)?
    } else {
        "release-name".to_string()
    };
    if !valid_release_name(&release_name) {
        return Err(gen_err(
            chart,
            format!(
                "release name {release_name:?}: invalid release name, must match regex ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ and the length must not be longer than 53"
            ),
        ));
    }
    let kube_version = if chart.kube_version.is_empty() {
        DEFAULT_KUBE_VERSION.to_string()
    } else {
        parse_kube_version(&chart.kube_version).ok_or_else(|| {
            gen_err(
                chart,
                format!("invalid kube version '{}'", chart.kube_version),
            )
        })?
    };
    let opts = helm::RenderOptions {
        release_name,
        namespace: if chart.namespace.is_empty() {
            "default".into()
        } else {
            chart.namespace.clone()
        },
        kube_version,
        api_versions: chart.api_versions.clone(),
        include_crds: chart.include_crds,
        skip_tests: chart.skip_tests,
        values,
        ..helm::RenderOptions::default()
    };
    let mut rendered =
        helm::template(&chart_dir, &opts).map_err(|source| KustomizeError::Helm {
            chart: chart_dir.clone(),
            source,
        })?;
    if chart.skip_hooks {
        rendered.manifests.retain(|m| !m.hook);
    }
    let text = rendered.to_helm_output();
    super::engine::read_resources(&chart_dir, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_names_follow_helms_rule() {
        assert!(valid_release_name("web"));
        assert!(valid_release_name("a.b-c.d1"));
        assert!(!valid_release_name("Bad_Name"));
        assert!(!valid_release_name("-x"));
        assert!(!valid_release_name("x."));
        assert!(!valid_release_name(&"a".repeat(54)));
    }

    #[test]
    fn kube_versions_are_completed() {
        assert_eq!(parse_kube_version("1.30").as_deref(), Some("v1.30.0"));
        assert_eq!(parse_kube_version("v1.29.3").as_deref(), Some("v1.29.3"));
        assert_eq!(
            parse_kube_version("v1.31.0-rc.1").as_deref(),
            Some("v1.31.0-rc.1")
        );
        assert_eq!(parse_kube_version("one"), None);
    }
}
