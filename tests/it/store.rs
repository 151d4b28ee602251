//! The store's page commit against a real database: one transaction per page, idempotent on
//! the entry key, balance-chain breaks recorded, a moved cursor refused.

use chrono::Utc;
use serde_json::json;
use std::time::Duration;
use vipps_ledger_sync::config::Topic;
use vipps_ledger_sync::report_api::{Entry, Ledger};

use vipps_ledger_sync::store::feeds::{self, CommitError, InsertPath, PageParams};
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
        path: Default::default(),
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

/// Every stored row of ledger `ledger`, for comparing two ledgers fed the same pages.
async fn stored(db: &TestDb, ledger: &str) -> Vec<(i64, String, i64, String, String)> {
    sqlx::query_as(
        "SELECT e.seq, e.psp_reference, e.amount, e.raw::text,
             c.cursor || ' ' || c.last_seq || ' ' || c.last_balance_after || ' ' || c.pages
         FROM entries e JOIN feed_cursors c USING (ledger_id, topic)
         WHERE e.ledger_id = $1 ORDER BY e.seq",
    )
    .bind(ledger)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_page_refused_for_one_stored_entry_at_its_end_is_committed_again_whole_and_nothing_of_the_refused_try_stays(
) {
    let db = TestDb::new().await;
    let lease = with_ledger(&db).await;
    let first = [entry("p499", 10, 4990)];
    feeds::commit_page(&db.pool, &page(&first, None, "c1", &lease))
        .await
        .unwrap();
    // 500 entries, the stored one last: the optimistic insert has written 499 rows when the
    // database refuses the statement.
    let entries: Vec<Entry> = (0..500)
        .map(|i| entry(&format!("p{i}"), 10, i * 10))
        .collect();
    let out = feeds::commit_page(&db.pool, &page(&entries, Some("c1"), "c2", &lease))
        .await
        .unwrap();
    assert_eq!((out.inserted, out.conflicts), (499, 0));
    let seqs: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, psp_reference FROM entries ORDER BY seq")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let expected: Vec<(i64, String)> = std::iter::once((1, "p499".to_owned()))
        .chain((0..499).map(|i| (i + 2, format!("p{i}"))))
        .collect();
    assert_eq!(seqs, expected, "numbered without gaps after the stored one");
    let row = feeds::load_cursor(&db.pool, "L1", Topic::Funds)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.cursor.as_deref(), row.last_seq, row.pages),
        (Some("c2"), 500, 2)
    );
    assert_eq!(count(&db, "SELECT count(*) FROM entry_conflicts").await, 0);
}

#[tokio::test]
async fn both_insert_paths_store_the_same_rows_from_pages_with_repeats_and_overlaps() {
    let db = TestDb::new().await;
    let mut leases = Vec::new();
    for ledger in ["L1", "L2"] {
        let l: Ledger =
            serde_json::from_value(json!({"ledgerId": ledger, "currency": "NOK"})).unwrap();
        let mut conn = db.pool.acquire().await.unwrap();
        ledgers::upsert_ledger(&mut conn, &l, Utc::now())
            .await
            .unwrap();
        leases.push(crate::common::test_lease(&db.pool, ledger, Topic::Funds).await);
    }
    let e = |i: i64| entry(&format!("p{i}"), 10, i * 10);
    let mut changed = e(3).raw_value();
    changed["note"] = json!("served again with other content");
    let changed = Entry::from_json(changed).unwrap();
    // New; a repeat within the page; an overlap with the previous page and a repeat;
    // everything stored already; a stored entry with different content among new ones.
    let pages: Vec<Vec<Entry>> = vec![
        (0..5).map(e).collect(),
        vec![e(5), e(6), e(5), e(7)],
        vec![e(6), e(7), e(8), e(8), e(9)],
        vec![e(0), e(9)],
        vec![e(10), changed, e(11)],
        (12..40).map(e).collect(),
    ];
    for (ledger, path, lease) in [
        ("L1", InsertPath::Optimistic, &leases[0]),
        ("L2", InsertPath::Checked, &leases[1]),
    ] {
        let mut cursor: Option<String> = None;
        for (i, entries) in pages.iter().enumerate() {
            let next = format!("c{i}");
            let params = PageParams {
                ledger_id: ledger,
                topic: Topic::Funds,
                fetched_with: cursor.as_deref(),
                next_cursor: &next,
                lease,
                personal_data: false,
                caught_up: false,
                entries,
                path,
            };
            feeds::commit_page(&db.pool, &params).await.unwrap();
            cursor = Some(next);
        }
    }
    let (optimistic, checked) = (stored(&db, "L1").await, stored(&db, "L2").await);
    assert_eq!(optimistic.len(), 40, "each entry once, numbered 1 to 40");
    assert!(optimistic.iter().zip(1..).all(|(row, seq)| row.0 == seq));
    assert_eq!(optimistic, checked);
    let conflicts: Vec<(String, i64)> =
        sqlx::query_as("SELECT ledger_id, seq FROM entry_conflicts ORDER BY ledger_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(conflicts, [("L1".to_owned(), 4), ("L2".to_owned(), 4)]);
}
