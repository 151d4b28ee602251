//! Faults, rate limits, timeouts and lost connections: the database ends exact, and the
//! client is polite (Retry-After obeyed host-wide, bounded rate and requests in flight).

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use vipps_ledger_sync::config::Topic;
use vipps_ledger_sync::report_api::Entry;
use vipps_ledger_sync::simulator::{FaultConfig, SimulatorConfig};
use vipps_ledger_sync::store::feeds::{self, PageParams};
use vipps_ledger_sync::store::leases;
use vipps_ledger_sync::sync::{self, Backoff};

use crate::common::{small, TestApp};

/// A few percent of every fault the gateway and the network produce.
fn fault_mix(seed: u64) -> FaultConfig {
    FaultConfig {
        seed,
        rate_429: 0.02,
        retry_after: Duration::from_secs(1),
        rate_500: 0.03,
        rate_502: 0.03,
        rate_truncated: 0.03,
        rate_invalid_json: 0.03,
        rate_html: 0.02,
        rate_wrong_types: 0.02,
        rate_missing_cursor: 0.02,
        rate_invalid_entry: 0.02,
        rate_overlap: 0.05,
        rate_no_progress: 0.02,
        ..FaultConfig::default()
    }
}

/// Retries enough to come through a few percent of faults in one pass.
fn patient(app: &mut TestApp) {
    app.settings.retry.max_attempts = 12;
    app.settings.api.max_requests_per_second = 0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_mix_of_faults_a_sync_ends_exact_and_never_jumps_a_retry_after() {
    let mut app = TestApp::spawn(small()).await;
    patient(&mut app);
    app.sim.set_feed_page_size(5);
    app.sim.set_faults(Some(fault_mix(7)));
    let report = app.sync_once().await;
    assert!(report.success(), "{report}");
    app.sim.set_faults(None);
    app.assert_exact().await;
    let stats = app.sim.stats();
    assert_eq!(stats.retry_after_violations, 0, "{stats:?}");
    let injected: u64 = stats.faults_injected.values().sum();
    assert!(
        injected >= 10,
        "faults were injected: {:?}",
        stats.faults_injected
    );
    assert!(
        stats.faults_injected.contains_key("429"),
        "{:?}",
        stats.faults_injected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_holds_back_every_request_to_the_host() {
    let mut app = TestApp::spawn(small()).await;
    patient(&mut app);
    app.settings.sync.concurrency = 8;
    app.sim.set_feed_page_size(5);
    app.sim.set_faults(Some(FaultConfig {
        seed: 3,
        rate_429: 0.08,
        retry_after: Duration::from_secs(1),
        retry_after_as_date: false,
        ..FaultConfig::default()
    }));
    assert!(app.sync_once().await.success());
    let stats = app.sim.stats();
    assert!(
        stats.faults_injected.get("429").copied().unwrap_or(0) >= 2,
        "{stats:?}"
    );
    assert_eq!(
        stats.retry_after_violations, 0,
        "eight workers, none jumped the pause"
    );
    app.sim.set_faults(None);
    app.assert_exact().await;
}

#[tokio::test]
async fn a_stalled_response_is_cut_at_the_timeout_and_the_ledger_is_tried_later() {
    let mut app = TestApp::spawn(small()).await;
    app.settings.api.request_timeout = Duration::from_millis(300);
    app.settings.retry.max_attempts = 2;
    let slow = app.sim.ledger_ids()[0].clone();
    app.sim.set_faults(Some(FaultConfig {
        seed: 1,
        only_ledger: Some(slow.clone()),
        rate_stall: 1.0,
        stall: Duration::from_secs(5),
        ..FaultConfig::default()
    }));
    let started = Instant::now();
    let report = app.sync_once().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the stall was not waited out"
    );
    assert_eq!(report.failed_units.len(), 2, "{report}");
    assert!(
        report
            .failed_units
            .iter()
            .all(|u| u.ledger_id == slow && u.error.contains("timed out")),
        "{report}"
    );
    assert_eq!(report.units_ok, 6, "the other ledgers synced");
    // The failing feeds back off in `run`; the failure is recorded for `status`.
    let (failures, backing_off): (i32, bool) = sqlx::query_as(
        "SELECT max(consecutive_failures), bool_and(next_attempt_at > now()) FROM feed_cursors WHERE ledger_id = $1",
    )
    .bind(&slow)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!((failures, backing_off), (1, true));
    let ctx = app.context();
    let honour = sync::sync_feeds(&ctx, &CancellationToken::new(), Backoff::Honour).await;
    assert_eq!(honour.backing_off, 2, "{honour}");
    assert!(honour.failed_units.is_empty());
    // Later, the ledger answers again and a sync completes it.
    app.sim.set_faults(None);
    assert!(app.sync_once().await.success());
    app.assert_exact().await;
}

#[tokio::test]
async fn one_401_leads_to_exactly_one_new_token_and_one_retry() {
    let app = TestApp::spawn(small()).await;
    let ctx = app.context();
    let partner = &ctx.partners[0];
    partner.list_ledgers().await.unwrap();
    app.sim.expire_tokens();
    app.sim.reset_stats();
    partner
        .feed(&app.sim.ledger_ids()[0], Topic::Funds, None)
        .await
        .unwrap();
    let stats = app.sim.stats();
    assert_eq!(stats.unauthorized, 1);
    assert_eq!(stats.token_requests, 1);
    assert_eq!(
        stats.total_feed_requests(),
        2,
        "the refused call and its one retry"
    );
}

#[tokio::test]
async fn requests_in_flight_and_per_second_stay_within_their_settings() {
    let mut app = TestApp::spawn(SimulatorConfig {
        ledgers: 6,
        ..small()
    })
    .await;
    app.settings.sync.concurrency = 12;
    app.settings.api.max_in_flight = 3;
    app.settings.api.max_requests_per_second = 100;
    app.sim.set_feed_page_size(10);
    app.sim.set_faults(Some(FaultConfig {
        seed: 5,
        rate_stall: 0.2,
        stall: Duration::from_millis(50),
        ..FaultConfig::default()
    }));
    let started = Instant::now();
    assert!(app.sync_once().await.success());
    let elapsed = started.elapsed();
    let stats = app.sim.stats();
    assert!(
        stats.max_in_flight <= 3,
        "{} in flight",
        stats.max_in_flight
    );
    assert!(
        stats.max_in_flight >= 2,
        "the pool was used ({})",
        stats.max_in_flight
    );
    let min = Duration::from_millis(10) * (stats.requests_total as u32 - 1);
    assert!(
        elapsed >= min,
        "{} requests in {elapsed:?}",
        stats.requests_total
    );
    app.sim.set_faults(None);
    app.assert_exact().await;
}

#[tokio::test]
async fn a_lost_database_connection_is_survived_without_a_restart() {
    let app = TestApp::spawn(small()).await;
    let ctx = app.context();
    assert!(sync::sync_once(&ctx, &CancellationToken::new())
        .await
        .success());
    // Every connection of the pool is killed, as a PostgreSQL restart would.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    app.sim.grow(1);
    let mut report = sync::sync_once(&ctx, &CancellationToken::new()).await;
    if !report.success() {
        // A unit that held a dead connection fails this pass; the next one recovers.
        report = sync::sync_once(&ctx, &CancellationToken::new()).await;
    }
    assert!(report.success(), "{report}");
    app.assert_exact().await;
}

#[tokio::test]
async fn an_entry_that_comes_again_with_different_content_is_a_conflict_and_the_stored_one_is_kept()
{
    let app = TestApp::spawn(small()).await;
    assert!(app.sync_once().await.success());
    let ledger = app.sim.ledger_ids()[0].clone();
    let stored = app.sim.expected_entries(&ledger, "funds");
    let mut changed = stored[0].clone();
    changed["reference"] = json!("rewritten-by-the-api");
    let entries = [Entry::from_json(changed.clone()).unwrap()];
    let cursor = feeds::load_cursor(&app.db.pool, &ledger, Topic::Funds)
        .await
        .unwrap()
        .unwrap()
        .cursor;
    let lease = leases::acquire_lease(
        &app.db.pool,
        &ledger,
        Topic::Funds,
        "test",
        None,
        Duration::from_secs(60),
    )
    .await
    .unwrap()
    .unwrap();
    let out = feeds::commit_page(
        &app.db.pool,
        &PageParams {
            ledger_id: &ledger,
            topic: Topic::Funds,
            fetched_with: cursor.as_deref(),
            next_cursor: cursor.as_deref().unwrap(),
            lease: &lease,
            personal_data: false,
            caught_up: true,
            entries: &entries,
            path: Default::default(),
        },
    )
    .await
    .unwrap();
    assert_eq!((out.inserted, out.conflicts), (0, 1));
    let (seq, old, new): (i64, serde_json::Value, serde_json::Value) =
        sqlx::query_as("SELECT seq, stored_raw, received_raw FROM entry_conflicts")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!((seq, &old, &new), (1, &stored[0], &changed));
    app.assert_exact().await;
}

/// Cases per run of the property test: few in CI, many with `VLS_HEAVY=1`.
fn cases() -> u32 {
    if crate::common::heavy() {
        64
    } else {
        4
    }
}

/// A fault schedule and the feed page size it runs with.
fn arb_schedule() -> impl Strategy<Value = (FaultConfig, usize)> {
    (
        any::<u64>(),
        prop::collection::vec(0.0f64..0.06, 11),
        1usize..25,
    )
        .prop_map(|(seed, r, page)| {
            let faults = FaultConfig {
                seed,
                rate_429: r[0] / 3.0,
                retry_after: Duration::from_secs(1),
                rate_500: r[1],
                rate_502: r[2],
                rate_truncated: r[3],
                rate_invalid_json: r[4],
                rate_html: r[5],
                rate_wrong_types: r[6],
                rate_missing_cursor: r[7],
                rate_invalid_entry: r[8],
                rate_overlap: r[9],
                rate_no_progress: r[10],
                ..FaultConfig::default()
            };
            (faults, page)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// Any schedule of faults: the sync core ends exact. A failure prints the schedule (seed,
    /// rates and page size); put them in a test like `under_a_mix_of_faults…` to replay it.
    #[test]
    fn any_fault_schedule_ends_exact((faults, page) in arb_schedule()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let mut app = TestApp::spawn(small()).await;
            patient(&mut app);
            app.sim.set_feed_page_size(page);
            app.sim.set_faults(Some(faults.clone()));
            // Passes until one succeeds: a unit may exhaust its attempts under a bad draw.
            let mut passes = 0;
            loop {
                passes += 1;
                let report = app.sync_once().await;
                if report.success() {
                    break;
                }
                assert!(passes < 5, "no clean pass with page size {page} under {faults:?}: {report}");
            }
            app.sim.set_faults(None);
            app.assert_exact().await;
            assert_eq!(app.sim.stats().retry_after_violations, 0, "page size {page}, {faults:?}");
        });
    }
}

#[tokio::test]
async fn a_bad_page_is_rejected_naming_ledger_topic_and_cursor_and_the_cursor_does_not_move() {
    let mut app = TestApp::spawn(small()).await;
    app.sim.set_feed_page_size(10);
    assert!(app.sync_once().await.success());
    let ledger = app.sim.ledger_ids()[0].clone();
    let before = feeds::load_cursor(&app.db.pool, &ledger, Topic::Funds)
        .await
        .unwrap()
        .unwrap();
    app.sim.grow(1);
    app.settings.retry.max_attempts = 2;
    for (kind, faults, needle) in [
        (
            "invalid entry",
            FaultConfig {
                rate_invalid_entry: 1.0,
                ..FaultConfig::default()
            },
            &["balanceAfter"][..],
        ),
        (
            "wrong types",
            FaultConfig {
                rate_wrong_types: 1.0,
                ..FaultConfig::default()
            },
            &["invalid type", "not a boolean"][..],
        ),
        (
            "html",
            FaultConfig {
                rate_html: 1.0,
                ..FaultConfig::default()
            },
            &["not JSON"][..],
        ),
        (
            "missing cursor",
            FaultConfig {
                rate_missing_cursor: 1.0,
                ..FaultConfig::default()
            },
            &["`cursor` is missing"][..],
        ),
    ] {
        app.sim.set_faults(Some(FaultConfig {
            only_ledger: Some(ledger.clone()),
            ..faults
        }));
        let report = app.sync_once().await;
        let failure = report
            .failed_units
            .iter()
            .find(|u| u.ledger_id == ledger && u.topic == Topic::Funds)
            .unwrap_or_else(|| panic!("{kind}: {report}"));
        let cursor = before.cursor.as_deref().unwrap();
        assert!(
            failure.error.contains(cursor),
            "{kind}: names the cursor: {}",
            failure.error
        );
        assert!(
            needle.iter().any(|n| failure.error.contains(n)),
            "{kind}: says what was wrong: {}",
            failure.error
        );
        assert!(
            !failure.error.contains("12.50") && !failure.error.contains("0.50"),
            "{kind}: no values: {}",
            failure.error
        );
        let after = feeds::load_cursor(&app.db.pool, &ledger, Topic::Funds)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (after.cursor, after.last_seq, after.pages),
            (before.cursor.clone(), before.last_seq, before.pages),
            "{kind}"
        );
    }
    app.sim.set_faults(None);
    assert!(app.sync_once().await.success());
    app.assert_exact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_never_exceed_the_sync_concurrency() {
    let mut app = TestApp::spawn(SimulatorConfig {
        ledgers: 6,
        ..small()
    })
    .await;
    app.settings.sync.concurrency = 3;
    app.settings.api.max_in_flight = 50;
    app.sim.set_feed_page_size(10);
    app.sim.set_faults(Some(FaultConfig {
        seed: 9,
        rate_stall: 0.3,
        stall: Duration::from_millis(40),
        ..FaultConfig::default()
    }));
    assert!(app.sync_once().await.success());
    let stats = app.sim.stats();
    assert!(
        stats.max_in_flight <= 3,
        "{} in flight with sync.concurrency 3",
        stats.max_in_flight
    );
    assert_eq!(stats.max_in_flight, 3, "the pool was full at times");
    app.sim.set_faults(None);
    app.assert_exact().await;
}
