//! Lexer and parser for Go's `text/template` language, with Go's positions and messages.
//!
//! One file parses into one [`Arena`]: its nodes, commands, operands and field names live in
//! a few flat vectors and refer to each other by index ranges, text nodes are spans of the
//! source, and identifiers and string literals are interned per file. Building a tree costs a
//! handful of allocations and dropping it a handful of frees.

use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use super::exec::FastHash;

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

/// A range of one of the arena's vectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct List {
    /// First index.
    pub start: u32,
    /// Number of elements.
    pub len: u32,
}

impl List {
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
    /// Whether the range is empty.
    pub fn is_empty(self) -> bool {
        self.len == 0
    }
}

/// Everything parsed from one source text.
#[derive(Debug, Default)]
pub struct Arena {
    /// The source text (text nodes are spans of it).
    pub src: Rc<str>,
    nodes: Vec<Node>,
    pipes: Vec<Pipe>,
    cmds: Vec<Command>,
    args: Vec<Arg>,
    names: Vec<Rc<str>>,
}

impl Arena {
    /// The nodes of a list.
    pub fn nodes(&self, l: List) -> &[Node] {
        &self.nodes[l.range()]
    }
    /// The commands of a pipeline.
    pub fn cmds(&self, l: List) -> &[Command] {
        &self.cmds[l.range()]
    }
    /// The operands of a command.
    pub fn args(&self, l: List) -> &[Arg] {
        &self.args[l.range()]
    }
    /// Field or variable names.
    pub fn names(&self, l: List) -> &[Rc<str>] {
        &self.names[l.range()]
    }
    /// A parenthesized pipeline.
    pub fn pipe(&self, i: u32) -> &Pipe {
        &self.pipes[i as usize]
    }
    /// The term of a chain.
    pub fn arg(&self, i: u32) -> &Arg {
        &self.args[i as usize]
    }
    /// The text of a text node.
    pub fn text(&self, start: u32, end: u32) -> &str {
        &self.src[start as usize..end as usize]
    }
    /// Something of this arena, printable as template source.
    pub fn show<'a, T: ?Sized>(&'a self, item: &'a T) -> Show<'a, T> {
        Show(self, item)
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
    /// The file's nodes (shared by every tree of the file and by identical files).
    pub arena: Rc<Arena>,
    /// The body.
    pub root: List,
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
    /// Literal text: the byte range `start..end` of the source.
    Text(u32, u32),
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
        name: Rc<str>,
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
    pub list: List,
    /// The else body.
    pub else_list: Option<List>,
}

/// A pipeline with optional variable declarations.
#[derive(Debug, Clone)]
pub struct Pipe {
    /// Position.
    pub pos: usize,
    /// `$x :=` or `$x =` variables (names).
    pub decl: List,
    /// Whether `=` (assignment) rather than `:=`.
    pub is_assign: bool,
    /// The commands.
    pub cmds: List,
}

/// One command of a pipeline.
#[derive(Debug, Clone)]
pub struct Command {
    /// Position.
    pub pos: usize,
    /// The operands; the first may be a function.
    pub args: List,
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
    /// A string literal: its value and, when it is not `"value"` verbatim, its source text.
    Str(usize, Rc<str>, Option<Rc<str>>),
    /// `.A.B` (names).
    Field(usize, List),
    /// `$x.A.B`
    Variable(usize, Rc<str>, List),
    /// A function name.
    Ident(usize, Rc<str>),
    /// `(pipeline)` (an index of the arena's pipelines).
    Pipe(usize, u32),
    /// `(pipeline).A.B` or similar: the term (an index of the arena's operands) and names.
    Chain(usize, u32, List),
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

/// An operand, command or pipeline printed as template source (Go's `String()`), for messages.
pub struct Show<'a, T: ?Sized>(&'a Arena, &'a T);

impl fmt::Display for Show<'_, Arg> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.0;
        let names = |f: &mut fmt::Formatter<'_>, l: List| {
            for i in a.names(l) {
                write!(f, ".{i}")?;
            }
            Ok(())
        };
        match self.1 {
            Arg::Dot(_) => f.write_str("."),
            Arg::Nil(_) => f.write_str("nil"),
            Arg::Bool(_, b) => write!(f, "{b}"),
            Arg::Str(_, _, Some(raw)) => f.write_str(raw),
            Arg::Str(_, v, None) => write!(f, "\"{v}\""),
            Arg::Number(_, Number::Int(i)) => write!(f, "{i}"),
            Arg::Number(_, Number::Float(x)) => {
                f.write_str(&crate::helm::value::format_float_g(*x))
            }
            Arg::Field(_, idents) => names(f, *idents),
            Arg::Variable(_, name, idents) => {
                f.write_str(name)?;
                names(f, *idents)
            }
            Arg::Ident(_, name) => f.write_str(name),
            Arg::Pipe(_, p) => write!(f, "({})", a.show(a.pipe(*p))),
            Arg::Chain(_, node, idents) => {
                match a.arg(*node) {
                    Arg::Pipe(_, p) => write!(f, "({})", a.show(a.pipe(*p)))?,
                    other => write!(f, "{}", a.show(other))?,
                }
                names(f, *idents)
            }
        }
    }
}

