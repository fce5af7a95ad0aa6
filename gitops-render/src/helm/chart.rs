//! Loading a chart from a directory or a `.tgz`, the way Helm's loader does.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use super::HelmError;
use super::value::Value;
use super::yaml;

/// A chart dependency as listed in `Chart.yaml` (or `requirements.yaml`).
#[derive(Debug, Clone, Default)]
pub struct Dependency {
    /// The chart's name.
    pub name: String,
    /// The version constraint.
    pub version: String,
    /// The repository (unused offline).
    pub repository: String,
    /// Comma-separated value paths that enable it.
    pub condition: String,
    /// Tags that enable it.
    pub tags: Vec<String>,
    /// The name it is used under.
    pub alias: String,
    /// Values to import from the child.
    pub import_values: Vec<Value>,
    /// Whether it is enabled (computed).
    pub enabled: bool,
}

/// A loaded chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// `Chart.yaml` as a map with Go field names (`.Chart`).
    pub metadata: BTreeMap<String, Value>,
    /// The chart's name (possibly replaced by an alias).
    pub name: String,
    /// The chart's version.
    pub version: String,
    /// `application` or `library`.
    pub chart_type: String,
    /// The `kubeVersion` constraint.
    pub kube_version: String,
    /// Whether the chart is deprecated.
    pub deprecated: bool,
    /// The declared dependencies.
    pub dependencies: Vec<Dependency>,
    /// `values.yaml`.
    pub values: Value,
    /// `values.schema.json`, if any.
    pub schema: Option<String>,
    /// Templates: path relative to the chart (`templates/x.yaml`) and text.
    pub templates: Vec<(String, std::rc::Rc<str>)>,
    /// Every other file (including `crds/`), relative path and bytes (shared with `.Files`).
    pub files: Vec<(String, std::rc::Rc<Vec<u8>>)>,
    /// Loaded subcharts.
    pub subcharts: Vec<Chart>,
    /// The chart's path within the root chart (`parent/charts/child`), set when rendering.
    pub full_path: String,
}

impl Chart {
    /// Whether this is a library chart.
    pub fn is_library(&self) -> bool {
        self.chart_type == "library"
    }
}

