//! `vls-bench --freshness`: a simulated day of a bureau's ledgers, polled by today's fixed
//! hourly schedule and by the adaptive one, each measured the same way.
//!
//! The simulator runs in this process with a clock (`Simulator::set_clock`): each ledger has
//! three dates (the day before, the simulated day, the one before both as history), whose
//! entries appear when the clock reaches their `time`. A few percent of the ledgers are busy
//! (an entry every few minutes), the rest quiet (a few a day). The history is synced before
//! the day starts (midnight in Oslo): an hour before under the fixed schedule, one maximum
//! interval and an hour before under the adaptive one, whose start (the first sync spends an
//! hour's budget) is then behind it. Then time is simulated: one pass per simulated minute, as
//! fast as the passes run; requests and delays are counted from midnight. The adaptive schedule is driven with the simulated clock
//! (`sync::sync_due_feeds`), the fixed one polls every feed at minute 17 of each simulated
//! hour (`sync::sync_feeds_at`, as `run` with `polling = "fixed"` and an hourly `schedule`).
//! Every request is real HTTP to the simulator and every entry is stored in PostgreSQL. An
//! entry's delay is the simulated time from its `time` to the pass that stored it.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, Duration as Span, NaiveDate, Utc};
use sqlx::postgres::PgConnectOptions;
use sqlx::ConnectOptions as _;
use tokio_util::sync::CancellationToken;
use vipps_ledger_sync::config::{PartnerSettings, Polling, Settings};
use vipps_ledger_sync::simulator::{Simulator, SimulatorConfig};
use vipps_ledger_sync::sync::schedule::date_end;
use vipps_ledger_sync::sync::{self, Backoff, SyncContext};

/// What the simulated day looks like.
#[derive(Debug, Clone)]
pub struct Day {
    pub ledgers: usize,
    /// Percent of the ledgers that are busy.
    pub busy_percent: f64,
    /// A busy ledger's mean minutes between new entries.
    pub busy_every_minutes: f64,
    /// A quiet ledger's mean new entries a day.
    pub quiet_per_day: f64,
    pub hours: u32,
    pub polls_per_hour: u32,
    pub max_poll_interval: std::time::Duration,
    pub concurrency: usize,
    /// The schedules to measure.
    pub schedules: Vec<Polling>,
}

/// The figures of one schedule over the day.
#[derive(Debug, Default)]
struct Figures {
    requests: u64,
    busy: Vec<f64>,
    quiet: Vec<f64>,
    /// The longest time any feed went without a poll.
    longest_wait: Span,
    /// Which feed waited longest, when.
    longest_feed: String,
    seconds: f64,
}

pub async fn run(day: &Day, server: &PgConnectOptions) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=24).contains(&day.hours),
        "--hours {}: the simulated day has 1 to 24 hours",
        day.hours
    );
    println!(
        "simulated day: {} ledgers, {:.0}% busy (an entry every {:.0} min), the rest {:.0} a day; \
         {} h; adaptive budget {} polls/h, max interval {:?}",
        day.ledgers,
        day.busy_percent,
        day.busy_every_minutes,
        day.quiet_per_day,
        day.hours,
        day.polls_per_hour,
        day.max_poll_interval
    );
    let mut results = Vec::new();
    for &polling in &day.schedules {
        let figures = one_schedule(day, polling, server).await?;
        results.push((polling, figures));
    }
    println!(
        "\n| schedule | requests/h | busy p50 | busy p95 | busy max | quiet p50 | quiet p95 | quiet max | longest a feed waited | wall |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (polling, f) in &mut results {
        let per_hour = f.requests as f64 / f64::from(day.hours);
        let (b, q) = (quantiles(&mut f.busy), quantiles(&mut f.quiet));
        println!(
            "| {polling:?} | {per_hour:.0} | {} | {} | {} | {} | {} | {} | {} | {:.0} s |",
            minutes(b.0),
            minutes(b.1),
            minutes(b.2),
            minutes(q.0),
            minutes(q.1),
            minutes(q.2),
            minutes(f.longest_wait.num_seconds() as f64 / 60.0),
            f.seconds
        );
    }
    for (polling, f) in &results {
        println!("{polling:?}: the longest wait: {}", f.longest_feed);
    }
    if let [(_, fixed), (_, adaptive)] = &results[..] {
        println!(
            "\nadaptive/fixed requests: 1/{:.1}",
            fixed.requests as f64 / adaptive.requests.max(1) as f64
        );
    }
    Ok(())
}

