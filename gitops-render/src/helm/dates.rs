//! Sprig's date functions with Go's reference-time layouts (`2006-01-02 15:04:05`).

use std::rc::Rc;

use jiff::{Timestamp, Zoned, tz::TimeZone};

use super::funcs::{strval, to_i64};
use super::template::{FuncError, FuncMap};
use super::value::{Object, Value};

/// A Go `time.Time`.
pub struct Time(pub Zoned);

impl Object for Time {
    fn type_name(&self) -> &str {
        "time.Time"
    }
    fn field(&self, _name: &str) -> Option<Value> {
        None
    }
    fn call(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        Some(Ok(match name {
            "Unix" => Value::Int(self.0.timestamp().as_second()),
            "Year" => Value::Int(i64::from(self.0.year())),
            "Format" => Value::from(format_go(
                &self.0,
                &args.first().map(strval).unwrap_or_default(),
            )),
            "UTC" => Value::Object(Rc::new(Time(self.0.with_time_zone(TimeZone::UTC)))),
            _ => return None,
        }))
    }
    fn display(&self) -> String {
        format_go(&self.0, "2006-01-02 15:04:05.999999999 -0700 MST")
    }
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

/// The time inside a `time.Time` value.
fn time_of(v: &Value) -> Option<&Zoned> {
    match v {
        Value::Object(o) => o
            .as_any()
            .and_then(|a| a.downcast_ref::<Time>())
            .map(|t| &t.0),
        _ => None,
    }
}

/// text/template's message when an argument is not a `time.Time`.
fn want_time(v: &Value) -> FuncError {
    FuncError::Msg(format!(
        "wrong type for value; expected time.Time; got {}",
        v.type_name()
    ))
}

/// Go's `time.ParseDuration`, in nanoseconds, with Go's messages.
pub fn parse_go_duration(orig: &str) -> Result<i64, String> {
    let quote = super::funcs::go_quote;
    let invalid = || format!("time: invalid duration {}", quote(orig));
    let mut s = orig.as_bytes();
    let mut neg = false;
    if let Some(&c) = s.first()
        && (c == b'-' || c == b'+')
    {
        neg = c == b'-';
        s = &s[1..];
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u64 = 1 << 63;
    let mut d: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // [0-9]*
        let mut v: u64 = 0;
        let mut i = 0;
        while i < s.len() && s[i].is_ascii_digit() {
            if v > (LIMIT - 1) / 10 {
                return Err(invalid());
            }
            v = v * 10 + u64::from(s[i] - b'0');
            if v > LIMIT {
                return Err(invalid());
            }
            i += 1;
        }
        let pre = i > 0;
        s = &s[i..];
        // (\.[0-9]*)?
        let (mut f, mut scale, mut post) = (0u64, 1f64, false);
        if s.first() == Some(&b'.') {
            s = &s[1..];
            let mut i = 0;
            let mut overflow = false;
            while i < s.len() && s[i].is_ascii_digit() {
                if !overflow {
                    if f > (LIMIT - 1) / 10 {
                        overflow = true;
                    } else {
                        let y = f * 10 + u64::from(s[i] - b'0');
                        if y > LIMIT {
                            overflow = true;
                        } else {
                            f = y;
                            scale *= 10.0;
                        }
                    }
                }
                i += 1;
            }
            post = i > 0;
            s = &s[i..];
        }
        if !pre && !post {
            return Err(invalid());
        }
        let i = s
            .iter()
            .position(|c| *c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if i == 0 {
            return Err(format!("time: missing unit in duration {}", quote(orig)));
        }
        let u = String::from_utf8_lossy(&s[..i]).into_owned();
        s = &s[i..];
        let unit: u64 = match u.as_str() {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    quote(&u),
                    quote(orig)
                ));
            }
        };
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        d += v;
        if d > LIMIT {
            return Err(invalid());
        }
    }
    if neg {
        return Ok((d as i64).wrapping_neg());
    }
    if d > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(d as i64)
}

