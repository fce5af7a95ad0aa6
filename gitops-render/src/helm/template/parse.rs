//! Lexer and parser for Go's `text/template` language, with Go's positions and messages.

use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

/// A parse error, formatted like Go's: `template: NAME:LINE: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The template (file) name.
    pub name: String,
    /// The 1-based line.
    pub line: usize,
    /// The message.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "template: {}:{}: {}", self.name, self.line, self.message)
    }
}

/// A parsed template body and the source it came from (for error positions).
#[derive(Debug)]
pub struct Tree {
    /// The template's name (a file path or a `define` name).
    pub name: String,
    /// The name of the file it was parsed from.
    pub parse_name: String,
    /// The source text of that file.
    pub src: Rc<str>,
    /// The body (shared by the trees of identical files).
    pub root: Rc<[Node]>,
}

impl Tree {
    /// `file:line:col` of a byte offset, like Go's `ErrorContext`.
    pub fn location(&self, pos: usize) -> String {
        let pos = pos.min(self.src.len());
        let text = &self.src[..pos];
        let line = 1 + text.matches('\n').count();
        let col = match text.rfind('\n') {
            Some(i) => pos - (i + 1),
            None => pos,
        };
        format!("{}:{}:{}", self.parse_name, line, col)
    }
}

/// A node of a template body.
#[derive(Debug, Clone)]
pub enum Node {
    /// Literal text.
    Text(Rc<str>),
    /// `{{ pipeline }}`.
    Action(Pipe),
    /// `{{ if }}`.
    If(Branch),
    /// `{{ range }}`.
    Range(Branch),
    /// `{{ with }}`.
    With(Branch),
    /// `{{ template "name" pipeline }}`.
    Template {
        /// Position.
        pos: usize,
        /// Name of the template.
        name: String,
        /// The data, if any.
        pipe: Option<Pipe>,
    },
    /// `{{ break }}`.
    Break(usize),
    /// `{{ continue }}`.
    Continue(usize),
}

/// The shared shape of if/range/with.
#[derive(Debug, Clone)]
pub struct Branch {
    /// Position.
    pub pos: usize,
    /// The condition.
    pub pipe: Pipe,
    /// The body.
    pub list: Vec<Node>,
    /// The else body.
    pub else_list: Option<Vec<Node>>,
}

/// A pipeline with optional variable declarations.
#[derive(Debug, Clone)]
pub struct Pipe {
    /// Position.
    pub pos: usize,
    /// `$x :=` or `$x =` variables.
    pub decl: Vec<String>,
    /// Whether `=` (assignment) rather than `:=`.
    pub is_assign: bool,
    /// The commands.
    pub cmds: Vec<Command>,
}

/// One command of a pipeline.
#[derive(Debug, Clone)]
pub struct Command {
    /// Position.
    pub pos: usize,
    /// The operands; the first may be a function.
    pub args: Vec<Arg>,
}

/// An operand.
#[derive(Debug, Clone)]
pub enum Arg {
    /// `.`
    Dot(usize),
    /// `nil`
    Nil(usize),
    /// `true`/`false`
    Bool(usize, bool),
    /// A number literal.
    Number(usize, Number),
    /// A string literal.
    Str(usize, Rc<str>, String),
    /// `.A.B`
    Field(usize, Vec<String>),
    /// `$x.A.B`
    Variable(usize, String, Vec<String>),
    /// A function name.
    Ident(usize, String),
    /// `(pipeline)`
    Pipe(usize, Box<Pipe>),
    /// `(pipeline).A.B` or similar.
    Chain(usize, Box<Arg>, Vec<String>),
}

/// A number literal with Go's classification.
#[derive(Debug, Clone)]
pub enum Number {
    /// An int constant.
    Int(i64),
    /// A float constant.
    Float(f64),
}

