//! The function map: Go's template builtins, Sprig (v3, as Helm ships it) and Helm's own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

use base64::Engine as _;

use super::template::{Exec, FuncError, FuncMap, FuncResult};
use super::value::{Value, deep_equal, format_float_g};
use super::yaml;

type R = FuncResult;

fn arity(name: &str, args: &[Value], want: usize) -> Result<(), FuncError> {
    if args.len() != want {
        return Err(FuncError::Msg(format!(
            "wrong number of args for {name}: want {want} got {}",
            args.len()
        )));
    }
    Ok(())
}

fn at_least(name: &str, args: &[Value], want: usize) -> Result<(), FuncError> {
    if args.len() < want {
        return Err(FuncError::Msg(format!(
            "wrong number of args for {name}: want at least {want} got {}",
            args.len()
        )));
    }
    Ok(())
}

/// Go's runtime error for `s[start:end]` out of range (`start` is `None` for `s[:end]`).
fn go_slice_error(start: Option<i64>, end: i64, len: i64) -> FuncError {
    FuncError::Msg(match start {
        None if end < 0 => format!("runtime error: slice bounds out of range [:{end}]"),
        None => format!("runtime error: slice bounds out of range [:{end}] with length {len}"),
        Some(start) => format!("runtime error: slice bounds out of range [{start}:{end}]"),
    })
}

/// Sprig's `strval`: strings as they are, everything else through `%v`.
pub fn strval(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => other.to_go_string(),
    }
}

/// `cast.ToInt64`.
pub fn to_i64(v: &Value) -> i64 {
    match v {
        Value::Int(i) | Value::Int64(i) => *i,
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::Str(s) => {
            let t = trim_zero_decimal(s);
            yaml::go_parse_int(&t).unwrap_or(0)
        }
        _ => 0,
    }
}

fn trim_zero_decimal(s: &str) -> String {
    if let Some(i) = s.find('.')
        && s[i + 1..].chars().all(|c| c == '0')
        && i > 0
    {
        return s[..i].to_string();
    }
    s.to_string()
}

/// `cast.ToFloat64`.
pub fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) | Value::Int64(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Str(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// [`strval`] without a copy when the value is a string.
pub fn strval_cow(v: &Value) -> std::borrow::Cow<'_, str> {
    match v {
        Value::Str(s) => std::borrow::Cow::Borrowed(s),
        other => std::borrow::Cow::Owned(strval(other)),
    }
}

fn s(args: &[Value], i: usize) -> String {
    args.get(i).map(strval).unwrap_or_default()
}

/// Argument `i` as a string (empty when missing), borrowed when it is one.
fn sv(args: &[Value], i: usize) -> std::borrow::Cow<'_, str> {
    args.get(i)
        .map(strval_cow)
        .unwrap_or(std::borrow::Cow::Borrowed(""))
}

/// `indent`/`nindent`: every line of `text` after `pad` spaces, in one pass.
fn indent(text: &str, pad: i64, leading_newline: bool) -> Value {
    let pad = pad.max(0) as usize;
    let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
    let mut out = String::with_capacity(text.len() + lines * pad + 1);
    if leading_newline {
        out.push('\n');
    }
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.extend(std::iter::repeat_n(' ', pad));
        out.push_str(line);
    }
    Value::from(out)
}

fn list_of(v: &Value) -> Option<Vec<Value>> {
    match v {
        Value::List(l) => Some(l.to_vec()),
        Value::Bytes(b) => Some(b.iter().map(|x| Value::Int(*x as i64)).collect()),
        _ => None,
    }
}

fn must_list(name: &str, v: &Value) -> Result<Vec<Value>, FuncError> {
    match v {
        Value::Nil => Ok(Vec::new()),
        other => list_of(other)
            .ok_or_else(|| FuncError::Msg(format!("Cannot {name} on type {}", other.type_name()))),
    }
}

/// Sprig's `empty`.
pub fn empty(v: &Value) -> bool {
    !v.truthy() || matches!(v, Value::Object(_) if false)
}

