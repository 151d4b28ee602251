//! The Vipps settlement report (`SettlementReport-3.0`), rebuilt from the Report API's
//! payouts, for bookkeeping systems that import it (Tripletex's "Vipps" import reads the XML),
//! as XML ([`write`]) and as the CSV Vipps delivered beside it ([`write_csv`]).
//! One `SettlementDetailsInfo` per ledger, one `SettlementInfo` per payout, one
//! `TransactionInfo` per transaction the payout settles (`payout_transactions`). Every
//! document is validated against the official schema before it is returned.
//!
//! Field by field, where each value comes from; the Report API does not carry a merchant's
//! organisation name or address:
//!
//! | element | value |
//! | --- | --- |
//! | `SaleUnitName` | the ledger's sales units' names, ` / ` between them (the ledger id if none) |
//! | `SerialNumber` | the numbers of their recipient handles (`api:123456` → `123456`, `NO:92273` → `92273`), `,` between them |
//! | `OrganizationName` | the first sales unit's name (the API has no organisation name) |
//! | `OrganizationNumber` | the ledger owner's business id (`owner_id`) |
//! | `MainAddress`, `MainAddressZipCode`, `MainAddressCity` | empty: not in the Report API (the schema requires the elements, not a value) |
//! | `MainAddressCountryCode` | from the owner's scheme (`business:NO:ORG` → `NOR`, `DK` → `DNK`, `FI` → `FIN`), else empty |
//! | `ReportDateFrom`, `ReportDateTo` | the first and last ledger date the payouts cover |
//! | `SettlementAccountNum` | the ledger's payout bank account number |
//! | `SettlementDate` | the payout's ledger date |
//! | `SettlementID` | the payout number: `<ledgerId>-<n>` → `n` |
//! | `SettlementType` | `Net` when the payout retained fees, else `Gross` |
//! | `TransactionTime` | the transaction's first entry, in Oslo time, as the 3.0 reports are |
//! | `TransactionCaptureAmount`, `TransactionRefundAmount` | its captures, its refunds; disputes and adjustments (which the schema has no column for) count as a refund when negative, as a capture when positive, so that gross stays the sum of what moved |
//! | `TransactionFeeAmount` | the fees charged for it, positive |
//! | `TransactionNetAmount` | gross minus fee |
//! | `TransactionID` | its `pspReference` (must be digits: the schema's `long`) |
//! | `OrderID` | its `reference`, empty if none |
//! | `SettledAmount` | what the payout paid out |
//! | `VippsInfo` | Vipps MobilePay's name and address, as the official examples give them |

use chrono::{DateTime, NaiveDate, Utc};

use super::decimal;
use super::xml::{Io, Xml};
use super::xsd;
use crate::config::CsvFormulas;
use crate::store::export_rows::{LedgerParty, PayoutRow, PayoutTransactionRow};

pub const NAMESPACE: &str = "http://vipps.no/xmlschema/SettlementReport-3.0.xsd";

/// One ledger's payouts and the transactions they settle.
pub struct LedgerPayouts<'a> {
    pub ledger_id: &'a str,
    pub party: &'a LedgerParty,
    pub payouts: &'a [PayoutRow],
    /// Of all `payouts`, any order.
    pub transactions: &'a [PayoutTransactionRow],
}

