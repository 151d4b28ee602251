//! Deterministic generation of one ledger date's entries on both topics.
//!
//! This module owns the money model (report-api.md §7, §8, §11, §12): turning a date's events
//! (see `events.rs`) into `funds` and `fees` entries with running balances, capture fees that
//! share the capture's `pspReference`, and the end-of-date `fees-retained` and payout. Each
//! date draws from its own random stream (seed, ledger, date), and the little state that
//! crosses dates (balances, counters, captures that can still be disputed) lives in
//! [`GenState`], so growing a ledger one date at a time gives exactly the same data as
//! generating all dates at once.

use std::collections::VecDeque;

use chrono::{Datelike, NaiveDate};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::entry::{Entry, DAY_MICROS};
use super::events::{CaptureRef, Kind};
use super::profile::{rng_for, Country, LedgerProfile};

/// How many earlier captures are remembered as candidates for a dispute.
const DISPUTE_CANDIDATES: usize = 300;
/// The first payout number of every ledger.
const FIRST_PAYOUT_NUMBER: u64 = 2_000_001;
/// Share of entries carrying the undocumented `settlementBatch` field.
const EXTRA_FIELD_RATE: f64 = 0.02;

/// What carries over from one ledger date to the next.
#[derive(Clone, Debug)]
pub(crate) struct GenState {
    pub(super) funds_balance: i64,
    pub(super) fees_balance: i64,
    pub(super) next_payout: u64,
    pub(super) psp_counter: u64,
    pub(super) order_counter: u64,
    /// 0 for the ledger's first date.
    pub(super) day_index: u32,
    pub(super) disputes: u32,
    pub(super) candidates: VecDeque<CaptureRef>,
    /// (date index it is due on, the disputed capture).
    pub(super) pending_returns: Vec<(u32, CaptureRef)>,
}

impl Default for GenState {
    fn default() -> Self {
        GenState {
            funds_balance: 0,
            fees_balance: 0,
            next_payout: FIRST_PAYOUT_NUMBER,
            psp_counter: 0,
            order_counter: 0,
            day_index: 0,
            disputes: 0,
            candidates: VecDeque::new(),
            pending_returns: Vec::new(),
        }
    }
}

/// One generated ledger date: the body (visible while the date is open) and the end-of-date
/// entries (added when it closes), per topic.
#[derive(Debug, Default)]
pub(crate) struct DayEntries {
    pub funds_body: Vec<Entry>,
    pub funds_closing: Vec<Entry>,
    pub fees_body: Vec<Entry>,
    pub fees_closing: Vec<Entry>,
}

impl GenState {
    /// Generates the next ledger date of `profile`, continuing the balance chains.
    pub(crate) fn generate_day(
        &mut self,
        profile: &LedgerProfile,
        seed: u64,
        date: NaiveDate,
        captures_per_day: u32,
    ) -> DayEntries {
        let mut rng = rng_for(&[
            seed,
            profile.index as u64,
            3,
            date.num_days_from_ce() as u64,
        ]);
        let events = self.draw_events(profile, &mut rng, captures_per_day);
        let mut out = DayEntries::default();
        let currency = profile.country.currency();
        let mut day_fees = 0i64;
        let mut todays_captures = Vec::new();
        for ev in events {
            let stamp = Stamp {
                date,
                time: profile.time_style.render(date, ev.at),
                moment: profile.time_style.unix_micros(date, ev.at),
                currency,
            };
            let (psp, entry_type, reference, amount, handle, gdpr) = match ev.kind {
                Kind::Capture { cap, fees, gdpr } => {
                    for fee in fees {
                        day_fees += fee;
                        let e = stamp.entry(
                            &cap.psp,
                            "capture-fee",
                            Some(&cap.reference),
                            -fee,
                            Some(&cap.handle),
                        );
                        push(&mut out.fees_body, &mut self.fees_balance, e);
                    }
                    todays_captures.push(cap.clone());
                    (
                        cap.psp,
                        "capture",
                        cap.reference,
                        cap.amount,
                        cap.handle,
                        gdpr,
                    )
                }
                Kind::Refund { of, psp, amount } => {
                    (psp, "refund", of.reference, -amount, of.handle, None)
                }
                Kind::Dispute(c) => (
                    c.psp,
                    "retained-disputed-capture",
                    c.reference,
                    -c.amount,
                    c.handle,
                    None,
                ),
                Kind::Return(c) => (
                    c.psp,
                    "returned-disputed-capture",
                    c.reference,
                    c.amount,
                    c.handle,
                    None,
                ),
                Kind::Unknown {
                    psp,
                    amount,
                    handle,
                } => {
                    let reference = format!("IA-{}", date.format("%Y%m%d"));
                    (
                        psp,
                        "interchange-adjustment",
                        reference,
                        amount,
                        handle,
                        None,
                    )
                }
            };
            let mut e = stamp.entry(&psp, entry_type, Some(&reference), amount, Some(&handle));
            e.gdpr = gdpr;
            if rng.gen_bool(EXTRA_FIELD_RATE) {
                let batch = rng.gen_range(1..=12);
                e.settlement_batch = Some(format!("SB-{}-{batch:02}", date.format("%Y%m%d")));
            }
            push(&mut out.funds_body, &mut self.funds_balance, e);
        }
        self.close_day(profile, &mut rng, date, day_fees, &mut out);
        self.candidates.extend(todays_captures);
        while self.candidates.len() > DISPUTE_CANDIDATES {
            self.candidates.pop_front();
        }
        self.day_index += 1;
        out
    }

