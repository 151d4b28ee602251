//! The per-payout exporters (`payouts`, `settlement-xml`, `settlement-csv`,
//! `payout-webhook`): each payout is delivered once, when every ledger date it covers has
//! closed and reconciled cleanly; held while one of them mismatches; never twice and never
//! skipped, across SIGKILLs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use rand::Rng;
use secrecy::SecretString;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use vipps_ledger_sync::config::{ExporterKind, Settings};
use vipps_ledger_sync::export::scheduled::{self, ExporterReport};
use vipps_ledger_sync::export::{webhook, Format};
use vipps_ledger_sync::reconcile;
use vipps_ledger_sync::simulator::SimulatorConfig;

use crate::common::exports::{files_in, serve_on_loopback, take_files};
use crate::common::{directory_exporter, small, TestApp};

/// A payout of the database: (ledger, reference, last ledger date, paid out in minor units).
type Payout = (String, String, chrono::NaiveDate, i64);

/// The payouts whose every covered ledger date (a date of one of its funds entries) has
/// reconciled on every feed, by ledger and payout.
async fn closed_payouts(pool: &PgPool) -> Vec<Payout> {
    sqlx::query_as(
        "SELECT p.ledger_id, p.payout_reference, p.last_ledger_date, p.paid_out::bigint
         FROM payouts p
         WHERE NOT EXISTS (
             SELECT 1 FROM entries e
             WHERE e.ledger_id = p.ledger_id AND e.topic = 'funds'
               AND e.seq BETWEEN p.first_seq AND p.last_seq
               AND NOT EXISTS (SELECT 1 FROM reconciliation_status s
                               WHERE s.ledger_id = e.ledger_id
                                 AND s.ledger_date = e.ledger_date AND s.reconciled))
         ORDER BY p.ledger_id, p.last_seq",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn name(p: &Payout, kind: ExporterKind) -> String {
    scheduled::payout_file_name(&p.0, p.2, &p.1, kind, Format::Csv)
}

async fn run_all(app: &TestApp, settings: &Settings) -> Vec<ExporterReport> {
    scheduled::run_all(
        &app.db.pool,
        settings,
        &Default::default(),
        &CancellationToken::new(),
    )
    .await
}

async fn verify(app: &TestApp) -> reconcile::VerifyReport {
    reconcile::verify(&app.context(), &CancellationToken::new())
        .await
        .unwrap()
}

/// The text of the first `<name>…</name>` in `xml`.
fn element<'a>(xml: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}>");
    let rest = xml.split(open.as_str()).nth(1).unwrap();
    rest.split(format!("</{name}>").as_str()).next().unwrap()
}

fn minor(decimal: &str) -> i64 {
    let (whole, cents) = decimal.split_once('.').unwrap();
    let sign = if whole.starts_with('-') { -1 } else { 1 };
    whole.parse::<i64>().unwrap() * 100 + sign * cents.parse::<i64>().unwrap()
}

/// Checks a `payouts` file: its lines sum to its payout line, which is what was paid out.
fn check_payout_lines(csv_bytes: &[u8], paid_out: i64) {
    let mut reader = csv::Reader::from_reader(csv_bytes);
    let headers = reader.headers().unwrap().clone();
    let at = |n: &str| headers.iter().position(|h| h == n).unwrap();
    let (line, amount) = (at("line"), at("amount_minor"));
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let last = rows.last().unwrap();
    assert_eq!(&last[line], "payout");
    assert_eq!(last[amount].parse::<i64>().unwrap(), paid_out);
    let sum: i64 = rows[..rows.len() - 1]
        .iter()
        .map(|r| r[amount].parse::<i64>().unwrap())
        .sum();
    assert_eq!(sum, paid_out, "the lines add up to the payout");
    assert!(rows.iter().any(|r| &r[line] == "transaction"));
}

