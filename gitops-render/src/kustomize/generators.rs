//! ConfigMap and Secret generators, and the name-hash suffix kustomize gives generated objects.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::KustomizeError;
use super::fs::Loader;
use super::resource::{Resource, metadata_mut};
use crate::yaml::{Map, Value};

/// Generator options (`generatorOptions` or an entry's `options`).
#[derive(Debug, Clone, Default)]
pub(crate) struct GenOptions {
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    pub disable_hash: bool,
    pub immutable: bool,
}

fn string_pairs(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.scalar_text().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

impl GenOptions {
    pub fn from_value(v: Option<&Value>) -> GenOptions {
        let Some(m) = v.and_then(Value::as_map) else {
            return GenOptions::default();
        };
        GenOptions {
            labels: string_pairs(m.get("labels")),
            annotations: string_pairs(m.get("annotations")),
            disable_hash: matches!(m.get("disableNameSuffixHash"), Some(Value::Bool(true))),
            immutable: matches!(m.get("immutable"), Some(Value::Bool(true))),
        }
    }

    /// Local options win over global ones.
    pub fn merged_with_global(mut self, global: &GenOptions) -> GenOptions {
        for (k, v) in &global.labels {
            if !self.labels.iter().any(|(lk, _)| lk == k) {
                self.labels.push((k.clone(), v.clone()));
            }
        }
        for (k, v) in &global.annotations {
            if !self.annotations.iter().any(|(lk, _)| lk == k) {
                self.annotations.push((k.clone(), v.clone()));
            }
        }
        self.disable_hash |= global.disable_hash;
        self.immutable |= global.immutable;
        self
    }
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Seq(s)) => s.iter().filter_map(Value::scalar_text).collect(),
        Some(Value::Str(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn remove_quotes(s: &str) -> &str {
    let b = s.as_bytes();
    if b.len() < 2 || b[0] != b[b.len() - 1] {
        return s;
    }
    if b[0] == b'"' || b[0] == b'\'' {
        return &s[1..s.len() - 1];
    }
    s
}

fn is_env_var_name(k: &str) -> bool {
    !k.is_empty()
        && !k.as_bytes()[0].is_ascii_digit()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Reads the key/value pairs of a generator entry (envs, then literals, then files).
fn load_pairs(ldr: &Loader, name: &str, m: &Map) -> Result<Vec<(String, Vec<u8>)>, KustomizeError> {
    let gerr = |message: String| KustomizeError::Generator {
        name: name.to_string(),
        message,
    };
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut envs = str_list(m.get("envs"));
    if let Some(e) = m.get("env").and_then(Value::as_str)
        && !e.is_empty()
    {
        envs.push(e.to_string());
    }
    for env in envs {
        let (p, bytes) = ldr.read(&env)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| gerr(format!("env file {} is not UTF-8", p.display())))?;
        for (i, line) in text.lines().enumerate() {
            let line = if i == 0 {
                line.trim_start_matches('\u{feff}')
            } else {
                line
            };
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = match line.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (line.to_string(), String::new()),
            };
            if !is_env_var_name(&k) {
                return Err(gerr(format!(
                    "invalid key {k:?} in env file {} line {}",
                    p.display(),
                    i + 1
                )));
            }
            pairs.push((k, v.into_bytes()));
        }
    }
    for lit in str_list(m.get("literals")) {
        if lit.starts_with('=') {
            return Err(gerr(format!(
                "invalid literal source {lit}, expected key=value"
            )));
        }
        let Some((k, v)) = lit.split_once('=') else {
            return Err(gerr(format!(
                "invalid literal source {lit}, expected key=value"
            )));
        };
        pairs.push((k.to_string(), remove_quotes(v).as_bytes().to_vec()));
    }
    for f in str_list(m.get("files")) {
        let (key, path) = match f.split_once('=') {
            Some((k, p)) => {
                if k.is_empty() {
                    return Err(gerr(format!("key name for file path {p} missing")));
                }
                (k.to_string(), p.to_string())
            }
            None => {
                let base = std::path::Path::new(&f)
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (base, f.clone())
            }
        };
        let resolved = ldr.resolve(&path, true)?;
        if resolved.is_dir() {
            return Err(gerr(format!("file sources: {path} is a directory")));
        }
        let (_, bytes) = ldr.read(&path)?;
        pairs.push((key, bytes));
    }
    let mut seen = std::collections::HashSet::new();
    for (k, _) in &pairs {
        if !seen.insert(k.clone()) {
            return Err(gerr(format!(
                "cannot add key {k}, another key by that name already exists"
            )));
        }
    }
    Ok(pairs)
}

/// Base64 as kustomize writes Secret data: lines of 70 characters when longer than one line.
pub(crate) fn encode_base64(data: &[u8]) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(data);
    const LINE: usize = 70;
    let lines = enc.len() / LINE + 1;
    if lines <= 1 {
        return enc;
    }
    let mut out = String::with_capacity(enc.len() + lines);
    for chunk in enc.as_bytes().chunks(LINE) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Generates one ConfigMap (`secret == false`) or Secret from a generator entry.
pub(crate) fn generate(
    ldr: &Loader,
    entry: &Value,
    secret: bool,
    global: &GenOptions,
    default_ns: Option<&str>,
) -> Result<Resource, KustomizeError> {
    let m = entry.as_map().ok_or_else(|| KustomizeError::Generator {
        name: String::new(),
        message: "generator entry must be a mapping".into(),
    })?;
    let name = m
        .get("name")
        .and_then(Value::scalar_text)
        .unwrap_or_default();
    let ns = m
        .get("namespace")
        .and_then(Value::scalar_text)
        .or(default_ns.map(str::to_string))
        .unwrap_or_default();
    let pairs = load_pairs(ldr, &name, m)?;
    let opts = GenOptions::from_value(m.get("options")).merged_with_global(global);
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), Value::Str("v1".into()));
    obj.insert(
        "kind".into(),
        Value::Str(if secret { "Secret" } else { "ConfigMap" }.into()),
    );
    let mut md = Map::new();
    md.insert("name".into(), Value::Str(name.clone()));
    if !ns.is_empty() {
        md.insert("namespace".into(), Value::Str(ns));
    }
    if !opts.labels.is_empty() {
        md.insert(
            "labels".into(),
            Value::Map(
                opts.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::Str(v.clone())))
                    .collect(),
            ),
        );
    }
    if !opts.annotations.is_empty() {
        md.insert(
            "annotations".into(),
            Value::Map(
                opts.annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::Str(v.clone())))
                    .collect(),
            ),
        );
    }
    obj.insert("metadata".into(), Value::Map(md));
    let mut data = Map::new();
    let mut binary = Map::new();
    for (k, v) in pairs {
        if secret {
            data.insert(k, Value::Str(encode_base64(&v)));
        } else {
            match String::from_utf8(v) {
                Ok(s) => {
                    data.insert(k, Value::Str(s));
                }
                Err(e) => {
                    binary.insert(k, Value::Str(encode_base64(e.as_bytes())));
                }
            }
        }
    }
    if !data.is_empty() {
        obj.insert("data".into(), Value::Map(data));
    }
    if !binary.is_empty() {
        obj.insert("binaryData".into(), Value::Map(binary));
    }
    if secret {
        let ty = m
            .get("type")
            .and_then(Value::scalar_text)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "Opaque".into());
        obj.insert("type".into(), Value::Str(ty));
    }
    if opts.immutable {
        obj.insert("immutable".into(), Value::Bool(true));
    }
    let mut r = Resource::new(Value::Map(obj), None);
    r.needs_hash = !opts.disable_hash;
    r.generated = true;
    r.behavior = m
        .get("behavior")
        .and_then(Value::scalar_text)
        .filter(|b| !b.is_empty());
    if let Some(b) = &r.behavior
        && !matches!(b.as_str(), "create" | "merge" | "replace")
    {
        return Err(KustomizeError::Generator {
            name,
            message: format!("invalid behavior {b:?}"),
        });
    }
    Ok(r)
}

