//! JSON patch (RFC 6902) on [`Value`]s, as kustomize's PatchJson6902 transformer applies it.

use crate::yaml::Value;

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Op {
    op: String,
    path: String,
    from: Option<String>,
    value: Option<Value>,
}

/// Reads the operations from a decoded patch document (a sequence of maps).
pub(crate) fn parse_ops(v: &Value) -> Result<Vec<Op>, String> {
    let Value::Seq(items) = v else {
        return Err("a JSON 6902 patch must be a list of operations".into());
    };
    let mut ops = Vec::new();
    for it in items {
        let m = it
            .as_map()
            .ok_or_else(|| "each JSON 6902 operation must be an object".to_string())?;
        let op = m
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| "operation without \"op\"".to_string())?
            .to_string();
        let path = m
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{op} operation without \"path\""))?
            .to_string();
        let from = m.get("from").and_then(Value::as_str).map(str::to_string);
        let value = m.get("value").cloned();
        if matches!(op.as_str(), "add" | "replace" | "test") && value.is_none() {
            return Err(format!("{op} operation at {path} without \"value\""));
        }
        if matches!(op.as_str(), "move" | "copy") && from.is_none() {
            return Err(format!("{op} operation at {path} without \"from\""));
        }
        if !matches!(
            op.as_str(),
            "add" | "remove" | "replace" | "move" | "copy" | "test"
        ) {
            return Err(format!("unexpected kind of operation: {op}"));
        }
        ops.push(Op {
            op,
            path,
            from,
            value,
        });
    }
    Ok(ops)
}

fn tokens(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("invalid JSON pointer {path:?}"));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn get<'a>(v: &'a Value, toks: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for t in toks {
        cur = match cur {
            Value::Map(m) => m.get(t)?,
            Value::Seq(s) => s.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn parent<'a>(v: &'a mut Value, toks: &[String], path: &str) -> Result<&'a mut Value, String> {
    let mut cur = v;
    for t in toks {
        cur = match cur {
            Value::Map(m) => m
                .get_mut(t)
                .ok_or_else(|| format!("doc is missing path: {path}"))?,
            Value::Seq(s) => {
                let i = t
                    .parse::<usize>()
                    .map_err(|_| format!("invalid index {t:?} in {path}"))?;
                s.get_mut(i)
                    .ok_or_else(|| format!("doc is missing path: {path}"))?
            }
            _ => return Err(format!("doc is missing path: {path}")),
        };
    }
    Ok(cur)
}

fn add(doc: &mut Value, path: &str, val: Value, replace: bool) -> Result<(), String> {
    let toks = tokens(path)?;
    let Some((last, head)) = toks.split_last() else {
        *doc = val;
        return Ok(());
    };
    let p = parent(doc, head, path)?;
    match p {
        Value::Map(m) => {
            if replace && !m.contains_key(last) {
                return Err(format!("doc is missing key: {path}"));
            }
            m.insert(last.clone(), val);
            Ok(())
        }
        Value::Seq(s) => {
            if last == "-" && !replace {
                s.push(val);
                return Ok(());
            }
            let i = last
                .parse::<usize>()
                .map_err(|_| format!("invalid index {last:?} in {path}"))?;
            if replace {
                let slot = s
                    .get_mut(i)
                    .ok_or_else(|| format!("index out of range in {path}"))?;
                *slot = val;
            } else {
                if i > s.len() {
                    return Err(format!("index out of range in {path}"));
                }
                s.insert(i, val);
            }
            Ok(())
        }
        _ => Err(format!("doc is missing path: {path}")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let toks = tokens(path)?;
    let Some((last, head)) = toks.split_last() else {
        return Err("cannot remove the whole document".into());
    };
    let p = parent(doc, head, path)?;
    match p {
        Value::Map(m) => m
            .shift_remove(last)
            .ok_or_else(|| format!("unable to remove nonexistent key: {last}: missing value")),
        Value::Seq(s) => {
            let i = last
                .parse::<usize>()
                .map_err(|_| format!("invalid index {last:?} in {path}"))?;
            if i >= s.len() {
                return Err(format!("index out of range in {path}"));
            }
            Ok(s.remove(i))
        }
        _ => Err(format!("doc is missing path: {path}")),
    }
}

/// Applies the operations in order.
pub(crate) fn apply(doc: &mut Value, ops: &[Op]) -> Result<(), String> {
    for op in ops {
        match op.op.as_str() {
            "add" => add(
                doc,
                &op.path,
                op.value.clone().unwrap_or(Value::Null),
                false,
            )?,
            "replace" => add(doc, &op.path, op.value.clone().unwrap_or(Value::Null), true)?,
            "remove" => {
                remove(doc, &op.path)?;
            }
            "move" => {
                let from = op.from.clone().unwrap_or_default();
                let v = remove(doc, &from)?;
                add(doc, &op.path, v, false)?;
            }
            "copy" => {
                let from = op.from.clone().unwrap_or_default();
                let v = get(doc, &tokens(&from)?)
                    .cloned()
                    .ok_or_else(|| format!("doc is missing path: {from}"))?;
                add(doc, &op.path, v, false)?;
            }
            "test" => {
                let v = get(doc, &tokens(&op.path)?);
                if v != op.value.as_ref() {
                    return Err(format!("testing value {} failed", op.path));
                }
            }
            other => return Err(format!("unexpected kind of operation: {other}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_stream;

    #[test]
    fn applies_operations() {
        let mut d = parse_stream("a:\n  b: [1, 2]\nc: x\n")
            .expect("yaml")
            .remove(0);
        let ops = parse_ops(
            &parse_stream("- {op: add, path: /a/b/1, value: 9}\n- {op: replace, path: /c, value: y}\n- {op: remove, path: /a/b/0}\n- {op: add, path: /a/b/-, value: 3}\n- {op: copy, from: /c, path: /d}\n")
                .expect("yaml")
                .remove(0),
        )
        .expect("ops");
        apply(&mut d, &ops).expect("applies");
        assert_eq!(
            d,
            parse_stream("a:\n  b: [9, 2, 3]\nc: y\nd: y\n")
                .expect("yaml")
                .remove(0)
        );
        let bad = parse_ops(
            &parse_stream("- {op: replace, path: /zz, value: 1}\n")
                .expect("yaml")
                .remove(0),
        )
        .expect("ops");
        assert!(apply(&mut d, &bad).is_err());
    }
}
