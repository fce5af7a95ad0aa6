//! CustomResourceDefinitions: serving their kinds, their status conditions, structural-schema
//! pruning, defaulting and validation of custom resources.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{
    registry::{self, ResourceType},
    server::now,
    status::{self, Cause},
    store::State,
};

/// The finalizer kube-apiserver puts on every CRD to delete its objects first.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

fn is_crd(rt: &ResourceType) -> bool {
    rt.group == "apiextensions.k8s.io" && rt.kind == "CustomResourceDefinition"
}

/// Maintains a CRD's status (NamesAccepted, Established, acceptedNames, storedVersions) and
/// its cleanup finalizer.
pub fn on_write(rt: &ResourceType, obj: &mut Value) {
    if !is_crd(rt) {
        return;
    }
    let deleting = obj["metadata"].get("deletionTimestamp").is_some();
    if !deleting {
        let fins = obj["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !fins.iter().any(|f| f == CLEANUP_FINALIZER) && obj["metadata"].get("uid").is_some() {
            let mut f = fins;
            f.push(json!(CLEANUP_FINALIZER));
            obj["metadata"]["finalizers"] = Value::Array(f);
        }
    }
    let names = obj["spec"]["names"].clone();
    let mut accepted = Map::new();
    for k in [
        "plural",
        "singular",
        "shortNames",
        "kind",
        "listKind",
        "categories",
    ] {
        if let Some(v) = names.get(k) {
            accepted.insert(k.into(), v.clone());
        }
    }
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    let status = &mut obj["status"];
    status["acceptedNames"] = Value::Object(accepted);
    let ts = now();
    let existing: Vec<Value> = status["conditions"].as_array().cloned().unwrap_or_default();
    let cond = |t: &str, s: &str, reason: &str, msg: &str| -> Value {
        let prev = existing.iter().find(|c| c["type"] == t);
        let ltt = match prev {
            Some(p) if p["status"] == s => p["lastTransitionTime"].clone(),
            _ => json!(ts),
        };
        json!({"type": t, "status": s, "lastTransitionTime": ltt, "reason": reason, "message": msg})
    };
    let mut conds = vec![
        cond("NamesAccepted", "True", "NoConflicts", "no conflicts found"),
        cond(
            "Established",
            "True",
            "InitialNamesAccepted",
            "the initial names have been accepted",
        ),
    ];
    if deleting {
        conds.push(cond(
            "Terminating",
            "True",
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
        ));
    }
    status["conditions"] = Value::Array(conds);
    let mut stored: Vec<Value> = status["storedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for v in obj["spec"]["versions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        if v["storage"].as_bool() == Some(true) && !stored.contains(&v["name"]) {
            stored.push(v["name"].clone());
        }
    }
    obj["status"]["storedVersions"] = Value::Array(stored);
}

