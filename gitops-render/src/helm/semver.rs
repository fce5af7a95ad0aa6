//! Masterminds/semver v3 rules, as Helm uses them for `semverCompare`, dependency versions
//! and `kubeVersion` constraints.

use std::cmp::Ordering;

use super::value::Value;

/// A semantic version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Major.
    pub major: u64,
    /// Minor.
    pub minor: u64,
    /// Patch.
    pub patch: u64,
    /// Pre-release (after `-`).
    pub pre: String,
    /// Build metadata (after `+`).
    pub meta: String,
    original: String,
}

impl Version {
    /// Parses leniently like `semver.NewVersion` (optional `v`, missing minor/patch).
    pub fn parse(s: &str) -> Result<Version, String> {
        let orig = s.to_string();
        let t = s.trim();
        let t = t
            .strip_prefix('v')
            .or_else(|| t.strip_prefix('V'))
            .unwrap_or(t);
        let (t, meta) = match t.split_once('+') {
            Some((a, b)) => (a, b.to_string()),
            None => (t, String::new()),
        };
        let (core, pre) = match t.split_once('-') {
            Some((a, b)) => (a, b.to_string()),
            None => (t, String::new()),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if parts.is_empty()
            || parts.len() > 3
            || parts
                .iter()
                .any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()))
        {
            return Err("Invalid Semantic Version".into());
        }
        let n = |i: usize| {
            parts
                .get(i)
                .map(|p| {
                    p.parse::<u64>()
                        .map_err(|_| "Invalid Semantic Version".to_string())
                })
                .unwrap_or(Ok(0))
        };
        Ok(Version {
            major: n(0)?,
            minor: n(1)?,
            patch: n(2)?,
            pre,
            meta,
            original: orig,
        })
    }

    /// The version as a template value: a `*semver.Version` whose methods (`Major`, `Minor`,
    /// `Patch`, `Prerelease`, `Metadata`, `Original`, `String`, `Compare`, `LessThan`,
    /// `GreaterThan`, `Equal`) templates call, printed as its `String()`.
    pub fn to_value(&self) -> Value {
        Value::Object(std::rc::Rc::new(self.clone()))
    }

    /// Masterminds' `String()`: `MAJOR.MINOR.PATCH[-PRE][+META]`, without a leading `v`.
    pub fn canonical(&self) -> String {
        let mut s = format!("{}.{}.{}", self.major, self.minor, self.patch);
        if !self.pre.is_empty() {
            s.push('-');
            s.push_str(&self.pre);
        }
        if !self.meta.is_empty() {
            s.push('+');
            s.push_str(&self.meta);
        }
        s
    }

    fn cmp(&self, o: &Version) -> Ordering {
        self.major
            .cmp(&o.major)
            .then(self.minor.cmp(&o.minor))
            .then(self.patch.cmp(&o.patch))
            .then_with(|| cmp_pre(&self.pre, &o.pre))
    }
}

