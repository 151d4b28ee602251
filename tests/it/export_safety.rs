//! Exports that are exact or absent whatever the export directory, the ledger ids, the data
//! or the receivers do: planted symbolic links, ledger ids that differ in punctuation only, a
//! date that cannot be delivered, spreadsheet formulas in merchant text, a lost temporary
//! file, a shared directory, credentials in a webhook's URL.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use tokio_util::sync::CancellationToken;
use vipps_ledger_sync::config::{CsvFormulas, ExporterKind, ExporterTarget, Settings};
use vipps_ledger_sync::export::scheduled::{self, ExporterReport, Selection};
use vipps_ledger_sync::export::{self, Format, Kind};
use vipps_ledger_sync::metrics::Metrics;
use vipps_ledger_sync::simulator::SimulatorConfig;
use vipps_ledger_sync::store::export_rows::ExportFilter;
use vipps_ledger_sync::tables;

use crate::common::exports::{
    closed_dates, files_in, reconciled, serve_on_loopback, with_exporter,
};
use crate::common::{directory_exporter, small, TestApp};

/// An export directory of the test's own, owner-only as an operator would make it.
fn export_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

async fn pass(app: &TestApp, settings: &Settings, selection: Selection) -> ExporterReport {
    scheduled::run(
        &app.db.pool,
        settings,
        &settings.exporters[0],
        &selection,
        &Metrics::new(),
        &CancellationToken::new(),
    )
    .await
}

fn entries_file(ledger: &str, date: chrono::NaiveDate) -> String {
    scheduled::file_name(ledger, date, ExporterKind::Entries, Format::Csv)
}

