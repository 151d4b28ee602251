//! The Vipps settlement report rebuilt from the Report API's payouts: valid against the
//! official SettlementReport-3.0 schema, one settlement per payout, its totals equal to what
//! the payout paid out.

use vipps_ledger_sync::export::{self, Format, Kind};
use vipps_ledger_sync::store::export_rows::ExportFilter;

use crate::common::{small, TestApp};

/// The text of every `<name>…</name>` in `xml`, in order.
fn all<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    xml.split(open.as_str())
        .skip(1)
        .map(|rest| rest.split(close.as_str()).next().unwrap())
        .collect()
}

fn minor(decimal: &str) -> i64 {
    let (whole, cents) = decimal.split_once('.').unwrap();
    let sign = if whole.starts_with('-') { -1 } else { 1 };
    whole.parse::<i64>().unwrap() * 100 + sign * cents.parse::<i64>().unwrap()
}

#[tokio::test]
async fn settlement_reports_validate_and_settle_exactly_what_each_payout_paid_out() {
    let app = TestApp::spawn(small()).await;
    app.sim.grow(2);
    assert!(app.sync_once().await.success());
    let filter = ExportFilter {
        ledgers: Vec::new(),
        partner: None,
        topic: None,
        from: "2026-01-01".parse().unwrap(),
        to: "2026-12-31".parse().unwrap(),
    };
    let out = tempfile::NamedTempFile::new().unwrap();
    let n = export::export(
        &app.db.pool,
        &filter,
        Kind::SettlementXml,
        Format::Csv,
        Default::default(),
        &Default::default(),
        Some(out.path()),
    )
    .await
    .unwrap();
    let xml = std::fs::read_to_string(out.path()).unwrap();
    export::xsd::settlement_report()
        .validate(xml.as_bytes())
        .unwrap();
    if let Some(verdict) = xmllint(out.path()) {
        verdict.unwrap();
    }

    // The payouts in the report's order: by ledger, then payout.
    let paid: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT split_part(payout_reference, '-', 2), paid_out::bigint, transactions
         FROM payout_totals ORDER BY ledger_id, last_seq",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    let settlements = all(&xml, "SettlementInfo");
    assert_eq!(settlements.len() as u64, n);
    assert_eq!(settlements.len(), paid.len(), "one settlement per payout");
    assert_eq!(
        all(&xml, "SettlementDetailsInfo").len(),
        app.sim.ledger_ids().len()
    );
    for (s, (id, paid_out, transactions)) in settlements.iter().zip(&paid) {
        let one = |name: &str| all(s, name)[0];
        assert_eq!(one("SettlementID"), id);
        let (paid_out, transactions) = (*paid_out, *transactions);
        assert_eq!(minor(one("SettledAmount")), paid_out, "settlement {id}");
        assert_eq!(
            one("NumOfTransactions").parse::<i64>().unwrap(),
            transactions
        );
        assert_eq!(all(s, "TransactionInfo").len() as i64, transactions);
        let (capture, refund) = (
            minor(one("CaptureSettlementAmount")),
            minor(one("RefundSettlementAmount")),
        );
        let (gross, fee, net) = (
            minor(one("GrossSettlementAmount")),
            minor(one("FeeSettlementAmount")),
            minor(one("NetSettlementAmount")),
        );
        assert_eq!(gross, capture + refund);
        assert_eq!(net, gross - fee);
        // Net settlement: the fees were retained from the payout, so it paid out the net.
        assert_eq!(one("SettlementType"), "Net");
        assert_eq!(net, paid_out, "settlement {id}");
        let transaction_sum: i64 = all(s, "TransactionGrossAmount")
            .iter()
            .map(|a| minor(a))
            .sum();
        assert_eq!(transaction_sum, gross);
    }
}

/// xmllint's verdict on the file against the official schema, where xmllint is installed.
fn xmllint(path: &std::path::Path) -> Option<Result<(), String>> {
    if std::env::var_os("VLS_NO_XMLLINT").is_some() {
        return None;
    }
    let xsd = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/export/xsd/schemas/SettlementReport-3.0.xsd"
    );
    let out = std::process::Command::new("xmllint")
        .args(["--noout", "--schema", xsd])
        .arg(path)
        .output()
        .ok()?;
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    })
}