/// Go's `%q` (`strconv.Quote`).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || c == '\u{FEFF}' || c == '\u{2028}' || c == '\u{2029}' => {
                let v = c as u32;
                if v <= 0xFFFF {
                    let _ = write!(out, "\\u{v:04x}");
                } else {
                    let _ = write!(out, "\\U{v:08x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn map_of(v: &Value) -> Option<super::value::Map> {
    v.as_map().cloned()
}

/// Builds the full function map.
pub fn func_map() -> FuncMap {
    let mut m: FuncMap = FuncMap::default();
    macro_rules! f {
        ($name:expr, $body:expr) => {
            m.insert($name, $body);
        };
    }
    // --- Go builtins
    f!("not", |_, a| {
        arity("not", a, 1)?;
        Ok(Value::Bool(!a[0].truthy()))
    });
    f!("and", |_, a| Ok(a.last().cloned().unwrap_or_default()));
    f!("or", |_, a| Ok(a.last().cloned().unwrap_or_default()));
    f!("len", |_, a| {
        arity("len", a, 1)?;
        Ok(Value::Int(match &a[0] {
            Value::Str(s) => s.len() as i64,
            Value::List(l) => l.len() as i64,
            Value::Map(m) => m.borrow().len() as i64,
            Value::Bytes(b) => b.len() as i64,
            Value::Nil => return Err("len of nil pointer".into()),
            Value::Object(o) if o.len().is_some() => o.len().unwrap_or(0) as i64,
            other => return Err(format!("len of type {}", other.type_name()).into()),
        }))
    });
    f!("index", |_, a| {
        at_least("index", a, 1)?;
        let mut cur = a[0].clone();
        for k in &a[1..] {
            cur = match &cur {
                Value::Map(m) => match k {
                    Value::Str(s) => m.borrow().get(&**s).cloned().unwrap_or(Value::Nil),
                    Value::Nil => Value::Nil,
                    other => {
                        return Err(format!(
                            "value has type {}; should be string",
                            other.type_name()
                        )
                        .into());
                    }
                },
                Value::List(l) => {
                    let i = match k {
                        Value::Int(i) | Value::Int64(i) => *i,
                        other => {
                            return Err(format!(
                                "cannot index slice/array with type {}",
                                other.type_name()
                            )
                            .into());
                        }
                    };
                    if i < 0 || i as usize >= l.len() {
                        return Err(format!("error calling index: index out of range: {i}").into());
                    }
                    l[i as usize].clone()
                }
                Value::Str(s) => {
                    let i = to_i64(k);
                    match s.as_bytes().get(i as usize) {
                        Some(b) => Value::Int(*b as i64),
                        None => return Err(format!("index out of range: {i}").into()),
                    }
                }
                Value::Nil => return Err("index of untyped nil".into()),
                other => {
                    return Err(format!("can't index item of type {}", other.type_name()).into());
                }
            };
        }
        Ok(cur)
    });
    // Sprig replaces Go's builtin `slice` with a list-only one.
    f!("slice", sprig_slice);
    f!("mustSlice", sprig_slice);
    f!("print", |_, a| Ok(Value::from(go_sprint(a))));
    f!("println", |_, a| {
        let parts: Vec<String> = a.iter().map(|v| v.to_go_string()).collect();
        Ok(Value::from(parts.join(" ") + "\n"))
    });
    f!("printf", |_, a| {
        at_least("printf", a, 1)?;
        Ok(Value::from(sprintf(&strval(&a[0]), &a[1..])))
    });
    f!("eq", |_, a| {
        at_least("eq", a, 2)?;
        for b in &a[1..] {
            if go_eq(&a[0], b)? {
                return Ok(Value::Bool(true));
            }
        }
        Ok(Value::Bool(false))
    });
    f!("ne", |_, a| {
        arity("ne", a, 2)?;
        Ok(Value::Bool(!go_eq(&a[0], &a[1])?))
    });
    f!("lt", |_, a| {
        arity("lt", a, 2)?;
        Ok(Value::Bool(go_lt(&a[0], &a[1])?))
    });
    f!("le", |_, a| {
        arity("le", a, 2)?;
        Ok(Value::Bool(go_lt(&a[0], &a[1])? || go_eq(&a[0], &a[1])?))
    });
    f!("gt", |_, a| {
        arity("gt", a, 2)?;
        Ok(Value::Bool(!(go_lt(&a[0], &a[1])? || go_eq(&a[0], &a[1])?)))
    });
    f!("ge", |_, a| {
        arity("ge", a, 2)?;
        Ok(Value::Bool(!go_lt(&a[0], &a[1])?))
    });
    f!("html", |_, a| Ok(Value::from(html_escape(&go_sprint(a)))));
    f!("js", |_, a| Ok(Value::from(js_escape(&go_sprint(a)))));
    f!("urlquery", |_, a| Ok(Value::from(query_escape(
        &go_sprint(a)
    ))));
    f!("call", |_, _| Err("call of non-function".into()));

    // --- Helm
    f!("include", include);
    f!("tpl", tpl);
    f!("required", |_, a| {
        arity("required", a, 2)?;
        let v = &a[1];
        let missing = match v {
            Value::Nil => true,
            Value::Str(s) => s.is_empty(),
            _ => false,
        };
        if missing {
            return Err(FuncError::Msg(warn_wrap(&strval(&a[0]))));
        }
        Ok(v.clone())
    });
    f!("fail", |_, a| {
        arity("fail", a, 1)?;
        Err(FuncError::Msg(warn_wrap(&strval(&a[0]))))
    });
    f!("toYaml", |_, a| {
        arity("toYaml", a, 1)?;
        let mut y = yaml::to_yaml(&a[0]);
        y.truncate(y.trim_end_matches('\n').len());
        Ok(Value::from(y))
    });
    f!("mustToYaml", |_, a| {
        arity("mustToYaml", a, 1)?;
        Ok(Value::from(
            yaml::to_yaml(&a[0]).trim_end_matches('\n').to_string(),
        ))
    });
    f!("toYamlPretty", |_, a| {
        arity("toYamlPretty", a, 1)?;
        Ok(Value::from(
            to_yaml_pretty(&a[0]).trim_end_matches('\n').to_string(),
        ))
    });
    f!("fromYaml", |_, a| {
        arity("fromYaml", a, 1)?;
        Ok(match yaml::parse(&strval(&a[0])) {
            Ok(Value::Map(m)) => Value::Map(m),
            Ok(Value::Nil) => Value::new_map(),
            Ok(other) => error_map(&format!(
                "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                json_kind(&other)
            )),
            Err(e) => error_map(&e.0),
        })
    });
    f!("fromYamlArray", |_, a| {
        arity("fromYamlArray", a, 1)?;
        Ok(match yaml::parse(&strval(&a[0])) {
            Ok(Value::List(l)) => Value::List(l),
            Ok(Value::Nil) => Value::from(Vec::new()),
            Ok(other) => Value::from(vec![Value::from(format!(
                "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {} into Go value of type []interface {{}}",
                json_kind(&other)
            ))]),
            Err(e) => Value::from(vec![Value::from(e.0)]),
        })
    });
    f!("toJson", |_, a| {
        arity("toJson", a, 1)?;
        Ok(Value::from(yaml::to_json(&a[0])))
    });
    f!("mustToJson", |_, a| {
        arity("mustToJson", a, 1)?;
        Ok(Value::from(yaml::to_json(&a[0])))
    });
    f!("toRawJson", |_, a| {
        arity("toRawJson", a, 1)?;
        let j = yaml::to_json(&a[0]);
        Ok(Value::from(
            j.replace("\\u003c", "<")
                .replace("\\u003e", ">")
                .replace("\\u0026", "&"),
        ))
    });
    f!("mustToRawJson", |_, a| {
        arity("mustToRawJson", a, 1)?;
        let j = yaml::to_json(&a[0]);
        Ok(Value::from(
            j.replace("\\u003c", "<")
                .replace("\\u003e", ">")
                .replace("\\u0026", "&"),
        ))
    });
    f!("toPrettyJson", |_, a| {
        arity("toPrettyJson", a, 1)?;
        Ok(Value::from(yaml::to_json_pretty(&a[0])))
    });
    f!("mustToPrettyJson", |_, a| {
        arity("mustToPrettyJson", a, 1)?;
        Ok(Value::from(yaml::to_json_pretty(&a[0])))
    });
    f!("fromJson", |_, a| {
        arity("fromJson", a, 1)?;
        Ok(match yaml::parse_json(&strval(&a[0])) {
            Ok(Value::Map(m)) => Value::Map(m),
            Ok(_) | Err(_) => {
                error_map("json: cannot unmarshal into Go value of type map[string]interface {}")
            }
        })
    });
    f!("mustFromJson", |_, a| {
        arity("mustFromJson", a, 1)?;
        yaml::parse_json(&strval(&a[0])).map_err(|e| FuncError::Msg(e.0))
    });
    f!("fromJsonArray", |_, a| {
        arity("fromJsonArray", a, 1)?;
        Ok(match yaml::parse_json(&strval(&a[0])) {
            Ok(Value::List(l)) => Value::List(l),
            Ok(_) | Err(_) => Value::from(vec![Value::from(
                "json: cannot unmarshal into Go value of type []interface {}",
            )]),
        })
    });
    f!("toToml", |_, a| {
        arity("toToml", a, 1)?;
        Ok(Value::from(to_toml(&a[0])))
    });
    f!("lookup", |ex, a| {
        arity("lookup", a, 4)?;
        let Some(cluster) = ex.cluster.clone() else {
            // `helm template` never contacts a cluster.
            return Ok(Value::new_map());
        };
        let found = cluster
            .lookup(&s(a, 0), &s(a, 1), &s(a, 2), &s(a, 3))
            .map_err(|e| FuncError::Msg(format!("error calling lookup: {e}")))?;
        Ok(match found {
            Some(v) => super::lookup::unstructured_value(&v),
            None => Value::new_map(),
        })
    });

    // --- Sprig: defaults, types
    f!("default", |_, a| {
        at_least("default", a, 1)?;
        if a.len() < 2 || empty(&a[1]) {
            return Ok(a[0].clone());
        }
        Ok(a[1].clone())
    });
    f!("empty", |_, a| {
        arity("empty", a, 1)?;
        Ok(Value::Bool(empty(&a[0])))
    });
    f!("coalesce", |_, a| Ok(a
        .iter()
        .find(|v| !empty(v))
        .cloned()
        .unwrap_or_default()));
    f!("all", |_, a| Ok(Value::Bool(a.iter().all(|v| !empty(v)))));
    f!("any", |_, a| Ok(Value::Bool(a.iter().any(|v| !empty(v)))));
    f!("ternary", |_, a| {
        arity("ternary", a, 3)?;
        Ok(if a[2].truthy() {
            a[0].clone()
        } else {
            a[1].clone()
        })
    });
    f!("typeOf", |_, a| {
        arity("typeOf", a, 1)?;
        Ok(Value::from(a[0].type_name()))
    });
    f!("typeIs", |_, a| {
        arity("typeIs", a, 2)?;
        Ok(Value::Bool(strval(&a[0]) == a[1].type_name()))
    });
    f!("typeIsLike", |_, a| {
        arity("typeIsLike", a, 2)?;
        let t = strval(&a[0]);
        let n = a[1].type_name();
        Ok(Value::Bool(t == n || t == format!("*{n}")))
    });
    f!("kindOf", |_, a| {
        arity("kindOf", a, 1)?;
        Ok(Value::from(a[0].kind_name()))
    });
    f!("kindIs", |_, a| {
        arity("kindIs", a, 2)?;
        Ok(Value::Bool(strval(&a[0]) == a[1].kind_name()))
    });
    f!("deepEqual", |_, a| {
        arity("deepEqual", a, 2)?;
        Ok(Value::Bool(deep_equal(&a[0], &a[1])))
    });
    f!("toString", |_, a| {
        arity("toString", a, 1)?;
        Ok(Value::from(strval(&a[0])))
    });
    f!("toStrings", |_, a| {
        arity("toStrings", a, 1)?;
        let l = list_of(&a[0]).unwrap_or_else(|| vec![a[0].clone()]);
        // Sprig's strslice leaves nil elements out.
        Ok(Value::from(
            l.iter()
                .filter(|v| !v.is_nil())
                .map(|v| Value::from(strval(v)))
                .collect::<Vec<_>>(),
        ))
    });
    f!("toDecimal", |_, a| {
        arity("toDecimal", a, 1)?;
        Ok(Value::Int64(
            i64::from_str_radix(&strval(&a[0]), 8).unwrap_or(0),
        ))
    });
    f!("atoi", |_, a| {
        arity("atoi", a, 1)?;
        Ok(Value::Int(strval(&a[0]).parse().unwrap_or(0)))
    });
    f!("int", |_, a| {
        arity("int", a, 1)?;
        Ok(Value::Int(to_i64(&a[0])))
    });
    f!("int64", |_, a| {
        arity("int64", a, 1)?;
        Ok(Value::Int64(to_i64(&a[0])))
    });
    f!("float64", |_, a| {
        arity("float64", a, 1)?;
        Ok(Value::Float(to_f64(&a[0])))
    });
    f!("toBool", |_, a| {
        arity("toBool", a, 1)?;
        Ok(Value::Bool(match &a[0] {
            Value::Str(s) => matches!(&**s, "1" | "t" | "T" | "true" | "TRUE" | "True"),
            other => other.truthy(),
        }))
    });

    // --- Sprig: strings
    f!("trim", |_, a| {
        arity("trim", a, 1)?;
        Ok(Value::from(sv(a, 0).trim_matches(go_space)))
    });
    f!("trimAll", |_, a| {
        arity("trimAll", a, 2)?;
        let cut: Vec<char> = s(a, 0).chars().collect();
        Ok(Value::from(s(a, 1).trim_matches(|c| cut.contains(&c))))
    });
    f!("trimPrefix", |_, a| {
        arity("trimPrefix", a, 2)?;
        let (p, x) = (s(a, 0), s(a, 1));
        Ok(Value::from(x.strip_prefix(p.as_str()).unwrap_or(&x)))
    });
    f!("trimSuffix", |_, a| {
        arity("trimSuffix", a, 2)?;
        let (p, x) = (s(a, 0), s(a, 1));
        Ok(Value::from(x.strip_suffix(p.as_str()).unwrap_or(&x)))
    });
    f!("upper", |_, a| {
        arity("upper", a, 1)?;
        Ok(Value::from(s(a, 0).to_uppercase()))
    });
    f!("lower", |_, a| {
        arity("lower", a, 1)?;
        Ok(Value::from(s(a, 0).to_lowercase()))
    });
    f!("title", |_, a| {
        arity("title", a, 1)?;
        Ok(Value::from(title(&s(a, 0))))
    });
    f!("untitle", |_, a| {
        arity("untitle", a, 1)?;
        Ok(Value::from(untitle(&s(a, 0))))
    });
    f!("repeat", |_, a| {
        arity("repeat", a, 2)?;
        let n = to_i64(&a[0]);
        if n < 0 {
            return Err("strings: negative Repeat count".into());
        }
        if (n as u128) * (s(a, 1).len() as u128) > MAX_GENERATED as u128 {
            return Err(format!("repeat would produce more than {MAX_GENERATED} bytes").into());
        }
        Ok(Value::from(s(a, 1).repeat(n as usize)))
    });
    f!("substr", |_, a| {
        arity("substr", a, 3)?;
        let (start, end) = (to_i64(&a[0]), to_i64(&a[1]));
        let x = s(a, 2);
        let b = x.as_bytes();
        let len = b.len() as i64;
        // Sprig slices without checks; Go's runtime errors come back from the call.
        let r = if start < 0 {
            if end < 0 || end > len {
                return Err(go_slice_error(None, end, len));
            }
            &b[..end as usize]
        } else if end < 0 || end > len {
            if start > len {
                return Err(go_slice_error(Some(start), len, len));
            }
            &b[start as usize..]
        } else {
            if start > end {
                return Err(go_slice_error(Some(start), end, len));
            }
            &b[start as usize..end as usize]
        };
        Ok(Value::from(String::from_utf8_lossy(r).into_owned()))
    });
    f!("nospace", |_, a| {
        arity("nospace", a, 1)?;
        Ok(Value::from(
            s(a, 0)
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>(),
        ))
    });
    f!("trunc", |_, a| {
        arity("trunc", a, 2)?;
        let c = to_i64(&a[0]);
        let x = s(a, 1);
        let n = x.len() as i64;
        let out = if c < 0 && n + c > 0 {
            &x.as_bytes()[(n + c) as usize..]
        } else if c >= 0 && n > c {
            &x.as_bytes()[..c as usize]
        } else {
            x.as_bytes()
        };
        Ok(Value::from(String::from_utf8_lossy(out).into_owned()))
    });
    f!("abbrev", |_, a| {
        arity("abbrev", a, 2)?;
        let w = to_i64(&a[0]);
        let x = s(a, 1);
        if w < 4 || x.len() as i64 <= w {
            return Ok(Value::from(x));
        }
        let head = String::from_utf8_lossy(&x.as_bytes()[..(w - 3) as usize]).into_owned();
        Ok(Value::from(format!("{head}...")))
    });
    f!("abbrevboth", |_, a| {
        arity("abbrevboth", a, 3)?;
        let (left, right) = (to_i64(&a[0]), to_i64(&a[1]));
        let x = s(a, 2);
        if right < 4 || left > 0 && right < 7 {
            return Ok(Value::from(x));
        }
        Ok(Value::from(abbreviate_full(&x, left, right)))
    });
    f!("initials", |_, a| {
        arity("initials", a, 1)?;
        // goutils takes each word's first byte as a rune (so `é` gives `Ã`).
        Ok(Value::from(
            s(a, 0)
                .split(char::is_whitespace)
                .filter_map(|w| w.bytes().next().map(char::from))
                .collect::<String>(),
        ))
    });
    f!("contains", |_, a| {
        arity("contains", a, 2)?;
        Ok(Value::Bool(s(a, 1).contains(&s(a, 0))))
    });
    f!("hasPrefix", |_, a| {
        arity("hasPrefix", a, 2)?;
        Ok(Value::Bool(s(a, 1).starts_with(&s(a, 0))))
    });
    f!("hasSuffix", |_, a| {
        arity("hasSuffix", a, 2)?;
        Ok(Value::Bool(s(a, 1).ends_with(&s(a, 0))))
    });
    f!("quote", |_, a| {
        let parts: Vec<String> = a
            .iter()
            .filter(|v| !v.is_nil())
            .map(|v| go_quote(&strval_cow(v)))
            .collect();
        Ok(Value::from(parts.join(" ")))
    });
    f!("squote", |_, a| {
        let parts: Vec<String> = a
            .iter()
            .filter(|v| !v.is_nil())
            .map(|v| format!("'{}'", strval(v)))
            .collect();
        Ok(Value::from(parts.join(" ")))
    });
    f!("cat", |_, a| {
        let parts: Vec<String> = a.iter().filter(|v| !v.is_nil()).map(strval).collect();
        Ok(Value::from(parts.join(" ")))
    });
    f!("indent", |_, a| {
        arity("indent", a, 2)?;
        Ok(indent(&sv(a, 1), to_i64(&a[0]), false))
    });
    f!("nindent", |_, a| {
        arity("nindent", a, 2)?;
        Ok(indent(&sv(a, 1), to_i64(&a[0]), true))
    });
    f!("replace", |_, a| {
        arity("replace", a, 3)?;
        Ok(Value::from(s(a, 2).replace(&s(a, 0), &s(a, 1))))
    });
    f!("plural", |_, a| {
        arity("plural", a, 3)?;
        Ok(if to_i64(&a[2]) == 1 {
            Value::from(s(a, 0))
        } else {
            Value::from(s(a, 1))
        })
    });
    f!("snakecase", |_, a| {
        arity("snakecase", a, 1)?;
        Ok(Value::from(snakecase(&s(a, 0))))
    });
    f!("camelcase", |_, a| {
        arity("camelcase", a, 1)?;
        Ok(Value::from(camelcase(&s(a, 0))))
    });
    f!("kebabcase", |_, a| {
        arity("kebabcase", a, 1)?;
        Ok(Value::from(snakecase(&s(a, 0)).replace('_', "-")))
    });
    f!("swapcase", |_, a| {
        arity("swapcase", a, 1)?;
        Ok(Value::from(
            s(a, 0)
                .chars()
                .map(|c| {
                    if c.is_uppercase() {
                        c.to_lowercase().next().unwrap_or(c)
                    } else {
                        c.to_uppercase().next().unwrap_or(c)
                    }
                })
                .collect::<String>(),
        ))
    });
    f!("wrap", |_, a| {
        arity("wrap", a, 2)?;
        Ok(Value::from(wrap(&s(a, 1), to_i64(&a[0]) as usize, "\n")))
    });
    f!("wrapWith", |_, a| {
        arity("wrapWith", a, 3)?;
        Ok(Value::from(wrap(
            &s(a, 2),
            to_i64(&a[0]) as usize,
            &s(a, 1),
        )))
    });
    f!("split", |_, a| {
        arity("split", a, 2)?;
        let mut m = BTreeMap::new();
        for (i, p) in go_split(&s(a, 1), &s(a, 0)).into_iter().enumerate() {
            m.insert(format!("_{i}"), Value::from(p));
        }
        Ok(Value::from(m))
    });
    f!("splitList", |_, a| {
        arity("splitList", a, 2)?;
        Ok(Value::from(
            go_split(&s(a, 1), &s(a, 0))
                .into_iter()
                .map(Value::from)
                .collect::<Vec<_>>(),
        ))
    });
    f!("splitn", |_, a| {
        arity("splitn", a, 3)?;
        let n = to_i64(&a[1]);
        let x = s(a, 2);
        let sep = s(a, 0);
        let parts: Vec<String> = if n < 0 {
            go_split(&x, &sep)
        } else {
            x.splitn(n as usize, sep.as_str())
                .map(str::to_string)
                .collect()
        };
        let mut m = BTreeMap::new();
        for (i, p) in parts.into_iter().enumerate() {
            m.insert(format!("_{i}"), Value::from(p));
        }
        Ok(Value::from(m))
    });
    f!("join", |_, a| {
        arity("join", a, 2)?;
        let items = match &a[1] {
            Value::Nil => vec![],
            other => list_of(other).unwrap_or_else(|| vec![other.clone()]),
        };
        let parts: Vec<String> = items.iter().filter(|v| !v.is_nil()).map(strval).collect();
        Ok(Value::from(parts.join(&s(a, 0))))
    });
    f!("sortAlpha", |_, a| {
        arity("sortAlpha", a, 1)?;
        let mut l: Vec<String> = match list_of(&a[0]) {
            Some(l) => l.iter().map(strval).collect(),
            None => vec![strval(&a[0])],
        };
        l.sort();
        Ok(Value::from(
            l.into_iter().map(Value::from).collect::<Vec<_>>(),
        ))
    });
    f!("regexMatch", |_, a| {
        arity("regexMatch", a, 2)?;
        Ok(Value::Bool(regex(&s(a, 0))?.is_match(&s(a, 1))))
    });
    f!("mustRegexMatch", |_, a| {
        arity("mustRegexMatch", a, 2)?;
        Ok(Value::Bool(regex(&s(a, 0))?.is_match(&s(a, 1))))
    });
    f!("regexFind", |_, a| {
        arity("regexFind", a, 2)?;
        Ok(Value::from(
            regex(&s(a, 0))?
                .find(&s(a, 1))
                .map(|m| m.as_str().to_string())
                .unwrap_or_default(),
        ))
    });
    f!("regexFindAll", |_, a| {
        arity("regexFindAll", a, 3)?;
        let n = to_i64(&a[2]);
        let x = s(a, 1);
        let re = regex(&s(a, 0))?;
        let it = re.find_iter(&x).map(|m| Value::from(m.as_str()));
        let v: Vec<Value> = if n < 0 {
            it.collect()
        } else {
            it.take(n as usize).collect()
        };
        Ok(Value::from(v))
    });
    f!("regexReplaceAll", |_, a| {
        arity("regexReplaceAll", a, 3)?;
        let re = regex(&s(a, 0))?;
        let repl = go_expand_template(&s(a, 2));
        Ok(Value::from(
            re.replace_all(&s(a, 1), repl.as_str()).into_owned(),
        ))
    });
    f!("regexReplaceAllLiteral", |_, a| {
        arity("regexReplaceAllLiteral", a, 3)?;
        let re = regex(&s(a, 0))?;
        Ok(Value::from(
            re.replace_all(&s(a, 1), regex::NoExpand(&s(a, 2)))
                .into_owned(),
        ))
    });
    f!("regexSplit", |_, a| {
        arity("regexSplit", a, 3)?;
        let re = regex(&s(a, 0))?;
        let n = to_i64(&a[2]);
        let x = s(a, 1);
        let v: Vec<Value> = if n < 0 {
            re.split(&x).map(Value::from).collect()
        } else {
            re.splitn(&x, n as usize).map(Value::from).collect()
        };
        Ok(Value::from(v))
    });
    f!("regexQuoteMeta", |_, a| {
        arity("regexQuoteMeta", a, 1)?;
        Ok(Value::from(regex::escape(&s(a, 0))))
    });
    f!("randAlphaNum", |_, a| rand_string(
        a,
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    ));
    f!("randAlpha", |_, a| rand_string(
        a,
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    ));
    f!("randNumeric", |_, a| rand_string(a, "0123456789"));
    f!("randAscii", |_, a| {
        let chars: String = (32u8..127).map(|c| c as char).collect();
        rand_string(a, &chars)
    });
    f!("shuffle", |_, a| {
        arity("shuffle", a, 1)?;
        let mut c: Vec<char> = s(a, 0).chars().collect();
        for i in (1..c.len()).rev() {
            let j = (rand_u64() % (i as u64 + 1)) as usize;
            c.swap(i, j);
        }
        Ok(Value::from(c.into_iter().collect::<String>()))
    });

    // --- Sprig: math
    f!("add1", |_, a| {
        arity("add1", a, 1)?;
        Ok(Value::Int64(to_i64(&a[0]).wrapping_add(1)))
    });
    f!("add", |_, a| Ok(Value::Int64(
        a.iter().map(to_i64).fold(0i64, |x, y| x.wrapping_add(y))
    )));
    f!("sub", |_, a| {
        arity("sub", a, 2)?;
        Ok(Value::Int64(to_i64(&a[0]).wrapping_sub(to_i64(&a[1]))))
    });
    f!("mul", |_, a| {
        at_least("mul", a, 1)?;
        Ok(Value::Int64(
            a.iter().map(to_i64).fold(1i64, |x, y| x.wrapping_mul(y)),
        ))
    });
    f!("div", |_, a| {
        arity("div", a, 2)?;
        let d = to_i64(&a[1]);
        if d == 0 {
            return Err("runtime error: integer divide by zero".into());
        }
        Ok(Value::Int64(to_i64(&a[0]).wrapping_div(d)))
    });
    f!("mod", |_, a| {
        arity("mod", a, 2)?;
        let d = to_i64(&a[1]);
        if d == 0 {
            return Err("runtime error: integer divide by zero".into());
        }
        Ok(Value::Int64(to_i64(&a[0]).wrapping_rem(d)))
    });
    f!("max", |_, a| {
        at_least("max", a, 1)?;
        Ok(Value::Int64(a.iter().map(to_i64).max().unwrap_or(0)))
    });
    f!("biggest", |_, a| {
        at_least("biggest", a, 1)?;
        Ok(Value::Int64(a.iter().map(to_i64).max().unwrap_or(0)))
    });
    f!("min", |_, a| {
        at_least("min", a, 1)?;
        Ok(Value::Int64(a.iter().map(to_i64).min().unwrap_or(0)))
    });
    f!("maxf", |_, a| {
        at_least("maxf", a, 1)?;
        Ok(Value::Float(
            a.iter().map(to_f64).fold(f64::NEG_INFINITY, f64::max),
        ))
    });
    f!("minf", |_, a| {
        at_least("minf", a, 1)?;
        Ok(Value::Float(
            a.iter().map(to_f64).fold(f64::INFINITY, f64::min),
        ))
    });
    f!("addf", |_, a| Ok(Value::Float(a.iter().map(to_f64).sum())));
    f!("add1f", |_, a| {
        arity("add1f", a, 1)?;
        Ok(Value::Float(to_f64(&a[0]) + 1.0))
    });
    f!("subf", |_, a| {
        at_least("subf", a, 1)?;
        Ok(Value::Float(
            a[1..].iter().map(to_f64).fold(to_f64(&a[0]), |x, y| x - y),
        ))
    });
    f!("mulf", |_, a| Ok(Value::Float(
        a.iter().map(to_f64).product()
    )));
    f!("divf", |_, a| {
        at_least("divf", a, 1)?;
        Ok(Value::Float(
            a[1..].iter().map(to_f64).fold(to_f64(&a[0]), |x, y| x / y),
        ))
    });
    f!("floor", |_, a| {
        arity("floor", a, 1)?;
        Ok(Value::Float(to_f64(&a[0]).floor()))
    });
    f!("ceil", |_, a| {
        arity("ceil", a, 1)?;
        Ok(Value::Float(to_f64(&a[0]).ceil()))
    });
    f!("round", |_, a| {
        at_least("round", a, 2)?;
        let p = to_i64(&a[1]) as i32;
        let rh = a.get(2).map(to_f64).unwrap_or(0.5);
        let pow = 10f64.powi(p);
        let digit = pow * to_f64(&a[0]);
        let (int, frac) = (digit.trunc(), digit.fract());
        let r = if frac >= rh { int + 1.0 } else { int };
        Ok(Value::Float(r / pow))
    });
    f!("randInt", |_, a| {
        arity("randInt", a, 2)?;
        let (lo, hi) = (to_i64(&a[0]), to_i64(&a[1]));
        if hi <= lo {
            return Err("invalid argument to Intn".into());
        }
        Ok(Value::Int(lo + (rand_u64() % (hi - lo) as u64) as i64))
    });
    f!("until", |_, a| {
        arity("until", a, 1)?;
        let n = to_i64(&a[0]);
        let step = if n < 0 { -1 } else { 1 };
        Ok(until_step(0, n, step))
    });
    f!("untilStep", |_, a| {
        arity("untilStep", a, 3)?;
        Ok(until_step(to_i64(&a[0]), to_i64(&a[1]), to_i64(&a[2])))
    });
    f!("seq", |_, a| {
        let parts: Vec<String> = seq(a).iter().map(|v| v.to_go_string()).collect();
        Ok(Value::from(parts.join(" ")))
    });

    // --- Sprig: lists
    f!("list", |_, a| Ok(Value::from(a.to_vec())));
    f!("tuple", |_, a| Ok(Value::from(a.to_vec())));
    f!("first", |_, a| {
        arity("first", a, 1)?;
        Ok(must_list("first", &a[0])?
            .first()
            .cloned()
            .unwrap_or_default())
    });
    f!("mustFirst", |_, a| {
        arity("mustFirst", a, 1)?;
        Ok(must_list("first", &a[0])?
            .first()
            .cloned()
            .unwrap_or_default())
    });
    f!("last", |_, a| {
        arity("last", a, 1)?;
        Ok(must_list("last", &a[0])?
            .last()
            .cloned()
            .unwrap_or_default())
    });
    f!("mustLast", |_, a| {
        arity("mustLast", a, 1)?;
        Ok(must_list("last", &a[0])?
            .last()
            .cloned()
            .unwrap_or_default())
    });
    f!("rest", |_, a| {
        arity("rest", a, 1)?;
        let l = must_list("rest", &a[0])?;
        Ok(if l.is_empty() {
            Value::Nil
        } else {
            Value::from(l[1..].to_vec())
        })
    });
    f!("mustRest", |_, a| {
        arity("mustRest", a, 1)?;
        let l = must_list("rest", &a[0])?;
        Ok(if l.is_empty() {
            Value::Nil
        } else {
            Value::from(l[1..].to_vec())
        })
    });
    f!("initial", |_, a| {
        arity("initial", a, 1)?;
        let l = must_list("initial", &a[0])?;
        Ok(if l.is_empty() {
            Value::Nil
        } else {
            Value::from(l[..l.len() - 1].to_vec())
        })
    });
    f!("mustInitial", |_, a| {
        arity("mustInitial", a, 1)?;
        let l = must_list("initial", &a[0])?;
        Ok(if l.is_empty() {
            Value::Nil
        } else {
            Value::from(l[..l.len() - 1].to_vec())
        })
    });
    f!("append", list_append);
    f!("push", list_append);
    f!("mustAppend", list_append);
    f!("mustPush", list_append);
    f!("prepend", |_, a| {
        arity("prepend", a, 2)?;
        let mut l = must_list("prepend", &a[0])?;
        l.insert(0, a[1].clone());
        Ok(Value::from(l))
    });
    f!("mustPrepend", |_, a| {
        arity("mustPrepend", a, 2)?;
        let mut l = must_list("prepend", &a[0])?;
        l.insert(0, a[1].clone());
        Ok(Value::from(l))
    });
    f!("concat", |_, a| {
        let mut out = Vec::new();
        for l in a {
            out.extend(must_list("concat", l)?);
        }
        Ok(Value::from(out))
    });
    f!("reverse", |_, a| {
        arity("reverse", a, 1)?;
        let mut l = must_list("reverse", &a[0])?;
        l.reverse();
        Ok(Value::from(l))
    });
    f!("mustReverse", |_, a| {
        arity("mustReverse", a, 1)?;
        let mut l = must_list("reverse", &a[0])?;
        l.reverse();
        Ok(Value::from(l))
    });
    f!("uniq", |_, a| {
        arity("uniq", a, 1)?;
        let l = must_list("uniq", &a[0])?;
        let mut out: Vec<Value> = Vec::new();
        for v in l {
            if !out.iter().any(|x| deep_equal(x, &v)) {
                out.push(v);
            }
        }
        Ok(Value::from(out))
    });
    f!("mustUniq", |_, a| {
        arity("mustUniq", a, 1)?;
        let l = must_list("uniq", &a[0])?;
        let mut out: Vec<Value> = Vec::new();
        for v in l {
            if !out.iter().any(|x| deep_equal(x, &v)) {
                out.push(v);
            }
        }
        Ok(Value::from(out))
    });
    f!("without", |_, a| {
        at_least("without", a, 1)?;
        let l = must_list("without", &a[0])?;
        Ok(Value::from(
            l.into_iter()
                .filter(|v| !a[1..].iter().any(|x| deep_equal(x, v)))
                .collect::<Vec<_>>(),
        ))
    });
    f!("has", |_, a| {
        arity("has", a, 2)?;
        let l = match &a[1] {
            Value::Nil => return Ok(Value::Bool(false)),
            other => must_list("has", other)?,
        };
        Ok(Value::Bool(l.iter().any(|x| deep_equal(x, &a[0]))))
    });
    f!("mustHas", |_, a| {
        arity("mustHas", a, 2)?;
        let l = must_list("has", &a[1])?;
        Ok(Value::Bool(l.iter().any(|x| deep_equal(x, &a[0]))))
    });
    f!("compact", |_, a| {
        arity("compact", a, 1)?;
        let l = must_list("compact", &a[0])?;
        Ok(Value::from(
            l.into_iter().filter(|v| !empty(v)).collect::<Vec<_>>(),
        ))
    });
    f!("mustCompact", |_, a| {
        arity("mustCompact", a, 1)?;
        let l = must_list("compact", &a[0])?;
        Ok(Value::from(
            l.into_iter().filter(|v| !empty(v)).collect::<Vec<_>>(),
        ))
    });
    f!("chunk", |_, a| {
        arity("chunk", a, 2)?;
        let n = to_i64(&a[0]).max(1) as usize;
        let l = must_list("chunk", &a[1])?;
        Ok(Value::from(
            l.chunks(n)
                .map(|c| Value::from(c.to_vec()))
                .collect::<Vec<_>>(),
        ))
    });

    // --- Sprig: dicts
    f!("dict", |_, a| {
        let mut m = BTreeMap::new();
        let mut i = 0;
        while i < a.len() {
            let k = strval(&a[i]);
            let v = a.get(i + 1).cloned().unwrap_or(Value::from(""));
            m.insert(k, v);
            i += 2;
        }
        Ok(Value::from(m))
    });
    f!("get", |_, a| {
        arity("get", a, 2)?;
        Ok(a[0].get(&s(a, 1)).unwrap_or(Value::from("")))
    });
    f!("set", |_, a| {
        arity("set", a, 3)?;
        let m = map_of(&a[0]).ok_or("set on a non-map")?;
        m.borrow_mut().insert(s(a, 1), a[2].clone());
        Ok(a[0].clone())
    });
    f!("unset", |_, a| {
        arity("unset", a, 2)?;
        let m = map_of(&a[0]).ok_or("unset on a non-map")?;
        m.borrow_mut().remove(&s(a, 1));
        Ok(a[0].clone())
    });
    f!("hasKey", |_, a| {
        arity("hasKey", a, 2)?;
        Ok(Value::Bool(match &a[0] {
            Value::Map(m) => m.borrow().contains_key(&s(a, 1)),
            _ => false,
        }))
    });
    f!("pluck", |_, a| {
        at_least("pluck", a, 1)?;
        let k = s(a, 0);
        Ok(Value::from(
            a[1..]
                .iter()
                .filter_map(|d| d.as_map().and_then(|m| m.borrow().get(&k).cloned()))
                .collect::<Vec<_>>(),
        ))
    });
    f!("keys", |_, a| {
        let mut out = Vec::new();
        for d in a {
            if let Some(m) = d.as_map() {
                out.extend(m.borrow().keys().map(|k| Value::from(k.as_str())));
            }
        }
        Ok(Value::from(out))
    });
    f!("values", |_, a| {
        arity("values", a, 1)?;
        Ok(Value::from(
            a[0].as_map()
                .map(|m| m.borrow().values().cloned().collect::<Vec<_>>())
                .unwrap_or_default(),
        ))
    });
    f!("pick", |_, a| {
        at_least("pick", a, 1)?;
        let mut out = BTreeMap::new();
        if let Some(m) = a[0].as_map() {
            let m = m.borrow();
            for k in &a[1..] {
                let k = strval(k);
                if let Some(v) = m.get(&k) {
                    out.insert(k, v.clone());
                }
            }
        }
        Ok(Value::from(out))
    });
    f!("omit", |_, a| {
        at_least("omit", a, 1)?;
        let drop: Vec<String> = a[1..].iter().map(strval).collect();
        let mut out = BTreeMap::new();
        if let Some(m) = a[0].as_map() {
            for (k, v) in m.borrow().iter() {
                if !drop.contains(k) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(Value::from(out))
    });
    f!("merge", |_, a| merge(a, false));
    f!("mustMerge", |_, a| merge(a, false));
    f!("mergeOverwrite", |_, a| merge(a, true));
    f!("mustMergeOverwrite", |_, a| merge(a, true));
    f!("deepCopy", |_, a| {
        arity("deepCopy", a, 1)?;
        Ok(a[0].deep_copy())
    });
    f!("mustDeepCopy", |_, a| {
        arity("mustDeepCopy", a, 1)?;
        Ok(a[0].deep_copy())
    });
    f!("dig", |_, a| {
        at_least("dig", a, 3)?;
        let n = a.len();
        let mut cur = a[n - 1].clone();
        for k in &a[..n - 2] {
            match cur.get(&strval(k)) {
                Some(v) => cur = v,
                None => return Ok(a[n - 2].clone()),
            }
        }
        Ok(cur)
    });

    // --- Sprig: encoding, hashes, misc
    f!("b64enc", |_, a| {
        arity("b64enc", a, 1)?;
        Ok(Value::from(
            base64::engine::general_purpose::STANDARD.encode(bytes_of(&a[0])),
        ))
    });
    f!("b64dec", |_, a| {
        arity("b64dec", a, 1)?;
        // Sprig returns the decoder's error text as the result.
        Ok(Value::from(
            match super::encoding::base64_decode(sv(a, 0).as_bytes()) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(at) => format!("illegal base64 data at input byte {at}"),
            },
        ))
    });
    f!("b32enc", |_, a| {
        arity("b32enc", a, 1)?;
        Ok(Value::from(base32_encode(&bytes_of(&a[0]))))
    });
    f!("sha256sum", |_, a| {
        arity("sha256sum", a, 1)?;
        use sha2::Digest as _;
        Ok(Value::from(to_hex(&sha2::Sha256::digest(
            s(a, 0).as_bytes(),
        ))))
    });
    f!("sha512sum", |_, a| {
        arity("sha512sum", a, 1)?;
        use sha2::Digest as _;
        Ok(Value::from(to_hex(&sha2::Sha512::digest(
            s(a, 0).as_bytes(),
        ))))
    });
    f!("sha1sum", |_, a| {
        arity("sha1sum", a, 1)?;
        Ok(Value::from(to_hex(&sha1(s(a, 0).as_bytes()))))
    });
    f!("adler32sum", |_, a| {
        arity("adler32sum", a, 1)?;
        let (mut x, mut y) = (1u32, 0u32);
        for b in s(a, 0).bytes() {
            x = (x + b as u32) % 65521;
            y = (y + x) % 65521;
        }
        Ok(Value::from(((y << 16) | x).to_string()))
    });
    f!("uuidv4", |_, _| {
        let mut b = rand_bytes(16);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = to_hex(&b);
        Ok(Value::from(format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )))
    });
    f!("base", |_, a| {
        arity("base", a, 1)?;
        Ok(Value::from(path_base(&s(a, 0))))
    });
    f!("osBase", |_, a| {
        arity("osBase", a, 1)?;
        Ok(Value::from(path_base(&s(a, 0))))
    });
    f!("dir", |_, a| {
        arity("dir", a, 1)?;
        let p = s(a, 0);
        Ok(Value::from(match p.rfind('/') {
            Some(0) => "/".to_string(),
            Some(i) => p[..i].to_string(),
            None => ".".to_string(),
        }))
    });
    f!("ext", |_, a| {
        arity("ext", a, 1)?;
        let b = path_base(&s(a, 0));
        Ok(Value::from(
            b.rfind('.').map(|i| b[i..].to_string()).unwrap_or_default(),
        ))
    });
    f!("clean", |_, a| {
        arity("clean", a, 1)?;
        Ok(Value::from(path_clean(&s(a, 0))))
    });
    f!("isAbs", |_, a| {
        arity("isAbs", a, 1)?;
        Ok(Value::Bool(s(a, 0).starts_with('/')))
    });
    f!("semverCompare", |_, a| {
        arity("semverCompare", a, 2)?;
        let ok = super::semver::constraint_matches(&s(a, 0), &s(a, 1)).map_err(FuncError::Msg)?;
        Ok(Value::Bool(ok))
    });
    f!("semver", |_, a| {
        arity("semver", a, 1)?;
        let v = super::semver::Version::parse(&s(a, 0)).map_err(FuncError::Msg)?;
        Ok(v.to_value())
    });
    f!("getHostByName", |_, _| Ok(Value::from("")));
    f!("urlParse", |_, a| {
        arity("urlParse", a, 1)?;
        Ok(url_parse(&s(a, 0)))
    });
    for name in [
        "htpasswd",
        "genPrivateKey",
        "genCA",
        "genCAWithKey",
        "genSelfSignedCert",
        "genSelfSignedCertWithKey",
        "genSignedCert",
        "genSignedCertWithKey",
        "bcrypt",
        "dateInZone",
        "ago",
        "toDate",
        "mustToDate",
        "unixEpoch",
        "duration",
        "htmlDate",
        "htmlDateInZone",
        "mustSlice",
        "fromToml",
        "mustFromYaml",
    ] {
        if !m.contains_key(name) {
            m.insert(name, unsupported);
        }
    }
    // Sprig's must* variants return the error instead of panicking; ours always return it.
    for (alias, base) in [
        ("mustRegexFind", "regexFind"),
        ("mustRegexFindAll", "regexFindAll"),
        ("mustRegexReplaceAll", "regexReplaceAll"),
        ("mustRegexReplaceAllLiteral", "regexReplaceAllLiteral"),
        ("mustRegexSplit", "regexSplit"),
        ("mustChunk", "chunk"),
        ("mustWithout", "without"),
    ] {
        if let Some(f) = m.get(base).copied() {
            m.insert(alias, f);
        }
    }
    super::crypto::register(&mut m);
    super::dates::register(&mut m);
    super::encoding::register(&mut m);
    m
}

fn sprig_slice(_: &mut Exec<'_>, a: &[Value]) -> R {
    at_least("slice", a, 1)?;
    let Some(l) = list_of(&a[0]) else {
        return Err(FuncError::Msg(format!(
            "list should be type of slice or array but {}",
            a[0].kind_name()
        )));
    };
    let idx: Vec<i64> = a[1..].iter().map(to_i64).collect();
    let lo = idx.first().copied().unwrap_or(0).max(0) as usize;
    let hi = idx
        .get(1)
        .copied()
        .map(|x| x.max(0) as usize)
        .unwrap_or(l.len());
    if lo > hi || hi > l.len() {
        return Err(FuncError::Msg(format!(
            "runtime error: slice bounds out of range [{lo}:{hi}] with capacity {}",
            l.len()
        )));
    }
    Ok(Value::from(l[lo..hi].to_vec()))
}

fn unsupported(_: &mut Exec<'_>, _: &[Value]) -> R {
    Err(FuncError::Msg(
        "this function is not supported by this renderer".into(),
    ))
}

/// Helm's marker around `required`/`fail` messages.
pub fn warn_wrap(s: &str) -> String {
    format!("HELM_ERR_START{s}HELM_ERR_END")
}

fn error_map(msg: &str) -> Value {
    let mut m = BTreeMap::new();
    m.insert("Error".to_string(), Value::from(msg));
    Value::from(m)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Str(_) => "string",
        Value::Float(_) | Value::Int(_) | Value::Int64(_) => "number",
        Value::Bool(_) => "bool",
        Value::List(_) => "array",
        _ => "object",
    }
}