/// Loads a chart from a directory or a `.tgz` archive.
pub fn load(path: &Path) -> Result<Chart, HelmError> {
    let meta = std::fs::metadata(path).map_err(|e| HelmError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    if meta.is_dir() {
        let files = read_dir_files(path)?;
        load_files(files, &path.display().to_string())
    } else {
        let data = std::fs::read(path).map_err(|e| HelmError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        load_archive(&data, &path.display().to_string())
    }
}

/// Loads a chart from the bytes of a `.tgz`.
pub fn load_archive(data: &[u8], origin: &str) -> Result<Chart, HelmError> {
    let gz = flate2::read::GzDecoder::new(data);
    let mut ar = tar::Archive::new(gz);
    let mut files = Vec::new();
    let entries = ar.entries().map_err(|e| HelmError::Chart {
        chart: origin.to_string(),
        message: format!("reading archive: {e}"),
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|e| HelmError::Chart {
            chart: origin.to_string(),
            message: format!("reading archive: {e}"),
        })?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let p = entry
            .path()
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        // Drop the top-level directory.
        let Some((_, rest)) = p.split_once('/') else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        let mut buf = Vec::new();
        entry.read_to_end(&mut buf).map_err(|e| HelmError::Chart {
            chart: origin.to_string(),
            message: format!("reading archive: {e}"),
        })?;
        files.push((rest.to_string(), buf));
    }
    load_files(files, origin)
}

fn read_dir_files(root: &Path) -> Result<Vec<(String, Vec<u8>)>, HelmError> {
    let rules = match std::fs::read_to_string(root.join(".helmignore")) {
        Ok(s) => IgnoreRules::parse(&s),
        Err(_) => IgnoreRules::default(),
    };
    let mut out = Vec::new();
    walk(root, "", &rules, &mut out)?;
    Ok(out)
}

fn walk(
    dir: &Path,
    rel: &str,
    rules: &IgnoreRules,
    out: &mut Vec<(String, Vec<u8>)>,
) -> Result<(), HelmError> {
    // Each entry's name is read once (sorting by `DirEntry::file_name` would copy it at
    // every comparison).
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| HelmError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?
        .filter_map(Result::ok)
        .map(|e| (e.file_name(), e))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, e) in entries {
        let name = name.to_string_lossy().into_owned();
        let relp = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let path = e.path();
        // The entry's type comes with the directory listing; only a symbolic link needs a
        // `stat` of its target.
        let is_dir = match e.file_type() {
            Ok(t) if !t.is_symlink() => t.is_dir(),
            _ => std::fs::metadata(&path)
                .map(|m| m.is_dir())
                .unwrap_or(false),
        };
        if rules.ignore(&relp, is_dir) {
            continue;
        }
        if is_dir {
            walk(&path, &relp, rules, out)?;
        } else {
            let data = std::fs::read(&path).map_err(|err| HelmError::Io {
                path: path.clone(),
                source: err,
            })?;
            out.push((relp, data));
        }
    }
    Ok(())
}

/// Helm's `.helmignore` rules (filepath.Match patterns, `!` negation, trailing `/`).
#[derive(Debug, Default)]
struct IgnoreRules {
    patterns: Vec<(String, bool, bool)>,
}

impl IgnoreRules {
    fn parse(s: &str) -> Self {
        let mut patterns = Vec::new();
        for line in s.lines() {
            let mut p = line.trim().to_string();
            if p.is_empty() || p.starts_with('#') || p.contains("**") {
                continue;
            }
            let negate = p.starts_with('!');
            if negate {
                p = p[1..].to_string();
            }
            let must_dir = p.ends_with('/');
            if must_dir {
                p = p.trim_end_matches('/').to_string();
            }
            patterns.push((p, negate, must_dir));
        }
        IgnoreRules { patterns }
    }

    fn ignore(&self, path: &str, is_dir: bool) -> bool {
        // Helm's default: hidden files in templates/.
        if let Some(rest) = path.strip_prefix("templates/")
            && rest.starts_with('.')
            && rest.len() > 1
        {
            return true;
        }
        for (p, negate, must_dir) in &self.patterns {
            let m = |path: &str| {
                if let Some(abs) = p.strip_prefix('/') {
                    glob_match(abs, path)
                } else if p.contains('/') {
                    glob_match(p, path)
                } else {
                    glob_match(p, path.rsplit('/').next().unwrap_or(path))
                }
            };
            if *negate {
                if *must_dir && !is_dir {
                    return true;
                }
                if !m(path) {
                    return true;
                }
                continue;
            }
            if *must_dir && !is_dir {
                continue;
            }
            if m(path) {
                return true;
            }
        }
        false
    }
}

/// Go's `filepath.Match` (`*` and `?` do not cross `/`, `[...]` classes, `\` escapes).
/// ASCII pattern and name are matched byte by byte; anything else char by char.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    if pattern.is_ascii() && name.is_ascii() {
        return match_units(pattern.as_bytes(), name.as_bytes());
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_units(&p, &n)
}

/// A unit of text `glob_match` compares: a byte of ASCII text or a char.
trait Unit: Copy + Ord {
    fn ascii(b: u8) -> Self;
}

impl Unit for u8 {
    fn ascii(b: u8) -> Self {
        b
    }
}

impl Unit for char {
    fn ascii(b: u8) -> Self {
        char::from(b)
    }
}

fn match_units<T: Unit>(p: &[T], n: &[T]) -> bool {
    let c = T::ascii;
    let Some(&first) = p.first() else {
        return n.is_empty();
    };
    if first == c(b'*') {
        let mut i = 0;
        loop {
            if match_units(&p[1..], &n[i..]) {
                return true;
            }
            if i >= n.len() || n[i] == c(b'/') {
                return false;
            }
            i += 1;
        }
    }
    if first == c(b'?') {
        return !n.is_empty() && n[0] != c(b'/') && match_units(&p[1..], &n[1..]);
    }
    if first == c(b'[') {
        if n.is_empty() || n[0] == c(b'/') {
            return false;
        }
        let Some(end) = p.iter().skip(1).position(|x| *x == c(b']')).map(|i| i + 1) else {
            return false;
        };
        let class = &p[1..end];
        let (neg, class) = match class.first() {
            Some(&x) if x == c(b'^') || x == c(b'!') => (true, &class[1..]),
            _ => (false, class),
        };
        let ch = n[0];
        let mut hit = false;
        let mut i = 0;
        while i < class.len() {
            if i + 2 < class.len() && class[i + 1] == c(b'-') {
                if class[i] <= ch && ch <= class[i + 2] {
                    hit = true;
                }
                i += 3;
            } else {
                if class[i] == ch {
                    hit = true;
                }
                i += 1;
            }
        }
        return hit != neg && match_units(&p[end + 1..], &n[1..]);
    }
    if first == c(b'\\') && p.len() > 1 {
        return !n.is_empty() && n[0] == p[1] && match_units(&p[2..], &n[1..]);
    }
    !n.is_empty() && n[0] == first && match_units(&p[1..], &n[1..])
}

