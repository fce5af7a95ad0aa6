//! A rendered document's head (Helm's `SimpleHead`: `kind` and the `helm.sh/hook`
//! annotation) read line by line, for the plain block YAML that templates nearly always
//! produce, without a YAML parser.
//!
//! Helm unmarshals every rendered document whole, so a document is only accepted here when
//! every line belongs to a small, strictly checked subset of YAML that the full parser
//! (`yaml::parse_keys`) reads without error: block mappings and sequences with consistent
//! indentation, plain keys, single-line plain and quoted scalars, `{}`/`[]`, and literal or
//! folded block scalars. Anything else (flow collections with content, anchors, aliases,
//! tags, multi-line flow scalars, escapes, comments after a plain scalar, tabs, non-ASCII
//! text, odd indentation, ...) makes [`read`] answer `None`, and the caller parses the
//! document with the full parser, which gives the same answer or Helm's error.

use super::yaml;

/// What Helm's install sorting needs of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// `kind` as text (empty when absent).
    pub kind: String,
    /// The `helm.sh/hook` annotation, when `metadata.annotations` is a non-empty mapping
    /// holding it.
    pub hook: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Coll {
    Map,
    Seq,
}

/// Where a mapping sits, as far as the head is concerned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Place {
    Root,
    Metadata,
    Annotations,
    Other,
}

struct Level {
    indent: usize,
    coll: Coll,
    place: Place,
}

/// A key whose value is on the following lines.
struct Pending {
    /// The column that the value's lines must pass (the key's column, or the dash's).
    column: usize,
    /// A mapping key (a sequence may then start at the key's own column).
    map_key: bool,
    /// Where a mapping value would sit.
    place: Place,
}

#[derive(Default)]
struct Found {
    kind: Option<String>,
    metadata: bool,
    annotations: Option<usize>,
    hook: Option<String>,
}

/// The head of `doc`, or `None` when the document is outside the subset read here.
pub(crate) fn read(doc: &str) -> Option<Head> {
    if !doc.bytes().all(|b| b == b'\n' || (0x20..0x7f).contains(&b)) {
        return None;
    }
    let mut stack: Vec<Level> = Vec::new();
    let mut pending: Option<Pending> = None;
    let mut found = Found::default();
    // Inside a block scalar: the column its lines must pass, and their indentation once
    // known.
    let mut block: Option<(usize, Option<usize>)> = None;
    for line in doc.split('\n') {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let content = &line[indent..];
        if let Some((parent, lines_indent)) = block {
            if content.is_empty() {
                // A line of spaces before the first line could be too long for YAML.
                if lines_indent.is_none() && !line.is_empty() {
                    return None;
                }
                continue;
            }
            match lines_indent {
                Some(n) if indent >= n => continue,
                None if indent > parent => {
                    block = Some((parent, Some(indent)));
                    continue;
                }
                _ => block = None,
            }
        }
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if indent == 0 && (content.starts_with("---") || content.starts_with("...")) {
            return None;
        }
        // Close what this line is outside of.
        if let Some(p) = pending.take() {
            let opens = indent > p.column || (p.map_key && indent == p.column && is_dash(content));
            if opens {
                let coll = if is_dash(content) {
                    Coll::Seq
                } else {
                    Coll::Map
                };
                if coll == Coll::Seq && p.place != Place::Other {
                    return None;
                }
                let place = if coll == Coll::Map {
                    p.place
                } else {
                    Place::Other
                };
                if place == Place::Annotations {
                    found.annotations = Some(0);
                }
                stack.push(Level {
                    indent,
                    coll,
                    place,
                });
            } else if p.place == Place::Metadata {
                // `metadata:` with a null value (`annotations:` with none is no hook).
                return None;
            }
        }
        while stack.last().is_some_and(|l| l.indent > indent) {
            stack.pop();
        }
        // A sequence at its key's column ends at the next key of that mapping.
        if let Some(top) = stack.last()
            && top.indent == indent
            && top.coll == Coll::Seq
            && !is_dash(content)
        {
            stack.pop();
        }
        match stack.last() {
            Some(top) if top.indent == indent => {
                let want = if is_dash(content) {
                    Coll::Seq
                } else {
                    Coll::Map
                };
                if top.coll != want {
                    return None;
                }
            }
            Some(_) => return None,
            None => {
                if indent != 0 || is_dash(content) {
                    return None;
                }
                stack.push(Level {
                    indent: 0,
                    coll: Coll::Map,
                    place: Place::Root,
                });
            }
        }
        let place = stack.last().map_or(Place::Other, |l| l.place);
        let (p, b) = node(content, indent, place, &mut stack, &mut found)?;
        pending = p;
        block = b.map(|parent| (parent, None));
    }
    if let Some(p) = pending
        && p.place == Place::Metadata
    {
        return None;
    }
    let kind = found.kind.unwrap_or_default();
    let hook = match found.annotations {
        Some(n) if n > 0 => found.hook,
        _ => None,
    };
    Some(Head { kind, hook })
}

