//! Response bodies to pages: the ledger list, feed pages and daily-report pages. Each item is
//! read from the page's raw text (never one JSON tree of the whole page) and validated by the
//! boundary's rules (`validate.rs`); cursors are bounded. A body that is not JSON is
//! [`ParseError::NotJson`] (a broken-off transfer, a proxy's error page: worth another try);
//! JSON of the wrong shape or with values out of bounds is [`ParseError::Invalid`] (not a
//! passing glitch). No input can make these functions panic; a property test feeds them
//! arbitrary bytes and arbitrary JSON.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::models::{DatesPage, Entry, FeedPage, Ledger, LedgerPage};
use crate::text;

/// Why a body is not a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not (complete) JSON.
    NotJson(String),
    /// JSON, but not the documented shape, or a value breaks a bound.
    Invalid(String),
}

/// serde's message says where, never what (it quotes no value for these errors).
fn classify(e: serde_json::Error, what: &str) -> ParseError {
    if e.is_syntax() || e.is_eof() || e.is_io() {
        ParseError::NotJson(format!("body is not JSON ({e})"))
    } else {
        ParseError::Invalid(format!("{what} does not match the documented schema ({e})"))
    }
}

/// A cursor as sent, checked against `max_cursor` bytes; empty counts as none.
fn cursor(raw: Option<&RawValue>, max_cursor: usize) -> Result<Option<String>, ParseError> {
    let Some(raw) = raw else { return Ok(None) };
    let value: Option<String> = serde_json::from_str(raw.get())
        .map_err(|_| ParseError::Invalid("field `cursor` is not a string".to_owned()))?;
    match value {
        Some(c) if c.len() > max_cursor => Err(ParseError::Invalid(format!(
            "the cursor is {} bytes long, over limits.max_cursor_bytes ({max_cursor}); it is not stored",
            c.len()
        ))),
        Some(c) if c.chars().any(char::is_control) => Err(ParseError::Invalid(
            "the cursor holds a control character".to_owned(),
        )),
        other => Ok(other.filter(|c| !c.is_empty())),
    }
}

fn flag(raw: Option<&RawValue>, name: &str) -> Result<bool, ParseError> {
    match raw.map(|r| serde_json::from_str::<Option<bool>>(r.get())) {
        None | Some(Ok(None)) => Ok(false),
        Some(Ok(Some(b))) => Ok(b),
        Some(Err(_)) => Err(ParseError::Invalid(format!(
            "field `{name}` is not a boolean"
        ))),
    }
}

/// The envelope of every page: the three documented fields, items left as raw text.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(default, borrow)]
    cursor: Option<&'a RawValue>,
    #[serde(default, borrow)]
    try_later: Option<&'a RawValue>,
    #[serde(default, borrow)]
    has_more: Option<&'a RawValue>,
    #[serde(default, borrow)]
    items: Option<Vec<&'a RawValue>>,
}

fn envelope<'a>(body: &'a [u8], what: &str) -> Result<Envelope<'a>, ParseError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ParseError::NotJson("body is not UTF-8 text".to_owned()))?;
    let first = text.trim_start().chars().next();
    if first != Some('{') {
        return Err(match first {
            Some('[' | '"' | 't' | 'f' | 'n' | '-' | '0'..='9') => {
                ParseError::Invalid(format!("{what} is not a JSON object"))
            }
            _ => ParseError::NotJson("body is not JSON (it does not start with `{`)".to_owned()),
        });
    }
    serde_json::from_str(text).map_err(|e| classify(e, what))
}

/// The entries of a page, each validated; the first bad one fails the page, named by its
/// position (never its content).
fn entries(items: Vec<&RawValue>, now: DateTime<Utc>) -> Result<Vec<Entry>, ParseError> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            Entry::from_item(item, now)
                .map_err(|e| ParseError::Invalid(format!("item {i} of the page: {e}")))
        })
        .collect()
}

