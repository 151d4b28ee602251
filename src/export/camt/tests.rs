//! camt.053 statements checked against the official schema (in process, and by xmllint as a
//! second opinion where it is installed), read back, and refused when they cannot be one
//! statement or do not validate.

use chrono::TimeZone as _;
use quick_xml::events::Event;
use quick_xml::Reader;

use super::*;
use crate::export::xsd::{second_opinion, Rule};

const LEDGER: &str = "302321";

fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
}

/// Entries chained from `opening`: (entry type, amount, psp reference, reference).
fn chain(
    opening: i64,
    currency: &str,
    items: &[(&str, i64, &str, Option<&str>)],
) -> Vec<ExportEntryRow> {
    let mut balance = opening;
    items
        .iter()
        .enumerate()
        .map(|(i, &(entry_type, amount, psp, reference))| {
            let before = balance;
            balance += amount;
            ExportEntryRow {
                ledger_id: LEDGER.to_owned(),
                topic: "funds".to_owned(),
                seq: 100 + i as i64,
                ledger_date: Some(date()),
                time: Utc.with_ymd_and_hms(2026, 11, 20, 9, i as u32, 0).unwrap(),
                entry_type: entry_type.to_owned(),
                psp_reference: psp.to_owned(),
                reference: reference.map(str::to_owned),
                currency: currency.to_owned(),
                amount,
                balance_before: before,
                balance_after: balance,
                recipient_handle: None,
            }
        })
        .collect()
}

fn statement<'a>(
    currency: &'a str,
    entries: &'a [ExportEntryRow],
    opening: i64,
    closing: i64,
) -> Statement<'a> {
    Statement {
        ledger_id: LEDGER,
        currency,
        date: date(),
        opening_balance: opening,
        closing_balance: closing,
        entries,
        created_at: Utc.with_ymd_and_hms(2026, 11, 21, 3, 0, 0).unwrap(),
        owner: Some(("business:NO:ORG", "987654321")),
    }
}

/// A day with a negative balance, an unknown entry type, escaping and a payout to zero.
fn busy_day() -> Vec<ExportEntryRow> {
    chain(
        5000,
        "NOK",
        &[
            (
                "capture",
                49900,
                "6119999901",
                Some("Ørsta Kafé & <Bakeri> \"1\""),
            ),
            ("refund", -60000, "6119999902", Some("order-17")),
            ("capture", 30100, "6119999903", None),
            ("some-new-type", 1000, "", Some(&"x".repeat(64))),
            ("payout-scheduled", -26000, "P-2026-11-20", None),
        ],
    )
}

/// Validates `document` against the official schema in process and, where xmllint is
/// installed, with xmllint too (the two must agree); Err lists the violations.
fn schema_check(document: &[u8]) -> Result<(), String> {
    second_opinion::camt053(document).map_err(|violations| {
        let lines: Vec<String> = violations.iter().map(ToString::to_string).collect();
        lines.join("\n")
    })
}

fn assert_valid(document: &[u8]) {
    if let Err(e) = schema_check(document) {
        panic!("{e}\n{}", String::from_utf8_lossy(document));
    }
}

/// Every element's text by its path (`Stmt/Bal/Amt`), attributes as `path@name`.
fn fields(document: &[u8]) -> Vec<(String, String)> {
    let text = std::str::from_utf8(document).unwrap();
    let mut reader = Reader::from_str(text);
    let (mut path, mut out): (Vec<String>, Vec<(String, String)>) = (vec![], vec![]);
    let mut current = String::new();
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) => {
                path.push(String::from_utf8(e.local_name().as_ref().to_vec()).unwrap());
                for a in e.attributes() {
                    let a = a.unwrap();
                    let key = String::from_utf8(a.key.as_ref().to_vec()).unwrap();
                    let value = String::from_utf8(a.value.to_vec()).unwrap();
                    out.push((format!("{}@{key}", path.join("/")), value));
                }
                current.clear();
            }
            Event::Text(t) => current.push_str(&t.decode().unwrap()),
            Event::GeneralRef(r) => current.push(match &*r.decode().unwrap() {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                other => panic!("unexpected entity {other}"),
            }),
            Event::End(_) => {
                if !current.trim().is_empty() {
                    out.push((path.join("/"), std::mem::take(&mut current)));
                }
                current.clear();
                path.pop();
            }
            Event::Eof => return out,
            _ => {}
        }
    }
}

