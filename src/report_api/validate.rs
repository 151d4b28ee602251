//! What a ledger or an entry must look like to be accepted, checked where a response is
//! parsed: identifiers the daemon puts into URLs, file names, log lines and tables; ISO 4217
//! currencies; dates and times within a plausible window around today; amounts within a
//! bound far above any merchant's; every string of bounded length. The README lists the
//! rules ("Bounds on what the API sends"). A value that breaks one is named by its field,
//! never quoted (it may be personal data, or a megabyte of junk).

use chrono::{DateTime, Duration, NaiveDate, Utc};

/// Longest ledger id (the API's are six-digit numbers).
pub const MAX_LEDGER_ID: usize = 64;
/// Largest absolute amount or balance, in minor units: 10^15 øre is ten trillion kroner, so
/// any sum of a ledger's entries stays far inside `i64`.
pub const MAX_MINOR: i64 = 1_000_000_000_000_000;
/// Earliest date or time accepted (the Report API has data from May 2020).
pub const EARLIEST: NaiveDate = match NaiveDate::from_ymd_opt(2015, 1, 1) {
    Some(d) => d,
    None => panic!("a valid date"),
};
/// How far past today a ledger date or an entry's time may be: a ledger date runs in the
/// merchant's time zone, and late entries land on the next date.
pub const FUTURE_DAYS: i64 = 2;
/// Longest identifier-like string (pspReference, recipient handles, schemes, account ids).
pub const MAX_ID: usize = 128;
/// Longest free text (reference, sales unit name).
pub const MAX_TEXT: usize = 1024;
/// Longest entry as JSON text, in bytes (a real one is about 400).
pub const MAX_ENTRY_BYTES: usize = 16 * 1024;
/// Longest ledger as JSON text, in bytes (its sales units included).
pub const MAX_LEDGER_BYTES: usize = 256 * 1024;
/// Most sales units or recipient handles on one ledger.
pub const MAX_SALES_UNITS: usize = 1000;

/// A ledger id: 1 to [`MAX_LEDGER_ID`] letters, digits, `.`, `_`, `:` and `-`, and not `.`
/// or `..` (it becomes a URL path segment and part of file names).
pub fn ledger_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_LEDGER_ID {
        return Err(format!(
            "`ledgerId` must be 1 to {MAX_LEDGER_ID} characters (it has {})",
            id.chars().count()
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err("`ledgerId` may hold only letters, digits, '.', '_', ':' and '-'".to_owned());
    }
    if id == "." || id == ".." {
        return Err("`ledgerId` must not be `.` or `..`".to_owned());
    }
    Ok(())
}

/// An ISO 4217 code: three capital letters.
pub fn currency(field: &str, code: &str) -> Result<(), String> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!("`{field}` is not an ISO 4217 currency code"))
    }
}

/// An identifier: 1 to `max` printable ASCII characters without spaces.
pub fn identifier(field: &str, s: &str, max: usize) -> Result<(), String> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "`{field}` must be 1 to {max} printable ASCII characters without spaces"
        ));
    }
    Ok(())
}

/// A scheme such as `business:NO:ORG` or `BBAN:NO`: colon-separated words.
pub fn scheme(field: &str, s: &str) -> Result<(), String> {
    let words_ok = s
        .split(':')
        .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if s.len() <= MAX_ID && s.contains(':') && words_ok {
        Ok(())
    } else {
        Err(format!(
            "`{field}` is not a scheme of colon-separated words (like business:NO:ORG)"
        ))
    }
}

/// A recipient handle: `api:<MSN>` or `NO:`, `DK:`, `FI:<number>` (any short prefix).
pub fn handle(field: &str, s: &str) -> Result<(), String> {
    let ok = s.split_once(':').is_some_and(|(prefix, id)| {
        (1..=8).contains(&prefix.len())
            && prefix.bytes().all(|b| b.is_ascii_alphabetic())
            && !id.is_empty()
            && id.len() <= MAX_ID
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{field}` is not a recipient handle (like api:123456 or NO:12345)"
        ))
    }
}

/// Free text: at most `max` characters, no control characters (but, when `lines`, line
/// breaks and tabs, as a payer's message may have them).
pub fn text(field: &str, s: &str, max: usize, lines: bool) -> Result<(), String> {
    if s.chars().count() > max {
        return Err(format!("`{field}` is longer than {max} characters"));
    }
    let allowed = |c: char| lines && matches!(c, '\n' | '\r' | '\t');
    if s.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(format!("`{field}` holds a control character"));
    }
    Ok(())
}

/// An amount or balance in minor units, within ±[`MAX_MINOR`].
pub fn minor(field: &str, v: i64) -> Result<(), String> {
    if v.checked_abs().is_some_and(|a| a <= MAX_MINOR) {
        Ok(())
    } else {
        Err(format!(
            "`{field}` is outside ±{MAX_MINOR} minor units (the documented bound)"
        ))
    }
}

/// A ledger date within [`EARLIEST`] ..= today + [`FUTURE_DAYS`].
pub fn date(field: &str, d: NaiveDate, now: DateTime<Utc>) -> Result<(), String> {
    let latest = now.date_naive() + Duration::days(FUTURE_DAYS);
    if d < EARLIEST || d > latest {
        return Err(format!(
            "`{field}` is outside {EARLIEST}..={latest} (a plausible window around today)"
        ));
    }
    Ok(())
}

/// A time within [`EARLIEST`] ..= now + [`FUTURE_DAYS`].
pub fn time(field: &str, t: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
    date(field, t.date_naive(), now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_ids_that_would_escape_a_path_or_a_line_are_refused() {
        for good in ["302321", "acme.1", "acme_1", "DK:1-2"] {
            assert!(ledger_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\nb",
            "a b",
            "a\u{1b}b",
            &"9".repeat(65),
        ] {
            assert!(ledger_id(bad).is_err(), "{bad:?}");
        }
        assert!(!ledger_id("a\nb").unwrap_err().contains('\n'));
    }

    #[test]
    fn schemes_handles_and_amounts() {
        assert!(scheme("s", "business:NO:ORG").is_ok());
        assert!(scheme("s", "business:FI:Y-tunnus").is_ok());
        assert!(scheme("s", "BBAN:NO").is_ok());
        assert!(scheme("s", "cupidatat laborum").is_err());
        assert!(scheme("s", "business::ORG").is_err());
        assert!(handle("h", "api:123456").is_ok() && handle("h", "NO:90601").is_ok());
        assert!(handle("h", "Duis veniam").is_err() && handle("h", "api:").is_err());
        assert!(minor("a", MAX_MINOR).is_ok() && minor("a", -MAX_MINOR).is_ok());
        assert!(minor("a", MAX_MINOR + 1).is_err() && minor("a", i64::MIN).is_err());
        assert!(currency("c", "NOK").is_ok() && currency("c", "nok").is_err());
    }

    #[test]
    fn dates_outside_the_window_are_refused() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert!(date("d", d("2026-12-01"), now).is_ok());
        assert!(date("d", d("2026-12-02"), now).is_err());
        assert!(date("d", d("2099-12-31"), now).is_err());
        assert!(date("d", d("2014-12-31"), now).is_err());
        assert!(text("t", "hei\nhå", 10, true).is_ok());
        assert!(text("t", "hei\nhå", 10, false).is_err());
    }
}
