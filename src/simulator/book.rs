//! The stored feeds of one ledger and which of their entries are currently visible.
//!
//! This module owns the append-only `funds` and `fees` sequences of a ledger, the index of
//! which entries belong to which ledger date, and the open-date rule: the last generated date
//! is still open, so its end-of-date entries (`fees-retained`, payout) are held back until the
//! ledger grows past it. With a clock set (`Simulator::set_clock`), entries also appear one by
//! one as their `time` comes, as the real feeds fill during the day.
//! Everything the HTTP layer serves is a slice of what is visible here.

use std::ops::Range;

use chrono::{NaiveDate, TimeDelta};

use super::entry::{Entry, Topic};
use super::generate::GenState;
use super::profile::LedgerProfile;

/// Where one ledger date's entries sit in the full (partly hidden) sequences.
#[derive(Clone, Debug)]
struct DaySpan {
    funds: Range<usize>,
    fees: Range<usize>,
}

/// One ledger: its profile, generator state and both feeds.
#[derive(Debug)]
pub(crate) struct LedgerBook {
    pub profile: LedgerProfile,
    /// Generation of the cursors handed out; bumping it invalidates all older ones.
    pub cursor_epoch: u32,
    /// Average captures per ledger date of this ledger.
    captures_per_day: u32,
    /// The simulated now (microseconds since the Unix epoch): entries whose time is later
    /// are not served yet. `None`: every entry generated is served.
    clock: Option<i64>,
    start_date: NaiveDate,
    gen: GenState,
    funds: Vec<Entry>,
    fees: Vec<Entry>,
    days: Vec<DaySpan>,
    /// Trailing end-of-date entries of the open date, generated but not yet served.
    hidden_funds: usize,
    hidden_fees: usize,
}

impl LedgerBook {
    /// An empty ledger whose first ledger date is `start_date`, with about
    /// `captures_per_day` captures a date.
    pub(crate) fn new(
        profile: LedgerProfile,
        start_date: NaiveDate,
        captures_per_day: u32,
    ) -> LedgerBook {
        LedgerBook {
            profile,
            cursor_epoch: 0,
            captures_per_day,
            clock: None,
            start_date,
            gen: GenState::default(),
            funds: Vec::new(),
            fees: Vec::new(),
            days: Vec::new(),
            hidden_funds: 0,
            hidden_fees: 0,
        }
    }

    /// Generates `n` more ledger dates; the previously open date closes.
    pub(crate) fn grow(&mut self, seed: u64, n: u32) {
        for _ in 0..n {
            let date = self.start_date + TimeDelta::days(self.days.len() as i64);
            let day = self
                .gen
                .generate_day(&self.profile, seed, date, self.captures_per_day);
            let funds_start = self.funds.len();
            let fees_start = self.fees.len();
            self.funds.extend(day.funds_body);
            self.fees.extend(day.fees_body);
            self.hidden_funds = day.funds_closing.len();
            self.hidden_fees = day.fees_closing.len();
            self.funds.extend(day.funds_closing);
            self.fees.extend(day.fees_closing);
            self.days.push(DaySpan {
                funds: funds_start..self.funds.len(),
                fees: fees_start..self.fees.len(),
            });
        }
    }

    fn all(&self, topic: Topic) -> (&[Entry], usize) {
        match topic {
            Topic::Funds => (&self.funds, self.hidden_funds),
            Topic::Fees => (&self.fees, self.hidden_fees),
        }
    }

    /// Sets the simulated now (`None`: no clock, the whole open date is served).
    pub(crate) fn set_clock(&mut self, unix_micros: Option<i64>) {
        self.clock = unix_micros;
    }

    /// The feed as currently served, in feed order: without the open date's end-of-date
    /// entries, and with a clock only the entries whose time has come (all without one).
    pub(crate) fn visible(&self, topic: Topic) -> &[Entry] {
        let generated = self.generated(topic);
        match self.clock {
            // A ledger's entries are generated in time order: each date's in order, its
            // end-of-date entries at its end, the next date's after.
            Some(clock) => &generated[..generated.partition_point(|e| e.moment <= clock)],
            None => generated,
        }
    }

    /// Every entry generated, without the open date's end-of-date entries, whatever the
    /// clock says.
    pub(crate) fn generated(&self, topic: Topic) -> &[Entry] {
        let (all, hidden) = self.all(topic);
        &all[..all.len() - hidden]
    }

    /// The currently served entries of one ledger date (empty for dates without entries).
    pub(crate) fn date_entries(&self, topic: Topic, date: NaiveDate) -> &[Entry] {
        let visible = self.visible(topic);
        let Ok(index) = usize::try_from((date - self.start_date).num_days()) else {
            return &[];
        };
        let Some(span) = self.days.get(index) else {
            return &[];
        };
        let range = match topic {
            Topic::Funds => &span.funds,
            Topic::Fees => &span.fees,
        };
        let end = range.end.min(visible.len());
        let start = range.start.min(end);
        &visible[start..end]
    }

    /// The last generated ledger date (the open one), if any date was generated.
    pub(crate) fn last_date(&self) -> Option<NaiveDate> {
        let n = self.days.len() as i64;
        (n > 0).then(|| self.start_date + TimeDelta::days(n - 1))
    }

    /// Whether a ledger date is still open: the last generated date and every later one.
    /// Dates before the first generated date are closed (and empty).
    pub(crate) fn is_open(&self, date: NaiveDate) -> bool {
        match self.last_date() {
            Some(last) => date >= last,
            None => date >= self.start_date,
        }
    }
}