/// Sprig's `durationRound`: the most significant unit of a duration (strings parsed as Go
/// durations, `int64` as nanoseconds, a time as the time since it; anything else, a plain
/// `int` such as a template literal included, is zero).
fn duration_round(v: &Value) -> String {
    let d: i64 = match v {
        Value::Str(s) => parse_go_duration(s).unwrap_or(0),
        Value::Int64(i) => *i,
        other => match time_of(other) {
            Some(t) => Timestamp::now()
                .duration_since(t.timestamp())
                .as_nanos()
                .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
            None => 0,
        },
    };
    let u = d.unsigned_abs();
    const SECOND: u64 = 1_000_000_000;
    const MINUTE: u64 = 60 * SECOND;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    const MONTH: u64 = 30 * DAY;
    const YEAR: u64 = 365 * DAY;
    for (size, suffix) in [
        (YEAR, "y"),
        (MONTH, "mo"),
        (DAY, "d"),
        (HOUR, "h"),
        (MINUTE, "m"),
        (SECOND, "s"),
    ] {
        if u > size {
            return format!("{}{suffix}", u / size);
        }
    }
    "0s".to_string()
}

fn date_modify(a: &[Value]) -> Result<Result<Value, String>, FuncError> {
    let t = time_of(&a[1]).ok_or_else(|| want_time(&a[1]))?;
    Ok(parse_go_duration(&strval(&a[0])).map(|d| {
        let moved = t
            .checked_add(jiff::SignedDuration::from_nanos(d))
            .unwrap_or_else(|_| t.clone());
        time_value(moved)
    }))
}

/// Registers the date functions.
pub fn register(m: &mut FuncMap) {
    m.insert("now", |_, _| Ok(time_value(Zoned::now())));
    m.insert("date", |_, a| {
        arity("date", a, 2)?;
        Ok(Value::from(format_go(&to_time(&a[1]), &strval(&a[0]))))
    });
    m.insert("dateInZone", |_, a| {
        arity("dateInZone", a, 3)?;
        let tz = TimeZone::get(&strval(&a[2])).unwrap_or(TimeZone::UTC);
        Ok(Value::from(format_go(
            &to_time(&a[1]).with_time_zone(tz),
            &strval(&a[0]),
        )))
    });
    m.insert("htmlDate", |_, a| {
        arity("htmlDate", a, 1)?;
        Ok(Value::from(format_go(&to_time(&a[0]), "2006-01-02")))
    });
    m.insert("htmlDateInZone", |_, a| {
        arity("htmlDateInZone", a, 2)?;
        let tz = TimeZone::get(&strval(&a[1])).unwrap_or(TimeZone::UTC);
        Ok(Value::from(format_go(
            &to_time(&a[0]).with_time_zone(tz),
            "2006-01-02",
        )))
    });
    m.insert("unixEpoch", |_, a| {
        arity("unixEpoch", a, 1)?;
        Ok(Value::from(
            to_time(&a[0]).timestamp().as_second().to_string(),
        ))
    });
    m.insert("ago", |_, a| {
        arity("ago", a, 1)?;
        let secs = Timestamp::now().as_second() - to_time(&a[0]).timestamp().as_second();
        Ok(Value::from(go_duration(secs as f64)))
    });
    // Sprig's `duration`: seconds given as a string (base 10) or an `int64`; anything else,
    // a plain `int` included, is zero.
    m.insert("duration", |_, a| {
        arity("duration", a, 1)?;
        let secs = match &a[0] {
            Value::Str(s) => s.parse::<i64>().unwrap_or(0),
            Value::Int64(i) => *i,
            _ => 0,
        };
        Ok(Value::from(go_duration(secs as f64)))
    });
    m.insert("toDate", |_, a| {
        arity("toDate", a, 2)?;
        Ok(parse_go(&strval(&a[0]), &strval(&a[1]))
            .map(time_value)
            .unwrap_or_else(|_| time_value(zero_time())))
    });
    m.insert("dateModify", |_, a| {
        arity("dateModify", a, 2)?;
        // An unparsable duration leaves the date as it is.
        Ok(date_modify(a)?.unwrap_or_else(|_| a[1].clone()))
    });
    m.insert("mustDateModify", |_, a| {
        arity("mustDateModify", a, 2)?;
        date_modify(a)?.map_err(FuncError::Msg)
    });
    m.insert("durationRound", |_, a| {
        arity("durationRound", a, 1)?;
        Ok(Value::from(duration_round(&a[0])))
    });
    m.insert("mustToDate", |_, a| {
        arity("mustToDate", a, 2)?;
        parse_go(&strval(&a[0]), &strval(&a[1]))
            .map(time_value)
            .map_err(FuncError::Msg)
    });
}