/// Why a settlement report could not be written; each names the ledger.
#[derive(Debug, thiserror::Error)]
pub enum SettlementError {
    #[error("no payout in the range: a settlement report needs at least one")]
    NoPayout,
    /// The schema types the value as a number (`long`), and it is not one.
    #[error("ledger {ledger}: {field} {value:?} is not a number, which the settlement report's schema requires")]
    NotANumber {
        ledger: String,
        field: &'static str,
        value: String,
    },
    #[error("the settlement report does not validate against SettlementReport-3.0: {}", .0.iter().take(3).map(|v| v.to_string()).collect::<Vec<_>>().join("; "))]
    Schema(Vec<xsd::Violation>),
    #[error("writing the settlement report")]
    Write(#[from] std::io::Error),
}

/// The report of `ledgers` (at least one payout among them), validated.
pub fn write(ledgers: &[LedgerPayouts<'_>]) -> Result<Vec<u8>, SettlementError> {
    if ledgers.iter().all(|l| l.payouts.is_empty()) {
        return Err(SettlementError::NoPayout);
    }
    let mut out = Xml::new();
    out.0.write_event(quick_xml::events::Event::Decl(
        quick_xml::events::BytesDecl::new("1.0", Some("UTF-8"), Some("yes")),
    ))?;
    let mut root = quick_xml::events::BytesStart::new("SettlementReport");
    root.push_attribute(("xmlns", NAMESPACE));
    out.0.write_event(quick_xml::events::Event::Start(root))?;
    for ledger in ledgers.iter().filter(|l| !l.payouts.is_empty()) {
        details(&mut out, ledger)?;
    }
    vipps_info(&mut out)?;
    out.close(&["SettlementReport"])?;
    let document = out.into_inner();
    xsd::settlement_report()
        .validate(&document)
        .map_err(SettlementError::Schema)?;
    Ok(document)
}

fn details(out: &mut Xml, l: &LedgerPayouts<'_>) -> Result<(), SettlementError> {
    let units = l.party.sales_units.as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = units.iter().filter_map(|u| u["name"].as_str()).collect();
    let serials: Vec<&str> = units
        .iter()
        .filter_map(|u| u["recipientHandle"].as_str())
        .map(|h| h.rsplit(':').next().unwrap_or(h))
        .collect();
    let first = &l.payouts[0];
    let from = l.payouts.iter().filter_map(|p| p.first_ledger_date).min();
    let to = l.payouts.iter().filter_map(|p| p.last_ledger_date).max();
    out.open(&["SettlementDetailsInfo"])?;
    let sale_unit = if names.is_empty() {
        l.ledger_id.to_owned()
    } else {
        names.join(" / ")
    };
    out.text(&["SaleUnitName"], &sale_unit)?;
    let serial = if serials.is_empty() {
        l.ledger_id.to_owned()
    } else {
        serials.join(",")
    };
    out.text(&["SerialNumber"], &serial)?;
    out.text(
        &["OrganizationName"],
        names.first().copied().unwrap_or_default(),
    )?;
    out.text(
        &["OrganizationNumber"],
        l.party.owner_id.as_deref().unwrap_or_default(),
    )?;
    out.text(&["MainAddress"], "")?;
    out.text(&["MainAddressZipCode"], "")?;
    out.text(&["MainAddressCity"], "")?;
    out.text(
        &["MainAddressCountryCode"],
        country_code(l.party.owner_scheme.as_deref()),
    )?;
    out.open(&["PaymentsInfo"])?;
    out.text(&["ReportDateFrom"], &date(from))?;
    out.text(&["ReportDateTo"], &date(to))?;
    out.text(&["SettlementCurrencyCode"], &first.currency)?;
    out.text(
        &["SettlementAccountNum"],
        first.bank_account_id.as_deref().unwrap_or_default(),
    )?;
    for payout in l.payouts {
        settlement(out, l, payout)?;
    }
    out.text(&["NumOfSettlements"], &l.payouts.len().to_string())?;
    out.close(&["SettlementDetailsInfo", "PaymentsInfo"])?;
    Ok(())
}

/// Sums of one payout's transactions, as the report shows them.
#[derive(Default)]
struct Totals {
    transactions: usize,
    capture: i128,
    refund: i128,
    fee: i128,
}

fn settlement(out: &mut Xml, l: &LedgerPayouts<'_>, p: &PayoutRow) -> Result<(), SettlementError> {
    let number = |field: &'static str, value: &str| -> Result<String, SettlementError> {
        match value.parse::<i64>() {
            Ok(n) => Ok(n.to_string()),
            Err(_) => Err(SettlementError::NotANumber {
                ledger: l.ledger_id.to_owned(),
                field,
                value: value.to_owned(),
            }),
        }
    };
    let id = p.payout_reference.rsplit('-').next().unwrap_or_default();
    let c = p.currency.as_str();
    out.open(&["SettlementInfo"])?;
    out.text(&["SettlementDate"], &date(p.last_ledger_date))?;
    out.text(&["SettlementID"], &number("the payout number", id)?)?;
    out.text(&["SettlementCurrencyCode"], c)?;
    let kind = if p.fees_retained.0 != 0 {
        "Net"
    } else {
        "Gross"
    };
    out.text(&["SettlementType"], kind)?;
    let mut totals = Totals::default();
    for t in l
        .transactions
        .iter()
        .filter(|t| t.payout_reference == p.payout_reference)
    {
        let (capture, refund, fee) = amounts(t);
        let gross = capture + refund;
        out.open(&["TransactionInfo"])?;
        out.text(&["TransactionTime"], &oslo_time(t.first_time))?;
        out.text(&["TransactionCaptureAmount"], &decimal(capture, c))?;
        out.text(&["TransactionRefundAmount"], &decimal(refund, c))?;
        out.text(&["TransactionGrossAmount"], &decimal(gross, c))?;
        out.text(&["TransactionNetAmount"], &decimal(gross - fee, c))?;
        out.text(&["TransactionFeeAmount"], &decimal(fee, c))?;
        out.text(&["SettlementCurrencyCode"], c)?;
        out.text(
            &["TransactionID"],
            &number("pspReference", &t.psp_reference)?,
        )?;
        out.text(&["OrderID"], t.reference.as_deref().unwrap_or_default())?;
        out.close(&["TransactionInfo"])?;
        totals.transactions += 1;
        totals.capture += capture;
        totals.refund += refund;
        totals.fee += fee;
    }
    let gross = totals.capture + totals.refund;
    out.text(&["NumOfTransactions"], &totals.transactions.to_string())?;
    out.text(&["CaptureSettlementAmount"], &decimal(totals.capture, c))?;
    out.text(&["RefundSettlementAmount"], &decimal(totals.refund, c))?;
    out.text(&["GrossSettlementAmount"], &decimal(gross, c))?;
    out.text(&["NetSettlementAmount"], &decimal(gross - totals.fee, c))?;
    out.text(&["FeeSettlementAmount"], &decimal(totals.fee, c))?;
    out.text(&["SettledAmount"], &decimal(p.paid_out.0, c))?;
    out.close(&["SettlementInfo"])?;
    Ok(())
}

/// A transaction's capture (≥ 0), refund (≤ 0) and fee (positive when charged), as both
/// formats show them: disputes and adjustments count as a refund when negative and as a
/// capture when positive.
fn amounts(t: &PayoutTransactionRow) -> (i128, i128, i128) {
    let other = t.other.0;
    (
        t.captured.0 + other.max(0),
        t.refunded.0 + other.min(0),
        -t.fees.0,
    )
}

/// The settlement report as CSV, in the sections of the official example
/// (`settlement-report.csv`): the merchant, Vipps MobilePay, then per ledger a
/// `SettlementInfo` line per payout and a `TransactionInfo` line per transaction. Amounts with
/// `.` as the decimal point (the example writes one total with a `,`, which splits the field);
/// dates `DD.MM.YYYY`; `Net` is `Gross + Fee + Refund`, what the transaction added to the
/// payout (the example's refund line says `0.00`).
///
/// Names and order references come from the API: a cell a spreadsheet would run as a formula
/// gets a leading `'` unless `formulas` is [`CsvFormulas::Raw`] (README, "Exporting").
pub fn write_csv(
    ledgers: &[LedgerPayouts<'_>],
    formulas: CsvFormulas,
) -> Result<Vec<u8>, SettlementError> {
    if ledgers.iter().all(|l| l.payouts.is_empty()) {
        return Err(SettlementError::NoPayout);
    }
    let mut out = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(Vec::new());
    let mut row = |cells: &[&str]| {
        let cells = cells.iter().map(|c| match formulas {
            CsvFormulas::Neutralise => super::neutralise(c).into_owned(),
            CsvFormulas::Raw => (*c).to_owned(),
        });
        out.write_record(cells).map_err(std::io::Error::other)
    };
    for l in ledgers.iter().filter(|l| !l.payouts.is_empty()) {
        let units = l.party.sales_units.as_array().cloned().unwrap_or_default();
        let unit = |handle: Option<&str>| -> (String, String) {
            let found = units
                .iter()
                .find(|u| handle.is_some() && u["recipientHandle"].as_str() == handle)
                .or_else(|| units.first());
            let name = found
                .and_then(|u| u["name"].as_str())
                .unwrap_or(l.ledger_id)
                .to_owned();
            let serial = found
                .and_then(|u| u["recipientHandle"].as_str())
                .map(|h| h.rsplit(':').next().unwrap_or(h).to_owned())
                .unwrap_or_default();
            (name, serial)
        };
        let (merchant, serial) = unit(None);
        row(&["OrganizationNumber", "MerchantName"])?;
        row(&[l.party.owner_id.as_deref().unwrap_or_default(), &merchant])?;
        row(&[
            "Name",
            "VisitingAddress",
            "Postbox",
            "Zipno",
            "Place",
            "Country",
            "CompanyNumber",
        ])?;
        row(&[
            "Vipps MobilePay AS",
            "Dronning Eufemias gate 42",
            "",
            "0191",
            "Oslo",
            "Norway",
            "918713867",
        ])?;
        row(&[
            "SettlementInfo",
            "SalesUnitName",
            "SaleUnitNumber",
            "SettlementDate",
            "SettlementID",
            "SettlementAccount",
            "Gross",
            "Currency",
            "Fee",
            "Refund",
            "Net",
            "NumberOfTransactions",
        ])?;
        let mut sections = Vec::new();
        for p in l.payouts {
            let c = p.currency.as_str();
            let id = p
                .payout_reference
                .rsplit('-')
                .next()
                .unwrap_or_default()
                .to_owned();
            let date = p
                .last_ledger_date
                .map(|d| d.format("%d.%m.%Y").to_string())
                .unwrap_or_default();
            let mine: Vec<&PayoutTransactionRow> = l
                .transactions
                .iter()
                .filter(|t| t.payout_reference == p.payout_reference)
                .collect();
            let (mut gross, mut fee, mut refund) = (0i128, 0i128, 0i128);
            let mut lines = Vec::new();
            for t in &mine {
                let (capture, refunded, charged) = amounts(t);
                gross += capture;
                refund += refunded;
                fee -= charged;
                let (name, number) = unit(t.recipient_handle.as_deref());
                let sold = t
                    .first_time
                    .with_timezone(&chrono_tz::Europe::Oslo)
                    .format("%d.%m.%Y")
                    .to_string();
                lines.push(vec![
                    "TransactionInfo".to_owned(),
                    sold,
                    name,
                    number,
                    t.psp_reference.clone(),
                    id.clone(),
                    t.reference.clone().unwrap_or_default(),
                    date.clone(),
                    decimal(capture, c),
                    c.to_owned(),
                    decimal(-charged, c),
                    decimal(refunded, c),
                    decimal(capture - charged + refunded, c),
                ]);
            }
            row(&[
                "SettlementInfo",
                &merchant,
                &serial,
                &date,
                &id,
                p.bank_account_id.as_deref().unwrap_or_default(),
                &decimal(gross, c),
                c,
                &decimal(fee, c),
                &decimal(refund, c),
                &decimal(p.paid_out.0, c),
                &mine.len().to_string(),
            ])?;
            sections.push(lines);
        }
        row(&[
            "FeeInfo",
            "SettlementDate",
            "SaleUnitName",
            "SaleUnitNumber",
            "FeeAccount",
            "Fee",
            "Currency",
        ])?;
        row(&[
            "TransactionInfo",
            "SalesDate",
            "SaleUnitName",
            "SaleUnitNumber",
            "TransactionId",
            "SettlementId",
            "OrderID",
            "SettlementDate",
            "Gross",
            "Currency",
            "Fee",
            "Refund",
            "Net",
        ])?;
        for line in sections.iter().flatten() {
            let cells: Vec<&str> = line.iter().map(String::as_str).collect();
            row(&cells)?;
        }
    }
    out.into_inner()
        .map_err(|e| SettlementError::Write(std::io::Error::other(e.to_string())))
}

fn vipps_info(out: &mut Xml) -> Io {
    out.open(&["VippsInfo"])?;
    out.text(&["Name"], "Vipps MobilePay AS")?;
    out.text(&["WebSite"], "https://vippsmobilepay.com")?;
    out.text(&["VisitingAddress"], "Dronning Eufemias gate 42")?;
    out.text(&["PostBox"], "")?;
    out.text(&["PostAddress"], "N-0191 Oslo")?;
    out.text(&["Country"], "Norway")?;
    out.close(&["VippsInfo"])
}

fn date(d: Option<NaiveDate>) -> String {
    d.map(|d| d.to_string()).unwrap_or_default()
}

/// `2026-01-06T12:30:11.005+01:00`: Oslo time, as the 3.0 reports give it.
fn oslo_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Europe::Oslo)
        .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

/// ISO 3166 alpha-3 of the country in an owner scheme such as `business:NO:ORG`.
fn country_code(scheme: Option<&str>) -> &'static str {
    match scheme.and_then(|s| s.split(':').nth(1)) {
        Some("NO") => "NOR",
        Some("DK") => "DNK",
        Some("FI") => "FIN",
        Some("SE") => "SWE",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MinorSum;
    use chrono::TimeZone;

    fn payout(reference: &str) -> PayoutRow {
        PayoutRow {
            ledger_id: "100001".into(),
            payout_reference: reference.into(),
            bank_reference: None,
            time: Utc.with_ymd_and_hms(2026, 1, 6, 23, 0, 0).unwrap(),
            currency: "NOK".into(),
            first_ledger_date: NaiveDate::from_ymd_opt(2026, 1, 6),
            last_ledger_date: NaiveDate::from_ymd_opt(2026, 1, 6),
            entries: 2,
            bank_account_scheme: Some("BBAN:NO".into()),
            bank_account_id: Some("86011117947".into()),
            paid_out: MinorSum(9_750),
            transactions: 1,
            captured: MinorSum(10_000),
            refunded: MinorSum(0),
            transactions_other: MinorSum(0),
            transactions_gross: MinorSum(10_000),
            fees_charged: MinorSum(-250),
            fees_retained: MinorSum(-250),
            ledger_other: MinorSum(0),
        }
    }

    fn transaction(psp: &str) -> PayoutTransactionRow {
        PayoutTransactionRow {
            payout_reference: "100001-2000001".into(),
            psp_reference: psp.into(),
            reference: Some("order-1 & <2>".into()),
            recipient_handle: Some("api:123456".into()),
            first_time: Utc.with_ymd_and_hms(2026, 1, 6, 11, 30, 0).unwrap(),
            captured: MinorSum(10_000),
            refunded: MinorSum(0),
            other: MinorSum(0),
            fees: MinorSum(-250),
        }
    }

    fn party() -> LedgerParty {
        LedgerParty {
            owner_scheme: Some("business:NO:ORG".into()),
            owner_id: Some("915608345".into()),
            sales_units: serde_json::json!([{"name": "Kafé Ø", "recipientHandle": "api:123456"}]),
        }
    }

    #[test]
    fn a_payout_becomes_a_valid_settlement_in_oslo_time_with_escaped_text() {
        let (p, t, party) = (
            [payout("100001-2000001")],
            [transaction("3300000112")],
            party(),
        );
        let ledgers = [LedgerPayouts {
            ledger_id: "100001",
            party: &party,
            payouts: &p,
            transactions: &t,
        }];
        let xml = String::from_utf8(write(&ledgers).unwrap()).unwrap();
        for want in [
            "<SettlementID>2000001</SettlementID>",
            "<SettlementType>Net</SettlementType>",
            "<TransactionTime>2026-01-06T12:30:00.000+01:00</TransactionTime>",
            "<TransactionFeeAmount>2.50</TransactionFeeAmount>",
            "<TransactionNetAmount>97.50</TransactionNetAmount>",
            "<OrderID>order-1 &amp; &lt;2&gt;</OrderID>",
            "<SerialNumber>123456</SerialNumber>",
            "<MainAddressCountryCode>NOR</MainAddressCountryCode>",
            "<SettledAmount>97.50</SettledAmount>",
        ] {
            assert!(xml.contains(want), "{want} in {xml}");
        }
    }

    #[test]
    fn values_the_schema_cannot_hold_are_refused_naming_the_ledger() {
        let party = party();
        let p = [payout("100001-2000001")];
        let t = [transaction("01H7W7Q6Y5R3G58CTAZX0MHKV2")];
        let ledgers = [LedgerPayouts {
            ledger_id: "100001",
            party: &party,
            payouts: &p,
            transactions: &t,
        }];
        let err = write(&ledgers).unwrap_err().to_string();
        assert!(
            err.contains("100001") && err.contains("pspReference"),
            "{err}"
        );
        let none = [LedgerPayouts {
            ledger_id: "100001",
            party: &party,
            payouts: &[],
            transactions: &[],
        }];
        assert!(matches!(write(&none), Err(SettlementError::NoPayout)));
    }

    #[test]
    fn formula_like_text_in_the_csv_opens_as_text_unless_raw_is_asked_for() {
        let party = LedgerParty {
            sales_units: serde_json::json!([{"name": "=cmd|'/c calc'!A1", "recipientHandle": "api:123456"}]),
            ..party()
        };
        let p = [payout("100001-2000001")];
        let mut t = transaction("3300000112");
        t.reference = Some("=HYPERLINK(\"https://evil.example\")".into());
        let t = [t];
        let ledgers = [LedgerPayouts {
            ledger_id: "100001",
            party: &party,
            payouts: &p,
            transactions: &t,
        }];
        let safe =
            String::from_utf8(write_csv(&ledgers, CsvFormulas::Neutralise).unwrap()).unwrap();
        assert!(safe.contains("'=cmd|"), "{safe}");
        assert!(safe.contains("\"'=HYPERLINK("), "{safe}");
        assert!(!safe.contains(",=") && !safe.contains("\"="), "{safe}");
        // Amounts stay numbers.
        assert!(
            safe.contains(",-2.50,") || safe.contains(",97.50"),
            "{safe}"
        );
        let raw = String::from_utf8(write_csv(&ledgers, CsvFormulas::Raw).unwrap()).unwrap();
        assert!(raw.contains(",=cmd|"), "{raw}");
    }
}
