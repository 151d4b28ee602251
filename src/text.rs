//! Text that came from outside (the API, a receiver, the database) made safe to show: no raw
//! control characters in a log line or a table cell (a newline in a ledger id would forge a
//! line of the text log, which holds the consent audit trail), and bounded in length before
//! it is logged or stored (an error quoting a 10 MB cursor would otherwise write 10 MB).

use std::borrow::Cow;

/// Longest error text stored (`feed_cursors.last_error`, `partners.last_error`, …) or
/// logged, in bytes: enough for a chain of causes and a quoted response, never a body.
pub const MAX_ERROR_BYTES: usize = 2048;

/// `s` with every control character escaped (`\n` as `\\n`, others as `\u{1b}`), so it
/// prints on one line and cannot move a terminal's cursor; borrowed when there is none.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`printable`], cut to at most `max` bytes (on a character boundary, marked with `…`).
pub fn bounded(s: &str, max: usize) -> String {
    let shown = printable(s);
    if shown.len() <= max {
        return shown.into_owned();
    }
    let mut cut = max.saturating_sub('…'.len_utf8());
    while !shown.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &shown[..cut])
}

/// An error text as it may be stored or logged: printable and at most [`MAX_ERROR_BYTES`].
pub fn error_text(s: &str) -> String {
    bounded(s, MAX_ERROR_BYTES)
}

/// Lower-case hex, as checksums and signatures are written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_borrowed() {
        assert!(matches!(printable("100001"), Cow::Borrowed("100001")));
        assert_eq!(printable("a\nb\u{1b}[2J"), "a\\nb\\u{1b}[2J");
        assert_eq!(printable("øre\ttab"), "øre\\ttab");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let s = "ø".repeat(3000);
        let cut = bounded(&s, 101);
        assert!(cut.len() <= 101, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(bounded("short", 100), "short");
        assert_eq!(error_text(&"x".repeat(10_000_000)).len(), MAX_ERROR_BYTES);
    }
}
