//! Personal data (GDPR): absent by default; when enabled, stored in its own columns (never in
//! `raw`) and emptied after the retention period, amounts untouched.

use vipps_ledger_sync::config::Topic;

use crate::common::{small, TestApp};
use vipps_ledger_sync::simulator::SimulatorConfig;

/// Ledgers whose captures carry personal data in the simulator (Vippsnummer sales units).
const VM_LEDGER: &str = "100003";

async fn with_personal(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM entries
         WHERE name IS NOT NULL OR masked_phone_no IS NOT NULL OR message IS NOT NULL",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

fn config() -> SimulatorConfig {
    SimulatorConfig {
        ledgers: 4,
        ..small()
    }
}

#[tokio::test]
async fn personal_fields_are_neither_requested_nor_stored_by_default() {
    let app = TestApp::spawn(config()).await;
    assert!(app.sync_once().await.success());
    assert_eq!(with_personal(&app).await, 0);
    let in_raw: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM entries WHERE raw ? 'name' OR raw ? 'maskedPhoneNo' OR raw ? 'message'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(in_raw, 0);
    app.assert_exact().await;
}

#[tokio::test]
async fn when_enabled_personal_fields_are_stored_apart_and_purged_after_retention() {
    let mut app = TestApp::spawn(config()).await;
    app.settings.sync.include_gdpr_sensitive_data = true;
    app.settings.sync.personal_data_retention_days = 0;
    assert!(app.sync_once().await.success());
    app.assert_exact().await; // `raw` and every other column exactly as without them

    // The stored values are what the API sends when asked.
    let ctx = app.context();
    let page = ctx.partners[0]
        .feed(VM_LEDGER, Topic::Funds, None)
        .await
        .unwrap();
    let mut checked = 0;
    for entry in page.items.iter().filter(|e| e.personal.name.is_some()) {
        let (name, phone, message): (Option<String>, Option<String>, Option<String>) =
            sqlx::query_as(
                "SELECT name, masked_phone_no, message FROM entries
             WHERE ledger_id = $1 AND topic = 'funds' AND entry_key = $2",
            )
            .bind(VM_LEDGER)
            .bind(entry.key().to_vec())
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(
            (name, phone, message),
            (
                entry.personal.name.clone(),
                entry.personal.masked_phone_no.clone(),
                entry.personal.message.clone()
            )
        );
        checked += 1;
    }
    assert!(checked > 0, "the Vippsnummer ledger has payers with names");
    let stored = with_personal(&app).await;
    assert!(stored >= checked);

    // Every entry is older than a day: a one-day retention empties them all.
    let sums_before: (i64, i64) = sqlx::query_as("SELECT count(*), sum(amount)::int8 FROM entries")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    app.settings.sync.personal_data_retention_days = 1;
    assert!(app.sync_once().await.success());
    assert_eq!(with_personal(&app).await, 0, "purged");
    let sums_after: (i64, i64) = sqlx::query_as("SELECT count(*), sum(amount)::int8 FROM entries")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(sums_before, sums_after, "amounts untouched");
    app.assert_exact().await;
}
