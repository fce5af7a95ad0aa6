//! Server-side apply and managedFields, after sigs.k8s.io/structured-merge-diff: field sets,
//! `fieldsV1` encoding, merging an applied configuration, ownership, conflicts and pruning.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::shape::{ListType, Shape};

/// One element of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pe {
    /// A field of a map (`f:name`).
    Field(String),
    /// An associative list item by its keys (`k:{"name":"x"}`), canonical JSON.
    Key(String),
    /// A set list item (`v:"x"`), JSON.
    Value(String),
    /// A list index (`i:0`).
    Index(usize),
}

impl Pe {
    fn encode(&self) -> String {
        match self {
            Pe::Field(f) => format!("f:{f}"),
            Pe::Key(k) => format!("k:{k}"),
            Pe::Value(v) => format!("v:{v}"),
            Pe::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(s: &str) -> Option<Pe> {
        let (prefix, rest) = s.split_at_checked(2)?;
        match prefix {
            "f:" => Some(Pe::Field(rest.to_string())),
            "k:" => {
                let v: Value = serde_json::from_str(rest).ok()?;
                Some(Pe::Key(canonical_key(&v)))
            }
            "v:" => {
                let v: Value = serde_json::from_str(rest).ok()?;
                Some(Pe::Value(v.to_string()))
            }
            "i:" => rest.parse().ok().map(Pe::Index),
            _ => None,
        }
    }

    /// The element as in conflict messages (`.name`, `[name="x"]`, `[="v"]`, `[0]`).
    pub fn display(&self) -> String {
        match self {
            Pe::Field(f) => format!(".{f}"),
            Pe::Key(k) => {
                let v: Value = serde_json::from_str(k).unwrap_or(Value::Null);
                let parts: Vec<String> = v
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                    .unwrap_or_default();
                format!("[{}]", parts.join(","))
            }
            Pe::Value(v) => format!("[={v}]"),
            Pe::Index(i) => format!("[{i}]"),
        }
    }
}

fn canonical_key(v: &Value) -> String {
    match v.as_object() {
        Some(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            let mut out = Map::new();
            for (k, v) in sorted {
                out.insert(k.clone(), v.clone());
            }
            Value::Object(out).to_string()
        }
        None => v.to_string(),
    }
}

/// A path as printed in conflict messages.
pub fn path_string(path: &[Pe]) -> String {
    path.iter().map(Pe::display).collect()
}

/// A set of field paths (members at this level, children below), as structured-merge-diff's `Set`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<Pe>,
    children: BTreeMap<Pe, FieldSet>,
}

impl FieldSet {
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(FieldSet::is_empty)
    }

    /// Inserts a path.
    pub fn insert(&mut self, path: &[Pe]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether the path or anything below it is in the set.
    pub fn has_prefix(&self, path: &[Pe]) -> bool {
        match path {
            [] => !self.is_empty(),
            [first, rest @ ..] => {
                (rest.is_empty() && self.members.contains(first))
                    || self.children.get(first).is_some_and(|c| c.has_prefix(rest))
            }
        }
    }

    /// The union of two sets.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (k, c) in &other.children {
            let merged = match out.children.get(k) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(k.clone(), merged);
        }
        out
    }

    /// Paths of `self` not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (k, c) in &self.children {
            let d = match other.children.get(k) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                children.insert(k.clone(), d);
            }
        }
        FieldSet { members, children }
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (k, c) in &self.children {
            if let Some(o) = other.children.get(k) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    children.insert(k.clone(), i);
                }
            }
        }
        FieldSet { members, children }
    }

    /// Every member path, in order.
    pub fn paths(&self) -> Vec<Vec<Pe>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<Pe>, out: &mut Vec<Vec<Pe>>) {
        let keys: BTreeSet<&Pe> = self.members.iter().chain(self.children.keys()).collect();
        for k in keys {
            prefix.push(k.clone());
            if self.members.contains(k) {
                out.push(prefix.clone());
            }
            if let Some(c) = self.children.get(k) {
                c.collect(prefix, out);
            }
            prefix.pop();
        }
    }

    /// The `fieldsV1` JSON of this set.
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        let keys: BTreeSet<&Pe> = self.members.iter().chain(self.children.keys()).collect();
        for k in keys {
            let child = self.children.get(k).filter(|c| !c.is_empty());
            let v = match child {
                Some(c) => {
                    let mut inner = Map::new();
                    if self.members.contains(k) {
                        inner.insert(".".into(), json!({}));
                    }
                    if let Value::Object(cm) = c.to_fields_v1() {
                        inner.extend(cm);
                    }
                    Value::Object(inner)
                }
                None => json!({}),
            };
            m.insert(k.encode(), v);
        }
        Value::Object(m)
    }

    /// Parses `fieldsV1`.
    pub fn from_fields_v1(v: &Value) -> Option<FieldSet> {
        let m = v.as_object()?;
        let mut out = FieldSet::default();
        for (k, child) in m {
            if k == "." {
                continue;
            }
            let pe = Pe::decode(k)?;
            let cm = child.as_object()?;
            if cm.is_empty() || cm.contains_key(".") {
                out.members.insert(pe.clone());
            }
            let sub = FieldSet::from_fields_v1(child)?;
            if !sub.is_empty() {
                out.children.insert(pe, sub);
            }
        }
        Some(out)
    }
}