fn include(ex: &mut Exec<'_>, a: &[Value]) -> R {
    arity("include", a, 2)?;
    let owned;
    let name: &str = match &a[0] {
        Value::Str(s) => s,
        other => {
            owned = strval(other);
            &owned
        }
    };
    let count = match ex.included.get_mut(name) {
        Some(c) => c,
        None => ex.included.entry(name.to_string()).or_insert(0),
    };
    *count += 1;
    if *count > ex.limits.max_depth {
        *count -= 1;
        return Err(FuncError::Limit(super::template::ExecError::Depth(
            name.to_string(),
        )));
    }
    let r = ex.execute_value(name, a[1].clone());
    if let Some(c) = ex.included.get_mut(name) {
        *c -= 1;
    }
    match r {
        Ok(v) => Ok(v),
        Err(super::template::ExecError::Exec(m)) => Err(FuncError::Msg(m)),
        Err(e) => Err(FuncError::Limit(e)),
    }
}

fn tpl(ex: &mut Exec<'_>, a: &[Value]) -> R {
    arity("tpl", a, 2)?;
    if !matches!(a[1], Value::Map(_)) {
        return Err(FuncError::Msg(format!(
            "wrong type for value; expected chartutil.Values; got {}",
            a[1].type_name()
        )));
    }
    let text = strval(&a[0]);
    ex.eval_text(&text, a[1].clone()).map(Value::from)
}

