//! Roles: a finance reader sees only its partners' ledgers and cannot write; the daemon's
//! writer cannot change the schema or delete entries.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, PgConnection};

use crate::common::{small, test_settings, TestApp, CLIENT_ID, CLIENT_SECRET};

/// A login role of this test's own (roles are cluster-wide), member of `member_of`.
async fn login(app: &TestApp, member_of: &str) -> (PgConnection, String) {
    let name = format!("vls_test_login_{}", rand::random::<u32>());
    sqlx::query(&format!("CREATE ROLE {name} LOGIN IN ROLE {member_of}"))
        .execute(&app.db.pool)
        .await
        .unwrap();
    let options = PgConnectOptions::from_str(&app.db.url)
        .unwrap()
        .username(&name);
    (options.connect().await.unwrap(), name)
}

/// Removes a test login (after its connections are closed).
async fn drop_login(app: &TestApp, name: &str) {
    sqlx::query(&format!("DROP ROLE IF EXISTS {name}"))
        .execute(&app.db.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_reader_sees_only_its_partners_ledgers_and_cannot_write() {
    let mut app = TestApp::spawn(small()).await;
    let ids = app.sim.ledger_ids();
    app.sim.add_partner("bureau-dk", "dk-secret");
    app.sim.grant("bureau-dk", &ids[1]);
    app.settings = test_settings(
        &app.base_url,
        &app.db.url,
        &[
            ("acme", CLIENT_ID, CLIENT_SECRET),
            ("dk", "bureau-dk", "dk-secret"),
        ],
    );
    assert!(app.sync_once().await.success());
    let (mut reader, name) = login(&app, "finance_reader").await;
    let role: String = sqlx::query_scalar("SELECT current_user")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    sqlx::query("INSERT INTO reader_partners (role_name, partner) VALUES ($1, 'dk')")
        .bind(&role)
        .execute(&app.db.pool)
        .await
        .unwrap();
    let seen: Vec<String> = sqlx::query_scalar("SELECT DISTINCT ledger_id FROM entries ORDER BY 1")
        .fetch_all(&mut reader)
        .await
        .unwrap();
    assert_eq!(
        seen,
        [ids[1].clone()],
        "only the ledger dk holds a grant for"
    );
    let ledgers: i64 = sqlx::query_scalar("SELECT count(*) FROM ledgers")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    assert_eq!(ledgers, 1);
    let payouts: i64 = sqlx::query_scalar("SELECT count(DISTINCT ledger_id) FROM payouts")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    assert!(payouts <= 1, "views obey the same rule");
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM entries WHERE ledger_id = $1")
        .bind(&ids[1])
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let mine: i64 = sqlx::query_scalar("SELECT count(*) FROM entries")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    assert_eq!(mine, all, "all of its ledger's entries");
    let write = sqlx::query("UPDATE entries SET amount = 0")
        .execute(&mut reader)
        .await;
    assert!(write.is_err(), "a reader cannot write");
    let mapping = sqlx::query("SELECT * FROM reader_partners")
        .execute(&mut reader)
        .await;
    assert!(mapping.is_err(), "nor read who may see what");
    reader.close().await.unwrap();
    drop_login(&app, &name).await;
}

#[tokio::test]
async fn the_writer_can_sync_but_cannot_drop_or_delete_entries() {
    let app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    let (mut writer, name) = login(&app, "vls_writer").await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM entries")
        .fetch_one(&mut writer)
        .await
        .unwrap();
    assert!(n > 0, "the writer sees everything");
    sqlx::query("UPDATE feed_cursors SET caught_up_at = now()")
        .execute(&mut writer)
        .await
        .unwrap();
    assert!(
        sqlx::query("DELETE FROM entries")
            .execute(&mut writer)
            .await
            .is_err(),
        "no DELETE on entries"
    );
    assert!(
        sqlx::query("DROP TABLE entries")
            .execute(&mut writer)
            .await
            .is_err(),
        "no DDL"
    );
    assert!(sqlx::query("ALTER TABLE entries ADD COLUMN x int")
        .execute(&mut writer)
        .await
        .is_err());
    assert!(sqlx::query("TRUNCATE entries")
        .execute(&mut writer)
        .await
        .is_err());
    writer.close().await.unwrap();
    drop_login(&app, &name).await;
}

#[tokio::test]
async fn the_daemon_runs_as_a_writer_login_once_an_owner_has_migrated() {
    let mut app = TestApp::spawn(small()).await;
    let name = format!("vls_test_daemon_{}", rand::random::<u32>());
    sqlx::query(&format!("CREATE ROLE {name} LOGIN IN ROLE vls_writer"))
        .execute(&app.db.pool)
        .await
        .unwrap();
    let url = PgConnectOptions::from_str(&app.db.url)
        .unwrap()
        .username(&name)
        .to_url_lossy()
        .to_string();
    app.settings = test_settings(&app.base_url, &url, &[("acme", CLIENT_ID, CLIENT_SECRET)]);
    let ctx = vipps_ledger_sync::sync::SyncContext::connect(app.settings.clone())
        .await
        .map(std::sync::Arc::new)
        .unwrap();
    let report = vipps_ledger_sync::sync::sync_once(&ctx, &Default::default()).await;
    assert!(report.success(), "{report}");
    app.assert_exact().await;
    ctx.pool.close().await;
    drop_login(&app, &name).await;
}