/// One page of `GET /settlement/v1/ledgers`. A ledger that fails validation is left out and
/// named in `rejected` (the caller decides what an incomplete listing means); the page
/// itself fails only if it is not JSON or not the documented shape.
pub fn ledger_page(body: &[u8], max_cursor: usize) -> Result<LedgerPage, ParseError> {
    let wire = envelope(body, "the ledger list")?;
    let mut items = Vec::new();
    let mut rejected = Vec::new();
    for (i, raw) in wire.items.unwrap_or_default().into_iter().enumerate() {
        match Ledger::from_raw(raw.to_owned()) {
            Ok(_) => items.push(raw.to_owned()),
            Err(why) => {
                let id = serde_json::from_str::<serde_json::Value>(raw.get())
                    .ok()
                    .and_then(|v| {
                        v.get("ledgerId")
                            .and_then(|id| id.as_str())
                            .map(str::to_owned)
                    })
                    .map(|id| format!(" (ledgerId \"{}\")", text::bounded(&id, 80)))
                    .unwrap_or_default();
                rejected.push(format!("item {i}{id}: {why}"));
            }
        }
    }
    Ok(LedgerPage {
        cursor: cursor(wire.cursor, max_cursor)?,
        items,
        rejected,
    })
}

/// One page of a feed: the cursor is required (the feed always returns one).
pub fn feed_page(
    body: &[u8],
    max_cursor: usize,
    now: DateTime<Utc>,
) -> Result<FeedPage, ParseError> {
    let wire = envelope(body, "the feed page")?;
    let cursor = cursor(wire.cursor, max_cursor)?.ok_or_else(|| {
        ParseError::Invalid(
            "field `cursor` is missing or empty (the feed always returns one)".to_owned(),
        )
    })?;
    let try_later = flag(wire.try_later, "tryLater")?;
    let items = entries(wire.items.unwrap_or_default(), now)?;
    Ok(FeedPage {
        cursor,
        try_later,
        items,
    })
}

