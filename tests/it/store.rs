//! The store's page commit against a real database: one transaction per page, idempotent on
//! the entry key, balance-chain breaks recorded, a moved cursor refused.

use chrono::Utc;
use serde_json::json;
use std::time::Duration;
use vipps_ledger_sync::config::Topic;
use vipps_ledger_sync::report_api::{Entry, Ledger};

use vipps_ledger_sync::store::feeds::{self, CommitError, PageParams};
use vipps_ledger_sync::store::leases::{self, Lease};
use vipps_ledger_sync::store::ledgers;

use crate::common::TestDb;

fn entry(psp: &str, amount: i64, before: i64) -> Entry {
    Entry::from_json(json!({
        "pspReference": psp, "time": "2026-01-05T10:00:00.123456Z", "ledgerDate": "2026-01-05",
        "entryType": "capture", "reference": "order-1", "currency": "NOK", "amount": amount,
        "balanceBefore": before, "balanceAfter": before + amount, "recipientHandle": "api:123456"
    }))
    .unwrap()
}

async fn with_ledger(db: &TestDb) -> Lease {
    let ledger: Ledger =
        serde_json::from_value(json!({"ledgerId": "L1", "currency": "NOK"})).unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    ledgers::upsert_ledger(&mut conn, &ledger, Utc::now())
        .await
        .unwrap();
    lease(db, "test").await.unwrap()
}

async fn lease(db: &TestDb, holder: &str) -> Option<Lease> {
    leases::acquire_lease(
        &db.pool,
        "L1",
        Topic::Funds,
        holder,
        None,
        Duration::from_millis(300),
    )
    .await
    .unwrap()
}

fn page<'a>(
    entries: &'a [Entry],
    from: Option<&'a str>,
    to: &'a str,
    lease: &'a Lease,
) -> PageParams<'a> {
    PageParams {
        ledger_id: "L1",
        topic: Topic::Funds,
        fetched_with: from,
        next_cursor: to,
        lease,
        personal_data: false,
        caught_up: false,
        entries,
    }
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

#[tokio::test]
async fn a_page_and_its_cursor_commit_together_and_replays_store_nothing() {
    let db = TestDb::new().await;
    let lease = with_ledger(&db).await;
    let a = [entry("1", 100, 0), entry("2", 50, 100), entry("2", 50, 100)];
    let out = feeds::commit_page(&db.pool, &page(&a, None, "c1", &lease))
        .await
        .unwrap();
    assert_eq!(
        out.inserted, 2,
        "a duplicate within the page is stored once"
    );
    // An overlapping page: one old entry, one new.
    let b = [entry("2", 50, 100), entry("3", -30, 150)];
    let out = feeds::commit_page(&db.pool, &page(&b, Some("c1"), "c2", &lease))
        .await
        .unwrap();
    assert_eq!(out.inserted, 1);
    assert!(out.chain_breaks.is_empty());
    let seqs: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, psp_reference FROM entries ORDER BY seq")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(seqs, [(1, "1".into()), (2, "2".into()), (3, "3".into())]);
    let row = feeds::load_cursor(&db.pool, "L1", Topic::Funds)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.cursor.as_deref(), row.last_seq, row.last_balance_after),
        (Some("c2"), 3, Some(120))
    );
}

#[tokio::test]
async fn a_commit_from_a_stale_cursor_is_refused_and_writes_nothing() {
    let db = TestDb::new().await;
    let lease = with_ledger(&db).await;
    let a = [entry("1", 100, 0)];
    feeds::commit_page(&db.pool, &page(&a, None, "c1", &lease))
        .await
        .unwrap();
    let b = [entry("9", 1, 100)];
    let err = feeds::commit_page(&db.pool, &page(&b, None, "other", &lease))
        .await
        .unwrap_err();
    assert!(matches!(err, CommitError::CursorMoved), "{err}");
    assert_eq!(count(&db, "SELECT count(*) FROM entries").await, 1);
    let row = feeds::load_cursor(&db.pool, "L1", Topic::Funds)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.cursor.as_deref(), Some("c1"));
}

#[tokio::test]
async fn balance_chain_breaks_are_recorded_with_their_position() {
    let db = TestDb::new().await;
    let lease = with_ledger(&db).await;
    let mut bad = entry("3", 10, 160);
    bad.balance_after = 999;
    let a = [entry("1", 100, 0), entry("2", 50, 100), bad];
    let out = feeds::commit_page(&db.pool, &page(&a, None, "c1", &lease))
        .await
        .unwrap();
    assert_eq!(out.chain_breaks.len(), 2, "{:?}", out.chain_breaks);
    let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
        "SELECT seq, kind, expected, actual FROM balance_chain_breaks ORDER BY kind",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            (3, "arithmetic".into(), 170, 999),
            (3, "link".into(), 150, 160)
        ]
    );
    // The chain continues from what the API said, so one break is reported once.
    let b = [entry("4", 1, 999)];
    let out = feeds::commit_page(&db.pool, &page(&b, Some("c1"), "c2", &lease))
        .await
        .unwrap();
    assert!(out.chain_breaks.is_empty());
}

#[tokio::test]
async fn a_stale_lease_holders_late_commit_is_refused() {
    let db = TestDb::new().await;
    let stale = with_ledger(&db).await;
    assert_eq!(lease(&db, "other").await, None, "a live lease is not taken");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let fresh = lease(&db, "other")
        .await
        .expect("an expired lease is taken over");
    assert!(fresh.fence > stale.fence);
    let a = [entry("1", 100, 0)];
    let err = feeds::commit_page(&db.pool, &page(&a, None, "c1", &stale))
        .await
        .unwrap_err();
    assert!(matches!(err, CommitError::Fenced { .. }), "{err}");
    assert_eq!(count(&db, "SELECT count(*) FROM entries").await, 0);
    feeds::commit_page(&db.pool, &page(&a, None, "c1", &fresh))
        .await
        .unwrap();
    // Releasing a lease we no longer hold does not free the new holder's.
    leases::release_lease(&db.pool, "L1", Topic::Funds, &stale)
        .await
        .unwrap();
    assert_eq!(lease(&db, "third").await, None);
}

#[tokio::test]
async fn a_page_of_a_thousand_entries_and_its_cursor_are_one_transaction() {
    let db = TestDb::new().await;
    let lease = with_ledger(&db).await;
    let entries: Vec<Entry> = (0..1000)
        .map(|i| entry(&format!("p{i}"), 10, i * 10))
        .collect();
    let out = feeds::commit_page(&db.pool, &page(&entries, None, "c1", &lease))
        .await
        .unwrap();
    assert_eq!(out.inserted, 1000);
    // Every row written by one transaction carries its id as xmin.
    let xids: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT xmin::text FROM entries
         UNION SELECT xmin::text FROM feed_cursors WHERE cursor = 'c1'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        xids.len(),
        1,
        "entries and cursor in one transaction: {xids:?}"
    );
}
