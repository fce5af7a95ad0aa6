//! Sprig's `b32dec`, `urlJoin` and `randBytes`, with Go's decoder errors and `net/url`'s
//! escaping.

use base64::Engine as _;

use super::funcs::{rand_bytes, strval, to_i64};
use super::template::{FuncError, FuncMap};
use super::value::Value;

/// Registers the functions.
pub fn register(m: &mut FuncMap) {
    m.insert("b32dec", |_, a| {
        arity("b32dec", a, 1)?;
        // Sprig returns the decoder's error text as the result.
        Ok(Value::from(match base32_decode(strval(&a[0]).as_bytes()) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(at) => format!("illegal base32 data at input byte {at}"),
        }))
    });
    m.insert("urlJoin", |_, a| {
        arity("urlJoin", a, 1)?;
        let Some(d) = a[0].as_map() else {
            return Err(FuncError::Msg(format!(
                "wrong type for value; expected map[string]interface {{}}; got {}",
                a[0].type_name()
            )));
        };
        let d = d.borrow();
        let get = |k: &str| match d.get(k) {
            Some(Value::Str(s)) => s.to_string(),
            _ => String::new(),
        };
        url_join(
            &get("scheme"),
            &get("host"),
            &get("path"),
            &get("query"),
            &get("opaque"),
            &get("fragment"),
            &get("userinfo"),
        )
        .map(Value::from)
        .map_err(FuncError::Msg)
    });
    m.insert("randBytes", |_, a| {
        arity("randBytes", a, 1)?;
        let n = to_i64(&a[0]);
        if n < 0 {
            return Err(FuncError::Msg(format!(
                "error calling randBytes: runtime error: makeslice: len out of range ({n})"
            )));
        }
        if n as usize > MAX_RANDOM {
            return Err(FuncError::Msg(format!(
                "error calling randBytes: {n} bytes is more than the {MAX_RANDOM} this renderer generates"
            )));
        }
        Ok(Value::from(
            base64::engine::general_purpose::STANDARD.encode(rand_bytes(n as usize)),
        ))
    });
}

/// The most random bytes one call generates.
const MAX_RANDOM: usize = 16 * 1024 * 1024;

fn arity(name: &str, a: &[Value], n: usize) -> Result<(), FuncError> {
    if a.len() != n {
        return Err(FuncError::Msg(format!(
            "wrong number of args for {name}: want {n} got {}",
            a.len()
        )));
    }
    Ok(())
}

/// `base32.StdEncoding.DecodeString`: newlines are dropped first, padding is required; the
/// error is the offset Go's `CorruptInputError` reports (in the input without newlines).
/// Go's `base64.StdEncoding.DecodeString`: padding required, `\r` and `\n` skipped anywhere,
/// and on bad input the offset Go's `CorruptInputError` reports.
pub(crate) fn base64_decode(src: &[u8]) -> Result<Vec<u8>, usize> {
    const PAD: u8 = b'=';
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let skip_newlines = |mut si: usize| {
        while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
            si += 1;
        }
        si
    };
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut si = 0;
    loop {
        // One quantum: up to four symbols, or the padded end.
        let mut dbuf = [0u8; 4];
        let mut dlen = 4;
        let mut j = 0;
        let mut trailing = None;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(out);
                }
                // Padding is required: a short last quantum is corrupt.
                return Err(si - j);
            }
            let c = src[si];
            si += 1;
            if let Some(v) = value(c) {
                dbuf[j] = v;
                j += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != PAD {
                return Err(si - 1);
            }
            match j {
                0 | 1 => return Err(si - 1),
                2 => {
                    // "==" expected: the first '=' is consumed.
                    si = skip_newlines(si);
                    if si == src.len() {
                        return Err(src.len());
                    }
                    if src[si] != PAD {
                        return Err(si - 1);
                    }
                    si += 1;
                }
                _ => {}
            }
            si = skip_newlines(si);
            if si < src.len() {
                trailing = Some(si);
            }
            dlen = j;
            break;
        }
        let v = u32::from(dbuf[0]) << 18
            | u32::from(dbuf[1]) << 12
            | u32::from(dbuf[2]) << 6
            | u32::from(dbuf[3]);
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..dlen - 1]);
        if let Some(at) = trailing {
            return Err(at);
        }
        if dlen < 4 {
            return Ok(out);
        }
    }
}