/// One page of a ledger date's report.
pub fn dates_page(
    body: &[u8],
    max_cursor: usize,
    now: DateTime<Utc>,
) -> Result<DatesPage, ParseError> {
    let wire = envelope(body, "the daily report page")?;
    let has_more = flag(wire.has_more, "hasMore")?;
    let cursor = cursor(wire.cursor, max_cursor)?;
    if has_more && cursor.is_none() {
        return Err(ParseError::Invalid(
            "`hasMore` is true but there is no `cursor`".to_owned(),
        ));
    }
    let try_later = flag(wire.try_later, "tryLater")?;
    let items = entries(wire.items.unwrap_or_default(), now)?;
    Ok(DatesPage {
        cursor: cursor.filter(|_| has_more),
        has_more,
        try_later,
        items,
        bytes: body.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    const MAX_CURSOR: usize = 4096;

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    fn entry(i: i64) -> Value {
        json!({"pspReference": format!("33{i:08}"), "time": "2026-01-06T10:00:00.000000Z",
               "ledgerDate": "2026-01-06", "entryType": "capture", "reference": "order-1",
               "currency": "NOK", "amount": 100, "balanceBefore": i * 100,
               "balanceAfter": i * 100 + 100, "recipientHandle": "api:123456"})
    }

    #[test]
    fn a_good_feed_page_parses_and_junk_values_are_invalid_not_transient() {
        let body = json!({"cursor": "Mw==", "tryLater": false, "items": [entry(0), entry(1)]});
        let page = feed_page(body.to_string().as_bytes(), MAX_CURSOR, now()).unwrap();
        assert_eq!((page.items.len(), page.cursor.as_str()), (2, "Mw=="));
        let junk = json!({"cursor": "in", "tryLater": true, "items": [{"pspReference": "qui officia",
            "time": "ea ut in pariatur id", "entryType": "refund", "amount": 1528332677.5,
            "balanceBefore": 1, "balanceAfter": 2, "currency": "id est sunt"}]});
        assert!(matches!(
            feed_page(junk.to_string().as_bytes(), MAX_CURSOR, now()),
            Err(ParseError::Invalid(_))
        ));
        assert!(matches!(
            feed_page(b"{\"cursor\": \"abc\", \"items\": [", MAX_CURSOR, now()),
            Err(ParseError::NotJson(_))
        ));
        assert!(matches!(
            feed_page(b"<html>maintenance</html>", MAX_CURSOR, now()),
            Err(ParseError::NotJson(_))
        ));
    }

    #[test]
    fn a_cursor_over_the_bound_or_with_a_control_character_is_refused() {
        let long = json!({"cursor": "x".repeat(MAX_CURSOR + 1), "tryLater": false, "items": []});
        let err = feed_page(long.to_string().as_bytes(), MAX_CURSOR, now()).unwrap_err();
        assert!(
            format!("{err:?}").contains("limits.max_cursor_bytes"),
            "{err:?}"
        );
        let ctl = json!({"cursor": "a\nb", "tryLater": false, "items": []});
        assert!(feed_page(ctl.to_string().as_bytes(), MAX_CURSOR, now()).is_err());
    }

    #[test]
    fn a_listing_keeps_its_valid_ledgers_and_names_the_rejected_ones() {
        let body = json!({"cursor": "", "items": [
            {"ledgerId": "302321", "currency": "NOK",
             "owner": {"scheme": "business:NO:ORG", "id": "987654321"}},
            {"ledgerId": "a\nb"},
            {"ledgerId": "Ut", "owner": {"scheme": "cupidatat laborum", "id": "x"}},
            {"ledgerId": "..", "currency": "NOK"}
        ]});
        let page = ledger_page(body.to_string().as_bytes(), MAX_CURSOR).unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page.cursor, None);
        assert_eq!(page.rejected.len(), 3, "{:?}", page.rejected);
        assert!(page.rejected.iter().all(|r| !r.contains('\n')));
        assert!(page.rejected[0].contains("a\\nb"), "{:?}", page.rejected);
    }

    /// Arbitrary JSON: nested values of every kind.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,40}".prop_map(Value::String),
            Just(Value::String("2026-01-06T10:00:00Z".to_owned())),
            Just(Value::String("2099-12-31".to_owned())),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::hash_map(
                    prop_oneof![
                        Just("cursor".to_owned()),
                        Just("items".to_owned()),
                        Just("tryLater".to_owned()),
                        Just("hasMore".to_owned()),
                        Just("ledgerId".to_owned()),
                        Just("amount".to_owned()),
                        Just("time".to_owned()),
                        "[a-zA-Z]{1,12}",
                    ],
                    inner,
                    0..8
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn no_body_of_bytes_makes_a_parser_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = ledger_page(&body, MAX_CURSOR);
            let _ = feed_page(&body, MAX_CURSOR, now());
            let _ = dates_page(&body, MAX_CURSOR, now());
        }

        #[test]
        fn no_json_makes_a_parser_panic(v in json_value()) {
            let body = v.to_string();
            let _ = ledger_page(body.as_bytes(), MAX_CURSOR);
            let _ = feed_page(body.as_bytes(), MAX_CURSOR, now());
            let _ = dates_page(body.as_bytes(), MAX_CURSOR, now());
            let _ = Entry::from_json(v);
        }

        #[test]
        fn pages_with_arbitrary_items_never_panic(items in prop::collection::vec(json_value(), 0..5),
                                                   try_later in any::<bool>()) {
            let body = json!({"cursor": "c", "tryLater": try_later, "hasMore": try_later, "items": items});
            let _ = feed_page(body.to_string().as_bytes(), MAX_CURSOR, now());
            let _ = dates_page(body.to_string().as_bytes(), MAX_CURSOR, now());
            let _ = ledger_page(body.to_string().as_bytes(), MAX_CURSOR);
        }
    }
}