fn list_append(_: &mut Exec<'_>, a: &[Value]) -> R {
    arity("append", a, 2)?;
    let mut l = must_list("append", &a[0])?;
    l.push(a[1].clone());
    Ok(Value::from(l))
}

fn merge(a: &[Value], overwrite: bool) -> R {
    at_least("merge", a, 1)?;
    let Some(dst) = map_of(&a[0]) else {
        return Ok(a[0].clone());
    };
    for src in &a[1..] {
        if let Some(src) = src.as_map() {
            if Rc::ptr_eq(&dst, src) {
                continue;
            }
            let src = src.borrow().clone();
            merge_into(&dst, &src, overwrite);
        }
    }
    Ok(a[0].clone())
}

/// mergo's `Merge` (fill only empty destination values) or `WithOverride`.
fn merge_into(dst: &super::value::Map, src: &BTreeMap<String, Value>, overwrite: bool) {
    for (k, sv) in src {
        let dv = dst.borrow().get(k).cloned();
        match dv {
            None => {
                dst.borrow_mut().insert(k.clone(), sv.clone());
            }
            Some(Value::Map(dm)) => {
                if let Value::Map(sm) = sv {
                    if !Rc::ptr_eq(&dm, sm) {
                        let sm = sm.borrow().clone();
                        merge_into(&dm, &sm, overwrite);
                    }
                } else if overwrite && !empty(sv) {
                    dst.borrow_mut().insert(k.clone(), sv.clone());
                }
            }
            Some(d) => {
                if (overwrite && !empty(sv)) || (!overwrite && empty(&d)) {
                    dst.borrow_mut().insert(k.clone(), sv.clone());
                }
            }
        }
    }
}

