//! `vars` (`$(NAME)` references) and `replacements`.

use super::KustomizeError;
use super::fieldspec::{FieldSpec, visit_field};
use super::resource::{Gvk, Resource};
use crate::yaml::{Map, Value};

/// A declared var.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Var {
    pub name: String,
    pub kind: String,
    pub group: String,
    pub version: String,
    pub obj_name: String,
    pub namespace: String,
    pub field_path: String,
}

impl Var {
    pub fn from_value(v: &Value) -> Result<Var, String> {
        let m = v.as_map().ok_or("var must be a mapping")?;
        let name = m
            .get("name")
            .and_then(Value::scalar_text)
            .ok_or("var without name")?;
        let obj = m
            .get("objref")
            .and_then(Value::as_map)
            .cloned()
            .unwrap_or_default();
        let s = |k: &str| obj.get(k).and_then(Value::scalar_text).unwrap_or_default();
        let mut group = s("group");
        let mut version = s("version");
        if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
            let g = Gvk::from_api_version(av, "");
            group = g.group;
            version = g.version;
        }
        let field_path = m
            .get("fieldref")
            .and_then(|f| f.get("fieldpath").or(f.get("fieldPath")))
            .and_then(Value::scalar_text)
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| "metadata.name".into());
        Ok(Var {
            name,
            kind: s("kind"),
            group,
            version,
            obj_name: s("name"),
            namespace: s("namespace"),
            field_path,
        })
    }
}

/// Splits a kustomize field path (`a.b.[name=x].c`, `a.b[0]`) into segments.
pub(crate) fn split_field_path(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for c in p.chars() {
        match c {
            '[' => {
                if depth == 0 && !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                depth += 1;
                cur.push(c);
            }
            ']' => {
                depth -= 1;
                cur.push(c);
                if depth == 0 {
                    out.push(std::mem::take(&mut cur));
                }
            }
            '.' if depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out.into_iter()
        .map(|s| {
            if s.starts_with('[') && s.ends_with(']') && !s.contains('=') {
                s[1..s.len() - 1].to_string()
            } else {
                s
            }
        })
        .collect()
}

fn seg_match(seg: &str) -> Option<(&str, &str)> {
    let inner = seg.strip_prefix('[')?.strip_suffix(']')?;
    inner.split_once('=')
}

/// Reads the value at a field path.
pub(crate) fn get_field<'a>(v: &'a Value, segs: &[String]) -> Option<&'a Value> {
    let Some((seg, rest)) = segs.split_first() else {
        return Some(v);
    };
    match v {
        Value::Map(m) => get_field(m.get(seg.as_str())?, rest),
        Value::Seq(s) => {
            if let Some((k, val)) = seg_match(seg) {
                let e = s
                    .iter()
                    .find(|e| e.get(k).and_then(Value::scalar_text).as_deref() == Some(val))?;
                get_field(e, rest)
            } else {
                get_field(s.get(seg.parse::<usize>().ok()?)?, rest)
            }
        }
        _ => None,
    }
}

/// Visits every value at a field path (with `*` and `[k=v]` matches), creating it if asked.
fn set_fields(
    v: &mut Value,
    segs: &[String],
    create: bool,
    f: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<usize, String> {
    let Some((seg, rest)) = segs.split_first() else {
        f(v)?;
        return Ok(1);
    };
    match v {
        Value::Map(m) => {
            if seg == "*" {
                let mut n = 0;
                for c in m.values_mut() {
                    n += set_fields(c, rest, create, f)?;
                }
                return Ok(n);
            }
            if !m.contains_key(seg.as_str()) || m.get(seg.as_str()).is_some_and(Value::is_null) {
                if !create {
                    return Ok(0);
                }
                let child = if rest.is_empty() {
                    Value::Null
                } else if seg_match(&rest[0]).is_some() || rest[0].parse::<usize>().is_ok() {
                    Value::Seq(Vec::new())
                } else {
                    Value::Map(Map::new())
                };
                m.insert(seg.clone(), child);
            }
            match m.get_mut(seg.as_str()) {
                Some(c) => set_fields(c, rest, create, f),
                None => Ok(0),
            }
        }
        Value::Seq(s) => {
            if seg == "*" {
                let mut n = 0;
                for c in s.iter_mut() {
                    n += set_fields(c, rest, create, f)?;
                }
                return Ok(n);
            }
            if let Some((k, val)) = seg_match(seg) {
                let mut n = 0;
                for e in s.iter_mut() {
                    if e.get(k).and_then(Value::scalar_text).as_deref() == Some(val) {
                        n += set_fields(e, rest, create, f)?;
                    }
                }
                if n == 0 && create {
                    let mut m = Map::new();
                    m.insert(k.to_string(), Value::Str(val.to_string()));
                    s.push(Value::Map(m));
                    if let Some(e) = s.last_mut() {
                        n += set_fields(e, rest, create, f)?;
                    }
                }
                return Ok(n);
            }
            match seg.parse::<usize>() {
                Ok(i) => match s.get_mut(i) {
                    Some(e) => set_fields(e, rest, create, f),
                    None => Ok(0),
                },
                Err(_) => Ok(0),
            }
        }
        _ => Ok(0),
    }
}

/// Binds a newly declared var to the one object it names (kustomize's `MergeVars`).
pub(crate) fn bind_var(resources: &mut [Resource], v: &Var) -> Result<(), KustomizeError> {
    let matched: Vec<usize> = resources
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            let g = r.gvk();
            g.kind == v.kind
                && (v.group.is_empty() || g.group == v.group)
                && (v.version.is_empty() || g.version == v.version)
                && r.all_names().any(|(n, ns)| {
                    n == v.obj_name
                        && (v.namespace.is_empty()
                            || super::resource::effective_ns(&g, ns)
                                == super::resource::effective_ns(&g, &v.namespace))
                })
        })
        .map(|(i, _)| i)
        .collect();
    if matched.len() > 1 {
        return Err(KustomizeError::transform(
            "vars",
            format!(
                "found {} resId matches for var {} (unable to disambiguate)",
                matched.len(),
                v.name
            ),
        ));
    }
    if let Some(i) = matched.first() {
        resources[*i].ref_vars.push(v.name.clone());
    }
    Ok(())
}