/// The `ledger_id` and `reference` cells of a CSV file of entries.
fn csv_column(path: &Path, column: &str) -> Vec<String> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let at = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == column)
        .unwrap_or_else(|| panic!("no column {column}"));
    reader
        .records()
        .map(|r| r.unwrap().get(at).unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn planted_symbolic_links_at_the_temporary_and_final_names_leave_their_targets_alone() {
    let app = reconciled(small()).await;
    let dir = export_dir();
    let elsewhere = tempfile::tempdir().unwrap();
    let settings = with_exporter(
        &app,
        directory_exporter("files", ExporterKind::Entries, dir.path(), Format::Csv),
    );
    let closed = closed_dates(&app.db.pool).await;
    let (first, second) = (&closed[0], &closed[1]);
    // The first date: links at both names, to files the daemon's user may write.
    let victim_final = elsewhere.path().join("final-victim");
    let victim_partial = elsewhere.path().join("partial-victim");
    std::fs::write(&victim_final, "precious").unwrap();
    std::fs::write(&victim_partial, "precious").unwrap();
    let name = entries_file(&first.0, first.1);
    std::os::unix::fs::symlink(&victim_final, dir.path().join(&name)).unwrap();
    std::os::unix::fs::symlink(&victim_partial, dir.path().join(format!(".{name}.partial")))
        .unwrap();
    // The second: a dangling link at the temporary name, which a plain create would follow
    // and so create a file where the link points.
    let dangling = elsewhere.path().join("created-through-a-link");
    let name2 = entries_file(&second.0, second.1);
    std::os::unix::fs::symlink(&dangling, dir.path().join(format!(".{name2}.partial"))).unwrap();

    let report = pass(&app, &settings, Selection::default()).await;
    assert_eq!(report.exported, closed.len(), "{report:?}");

    assert_eq!(std::fs::read_to_string(&victim_final).unwrap(), "precious");
    assert_eq!(
        std::fs::read_to_string(&victim_partial).unwrap(),
        "precious"
    );
    assert!(!dangling.exists(), "a file was created through the link");
    for (ledger, date) in &closed {
        let path = dir.path().join(entries_file(ledger, *date));
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(
            meta.file_type().is_file(),
            "{} is not a plain file",
            path.display()
        );
        let ids: BTreeSet<String> = csv_column(&path, "ledger_id").into_iter().collect();
        assert_eq!(ids, BTreeSet::from([ledger.clone()]));
    }
    assert!(
        files_in(dir.path())
            .iter()
            .all(|n| !n.ends_with(".partial")),
        "{:?}",
        files_in(dir.path())
    );
}

#[tokio::test]
async fn ledgers_whose_ids_differ_in_punctuation_only_get_a_file_each() {
    let app = reconciled(SimulatorConfig {
        ledger_ids: vec!["acme.1".into(), "acme_1".into(), "acme:1".into()],
        ..small()
    })
    .await;
    let dir = export_dir();
    let settings = with_exporter(
        &app,
        directory_exporter("files", ExporterKind::Entries, dir.path(), Format::Csv),
    );
    let closed = closed_dates(&app.db.pool).await;
    let punctuated: Vec<_> = closed
        .iter()
        .filter(|(l, _)| l.starts_with("acme"))
        .collect();
    assert_eq!(
        punctuated.len(),
        9,
        "3 ledgers x 3 closed dates: {closed:?}"
    );
    let report = pass(&app, &settings, Selection::default()).await;
    assert_eq!(report.exported, closed.len(), "{report:?}");
    assert_eq!(
        files_in(dir.path()).len(),
        closed.len(),
        "one file per (ledger, date)"
    );
    for (ledger, date) in &closed {
        let path = dir.path().join(entries_file(ledger, *date));
        let ids: BTreeSet<String> = csv_column(&path, "ledger_id").into_iter().collect();
        assert_eq!(ids, BTreeSet::from([ledger.clone()]), "{}", path.display());
    }
}

#[tokio::test]
async fn a_date_that_cannot_be_delivered_holds_back_only_its_own_ledger() {
    let app = reconciled(small()).await;
    let dir = export_dir();
    let settings = with_exporter(
        &app,
        directory_exporter("files", ExporterKind::Entries, dir.path(), Format::Csv),
    );
    let closed = closed_dates(&app.db.pool).await;
    let poisoned_ledger = closed[0].0.clone();
    let own: Vec<_> = closed
        .iter()
        .filter(|(l, _)| *l == poisoned_ledger)
        .collect();
    assert_eq!(own.len(), 3);
    // A directory where the second date's file goes: its rename can never succeed.
    let poison = dir.path().join(entries_file(&own[1].0, own[1].1));
    std::fs::create_dir(&poison).unwrap();
    std::fs::write(poison.join("keep"), "").unwrap();

    let metrics = Metrics::new();
    let report = scheduled::run(
        &app.db.pool,
        &settings,
        &settings.exporters[0],
        &Selection::default(),
        &metrics,
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(report.error, None);
    assert_eq!(report.exported, closed.len() - 2, "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.failed[0].starts_with(&format!("{poisoned_ledger} {}", own[1].1)));
    for (ledger, date) in &closed {
        let delivered = dir.path().join(entries_file(ledger, *date)).is_file();
        let expected = *ledger != poisoned_ledger || *date == own[0].1;
        assert_eq!(delivered, expected, "{ledger} {date}");
    }
    let encoded = metrics.encode(&Default::default());
    assert!(
        encoded.contains(r#"vls_exports_total{exporter="files",status="error"} 1"#),
        "{encoded}"
    );
    let row =
        vipps_ledger_sync::store::export_log::get(&app.db.pool, &key(&poisoned_ledger, own[1].1))
            .await
            .unwrap()
            .unwrap();
    assert_eq!((row.status.as_str(), row.failures), ("failed", 1));
    assert!(row.retry_at.unwrap() > chrono::Utc::now() + chrono::Duration::seconds(50));
    assert!(
        row.last_error
            .as_deref()
            .unwrap()
            .contains("is a directory"),
        "{row:?}"
    );
    // `status` lists it with its error.
    let status = tables::status_report(&app.db.pool, &settings)
        .await
        .unwrap();
    let failed = status
        .exports
        .iter()
        .find(|c| c.status == "failed")
        .expect("failed dates in status");
    assert_eq!(failed.dates, 1);
    assert!(failed.examples[0].contains(&poisoned_ledger), "{failed:?}");

    // The next scheduled pass leaves the ledger alone until its pause is over.
    let again = pass(&app, &settings, Selection::default()).await;
    assert_eq!((again.exported, again.failed.len()), (0, 0), "{again:?}");
    // Asked for now, it tries again (and fails again, with a longer pause).
    let now = Selection {
        now: true,
        ..Selection::default()
    };
    let retried = pass(&app, &settings, now.clone()).await;
    assert_eq!(
        (retried.exported, retried.failed.len()),
        (0, 1),
        "{retried:?}"
    );
    // Mended: the ledger's dates go out, in order.
    std::fs::remove_dir_all(&poison).unwrap();
    let mended = pass(&app, &settings, now).await;
    assert_eq!((mended.exported, mended.failed.len()), (2, 0), "{mended:?}");
    let not_exported: i64 =
        sqlx::query_scalar("SELECT count(*) FROM export_log WHERE status <> 'exported'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(not_exported, 0);
}

fn key(ledger: &str, date: chrono::NaiveDate) -> vipps_ledger_sync::store::export_log::Key<'_> {
    vipps_ledger_sync::store::export_log::Key {
        exporter: "files",
        ledger_id: ledger,
        ledger_date: date,
        payout: "",
        kind: "entries",
        partner: None,
    }
}

#[tokio::test]
async fn spreadsheet_formulas_in_merchant_text_open_as_text_unless_raw_is_asked_for() {
    let app = reconciled(SimulatorConfig {
        formula_references: true,
        ..small()
    })
    .await;
    let safe = export_dir();
    let raw = export_dir();
    let mut raw_exporter =
        directory_exporter("raw", ExporterKind::Entries, raw.path(), Format::Csv);
    if let ExporterTarget::Directory { csv_formulas, .. } = &mut raw_exporter.target {
        *csv_formulas = CsvFormulas::Raw;
    }
    let mut settings = with_exporter(
        &app,
        directory_exporter("safe", ExporterKind::Entries, safe.path(), Format::Csv),
    );
    settings.exporters.push(raw_exporter);
    let reports = scheduled::run_all(
        &app.db.pool,
        &settings,
        &Metrics::new(),
        &CancellationToken::new(),
    )
    .await;
    assert!(
        reports
            .iter()
            .all(|r| r.failed.is_empty() && r.error.is_none()),
        "{reports:?}"
    );

    let cells = |dir: &Path, column: &str| -> Vec<String> {
        files_in(dir)
            .iter()
            .flat_map(|n| csv_column(&dir.join(n), column))
            .collect()
    };
    let formulas =
        |cells: &[String], prefix: &str| cells.iter().filter(|c| c.starts_with(prefix)).count();
    let safe_refs = cells(safe.path(), "reference");
    let raw_refs = cells(raw.path(), "reference");
    let n = formulas(&raw_refs, "=HYPERLINK(");
    assert!(n > 5, "the data set has formulas: {raw_refs:?}");
    assert_eq!(formulas(&safe_refs, "'=HYPERLINK("), n);
    assert_eq!(formulas(&safe_refs, "="), 0);
    // Numbers are untouched: negative amounts stay numbers.
    let amounts = cells(safe.path(), "amount");
    assert!(amounts.iter().any(|a| a.starts_with('-')));
    assert!(
        amounts.iter().all(|a| a.parse::<f64>().is_ok()),
        "{amounts:?}"
    );
    assert_eq!(amounts, cells(raw.path(), "amount"));

    // `export` neutralises too, and writes raw on request.
    let filter = ExportFilter {
        ledgers: Vec::new(),
        partner: None,
        topic: None,
        from: "2026-01-01".parse().unwrap(),
        to: "2026-12-31".parse().unwrap(),
    };
    for (formulas_wanted, prefix) in [(CsvFormulas::Neutralise, "'="), (CsvFormulas::Raw, "=")] {
        let out = tempfile::NamedTempFile::new().unwrap();
        export::export(
            &app.db.pool,
            &filter,
            Kind::Entries,
            Format::Csv,
            formulas_wanted,
            &Default::default(),
            Some(out.path()),
        )
        .await
        .unwrap();
        let refs = csv_column(out.path(), "reference");
        assert!(formulas(&refs, prefix) > 5, "{formulas_wanted:?}");
        assert_eq!(
            formulas(&refs, "=HYPERLINK(") == 0,
            formulas_wanted == CsvFormulas::Neutralise
        );
    }
}

#[tokio::test]
async fn a_writing_record_whose_files_are_both_gone_is_delivered_again() {
    let app = reconciled(small()).await;
    let dir = export_dir();
    let settings = with_exporter(
        &app,
        directory_exporter("files", ExporterKind::Entries, dir.path(), Format::Csv),
    );
    let closed = closed_dates(&app.db.pool).await;
    let report = pass(&app, &settings, Selection::default()).await;
    assert_eq!(report.exported, closed.len());
    // As after a power cut between `writing` and the rename that lost the temporary file's
    // directory entry: the log says `writing`, and neither file is there.
    let (ledger, date) = closed[1].clone();
    let path = dir.path().join(entries_file(&ledger, date));
    let before = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    sqlx::query(
        "UPDATE export_log SET status = 'writing', exported_at = NULL
         WHERE ledger_id = $1 AND ledger_date = $2",
    )
    .bind(&ledger)
    .bind(date)
    .execute(&app.db.pool)
    .await
    .unwrap();

    let again = pass(&app, &settings, Selection::default()).await;
    assert_eq!(again.exported, 1, "{again:?}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "produced again, the same bytes"
    );
    let row = vipps_ledger_sync::store::export_log::get(&app.db.pool, &key(&ledger, date))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, "exported");
}

#[tokio::test]
async fn a_world_writable_export_directory_is_refused_and_a_group_writable_one_is_used() {
    let app = reconciled(small()).await;
    let dir = export_dir();
    let settings = with_exporter(
        &app,
        directory_exporter("files", ExporterKind::Entries, dir.path(), Format::Csv),
    );
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let refused = pass(&app, &settings, Selection::default()).await;
    let error = refused.error.expect("refused");
    assert!(
        error.contains("writable by every user") && error.contains("chmod o-w"),
        "{error}"
    );
    assert_eq!(refused.exported, 0);
    assert!(files_in(dir.path()).is_empty());

    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o770)).unwrap();
    let used = pass(&app, &settings, Selection::default()).await;
    assert_eq!(used.error, None);
    assert_eq!(used.exported, closed_dates(&app.db.pool).await.len());
}

// Multi-threaded: the receiver must answer while the test waits for the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhooks_credentials_reach_no_log_line_no_table_and_no_status() {
    let app = reconciled(small()).await;
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { axum::http::StatusCode::INTERNAL_SERVER_ERROR }),
    );
    let addr = serve_on_loopback(router).await;
    let url = format!("http://hook-user:SENTINEL-pw@{addr}/hook?token=SENTINEL-token");
    let hook = format!(
        "[[exporters]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{url}\"\nsecret = \"a-webhook-secret-of-some-length\"\n"
    );
    let config = crate::common::binary::config_file(&app, "");
    let config_text = std::fs::read_to_string(config.path()).unwrap() + &hook;
    std::fs::write(config.path(), config_text).unwrap();
    let path = config.path().to_str().unwrap();

    let mut seen = String::new();
    for args in [
        &["--config", path, "export", "--exporter", "hook"][..],
        &["--config", path, "status", "--json"],
        &["--config", path, "status"],
    ] {
        let out = crate::common::binary::command(args)
            .env("RUST_LOG", "debug")
            .output()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&out.stdout));
        seen.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(
        seen.contains("POST http://"),
        "the failure is logged: {seen}"
    );
    assert!(seen.contains(&format!("{addr}/hook")), "{seen}");
    let stored: Vec<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT target, last_error FROM export_log")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert!(!stored.is_empty());
    let stored = format!("{stored:?}");
    assert!(stored.contains("/hook"), "{stored}");
    let settings = Settings::load_with_env(Some(config.path()), Default::default()).unwrap();
    let debug = format!("{settings:?}");
    for place in [&seen, &stored, &debug] {
        assert!(!place.contains("SENTINEL"), "a credential shows: {place}");
        assert!(!place.contains("hook-user"), "a user name shows: {place}");
    }
}