    /// Appends `fees-retained` on both topics (net settlement) or, every seventh day, the
    /// `fees-invoiced` that clears the fees feed (gross settlement), and, with a positive
    /// balance, the payout.
    fn close_day(
        &mut self,
        profile: &LedgerProfile,
        rng: &mut ChaCha8Rng,
        date: NaiveDate,
        day_fees: i64,
        out: &mut DayEntries,
    ) {
        let style = profile.time_style;
        let stamp = Stamp {
            date,
            time: style.render(date, DAY_MICROS),
            moment: style.unix_micros(date, DAY_MICROS),
            currency: profile.country.currency(),
        };
        if profile.gross_settlement {
            if self.day_index % 7 == 6 && self.fees_balance != 0 {
                let psp = ulid_like(style.unix_millis(date, DAY_MICROS), rng);
                let amount = -self.fees_balance;
                let invoiced = stamp.entry(&psp, "fees-invoiced", None, amount, None);
                push(&mut out.fees_closing, &mut self.fees_balance, invoiced);
            }
        } else if day_fees != 0 {
            let psp = ulid_like(style.unix_millis(date, DAY_MICROS), rng);
            let reference = profile.fees_retained_reference.as_deref();
            let funds = stamp.entry(&psp, "fees-retained", reference, -day_fees, None);
            push(&mut out.funds_closing, &mut self.funds_balance, funds);
            let fees = stamp.entry(&psp, "fees-retained", reference, day_fees, None);
            push(&mut out.fees_closing, &mut self.fees_balance, fees);
        }
        if self.funds_balance > 0 {
            let number = self.next_payout;
            self.next_payout += 1;
            let psp = format!("{}-{number}", profile.ledger_id);
            let text = payout_text(profile, number, date);
            let amount = -self.funds_balance;
            let payout = stamp.entry(&psp, profile.payout_entry_type, Some(&text), amount, None);
            push(&mut out.funds_closing, &mut self.funds_balance, payout);
        }
    }
}

/// The fields every entry of one date and moment shares.
struct Stamp {
    date: NaiveDate,
    time: String,
    moment: i64,
    currency: &'static str,
}

impl Stamp {
    fn entry(
        &self,
        psp: &str,
        entry_type: &str,
        reference: Option<&str>,
        amount: i64,
        handle: Option<&str>,
    ) -> Entry {
        Entry {
            psp_reference: psp.to_string(),
            time: self.time.clone(),
            moment: self.moment,
            ledger_date: self.date,
            entry_type: entry_type.to_string(),
            reference: reference.map(str::to_string),
            currency: self.currency,
            amount,
            balance_before: 0,
            balance_after: 0,
            recipient_handle: handle.map(str::to_string),
            settlement_batch: None,
            gdpr: None,
        }
    }
}

/// Appends `e` to `list`, filling in its balances from the running `balance`.
fn push(list: &mut Vec<Entry>, balance: &mut i64, mut e: Entry) {
    e.balance_before = *balance;
    *balance += e.amount;
    e.balance_after = *balance;
    list.push(e);
}

/// A 26-character Crockford base32 value with a millisecond time prefix, like a ULID.
fn ulid_like(unix_millis: i64, rng: &mut ChaCha8Rng) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut out = String::with_capacity(26);
    let ms = u64::try_from(unix_millis).unwrap_or(0);
    for i in (0..10).rev() {
        out.push(char::from(ALPHABET[((ms >> (i * 5)) & 31) as usize]));
    }
    for _ in 0..16 {
        out.push(char::from(ALPHABET[rng.gen_range(0..32)]));
    }
    out
}

/// The bank text of a payout (report-api.md §11.3); never parsed by a client.
fn payout_text(profile: &LedgerProfile, number: u64, date: NaiveDate) -> String {
    let serial = &profile.sales_units[0].serial;
    match profile.country {
        Country::No => format!("Utb. {number} Vippsnr {serial}"),
        Country::Dk | Country::Fi => {
            let body = format!("02{serial:0>8}001{}", date.format("%d%m%y"));
            let check: u32 = body.bytes().map(|b| u32::from(b - b'0')).sum::<u32>() % 10;
            format!("{body}{check}")
        }
    }
}