fn is_dash(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

/// Reads the entry that starts at `column` (`content` is the rest of the line): a sequence
/// item or a `key: value` pair of the collection on top of `stack`. Returns what stays open
/// at the end of the line: a value expected on the next lines, or a block scalar (with the
/// column its lines must pass).
fn node(
    content: &str,
    column: usize,
    place: Place,
    stack: &mut Vec<Level>,
    found: &mut Found,
) -> Option<(Option<Pending>, Option<usize>)> {
    if is_dash(content) {
        let rest = &content[1..];
        let skip = rest.len() - rest.trim_start_matches(' ').len();
        let rest = &rest[skip..];
        let col = column + 1 + skip;
        if rest.is_empty() {
            return Some((
                Some(Pending {
                    column,
                    map_key: false,
                    place: Place::Other,
                }),
                None,
            ));
        }
        if is_dash(rest) {
            stack.push(Level {
                indent: col,
                coll: Coll::Seq,
                place: Place::Other,
            });
            return node(rest, col, Place::Other, stack, found);
        }
        if split_key(rest).is_some() {
            stack.push(Level {
                indent: col,
                coll: Coll::Map,
                place: Place::Other,
            });
            return node(rest, col, Place::Other, stack, found);
        }
        return match scalar(rest)? {
            Scalar::Block => Some((None, Some(column))),
            _ => Some((None, None)),
        };
    }
    let (key, rest) = split_key(content)?;
    if key == "<<" {
        return None;
    }
    let value_place = match (place, key) {
        (Place::Root, "kind") => {
            if found.kind.is_some() {
                return None;
            }
            found.kind = Some(String::new());
            Place::Other
        }
        (Place::Root, "metadata") => {
            if found.metadata {
                return None;
            }
            found.metadata = true;
            Place::Metadata
        }
        (Place::Metadata, "annotations") => {
            if found.annotations.is_some() {
                return None;
            }
            found.annotations = Some(0);
            Place::Annotations
        }
        (Place::Annotations, k) => {
            found.annotations = found.annotations.map(|n| n + 1);
            if k == "helm.sh/hook" {
                if found.hook.is_some() {
                    return None;
                }
                found.hook = Some(String::new());
            }
            Place::Other
        }
        _ => Place::Other,
    };
    let wants_text = (place == Place::Root && key == "kind")
        || (place == Place::Annotations && key == "helm.sh/hook");
    if rest.is_empty() {
        if wants_text {
            return None;
        }
        return Some((
            Some(Pending {
                column,
                map_key: true,
                place: value_place,
            }),
            None,
        ));
    }
    let s = scalar(rest)?;
    match (&s, value_place) {
        (Scalar::EmptyMap, Place::Metadata | Place::Annotations) => {}
        (_, Place::Metadata | Place::Annotations) => return None,
        _ => {}
    }
    let is_block = matches!(s, Scalar::Block);
    if wants_text {
        let text = match s {
            Scalar::Text(t) => t.into_owned(),
            Scalar::Plain(p) if yaml::plain_is_string(p) => p.to_string(),
            _ => return None,
        };
        if place == Place::Root {
            found.kind = Some(text);
        } else {
            found.hook = Some(text);
        }
    }
    Some((None, is_block.then_some(column)))
}

/// A mapping key at the start of `content` and the rest of the line after `: ` (trimmed), or
/// `None` when the line is not a key this reader accepts.
fn split_key(content: &str) -> Option<(&str, &str)> {
    let b = content.as_bytes();
    let (key, after) = match b.first()? {
        b'"' => {
            let end = content[1..].find('"')? + 1;
            let k = &content[1..end];
            if k.contains('\\') {
                return None;
            }
            (k, &content[end + 1..])
        }
        b'\'' => {
            let end = content[1..].find('\'')? + 1;
            (&content[1..end], &content[end + 1..])
        }
        c if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/') => {
            let end = b
                .iter()
                .position(|c| {
                    !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'-'))
                })
                .unwrap_or(b.len());
            (&content[..end], &content[end..])
        }
        _ => return None,
    };
    if key.len() > 512 {
        return None;
    }
    Some((key, super::yaml::value_after_key(after)?))
}

enum Scalar<'a> {
    /// A plain scalar (its text, before YAML's type resolution).
    Plain(&'a str),
    /// A quoted scalar's text.
    Text(std::borrow::Cow<'a, str>),
    /// `{}`.
    EmptyMap,
    /// `[]`.
    EmptySeq,
    /// A `|` or `>` header: the text is on the following lines.
    Block,
}

/// A value written on one line (`s` is trimmed at the start), or `None` outside the subset.
fn scalar(s: &str) -> Option<Scalar<'_>> {
    use super::yaml::after_token;
    let first = *s.as_bytes().first()?;
    match first {
        b'"' | b'\'' => Some(Scalar::Text(super::yaml::one_line_quoted(s)?)),
        b'{' | b'[' => {
            let (token, v) = if first == b'{' {
                ("{}", Scalar::EmptyMap)
            } else {
                ("[]", Scalar::EmptySeq)
            };
            after_token(s.strip_prefix(token)?)?;
            Some(v)
        }
        b'|' | b'>' => {
            let rest = &s[1..];
            let rest = rest
                .strip_prefix('-')
                .or_else(|| rest.strip_prefix('+'))
                .unwrap_or(rest);
            rest.trim_end_matches(' ')
                .is_empty()
                .then_some(Scalar::Block)
        }
        b'-' if s.len() > 1 && s.as_bytes()[1] != b' ' => plain(s),
        c if c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'_' | b'.' | b'/' | b'$' | b'(' | b')' | b'<' | b'=' | b'+' | b'^' | b';' | b'~'
            ) =>
        {
            plain(s)
        }
        _ => None,
    }
}

fn plain(s: &str) -> Option<Scalar<'_>> {
    let t = s.trim_end_matches(' ');
    if t.contains(": ") || t.ends_with(':') || t.contains(" #") {
        return None;
    }
    Some(Scalar::Plain(t))
}
