//! Documents bookkeeping systems import: the Vipps settlement report rebuilt from the Report
//! API's payouts (valid against the official SettlementReport-3.0 schema, one settlement per
//! payout, its totals equal to what the payout paid out), and GBAT10 vouchers (balanced,
//! numbered once and for good).

use vipps_ledger_sync::export::{self, Format, Kind};

use crate::common::exports::{export_text, history_to};
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
    let (xml, n) = export_text(
        &app,
        &history_to("2026-12-31"),
        Kind::SettlementXml,
        Format::Csv,
        &Default::default(),
    )
    .await;
    export::xsd::settlement_report()
        .validate(xml.as_bytes())
        .unwrap();
    if let Some(verdict) = xmllint(&xml) {
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
        // Net settlement: the fees were retained from the payout, so it paid out the net;
        // gross settlement (every fourth ledger): the captures in full, fees invoiced.
        match one("SettlementType") {
            "Net" => assert_eq!(net, paid_out, "settlement {id}"),
            "Gross" => assert_eq!(gross, paid_out, "settlement {id}"),
            other => panic!("{other}"),
        }
        let transaction_sum: i64 = all(s, "TransactionGrossAmount")
            .iter()
            .map(|a| minor(a))
            .sum();
        assert_eq!(transaction_sum, gross);
    }
}

/// xmllint's verdict on the document against the official schema, where xmllint is installed.
fn xmllint(xml: &str) -> Option<Result<(), String>> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), xml).unwrap();
    let path = file.path();
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

async fn sync_and_reconcile(app: &TestApp) {
    assert!(app.sync_once().await.success());
    let cancel = tokio_util::sync::CancellationToken::new();
    let report = vipps_ledger_sync::reconcile::verify(&app.context(), &cancel)
        .await
        .unwrap();
    assert!(report.clean(), "{report}");
}

/// `export --kind gbat10` of the history up to `to`, as (voucher number, ledger, date, amounts).
async fn gbat10(app: &TestApp, to: &str) -> Vec<(i64, String, Vec<i64>)> {
    let (text, _) = export_text(
        app,
        &history_to(to),
        Kind::Gbat10,
        Format::Csv,
        &Default::default(),
    )
    .await;
    let mut vouchers: Vec<(i64, String, Vec<i64>)> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(';').collect();
        assert_eq!((f.len(), f[0]), (30, "GBAT10"), "{line}");
        assert_eq!(f[8], f[27], "the gross amount repeats the amount");
        let number: i64 = f[1].parse().unwrap();
        let amount = minor(f[8]);
        match vouchers.last_mut() {
            Some((n, _, amounts)) if *n == number => amounts.push(amount),
            _ => vouchers.push((number, f[2].to_owned(), vec![amount])),
        }
    }
    vouchers
}

#[tokio::test]
async fn gbat10_vouchers_balance_and_keep_their_numbers_across_runs() {
    let app = TestApp::spawn(small()).await;
    sync_and_reconcile(&app).await;
    // The first export covers the first closed date of every ledger.
    let first = gbat10(&app, "2026-01-05").await;
    assert!(first.len() >= 4, "{}", first.len());
    for (number, date, amounts) in &first {
        assert_eq!(
            amounts.iter().sum::<i64>(),
            0,
            "voucher {number} of {date} balances"
        );
    }
    let numbers: Vec<i64> = first.iter().map(|v| v.0).collect();
    assert_eq!(
        numbers,
        (1..=first.len() as i64).collect::<Vec<_>>(),
        "1, 2, 3, … in order"
    );
    // Run again: the same vouchers, the same numbers.
    assert_eq!(gbat10(&app, "2026-01-05").await, first);
    // The whole history: the old vouchers keep theirs, the new ones continue the series.
    let second = gbat10(&app, "2026-12-31").await;
    assert!(second.len() > first.len());
    let mut all: Vec<i64> = second.iter().map(|v| v.0).collect();
    all.sort();
    assert_eq!(
        all,
        (1..=second.len() as i64).collect::<Vec<_>>(),
        "none repeated, none skipped"
    );
    for old in &first {
        assert!(second.contains(old), "voucher {} kept its number", old.0);
    }
    for (number, date, amounts) in &second {
        assert_eq!(
            amounts.iter().sum::<i64>(),
            0,
            "voucher {number} of {date} balances"
        );
    }
    // Open dates are not written: their vouchers would still change under their number.
    let open: Vec<(String, chrono::NaiveDate)> = sqlx::query_as(
        "SELECT DISTINCT ledger_id, ledger_date FROM entries e WHERE NOT EXISTS (
             SELECT 1 FROM reconciliation_status r
             WHERE r.ledger_id = e.ledger_id AND r.ledger_date = e.ledger_date AND r.reconciled)",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert!(!open.is_empty());
    for (_, date) in &open {
        let date = date.format("%Y%m%d").to_string();
        assert!(
            !second.iter().any(|v| v.1 == date),
            "open date {date} written"
        );
    }
}

