//! `export::xsd::lexical`: the built-in XML Schema 1.0 datatypes this validator knows, their
//! whitespace handling, and the check of a value's lexical form (Part 2 of the
//! recommendation, §3.2 and §3.3). Decimals are kept as digit strings, never as floats, so
//! `totalDigits`, `fractionDigits` and the bounds are exact at any size.

use std::cmp::Ordering;

/// A built-in type a schema may name as `xs:…` or restrict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Builtin {
    String,
    NormalizedString,
    Token,
    AnyUri,
    Boolean,
    Decimal,
    Integer,
    Long,
    Int,
    Date,
    DateTime,
    GYear,
}

impl Builtin {
    /// The type `xs:<local>`, if supported.
    pub(super) fn by_name(local: &str) -> Option<Builtin> {
        use Builtin::*;
        Some(match local {
            "string" => String,
            "normalizedString" => NormalizedString,
            "token" => Token,
            "anyURI" => AnyUri,
            "boolean" => Boolean,
            "decimal" => Decimal,
            "integer" => Integer,
            "long" => Long,
            "int" => Int,
            "date" => Date,
            "dateTime" => DateTime,
            "gYear" => GYear,
            _ => return None,
        })
    }

    pub(super) fn name(self) -> &'static str {
        use Builtin::*;
        match self {
            String => "xs:string",
            NormalizedString => "xs:normalizedString",
            Token => "xs:token",
            AnyUri => "xs:anyURI",
            Boolean => "xs:boolean",
            Decimal => "xs:decimal",
            Integer => "xs:integer",
            Long => "xs:long",
            Int => "xs:int",
            Date => "xs:date",
            DateTime => "xs:dateTime",
            GYear => "xs:gYear",
        }
    }

    /// Whether the length facets apply (they count characters).
    pub(super) fn is_textual(self) -> bool {
        use Builtin::*;
        matches!(self, String | NormalizedString | Token | AnyUri)
    }

    /// Whether the value is a decimal number (the digit and bound facets apply).
    pub(super) fn is_numeric(self) -> bool {
        use Builtin::*;
        matches!(self, Decimal | Integer | Long | Int)
    }

    /// The value after the type's `whiteSpace` rule: `xs:string` preserves, `normalizedString`
    /// replaces tabs and line ends by spaces, every other type collapses runs of whitespace.
    pub(super) fn normalize(self, raw: &str) -> String {
        let replaced = || raw.replace(['\t', '\n', '\r'], " ");
        match self {
            Builtin::String => raw.to_owned(),
            Builtin::NormalizedString => replaced(),
            _ => replaced()
                .split(' ')
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// Checks the lexical form of a normalized value; for a number, returns its value.
    pub(super) fn check(self, value: &str) -> Result<Option<Decimal>, String> {
        let bad = || format!("{value:?} is not a valid {}", self.name());
        let ok = match self {
            Builtin::String | Builtin::NormalizedString | Builtin::Token => true,
            Builtin::AnyUri => uri_reference(value),
            Builtin::Boolean => matches!(value, "true" | "false" | "1" | "0"),
            Builtin::Decimal => return Decimal::parse(value).map(Some).ok_or_else(bad),
            Builtin::Integer | Builtin::Long | Builtin::Int => {
                let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                let n = Decimal::parse(value).ok_or_else(bad)?;
                let (min, max) = match self {
                    Builtin::Long => (i128::from(i64::MIN), i128::from(i64::MAX)),
                    Builtin::Int => (i128::from(i32::MIN), i128::from(i32::MAX)),
                    _ => return Ok(Some(n)),
                };
                let bound = |v: i128| Decimal::parse(&v.to_string()).expect("an integer");
                if n < bound(min) || n > bound(max) {
                    return Err(format!("{value:?} is out of the range of {}", self.name()));
                }
                return Ok(Some(n));
            }
            Builtin::Date => date(value).and_then(timezone) == Some(""),
            Builtin::DateTime => {
                date(value)
                    .and_then(|rest| rest.strip_prefix('T'))
                    .and_then(time)
                    .and_then(timezone)
                    == Some("")
            }
            Builtin::GYear => year(value).and_then(timezone) == Some(""),
        };
        if ok {
            Ok(None)
        } else {
            Err(bad())
        }
    }
}

/// An exact decimal: sign, integer digits without leading zeros, fraction digits without
/// trailing zeros (so equal values are equal structs; zero is never negative).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decimal {
    negative: bool,
    int: String,
    frac: String,
}