fn names_push(names: &[String], f: &str) -> Vec<String> {
    let mut n = names.to_vec();
    n.push(f.to_string());
    n
}

fn item_key(item: &Value, keys: &[String]) -> Option<Pe> {
    let m = item.as_object()?;
    let mut out = Map::new();
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort();
    for k in sorted {
        if let Some(v) = m.get(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    if out.is_empty() {
        return None;
    }
    Some(Pe::Key(Value::Object(out).to_string()))
}

fn list_item_pe(item: &Value, lt: &ListType, index: usize) -> Pe {
    match lt {
        ListType::Map(keys) => item_key(item, keys).unwrap_or(Pe::Index(index)),
        ListType::Set => Pe::Value(item.to_string()),
        ListType::Atomic => Pe::Index(index),
    }
}

/// The fields an applied configuration specifies (structured-merge-diff's `ToFieldSet`).
pub fn to_field_set(v: &Value, shape: &Shape<'_>) -> FieldSet {
    let mut set = FieldSet::default();
    walk_set(v, shape, &[], &mut Vec::new(), &mut set);
    set
}

fn walk_set(v: &Value, shape: &Shape<'_>, names: &[String], pes: &mut Vec<Pe>, set: &mut FieldSet) {
    match v {
        Value::Object(m) if names.is_empty() || !shape.map_atomic(names) => {
            for (k, c) in m {
                pes.push(Pe::Field(k.clone()));
                walk_set(c, shape, &names_push(names, k), pes, set);
                pes.pop();
            }
        }
        Value::Array(items) => {
            let lt = shape.list_type(names);
            if lt == ListType::Atomic {
                set.insert(pes);
                return;
            }
            for (i, item) in items.iter().enumerate() {
                pes.push(list_item_pe(item, &lt, i));
                set.insert(pes);
                if let (ListType::Map(_), Value::Object(m)) = (&lt, item) {
                    for (k, c) in m {
                        pes.push(Pe::Field(k.clone()));
                        walk_set(c, shape, &names_push(names, k), pes, set);
                        pes.pop();
                    }
                }
                pes.pop();
            }
        }
        _ => set.insert(pes),
    }
}

/// The result of comparing two objects.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Fields only in the new object.
    pub added: FieldSet,
    /// Fields whose values changed.
    pub modified: FieldSet,
    /// Fields only in the old object.
    pub removed: FieldSet,
}

/// Compares two objects field by field.
pub fn compare(old: &Value, new: &Value, shape: &Shape<'_>) -> Comparison {
    let mut c = Comparison::default();
    cmp(Some(old), Some(new), shape, &[], &mut Vec::new(), &mut c);
    c
}

fn cmp(
    old: Option<&Value>,
    new: Option<&Value>,
    shape: &Shape<'_>,
    names: &[String],
    pes: &mut Vec<Pe>,
    c: &mut Comparison,
) {
    let atomic_map = |v: &Value| v.is_object() && !names.is_empty() && shape.map_atomic(names);
    match (old, new) {
        (None, None) => {}
        (None, Some(n)) => {
            if !(pes.is_empty() || n.is_object() || n.is_array()) || atomic_map(n) {
                c.added.insert(pes);
                return;
            }
            if !pes.is_empty() && !shape.zero_present(names) {
                c.added.insert(pes);
            }
            children(None, Some(n), shape, names, pes, c);
        }
        (Some(o), None) => {
            if !pes.is_empty() {
                c.removed.insert(pes);
            }
            if !atomic_map(o) {
                children(Some(o), None, shape, names, pes, c);
            }
        }
        (Some(o), Some(n)) => {
            let same_shape = matches!(
                (o, n),
                (Value::Object(_), Value::Object(_)) | (Value::Array(_), Value::Array(_))
            );
            let atomic = match n {
                Value::Object(_) => atomic_map(n),
                Value::Array(_) => shape.list_type(names) == ListType::Atomic,
                _ => true,
            };
            if !same_shape || atomic {
                if o != n {
                    c.modified.insert(pes);
                }
                return;
            }
            children(Some(o), Some(n), shape, names, pes, c);
        }
    }
}

fn children(
    old: Option<&Value>,
    new: Option<&Value>,
    shape: &Shape<'_>,
    names: &[String],
    pes: &mut Vec<Pe>,
    c: &mut Comparison,
) {
    let is_obj = old.or(new).is_some_and(Value::is_object);
    if is_obj {
        let empty = Map::new();
        let om = old.and_then(Value::as_object).unwrap_or(&empty);
        let nm = new.and_then(Value::as_object).unwrap_or(&empty);
        let mut keys: Vec<&String> = om.keys().collect();
        keys.extend(nm.keys().filter(|k| !om.contains_key(*k)));
        for k in keys {
            pes.push(Pe::Field(k.clone()));
            cmp(om.get(k), nm.get(k), shape, &names_push(names, k), pes, c);
            pes.pop();
        }
        return;
    }
    let lt = shape.list_type(names);
    if lt == ListType::Atomic {
        return;
    }
    let empty = Vec::new();
    let oa = old.and_then(Value::as_array).unwrap_or(&empty);
    let na = new.and_then(Value::as_array).unwrap_or(&empty);
    let okeys: Vec<Pe> = oa
        .iter()
        .enumerate()
        .map(|(i, v)| list_item_pe(v, &lt, i))
        .collect();
    let nkeys: Vec<Pe> = na
        .iter()
        .enumerate()
        .map(|(i, v)| list_item_pe(v, &lt, i))
        .collect();
    for (i, k) in okeys.iter().enumerate() {
        let ni = nkeys.iter().position(|n| n == k);
        pes.push(k.clone());
        match ni {
            Some(ni) => item_cmp(Some(&oa[i]), Some(&na[ni]), &lt, shape, names, pes, c),
            None => item_cmp(Some(&oa[i]), None, &lt, shape, names, pes, c),
        }
        pes.pop();
    }
    for (i, k) in nkeys.iter().enumerate() {
        if !okeys.contains(k) {
            pes.push(k.clone());
            item_cmp(None, Some(&na[i]), &lt, shape, names, pes, c);
            pes.pop();
        }
    }
}

fn item_cmp(
    old: Option<&Value>,
    new: Option<&Value>,
    lt: &ListType,
    shape: &Shape<'_>,
    names: &[String],
    pes: &mut Vec<Pe>,
    c: &mut Comparison,
) {
    match (old, new) {
        (None, Some(_)) => c.added.insert(pes),
        (Some(_), None) => c.removed.insert(pes),
        _ => {}
    }
    if matches!(lt, ListType::Map(_)) {
        let empty = Map::new();
        let om = old.and_then(Value::as_object).unwrap_or(&empty);
        let nm = new.and_then(Value::as_object).unwrap_or(&empty);
        let mut keys: Vec<&String> = om.keys().collect();
        keys.extend(nm.keys().filter(|k| !om.contains_key(*k)));
        for k in keys {
            pes.push(Pe::Field(k.clone()));
            cmp(om.get(k), nm.get(k), shape, &names_push(names, k), pes, c);
            pes.pop();
        }
    }
}

/// Merges an applied configuration into the live object.
pub fn merge(live: &Value, config: &Value, shape: &Shape<'_>) -> Value {
    merge_at(Some(live), config, shape, &[]).unwrap_or(Value::Null)
}

fn merge_at(
    live: Option<&Value>,
    config: &Value,
    shape: &Shape<'_>,
    names: &[String],
) -> Option<Value> {
    match (live, config) {
        (_, Value::Null) => None,
        (Some(Value::Object(lm)), Value::Object(cm))
            if names.is_empty() || !shape.map_atomic(names) =>
        {
            let mut out = lm.clone();
            for (k, cv) in cm {
                match merge_at(lm.get(k), cv, shape, &names_push(names, k)) {
                    Some(v) => {
                        out.insert(k.clone(), v);
                    }
                    None => {
                        out.remove(k);
                    }
                }
            }
            Some(Value::Object(out))
        }
        (Some(Value::Array(la)), Value::Array(ca)) => {
            let lt = shape.list_type(names);
            if lt == ListType::Atomic {
                return Some(config.clone());
            }
            Some(Value::Array(merge_list(la, ca, &lt, shape, names)))
        }
        (_, Value::Object(cm)) => {
            // Nothing live to merge with: still drop explicit nulls below.
            let mut out = Map::new();
            for (k, cv) in cm {
                if let Some(v) = merge_at(None, cv, shape, &names_push(names, k)) {
                    out.insert(k.clone(), v);
                }
            }
            Some(Value::Object(out))
        }
        _ => Some(config.clone()),
    }
}

fn merge_list(
    la: &[Value],
    ca: &[Value],
    lt: &ListType,
    shape: &Shape<'_>,
    names: &[String],
) -> Vec<Value> {
    let lk: Vec<Pe> = la
        .iter()
        .enumerate()
        .map(|(i, v)| list_item_pe(v, lt, i))
        .collect();
    let ck: Vec<Pe> = ca
        .iter()
        .enumerate()
        .map(|(i, v)| list_item_pe(v, lt, i))
        .collect();
    let merge_item = |l: Option<&Value>, c: &Value| -> Value {
        match lt {
            ListType::Map(_) => merge_at(l, c, shape, names).unwrap_or(Value::Null),
            _ => c.clone(),
        }
    };
    let mut consumed = vec![false; la.len()];
    let mut out = Vec::new();
    let (mut li, mut ci) = (0, 0);
    while li < la.len() || ci < ca.len() {
        if li < la.len() && consumed[li] {
            li += 1;
            continue;
        }
        if li < la.len() && ci < ca.len() {
            if lk[li] == ck[ci] {
                out.push(merge_item(Some(&la[li]), &ca[ci]));
                consumed[li] = true;
                li += 1;
                ci += 1;
                continue;
            }
            if !ck.contains(&lk[li]) {
                out.push(la[li].clone());
                consumed[li] = true;
                li += 1;
                continue;
            }
            let partner = lk.iter().position(|k| *k == ck[ci]);
            match partner {
                Some(p) => {
                    out.push(merge_item(Some(&la[p]), &ca[ci]));
                    consumed[p] = true;
                }
                None => out.push(merge_item(None, &ca[ci])),
            }
            ci += 1;
        } else if li < la.len() {
            out.push(la[li].clone());
            consumed[li] = true;
            li += 1;
        } else {
            let partner = lk.iter().position(|k| *k == ck[ci]);
            out.push(merge_item(partner.map(|p| &la[p]), &ca[ci]));
            ci += 1;
        }
    }
    out
}

/// Removes the value at `path` from `obj` (a field, a keyed item or a set value).
pub fn remove_path(obj: &mut Value, path: &[Pe], shape: &Shape<'_>) {
    remove_at(obj, path, shape, &[]);
}

fn remove_at(obj: &mut Value, path: &[Pe], shape: &Shape<'_>, names: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match (first, obj) {
        (Pe::Field(f), Value::Object(m)) => {
            if rest.is_empty() {
                m.remove(f);
            } else if let Some(child) = m.get_mut(f) {
                remove_at(child, rest, shape, &names_push(names, f));
            }
        }
        (pe, Value::Array(items)) => {
            let lt = shape.list_type(names);
            let pos = items
                .iter()
                .enumerate()
                .position(|(i, v)| list_item_pe(v, &lt, i) == *pe);
            if let Some(pos) = pos {
                if rest.is_empty() {
                    items.remove(pos);
                } else {
                    remove_at(&mut items[pos], rest, shape, names);
                }
            }
        }
        _ => {}
    }
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone)]
pub struct Manager {
    /// `manager`.
    pub manager: String,
    /// `operation`: `Apply` or `Update`.
    pub operation: String,
    /// `apiVersion`.
    pub api_version: String,
    /// `time`.
    pub time: String,
    /// `subresource`.
    pub subresource: String,
    /// The owned fields.
    pub set: FieldSet,
}