fn values<'a>(fields: &'a [(String, String)], suffix: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(p, _)| p.ends_with(suffix))
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn a_day_of_mixed_entries_validates_against_the_camt_053_schema() {
    let entries = busy_day();
    let document = write(&statement("NOK", &entries, 5000, 0)).unwrap();
    assert_valid(&document);
    let text = String::from_utf8(document).unwrap();
    assert!(text.contains("Ørsta Kafé &amp; &lt;Bakeri&gt;"), "{text}");
}

#[test]
fn an_empty_date_validates_with_equal_balances_and_no_entries() {
    let document = write(&statement("NOK", &[], -1250, -1250)).unwrap();
    assert_valid(&document);
    let f = fields(&document);
    assert!(values(&f, "Ntry/Amt").is_empty());
    assert!(values(&f, "TxsSummry/TtlNtries/NbOfNtries").is_empty());
    assert_eq!(values(&f, "Bal/Amt"), ["12.50", "12.50"]);
    assert_eq!(values(&f, "Bal/CdtDbtInd"), ["DBIT", "DBIT"]);
}

#[test]
fn a_zero_digit_currency_validates_with_whole_amounts() {
    let entries = chain(
        0,
        "JPY",
        &[("capture", 1500, "1", None), ("refund", -2000, "2", None)],
    );
    let document = write(&statement("JPY", &entries, 0, -500)).unwrap();
    assert_valid(&document);
    let f = fields(&document);
    assert_eq!(values(&f, "Ntry/Amt"), ["1500", "2000"]);
    assert_eq!(values(&f, "Ntry/Amt@Ccy"), ["JPY", "JPY"]);
    assert_eq!(values(&f, "Bal/Amt"), ["0", "500"]);
}

#[test]
fn balances_totals_and_entries_read_back_as_given() {
    let entries = busy_day();
    let document = write(&statement("NOK", &entries, 5000, 0)).unwrap();
    let f = fields(&document);
    assert_eq!(values(&f, "Bal/Tp/CdOrPrtry/Cd"), ["OPBD", "CLBD"]);
    assert_eq!(values(&f, "Bal/Amt"), ["50.00", "0.00"]);
    assert_eq!(values(&f, "Bal/Amt@Ccy"), ["NOK", "NOK"]);
    assert_eq!(values(&f, "Bal/CdtDbtInd"), ["CRDT", "CRDT"]);
    assert_eq!(
        values(&f, "Ntry/NtryRef"),
        ["100", "101", "102", "103", "104"]
    );
    assert_eq!(
        values(&f, "Ntry/Amt"),
        ["499.00", "600.00", "301.00", "10.00", "260.00"]
    );
    assert_eq!(
        values(&f, "Ntry/CdtDbtInd"),
        ["CRDT", "DBIT", "CRDT", "CRDT", "DBIT"]
    );
    assert_eq!(
        values(&f, "BkTxCd/Prtry/Cd"),
        [
            "capture",
            "refund",
            "capture",
            "some-new-type",
            "payout-scheduled"
        ]
    );
    assert_eq!(values(&f, "TtlNtries/NbOfNtries"), ["5"]);
    assert_eq!(values(&f, "TtlNtries/Sum"), ["1670.00"]);
    assert_eq!(values(&f, "TtlNtries/TtlNetNtryAmt"), ["50.00"]);
    assert_eq!(values(&f, "TtlNtries/CdtDbtInd"), ["DBIT"]);
    assert_eq!(values(&f, "TtlCdtNtries/Sum"), ["810.00"]);
    assert_eq!(values(&f, "TtlDbtNtries/Sum"), ["860.00"]);
    assert_eq!(
        values(&f, "Refs/EndToEndId"),
        [
            "Ørsta Kafé & <Bakeri> \"1\"",
            "order-17",
            "NOTPROVIDED",
            "NOTPROVIDED",
            "NOTPROVIDED"
        ]
    );
    // The entry without a psp reference has no AcctSvcrRef; the 64-character reference
    // that does not fit EndToEndId is kept whole in AddtlNtryInf.
    assert_eq!(values(&f, "Ntry/AcctSvcrRef").len(), 4);
    let info = values(&f, "Ntry/AddtlNtryInf");
    assert_eq!(
        info[3],
        format!("some-new-type; reference: {}", "x".repeat(64))
    );
    assert_eq!(values(&f, "Ownr/Id/OrgId/Othr/Id"), ["987654321"]);
    assert_eq!(values(&f, "GrpHdr/MsgId"), ["VLS-302321-2026-11-20"]);
    assert_eq!(values(&f, "Stmt/Id"), ["302321-2026-11-20"]);
}