fn go_space(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' | '\u{85}' | '\u{A0}'
    ) || c.is_whitespace()
}

fn go_split(s: &str, sep: &str) -> Vec<String> {
    if sep.is_empty() {
        return s.chars().map(|c| c.to_string()).collect();
    }
    s.split(sep).map(str::to_string).collect()
}

/// `fmt.Sprint`: spaces between operands when neither side is a string.
pub fn go_sprint(a: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in a.iter().enumerate() {
        if i > 0 {
            let prev_str = matches!(a[i - 1], Value::Str(_));
            let this_str = matches!(v, Value::Str(_));
            if !prev_str && !this_str {
                out.push(' ');
            }
        }
        out.push_str(&v.to_go_string());
    }
    out
}

/// Go's `==` with `text/template`'s type rules.
pub fn go_eq(a: &Value, b: &Value) -> Result<bool, FuncError> {
    Ok(match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Nil, _) | (_, Value::Nil) => false,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x) | Value::Int64(x), Value::Int(y) | Value::Int64(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Map(_), Value::Map(_)) | (Value::List(_), Value::List(_)) => {
            return Err(FuncError::Msg(format!(
                "non-comparable type {}: {}",
                a.to_go_string(),
                a.type_name()
            )));
        }
        (Value::Object(x), Value::Object(y)) => Rc::ptr_eq(x, y),
        _ => return Err("incompatible types for comparison".into()),
    })
}