impl Manager {
    fn same_identity(&self, other: &Manager) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == "Apply" || self.api_version == other.api_version)
    }

    /// How the API server names this manager in conflict messages.
    pub fn printed(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        if self.operation == "Update" {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

/// Reads `metadata.managedFields`.
pub fn decode_managers(obj: &Value) -> Vec<Manager> {
    let mut out = Vec::new();
    for e in obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
        let Some(set) = FieldSet::from_fields_v1(&e["fieldsV1"]) else {
            continue;
        };
        out.push(Manager {
            manager: s("manager"),
            operation: s("operation"),
            api_version: s("apiVersion"),
            time: s("time"),
            subresource: s("subresource"),
            set,
        });
    }
    out
}

/// Writes `metadata.managedFields` (sorted as the API server does: Apply first, then by time).
pub fn encode_managers(obj: &mut Value, managers: &mut [Manager]) {
    managers.sort_by(|a, b| {
        (a.operation != "Apply", &a.time, &a.manager).cmp(&(
            b.operation != "Apply",
            &b.time,
            &b.manager,
        ))
    });
    let entries: Vec<Value> = managers
        .iter()
        .filter(|m| !m.set.is_empty())
        .map(|m| {
            let mut e = json!({
                "manager": m.manager,
                "operation": m.operation,
                "apiVersion": m.api_version,
                "time": m.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": m.set.to_fields_v1(),
            });
            if !m.subresource.is_empty() {
                e["subresource"] = json!(m.subresource);
            }
            if m.manager.is_empty()
                && let Some(o) = e.as_object_mut()
            {
                o.remove("manager");
            }
            e
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

/// Fields that are never owned (structured-merge-diff's strip set plus the reset fields of
/// the main resource or the status subresource).
pub fn strip_for_tracking(v: &Value, has_status: bool, subresource: &str) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if subresource == "status" {
            m.retain(|k, _| k == "status" || k == "metadata");
            if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.retain(|k, _| k == "labels" || k == "annotations");
            }
        } else if has_status {
            m.remove("status");
        }
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in [
                "name",
                "namespace",
                "creationTimestamp",
                "selfLink",
                "uid",
                "generation",
                "managedFields",
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                meta.remove(k);
            }
            if meta.is_empty() {
                m.remove("metadata");
            }
        }
    }
    v
}

