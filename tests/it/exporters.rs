//! Exporters: journal vouchers balance on the configured accounts; camt.053 statements validate
//! against the schema and match the balance chain; scheduled exporters deliver every closed,
//! cleanly reconciled date exactly once (files and webhooks), across crashes, and hold back
//! dates whose reconciliation failed.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::NaiveDate;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use vipps_ledger_sync::config::{Accounts, ExporterKind, ExporterTarget, Settings};
use vipps_ledger_sync::export::scheduled::{self, Selection};
use vipps_ledger_sync::export::{self, webhook, Format, Kind};
use vipps_ledger_sync::reconcile;
use vipps_ledger_sync::simulator::SimulatorConfig;
use vipps_ledger_sync::store::export_log::{self, DueAfter, DueDate, Scope};
use vipps_ledger_sync::store::export_rows::ExportFilter;

use crate::common::exports::{
    closed_dates, files_in, reconciled, serve_on_loopback, take_files, with_exporter,
};
use crate::common::{directory_exporter, small, TestApp};

/// Changes one stored funds amount of 2026-01-06 behind the daemon's back, so that date's
/// reconciliation finds a mismatch; returns its (ledger, date).
async fn tamper_one_entry(pool: &PgPool) -> (String, NaiveDate) {
    sqlx::query_as(
        "UPDATE entries SET amount = amount + 1 WHERE (ledger_id, topic, seq) = (
             SELECT ledger_id, topic, seq FROM entries
             WHERE topic = 'funds' AND ledger_date = '2026-01-06' ORDER BY ledger_id, seq LIMIT 1)
         RETURNING ledger_id, ledger_date",
    )
    .fetch_one(&mut crate::common::behind_the_back(pool).await)
    .await
    .unwrap()
}

#[tokio::test]
async fn journal_vouchers_balance_and_unmapped_entry_types_land_on_the_fallback() {
    let app = reconciled(small()).await;
    // Only captures are mapped: every other type must go to the fallback, none be dropped.
    let accounts = Accounts {
        by_entry_type: BTreeMap::from([("capture".to_owned(), "3000".to_owned())]),
        fallback: "9999".to_owned(),
        ..Accounts::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("journal.jsonl");
    let filter = ExportFilter {
        ledgers: Vec::new(),
        partner: None,
        topic: None,
        from: "2026-01-01".parse().unwrap(),
        to: "2026-12-31".parse().unwrap(),
    };
    export::export(
        &app.db.pool,
        &filter,
        Kind::Journal,
        Format::Jsonl,
        Default::default(),
        &accounts,
        Some(&file),
    )
    .await
    .unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut vouchers: BTreeMap<String, i64> = BTreeMap::new();
    let mut counterpart: HashMap<(String, String, String, String), i64> = HashMap::new();
    for l in &lines {
        let amount = l["amount_minor"].as_i64().unwrap();
        *vouchers
            .entry(l["voucher"].as_str().unwrap().to_owned())
            .or_default() += amount;
        let entry_type = l["entry_type"].as_str().unwrap();
        if entry_type.is_empty() {
            assert_eq!(
                l["account"],
                if l["topic"] == "funds" {
                    "1571"
                } else {
                    "2471"
                }
            );
            continue;
        }
        let want = if entry_type == "capture" {
            "3000"
        } else {
            "9999"
        };
        assert_eq!(l["account"], want, "{l}");
        // Debit and credit columns agree with the signed amount.
        let (debit, credit) = (l["debit"].as_str().unwrap(), l["credit"].as_str().unwrap());
        assert!(if amount > 0 {
            credit.is_empty() && !debit.is_empty()
        } else {
            debit.is_empty()
        });
        *counterpart
            .entry((
                l["ledger_id"].as_str().unwrap().to_owned(),
                l["ledger_date"].as_str().unwrap().to_owned(),
                l["topic"].as_str().unwrap().to_owned(),
                entry_type.to_owned(),
            ))
            .or_default() += amount;
    }
    let stored_dates: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT (ledger_id, ledger_date)) FROM entries")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        vouchers.len() as i64,
        stored_dates,
        "one voucher per ledger date"
    );
    for (voucher, sum) in &vouchers {
        assert_eq!(*sum, 0, "voucher {voucher} balances");
    }
    // Every entry is booked: per (ledger, date, topic, type) the line is minus the entries' sum.
    let stored: Vec<(String, String, String, String, i64)> = sqlx::query_as(
        "SELECT ledger_id, ledger_date::text, topic, entry_type, sum(amount)::int8 FROM entries
         GROUP BY 1, 2, 3, 4",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    // (Types summing to zero on a date have no line: nothing to book.)
    let stored: Vec<_> = stored.into_iter().filter(|s| s.4 != 0).collect();
    assert_eq!(stored.len(), counterpart.len());
    for (ledger, date, topic, entry_type, sum) in stored {
        assert_eq!(counterpart[&(ledger, date, topic, entry_type)], -sum);
    }
    assert!(
        lines
            .iter()
            .any(|l| l["entry_type"] == "interchange-adjustment" && l["account"] == "9999"),
        "the simulator's unknown entry type is booked on the fallback account"
    );
    assert!(lines
        .iter()
        .any(|l| !l["payout_reference"].as_str().unwrap().is_empty()));
}

