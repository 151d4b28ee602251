//! Helpers of the exporter tests: a synced and reconciled application, the dates it closed,
//! the files a directory holds, a webhook receiver on loopback.

use std::path::Path;

use chrono::NaiveDate;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use vipps_ledger_sync::config::{ExporterSettings, Settings};
use vipps_ledger_sync::reconcile;
use vipps_ledger_sync::simulator::SimulatorConfig;

use super::TestApp;

/// Synced and reconciled: 4 ledgers with 3 closed dates each (and one open date).
pub async fn reconciled(config: SimulatorConfig) -> TestApp {
    let app = TestApp::spawn(config).await;
    assert!(app.sync_once().await.success());
    let report = reconcile::verify(&app.context(), &CancellationToken::new())
        .await
        .unwrap();
    assert!(report.clean(), "{report}");
    app
}

/// The (ledger, date) pairs whose every feed reconciled `ok`.
pub async fn closed_dates(pool: &PgPool) -> Vec<(String, NaiveDate)> {
    sqlx::query_as(
        "SELECT ledger_id, ledger_date FROM reconciliation_status WHERE reconciled
         ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

pub fn with_exporter(app: &TestApp, exporter: ExporterSettings) -> Settings {
    let mut settings = app.settings.clone();
    settings.exporters = vec![exporter];
    settings
}

pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Serves a webhook receiver on a free port of 127.0.0.1 until the test ends.
pub async fn serve_on_loopback(router: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// Every ledger, every partner's view, ledger dates of 2026 up to `to`.
pub fn history_to(to: &str) -> vipps_ledger_sync::store::export_rows::ExportFilter {
    vipps_ledger_sync::store::export_rows::ExportFilter {
        ledgers: Vec::new(),
        partner: None,
        topic: None,
        from: "2026-01-01".parse().unwrap(),
        to: to.parse().unwrap(),
    }
}

/// `export` of `filter` as `kind` (`format`, built-in accounts unless given) into a file;
/// returns what it wrote and the count it reported.
pub async fn export_text(
    app: &TestApp,
    filter: &vipps_ledger_sync::store::export_rows::ExportFilter,
    kind: vipps_ledger_sync::export::Kind,
    format: vipps_ledger_sync::export::Format,
    accounts: &vipps_ledger_sync::config::Accounts,
) -> (String, u64) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let n = vipps_ledger_sync::export::export(
        &app.db.pool,
        filter,
        kind,
        format,
        Default::default(),
        accounts,
        Some(out.path()),
    )
    .await
    .unwrap();
    (std::fs::read_to_string(out.path()).unwrap(), n)
}

/// Takes every published file out of `dir` as an importer would (into `archive` beside it),
/// counting how many times each name was delivered.
pub fn take_files(dir: &Path, taken: &mut std::collections::BTreeMap<String, usize>) {
    let archive = dir.with_file_name("archive");
    std::fs::create_dir_all(&archive).unwrap();
    for name in files_in(dir) {
        if name.starts_with('.') {
            continue;
        }
        let n = taken.entry(name.clone()).or_default();
        *n += 1;
        std::fs::rename(dir.join(&name), archive.join(format!("{name}.{n}"))).unwrap();
    }
}
