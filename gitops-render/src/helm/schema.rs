//! `values.schema.json` validation with gojsonschema's messages, as Helm 3.17 reports them.
//!
//! Covers the keywords charts use: `type`, `enum`, `const`, `required`, `properties`,
//! `patternProperties`, `additionalProperties`, `items`, `minItems`/`maxItems`,
//! `minimum`/`maximum`/`exclusiveMinimum`/`exclusiveMaximum`, `minLength`/`maxLength`,
//! `pattern`, `allOf`/`anyOf`/`oneOf`/`not`, `if`/`then`/`else` and local `$ref`s.

use serde_json::Value as J;

use super::HelmError;
use super::chart::Chart;
use super::value::Value;
use super::yaml;

/// Validates the chart's (and its subcharts') values against their schemas.
pub fn validate_chart(chart: &Chart, values: &Value) -> Result<(), HelmError> {
    let mut sb = String::new();
    validate_rec(chart, values, &mut sb)?;
    if sb.is_empty() {
        Ok(())
    } else {
        Err(HelmError::Schema(format!(
            "values don't meet the specifications of the schema(s) in the following chart(s):\n{sb}"
        )))
    }
}

fn validate_rec(chart: &Chart, values: &Value, sb: &mut String) -> Result<(), HelmError> {
    if let Some(schema) = &chart.schema {
        let s: J = serde_json::from_str(schema).map_err(|e| HelmError::Chart {
            chart: chart.name.clone(),
            message: format!("values.schema.json: {e}"),
        })?;
        let inst: J = serde_json::from_str(&yaml::to_json(values)).unwrap_or(J::Null);
        let mut errs = Vec::new();
        check(&s, &s, &inst, "(root)", &mut errs);
        if !errs.is_empty() {
            sb.push_str(&format!("{}:\n", chart.name));
            for e in errs {
                sb.push_str(&format!("- {e}\n"));
            }
        }
    }
    for sub in &chart.subcharts {
        let sv = values.get(&sub.name).unwrap_or_else(Value::new_map);
        validate_rec(sub, &sv, sb)?;
    }
    Ok(())
}

fn type_of(v: &J) -> &'static str {
    match v {
        J::Null => "null",
        J::Bool(_) => "boolean",
        J::Number(n) => {
            if n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) {
                "integer"
            } else {
                "number"
            }
        }
        J::String(_) => "string",
        J::Array(_) => "array",
        J::Object(_) => "object",
    }
}

fn child(ctx: &str, k: &str) -> String {
    if ctx == "(root)" {
        k.to_string()
    } else {
        format!("{ctx}.{k}")
    }
}

fn resolve<'a>(root: &'a J, r: &str) -> Option<&'a J> {
    let p = r.strip_prefix('#')?;
    if p.is_empty() {
        return Some(root);
    }
    root.pointer(p)
}

fn num_str(n: &J) -> String {
    match n.as_f64() {
        Some(f) => crate::helm::value::format_float_g(f),
        None => n.to_string(),
    }
}

