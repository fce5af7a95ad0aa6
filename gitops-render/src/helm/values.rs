//! Values as Helm computes them: coalescing chart defaults with user values, globals,
//! dependency conditions/tags/aliases/import-values, and the `--set` family's parser.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::HelmError;
use super::chart::Chart;
use super::value::{Map, Value};

fn map_entries(m: &Map) -> Vec<(String, Value)> {
    m.borrow()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Helm's `mergeMaps` for `-f` files: deep merge, later wins.
pub fn merge_maps(a: &Value, b: &Value) -> Value {
    let out: BTreeMap<String, Value> = a.as_map().map(|m| m.borrow().clone()).unwrap_or_default();
    let out = Value::from(out);
    let om = out.as_map().expect("just built a map").clone();
    if let Some(bm) = b.as_map() {
        for (k, v) in map_entries(bm) {
            if let Value::Map(_) = &v {
                let existing = om.borrow().get(&k).cloned();
                if let Some(e @ Value::Map(_)) = existing {
                    om.borrow_mut().insert(k, merge_maps(&e, &v));
                    continue;
                }
            }
            om.borrow_mut().insert(k, v);
        }
    }
    out
}

/// `CoalesceValues(chart, vals)`: a copy of `vals` with the chart's defaults filled in.
pub fn coalesce_values(chart: &Chart, vals: &Value, merge: bool) -> Result<Value, HelmError> {
    let copy = match vals {
        Value::Map(_) => vals.deep_copy(),
        _ => Value::new_map(),
    };
    let m = copy.as_map().expect("copy of a map").clone();
    coalesce(chart, &m, merge)?;
    Ok(copy)
}

fn coalesce(chart: &Chart, dest: &Map, merge: bool) -> Result<(), HelmError> {
    coalesce_chart_values(chart, dest, merge);
    coalesce_deps(chart, dest, merge)
}

fn coalesce_chart_values(c: &Chart, v: &Map, merge: bool) {
    let vc = c.values.deep_copy();
    let Some(vc) = vc.as_map() else { return };
    for (key, val) in map_entries(vc) {
        let existing = v.borrow().get(&key).cloned();
        match existing {
            Some(Value::Nil) if !merge => {
                v.borrow_mut().remove(&key);
            }
            Some(Value::Map(dest)) => {
                if let Value::Map(src) = &val {
                    let merge2 = merge || c.subcharts.iter().any(|s| s.name == key);
                    coalesce_tables(&dest, src, merge2);
                }
            }
            Some(_) => {}
            None => {
                v.borrow_mut().insert(key, val);
            }
        }
    }
}

fn coalesce_deps(c: &Chart, dest: &Map, merge: bool) -> Result<(), HelmError> {
    for sub in &c.subcharts {
        let existing = dest.borrow().get(&sub.name).cloned();
        let dv = match existing {
            None => {
                let m = Value::new_map();
                dest.borrow_mut().insert(sub.name.clone(), m.clone());
                m
            }
            Some(v @ Value::Map(_)) => v,
            Some(other) => {
                return Err(HelmError::Values(format!(
                    "type mismatch on {}: %!t({}={})",
                    sub.name,
                    other.type_name(),
                    other.to_go_string()
                )));
            }
        };
        let dvmap = dv.as_map().expect("checked map").clone();
        coalesce_globals(&dvmap, dest);
        coalesce(sub, &dvmap, merge)?;
    }
    Ok(())
}

fn coalesce_globals(dest: &Map, src: &Map) {
    let dg = match dest.borrow().get("global").cloned() {
        None => Value::new_map(),
        Some(v @ Value::Map(_)) => v,
        Some(_) => return,
    };
    let sg = match src.borrow().get("global").cloned() {
        None => Value::new_map(),
        Some(v @ Value::Map(_)) => v,
        Some(_) => return,
    };
    let dgm = dg.as_map().expect("checked map").clone();
    let sgm = sg.as_map().expect("checked map").clone();
    if !Rc::ptr_eq(&dgm, &sgm) {
        for (key, val) in map_entries(&sgm) {
            if let Value::Map(vm) = &val {
                let vv = Value::from(vm.borrow().clone());
                let vvm = vv.as_map().expect("just built").clone();
                let existing = dgm.borrow().get(&key).cloned();
                match existing {
                    None => {
                        dgm.borrow_mut().insert(key, vv);
                    }
                    Some(Value::Map(destv)) => {
                        coalesce_tables(&vvm, &destv, true);
                        dgm.borrow_mut().insert(key, vv);
                    }
                    Some(_) => {}
                }
            } else if matches!(dgm.borrow().get(&key), Some(Value::Map(_))) {
                // A table stays a table.
            } else {
                dgm.borrow_mut().insert(key, val);
            }
        }
    }
    dest.borrow_mut().insert("global".into(), dg);
}

/// `coalesceTablesFullKey`: `dst` wins; nulls in `dst` delete unless merging.
pub fn coalesce_tables(dst: &Map, src: &Map, merge: bool) {
    if Rc::ptr_eq(dst, src) {
        return;
    }
    for (key, val) in map_entries(dst) {
        if val.is_nil() {
            src.borrow_mut().insert(key, Value::Nil);
        }
    }
    for (key, val) in map_entries(src) {
        let dv = dst.borrow().get(&key).cloned();
        match dv {
            Some(Value::Nil) if !merge => {
                dst.borrow_mut().remove(&key);
            }
            None => {
                dst.borrow_mut().insert(key, val);
            }
            Some(Value::Map(dm)) => {
                if let Value::Map(sm) = &val {
                    coalesce_tables(&dm, sm, merge);
                }
            }
            Some(_) => {}
        }
    }
}

/// Looks a dotted path up (`a.b.c`), like `Values.PathValue`.
pub fn path_value(v: &Value, path: &str) -> Option<Value> {
    let mut cur = v.clone();
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// Looks a table up by dotted path (`Values.Table`).
fn table(v: &Value, path: &str) -> Option<Value> {
    match path_value(v, path) {
        Some(t @ Value::Map(_)) => Some(t),
        _ => None,
    }
}

/// `ProcessDependenciesWithMerge`: enable/disable and alias subcharts, then import values.
pub fn process_dependencies(chart: &mut Chart, vals: &Value) -> Result<(), HelmError> {
    process_enabled(chart, vals, "")?;
    process_import_values(chart)
}

fn process_enabled(c: &mut Chart, v: &Value, path: &str) -> Result<(), HelmError> {
    if c.dependencies.is_empty() {
        return Ok(());
    }
    let compatible = |constraint: &str, version: &str| {
        !constraint.is_empty()
            && super::semver::constraint_matches(constraint, version).unwrap_or(false)
    };
    let mut chart_deps: Vec<Chart> = Vec::new();
    for existing in &c.subcharts {
        if !c
            .dependencies
            .iter()
            .any(|r| existing.name == r.name && compatible(&r.version, &existing.version))
        {
            chart_deps.push(existing.clone());
        }
    }
    for req in c.dependencies.iter_mut() {
        if let Some(found) = c
            .subcharts
            .iter()
            .find(|s| s.name == req.name && compatible(&req.version, &s.version))
        {
            let mut copy = found.clone();
            if !req.alias.is_empty() {
                copy.name = req.alias.clone();
                copy.metadata
                    .insert("Name".into(), Value::from(req.alias.as_str()));
            }
            chart_deps.push(copy);
        }
        if !req.alias.is_empty() {
            req.name = req.alias.clone();
        }
    }
    c.subcharts = chart_deps;
    for r in c.dependencies.iter_mut() {
        r.enabled = true;
    }
    let cvals = coalesce_values(c, v, false)?;
    // Tags.
    if let Some(tags) = table(&cvals, "tags") {
        for r in c.dependencies.iter_mut() {
            let (mut has_true, mut has_false) = (false, false);
            for k in &r.tags {
                match tags.get(k) {
                    Some(Value::Bool(true)) => has_true = true,
                    Some(Value::Bool(false)) => has_false = true,
                    _ => {}
                }
            }
            if !has_true && has_false {
                r.enabled = false;
            } else if has_true || !has_false {
                r.enabled = true;
            }
        }
    }
    // Conditions.
    for r in c.dependencies.iter_mut() {
        for cond in r.condition.trim().split(',') {
            let cond = cond.trim();
            if cond.is_empty() {
                continue;
            }
            if let Some(Value::Bool(b)) = path_value(&cvals, &format!("{path}{cond}")) {
                r.enabled = b;
                break;
            }
        }
    }
    let removed: Vec<String> = c
        .dependencies
        .iter()
        .filter(|r| !r.enabled)
        .map(|r| r.name.clone())
        .collect();
    c.subcharts.retain(|s| !removed.contains(&s.name));
    c.dependencies.retain(|r| !removed.contains(&r.name));
    for t in c.subcharts.iter_mut() {
        let sub_path = format!("{path}{}.", t.name);
        process_enabled(t, &cvals, &sub_path)?;
    }
    Ok(())
}

/// Builds `{a: {b: data}}` from `a.b`.
fn path_to_map(path: &str, data: Value) -> Value {
    if path == "." {
        return data;
    }
    let mut cur = data;
    for part in path.split('.').collect::<Vec<_>>().into_iter().rev() {
        let mut m = BTreeMap::new();
        m.insert(part.to_string(), cur);
        cur = Value::from(m);
    }
    cur
}

fn process_import_values(c: &mut Chart) -> Result<(), HelmError> {
    for sub in c.subcharts.iter_mut() {
        process_import_values(sub)?;
    }
    if c.dependencies.is_empty() {
        return Ok(());
    }
    let has_imports = c.dependencies.iter().any(|d| !d.import_values.is_empty());
    let cvals = coalesce_values(c, &Value::new_map(), true)?;
    let b = Value::new_map();
    let bm = b.as_map().expect("map").clone();
    for r in &c.dependencies {
        for iv in &r.import_values {
            let (child, parent) = match iv {
                Value::Map(m) => {
                    let m = m.borrow();
                    (
                        m.get("child").map(super::funcs::strval).unwrap_or_default(),
                        m.get("parent")
                            .map(super::funcs::strval)
                            .unwrap_or_default(),
                    )
                }
                Value::Str(s) => (format!("exports.{s}"), ".".to_string()),
                _ => continue,
            };
            let Some(vv) = table(&cvals, &format!("{}.{}", r.name, child)) else {
                tracing::warn!(chart = %c.name, dependency = %r.name, "import-values: missing table {child}");
                continue;
            };
            let src = path_to_map(&parent, vv.deep_copy());
            if let Some(sm) = src.as_map() {
                coalesce_tables(&bm, sm, true);
            }
        }
    }
    if has_imports {
        let merged = cvals.deep_copy();
        coalesce_tables(merged.as_map().expect("map"), &bm, true);
        c.values = merged;
    } else {
        c.values = cvals;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// --set parsing (Helm's strvals)

/// How a `--set`-family value is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// `--set`: numbers, booleans and null are typed.
    Typed,
    /// `--set-string`: everything is a string.
    String,
    /// `--set-json`: the value is JSON.
    Json,
    /// `--set-literal` and `--set-file`: the rest of the argument is one string, verbatim.
    Literal,
}

/// Parses one `--set` argument into `base`.
pub fn parse_set(s: &str, base: &Value, kind: SetKind) -> Result<(), HelmError> {
    let mut p = SetParser {
        chars: s.chars().collect(),
        i: 0,
        kind,
        orig: s.to_string(),
    };
    let Some(m) = base.as_map().cloned() else {
        return Err(HelmError::Values(
            "--set needs a map of values to set into".into(),
        ));
    };
    p.parse_into(&m)
}

struct SetParser {
    chars: Vec<char>,
    i: usize,
    kind: SetKind,
    orig: String,
}

fn typed_val(v: &str, string: bool) -> Value {
    if string {
        return Value::from(v);
    }
    if v.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if v.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    if v.eq_ignore_ascii_case("null") {
        return Value::Nil;
    }
    if v == "0" {
        return Value::Int(0);
    }
    if !v.is_empty()
        && !v.starts_with('0')
        && let Ok(i) = v.parse::<i64>()
    {
        return Value::Int(i);
    }
    Value::from(v)
}

impl SetParser {
    fn err(&self, m: &str) -> HelmError {
        HelmError::Values(format!("failed parsing --set data: {m} in {:?}", self.orig))
    }

    /// Reads until one of `stops`, handling `\` escapes. Returns the text and the stop char.
    fn run_until(&mut self, stops: &[char]) -> (String, Option<char>) {
        let mut out = String::new();
        while self.i < self.chars.len() {
            let c = self.chars[self.i];
            self.i += 1;
            if c == '\\' && self.i < self.chars.len() {
                out.push(self.chars[self.i]);
                self.i += 1;
                continue;
            }
            if stops.contains(&c) {
                return (out, Some(c));
            }
            out.push(c);
        }
        (out, None)
    }

    fn parse_into(&mut self, data: &Map) -> Result<(), HelmError> {
        while self.i < self.chars.len() {
            self.key(data)?;
        }
        Ok(())
    }

    fn value_text(&mut self) -> String {
        if self.kind == SetKind::Literal {
            let s: String = self.chars[self.i.min(self.chars.len())..].iter().collect();
            self.i = self.chars.len();
            return s;
        }
        if self.kind == SetKind::Json {
            // JSON runs to the end (or a top-level comma).
            let start = self.i;
            let mut depth = 0i32;
            let mut in_str = false;
            while self.i < self.chars.len() {
                let c = self.chars[self.i];
                if in_str {
                    if c == '\\' {
                        self.i += 1;
                    } else if c == '"' {
                        in_str = false;
                    }
                } else {
                    match c {
                        '"' => in_str = true,
                        '{' | '[' => depth += 1,
                        '}' | ']' => depth -= 1,
                        ',' if depth == 0 => break,
                        _ => {}
                    }
                }
                self.i += 1;
            }
            let s: String = self.chars[start..self.i.min(self.chars.len())]
                .iter()
                .collect();
            if self.i < self.chars.len() {
                self.i += 1;
            }
            return s;
        }
        self.run_until(&[',']).0
    }

    fn make_value(&self, text: &str) -> Result<Value, HelmError> {
        match self.kind {
            SetKind::Json => super::yaml::parse_json(text).map_err(|e| self.err(&e.0)),
            SetKind::String | SetKind::Literal => Ok(typed_val(text, true)),
            SetKind::Typed => Ok(typed_val(text, false)),
        }
    }

    fn key(&mut self, data: &Map) -> Result<(), HelmError> {
        let (k, stop) = self.run_until(&['=', '[', ',', '.']);
        match stop {
            None => {
                if k.is_empty() {
                    return Ok(());
                }
                Err(self.err(&format!("key {k:?} has no value")))
            }
            Some(',') => {
                // "a,b=c": a key with no value.
                Err(self.err(&format!("key {k:?} has no value (cannot end with ,)")))
            }
            Some('=') => {
                // Lists in braces: a={x,y}
                if !matches!(self.kind, SetKind::Json | SetKind::Literal)
                    && self.chars.get(self.i) == Some(&'{')
                {
                    self.i += 1;
                    let (inner, _) = self.run_until(&['}']);
                    let items: Vec<Value> = inner
                        .split(',')
                        .map(|x| typed_val(x, self.kind == SetKind::String))
                        .collect();
                    if self.chars.get(self.i) == Some(&',') {
                        self.i += 1;
                    }
                    data.borrow_mut().insert(k, Value::from(items));
                    return Ok(());
                }
                let text = self.value_text();
                let v = self.make_value(&text)?;
                if v.is_nil() && self.kind == SetKind::Typed {
                    data.borrow_mut().insert(k, Value::Nil);
                } else {
                    data.borrow_mut().insert(k, v);
                }
                Ok(())
            }
            Some('.') => {
                let existing = data.borrow().get(&k).cloned();
                let inner = match existing {
                    Some(v @ Value::Map(_)) => v,
                    _ => Value::new_map(),
                };
                data.borrow_mut().insert(k, inner.clone());
                let im = inner.as_map().expect("map").clone();
                self.key(&im)
            }
            Some('[') => {
                let (idx, _) = self.run_until(&[']']);
                let idx: usize = idx
                    .parse()
                    .map_err(|_| self.err("negative or invalid list index"))?;
                let existing = data.borrow().get(&k).cloned();
                let mut list = match existing {
                    Some(Value::List(l)) => l.to_vec(),
                    _ => Vec::new(),
                };
                while list.len() <= idx {
                    list.push(Value::Nil);
                }
                let v = self.list_item(&list[idx])?;
                list[idx] = v;
                data.borrow_mut().insert(k, Value::from(list));
                Ok(())
            }
            Some(_) => Ok(()),
        }
    }

    /// After `name[i]`: `=value`, `.key...` or `[j]...`.
    fn list_item(&mut self, current: &Value) -> Result<Value, HelmError> {
        match self.chars.get(self.i).copied() {
            Some('=') => {
                self.i += 1;
                let text = self.value_text();
                self.make_value(&text)
            }
            Some('.') => {
                self.i += 1;
                let inner = match current {
                    v @ Value::Map(_) => v.clone(),
                    _ => Value::new_map(),
                };
                let im = inner.as_map().expect("map").clone();
                self.key(&im)?;
                Ok(inner)
            }
            Some('[') => {
                self.i += 1;
                let (idx, _) = self.run_until(&[']']);
                let idx: usize = idx
                    .parse()
                    .map_err(|_| self.err("negative or invalid list index"))?;
                let mut list = match current {
                    Value::List(l) => l.to_vec(),
                    _ => Vec::new(),
                };
                while list.len() <= idx {
                    list.push(Value::Nil);
                }
                let v = self.list_item(&list[idx])?;
                list[idx] = v;
                Ok(Value::from(list))
            }
            _ => Err(self.err("list index must be followed by = . or [")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_parsing() {
        let base = Value::new_map();
        parse_set(
            "a.b=1,c=true,d=x,e[1]=y,f={p,q},g=007",
            &base,
            SetKind::Typed,
        )
        .expect("parse");
        assert_eq!(
            crate::helm::yaml::to_json(&base),
            r#"{"a":{"b":1},"c":true,"d":"x","e":[null,"y"],"f":["p","q"],"g":"007"}"#
        );
        let base = Value::new_map();
        parse_set("a=1", &base, SetKind::String).expect("parse");
        assert_eq!(crate::helm::yaml::to_json(&base), r#"{"a":"1"}"#);
        let base = Value::new_map();
        parse_set(r#"a={"x":[1,2]}"#, &base, SetKind::Json).expect("parse");
        assert_eq!(crate::helm::yaml::to_json(&base), r#"{"a":{"x":[1,2]}}"#);
        let base = Value::new_map();
        parse_set("f.g={not,a,list}\n", &base, SetKind::Literal).expect("parse");
        assert_eq!(
            crate::helm::yaml::to_json(&base),
            r#"{"f":{"g":"{not,a,list}\n"}}"#
        );
    }
}