fn cmp_pre(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    let pa: Vec<&str> = a.split('.').collect();
    let pb: Vec<&str> = b.split('.').collect();
    for i in 0..pa.len().max(pb.len()) {
        let (x, y) = match (pa.get(i), pb.get(i)) {
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => (*x, *y),
            (None, None) => break,
        };
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            _ => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

#[derive(Debug)]
struct Single {
    op: String,
    v: Version,
    /// 0: none dirty, 1: patch is a wildcard, 2: minor (and patch) wildcard, 3: major wildcard.
    dirty: u8,
    has_pre: bool,
}

fn parse_single(s: &str) -> Result<Single, String> {
    let s = s.trim();
    let ops = ["!=", ">=", "=>", "<=", "=<", "~>", ">", "<", "=", "~", "^"];
    let mut op = "";
    for o in ops {
        if s.starts_with(o) {
            op = o;
            break;
        }
    }
    let rest = s[op.len()..].trim();
    let rest_v = rest.strip_prefix('v').unwrap_or(rest);
    let (core, tail) = match rest_v.find(['-', '+']) {
        Some(i) => (&rest_v[..i], &rest_v[i..]),
        None => (rest_v, ""),
    };
    let parts: Vec<&str> = if core.is_empty() {
        vec![]
    } else {
        core.split('.').collect()
    };
    let wild = |p: &str| p == "x" || p == "X" || p == "*";
    let mut dirty = 0;
    let mut nums = [0u64; 3];
    if parts.is_empty() || wild(parts[0]) {
        dirty = 3;
    } else {
        for (i, p) in parts.iter().enumerate().take(3) {
            if wild(p) {
                dirty = if i == 1 { 2 } else { 1 };
                break;
            }
            nums[i] = p.parse().map_err(|_| format!("improper constraint: {s}"))?;
        }
        if dirty == 0 && parts.len() == 1 {
            dirty = 2;
        } else if dirty == 0 && parts.len() == 2 {
            dirty = 1;
        }
    }
    let text = format!("{}.{}.{}{}", nums[0], nums[1], nums[2], tail);
    let v = Version::parse(&text).map_err(|_| format!("improper constraint: {s}"))?;
    let op = match op {
        "=>" => ">=",
        "=<" => "<=",
        "~>" => "~",
        o => o,
    };
    // A bare "1.2" (no operator) with missing parts behaves like a wildcard; with ~/^ the
    // missing parts are zero.
    Ok(Single {
        op: op.to_string(),
        has_pre: !v.pre.is_empty(),
        v,
        dirty,
    })
}

fn check(c: &Single, v: &Version) -> bool {
    if !v.pre.is_empty() && !c.has_pre {
        return false;
    }
    let cv = &c.v;
    let ord = v.cmp(cv);
    match c.op.as_str() {
        "" | "=" => match c.dirty {
            3 => true,
            2 => v.major == cv.major,
            1 => v.major == cv.major && v.minor == cv.minor,
            _ => ord == Ordering::Equal,
        },
        "!=" => match c.dirty {
            3 => false,
            2 => v.major != cv.major,
            1 => !(v.major == cv.major && v.minor == cv.minor),
            _ => ord != Ordering::Equal,
        },
        ">" => match c.dirty {
            3 => false,
            2 => v.major > cv.major,
            1 => v.major > cv.major || (v.major == cv.major && v.minor > cv.minor),
            _ => ord == Ordering::Greater,
        },
        "<" => ord == Ordering::Less,
        ">=" => ord != Ordering::Less,
        "<=" => match c.dirty {
            3 => true,
            2 => v.major <= cv.major,
            1 => v.major < cv.major || (v.major == cv.major && v.minor <= cv.minor),
            _ => ord != Ordering::Greater,
        },
        "~" => {
            if c.dirty == 3 {
                return true;
            }
            if ord == Ordering::Less {
                return false;
            }
            if c.dirty == 2 {
                v.major == cv.major
            } else {
                v.major == cv.major && v.minor == cv.minor
            }
        }
        "^" => {
            if c.dirty == 3 {
                return true;
            }
            if ord == Ordering::Less {
                return false;
            }
            if cv.major > 0 || c.dirty == 2 {
                v.major == cv.major
            } else if cv.minor > 0 || c.dirty == 1 {
                v.major == 0 && v.minor == cv.minor
            } else {
                v.major == 0 && v.minor == 0 && v.patch == cv.patch
            }
        }
        _ => false,
    }
}

/// Whether `version` satisfies the constraint string.
pub fn constraint_matches(constraint: &str, version: &str) -> Result<bool, String> {
    let v = Version::parse(version).map_err(|_| "Invalid Semantic Version".to_string())?;
    for group in constraint.split("||") {
        let group = group.trim();
        let mut singles = Vec::new();
        // Hyphen ranges "a - b".
        let normalized = normalize_group(group);
        for part in normalized {
            singles.push(parse_single(&part)?);
        }
        if singles.iter().all(|s| check(s, &v)) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn normalize_group(group: &str) -> Vec<String> {
    let tokens: Vec<&str> = group.split([',', ' ']).filter(|t| !t.is_empty()).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        if i + 2 < tokens.len() && tokens[i + 1] == "-" {
            out.push(format!(">={t}"));
            out.push(format!("<={}", tokens[i + 2]));
            i += 3;
            continue;
        }
        // An operator separated from its version by a space.
        if ["=", "!=", ">", "<", ">=", "<=", "=>", "=<", "~", "~>", "^"].contains(&t)
            && i + 1 < tokens.len()
        {
            out.push(format!("{t}{}", tokens[i + 1]));
            i += 2;
            continue;
        }
        out.push(t.to_string());
        i += 1;
    }
    out
}

impl super::value::Object for Version {
    fn type_name(&self) -> &str {
        "*semver.Version"
    }

    fn field(&self, name: &str) -> Option<Value> {
        self.call(name, &[]).and_then(Result::ok)
    }

    fn call(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        let other = || -> Result<Version, String> {
            match args.first() {
                Some(Value::Object(o)) => o
                    .as_any()
                    .and_then(|a| a.downcast_ref::<Version>())
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "wrong type for value; expected *semver.Version; got {}",
                            o.type_name()
                        )
                    }),
                Some(v) => Err(format!(
                    "wrong type for value; expected *semver.Version; got {}",
                    v.type_name()
                )),
                None => Err(format!("wrong number of args for {name}: want 1 got 0")),
            }
        };
        Some(Ok(match name {
            "Major" => Value::Int64(self.major as i64),
            "Minor" => Value::Int64(self.minor as i64),
            "Patch" => Value::Int64(self.patch as i64),
            "Prerelease" => Value::from(self.pre.as_str()),
            "Metadata" => Value::from(self.meta.as_str()),
            "Original" => Value::from(self.original.as_str()),
            "String" => Value::from(self.canonical()),
            "Compare" => match other() {
                Ok(o) => Value::Int(match self.cmp(&o) {
                    Ordering::Less => -1,
                    Ordering::Equal => 0,
                    Ordering::Greater => 1,
                }),
                Err(e) => return Some(Err(e)),
            },
            "LessThan" | "GreaterThan" | "Equal" => match other() {
                Ok(o) => Value::Bool(match name {
                    "LessThan" => self.cmp(&o) == Ordering::Less,
                    "GreaterThan" => self.cmp(&o) == Ordering::Greater,
                    _ => self.cmp(&o) == Ordering::Equal,
                }),
                Err(e) => return Some(Err(e)),
            },
            _ => return None,
        }))
    }

    fn display(&self) -> String {
        self.canonical()
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints() {
        assert!(constraint_matches(">=1.21-0", "v1.31.0").unwrap_or(false));
        assert!(!constraint_matches("<1.19-0", "v1.31.0").unwrap_or(true));
        assert!(constraint_matches("^1.2.3", "1.9.0").unwrap_or(false));
        assert!(!constraint_matches("^1.2.3", "2.0.0").unwrap_or(true));
        assert!(constraint_matches("~1.2", "1.2.9").unwrap_or(false));
        assert!(constraint_matches("2.x.x", "2.31.5").unwrap_or(false));
        assert!(constraint_matches(">= 1.0, < 2", "1.5.0").unwrap_or(false));
        assert!(!constraint_matches(">=1.21", "1.31.0-rc.1").unwrap_or(true));
        assert!(constraint_matches("*", "1.0.0").unwrap_or(false));
    }
}
