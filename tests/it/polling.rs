//! Adaptive polling, driven by a clock of the test's own: a busy feed is polled within its
//! interval, a quiet one backs off to the maximum and never waits longer, a new grant is
//! polled at once, the hourly budget holds, a restart keeps the schedule, and `sync --once`
//! still polls every feed.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tokio_util::sync::CancellationToken;
use vipps_ledger_sync::sync::{discovery, sync_due_feeds, SyncContext};

use crate::common::{small, TestApp};

/// Feed requests per (ledger, topic) the simulator has answered so far.
fn requests(app: &TestApp) -> BTreeMap<(String, String), u64> {
    app.sim.stats().feed_requests
}

async fn pass(ctx: &Arc<SyncContext>, now: DateTime<Utc>) -> usize {
    let report = sync_due_feeds(ctx, &CancellationToken::new(), now).await;
    assert!(report.failed_units.is_empty(), "{report}");
    report.units_ok
}

async fn interval_of(app: &TestApp, ledger: &str, topic: &str) -> i32 {
    sqlx::query_scalar(
        "SELECT poll_interval_secs FROM feed_cursors WHERE ledger_id = $1 AND topic = $2",
    )
    .bind(ledger)
    .bind(topic)
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_busy_feed_is_polled_within_its_interval_and_quiet_ones_back_off_to_the_maximum() {
    let app = TestApp::spawn(small()).await;
    let ctx = app.context();
    discovery::discover(&ctx, &CancellationToken::new()).await;
    let ledgers = app.sim.ledger_ids();
    let busy = ledgers[0].clone();
    let t0 = Utc::now();
    // Never polled: every feed at once.
    assert_eq!(pass(&ctx, t0).await, 2 * ledgers.len());
    // Within the minimum interval (2 minutes): nothing is due.
    let before = requests(&app);
    assert_eq!(pass(&ctx, t0 + Duration::seconds(90)).await, 0);
    assert_eq!(requests(&app), before, "no request at all");

    // Ten hours of passes every two minutes; the busy ledger gets a new day each pass.
    let mut polled: BTreeMap<(String, String), Vec<DateTime<Utc>>> = BTreeMap::new();
    let mut last = requests(&app);
    let mut t = t0;
    for _ in 0..300 {
        t += Duration::minutes(2);
        app.sim.grow_ledger(&busy, 1);
        pass(&ctx, t).await;
        let now = requests(&app);
        for (feed, n) in &now {
            if last.get(feed) != Some(n) {
                polled.entry(feed.clone()).or_default().push(t);
            }
        }
        last = now;
    }
    for topic in ["funds", "fees"] {
        let times = &polled[&(busy.clone(), topic.to_owned())];
        assert_eq!(times.len(), 300, "the busy {topic} feed, at every pass");
        assert_eq!(interval_of(&app, &busy, topic).await, 120);
    }
    for quiet in &ledgers[1..] {
        for topic in ["funds", "fees"] {
            let times = &polled[&(quiet.clone(), topic.to_owned())];
            let mut waits: Vec<i64> = std::iter::once(t0)
                .chain(times.iter().copied())
                .collect::<Vec<_>>()
                .windows(2)
                .map(|w| (w[1] - w[0]).num_minutes())
                .collect();
            // 2, 4, 8, … minutes (on the two-minute passes), then never more than 6 hours.
            assert_eq!(&waits[..4], [2, 4, 8, 16], "{quiet} {topic}: {waits:?}");
            waits.sort();
            assert!(
                *waits.last().unwrap() <= 6 * 60,
                "{quiet} {topic}: {waits:?}"
            );
            assert_eq!(interval_of(&app, quiet, topic).await, 6 * 3600);
            assert!(times.len() <= 10, "{quiet} {topic} backed off: {times:?}");
        }
    }
    // The schedule is in the database: another instance (or a restart) keeps it; at the
    // quiet feeds' next hour nothing but the busy feeds is due.
    let restarted = app.context();
    let before = requests(&app);
    app.sim.grow_ledger(&busy, 1);
    assert_eq!(pass(&restarted, t + Duration::minutes(2)).await, 2);
    let after = requests(&app);
    let changed: Vec<&(String, String)> = after
        .keys()
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(changed.iter().all(|(l, _)| *l == busy), "{changed:?}");

    // `status` shows the schedule.
    let status = vipps_ledger_sync::tables::status_report(&app.db.pool, &app.settings)
        .await
        .unwrap();
    assert_eq!(status.polling.interval_5m, 2);
    assert_eq!(status.polling.interval_longer, 0);
    assert_eq!(status.polling.interval_6h, 2 * (ledgers.len() as i64 - 1));

    // `sync --once` polls every feed, due or not.
    let before = requests(&app);
    assert!(app.sync_once().await.success());
    let after = requests(&app);
    assert!(
        after.iter().all(|(k, n)| before.get(k) < Some(n)),
        "every feed polled: {before:?} → {after:?}"
    );
}

#[tokio::test]
async fn a_new_grant_is_polled_at_once_whatever_its_feeds_schedule_said() {
    let app = TestApp::spawn(small()).await;
    let ctx = app.context();
    let cancel = CancellationToken::new();
    discovery::discover(&ctx, &cancel).await;
    let t0 = Utc::now();
    pass(&ctx, t0).await;
    for _ in 0..3 {
        pass(&ctx, t0 + Duration::hours(1)).await;
    }
    let ledger = app.sim.ledger_ids()[1].clone();
    // Withdrawn and granted again: a new grant period, and its feeds polled at the next pass.
    app.sim.revoke(crate::common::CLIENT_ID, &ledger);
    discovery::discover(&ctx, &cancel).await;
    app.sim.grant(crate::common::CLIENT_ID, &ledger);
    discovery::discover(&ctx, &cancel).await;
    let before = requests(&app);
    assert_eq!(
        pass(&ctx, t0 + Duration::hours(1) + Duration::minutes(1)).await,
        2
    );
    let after = requests(&app);
    for topic in ["funds", "fees"] {
        let feed = (ledger.clone(), topic.to_owned());
        assert!(before.get(&feed) < after.get(&feed), "{feed:?} polled");
    }
}

#[tokio::test]
async fn the_hourly_budget_is_never_exceeded_and_a_pass_takes_a_sixtieth_of_it() {
    let mut app = TestApp::spawn(small()).await;
    app.settings.sync.polls_per_hour = 4;
    let ctx = app.context();
    discovery::discover(&ctx, &CancellationToken::new()).await;
    let t0 = Utc::now();
    // 4 an hour: at most one a pass (a sixtieth, rounded up), four in the hour, then none
    // until the hour has passed, although eight feeds are due all along.
    let mut per_pass = Vec::new();
    for minute in 0..8 {
        per_pass.push(pass(&ctx, t0 + Duration::minutes(minute)).await);
    }
    assert_eq!(per_pass, [1, 1, 1, 1, 0, 0, 0, 0]);
    assert_eq!(pass(&ctx, t0 + Duration::minutes(61)).await, 1);

    app.settings.sync.polls_per_hour = 120;
    let ctx = app.context();
    let polled: usize = pass(&ctx, t0 + Duration::minutes(62)).await;
    assert_eq!(polled, 2, "a sixtieth of 120");
}

#[tokio::test]
async fn busy_feeds_cannot_starve_quiet_ones_past_the_maximum_interval_under_a_tight_budget() {
    let mut app = TestApp::spawn(small()).await;
    app.settings.sync.polls_per_hour = 120; // two a pass
    app.settings.sync.min_poll_interval = std::time::Duration::from_secs(60);
    app.settings.sync.max_poll_interval = std::time::Duration::from_secs(600);
    let ctx = app.context();
    discovery::discover(&ctx, &CancellationToken::new()).await;
    let busy = app.sim.ledger_ids()[0].clone();
    let t0 = Utc::now();
    let mut last = requests(&app);
    let mut polled: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for minute in 0..90 {
        app.sim.grow_ledger(&busy, 1);
        pass(&ctx, t0 + Duration::minutes(minute)).await;
        let now = requests(&app);
        for (feed, n) in &now {
            if last.get(feed) != Some(n) {
                polled.entry(feed.clone()).or_default().push(minute);
            }
        }
        last = now;
    }
    assert_eq!(polled.len(), 8, "every feed polled: {polled:?}");
    for (feed, minutes) in &polled {
        // The gaps between polls, and from the last one to the end.
        let longest = minutes
            .iter()
            .chain([&90])
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap();
        // Six quiet feeds at most ten minutes apart need three passes of two polls once they
        // fall due together: a wait of 10 minutes plus at most 2 more.
        assert!(
            longest <= 12,
            "{feed:?} waited {longest} minutes: {minutes:?}"
        );
        if feed.0 == busy {
            assert!(
                minutes.len() >= 30,
                "the busy feeds keep most of the budget: {minutes:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_feed_polled_again_within_the_hour_counts_again_against_the_budget() {
    let mut app = TestApp::spawn(small()).await;
    app.settings.sync.polls_per_hour = 12; // one a pass, twelve an hour
    app.settings.sync.min_poll_interval = std::time::Duration::from_secs(60);
    let ctx = app.context();
    discovery::discover(&ctx, &CancellationToken::new()).await;
    let busy = app.sim.ledger_ids()[0].clone();
    let t0 = Utc::now();
    let before: u64 = requests(&app).values().sum();
    let mut polls = 0;
    for minute in 0..30 {
        app.sim.grow_ledger(&busy, 1);
        polls += pass(&ctx, t0 + Duration::minutes(minute)).await;
    }
    let after: u64 = requests(&app).values().sum();
    // Eight feeds, the busy ones due every minute or two: without counting repeats the
    // passes would go on polling one a minute.
    assert_eq!(polls, 12, "twelve polls in the hour, however many feeds");
    assert!(after - before >= 12);
}

#[tokio::test]
async fn run_polls_by_the_schedule_only_when_polling_is_adaptive() {
    use vipps_ledger_sync::config::Polling;
    use vipps_ledger_sync::sync::{sync_feeds, Backoff};
    let mut app = TestApp::spawn(small()).await;
    let cancel = CancellationToken::new();
    for (polling, second_pass) in [(Polling::Fixed, 8), (Polling::Adaptive, 0)] {
        app.settings.sync.polling = polling;
        let ctx = app.context();
        discovery::discover(&ctx, &cancel).await;
        sync_feeds(&ctx, &cancel, Backoff::Honour).await;
        // Just polled: the fixed schedule polls every feed again, the adaptive one none.
        let again = sync_feeds(&ctx, &cancel, Backoff::Honour).await;
        assert_eq!(again.units_ok, second_pass, "{polling:?}: {again}");
    }
    // Whatever the polling, a pass keeps no more than two hours of polls for the budget.
    sqlx::query("UPDATE feed_polls SET polled_at = polled_at - interval '3 hours'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    app.settings.sync.polling = Polling::Fixed;
    sync_feeds(&app.context(), &cancel, Backoff::Honour).await;
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM feed_polls")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(kept, 8, "the old polls pruned, this pass's kept");
}
