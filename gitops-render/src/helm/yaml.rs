//! YAML and JSON as Helm reads and writes them.
//!
//! Reading follows `sigs.k8s.io/yaml` on top of go-yaml v2: plain scalars resolve with YAML 1.1
//! rules (`yes`/`on` are booleans, `0777` is octal), then the tree goes through JSON, so every
//! number becomes a `float64` and every key a string. Writing (`toYaml`) is `json.Marshal`
//! followed by go-yaml v2's emitter: sorted keys ("natural" order), 2-space indentation,
//! sequences not indented under their key, and lines folded past 80 columns.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

use saphyr_parser::{Event, Parser, ScalarStyle};

use super::value::{Value, format_float_g, format_float_json};

/// A YAML or JSON document that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError(pub String);

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// A node before JSON conversion: go-yaml v2's view (ints stay ints, keys may be non-strings).
#[derive(Clone, Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// Parses every document of a YAML stream the way `sigs.k8s.io/yaml` does (numbers are
/// `float64`). Empty documents are `Nil`.
pub fn parse_all(src: &str) -> Result<Vec<Value>, YamlError> {
    let nodes = parse_nodes(src)?;
    Ok(nodes
        .into_iter()
        .map(|n| into_json_value(n, true))
        .collect())
}

/// Parses the first document of a YAML stream as `sigs.k8s.io/yaml.Unmarshal` does.
pub fn parse(src: &str) -> Result<Value, YamlError> {
    // Plain block YAML (nearly every values file) is read line by line.
    if let Some(root) = lines::parse(src) {
        return Ok(into_json_value(root, true));
    }
    let nodes = parse_nodes(src)?;
    Ok(nodes
        .into_iter()
        .next()
        .map(|n| into_json_value(n, true))
        .unwrap_or(Value::Nil))
}

/// Parses the first document like [`parse`] (same errors), converting only the named
/// top-level keys: what a caller reading a document's head (`kind`, `metadata`) needs.
/// The whole stream is still read (and its errors reported), but no tree is built for the
/// values of other keys nor for later documents.
pub fn parse_keys(src: &str, keys: &[&str]) -> Result<Value, YamlError> {
    let nodes = match parse_nodes_with(src, Some(keys)) {
        Ok(nodes) => nodes,
        // An anchor or alias where nothing was built: read it all, as `parse` does.
        Err(Stop::Unsure) => parse_nodes(src)?,
        Err(Stop::Error(e)) => return Err(e),
    };
    Ok(match nodes.into_iter().next() {
        Some(Node::Map(items)) => {
            let items = items
                .into_iter()
                .filter(|(k, _)| matches!(k, Node::Str(s) if keys.contains(&s.as_str())))
                .collect();
            into_json_value(Node::Map(items), true)
        }
        Some(n) => into_json_value(n, true),
        None => Value::Nil,
    })
}

/// Parses the first document keeping integers as `Int` (go-yaml v2 decoding into structs,
/// as Helm reads `Chart.yaml`).
pub fn parse_typed(src: &str) -> Result<Value, YamlError> {
    let nodes = parse_nodes(src)?;
    Ok(nodes
        .into_iter()
        .next()
        .map(|n| into_json_value(n, false))
        .unwrap_or(Value::Nil))
}

/// Why [`parse_nodes_with`] stopped.
enum Stop {
    /// The stream is not valid YAML.
    Error(YamlError),
    /// A part that was only scanned holds an anchor or an alias, which the kept part might
    /// need (or which might fail): the caller reads the whole stream instead.
    Unsure,
}

fn parse_nodes(src: &str) -> Result<Vec<Node>, YamlError> {
    match parse_nodes_with(src, None) {
        Ok(nodes) => Ok(nodes),
        Err(Stop::Error(e)) => Err(e),
        Err(Stop::Unsure) => Err(YamlError(
            "error converting YAML to JSON: internal: nothing to skip".into(),
        )),
    }
}

/// The documents of a stream as nodes. With `keep`, only the first document is built and,
/// when its root is a mapping, only the values of the top-level keys named; every other
/// part is scanned (its errors count) but not built.
fn parse_nodes_with(src: &str, keep: Option<&[&str]>) -> Result<Vec<Node>, Stop> {
    let mut parser = Parser::new_from_str(src);
    let mut docs = Vec::new();
    let mut anchors: BTreeMap<usize, Node> = BTreeMap::new();
    // Stack of containers being built.
    enum Frame {
        Seq(Vec<Node>, usize),
        Map(Vec<(Node, Node)>, Option<Node>, usize),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut doc_root: Option<Node> = None;
    // Skipping a node: the nesting inside it so far (`Some(0)`: the next node is skipped).
    let mut skipping: Option<usize> = None;
    for item in parser.by_ref() {
        let (ev, span) = item.map_err(|e| {
            Stop::Error(YamlError(format!(
                "error converting YAML to JSON: yaml: line {}: {}",
                e.marker().line(),
                e.info()
            )))
        })?;
        if keep.is_some() {
            // After the first document, nothing is built.
            if !docs.is_empty() && skipping.is_none() {
                skipping = Some(0);
            }
            if let Some(level) = skipping.as_mut() {
                match &ev {
                    Event::Alias(_) => return Err(Stop::Unsure),
                    Event::Scalar(_, _, a, _)
                    | Event::SequenceStart(a, _)
                    | Event::MappingStart(a, _)
                        if *a != 0 =>
                    {
                        return Err(Stop::Unsure);
                    }
                    Event::SequenceStart(..) | Event::MappingStart(..) => *level += 1,
                    Event::SequenceEnd | Event::MappingEnd => *level = level.saturating_sub(1),
                    _ => {}
                }
                let node_done = matches!(
                    ev,
                    Event::Scalar(..) | Event::SequenceEnd | Event::MappingEnd
                );
                if docs.is_empty() && *level == 0 && node_done {
                    skipping = None;
                }
                continue;
            }
        }
        let mut complete: Option<(Node, usize)> = None;
        match ev {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
            Event::DocumentStart(_) => doc_root = None,
            Event::DocumentEnd => docs.push(doc_root.take().unwrap_or(Node::Null)),
            Event::Alias(id) => {
                let n = anchors.get(&id).cloned().ok_or_else(|| {
                    Stop::Error(YamlError(format!(
                        "error converting YAML to JSON: yaml: line {}: unknown anchor referenced",
                        span.start.line()
                    )))
                })?;
                complete = Some((n, 0));
            }
            Event::Scalar(v, style, anchor, tag) => {
                let n = resolve_scalar(v, style, tag.as_ref().map(|t| t.suffix.as_str()));
                complete = Some((n, anchor));
            }
            Event::SequenceStart(anchor, _) => stack.push(Frame::Seq(Vec::new(), anchor)),
            Event::MappingStart(anchor, _) => stack.push(Frame::Map(Vec::new(), None, anchor)),
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, anchor)) = stack.pop() {
                    complete = Some((Node::Seq(items), anchor));
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(items, _, anchor)) = stack.pop() {
                    complete = Some((Node::Map(merge_keys(items)), anchor));
                }
            }
        }
        if let Some((node, anchor)) = complete {
            if anchor != 0 {
                anchors.insert(anchor, node.clone());
            }
            let depth = stack.len();
            match stack.last_mut() {
                None => doc_root = Some(node),
                Some(Frame::Seq(items, _)) => items.push(node),
                Some(Frame::Map(items, key, _)) => match key.take() {
                    None => match keep {
                        // A top-level key whose value is not wanted: skip the value. A merge
                        // key could bring wanted keys in: read everything instead.
                        Some(keys) if depth == 1 => match &node {
                            Node::Str(k) if k == "<<" => return Err(Stop::Unsure),
                            Node::Str(k) if keys.contains(&k.as_str()) => *key = Some(node),
                            _ => skipping = Some(0),
                        },
                        _ => *key = Some(node),
                    },
                    Some(k) => items.push((k, node)),
                },
            }
        }
    }
    Ok(docs)
}

