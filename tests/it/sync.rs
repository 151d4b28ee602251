//! `sync --once` in-process against the simulator: exactness, idempotency, resumption.

use vipps_ledger_sync::simulator::SimulatorConfig;

use crate::common::{self, small, TestApp};

#[tokio::test]
async fn a_sync_stores_exactly_what_the_simulator_holds() {
    let app = TestApp::spawn(SimulatorConfig::default()).await;
    let report = app.sync_once().await;
    assert!(report.success(), "{report}");
    assert_eq!(report.ledgers, 12);
    app.assert_exact().await;

    let total = crate::common::expected_total(&app.sim);
    assert_eq!(report.inserted as usize, total);
    assert!(
        total > 1000,
        "the default data set is realistic in size ({total})"
    );

    // Every kind of entry the API documents, an unknown one, and both payout spellings.
    let types = common::entry_types(&app.sim);
    for t in [
        "capture",
        "refund",
        "capture-fee",
        "fees-retained",
        "payout-scheduled",
        "retained-disputed-capture",
    ] {
        assert!(types.contains(t), "the simulator serves {t}: {types:?}");
    }
    let spellings: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT entry_type FROM entries WHERE entry_type LIKE '%payout%' ORDER BY 1",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(spellings, ["payout-scheduled", "scheduled-for-payout"]);
    let unknown: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM entries WHERE entry_type NOT IN ('capture', 'refund', 'capture-fee',
             'fees-retained', 'payout-scheduled', 'scheduled-for-payout', 'payout-aborted',
             'retained-disputed-capture', 'returned-disputed-capture', 'correction', 'top-up',
             'credit-note', 'fees-invoiced', 'service-fee')",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(unknown > 0, "an unknown entry type is stored, not dropped");

    // pspReference is not unique on fees, yet every fee is stored.
    let repeated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT psp_reference FROM entries WHERE topic = 'fees'
             AND entry_type = 'capture-fee' GROUP BY ledger_id, psp_reference HAVING count(*) > 1) r",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(repeated > 0, "several fees share one pspReference");

    let breaks: i64 = sqlx::query_scalar("SELECT count(*) FROM balance_chain_breaks")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(breaks, 0, "the simulator's chains are consistent");

    let stats = app.sim.stats();
    assert_eq!(
        stats.subscription_key_sent, 0,
        "no Ocp-Apim-Subscription-Key"
    );
    assert_eq!(
        stats.missing_system_headers, 0,
        "Vipps-System-* headers on every call"
    );
    assert_eq!(stats.token_requests, 1, "one token for the whole pass");
}

#[tokio::test]
async fn ledgers_and_grants_are_recorded_with_the_merchant() {
    let app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT l.ledger_id, l.currency, l.owner_id, g.merchant_id, g.partner
             FROM ledgers l JOIN grants g USING (ledger_id) ORDER BY 1",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 4);
    for (ledger, currency, owner, merchant, partner) in rows {
        let listed = app.sim.ledger_json(&ledger).unwrap();
        assert_eq!(currency.as_deref(), listed["currency"].as_str());
        assert_eq!(owner.as_deref(), listed["owner"]["id"].as_str());
        assert_eq!(merchant, owner, "the grant names the ledger's owner");
        assert_eq!(partner, "test-partner");
    }
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM grants WHERE revoked_seen_at IS NULL")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(open, 4);
    // A second pass keeps one period per grant and moves last_seen_at.
    assert!(app.sync_once().await.success());
    let (periods, moved): (i64, bool) =
        sqlx::query_as("SELECT count(*), bool_and(last_seen_at > granted_seen_at) FROM grants")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!((periods, moved), (4, true));
}

#[tokio::test]
async fn a_second_sync_over_unchanged_data_inserts_nothing_and_asks_each_feed_once() {
    let app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    app.sim.reset_stats();
    let report = app.sync_once().await;
    assert!(report.success(), "{report}");
    assert_eq!(report.inserted, 0);
    let stats = app.sim.stats();
    assert_eq!(
        stats.feed_requests.len(),
        8,
        "every (ledger, topic) is asked"
    );
    for (unit, n) in &stats.feed_requests {
        assert_eq!(*n, 1, "{unit:?} was asked {n} times");
    }
    app.assert_exact().await;
}