/// Merges labels/annotations (generated wins) and takes the old object's identity.
pub(crate) fn merge_generated(new: &mut Resource, old: &Resource, merge_data: bool) {
    for field in ["labels", "annotations"] {
        let mut merged: Map = old
            .value
            .get_path(&["metadata", field])
            .and_then(Value::as_map)
            .cloned()
            .unwrap_or_default();
        if let Some(n) = new
            .value
            .get_path(&["metadata", field])
            .and_then(Value::as_map)
        {
            for (k, v) in n {
                merged.insert(k.clone(), v.clone());
            }
        }
        if !merged.is_empty() {
            metadata_mut(new.map_mut()).insert(field.into(), Value::Map(merged));
        }
    }
    if merge_data {
        for field in ["data", "binaryData"] {
            let Some(od) = old.value.get(field).and_then(Value::as_map) else {
                continue;
            };
            let mut merged = od.clone();
            if let Some(nd) = new.value.get(field).and_then(Value::as_map) {
                for (k, v) in nd {
                    merged.insert(k.clone(), v.clone());
                }
            }
            new.map_mut().insert(field.into(), Value::Map(merged));
        }
    }
    let name = old.name().to_string();
    let ns = old.namespace().to_string();
    let md = metadata_mut(new.map_mut());
    md.insert("name".into(), Value::Str(name));
    if ns.is_empty() {
        md.shift_remove("namespace");
    } else {
        md.insert("namespace".into(), Value::Str(ns));
    }
    new.prev = old.prev.clone();
    new.needs_hash = old.needs_hash;
    new.lineage = old.lineage.clone();
    new.origin = old.origin.clone();
    new.gen_origin = old.gen_origin.clone();
    new.transforms = old.transforms.clone();
    new.ref_vars = old.ref_vars.clone();
}