impl fmt::Display for Show<'_, Command> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, arg) in self.0.args(self.1.args).iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}", self.0.show(arg))?;
        }
        Ok(())
    }
}

impl fmt::Display for Show<'_, Pipe> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, p) = (self.0, self.1);
        if !p.decl.is_empty() {
            for (i, d) in a.names(p.decl).iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                f.write_str(d)?;
            }
            f.write_str(if p.is_assign { " = " } else { " := " })?;
        }
        for (i, c) in a.cmds(p.cmds).iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{}", a.show(c))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

/// A token kind; its text is the item's span of the source.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    /// Text outside actions (`pos..end`, trimmed when `{{-` follows).
    Text,
    LeftDelim,
    RightDelim,
    Space,
    Ident,
    Keyword,
    /// `.name`: the span includes the dot.
    Field,
    /// `$name`: the span includes the `$`.
    Variable,
    /// A quoted string (the span is the raw text with its quotes).
    Str,
    /// A character constant and its value (the span is the raw text).
    Char(i64),
    Number,
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

#[derive(Debug, Clone, Copy)]
struct Item {
    tok: Tok,
    pos: usize,
    end: usize,
}

const KEYWORDS: &[&str] = &[
    "block", "break", "continue", "define", "else", "end", "if", "range", "template", "with",
];

/// The 1-based line of a byte offset.
fn line_of(src: &str, p: usize) -> usize {
    1 + src.as_bytes()[..p.min(src.len())]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
}