impl Decimal {
    /// `[+-]?(digits(.digits?)?|.digits)`.
    pub(super) fn parse(s: &str) -> Option<Decimal> {
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
        let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
            return None;
        }
        let int = int.trim_start_matches('0').to_owned();
        let frac = frac.trim_end_matches('0').to_owned();
        let negative = negative && !(int.is_empty() && frac.is_empty());
        Some(Decimal {
            negative,
            int,
            frac,
        })
    }

    /// Significant digits: `totalDigits` counts these.
    pub(super) fn total_digits(&self) -> usize {
        self.int.len() + self.frac.len()
    }

    /// Digits after the point: `fractionDigits` counts these.
    pub(super) fn fraction_digits(&self) -> usize {
        self.frac.len()
    }

    fn magnitude_cmp(&self, other: &Decimal) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(&other.int))
            .then_with(|| self.frac.cmp(&other.frac))
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.magnitude_cmp(other),
            (true, true) => other.magnitude_cmp(self),
        }
    }
}

/// `n` ASCII digits at the start of `s`, as a number, and the rest.
fn digits(s: &str, n: usize) -> Option<(u32, &str)> {
    let head = s.get(..n)?;
    head.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| (head.parse().ok(), &s[n..]))
        .and_then(|(v, rest)| Some((v?, rest)))
}

/// `-?YYYY`, four or more digits, no leading zero beyond four, not `0000`; returns the rest.
fn year_value(s: &str) -> Option<(i64, &str)> {
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let len = unsigned.bytes().take_while(u8::is_ascii_digit).count();
    let text = &unsigned[..len];
    if len < 4 || (len > 4 && text.starts_with('0')) || text.bytes().all(|b| b == b'0') {
        return None;
    }
    let value: i64 = text.parse().ok()?;
    Some((
        if s.starts_with('-') { -value } else { value },
        &unsigned[len..],
    ))
}

fn year(s: &str) -> Option<&str> {
    year_value(s).map(|(_, rest)| rest)
}

/// `YYYY-MM-DD` with a day that exists in that month; returns the rest.
fn date(s: &str) -> Option<&str> {
    let (y, rest) = year_value(s)?;
    let (m, rest) = digits(rest.strip_prefix('-')?, 2)?;
    let (d, rest) = digits(rest.strip_prefix('-')?, 2)?;
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (1..=days).contains(&d).then_some(rest)
}

/// `hh:mm:ss(.s+)?`, or `24:00:00` (the end of the day); returns the rest.
fn time(s: &str) -> Option<&str> {
    let (h, rest) = digits(s, 2)?;
    let (m, rest) = digits(rest.strip_prefix(':')?, 2)?;
    let (sec, mut rest) = digits(rest.strip_prefix(':')?, 2)?;
    let mut fraction_zero = true;
    if let Some(f) = rest.strip_prefix('.') {
        let n = f.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        fraction_zero = f[..n].bytes().all(|b| b == b'0');
        rest = &f[n..];
    }
    let end_of_day = h == 24 && m == 0 && sec == 0 && fraction_zero;
    ((h < 24 && m < 60 && sec < 60) || end_of_day).then_some(rest)
}

/// An optional `Z` or `±hh:mm` (at most 14:00); returns the rest.
fn timezone(s: &str) -> Option<&str> {
    if let Some(rest) = s.strip_prefix('Z') {
        return Some(rest);
    }
    let Some(offset) = s.strip_prefix(['+', '-']) else {
        return Some(s);
    };
    let (h, rest) = digits(offset, 2)?;
    let (m, rest) = digits(rest.strip_prefix(':')?, 2)?;
    (m < 60 && (h < 14 || (h == 14 && m == 0))).then_some(rest)
}

/// The checks of a URI reference that matter in practice (RFC 2396, after XML Schema escapes
/// spaces and non-ASCII): every `%` starts an escape of two hex digits, there is at most one
/// `#`, and a scheme, if there is one (a `:` before any `/`, `?` or `#`), is well-formed.
fn uri_reference(value: &str) -> bool {
    let bytes = value.as_bytes();
    let escapes = bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'%')
        .all(|(i, _)| {
            bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        });
    let scheme = match value.find([':', '/', '?', '#']) {
        Some(i) if bytes[i] == b':' => {
            let scheme = &value[..i];
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        _ => true,
    };
    escapes && scheme && value.matches('#').count() <= 1
}
