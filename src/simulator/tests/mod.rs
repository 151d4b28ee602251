//! Unit tests of the simulator's generated data (no HTTP), and helpers the other tests share.

mod faults;
mod faults_wire;
mod hostile;
mod hostile_data;
mod hostile_list;
mod http;
mod http_reports;
mod merchant;
mod paging;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use crate::simulator::{Simulator, SimulatorConfig};

pub(super) const TOPICS: [&str; 2] = ["funds", "fees"];

pub(super) fn sim_with(config: SimulatorConfig) -> Arc<Simulator> {
    let sim = Simulator::new(config);
    sim.add_partner_with_all_ledgers("p", "secret");
    sim
}

pub(super) fn sim() -> Arc<Simulator> {
    sim_with(SimulatorConfig::default())
}

pub(super) fn s<'a>(e: &'a Value, field: &str) -> &'a str {
    e[field].as_str().unwrap_or_default()
}

pub(super) fn n(e: &Value, field: &str) -> i64 {
    e[field].as_i64().expect("integer field")
}

/// The entries of a feed grouped by ledger date, in feed order.
pub(super) fn by_date(entries: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in entries {
        map.entry(s(e, "ledgerDate").to_string())
            .or_default()
            .push(e.clone());
    }
    map
}

pub(super) fn is_payout(e: &Value) -> bool {
    matches!(
        s(e, "entryType"),
        "payout-scheduled" | "scheduled-for-payout"
    )
}

#[test]
fn every_feed_is_one_unbroken_balance_chain_starting_at_zero() {
    let sim = sim();
    for id in sim.ledger_ids() {
        for topic in TOPICS {
            let entries = sim.expected_entries(&id, topic);
            assert!(
                entries.len() > 50,
                "{id}/{topic} has {} entries",
                entries.len()
            );
            let mut balance = 0;
            for e in &entries {
                assert_eq!(n(e, "balanceBefore"), balance, "{id}/{topic}: {e}");
                assert_eq!(n(e, "balanceAfter"), balance + n(e, "amount"), "{e}");
                balance = n(e, "balanceAfter");
            }
        }
    }
}

#[test]
fn a_payout_is_the_last_entry_of_its_closed_date_and_empties_the_balance() {
    let sim = sim();
    for id in sim.ledger_ids() {
        let dates = by_date(&sim.expected_entries(&id, "funds"));
        let open = dates.keys().last().cloned().expect("dates");
        let mut next_number = 2_000_001;
        for (date, entries) in &dates {
            let payouts: Vec<_> = entries.iter().filter(|e| is_payout(e)).collect();
            if *date == open {
                assert!(payouts.is_empty(), "open date {date} already has a payout");
                assert!(entries.iter().all(|e| s(e, "entryType") != "fees-retained"));
                continue;
            }
            assert!(payouts.len() <= 1);
            if let Some(p) = payouts.first() {
                assert_eq!(
                    *p,
                    entries.last().expect("entries"),
                    "payout not last on {date}"
                );
                assert_eq!(n(p, "amount"), -n(p, "balanceBefore"));
                assert_eq!(n(p, "balanceAfter"), 0);
                assert_eq!(s(p, "pspReference"), format!("{id}-{next_number}"));
                assert!(p.get("recipientHandle").is_none());
                next_number += 1;
            }
        }
        assert!(next_number > 2_000_005, "ledger {id} has too few payouts");
    }
}

#[test]
fn capture_fees_reuse_the_capture_psp_reference_so_it_repeats_on_fees() {
    let sim = sim();
    let mut repeated = 0;
    for id in sim.ledger_ids() {
        let funds = sim.expected_entries(&id, "funds");
        let mut captures = BTreeMap::new();
        for e in funds.iter().filter(|e| s(e, "entryType") == "capture") {
            let old = captures.insert(
                s(e, "pspReference").to_string(),
                s(e, "reference").to_string(),
            );
            assert!(old.is_none(), "capture pspReference not unique: {e}");
        }
        let mut seen = BTreeSet::new();
        for e in sim.expected_entries(&id, "fees") {
            if s(&e, "entryType") == "capture-fee" {
                let psp = s(&e, "pspReference").to_string();
                assert_eq!(
                    captures.get(&psp).map(String::as_str),
                    Some(s(&e, "reference"))
                );
                assert!(n(&e, "amount") < 0);
                if !seen.insert(psp) {
                    repeated += 1;
                }
            }
        }
    }
    assert!(
        repeated > 10,
        "only {repeated} repeated pspReferences on fees"
    );
}

