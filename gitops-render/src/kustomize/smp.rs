//! Strategic merge patch as kustomize applies it (kyaml's `merge2` walker).
//!
//! Lists are merged element by element ("associative") when their elements carry one of
//! kyaml's associative keys (`mountPath`, `devicePath`, `ip`, `type`, `topologyKey`, `name`,
//! `containerPort`); the key used is the patch-merge key from the Kubernetes schema when the
//! field has one (see [`schema_merge_key`]), else the associative key found. Other lists are
//! replaced. New elements are appended. Directives: `$patch: replace|delete|merge`,
//! `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`.

use crate::yaml::{Map, Value};

const ASSOCIATIVE_KEYS: [&str; 7] = [
    "mountPath",
    "devicePath",
    "ip",
    "type",
    "topologyKey",
    "name",
    "containerPort",
];

/// The `x-kubernetes-patch-merge-key` of a list field of a built-in kind, by the field's path
/// from the object root (without list indexes). Produced from the Kubernetes 1.32 OpenAPI
/// schema (the fields whose merge key differs from the associative-key heuristic, plus the
/// common pod-spec lists); kinds without an entry merge as kyaml merges unknown kinds.
pub(crate) fn schema_merge_key(kind: &str, path: &[&str]) -> Option<&'static str> {
    let last = *path.last()?;
    let parent = if path.len() >= 2 {
        path[path.len() - 2]
    } else {
        ""
    };
    match last {
        "ports" => {
            if parent == "spec" && kind == "Service" {
                Some("port")
            } else if matches!(
                parent,
                "containers" | "initContainers" | "ephemeralContainers"
            ) {
                Some("containerPort")
            } else {
                None
            }
        }
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "secrets"
        | "resourceClaims"
        | "schedulingGates" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "hostAliases" => Some("ip"),
        "topologySpreadConstraints" => Some("topologyKey"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        _ => None,
    }
}

fn assoc_key_of(items: &[Value]) -> Option<&'static str> {
    if items.is_empty() || !items.iter().all(|v| matches!(v, Value::Map(_))) {
        return None;
    }
    ASSOCIATIVE_KEYS.into_iter().find(|k| {
        items
            .iter()
            .all(|v| v.as_map().is_some_and(|m| m.contains_key(*k)))
    })
}

fn directive(m: &Map) -> Option<&str> {
    m.get("$patch").and_then(Value::as_str)
}

/// Removes patch directives from a value being added as new content.
pub(crate) fn strip_directives(v: &mut Value) {
    match v {
        Value::Map(m) => {
            m.retain(|k, _| {
                !(k == "$patch"
                    || k == "$retainKeys"
                    || k.starts_with("$setElementOrder/")
                    || k.starts_with("$deleteFromPrimitiveList/"))
            });
            m.values_mut().for_each(strip_directives);
        }
        Value::Seq(s) => {
            s.retain(|e| e.as_map().is_none_or(|m| directive(m) != Some("delete")));
            s.retain(|e| {
                !e.as_map()
                    .is_some_and(|m| directive(m) == Some("replace") && m.len() == 1)
            });
            s.iter_mut().for_each(strip_directives);
        }
        _ => {}
    }
}

/// Merges `patch` into `dest` (an object). Returns `false` when the patch deletes the object.
pub(crate) fn merge_object(dest: &mut Value, patch: &Value, kind: &str) -> bool {
    if let Some(pm) = patch.as_map()
        && directive(pm) == Some("delete")
    {
        return false;
    }
    let mut path = Vec::new();
    merge_value(dest, patch, kind, &mut path);
    true
}

fn merge_value(dest: &mut Value, patch: &Value, kind: &str, path: &mut Vec<String>) {
    match (dest, patch) {
        (Value::Map(dm), Value::Map(pm)) => merge_map(dm, pm, kind, path),
        (d, p) => {
            let mut p = p.clone();
            strip_directives(&mut p);
            *d = p;
        }
    }
}

fn merge_map(dm: &mut Map, pm: &Map, kind: &str, path: &mut Vec<String>) {
    match directive(pm) {
        Some("replace") => {
            let mut p = Value::Map(pm.clone());
            strip_directives(&mut p);
            if let Value::Map(p) = p {
                *dm = p;
            }
            return;
        }
        Some("delete") => {
            dm.clear();
            return;
        }
        _ => {}
    }
    if let Some(Value::Seq(keep)) = pm.get("$retainKeys") {
        let keep: Vec<String> = keep.iter().filter_map(Value::scalar_text).collect();
        dm.retain(|k, _| keep.contains(k));
    }
    for (k, pv) in pm {
        if k == "$patch" || k == "$retainKeys" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Seq(items)), Value::Seq(del)) = (dm.get_mut(field), pv) {
                items.retain(|i| !del.contains(i));
            }
            continue;
        }
        if k.starts_with("$setElementOrder/") {
            continue;
        }
        if pv.is_null() {
            dm.shift_remove(k);
            continue;
        }
        path.push(k.clone());
        match dm.get_mut(k) {
            Some(dv) if !dv.is_null() => match (dv, pv) {
                (Value::Map(dmm), Value::Map(pmm)) => {
                    if directive(pmm) == Some("delete") {
                        dm.shift_remove(k);
                    } else {
                        merge_map(dmm, pmm, kind, path);
                    }
                }
                (Value::Seq(ds), Value::Seq(ps)) => merge_list(ds, ps, kind, path),
                (dv, pv) => {
                    let mut p = pv.clone();
                    strip_directives(&mut p);
                    *dv = p;
                }
            },
            _ => {
                let is_delete = pv.as_map().is_some_and(|m| directive(m) == Some("delete"));
                if !is_delete {
                    let mut p = pv.clone();
                    strip_directives(&mut p);
                    dm.insert(k.clone(), p);
                }
            }
        }
        path.pop();
    }
    for (k, pv) in pm {
        if let Some(field) = k.strip_prefix("$setElementOrder/")
            && let (Some(Value::Seq(items)), Value::Seq(order)) = (dm.get_mut(field), pv)
        {
            reorder(items, order);
        }
    }
}

