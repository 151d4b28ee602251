//! Journal vouchers as GBAT10, the semicolon-separated voucher import that Tripletex ("Mamut
//! GBAT10"), Visma eAccounting, PowerOffice Go and 24SevenOffice read.
//!
//! The layout, from Mamut's own description of the format ("Journal: GBAT10",
//! help.mamut.com, import_export/csv_formats/journal_formats/gbat10) and Tripletex's
//! ("Bilagsimport (GBAT10-import)", hjelp.tripletex.no): 30 fields per line, `;` between
//! them, no header line, no quoting, `.` as the decimal point. What this writes into each
//! (0-based, as Mamut numbers them):
//!
//! | # | field | value |
//! | --- | --- | --- |
//! | 0 | identification | `GBAT10` |
//! | 1 | voucher number (≤ 8 digits) | the voucher's number from `voucher_numbers`: given once per (ledger, date), kept across runs |
//! | 2 | voucher date | the ledger date, `YYYYMMDD` |
//! | 3 | voucher type (≤ 3 digits) | [`VOUCHER_TYPE`] (Tripletex keeps a number series per type: "Mamut 10") |
//! | 4, 5 | period, year | the ledger date's month and year |
//! | 6 | account (≤ 7 digits) | the journal line's account (must be digits) |
//! | 7 | VAT code | `0`: payment movements carry no VAT |
//! | 8 | amount (≤ 15 characters, 2 decimals) | the line's amount, positive for a debit |
//! | 9–19 | customer, supplier, contact, address, postcode, city, invoice, KID, due date, –, bank account | empty |
//! | 20 | description (≤ 100) | the journal line's description (`;` and control characters replaced, cut at 100) |
//! | 21, 22 | customer/supplier text, factoring | empty |
//! | 23, 24 | project (≤ 6 digits), department (≤ 4 digits) | the sales unit's, from `[exporters.projects]` and `[exporters.departments]` (by recipient handle), else empty |
//! | 25, 26 | payment terms, gross flag | empty |
//! | 27 | gross amount | the amount again (no VAT), which Tripletex reads when it makes the VAT lines |
//! | 28, 29 | IBAN, SWIFT | empty |

use chrono::{Datelike, NaiveDate};

use super::journal::JournalLine;

/// The voucher type every voucher is written with.
pub const VOUCHER_TYPE: u16 = 10;

/// Why a voucher cannot be written as GBAT10.
#[derive(Debug, thiserror::Error)]
pub enum Gbat10Error {
    #[error("ledger {ledger} date {date}: account {account:?} is not a number of at most 7 digits, as GBAT10 requires")]
    Account {
        ledger: String,
        date: NaiveDate,
        account: String,
    },
    #[error("ledger {ledger} date {date}: the amount {amount} is not one of GBAT10's (at most 15 characters, 2 decimals)")]
    Amount {
        ledger: String,
        date: NaiveDate,
        amount: String,
    },
    #[error("voucher number {0} is longer than GBAT10's 8 digits")]
    Number(i64),
}

/// The GBAT10 lines of one voucher (one per journal line), each ending in `\r\n`.
pub fn voucher(
    number: i64,
    date: NaiveDate,
    ledger: &str,
    lines: &[JournalLine],
) -> Result<String, Gbat10Error> {
    if !(1..=99_999_999).contains(&number) {
        return Err(Gbat10Error::Number(number));
    }
    let mut out = String::new();
    for line in lines {
        let account = &line.account;
        if account.is_empty() || account.len() > 7 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Gbat10Error::Account {
                ledger: ledger.to_owned(),
                date,
                account: account.clone(),
            });
        }
        let amount = two_decimals(line.amount_minor, &line.currency);
        if amount.len() > 15 || !amount.contains('.') {
            return Err(Gbat10Error::Amount {
                ledger: ledger.to_owned(),
                date,
                amount,
            });
        }
        let mut fields: [String; 30] = Default::default();
        fields[0] = "GBAT10".into();
        fields[1] = number.to_string();
        fields[2] = date.format("%Y%m%d").to_string();
        fields[3] = VOUCHER_TYPE.to_string();
        fields[4] = date.month().to_string();
        fields[5] = date.year().to_string();
        fields[6] = account.clone();
        fields[7] = "0".into();
        fields[8] = amount.clone();
        fields[20] = text(&line.description, 100);
        fields[23] = line.project.clone();
        fields[24] = line.department.clone();
        fields[27] = amount;
        out.push_str(&fields.join(";"));
        out.push_str("\r\n");
    }
    Ok(out)
}

/// The amount with exactly two decimals (`-1234.56`; a currency without minor units gets
/// `.00`); a currency with three decimals gives a text without the point's two digits, which
/// the caller refuses.
fn two_decimals(minor: i128, currency: &str) -> String {
    let text = super::decimal(minor, currency);
    match text.split_once('.') {
        None => format!("{text}.00"),
        Some((_, fraction)) if fraction.len() == 2 => text,
        Some(_) => String::new(),
    }
}

/// Free text as a GBAT10 field: no `;` (the separator) and no control characters, at most
/// `max` characters.
fn text(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            if c == ';' {
                ','
            } else if c.is_control() {
                ' '
            } else {
                c
            }
        })
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(account: &str, amount: i128, description: &str) -> JournalLine {
        JournalLine {
            voucher: "100001-2026-01-06".into(),
            ledger_id: "100001".into(),
            ledger_date: "2026-01-06".into(),
            payout_reference: String::new(),
            line: 1,
            account: account.into(),
            topic: "funds".into(),
            entry_type: "capture".into(),
            entries: 1,
            currency: "NOK".into(),
            debit: String::new(),
            credit: String::new(),
            amount_minor: amount,
            description: description.into(),
            department: String::new(),
            project: String::new(),
        }
    }

    #[test]
    fn lines_have_thirty_fields_and_the_voucher_balances() {
        let date = NaiveDate::from_ymd_opt(2026, 1, 6).unwrap();
        let text = voucher(
            42,
            date,
            "100001",
            &[
                line("3000", -1_041_650, "sales; x11\n"),
                line("1571", 1_041_650, "balance"),
            ],
        )
        .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "GBAT10;42;20260106;10;1;2026;3000;0;-10416.50;;;;;;;;;;;;sales, x11 ;;;;;;;-10416.50;;"
        );
        assert!(lines.iter().all(|l| l.split(';').count() == 30));
        assert!(text.ends_with("\r\n"));
        let err = voucher(42, date, "100001", &[line("31A0", 5, "x")]).unwrap_err();
        assert!(err.to_string().contains("31A0"), "{err}");
        assert!(voucher(100_000_000, date, "100001", &[]).is_err());
        let long = voucher(
            1,
            date,
            "100001",
            &[line("3000", i128::from(i64::MAX), "x")],
        );
        assert!(long.unwrap_err().to_string().contains("15 characters"));
        let mut yen = line("3000", 1500, "x");
        yen.currency = "JPY".into();
        assert!(voucher(1, date, "1", &[yen]).unwrap().contains(";1500.00;"));
        let mut dinar = line("3000", 1500, "x");
        dinar.currency = "BHD".into();
        assert!(voucher(1, date, "1", &[dinar]).is_err());
    }
}
