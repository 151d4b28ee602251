//! The journal: one balanced double-entry voucher per ledger date, on the partner's accounts.
//!
//! Each feed is a balance account (`accounts.funds`: what Vipps MobilePay owes the merchant;
//! `accounts.fees`: what the merchant owes, negative while owed), and every entry moves that
//! balance against the counterpart account of its entry type. Per date and feed, the entries of
//! each type become one line on the counterpart account (the type's sum, negated), and the
//! feed's net movement one line on its balance account, so every voucher sums to zero by
//! construction. Positive amounts are debits. With the built-in chart (NS 4102):
//!
//! | entry | funds feed | counterpart |
//! | --- | --- | --- |
//! | capture +100 | debit 1571 | credit 3000 sales |
//! | refund −20 | credit 1571 | debit 3000 |
//! | fees-retained −3 (and +3 on fees) | credit 1571 / debit 2471 | 1572, which nets to 0 |
//! | capture-fee −3 (fees feed) | credit 2471 | debit 7770 fees |
//! | payout-scheduled −77 | credit 1571 | debit 1940 money on its way to the bank |
//!
//! An entry type without a mapping goes to `accounts.fallback`, so nothing is dropped.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use super::decimal;
use crate::config::Accounts;
use crate::store::export_rows::ExportEntryRow;

/// Entry types that pay out; the voucher carries their `pspReference` as payout reference.
const PAYOUT_TYPES: [&str; 2] = ["payout-scheduled", "scheduled-for-payout"];

/// One line of a voucher. Column names are documented in README.md, "Exporting".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalLine {
    /// `<ledger>-<date>`: unique per ledger date.
    pub voucher: String,
    pub ledger_id: String,
    pub ledger_date: String,
    /// The date's payout (`<ledgerId>-<n>`), empty when the date pays nothing out.
    pub payout_reference: String,
    pub line: u32,
    pub account: String,
    pub topic: String,
    /// Empty on a feed's balance line.
    pub entry_type: String,
    /// How many ledger entries the line sums.
    pub entries: u32,
    pub currency: String,
    pub debit: String,
    pub credit: String,
    /// Signed: positive is a debit. Exact: sums of `i64` amounts, in `i128`.
    pub amount_minor: i128,
    pub description: String,
    /// The sales unit's department and project (`[exporters.departments]`,
    /// `[exporters.projects]`), empty when none is configured for it (and on balance lines).
    pub department: String,
    pub project: String,
}

/// Entries that cannot be booked as one voucher.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("ledger {ledger} date {date}: entry seq {seq} ({topic}) is in {found}, the voucher in {expected}")]
    MixedCurrency {
        ledger: String,
        date: NaiveDate,
        topic: String,
        seq: i64,
        found: String,
        expected: String,
    },
    #[error("ledger {ledger} date {date}: entry seq {seq} ({topic}) belongs to ledger {other} or another date")]
    Foreign {
        ledger: String,
        date: NaiveDate,
        topic: String,
        seq: i64,
        other: String,
    },
}