/// Every fourth ledger (100004, 100008, …) is on gross settlement.
fn gross(id: &str) -> bool {
    id.parse::<u32>().expect("a numbered ledger") % 4 == 0
}

#[test]
fn fees_retained_settles_the_days_fees_on_both_topics_with_one_psp_reference() {
    let sim = sim();
    for id in sim.ledger_ids().into_iter().filter(|id| !gross(id)) {
        let funds = by_date(&sim.expected_entries(&id, "funds"));
        let fees = by_date(&sim.expected_entries(&id, "fees"));
        let open = funds.keys().last().cloned().expect("dates");
        for (date, fee_entries) in fees.iter().filter(|(d, _)| **d != open) {
            let total: i64 = fee_entries
                .iter()
                .filter(|e| s(e, "entryType") == "capture-fee")
                .map(|e| n(e, "amount"))
                .sum();
            let on_fees = fee_entries.last().expect("entries");
            let on_funds = funds[date]
                .iter()
                .find(|e| s(e, "entryType") == "fees-retained")
                .expect("fees-retained on funds");
            assert_eq!(s(on_fees, "entryType"), "fees-retained");
            assert_eq!(n(on_fees, "amount"), -total);
            assert_eq!(n(on_funds, "amount"), total);
            assert_eq!(n(on_fees, "balanceAfter"), 0);
            assert_eq!(s(on_fees, "pspReference"), s(on_funds, "pspReference"));
            assert_eq!(s(on_fees, "pspReference").len(), 26);
            for e in [on_fees, on_funds] {
                assert!(e.get("recipientHandle").is_none());
                assert!(e.get("reference").is_none_or(|r| r == ""));
                assert_eq!(s(e, "time"), s(funds[date].last().expect("last"), "time"));
            }
        }
    }
}

#[test]
fn gross_settlement_pays_captures_in_full_and_invoices_the_fees_weekly() {
    let sim = Simulator::new(SimulatorConfig {
        days: 15,
        ..SimulatorConfig::default()
    });
    let grossed: Vec<String> = sim
        .ledger_ids()
        .into_iter()
        .filter(|id| gross(id))
        .collect();
    assert!(!grossed.is_empty());
    for id in grossed {
        let funds = sim.expected_entries(&id, "funds");
        let fees = sim.expected_entries(&id, "fees");
        assert!(funds.iter().all(|e| s(e, "entryType") != "fees-retained"));
        assert!(fees.iter().all(|e| s(e, "entryType") != "fees-retained"));
        let invoiced: Vec<&Value> = fees
            .iter()
            .filter(|e| s(e, "entryType") == "fees-invoiced")
            .collect();
        assert_eq!(invoiced.len(), 2, "{id}: days 7 and 14 of 15");
        for e in invoiced {
            assert_eq!(n(e, "balanceAfter"), 0, "the invoice clears the fees feed");
            assert!(n(e, "amount") > 0);
        }
    }
}

fn snapshot(sim: &Simulator) -> String {
    let mut out = String::new();
    for id in sim.ledger_ids() {
        out.push_str(&sim.ledger_json(&id).expect("ledger").to_string());
        for topic in TOPICS {
            out.push_str(&Value::Array(sim.expected_entries(&id, topic)).to_string());
        }
    }
    out
}

#[test]
fn the_same_seed_gives_identical_data_and_another_seed_does_not() {
    let a = snapshot(&sim());
    let b = snapshot(&sim());
    assert_eq!(a, b);
    let other = snapshot(&sim_with(SimulatorConfig {
        seed: 43,
        ..SimulatorConfig::default()
    }));
    assert_ne!(a, other);
}

#[test]
fn growing_a_day_at_a_time_gives_the_same_data_as_generating_at_once() {
    let at_once = sim();
    let grown = sim_with(SimulatorConfig {
        days: 4,
        ..SimulatorConfig::default()
    });
    grown.grow(1);
    grown.grow(2);
    grown.grow(0);
    grown.grow(3);
    assert_eq!(snapshot(&at_once), snapshot(&grown));
}