#[tokio::test]
async fn a_date_the_format_cannot_hold_is_held_with_the_reason_and_never_written() {
    let app = reconciled(small()).await;
    let dir = export_dir();
    let settings = with_exporter(
        &app,
        directory_exporter("statements", ExporterKind::Camt053, dir.path(), Format::Csv),
    );
    let closed = closed_dates(&app.db.pool).await;
    let ledger = closed[0].0.clone();
    let own: Vec<_> = closed.iter().filter(|(l, _)| *l == ledger).collect();
    // After reconciliation, one funds entry of the ledger's second date grows by 10^18 minor
    // units, its balances and every later one with it: a valid chain, but amounts and
    // balances of 19 digits, more than camt.053's 18.
    let grow = 1_000_000_000_000_000_000i64;
    sqlx::query(
        "WITH first AS (SELECT min(seq) AS seq FROM entries
                        WHERE ledger_id = $1 AND topic = 'funds' AND ledger_date = $2)
         UPDATE entries SET
             amount = amount + CASE WHEN seq = (SELECT seq FROM first) THEN $3 ELSE 0 END,
             balance_before = balance_before + CASE WHEN seq > (SELECT seq FROM first) THEN $3 ELSE 0 END,
             balance_after = balance_after + $3
         WHERE ledger_id = $1 AND topic = 'funds' AND seq >= (SELECT seq FROM first)",
    )
    .bind(&ledger)
    .bind(own[1].1)
    .bind(grow)
    .execute(&mut crate::common::behind_the_back(&app.db.pool).await)
    .await
    .unwrap();

    let report = pass(&app, &settings, Selection::default()).await;
    assert_eq!(report.error, None);
    assert!(report.failed.is_empty(), "{report:?}");
    // The ledger's first date goes out; the second and third cannot be written; every
    // other ledger's dates go out.
    assert_eq!(report.exported, closed.len() - 2, "{report:?}");
    assert_eq!(
        report.held,
        [
            format!("{ledger} {}", own[1].1),
            format!("{ledger} {}", own[2].1)
        ]
    );
    let name = |d| scheduled::file_name(&ledger, d, ExporterKind::Camt053, Format::Csv);
    assert!(dir.path().join(name(own[0].1)).is_file());
    assert!(!dir.path().join(name(own[1].1)).exists());
    let (status, reason): (String, String) = sqlx::query_as(
        "SELECT status, last_error FROM export_log WHERE ledger_id = $1 AND ledger_date = $2",
    )
    .bind(&ledger)
    .bind(own[1].1)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(status, "held");
    assert!(
        reason.starts_with("cannot be written as camt053") && reason.contains(&ledger),
        "{reason}"
    );
}
