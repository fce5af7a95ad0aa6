//! Strategic merge patch as kustomize applies it (kyaml's `merge2` walker).
//!
//! kustomize merges without inferring list keys: a list is merged element by element only
//! when the OpenAPI schema of its field has the `merge` patch strategy, on the field's
//! `x-kubernetes-list-map-keys` (else its `x-kubernetes-patch-merge-key`); a merge list
//! without keys (e.g. `finalizers`) is a set union. Every other list, and every list of a
//! kind the schema does not know, is replaced. The schema is kustomize's built-in one
//! (Kubernetes v1.21.2) or the custom one a kustomization names (see [`crate::openapi`]).
//! Patch elements come first, then the original elements the patch does not name, as with
//! kyaml's "prepend" list direction. Directives: `$patch: replace|delete|merge`,
//! `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`.

use crate::openapi::{Node, Schema};
use crate::yaml::{Map, Value};

/// kyaml's associative keys, used only to order `$setElementOrder` lists.
const ASSOCIATIVE_KEYS: [&str; 7] = [
    "mountPath",
    "devicePath",
    "ip",
    "type",
    "topologyKey",
    "name",
    "containerPort",
];

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

/// Merges `patch` into `dest` (an object) with `schema` deciding how lists merge (`None`:
/// no schema, every list is replaced). Returns `false` when the patch deletes the object.
pub(crate) fn merge_object(dest: &mut Value, patch: &Value, schema: Option<&Schema>) -> bool {
    if let Some(pm) = patch.as_map()
        && directive(pm) == Some("delete")
    {
        return false;
    }
    let w = Walk { schema };
    w.merge_value(dest, patch, None);
    true
}

struct Walk<'s> {
    schema: Option<&'s Schema>,
}

/// The schema of a mapping that names its own type (kyaml's `GetSchema`, consulted whenever
/// the parent gave no schema): the destination's type first, then the patch's.
fn own_type<'s>(schema: &'s Schema, dest: &Map, patch: &Map) -> Option<&'s Node> {
    [dest, patch].into_iter().find_map(|m| {
        let api = m.get("apiVersion").and_then(Value::as_str)?;
        let kind = m.get("kind").and_then(Value::as_str)?;
        if api.is_empty() || kind.is_empty() {
            return None;
        }
        schema.for_type(api, kind)
    })
}

impl<'s> Walk<'s> {
    fn merge_value(&self, dest: &mut Value, patch: &Value, node: Option<&'s Node>) {
        match (dest, patch) {
            (Value::Map(dm), Value::Map(pm)) => self.merge_map(dm, pm, node),
            (d, p) => {
                let mut p = p.clone();
                strip_directives(&mut p);
                *d = p;
            }
        }
    }

