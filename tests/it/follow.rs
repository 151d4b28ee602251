//! Following new entries from outside: a `LISTEN` wake-up per committed page that tells a
//! listener nothing about any ledger, and the documented follow query by `seq` that never
//! skips an entry.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use vipps_ledger_sync::store::feeds::NEW_ENTRIES_CHANNEL;

use crate::common::{small, TestApp, TestLogin};

/// The README's follow loop for one feed: the entries after `seen`, by `seq`, in batches;
/// returns the new last `seq`, asserting no gap.
async fn follow(pool: &PgPool, ledger: &str, topic: &str, mut seen: i64) -> i64 {
    loop {
        let batch: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM entries WHERE ledger_id = $1 AND topic = $2 AND seq > $3
             ORDER BY seq LIMIT 10",
        )
        .bind(ledger)
        .bind(topic)
        .bind(seen)
        .fetch_all(pool)
        .await
        .unwrap();
        let Some(&last) = batch.last() else {
            return seen;
        };
        assert_eq!(batch, ((seen + 1)..=last).collect::<Vec<_>>(), "no gap");
        seen = last;
    }
}

#[tokio::test]
async fn every_committed_page_wakes_listeners_and_seq_can_be_followed_without_gaps() {
    let app = TestApp::spawn(small()).await;
    app.sim.set_feed_page_size(25);
    // Any login may LISTEN on any channel: a plain login with no right to read anything.
    let stranger = TestLogin::create(&[]).await;
    let mut listener = PgListener::connect_with(
        &sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(stranger.options(&app.db.url))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    listener.listen(NEW_ENTRIES_CHANNEL).await.unwrap();
    assert!(app.sync_once().await.success());
    let pages: i64 = sqlx::query_scalar("SELECT (sum(pages))::int8 FROM feed_cursors")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let mut wake_ups = 0;
    while let Ok(n) = tokio::time::timeout(Duration::from_secs(2), listener.recv()).await {
        assert_eq!(n.unwrap().payload(), "", "a wake-up names no ledger");
        wake_ups += 1;
    }
    assert!(
        wake_ups > 0 && wake_ups <= pages,
        "{wake_ups} wake-ups, {pages} pages"
    );

    // Woken, a follower reads each feed's newest seq, then follows it by seq.
    let mut followed: BTreeMap<(String, String), i64> = BTreeMap::new();
    let feeds: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT ledger_id, topic, last_seq FROM feed_cursors ORDER BY 1, 2")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    for (ledger, topic, last_seq) in feeds {
        let seen = follow(&app.db.pool, &ledger, &topic, 0).await;
        assert_eq!(seen, last_seq);
        followed.insert((ledger, topic), seen);
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM entries")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(followed.values().sum::<i64>(), total);
}