fn base32_decode(input: &[u8]) -> Result<Vec<u8>, usize> {
    const PAD: u8 = b'=';
    let src: Vec<u8> = input
        .iter()
        .copied()
        .filter(|c| *c != b'\r' && *c != b'\n')
        .collect();
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'2'..=b'7' => Some(c - b'2' + 26),
        _ => None,
    };
    let olen = src.len();
    let mut rest: &[u8] = &src;
    let mut out = Vec::with_capacity(olen / 8 * 5);
    let mut end = false;
    while !rest.is_empty() && !end {
        let mut dbuf = [0u8; 8];
        let mut dlen = 8;
        let mut j = 0;
        while j < 8 {
            let Some((&c, tail)) = rest.split_first() else {
                // The end came before a whole quantum and padding is expected.
                return Err(olen - rest.len() - j);
            };
            rest = tail;
            if c == PAD && j >= 2 && rest.len() < 8 {
                if rest.len() + j < 8 - 1 {
                    return Err(olen);
                }
                for k in 0..8 - 1 - j {
                    if rest.len() > k && rest[k] != PAD {
                        return Err(olen - rest.len() + k - 1);
                    }
                }
                dlen = j;
                end = true;
                if dlen == 1 || dlen == 3 || dlen == 6 {
                    return Err(olen - rest.len() - 1);
                }
                break;
            }
            let Some(v) = value(c) else {
                return Err(olen - rest.len() - 1);
            };
            dbuf[j] = v;
            j += 1;
        }
        let mut q = [0u8; 5];
        q[0] = (dbuf[0] << 3) | (dbuf[1] >> 2);
        q[1] = (dbuf[1] << 6) | (dbuf[2] << 1) | (dbuf[3] >> 4);
        q[2] = (dbuf[3] << 4) | (dbuf[4] >> 1);
        q[3] = (dbuf[4] << 7) | (dbuf[5] << 2) | (dbuf[6] >> 3);
        q[4] = (dbuf[6] << 5) | dbuf[7];
        let n = match dlen {
            8 => 5,
            7 => 4,
            5 => 3,
            4 => 2,
            2 => 1,
            _ => 0,
        };
        out.extend_from_slice(&q[..n]);
    }
    Ok(out)
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Path,
    Host,
    UserPassword,
    Fragment,
}

/// `net/url`'s `shouldEscape`.
fn should_escape(c: u8, mode: Mode) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    if mode == Mode::Host
        && matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'<'
                | b'>'
                | b'"'
        )
    {
        return false;
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => return false,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => {
            return match mode {
                Mode::Path => c == b'?',
                Mode::UserPassword => matches!(c, b'@' | b'/' | b'?' | b':'),
                Mode::Fragment => false,
                Mode::Host => true,
            };
        }
        _ => {}
    }
    if mode == Mode::Fragment && matches!(c, b'!' | b'(' | b')' | b'*') {
        return false;
    }
    true
}

/// `net/url`'s `escape` (percent-encoding with upper-case hex).
fn escape(s: &str, mode: Mode) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if should_escape(c, mode) {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(c >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(c & 15)]));
        } else {
            out.push(char::from(c));
        }
    }
    // Only ASCII bytes are left unescaped, so the bytes above are whole characters.
    out
}