fn minutes(m: f64) -> String {
    if m >= 90.0 {
        format!("{:.1} h", m / 60.0)
    } else {
        format!("{m:.1} min")
    }
}

/// (p50, p95, max) of delays in minutes.
fn quantiles(v: &mut [f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.95), v[v.len() - 1])
}

async fn one_schedule(
    day: &Day,
    polling: Polling,
    server: &PgConnectOptions,
) -> anyhow::Result<Figures> {
    // A database of this run's own (two runs at once must not share one), dropped at the end.
    let name = format!(
        "vls_bench_freshness_{}_{}",
        format!("{polling:?}").to_lowercase(),
        std::process::id()
    );
    let name = name.as_str();
    vipps_ledger_sync::store::recreate_database(&mut server.connect().await?, name).await?;
    let db = server.clone().database(name);
    let shutdown = CancellationToken::new();
    // Two closed dates of history, and the simulated day: the open date, whose entries
    // appear as the simulator's clock reaches their time.
    let start_date = NaiveDate::from_ymd_opt(2026, 3, 9).context("start date")?;
    let open_date = start_date + Span::days(2);
    let busy_count = ((day.ledgers as f64) * day.busy_percent / 100.0).round() as usize;
    let sim = Simulator::new(SimulatorConfig {
        ledgers: day.ledgers,
        days: 3,
        start_date,
        captures_per_day: day.quiet_per_day.round().max(1.0) as u32,
        busy_ledgers: busy_count,
        busy_captures_per_day: (24.0 * 60.0 / day.busy_every_minutes).round().max(1.0) as u32,
        ledger_page_size: 1000,
        ..SimulatorConfig::default()
    });
    sim.add_partner_with_all_ledgers("bench-client", "bench-secret");
    let addr = Arc::clone(&sim)
        .spawn(([127, 0, 0, 1], 0).into(), shutdown.clone())
        .await
        .context("starting the simulator")?;
    let env = HashMap::from([
        ("VLS_API__BASE_URL".to_owned(), format!("http://{addr}")),
        (
            "VLS_DATABASE__URL".to_owned(),
            db.to_url_lossy().to_string(),
        ),
    ]);
    let mut settings = Settings::load_with_env(None, env)?;
    settings.partners = vec![PartnerSettings::accounting(
        "bench",
        "bench-client",
        "bench-secret",
    )];
    settings.api.max_requests_per_second = 0;
    settings.sync.concurrency = day.concurrency;
    settings.sync.polling = polling;
    settings.sync.polls_per_hour = day.polls_per_hour;
    settings.sync.max_poll_interval = day.max_poll_interval;
    let ctx = Arc::new(
        SyncContext::connect(
            settings,
            Arc::new(vipps_ledger_sync::metrics::Metrics::new()),
        )
        .await?,
    );
    let cancel = CancellationToken::new();
    // The day starts at midnight in Oslo. The history is synced before: under the adaptive
    // schedule one maximum interval and an hour before, with passes every minute from then
    // on (the first sync spends the first hour's budget, and the feeds it spread come due
    // meanwhile: the day is measured once that start is behind), under the fixed one an hour
    // before (each of its passes polls every feed whatever came before).
    let t0 = date_end(open_date - Span::days(1));
    let warm_up = match polling {
        Polling::Fixed => Span::hours(1),
        Polling::Adaptive => {
            Span::from_std(day.max_poll_interval).context("max interval")? + Span::hours(1)
        }
    };
    let synced_at = t0 - warm_up;
    sim.set_clock(Some(synced_at));
    let first = sync::sync_once_at(&ctx, &cancel, synced_at).await;
    anyhow::ensure!(first.success(), "the first sync failed: {first}");

    // When each ledger's funds entries appear in the day: their `time`.
    let ledger_ids = sim.ledger_ids();
    let end = t0 + Span::hours(i64::from(day.hours));
    let arrivals: Vec<Vec<DateTime<Utc>>> = ledger_ids
        .iter()
        .map(|id| {
            let mut times = sim.entry_times(id, "funds");
            times.retain(|t| *t > t0 && *t <= end);
            times
        })
        .collect();
    let appeared: usize = arrivals.iter().map(Vec::len).sum();
    eprintln!(
        "{polling:?}: {appeared} funds entries appear in the simulated {} h",
        day.hours
    );
    let mut measured = vec![0usize; ledger_ids.len()];
    let index: HashMap<&str, usize> = ledger_ids
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let mut last_poll: HashMap<(String, String), DateTime<Utc>> = HashMap::new();
    for id in &ledger_ids {
        for topic in ["funds", "fees"] {
            last_poll.insert((id.clone(), topic.to_owned()), synced_at);
        }
    }

    let mut started = std::time::Instant::now();
    let mut figures = Figures::default();
    let mut polled_before = sim.stats().feed_requests;
    let record = |figures: &mut Figures, i: usize, delay: Span| {
        let minutes = delay.num_milliseconds() as f64 / 60_000.0;
        if i < busy_count {
            figures.busy.push(minutes);
        } else {
            figures.quiet.push(minutes);
        }
    };
    let minutes = (end - synced_at).num_minutes();
    for minute in 1..=minutes {
        let now = synced_at + Span::minutes(minute);
        if now == t0 + Span::minutes(1) {
            // The day begins: count its requests only.
            sim.reset_stats();
            polled_before = sim.stats().feed_requests;
            started = std::time::Instant::now();
        }
        sim.set_clock(Some(now));
        let report = match polling {
            Polling::Fixed if (now - t0).num_minutes().rem_euclid(60) == 17 => {
                Some(sync::sync_feeds_at(&ctx, &cancel, Backoff::Ignore, now).await)
            }
            Polling::Fixed => None,
            Polling::Adaptive => Some(sync::sync_due_feeds(&ctx, &cancel, now).await),
        };
        if let Some(report) = report {
            anyhow::ensure!(report.failed_units.is_empty(), "minute {minute}: {report}");
        }
        // A funds feed polled in this pass holds every entry whose time had come.
        let polled = sim.stats().feed_requests;
        for (key, n) in &polled {
            if polled_before.get(key) == Some(n) {
                continue;
            }
            if let Some(last) = last_poll.insert(key.clone(), now) {
                if now > t0 && now - last > figures.longest_wait {
                    figures.longest_wait = now - last;
                    figures.longest_feed = format!("{} {} from {last} to {now}", key.0, key.1);
                }
            }
            let Some(&i) = index.get(key.0.as_str()).filter(|_| key.1 == "funds") else {
                continue;
            };
            while let Some(&t) = arrivals[i].get(measured[i]).filter(|t| **t <= now) {
                record(&mut figures, i, now - t);
                measured[i] += 1;
            }
        }
        polled_before = polled;
        if (now - t0).num_minutes().rem_euclid(60) == 0 {
            eprintln!(
                "{polling:?}: simulated hour {} of the day done, {:.0} s",
                (now - t0).num_hours(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    // Entries still waiting at the end of the day count with their wait so far, and so do
    // feeds not polled since.
    for (i, times) in arrivals.iter().enumerate() {
        for &t in &times[measured[i]..] {
            record(&mut figures, i, end - t);
        }
    }
    for last in last_poll.values() {
        if end - *last > figures.longest_wait {
            figures.longest_wait = end - *last;
            figures.longest_feed = format!("not polled since {last}");
        }
    }
    let stats = sim.stats();
    figures.requests = stats.feed_requests.values().sum::<u64>();
    figures.seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    ctx.pool.close().await;
    let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut server.connect().await?)
        .await;
    if let Err(e) = dropped {
        eprintln!("could not drop the database {name}: {e}");
    }
    Ok(figures)
}
