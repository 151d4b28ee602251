//! Money sums are exact: journal vouchers, summaries and reconciliation sums over arbitrary
//! `i64` amounts that form a valid balance chain (each entry's balance after is its balance
//! before plus its amount, all in `i64`), however close to the limits.

use chrono::{NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use vipps_ledger_sync::config::Accounts;
use vipps_ledger_sync::export::journal;
use vipps_ledger_sync::export::scheduled::summarize;
use vipps_ledger_sync::reconcile::sums_by_type;
use vipps_ledger_sync::store::export_rows::ExportEntryRow;

const TYPES: [&str; 5] = [
    "capture",
    "refund",
    "fees-retained",
    "payout-scheduled",
    "capture-fee",
];

fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
}

/// A valid chain for `topic` from `opening`: each wanted amount is shortened where the
/// balance would leave `i64` (so every amount and balance is an `i64`, as the API's are).
fn chain(topic: &str, opening: i64, wanted: &[(i64, usize)]) -> Vec<ExportEntryRow> {
    let mut balance = opening;
    wanted
        .iter()
        .enumerate()
        .map(|(i, &(amount, kind))| {
            let after = (i128::from(balance) + i128::from(amount))
                .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
            let row = ExportEntryRow {
                ledger_id: "100001".into(),
                topic: topic.into(),
                seq: i as i64 + 1,
                ledger_date: Some(date()),
                time: Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap(),
                entry_type: TYPES[kind].into(),
                psp_reference: format!("psp{i}"),
                reference: None,
                currency: "NOK".into(),
                amount: (i128::from(after) - i128::from(balance)) as i64,
                balance_before: balance,
                balance_after: after,
                recipient_handle: None,
            };
            balance = after;
            row
        })
        .collect()
}

fn movement(rows: &[ExportEntryRow], topic: &str) -> i128 {
    let mine: Vec<_> = rows.iter().filter(|r| r.topic == topic).collect();
    match (mine.first(), mine.last()) {
        (Some(first), Some(last)) => {
            i128::from(last.balance_after) - i128::from(first.balance_before)
        }
        _ => 0,
    }
}

fn entries() -> impl Strategy<Value = Vec<(i64, usize)>> {
    let amount = prop_oneof![
        any::<i64>(),
        Just(i64::MAX),
        Just(i64::MIN),
        -1_000_000i64..1_000_000
    ];
    prop::collection::vec((amount, 0..TYPES.len()), 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_voucher_summary_and_reconciliation_sum_is_exact(
        funds_opening in prop_oneof![any::<i64>(), Just(i64::MAX), Just(i64::MIN)],
        fees_opening in any::<i64>(),
        funds in entries(),
        fees in entries(),
    ) {
        let mut rows = chain("funds", funds_opening, &funds);
        rows.extend(chain("fees", fees_opening, &fees));

        let lines = journal::voucher("100001", date(), &rows, &Accounts::default())
            .expect("a chain of one ledger, date and currency is always booked");
        prop_assert_eq!(lines.iter().map(|l| l.amount_minor).sum::<i128>(), 0);
        for topic in ["funds", "fees"] {
            // The feed's balance line is exactly the balance's movement over the date.
            let balance_line: i128 = lines
                .iter()
                .filter(|l| l.topic == topic && l.entry_type.is_empty())
                .map(|l| l.amount_minor)
                .sum();
            prop_assert_eq!(balance_line, movement(&rows, topic));
        }

        let summary = summarize(&rows);
        for topic in ["funds", "fees"] {
            let total: i128 = summary.iter().filter(|s| s.topic == topic).map(|s| s.amount_minor).sum();
            prop_assert_eq!(total, movement(&rows, topic));
        }

        let by_type = sums_by_type(rows.iter().map(|r| (r.entry_type.as_str(), r.amount)));
        let total: i128 = by_type.values().map(|(_, s)| s).sum();
        prop_assert_eq!(total, movement(&rows, "funds") + movement(&rows, "fees"));
    }
}

#[test]
fn two_entries_near_the_limit_give_a_balanced_voucher_with_exact_lines() {
    // The case: two chain-consistent entries whose sum leaves i64 (it wrapped before).
    let rows = chain("funds", i64::MIN, &[(i64::MAX, 0), (i64::MAX, 0)]);
    assert_eq!(rows[1].balance_after, i64::MAX - 1);
    let lines = journal::voucher("100001", date(), &rows, &Accounts::default()).unwrap();
    assert_eq!(lines.iter().map(|l| l.amount_minor).sum::<i128>(), 0);
    let sales = lines.iter().find(|l| l.entry_type == "capture").unwrap();
    assert_eq!(sales.amount_minor, -(i128::from(i64::MAX) * 2));
    assert_eq!(sales.credit, "184467440737095516.14");
}
