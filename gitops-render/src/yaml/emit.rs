//! Writing values the way kustomize prints them (go-yaml v2 `Marshal` of the JSON form).

use std::cmp::Ordering;

use super::{Map, Value};

const BEST_WIDTH: usize = 80;
const BEST_INDENT: usize = 2;

/// Writes one document (without a `---` separator), ending in a newline.
pub fn to_yaml(v: &Value) -> String {
    let mut e = Emitter::default();
    match v {
        Value::Map(m) if !m.is_empty() => e.map(m, 0, false),
        Value::Seq(s) if !s.is_empty() => e.seq(s, 0, false),
        other => e.scalar(other, BEST_INDENT, false),
    }
    if e.col > 0 {
        e.put_break();
    }
    if e.open_ended {
        e.out.push_str("...\n");
    }
    e.out
}

/// Writes a string the way it would appear as a mapping key (used in messages and tests).
pub fn write_scalar_key(s: &str) -> String {
    let mut e = Emitter::default();
    e.string(s, 0, true);
    e.out
}

#[derive(Default)]
struct Emitter {
    out: String,
    col: usize,
    open_ended: bool,
}

/// go-yaml v2's ordering of mapping keys (a "natural" order: digits compare as numbers,
/// non-letters before letters).
pub(crate) fn key_cmp(a: &str, b: &str) -> Ordering {
    if key_less(a, b) {
        Ordering::Less
    } else if key_less(b, a) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

fn key_less(a: &str, b: &str) -> bool {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i] < br[i];
        }
        if al || bl {
            return bl;
        }
        let mut an: i64 = 0;
        let mut bn: i64 = 0;
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an.wrapping_mul(10).wrapping_add(ar[ai] as i64 - '0' as i64);
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn.wrapping_mul(10).wrapping_add(br[bi] as i64 - '0' as i64);
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ar[i] < br[i];
    }
    ar.len() < br.len()
}

/// Formats a float as Go's `strconv.FormatFloat(f, 'g', -1, 64)` does, after the JSON round
/// trip kustomize makes (integral values print as integers).
pub(crate) fn format_float(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            ".inf".into()
        } else {
            "-.inf".into()
        };
    }
    if f.fract() == 0.0 && f.abs() < 1e21 {
        if f >= i64::MIN as f64 && f < i64::MAX as f64 {
            return (f as i64).to_string();
        }
        if f >= 0.0 && f < u64::MAX as f64 {
            return (f as u64).to_string();
        }
    }
    // Shortest round-trip digits and decimal exponent.
    let e = format!("{:e}", f.abs());
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let neg = if f < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let mut m = String::new();
        m.push_str(&digits[..1]);
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{neg}{m}e{sign}{:02}", exp.abs());
    }
    // %f with as many decimals as needed.
    let dp = exp + 1; // position of the decimal point in digits
    let mut s = String::new();
    if dp <= 0 {
        s.push_str("0.");
        for _ in 0..(-dp) {
            s.push('0');
        }
        s.push_str(&digits);
    } else {
        let dp = dp as usize;
        if digits.len() <= dp {
            s.push_str(&digits);
            for _ in digits.len()..dp {
                s.push('0');
            }
        } else {
            s.push_str(&digits[..dp]);
            s.push('.');
            s.push_str(&digits[dp..]);
        }
    }
    format!("{neg}{s}")
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_blankz(c: Option<char>) -> bool {
    match c {
        None => true,
        Some(c) => c == ' ' || c == '\t' || is_break(c) || c == '\0',
    }
}

fn is_printable(c: char) -> bool {
    let u = c as u32;
    u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || (0xA0..=0xD7FF).contains(&u)
        || ((0xE000..=0xFFFD).contains(&u) && u != 0xFEFF)
}

/// go-yaml v2: does an unquoted `s` read back as something other than a string?
fn resolves_to_non_string(s: &str) -> bool {
    match s {
        "" | "~" | "null" | "Null" | "NULL" | "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On"
        | "ON" | "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "true" | "True"
        | "TRUE" | "false" | "False" | "FALSE" | ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf"
        | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF" | "<<" => {
            return true;
        }
        _ => {}
    }
    let first = s.as_bytes()[0];
    if first == b'.' {
        return go_parse_float(s);
    }
    if !(first.is_ascii_digit() || first == b'+' || first == b'-') {
        return false;
    }
    if super::parse::timestamp_rfc3339(s).is_some() {
        return true;
    }
    let plain: String = s.chars().filter(|c| *c != '_').collect();
    if let Some((neg, mag)) = super::parse::parse_go_int(&plain)
        && ((neg && mag <= i64::MAX as u128 + 1) || (!neg && mag <= u64::MAX as u128))
    {
        return true;
    }
    if is_yaml_float(&plain) {
        return true;
    }
    if is_base60_float(s) {
        return true;
    }
    false
}

