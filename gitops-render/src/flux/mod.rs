//! Flux's layer on top of kustomize, as kustomize-controller applies it.
//!
//! * [`FluxKustomization`]: the kustomization Flux generates for a directory without one, the
//!   spec overrides (targetNamespace, namePrefix/nameSuffix, patches, images, components) merged
//!   into it, the build confined to the artifact root, and `commonMetadata` (see the
//!   `kustomization` module's documentation on [`FluxKustomization`]).
//! * Post-build variable substitution (kustomize-controller's `postBuild.substitute`), below.
//!
//! The substitution dialect is Flux's `envsubst`: only the braced form `${var}` is expanded (a bare `$var`
//! is left alone, so shell snippets survive), `$${var}` writes a literal `${var}`, and inside
//! the braces: `${v:-d}` / `${v-d}` (default when unset or empty / when unset), `${v:=d}` /
//! `${v=d}` (the same, as Flux evaluates them), `${#v}` (length), `${v:pos}` and
//! `${v:pos:len}` (substrings), `${v^}` `${v^^}` `${v,}` `${v,,}` (case), `${v#p}` `${v##p}`
//! `${v%p}` `${v%%p}` (prefix/suffix removal) and `${v/p/r}` `${v//p/r}` (replacement).
//! In strict mode a variable that is unset and has no default is an error.
//!
//! Each object is substituted as its YAML text, then read back, unless it carries the
//! annotation or label `kustomize.toolkit.fluxcd.io/substitute: disabled`.

mod kustomization;
mod sourceignore;

pub use kustomization::{
    BuildError, CommonMetadata, EffectiveKustomization, FluxKustomization, Image,
    KUSTOMIZATION_FILES, Patch, Selector, Substitution, clean_relative, find_kustomization_file,
    generate, is_local_relative_path, set_common_metadata,
};

use std::collections::BTreeMap;

use crate::kustomize::Resource;
use crate::yaml::{Value, parse_stream, to_yaml};

/// The opt-out annotation/label.
pub const SUBSTITUTE_KEY: &str = "kustomize.toolkit.fluxcd.io/substitute";

/// Why substitution failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FluxError {
    /// Strict mode met a variable that is not set.
    #[error("variable not set (strict mode): {name:?} in {object}")]
    Unset {
        /// The variable.
        name: String,
        /// The object (`Kind/namespace/name`).
        object: String,
    },
    /// A `${` without its closing brace, or a malformed operator.
    #[error("bad substitution in {object}: {message}")]
    Syntax {
        /// The object.
        object: String,
        /// What is wrong.
        message: String,
    },
    /// The substituted text is no longer valid YAML.
    #[error("substitution made {object} invalid YAML: {message}")]
    Yaml {
        /// The object.
        object: String,
        /// The parser's message.
        message: String,
    },
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

/// Expands `${...}` references in `text`. Errors carry `object` for context.
pub fn envsubst(
    text: &str,
    vars: &BTreeMap<String, String>,
    strict: bool,
    object: &str,
) -> Result<String, FluxError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' && chars.get(i + 1) == Some(&'$') && chars.get(i + 2) == Some(&'{') {
            out.push('$');
            out.push('{');
            i += 3;
            continue;
        }
        if c == '$' && chars.get(i + 1) == Some(&'{') {
            // find the matching brace (nested `${` allowed in defaults)
            let mut depth = 1;
            let mut j = i + 2;
            while j < chars.len() && depth > 0 {
                if chars[j] == '{' {
                    depth += 1;
                } else if chars[j] == '}' {
                    depth -= 1;
                }
                j += 1;
            }
            if depth != 0 {
                return Err(FluxError::Syntax {
                    object: object.into(),
                    message: "missing closing brace".into(),
                });
            }
            let inner: String = chars[i + 2..j - 1].iter().collect();
            match expand_expr(&inner, vars, strict, object)? {
                Some(v) => out.push_str(&v),
                None => out.extend(&chars[i..j]),
            }
            i = j;
            continue;
        }
        out.push(c);
        i += 1;
    }
    Ok(out)
}