fn str_field(m: &BTreeMap<String, Value>, k: &str) -> String {
    match m.get(k) {
        Some(Value::Str(s)) => s.to_string(),
        Some(Value::Nil) | None => String::new(),
        Some(other) => other.to_go_string(),
    }
}

fn parse_dependencies(v: Option<&Value>) -> Vec<Dependency> {
    let Some(Value::List(l)) = v else {
        return Vec::new();
    };
    l.iter()
        .filter_map(|d| {
            let m = d.as_map()?.borrow().clone();
            Some(Dependency {
                name: str_field(&m, "name"),
                version: str_field(&m, "version"),
                repository: str_field(&m, "repository"),
                condition: str_field(&m, "condition"),
                tags: match m.get("tags") {
                    Some(Value::List(t)) => t.iter().map(crate::helm::funcs::strval).collect(),
                    _ => Vec::new(),
                },
                alias: str_field(&m, "alias"),
                import_values: match m.get("import-values") {
                    Some(Value::List(t)) => t.to_vec(),
                    _ => Vec::new(),
                },
                enabled: true,
            })
        })
        .collect()
}

/// The bytes as text, invalid UTF-8 replaced; borrowed when they are valid (checked with the
/// fast validator first: `from_utf8_lossy` walks the text in chunks).
fn text_lossy(data: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(data) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(data),
    }
}