#[tokio::test]
async fn scheduled_files_deliver_each_closed_date_once_and_hold_a_mismatch() {
    let app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    // A stored amount changed behind the daemon's back: that date must be held back.
    let (tampered_ledger, tampered_date): (String, NaiveDate) =
        tamper_one_entry(&app.db.pool).await;
    let report = reconcile::verify(&app.context(), &CancellationToken::new())
        .await
        .unwrap();
    assert!(!report.clean());
    let dir = tempfile::tempdir().unwrap();
    let settings = with_exporter(
        &app,
        directory_exporter("files", ExporterKind::Entries, dir.path(), Format::Csv),
    );
    let reports = scheduled::run_all(
        &app.db.pool,
        &settings,
        &Default::default(),
        &CancellationToken::new(),
    )
    .await;
    let closed = closed_dates(&app.db.pool).await;
    assert_eq!(
        closed.len(),
        11,
        "4 ledgers x 3 closed dates, one of them mismatching"
    );
    assert_eq!(reports[0].exported, 11, "{reports:?}");
    assert_eq!(
        reports[0].held,
        [format!("{tampered_ledger} {tampered_date}")]
    );
    let expected: Vec<String> = closed
        .iter()
        .map(|(l, d)| format!("{l}_{d}_entries.csv"))
        .collect();
    assert_eq!(
        files_in(dir.path()),
        expected,
        "one file per date, no temporary file left"
    );
    // Each file holds exactly the date's entries, and the log has its checksum.
    for (ledger, date) in &closed {
        let path = dir.path().join(format!("{ledger}_{date}_entries.csv"));
        let bytes = std::fs::read(&path).unwrap();
        let rows = csv::Reader::from_reader(bytes.as_slice()).records().count() as i64;
        let (stored, checksum, status): (i64, String, String) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM entries e WHERE e.ledger_id = x.ledger_id
                         AND e.ledger_date = x.ledger_date),
                    checksum, status
             FROM export_log x WHERE exporter = 'files' AND ledger_id = $1 AND ledger_date = $2",
        )
        .bind(ledger)
        .bind(date)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        assert_eq!((rows, status.as_str()), (stored, "exported"));
        assert_eq!(
            checksum,
            vipps_ledger_sync::text::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes))
        );
    }
    let held: (String, String) = sqlx::query_as(
        "SELECT status, last_error FROM export_log WHERE ledger_id = $1 AND ledger_date = $2",
    )
    .bind(&tampered_ledger)
    .bind(tampered_date)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(held.0, "held");
    assert!(held.1.contains("funds: mismatch"), "{}", held.1);
    // `status` reports it, for people and scripts.
    let status = vipps_ledger_sync::tables::status_report(&app.db.pool, &settings)
        .await
        .unwrap();
    let text = vipps_ledger_sync::tables::render_status(&status);
    assert!(
        text.contains(&format!(
            "{tampered_ledger} {tampered_date}: reconciliation: "
        )),
        "{text}"
    );
    let counts: Vec<(&str, i64)> = status
        .exports
        .iter()
        .map(|e| (e.status.as_str(), e.dates))
        .collect();
    assert_eq!(counts, [("exported", 11), ("held", 1)]);

    // Nothing is exported twice: files taken away by an importer are not written again.
    for name in files_in(dir.path()) {
        std::fs::remove_file(dir.path().join(name)).unwrap();
    }
    let again = scheduled::run_all(
        &app.db.pool,
        &settings,
        &Default::default(),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(again[0].exported, 0);
    assert!(files_in(dir.path()).is_empty());

    // --force delivers a date again, and says so in the log.
    let (ledger, date) = closed[0].clone();
    let forced = scheduled::run(
        &app.db.pool,
        &settings,
        &settings.exporters[0],
        &Selection {
            ledgers: vec![ledger.clone()],
            from: Some(date),
            to: Some(date),
            force: true,
            now: false,
        },
        &Default::default(),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(forced.exported, 1, "{forced:?}");
    assert_eq!(
        files_in(dir.path()),
        [format!("{ledger}_{date}_entries.csv")]
    );
    let (forced_count, attempts): (i32, i32) = sqlx::query_as(
        "SELECT forced, attempts FROM export_log WHERE exporter = 'files' AND ledger_id = $1 AND ledger_date = $2",
    )
    .bind(&ledger)
    .bind(date)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!((forced_count, attempts), (1, 2));
}

#[tokio::test]
async fn a_delivery_cut_off_midway_is_finished_and_never_written_twice() {
    let app = reconciled(small()).await;
    let tmp = tempfile::tempdir().unwrap();
    let (dir, archive) = (tmp.path().join("books"), tmp.path().join("archive"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::create_dir(&archive).unwrap();
    let settings = with_exporter(
        &app,
        directory_exporter("books", ExporterKind::Journal, &dir, Format::Csv),
    );
    let closed = closed_dates(&app.db.pool).await;
    let name = |(l, d): &(String, NaiveDate)| format!("{l}_{d}_journal.csv");
    let partial = |key: &(String, NaiveDate)| dir.join(format!(".{}.partial", name(key)));
    // What a run that stopped after logging `writing` left: the temporary file with the
    // recorded checksum.
    let stopped_writing = |key: &(String, NaiveDate), bytes: &str| {
        std::fs::write(partial(key), bytes).unwrap();
        let checksum =
            vipps_ledger_sync::text::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes.as_bytes()));
        sqlx::query(
            "INSERT INTO export_log (exporter, ledger_id, ledger_date, kind, status, target, checksum, attempts)
             VALUES ('books', $1, $2, 'journal', 'writing', $3, $4, 1)",
        )
        .bind(key.0.clone())
        .bind(key.1)
        .bind(dir.join(name(key)).to_string_lossy().into_owned())
        .bind(checksum)
    };
    // Stopped before publishing (or published, then deleted by an importer): the temporary
    // file is linked once.
    let before_publish = &closed[0];
    stopped_writing(before_publish, "written earlier")
        .execute(&app.db.pool)
        .await
        .unwrap();
    // Stopped after publishing, before `exported`; an importer has moved the file into its
    // archive already (the temporary file is still linked twice).
    let after_publish = &closed[1];
    stopped_writing(after_publish, "moved away")
        .execute(&app.db.pool)
        .await
        .unwrap();
    std::fs::hard_link(partial(after_publish), archive.join(name(after_publish))).unwrap();
    // Stopped before the log said anything: a stale temporary file, nothing delivered.
    let before_log = &closed[2];
    std::fs::write(partial(before_log), "stale").unwrap();

    let report = scheduled::run_all(
        &app.db.pool,
        &settings,
        &Default::default(),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(report[0].exported, closed.len(), "{report:?}");
    let files = files_in(&dir);
    assert!(!files.iter().any(|f| f.starts_with('.')), "{files:?}");
    assert!(
        !files.contains(&name(after_publish)),
        "a delivered file is never written again"
    );
    assert_eq!(files.len(), closed.len() - 1);
    assert_eq!(
        std::fs::read_to_string(dir.join(name(before_publish))).unwrap(),
        "written earlier",
        "the delivery that was under way is finished, not produced again"
    );
    assert!(std::fs::read_to_string(dir.join(name(before_log)))
        .unwrap()
        .starts_with("voucher,"));
    let not_exported: i64 =
        sqlx::query_scalar("SELECT count(*) FROM export_log WHERE status <> 'exported'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(not_exported, 0);
}

/// What the webhook receiver saw.
#[derive(Default)]
struct Received {
    requests: usize,
    /// Idempotency key -> bodies answered 2xx.
    accepted: BTreeMap<String, Vec<serde_json::Value>>,
    bad_signatures: usize,
}

#[tokio::test]
async fn a_webhook_failing_twice_gets_every_date_exactly_once_with_a_valid_signature() {
    const SECRET: &str = "a-webhook-secret-of-some-length";
    let app = reconciled(small()).await;
    let received = Arc::new(Mutex::new(Received::default()));
    async fn receive(
        State(received): State<Arc<Mutex<Received>>>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let mut r = received.lock().unwrap();
        r.requests += 1;
        if r.requests <= 2 {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
        let timestamp: i64 = header(webhook::TIMESTAMP_HEADER).parse().unwrap();
        let secret = SecretString::from(SECRET);
        let key = header(webhook::IDEMPOTENCY_HEADER);
        let signature = header(webhook::SIGNATURE_HEADER);
        let now = chrono::Utc::now().timestamp();
        if !webhook::verify(&secret, timestamp, &key, &body, &signature, now) {
            r.bad_signatures += 1;
            return StatusCode::UNAUTHORIZED;
        }
        // The signature covers the key a receiver deduplicates on: another key (a replay
        // under a fresh key, a revision forged from an old body) does not verify.
        let forged = format!("{key}:r9");
        assert!(!webhook::verify(
            &secret, timestamp, &forged, &body, &signature, now
        ));
        let altered = key.replacen("hook:", "hooK:", 1);
        assert!(!webhook::verify(
            &secret, timestamp, &altered, &body, &signature, now
        ));
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        r.accepted.entry(key).or_default().push(json);
        StatusCode::NO_CONTENT
    }
    let router = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(Arc::clone(&received));
    let addr = serve_on_loopback(router).await;

    let mut settings = app.settings.clone();
    let cfg = format!(
        "[[exporters]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://{addr}/hook\"\nsecret = \"{SECRET}\"\n"
    );
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), cfg).unwrap();
    settings.exporters = Settings::load_with_env(Some(file.path()), HashMap::new())
        .unwrap()
        .exporters;
    let report = scheduled::run_all(
        &app.db.pool,
        &settings,
        &Default::default(),
        &CancellationToken::new(),
    )
    .await;
    let closed = closed_dates(&app.db.pool).await;
    assert_eq!(report[0].exported, closed.len(), "{report:?}");
    // A second pass sends nothing.
    let again = scheduled::run_all(
        &app.db.pool,
        &settings,
        &Default::default(),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(again[0].exported, 0);

    // `--force` sends a delivered date again under a new key that names the one it revises,
    // so a receiver that drops repeated keys takes the correction.
    let (forced_ledger, forced_date) = closed[0].clone();
    for _ in 0..2 {
        let forced = scheduled::run(
            &app.db.pool,
            &settings,
            &settings.exporters[0],
            &Selection {
                ledgers: vec![forced_ledger.clone()],
                from: Some(forced_date),
                to: Some(forced_date),
                force: true,
                now: true,
            },
            &Default::default(),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(forced.exported, 1, "{forced:?}");
    }

    // Taken out of the lock: the checks below query the database.
    let mut r = std::mem::take(&mut *received.lock().unwrap());
    assert_eq!(r.bad_signatures, 0);
    assert_eq!(
        r.requests,
        closed.len() + 2 + 2,
        "two failures, then one request per date, then two forced ones"
    );
    let base = format!("hook:{forced_ledger}:{forced_date}");
    for (n, revises) in [(1, base.clone()), (2, format!("{base}:r1"))] {
        let bodies = r.accepted.remove(&format!("{base}:r{n}")).unwrap();
        assert_eq!(bodies.len(), 1);
        assert_eq!(bodies[0]["revision"], n);
        assert_eq!(bodies[0]["revises"], revises.as_str());
        assert_eq!(bodies[0]["idempotency_key"], format!("{base}:r{n}"));
    }
    assert_eq!(r.accepted[&base][0]["revision"], 0);
    assert_eq!(r.accepted[&base][0]["revises"], serde_json::Value::Null);
    assert_eq!(r.accepted.len(), closed.len());
    for (ledger, date) in &closed {
        let bodies = &r.accepted[&format!("hook:{ledger}:{date}")];
        assert_eq!(bodies.len(), 1, "{ledger} {date} delivered once");
        let body = &bodies[0];
        let stored: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM entries WHERE ledger_id = $1 AND ledger_date = $2",
        )
        .bind(ledger)
        .bind(date)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        assert_eq!(body["entries"].as_array().unwrap().len() as i64, stored);
        let summed: i64 = body["summary"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["entries"].as_i64().unwrap())
            .sum();
        assert_eq!(summed, stored);
    }
}

/// Moves every delivered file out of `dir` into an archive directory beside it (on the same
/// filesystem), as importers do, counting each name. (An importer that deletes files instead
/// can get a date a second time if the exporter dies between publishing a file and logging
/// it: README, "Exporting".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_never_exports_a_date_twice_and_never_skips_one() {
    let app = reconciled(SimulatorConfig {
        ledgers: 8,
        days: 20,
        captures_per_day: 10,
        ..SimulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out_dir: PathBuf = dir.path().join("out");
    let cfg = crate::common::binary::config_file(
        &app,
        &format!(
            "[[exporters]]\nname = \"statements\"\nkind = \"camt053\"\ndirectory = \"{}\"",
            out_dir.display()
        ),
    );
    // Reconciliation, and the exporters after it, every second.
    let run = || {
        crate::common::binary::command(&["--config", cfg.path().to_str().unwrap(), "run"])
            .env("VLS_SYNC__VERIFY_SCHEDULE", "* * * * * *")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let closed = closed_dates(&app.db.pool).await;
    let exported = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM export_log WHERE status = 'exported'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap()
    };
    let total = closed.len() as i64;
    let mut taken = BTreeMap::new();
    let mut rng = rand::thread_rng();
    let (mut kills, mut interrupted) = (0, 0);
    let mut before = 0;
    // Cut several runs off in the middle of exporting; then one is left to finish.
    while exported().await < total && kills < 8 {
        let mut child = run();
        // Once this run has begun exporting, kill it a random moment later.
        let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
        while exported().await == before && tokio::time::Instant::now() < give_up {
            take_files(&out_dir, &mut taken);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(rng.gen_range(0..40));
        while tokio::time::Instant::now() < deadline {
            take_files(&out_dir, &mut taken);
            tokio::time::sleep(Duration::from_millis(rng.gen_range(1..5))).await;
        }
        child.kill().unwrap(); // SIGKILL, wherever it is
        child.wait().unwrap();
        kills += 1;
        take_files(&out_dir, &mut taken);
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
        take_files(&out_dir, &mut taken);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    last.kill().unwrap();
    last.wait().unwrap();
    assert!(interrupted >= 3, "the exports were cut off several times");
    assert_eq!(exported().await, total, "every date exported in the end");
    take_files(&out_dir, &mut taken);
    let want: BTreeMap<String, usize> = closed
        .iter()
        .map(|(l, d)| (format!("{l}_{d}_camt053.xml"), 1))
        .collect();
    assert_eq!(taken, want, "every closed date delivered exactly once");
}

#[test]
fn exporter_mistakes_are_refused_naming_their_key() {
    let cases = [
        ("[[exporters]]\nkind = \"entries\"\ndirectory = \"/tmp\"\n", "exporters[0].name"),
        ("[[exporters]]\nname = \"a b\"\nkind = \"entries\"\ndirectory = \"/tmp\"\n", "exporters[0].name"),
        ("[[exporters]]\nname = \"x\"\nkind = \"entries\"\n", "exporters[0] (x).directory"),
        ("[[exporters]]\nname = \"x\"\nkind = \"webhook\"\nurl = \"https://erp.example.com/h\"\n", "exporters[0] (x).secret"),
        ("[[exporters]]\nname = \"x\"\nkind = \"webhook\"\nurl = \"http://erp.example.com/h\"\nsecret = \"0123456789abcdef\"\n", "exporters[0] (x).url"),
        ("[[exporters]]\nname = \"x\"\nkind = \"entries\"\ndirectory = \"/tmp\"\n[exporters.accounts]\ncapture = \"3000\"\n", "exporters[0] (x).accounts"),
        ("[[exporters]]\nname = \"x\"\nkind = \"journal\"\ndirectory = \"/tmp\"\n[exporters.accounts]\nfallback = \"\"\n", "exporters[0] (x).accounts.fallback"),
        ("[[exporters]]\nname = \"x\"\nkind = \"entries\"\ndirectory = \"/tmp\"\nfrom = \"2026-13-01\"\n", "exporters[0] (x).from"),
        ("[[exporters]]\nname = \"x\"\nkind = \"entries\"\ndirectory = \"/tmp\"\npartner = \"nobody\"\n", "exporters[0] (x).partner"),
        ("[[exporters]]\nname = \"x\"\nkind = \"entries\"\ndirectory = \"/tmp\"\n[[exporters]]\nname = \"x\"\nkind = \"summary\"\ndirectory = \"/tmp\"\n", "exporters[1] (x).name"),
        ("[http]\nlisten = \"localhost\"\n", "http.listen"),
        ("[[exporters]]\nname = \"x\"\nkind = \"entries\"\ndirectory = \"/tmp\"\nbooking = \"settlement\"\n", "exporters[0] (x).booking"),
        ("[[exporters]]\nname = \"x\"\nkind = \"journal\"\ndirectory = \"/tmp\"\nbooking = \"net\"\n", "booking"),
        ("[[exporters]]\nname = \"x\"\nkind = \"journal\"\ndirectory = \"/tmp\"\n[exporters.accounts]\nclearing = \"\"\n", "exporters[0] (x).accounts.clearing"),
        ("[[exporters]]\nname = \"x\"\nkind = \"journal\"\ndirectory = \"/tmp\"\n[exporters.departments]\n\"api:1\" = \"sales\"\n", "exporters[0] (x).departments.api:1"),
        ("[[exporters]]\nname = \"x\"\nkind = \"entries\"\ndirectory = \"/tmp\"\n[exporters.projects]\n\"api:1\" = \"12\"\n", "exporters[0] (x).projects"),
        ("[[exporters]]\nname = \"x\"\nkind = \"settlement-xml\"\ndirectory = \"/tmp\"\nformat = \"jsonl\"\n", "exporters[0] (x).format"),
        ("[[exporters]]\nname = \"x\"\nkind = \"payout-webhook\"\ndirectory = \"/tmp\"\n", "exporters[0] (x).directory"),
        ("[[exporters]]\nname = \"x\"\nkind = \"payout-webhook\"\nurl = \"https://erp.example.com/h\"\n", "exporters[0] (x).secret"),
        ("[[exporters]]\nname = \"x\"\nkind = \"settlement-csv\"\n", "exporters[0] (x).directory"),
        ("[[exporters]]\nname = \"x\"\nkind = \"payouts\"\ndirectory = \"/tmp\"\nbooking = \"gross\"\n", "exporters[0] (x).booking"),
        ("[[exporters]]\nname = \"x\"\nkind = \"settlement\"\ndirectory = \"/tmp\"\n", "settlement-xml"),
    ];
    for (toml, key) in cases {
        let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(file.path(), toml).unwrap();
        let err = Settings::load_with_env(Some(file.path()), HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(key),
            "{toml}\n→ {err}\n(expected it to name {key})"
        );
    }
}

#[test]
fn a_journal_exporter_books_in_the_mode_it_names() {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        file.path(),
        "[[exporters]]\nname = \"books\"\nkind = \"journal\"\ndirectory = \"/tmp\"\n\
         booking = \"settlement\"\nfees_invoiced = \"skip\"\n[exporters.accounts]\nclearing = \"1510\"\n",
    )
    .unwrap();
    let settings = Settings::load_with_env(Some(file.path()), HashMap::new()).unwrap();
    let accounts = &settings.exporters[0].accounts;
    assert_eq!(
        accounts.booking,
        vipps_ledger_sync::config::Booking::Settlement
    );
    assert_eq!(
        accounts.fees_invoiced,
        vipps_ledger_sync::config::FeesInvoiced::Skip
    );
    assert_eq!(accounts.counterpart("capture"), "1510");
    assert_eq!(accounts.counterpart("capture-fee"), "7770");
    assert!(accounts.skips("fees-invoiced"));
}

#[test]
fn journal_accounts_override_the_built_in_chart_and_secrets_come_from_the_credentials_directory() {
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(
        creds.path().join("hook-secret"),
        "s3cret-from-a-credential\n",
    )
    .unwrap();
    std::fs::write(
        creds.path().join("database-url"),
        "postgres://vls:pw@db.internal/vls?sslmode=verify-full\n",
    )
    .unwrap();
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        file.path(),
        "[database]\nurl_file = \"database-url\"\n[http]\nlisten = \"9187\"\n\
         [[exporters]]\nname = \"books\"\nkind = \"journal\"\ndirectory = \"/tmp\"\n\
         [exporters.accounts]\nfees-retained = \"1580\"\nfallback = \"1599\"\n\
         [[exporters]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"https://erp.example.com/h\"\nsecret_file = \"hook-secret\"\n",
    )
    .unwrap();
    let env = HashMap::from([(
        "CREDENTIALS_DIRECTORY".to_owned(),
        creds.path().to_string_lossy().into_owned(),
    )]);
    let settings = Settings::load_with_env(Some(file.path()), env).unwrap();
    let books = &settings.exporters[0].accounts;
    assert_eq!(books.counterpart("fees-retained"), "1580");
    assert_eq!(
        books.counterpart("capture"),
        "3000",
        "built-in where not overridden"
    );
    assert_eq!(books.counterpart("interchange-adjustment"), "1599");
    match &settings.exporters[1].target {
        ExporterTarget::Webhook { secret, .. } => {
            assert_eq!(secret.expose_secret(), "s3cret-from-a-credential")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        settings.database.url.expose_secret(),
        "postgres://vls:pw@db.internal/vls?sslmode=verify-full"
    );
    assert_eq!(settings.http.listen, Some(([127, 0, 0, 1], 9187).into()));
    // Debug output of the settings never shows a secret.
    let debug = format!("{settings:?}");
    assert!(
        !debug.contains("s3cret") && !debug.contains(":pw@"),
        "{debug}"
    );
}

/// Validates `xml` against the camt.053.001.02 schema in process and, where xmllint is
/// installed, with xmllint as a second opinion (the two must agree); the error lists the
/// violations.
fn validate_camt053(xml: &[u8]) -> Result<(), String> {
    let ours = export::xsd::camt053().validate(xml).map_err(|violations| {
        let lines: Vec<String> = violations.iter().map(ToString::to_string).collect();
        lines.join("\n")
    });
    if let Some(theirs) = xmllint_camt053(xml) {
        assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "the validators disagree:\nin process: {ours:?}\nxmllint: {theirs:?}\n{}",
            String::from_utf8_lossy(xml)
        );
    }
    ours
}

/// xmllint's verdict on `xml` against the official schema file: `None` where xmllint is not
/// installed or `VLS_NO_XMLLINT` is set; the error has its output.
fn xmllint_camt053(xml: &[u8]) -> Option<Result<(), String>> {
    if std::env::var_os("VLS_NO_XMLLINT").is_some_and(|v| !v.is_empty() && v != "0") {
        return None;
    }
    let xsd = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/export/xsd/schemas/camt.053.001.02.xsd"
    );
    let file = tempfile::Builder::new().suffix(".xml").tempfile().unwrap();
    std::fs::write(file.path(), xml).unwrap();
    let out = match std::process::Command::new("xmllint")
        .args(["--noout", "--schema", xsd])
        .arg(file.path())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("xmllint could not run: {e}"),
    };
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    })
}