/// A field-manager conflict of an apply.
#[derive(Debug, Clone)]
pub struct Conflict {
    /// The manager as printed (`"kubectl" using apps/v1`).
    pub manager: String,
    /// The manager's sort key.
    pub sort_key: String,
    /// The conflicting field path.
    pub path: Vec<Pe>,
}

/// Records an update (`PUT`, non-apply `PATCH`, `POST`) by `manager` in the managers list.
pub fn record_update(
    managers: &mut Vec<Manager>,
    old: &Value,
    new: &Value,
    shape: &Shape<'_>,
    me: Manager,
) {
    let c = compare(old, new, shape);
    let changed = c.added.union(&c.modified);
    for m in managers.iter_mut() {
        if m.same_identity(&me) {
            continue;
        }
        m.set = m.set.difference(&changed).difference(&c.removed);
    }
    let mut me = me;
    // The manager's entry (and its time) only changes when this update took fields.
    let took = !changed.is_empty();
    match managers.iter().position(|m| m.same_identity(&me)) {
        Some(i) => {
            let prev = managers.remove(i);
            me.set = prev.set.union(&changed).difference(&c.removed);
            if !took {
                me.time = prev.time;
            }
        }
        None => me.set = changed.difference(&c.removed),
    }
    managers.push(me);
    managers.retain(|m| !m.set.is_empty());
}