fn lex(name: &str, src: &str) -> Result<Vec<Item>, ParseError> {
    let b = src.as_bytes();
    let mut items = Vec::with_capacity(src.len() / 8 + 4);
    let mut pos = 0;
    let err = |p: usize, msg: String| ParseError {
        name: name.to_string(),
        line: line_of(src, p),
        message: msg,
    };
    let is_space = |c: u8| c == b' ' || c == b'\t' || c == b'\r' || c == b'\n';
    while pos < b.len() {
        // Text up to the next "{{" (a byte search for `{`, then a look at the next byte).
        let mut next = None;
        let mut from = pos;
        while let Some(i) = src[from..].find('{') {
            let at = from + i;
            if b.get(at + 1) == Some(&b'{') {
                next = Some(at);
                break;
            }
            from = at + 1;
        }
        let Some(ld) = next else {
            items.push(Item {
                tok: Tok::Text,
                pos,
                end: src.len(),
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
                tok: Tok::Text,
                pos,
                end: text_end,
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
            end: ld + 2,
        });
        // Inside the action.
        let mut paren_depth = 0i32;
        loop {
            if p >= b.len() {
                return Err(err(
                    b.len(),
                    format!("unclosed action started at {name}:{}", line_of(src, ld)),
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
                        end: p,
                    });
                    while p < b.len() && is_space(b[p]) {
                        p += 1;
                    }
                    break;
                }
                items.push(Item {
                    tok: Tok::Space,
                    pos: s,
                    end: p,
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
                    end: p + 2,
                });
                p += 2;
                break;
            }
            let start = p;
            let push = |items: &mut Vec<Item>, tok: Tok, end: usize| {
                items.push(Item {
                    tok,
                    pos: start,
                    end,
                })
            };
            match c {
                b'|' => {
                    p += 1;
                    push(&mut items, Tok::Pipe, p);
                }
                b'(' => {
                    paren_depth += 1;
                    p += 1;
                    push(&mut items, Tok::LeftParen, p);
                }
                b')' => {
                    paren_depth -= 1;
                    if paren_depth < 0 {
                        return Err(err(p, format!("unexpected right paren {:?}", ")")));
                    }
                    p += 1;
                    push(&mut items, Tok::RightParen, p);
                }
                b',' => {
                    p += 1;
                    push(&mut items, Tok::Comma, p);
                }
                b':' => {
                    if b.get(p + 1) == Some(&b'=') {
                        p += 2;
                        push(&mut items, Tok::Declare, p);
                    } else {
                        return Err(err(p, "expected :=".into()));
                    }
                }
                b'=' => {
                    p += 1;
                    push(&mut items, Tok::Assign, p);
                }
                b'"' => {
                    let mut q = p + 1;
                    let mut escaped = false;
                    loop {
                        if q >= b.len() || b[q] == b'\n' {
                            return Err(err(p, "unterminated quoted string".into()));
                        }
                        if b[q] == b'\\' {
                            escaped = true;
                            q += 2;
                            continue;
                        }
                        if b[q] == b'"' {
                            break;
                        }
                        q += 1;
                    }
                    let raw = &src[p..=q];
                    if escaped && unquote(raw).is_none() {
                        return Err(err(p, format!("invalid syntax: {raw}")));
                    }
                    push(&mut items, Tok::Str, q + 1);
                    p = q + 1;
                }
                b'`' => {
                    let Some(end) = src[p + 1..].find('`') else {
                        return Err(err(p, "unterminated raw quoted string".into()));
                    };
                    push(&mut items, Tok::Str, p + end + 2);
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
                    push(&mut items, Tok::Char(v as i64), q + 1);
                    p = q + 1;
                }
                b'$' => {
                    let mut q = p + 1;
                    while q < b.len()
                        && (b[q] == b'_' || b[q].is_ascii_alphanumeric() || b[q] >= 0x80)
                    {
                        q += 1;
                    }
                    push(&mut items, Tok::Variable, q);
                    p = q;
                }
                b'.' => {
                    if b.get(p + 1).is_some_and(|c| c.is_ascii_digit()) {
                        let q = scan_number(b, p);
                        push(&mut items, Tok::Number, q);
                        p = q;
                    } else {
                        let mut q = p + 1;
                        while q < b.len()
                            && (b[q] == b'_' || b[q].is_ascii_alphanumeric() || b[q] >= 0x80)
                        {
                            q += 1;
                        }
                        if q == p + 1 {
                            push(&mut items, Tok::Dot, q);
                        } else {
                            push(&mut items, Tok::Field, q);
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
                    push(&mut items, Tok::Number, q);
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
                        w if KEYWORDS.contains(&w) => Tok::Keyword,
                        _ => Tok::Ident,
                    };
                    push(&mut items, tok, q);
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
        end: src.len(),
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
                arena: t.arena.clone(),
                root: t.root,
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
    src: &'a str,
    items: Vec<Item>,
    i: usize,
    /// `define`d and `block` templates: name and body.
    defines: Vec<(Rc<str>, List)>,
    arena: Arena,
    /// Nodes, commands and operands of the lists being built (innermost on top).
    scratch_nodes: Vec<Node>,
    scratch_cmds: Vec<Command>,
    scratch_args: Vec<Arg>,
    /// Declared variables; a control structure's scope is the tail it adds.
    vars: Vec<&'a str>,
    funcs: &'a dyn Fn(&str) -> bool,
    range_depth: usize,
    /// Identifiers and string literals of this file, one allocation per distinct text.
    interned: HashMap<&'a str, Rc<str>, FastHash>,
}

/// Parses template text named `name`; `funcs` says whether a function exists.
pub fn parse(name: &str, src: &str, funcs: &dyn Fn(&str) -> bool) -> Result<Parsed, ParseError> {
    parse_shared(name, Rc::from(src), funcs)
}

/// [`parse`] of text already shared (no copy of the source is made).
pub fn parse_shared(
    name: &str,
    src: Rc<str>,
    funcs: &dyn Fn(&str) -> bool,
) -> Result<Parsed, ParseError> {
    let text: &str = &src;
    if u32::try_from(text.len()).is_err() {
        return Err(ParseError {
            name: name.to_string(),
            line: 1,
            message: "template text larger than 4 GiB".into(),
        });
    }
    let items = lex(name, text)?;
    // Sized from the token count (a template has about one node, operand or name per three
    // or four tokens), so that the vectors seldom grow while parsing.
    let n = items.len();
    let arena = Arena {
        nodes: Vec::with_capacity(n / 4 + 1),
        pipes: Vec::new(),
        cmds: Vec::with_capacity(n / 8 + 1),
        args: Vec::with_capacity(n / 4 + 1),
        names: Vec::with_capacity(n / 4 + 1),
        ..Arena::default()
    };
    let mut p = Parser {
        name,
        src: text,
        items,
        i: 0,
        defines: Vec::new(),
        arena,
        scratch_nodes: Vec::with_capacity(64),
        scratch_cmds: Vec::with_capacity(16),
        scratch_args: Vec::with_capacity(16),
        vars: vec!["$"],
        funcs,
        range_depth: 0,
        interned: HashMap::with_capacity_and_hasher(n / 16 + 8, FastHash::default()),
    };
    let (root, end) = p.item_list(true)?;
    if let Some(e) = end {
        return Err(p.err_at(e.pos, format!("unexpected {}", p.describe(&e))));
    }
    let body_is_empty = p.arena.nodes(root).iter().all(|n| match n {
        Node::Text(s, e) => text[*s as usize..*e as usize].trim().is_empty(),
        _ => false,
    });
    let define_lists = std::mem::take(&mut p.defines);
    let mut arena = std::mem::take(&mut p.arena);
    drop(p);
    arena.src = src.clone();
    let arena = Rc::new(arena);
    let tree = |tname: &str, root: List| {
        Rc::new(Tree {
            name: tname.to_string(),
            parse_name: name.to_string(),
            src: src.clone(),
            arena: arena.clone(),
            root,
        })
    };
    let defines = define_lists.iter().map(|(n, l)| tree(n, *l)).collect();
    Ok(Parsed {
        body: tree(name, root),
        body_is_empty,
        defines,
    })
}

impl<'a> Parser<'a> {
    /// An error at the line of byte offset `pos`.
    fn err_at(&self, pos: usize, message: String) -> ParseError {
        ParseError {
            name: self.name.to_string(),
            line: line_of(self.src, pos),
            message,
        }
    }
    /// The source text of an item.
    fn text(&self, it: &Item) -> &'a str {
        let src: &'a str = self.src;
        &src[it.pos..it.end]
    }
    fn intern(&mut self, s: &'a str) -> Rc<str> {
        self.interned
            .entry(s)
            .or_insert_with(|| Rc::from(s))
            .clone()
    }
    /// The name of a field item (without its dot).
    fn field_name(&mut self, it: &Item) -> Rc<str> {
        let src: &'a str = self.src;
        self.intern(&src[it.pos + 1..it.end])
    }
    /// The value of a string item and its raw text when that is not `"value"`.
    fn str_value(&mut self, it: &Item) -> (Rc<str>, Option<Rc<str>>) {
        let raw = self.text(it);
        if let Some(inner) = raw.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
            return (self.intern(inner), Some(Rc::from(raw)));
        }
        let inner = &raw[1..raw.len() - 1];
        if !inner.contains('\\') {
            return (self.intern(inner), None);
        }
        let v = unquote(raw).unwrap_or_default();
        (Rc::from(v), Some(Rc::from(raw)))
    }
    fn flush_nodes(&mut self, base: usize) -> List {
        let start = self.arena.nodes.len();
        self.arena.nodes.extend(self.scratch_nodes.drain(base..));
        List {
            start: start as u32,
            len: (self.arena.nodes.len() - start) as u32,
        }
    }
    fn flush_cmds(&mut self, base: usize) -> List {
        let start = self.arena.cmds.len();
        self.arena.cmds.extend(self.scratch_cmds.drain(base..));
        List {
            start: start as u32,
            len: (self.arena.cmds.len() - start) as u32,
        }
    }
    fn flush_args(&mut self, base: usize) -> List {
        let start = self.arena.args.len();
        self.arena.args.extend(self.scratch_args.drain(base..));
        List {
            start: start as u32,
            len: (self.arena.args.len() - start) as u32,
        }
    }
    /// Interned names pushed as one list.
    fn name_list(&mut self, names: &[&'a str]) -> List {
        let start = self.arena.names.len();
        for n in names {
            let r = self.intern(n);
            self.arena.names.push(r);
        }
        List {
            start: start as u32,
            len: names.len() as u32,
        }
    }
    fn is_kw(&self, it: &Item, kw: &str) -> bool {
        it.tok == Tok::Keyword && self.text(it) == kw
    }
    fn describe(&self, it: &Item) -> String {
        let t = self.text(it);
        match it.tok {
            Tok::Keyword => format!("{{{{{t}}}}}"),
            Tok::RightDelim => "\"}}\"".into(),
            Tok::RightParen => "\")\"".into(),
            Tok::Eof => "EOF".into(),
            Tok::Field => format!("{:?}", &t[1..]),
            Tok::Ident | Tok::Variable | Tok::Number => format!("{t:?}"),
            Tok::Str | Tok::Char(_) => t.to_string(),
            Tok::Pipe => "\"|\"".into(),
            Tok::Comma => "\",\"".into(),
            Tok::LeftParen => "\"(\"".into(),
            Tok::Declare => "\":=\"".into(),
            Tok::Assign => "\"=\"".into(),
            Tok::Dot => "\".\"".into(),
            Tok::Bool(b) => format!("{b:?}"),
            Tok::Nil => "\"nil\"".into(),
            other => format!("{other:?}"),
        }
    }
    fn peek(&self) -> Item {
        self.items[self.i.min(self.items.len() - 1)]
    }
    fn next(&mut self) -> Item {
        let it = self.peek();
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
        self.peek()
    }

    /// Parses nodes until `{{end}}`/`{{else}}` (returned as the end item) or EOF.
    fn item_list(&mut self, top: bool) -> Result<(List, Option<Item>), ParseError> {
        let base = self.scratch_nodes.len();
        loop {
            let it = self.next();
            match it.tok {
                Tok::Eof => {
                    if top {
                        return Ok((self.flush_nodes(base), None));
                    }
                    return Err(self.err_at(it.pos, "unexpected EOF".into()));
                }
                Tok::Text => self
                    .scratch_nodes
                    .push(Node::Text(it.pos as u32, it.end as u32)),
                Tok::LeftDelim => {
                    let kw = self.peek_non_space();
                    if kw.tok == Tok::Keyword && matches!(self.text(&kw), "end" | "else") {
                        if top {
                            return Err(
                                self.err_at(kw.pos, format!("unexpected {}", self.describe(&kw)))
                            );
                        }
                        self.next_non_space();
                        return Ok((self.flush_nodes(base), Some(kw)));
                    }
                    if let Some(n) = self.action()? {
                        self.scratch_nodes.push(n);
                    }
                }
                _ => {
                    return Err(self.err_at(it.pos, format!("unexpected {}", self.describe(&it))));
                }
            }
        }
    }

    fn expect_right(&mut self, ctx: &str) -> Result<(), ParseError> {
        let it = self.next_non_space();
        if it.tok != Tok::RightDelim {
            return Err(self.err_at(
                it.pos,
                format!("unexpected {} in {ctx}", self.describe(&it)),
            ));
        }
        Ok(())
    }

    fn action(&mut self) -> Result<Option<Node>, ParseError> {
        let it = self.peek_non_space();
        if it.tok == Tok::Keyword {
            let k = self.text(&it);
            self.next_non_space();
            return match k {
                "if" => Ok(Some(Node::If(self.branch("if", it.pos)?))),
                "range" => {
                    self.range_depth += 1;
                    let b = self.branch("range", it.pos);
                    self.range_depth -= 1;
                    Ok(Some(Node::Range(b?)))
                }
                "with" => Ok(Some(Node::With(self.branch("with", it.pos)?))),
                "define" => {
                    self.define(it.pos)?;
                    Ok(None)
                }
                "block" | "template" => self.template(k, it.pos).map(Some),
                "break" | "continue" => {
                    if self.range_depth == 0 {
                        return Err(
                            self.err_at(it.pos, format!("{{{{{k}}}}} outside {{{{range}}}}"))
                        );
                    }
                    self.expect_right(k)?;
                    Ok(Some(if k == "break" {
                        Node::Break(it.pos)
                    } else {
                        Node::Continue(it.pos)
                    }))
                }
                other => Err(self.err_at(it.pos, format!("unexpected {{{{{other}}}}}"))),
            };
        }
        let pipe = self.pipeline("command", true)?;
        Ok(Some(Node::Action(pipe)))
    }

    fn branch(&mut self, ctx: &str, pos: usize) -> Result<Branch, ParseError> {
        let mark = self.vars.len();
        let res = self.branch_inner(ctx, pos);
        self.vars.truncate(mark);
        res
    }

    fn branch_inner(&mut self, ctx: &str, pos: usize) -> Result<Branch, ParseError> {
        let pipe = self.pipeline(ctx, ctx == "range")?;
        if pipe.cmds.is_empty() {
            let at = self.peek().pos;
            return Err(self.err_at(at, format!("missing value for {ctx}")));
        }
        let (list, end) = self.item_list(false)?;
        let end = end.expect("item_list(false) returns an end item or an error");
        let mut else_list = None;
        if self.is_kw(&end, "else") {
            // `else if` / `else with` chain: parse as a nested branch in the else list.
            let nxt = self.peek_non_space();
            if nxt.tok == Tok::Keyword {
                let k2 = self.text(&nxt);
                if (k2 == "if" && ctx == "if") || (k2 == "with" && ctx == "with") {
                    self.next_non_space();
                    let nested = self.branch(k2, nxt.pos)?;
                    let start = self.arena.nodes.len() as u32;
                    self.arena.nodes.push(if k2 == "if" {
                        Node::If(nested)
                    } else {
                        Node::With(nested)
                    });
                    else_list = Some(List { start, len: 1 });
                    return Ok(Branch {
                        pos,
                        pipe,
                        list,
                        else_list,
                    });
                }
            }
            self.expect_right("else")?;
            let (el, end2) = self.item_list(false)?;
            let end2 = end2.expect("item_list(false) returns an end item or an error");
            if !self.is_kw(&end2, "end") {
                return Err(self.err_at(end2.pos, "expected end; found {{else}}".into()));
            }
            self.expect_right("end")?;
            else_list = Some(el);
        } else {
            self.expect_right("end")?;
        }
        Ok(Branch {
            pos,
            pipe,
            list,
            else_list,
        })
    }

    fn define(&mut self, at: usize) -> Result<(), ParseError> {
        let it = self.next_non_space();
        if it.tok != Tok::Str {
            return Err(self.err_at(
                at,
                format!("unexpected {} in define clause", self.describe(&it)),
            ));
        }
        let (name, _) = self.str_value(&it);
        self.expect_right("define clause")?;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$"]);
        let saved_depth = std::mem::replace(&mut self.range_depth, 0);
        let (list, end) = self.item_list(false)?;
        self.vars = saved_vars;
        self.range_depth = saved_depth;
        let end = end.expect("item_list(false) returns an end item or an error");
        if !self.is_kw(&end, "end") {
            return Err(self.err_at(end.pos, "unexpected {{else}}".into()));
        }
        self.expect_right("end")?;
        self.defines.push((name, list));
        Ok(())
    }

    fn template(&mut self, kw: &str, pos: usize) -> Result<Node, ParseError> {
        let it = self.next_non_space();
        if it.tok != Tok::Str {
            return Err(self.err_at(
                pos,
                format!("unexpected {} in {kw} clause", self.describe(&it)),
            ));
        }
        let (name, _) = self.str_value(&it);
        let nxt = self.peek_non_space();
        let pipe = if nxt.tok == Tok::RightDelim {
            self.next_non_space();
            None
        } else {
            Some(self.pipeline(kw, false)?)
        };
        if kw == "block" {
            let saved_vars = std::mem::replace(&mut self.vars, vec!["$"]);
            let (list, end) = self.item_list(false)?;
            self.vars = saved_vars;
            let end = end.expect("item_list(false) returns an end item or an error");
            if !self.is_kw(&end, "end") {
                return Err(self.err_at(end.pos, "unexpected {{else}}".into()));
            }
            self.expect_right("end")?;
            self.defines.push((name.clone(), list));
        }
        Ok(Node::Template { pos, name, pipe })
    }

    /// Parses a pipeline up to the closing `}}` (consumed).
    fn pipeline(&mut self, ctx: &str, allow_two_vars: bool) -> Result<Pipe, ParseError> {
        let start = self.peek_non_space();
        let mut pipe = Pipe {
            pos: start.pos,
            decl: List::default(),
            is_assign: false,
            cmds: List::default(),
        };
        // Declarations: $x := / $x = / $i, $v :=
        if start.tok == Tok::Variable {
            let save = self.i;
            let v = self.next_non_space();
            let vname = self.text(&v);
            let nxt = self.peek_non_space();
            match nxt.tok {
                Tok::Declare | Tok::Assign => {
                    self.next_non_space();
                    pipe.is_assign = nxt.tok == Tok::Assign;
                    if !pipe.is_assign {
                        self.vars.push(vname);
                    } else if !self.known_var(vname) {
                        return Err(self.err_at(v.pos, format!("undefined variable {vname:?}")));
                    }
                    pipe.decl = self.name_list(&[vname]);
                }
                Tok::Comma if allow_two_vars => {
                    self.next_non_space();
                    let v2 = self.next_non_space();
                    if v2.tok != Tok::Variable {
                        return Err(self.err_at(
                            v2.pos,
                            format!("unexpected {} in {ctx}", self.describe(&v2)),
                        ));
                    }
                    let v2name = self.text(&v2);
                    let op = self.next_non_space();
                    if op.tok != Tok::Declare && op.tok != Tok::Assign {
                        return Err(self.err_at(
                            op.pos,
                            format!("unexpected {} in {ctx}", self.describe(&op)),
                        ));
                    }
                    pipe.is_assign = op.tok == Tok::Assign;
                    if !pipe.is_assign {
                        self.vars.push(vname);
                        self.vars.push(v2name);
                    }
                    pipe.decl = self.name_list(&[vname, v2name]);
                }
                _ => self.i = save,
            }
        }
        let base = self.scratch_cmds.len();
        loop {
            let it = self.peek_non_space();
            match it.tok {
                Tok::RightDelim => {
                    self.next_non_space();
                    pipe.cmds = self.flush_cmds(base);
                    self.check_pipeline(&pipe, ctx, it.pos)?;
                    return Ok(pipe);
                }
                Tok::RightParen if ctx == "parenthesized pipeline" => {
                    self.next_non_space();
                    pipe.cmds = self.flush_cmds(base);
                    self.check_pipeline(&pipe, ctx, it.pos)?;
                    return Ok(pipe);
                }
                Tok::Eof => return Err(self.err_at(it.pos, "unclosed action".to_string())),
                _ => {
                    let cmd = self.command(ctx)?;
                    self.scratch_cmds.push(cmd);
                }
            }
        }
    }

    fn check_pipeline(&self, pipe: &Pipe, ctx: &str, at: usize) -> Result<(), ParseError> {
        if pipe.cmds.is_empty() {
            return Err(self.err_at(at, format!("missing value for {ctx}")));
        }
        for (i, c) in self.arena.cmds(pipe.cmds).iter().enumerate().skip(1) {
            if let Some(
                Arg::Bool(..) | Arg::Dot(_) | Arg::Nil(_) | Arg::Number(..) | Arg::Str(..),
            ) = self.arena.args(c.args).first()
            {
                return Err(self.err_at(
                    at,
                    format!("non executable command in pipeline stage {}", i + 1),
                ));
            }
        }
        Ok(())
    }

    fn known_var(&self, name: &str) -> bool {
        self.vars.contains(&name)
    }

    fn command(&mut self, ctx: &str) -> Result<Command, ParseError> {
        let start = self.peek_non_space();
        let base = self.scratch_args.len();
        loop {
            let it = self.peek_non_space();
            match it.tok {
                Tok::RightDelim | Tok::Eof => break,
                Tok::RightParen if ctx == "parenthesized pipeline" => break,
                Tok::Pipe => {
                    self.next_non_space();
                    if self.scratch_args.len() == base {
                        return Err(self.err_at(it.pos, "missing command".into()));
                    }
                    return Ok(Command {
                        pos: start.pos,
                        args: self.flush_args(base),
                    });
                }
                _ => {}
            }
            let op = self.operand()?;
            self.scratch_args.push(op);
            // Operands must be separated by space.
            let after = self.peek();
            match after.tok {
                Tok::Space | Tok::RightDelim | Tok::Pipe | Tok::Eof => {}
                Tok::RightParen if ctx == "parenthesized pipeline" => {}
                _ => {
                    return Err(self.err_at(
                        after.pos,
                        format!("unexpected {} in operand", self.describe(&after)),
                    ));
                }
            }
        }
        if self.scratch_args.len() == base {
            return Err(self.err_at(start.pos, "empty command".into()));
        }
        Ok(Command {
            pos: start.pos,
            args: self.flush_args(base),
        })
    }

    /// The field names that follow (`.A.B`), consumed.
    fn field_chain(&mut self, first: Option<Item>) -> List {
        let start = self.arena.names.len();
        if let Some(it) = first {
            let f = self.field_name(&it);
            self.arena.names.push(f);
        }
        loop {
            let nx = self.peek();
            if nx.tok != Tok::Field {
                break;
            }
            let f = self.field_name(&nx);
            self.arena.names.push(f);
            self.i += 1;
        }
        List {
            start: start as u32,
            len: (self.arena.names.len() - start) as u32,
        }
    }

    fn operand(&mut self) -> Result<Arg, ParseError> {
        let it = self.next_non_space();
        let term = match it.tok {
            Tok::Dot => Arg::Dot(it.pos),
            Tok::Nil => Arg::Nil(it.pos),
            Tok::Bool(b) => Arg::Bool(it.pos, b),
            Tok::Number => {
                let t = self.text(&it);
                let n = parse_number(t)
                    .ok_or_else(|| self.err_at(it.pos, format!("bad number syntax: {t:?}")))?;
                Arg::Number(it.pos, n)
            }
            Tok::Char(v) => Arg::Number(it.pos, Number::Int(v)),
            Tok::Str => {
                let (v, raw) = self.str_value(&it);
                Arg::Str(it.pos, v, raw)
            }
            Tok::Field => {
                // Go positions a field chain at its second element.
                let nx = self.peek();
                let pos = if nx.tok == Tok::Field { nx.pos } else { it.pos };
                return Ok(Arg::Field(pos, self.field_chain(Some(it))));
            }
            Tok::Variable => {
                let v = self.text(&it);
                if !self.known_var(v) {
                    return Err(self.err_at(it.pos, format!("undefined variable {v:?}")));
                }
                let nx = self.peek();
                let pos = if nx.tok == Tok::Field { nx.pos } else { it.pos };
                let name = self.intern(v);
                return Ok(Arg::Variable(pos, name, self.field_chain(None)));
            }
            Tok::Ident => {
                let name = self.text(&it);
                if !(self.funcs)(name) {
                    return Err(self.err_at(it.pos, format!("function {name:?} not defined")));
                }
                Arg::Ident(it.pos, self.intern(name))
            }
            Tok::LeftParen => {
                let p = self.pipeline("parenthesized pipeline", false)?;
                self.arena.pipes.push(p);
                Arg::Pipe(it.pos, (self.arena.pipes.len() - 1) as u32)
            }
            _ => {
                return Err(self.err_at(
                    it.pos,
                    format!("unexpected {} in operand", self.describe(&it)),
                ));
            }
        };
        // Field chain after a term: (x).A.B
        let nx = self.peek();
        if nx.tok == Tok::Field {
            let chain_pos = nx.pos;
            if let Arg::Bool(..) | Arg::Str(..) | Arg::Number(..) | Arg::Nil(_) | Arg::Dot(_) = term
            {
                return Err(self.err_at(
                    it.pos,
                    format!(
                        "unexpected . after term {}",
                        crate::helm::funcs::go_quote(&self.arena.show(&term).to_string())
                    ),
                ));
            }
            let idents = self.field_chain(None);
            self.arena.args.push(term);
            let term = (self.arena.args.len() - 1) as u32;
            return Ok(Arg::Chain(chain_pos, term, idents));
        }
        Ok(term)
    }
}

/// A set of named templates (Go's template namespace), later definitions replacing earlier.
#[derive(Default, Clone)]
pub struct Set {
    /// Templates by name.
    pub templates: HashMap<String, Rc<Tree>, FastHash>,
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
        assert_eq!(t.body.root.len, 3);
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
