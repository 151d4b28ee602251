//! Reconciliation against the API's daily reports: clean ledgers pass; a missing entry is
//! found and inserted; an extra one and a tampered amount are reported, never "fixed"; an
//! open date is left for later.

use tokio_util::sync::CancellationToken;
use vipps_ledger_sync::reconcile::{self, VerifyReport};

use crate::common::{small, TestApp};

async fn verify(app: &TestApp) -> VerifyReport {
    reconcile::verify(&app.context(), &CancellationToken::new())
        .await
        .unwrap()
}

/// A closed date of the first ledger's funds feed with several entries.
const CLOSED: &str = "2026-01-06";

#[tokio::test]
async fn a_clean_ledger_passes_and_open_dates_wait() {
    let app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    let report = verify(&app).await;
    assert!(report.clean(), "{report}");
    assert_eq!(report.feeds.len(), 8);
    for f in &report.feeds {
        assert_eq!((f.dates_ok, f.dates_open), (3, 1), "{report}");
    }
    let statuses: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM reconciliations GROUP BY 1 ORDER BY 1")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(statuses, [("ok".into(), 24), ("open".into(), 8)]);
    // Nothing is asked again: reconciled dates are done, open ones wait 30 minutes.
    app.sim.reset_stats();
    let again = verify(&app).await;
    assert!(again.clean());
    assert_eq!(app.sim.stats().dates_requests, 0);
    let status: bool = sqlx::query_scalar(
        "SELECT bool_and(reconciled) FROM reconciliation_status WHERE ledger_date < '2026-01-08'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(status);
}

#[tokio::test]
async fn a_missing_entry_is_found_and_inserted_and_reported() {
    let app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    let ledger = app.sim.ledger_ids()[0].clone();
    let (seq, psp): (i64, String) = sqlx::query_as(
        "DELETE FROM entries WHERE (ledger_id, topic, seq) = (
             SELECT ledger_id, topic, seq FROM entries
             WHERE ledger_id = $1 AND topic = 'funds' AND ledger_date = $2::date
               AND entry_type = 'capture' ORDER BY seq LIMIT 1)
         RETURNING seq, psp_reference",
    )
    .bind(&ledger)
    .bind(CLOSED)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let report = verify(&app).await;
    assert!(!report.clean());
    let feed = report
        .feeds
        .iter()
        .find(|f| f.ledger_id == ledger && f.topic == "funds")
        .unwrap();
    assert_eq!((feed.inserted, feed.dates_mismatch), (1, 1), "{report}");
    let back: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM entries WHERE ledger_id = $1 AND topic = 'funds' AND psp_reference = $2 AND entry_type = 'capture'",
    )
    .bind(&ledger)
    .bind(&psp)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(back, 1, "the entry {seq} is back");
    let details: serde_json::Value = sqlx::query_scalar(
        "SELECT details FROM reconciliations WHERE ledger_id = $1 AND topic = 'funds' AND ledger_date = $2::date",
    )
    .bind(&ledger)
    .bind(CLOSED)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(details["inserted"][0]["psp_reference"], psp.as_str());
}

#[tokio::test]
async fn an_extra_entry_and_a_tampered_amount_are_reported_and_left_alone() {
    let app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    let ledger = app.sim.ledger_ids()[1].clone();
    // An entry the API never had, on a closed date.
    sqlx::query(
        "INSERT INTO entries (ledger_id, topic, seq, entry_key, psp_reference, entry_type, time,
             ledger_date, currency, amount, balance_before, balance_after, raw)
         SELECT ledger_id, topic, last_seq + 1, sha256('extra'::bytea), 'extra-1', 'capture',
             '2026-01-06T12:00:00Z', $2::date, 'NOK', 1, 0, 1, '{}'
         FROM feed_cursors WHERE ledger_id = $1 AND topic = 'fees'",
    )
    .bind(&ledger)
    .bind(CLOSED)
    .execute(&app.db.pool)
    .await
    .unwrap();
    // A stored amount changed behind the daemon's back.
    let tampered: i64 = sqlx::query_scalar(
        "UPDATE entries SET amount = amount + 100 WHERE (ledger_id, topic, seq) = (
             SELECT ledger_id, topic, seq FROM entries
             WHERE ledger_id = $1 AND topic = 'funds' AND ledger_date = $2::date
             ORDER BY seq LIMIT 1)
         RETURNING seq",
    )
    .bind(&ledger)
    .bind(CLOSED)
    .fetch_one(&mut crate::common::behind_the_back(&app.db.pool).await)
    .await
    .unwrap();
    let report = verify(&app).await;
    assert!(!report.clean());
    let fees = report
        .feeds
        .iter()
        .find(|f| f.ledger_id == ledger && f.topic == "fees")
        .unwrap();
    assert_eq!((fees.only_stored, fees.inserted), (1, 0), "{report}");
    let funds = report
        .feeds
        .iter()
        .find(|f| f.ledger_id == ledger && f.topic == "funds")
        .unwrap();
    assert_eq!(funds.differing, 1, "{report}");
    assert!(
        funds.chain_breaks >= 1,
        "the tampered amount breaks the chain: {report}"
    );
    let extra: i64 =
        sqlx::query_scalar("SELECT count(*) FROM entries WHERE psp_reference = 'extra-1'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(extra, 1, "never deleted");
    let position: i64 = sqlx::query_scalar(
        "SELECT min(seq) FROM balance_chain_breaks WHERE ledger_id = $1 AND topic = 'funds' AND kind = 'arithmetic'",
    )
    .bind(&ledger)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(position, tampered, "the break is reported at its position");
}
