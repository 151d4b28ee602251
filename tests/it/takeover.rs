//! Crashes and stalls: a dead instance's units are taken over at once (its presence in the
//! database went with its process), a stalled one keeps its leases until they expire and then
//! changes nothing, whatever it writes; consent is not rewritten by a late or glitchy answer.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::Rng;
use serde_json::json;
use vipps_ledger_sync::config::Topic;
use vipps_ledger_sync::report_api::{Entry, Ledger};
use vipps_ledger_sync::simulator::SimulatorConfig;
use vipps_ledger_sync::store::feed_health::{self, FailureParams};
use vipps_ledger_sync::store::feeds::{self, CommitError, PageParams};
use vipps_ledger_sync::store::grants::{self, GrantChange, RevokeReason};
use vipps_ledger_sync::store::leases::{self, Lease};
use vipps_ledger_sync::store::presence::Presence;
use vipps_ledger_sync::store::{self, ledgers};

use crate::common::binary::{command, config_file, sigterm};
use crate::common::{TestApp, TestDb};

async fn with_ledger(db: &TestDb) {
    let ledger: Ledger =
        serde_json::from_value(json!({"ledgerId": "L1", "currency": "NOK"})).unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    ledgers::upsert_ledger(&mut conn, &ledger, Utc::now())
        .await
        .unwrap();
}

async fn take(db: &TestDb, holder: &str, key: Option<i64>, ttl: Duration) -> Option<Lease> {
    leases::acquire_lease(&db.pool, "L1", Topic::Funds, holder, key, ttl)
        .await
        .unwrap()
}