    fn merge_map(&self, dm: &mut Map, pm: &Map, node: Option<&'s Node>) {
        let node = match (node, self.schema) {
            (None, Some(s)) => own_type(s, dm, pm),
            (n, _) => n,
        };
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
            let child = match (node, self.schema) {
                (Some(n), Some(s)) => s.field(n, k),
                _ => None,
            };
            match dm.get_mut(k) {
                Some(dv) if !dv.is_null() => match (dv, pv) {
                    (Value::Map(dmm), Value::Map(pmm)) => {
                        if directive(pmm) == Some("delete") {
                            dm.shift_remove(k);
                        } else {
                            self.merge_map(dmm, pmm, child);
                        }
                    }
                    (Value::Seq(ds), Value::Seq(ps)) => self.merge_list(ds, ps, child),
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
        }
        for (k, pv) in pm {
            if let Some(field) = k.strip_prefix("$setElementOrder/")
                && let (Some(Value::Seq(items)), Value::Seq(order)) = (dm.get_mut(field), pv)
            {
                reorder(items, order);
            }
        }
    }

    fn merge_list(&self, ds: &mut Vec<Value>, ps: &[Value], node: Option<&'s Node>) {
        // `$patch: replace` as an element replaces the whole list.
        let replace_all = ps
            .iter()
            .any(|e| e.as_map().is_some_and(|m| directive(m) == Some("replace")));
        let (Some(schema), Some(node)) = (self.schema, node) else {
            return replace_list(ds, ps);
        };
        if replace_all || !node.merges() {
            return replace_list(ds, ps);
        }
        let keys = node.strategy_and_keys().map(|(_, k)| k).unwrap_or_default();
        if keys.is_empty() {
            return union_list(ds, ps);
        }
        // kyaml keeps only the keys some element has a value for.
        let valid: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| {
                ds.iter().chain(ps.iter()).any(|e| {
                    e.as_map()
                        .and_then(|m| m.get(*k))
                        .and_then(Value::scalar_text)
                        .is_some()
                })
            })
            .collect();
        let keys = if valid.is_empty() { keys } else { valid };
        let elem = schema.elements(node);
        let mut matched: Vec<Option<usize>> = Vec::with_capacity(ps.len());
        let mut used = vec![false; ds.len()];
        for pe in ps {
            let pos = pe.as_map().and_then(|pm| {
                let pk = key_values(pm, &keys);
                pk[0].as_ref()?;
                ds.iter().enumerate().position(|(i, d)| {
                    !used[i]
                        && d.as_map()
                            .is_some_and(|dm| same_element(&key_values(dm, &keys), &pk))
                })
            });
            if let Some(i) = pos {
                used[i] = true;
            }
            matched.push(pos);
        }
        // Merged (or deleted) destination elements, by destination index.
        let mut merged: Vec<Option<Value>> = ds.iter().cloned().map(Some).collect();
        let mut added = Vec::new();
        for (pe, pos) in ps.iter().zip(&matched) {
            let Some(pm) = pe.as_map() else { continue };
            if key_values(pm, &keys)[0].is_none() {
                continue;
            }
            match (pos, directive(pm)) {
                (Some(i), Some("delete")) => merged[*i] = None,
                (None, Some("delete")) => {}
                (Some(i), _) => {
                    if let Some(Value::Map(dm)) = &mut merged[*i] {
                        self.merge_map(dm, pm, elem);
                    }
                }
                (None, _) => {
                    let mut p = pe.clone();
                    strip_directives(&mut p);
                    added.push(p);
                }
            }
        }
        let mut out = Vec::with_capacity(ds.len() + ps.len());
        if keys.len() > 1 {
            // Several keys: new elements first, then the destination's in their order.
            out.extend(added);
            out.extend(merged.into_iter().flatten());
        } else {
            // One key ("prepend"): the patch's elements in patch order, then the others.
            let mut added = added.into_iter();
            let mut taken = vec![false; ds.len()];
            for (pe, pos) in ps.iter().zip(&matched) {
                let Some(pm) = pe.as_map() else { continue };
                if key_values(pm, &keys)[0].is_none() {
                    continue;
                }
                match (pos, directive(pm)) {
                    (Some(i), _) => {
                        taken[*i] = true;
                        if let Some(v) = merged[*i].take() {
                            out.push(v);
                        }
                    }
                    (None, Some("delete")) => {}
                    (None, _) => out.extend(added.next()),
                }
            }
            for (i, m) in merged.into_iter().enumerate() {
                if !taken[i]
                    && let Some(v) = m
                {
                    out.push(v);
                }
            }
        }
        *ds = out;
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

fn replace_list(ds: &mut Vec<Value>, ps: &[Value]) {
    let mut p = Value::Seq(ps.to_vec());
    strip_directives(&mut p);
    if let Value::Seq(p) = p {
        *ds = p;
    }
}

/// A merge list without keys (`finalizers`): the patch's values, then the others.
fn union_list(ds: &mut Vec<Value>, ps: &[Value]) {
    let mut out: Vec<Value> = Vec::with_capacity(ds.len() + ps.len());
    for v in ps.iter().chain(ds.iter()) {
        if v.as_map().is_some_and(|m| directive(m).is_some()) {
            continue;
        }
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    *ds = out;
}

fn key_values(m: &Map, keys: &[&str]) -> Vec<Option<String>> {
    keys.iter()
        .map(|k| m.get(*k).and_then(Value::scalar_text))
        .collect()
}

/// kyaml's element match over (possibly several) merge keys: every key equal, or missing on
/// one side, with at least one equal.
fn same_element(a: &[Option<String>], b: &[Option<String>]) -> bool {
    let mut common = false;
    for (x, y) in a.iter().zip(b) {
        match (x, y) {
            (Some(x), Some(y)) if x == y => common = true,
            (Some(_), Some(_)) => return false,
            _ => {}
        }
    }
    common
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_stream;

    fn doc(s: &str) -> Value {
        parse_stream(s).expect("yaml").remove(0)
    }

    fn merged(dest: &str, patch: &str) -> Value {
        let mut d = doc(dest);
        let s = Schema::builtin();
        assert!(merge_object(&mut d, &doc(patch), Some(&s)));
        d
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\n";

    #[test]
    fn patch_elements_come_first_then_the_rest_as_kustomize_orders_them() {
        let d = merged(
            &format!(
                "{POD}spec:\n  containers:\n  - name: a\n    image: x\n  - name: b\n    image: y\n"
            ),
            &format!(
                "{POD}spec:\n  containers:\n  - name: b\n    image: z\n  - name: c\n    image: w\n"
            ),
        );
        assert_eq!(
            d,
            doc(&format!(
                "{POD}spec:\n  containers:\n  - name: b\n    image: z\n  - name: c\n    image: w\n  - name: a\n    image: x\n"
            ))
        );
    }

    #[test]
    fn lists_merge_only_where_the_schema_says_so() {
        // RoleBinding subjects have no patch strategy: replaced although elements have names.
        let rb = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n";
        let d = merged(
            &format!("{rb}subjects:\n- kind: User\n  name: a\n- kind: User\n  name: b\n"),
            &format!("{rb}subjects:\n- kind: User\n  name: c\n"),
        );
        assert_eq!(d, doc(&format!("{rb}subjects:\n- kind: User\n  name: c\n")));
        // A kind the schema does not know: replaced.
        let w = "apiVersion: example.com/v1\nkind: Widget\n";
        let d = merged(
            &format!("{w}spec:\n  containers:\n  - name: a\n    image: x\n"),
            &format!("{w}spec:\n  containers:\n  - name: a\n    image: y\n"),
        );
        assert_eq!(
            d,
            doc(&format!(
                "{w}spec:\n  containers:\n  - name: a\n    image: y\n"
            ))
        );
        // Without any schema (custom schema lacking the kind, helm values): replaced.
        let mut d = doc(&format!("{POD}spec:\n  volumes:\n  - name: a\n"));
        assert!(merge_object(
            &mut d,
            &doc(&format!("{POD}spec:\n  volumes:\n  - name: b\n")),
            None
        ));
        assert_eq!(d, doc(&format!("{POD}spec:\n  volumes:\n  - name: b\n")));
    }

    #[test]
    fn container_ports_merge_on_port_and_protocol_keeping_their_order() {
        let d = merged(
            &format!(
                "{POD}spec:\n  containers:\n  - name: a\n    ports:\n    - containerPort: 53\n      protocol: TCP\n    - containerPort: 53\n      protocol: UDP\n"
            ),
            &format!(
                "{POD}spec:\n  containers:\n  - name: a\n    ports:\n    - containerPort: 53\n      protocol: UDP\n      name: dns\n"
            ),
        );
        assert_eq!(
            d,
            doc(&format!(
                "{POD}spec:\n  containers:\n  - name: a\n    ports:\n    - containerPort: 53\n      protocol: TCP\n    - containerPort: 53\n      protocol: UDP\n      name: dns\n"
            ))
        );
    }

    #[test]
    fn finalizers_are_a_set_union() {
        let d = merged(
            &format!("{POD}metadata:\n  finalizers: [a, b]\n"),
            &format!("{POD}metadata:\n  finalizers: [c, a]\n"),
        );
        assert_eq!(
            d,
            doc(&format!("{POD}metadata:\n  finalizers: [c, a, b]\n"))
        );
    }

    #[test]
    fn directives() {
        let mut d = doc(&format!(
            "{POD}a:\n  b: 1\n  c: 2\nspec:\n  volumes:\n  - name: x\n  - name: y\nm: [1, 2]\n"
        ));
        let p = doc(&format!(
            "{POD}a:\n  $patch: replace\n  d: 3\nspec:\n  volumes:\n  - name: x\n    $patch: delete\n$deleteFromPrimitiveList/m: [1]\n"
        ));
        let s = Schema::builtin();
        assert!(merge_object(&mut d, &p, Some(&s)));
        assert_eq!(
            d,
            doc(&format!(
                "{POD}a:\n  d: 3\nspec:\n  volumes:\n  - name: y\nm: [2]\n"
            ))
        );
        assert!(!merge_object(&mut d, &doc("$patch: delete\n"), Some(&s)));
    }

    #[test]
    fn null_deletes_and_primitive_lists_replace() {
        let d = merged(
            &format!("{POD}a: 1\nb: 2\nspec:\n  containers:\n  - name: c\n    args: [x, y]\n"),
            &format!("{POD}a: null\nspec:\n  containers:\n  - name: c\n    args: [z]\n"),
        );
        assert_eq!(
            d,
            doc(&format!(
                "{POD}b: 2\nspec:\n  containers:\n  - name: c\n    args: [z]\n"
            ))
        );
    }
}
