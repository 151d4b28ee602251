//! The simulator's opaque paging cursors.
//!
//! This module owns how a position is written into a cursor and read back. A cursor is the
//! URL-safe base64 (no padding) of a small JSON object, like the real API's (whose examples
//! decode to JSON such as `{"afterLedgerId":"xxxx",...}`). Clients must treat it as opaque.
//! A feed cursor may carry what the hostile modes add (see `hostile.rs`): a counter that
//! keeps an empty feed's cursors fresh, padding that makes it huge, and whether the
//! far-future entry was served. Each is left out when unset, and the normal feed reads such a
//! cursor as its plain position, so turning a mode off loses nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// What a cursor points at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub(crate) enum Cursor {
    /// A position in a (ledger, topic) feed: the index of the next entry to serve.
    Feed {
        ledger_id: String,
        topic: String,
        position: usize,
        /// The ledger's cursor generation; older generations are rejected.
        epoch: u32,
        /// `feed-empty-forever`: how many empty pages led here (0: none, left out).
        #[serde(default, skip_serializing_if = "is_zero")]
        spin: u64,
        /// `far-future-entry`: the extra entry after `position` was already served.
        #[serde(default, skip_serializing_if = "is_false")]
        far: bool,
        /// `huge-cursor`: filler that makes the cursor as long as asked.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        pad: String,
    },
    /// A place in the hostile ledger list whose cursors go round in a circle.
    LedgerCycle { step: u32 },
    /// A position inside one ledger date's entries.
    Dates {
        ledger_id: String,
        topic: String,
        ledger_date: String,
        offset: usize,
        epoch: u32,
    },
    /// The next page of the ledger list.
    Ledgers {
        after_ledger_id: String,
        settles_for_recipient_handles: Option<String>,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Cursor {
    /// A plain feed position, as the normal feed hands it out.
    pub(crate) fn feed(ledger_id: &str, topic: &str, position: usize, epoch: u32) -> Cursor {
        Cursor::Feed {
            ledger_id: ledger_id.to_string(),
            topic: topic.to_string(),
            position,
            epoch,
            spin: 0,
            far: false,
            pad: String::new(),
        }
    }

    /// The opaque string handed to clients.
    pub(crate) fn encode(&self) -> String {
        // Serialising this plain enum cannot fail; an empty cursor would be rejected on use.
        let json = serde_json::to_vec(self).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Reads a cursor back; `None` for anything this simulator did not hand out.
    pub(crate) fn decode(s: &str) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let c = Cursor::feed("100001", "funds", 42, 0);
        let s = c.encode();
        assert!(!s.is_empty());
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(Cursor::decode(&s), Some(c));
        let plain = URL_SAFE_NO_PAD.decode(&s).expect("base64");
        let plain = String::from_utf8(plain).expect("UTF-8");
        assert!(!plain.contains("spin") && !plain.contains("pad"), "{plain}");
        assert_eq!(Cursor::decode("not a cursor!"), None);
        assert_eq!(Cursor::decode("e30"), None); // "{}"
        assert_eq!(Cursor::decode(""), None);
    }
}