fn go_lt(a: &Value, b: &Value) -> Result<bool, FuncError> {
    Ok(match (a, b) {
        (Value::Int(x) | Value::Int64(x), Value::Int(y) | Value::Int64(y)) => x < y,
        (Value::Float(x), Value::Float(y)) => x < y,
        (Value::Str(x), Value::Str(y)) => x < y,
        (Value::Nil, _)
        | (_, Value::Nil)
        | (Value::Bool(_), _)
        | (Value::List(_), _)
        | (Value::Map(_), _) => {
            return Err("invalid type for comparison".into());
        }
        _ => return Err("incompatible types for comparison".into()),
    })
}

fn html_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '"' => o.push_str("&#34;"),
            '\'' => o.push_str("&#39;"),
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\0' => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

fn js_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\'' => o.push_str("\\'"),
            '"' => o.push_str("\\\""),
            '<' => o.push_str("\\u003C"),
            '>' => o.push_str("\\u003E"),
            '&' => o.push_str("\\u0026"),
            '=' => o.push_str("\\u003D"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04X}", c as u32);
            }
            c => o.push(c),
        }
    }
    o
}

fn query_escape(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                o.push(b as char)
            }
            b' ' => o.push('+'),
            b => {
                let _ = write!(o, "%{b:02X}");
            }
        }
    }
    o
}