/// The unit's whole row, as text, to compare before and after.
async fn row(db: &TestDb) -> String {
    sqlx::query_scalar("SELECT row_to_json(c)::text FROM feed_cursors c WHERE ledger_id = 'L1'")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn every_write_of_a_stale_lease_holder_changes_nothing() {
    let db = TestDb::new().await;
    with_ledger(&db).await;
    let a = take(&db, "a", None, Duration::from_millis(200))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let b = take(&db, "b", None, Duration::from_secs(60))
        .await
        .expect("an expired lease is taken over");
    assert!(b.fence > a.fence);
    let before = row(&db).await;

    let entry = Entry::from_json(json!({"pspReference": "1", "time": "2026-01-06T10:00:00Z",
        "ledgerDate": "2026-01-06", "entryType": "capture", "currency": "NOK", "amount": 100,
        "balanceBefore": 0, "balanceAfter": 100}))
    .unwrap();
    let page = PageParams {
        ledger_id: "L1",
        topic: Topic::Funds,
        fetched_with: None,
        next_cursor: "c1",
        lease: &a,
        personal_data: false,
        caught_up: true,
        entries: std::slice::from_ref(&entry),
        path: Default::default(),
    };
    assert!(matches!(
        feeds::commit_page(&db.pool, &page).await,
        Err(CommitError::Fenced { .. })
    ));
    assert!(!feeds::mark_caught_up(&db.pool, "L1", Topic::Funds, &a)
        .await
        .unwrap());
    assert!(
        !feed_health::block(&db.pool, "L1", Topic::Funds, "late", &a)
            .await
            .unwrap()
    );
    let failure = FailureParams {
        ledger_id: "L1",
        topic: Topic::Funds,
        error: "late",
        base: Duration::from_secs(60),
        max: Duration::from_secs(60),
    };
    assert!(!feed_health::record_failure(&db.pool, &failure, &a)
        .await
        .unwrap());
    leases::release_lease(&db.pool, "L1", Topic::Funds, &a)
        .await
        .unwrap();
    assert_eq!(row(&db).await, before, "the stale holder changed the unit");
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM entries")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(entries, 0);
    // The holder of the live lease writes as before.
    assert!(feeds::mark_caught_up(&db.pool, "L1", Topic::Funds, &b)
        .await
        .unwrap());
}

#[tokio::test]
async fn a_dead_holders_leases_are_free_at_once_and_a_live_ones_are_not() {
    let db = TestDb::new().await;
    with_ledger(&db).await;
    let alive = Presence::register(&db.pool).await.unwrap();
    let ttl = Duration::from_secs(120);
    let held = take(&db, "a", Some(alive.key()), ttl).await.unwrap();
    assert_eq!(
        take(&db, "b", None, ttl).await,
        None,
        "a live holder keeps its lease, however long it is silent"
    );
    // The holder's process dies: its presence connection closes.
    drop(alive);
    let started = Instant::now();
    let taken = loop {
        if let Some(lease) = take(&db, "b", None, ttl).await {
            break lease;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a dead holder's lease was not freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("taken over {:?} after the holder died", started.elapsed());
    assert!(taken.fence > held.fence);
}

#[tokio::test]
async fn a_listing_older_than_a_revocation_neither_reopens_nor_moves_the_period() {
    let db = TestDb::new().await;
    with_ledger(&db).await;
    let ledger: Ledger =
        serde_json::from_value(json!({"ledgerId": "L1", "currency": "NOK"})).unwrap();
    let listed_at = store::database_now(&db.pool).await.unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    assert_eq!(
        grants::record_seen(&mut conn, "p", &ledger, listed_at)
            .await
            .unwrap(),
        GrantChange::Opened
    );
    // A 404 confirmed after the listing started closes the period…
    let observed = store::database_now(&db.pool).await.unwrap();
    grants::close(&db.pool, "p", "L1", RevokeReason::Feed404, observed)
        .await
        .unwrap()
        .unwrap();
    // …and a page of that earlier listing, recorded late, changes nothing.
    assert_eq!(
        grants::record_seen(&mut conn, "p", &ledger, listed_at)
            .await
            .unwrap(),
        GrantChange::Outdated
    );
    let periods: i64 = sqlx::query_scalar("SELECT count(*) FROM grants")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(periods, 1);
    // A listing that started after the revocation opens a second period.
    let later = store::database_now(&db.pool).await.unwrap();
    assert_eq!(
        grants::record_seen(&mut conn, "p", &ledger, later)
            .await
            .unwrap(),
        GrantChange::Opened
    );
    // A 404 observed before that period opened cannot close it.
    assert!(
        grants::close(&db.pool, "p", "L1", RevokeReason::Feed404, observed)
            .await
            .unwrap()
            .is_none()
    );
}

fn many_ledgers() -> SimulatorConfig {
    SimulatorConfig {
        ledgers: 10,
        days: 12,
        captures_per_day: 30,
        ..SimulatorConfig::default()
    }
}

async fn stored(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM entries")
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

fn spawn_run(config: &std::path::Path) -> Child {
    command(&["--config", config.to_str().unwrap(), "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_killed_and_started_again_resumes_the_dead_instances_feeds_within_seconds() {
    let app = TestApp::spawn(many_ledgers()).await;
    app.sim.set_feed_page_size(10);
    let total = crate::common::expected_total(&app.sim) as i64;
    let cfg = config_file(&app, "");
    let mut first = spawn_run(cfg.path());
    let started = Instant::now();
    while stored(&app).await < total / 4 {
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap(); // SIGKILL, with leases of two minutes
    first.wait().unwrap();
    let held: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT ledger_id, topic, fence FROM feed_cursors WHERE lease_holder IS NOT NULL",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert!(!held.is_empty(), "the killed instance held feeds");
    let restarted = Instant::now();
    let mut second = spawn_run(cfg.path());
    // Each of the dead instance's feeds is leased anew (a larger fence) long before its
    // two-minute lease would have expired.
    loop {
        let mut all_taken = true;
        for (ledger, topic, fence) in &held {
            let now: i64 = sqlx::query_scalar(
                "SELECT fence FROM feed_cursors WHERE ledger_id = $1 AND topic = $2",
            )
            .bind(ledger)
            .bind(topic)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
            all_taken &= now > *fence;
        }
        if all_taken {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(20),
            "the dead instance's feeds were not taken over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resumed = restarted.elapsed();
    while stored(&app).await < total {
        assert!(
            restarted.elapsed() < Duration::from_secs(60),
            "the restarted daemon did not finish the dead one's feeds"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "{} feeds of the killed instance resumed {resumed:?} after the restart; all synced after {:?}",
        held.len(),
        restarted.elapsed()
    );
    sigterm(&second);
    assert!(second.wait().unwrap().success());
    app.assert_exact().await;
}

/// Instances holding their presence lock (`store::presence`) in the test's database.
async fn presences(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

/// Periods of one (partner, ledger) that overlap or repeat: none may exist.
async fn overlapping_periods(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM grants a JOIN grants b
             ON a.partner = b.partner AND a.ledger_id = b.ledger_id AND a.grant_id < b.grant_id
         WHERE tstzrange(a.granted_seen_at, coalesce(a.revoked_seen_at, 'infinity'), '[)')
            && tstzrange(b.granted_seen_at, coalesce(b.revoked_seen_at, 'infinity'), '[)')",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_killed_and_stopped_at_random_end_exact_with_a_clean_grant_history() {
    let heavy = crate::common::heavy();
    let app = TestApp::spawn(many_ledgers()).await;
    app.sim.set_feed_page_size(10);
    let cfg = config_file(
        &app,
        "schedule = \"* * * * * *\"\ndiscovery_schedule = \"*/2 * * * * *\"\nlease_ttl = \"2s\"",
    );
    let mut instances: Vec<Child> = (0..3).map(|_| spawn_run(cfg.path())).collect();
    let mut rng = rand::thread_rng();
    let (mut kills, mut stops) = (0, 0);
    let ledgers = app.sim.ledger_ids();
    let chaos = if heavy { 60 } else { 12 };
    let started = Instant::now();
    for round in 0..chaos {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..700))).await;
        let i = rng.gen_range(0..instances.len());
        if rng.gen_bool(0.5) {
            instances[i].kill().unwrap(); // SIGKILL
            instances[i].wait().unwrap();
            instances[i] = spawn_run(cfg.path());
            kills += 1;
        } else {
            let pid = instances[i].id() as i32;
            // SAFETY: kill(2) on a child we spawned.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            tokio::time::sleep(Duration::from_millis(rng.gen_range(500..3000))).await;
            unsafe { libc::kill(pid, libc::SIGCONT) };
            stops += 1;
        }
        // Consent changes while the instances run: a merchant withdraws and grants again.
        if round % 4 == 1 {
            let l = &ledgers[rng.gen_range(0..ledgers.len())];
            app.sim.revoke(crate::common::CLIENT_ID, l);
            tokio::time::sleep(Duration::from_millis(rng.gen_range(500..2500))).await;
            app.sim.grant(crate::common::CLIENT_ID, l);
        }
    }
    // Quiet: every ledger granted, the instances finish the work.
    let total = crate::common::expected_total(&app.sim) as i64;
    let quiet = Instant::now();
    while stored(&app).await < total {
        assert!(
            quiet.elapsed() < Duration::from_secs(90),
            "the instances did not finish after the chaos"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An instance started in the last round may still be starting: SIGTERM before its
    // handler is installed ends it by the signal's default action, not by its shutdown.
    // Each holds its presence lock from just before it installs the handler.
    let started_up = Instant::now();
    while presences(&app).await < instances.len() as i64 {
        assert!(
            started_up.elapsed() < Duration::from_secs(30),
            "the instances did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for child in &mut instances {
        sigterm(child);
    }
    for child in &mut instances {
        let status = child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
    eprintln!(
        "{kills} SIGKILLs and {stops} SIGSTOPs over {:?}; exact {:?} after the last",
        quiet - started,
        quiet.elapsed()
    );
    app.assert_exact().await;
    assert_eq!(
        overlapping_periods(&app).await,
        0,
        "overlapping grant periods"
    );
    let open: Vec<(String, i64)> = sqlx::query_as(
        "SELECT ledger_id, count(*) FROM grants WHERE revoked_seen_at IS NULL
         GROUP BY ledger_id HAVING count(*) <> 1",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert!(
        open.is_empty(),
        "ledgers without exactly one open period: {open:?}"
    );
}

#[tokio::test]
async fn a_single_404_from_the_gateway_closes_no_grant_and_opens_no_second_period() {
    let app = TestApp::spawn(crate::common::small()).await;
    assert!(app.sync_once().await.success());
    let ledger = app.sim.ledger_ids()[0].clone();
    app.sim.grow(1);
    app.sim.not_found_once(&ledger);
    let report = app.sync_once().await;
    assert!(report.success(), "{report}");
    assert_eq!(report.grants_closed, 0, "{report}");
    let periods: Vec<(String, Option<chrono::DateTime<Utc>>)> =
        sqlx::query_as("SELECT ledger_id, revoked_seen_at FROM grants WHERE ledger_id = $1")
            .bind(&ledger)
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(periods, [(ledger.clone(), None)], "one period, still open");
    assert!(app.sync_once().await.success());
    app.assert_exact().await;
    // A 404 that holds (the merchant withdrew access) still closes the grant.
    app.sim.revoke(crate::common::CLIENT_ID, &ledger);
    let ctx = app.context();
    let closed = vipps_ledger_sync::sync::sync_feeds(
        &ctx,
        &tokio_util::sync::CancellationToken::new(),
        vipps_ledger_sync::sync::Backoff::Ignore,
    )
    .await;
    assert_eq!(closed.grants_closed, 1, "{closed}");
}

#[tokio::test]
async fn a_panic_inside_a_piece_of_work_is_caught_and_the_daemon_goes_on() {
    let app = TestApp::spawn(crate::common::small()).await;
    let ctx = app.context();
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut watchdog = vipps_ledger_sync::sync::lifecycle::Watchdog::off();
    let work = async {
        if std::hint::black_box(true) {
            panic!("a bug in a piece of work");
        }
    };
    let outcome =
        vipps_ledger_sync::sync::lifecycle::drain(&ctx, "test work", work, &cancel, &mut watchdog)
            .await;
    match outcome {
        vipps_ledger_sync::sync::lifecycle::Drained::Panicked(why) => {
            assert!(why.contains("a bug in a piece of work"), "{why}")
        }
        other => panic!("not caught: {other:?}"),
    }
    // The same context works on.
    assert!(app.sync_once().await.success());
}