fn arity(name: &str, a: &[Value], n: usize) -> Result<(), FuncError> {
    if a.len() != n {
        return Err(FuncError::Msg(format!(
            "wrong number of args for {name}: want {n} got {}",
            a.len()
        )));
    }
    Ok(())
}

fn time_value(z: Zoned) -> Value {
    Value::Object(Rc::new(Time(z)))
}

/// Go's zero `time.Time` (`0001-01-01 00:00:00 +0000 UTC`), what `toDate` gives for a date
/// that does not parse.
fn zero_time() -> Zoned {
    jiff::civil::date(1, 1, 1)
        .at(0, 0, 0, 0)
        .to_zoned(TimeZone::UTC)
        .expect("0001-01-01 is within jiff's range")
}

/// Sprig's date argument: a time, or unix seconds; anything else means now.
fn to_time(v: &Value) -> Zoned {
    if let Some(t) = time_of(v) {
        return t.with_time_zone(TimeZone::system());
    }
    match v {
        Value::Object(o) if o.type_name() == "time.Time" => {
            let secs = o
                .call("Unix", &[])
                .and_then(Result::ok)
                .map(|v| to_i64(&v))
                .unwrap_or(0);
            Timestamp::from_second(secs)
                .map(|t| t.to_zoned(TimeZone::system()))
                .unwrap_or_else(|_| Zoned::now())
        }
        Value::Int(i) | Value::Int64(i) => Timestamp::from_second(*i)
            .map(|t| t.to_zoned(TimeZone::system()))
            .unwrap_or_else(|_| Zoned::now()),
        _ => Zoned::now(),
    }
}