/// Expands the text between `${` and `}`; `None` when it is not a variable reference.
fn expand_expr(
    inner: &str,
    vars: &BTreeMap<String, String>,
    strict: bool,
    object: &str,
) -> Result<Option<String>, FluxError> {
    if let Some(name) = inner.strip_prefix('#')
        && !name.is_empty()
        && name.chars().all(is_name_char)
    {
        let v = lookup(name, vars, strict, object)?;
        return Ok(Some(v.chars().count().to_string()));
    }
    let mut it = inner.char_indices();
    match it.next() {
        Some((_, c)) if is_name_start(c) => {}
        _ => return Ok(None),
    }
    let end = inner
        .char_indices()
        .find(|(_, c)| !is_name_char(*c))
        .map(|(i, _)| i)
        .unwrap_or(inner.len());
    let name = &inner[..end];
    let op = &inner[end..];
    let val = vars.get(name);
    let syntax = |m: &str| FluxError::Syntax {
        object: object.into(),
        message: format!("{m} in ${{{inner}}}"),
    };
    let sub = |t: &str| envsubst(t, vars, strict, object);
    let result = if op.is_empty() {
        lookup(name, vars, strict, object)?
    } else if let Some(d) = op.strip_prefix(":-").or(op.strip_prefix(":=")) {
        match val {
            Some(v) if !v.is_empty() => v.clone(),
            _ => sub(d)?,
        }
    } else if let Some(d) = op.strip_prefix('-').or(op.strip_prefix('=')) {
        match val {
            Some(v) => v.clone(),
            None => sub(d)?,
        }
    } else if op == "^^" {
        lookup(name, vars, strict, object)?.to_uppercase()
    } else if op == ",," {
        lookup(name, vars, strict, object)?.to_lowercase()
    } else if op == "^" || op == "," {
        let v = lookup(name, vars, strict, object)?;
        let mut cs = v.chars();
        match cs.next() {
            Some(f) if op == "^" => f.to_uppercase().chain(cs).collect(),
            Some(f) => f.to_lowercase().chain(cs).collect(),
            None => String::new(),
        }
    } else if let Some(p) = op.strip_prefix("##").or(op.strip_prefix('#')) {
        let v = lookup(name, vars, strict, object)?;
        v.strip_prefix(p).unwrap_or(&v).to_string()
    } else if let Some(p) = op.strip_prefix("%%").or(op.strip_prefix('%')) {
        let v = lookup(name, vars, strict, object)?;
        v.strip_suffix(p).unwrap_or(&v).to_string()
    } else if let Some(rest) = op.strip_prefix("//") {
        let v = lookup(name, vars, strict, object)?;
        let (p, r) = rest.split_once('/').unwrap_or((rest, ""));
        if p.is_empty() { v } else { v.replace(p, r) }
    } else if let Some(rest) = op.strip_prefix('/') {
        let v = lookup(name, vars, strict, object)?;
        let (p, r) = rest.split_once('/').unwrap_or((rest, ""));
        if p.is_empty() { v } else { v.replacen(p, r, 1) }
    } else if let Some(rest) = op.strip_prefix(':') {
        let v: Vec<char> = lookup(name, vars, strict, object)?.chars().collect();
        let (pos, len) = match rest.split_once(':') {
            Some((p, l)) => (p, Some(l)),
            None => (rest, None),
        };
        let pos: i64 = pos
            .trim()
            .parse()
            .map_err(|_| syntax("bad substring offset"))?;
        let start = if pos < 0 {
            (v.len() as i64 + pos).max(0) as usize
        } else {
            (pos as usize).min(v.len())
        };
        let end = match len {
            None => v.len(),
            Some(l) => {
                let l: usize = l
                    .trim()
                    .parse()
                    .map_err(|_| syntax("bad substring length"))?;
                (start + l).min(v.len())
            }
        };
        v[start..end].iter().collect()
    } else {
        return Err(syntax("unknown operator"));
    };
    Ok(Some(result))
}

fn lookup(
    name: &str,
    vars: &BTreeMap<String, String>,
    strict: bool,
    object: &str,
) -> Result<String, FluxError> {
    match vars.get(name) {
        Some(v) => Ok(v.clone()),
        None if strict => Err(FluxError::Unset {
            name: name.into(),
            object: object.into(),
        }),
        None => Ok(String::new()),
    }
}

