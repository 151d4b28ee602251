//! The hostile modes that build their pages from the real data.
//!
//! This module owns, on `State`, which mode hits a request and the pages of the modes that
//! reshape real data: the ledger list whose cursors go round a circle, the hostile ledger ids
//! (listed, and served from a real ledger's book), the empty feed whose cursor is new every
//! time, the dates page that repeats itself, the huge cursor, and the far-future entry. Every
//! page is worked out from the request alone (its cursor carries what the mode needs), so
//! none of them keeps state that grows with the requests.

use std::borrow::Cow;

use chrono::NaiveDate;
use serde_json::{json, Value};

use super::book::LedgerBook;
use super::cursor::Cursor;
use super::entry::{Entry, Topic};
use super::faults::Endpoint;
use super::hostile::{Hostile, MAX_CYCLE_PERIOD, MAX_HUGE_CURSOR_BYTES};
use super::pages::{parse_ledger_date, FeedAt};
use super::profile::LedgerProfile;
use super::state::{ApiError, State};

/// The date of the `far-future-entry` mode's extra entry.
pub(crate) const FAR_FUTURE_DATE: (i32, u32, u32) = (2099, 12, 31);
/// The far-future entry's time of day, in microseconds after the ledger's midnight (noon).
const FAR_FUTURE_MICROS: i64 = 12 * 3600 * 1_000_000;
/// The far-future entry's amount on `funds` (a capture), in minor units; on `fees` a
/// capture fee of minus 1.5 % of it.
const FAR_FUTURE_AMOUNT: i64 = 420_000;

fn far_future_date() -> NaiveDate {
    let (y, m, d) = FAR_FUTURE_DATE;
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MAX)
}

impl State {
    /// The mode hitting an authenticated request to `endpoint` (for `ledger_id`; `None` for
    /// the ledger list), if one does.
    pub(crate) fn hostile_hit(
        &self,
        endpoint: Endpoint,
        ledger_id: Option<&str>,
    ) -> Option<Hostile> {
        let config = self.hostile.as_ref()?;
        config
            .hits(endpoint, ledger_id)
            .then(|| config.mode.clone())
    }

    /// Counts a hostile answer sent, by the mode's name.
    pub(crate) fn count_hostile(&mut self, mode: &Hostile) {
        *self
            .stats
            .hostile_sent
            .entry(mode.name().to_string())
            .or_default() += 1;
    }

    /// Whether the ledger list shows the hostile ledger ids (and their feeds answer).
    pub(crate) fn hostile_ids_on(&self) -> bool {
        self.hostile_hit(Endpoint::LedgerList, None) == Some(Hostile::HostileLedgerIds)
    }

    /// The real ledger whose entries a hostile ledger id serves (the i-th hostile id serves
    /// the i-th ledger, round the ledgers), while the mode is on.
    pub(crate) fn hostile_id_book(&self, ledger_id: &str) -> Option<&LedgerBook> {
        if !self.hostile_ids_on() || self.ledgers.is_empty() {
            return None;
        }
        let index = Hostile::hostile_ledger_ids()
            .iter()
            .position(|id| id == ledger_id)?;
        self.ledgers.values().nth(index % self.ledgers.len())
    }

    /// The ledger a data request for `ledger_id` reads: a granted one, or a hostile id's.
    pub(crate) fn book_for(
        &self,
        client_id: &str,
        ledger_id: &str,
    ) -> Result<&LedgerBook, ApiError> {
        match self.hostile_id_book(ledger_id) {
            Some(book) => Ok(book),
            None => self.accessible(client_id, ledger_id),
        }
    }