fn title(s: &str) -> String {
    let mut out = String::new();
    let mut prev_letter = false;
    for c in s.chars() {
        if !prev_letter {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
    }
    out
}

fn untitle(s: &str) -> String {
    let mut out = String::new();
    let mut prev_space = true;
    for c in s.chars() {
        if prev_space {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
        prev_space = c.is_whitespace();
    }
    out
}

fn snakecase(s: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            if i > 0
                && (chars[i - 1].is_lowercase()
                    || chars[i - 1].is_ascii_digit()
                    || chars.get(i + 1).is_some_and(|n| n.is_lowercase())
                        && chars[i - 1].is_uppercase())
            {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else if c == ' ' || c == '-' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    out
}

/// goutils' `AbbreviateFull`: `s` shortened to `width` bytes around `offset`, with `...`
/// marking what was cut (`s` unchanged where goutils refuses the widths).
fn abbreviate_full(s: &str, offset: i64, width: i64) -> String {
    let len = s.len() as i64;
    if s.is_empty() || width < 4 {
        return s.to_string();
    }
    if len <= width {
        return s.to_string();
    }
    let bytes = |from: i64, to: i64| {
        String::from_utf8_lossy(&s.as_bytes()[from as usize..to as usize]).into_owned()
    };
    let mut offset = offset.min(len);
    if len - offset < width - 3 {
        offset = len - (width - 3);
    }
    if offset <= 4 {
        return bytes(0, width - 3) + "...";
    }
    if width < 7 {
        return String::new();
    }
    if offset + width - 3 < len {
        return format!("...{}", abbreviate_full(&bytes(offset, len), 0, width - 3));
    }
    format!("...{}", bytes(len - (width - 3), len))
}

/// xstrings' `ToCamelCase` (Sprig's `camelcase`): words split by `-`, `_` and spaces are joined
/// with their first letter upper-cased; leading connectors stay, a run of connectors keeps all
/// but its last, and an all-capitals word keeps only its first capital.
fn camelcase(s: &str) -> String {
    fn connector(c: char) -> bool {
        c == '-' || c == '_' || c.is_whitespace()
    }
    fn upper(c: char) -> char {
        c.to_uppercase().next().unwrap_or(c)
    }
    fn lower(c: char) -> char {
        c.to_lowercase().next().unwrap_or(c)
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    // Leading connectors appear in the output; the first letter is upper-cased.
    let mut r0 = None;
    for c in chars.by_ref() {
        if !connector(c) {
            r0 = Some(c);
            break;
        }
        out.push(c);
    }
    let Some(first) = r0 else {
        // Only connectors: xstrings writes the last one twice.
        if let Some(last) = s.chars().last() {
            out.push(last);
        }
        return out;
    };
    let mut first_upper = first.is_uppercase();
    let mut r0 = upper(first);
    for c in chars {
        let r1 = r0;
        r0 = c;
        if connector(r0) && connector(r1) {
            out.push(r1);
            continue;
        }
        if connector(r1) {
            first_upper = r0.is_uppercase();
            r0 = upper(r0);
        } else {
            if first_upper {
                if r0.is_uppercase() {
                    r0 = lower(r0);
                } else {
                    first_upper = false;
                }
            }
            out.push(r1);
        }
    }
    out.push(r0);
    out
}

fn wrap(s: &str, width: usize, nl: &str) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for (i, w) in s.split(' ').enumerate() {
        if i > 0 {
            if line_len + 1 + w.len() > width.max(1) && line_len > 0 {
                out.push_str(nl);
                line_len = 0;
            } else {
                out.push(' ');
                line_len += 1;
            }
        }
        out.push_str(w);
        line_len += w.len();
    }
    out
}

/// Compiled patterns kept per thread: charts call `regexMatch`/`regexReplaceAll` with the same
/// handful of literal patterns thousands of times, and compiling one costs far more than
/// matching.
const REGEX_CACHE_MAX: usize = 512;

/// A compiled pattern from the per-thread cache. The cache hands out shared references (a
/// cloned `Regex` would start with empty match caches on every call).
fn regex(p: &str) -> Result<Rc<regex::Regex>, FuncError> {
    thread_local! {
        static CACHE: std::cell::RefCell<std::collections::HashMap<String, Rc<regex::Regex>>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    if let Some(re) = CACHE.with(|c| c.borrow().get(p).cloned()) {
        return Ok(re);
    }
    let re = Rc::new(
        regex::Regex::new(p).map_err(|e| FuncError::Msg(format!("error parsing regexp: {e}")))?,
    );
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= REGEX_CACHE_MAX {
            c.clear();
        }
        c.insert(p.to_string(), re.clone());
    });
    Ok(re)
}

/// A compiled pattern from the per-thread cache (`None` when it does not compile).
pub(crate) fn cached_regex(p: &str) -> Option<Rc<regex::Regex>> {
    regex(p).ok()
}

/// Converts Go's `$1`/`${name}` expansion to the regex crate's (same syntax, but Go treats
/// `$1a` as the group named `1a`, which the regex crate also does).
fn go_expand_template(s: &str) -> String {
    s.to_string()
}

/// The most bytes (or list items) one function call may generate.
const MAX_GENERATED: usize = 64 * 1024 * 1024;

fn until_step(start: i64, stop: i64, step: i64) -> Value {
    let mut v = Vec::new();
    if step == 0 {
        return Value::from(v);
    }
    let count = (i128::from(stop) - i128::from(start)) / i128::from(step);
    if count > MAX_GENERATED as i128 {
        return Value::from(v);
    }
    let mut i = start;
    if step > 0 {
        while i < stop {
            v.push(Value::Int(i));
            i += step;
        }
    } else {
        while i > stop {
            v.push(Value::Int(i));
            i += step;
        }
    }
    Value::from(v)
}

fn seq(a: &[Value]) -> Vec<Value> {
    let p: Vec<i64> = a.iter().map(to_i64).collect();
    let (start, step, end) = match p.len() {
        1 => (1, 1, p[0]),
        2 => (p[0], 1, p[1]),
        3 => (p[0], p[1], p[2]),
        _ => return Vec::new(),
    };
    let step = if p.len() < 3 && end < start { -1 } else { step };
    let mut out = Vec::new();
    if step == 0 || (i128::from(end) - i128::from(start)) / i128::from(step) > MAX_GENERATED as i128
    {
        return out;
    }
    let mut i = start;
    while (step > 0 && i <= end) || (step < 0 && i >= end) {
        out.push(Value::Int(i));
        i += step;
    }
    out
}

fn bytes_of(v: &Value) -> Vec<u8> {
    match v {
        Value::Bytes(b) => b.to_vec(),
        other => strval(other).into_bytes(),
    }
}

/// Lower-case hex (for tests of sibling modules).
#[cfg(test)]
pub(crate) fn to_hex_pub(b: &[u8]) -> String {
    to_hex(b)
}

fn to_hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn base32_encode(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    for chunk in data.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = u64::from_be_bytes([0, 0, 0, buf[0], buf[1], buf[2], buf[3], buf[4]]);
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < chars {
                out.push(A[((n >> (35 - i * 5)) & 31) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// SHA-1 (for `sha1sum`), small and self-contained.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[i * 4],
                block[i * 4 + 1],
                block[i * 4 + 2],
                block[i * 4 + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | ((!b) & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// Random bytes from the operating system.
pub fn rand_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    if getrandom::fill(&mut b).is_err() {
        // The OS generator is unavailable: fall back to time-seeded bytes (never for keys).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t >> ((i % 16) * 8)) as u8 ^ (i as u8);
        }
    }
    b
}

fn rand_u64() -> u64 {
    let b = rand_bytes(8);
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

fn rand_string(a: &[Value], alphabet: &str) -> R {
    arity("rand", a, 1)?;
    let n = to_i64(&a[0]).max(0) as usize;
    let chars: Vec<char> = alphabet.chars().collect();
    let mut out = String::with_capacity(n);
    for _ in 0..n {
        // Rejection sampling keeps the distribution uniform.
        loop {
            let r = rand_u64();
            let limit = u64::MAX - (u64::MAX % chars.len() as u64);
            if r < limit {
                out.push(chars[(r % chars.len() as u64) as usize]);
                break;
            }
        }
    }
    Ok(Value::from(out))
}

fn path_base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

/// Go's `path.Clean`.
pub fn path_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let j = parts.join("/");
    if rooted {
        format!("/{j}")
    } else if j.is_empty() {
        ".".into()
    } else {
        j
    }
}

fn url_parse(s: &str) -> Value {
    let mut m = BTreeMap::new();
    let (scheme, rest) = match s.find("://") {
        Some(i) => (&s[..i], &s[i + 3..]),
        None => ("", s),
    };
    let (hostpart, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (userinfo, host) = match hostpart.rfind('@') {
        Some(i) => (&hostpart[..i], &hostpart[i + 1..]),
        None => ("", hostpart),
    };
    let (path, fragment) = path.split_once('#').unwrap_or((path, ""));
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    m.insert("scheme".into(), Value::from(scheme));
    m.insert("host".into(), Value::from(host));
    m.insert(
        "hostname".into(),
        Value::from(host.rsplit_once(':').map(|x| x.0).unwrap_or(host)),
    );
    m.insert("path".into(), Value::from(path));
    m.insert("query".into(), Value::from(query));
    m.insert("opaque".into(), Value::from(""));
    m.insert("fragment".into(), Value::from(fragment));
    m.insert("userinfo".into(), Value::from(userinfo));
    Value::from(m)
}

fn to_yaml_pretty(v: &Value) -> String {
    // go-yaml v3 with indent 2: sequences are indented under their key.
    let plain = yaml::to_yaml(v);
    let mut out = String::new();
    let mut extra: Vec<(usize, usize)> = Vec::new();
    for line in plain.lines() {
        let ind = line.len() - line.trim_start().len();
        while extra.last().is_some_and(|(at, _)| {
            ind < *at || (ind == *at && !line.trim_start().starts_with("- "))
        }) {
            extra.pop();
        }
        let add: usize = extra.iter().map(|x| x.1).sum();
        out.push_str(&" ".repeat(add));
        out.push_str(line);
        out.push('\n');
        if line.trim_end().ends_with(':') {
            extra.push((ind, 2));
        }
    }
    out
}

fn to_toml(v: &Value) -> String {
    fn scalar(v: &Value) -> String {
        match v {
            Value::Str(s) => go_quote(s),
            Value::Nil => "\"\"".into(),
            Value::List(l) => format!("[{}]", l.iter().map(scalar).collect::<Vec<_>>().join(", ")),
            Value::Float(f) => {
                let s = format_float_g(*f);
                if s.contains(['.', 'e']) {
                    s
                } else {
                    format!("{s}.0")
                }
            }
            other => other.to_go_string(),
        }
    }
    // BurntSushi/toml indents keys by table depth and headers by depth - 1.
    fn table(m: &BTreeMap<String, Value>, prefix: &str, depth: usize, out: &mut String) {
        let pad = "  ".repeat(depth);
        for (k, v) in m {
            if !matches!(v, Value::Map(_)) {
                let _ = writeln!(out, "{pad}{k} = {}", scalar(v));
            }
        }
        for (k, v) in m {
            if let Value::Map(sub) = v {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                let _ = writeln!(out, "\n{pad}[{name}]");
                table(&sub.borrow(), &name, depth + 1, out);
            }
        }
    }
    let mut out = String::new();
    if let Value::Map(m) = v {
        table(&m.borrow(), "", 0, &mut out);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// printf

/// Go's `fmt.Sprintf` for the verbs templates use.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let chars: Vec<char> = format.chars().collect();
    let mut i = 0;
    let mut argi = 0;
    // An explicit `[n]` index was used: Go then does not report extra arguments.
    let mut reordered = false;
    while i < chars.len() {
        let c = chars[i];
        if c != '%' {
            out.push(c);
            i += 1;
            continue;
        }
        i += 1;
        if i >= chars.len() {
            out.push_str("%!(NOVERB)");
            break;
        }
        let (mut minus, mut plus, mut zero, mut space, mut sharp) =
            (false, false, false, false, false);
        while i < chars.len() {
            match chars[i] {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => sharp = true,
                _ => break,
            }
            i += 1;
        }
        // `%[n]verb`: the next argument is the n-th (1-based).
        let mut bad_index = false;
        let mut arg_index = |i: &mut usize, argi: &mut usize| {
            if *i < chars.len() && chars[*i] == '[' {
                reordered = true;
                let close = chars[*i..].iter().position(|&c| c == ']');
                let n: Option<usize> = close.and_then(|c| {
                    chars[*i + 1..*i + c]
                        .iter()
                        .collect::<String>()
                        .parse()
                        .ok()
                });
                match (close, n) {
                    (Some(c), Some(n)) if n >= 1 && n <= args.len() => {
                        *argi = n - 1;
                        *i += c + 1;
                    }
                    (Some(c), _) => {
                        bad_index = true;
                        *i += c + 1;
                    }
                    (None, _) => {
                        bad_index = true;
                        *i = chars.len() - 1;
                    }
                }
            }
        };
        arg_index(&mut i, &mut argi);
        let mut width: Option<usize> = None;
        while i < chars.len() && chars[i].is_ascii_digit() {
            width = Some(
                (width.unwrap_or(0) * 10 + chars[i].to_digit(10).unwrap_or(0) as usize)
                    .min(1 << 20),
            );
            i += 1;
        }
        if i < chars.len() && chars[i] == '*' {
            width = args.get(argi).map(|v| to_i64(v).clamp(0, 1 << 20) as usize);
            argi += 1;
            i += 1;
        }
        let mut prec: Option<usize> = None;
        if i < chars.len() && chars[i] == '.' {
            i += 1;
            prec = Some(0);
            while i < chars.len() && chars[i].is_ascii_digit() {
                prec = Some(
                    (prec.unwrap_or(0) * 10 + chars[i].to_digit(10).unwrap_or(0) as usize)
                        .min(1 << 20),
                );
                i += 1;
            }
        }
        arg_index(&mut i, &mut argi);
        if i >= chars.len() {
            out.push_str("%!(NOVERB)");
            break;
        }
        let verb = chars[i];
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        if bad_index {
            let _ = write!(out, "%!{verb}(BADINDEX)");
            continue;
        }
        let Some(arg) = args.get(argi) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        argi += 1;
        let body = format_value(verb, arg, plus, sharp, space, prec);
        let len = body.chars().count();
        match width {
            Some(w) if w > len => {
                let pad = w - len;
                if minus {
                    out.push_str(&body);
                    out.push_str(&" ".repeat(pad));
                } else if zero
                    && matches!(arg, Value::Int(_) | Value::Int64(_) | Value::Float(_))
                    && verb != 's'
                    && verb != 'v'
                    || zero && matches!(verb, 'd' | 'f' | 'x')
                {
                    let (sign, rest) = if body.starts_with('-') || body.starts_with('+') {
                        body.split_at(1)
                    } else {
                        ("", body.as_str())
                    };
                    out.push_str(sign);
                    out.push_str(&"0".repeat(pad));
                    out.push_str(rest);
                } else {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(&body);
                }
            }
            _ => out.push_str(&body),
        }
    }
    if !reordered && argi < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[argi..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), a.to_go_string()))
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

/// One argument under one verb, as `fmt` prints it: slices and maps element by element (keys
/// too), a verb that does not fit a value as `%!verb(type=value)`.
fn format_value(
    verb: char,
    arg: &Value,
    plus: bool,
    sharp: bool,
    space: bool,
    prec: Option<usize>,
) -> String {
    if sharp && verb == 'v' {
        return go_syntax(arg);
    }
    match arg {
        Value::List(l) if !matches!(verb, 'v' | 'T') => {
            let parts: Vec<String> = l
                .iter()
                .map(|e| format_value(verb, e, plus, sharp, space, prec))
                .collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Map(m) if !matches!(verb, 'v' | 'T') => {
            let m = m.borrow();
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        format_value(verb, &Value::from(k.as_str()), plus, sharp, space, prec),
                        format_value(verb, &m[k], plus, sharp, space, prec)
                    )
                })
                .collect();
            format!("map[{}]", parts.join(" "))
        }
        _ => format_verb(verb, arg, plus, sharp, space, prec).unwrap_or_else(|| match arg {
            Value::Nil => format!("%!{verb}(<nil>)"),
            other => format!("%!{verb}({}={})", other.type_name(), other.to_go_string()),
        }),
    }
}

/// `%#v`: the value in Go syntax.
fn go_syntax(v: &Value) -> String {
    match v {
        Value::Nil => "<nil>".into(),
        Value::Str(s) => go_quote(s),
        Value::List(l) => format!(
            "[]interface {{}}{{{}}}",
            l.iter().map(go_syntax).collect::<Vec<_>>().join(", ")
        ),
        Value::Map(m) => {
            let m = m.borrow();
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            format!(
                "map[string]interface {{}}{{{}}}",
                keys.into_iter()
                    .map(|k| format!("{}:{}", go_quote(k), go_syntax(&m[k])))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        other => other.to_go_string(),
    }
}

fn format_verb(
    verb: char,
    arg: &Value,
    plus: bool,
    sharp: bool,
    space: bool,
    prec: Option<usize>,
) -> Option<String> {
    let _ = space;
    if verb == 'T' {
        return Some(arg.type_name());
    }
    // fmt prints an int64 as it prints an int.
    let widened;
    let arg = match arg {
        Value::Int64(i) => {
            widened = Value::Int(*i);
            &widened
        }
        other => other,
    };
    Some(match verb {
        'v' => match arg {
            Value::Nil => "<nil>".into(),
            Value::Float(f) if plus && *f >= 0.0 => format!("+{}", format_float_g(*f)),
            Value::Int(i) if plus && *i >= 0 => format!("+{i}"),
            Value::Str(s) if sharp => go_quote(s),
            Value::Str(s) => match prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.to_string(),
            },
            other => other.to_go_string(),
        },
        's' => match arg {
            Value::Str(s) => match prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.to_string(),
            },
            Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::Nil => return None,
            other => other.to_go_string(),
        },
        'q' => match arg {
            Value::Str(s) => go_quote(s),
            Value::Int(i) => format!("'{}'", char::from_u32(*i as u32).unwrap_or('\u{FFFD}')),
            _ => return None,
        },
        'd' => match arg {
            Value::Int(i) => {
                if plus && *i >= 0 {
                    format!("+{i}")
                } else {
                    i.to_string()
                }
            }
            _ => return None,
        },
        't' => match arg {
            Value::Bool(b) => b.to_string(),
            _ => return None,
        },
        'x' | 'X' => {
            let s = match arg {
                Value::Int(i) => {
                    if *i < 0 {
                        format!("-{:x}", i.unsigned_abs())
                    } else {
                        format!("{i:x}")
                    }
                }
                Value::Str(s) => to_hex(s.as_bytes()),
                Value::Bytes(b) => to_hex(b),
                Value::Float(_) => return None,
                _ => return None,
            };
            if verb == 'X' { s.to_uppercase() } else { s }
        }
        'o' => match arg {
            Value::Int(i) => format!("{i:o}"),
            _ => return None,
        },
        'b' => match arg {
            Value::Int(i) => format!("{i:b}"),
            _ => return None,
        },
        'c' => match arg {
            Value::Int(i) => char::from_u32(*i as u32).unwrap_or('\u{FFFD}').to_string(),
            _ => return None,
        },
        'f' | 'F' => match arg {
            Value::Float(f) => {
                let s = format!("{:.*}", prec.unwrap_or(6), f);
                if plus && *f >= 0.0 {
                    format!("+{s}")
                } else {
                    s
                }
            }
            _ => return None,
        },
        'e' => match arg {
            Value::Float(f) => go_exp(*f, prec.unwrap_or(6)),
            _ => return None,
        },
        'g' => match arg {
            Value::Float(f) => match prec {
                None => format_float_g(*f),
                Some(p) => {
                    let p = p.max(1);
                    let e = go_exp(*f, p - 1);
                    let exp: i32 = e
                        .rsplit_once('e')
                        .and_then(|(_, x)| x.parse().ok())
                        .unwrap_or(0);
                    if exp < -4 || exp >= p as i32 {
                        let (m, x) = e.split_once('e').unwrap_or((&e, ""));
                        let m = if m.contains('.') {
                            m.trim_end_matches('0').trim_end_matches('.')
                        } else {
                            m
                        };
                        format!("{m}e{x}")
                    } else {
                        let s = format!("{:.*}", (p as i32 - 1 - exp).max(0) as usize, f);
                        if s.contains('.') {
                            s.trim_end_matches('0').trim_end_matches('.').to_string()
                        } else {
                            s
                        }
                    }
                }
            },
            _ => return None,
        },
        'T' => arg.type_name(),
        'U' => match arg {
            Value::Int(i) => format!("U+{i:04X}"),
            _ => return None,
        },
        _ => return None,
    })
}

fn go_exp(f: f64, prec: usize) -> String {
    let s = format!("{:.*e}", prec, f);
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    format!(
        "{m}e{}{:02}",
        if e < 0 { '-' } else { '+' },
        e.unsigned_abs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printf_like_go() {
        assert_eq!(sprintf("%s-%d", &[Value::from("a"), Value::Int(3)]), "a-3");
        assert_eq!(sprintf("%v", &[Value::Float(1e6)]), "1e+06");
        assert_eq!(sprintf("%q", &[Value::from("x\"y")]), "\"x\\\"y\"");
        assert_eq!(
            sprintf("%05d|%-4s|", &[Value::Int(42), Value::from("ab")]),
            "00042|ab  |"
        );
        assert_eq!(sprintf("%.2f", &[Value::Float(1.0 / 3.0)]), "0.33");
        assert_eq!(sprintf("%d", &[Value::Float(1.0)]), "%!d(float64=1)");
    }

    /// Expected values printed by helm 3.17.3 (Sprig v3.3, xstrings, goutils).
    #[test]
    fn sprig_strings_like_helm() {
        for (input, want) in [
            ("GOLANG_IS_GREAT", "GolangIsGreat"),
            ("http_server-name", "HttpServerName"),
            ("_complex__case_", "_Complex_Case_"),
            ("hello world", "HelloWorld"),
            ("HTTPServer", "Httpserver"),
            ("ab--cd", "Ab-Cd"),
            ("_", "__"),
            ("XY z", "XyZ"),
        ] {
            assert_eq!(camelcase(input), want, "camelcase {input:?}");
        }
        assert_eq!(abbreviate_full("1234 5678 9123", 5, 10), "...5678...");
        assert_eq!(
            sprintf(
                "%q|%[2]v %[1]v",
                &[Value::from(vec![Value::from("a")]), Value::Int(2)]
            ),
            "[\"a\"]|2 [a]"
        );
        assert_eq!(
            sprintf("%.3v|%d", &[Value::from("abcdef"), Value::Nil]),
            "abc|%!d(<nil>)"
        );
    }

    #[test]
    fn substr_out_of_range_is_gos_runtime_error() {
        let funcs = func_map();
        let substr = funcs.get("substr").copied().expect("substr");
        let set = super::super::template::Set::default();
        let call = |a: &[Value]| {
            let mut ex = Exec::new(&set, &funcs, Default::default());
            match substr(&mut ex, a) {
                Ok(v) => Ok(v.to_go_string()),
                Err(FuncError::Msg(m)) => Err(m),
                Err(FuncError::Limit(e)) => Err(e.to_string()),
            }
        };
        assert_eq!(
            call(&[Value::Int(3), Value::Int(1), Value::from("abcdef")]),
            Err("runtime error: slice bounds out of range [3:1]".into())
        );
        assert_eq!(
            call(&[Value::Int(-1), Value::Int(10), Value::from("abcdef")]),
            Err("runtime error: slice bounds out of range [:10] with length 6".into())
        );
        assert_eq!(
            call(&[Value::Int(1), Value::Int(3), Value::from("abcdef")]),
            Ok("bc".into())
        );
    }

    #[test]
    fn b64dec_skips_newlines_and_reports_gos_offsets() {
        use super::super::encoding::base64_decode;
        assert_eq!(base64_decode(b"aGVs\nbG8=").as_deref(), Ok(&b"hello"[..]));
        assert_eq!(base64_decode(b"!!"), Err(0));
        assert_eq!(base64_decode(b"aGVsbG8"), Err(4));
        assert_eq!(base64_decode(b"aGVsbG8=x"), Err(8));
    }

    #[test]
    fn sha1_matches_known_vector() {
        assert_eq!(
            to_hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
}