/// The voucher of one ledger date (no lines when the date has no entries).
pub fn voucher(
    ledger_id: &str,
    date: NaiveDate,
    entries: &[ExportEntryRow],
    accounts: &Accounts,
) -> Result<Vec<JournalLine>, JournalError> {
    let Some(first) = entries.first() else {
        return Ok(Vec::new());
    };
    let currency = first.currency.clone();
    // (topic, entry type, department, project) -> (entries, sum); BTreeMap keeps the lines in
    // a stable order. Sums in i128: no sum of i64 amounts can overflow it, so every voucher
    // is exact.
    type Key<'a> = (&'a str, &'a str, &'a str, &'a str);
    let mut by_type: BTreeMap<Key<'_>, (u32, i128)> = BTreeMap::new();
    let mut payouts: Vec<&str> = Vec::new();
    for e in entries.iter().filter(|e| !accounts.skips(&e.entry_type)) {
        if e.ledger_id != ledger_id || e.ledger_date != Some(date) {
            return Err(JournalError::Foreign {
                ledger: ledger_id.to_owned(),
                date,
                topic: e.topic.clone(),
                seq: e.seq,
                other: e.ledger_id.clone(),
            });
        }
        if e.currency != currency {
            return Err(JournalError::MixedCurrency {
                ledger: ledger_id.to_owned(),
                date,
                topic: e.topic.clone(),
                seq: e.seq,
                found: e.currency.clone(),
                expected: currency,
            });
        }
        let (department, project) = accounts.dimensions(e.recipient_handle.as_deref());
        let slot = by_type
            .entry((e.topic.as_str(), e.entry_type.as_str(), department, project))
            .or_default();
        slot.0 += 1;
        slot.1 += i128::from(e.amount);
        if e.topic == "funds" && PAYOUT_TYPES.contains(&e.entry_type.as_str()) {
            payouts.push(&e.psp_reference);
        }
    }
    let voucher = format!("{ledger_id}-{date}");
    let payout_reference = payouts.join(" ");
    let mut lines = Vec::new();
    let mut push = |account: &str,
                    (topic, entry_type, department, project): Key<'_>,
                    n: u32,
                    amount: i128,
                    text: String| {
        // A line of nothing (say, a day whose payout brought the balance back to where it
        // began) is left out: bookkeeping systems refuse zero lines; the voucher balances.
        if amount == 0 {
            return;
        }
        lines.push(JournalLine {
            voucher: voucher.clone(),
            ledger_id: ledger_id.to_owned(),
            ledger_date: date.to_string(),
            payout_reference: payout_reference.clone(),
            line: 0,
            account: account.to_owned(),
            topic: topic.to_owned(),
            entry_type: entry_type.to_owned(),
            entries: n,
            currency: currency.clone(),
            debit: if amount > 0 {
                decimal(amount, &currency)
            } else {
                String::new()
            },
            credit: if amount < 0 {
                decimal(-amount, &currency)
            } else {
                String::new()
            },
            amount_minor: amount,
            description: text,
            department: department.to_owned(),
            project: project.to_owned(),
        });
    };
    for topic in ["funds", "fees"] {
        let mut net: i128 = 0;
        let mut count = 0;
        for (&key, &(n, sum)) in &by_type {
            let (t, entry_type, _, _) = key;
            if t != topic {
                continue;
            }
            net += sum;
            count += n;
            push(
                accounts.counterpart(entry_type),
                key,
                n,
                -sum,
                format!("Vipps MobilePay {topic} {ledger_id}: {entry_type} x{n}"),
            );
        }
        if count > 0 {
            push(
                accounts.balance(topic),
                (topic, "", "", ""),
                count,
                net,
                format!("Vipps MobilePay {topic} balance {ledger_id}, movement of {date}"),
            );
        }
    }
    for (i, line) in lines.iter_mut().enumerate() {
        line.line = i as u32 + 1;
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};

    use super::*;

    fn entry(topic: &str, seq: i64, entry_type: &str, amount: i64) -> ExportEntryRow {
        ExportEntryRow {
            ledger_id: "100001".into(),
            topic: topic.into(),
            seq,
            ledger_date: NaiveDate::from_ymd_opt(2026, 11, 20),
            time: Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap(),
            entry_type: entry_type.into(),
            psp_reference: format!("psp{seq}"),
            reference: None,
            currency: "NOK".into(),
            amount,
            balance_before: 0,
            balance_after: 0,
            recipient_handle: None,
        }
    }

    #[test]
    fn a_voucher_balances_and_books_unknown_types_on_the_fallback() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let mut payout = entry("funds", 5, "payout-scheduled", -9_500);
        payout.psp_reference = "100001-7".into();
        let entries = vec![
            entry("fees", 1, "capture-fee", -250),
            entry("fees", 2, "fees-retained", 250),
            entry("funds", 1, "capture", 10_000),
            entry("funds", 2, "fees-retained", -250),
            entry("funds", 3, "brand-new-type", -250),
            entry("funds", 4, "capture", 0),
            payout,
        ];
        let lines = voucher("100001", date, &entries, &Accounts::default()).unwrap();
        assert_eq!(lines.iter().map(|l| l.amount_minor).sum::<i128>(), 0);
        let new = lines
            .iter()
            .find(|l| l.entry_type == "brand-new-type")
            .unwrap();
        assert_eq!((new.account.as_str(), new.amount_minor), ("1579", 250));
        assert!(lines.iter().all(|l| l.payout_reference == "100001-7"));
        assert!(
            !lines.iter().any(|l| l.amount_minor == 0),
            "the funds balance moved by nothing: no line"
        );
        let sales = lines.iter().find(|l| l.entry_type == "capture").unwrap();
        assert_eq!((sales.credit.as_str(), sales.entries), ("100.00", 2));
        assert_eq!(
            lines.iter().map(|l| l.line).collect::<Vec<_>>(),
            (1..=6).collect::<Vec<_>>()
        );
    }

    #[test]
    fn entries_of_another_currency_are_refused_with_their_place() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let mut odd = entry("funds", 2, "capture", 5);
        odd.currency = "DKK".into();
        let err = voucher(
            "100001",
            date,
            &[entry("funds", 1, "capture", 5), odd],
            &Accounts::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("100001") && err.contains("seq 2") && err.contains("DKK"),
            "{err}"
        );
    }

    #[test]
    fn settlement_booking_clears_the_receivable_and_skipped_invoiced_fees_are_not_booked_twice() {
        use crate::config::{Booking, FeesInvoiced};
        let date = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let entries = vec![
            entry("fees", 1, "capture-fee", -250),
            entry("fees", 2, "fees-invoiced", 250),
            entry("funds", 1, "capture", 10_000),
            entry("funds", 2, "refund", -1_000),
            entry("funds", 3, "payout-scheduled", -9_000),
        ];
        let lines_of = |accounts: &Accounts| -> Vec<(String, String, i128)> {
            voucher("100001", date, &entries, accounts)
                .unwrap()
                .into_iter()
                .map(|l| (l.account, l.entry_type, l.amount_minor))
                .collect()
        };
        let gross = Accounts::default();
        let line = |a: &str, t: &str, n: i128| (a.to_owned(), t.to_owned(), n);
        // Gross: sales on 3000, the invoiced fees on 2400.
        assert_eq!(
            lines_of(&gross),
            [
                line("3000", "capture", -10_000),
                line("1940", "payout-scheduled", 9_000),
                line("3000", "refund", 1_000),
                line("7770", "capture-fee", 250),
                line("2400", "fees-invoiced", -250),
            ]
        );
        // Settlement: the shop booked the sales; captures and refunds clear its receivable.
        // Invoiced fees skipped: the fees balance keeps what the invoice will clear.
        let settlement = Accounts {
            booking: Booking::Settlement,
            fees_invoiced: FeesInvoiced::Skip,
            ..Accounts::default()
        };
        assert_eq!(
            lines_of(&settlement),
            [
                line("1500", "capture", -10_000),
                line("1940", "payout-scheduled", 9_000),
                line("1500", "refund", 1_000),
                line("7770", "capture-fee", 250),
                line("2471", "", -250),
            ]
        );
        for accounts in [gross, settlement] {
            let lines = voucher("100001", date, &entries, &accounts).unwrap();
            assert_eq!(lines.iter().map(|l| l.amount_minor).sum::<i128>(), 0);
        }
    }

    #[test]
    fn sales_units_with_a_department_get_lines_of_their_own() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let unit = |seq, handle: &str, amount| {
            let mut e = entry("funds", seq, "capture", amount);
            e.recipient_handle = Some(handle.into());
            e
        };
        let entries = vec![
            unit(1, "api:111111", 1_000),
            unit(2, "api:222222", 2_000),
            unit(3, "api:111111", 500),
            unit(4, "api:333333", 300),
        ];
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(h, v)| ((*h).to_owned(), (*v).to_owned()))
                .collect()
        };
        let accounts = Accounts {
            departments: map(&[("api:111111", "10"), ("api:222222", "20")]),
            projects: map(&[("api:222222", "4711")]),
            ..Accounts::default()
        };
        let lines = voucher("100001", date, &entries, &accounts).unwrap();
        let got: Vec<(&str, &str, &str, i128)> = lines
            .iter()
            .map(|l| {
                (
                    l.account.as_str(),
                    l.department.as_str(),
                    l.project.as_str(),
                    l.amount_minor,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("3000", "", "", -300),
                ("3000", "10", "", -1_500),
                ("3000", "20", "4711", -2_000),
                ("1571", "", "", 3_800),
            ]
        );
        let text = crate::export::gbat10::voucher(7, date, "100001", &lines).unwrap();
        let fields: Vec<Vec<&str>> = text.lines().map(|l| l.split(';').collect()).collect();
        assert_eq!((fields[2][23], fields[2][24]), ("4711", "20"));
        assert_eq!((fields[1][23], fields[1][24]), ("", "10"));
    }
}