fn reorder(items: &mut Vec<Value>, order: &[Value]) {
    let key = assoc_key_of(order);
    let ident = |v: &Value| -> Value {
        match key {
            Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let mut rest: Vec<Value> = std::mem::take(items);
    let mut out = Vec::with_capacity(rest.len());
    for o in order {
        let oid = ident(o);
        if let Some(pos) = rest.iter().position(|i| ident(i) == oid) {
            out.push(rest.remove(pos));
        }
    }
    out.extend(rest);
    *items = out;
}

fn merge_list(ds: &mut Vec<Value>, ps: &[Value], kind: &str, path: &mut Vec<String>) {
    // `$patch: replace` as an element replaces the whole list.
    if ps
        .iter()
        .any(|e| e.as_map().is_some_and(|m| directive(m) == Some("replace")))
    {
        let mut p = Value::Seq(ps.to_vec());
        strip_directives(&mut p);
        if let Value::Seq(p) = p {
            *ds = p;
        }
        return;
    }
    let patch_elems: Vec<&Value> = ps.iter().collect();
    let segs: Vec<&str> = path.iter().map(String::as_str).collect();
    let schema_key = schema_merge_key(kind, &segs);
    let assoc = schema_key.is_some()
        || assoc_key_of(ds).is_some()
        || assoc_key_of(
            &ps.iter()
                .filter(|e| !is_directive_only(e))
                .cloned()
                .collect::<Vec<_>>(),
        )
        .is_some();
    if !assoc {
        let mut p = Value::Seq(ps.to_vec());
        strip_directives(&mut p);
        if let Value::Seq(p) = p {
            *ds = p;
        }
        return;
    }
    let key = schema_key
        .or_else(|| assoc_key_of(ds))
        .or_else(|| assoc_key_of(ps))
        .unwrap_or("name");
    // kustomize merges with kyaml's "prepend" list direction: the patch's elements come
    // first, in patch order (merged with the original element of the same key), then the
    // original elements the patch does not name, in their order.
    let mut out = Vec::with_capacity(ds.len() + ps.len());
    let mut used = vec![false; ds.len()];
    for pe in patch_elems {
        let Some(pm) = pe.as_map() else { continue };
        let Some(kv) = pm.get(key) else {
            continue;
        };
        let pos = ds
            .iter()
            .position(|d| d.as_map().and_then(|m| m.get(key)) == Some(kv));
        if let Some(i) = pos {
            used[i] = true;
        }
        match (pos, directive(pm)) {
            (_, Some("delete")) => {}
            (Some(i), _) => {
                let mut d = ds[i].clone();
                if let Value::Map(dm) = &mut d {
                    merge_map(dm, pm, kind, path);
                }
                out.push(d);
            }
            (None, _) => {
                let mut p = pe.clone();
                strip_directives(&mut p);
                out.push(p);
            }
        }
    }
    for (i, d) in ds.drain(..).enumerate() {
        if !used[i] {
            out.push(d);
        }
    }
    *ds = out;
}

fn is_directive_only(v: &Value) -> bool {
    v.as_map()
        .is_some_and(|m| m.keys().all(|k| k.starts_with('$')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_stream;

    fn doc(s: &str) -> Value {
        parse_stream(s).expect("yaml").remove(0)
    }

    #[test]
    fn patch_elements_come_first_then_the_rest_as_kustomize_orders_them() {
        let mut d =
            doc("spec:\n  containers:\n  - name: a\n    image: x\n  - name: b\n    image: y\n");
        let p = doc("spec:\n  containers:\n  - name: b\n    image: z\n  - name: c\n    image: w\n");
        assert!(merge_object(&mut d, &p, "Pod"));
        assert_eq!(
            d,
            doc(
                "spec:\n  containers:\n  - name: b\n    image: z\n  - name: c\n    image: w\n  - name: a\n    image: x\n"
            )
        );
    }

    #[test]
    fn directives() {
        let mut d = doc("a:\n  b: 1\n  c: 2\nl:\n- name: x\n- name: y\nm: [1, 2]\n");
        let p = doc(
            "a:\n  $patch: replace\n  d: 3\nl:\n- name: x\n  $patch: delete\n$deleteFromPrimitiveList/m: [1]\n",
        );
        assert!(merge_object(&mut d, &p, "Foo"));
        assert_eq!(d, doc("a:\n  d: 3\nl:\n- name: y\nm: [2]\n"));
        assert!(!merge_object(&mut d, &doc("$patch: delete\n"), "Foo"));
    }

    #[test]
    fn null_deletes_and_primitive_lists_replace() {
        let mut d = doc("a: 1\nb: 2\nargs: [x, y]\n");
        assert!(merge_object(&mut d, &doc("a: null\nargs: [z]\n"), "Pod"));
        assert_eq!(d, doc("b: 2\nargs: [z]\n"));
    }
}