/// Go's `Duration.String()` for whole or fractional seconds.
pub fn go_duration(secs: f64) -> String {
    if secs == 0.0 {
        return "0s".into();
    }
    let neg = secs < 0.0;
    let s = secs.abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if s < 1.0 {
        let ms = s * 1000.0;
        out.push_str(&format!("{}ms", super::value::format_float_g(ms)));
        return out;
    }
    let h = (s / 3600.0).floor();
    let m = ((s - h * 3600.0) / 60.0).floor();
    let rest = s - h * 3600.0 - m * 60.0;
    if h > 0.0 {
        out.push_str(&format!("{h}h{m}m"));
    } else if m > 0.0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{}s", super::value::format_float_g(rest)));
    out
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Formats with a Go layout.
pub fn format_go(t: &Zoned, layout: &str) -> String {
    let mut out = String::new();
    let mut rest = layout;
    let offset = t.offset().seconds();
    let off = |colon: bool, secs: bool, z: bool| -> String {
        if z && offset == 0 {
            return "Z".into();
        }
        let sign = if offset < 0 { '-' } else { '+' };
        let a = offset.abs();
        let (hh, mm, ss) = (a / 3600, (a % 3600) / 60, a % 60);
        let sep = if colon { ":" } else { "" };
        let mut s = format!("{sign}{hh:02}{sep}{mm:02}");
        if secs {
            s.push_str(&format!("{sep}{ss:02}"));
        }
        s
    };
    let hour12 = |h: i8| if h % 12 == 0 { 12 } else { h % 12 };
    let nanos = t.subsec_nanosecond();
    while !rest.is_empty() {
        let tokens: &[(&str, &dyn Fn() -> String)] = &[
            ("January", &|| MONTHS[(t.month() - 1) as usize].to_string()),
            ("Jan", &|| MONTHS[(t.month() - 1) as usize][..3].to_string()),
            ("Monday", &|| {
                DAYS[t.weekday().to_monday_zero_offset() as usize].to_string()
            }),
            ("Mon", &|| {
                DAYS[t.weekday().to_monday_zero_offset() as usize][..3].to_string()
            }),
            ("MST", &|| t.strftime("%Z").to_string()),
            ("2006", &|| format!("{:04}", t.year())),
            ("-07:00:00", &|| off(true, true, false)),
            ("-070000", &|| off(false, true, false)),
            ("-07:00", &|| off(true, false, false)),
            ("-0700", &|| off(false, false, false)),
            ("-07", &|| off(false, false, false)[..3].to_string()),
            ("Z07:00:00", &|| off(true, true, true)),
            ("Z070000", &|| off(false, true, true)),
            ("Z07:00", &|| off(true, false, true)),
            ("Z0700", &|| off(false, false, true)),
            ("Z07", &|| {
                let s = off(false, false, true);
                if s == "Z" { s } else { s[..3].to_string() }
            }),
            ("002", &|| format!("{:03}", t.day_of_year())),
            ("01", &|| format!("{:02}", t.month())),
            ("02", &|| format!("{:02}", t.day())),
            ("_2", &|| format!("{:>2}", t.day())),
            ("06", &|| format!("{:02}", t.year() % 100)),
            ("15", &|| format!("{:02}", t.hour())),
            ("03", &|| format!("{:02}", hour12(t.hour()))),
            ("04", &|| format!("{:02}", t.minute())),
            ("05", &|| format!("{:02}", t.second())),
            ("PM", &|| {
                if t.hour() >= 12 { "PM" } else { "AM" }.to_string()
            }),
            ("pm", &|| {
                if t.hour() >= 12 { "pm" } else { "am" }.to_string()
            }),
            (".000000000", &|| format!(".{nanos:09}")),
            (".000000", &|| format!(".{:06}", nanos / 1000)),
            (".000", &|| format!(".{:03}", nanos / 1_000_000)),
            (".999999999", &|| frac_trim(nanos, 9)),
            (".999999", &|| frac_trim(nanos / 1000, 6)),
            (".999", &|| frac_trim(nanos / 1_000_000, 3)),
            ("1", &|| t.month().to_string()),
            ("2", &|| t.day().to_string()),
            ("3", &|| hour12(t.hour()).to_string()),
            ("4", &|| t.minute().to_string()),
            ("5", &|| t.second().to_string()),
        ];
        let mut matched = false;
        for (tok, f) in tokens {
            if rest.starts_with(tok) {
                out.push_str(&f());
                rest = &rest[tok.len()..];
                matched = true;
                break;
            }
        }
        if !matched {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

fn frac_trim(v: i32, width: usize) -> String {
    if v == 0 {
        return String::new();
    }
    let s = format!("{v:0width$}");
    format!(".{}", s.trim_end_matches('0'))
}

/// Parses with a Go layout (numeric layouts and zones), in UTC unless the text has an offset.
fn parse_go(layout: &str, value: &str) -> Result<Zoned, String> {
    let map: &[(&str, &str)] = &[
        ("2006", "%Y"),
        ("-07:00", "%:z"),
        ("-0700", "%z"),
        ("Z07:00", "%:z"),
        ("January", "%B"),
        ("Jan", "%b"),
        ("Monday", "%A"),
        ("Mon", "%a"),
        ("MST", "%Z"),
        ("01", "%m"),
        ("02", "%d"),
        ("15", "%H"),
        ("04", "%M"),
        ("05", "%S"),
        (".000000000", ".%f"),
        (".000", ".%f"),
        ("PM", "%p"),
    ];
    let mut fmt = String::new();
    let mut rest = layout;
    while !rest.is_empty() {
        if let Some((tok, rep)) = map.iter().find(|(t, _)| rest.starts_with(t)) {
            fmt.push_str(rep);
            rest = &rest[tok.len()..];
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            if c == '%' {
                fmt.push_str("%%");
            } else {
                fmt.push(c);
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    let value = value.replace('Z', "+00:00");
    let parsed = jiff::fmt::strtime::parse(&fmt, &value)
        .map_err(|e| format!("parsing time {value:?} as {layout:?}: {e}"))?;
    if let Ok(z) = parsed.to_zoned() {
        return Ok(z);
    }
    if let Ok(ts) = parsed.to_timestamp() {
        return Ok(ts.to_zoned(TimeZone::UTC));
    }
    let dt = parsed
        .to_datetime()
        .or_else(|_| {
            parsed
                .to_date()
                .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
        })
        .map_err(|e| format!("parsing time {value:?} as {layout:?}: {e}"))?;
    dt.to_zoned(TimeZone::UTC).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_layouts() {
        let t = parse_go("2006-01-02T15:04:05Z07:00", "2024-03-05T07:08:09Z").expect("parse");
        assert_eq!(
            format_go(&t, "2006-01-02 15:04:05 Jan Mon 3PM _2 06"),
            "2024-03-05 07:08:09 Mar Tue 7AM  5 24"
        );
        assert_eq!(format_go(&t, "Z07:00"), "Z");
        assert_eq!(go_duration(3600.0), "1h0m0s");
        assert_eq!(go_duration(90.0), "1m30s");
        assert_eq!(go_duration(5.0), "5s");
    }
}
