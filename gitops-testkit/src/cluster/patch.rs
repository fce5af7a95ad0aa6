//! JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.

use serde_json::{Map, Value};

use super::shape::{ListType, Shape};

/// Applies an RFC 7386 merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Applies an RFC 6902 JSON patch.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let p: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| format!("invalid JSON patch: {e}"))?;
    json_patch::patch(target, &p).map_err(|e| e.to_string())
}

/// Applies a strategic merge patch to a built-in object.
pub fn strategic_merge_patch(
    target: &Value,
    patch: &Value,
    shape: &Shape<'_>,
) -> Result<Value, String> {
    smp_map(Some(target), patch, shape, &[]).map(|v| v.unwrap_or(Value::Object(Map::new())))
}

fn push(names: &[String], f: &str) -> Vec<String> {
    let mut n = names.to_vec();
    n.push(f.to_string());
    n
}

fn smp_map(
    target: Option<&Value>,
    patch: &Value,
    shape: &Shape<'_>,
    names: &[String],
) -> Result<Option<Value>, String> {
    let Some(pm) = patch.as_object() else {
        return Ok(Some(patch.clone()));
    };
    match pm.get("$patch").and_then(Value::as_str) {
        Some("delete") => return Ok(None),
        Some("replace") => {
            let mut m = pm.clone();
            m.remove("$patch");
            strip_directives(&mut m);
            return Ok(Some(Value::Object(m)));
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type: {other:?}")),
    }
    let mut out = match target {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    if let Some(keys) = pm.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, pv) in pm {
        if k.starts_with('$') {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let del: Vec<Value> = pv.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = out.get_mut(field) {
                items.retain(|i| !del.contains(i));
            }
            continue;
        }
        let child_names = push(names, k);
        match pv {
            Value::Null => {
                out.remove(k);
            }
            Value::Object(_) => {
                if shape.map_atomic(&child_names) && pv.get("$patch").is_none() {
                    out.insert(k.clone(), pv.clone());
                    continue;
                }
                match smp_map(out.get(k), pv, shape, &child_names)? {
                    Some(v) => out.insert(k.clone(), v),
                    None => out.remove(k),
                };
            }
            Value::Array(pa) => {
                let merged = smp_list(out.get(k), pa, shape, &child_names)?;
                out.insert(k.clone(), Value::Array(merged));
            }
            _ => {
                out.insert(k.clone(), pv.clone());
            }
        }
    }
    for (k, order) in pm {
        if let Some(field) = k.strip_prefix("$setElementOrder/")
            && let (Some(Value::Array(items)), Some(order)) = (out.get_mut(field), order.as_array())
        {
            reorder(items, order, &shape.list_type(&push(names, field)));
        }
    }
    Ok(Some(Value::Object(out)))
}

fn strip_directives(m: &mut Map<String, Value>) {
    m.retain(|k, _| !k.starts_with('$'));
}

fn reorder(items: &mut Vec<Value>, order: &[Value], lt: &ListType) {
    let key_of = |v: &Value| -> Value {
        match lt {
            ListType::Map(keys) => v.get(&keys[0]).cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let order_keys: Vec<Value> = order.iter().map(key_of).collect();
    let mut ordered: Vec<Value> = Vec::with_capacity(items.len());
    for k in &order_keys {
        if let Some(pos) = items.iter().position(|i| key_of(i) == *k) {
            ordered.push(items.remove(pos));
        }
    }
    ordered.append(items);
    *items = ordered;
}

fn smp_list(
    target: Option<&Value>,
    patch: &[Value],
    shape: &Shape<'_>,
    names: &[String],
) -> Result<Vec<Value>, String> {
    let current: Vec<Value> = target
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match shape.list_type(names) {
        ListType::Atomic => Ok(patch
            .iter()
            .map(|v| {
                let mut v = v.clone();
                if let Some(m) = v.as_object_mut() {
                    strip_directives(m);
                }
                v
            })
            .collect()),
        ListType::Set => {
            let mut out = current;
            for v in patch {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Ok(out)
        }
        ListType::Map(keys) => {
            let key = &keys[0];
            if patch
                .iter()
                .any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace"))
            {
                return Ok(patch
                    .iter()
                    .filter(|p| p.get("$patch").is_none())
                    .cloned()
                    .collect());
            }
            let mut out = current;
            for p in patch {
                let Some(kv) = p.get(key) else {
                    return Err(format!(
                        "map: {p} does not contain declared merge key: {key}"
                    ));
                };
                let pos = out.iter().position(|i| i.get(key) == Some(kv));
                if p.get("$patch").and_then(Value::as_str) == Some("delete") {
                    out.retain(|i| i.get(key) != Some(kv));
                    continue;
                }
                match pos {
                    Some(i) => {
                        if let Some(v) = smp_map(Some(&out[i]), p, shape, names)? {
                            out[i] = v;
                        }
                    }
                    None => {
                        if let Some(v) = smp_map(None, p, shape, names)? {
                            out.push(v);
                        }
                    }
                }
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let shape = Shape::builtin("Deployment");
        let target = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]},
            {"name": "b", "$patch": "delete"}]}}}});
        let out = strategic_merge_patch(&target, &patch, &shape).expect("smp");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "a", "image": "a:2", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}])
        );
    }

    #[test]
    fn strategic_merge_replaces_atomic_lists_and_deletes_nulls() {
        let shape = Shape::builtin("Deployment");
        let target = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "args": ["x", "y"], "tty": true}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "args": ["z"], "tty": null}]}}}});
        let out = strategic_merge_patch(&target, &patch, &shape).expect("smp");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "a", "args": ["z"]}])
        );
    }
}