/// After a CRD is stored: (re)register the kinds it serves.
pub fn after_write(st: &mut State, rt: &ResourceType, stored: &Arc<Value>) {
    if !is_crd(rt) {
        return;
    }
    let name = stored["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    st.types.retain(|t| t.crd.as_deref() != Some(name.as_str()));
    st.types.extend(registry::from_crd(stored));
}

/// After a CRD is gone: stop serving its kinds and drop any objects left.
pub fn after_delete(st: &mut State, rt: &ResourceType, gone: &Arc<Value>) {
    if !is_crd(rt) {
        return;
    }
    let name = gone["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let group = gone["spec"]["group"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let plural = gone["spec"]["names"]["plural"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    st.types.retain(|t| t.crd.as_deref() != Some(name.as_str()));
    let res = (group, plural);
    let keys: Vec<_> = st
        .objects
        .get(&res)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    for k in keys {
        st.remove(&res, &k);
    }
}

/// Validates a CRD object.
pub fn validate_crd(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = &obj["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if group.is_empty() {
        causes.push(status::required("spec.group", ""));
    } else if !group.contains('.') {
        causes.push(status::invalid_value(
            "spec.group",
            &json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        causes.push(status::required("spec.names.plural", ""));
    }
    if spec["names"]["kind"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        causes.push(status::required("spec.names.kind", ""));
    }
    if !matches!(spec["scope"].as_str(), Some("Namespaced" | "Cluster")) {
        causes.push(status::not_supported(
            "spec.scope",
            &spec["scope"],
            &["Cluster".into(), "Namespaced".into()],
        ));
    }
    if name != format!("{plural}.{group}") {
        causes.push(status::invalid_value(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        causes.push(status::invalid_value(
            "spec.versions",
            &json!([]),
            "must have exactly one version marked as storage version",
        ));
    } else if versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count()
        != 1
    {
        causes.push(status::invalid_value(
            "spec.versions",
            &spec["versions"],
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        if v["schema"]["openAPIV3Schema"].is_null() {
            causes.push(status::required(
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "schemas are required",
            ));
        }
    }
    if let Some(o) = old {
        if o["spec"]["group"] != spec["group"] {
            causes.push(status::invalid_value(
                "spec.group",
                &spec["group"],
                "field is immutable",
            ));
        }
        if o["spec"]["scope"] != spec["scope"] {
            causes.push(status::invalid_value(
                "spec.scope",
                &spec["scope"],
                "field is immutable",
            ));
        }
    }
    causes
}

fn preserves(s: &Value) -> bool {
    s["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true)
}

/// Prunes fields the schema does not declare and applies schema defaults. Returns the pruned
/// field paths.
pub fn prune_and_default(rt: &ResourceType, obj: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    let Some(schema) = rt.schema.as_ref() else {
        return pruned;
    };
    if let Some(m) = obj.as_object_mut() {
        let props = schema["properties"].as_object();
        let keys: Vec<String> = m.keys().cloned().collect();
        for k in keys {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match props.and_then(|p| p.get(&k)) {
                Some(s) => {
                    if let Some(child) = m.get_mut(&k) {
                        walk(child, s, &k, &mut pruned);
                    }
                }
                None if preserves(schema) => {}
                None => {
                    m.remove(&k);
                    pruned.push(k);
                }
            }
        }
        if let Some(props) = props {
            for (k, s) in props {
                if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if !m.contains_key(k)
                    && let Some(d) = s.get("default")
                {
                    let mut d = d.clone();
                    walk(&mut d, s, k, &mut pruned);
                    m.insert(k.clone(), d);
                }
            }
        }
    }
    pruned
}

fn walk(v: &mut Value, s: &Value, path: &str, pruned: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if s["x-kubernetes-embedded-resource"].as_bool() == Some(true) {
                // apiVersion, kind and metadata of embedded objects are kept.
            }
            let props = s["properties"].as_object();
            let addl = s.get("additionalProperties");
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let child_path = format!("{path}.{k}");
                if let Some(cs) = props.and_then(|p| p.get(&k)) {
                    if let Some(c) = m.get_mut(&k) {
                        walk(c, cs, &child_path, pruned);
                    }
                } else if let Some(a) = addl.filter(|a| a.is_object()) {
                    if let Some(c) = m.get_mut(&k) {
                        walk(c, a, &child_path, pruned);
                    }
                } else if addl.and_then(Value::as_bool) == Some(true)
                    || preserves(s)
                    || s["x-kubernetes-embedded-resource"].as_bool() == Some(true)
                        && matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                {
                } else {
                    m.remove(&k);
                    pruned.push(child_path);
                }
            }
            if let Some(props) = props {
                for (k, cs) in props {
                    if !m.contains_key(k)
                        && let Some(d) = cs.get("default")
                    {
                        let mut d = d.clone();
                        walk(&mut d, cs, &format!("{path}.{k}"), pruned);
                        m.insert(k.clone(), d);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item, is, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

/// Validates a custom resource against its schema.
pub fn validate(rt: &ResourceType, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(schema) = rt.schema.as_ref() else {
        return causes;
    };
    if let Some(m) = obj.as_object() {
        let props = schema["properties"].as_object();
        for (k, v) in m {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(s) = props.and_then(|p| p.get(k)) {
                check(v, s, k, &mut causes);
            }
        }
        for r in schema["required"].as_array().into_iter().flatten() {
            if let Some(r) = r.as_str()
                && !m.contains_key(r)
            {
                causes.push(status::required(r, ""));
            }
        }
    }
    causes.sort_by(|a, b| a.field.cmp(&b.field));
    causes
}

fn type_ok(v: &Value, ty: &str) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

fn check(v: &Value, s: &Value, path: &str, causes: &mut Vec<Cause>) {
    if v.is_null() {
        if s["nullable"].as_bool() != Some(true) {
            let ty = s["type"].as_str().unwrap_or("object");
            causes.push(Cause {
                reason: "FieldValueTypeInvalid".into(),
                message: format!(
                    "Invalid value: \"null\": {path} in body must be of type {ty}: \"null\""
                ),
                field: path.into(),
            });
        }
        return;
    }
    if s["x-kubernetes-int-or-string"].as_bool() == Some(true) {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            causes.push(Cause {
                reason: "FieldValueTypeInvalid".into(),
                message: format!(
                    "Invalid value: {}: {path} in body must be of type integer,string: {}",
                    status::go_value(v),
                    json_type(v)
                ),
                field: path.into(),
            });
        }
        return;
    }
    if let Some(ty) = s["type"].as_str()
        && !type_ok(v, ty)
    {
        causes.push(Cause {
            reason: "FieldValueTypeInvalid".into(),
            message: format!(
                "Invalid value: {:?}: {path} in body must be of type {ty}: {:?}",
                json_type(v),
                json_type(v)
            ),
            field: path.into(),
        });
        return;
    }
    if let Some(e) = s["enum"].as_array()
        && !e.contains(v)
    {
        let supported: Vec<String> = e
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect();
        causes.push(status::not_supported(path, v, &supported));
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = s["minimum"].as_f64()
            && n < min
        {
            causes.push(status::invalid_value(
                path,
                v,
                &format!(
                    "{path} in body should be greater than or equal to {}",
                    num(&s["minimum"])
                ),
            ));
        }
        if let Some(max) = s["maximum"].as_f64()
            && n > max
        {
            causes.push(status::invalid_value(
                path,
                v,
                &format!(
                    "{path} in body should be less than or equal to {}",
                    num(&s["maximum"])
                ),
            ));
        }
    }
    if let Some(st) = v.as_str() {
        let len = st.chars().count() as u64;
        if let Some(max) = s["maxLength"].as_u64()
            && len > max
        {
            causes.push(Cause {
                reason: "FieldValueTooLong".into(),
                message: format!("Too long: may not be more than {max} bytes"),
                field: path.into(),
            });
        }
        if let Some(pattern) = s["pattern"].as_str()
            && let Ok(re) = regex::Regex::new(pattern)
            && !re.is_match(st)
        {
            causes.push(status::invalid_value(
                path,
                v,
                &format!("{path} in body should match '{pattern}'"),
            ));
        }
        if let Some(min) = s["minLength"].as_u64()
            && len < min
        {
            causes.push(status::invalid_value(
                path,
                v,
                &format!("{path} in body should be at least {min} chars long"),
            ));
        }
    }
    match v {
        Value::Object(m) => {
            let props = s["properties"].as_object();
            for (k, c) in m {
                let cp = format!("{path}.{k}");
                if let Some(cs) = props.and_then(|p| p.get(k)) {
                    check(c, cs, &cp, causes);
                } else if let Some(a) = s.get("additionalProperties").filter(|a| a.is_object()) {
                    check(c, a, &cp, causes);
                }
            }
            for r in s["required"].as_array().into_iter().flatten() {
                if let Some(r) = r.as_str()
                    && !m.contains_key(r)
                {
                    causes.push(status::required(&format!("{path}.{r}"), ""));
                }
            }
        }
        Value::Array(items) => {
            if let Some(max) = s["maxItems"].as_u64()
                && items.len() as u64 > max
            {
                causes.push(Cause {
                    reason: "FieldValueTooMany".into(),
                    message: format!("Too many: {}: must have at most {max} items", items.len()),
                    field: path.into(),
                });
            }
            if let Some(min) = s["minItems"].as_u64()
                && (items.len() as u64) < min
            {
                causes.push(status::invalid_value(
                    path,
                    &json!(items.len()),
                    &format!("{path} in body should have at least {min} items"),
                ));
            }
            if let Some(is) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item, is, &format!("{path}[{i}]"), causes);
                }
            }
        }
        _ => {}
    }
}

fn num(v: &Value) -> String {
    v.to_string()
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(schema: Value) -> ResourceType {
        let crd = json!({"metadata": {"name": "foos.example.com"}, "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Foo", "plural": "foos"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema}}]}});
        registry::from_crd(&crd).remove(0)
    }

    #[test]
    fn prunes_unknown_fields_and_applies_defaults() {
        let r = rt(
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "size": {"type": "integer", "default": 3}, "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}),
        );
        let mut obj = json!({"apiVersion": "example.com/v1", "kind": "Foo", "metadata": {"name": "a"},
            "spec": {"bogus": 1, "free": {"x": 1}}, "extra": true});
        let pruned = prune_and_default(&r, &mut obj);
        assert_eq!(pruned, vec!["spec.bogus".to_string(), "extra".to_string()]);
        assert_eq!(obj["spec"], json!({"free": {"x": 1}, "size": 3}));
    }

    #[test]
    fn validates_types_required_and_enums() {
        let r = rt(
            json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["mode"], "properties": {
            "size": {"type": "integer"}, "mode": {"type": "string", "enum": ["a", "b"]}}}}}),
        );
        let c = validate(&r, &json!({"spec": {"size": "x"}}));
        let msgs: Vec<String> = c
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            msgs,
            vec![
                "spec.mode: Required value".to_string(),
                "spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\"".to_string()
            ]
        );
        let c = validate(&r, &json!({"spec": {"mode": "c"}}));
        assert_eq!(
            c[0].message,
            "Unsupported value: \"c\": supported values: \"a\", \"b\""
        );
    }
}
