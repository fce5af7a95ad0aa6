//! The YAML layer of the render engines, with the semantics kustomize's Go libraries give it.
//!
//! Kustomize reads documents with `go-yaml v3` (through kyaml) and prints every resource by
//! marshalling it to JSON and converting that JSON to YAML with `go-yaml v2`
//! (`sigs.k8s.io/yaml.JSONToYAML`). This module reproduces both halves:
//!
//! * [`parse_stream`] reads a multi-document stream into order-preserving [`Value`]s, resolving
//!   plain scalars the way go-yaml v3 does when decoding into `interface{}` (`012` is octal,
//!   `0x1F` hex, `yes`/`on` stay strings, timestamps become RFC 3339 strings), with anchors,
//!   aliases and merge keys, and a bound on alias expansion (no "billion laughs").
//! * [`to_yaml`] writes a value byte-identical to kustomize's output: keys sorted with go-yaml
//!   v2's natural order, two-space indentation with `- ` items at the parent's indent, go-yaml
//!   v2's quoting (strings that would read back as another type are double-quoted, strings the
//!   emitter cannot write plain are single-quoted), literal blocks for multi-line strings and
//!   long plain strings folded at 80 columns.

mod emit;
mod parse;

pub use emit::{to_yaml, write_scalar_key};
pub use parse::{ParseLimits, parse_stream, parse_stream_with_limits};

use indexmap::IndexMap;

/// An order-preserving mapping of string keys.
pub type Map = IndexMap<String, Value>;

/// A YAML/JSON value as kustomize sees it after decoding.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null` / `~` / empty.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Value>),
    /// A mapping, in the order read.
    Map(Map),
}

impl Value {
    /// The mapping, if this is one.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The mapping, mutably, if this is one.
    pub fn as_map_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The sequence, if this is one.
    pub fn as_seq(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The sequence, mutably, if this is one.
    pub fn as_seq_mut(&mut self) -> Option<&mut Vec<Value>> {
        match self {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Looks up `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map().and_then(|m| m.get(key))
    }

    /// Looks up `key` in a mapping, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.as_map_mut().and_then(|m| m.get_mut(key))
    }

    /// Follows a path of mapping keys.
    pub fn get_path(&self, path: &[&str]) -> Option<&Value> {
        let mut cur = self;
        for p in path {
            cur = cur.get(p)?;
        }
        Some(cur)
    }

    /// A string at a path of mapping keys.
    pub fn str_at(&self, path: &[&str]) -> Option<&str> {
        self.get_path(path).and_then(Value::as_str)
    }

    /// The value as text the way kustomize prints a scalar into a string field
    /// (`1` for an integer, `true` for a boolean); `None` for collections and null.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::UInt(u) => Some(u.to_string()),
            Value::Float(f) => Some(emit::format_float(*f)),
            Value::Str(s) => Some(s.clone()),
        }
    }

    /// Converts to JSON (for hashing and JSON patches).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::UInt(u) => serde_json::Value::from(*u),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Seq(s) => serde_json::Value::Array(s.iter().map(Value::to_json).collect()),
            Value::Map(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }

    /// Converts from JSON.
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Value::UInt(u)
                } else {
                    Value::Float(n.as_f64().unwrap_or(0.0))
                }
            }
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(a) => Value::Seq(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Normalises the value the way kustomize's JSON round trip does: floats with an integral
    /// value become integers (Go's `encoding/json` writes `1.0` as `1`).
    pub fn normalize_numbers(&mut self) {
        match self {
            Value::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e21 => {
                if *f >= i64::MIN as f64 && *f < i64::MAX as f64 {
                    *self = Value::Int(*f as i64);
                } else if *f >= 0.0 && *f < u64::MAX as f64 {
                    *self = Value::UInt(*f as u64);
                }
            }
            Value::Seq(s) => s.iter_mut().for_each(Value::normalize_numbers),
            Value::Map(m) => m.values_mut().for_each(Value::normalize_numbers),
            _ => {}
        }
    }
}

/// Why YAML could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum YamlError {
    /// The text is not well-formed YAML.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// An alias names an anchor that was never defined.
    #[error("line {line}: unknown anchor")]
    UnknownAnchor {
        /// 1-based line.
        line: usize,
    },
    /// Aliases expand to more nodes than the limit allows (an alias bomb).
    #[error("line {line}: document expands to more than {limit} nodes through aliases")]
    TooLarge {
        /// 1-based line.
        line: usize,
        /// The node limit.
        limit: usize,
    },
    /// Collections are nested deeper than the limit.
    #[error("line {line}: nesting deeper than {limit} levels")]
    TooDeep {
        /// 1-based line.
        line: usize,
        /// The depth limit.
        limit: usize,
    },
    /// A mapping key is not a scalar kustomize can use.
    #[error("line {line}: mapping key is not a scalar")]
    ComplexKey {
        /// 1-based line.
        line: usize,
    },
    /// A key appears twice in one mapping (go-yaml v3 rejects this).
    #[error("line {line}: mapping key {key:?} already defined")]
    DuplicateKey {
        /// 1-based line.
        line: usize,
        /// The key.
        key: String,
    },
}

#[cfg(test)]
mod tests;
