//! `export::xsd::pattern`: the `pattern` facet. XML Schema writes patterns in its own regular
//! expression dialect (Part 2, appendix F), which always matches the whole value; this
//! translates one into the `regex` crate's syntax, anchored with `\A(?:…)\z`. Every literal is
//! written as `\x{…}` unless it is an ASCII letter or digit, so characters that are special
//! only to `regex` (`^`, `$`, `&&`, `~~`, `--` in classes) stay literal.
//!
//! Translated: branches, groups (as non-capturing), the quantifiers `? * + {n} {n,} {n,m}`,
//! `.` (any character but a line end), character classes with ranges and negation, the
//! single-character escapes (`\n \r \t \\ \| \. \? \* \+ \( \) \{ \} \- \[ \] \^`), `\d \D`,
//! `\s \S`, `\w \W` and the general categories `\p{Lu}`, `\P{N}`. Refused (an error, so the
//! schema fails to load): class subtraction (`[a-z-[aeiou]]`), `\i \I \c \C`, block escapes
//! (`\p{IsBasicLatin}`). Both official schemas use only what is translated.

use regex::Regex;

use super::Refusal::{self, Invalid, Unsupported};

/// Compiles the XSD pattern `xsd` to a regex matching whole values.
pub(super) fn compile(xsd: &str) -> Result<Regex, Refusal> {
    let body = translate(xsd)?;
    Regex::new(&format!(r"\A(?:{body})\z"))
        .map_err(|e| Invalid(format!("pattern {xsd:?} does not compile: {e}")))
}

/// The `regex` form of the XSD pattern `xsd`, unanchored.
pub(super) fn translate(xsd: &str) -> Result<String, Refusal> {
    translate_body(xsd).map_err(|r| r.map(|what| format!("pattern {xsd:?}: {what}")))
}

fn translate_body(xsd: &str) -> Result<String, Refusal> {
    let err = |what: &str| Err(Invalid(what.to_owned()));
    let mut out = String::new();
    let mut chars = xsd.chars().peekable();
    let mut depth = 0usize;
    // Whether the last token was an atom a quantifier may follow.
    let mut atom = false;
    while let Some(c) = chars.next() {
        match c {
            '|' => {
                out.push('|');
                atom = false;
            }
            '(' => {
                depth += 1;
                out.push_str("(?:");
                atom = false;
            }
            ')' => {
                if depth == 0 {
                    return err("unbalanced ')'");
                }
                depth -= 1;
                out.push(')');
                atom = true;
            }
            '?' | '*' | '+' | '{' => {
                if !atom {
                    return err("a quantifier without anything to repeat");
                }
                out.push(c);
                if c == '{' {
                    let mut bounds = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(d) if d.is_ascii_digit() || d == ',' => bounds.push(d),
                            _ => return err("a malformed {n,m} quantifier"),
                        }
                    }
                    let valid = match bounds.split_once(',') {
                        None => !bounds.is_empty(),
                        Some((n, m)) => {
                            !n.is_empty()
                                && !m.contains(',')
                                && (m.is_empty() || n.parse::<u32>().ok() <= m.parse().ok())
                        }
                    };
                    if !valid {
                        return err("a malformed {n,m} quantifier");
                    }
                    out.push_str(&bounds);
                    out.push('}');
                }
                atom = false;
            }
            '.' => {
                out.push_str(r"[^\n\r]");
                atom = true;
            }
            '\\' => {
                out.push_str(&escape(&mut chars)?.outside());
                atom = true;
            }
            '[' => {
                out.push_str(&class(&mut chars)?);
                atom = true;
            }
            ']' | '}' => return err(&format!("an unescaped '{c}'")),
            c => {
                out.push_str(&literal(c));
                atom = true;
            }
        }
    }
    if depth != 0 {
        return err("unbalanced '('");
    }
    Ok(out)
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// `c` as a regex literal.
fn literal(c: char) -> String {
    if c.is_ascii_alphanumeric() {
        c.to_string()
    } else {
        format!("\\x{{{:X}}}", c as u32)
    }
}