fn go_parse_float(s: &str) -> bool {
    s.parse::<f64>().is_ok()
        && !s.to_ascii_lowercase().contains("inf")
        && !s.to_ascii_lowercase().contains("nan")
}

fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - start;
    if int_digits == 0 {
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let fs = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == fs {
                return false;
            }
        } else {
            return false;
        }
    } else if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let es = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == es {
            return false;
        }
    }
    i == b.len()
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`
fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    if i >= b.len() || !b[i].is_ascii_digit() {
        return false;
    }
    i += 1;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while i < b.len() && b[i] == b':' {
        i += 1;
        let gs = i;
        while i < b.len() && b[i].is_ascii_digit() && i - gs < 2 {
            i += 1;
        }
        let g = &s[gs..i];
        let ok = match g.len() {
            1 => true,
            2 => g.as_bytes()[0] <= b'5',
            _ => false,
        };
        if !ok {
            return false;
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

struct Analysis {
    multiline: bool,
    block_plain_allowed: bool,
    single_allowed: bool,
    block_allowed: bool,
}

fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            multiline: false,
            block_plain_allowed: true,
            single_allowed: true,
            block_allowed: false,
        };
    }
    let chars: Vec<char> = s.chars().collect();
    let mut block_indicators = false;
    let mut special = false;
    let mut line_breaks = false;
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    if s.starts_with("---") || s.starts_with("...") {
        block_indicators = true;
    }
    let mut preceded_by_ws = true;
    let n = chars.len();
    for i in 0..n {
        let c = chars[i];
        let followed_by_ws = is_blankz(chars.get(i + 1).copied());
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' | '-' if followed_by_ws => {
                    block_indicators = true;
                }
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_ws => {
                    block_indicators = true;
                }
                '#' if preceded_by_ws => {
                    block_indicators = true;
                }
                _ => {}
            }
        }
        if !is_printable(c) {
            special = true;
        }
        if is_break(c) {
            line_breaks = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i == n - 1 {
                trailing_space = true;
            }
            if prev_break {
                break_space = true;
            }
            prev_space = true;
            prev_break = false;
        } else if is_break(c) {
            if i == 0 {
                leading_break = true;
            }
            if i == n - 1 {
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
        preceded_by_ws = is_blankz(Some(c));
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain_allowed: true,
        single_allowed: true,
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
        a.single_allowed = false;
    }
    if space_break || special {
        a.block_plain_allowed = false;
        a.single_allowed = false;
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

impl Emitter {
    fn put(&mut self, c: char) {
        self.out.push(c);
        self.col += 1;
    }

    fn put_str(&mut self, s: &str) {
        for c in s.chars() {
            self.put(c);
        }
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.col = 0;
    }

    /// Starts a new line at `indent` (no break when already at the start of a line).
    fn line(&mut self, indent: usize) {
        if self.col > 0 {
            self.put_break();
        }
        for _ in 0..indent {
            self.put(' ');
        }
    }

    fn map(&mut self, m: &Map, indent: usize, inline_first: bool) {
        let mut keys: Vec<&String> = m.keys().collect();
        keys.sort_by(|a, b| key_cmp(a, b));
        for (i, k) in keys.into_iter().enumerate() {
            if !(i == 0 && inline_first) {
                self.line(indent);
            }
            self.string(k, indent + BEST_INDENT, true);
            self.put(':');
            let v = &m[k];
            match v {
                Value::Map(mm) if !mm.is_empty() => self.map(mm, indent + BEST_INDENT, false),
                Value::Seq(s) if !s.is_empty() => self.seq(s, indent, false),
                other => {
                    self.put(' ');
                    self.scalar(other, indent + BEST_INDENT, false);
                }
            }
        }
    }

    fn seq(&mut self, s: &[Value], indent: usize, inline_first: bool) {
        for (i, v) in s.iter().enumerate() {
            if !(i == 0 && inline_first) {
                self.line(indent);
            }
            self.put_str("- ");
            match v {
                Value::Map(mm) if !mm.is_empty() => self.map(mm, indent + BEST_INDENT, true),
                Value::Seq(ss) if !ss.is_empty() => self.seq(ss, indent + BEST_INDENT, true),
                other => self.scalar(other, indent + BEST_INDENT, false),
            }
        }
    }

    fn scalar(&mut self, v: &Value, indent: usize, simple_key: bool) {
        match v {
            Value::Null => self.put_str("null"),
            Value::Bool(b) => self.put_str(if *b { "true" } else { "false" }),
            Value::Int(i) => self.put_str(&i.to_string()),
            Value::UInt(u) => self.put_str(&u.to_string()),
            Value::Float(f) => self.put_str(&format_float(*f)),
            Value::Str(s) => self.string(s, indent, simple_key),
            Value::Map(_) => self.put_str("{}"),
            Value::Seq(_) => self.put_str("[]"),
        }
    }

    fn string(&mut self, s: &str, indent: usize, simple_key: bool) {
        let requested = if s.contains('\n') {
            Style::Literal
        } else if !resolves_to_non_string(s) {
            Style::Plain
        } else {
            Style::Double
        };
        let a = analyze(s);
        let mut style = requested;
        if simple_key && a.multiline {
            style = Style::Double;
        }
        if style == Style::Plain && (!a.block_plain_allowed || (s.is_empty() && simple_key)) {
            style = Style::Single;
        }
        if style == Style::Single && !a.single_allowed {
            style = Style::Double;
        }
        if style == Style::Literal && (!a.block_allowed || simple_key) {
            style = Style::Double;
        }
        let allow_breaks = !simple_key;
        match style {
            Style::Plain => self.plain(s, indent, allow_breaks),
            Style::Single => self.single(s, indent, allow_breaks),
            Style::Double => self.double(s, indent, allow_breaks),
            Style::Literal => self.literal(s, indent),
        }
    }

    fn plain(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for i in 0..chars.len() {
            let c = chars[i];
            if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.col > BEST_WIDTH
                    && chars.get(i + 1).is_some_and(|n| *n != ' ')
                {
                    self.line(indent);
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
        }
    }

    fn single(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        self.put('\'');
        let chars: Vec<char> = s.chars().collect();
        let n = chars.len();
        let mut spaces = false;
        let mut breaks = false;
        for i in 0..n {
            let c = chars[i];
            if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.col > BEST_WIDTH
                    && i > 0
                    && i < n - 1
                    && chars[i + 1] != ' '
                {
                    self.line(indent);
                } else {
                    self.put(c);
                }
                spaces = true;
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.put_break();
                breaks = true;
            } else {
                if breaks {
                    self.line(indent);
                }
                if c == '\'' {
                    self.put('\'');
                }
                self.put(c);
                spaces = false;
                breaks = false;
            }
        }
        self.put('\'');
    }

    fn double(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        self.put('"');
        let chars: Vec<char> = s.chars().collect();
        let n = chars.len();
        let mut spaces = false;
        for i in 0..n {
            let c = chars[i];
            if !is_printable(c) || c == '\u{FEFF}' || is_break(c) || c == '"' || c == '\\' {
                self.put('\\');
                match c {
                    '\0' => self.put('0'),
                    '\u{7}' => self.put('a'),
                    '\u{8}' => self.put('b'),
                    '\t' => self.put('t'),
                    '\n' => self.put('n'),
                    '\u{B}' => self.put('v'),
                    '\u{C}' => self.put('f'),
                    '\r' => self.put('r'),
                    '\u{1B}' => self.put('e'),
                    '"' => self.put('"'),
                    '\\' => self.put('\\'),
                    '\u{85}' => self.put('N'),
                    '\u{A0}' => self.put('_'),
                    '\u{2028}' => self.put('L'),
                    '\u{2029}' => self.put('P'),
                    other => {
                        let u = other as u32;
                        if u <= 0xFF {
                            self.put_str(&format!("x{u:02X}"));
                        } else if u <= 0xFFFF {
                            self.put_str(&format!("u{u:04X}"));
                        } else {
                            self.put_str(&format!("U{u:08X}"));
                        }
                    }
                }
                spaces = false;
            } else if c == ' ' {
                if allow_breaks && !spaces && self.col > BEST_WIDTH && i != 0 && i != n - 1 {
                    self.line(indent);
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
        }
        self.put('"');
    }

    fn literal(&mut self, s: &str, indent: usize) {
        self.put('|');
        let chars: Vec<char> = s.chars().collect();
        if chars.first().is_some_and(|c| *c == ' ' || is_break(*c)) {
            self.put(char::from(b'0' + BEST_INDENT as u8));
        }
        self.open_ended = false;
        match chars.last() {
            None => self.put('-'),
            Some(l) if !is_break(*l) => self.put('-'),
            Some(_) => {
                if chars.len() == 1 || is_break(chars[chars.len() - 2]) {
                    self.put('+');
                    self.open_ended = true;
                }
            }
        }
        self.put_break();
        let mut breaks = true;
        for c in chars {
            if is_break(c) {
                self.out.push(c);
                self.col = 0;
                breaks = true;
            } else {
                if breaks {
                    self.line(indent);
                }
                self.put(c);
                breaks = false;
            }
        }
    }
}