/// The result of an apply: the new object (tracking view) and the managers.
pub struct Applied {
    /// The merged (and pruned) object.
    pub object: Value,
    /// The managers after the apply.
    pub managers: Vec<Manager>,
}

/// Applies `config` (tracking view, stripped) to `live` (tracking view) as manager `me`.
/// Returns the conflicts when `force` is false and other managers own changed fields.
pub fn apply(
    live: &Value,
    config: &Value,
    shape: &Shape<'_>,
    mut managers: Vec<Manager>,
    mut me: Manager,
    force: bool,
) -> Result<Applied, Vec<Conflict>> {
    let mut merged = merge(live, config, shape);
    let new_set = to_field_set(config, shape);
    let last = managers
        .iter()
        .position(|m| m.same_identity(&me))
        .map(|i| managers.remove(i));
    // Prune what this manager stopped applying and nobody else owns.
    if let Some(last) = &last {
        let others = managers
            .iter()
            .fold(new_set.clone(), |acc, m| acc.union(&m.set));
        let mut gone = last.set.difference(&new_set).paths();
        gone.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in gone {
            if !others.has_prefix(&p) {
                remove_path(&mut merged, &p, shape);
            }
        }
    }
    let c = compare(live, &merged, shape);
    let changed = c.added.union(&c.modified);
    let mut conflicts = Vec::new();
    for m in &managers {
        let clash = m.set.intersection(&changed);
        for p in clash.paths() {
            conflicts.push(Conflict {
                manager: m.printed(),
                sort_key: m.manager.clone(),
                path: p,
            });
        }
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort_by(|a, b| a.sort_key.cmp(&b.sort_key));
        return Err(conflicts);
    }
    for m in managers.iter_mut() {
        m.set = m.set.difference(&changed).difference(&c.removed);
    }
    me.set = new_set;
    managers.push(me);
    managers.retain(|m| !m.set.is_empty());
    Ok(Applied {
        object: merged,
        managers,
    })
}