/// `net/url`'s `unescape` in user-info mode: `%XX` decoded, a bad escape is an error.
fn unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            match (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => {
                    let bad: String = s[i..].chars().take(3).collect();
                    return Err(format!(
                        "invalid URL escape {}",
                        super::funcs::go_quote(&bad)
                    ));
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `net/url`'s `validUserinfo`.
fn valid_userinfo(s: &str) -> bool {
    s.chars().all(|r| {
        r.is_ascii_alphanumeric()
            || matches!(
                r,
                '-' | '.'
                    | '_'
                    | ':'
                    | '~'
                    | '!'
                    | '$'
                    | '&'
                    | '\''
                    | '('
                    | ')'
                    | '*'
                    | '+'
                    | ','
                    | ';'
                    | '='
                    | '%'
                    | '@'
            )
    })
}

/// Sprig's `urlJoin`: a `url.URL` built from the parts, printed by `URL.String()`. The user
/// info goes through `url.Parse("proto://USERINFO@host")` as Sprig does (an unparsable one is
/// an error, where Sprig panics).
fn url_join(
    scheme: &str,
    host: &str,
    path: &str,
    query: &str,
    opaque: &str,
    fragment: &str,
    userinfo: &str,
) -> Result<String, String> {
    let user = if userinfo.is_empty() {
        None
    } else {
        let full = format!("proto://{userinfo}@host");
        // url.Parse: the authority's user info is everything before its last '@'.
        if !valid_userinfo(userinfo) {
            return Err(format!(
                "unable to parse userinfo in dict: parse {}: net/url: invalid userinfo",
                super::funcs::go_quote(&full)
            ));
        }
        let parsed = match userinfo.split_once(':') {
            None => unescape(userinfo).map(|u| (u, None)),
            Some((u, p)) => unescape(u).and_then(|u| unescape(p).map(|p| (u, Some(p)))),
        };
        match parsed {
            Ok(x) => Some(x),
            Err(e) => {
                return Err(format!(
                    "unable to parse userinfo in dict: parse {}: {e}",
                    super::funcs::go_quote(&full)
                ));
            }
        }
    };
    let mut buf = String::new();
    if !scheme.is_empty() {
        buf.push_str(scheme);
        buf.push(':');
    }
    if !opaque.is_empty() {
        buf.push_str(opaque);
    } else {
        if !scheme.is_empty() || !host.is_empty() || user.is_some() {
            if !host.is_empty() || !path.is_empty() || user.is_some() {
                buf.push_str("//");
            }
            if let Some((u, p)) = &user {
                buf.push_str(&escape(u, Mode::UserPassword));
                if let Some(p) = p {
                    buf.push(':');
                    buf.push_str(&escape(p, Mode::UserPassword));
                }
                buf.push('@');
            }
            if !host.is_empty() {
                buf.push_str(&escape(host, Mode::Host));
            }
        }
        let escaped_path = if path == "*" {
            "*".to_string()
        } else {
            escape(path, Mode::Path)
        };
        if !escaped_path.is_empty() && !escaped_path.starts_with('/') && !host.is_empty() {
            buf.push('/');
        }
        if buf.is_empty() {
            let segment = escaped_path.split('/').next().unwrap_or("");
            if segment.contains(':') {
                buf.push_str("./");
            }
        }
        buf.push_str(&escaped_path);
    }
    if !query.is_empty() {
        buf.push('?');
        buf.push_str(query);
    }
    if !fragment.is_empty() {
        buf.push('#');
        buf.push_str(&escape(fragment, Mode::Fragment));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_like_go() {
        assert_eq!(base32_decode(b"ORSXG5A=").as_deref(), Ok(&b"test"[..]));
        assert_eq!(base32_decode(b"ORSX\nG5A=").as_deref(), Ok(&b"test"[..]));
        assert_eq!(base32_decode(b"").as_deref(), Ok(&b""[..]));
        assert!(base32_decode(b"ORSXG5A").is_err());
        assert!(base32_decode(b"orsxg5a=").is_err());
    }

    #[test]
    fn url_join_like_go() {
        let j = |s, h, p, q, f, u| url_join(s, h, p, q, "", f, u).expect("joins");
        assert_eq!(
            j("https", "x.io:8443", "/a b", "k=v", "", ""),
            "https://x.io:8443/a%20b?k=v"
        );
        assert_eq!(
            j("http", "h", "p", "", "frag ment", "u:p@ss"),
            "http://u:p%40ss@h/p#frag%20ment"
        );
        assert_eq!(j("", "", "a:b/c", "", "", ""), "./a:b/c");
        assert!(url_join("", "", "", "", "", "", "a%zz").is_err());
    }
}