fn check(root: &J, s: &J, v: &J, ctx: &str, errs: &mut Vec<String>) {
    let J::Object(s) = s else {
        if s == &J::Bool(false) {
            errs.push(format!("{ctx}: False always fails validation"));
        }
        return;
    };
    if let Some(J::String(r)) = s.get("$ref") {
        if let Some(t) = resolve(root, r) {
            check(root, t, v, ctx, errs);
        }
        return;
    }
    if let Some(t) = s.get("type") {
        let given = type_of(v);
        let ok_type = |t: &str| t == given || (t == "number" && given == "integer");
        let (ok, expected) = match t {
            J::String(t) => (ok_type(t), t.clone()),
            J::Array(ts) => {
                let names: Vec<String> = ts
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect();
                (names.iter().any(|n| ok_type(n)), names.join(", "))
            }
            _ => (true, String::new()),
        };
        if !ok {
            errs.push(format!(
                "{ctx}: Invalid type. Expected: {expected}, given: {given}"
            ));
            return;
        }
    }
    if let Some(J::Array(allowed)) = s.get("enum")
        && !allowed.iter().any(|a| json_eq(a, v))
    {
        let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        errs.push(format!(
            "{ctx}: {} must be one of the following: {}",
            field_name(ctx),
            list.join(", ")
        ));
    }
    if let Some(c) = s.get("const")
        && !json_eq(c, v)
    {
        errs.push(format!("{ctx}: {} does not match: {c}", field_name(ctx)));
    }
    match v {
        J::Object(o) => {
            if let Some(J::Array(req)) = s.get("required") {
                for r in req.iter().filter_map(|r| r.as_str()) {
                    if !o.contains_key(r) {
                        errs.push(format!("{ctx}: {r} is required"));
                    }
                }
            }
            let props = s.get("properties").and_then(|p| p.as_object());
            let pattern_props = s.get("patternProperties").and_then(|p| p.as_object());
            // gojsonschema walks the schema's properties in document order, then the rest.
            if let Some(props) = props {
                for (k, ps) in props {
                    if let Some(val) = o.get(k) {
                        check(root, ps, val, &child(ctx, k), errs);
                    }
                }
            }
            for (k, val) in o {
                let mut matched = props.is_some_and(|p| p.contains_key(k));
                if let Some(pp) = pattern_props {
                    for (pat, ps) in pp {
                        if super::funcs::cached_regex(pat)
                            .map(|r| r.is_match(k))
                            .unwrap_or(false)
                        {
                            matched = true;
                            check(root, ps, val, &child(ctx, k), errs);
                        }
                    }
                }
                if !matched {
                    match s.get("additionalProperties") {
                        Some(J::Bool(false)) => {
                            errs.push(format!("{ctx}: Additional property {k} is not allowed"))
                        }
                        Some(ap @ J::Object(_)) => check(root, ap, val, &child(ctx, k), errs),
                        _ => {}
                    }
                }
            }
        }
        J::Array(items) => {
            if let Some(is) = s.get("items") {
                match is {
                    J::Array(tuple) => {
                        for (i, (it, sch)) in items.iter().zip(tuple.iter()).enumerate() {
                            check(root, sch, it, &child(ctx, &i.to_string()), errs);
                        }
                    }
                    sch => {
                        for (i, it) in items.iter().enumerate() {
                            check(root, sch, it, &child(ctx, &i.to_string()), errs);
                        }
                    }
                }
            }
            if let Some(n) = s.get("minItems").and_then(|n| n.as_u64())
                && (items.len() as u64) < n
            {
                errs.push(format!("{ctx}: Array must have at least {n} items"));
            }
            if let Some(n) = s.get("maxItems").and_then(|n| n.as_u64())
                && (items.len() as u64) > n
            {
                errs.push(format!("{ctx}: Array must have at most {n} items"));
            }
        }
        J::String(st) => {
            let len = st.chars().count() as u64;
            if let Some(n) = s.get("minLength").and_then(|n| n.as_u64())
                && len < n
            {
                errs.push(format!(
                    "{ctx}: String length must be greater than or equal to {n}"
                ));
            }
            if let Some(n) = s.get("maxLength").and_then(|n| n.as_u64())
                && len > n
            {
                errs.push(format!(
                    "{ctx}: String length must be less than or equal to {n}"
                ));
            }
            if let Some(J::String(p)) = s.get("pattern")
                && let Some(re) = super::funcs::cached_regex(p)
                && !re.is_match(st)
            {
                errs.push(format!("{ctx}: Does not match pattern '{p}'"));
            }
        }
        J::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(m) = s.get("minimum")
                && x < m.as_f64().unwrap_or(f64::MIN)
            {
                errs.push(format!(
                    "{ctx}: Must be greater than or equal to {}",
                    num_str(m)
                ));
            }
            if let Some(m) = s.get("maximum")
                && x > m.as_f64().unwrap_or(f64::MAX)
            {
                errs.push(format!(
                    "{ctx}: Must be less than or equal to {}",
                    num_str(m)
                ));
            }
            if let Some(m) = s.get("exclusiveMinimum").filter(|m| m.is_number())
                && x <= m.as_f64().unwrap_or(f64::MIN)
            {
                errs.push(format!("{ctx}: Must be greater than {}", num_str(m)));
            }
            if let Some(m) = s.get("exclusiveMaximum").filter(|m| m.is_number())
                && x >= m.as_f64().unwrap_or(f64::MAX)
            {
                errs.push(format!("{ctx}: Must be less than {}", num_str(m)));
            }
        }
        _ => {}
    }
    if let Some(J::Array(all)) = s.get("allOf") {
        for sub in all {
            check(root, sub, v, ctx, errs);
        }
    }
    if let Some(J::Array(any)) = s.get("anyOf") {
        let ok = any.iter().any(|sub| {
            let mut e = Vec::new();
            check(root, sub, v, ctx, &mut e);
            e.is_empty()
        });
        if !ok {
            errs.push(format!("{ctx}: Must validate at least one schema (anyOf)"));
        }
    }
    if let Some(J::Array(one)) = s.get("oneOf") {
        let n = one
            .iter()
            .filter(|sub| {
                let mut e = Vec::new();
                check(root, sub, v, ctx, &mut e);
                e.is_empty()
            })
            .count();
        if n != 1 {
            errs.push(format!(
                "{ctx}: Must validate one and only one schema (oneOf)"
            ));
        }
    }
    if let Some(not) = s.get("not") {
        let mut e = Vec::new();
        check(root, not, v, ctx, &mut e);
        if e.is_empty() {
            errs.push(format!("{ctx}: Must not validate the schema (not)"));
        }
    }
    if let Some(cond) = s.get("if") {
        let mut e = Vec::new();
        check(root, cond, v, ctx, &mut e);
        let branch = if e.is_empty() {
            s.get("then")
        } else {
            s.get("else")
        };
        if let Some(b) = branch {
            check(root, b, v, ctx, errs);
        }
    }
}

fn field_name(ctx: &str) -> &str {
    ctx
}

fn json_eq(a: &J, b: &J) -> bool {
    match (a, b) {
        (J::Number(x), J::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}