#[tokio::test]
async fn each_payout_is_delivered_once_when_every_date_it_covers_has_closed() {
    let app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let kinds = [
        ExporterKind::SettlementXml,
        ExporterKind::SettlementCsv,
        ExporterKind::Payouts,
    ];
    let mut settings = app.settings.clone();
    settings.exporters = kinds
        .iter()
        .zip(&dirs)
        .map(|(kind, dir)| directory_exporter(kind.as_str(), *kind, dir.path(), Format::Csv))
        .collect();

    // Synced, not reconciled: no date has closed, so every payout waits (neither held nor
    // failed).
    for report in run_all(&app, &settings).await {
        assert_eq!(report.exported, 0, "{report:?}");
        assert!(
            report.held.is_empty() && report.failed.is_empty(),
            "{report:?}"
        );
    }
    assert!(verify(&app).await.clean());
    let payouts = closed_payouts(&app.db.pool).await;
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM payouts")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(payouts.len() >= 8, "{payouts:?}");
    for report in run_all(&app, &settings).await {
        assert_eq!(report.exported, payouts.len(), "{report:?}");
    }
    // The open date's payout, if the simulator made one, still waits.
    let waiting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM payouts p WHERE NOT EXISTS (
             SELECT 1 FROM export_log x WHERE x.exporter = 'settlement-xml'
               AND x.payout_reference = p.payout_reference AND x.status = 'exported')",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(waiting, all - payouts.len() as i64);

    for (kind, dir) in kinds.iter().zip(&dirs) {
        let want: Vec<String> = payouts.iter().map(|p| name(p, *kind)).collect();
        let mut sorted = want.clone();
        sorted.sort();
        assert_eq!(
            files_in(dir.path()),
            sorted,
            "one {kind:?} document per payout"
        );
    }
    for p in &payouts {
        let xml = std::fs::read_to_string(dirs[0].path().join(name(p, kinds[0]))).unwrap();
        vipps_ledger_sync::export::xsd::settlement_report()
            .validate(xml.as_bytes())
            .unwrap();
        assert_eq!(minor(element(&xml, "SettledAmount")), p.3, "{p:?}");
        assert_eq!(xml.matches("<SettlementInfo>").count(), 1);
        let csv = std::fs::read_to_string(dirs[1].path().join(name(p, kinds[1]))).unwrap();
        assert!(csv.starts_with("OrganizationNumber,MerchantName"), "{csv}");
        // Its header, and one settlement.
        assert_eq!(
            csv.lines()
                .filter(|l| l.starts_with("SettlementInfo,"))
                .count(),
            2
        );
        check_payout_lines(
            &std::fs::read(dirs[2].path().join(name(p, kinds[2]))).unwrap(),
            p.3,
        );
    }

    // Taken away by an importer: never written again.
    for dir in &dirs {
        for f in files_in(dir.path()) {
            std::fs::remove_file(dir.path().join(f)).unwrap();
        }
    }
    for report in run_all(&app, &settings).await {
        assert_eq!(report.exported, 0, "{report:?}");
    }
    assert!(dirs.iter().all(|d| files_in(d.path()).is_empty()));
}

#[tokio::test]
async fn a_payout_is_held_while_a_date_it_covers_mismatches_and_delivered_once_it_reconciles() {
    let app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    // A capture of a closed date changed behind the daemon's back.
    let (ledger, date, seq): (String, chrono::NaiveDate, i64) = sqlx::query_as(
        "UPDATE entries SET amount = amount + 1 WHERE (ledger_id, topic, seq) = (
             SELECT ledger_id, topic, seq FROM entries
             WHERE topic = 'funds' AND entry_type = 'capture' AND ledger_date = '2026-01-06'
             ORDER BY ledger_id, seq LIMIT 1)
         RETURNING ledger_id, ledger_date, seq",
    )
    .fetch_one(&mut crate::common::behind_the_back(&app.db.pool).await)
    .await
    .unwrap();
    assert!(!verify(&app).await.clean());
    let dir = tempfile::tempdir().unwrap();
    let mut settings = app.settings.clone();
    settings.exporters = vec![directory_exporter(
        "settlements",
        ExporterKind::SettlementXml,
        dir.path(),
        Format::Csv,
    )];
    let (reference, last_date): (String, chrono::NaiveDate) = sqlx::query_as(
        "SELECT payout_reference, last_ledger_date FROM payouts
         WHERE ledger_id = $1 AND $2 BETWEEN first_seq AND last_seq",
    )
    .bind(&ledger)
    .bind(seq)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let report = run_all(&app, &settings).await.remove(0);
    assert_eq!(
        report.held,
        [format!("{ledger} {last_date} payout {reference}")],
        "{report:?}"
    );
    let (status, reason): (String, String) =
        sqlx::query_as("SELECT status, last_error FROM export_log WHERE payout_reference = $1")
            .bind(&reference)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(status, "held");
    assert!(
        reason.contains(&date.to_string()) && reason.contains("funds: mismatch"),
        "the reason names the date: {reason}"
    );
    let others = report.exported;
    assert!(others > 0, "the other payouts go on");

    // Put right, and reconciled again: delivered, once.
    sqlx::query("UPDATE entries SET amount = amount - 1 WHERE ledger_id = $1 AND topic = 'funds' AND seq = $2")
        .bind(&ledger)
        .bind(seq)
        .execute(&mut crate::common::behind_the_back(&app.db.pool).await)
        .await
        .unwrap();
    assert!(verify(&app).await.clean());
    let report = run_all(&app, &settings).await.remove(0);
    assert_eq!(report.exported, 1, "{report:?}");
    assert!(report.held.is_empty());
    let file = scheduled::payout_file_name(
        &ledger,
        last_date,
        &reference,
        ExporterKind::SettlementXml,
        Format::Csv,
    );
    assert!(dir.path().join(file).exists());
    assert_eq!(files_in(dir.path()).len(), others + 1);
}