/// Replaces `$(NAME)` in the var-reference fields of every resource.
pub(crate) fn resolve_vars(
    resources: &mut [Resource],
    vars: &[Var],
    var_refs: &[FieldSpec],
) -> Result<(), KustomizeError> {
    let mut values: Vec<(String, Value)> = Vec::new();
    for v in vars {
        let matches: Vec<&Resource> = resources
            .iter()
            .filter(|r| r.ref_vars.contains(&v.name))
            .collect();
        let r = match matches.len() {
            1 => matches[0],
            0 => {
                return Err(KustomizeError::transform(
                    "vars",
                    format!(
                        "var '{}' cannot be mapped to a field in the set of known resources",
                        v.name
                    ),
                ));
            }
            _ => {
                return Err(KustomizeError::transform(
                    "vars",
                    format!("found {} resId matches for var {}", matches.len(), v.name),
                ));
            }
        };
        let segs = split_field_path(&v.field_path);
        let val = get_field(&r.value, &segs).cloned().ok_or_else(|| {
            KustomizeError::transform(
                "vars",
                format!(
                    "field specified in var '{}' not found in corresponding resource",
                    v.name
                ),
            )
        })?;
        values.push((v.name.clone(), val));
    }
    if values.is_empty() {
        return Ok(());
    }
    for r in resources.iter_mut() {
        let gvk = r.gvk();
        for fs in var_refs.iter().filter(|f| f.matches(&gvk)) {
            visit_field(&mut r.value, &fs.path, false, &mut |m, k| {
                if let Some(v) = m.get_mut(k) {
                    expand(v, &values);
                }
                Ok(())
            })
            .map_err(|e| KustomizeError::transform("vars", e))?;
        }
    }
    Ok(())
}

fn expand(v: &mut Value, values: &[(String, Value)]) {
    match v {
        Value::Str(s) => {
            for (name, val) in values {
                let pat = format!("$({name})");
                if *s == pat && !matches!(val, Value::Str(_)) {
                    *v = val.clone();
                    return;
                }
            }
            *s = expand_str(s, values);
        }
        Value::Seq(items) => items.iter_mut().for_each(|i| expand(i, values)),
        Value::Map(m) => m.values_mut().for_each(|i| expand(i, values)),
        _ => {}
    }
}