fn disabled(r: &Resource) -> bool {
    ["annotations", "labels"].iter().any(|f| {
        r.value
            .get_path(&["metadata", f, SUBSTITUTE_KEY])
            .and_then(Value::as_str)
            == Some("disabled")
    })
}

/// Merges variables the way Flux does: `substituteFrom` sources in order (later ones win),
/// then the inline `substitute` map over all of them.
pub fn merge_vars(
    from: &[BTreeMap<String, String>],
    inline: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for m in from {
        out.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out.extend(inline.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// Substitutes variables in every object that does not opt out.
pub fn substitute(
    resources: &mut [Resource],
    vars: &BTreeMap<String, String>,
    strict: bool,
) -> Result<(), FluxError> {
    for r in resources.iter_mut() {
        if disabled(r) {
            continue;
        }
        let object = format!("{}/{}/{}", r.kind(), r.namespace(), r.name());
        let text = to_yaml(&r.value);
        let out = envsubst(&text, vars, strict, &object)?;
        if out == text {
            continue;
        }
        let mut docs = parse_stream(&out).map_err(|e| FluxError::Yaml {
            object: object.clone(),
            message: e.to_string(),
        })?;
        if docs.len() != 1 {
            return Err(FluxError::Yaml {
                object,
                message: "substitution produced more than one document".into(),
            });
        }
        r.value = docs.remove(0);
    }
    Ok(())
}

/// Reads a `.env`-style file (`KEY=VALUE` lines, `#` comments) into variables.
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.insert(k.trim().to_string(), v.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("cluster", "prod-eu"), ("empty", ""), ("NAME", "Flux")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn s(t: &str) -> String {
        envsubst(t, &vars(), false, "test").expect("substitutes")
    }

    #[test]
    fn flux_envsubst_dialect() {
        assert_eq!(s("name: ${cluster}"), "name: prod-eu");
        assert_eq!(s("a: ${missing:=fallback}"), "a: fallback");
        assert_eq!(s("a: ${empty:-d} ${empty-d} ${missing-d}"), "a: d  d");
        assert_eq!(s("a: ${empty=d} ${empty:=d}"), "a:  d");
        assert_eq!(s("a: $${cluster} $cluster"), "a: ${cluster} $cluster");
        assert_eq!(s("${#cluster} ${cluster:0:4} ${cluster:5}"), "7 prod eu");
        assert_eq!(s("${NAME^^} ${NAME,,} ${NAME,}"), "FLUX flux flux");
        assert_eq!(
            s("${cluster#prod-} ${cluster%-eu} ${cluster/-/_}"),
            "eu prod prod_eu"
        );
        assert_eq!(s("${missing}"), "");
        assert_eq!(s("${missing:-${cluster}}"), "prod-eu");
    }

    #[test]
    fn strict_mode_rejects_unset_variables() {
        let err = envsubst("${nope}", &vars(), true, "ConfigMap/ns/x").expect_err("unset");
        assert!(matches!(err, FluxError::Unset { ref name, .. } if name == "nope"));
        assert_eq!(
            envsubst("${nope:=ok}", &vars(), true, "x").expect("default"),
            "ok"
        );
    }

    #[test]
    fn inline_vars_win_and_objects_can_opt_out() {
        let from = vec![vars()];
        let inline: BTreeMap<String, String> = [("cluster".to_string(), "inline".to_string())]
            .into_iter()
            .collect();
        let merged = merge_vars(&from, &inline);
        assert_eq!(merged["cluster"], "inline");
        let docs = parse_stream(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  c: ${cluster}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  annotations:\n    kustomize.toolkit.fluxcd.io/substitute: disabled\ndata:\n  c: ${cluster}\n",
        )
        .expect("yaml");
        let mut rs: Vec<Resource> = docs.into_iter().map(Resource::from_value).collect();
        substitute(&mut rs, &merged, true).expect("substitutes");
        assert_eq!(rs[0].value.str_at(&["data", "c"]), Some("inline"));
        assert_eq!(rs[1].value.str_at(&["data", "c"]), Some("${cluster}"));
    }
}