#[test]
fn a_negative_opening_balance_is_a_debit_balance() {
    let entries = chain(-5100, "NOK", &[("capture", 30100, "1", None)]);
    let document = write(&statement("NOK", &entries, -5100, 25000)).unwrap();
    assert_valid(&document);
    let f = fields(&document);
    assert_eq!(values(&f, "Bal/Amt"), ["51.00", "250.00"]);
    assert_eq!(values(&f, "Bal/CdtDbtInd"), ["DBIT", "CRDT"]);
}

#[test]
fn an_entry_of_another_ledger_is_rejected_naming_ledger_and_seq() {
    let mut entries = busy_day();
    entries[2].ledger_id = "999".to_owned();
    let err = write(&statement("NOK", &entries, 5000, 0)).unwrap_err();
    assert!(
        matches!(&err, CamtError::ForeignEntry { ledger, seq: 102, field: "ledger_id", .. } if ledger == "999"),
        "{err:?}"
    );
    assert!(err.to_string().contains("seq 102"), "{err}");
}

#[test]
fn a_fees_entry_or_another_currency_is_rejected() {
    let mut entries = busy_day();
    entries[1].topic = "fees".to_owned();
    let err = write(&statement("NOK", &entries, 5000, 0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ledger 302321 seq 101: topic is \"fees\", the statement is for \"funds\""
    );
    let mut entries = busy_day();
    entries[4].currency = "DKK".to_owned();
    let err = write(&statement("NOK", &entries, 5000, 0)).unwrap_err();
    assert!(
        matches!(
            err,
            CamtError::ForeignEntry {
                seq: 104,
                field: "currency",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_broken_chain_is_rejected_naming_ledger_and_seq() {
    let mut entries = busy_day();
    entries[3].balance_before += 1;
    entries[3].balance_after += 1;
    let err = write(&statement("NOK", &entries, 5000, 0)).unwrap_err();
    assert!(
        matches!(err, CamtError::ChainBroken { seq: Some(103), .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("ledger 302321 seq 103:"),
        "{err}"
    );

    let mut entries = busy_day();
    entries[1].balance_after += 1;
    let err = write(&statement("NOK", &entries, 5000, 0)).unwrap_err();
    assert!(
        matches!(err, CamtError::ChainBroken { seq: Some(101), .. }),
        "{err:?}"
    );
}

#[test]
fn balances_the_entries_do_not_connect_are_rejected() {
    let entries = busy_day();
    let err = write(&statement("NOK", &entries, 4000, 0)).unwrap_err();
    assert!(
        matches!(err, CamtError::ChainBroken { seq: Some(100), .. }),
        "{err:?}"
    );
    let err = write(&statement("NOK", &entries, 5000, 1)).unwrap_err();
    assert!(
        matches!(err, CamtError::ChainBroken { seq: Some(104), .. }),
        "{err:?}"
    );
    let err = write(&statement("NOK", &[], 5000, 0)).unwrap_err();
    assert!(
        matches!(err, CamtError::ChainBroken { seq: None, .. }),
        "{err:?}"
    );
}

#[test]
fn an_identifier_the_schema_cannot_hold_is_an_error_naming_the_field() {
    let mut entries = busy_day();
    entries[2].psp_reference = "p".repeat(36);
    let err = write(&statement("NOK", &entries, 5000, 0)).unwrap_err();
    assert!(
        matches!(
            err,
            CamtError::InvalidField {
                seq: Some(102),
                field: "psp_reference",
                ..
            }
        ),
        "{err:?}"
    );
    let mut entries = busy_day();
    entries[0].entry_type = "bad\u{1}type".to_owned();
    let err = write(&statement("NOK", &entries, 5000, 0)).unwrap_err();
    assert!(
        matches!(
            err,
            CamtError::InvalidField {
                seq: Some(100),
                field: "entry_type",
                ..
            }
        ),
        "{err:?}"
    );
    let err = write(&statement("nok", &[], 0, 0)).unwrap_err();
    assert!(
        matches!(
            err,
            CamtError::InvalidField {
                field: "currency",
                ..
            }
        ),
        "{err:?}"
    );
    let err = write(&statement("NOK", &[], i64::MAX, i64::MAX)).unwrap_err();
    assert!(
        matches!(
            err,
            CamtError::InvalidField {
                field: "opening_balance",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_long_ledger_id_gets_stable_short_ids() {
    let ledger = "ledger-with-a-rather-long-id-000001";
    let mut s = statement("NOK", &[], 0, 0);
    s.ledger_id = &ledger[..34];
    let document = write(&s).unwrap();
    assert_valid(&document);
    let f = fields(&document);
    let msg_id = values(&f, "GrpHdr/MsgId")[0];
    assert!(
        msg_id.starts_with("VLS-H") && msg_id.ends_with("-2026-11-20"),
        "{msg_id}"
    );
    assert!(values(&f, "Stmt/Id")[0].starts_with('H'));
    assert_eq!(
        fields(&write(&s).unwrap()),
        f,
        "the same statement, the same ids"
    );
    s.ledger_id = ledger;
    let err = write(&s).unwrap_err();
    assert!(
        matches!(
            err,
            CamtError::InvalidField {
                field: "ledger_id",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn long_free_text_is_cut_to_500_characters_and_still_validates() {
    let long = "Ø".repeat(600);
    let entries = chain(0, "NOK", &[("capture", 100, "1", Some(&long))]);
    let document = write(&statement("NOK", &entries, 0, 100)).unwrap();
    assert_valid(&document);
    let f = fields(&document);
    let info = values(&f, "Ntry/AddtlNtryInf")[0];
    assert_eq!(info.chars().count(), 500);
    assert!(info.starts_with("capture; reference: ØØ") && info.ends_with('…'));
    assert_eq!(values(&f, "Refs/EndToEndId"), ["NOTPROVIDED"]);
}

#[test]
fn the_schema_check_rejects_a_document_missing_a_required_element() {
    let entries = busy_day();
    let document = String::from_utf8(write(&statement("NOK", &entries, 5000, 0)).unwrap()).unwrap();
    assert!(schema_check(document.as_bytes()).is_ok());
    let broken = document.replacen("<Sts>BOOK</Sts>", "", 1);
    assert_ne!(broken, document);
    let err = schema_check(broken.as_bytes()).unwrap_err();
    assert_eq!(
        err,
        "/Document/BkToCstmrStmt/Stmt[1]/Ntry[1]: missing Sts before BookgDt (missing element)"
    );
    let negative = document.replacen("<Amt Ccy=\"NOK\">499.00", "<Amt Ccy=\"NOK\">-499.00", 1);
    assert_ne!(negative, document);
    let err = schema_check(negative.as_bytes()).unwrap_err();
    assert!(
        err.starts_with("/Document/BkToCstmrStmt/Stmt[1]/Ntry[1]/Amt: "),
        "{err}"
    );
}

#[test]
fn a_statement_that_does_not_validate_is_an_error_naming_ledger_date_and_path() {
    let entries = busy_day();
    let s = statement("NOK", &entries, 5000, 0);
    let document = String::from_utf8(write(&s).unwrap()).unwrap();
    assert_eq!(
        validated(&s, document.clone().into_bytes()).unwrap(),
        document.as_bytes()
    );
    let broken = document.replace("<Sts>BOOK</Sts>", "<Sts>BOOKED</Sts>");
    let err = validated(&s, broken.into_bytes()).unwrap_err();
    let CamtError::Schema {
        ledger,
        date,
        violations,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!((ledger.as_str(), *date), (LEDGER, s.date));
    assert_eq!(violations.len(), 5, "one per entry: {violations:#?}");
    assert!(violations.iter().all(|v| v.rule == Rule::Enumeration));
    let message = err.to_string();
    assert!(
        message.starts_with(
            "ledger 302321 2026-11-20: the statement does not validate against camt.053.001.02: \
             /Document/BkToCstmrStmt/Stmt[1]/Ntry[1]/Sts: \"BOOKED\" is not one of the values"
        ),
        "{message}"
    );
    assert!(message.ends_with("; and 2 more"), "{message}");
}
