//! Reading YAML streams into [`Value`]s with go-yaml v3's resolution rules.

use std::collections::HashMap;
use std::sync::LazyLock;

use saphyr_parser::{Event, Parser, ScalarStyle, Tag};

use super::{Map, Value, YamlError};

/// Bounds on what one stream may expand to.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// The most nodes aliases may add to a stream (go-yaml caps alias expansion too).
    pub max_alias_nodes: usize,
    /// The deepest nesting of collections.
    pub max_depth: usize,
    /// Accept a key twice in one mapping, the last one winning (go-yaml v2, which kustomize
    /// uses for kustomization files, does this; v3 rejects it).
    pub allow_duplicate_keys: bool,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_alias_nodes: 1_000_000,
            max_depth: 512,
            allow_duplicate_keys: false,
        }
    }
}

/// Parses a multi-document stream; each document is one value (`Null` for an empty document).
pub fn parse_stream(text: &str) -> Result<Vec<Value>, YamlError> {
    parse_stream_with_limits(text, ParseLimits::default())
}

enum Frame {
    Seq(Vec<Value>, usize),
    Map(Map, Option<(String, bool)>, usize, Vec<Map>),
}

fn node_count(v: &Value) -> usize {
    match v {
        Value::Seq(s) => 1 + s.iter().map(node_count).sum::<usize>(),
        Value::Map(m) => 1 + m.values().map(node_count).sum::<usize>(),
        _ => 1,
    }
}

/// Parses with explicit limits.
pub fn parse_stream_with_limits(text: &str, limits: ParseLimits) -> Result<Vec<Value>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, (Value, usize)> = HashMap::new();
    let mut alias_nodes = 0usize;
    let mut current: Option<Value> = None;
    while let Some(ev) = parser.next_event() {
        let (event, span) = ev.map_err(|e| YamlError::Syntax {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        let line = span.start.line();
        let mut finished: Option<(Value, usize, bool)> = None; // value, anchor, plain-key-ish
        match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
            Event::DocumentStart(_) => {
                current = None;
                anchors.clear();
            }
            Event::DocumentEnd => {
                docs.push(current.take().unwrap_or(Value::Null));
            }
            Event::Alias(id) => {
                let (v, n) = anchors
                    .get(&id)
                    .ok_or(YamlError::UnknownAnchor { line })?
                    .clone();
                alias_nodes += n;
                if alias_nodes > limits.max_alias_nodes {
                    return Err(YamlError::TooLarge {
                        line,
                        limit: limits.max_alias_nodes,
                    });
                }
                finished = Some((v, 0, false));
            }
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == ScalarStyle::Plain;
                let v = resolve_scalar(&text, style, tag.as_deref(), line)?;
                finished = Some((v, anchor, plain && tag.is_none()));
            }
            Event::SequenceStart(anchor, _) => {
                if stack.len() >= limits.max_depth {
                    return Err(YamlError::TooDeep {
                        line,
                        limit: limits.max_depth,
                    });
                }
                stack.push(Frame::Seq(Vec::new(), anchor));
            }
            Event::MappingStart(anchor, _) => {
                if stack.len() >= limits.max_depth {
                    return Err(YamlError::TooDeep {
                        line,
                        limit: limits.max_depth,
                    });
                }
                stack.push(Frame::Map(Map::new(), None, anchor, Vec::new()));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, anchor)) = stack.pop() {
                    finished = Some((Value::Seq(items), anchor, false));
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(mut m, _, anchor, merges)) = stack.pop() {
                    // Merge keys: explicit keys win over merged ones; earlier merged maps win
                    // over later ones.
                    for merged in merges {
                        for (k, v) in merged {
                            if !m.contains_key(&k) {
                                m.insert(k, v);
                            }
                        }
                    }
                    finished = Some((Value::Map(m), anchor, false));
                }
            }
        }
        if let Some((v, anchor, plain)) = finished {
            if anchor > 0 {
                let n = node_count(&v);
                anchors.insert(anchor, (v.clone(), n));
            }
            match stack.last_mut() {
                None => current = Some(v),
                Some(Frame::Seq(items, _)) => items.push(v),
                Some(Frame::Map(m, pending, _, merges)) => match pending.take() {
                    None => {
                        let key = match &v {
                            Value::Seq(_) | Value::Map(_) => {
                                return Err(YamlError::ComplexKey { line });
                            }
                            Value::Null => "null".to_string(),
                            other => other.scalar_text().unwrap_or_default(),
                        };
                        let is_merge = plain && key == "<<";
                        if !is_merge && m.contains_key(&key) && !limits.allow_duplicate_keys {
                            return Err(YamlError::DuplicateKey { line, key });
                        }
                        *pending = Some((key, is_merge));
                    }
                    Some((key, true)) => match v {
                        Value::Map(mm) => merges.push(mm),
                        Value::Seq(items) => {
                            for it in items {
                                if let Value::Map(mm) = it {
                                    merges.push(mm);
                                }
                            }
                        }
                        other => {
                            m.insert(key, other);
                        }
                    },
                    Some((key, false)) => {
                        m.insert(key, v);
                    }
                },
            }
        }
    }
    Ok(docs)
}

fn core_suffix(tag: Option<&Tag>) -> Option<&str> {
    let t = tag?;
    if t.is_yaml_core_schema() {
        Some(t.suffix.as_str())
    } else {
        None
    }
}