#[test]
fn the_data_contains_every_case_a_client_must_handle() {
    let sim = sim();
    let mut payout_spellings = BTreeSet::new();
    let mut offset_times = 0;
    let mut utc_times = 0;
    let mut extra_fields = 0;
    let mut currencies = BTreeSet::new();
    let mut owners = BTreeMap::new();
    for id in sim.ledger_ids() {
        let ledger = sim.ledger_json(&id).expect("ledger");
        let currency = s(&ledger, "currency").to_string();
        currencies.insert(currency.clone());
        *owners.entry(ledger["owner"]["id"].to_string()).or_insert(0) += 1;
        let funds = sim.expected_entries(&id, "funds");
        let count = |t: &str| funds.iter().filter(|e| s(e, "entryType") == t).count();
        assert!(count("refund") > 0, "{id} has no refund");
        assert!(
            count("retained-disputed-capture") > 0,
            "{id} has no dispute"
        );
        assert!(
            count("returned-disputed-capture") > 0,
            "{id} has no returned dispute"
        );
        assert_eq!(
            count("interchange-adjustment"),
            1,
            "{id} unknown entry type"
        );
        let capture_refs: BTreeMap<&str, &str> = funds
            .iter()
            .filter(|e| s(e, "entryType") == "capture")
            .map(|e| (s(e, "pspReference"), s(e, "reference")))
            .collect();
        for e in funds
            .iter()
            .filter(|e| s(e, "entryType").contains("disputed"))
        {
            assert_eq!(
                capture_refs.get(s(e, "pspReference")),
                Some(&s(e, "reference"))
            );
        }
        for e in funds.iter().chain(&sim.expected_entries(&id, "fees")) {
            assert_eq!(s(e, "currency"), currency);
            let time = s(e, "time");
            assert_eq!(
                time.split('.').nth(1).map(|f| f.len()),
                Some(if time.ends_with('Z') { 7 } else { 11 })
            );
            if time.ends_with('Z') {
                utc_times += 1;
            } else {
                offset_times += 1;
            }
            extra_fields += usize::from(e.get("settlementBatch").is_some());
            if is_payout(e) {
                payout_spellings.insert(s(e, "entryType").to_string());
            }
        }
    }
    assert_eq!(payout_spellings.len(), 2);
    assert!(offset_times > 0 && utc_times > offset_times);
    assert!(
        extra_fields > 10,
        "only {extra_fields} entries with an unknown field"
    );
    assert_eq!(currencies.len(), 3);
    assert!(
        owners.values().any(|n| *n == 2),
        "no merchant with two ledgers"
    );
}

#[test]
fn with_a_clock_entries_appear_as_their_time_comes() {
    let sim = sim_with(SimulatorConfig {
        ledgers: 3,
        days: 3,
        captures_per_day: 4,
        busy_ledgers: 1,
        busy_captures_per_day: 288,
        ..SimulatorConfig::default()
    });
    let ids = sim.ledger_ids();
    let whole: Vec<Vec<Value>> = ids
        .iter()
        .map(|id| sim.expected_entries(id, "funds"))
        .collect();
    // The busy ledger has an entry every few minutes, the quiet ones a few a day.
    let busy = sim.entry_times(&ids[0], "funds");
    let quiet = sim.entry_times(&ids[1], "funds");
    assert_eq!(busy.len(), whole[0].len());
    assert!(busy.len() > 3 * 100, "busy: {}", busy.len());
    assert!((3..60).contains(&quiet.len()), "quiet: {}", quiet.len());
    assert!(busy.windows(2).all(|w| w[0] <= w[1]), "in time order");
    let times: Vec<String> = whole[0].iter().map(|e| s(e, "time").to_owned()).collect();
    let parsed: Vec<chrono::DateTime<chrono::Utc>> = times
        .iter()
        .map(|t| {
            chrono::DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z")
                .or_else(|_| chrono::DateTime::parse_from_rfc3339(t))
                .expect("a time")
                .to_utc()
        })
        .collect();
    assert_eq!(parsed, busy, "the times served");

    // Before the first entry: nothing; midway: exactly the entries whose time has come, a
    // prefix of the whole feed; the fees feed by its own entries' times.
    sim.set_clock(Some(busy[0] - chrono::TimeDelta::seconds(1)));
    assert!(sim.expected_entries(&ids[0], "funds").is_empty());
    let mid = busy[busy.len() / 2];
    sim.set_clock(Some(mid));
    let served = sim.expected_entries(&ids[0], "funds");
    assert_eq!(served.len(), busy.iter().filter(|t| **t <= mid).count());
    assert_eq!(served[..], whole[0][..served.len()]);
    let fees_come = sim
        .entry_times(&ids[0], "fees")
        .iter()
        .filter(|t| **t <= mid)
        .count();
    assert_eq!(sim.expected_entries(&ids[0], "fees").len(), fees_come);
    // No clock: everything again.
    sim.set_clock(None);
    for (id, whole) in ids.iter().zip(&whole) {
        assert_eq!(&sim.expected_entries(id, "funds"), whole);
    }
}