/// Kubernetes' `$(VAR)` expansion: `$$` escapes, unknown references stay as written.
fn expand_str(s: &str, values: &[(String, Value)]) -> String {
    let b: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '$' && i + 1 < b.len() {
            if b[i + 1] == '$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == '('
                && let Some(end) = b[i + 2..].iter().position(|c| *c == ')')
            {
                let name: String = b[i + 2..i + 2 + end].iter().collect();
                if let Some((_, val)) = values.iter().find(|(n, _)| *n == name) {
                    out.push_str(&val.scalar_text().unwrap_or_default());
                    i += end + 3;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// A resource selector (patch targets, replacement sources and targets).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Selector {
    pub group: Option<String>,
    pub version: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub label_selector: Option<String>,
    pub annotation_selector: Option<String>,
}

impl Selector {
    pub fn from_value(v: &Value) -> Selector {
        let Some(m) = v.as_map() else {
            return Selector::default();
        };
        let s = |k: &str| {
            m.get(k)
                .and_then(Value::scalar_text)
                .filter(|s| !s.is_empty())
        };
        let mut sel = Selector {
            group: s("group"),
            version: s("version"),
            kind: s("kind"),
            name: s("name"),
            namespace: s("namespace"),
            label_selector: s("labelSelector"),
            annotation_selector: s("annotationSelector"),
        };
        if let Some(av) = s("apiVersion") {
            let g = Gvk::from_api_version(&av, "");
            sel.group = Some(g.group).filter(|s| !s.is_empty());
            sel.version = Some(g.version);
        }
        sel
    }

    fn re_match(pat: &str, s: &str) -> bool {
        match regex::Regex::new(&format!("^(?:{pat})$")) {
            Ok(re) => re.is_match(s),
            Err(_) => pat == s,
        }
    }

    /// Like [`Selector::matches`], but a name or namespace the object had at any point
    /// counts (replacement targets).
    pub fn matches_history(&self, r: &Resource) -> bool {
        let mut plain = self.clone();
        let name = plain.name.take();
        let ns = plain.namespace.take();
        if !plain.matches(r) {
            return false;
        }
        let g = r.gvk();
        r.all_names().any(|(n, rns)| {
            name.as_ref().is_none_or(|x| Self::re_match(x, n))
                && ns.as_ref().is_none_or(|x| {
                    Self::re_match(x, &super::resource::effective_ns(&g, rns))
                        || Self::re_match(x, rns)
                })
        })
    }

    /// Whether `r` is selected (names and namespaces match current or original values).
    pub fn matches(&self, r: &Resource) -> bool {
        let g = r.gvk();
        if let Some(x) = &self.group
            && !Self::re_match(x, &g.group)
        {
            return false;
        }
        if let Some(x) = &self.version
            && !Self::re_match(x, &g.version)
        {
            return false;
        }
        if let Some(x) = &self.kind
            && !Self::re_match(x, &g.kind)
        {
            return false;
        }
        if let Some(x) = &self.name
            && !Self::re_match(x, r.org_name())
            && !Self::re_match(x, r.name())
        {
            return false;
        }
        if let Some(x) = &self.namespace {
            let eff = |ns: &str| {
                if ns.is_empty() && !g.is_cluster_scoped() {
                    "default".to_string()
                } else {
                    ns.to_string()
                }
            };
            if !Self::re_match(x, &eff(r.org_ns())) && !Self::re_match(x, &eff(r.namespace())) {
                return false;
            }
        }
        if let Some(ls) = &self.label_selector
            && !label_selector_matches(ls, r.labels())
        {
            return false;
        }
        if let Some(ls) = &self.annotation_selector
            && !label_selector_matches(ls, r.annotations())
        {
            return false;
        }
        true
    }
}

/// Kubernetes label-selector syntax: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`,
/// `a notin (x)`, comma-separated.
pub(crate) fn label_selector_matches(sel: &str, labels: Option<&Map>) -> bool {
    let get = |k: &str| labels.and_then(|m| m.get(k)).and_then(Value::scalar_text);
    let mut reqs = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in sel.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => reqs.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    reqs.push(cur);
    for req in reqs.iter().map(|r| r.trim()).filter(|r| !r.is_empty()) {
        let ok = if let Some((k, v)) = req.split_once("!=") {
            get(k.trim()).as_deref() != Some(v.trim())
        } else if let Some((k, v)) = req.split_once("==") {
            get(k.trim()).as_deref() == Some(v.trim())
        } else if let Some((k, v)) = req.split_once('=') {
            get(k.trim()).as_deref() == Some(v.trim())
        } else if let Some((k, set)) = req.split_once(" notin ") {
            let set = parse_set(set);
            get(k.trim()).is_none_or(|v| !set.contains(&v))
        } else if let Some((k, set)) = req.split_once(" in ") {
            let set = parse_set(set);
            get(k.trim()).is_some_and(|v| set.contains(&v))
        } else if let Some(k) = req.strip_prefix('!') {
            get(k.trim()).is_none()
        } else {
            get(req).is_some()
        };
        if !ok {
            return false;
        }
    }
    true
}

fn parse_set(s: &str) -> Vec<String> {
    s.trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(|x| x.trim().to_string())
        .collect()
}

fn opt_delim(v: Option<&Value>) -> (Option<String>, i64, bool) {
    let m = v.and_then(Value::as_map);
    let delim = m
        .and_then(|m| m.get("delimiter"))
        .and_then(Value::scalar_text)
        .filter(|d| !d.is_empty());
    let index = match m.and_then(|m| m.get("index")) {
        Some(Value::Int(i)) => *i,
        _ => 0,
    };
    let create = matches!(m.and_then(|m| m.get("create")), Some(Value::Bool(true)));
    (delim, index, create)
}

/// Applies one replacement (already loaded from `path:` if it had one) to `resources`.
pub(crate) fn apply_replacement(
    resources: &mut [Resource],
    rep: &Value,
) -> Result<(), KustomizeError> {
    let err = |m: String| KustomizeError::transform("replacements", m);
    let rm = rep
        .as_map()
        .ok_or_else(|| err("replacement must be a mapping".into()))?;
    let source = rm
        .get("source")
        .ok_or_else(|| err("replacement without source".into()))?;
    let sel = Selector::from_value(source);
    let sm = source.as_map().cloned().unwrap_or_default();
    let matches: Vec<usize> = resources
        .iter()
        .enumerate()
        .filter(|(_, r)| sel_exact(&sel, r))
        .map(|(i, _)| i)
        .collect();
    if matches.len() != 1 {
        return Err(err(format!(
            "expected exactly one source match for {:?}, found {}",
            sel.name.clone().or(sel.kind.clone()).unwrap_or_default(),
            matches.len()
        )));
    }
    let fp = sm
        .get("fieldPath")
        .and_then(Value::scalar_text)
        .unwrap_or_else(|| "metadata.name".into());
    let mut value = get_field(&resources[matches[0]].value, &split_field_path(&fp))
        .cloned()
        .ok_or_else(|| {
            err(format!(
                "fieldPath `{fp}` is missing for replacement source"
            ))
        })?;
    let (sdelim, sindex, _) = opt_delim(sm.get("options"));
    if let (Some(d), Some(s)) = (&sdelim, value.scalar_text()) {
        let parts: Vec<&str> = s.split(d.as_str()).collect();
        if sindex < 0 || sindex as usize >= parts.len() {
            return Err(err(format!("options.index {sindex} is out of bounds")));
        }
        value = Value::Str(parts[sindex as usize].to_string());
    }
    let targets = match rm.get("targets") {
        Some(Value::Seq(t)) => t.clone(),
        _ => Vec::new(),
    };
    for t in &targets {
        let tm = t.as_map().cloned().unwrap_or_default();
        let select = tm
            .get("select")
            .map(Selector::from_value)
            .unwrap_or_default();
        let rejects: Vec<Selector> = match tm.get("reject") {
            Some(Value::Seq(r)) => r.iter().map(Selector::from_value).collect(),
            _ => Vec::new(),
        };
        let paths: Vec<String> = match tm.get("fieldPaths") {
            Some(Value::Seq(p)) => p.iter().filter_map(Value::scalar_text).collect(),
            _ => Vec::new(),
        };
        let (delim, index, create) = opt_delim(tm.get("options"));
        for r in resources.iter_mut() {
            if !select.matches_history(r) || rejects.iter().any(|rj| reject_matches(rj, r)) {
                continue;
            }
            for p in &paths {
                let segs = split_field_path(p);
                let mut setter = |tv: &mut Value| -> Result<(), String> {
                    match &delim {
                        None => *tv = value.clone(),
                        Some(d) => {
                            let cur = tv.scalar_text().unwrap_or_default();
                            let mut parts: Vec<String> =
                                cur.split(d.as_str()).map(str::to_string).collect();
                            let newv = value.scalar_text().unwrap_or_default();
                            if index < 0 {
                                parts.insert(0, newv);
                            } else if index as usize >= parts.len() {
                                parts.push(newv);
                            } else {
                                parts[index as usize] = newv;
                            }
                            *tv = Value::Str(parts.join(d));
                        }
                    }
                    Ok(())
                };
                let n = set_fields(&mut r.value, &segs, create, &mut setter).map_err(err)?;
                if n == 0 && !create && get_field(&r.value, &segs).is_none() {
                    // kustomize skips targets without the field unless create is set.
                }
            }
        }
    }
    Ok(())
}

fn sel_exact(sel: &Selector, r: &Resource) -> bool {
    let g = r.gvk();
    sel.group.as_ref().is_none_or(|x| *x == g.group)
        && sel.version.as_ref().is_none_or(|x| *x == g.version)
        && sel.kind.as_ref().is_none_or(|x| *x == g.kind)
        && sel
            .name
            .as_ref()
            .is_none_or(|x| r.all_names().any(|(n, _)| n == x))
        && sel
            .namespace
            .as_ref()
            .is_none_or(|x| r.all_names().any(|(_, ns)| ns == x) || r.namespace() == x)
}

fn reject_matches(sel: &Selector, r: &Resource) -> bool {
    sel_exact(sel, r)
        && sel
            .label_selector
            .as_ref()
            .is_none_or(|l| label_selector_matches(l, r.labels()))
        && sel
            .annotation_selector
            .as_ref()
            .is_none_or(|l| label_selector_matches(l, r.annotations()))
}
