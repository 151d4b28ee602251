//! `vls-bench --freshness`: a simulated day of a bureau's ledgers, polled by today's fixed
//! hourly schedule and by the adaptive one, each measured the same way.
//!
//! The simulator runs in this process, so entries can *appear* at given moments: a few
//! percent of the ledgers are busy (new entries every few minutes), the rest quiet (a few a
//! day). Time is simulated: one pass per simulated minute, as fast as the passes run; the
//! adaptive schedule is driven with the simulated clock (`sync::sync_due_feeds`), the fixed
//! one polls every feed at minute 17 of each simulated hour (`sync::sync_feeds`, as `run` with
//! `polling = "fixed"` and an hourly `schedule`). Every request is real HTTP to the simulator
//! and every entry is stored in PostgreSQL. An entry's delay is the simulated time from its
//! appearance to the end of the pass that polled its feed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{Duration as Span, Utc};
use rand::{Rng as _, SeedableRng as _};
use sqlx::postgres::PgConnectOptions;
use sqlx::ConnectOptions as _;
use tokio_util::sync::CancellationToken;
use vipps_ledger_sync::config::{PartnerSettings, Polling, Settings};
use vipps_ledger_sync::simulator::{Simulator, SimulatorConfig};
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
}

/// The figures of one schedule over the day.
#[derive(Debug, Default)]
struct Figures {
    requests: u64,
    busy: Vec<f64>,
    quiet: Vec<f64>,
    seconds: f64,
}

pub async fn run(day: &Day, server: &PgConnectOptions) -> anyhow::Result<()> {
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
    for polling in [Polling::Fixed, Polling::Adaptive] {
        let figures = one_schedule(day, polling, server).await?;
        results.push((polling, figures));
    }
    println!(
        "\n| schedule | requests/h | busy p50 | busy p95 | busy max | quiet p50 | quiet p95 | quiet max | wall |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (polling, f) in &mut results {
        let per_hour = f.requests as f64 / f64::from(day.hours);
        let (b, q) = (quantiles(&mut f.busy), quantiles(&mut f.quiet));
        println!(
            "| {polling:?} | {per_hour:.0} | {} | {} | {} | {} | {} | {} | {:.0} s |",
            minutes(b.0),
            minutes(b.1),
            minutes(b.2),
            minutes(q.0),
            minutes(q.1),
            minutes(q.2),
            f.seconds
        );
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
    let name = "vls_bench_freshness";
    vipps_ledger_sync::store::recreate_database(&mut server.connect().await?, name).await?;
    let db = server.clone().database(name);
    let shutdown = CancellationToken::new();
    let sim = Simulator::new(SimulatorConfig {
        ledgers: day.ledgers,
        days: 1,
        captures_per_day: 1,
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
    let first = sync::sync_once(&ctx, &cancel).await;
    anyhow::ensure!(first.success(), "the first sync failed: {first}");

    // When each ledger's entries appear, in simulated minutes from the start.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let ledger_ids = sim.ledger_ids();
    let busy_count = ((day.ledgers as f64) * day.busy_percent / 100.0).round() as usize;
    let total = f64::from(day.hours) * 60.0;
    let mut events: Vec<(f64, usize)> = Vec::new();
    for (i, _) in ledger_ids.iter().enumerate() {
        let mean = if i < busy_count {
            day.busy_every_minutes
        } else {
            24.0 * 60.0 / day.quiet_per_day
        };
        let mut t = 0.0;
        loop {
            // Exponential gaps: a Poisson stream of new entries.
            t += -mean * (1.0 - rng.gen::<f64>()).ln();
            if t >= total {
                break;
            }
            events.push((t, i));
        }
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0));

    sim.reset_stats();
    let started = std::time::Instant::now();
    let t0 = Utc::now();
    let mut pending: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut next_event = 0;
    let mut figures = Figures::default();
    let mut polled_before = sim.stats().feed_requests;
    let index: HashMap<&str, usize> = ledger_ids
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    for minute in 1..=(day.hours * 60) {
        let m = f64::from(minute);
        while next_event < events.len() && events[next_event].0 <= m {
            let (t, i) = events[next_event];
            sim.grow_ledger(&ledger_ids[i], 1);
            pending.entry(i).or_default().push(t);
            next_event += 1;
        }
        let report = match polling {
            Polling::Fixed if minute % 60 == 17 => {
                Some(sync::sync_feeds(&ctx, &cancel, Backoff::Ignore).await)
            }
            Polling::Fixed => None,
            Polling::Adaptive => {
                let now = t0 + Span::minutes(i64::from(minute));
                Some(sync::sync_due_feeds(&ctx, &cancel, now).await)
            }
        };
        if let Some(report) = report {
            anyhow::ensure!(report.failed_units.is_empty(), "minute {minute}: {report}");
        }
        // The funds feeds polled in this pass hold every entry that appeared before it.
        let polled = sim.stats().feed_requests;
        for ((ledger, topic), n) in &polled {
            if topic != "funds" || polled_before.get(&(ledger.clone(), topic.clone())) == Some(n) {
                continue;
            }
            let Some(&i) = index.get(ledger.as_str()) else {
                continue;
            };
            for t in pending.remove(&i).unwrap_or_default() {
                let delay = m - t;
                if i < busy_count {
                    figures.busy.push(delay);
                } else {
                    figures.quiet.push(delay);
                }
            }
        }
        polled_before = polled;
        if minute % 60 == 0 {
            eprintln!(
                "{polling:?}: simulated hour {} done, {:.0} s",
                minute / 60,
                started.elapsed().as_secs_f64()
            );
        }
    }
    // Entries still waiting at the end of the day count with their wait so far.
    for (i, times) in pending {
        for t in times {
            let delay = total - t;
            if i < busy_count {
                figures.busy.push(delay);
            } else {
                figures.quiet.push(delay);
            }
        }
    }
    let stats = sim.stats();
    figures.requests = stats.feed_requests.values().sum::<u64>();
    figures.seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    ctx.pool.close().await;
    Ok(figures)
}