/// The statement's balances (`OPBD`/`CLBD` → signed decimal text) and its number of entries.
fn balances_and_entries(xml: &[u8]) -> (BTreeMap<String, String>, usize) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut path: Vec<String> = Vec::new();
    let (mut code, mut amount, mut sign) = (String::new(), String::new(), String::new());
    let mut balances = BTreeMap::new();
    let mut entries = 0;
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf).unwrap() {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if name == "Ntry" {
                    entries += 1;
                }
                path.push(name);
            }
            Event::End(_) => {
                if path.last().map(String::as_str) == Some("Bal") {
                    let signed = if sign == "DBIT" {
                        format!("-{amount}")
                    } else {
                        amount.clone()
                    };
                    balances.insert(code.clone(), signed);
                }
                path.pop();
            }
            Event::Text(t) => {
                let text = t.decode().unwrap().into_owned();
                let in_bal = path.iter().any(|p| p == "Bal");
                match path.last().map(String::as_str) {
                    Some("Cd") if in_bal => code = text,
                    Some("Amt") if in_bal => amount = text,
                    Some("CdtDbtInd") if in_bal => sign = text,
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    (balances, entries)
}

#[tokio::test]
async fn camt053_statements_validate_against_the_schema_and_match_the_balance_chain() {
    let app = reconciled(small()).await;
    let closed = closed_dates(&app.db.pool).await;
    let mut tested = 0;
    for (ledger, date) in &closed {
        let rows =
            vipps_ledger_sync::store::export_rows::entries_on(&app.db.pool, ledger, *date, None)
                .await
                .unwrap();
        let xml = scheduled::statement(&app.db.pool, ledger, *date, &rows)
            .await
            .unwrap();
        if let Err(e) = validate_camt053(&xml) {
            panic!("{ledger} {date}: {e}\n{}", String::from_utf8_lossy(&xml));
        }
        // The chain: the balance after the funds entry before the date, and after its last one.
        let (opening, closing, currency, n): (Option<i64>, Option<i64>, String, i64) = sqlx::query_as(
            "SELECT (SELECT e.balance_after FROM entries e WHERE e.ledger_id = $1 AND e.topic = 'funds'
                         AND e.seq < min(d.seq) ORDER BY e.seq DESC LIMIT 1),
                    (SELECT e.balance_after FROM entries e WHERE e.ledger_id = $1 AND e.topic = 'funds'
                         AND e.seq = max(d.seq)),
                    min(d.currency), count(*)
             FROM entries d WHERE d.ledger_id = $1 AND d.topic = 'funds' AND d.ledger_date = $2",
        )
        .bind(ledger)
        .bind(date)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        let (balances, entries) = balances_and_entries(&xml);
        assert_eq!(
            entries as i64, n,
            "{ledger} {date}: one Ntry per funds entry"
        );
        let dec = |minor: i64| export::decimal(minor, &currency);
        assert_eq!(
            balances["OPBD"],
            dec(opening.unwrap_or(0)),
            "{ledger} {date} opening"
        );
        assert_eq!(
            balances["CLBD"],
            dec(closing.unwrap()),
            "{ledger} {date} closing"
        );
        tested += 1;
    }
    assert_eq!(tested, 12);
    // The validation is real: a statement missing its account is refused.
    let rows = vipps_ledger_sync::store::export_rows::entries_on(
        &app.db.pool,
        &closed[0].0,
        closed[0].1,
        None,
    )
    .await
    .unwrap();
    let xml = scheduled::statement(&app.db.pool, &closed[0].0, closed[0].1, &rows)
        .await
        .unwrap();
    let text = String::from_utf8(xml).unwrap();
    let start = text.find("<Acct>").unwrap();
    let end = text.find("</Acct>").unwrap() + "</Acct>".len();
    let broken = format!("{}{}", &text[..start], &text[end..]);
    let err = validate_camt053(broken.as_bytes()).unwrap_err();
    assert!(
        err.starts_with("/Document/BkToCstmrStmt/Stmt[1]: missing Acct before Bal"),
        "{err}"
    );
}