/// The `Apply failed with N conflict(s)` message of a 409.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if conflicts.len() == 1 {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflicts[0].manager,
            path_string(&conflicts[0].path)
        );
    }
    let mut lines = Vec::new();
    let mut current: Option<&str> = None;
    for c in conflicts {
        if current != Some(c.manager.as_str()) {
            lines.push(format!("conflicts with {}:", c.manager));
            current = Some(c.manager.as_str());
        }
        lines.push(format!("- {}", path_string(&c.path)));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mgr(name: &str, op: &str) -> Manager {
        Manager {
            manager: name.into(),
            operation: op.into(),
            api_version: "apps/v1".into(),
            time: "2025-01-01T00:00:00Z".into(),
            subresource: String::new(),
            set: FieldSet::default(),
        }
    }

    #[test]
    fn fields_v1_round_trips_with_dot_entries() {
        let shape = Shape::builtin("Deployment");
        let obj = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        let set = to_field_set(&obj, &shape);
        let enc = set.to_fields_v1();
        assert_eq!(
            enc,
            json!({"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"a\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
        );
        assert_eq!(FieldSet::from_fields_v1(&enc), Some(set));
    }

    #[test]
    fn apply_conflicts_then_force_takes_ownership() {
        let shape = Shape::builtin("Deployment");
        let live = json!({"spec": {"replicas": 1}});
        let mut other = mgr("kubectl", "Update");
        other
            .set
            .insert(&[Pe::Field("spec".into()), Pe::Field("replicas".into())]);
        let cfg = json!({"spec": {"replicas": 3}});
        let err = apply(
            &live,
            &cfg,
            &shape,
            vec![other.clone()],
            mgr("flux", "Apply"),
            false,
        )
        .err()
        .unwrap_or_else(|| panic!("expected a conflict"));
        assert_eq!(
            conflict_message(&err),
            "Apply failed with 1 conflict: conflict with \"kubectl\" using apps/v1: .spec.replicas"
        );
        let ok = apply(&live, &cfg, &shape, vec![other], mgr("flux", "Apply"), true)
            .unwrap_or_else(|_| panic!("forced apply conflicted"));
        assert_eq!(ok.object["spec"]["replicas"], 3);
        assert_eq!(ok.managers.len(), 1);
    }

    #[test]
    fn same_value_is_shared_and_dropped_fields_are_pruned() {
        let shape = Shape::builtin("ConfigMap");
        let live = json!({"data": {"a": "1", "b": "2"}});
        let mut me = mgr("flux", "Apply");
        me.set = to_field_set(&live, &shape);
        let cfg = json!({"data": {"a": "1"}});
        let out = apply(&live, &cfg, &shape, vec![me.clone()], me, false)
            .unwrap_or_else(|_| panic!("apply conflicted"));
        assert_eq!(out.object, json!({"data": {"a": "1"}}));
    }

    #[test]
    fn update_records_added_maps_with_dot() {
        let shape = Shape::builtin("ConfigMap");
        let mut managers = Vec::new();
        record_update(
            &mut managers,
            &json!({}),
            &json!({"data": {"a": "1"}}),
            &shape,
            mgr("kubectl-create", "Update"),
        );
        assert_eq!(
            managers[0].set.to_fields_v1(),
            json!({"f:data": {".": {}, "f:a": {}}})
        );
    }
}
