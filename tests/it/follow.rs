//! Following new entries from outside: a `LISTEN` notification per committed page, and the
//! documented query by `seq` that never skips an entry.

use std::collections::BTreeMap;

use sqlx::postgres::PgListener;
use vipps_ledger_sync::store::feeds::NEW_ENTRIES_CHANNEL;

use crate::common::{small, TestApp};

#[tokio::test]
async fn every_committed_page_is_announced_and_seq_can_be_followed_without_gaps() {
    let app = TestApp::spawn(small()).await;
    app.sim.set_feed_page_size(25);
    let mut listener = PgListener::connect(&app.db.url).await.unwrap();
    listener.listen(NEW_ENTRIES_CHANNEL).await.unwrap();
    assert!(app.sync_once().await.success());
    // The newest seq announced per feed, from the notifications.
    let mut newest: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut announced = 0;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM entries")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    while announced < total {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv())
            .await
            .expect("a notification for every committed page")
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(n.payload()).unwrap();
        let key = (
            v["ledger_id"].as_str().unwrap().to_owned(),
            v["topic"].as_str().unwrap().to_owned(),
        );
        let seq = v["last_seq"].as_i64().unwrap();
        let e = newest.entry(key).or_default();
        *e = (*e).max(seq);
        announced += v["inserted"].as_i64().unwrap();
    }
    assert_eq!(announced, total);
    let stored: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT ledger_id, topic, max(seq) FROM entries GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(newest.len(), stored.len());
    for (ledger, topic, max) in stored {
        assert_eq!(newest[&(ledger, topic)], max);
    }
    // The follow query of the README: by seq, from the last one seen, never skips.
    let (ledger, topic) = newest.keys().next().unwrap().clone();
    let mut seen = 0i64;
    loop {
        let batch: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM entries WHERE ledger_id = $1 AND topic = $2 AND seq > $3 ORDER BY seq LIMIT 10",
        )
        .bind(&ledger)
        .bind(&topic)
        .bind(seen)
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
        let Some(&last) = batch.last() else { break };
        assert_eq!(batch, ((seen + 1)..=last).collect::<Vec<_>>(), "no gap");
        seen = last;
    }
    assert_eq!(seen, newest[&(ledger, topic)]);
}