impl Arg {
    /// Byte position.
    pub fn pos(&self) -> usize {
        match self {
            Arg::Dot(p)
            | Arg::Nil(p)
            | Arg::Bool(p, _)
            | Arg::Number(p, _)
            | Arg::Str(p, _, _)
            | Arg::Field(p, _)
            | Arg::Variable(p, _, _)
            | Arg::Ident(p, _)
            | Arg::Pipe(p, _)
            | Arg::Chain(p, _, _) => *p,
        }
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Dot(_) => f.write_str("."),
            Arg::Nil(_) => f.write_str("nil"),
            Arg::Bool(_, b) => write!(f, "{b}"),
            Arg::Number(_, _) | Arg::Str(_, _, _) => match self {
                Arg::Str(_, _, raw) => f.write_str(raw),
                Arg::Number(_, Number::Int(i)) => write!(f, "{i}"),
                Arg::Number(_, Number::Float(x)) => {
                    f.write_str(&crate::helm::value::format_float_g(*x))
                }
                _ => Ok(()),
            },
            Arg::Field(_, idents) => {
                for i in idents {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
            Arg::Variable(_, name, idents) => {
                f.write_str(name)?;
                for i in idents {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
            Arg::Ident(_, name) => f.write_str(name),
            Arg::Pipe(_, p) => write!(f, "({p})"),
            Arg::Chain(_, node, idents) => {
                if let Arg::Pipe(_, p) = &**node {
                    write!(f, "({p})")?;
                } else {
                    write!(f, "{node}")?;
                }
                for i in idents {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.decl.is_empty() {
            f.write_str(&self.decl.join(", "))?;
            f.write_str(if self.is_assign { " = " } else { " := " })?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Text(Rc<str>),
    LeftDelim,
    RightDelim,
    Space,
    Ident(Rc<str>),
    Keyword(Rc<str>),
    Field(Rc<str>),
    Variable(Rc<str>),
    Str(Rc<str>, Rc<str>),
    Char(i64, Rc<str>),
    Number(Rc<str>),
    Bool(bool),
    Nil,
    Dot,
    Pipe,
    LeftParen,
    RightParen,
    Declare,
    Assign,
    Comma,
    Eof,
}

#[derive(Debug, Clone)]
struct Item {
    tok: Tok,
    pos: usize,
    line: usize,
}

const KEYWORDS: &[&str] = &[
    "block", "break", "continue", "define", "else", "end", "if", "range", "template", "with",
];

fn lex(name: &str, src: &str) -> Result<Vec<Item>, ParseError> {
    let b = src.as_bytes();
    let mut items = Vec::new();
    let mut pos = 0;
    // Line numbers by binary search over the newline offsets (lexing stays linear).
    let newlines: Vec<usize> = src
        .bytes()
        .enumerate()
        .filter(|(_, c)| *c == b'\n')
        .map(|(i, _)| i)
        .collect();
    let line_at = |p: usize| 1 + newlines.partition_point(|&nl| nl < p.min(src.len()));
    let err = |p: usize, msg: String| ParseError {
        name: name.to_string(),
        line: line_at(p),
        message: msg,
    };
    let is_space = |c: u8| c == b' ' || c == b'\t' || c == b'\r' || c == b'\n';
    while pos < b.len() {
        // Text up to the next "{{".
        let next = src[pos..].find("{{").map(|i| pos + i);
        let Some(ld) = next else {
            items.push(Item {
                tok: Tok::Text(Rc::from(&src[pos..])),
                pos,
                line: line_at(pos),
            });
            break;
        };
        let mut text_end = ld;
        let trim_left = b.len() > ld + 3 && b[ld + 2] == b'-' && is_space(b[ld + 3]);
        if trim_left {
            while text_end > pos && is_space(b[text_end - 1]) {
                text_end -= 1;
            }
        }
        if text_end > pos {
            items.push(Item {
                tok: Tok::Text(Rc::from(&src[pos..text_end])),
                pos,
                line: line_at(pos),
            });
        }
        let mut p = ld + 2;
        if trim_left {
            p += 2;
        }
        // Comment?
        let after_ws = p;
        if src[after_ws..].starts_with("/*") {
            let Some(end) = src[after_ws + 2..].find("*/") else {
                return Err(err(ld, "unclosed comment".into()));
            };
            let mut q = after_ws + 2 + end + 2;
            let trim_right = src[q..].starts_with(" -}}")
                || src[q..].starts_with("\t-}}")
                || src[q..].starts_with("\n-}}")
                || src[q..].starts_with("\r-}}");
            if trim_right {
                q += 4;
            } else if src[q..].starts_with("}}") {
                q += 2;
            } else {
                return Err(err(q, "comment ends before closing delimiter".into()));
            }
            pos = q;
            if trim_right {
                while pos < b.len() && is_space(b[pos]) {
                    pos += 1;
                }
            }
            continue;
        }
        items.push(Item {
            tok: Tok::LeftDelim,
            pos: ld,
            line: line_at(ld),
        });
        // Inside the action.
        let mut paren_depth = 0i32;
        loop {
            if p >= b.len() {
                return Err(err(
                    b.len(),
                    format!("unclosed action started at {name}:{}", line_at(ld)),
                ));
            }
            let c = b[p];
            // Right delimiter, with or without trim marker.
            if is_space(c) {
                let s = p;
                while p < b.len() && is_space(b[p]) {
                    p += 1;
                }
                if src[p..].starts_with("-}}") {
                    let rd = p;
                    p += 3;
                    items.push(Item {
                        tok: Tok::RightDelim,
                        pos: rd,
                        line: line_at(rd),
                    });
                    while p < b.len() && is_space(b[p]) {
                        p += 1;
                    }
                    break;
                }
                items.push(Item {
                    tok: Tok::Space,
                    pos: s,
                    line: line_at(s),
                });
                continue;
            }
            if src[p..].starts_with("}}") {
                if paren_depth > 0 {
                    return Err(err(p, "unclosed left paren".into()));
                }
                items.push(Item {
                    tok: Tok::RightDelim,
                    pos: p,
                    line: line_at(p),
                });
                p += 2;
                break;
            }
            let start = p;
            let push = |items: &mut Vec<Item>, tok: Tok| {
                items.push(Item {
                    tok,
                    pos: start,
                    line: line_at(start),
                })
            };
            match c {
                b'|' => {
                    push(&mut items, Tok::Pipe);
                    p += 1;
                }
                b'(' => {
                    paren_depth += 1;
                    push(&mut items, Tok::LeftParen);
                    p += 1;
                }
                b')' => {
                    paren_depth -= 1;
                    if paren_depth < 0 {
                        return Err(err(p, format!("unexpected right paren {:?}", ")")));
                    }
                    push(&mut items, Tok::RightParen);
                    p += 1;
                }
                b',' => {
                    push(&mut items, Tok::Comma);
                    p += 1;
                }
                b':' => {
                    if b.get(p + 1) == Some(&b'=') {
                        push(&mut items, Tok::Declare);
                        p += 2;
                    } else {
                        return Err(err(p, "expected :=".into()));
                    }
                }
                b'=' => {
                    push(&mut items, Tok::Assign);
                    p += 1;
                }
                b'"' => {
                    let mut q = p + 1;
                    loop {
                        if q >= b.len() || b[q] == b'\n' {
                            return Err(err(p, "unterminated quoted string".into()));
                        }
                        if b[q] == b'\\' {
                            q += 2;
                            continue;
                        }
                        if b[q] == b'"' {
                            break;
                        }
                        q += 1;
                    }
                    let raw = &src[p..=q];
                    let val =
                        unquote(raw).ok_or_else(|| err(p, format!("invalid syntax: {raw}")))?;
                    push(&mut items, Tok::Str(Rc::from(val), Rc::from(raw)));
                    p = q + 1;
                }
                b'`' => {
                    let Some(end) = src[p + 1..].find('`') else {
                        return Err(err(p, "unterminated raw quoted string".into()));
                    };
                    let raw = &src[p..p + 1 + end + 1];
                    push(
                        &mut items,
                        Tok::Str(Rc::from(&src[p + 1..p + 1 + end]), Rc::from(raw)),
                    );
                    p = p + end + 2;
                }
                b'\'' => {
                    let mut q = p + 1;
                    while q < b.len() && b[q] != b'\'' {
                        if b[q] == b'\\' {
                            q += 1;
                        }
                        q += 1;
                    }
                    if q >= b.len() {
                        return Err(err(p, "unterminated character constant".into()));
                    }
                    let raw = &src[p..=q];
                    let inner = format!("\"{}\"", &src[p + 1..q]);
                    let v = unquote(&inner)
                        .and_then(|s| s.chars().next())
                        .ok_or_else(|| err(p, format!("malformed character constant: {raw}")))?;
                    push(&mut items, Tok::Char(v as i64, Rc::from(raw)));
                    p = q + 1;
                }
                b'$' => {
                    let mut q = p + 1;
                    while q < b.len()
                        && (b[q] == b'_' || b[q].is_ascii_alphanumeric() || b[q] >= 0x80)
                    {
                        q += 1;
                    }
                    push(&mut items, Tok::Variable(Rc::from(&src[p..q])));
                    p = q;
                }
                b'.' => {
                    if b.get(p + 1).is_some_and(|c| c.is_ascii_digit()) {
                        let q = scan_number(b, p);
                        push(&mut items, Tok::Number(Rc::from(&src[p..q])));
                        p = q;
                    } else {
                        let mut q = p + 1;
                        while q < b.len()
                            && (b[q] == b'_' || b[q].is_ascii_alphanumeric() || b[q] >= 0x80)
                        {
                            q += 1;
                        }
                        if q == p + 1 {
                            push(&mut items, Tok::Dot);
                        } else {
                            push(&mut items, Tok::Field(Rc::from(&src[p + 1..q])));
                        }
                        p = q;
                    }
                }
                b'-' | b'+' | b'0'..=b'9' => {
                    let q = scan_number(b, p);
                    if q == p {
                        return Err(err(p, format!("unexpected {:?} in command", c as char)));
                    }
                    // A number must not run into an identifier character.
                    if q < b.len() && (b[q].is_ascii_alphabetic() || b[q] == b'_') {
                        return Err(err(p, format!("bad number syntax: {:?}", &src[p..=q])));
                    }
                    push(&mut items, Tok::Number(Rc::from(&src[p..q])));
                    p = q;
                }
                c if c == b'_' || c.is_ascii_alphabetic() || c >= 0x80 => {
                    let mut q = p;
                    while q < b.len()
                        && (b[q] == b'_' || b[q].is_ascii_alphanumeric() || b[q] >= 0x80)
                    {
                        q += 1;
                    }
                    let word = &src[p..q];
                    let tok = match word {
                        "true" => Tok::Bool(true),
                        "false" => Tok::Bool(false),
                        "nil" => Tok::Nil,
                        w if KEYWORDS.contains(&w) => Tok::Keyword(Rc::from(w)),
                        w => Tok::Ident(Rc::from(w)),
                    };
                    push(&mut items, tok);
                    p = q;
                }
                other => {
                    let ch = src[p..].chars().next().unwrap_or(other as char);
                    return Err(err(p, format!("unrecognized character in action: {ch:?}")));
                }
            }
        }
        pos = p;
    }
    items.push(Item {
        tok: Tok::Eof,
        pos: src.len(),
        line: line_at(src.len()),
    });
    Ok(items)
}

fn scan_number(b: &[u8], start: usize) -> usize {
    let mut p = start;
    if p < b.len() && (b[p] == b'+' || b[p] == b'-') {
        p += 1;
    }
    let mut digits = "0123456789_";
    if p + 1 < b.len() && b[p] == b'0' && matches!(b[p + 1], b'x' | b'X') {
        p += 2;
        digits = "0123456789abcdefABCDEF_";
    } else if p + 1 < b.len() && b[p] == b'0' && matches!(b[p + 1], b'o' | b'O') {
        p += 2;
        digits = "01234567_";
    } else if p + 1 < b.len() && b[p] == b'0' && matches!(b[p + 1], b'b' | b'B') {
        p += 2;
        digits = "01_";
    }
    let acc = |p: &mut usize, set: &str| {
        while *p < b.len() && set.as_bytes().contains(&b[*p]) {
            *p += 1;
        }
    };
    acc(&mut p, digits);
    if p < b.len() && b[p] == b'.' {
        p += 1;
        acc(&mut p, digits);
    }
    let exp_chars: &[u8] = if digits.len() == 11 {
        b"eE"
    } else if digits.len() > 11 {
        b"pP"
    } else {
        b""
    };
    if p < b.len() && exp_chars.contains(&b[p]) {
        p += 1;
        if p < b.len() && (b[p] == b'+' || b[p] == b'-') {
            p += 1;
        }
        acc(&mut p, "0123456789_");
    }
    if p == start + 1 && (b[start] == b'+' || b[start] == b'-') {
        return start;
    }
    p
}

/// Go's `strconv.Unquote` for a double-quoted string.
pub fn unquote(raw: &str) -> Option<String> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'v' => out.push('\x0b'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '\'' => out.push('\''),
            'x' => {
                let h: String = (0..2).filter_map(|_| chars.next()).collect();
                out.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
            }
            'u' => {
                let h: String = (0..4).filter_map(|_| chars.next()).collect();
                out.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
            }
            'U' => {
                let h: String = (0..8).filter_map(|_| chars.next()).collect();
                out.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
            }
            c @ '0'..='7' => {
                let mut v = c.to_digit(8)?;
                for _ in 0..2 {
                    v = v * 8 + chars.next()?.to_digit(8)?;
                }
                out.push(char::from_u32(v)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

fn parse_number(text: &str) -> Option<Number> {
    let clean = text.replace('_', "");
    let is_hex = clean.trim_start_matches(['+', '-']).starts_with("0x")
        || clean.trim_start_matches(['+', '-']).starts_with("0X");
    if is_hex && clean.contains(['p', 'P']) {
        return parse_hex_float(&clean).map(Number::Float);
    }
    if !is_hex && clean.contains(['.', 'e', 'E']) {
        return clean.parse::<f64>().ok().map(Number::Float);
    }
    if let Some(i) = crate::helm::yaml::go_parse_int(&clean) {
        return Some(Number::Int(i));
    }
    None
}

/// A hexadecimal float literal such as `0x1p60` or `-0x1.8p-3`.
fn parse_hex_float(text: &str) -> Option<f64> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let body = body
        .strip_prefix("0x")
        .or_else(|| body.strip_prefix("0X"))?;
    let (mant, exp) = body.split_once(['p', 'P'])?;
    let exp: i32 = exp.parse().ok()?;
    let (int_part, frac_part) = mant.split_once('.').unwrap_or((mant, ""));
    let mut v = 0f64;
    for c in int_part.chars() {
        v = v * 16.0 + f64::from(c.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for c in frac_part.chars() {
        v += f64::from(c.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    let v = v * 2f64.powi(exp);
    Some(if neg { -v } else { v })
}

// ---------------------------------------------------------------------------------------------
// Parser

/// The result of parsing one file: its body and its `define`d templates.
pub struct Parsed {
    /// The file's own body (None when it holds only definitions and space).
    pub body: Rc<Tree>,
    /// Whether the body has anything besides blank text.
    pub body_is_empty: bool,
    /// Templates defined with `define`/`block`, in order.
    pub defines: Vec<Rc<Tree>>,
}

impl Parsed {
    /// The same parse for an identical file under another name: what `parse(name, src)` of the
    /// same text returns, without parsing again (subcharts often carry copies of one library).
    pub fn renamed(&self, name: &str) -> Parsed {
        let rename = |t: &Tree, own: bool| {
            Rc::new(Tree {
                name: if own {
                    name.to_string()
                } else {
                    t.name.clone()
                },
                parse_name: name.to_string(),
                src: t.src.clone(),
                root: t.root.clone(),
            })
        };
        Parsed {
            body: rename(&self.body, true),
            body_is_empty: self.body_is_empty,
            defines: self.defines.iter().map(|d| rename(d, false)).collect(),
        }
    }
}

struct Parser<'a> {
    name: &'a str,
    src: Rc<str>,
    items: Vec<Item>,
    i: usize,
    defines: Vec<Rc<Tree>>,
    vars: Vec<Vec<String>>,
    funcs: &'a dyn Fn(&str) -> bool,
    range_depth: usize,
}

/// Parses template text named `name`; `funcs` says whether a function exists.
pub fn parse(name: &str, src: &str, funcs: &dyn Fn(&str) -> bool) -> Result<Parsed, ParseError> {
    let items = lex(name, src)?;
    let src: Rc<str> = Rc::from(src);
    let mut p = Parser {
        name,
        src: src.clone(),
        items,
        i: 0,
        defines: Vec::new(),
        vars: vec![vec!["$".to_string()]],
        funcs,
        range_depth: 0,
    };
    let (root, end) = p.item_list(true)?;
    if let Some(e) = end {
        return Err(p.err_at(e.line, format!("unexpected {}", describe(&e.tok))));
    }
    let body_is_empty = root.iter().all(|n| match n {
        Node::Text(t) => t.trim().is_empty(),
        _ => false,
    });
    Ok(Parsed {
        body: Rc::new(Tree {
            name: name.to_string(),
            parse_name: name.to_string(),
            src,
            root: Rc::from(root),
        }),
        body_is_empty,
        defines: p.defines,
    })
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Keyword(k) => format!("{{{{{k}}}}}"),
        Tok::RightDelim => "\"}}\"".into(),
        Tok::RightParen => "\")\"".into(),
        Tok::Eof => "EOF".into(),
        Tok::Ident(s) | Tok::Field(s) | Tok::Variable(s) | Tok::Number(s) => format!("{s:?}"),
        Tok::Str(_, raw) | Tok::Char(_, raw) => raw.to_string(),
        Tok::Pipe => "\"|\"".into(),
        Tok::Comma => "\",\"".into(),
        Tok::LeftParen => "\"(\"".into(),
        Tok::Declare => "\":=\"".into(),
        Tok::Assign => "\"=\"".into(),
        Tok::Dot => "\".\"".into(),
        Tok::Bool(b) => format!("{b:?}"),
        Tok::Nil => "\"nil\"".into(),
        _ => format!("{t:?}"),
    }
}

/// How a list ended: `{{end}}`, `{{else ...}}`, or EOF.
#[derive(Debug)]
enum End {
    End,
    Else,
}

impl<'a> Parser<'a> {
    fn err_at(&self, line: usize, message: String) -> ParseError {
        ParseError {
            name: self.name.to_string(),
            line,
            message,
        }
    }
    fn peek(&self) -> &Item {
        &self.items[self.i.min(self.items.len() - 1)]
    }
    fn next(&mut self) -> Item {
        let it = self.peek().clone();
        if self.i < self.items.len() {
            self.i += 1;
        }
        it
    }
    fn next_non_space(&mut self) -> Item {
        loop {
            let it = self.next();
            if it.tok != Tok::Space {
                return it;
            }
        }
    }
    fn peek_non_space(&mut self) -> Item {
        while self.peek().tok == Tok::Space {
            self.i += 1;
        }
        self.peek().clone()
    }

    /// Parses nodes until `{{end}}`/`{{else}}` (returned as the end item) or EOF.
    fn item_list(&mut self, top: bool) -> Result<(Vec<Node>, Option<Item>), ParseError> {
        let mut list = Vec::new();
        loop {
            let it = self.next();
            match it.tok {
                Tok::Eof => {
                    if top {
                        return Ok((list, None));
                    }
                    return Err(self.err_at(it.line, "unexpected EOF".into()));
                }
                Tok::Text(t) => list.push(Node::Text(t)),
                Tok::LeftDelim => {
                    let kw = self.peek_non_space();
                    if let Tok::Keyword(k) = &kw.tok {
                        match &**k {
                            "end" | "else" => {
                                if top {
                                    return Err(self.err_at(
                                        kw.line,
                                        format!("unexpected {}", describe(&kw.tok)),
                                    ));
                                }
                                self.next_non_space();
                                return Ok((list, Some(kw)));
                            }
                            _ => {}
                        }
                    }
                    if let Some(n) = self.action()? {
                        list.push(n);
                    }
                }
                other => {
                    return Err(self.err_at(it.line, format!("unexpected {}", describe(&other))));
                }
            }
        }
    }

    fn expect_right(&mut self, ctx: &str) -> Result<(), ParseError> {
        let it = self.next_non_space();
        if it.tok != Tok::RightDelim {
            return Err(self.err_at(
                it.line,
                format!("unexpected {} in {ctx}", describe(&it.tok)),
            ));
        }
        Ok(())
    }

    fn action(&mut self) -> Result<Option<Node>, ParseError> {
        let it = self.peek_non_space();
        if let Tok::Keyword(k) = &it.tok {
            let k = k.clone();
            self.next_non_space();
            return match &*k {
                "if" => Ok(Some(Node::If(self.branch("if", it.pos)?))),
                "range" => {
                    self.range_depth += 1;
                    let b = self.branch("range", it.pos);
                    self.range_depth -= 1;
                    Ok(Some(Node::Range(b?)))
                }
                "with" => Ok(Some(Node::With(self.branch("with", it.pos)?))),
                "define" => {
                    self.define(it.line)?;
                    Ok(None)
                }
                "block" | "template" => self.template(&k, it.pos, it.line).map(Some),
                "break" | "continue" => {
                    if self.range_depth == 0 {
                        return Err(
                            self.err_at(it.line, format!("{{{{{k}}}}} outside {{{{range}}}}"))
                        );
                    }
                    self.expect_right(&k)?;
                    Ok(Some(if &*k == "break" {
                        Node::Break(it.pos)
                    } else {
                        Node::Continue(it.pos)
                    }))
                }
                other => Err(self.err_at(it.line, format!("unexpected {{{{{other}}}}}"))),
            };
        }
        let pipe = self.pipeline("command", true)?;
        Ok(Some(Node::Action(pipe)))
    }

    fn branch(&mut self, ctx: &str, pos: usize) -> Result<Branch, ParseError> {
        self.vars
            .push(self.vars.last().cloned().unwrap_or_default());
        let res = self.branch_inner(ctx, pos);
        self.vars.pop();
        res
    }

    fn branch_inner(&mut self, ctx: &str, pos: usize) -> Result<Branch, ParseError> {
        let pipe = self.pipeline(ctx, ctx == "range")?;
        if pipe.cmds.is_empty() {
            return Err(self.err_at(self.peek().line, format!("missing value for {ctx}")));
        }
        let (list, end) = self.item_list(false)?;
        let end = end.expect("item_list(false) returns an end item or an error");
        let mut else_list = None;
        if let Tok::Keyword(k) = &end.tok
            && &**k == "else"
        {
            // `else if` / `else with` chain: parse as a nested branch in the else list.
            let nxt = self.peek_non_space();
            match &nxt.tok {
                Tok::Keyword(k2)
                    if (&**k2 == "if" && ctx == "if") || (&**k2 == "with" && ctx == "with") =>
                {
                    let k2 = k2.clone();
                    self.next_non_space();
                    let nested = self.branch(&k2, nxt.pos)?;
                    else_list = Some(vec![if &*k2 == "if" {
                        Node::If(nested)
                    } else {
                        Node::With(nested)
                    }]);
                    return Ok(Branch {
                        pos,
                        pipe,
                        list,
                        else_list,
                    });
                }
                _ => {}
            }
            self.expect_right("else")?;
            let (el, end2) = self.item_list(false)?;
            let end2 = end2.expect("item_list(false) returns an end item or an error");
            if end2.tok != Tok::Keyword("end".into()) {
                return Err(self.err_at(end2.line, "expected end; found {{else}}".into()));
            }
            self.expect_right("end")?;
            else_list = Some(el);
        } else {
            self.expect_right("end")?;
        }
        let _ = End::End;
        let _ = End::Else;
        Ok(Branch {
            pos,
            pipe,
            list,
            else_list,
        })
    }

    fn define(&mut self, line: usize) -> Result<(), ParseError> {
        let it = self.next_non_space();
        let Tok::Str(name, _) = it.tok else {
            return Err(self.err_at(
                line,
                format!("unexpected {} in define clause", describe(&it.tok)),
            ));
        };
        self.expect_right("define clause")?;
        let saved_vars = std::mem::replace(&mut self.vars, vec![vec!["$".to_string()]]);
        let saved_depth = std::mem::replace(&mut self.range_depth, 0);
        let (list, end) = self.item_list(false)?;
        self.vars = saved_vars;
        self.range_depth = saved_depth;
        let end = end.expect("item_list(false) returns an end item or an error");
        if end.tok != Tok::Keyword("end".into()) {
            return Err(self.err_at(end.line, "unexpected {{else}}".into()));
        }
        self.expect_right("end")?;
        self.defines.push(Rc::new(Tree {
            name: name.to_string(),
            parse_name: self.name.to_string(),
            src: self.src.clone(),
            root: Rc::from(list),
        }));
        Ok(())
    }

    fn template(&mut self, kw: &str, pos: usize, line: usize) -> Result<Node, ParseError> {
        let it = self.next_non_space();
        let name = match it.tok {
            Tok::Str(s, _) => s,
            other => {
                return Err(self.err_at(
                    line,
                    format!("unexpected {} in {kw} clause", describe(&other)),
                ));
            }
        };
        let nxt = self.peek_non_space();
        let pipe = if nxt.tok == Tok::RightDelim {
            self.next_non_space();
            None
        } else {
            Some(self.pipeline(kw, false)?)
        };
        if kw == "block" {
            let saved_vars = std::mem::replace(&mut self.vars, vec![vec!["$".to_string()]]);
            let (list, end) = self.item_list(false)?;
            self.vars = saved_vars;
            let end = end.expect("item_list(false) returns an end item or an error");
            if end.tok != Tok::Keyword("end".into()) {
                return Err(self.err_at(end.line, "unexpected {{else}}".into()));
            }
            self.expect_right("end")?;
            self.defines.push(Rc::new(Tree {
                name: name.to_string(),
                parse_name: self.name.to_string(),
                src: self.src.clone(),
                root: Rc::from(list),
            }));
        }
        Ok(Node::Template {
            pos,
            name: name.to_string(),
            pipe,
        })
    }

    /// Parses a pipeline up to the closing `}}` (consumed).
    fn pipeline(&mut self, ctx: &str, allow_two_vars: bool) -> Result<Pipe, ParseError> {
        let start = self.peek_non_space();
        let mut pipe = Pipe {
            pos: start.pos,
            decl: Vec::new(),
            is_assign: false,
            cmds: Vec::new(),
        };
        // Declarations: $x := / $x = / $i, $v :=
        if let Tok::Variable(_) = start.tok {
            let save = self.i;
            let v = self.next_non_space();
            let nxt = self.peek_non_space();
            let Tok::Variable(vname) = v.tok else {
                unreachable!("checked above")
            };
            match nxt.tok {
                Tok::Declare | Tok::Assign => {
                    self.next_non_space();
                    pipe.is_assign = nxt.tok == Tok::Assign;
                    if !pipe.is_assign {
                        self.declare(&vname);
                    } else if !self.known_var(&vname) {
                        return Err(self.err_at(v.line, format!("undefined variable {vname:?}")));
                    }
                    pipe.decl.push(vname.to_string());
                }
                Tok::Comma if allow_two_vars => {
                    self.next_non_space();
                    let v2 = self.next_non_space();
                    let Tok::Variable(v2name) = v2.tok else {
                        return Err(self.err_at(
                            v2.line,
                            format!("unexpected {} in {ctx}", describe(&v2.tok)),
                        ));
                    };
                    let op = self.next_non_space();
                    if op.tok != Tok::Declare && op.tok != Tok::Assign {
                        return Err(self.err_at(
                            op.line,
                            format!("unexpected {} in {ctx}", describe(&op.tok)),
                        ));
                    }
                    pipe.is_assign = op.tok == Tok::Assign;
                    if !pipe.is_assign {
                        self.declare(&vname);
                        self.declare(&v2name);
                    }
                    pipe.decl.push(vname.to_string());
                    pipe.decl.push(v2name.to_string());
                }
                _ => self.i = save,
            }
        }
        loop {
            let it = self.peek_non_space();
            match it.tok {
                Tok::RightDelim => {
                    self.next_non_space();
                    self.check_pipeline(&pipe, ctx, it.line)?;
                    return Ok(pipe);
                }
                Tok::RightParen if ctx == "parenthesized pipeline" => {
                    self.next_non_space();
                    self.check_pipeline(&pipe, ctx, it.line)?;
                    return Ok(pipe);
                }
                Tok::Eof => return Err(self.err_at(it.line, "unclosed action".to_string())),
                _ => {
                    let cmd = self.command(ctx)?;
                    pipe.cmds.push(cmd);
                }
            }
        }
    }

    fn check_pipeline(&self, pipe: &Pipe, ctx: &str, line: usize) -> Result<(), ParseError> {
        if pipe.cmds.is_empty() {
            return Err(self.err_at(line, format!("missing value for {ctx}")));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if let Some(
                Arg::Bool(..) | Arg::Dot(_) | Arg::Nil(_) | Arg::Number(..) | Arg::Str(..),
            ) = c.args.first()
            {
                return Err(self.err_at(
                    line,
                    format!("non executable command in pipeline stage {}", i + 1),
                ));
            }
        }
        Ok(())
    }

    fn declare(&mut self, name: &str) {
        if let Some(scope) = self.vars.last_mut() {
            scope.push(name.to_string());
        }
    }
    fn known_var(&self, name: &str) -> bool {
        self.vars
            .last()
            .is_some_and(|s| s.iter().any(|v| v == name))
    }

    fn command(&mut self, ctx: &str) -> Result<Command, ParseError> {
        let start = self.peek_non_space();
        let mut cmd = Command {
            pos: start.pos,
            args: Vec::new(),
        };
        loop {
            let it = self.peek_non_space();
            match it.tok {
                Tok::RightDelim | Tok::Eof => break,
                Tok::RightParen if ctx == "parenthesized pipeline" => break,
                Tok::Pipe => {
                    self.next_non_space();
                    if cmd.args.is_empty() {
                        return Err(self.err_at(it.line, "missing command".into()));
                    }
                    return Ok(cmd);
                }
                _ => {}
            }
            let op = self.operand()?;
            cmd.args.push(op);
            // Operands must be separated by space.
            let after = self.peek().clone();
            match after.tok {
                Tok::Space | Tok::RightDelim | Tok::Pipe | Tok::Eof => {}
                Tok::RightParen if ctx == "parenthesized pipeline" => {}
                other => {
                    return Err(self.err_at(
                        after.line,
                        format!("unexpected {} in operand", describe(&other)),
                    ));
                }
            }
        }
        if cmd.args.is_empty() {
            return Err(self.err_at(start.line, "empty command".into()));
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> Result<Arg, ParseError> {
        let it = self.next_non_space();
        let term = match it.tok {
            Tok::Dot => Arg::Dot(it.pos),
            Tok::Nil => Arg::Nil(it.pos),
            Tok::Bool(b) => Arg::Bool(it.pos, b),
            Tok::Number(ref t) => {
                let n = parse_number(t)
                    .ok_or_else(|| self.err_at(it.line, format!("bad number syntax: {t:?}")))?;
                Arg::Number(it.pos, n)
            }
            Tok::Char(v, _) => Arg::Number(it.pos, Number::Int(v)),
            Tok::Str(ref s, ref raw) => Arg::Str(it.pos, s.clone(), raw.to_string()),
            Tok::Field(ref f) => {
                let mut idents = vec![f.to_string()];
                // Go positions a field chain at its second element.
                let pos = match &self.peek().tok {
                    Tok::Field(_) => self.peek().pos,
                    _ => it.pos,
                };
                while let Tok::Field(f2) = &self.peek().tok {
                    idents.push(f2.to_string());
                    self.i += 1;
                }
                return Ok(Arg::Field(pos, idents));
            }
            Tok::Variable(ref v) => {
                if !self.known_var(v) {
                    return Err(self.err_at(it.line, format!("undefined variable {v:?}")));
                }
                let mut idents = Vec::new();
                let pos = match &self.peek().tok {
                    Tok::Field(_) => self.peek().pos,
                    _ => it.pos,
                };
                while let Tok::Field(f2) = &self.peek().tok {
                    idents.push(f2.to_string());
                    self.i += 1;
                }
                return Ok(Arg::Variable(pos, v.to_string(), idents));
            }
            Tok::Ident(ref name) => {
                if !(self.funcs)(name) {
                    return Err(self.err_at(it.line, format!("function {name:?} not defined")));
                }
                Arg::Ident(it.pos, name.to_string())
            }
            Tok::LeftParen => {
                let p = self.pipeline("parenthesized pipeline", false)?;
                Arg::Pipe(it.pos, Box::new(p))
            }
            other => {
                return Err(self.err_at(
                    it.line,
                    format!("unexpected {} in operand", describe(&other)),
                ));
            }
        };
        // Field chain after a term: (x).A.B
        if let Tok::Field(_) = &self.peek().tok {
            let chain_pos = self.peek().pos;
            let mut idents = Vec::new();
            while let Tok::Field(f2) = &self.peek().tok {
                idents.push(f2.to_string());
                self.i += 1;
            }
            match term {
                Arg::Bool(..) | Arg::Str(..) | Arg::Number(..) | Arg::Nil(_) | Arg::Dot(_) => {
                    return Err(self.err_at(it.line, format!("unexpected . after term {term:?}")));
                }
                _ => {}
            }
            return Ok(Arg::Chain(chain_pos, Box::new(term), idents));
        }
        Ok(term)
    }
}

/// A set of named templates (Go's template namespace), later definitions replacing earlier.
#[derive(Default, Clone)]
pub struct Set {
    /// Templates by name.
    pub templates: HashMap<String, Rc<Tree>>,
}

impl Set {
    /// Adds a parsed file: its body under its own name (unless empty and already defined) and
    /// each definition.
    pub fn add(&mut self, parsed: Parsed) {
        let name = parsed.body.name.clone();
        if !parsed.body_is_empty || !self.templates.contains_key(&name) {
            self.templates.insert(name, parsed.body);
        }
        for d in parsed.defines {
            self.templates.insert(d.name.clone(), d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(src: &str) -> Result<Parsed, ParseError> {
        parse("t", src, &|n| n != "nosuch")
    }

    #[test]
    fn parses_and_trims() {
        let t = p("a  {{- .x -}}  b{{/* c */}}").expect("parse");
        assert_eq!(t.body.root.len(), 3);
        assert!(p("{{ if .x }}y{{ else if .z }}w{{ else }}v{{ end }}").is_ok());
        assert!(p("{{ range $i, $v := .x }}{{ $i }}{{ break }}{{ end }}").is_ok());
        let d = p("{{ define \"n\" }}x{{ end }}").expect("define");
        assert!(d.body_is_empty);
        assert_eq!(d.defines.len(), 1);
    }

    #[test]
    fn errors_like_go() {
        assert_eq!(
            p("{{ nosuch }}").err().map(|e| e.to_string()).as_deref(),
            Some("template: t:1: function \"nosuch\" not defined")
        );
        assert_eq!(
            p("\n{{ if .x }}").err().map(|e| e.to_string()).as_deref(),
            Some("template: t:2: unexpected EOF")
        );
        assert_eq!(
            p("{{ $x }}").err().map(|e| e.to_string()).as_deref(),
            Some("template: t:1: undefined variable \"$x\"")
        );
    }
}