#[tokio::test]
async fn invoiced_fees_of_gross_settlement_merchants_are_booked_once() {
    let app = TestApp::spawn(small()).await;
    app.sim.grow(7);
    assert!(app.sync_once().await.success());
    let journal = |accounts: vipps_ledger_sync::config::Accounts| {
        let app = &app;
        async move {
            let (text, _) = export_text(
                app,
                &history_to("2026-12-31"),
                Kind::Journal,
                Format::Jsonl,
                &accounts,
            )
            .await;
            text.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .collect::<Vec<_>>()
        }
    };
    let invoiced = |lines: &[serde_json::Value]| {
        lines
            .iter()
            .filter(|l| l["entry_type"] == "fees-invoiced")
            .count()
    };
    let booked = journal(Default::default()).await;
    assert!(
        invoiced(&booked) > 0,
        "the gross settlement ledger was invoiced"
    );
    let skipped = journal(vipps_ledger_sync::config::Accounts {
        fees_invoiced: vipps_ledger_sync::config::FeesInvoiced::Skip,
        ..Default::default()
    })
    .await;
    assert_eq!(invoiced(&skipped), 0);
    // Every voucher still balances, and the capture fees are booked exactly as before.
    let mut sums: std::collections::BTreeMap<String, i64> = Default::default();
    for l in &skipped {
        *sums
            .entry(l["voucher"].as_str().unwrap().into())
            .or_default() += l["amount_minor"].as_i64().unwrap();
    }
    assert!(sums.values().all(|s| *s == 0), "{sums:?}");
    let fees = |lines: &[serde_json::Value]| -> i64 {
        lines
            .iter()
            .filter(|l| l["entry_type"] == "capture-fee")
            .map(|l| l["amount_minor"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(fees(&skipped), fees(&booked));
}

#[tokio::test]
async fn the_settlement_csv_has_the_official_sections_and_settles_what_each_payout_paid_out() {
    let app = TestApp::spawn(small()).await;
    app.sim.grow(2);
    assert!(app.sync_once().await.success());
    let (text, _) = export_text(
        &app,
        &history_to("2026-12-31"),
        Kind::SettlementCsv,
        Format::Csv,
        &Default::default(),
    )
    .await;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    // Each ledger's section starts with the merchant's header line; data lines are those
    // that are not a section's column names.
    let (mut section, mut settlements, mut transactions) = (0, Vec::new(), Vec::new());
    for r in &rows {
        match (&r[0], &r[1]) {
            ("OrganizationNumber", _) => section += 1,
            ("SettlementInfo", "SalesUnitName") | ("TransactionInfo", "SalesDate") => {}
            ("SettlementInfo", _) => settlements.push((section, r.clone())),
            ("TransactionInfo", _) => transactions.push((section, r.clone())),
            _ => {}
        }
    }
    let paid: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT split_part(payout_reference, '-', 2), paid_out::bigint, transactions
         FROM payout_totals ORDER BY ledger_id, last_seq",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(settlements.len(), paid.len());
    assert!(settlements.iter().all(|(_, s)| s.len() == 12));
    assert!(transactions.iter().all(|(_, t)| t.len() == 13));
    for ((section, s), (id, paid_out, count)) in settlements.iter().zip(&paid) {
        assert_eq!(&s[4], id);
        assert_eq!(minor(&s[10]), *paid_out, "settlement {id}");
        assert_eq!(s[11].parse::<i64>().unwrap(), *count);
        let mine: Vec<_> = transactions
            .iter()
            .filter(|(at, t)| at == section && &t[5] == id)
            .map(|(_, t)| t)
            .collect();
        assert_eq!(mine.len() as i64, *count);
        let sum = |i: usize| -> i64 { mine.iter().map(|t| minor(&t[i])).sum() };
        assert_eq!(
            (sum(8), sum(10), sum(9 + 2)),
            (minor(&s[6]), minor(&s[8]), minor(&s[9]))
        );
        for t in &mine {
            assert_eq!(minor(&t[12]), minor(&t[8]) + minor(&t[10]) + minor(&t[11]));
        }
    }
}

#[tokio::test]
async fn a_scheduled_gbat10_exporter_delivers_each_voucher_once_under_the_number_it_keeps() {
    use tokio_util::sync::CancellationToken;
    use vipps_ledger_sync::config::ExporterKind;
    use vipps_ledger_sync::export::scheduled::{self, Selection};
    let app = crate::common::exports::reconciled(small()).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = crate::common::exports::with_exporter(
        &app,
        crate::common::directory_exporter(
            "vouchers",
            ExporterKind::Gbat10,
            dir.path(),
            Format::Csv,
        ),
    );
    let closed = crate::common::exports::closed_dates(&app.db.pool).await;
    let pass = |selection: Selection| {
        let settings = settings.clone();
        let pool = app.db.pool.clone();
        async move {
            scheduled::run(
                &pool,
                &settings,
                &settings.exporters[0],
                &selection,
                &Default::default(),
                &CancellationToken::new(),
            )
            .await
        }
    };
    let first = pass(Selection::default()).await;
    assert_eq!(first.exported, closed.len(), "{first:?}");
    assert_eq!(
        pass(Selection::default()).await.exported,
        0,
        "each date once"
    );
    let number_of = |ledger: &str, date| -> String {
        let name = scheduled::file_name(ledger, date, ExporterKind::Gbat10, Format::Csv);
        assert!(name.ends_with("_gbat10.txt"), "{name}");
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        let numbers: std::collections::BTreeSet<String> = text
            .lines()
            .map(|l| l.split(';').nth(1).unwrap().to_owned())
            .collect();
        assert_eq!(numbers.len(), 1, "one voucher per file");
        numbers.into_iter().next().unwrap()
    };
    let numbers: std::collections::BTreeSet<String> =
        closed.iter().map(|(l, d)| number_of(l, *d)).collect();
    assert_eq!(
        numbers.len(),
        closed.len(),
        "no two vouchers share a number"
    );
    // Delivered again (--force): the same number.
    let (ledger, date) = closed[2].clone();
    let before = number_of(&ledger, date);
    let forced = pass(Selection {
        ledgers: vec![ledger.clone()],
        from: Some(date),
        to: Some(date),
        force: true,
        now: true,
    })
    .await;
    assert_eq!(forced.exported, 1);
    assert_eq!(number_of(&ledger, date), before);
}