/// Applies YAML merge keys (`<<: *anchor`).
fn merge_keys(items: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    if !items
        .iter()
        .any(|(k, _)| matches!(k, Node::Str(s) if s == "<<"))
    {
        return items;
    }
    let mut out: Vec<(Node, Node)> = Vec::new();
    let mut merged: Vec<(Node, Node)> = Vec::new();
    for (k, v) in items {
        if matches!(&k, Node::Str(s) if s == "<<") {
            match v {
                Node::Map(m) => merged.extend(m),
                Node::Seq(s) => {
                    for m in s {
                        if let Node::Map(m) = m {
                            for (k2, v2) in m {
                                if !merged.iter().any(|(k3, _)| node_key(k3) == node_key(&k2)) {
                                    merged.push((k2, v2));
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        } else {
            out.push((k, v));
        }
    }
    for (k, v) in merged {
        if !out.iter().any(|(k2, _)| node_key(k2) == node_key(&k)) {
            out.push((k, v));
        }
    }
    out
}

fn node_key(n: &Node) -> String {
    match n {
        Node::Null => "null".into(),
        Node::Bool(b) => b.to_string(),
        Node::Int(i) => i.to_string(),
        Node::Uint(u) => u.to_string(),
        Node::Float(f) => format_float_g(*f),
        Node::Str(s) => s.clone(),
        Node::Seq(_) | Node::Map(_) => String::new(),
    }
}

fn resolve_scalar(v: std::borrow::Cow<'_, str>, style: ScalarStyle, tag: Option<&str>) -> Node {
    if let Some(t) = tag {
        match t {
            "str" => return Node::Str(v.into_owned()),
            "int" | "float" | "bool" | "null" => {}
            _ => return Node::Str(v.into_owned()),
        }
    }
    if style != ScalarStyle::Plain && tag.is_none() {
        return Node::Str(v.into_owned());
    }
    resolve_plain_typed(&v).unwrap_or_else(|| Node::Str(v.into_owned()))
}

/// Whether a plain scalar (not empty) reads as a string (not a number, bool or null).
pub(crate) fn plain_is_string(v: &str) -> bool {
    !v.is_empty() && resolve_plain_typed(v).is_none()
}

/// go-yaml v2's `resolve` for a plain scalar that is not a string; `None` for a string (the
/// caller keeps its text).
fn resolve_plain_typed(v: &str) -> Option<Node> {
    Some(match v {
        "" | "~" | "null" | "Null" | "NULL" => Node::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Node::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Node::Bool(false)
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Node::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Node::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Node::Float(f64::NAN),
        _ => return resolve_number(v),
    })
}

/// The number a plain scalar that is no keyword stands for, if any.
fn resolve_number(v: &str) -> Option<Node> {
    let first = v.as_bytes()[0];
    if first.is_ascii_digit() || first == b'+' || first == b'-' || first == b'.' {
        let plain: std::borrow::Cow<'_, str> = if v.contains('_') {
            v.replace('_', "").into()
        } else {
            v.into()
        };
        if let Some(i) = go_parse_int(&plain) {
            return Some(Node::Int(i));
        }
        if let Some(u) = go_parse_uint(&plain) {
            return Some(Node::Uint(u));
        }
        if is_yaml_float(v)
            && let Ok(f) = plain.parse::<f64>()
        {
            return Some(Node::Float(f));
        }
        if let Some(rest) = plain.strip_prefix("0b")
            && let Ok(i) = i64::from_str_radix(rest, 2)
        {
            return Some(Node::Int(i));
        }
        if let Some(rest) = plain.strip_prefix("-0b")
            && let Ok(i) = i64::from_str_radix(rest, 2)
        {
            return Some(Node::Int(-i));
        }
    }
    None
}

/// `strconv.ParseInt(s, 0, 64)`.
pub(crate) fn go_parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(r) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        (16, r)
    } else if let Some(r) = body.strip_prefix("0o").or(body.strip_prefix("0O")) {
        (8, r)
    } else if let Some(r) = body.strip_prefix("0b").or(body.strip_prefix("0B")) {
        (2, r)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mag = u64::from_str_radix(digits, radix).ok()?;
    if neg {
        if mag <= i64::MAX as u64 + 1 {
            Some((mag as i128).wrapping_neg() as i64)
        } else {
            None
        }
    } else if mag <= i64::MAX as u64 {
        Some(mag as i64)
    } else {
        None
    }
}

fn go_parse_uint(s: &str) -> Option<u64> {
    let body = s.strip_prefix('+').unwrap_or(s);
    if body.is_empty() || !body.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    body.parse().ok()
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - s
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Converts a go-yaml node to the engine's value. With `json` (sigs.k8s.io/yaml) numbers
/// become `float64`; without, integers stay `Int`.
/// [`to_json_value`] taking the node: strings and keys move instead of being copied.
fn into_json_value(n: Node, json: bool) -> Value {
    match n {
        Node::Str(s) => Value::Str(Rc::from(s)),
        Node::Seq(items) => Value::from(
            items
                .into_iter()
                .map(|i| into_json_value(i, json))
                .collect::<Vec<_>>(),
        ),
        Node::Map(items) => {
            let mut m = BTreeMap::new();
            for (k, v) in items {
                let key = match k {
                    Node::Str(s) => s,
                    k => node_key(&k),
                };
                m.insert(key, into_json_value(v, json));
            }
            Value::from(m)
        }
        n => to_json_value(&n, json),
    }
}

fn to_json_value(n: &Node, json: bool) -> Value {
    match n {
        Node::Null => Value::Nil,
        Node::Bool(b) => Value::Bool(*b),
        Node::Int(i) => {
            if json {
                Value::Float(*i as f64)
            } else {
                Value::Int(*i)
            }
        }
        Node::Uint(u) => Value::Float(*u as f64),
        Node::Float(f) => Value::Float(*f),
        Node::Str(s) => Value::Str(Rc::from(s.as_str())),
        Node::Seq(items) => Value::from(
            items
                .iter()
                .map(|i| to_json_value(i, json))
                .collect::<Vec<_>>(),
        ),
        Node::Map(items) => {
            let mut m = BTreeMap::new();
            for (k, v) in items {
                m.insert(node_key(k), to_json_value(v, json));
            }
            Value::from(m)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

/// `json.Marshal` of a value (sorted keys, HTML-safe escaping).
pub fn to_json(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, &mut out, None, 0);
    out
}

/// `json.MarshalIndent(v, "", "  ")`.
pub fn to_json_pretty(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, &mut out, Some("  "), 0);
    out
}

fn write_json(v: &Value, out: &mut String, indent: Option<&str>, level: usize) {
    let nl = |out: &mut String, level: usize| {
        if let Some(ind) = indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    };
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) | Value::Int64(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => out.push_str(&format_float_json(*f)),
        Value::Str(s) => json_string(s, out),
        Value::Bytes(b) => {
            use base64::Engine as _;
            json_string(&base64::engine::general_purpose::STANDARD.encode(&**b), out)
        }
        Value::List(l) => {
            if l.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, level + 1);
                write_json(x, out, indent, level + 1);
            }
            nl(out, level);
            out.push(']');
        }
        Value::Map(m) => {
            let m = m.borrow();
            if m.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, level + 1);
                json_string(k, out);
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                write_json(x, out, indent, level + 1);
            }
            nl(out, level);
            out.push('}');
        }
        Value::Object(o) => json_string(&o.display(), out),
    }
}

/// Go's JSON string encoding with HTML escaping.
pub fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `json.Unmarshal` into `interface{}` (numbers are `float64`).
pub fn parse_json(src: &str) -> Result<Value, YamlError> {
    let v: serde_json::Value = serde_json::from_str(src).map_err(|e| YamlError(e.to_string()))?;
    Ok(from_serde_json(&v))
}

/// Converts a `serde_json::Value` (numbers become `float64`).
pub fn from_serde_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => {
            Value::from(a.iter().map(from_serde_json).collect::<Vec<_>>())
        }
        serde_json::Value::Object(o) => Value::from(
            o.iter()
                .map(|(k, v)| (k.clone(), from_serde_json(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Writing: go-yaml v2's emitter, for the values that come out of a JSON round trip.

/// A scalar after the JSON round trip, as go-yaml v2 decoded it.
enum Scalar {
    Null,
    Bool(bool),
    Int(String),
    Float(f64),
    Str(String),
}

/// `toYaml` without the final newline trimmed: `sigs.k8s.io/yaml.Marshal`.
pub fn to_yaml(v: &Value) -> String {
    let mut e = Emitter {
        out: String::new(),
        column: 0,
        indent: -1,
        whitespace: true,
        indention: true,
    };
    e.node(v, Ctx::Root);
    if !e.out.ends_with('\n') {
        e.out.push('\n');
    }
    e.out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Root,
    MapValue,
    SeqItem,
}

struct Emitter {
    out: String,
    column: i64,
    indent: i64,
    whitespace: bool,
    indention: bool,
}

const BEST_WIDTH: i64 = 80;
const BEST_INDENT: i64 = 2;

fn scalar_of(v: &Value) -> Option<Scalar> {
    Some(match v {
        Value::Nil => Scalar::Null,
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Int(i) | Value::Int64(i) => Scalar::Int(i.to_string()),
        Value::Float(f) => {
            let j = format_float_json(*f);
            // JSON text decoded by go-yaml: integers stay integers when they fit.
            if !j.contains(['.', 'e', 'E']) {
                if j.parse::<i64>().is_ok() || j.parse::<u64>().is_ok() {
                    Scalar::Int(j)
                } else {
                    Scalar::Float(j.parse().unwrap_or(*f))
                }
            } else {
                Scalar::Float(*f)
            }
        }
        Value::Str(s) => Scalar::Str(s.to_string()),
        Value::Bytes(b) => {
            use base64::Engine as _;
            Scalar::Str(base64::engine::general_purpose::STANDARD.encode(&**b))
        }
        Value::Object(o) => Scalar::Str(o.display()),
        Value::List(_) | Value::Map(_) => return None,
    })
}

impl Emitter {
    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }
    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }
    fn write_str(&mut self, s: &str) {
        self.out.push_str(s);
        self.column += s.chars().count() as i64;
    }
    fn write_indent(&mut self) {
        let indent = self.indent.max(0);
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(' ');
        }
        self.whitespace = true;
        self.indention = true;
    }
    fn write_indicator(&mut self, ind: &str, need_ws: bool, is_ws: bool, is_indention: bool) {
        if need_ws && !self.whitespace {
            self.put(' ');
        }
        self.write_str(ind);
        self.whitespace = is_ws;
        self.indention = self.indention && is_indention;
    }

    fn node(&mut self, v: &Value, ctx: Ctx) {
        match v {
            Value::Map(m) => {
                let m = m.borrow();
                if m.is_empty() {
                    self.write_indicator("{}", true, false, false);
                    return;
                }
                let saved = self.indent;
                self.indent = if self.indent < 0 {
                    0
                } else {
                    self.indent + BEST_INDENT
                };
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort_by(|a, b| natural_cmp(a, b));
                for k in keys {
                    self.write_indent();
                    self.scalar(&Scalar::Str(k.clone()), true);
                    self.write_indicator(":", false, false, false);
                    let val = &m[k];
                    self.node(val, Ctx::MapValue);
                }
                self.indent = saved;
            }
            Value::List(l) => {
                if l.is_empty() {
                    self.write_indicator("[]", true, false, false);
                    return;
                }
                let saved = self.indent;
                // A sequence that is a mapping value is "indentless".
                let indentless = ctx == Ctx::MapValue && !self.indention;
                self.indent = if self.indent < 0 {
                    0
                } else if indentless {
                    self.indent
                } else {
                    self.indent + BEST_INDENT
                };
                for item in l.iter() {
                    self.write_indent();
                    self.write_indicator("-", true, false, true);
                    self.node(item, Ctx::SeqItem);
                }
                self.indent = saved;
            }
            other => {
                if let Some(s) = scalar_of(other) {
                    let saved = self.indent;
                    self.indent = if self.indent < 0 {
                        BEST_INDENT
                    } else {
                        self.indent + BEST_INDENT
                    };
                    self.scalar(&s, false);
                    self.indent = saved;
                }
            }
        }
    }

    fn scalar(&mut self, s: &Scalar, simple_key: bool) {
        let text: String;
        let (value, mut style) = match s {
            Scalar::Null => ("null", Style::Plain),
            Scalar::Bool(b) => (if *b { "true" } else { "false" }, Style::Plain),
            Scalar::Int(i) => (i.as_str(), Style::Plain),
            Scalar::Float(f) => {
                text = match format_float_g(*f).as_str() {
                    "+Inf" => ".inf".into(),
                    "-Inf" => "-.inf".into(),
                    "NaN" => ".nan".into(),
                    other => other.to_string(),
                };
                (text.as_str(), Style::Plain)
            }
            Scalar::Str(s) => {
                let can_plain = plain_is_str(s) && !is_base60_float(s);
                let style = if s.contains('\n') {
                    Style::Literal
                } else if can_plain {
                    Style::Plain
                } else {
                    Style::Double
                };
                (s.as_str(), style)
            }
        };
        let a = analyze(value);
        if simple_key && a.multiline {
            style = Style::Double;
        }
        if style == Style::Plain && (!a.block_plain_allowed || (value.is_empty() && simple_key)) {
            style = Style::Single;
        }
        if style == Style::Single && !a.single_quoted_allowed {
            style = Style::Double;
        }
        if style == Style::Literal && (!a.block_allowed || simple_key) {
            style = Style::Double;
        }
        let allow_breaks = !simple_key;
        match style {
            Style::Plain => self.write_plain(value, allow_breaks),
            Style::Single => self.write_single(value, allow_breaks),
            Style::Double => self.write_double(value, allow_breaks),
            Style::Literal => self.write_literal(value),
        }
    }

    fn write_plain(&mut self, value: &str, allow_breaks: bool) {
        if !self.whitespace {
            self.put(' ');
        }
        let chars = CharBuf::of(value);
        let mut spaces = false;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == ' ' {
                let next_space = chars.get(i + 1) == Some(&' ');
                if allow_breaks && !spaces && self.column > BEST_WIDTH && !next_space {
                    self.write_indent();
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                self.indention = false;
                spaces = false;
            }
            i += 1;
        }
        self.whitespace = false;
        self.indention = false;
    }

    fn write_single(&mut self, value: &str, allow_breaks: bool) {
        self.write_indicator("'", true, false, false);
        let chars = CharBuf::of(value);
        let mut spaces = false;
        let mut breaks = false;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == ' ' {
                let next_space = chars.get(i + 1) == Some(&' ');
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i > 0
                    && i < chars.len() - 1
                    && !next_space
                {
                    self.write_indent();
                } else {
                    self.put(c);
                }
                spaces = true;
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.put_break();
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                if c == '\'' {
                    self.put('\'');
                }
                self.put(c);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
            i += 1;
        }
        self.write_indicator("'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_double(&mut self, value: &str, allow_breaks: bool) {
        self.write_indicator("\"", true, false, false);
        let chars = CharBuf::of(value);
        let mut spaces = false;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if !is_printable(c) || c == '\u{FEFF}' || is_break(c) || c == '"' || c == '\\' {
                self.put('\\');
                match c {
                    '\0' => self.put('0'),
                    '\x07' => self.put('a'),
                    '\x08' => self.put('b'),
                    '\t' => self.put('t'),
                    '\n' => self.put('n'),
                    '\x0b' => self.put('v'),
                    '\x0c' => self.put('f'),
                    '\r' => self.put('r'),
                    '\x1b' => self.put('e'),
                    '"' => self.put('"'),
                    '\\' => self.put('\\'),
                    '\u{85}' => self.put('N'),
                    '\u{A0}' => self.put('_'),
                    '\u{2028}' => self.put('L'),
                    '\u{2029}' => self.put('P'),
                    c => {
                        let v = c as u32;
                        let s = if v <= 0xFF {
                            format!("x{v:02X}")
                        } else if v <= 0xFFFF {
                            format!("u{v:04X}")
                        } else {
                            format!("U{v:08X}")
                        };
                        self.write_str(&s);
                    }
                }
                spaces = false;
            } else if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i > 0
                    && i < chars.len() - 1
                {
                    self.write_indent();
                    if chars.get(i + 1) == Some(&' ') {
                        self.put('\\');
                    }
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
            i += 1;
        }
        self.write_indicator("\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_literal(&mut self, value: &str) {
        self.write_indicator("|", true, false, false);
        let chars = CharBuf::of(value);
        if chars.first().is_some_and(|c| *c == ' ' || is_break(*c)) {
            self.write_indicator(&BEST_INDENT.to_string(), false, false, false);
        }
        let chomp = match chars.len() {
            0 => Some("-"),
            n => {
                if !is_break(chars[n - 1]) {
                    Some("-")
                } else if n == 1 || is_break(chars[n - 2]) {
                    Some("+")
                } else {
                    None
                }
            }
        };
        if let Some(c) = chomp {
            self.write_indicator(c, false, false, false);
        }
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut breaks = true;
        for &c in chars.iter() {
            if is_break(c) {
                self.put_break();
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                    breaks = false;
                }
                self.put(c);
                self.indention = false;
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

struct Analysis {
    multiline: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// go-yaml v2's `is_printable` (what Helm's `toYaml` emits with): characters beyond the Basic
/// Multilingual Plane are not printable, so a string holding one is double-quoted and the
/// character written as `\UXXXXXXXX`.
fn is_printable(c: char) -> bool {
    let v = c as u32;
    v == 0x0A
        || (0x20..=0x7E).contains(&v)
        || v == 0x85
        || ((0xA0..=0xD7FF).contains(&v))
        || ((0xE000..=0xFFFD).contains(&v) && v != 0xFEFF)
}

thread_local! {
    /// Buffers of chars for [`CharBuf`], kept between scalars.
    static CHAR_BUFS: std::cell::RefCell<Vec<Vec<char>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A scalar's chars in a buffer reused from scalar to scalar (the emitter reads each scalar
/// as chars twice: to choose its style, then to write it).
struct CharBuf(Vec<char>);

impl CharBuf {
    fn of(value: &str) -> CharBuf {
        let mut buf = CHAR_BUFS.with(|b| b.borrow_mut().pop()).unwrap_or_default();
        buf.clear();
        buf.extend(value.chars());
        CharBuf(buf)
    }
}

impl std::ops::Deref for CharBuf {
    type Target = [char];
    fn deref(&self) -> &[char] {
        &self.0
    }
}

impl Drop for CharBuf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        // Very long scalars do not keep their memory.
        if buf.capacity() <= 1 << 16 {
            CHAR_BUFS.with(|b| {
                if let Ok(mut pool) = b.try_borrow_mut()
                    && pool.len() < 8
                {
                    pool.push(buf);
                }
            });
        }
    }
}

fn analyze(value: &str) -> Analysis {
    if value.is_empty() {
        return Analysis {
            multiline: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let chars = CharBuf::of(value);
    let mut block_indicators = false;
    let mut line_breaks = false;
    let mut special = false;
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    if value.starts_with("---") || value.starts_with("...") {
        block_indicators = true;
    }
    let mut preceded_by_ws = true;
    let is_blank = |c: Option<&char>| matches!(c, Some(' ') | Some('\t'));
    let is_blankz = |c: Option<&char>| {
        matches!(c, None | Some(' ') | Some('\t') | Some('\0')) || c.is_some_and(|c| is_break(*c))
    };
    for i in 0..chars.len() {
        let c = chars[i];
        let followed_by_ws = i + 1 >= chars.len() || is_blank(chars.get(i + 1));
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' | '-' if followed_by_ws => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_ws => block_indicators = true,
                '#' if preceded_by_ws => block_indicators = true,
                _ => {}
            }
        }
        if !is_printable(c) {
            special = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i + 1 == chars.len() {
                trailing_space = true;
            }
            if prev_break {
                break_space = true;
            }
            prev_space = true;
            prev_break = false;
        } else if is_break(c) {
            line_breaks = true;
            if i == 0 {
                leading_break = true;
            }
            if i + 1 == chars.len() {
                trailing_break = true;
            }
            if prev_space {
                space_break = true;
            }
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_by_ws = is_blankz(Some(&c));
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
        a.block_allowed = false;
    }
    if line_breaks {
        a.block_plain_allowed = false;
    }
    if block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

/// Whether go-yaml v2's encoder reads the text back as a string when written plain
/// (timestamps and the empty string do not count).
fn plain_is_str(s: &str) -> bool {
    !s.is_empty() && resolve_plain_typed(s).is_none() && !is_timestamp(s)
}

/// go-yaml v2's timestamp formats: `2006-1-2T15:4:5.999999999Z07:00`, `2006-1-2t15:4:5...`,
/// `2006-1-2 15:4:5...`, `2006-1-2`; the shape is
/// `^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(([Tt]| +)[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]*)?(Z|[-+][0-9]{1,2}(:[0-9]{2})?)?)?$`,
/// matched by hand (every repetition is followed by a non-digit, so greedy is exact).
fn is_timestamp(s: &str) -> bool {
    if !timestamp_shape(s) {
        return false;
    }
    // Go's time.Parse validates ranges (month 1-12, day 1-31, hour < 24 ...).
    let date = &s[..s.find(['T', 't', ' ']).unwrap_or(s.len())];
    let mut parts = date.split('-');
    let _y = parts.next();
    let m: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let d: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (1..=12).contains(&m) && (1..=31).contains(&d)
}

fn timestamp_shape(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize, min: usize, max: usize| -> bool {
        let start = *i;
        while *i < b.len() && *i - start < max && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start >= min
    };
    let byte = |i: &mut usize, c: u8| -> bool {
        if b.get(*i) == Some(&c) {
            *i += 1;
            true
        } else {
            false
        }
    };
    {
        if !(digits(&mut i, 4, 4) && byte(&mut i, b'-') && digits(&mut i, 1, 2)) {
            return false;
        }
        if !(byte(&mut i, b'-') && digits(&mut i, 1, 2)) {
            return false;
        }
        if i == b.len() {
            return true;
        }
        if !(byte(&mut i, b'T') || byte(&mut i, b't')) {
            if !byte(&mut i, b' ') {
                return false;
            }
            while byte(&mut i, b' ') {}
        }
        if !(digits(&mut i, 1, 2)
            && byte(&mut i, b':')
            && digits(&mut i, 1, 2)
            && byte(&mut i, b':')
            && digits(&mut i, 1, 2))
        {
            return false;
        }
        if byte(&mut i, b'.') {
            digits(&mut i, 0, usize::MAX);
        }
        if byte(&mut i, b'Z') {
        } else if (byte(&mut i, b'-') || byte(&mut i, b'+'))
            && (!digits(&mut i, 1, 2) || (byte(&mut i, b':') && !digits(&mut i, 2, 2)))
        {
            return false;
        }
        i == b.len()
    }
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`, matched by hand.
fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    if !b.get(i).is_some_and(u8::is_ascii_digit) {
        return false;
    }
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while b.get(i) == Some(&b':') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        match i - start {
            1 => {}
            2 if b[start] <= b'5' => {}
            _ => return false,
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// go-yaml v2's key order: numbers inside strings compare numerically.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    // ASCII keys (nearly all) are compared byte by byte, without collecting chars.
    if a.is_ascii() && b.is_ascii() {
        return natural_order(a.as_bytes(), b.as_bytes());
    }
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    natural_order(&ar, &br)
}

/// A unit of text `natural_cmp` compares: a byte of ASCII text or a char.
trait NatUnit: Copy + Ord {
    fn is_alpha(self) -> bool;
    /// The value of an ASCII digit.
    fn digit(self) -> Option<i64>;
}

impl NatUnit for u8 {
    fn is_alpha(self) -> bool {
        self.is_ascii_alphabetic()
    }
    fn digit(self) -> Option<i64> {
        self.is_ascii_digit().then(|| i64::from(self - b'0'))
    }
}

impl NatUnit for char {
    fn is_alpha(self) -> bool {
        self.is_alphabetic()
    }
    fn digit(self) -> Option<i64> {
        self.is_ascii_digit().then(|| self as i64 - '0' as i64)
    }
}

fn natural_order<T: NatUnit>(ar: &[T], br: &[T]) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let less = |x: &[T], y: &[T]| -> bool {
        let mut i = 0;
        while i < x.len() && i < y.len() {
            if x[i] == y[i] {
                i += 1;
                continue;
            }
            let al = x[i].is_alpha();
            let bl = y[i].is_alpha();
            if al && bl {
                return x[i] < y[i];
            }
            if al || bl {
                return bl;
            }
            let (mut an, mut bn): (i64, i64) = (0, 0);
            if x[i].digit() == Some(0) || y[i].digit() == Some(0) {
                let mut j = i as i64 - 1;
                while j >= 0
                    && let Some(d) = x[j as usize].digit()
                {
                    if d != 0 {
                        an = 1;
                        bn = 1;
                        break;
                    }
                    j -= 1;
                }
            }
            let mut ai = i;
            while ai < x.len()
                && let Some(d) = x[ai].digit()
            {
                an = an.wrapping_mul(10).wrapping_add(d);
                ai += 1;
            }
            let mut bi = i;
            while bi < y.len()
                && let Some(d) = y[bi].digit()
            {
                bn = bn.wrapping_mul(10).wrapping_add(d);
                bi += 1;
            }
            if an != bn {
                return an < bn;
            }
            if ai != bi {
                return ai < bi;
            }
            return x[i] < y[i];
        }
        x.len() < y.len()
    };
    if less(ar, br) {
        Ordering::Less
    } else if less(br, ar) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(src: &str) -> String {
        to_yaml(&parse(src).expect("parse"))
    }

    /// Whatever the line reader accepts, the full parser reads to the same value.
    fn same_value_both_ways(doc: &str) -> bool {
        let Some(fast) = lines::parse(doc) else {
            return false;
        };
        let slow = parse_nodes(doc).map(|n| n.into_iter().next().map(|n| into_json_value(n, true)));
        let fast = into_json_value(fast, true);
        assert_eq!(
            slow.as_ref().ok().and_then(|v| v.as_ref()).map(to_json),
            Some(to_json(&fast)),
            "{doc:?}"
        );
        true
    }

    proptest::proptest! {
        #[test]
        fn line_reader_reads_values_like_the_parser(lines in proptest::collection::vec(proptest::sample::select(vec![
            "a: 1", "a: 010", "a: 1_000", "a: .5", "a: 1e3", "a: true", "a: on", "a: ~", "a: null", "a: x # c",
            "a: x#c", "a: 'it''s'", "a: \"q\"", "a: \"q\\n\"", "a: ''", "a: \"\"", "a: {}", "a: []", "a: [1]",
            "a: {b: 1}", "a:", "a: |", "a: |-", "a: |+", "a: >", "a: |2", "a: | # c", "on: 1", "1.0: x", "'k': v",
            "\"k\": v", "k-1/x.y: v", "<<: {}", "b:", "  c: 1", "  c: |", "    text", "      more", "  # c", "#c",
            "", "  ", "    ", "  - x", "- y", "  - - z", "  - k: v", "    k2: v2", "  -", "    - w", "      deep: 1",
            "   odd: 1", "  é: 1", "\tt: 1", "  o: &a x", "  p: *a", "  q: !!str x", "---", "...", "? x", "  w: a: b",
            "  w: a:", "  v: -1", "  v: - 1", "  v: -", "  u: x y  ", "  s: $x(y)", "  - #c", "  - 'q' # c",
            "   more words", "    1", "      - not a list", "   key: in text", "   ~", "  x: é ü",
            "  y: \u{85}", "  z: a\u{2028}b", "  f: [\"ALL\"]", "  f: [a, 'b', 1, true]", "  f: [a,]",
            "  f: [a,,b]", "  f: [ ]", "  f: [,]", "  f: [a b, c]", "  f: [a:b]", "  f: [a] # c", "  f: [a]x",
            "  - [x, y]", "  f: [\"a,b\"]", "  f: ['a''b']", "  g: { }", "  g: {  }x", "  g: { } # c",
        ]), 0..14)) {
            let doc = lines.join("\n");
            same_value_both_ways(&doc);
            same_value_both_ways(&(doc + "\n"));
        }
    }

    #[test]
    fn line_reader_reads_the_corpus_values_like_the_parser() {
        let cases = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/conformance/helm/cases");
        let mut files = Vec::new();
        let mut dirs = vec![cases.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).expect("corpus").flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "yaml")
                    && !p.ends_with("expected.yaml")
                {
                    files.push(p);
                }
            }
        }
        let (mut read, mut values, mut values_read) = (0, 0, 0);
        for f in &files {
            let Ok(text) = std::fs::read_to_string(f) else {
                continue;
            };
            let is_values = f.ends_with("values.yaml") || f.ends_with("Chart.yaml");
            let fast = same_value_both_ways(&text);
            read += usize::from(fast);
            if !fast && is_values && std::env::var_os("HELM_LINES_MISSES").is_some() {
                eprintln!("MISS {}", f.display());
            }
            if is_values {
                values += 1;
                values_read += usize::from(fast);
            }
            // Broken copies: whatever the line reader accepts, the parser reads alike.
            if is_values {
                for (i, _) in text.match_indices('\n').step_by(7).take(30) {
                    for insert in ["\n  - x", "\nx", " [", ": y", "\n   z: 1", " |", "\n  "] {
                        let mut broken = text.clone();
                        broken.insert_str(i, insert);
                        same_value_both_ways(&broken);
                    }
                }
            }
        }
        eprintln!(
            "{read} of {} YAML files read line by line; values/Chart.yaml: {values_read} of {values}",
            files.len()
        );
        assert!(
            values > 50 && values_read * 10 > values * 6,
            "{values_read} of {values}"
        );
    }

    proptest::proptest! {
        /// ASCII keys are compared byte by byte; the order must be the one of chars.
        #[test]
        fn natural_order_of_bytes_is_that_of_chars(a in "[a0-9B_.-]{0,8}", b in "[a0-9B_.-]{0,8}") {
            let (ac, bc): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
            proptest::prop_assert_eq!(natural_cmp(&a, &b), natural_order(&ac, &bc));
        }

        /// Reading only the head keys gives what reading everything and keeping them gives,
        /// and the same errors.
        #[test]
        fn head_keys_read_like_the_whole_document(
            doc in "(kind: A\n|metadata:\n  name: x\n|  a: &r 1\n|b: \\*r\n|<<: \\{kind: B\\}\n|c: \\[1, \\{d: 2\\}\\]\n|c:\n- 1\n|---\n|e: \\[\n|f: \\*q\n|g: &q x\n|\\? \\[k\\]\n: v\n){0,8}"
        ) {
            const KEYS: &[&str] = &["apiVersion", "kind", "metadata"];
            let fast = parse_keys(&doc, KEYS);
            let slow = parse_nodes(&doc).map(|nodes| match nodes.into_iter().next() {
                Some(Node::Map(items)) => into_json_value(
                    Node::Map(
                        items
                            .into_iter()
                            .filter(|(k, _)| matches!(k, Node::Str(s) if KEYS.contains(&s.as_str())))
                            .collect(),
                    ),
                    true,
                ),
                Some(n) => into_json_value(n, true),
                None => Value::Nil,
            });
            proptest::prop_assert_eq!(
                fast.as_ref().map(Value::to_go_string),
                slow.as_ref().map(Value::to_go_string),
                "{:?}",
                doc
            );
        }
    }

    #[test]
    fn emits_like_go_yaml_v2() {
        assert_eq!(
            y("a: 1\nb: [x, z, 'y']\nc: {}\n"),
            "a: 1\nb:\n- x\n- z\n- \"y\"\nc: {}\n"
        );
        assert_eq!(
            y("a: 'true'\nb: ''\nc: '*.x'\n"),
            "a: \"true\"\nb: \"\"\nc: '*.x'\n"
        );
        assert_eq!(y("a: \"x\\ny\"\n"), "a: |-\n  x\n  y\n");
        assert_eq!(y("- a: 1\n  b: 2\n"), "- a: 1\n  b: 2\n");
        assert_eq!(y("a: 1.5\nb: 1e6\n"), "a: 1.5\nb: 1000000\n");
        assert_eq!(y("a: on\n"), "a: true\n");
        assert_eq!(y("a: '2020-01-01'\n"), "a: \"2020-01-01\"\n");
    }

    #[test]
    fn natural_key_order() {
        let mut keys = vec!["a10", "a2", "b", "A", "a1"];
        keys.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(keys, vec!["A", "a1", "a2", "a10", "b"]);
    }

    proptest::proptest! {
        #[test]
        fn hand_matchers_agree_with_the_patterns(s in proptest::prop_oneof![
            "[0-9:._+TtZ -]{0,24}",
            "[0-9]{3,5}-[0-9]{1,3}-[0-9]{1,3}(([Tt]| {1,2})[0-9]{1,3}:[0-9]{1,2}:[0-9]{1,3}(\\.[0-9]{0,3})?(Z|[-+][0-9]{1,3}(:[0-9]{1,3})?)?)?x?",
            "[-+]?[0-9_]{1,3}(:[0-9]{1,3}){0,3}(\\.[0-9_]{0,2})?",
        ]) {
            let ts = regex::Regex::new(
                r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(([Tt]| +)[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]*)?((Z)|([-+][0-9]{1,2}(:[0-9]{2})?))?)?$",
            ).expect("pattern");
            let b60 = regex::Regex::new(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
                .expect("pattern");
            proptest::prop_assert_eq!(timestamp_shape(&s), ts.is_match(&s), "timestamp {:?}", s);
            proptest::prop_assert_eq!(is_base60_float(&s), b60.is_match(&s), "base60 {:?}", s);
        }
    }

    #[test]
    fn hand_matchers_on_known_shapes() {
        for t in [
            "2001-12-14",
            "2001-12-14t21:59:43.10-05:00",
            "2001-12-14 21:59:43.10-5",
            "2002-12-14T21:59:43Z",
            "2001-1-2  1:2:3.+01:30",
        ] {
            assert!(timestamp_shape(t), "{t}");
        }
        for t in [
            "2001-12-14x",
            "01-12-14",
            "2001-12-14T21:59",
            "2001-12-14T1:2:3+1:3",
            "2001-12-14 21:59:43.10 -5",
        ] {
            assert!(!timestamp_shape(t), "{t}");
        }
        for t in ["190:20:30.15", "-1:59", "+1_0:5:0.", "1:0"] {
            assert!(is_base60_float(t), "{t}");
        }
        for t in ["1:60", "1:", ":1", "1.5", "1:123", "a:1"] {
            assert!(!is_base60_float(t), "{t}");
        }
    }
}

/// A reader for the plain block YAML that values files and `Chart.yaml` nearly always are:
/// one document whose root is a block mapping, with block mappings and sequences at
/// consistent indentation, plain keys, single-line plain and quoted scalars (comments after
/// them), `{}`/`[]`, and literal block scalars. It builds the same nodes as the full parser
/// for what it accepts; anything else (flow collections with content, anchors, aliases,
/// tags, merge keys, folded or multi-line scalars, escapes, tabs, non-ASCII text, odd
/// indentation, ...) gives `None`, and the caller uses the full parser, which reads it or
/// reports the error.
mod lines {
    use super::{Node, ScalarStyle, resolve_scalar};
    use std::borrow::Cow;

    struct Line<'a> {
        indent: usize,
        /// The line after its indentation (for a line in a block scalar: unused).
        content: &'a str,
        raw: &'a str,
    }

    struct Reader<'a> {
        lines: Vec<Line<'a>>,
        at: usize,
        /// Whether the text ends with a line break.
        final_break: bool,
    }

    /// The document's root node, or `None` outside the subset.
    pub(super) fn parse(src: &str) -> Option<Node> {
        if !text_ok(src) {
            return None;
        }
        let lines = src
            .split('\n')
            .map(|raw| {
                let content = raw.trim_start_matches(' ');
                Line {
                    indent: raw.len() - content.len(),
                    content,
                    raw,
                }
            })
            .collect();
        let mut r = Reader {
            lines,
            at: 0,
            final_break: src.ends_with('\n'),
        };
        let first = r.next_significant()?;
        if r.lines[first].indent != 0 || is_dash(r.lines[first].content) {
            return None;
        }
        let root = r.map(0)?;
        if r.next_significant().is_some() || r.at_marker() {
            return None;
        }
        Some(root)
    }

    fn is_dash(content: &str) -> bool {
        content == "-" || content.starts_with("- ")
    }

    /// Text both YAML 1.1 (go-yaml) and 1.2 read alike: printable, no tab or carriage return,
    /// none of 1.1's extra line breaks (U+0085, U+2028, U+2029), no byte order mark.
    fn printable(c: char) -> bool {
        matches!(c, '\n' | '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
            && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
    }

    /// Whether every char is [`printable`] (ASCII checked byte by byte, the rest decoded).
    fn text_ok(src: &str) -> bool {
        let b = src.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c < 0x80 {
                if c != b'\n' && !(0x20..0x7f).contains(&c) {
                    return false;
                }
                i += 1;
            } else {
                let Some(ch) = src[i..].chars().next() else {
                    return false;
                };
                if !printable(ch) {
                    return false;
                }
                i += ch.len_utf8();
            }
        }
        true
    }

    /// Whether a line can start or continue a plain scalar in this reader.
    fn plain_start(b: &[u8]) -> bool {
        match b.first() {
            Some(b'-') => b.len() > 1 && b[1] != b' ',
            Some(&c) => {
                c.is_ascii_alphanumeric()
                    || matches!(
                        c,
                        b'_' | b'.'
                            | b'/'
                            | b'$'
                            | b'('
                            | b')'
                            | b'<'
                            | b'='
                            | b'+'
                            | b'^'
                            | b';'
                            | b'~'
                    )
            }
            None => false,
        }
    }

    impl<'a> Reader<'a> {
        /// Moves to the next line that is neither blank nor a comment; `None` at the end.
        fn next_significant(&mut self) -> Option<usize> {
            while let Some(l) = self.lines.get(self.at) {
                if l.content.is_empty() || l.content.starts_with('#') {
                    self.at += 1;
                    continue;
                }
                if l.indent == 0 && (l.content.starts_with("---") || l.content.starts_with("...")) {
                    // A second document or a document marker: not read here.
                    return None;
                }
                return Some(self.at);
            }
            None
        }

        /// Whether the next significant line exists and is a document marker.
        fn at_marker(&self) -> bool {
            self.lines.get(self.at).is_some_and(|l| {
                l.indent == 0 && (l.content.starts_with("---") || l.content.starts_with("..."))
            })
        }

        /// A block mapping whose keys are at column `ind` (the current line is its first key).
        fn map(&mut self, ind: usize) -> Option<Node> {
            let mut items = Vec::new();
            loop {
                let Some(i) = self.next_significant() else {
                    if self.at_marker() {
                        return None;
                    }
                    break;
                };
                let (indent, content) = (self.lines[i].indent, self.lines[i].content);
                if indent < ind {
                    break;
                }
                if indent > ind || is_dash(content) {
                    return None;
                }
                let (key, rest) = split_key(content)?;
                if matches!(&key, Node::Str(k) if k == "<<") {
                    return None;
                }
                self.at += 1;
                let value = self.value(rest, ind, true)?;
                items.push((key, value));
            }
            Some(Node::Map(items))
        }

        /// A block sequence whose dashes are at column `ind` (the current line is its first).
        fn seq(&mut self, ind: usize) -> Option<Node> {
            let mut items = Vec::new();
            loop {
                let Some(i) = self.next_significant() else {
                    if self.at_marker() {
                        return None;
                    }
                    break;
                };
                let (indent, content) = (self.lines[i].indent, self.lines[i].content);
                if indent < ind || (indent == ind && !is_dash(content)) {
                    break;
                }
                if indent > ind {
                    return None;
                }
                let rest = &content[1..];
                let skip = rest.len() - rest.trim_start_matches(' ').len();
                let rest = &rest[skip..];
                let col = ind + 1 + skip;
                if is_dash(rest) || (!rest.is_empty() && split_key(rest).is_some()) {
                    // A collection starting on the dash's line: read the rest of the line as
                    // a line of its own at its column.
                    self.lines[i].indent = col;
                    self.lines[i].content = rest;
                    let node = if is_dash(rest) {
                        self.seq(col)?
                    } else {
                        self.map(col)?
                    };
                    items.push(node);
                    continue;
                }
                self.at += 1;
                items.push(self.value(rest, ind, false)?);
            }
            Some(Node::Seq(items))
        }

        /// The value after `key:` or `-` (`rest` is the rest of that line, trimmed), the
        /// entry being at column `col`.
        fn value(&mut self, rest: &'a str, col: usize, map_key: bool) -> Option<Node> {
            if rest.starts_with('#') {
                return None;
            }
            if rest.is_empty() {
                let Some(i) = self.next_significant() else {
                    if self.at_marker() {
                        return None;
                    }
                    return Some(Node::Null);
                };
                let (indent, content) = (self.lines[i].indent, self.lines[i].content);
                if indent > col || (map_key && indent == col && is_dash(content)) {
                    return if is_dash(content) {
                        self.seq(indent)
                    } else if split_key(content).is_some() {
                        self.map(indent)
                    } else {
                        None
                    };
                }
                return Some(Node::Null);
            }
            let b = rest.as_bytes();
            match b[0] {
                b'"' | b'\'' => Some(Node::Str(super::one_line_quoted(rest)?.into_owned())),
                b'{' => {
                    after_token(rest[1..].trim_start_matches(' ').strip_prefix('}')?)?;
                    Some(Node::Map(Vec::new()))
                }
                b'[' => {
                    let (items, after) = flow_seq(rest)?;
                    after_token(after)?;
                    Some(Node::Seq(items))
                }
                b'|' => {
                    let chomp = match rest[1..].trim_end_matches(' ') {
                        "" => Chomp::Clip,
                        "-" => Chomp::Strip,
                        _ => return None,
                    };
                    self.literal(col, chomp)
                }
                _ if plain_start(b) => {
                    let (first, commented) = plain_text(rest)?;
                    if commented {
                        return Some(resolve_scalar(
                            Cow::Borrowed(first),
                            ScalarStyle::Plain,
                            None,
                        ));
                    }
                    // Continuation lines (more indented, no blank line between) fold into
                    // the scalar with a space each.
                    let mut text = Cow::Borrowed(first);
                    while let Some(l) = self.lines.get(self.at) {
                        if l.content.is_empty() || l.indent <= col || l.content.starts_with('#') {
                            break;
                        }
                        if !plain_start(l.content.as_bytes()) {
                            return None;
                        }
                        let (more, commented) = plain_text(l.content)?;
                        if commented {
                            return None;
                        }
                        let t = text.to_mut();
                        t.push(' ');
                        t.push_str(more);
                        self.at += 1;
                    }
                    Some(resolve_scalar(text, ScalarStyle::Plain, None))
                }
                _ => None,
            }
        }

        /// A literal block scalar's text: the lines after the header indented past `parent`.
        fn literal(&mut self, parent: usize, chomp: Chomp) -> Option<Node> {
            let mut n: Option<usize> = None;
            let mut text = String::new();
            // Empty lines since the last text line (or since the header).
            let mut empty = 0usize;
            let mut last_text = None;
            while let Some(l) = self.lines.get(self.at) {
                if l.content.is_empty() {
                    // A line of spaces longer than the indentation is text (or, before the
                    // first text line, an error): not read here.
                    if l.raw.len() > n.unwrap_or(0) {
                        return None;
                    }
                    empty += 1;
                    self.at += 1;
                    continue;
                }
                let ind = match n {
                    Some(ind) => ind,
                    None if l.indent > parent => l.indent,
                    None => break,
                };
                if l.indent < ind {
                    break;
                }
                n = Some(ind);
                if last_text.is_some() {
                    text.push('\n');
                }
                for _ in 0..empty {
                    text.push('\n');
                }
                empty = 0;
                text.push_str(&l.raw[ind..]);
                last_text = Some(self.at);
                self.at += 1;
            }
            let Some(last) = last_text else {
                return if empty == 0 {
                    Some(Node::Str(String::new()))
                } else {
                    None
                };
            };
            // The last text line without a line break after it: not read here.
            if last + 1 == self.lines.len() && !self.final_break {
                return None;
            }
            if chomp == Chomp::Clip {
                text.push('\n');
            }
            Some(Node::Str(text))
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Chomp {
        Clip,
        Strip,
    }

    /// After a quoted scalar or `{}`/`[]`: nothing but spaces and a comment.
    use super::after_token;

    /// A flow sequence of scalars on one line (`[a, "b", 'c']`) and the rest of the line.
    fn flow_seq(s: &str) -> Option<(Vec<Node>, &str)> {
        let b = s.as_bytes();
        let mut items = Vec::new();
        let mut i = 1;
        let skip = |i: &mut usize| {
            while b.get(*i) == Some(&b' ') {
                *i += 1;
            }
        };
        loop {
            skip(&mut i);
            match *b.get(i)? {
                b']' if items.is_empty() => return Some((items, &s[i + 1..])),
                b'"' => {
                    let end = s[i + 1..].find('"')? + i + 1;
                    let text = &s[i + 1..end];
                    if text.contains('\\') {
                        return None;
                    }
                    items.push(Node::Str(text.to_string()));
                    i = end + 1;
                }
                b'\'' => {
                    let end = s[i + 1..].find('\'')? + i + 1;
                    if b.get(end + 1) == Some(&b'\'') {
                        return None;
                    }
                    items.push(Node::Str(s[i + 1..end].to_string()));
                    i = end + 1;
                }
                _ => {
                    let end = s[i..].find([',', ']'])? + i;
                    let text = s[i..end].trim_end_matches(' ');
                    if !plain_start(text.as_bytes())
                        || text.contains([':', '#', '[', ']', '{', '}', '"', '\''])
                    {
                        return None;
                    }
                    items.push(resolve_scalar(
                        Cow::Borrowed(text),
                        ScalarStyle::Plain,
                        None,
                    ));
                    i = end;
                }
            }
            skip(&mut i);
            match *b.get(i)? {
                b',' => {
                    i += 1;
                    skip(&mut i);
                    if b.get(i) == Some(&b']') {
                        // A trailing comma.
                        return Some((items, &s[i + 1..]));
                    }
                }
                b']' => return Some((items, &s[i + 1..])),
                _ => return None,
            }
        }
    }

    /// A plain scalar's text on one line (trailing spaces and a comment dropped), and whether
    /// a comment followed it.
    fn plain_text(s: &str) -> Option<(&str, bool)> {
        let (s, commented) = match s.find(" #") {
            Some(i) => (&s[..i], true),
            None => (s, false),
        };
        let t = s.trim_end_matches(' ');
        if t.contains(": ") || t.ends_with(':') {
            return None;
        }
        Some((t, commented))
    }

    /// A mapping key at the start of `content` and the rest of the line after `: ` (trimmed,
    /// a comment dropped), or `None` when the line is not a key read here.
    fn split_key(content: &str) -> Option<(Node, &str)> {
        let b = content.as_bytes();
        let (key, after) = match b.first()? {
            b'"' => {
                let end = content[1..].find('"')? + 1;
                let k = &content[1..end];
                if k.contains('\\') {
                    return None;
                }
                (Node::Str(k.to_string()), &content[end + 1..])
            }
            b'\'' => {
                let end = content[1..].find('\'')? + 1;
                if content.as_bytes().get(end + 1) == Some(&b'\'') {
                    return None;
                }
                (Node::Str(content[1..end].to_string()), &content[end + 1..])
            }
            c if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/') => {
                let end = b
                    .iter()
                    .position(|c| {
                        !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'-'))
                    })
                    .unwrap_or(b.len());
                (
                    resolve_scalar(Cow::Borrowed(&content[..end]), ScalarStyle::Plain, None),
                    &content[end..],
                )
            }
            _ => return None,
        };
        if content.len() - after.len() > 512 {
            return None;
        }
        Some((key, super::value_after_key(after)?))
    }
}

/// Whether `rest` (what follows a token on its line) is empty or only a comment after a space.
pub(super) fn after_token(rest: &str) -> Option<()> {
    let t = rest.trim_start_matches(' ');
    (t.is_empty() || (t.starts_with('#') && rest.len() > t.len())).then_some(())
}

/// A quoted scalar that is the whole rest of its line (`s` starts at the quote): a
/// double-quoted one without escapes, or a single-quoted one (`''` is a quote); `None` for
/// anything else, which the full parser then reads.
pub(super) fn one_line_quoted(s: &str) -> Option<std::borrow::Cow<'_, str>> {
    let b = s.as_bytes();
    match b.first()? {
        b'"' => {
            let end = s[1..].find('"')? + 1;
            let text = &s[1..end];
            if text.contains('\\') {
                return None;
            }
            after_token(&s[end + 1..])?;
            Some(std::borrow::Cow::Borrowed(text))
        }
        b'\'' => {
            let mut text = String::new();
            let mut i = 1;
            loop {
                let j = s[i..].find('\'')? + i;
                text.push_str(&s[i..j]);
                if b.get(j + 1) == Some(&b'\'') {
                    text.push('\'');
                    i = j + 2;
                } else {
                    after_token(&s[j + 1..])?;
                    return Some(std::borrow::Cow::Owned(text));
                }
            }
        }
        _ => None,
    }
}

/// What follows a block mapping key on its line (`after` starts at the `:`): the value's text,
/// empty for none or a comment; `None` when the line is not `key: value` (no `:`, or no space
/// after it).
pub(super) fn value_after_key(after: &str) -> Option<&str> {
    let after = after.strip_prefix(':')?;
    if after.is_empty() {
        return Some(after);
    }
    if !after.starts_with(' ') {
        return None;
    }
    let rest = after.trim_start_matches(' ');
    if rest.starts_with('#') {
        return Some("");
    }
    Some(rest)
}
