//! Paging of the three data endpoints: the ledger list, the feed and the dates report.
//!
//! This module owns the cursor semantics the daemon depends on (report-api.md §5):
//! the feed cursor is never empty and points just past the items served; `tryLater` is true
//! exactly when a page reaches the end of what is currently available; at the end with
//! nothing new the same cursor comes back with no items. It also applies the test controls
//! (overlapping pages, repeated pages) and the feed faults that change which entries a page
//! holds (see `FeedTweak`). Callers have already authenticated the request.

use chrono::NaiveDate;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::cursor::Cursor;
use super::entry::Topic;
use super::faults::{Fault, FaultKind};
use super::state::{ApiError, State};

/// One feed response.
#[derive(Clone, Debug)]
pub(crate) struct FeedPage {
    pub cursor: String,
    pub try_later: bool,
    /// The entries served, each as its JSON text.
    pub items: Vec<Box<RawValue>>,
    /// The requested [`FeedTweak`] (overlap or no progress) changed this page.
    pub tweaked: bool,
}

/// How an injected fault changes a feed page before it is built (see `faults.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FeedTweak {
    /// Serve as usual.
    None,
    /// The page will not reach the client intact: leave the repeat-pages control alone.
    Discarded,
    /// Start this many more items before the cursor position (real entries served again).
    Overlap(usize),
    /// With a cursor in the request: that cursor, `tryLater: false` and no items.
    NoProgress,
}

impl FeedTweak {
    /// The tweak a drawn fault asks for: overlap by 1..=5 items (from the draw's detail
    /// word), no progress, nothing (no fault, a stall), or `Discarded` for faults that
    /// replace or spoil the page.
    pub(crate) fn for_fault(fault: Option<Fault>) -> FeedTweak {
        match fault.map(|f| (f.kind, f.detail)) {
            None | Some((FaultKind::Stall, _)) => FeedTweak::None,
            Some((FaultKind::Overlap, detail)) => FeedTweak::Overlap((detail % 5) as usize + 1),
            Some((FaultKind::NoProgress, _)) => FeedTweak::NoProgress,
            Some(_) => FeedTweak::Discarded,
        }
    }

    /// Whether the tweak is itself the fault (so `FeedPage::tweaked` says if it happened).
    pub(crate) fn changes_page(self) -> bool {
        matches!(self, FeedTweak::Overlap(_) | FeedTweak::NoProgress)
    }
}

/// Where a feed request starts, read from its cursor (see `State::feed_at`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FeedAt {
    pub topic: Topic,
    /// Index of the next entry to serve.
    pub position: usize,
    /// The ledger's cursor generation.
    pub epoch: u32,
    /// The cursor's `feed-empty-forever` counter.
    pub spin: u64,
    /// The cursor says the far-future entry was served.
    pub far: bool,
}

impl FeedPage {
    /// The response body.
    pub(crate) fn to_text(&self) -> Vec<u8> {
        // Members in the order of their names, as the tree of `into_json` prints.
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body<'a> {
            cursor: &'a str,
            items: &'a [Box<RawValue>],
            try_later: bool,
        }
        serde_json::to_vec(&Body {
            cursor: &self.cursor,
            items: &self.items,
            try_later: self.try_later,
        })
        .unwrap_or_default()
    }

    /// The response body as a JSON tree, for a fault or a hostile mode to change.
    pub(crate) fn into_json(self) -> Value {
        serde_json::from_slice(&self.to_text()).unwrap_or_default()
    }
}

fn bad(detail: &str) -> ApiError {
    ApiError::BadRequest(detail.to_string())
}

/// The topic path segment, or 400.
pub(crate) fn parse_topic(topic: &str) -> Result<Topic, ApiError> {
    Topic::parse(topic).ok_or_else(|| bad("topic must be one of: funds, fees"))
}

/// A strict `YYYY-MM-DD` ledger date, or 400.
pub(crate) fn parse_ledger_date(s: &str) -> Result<NaiveDate, ApiError> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    let date = shape_ok
        .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten();
    date.ok_or_else(|| bad("ledgerDate must be a date in format YYYY-MM-DD"))
}

impl State {
    /// `GET /settlement/v1/ledgers`: the caller's granted ledgers (and, in the
    /// `hostile-ledger-ids` mode, the hostile ones), sorted by id, paged.
    pub(crate) fn ledger_page(
        &self,
        client_id: &str,
        cursor: Option<&str>,
        handle_filter: Option<&str>,
    ) -> Result<Value, ApiError> {
        let (after, filter) = match cursor.filter(|c| !c.is_empty()) {
            None => (
                None,
                handle_filter.filter(|h| !h.is_empty()).map(str::to_string),
            ),
            Some(c) => match Cursor::decode(c) {
                Some(Cursor::Ledgers {
                    after_ledger_id,
                    settles_for_recipient_handles,
                }) => (Some(after_ledger_id), settles_for_recipient_handles),
                _ => return Err(bad("Invalid cursor")),
            },
        };
        let visible: Vec<_> = self
            .listed_profiles(client_id)
            .into_iter()
            .filter(|p| filter.as_ref().is_none_or(|h| p.settles_for(h)))
            .collect();
        let skipped = visible
            .iter()
            .take_while(|p| after.as_ref().is_some_and(|a| p.ledger_id <= *a))
            .count();
        let matching = visible.get(skipped..).unwrap_or_default();
        let page = self.ledger_page_size.max(1);
        if self.fail_ledger_page == Some(skipped / page + 1) {
            return Err(ApiError::ServerError);
        }
        let items: Vec<Value> = matching.iter().take(page).map(|p| p.to_json()).collect();
        let next = match (matching.len() > page, matching.get(page.saturating_sub(1))) {
            (true, Some(last)) => Cursor::Ledgers {
                after_ledger_id: last.ledger_id.clone(),
                settles_for_recipient_handles: filter.clone(),
            }
            .encode(),
            _ => String::new(),
        };
        Ok(json!({ "cursor": next, "items": items }))
    }