    /// The ledgers the ledger list shows the caller, sorted by id: the granted ones and, in
    /// the `hostile-ledger-ids` mode, the hostile ones (copies of the ledgers they serve).
    pub(crate) fn listed_profiles(&self, client_id: &str) -> Vec<Cow<'_, LedgerProfile>> {
        let grants = self.partners.get(client_id).map(|p| &p.grants);
        let mut listed: Vec<Cow<'_, LedgerProfile>> = self
            .ledgers
            .values()
            .filter(|b| grants.is_some_and(|g| g.contains(&b.profile.ledger_id)))
            .map(|b| Cow::Borrowed(&b.profile))
            .collect();
        if self.hostile_ids_on() {
            for id in Hostile::hostile_ledger_ids() {
                if let Some(book) = self.hostile_id_book(&id) {
                    let mut profile = book.profile.clone();
                    profile.ledger_id = id;
                    listed.push(Cow::Owned(profile));
                }
            }
            listed.sort_by(|a, b| a.ledger_id.cmp(&b.ledger_id));
        }
        listed
    }

    /// `ledger-cursor-cycle`: the answer to a request with `cursor` (none, or one not of the
    /// cycle: the start). The answer at step `s` carries the cycle's cursor `s` and the
    /// `s`-th page of the caller's ledgers (round the pages); a request with cursor `s` is
    /// answered at step `s + 1` modulo `period`.
    pub(crate) fn ledger_cycle_page(
        &self,
        client_id: &str,
        cursor: Option<&str>,
        period: u32,
    ) -> Value {
        let period = period.clamp(2, MAX_CYCLE_PERIOD);
        let step = match cursor.and_then(Cursor::decode) {
            Some(Cursor::LedgerCycle { step }) => (step % period + 1) % period,
            _ => 0,
        };
        let listed = self.listed_profiles(client_id);
        let size = self.ledger_page_size.max(1);
        let pages = listed.len().div_ceil(size).max(1);
        let start = (step as usize % pages) * size;
        let items: Vec<Value> = listed
            .iter()
            .skip(start)
            .take(size)
            .map(|p| p.to_json())
            .collect();
        json!({ "cursor": Cursor::LedgerCycle { step }.encode(), "items": items })
    }

    /// `feed-empty-forever`: no items, `tryLater: false`, and the request's position in a
    /// cursor never handed out before on this walk (its counter goes up by one each time).
    pub(crate) fn empty_forever_page(
        &self,
        client_id: &str,
        ledger_id: &str,
        topic: &str,
        cursor: Option<&str>,
    ) -> Result<Value, ApiError> {
        let at = self.feed_at(client_id, ledger_id, topic, cursor)?;
        let next = Cursor::Feed {
            ledger_id: ledger_id.to_string(),
            topic: at.topic.as_str().to_string(),
            position: at.position,
            epoch: at.epoch,
            spin: at.spin.saturating_add(1),
            far: at.far,
            pad: String::new(),
        };
        Ok(json!({ "cursor": next.encode(), "tryLater": false, "items": [] }))
    }

    /// `dates-cursor-repeat`: the real page the request asks for, but with `hasMore: true`,
    /// `tryLater: false` and, as the next cursor, the request's own (on a first call, the
    /// cursor of that same first page), so every call gets the same answer.
    pub(crate) fn dates_repeat_page(
        &self,
        client_id: &str,
        ledger_id: &str,
        topic: &str,
        ledger_date: &str,
        cursor: Option<&str>,
        include_gdpr: bool,
    ) -> Result<Value, ApiError> {
        let mut body = self.dates_page(
            client_id,
            ledger_id,
            topic,
            ledger_date,
            cursor,
            include_gdpr,
        )?;
        let epoch = self.book_for(client_id, ledger_id)?.cursor_epoch;
        let same = cursor.map(str::to_string).unwrap_or_else(|| {
            Cursor::Dates {
                ledger_id: ledger_id.to_string(),
                topic: topic.to_string(),
                ledger_date: ledger_date.to_string(),
                offset: 0,
                epoch,
            }
            .encode()
        });
        body["hasMore"] = true.into();
        body["tryLater"] = false.into();
        body["cursor"] = same.into();
        Ok(body)
    }

    /// `far-future-entry` on the feed: the usual page, with the extra entry after the last
    /// real one (on the page that reaches the end, if it has room, else on the next); the
    /// cursor remembers it was served. Also says whether this page carries it.
    pub(crate) fn far_future_feed_page(
        &self,
        client_id: &str,
        ledger_id: &str,
        topic: &str,
        cursor: Option<&str>,
        include_gdpr: bool,
    ) -> Result<(Value, bool), ApiError> {
        let at: FeedAt = self.feed_at(client_id, ledger_id, topic, cursor)?;
        let book = self.book_for(client_id, ledger_id)?;
        let entries = book.visible(at.topic);
        let len = entries.len();
        let page = self.feed_page_size.max(1);
        let end = at.position.saturating_add(page).min(len);
        let mut items: Vec<Value> = entries
            .get(at.position..end)
            .unwrap_or_default()
            .iter()
            .map(|e| e.to_json(include_gdpr))
            .collect();
        let far_now = !at.far && end == len && items.len() < page;
        if far_now {
            items.push(far_future_entry(book, at.topic).to_json(include_gdpr));
        }
        let far = at.far || far_now;
        let next = match cursor {
            Some(c) if items.is_empty() => c.to_string(),
            _ => Cursor::Feed {
                ledger_id: ledger_id.to_string(),
                topic: at.topic.as_str().to_string(),
                position: end,
                epoch: at.epoch,
                spin: 0,
                far,
                pad: String::new(),
            }
            .encode(),
        };
        let body = json!({ "cursor": next, "tryLater": end == len && far, "items": items });
        Ok((body, far_now))
    }

    /// `far-future-entry` on the dates endpoint: the usual page, and on 2099-12-31 the extra
    /// entry. Also says whether this page carries it.
    pub(crate) fn far_future_dates_page(
        &self,
        client_id: &str,
        ledger_id: &str,
        topic: &str,
        ledger_date: &str,
        cursor: Option<&str>,
        include_gdpr: bool,
    ) -> Result<(Value, bool), ApiError> {
        let mut body = self.dates_page(
            client_id,
            ledger_id,
            topic,
            ledger_date,
            cursor,
            include_gdpr,
        )?;
        let far_date = parse_ledger_date(ledger_date)? == far_future_date();
        if far_date {
            let book = self.book_for(client_id, ledger_id)?;
            let topic = Topic::parse(topic).unwrap_or(Topic::Funds);
            body["items"] = json!([far_future_entry(book, topic).to_json(include_gdpr)]);
        }
        Ok((body, far_date))
    }
}