fn resolve_scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
    line: usize,
) -> Result<Value, YamlError> {
    match core_suffix(tag) {
        Some("str") => return Ok(Value::Str(text.to_string())),
        Some("binary") => return Ok(Value::Str(text.to_string())),
        Some("int") | Some("float") | Some("bool") | Some("null") => {
            let v = resolve_plain(text);
            let ok = matches!(
                (core_suffix(tag), &v),
                (Some("int"), Value::Int(_) | Value::UInt(_))
                    | (
                        Some("float"),
                        Value::Float(_) | Value::Int(_) | Value::UInt(_)
                    )
                    | (Some("bool"), Value::Bool(_))
                    | (Some("null"), Value::Null)
            );
            if !ok {
                return Err(YamlError::Syntax {
                    line,
                    column: 1,
                    message: format!(
                        "cannot decode {text:?} as !!{}",
                        core_suffix(tag).unwrap_or_default()
                    ),
                });
            }
            if core_suffix(tag) == Some("float")
                && let Value::Int(i) = v
            {
                return Ok(Value::Float(i as f64));
            }
            return Ok(v);
        }
        _ => {}
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::Str(text.to_string()));
    }
    Ok(resolve_plain(text))
}

static YAML_FLOAT: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
        .expect("static regex is valid")
});

static TIMESTAMP: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:(?:[Tt]|[ \t]+)([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(\.[0-9]{1,9})?[ \t]*(Z|[-+][0-9]{1,2}(?::[0-9]{2})?)?)?$",
    )
    .expect("static regex is valid")
});

/// Parses an integer the way Go's `strconv.ParseInt(s, 0, 64)` does (sign, `0x`, `0o`, `0b`,
/// leading-zero octal). Returns the magnitude and sign.
pub(crate) fn parse_go_int(s: &str) -> Option<(bool, u128)> {
    let (neg, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(r) = rest.strip_prefix("0x").or(rest.strip_prefix("0X")) {
        (16, r)
    } else if let Some(r) = rest.strip_prefix("0o").or(rest.strip_prefix("0O")) {
        (8, r)
    } else if let Some(r) = rest.strip_prefix("0b").or(rest.strip_prefix("0B")) {
        (2, r)
    } else if rest.len() > 1 && rest.starts_with('0') {
        (8, &rest[1..])
    } else {
        (10, rest)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = u128::from_str_radix(digits, radix).ok()?;
    Some((neg, v))
}

fn int_value(neg: bool, mag: u128) -> Option<Value> {
    if neg {
        if mag <= i64::MAX as u128 + 1 {
            Some(Value::Int((-(mag as i128)) as i64))
        } else {
            None
        }
    } else if mag <= i64::MAX as u128 {
        Some(Value::Int(mag as i64))
    } else if mag <= u64::MAX as u128 {
        Some(Value::UInt(mag as u64))
    } else {
        None
    }
}

/// Resolves a plain scalar as go-yaml v3 does when decoding into `interface{}`.
pub(crate) fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        _ => {}
    }
    let first = s.as_bytes()[0];
    if first == b'.' {
        if let Ok(f) = s.parse::<f64>() {
            return Value::Float(f);
        }
        return Value::Str(s.to_string());
    }
    if !(first.is_ascii_digit() || first == b'+' || first == b'-') {
        return Value::Str(s.to_string());
    }
    if let Some(ts) = timestamp_rfc3339(s) {
        return Value::Str(ts);
    }
    let plain: String = s.chars().filter(|c| *c != '_').collect();
    if let Some((neg, mag)) = parse_go_int(&plain)
        && let Some(v) = int_value(neg, mag)
    {
        return v;
    }
    if YAML_FLOAT.is_match(&plain)
        && let Ok(f) = plain.parse::<f64>()
    {
        return Value::Float(f);
    }
    Value::Str(s.to_string())
}

/// If `s` is a YAML timestamp go-yaml would decode into `time.Time`, the RFC 3339 text Go's
/// JSON encoder writes for it.
pub(crate) fn timestamp_rfc3339(s: &str) -> Option<String> {
    let c = TIMESTAMP.captures(s)?;
    let num = |i: usize| c.get(i).and_then(|m| m.as_str().parse::<u32>().ok());
    let (y, mo, d) = (num(1)?, num(2)?, num(3)?);
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    let (h, mi, se) = if c.get(4).is_some() {
        (num(4)?, num(5)?, num(6)?)
    } else {
        (0, 0, 0)
    };
    if h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let mut frac = c.get(7).map(|m| m.as_str().to_string()).unwrap_or_default();
    while frac.ends_with('0') {
        frac.pop();
    }
    if frac == "." {
        frac.clear();
    }
    let zone = match c.get(8).map(|m| m.as_str()) {
        None | Some("Z") => "Z".to_string(),
        Some(z) => {
            let sign = &z[..1];
            let rest = &z[1..];
            let (zh, zm) = match rest.split_once(':') {
                Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
                None => (rest.parse::<u32>().ok()?, 0),
            };
            if zh == 0 && zm == 0 {
                "Z".to_string()
            } else {
                format!("{sign}{zh:02}:{zm:02}")
            }
        }
    };
    Some(format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}{frac}{zone}"
    ))
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) {
                29
            } else {
                28
            }
        }
    }
}