    /// Where a feed request starts: its topic, and the position its cursor names (none: 0).
    /// Refuses an unknown topic (400), a ledger the caller may not read (404) and a cursor
    /// this simulator did not hand out for this feed and cursor generation (400).
    pub(crate) fn feed_at(
        &self,
        client_id: &str,
        ledger_id: &str,
        topic: &str,
        cursor: Option<&str>,
    ) -> Result<FeedAt, ApiError> {
        let topic = parse_topic(topic)?;
        let book = self.book_for(client_id, ledger_id)?;
        let epoch = book.cursor_epoch;
        let len = book.visible(topic).len();
        let start = FeedAt {
            topic,
            position: 0,
            epoch,
            spin: 0,
            far: false,
        };
        let Some(c) = cursor else {
            return Ok(start);
        };
        match Cursor::decode(c) {
            Some(Cursor::Feed {
                ledger_id: l,
                topic: t,
                position,
                epoch: e,
                spin,
                far,
                ..
            }) if l == ledger_id && t == topic.as_str() && position <= len && e == epoch => {
                Ok(FeedAt {
                    position,
                    spin,
                    far,
                    ..start
                })
            }
            _ => Err(bad("Invalid cursor")),
        }
    }

    /// `GET /report/v2/ledgers/{ledgerId}/{topic}/feed`.
    pub(crate) fn feed_page(
        &mut self,
        client_id: &str,
        ledger_id: &str,
        topic: &str,
        cursor: Option<&str>,
        include_gdpr: bool,
        tweak: FeedTweak,
    ) -> Result<FeedPage, ApiError> {
        let FeedAt {
            topic,
            position,
            epoch,
            ..
        } = self.feed_at(client_id, ledger_id, topic, cursor)?;
        let entries = self.book_for(client_id, ledger_id)?.visible(topic);
        let len = entries.len();
        let here = || {
            cursor.map(str::to_string).unwrap_or_else(|| {
                Cursor::feed(ledger_id, topic.as_str(), position, epoch).encode()
            })
        };
        let slice = |range: std::ops::Range<usize>| -> Vec<Box<RawValue>> {
            let part = entries.get(range).unwrap_or_default();
            part.iter().map(|e| e.to_raw(include_gdpr)).collect()
        };
        let back = match tweak {
            FeedTweak::Overlap(n) => n,
            _ => 0,
        };
        if tweak == FeedTweak::NoProgress && cursor.is_some() {
            return Ok(FeedPage {
                cursor: here(),
                try_later: false,
                items: Vec::new(),
                tweaked: true,
            });
        }
        if position == len {
            // At the end only an injected overlap serves anything: the last items again.
            let start = position.saturating_sub(back);
            return Ok(FeedPage {
                cursor: here(),
                try_later: true,
                items: slice(start..len),
                tweaked: start < position,
            });
        }
        let usual_start = position.saturating_sub(self.overlap);
        let start = usual_start.saturating_sub(back);
        let end = start
            .saturating_add(self.feed_page_size.max(1))
            .max(position + 1)
            .min(len);
        // start <= position < end <= len, so the slice always exists.
        let items = slice(start..end);
        let mut next = Cursor::feed(ledger_id, topic.as_str(), end, epoch).encode();
        if self.repeat_pages && tweak != FeedTweak::Discarded {
            let key = (ledger_id.to_string(), topic, position);
            if !self.repeat_served.remove(&key) {
                self.repeat_served.insert(key);
                next = here();
            }
        }
        Ok(FeedPage {
            cursor: next,
            try_later: end == len,
            items,
            tweaked: start < usual_start,
        })
    }

    /// `GET /report/v2/ledgers/{ledgerId}/{topic}/dates/{ledgerDate}`.
    pub(crate) fn dates_page(
        &self,
        client_id: &str,
        ledger_id: &str,
        topic: &str,
        ledger_date: &str,
        cursor: Option<&str>,
        include_gdpr: bool,
    ) -> Result<Value, ApiError> {
        let topic = parse_topic(topic)?;
        let book = self.book_for(client_id, ledger_id)?;
        let date = parse_ledger_date(ledger_date)?;
        let entries = book.date_entries(topic, date);
        let offset = match cursor {
            None => 0,
            Some(c) => match Cursor::decode(c) {
                Some(Cursor::Dates {
                    ledger_id: l,
                    topic: t,
                    ledger_date: d,
                    offset,
                    epoch,
                }) if l == ledger_id
                    && epoch == book.cursor_epoch
                    && t == topic.as_str()
                    && d == ledger_date
                    && offset <= entries.len() =>
                {
                    offset
                }
                _ => return Err(bad("Invalid cursor")),
            },
        };
        let end = offset
            .saturating_add(self.feed_page_size.max(1))
            .min(entries.len());
        let items: Vec<Value> = entries
            .get(offset..end)
            .unwrap_or_default()
            .iter()
            .map(|e| e.to_json(include_gdpr))
            .collect();
        let has_more = end < entries.len();
        let mut body = json!({
            "hasMore": has_more,
            "tryLater": book.is_open(date),
            "items": items,
        });
        if has_more {
            let next = Cursor::Dates {
                ledger_id: ledger_id.to_string(),
                topic: topic.as_str().to_string(),
                ledger_date: ledger_date.to_string(),
                offset: end,
                epoch: book.cursor_epoch,
            };
            body["cursor"] = next.encode().into();
        }
        Ok(body)
    }
}