/// The extra entry of `far-future-entry`: a capture (on `fees`, its fee) dated 2099-12-31 at
/// noon in the ledger's `time` spelling, continuing the balance chain after the last
/// currently visible entry.
pub(crate) fn far_future_entry(book: &LedgerBook, topic: Topic) -> Entry {
    let profile = &book.profile;
    let date = far_future_date();
    let before = book.visible(topic).last().map_or(0, |e| e.balance_after);
    let (entry_type, amount) = match topic {
        Topic::Funds => ("capture", FAR_FUTURE_AMOUNT),
        Topic::Fees => ("capture-fee", -FAR_FUTURE_AMOUNT * 15 / 1000),
    };
    Entry {
        psp_reference: format!("20991231{}", profile.ledger_id),
        time: profile.time_style.render(date, FAR_FUTURE_MICROS),
        moment: profile.time_style.unix_micros(date, FAR_FUTURE_MICROS),
        ledger_date: date,
        entry_type: entry_type.to_string(),
        reference: Some(format!("{}-20991231", profile.order_prefix)),
        currency: profile.country.currency(),
        amount,
        balance_before: before,
        balance_after: before.saturating_add(amount),
        recipient_handle: profile.sales_units.first().map(|u| u.handle.clone()),
        settlement_batch: None,
        gdpr: None,
    }
}

/// `huge-cursor`: a feed cursor made exactly `bytes` long (at most [`MAX_HUGE_CURSOR_BYTES`];
/// never shorter than it already is) by filler inside it, and at most one trailing `=`,
/// which reading it ignores; it still names the same position.
pub(crate) fn huge_cursor(cursor: &str, bytes: usize) -> String {
    let bytes = bytes.min(MAX_HUGE_CURSOR_BYTES);
    let Some(Cursor::Feed {
        ledger_id,
        topic,
        position,
        epoch,
        spin,
        far,
        ..
    }) = Cursor::decode(cursor)
    else {
        return cursor.to_string();
    };
    let with_pad = |pad: String| Cursor::Feed {
        ledger_id: ledger_id.clone(),
        topic: topic.clone(),
        position,
        epoch,
        spin,
        far,
        pad,
    };
    // The JSON with a pad of n characters is `base + n` bytes long; base64 without padding
    // turns L bytes into ceil(4L / 3) characters, so the longest JSON that fits has
    // floor(3 * bytes / 4) bytes, and one `=` makes up the difference where one is left.
    let base = serde_json::to_vec(&with_pad("x".into())).map_or(0, |v| v.len().saturating_sub(1));
    let fits = bytes.saturating_mul(3) / 4;
    if fits <= base {
        return cursor.to_string();
    }
    let encoded = with_pad("A".repeat(fits - base)).encode();
    let missing = bytes.saturating_sub(encoded.len());
    encoded + &"=".repeat(missing)
}