#[tokio::test]
async fn an_export_piped_into_head_stops_quietly() {
    let app = reconciled(small()).await;
    let cfg = crate::common::binary::config_file(&app, "");
    let mut child = crate::common::binary::command(&[
        "--config",
        cfg.path().to_str().unwrap(),
        "export",
        "--from",
        "2026-01-01",
        "--to",
        "2026-12-31",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout); // the reader is gone, as with `| head -1`
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_running_one_exporter_deliver_each_date_once() {
    let app = reconciled(small()).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = with_exporter(
        &app,
        directory_exporter("shared", ExporterKind::Summary, dir.path(), Format::Jsonl),
    );
    // Two pools, as two processes would have.
    let other = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    let none = Selection::default();
    let cancel = CancellationToken::new();
    let exporter = &settings.exporters[0];
    let metrics = vipps_ledger_sync::metrics::Metrics::new();
    let (a, b) = tokio::join!(
        scheduled::run(&app.db.pool, &settings, exporter, &none, &metrics, &cancel),
        scheduled::run(&other, &settings, exporter, &none, &metrics, &cancel),
    );
    let closed = closed_dates(&app.db.pool).await;
    assert_eq!(a.exported + b.exported, closed.len(), "{a:?} {b:?}");
    assert!(a.error.is_none() && b.error.is_none());
    assert_eq!(files_in(dir.path()).len(), closed.len());
    let attempts: i64 = sqlx::query_scalar("SELECT sum(attempts)::int8 FROM export_log")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(attempts, closed.len() as i64, "no date was delivered twice");
    other.close().await;
}

/// Every closed date of `pool` due for exporter `name`, read page by page with `limit`.
async fn due_in_pages(pool: &PgPool, scope: &Scope<'_>, limit: i64) -> Vec<DueDate> {
    let (mut all, mut after) = (Vec::new(), DueAfter::start());
    loop {
        let page = export_log::due(pool, scope, &after, limit).await.unwrap();
        assert!(page.len() as i64 <= limit);
        if let Some(first) = page.first() {
            assert!(
                (&first.ledger_id, first.ledger_date) > (&after.ledger_id, after.ledger_date),
                "a page starts after the one before"
            );
        }
        let Some(last) = page.last() else { break };
        after = DueAfter::of(last);
        let full = page.len() as i64 == limit;
        all.extend(page);
        if !full {
            break;
        }
    }
    all
}

#[tokio::test]
async fn dates_due_read_page_by_page_are_every_date_due_once_in_order() {
    let app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    let held: (String, NaiveDate) = tamper_one_entry(&app.db.pool).await;
    reconcile::verify(&app.context(), &CancellationToken::new())
        .await
        .unwrap();
    // The second ledger's dates are exported already: they are not due.
    let dir = tempfile::tempdir().unwrap();
    let settings = with_exporter(
        &app,
        directory_exporter("files", ExporterKind::Summary, dir.path(), Format::Csv),
    );
    let exported = app.sim.ledger_ids()[1].clone();
    assert_ne!(exported, held.0);
    let done = scheduled::run(
        &app.db.pool,
        &settings,
        &settings.exporters[0],
        &Selection {
            ledgers: vec![exported.clone()],
            ..Selection::default()
        },
        &Default::default(),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(done.exported, 3, "{done:?}");

    let topics = ["funds".to_owned(), "fees".to_owned()];
    let scope = Scope {
        exporter: "files",
        ledgers: &[],
        partner: None,
        from: None,
        to: None,
        topics: &topics,
        include_exported: false,
    };
    let whole = export_log::due(&app.db.pool, &scope, &DueAfter::start(), 1000)
        .await
        .unwrap();
    let pairs: Vec<(String, NaiveDate)> = whole
        .iter()
        .map(|d| (d.ledger_id.clone(), d.ledger_date))
        .collect();
    let mut expected: Vec<(String, NaiveDate)> = closed_dates(&app.db.pool)
        .await
        .into_iter()
        .filter(|(ledger, _)| *ledger != exported)
        .chain(std::iter::once(held.clone()))
        .collect();
    expected.sort();
    assert_eq!(
        pairs, expected,
        "3 ledgers' 3 closed dates, the held one among them"
    );
    assert_eq!(
        whole.iter().filter(|d| d.held).count(),
        1,
        "only the mismatching date is held"
    );
    for limit in [1, 2, 3, 7] {
        assert_eq!(
            due_in_pages(&app.db.pool, &scope, limit).await,
            whole,
            "pages of {limit}"
        );
    }
    // With `--force`, the exported dates are due again, in the same order.
    let forced = Scope {
        include_exported: true,
        ..scope.clone()
    };
    let again = due_in_pages(&app.db.pool, &forced, 2).await;
    assert_eq!(again.len(), whole.len() + 3);
    assert!(again
        .windows(2)
        .all(|w| (&w[0].ledger_id, w[0].ledger_date) < (&w[1].ledger_id, w[1].ledger_date)));
}

#[tokio::test]
async fn a_pass_over_more_dates_than_a_page_exports_them_all() {
    // 2 ledgers x 270 closed dates: more than one page of dates due.
    let app = reconciled(SimulatorConfig {
        ledgers: 2,
        days: 271,
        captures_per_day: 1,
        ..SimulatorConfig::default()
    })
    .await;
    // A date with entries in only one feed is closed once the other feed was read to its end
    // after the check: the next sync.
    assert!(app.sync_once().await.success());
    let closed = closed_dates(&app.db.pool).await;
    assert!(
        closed.len() as i64 > export_log::DUE_PAGE,
        "{}",
        closed.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let settings = with_exporter(
        &app,
        directory_exporter("files", ExporterKind::Summary, dir.path(), Format::Jsonl),
    );
    let reports = scheduled::run_all(
        &app.db.pool,
        &settings,
        &Default::default(),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(reports[0].exported, closed.len(), "{reports:?}");
    assert_eq!(files_in(dir.path()).len(), closed.len());
    let again = scheduled::run_all(
        &app.db.pool,
        &settings,
        &Default::default(),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(again[0].exported, 0, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_hangs_is_abandoned_at_the_drain_deadline_and_sent_again_after() {
    let app = reconciled(small()).await;
    // The receiver hangs on its first request; later ones are accepted at once.
    let received = Arc::new(Mutex::new(Received::default()));
    async fn receive(
        State(received): State<Arc<Mutex<Received>>>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let first = {
            let mut r = received.lock().unwrap();
            r.requests += 1;
            r.requests == 1
        };
        if first {
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
        let key = headers[webhook::IDEMPOTENCY_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let mut r = received.lock().unwrap();
        r.accepted.entry(key).or_default().push(json);
        StatusCode::NO_CONTENT
    }
    let router = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(Arc::clone(&received));
    let addr = serve_on_loopback(router).await;
    let cfg = crate::common::binary::config_file(
        &app,
        &format!(
            "[[exporters]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://{addr}/hook\"\nsecret = \"s3cret-for-the-hook\""
        ),
    );
    let config_args = ["--config", cfg.path().to_str().unwrap()];
    let mut child = crate::common::binary::run_draining(
        cfg.path(),
        &[("VLS_SYNC__VERIFY_SCHEDULE", "* * * * * *")],
    );
    crate::common::binary::wait_for("no webhook sent", || received.lock().unwrap().requests > 0)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (took, _) =
        crate::common::binary::sigterm_abandons_at_the_deadline(&mut child, "exports").await;
    let writing: i64 =
        sqlx::query_scalar("SELECT count(*) FROM export_log WHERE status = 'writing'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(writing, 1, "the cut-off delivery is recorded as under way");

    // The next pass sends that date again, with the same key, and every other date once.
    let out = crate::common::binary::command(
        &[&config_args[..], &["export", "--exporter", "hook"]].concat(),
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let closed = closed_dates(&app.db.pool).await;
    let r = std::mem::take(&mut *received.lock().unwrap());
    let keys: Vec<&String> = r.accepted.keys().collect();
    let want: Vec<String> = closed
        .iter()
        .map(|(l, d)| format!("hook:{l}:{d}"))
        .collect();
    assert_eq!(keys, want.iter().collect::<Vec<_>>());
    assert!(
        r.accepted.values().all(|b| b.len() == 1),
        "each date accepted once"
    );
    eprintln!("run in exports: SIGTERM -> exit 0 in {took:?} (drain_deadline 2 s)");
}