#[derive(Default)]
struct Received {
    requests: usize,
    /// Idempotency key -> bodies answered 2xx.
    accepted: BTreeMap<String, Vec<serde_json::Value>>,
}

const SECRET: &str = "a-payout-webhook-secret";

/// A receiver that refuses its first `fail_first` requests, checks every signature, and keeps
/// what it accepted.
async fn receiver(fail_first: usize) -> (Arc<Mutex<Received>>, std::net::SocketAddr) {
    let received = Arc::new(Mutex::new(Received::default()));
    let fail = Arc::new(fail_first);
    async fn receive(
        State((received, fail)): State<(Arc<Mutex<Received>>, Arc<usize>)>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let mut r = received.lock().unwrap();
        r.requests += 1;
        if r.requests <= *fail {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
        let timestamp: i64 = header(webhook::TIMESTAMP_HEADER).parse().unwrap();
        let key = header(webhook::IDEMPOTENCY_HEADER);
        let signature = header(webhook::SIGNATURE_HEADER);
        let now = chrono::Utc::now().timestamp();
        if !webhook::verify(
            &SecretString::from(SECRET),
            timestamp,
            &key,
            &body,
            &signature,
            now,
        ) {
            return StatusCode::UNAUTHORIZED;
        }
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        r.accepted.entry(key).or_default().push(json);
        StatusCode::NO_CONTENT
    }
    let router = axum::Router::new()
        .route("/payouts", axum::routing::post(receive))
        .with_state((Arc::clone(&received), fail));
    (received, serve_on_loopback(router).await)
}

fn webhook_exporter(addr: std::net::SocketAddr) -> String {
    format!(
        "[[exporters]]\nname = \"payout-hook\"\nkind = \"payout-webhook\"\n\
         url = \"http://{addr}/payouts\"\nsecret = \"{SECRET}\"\n"
    )
}

#[tokio::test]
async fn a_payout_webhook_gets_one_signed_post_per_payout_whose_lines_add_up() {
    let app = crate::common::exports::reconciled(small()).await;
    let (received, addr) = receiver(2).await;
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), webhook_exporter(addr)).unwrap();
    let mut settings = app.settings.clone();
    settings.exporters = Settings::load_with_env(Some(file.path()), HashMap::new())
        .unwrap()
        .exporters;
    assert_eq!(settings.exporters[0].kind, ExporterKind::PayoutWebhook);
    let payouts = closed_payouts(&app.db.pool).await;
    let report = run_all(&app, &settings).await.remove(0);
    assert_eq!(report.exported, payouts.len(), "{report:?}");
    assert_eq!(run_all(&app, &settings).await[0].exported, 0, "once");
    let r = received.lock().unwrap();
    assert_eq!(r.requests, payouts.len() + 2, "two refused, then one each");
    let want: BTreeSet<String> = payouts
        .iter()
        .map(|(l, reference, d, _)| format!("payout-hook:{l}:{d}:{reference}"))
        .collect();
    let got: BTreeSet<String> = r.accepted.keys().cloned().collect();
    assert_eq!(got, want, "one key per payout");
    for (l, reference, d, paid_out) in &payouts {
        let body = &r.accepted[&format!("payout-hook:{l}:{d}:{reference}")][0];
        assert_eq!(body["payout"]["paid_out_minor"].as_i64(), Some(*paid_out));
        let lines = body["lines"].as_array().unwrap();
        let (payout_line, rest) = lines.split_last().unwrap();
        assert_eq!(payout_line["line"], "payout");
        let sum: i64 = rest
            .iter()
            .map(|l| l["amount_minor"].as_i64().unwrap())
            .sum();
        assert_eq!(sum, *paid_out, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runs_deliver_every_payout_of_every_kind_exactly_once() {
    let app = crate::common::exports::reconciled(SimulatorConfig {
        ledgers: 6,
        days: 16,
        captures_per_day: 10,
        ..SimulatorConfig::default()
    })
    .await;
    let payouts = closed_payouts(&app.db.pool).await;
    let root = tempfile::tempdir().unwrap();
    let kinds = [
        ExporterKind::Payouts,
        ExporterKind::SettlementXml,
        ExporterKind::SettlementCsv,
    ];
    let mut extra = String::new();
    for kind in kinds {
        extra += &format!(
            "[[exporters]]\nname = \"{0}\"\nkind = \"{0}\"\ndirectory = \"{1}\"\n",
            kind.as_str(),
            root.path().join(kind.as_str()).join("out").display()
        );
    }
    let (received, addr) = receiver(0).await;
    extra += &webhook_exporter(addr);
    let cfg = crate::common::binary::config_file(&app, &extra);
    let run = || {
        crate::common::binary::command(&["--config", cfg.path().to_str().unwrap(), "run"])
            .env("VLS_SYNC__VERIFY_SCHEDULE", "* * * * * *")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let exported = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM export_log WHERE status = 'exported'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap()
    };
    let total = 4 * payouts.len() as i64;
    let mut taken: Vec<BTreeMap<String, usize>> = vec![BTreeMap::new(); kinds.len()];
    let take = |taken: &mut Vec<BTreeMap<String, usize>>| {
        for (kind, t) in kinds.iter().zip(taken.iter_mut()) {
            take_files(&root.path().join(kind.as_str()).join("out"), t);
        }
    };
    let mut rng = rand::thread_rng();
    let (mut kills, mut interrupted, mut before) = (0, 0, 0);
    while exported().await < total && kills < 8 {
        let mut child = run();
        let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
        while exported().await == before && tokio::time::Instant::now() < give_up {
            take(&mut taken);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(rng.gen_range(0..60));
        while tokio::time::Instant::now() < deadline {
            take(&mut taken);
            tokio::time::sleep(Duration::from_millis(rng.gen_range(1..5))).await;
        }
        child.kill().unwrap(); // SIGKILL, wherever it is
        child.wait().unwrap();
        kills += 1;
        take(&mut taken);
        let now = exported().await;
        if now > before && now < total {
            interrupted += 1;
        }
        before = now;
    }
    eprintln!("SIGKILLed `run` {kills} times, {interrupted} of them in the middle of exporting");
    let mut last = run();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    while exported().await < total && tokio::time::Instant::now() < give_up {
        take(&mut taken);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    last.kill().unwrap();
    last.wait().unwrap();
    take(&mut taken);
    assert!(interrupted >= 3, "the exports were cut off several times");
    assert_eq!(
        exported().await,
        total,
        "every payout of every kind exported"
    );
    for (kind, t) in kinds.iter().zip(&taken) {
        let want: BTreeMap<String, usize> = payouts.iter().map(|p| (name(p, *kind), 1)).collect();
        assert_eq!(t, &want, "every payout delivered exactly once as {kind:?}");
    }
    // The webhook: every payout under its one key (a delivery cut off between the receiver's
    // answer and the log may come again, under the same key, for the receiver to drop).
    let keys: BTreeSet<String> = received.lock().unwrap().accepted.keys().cloned().collect();
    let want: BTreeSet<String> = payouts
        .iter()
        .map(|(l, reference, d, _)| format!("payout-hook:{l}:{d}:{reference}"))
        .collect();
    assert_eq!(keys, want);
}