#[tokio::test]
async fn new_entries_are_picked_up_from_the_stored_cursor() {
    let app = TestApp::spawn(small()).await;
    app.sim.set_feed_page_size(40);
    assert!(app.sync_once().await.success());
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM entries")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let lens = |app: &TestApp| -> Vec<usize> {
        app.sim
            .ledger_ids()
            .iter()
            .flat_map(|l| ["funds", "fees"].map(|t| app.sim.expected_entries(l, t).len()))
            .collect()
    };
    let old_lens = lens(&app);
    app.sim.grow(2);
    app.sim.reset_stats();
    let report = app.sync_once().await;
    assert!(report.success(), "{report}");
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM entries")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(report.inserted > 0);
    assert_eq!(after - before, report.inserted as i64);
    // Resumed, not restarted: only the new entries' pages were asked for.
    let new_pages: usize = old_lens
        .iter()
        .zip(lens(&app))
        .map(|(old, new)| (new - old).div_ceil(40) + 1)
        .sum();
    let asked = app.sim.stats().total_feed_requests() as usize;
    assert!(
        asked <= new_pages,
        "{asked} feed requests for {new_pages} new pages"
    );
    app.assert_exact().await;
}

#[tokio::test]
async fn overlapping_pages_store_nothing_twice() {
    let app = TestApp::spawn(small()).await;
    app.sim.set_feed_page_size(25);
    app.sim.set_overlap(7);
    let report = app.sync_once().await;
    assert!(report.success(), "{report}");
    app.assert_exact().await;
}

#[tokio::test]
async fn a_page_served_again_stores_nothing_twice() {
    let app = TestApp::spawn(small()).await;
    app.sim.set_feed_page_size(30);
    app.sim.set_repeat_pages(true);
    let report = app.sync_once().await;
    assert!(report.success(), "{report}");
    app.assert_exact().await;
    app.sim.grow(1);
    assert!(app.sync_once().await.success());
    app.assert_exact().await;
}

#[tokio::test]
async fn a_wrong_secret_gives_a_clear_error_and_stores_nothing() {
    let mut app = TestApp::spawn(small()).await;
    app.settings.partners[0].client_secret = "not-the-secret-9f3a".to_owned().into();
    let report = app.sync_once().await;
    assert!(!report.success());
    let (partner, error) = &report.failed_partners[0];
    assert_eq!(partner, "test-partner");
    assert!(error.contains("refused the keys"), "{error}");
    assert!(
        !error.contains("not-the-secret-9f3a"),
        "the secret is not in the error"
    );
    let stored: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM entries) + (SELECT count(*) FROM ledgers)",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(stored, 0);
    assert_eq!(app.sim.stats().total_feed_requests(), 0);
}

#[tokio::test]
async fn an_expired_token_is_replaced_before_use() {
    let app = TestApp::spawn(small()).await;
    app.sim.set_token_ttl(std::time::Duration::from_secs(1));
    assert!(app.sync_once().await.success());
    let ctx = app.context();
    let partner = &ctx.partners[0];
    partner.list_ledgers().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    app.sim.reset_stats();
    partner.list_ledgers().await.unwrap();
    let stats = app.sim.stats();
    assert_eq!(stats.token_requests, 1, "a new token was fetched");
    assert_eq!(stats.unauthorized, 0, "the expired token was never sent");
}

#[tokio::test]
async fn the_cursor_row_records_the_newest_seq_and_balance() {
    let app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    let (last_seq, last_balance): (i64, Option<i64>) = sqlx::query_as(
        "SELECT last_seq, last_balance_after FROM feed_cursors ORDER BY ledger_id, topic LIMIT 1",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let (max_seq, newest): (i64, i64) = sqlx::query_as(
        "SELECT seq, balance_after FROM entries e WHERE (ledger_id, topic) =
             (SELECT ledger_id, topic FROM feed_cursors ORDER BY ledger_id, topic LIMIT 1)
         ORDER BY seq DESC LIMIT 1",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!((last_seq, last_balance), (max_seq, Some(newest)));
}
