//! Adaptive polling, driven by a clock of the test's own: a busy feed is polled within its
//! interval, a quiet one backs off to the maximum and never waits longer, a new grant is
//! polled at once, the hourly budget holds, a restart keeps the schedule, and `sync --once`
//! still polls every feed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveTime, Utc};
use tokio_util::sync::CancellationToken;
use vipps_ledger_sync::config::Polling;
use vipps_ledger_sync::simulator::SimulatorConfig;
use vipps_ledger_sync::sync::{discovery, schedule, sync_due_feeds, sync_once_at, SyncContext};

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

/// The end of the simulator's generated dates (midnight in Oslo after the open date): its
/// entries are of the days before.
fn history_end(config: &SimulatorConfig) -> DateTime<Utc> {
    let last = config.start_date + Duration::days(i64::from(config.days) - 1);
    vipps_ledger_sync::sync::schedule::date_end(last)
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
    // No history: nothing tells a feed's pace but what the polls find.
    let config = SimulatorConfig { days: 0, ..small() };
    let t0 = config.start_date.and_time(NaiveTime::MIN).and_utc();
    let mut app = TestApp::spawn(config).await;
    app.settings.sync.max_poll_interval = std::time::Duration::from_secs(6 * 3600);
    let ctx = app.context();
    discovery::discover(&ctx, &CancellationToken::new()).await;
    let ledgers = app.sim.ledger_ids();
    let busy = ledgers[0].clone();
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
    // One ledger with an entry a minute, the others eight a day; the clock at the end of
    // their history.
    let config = SimulatorConfig {
        busy_ledgers: 1,
        busy_captures_per_day: 1440,
        ..small()
    };
    let t0 = history_end(&config);
    let mut app = TestApp::spawn(config).await;
    app.settings.sync.polls_per_hour = 12; // one a pass, twelve an hour
    app.settings.sync.min_poll_interval = std::time::Duration::from_secs(60);
    let ctx = app.context();
    discovery::discover(&ctx, &CancellationToken::new()).await;
    let busy = app.sim.ledger_ids()[0].clone();
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

/// A feed's schedule: interval, next poll, wake-up.
type Schedule = (i32, DateTime<Utc>, Option<DateTime<Utc>>);

/// Every feed's schedule by (ledger, topic).
async fn schedules(app: &TestApp) -> BTreeMap<(String, String), Schedule> {
    type Row = (String, String, i32, DateTime<Utc>, Option<DateTime<Utc>>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT ledger_id, topic, poll_interval_secs, next_poll_at, wake_at FROM feed_cursors",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(l, t, i, n, w)| ((l, t), (i, n, w)))
        .collect()
}

/// The feeds whose request counters moved between two snapshots.
fn moved(
    before: &BTreeMap<(String, String), u64>,
    after: &BTreeMap<(String, String), u64>,
) -> BTreeSet<(String, String)> {
    after
        .iter()
        .filter(|(k, n)| before.get(*k) != Some(*n))
        .map(|(k, _)| k.clone())
        .collect()
}

#[tokio::test]
async fn after_a_first_sync_busy_feeds_are_told_from_quiet_ones_and_their_next_polls_spread() {
    // One ledger with an entry every five minutes, seven with three a day; the first sync
    // two hours before the end of their history.
    let config = SimulatorConfig {
        ledgers: 8,
        days: 3,
        captures_per_day: 3,
        busy_ledgers: 1,
        busy_captures_per_day: 288,
        ..small()
    };
    let now = history_end(&config) - Duration::hours(2);
    let mut app = TestApp::spawn(config).await;
    app.settings.sync.max_poll_interval = std::time::Duration::from_secs(6 * 3600);
    let ctx = app.context();
    assert!(sync_once_at(&ctx, &CancellationToken::new(), now)
        .await
        .success());
    let busy = app.sim.ledger_ids()[0].clone();
    let planned = schedules(&app).await;
    assert_eq!(planned.len(), 16);
    let soon = now + Duration::minutes(20);
    let mut due_soon = BTreeSet::new();
    let mut quiet_half_hours = BTreeSet::new();
    for ((ledger, topic), (interval, next, _)) in &planned {
        // Told apart by their history at once: the busy feeds every few minutes, the
        // quiet ones at the maximum.
        if *ledger == busy {
            assert!(
                (120..=900).contains(interval),
                "{ledger} {topic}: {interval}"
            );
        } else {
            assert_eq!(*interval, 6 * 3600, "{ledger} {topic}");
            quiet_half_hours.insert((*next - now).num_minutes() / 30);
        }
        // Each next poll at the feed's own fraction of its interval, past the first hour (or
        // half the interval).
        let fraction = schedule::spread(ledger, topic);
        let head = (f64::from(*interval) / 2.0).min(3600.0);
        let secs = head + (f64::from(*interval) - head) * fraction;
        let expected = now + Duration::milliseconds((secs * 1000.0) as i64);
        assert!(
            (*next - expected).num_seconds().abs() <= 1,
            "{ledger} {topic}: {next} not {expected}"
        );
        if *next <= soon {
            due_soon.insert((ledger.clone(), topic.clone()));
        }
    }
    // Spread over the six hours, not all due together.
    assert!(quiet_half_hours.len() >= 6, "{quiet_half_hours:?}");
    assert!(due_soon.contains(&(busy.clone(), "funds".to_owned())));
    assert!(due_soon.contains(&(busy.clone(), "fees".to_owned())));
    // Twenty minutes on: the busy feeds, and only the quiet ones whose time came.
    let before = requests(&app);
    pass(&ctx, soon).await;
    assert_eq!(moved(&before, &requests(&app)), due_soon);
}

#[tokio::test]
async fn a_wake_up_at_a_dates_end_waits_for_room_in_the_budget_behind_every_feed_at_its_deadline() {
    // Quiet ledgers, one poll a pass, the maximum an hour; the first sync half an hour before
    // their open date ends.
    let config = SimulatorConfig {
        ledgers: 4,
        days: 3,
        captures_per_day: 3,
        ..small()
    };
    let end = history_end(&config);
    let synced = end - Duration::minutes(30);
    let mut app = TestApp::spawn(config).await;
    app.settings.sync.min_poll_interval = std::time::Duration::from_secs(60);
    app.settings.sync.max_poll_interval = std::time::Duration::from_secs(3600);
    app.settings.sync.polls_per_hour = 60;
    let ctx = app.context();
    assert!(sync_once_at(&ctx, &CancellationToken::new(), synced)
        .await
        .success());
    // Every feed at the maximum, its next poll spread over the hour; those after midnight
    // (plus the minimum) are woken then.
    let wake = end + Duration::minutes(1);
    let planned = schedules(&app).await;
    let mut woken = BTreeSet::new();
    for (feed, (interval, next, wake_at)) in &planned {
        assert_eq!(*interval, 3600, "{feed:?}");
        if *next > wake {
            assert_eq!(*wake_at, Some(wake), "{feed:?}");
            woken.insert(feed.clone());
        } else {
            assert_eq!(*wake_at, None, "{feed:?}");
        }
    }
    assert!(woken.len() >= 2, "{planned:?}");

    // A pass a minute for an hour and a half: each takes a feed at its deadline (its regular
    // poll come, at the maximum interval) whenever there is one, and a woken feed only
    // when there is none.
    let mut polled_woken = BTreeSet::new();
    for minute in 1..=90 {
        let now = synced + Duration::minutes(minute);
        let at_deadline: BTreeSet<(String, String)> = schedules(&app)
            .await
            .into_iter()
            .filter(|(_, (interval, next, _))| *interval >= 3600 && *next <= now)
            .map(|(feed, _)| feed)
            .collect();
        let before = requests(&app);
        let polls = pass(&ctx, now).await;
        assert!(polls <= 1, "minute {minute}: {polls} polls");
        let polled = moved(&before, &requests(&app));
        if !at_deadline.is_empty() {
            assert!(
                polled.len() == 1 && polled.is_subset(&at_deadline),
                "minute {minute}: polled {polled:?} while {at_deadline:?} were at their deadline"
            );
        } else if now >= wake {
            polled_woken.extend(polled.intersection(&woken).cloned());
        } else {
            assert!(
                polled.is_empty(),
                "minute {minute}: nothing due, {polled:?} polled"
            );
        }
    }
    // The woken feeds were taken in the minutes the budget had room.
    assert!(!polled_woken.is_empty(), "no woken feed polled early");
}

#[tokio::test]
async fn status_warns_when_the_budget_cannot_poll_every_feed_within_the_maximum() {
    let mut app = TestApp::spawn(small()).await;
    discovery::discover(&app.context(), &CancellationToken::new()).await;
    let feeds = 2 * app.sim.ledger_ids().len() as i64;
    // A maximum of one hour: every feed needs one poll an hour.
    app.settings.sync.max_poll_interval = std::time::Duration::from_secs(3600);
    let enough = u32::try_from(feeds).unwrap();
    for (polling, budget, short) in [
        (Polling::Adaptive, enough, false),
        (Polling::Adaptive, enough - 1, true),
        (Polling::Fixed, enough - 1, false),
    ] {
        app.settings.sync.polling = polling;
        app.settings.sync.polls_per_hour = budget;
        let status = vipps_ledger_sync::tables::status_report(&app.db.pool, &app.settings)
            .await
            .unwrap();
        assert_eq!(status.polling.ledgers * 2, feeds);
        let text = vipps_ledger_sync::tables::render_status(&status);
        let what = format!("{polling:?}, {budget} polls an hour: {text}");
        assert_eq!(status.polling_budget_short.is_some(), short, "{what}");
        assert_eq!(text.contains("polling: WARNING"), short, "{what}");
        if short {
            assert!(text.contains(&format!("{feeds} polls an hour")), "{what}");
        }
    }
}