/// Go's `encoding/json` string escaping (HTML-safe).
fn go_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `json.Marshal` of a decoded value (map keys sorted).
pub(crate) fn go_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::UInt(u) => out.push_str(&u.to_string()),
        Value::Float(f) => out.push_str(
            &crate::yaml::Value::Float(*f)
                .scalar_text()
                .unwrap_or_default(),
        ),
        Value::Str(s) => go_json_string(s, out),
        Value::Seq(s) => {
            out.push('[');
            for (i, e) in s.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(e, out);
            }
            out.push(']');
        }
        Value::Map(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(k, out);
                out.push(':');
                go_json(&m[k], out);
            }
            out.push('}');
        }
    }
}

/// The hash suffix kustomize appends to a generated object's name.
pub(crate) fn name_hash(r: &Resource) -> String {
    let mut m = Map::new();
    let kind = r.kind();
    let encoded = match kind {
        "ConfigMap" | "Secret" => {
            m.insert("kind".into(), Value::Str(kind.into()));
            // kustomize v5's hasher reads the name from a field path that does not exist, so
            // the name it hashes is always empty (verified against kubectl kustomize).
            m.insert("name".into(), Value::Str(String::new()));
            if kind == "Secret" {
                m.insert(
                    "type".into(),
                    r.value
                        .get("type")
                        .cloned()
                        .unwrap_or(Value::Str(String::new())),
                );
            }
            m.insert(
                "data".into(),
                r.value
                    .get("data")
                    .cloned()
                    .filter(|d| !d.is_null())
                    .unwrap_or(Value::Str(String::new())),
            );
            if kind == "ConfigMap"
                && let Some(b) = r.value.get("binaryData").filter(|b| !b.is_null())
            {
                m.insert("binaryData".into(), b.clone());
            }
            if let Some(Value::Bool(b)) = r.value.get("immutable") {
                m.insert("immutable".into(), Value::Bool(*b));
            }
            let mut s = String::new();
            go_json(&Value::Map(m), &mut s);
            s
        }
        _ => {
            let mut s = String::new();
            go_json(&r.value, &mut s);
            s
        }
    };
    let digest = Sha256::digest(encoded.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex[..10]
        .chars()
        .map(|c| match c {
            '0' => 'g',
            '1' => 'h',
            '3' => 'k',
            'a' => 'm',
            'e' => 't',
            c => c,
        })
        .collect()
}