/// The bytes as text, invalid UTF-8 replaced; without a copy when they are valid.
pub(crate) fn into_string_lossy(data: Vec<u8>) -> String {
    String::from_utf8(data).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Builds a chart from its files (paths relative to the chart root).
pub fn load_files(files: Vec<(String, Vec<u8>)>, origin: &str) -> Result<Chart, HelmError> {
    let err = |m: String| HelmError::Chart {
        chart: origin.to_string(),
        message: m,
    };
    let mut chart_yaml: Option<Value> = None;
    let mut values = Value::new_map();
    let mut schema = None;
    let mut templates = Vec::new();
    let mut other = Vec::new();
    let mut requirements: Option<Value> = None;
    let mut sub: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    for (name, data) in files {
        match name.as_str() {
            "Chart.yaml" => {
                let text = text_lossy(&data);
                chart_yaml = Some(
                    yaml::parse(&text).map_err(|e| err(format!("cannot load Chart.yaml: {e}")))?,
                );
            }
            "values.yaml" => {
                let text = text_lossy(&data);
                values = match yaml::parse(&text)
                    .map_err(|e| err(format!("cannot load values.yaml: {e}")))?
                {
                    Value::Nil => Value::new_map(),
                    v @ Value::Map(_) => v,
                    _ => return Err(err("cannot load values.yaml: not a map".into())),
                };
            }
            "values.schema.json" => schema = Some(String::from_utf8_lossy(&data).into_owned()),
            "requirements.yaml" => {
                requirements = yaml::parse(&String::from_utf8_lossy(&data)).ok();
            }
            "requirements.lock" | "Chart.lock" => {}
            n if n.starts_with("templates/") => {
                templates.push((name.clone(), std::rc::Rc::from(into_string_lossy(data))));
            }
            n if n.starts_with("charts/") => {
                if n.ends_with(".prov") {
                    other.push((name.clone(), std::rc::Rc::new(data)));
                    continue;
                }
                let rest = &n["charts/".len()..];
                let cname = rest.split('/').next().unwrap_or(rest).to_string();
                sub.entry(cname).or_default().push((rest.to_string(), data));
            }
            _ => other.push((name, std::rc::Rc::new(data))),
        }
    }
    let Some(Value::Map(cm)) = chart_yaml else {
        return Err(err("Chart.yaml file is missing".into()));
    };
    let cm = cm.borrow().clone();
    let api_version = str_field(&cm, "apiVersion");
    if api_version.is_empty() {
        return Err(err(
            "validation: chart.metadata.apiVersion is required".into()
        ));
    }
    let name = str_field(&cm, "name");
    if name.is_empty() {
        return Err(err("validation: chart.metadata.name is required".into()));
    }
    let mut dependencies = parse_dependencies(cm.get("dependencies"));
    if api_version == "v1"
        && dependencies.is_empty()
        && let Some(r) = &requirements
    {
        dependencies = parse_dependencies(r.get("dependencies").as_ref());
    }
    let mut subcharts = Vec::new();
    for (cname, files) in sub {
        if cname.starts_with('_') || cname.starts_with('.') {
            continue;
        }
        if cname.ends_with(".tgz") {
            if let Some((_, data)) = files.iter().find(|(n, _)| *n == cname) {
                let c = load_archive(data, &format!("{origin}/charts/{cname}"))?;
                subcharts.push(c);
            }
            continue;
        }
        let trimmed: Vec<(String, Vec<u8>)> = files
            .into_iter()
            .filter_map(|(n, d)| n.split_once('/').map(|(_, r)| (r.to_string(), d)))
            .collect();
        if trimmed.is_empty() {
            continue;
        }
        let c = load_files(trimmed, &format!("{origin}/charts/{cname}"))
            .map_err(|e| err(format!("error unpacking subchart {cname} in {name}: {e}")))?;
        subcharts.push(c);
    }
    let chart_type = str_field(&cm, "type");
    let version = str_field(&cm, "version");
    let kube_version = str_field(&cm, "kubeVersion");
    let deprecated = matches!(cm.get("deprecated"), Some(Value::Bool(true)));
    let metadata = go_metadata(&cm);
    Ok(Chart {
        metadata,
        name,
        version,
        chart_type,
        kube_version,
        deprecated,
        dependencies,
        values,
        schema,
        templates,
        files: other,
        subcharts,
        full_path: String::new(),
    })
}

/// `Chart.yaml` with Go's field names, as templates see `.Chart`.
fn go_metadata(cm: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    let s = |k: &str| Value::from(str_field(cm, k));
    m.insert("Name".into(), s("name"));
    m.insert("Home".into(), s("home"));
    m.insert(
        "Sources".into(),
        cm.get("sources")
            .cloned()
            .unwrap_or(Value::from(Vec::new())),
    );
    m.insert("Version".into(), s("version"));
    m.insert("Description".into(), s("description"));
    m.insert(
        "Keywords".into(),
        cm.get("keywords")
            .cloned()
            .unwrap_or(Value::from(Vec::new())),
    );
    m.insert(
        "Maintainers".into(),
        cm.get("maintainers")
            .cloned()
            .unwrap_or(Value::from(Vec::new())),
    );
    m.insert("Icon".into(), s("icon"));
    m.insert("APIVersion".into(), s("apiVersion"));
    m.insert("Condition".into(), s("condition"));
    m.insert("Tags".into(), s("tags"));
    m.insert("AppVersion".into(), s("appVersion"));
    m.insert(
        "Deprecated".into(),
        Value::Bool(matches!(cm.get("deprecated"), Some(Value::Bool(true)))),
    );
    m.insert(
        "Annotations".into(),
        cm.get("annotations").cloned().unwrap_or(Value::Nil),
    );
    m.insert("KubeVersion".into(), s("kubeVersion"));
    m.insert(
        "Dependencies".into(),
        cm.get("dependencies")
            .cloned()
            .unwrap_or(Value::from(Vec::new())),
    );
    m.insert("Type".into(), s("type"));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_like_go() {
        assert!(glob_match("*.tgz", "a.tgz"));
        assert!(!glob_match("*.tgz", "x/a.tgz"));
        assert!(glob_match("ci/*", "ci/values.yaml"));
        assert!(glob_match("[a-c]?", "bx"));
        assert!(!glob_match("[!a-c]?", "bx"));
        assert!(glob_match("\\*x", "*x"));
        assert!(!glob_match("\\*x", "ax"));
        assert!(glob_match("é*", "éa"));
        assert!(glob_match("?", "é"));
        assert!(!glob_match("?", "a/"));
    }

    #[test]
    fn helmignore_rules() {
        let r = IgnoreRules::parse("# c\n*.swp\nci/\n");
        assert!(r.ignore("keep.swp", false));
        assert!(!r.ignore("values.yaml", false));
        assert!(r.ignore("ci", true));
        assert!(r.ignore("templates/.hidden", false));
    }
}