/// What an escape stands for.
enum Escape {
    /// One character, as a regex literal: may be a range's end.
    Char(String),
    /// A set of characters: `body` fits inside a class, `alone` outside one.
    Set { body: String, alone: String },
}

impl Escape {
    fn set(body: &str) -> Escape {
        Escape::Set {
            body: body.to_owned(),
            alone: format!("[{body}]"),
        }
    }

    fn outside(self) -> String {
        match self {
            Escape::Char(c) => c,
            Escape::Set { alone, .. } => alone,
        }
    }
}

/// The escape after a `\`.
fn escape(chars: &mut Chars<'_>) -> Result<Escape, Refusal> {
    let c = chars.next().ok_or(Invalid("a trailing '\\'".to_owned()))?;
    Ok(match c {
        'n' => Escape::Char(r"\n".to_owned()),
        'r' => Escape::Char(r"\r".to_owned()),
        't' => Escape::Char(r"\t".to_owned()),
        '\\' | '|' | '.' | '?' | '*' | '+' | '(' | ')' | '{' | '}' | '-' | '[' | ']' | '^' => {
            Escape::Char(literal(c))
        }
        'd' => Escape::set(r"\p{Nd}"),
        'D' => Escape::set(r"\P{Nd}"),
        's' => Escape::set(r"\x{20}\t\n\r"),
        'S' => Escape::set(r"[^\x{20}\t\n\r]"),
        'w' => Escape::set(r"[^\p{P}\p{Z}\p{C}]"),
        'W' => Escape::set(r"\p{P}\p{Z}\p{C}"),
        'p' | 'P' => {
            if chars.next() != Some('{') {
                return Err(Invalid(format!("\\{c} without {{")));
            }
            let name: String = chars.by_ref().take_while(|&n| n != '}').collect();
            let category = name.len() <= 2
                && name.starts_with(|n: char| n.is_ascii_uppercase())
                && name.chars().skip(1).all(|n| n.is_ascii_lowercase());
            if !category {
                return Err(Unsupported(format!(
                    "\\{c}{{{name}}} (only general categories are supported)"
                )));
            }
            Escape::set(&format!("\\{c}{{{name}}}"))
        }
        'i' | 'I' | 'c' | 'C' => return Err(Unsupported(format!("\\{c} (XML name characters)"))),
        other => return Err(Invalid(format!("an unknown escape \\{other}"))),
    })
}

/// A character class after its `[`, up to and including its `]`.
fn class(chars: &mut Chars<'_>) -> Result<String, Refusal> {
    let mut out = String::from("[");
    if chars.peek() == Some(&'^') {
        chars.next();
        out.push('^');
    }
    let mut empty = true;
    loop {
        let start = match chars.next().ok_or(Invalid("an unclosed '['".to_owned()))? {
            ']' if !empty => break,
            ']' => return Err(Invalid("an empty class".to_owned())),
            '[' => return Err(Invalid("a '[' inside a class".to_owned())),
            '-' if chars.peek() == Some(&'[') => {
                return Err(Unsupported("class subtraction".to_owned()))
            }
            '\\' => match escape(chars)? {
                Escape::Char(c) => c,
                Escape::Set { body, .. } => {
                    out.push_str(&body);
                    empty = false;
                    continue;
                }
            },
            c => literal(c),
        };
        empty = false;
        out.push_str(&start);
        let mut ahead = chars.clone();
        if ahead.next() == Some('-') && !matches!(ahead.peek(), Some(']') | Some('[') | None) {
            chars.next();
            let end = match chars.next() {
                Some('\\') => match escape(chars)? {
                    Escape::Char(c) => c,
                    Escape::Set { .. } => {
                        return Err(Invalid("a range ending in a class escape".to_owned()))
                    }
                },
                Some(e) => literal(e),
                None => return Err(Invalid("an unclosed '['".to_owned())),
            };
            out.push('-');
            out.push_str(&end);
        }
    }
    out.push(']');
    Ok(out)
}
