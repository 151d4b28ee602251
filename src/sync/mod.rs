//! The sync logic, talking to the API and the store only through their types: discovery of
//! ledgers and grants, the feed walker for each (ledger, topic) unit, and the pass that runs
//! them in a bounded pool; the process's lifecycle (systemd, the drain deadline) that the
//! daemon (`crate::daemon`) and `sync --once` share.

pub mod discovery;
pub mod feed;
mod health;
pub mod lifecycle;
pub mod progress;
mod report;
pub mod schedule;
mod unit;

use std::sync::Arc;
use std::time::Instant;

use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::{Settings, Topic};
use crate::report_api::{PartnerClient, ReportApiClient};
use crate::store::{self, feed_health, feeds, grants};
pub use health::PartnerHealth;
pub use progress::{Progress, ProgressView};
pub use report::{SyncReport, UnitFailure};

/// Everything a sync needs: the database, the settings, and one API client per partner.
#[derive(Debug)]
pub struct SyncContext {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub partners: Vec<Arc<PartnerClient>>,
    /// Which partners' keys failed last, so their ledgers are read with another partner's.
    pub health: PartnerHealth,
    /// This process's name on the leases it holds: `host:pid:random`.
    pub instance: String,
    /// Where this context's work is counted (`/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The progress of the feed pass in hand (one `feed pass progress` line every 30 s
    /// unless [`SyncContext::with_progress`] says otherwise).
    pub progress: Arc<Progress>,
    /// This instance's presence in the database (`store::presence`): while it lives, its
    /// leases are its own until they expire; once the process dies, they are free at once.
    /// `None` (leases then last until they expire) only for contexts built on a caller's pool.
    pub presence: Option<store::presence::Presence>,
    /// The hour (since the epoch) in which adaptive polling last checked that
    /// `sync.polls_per_hour` can poll every feed within `sync.max_poll_interval`: the check,
    /// and its warning, come once an hour.
    budget_checked_hour: std::sync::atomic::AtomicI64,
}

impl SyncContext {
    /// Connects to the database, applies migrations, builds the partners' clients and
    /// registers this instance's presence; work is counted on `metrics`.
    pub async fn connect(
        settings: Settings,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> anyhow::Result<SyncContext> {
        let pool = store::connect(&settings.database).await?;
        store::migrate(&pool).await?;
        Self::with_pool(settings, pool, metrics)?.present().await
    }

    /// Registers this instance's presence (`store::presence`), so that its leases are freed
    /// the moment the process dies rather than when they expire.
    pub async fn present(mut self) -> anyhow::Result<SyncContext> {
        use anyhow::Context as _;
        let presence = store::presence::Presence::register(&self.pool)
            .await
            .context("registering this instance's presence in the database")?;
        self.presence = Some(presence);
        Ok(self)
    }

    /// The key this instance's leases record (see [`SyncContext::presence`]).
    pub fn presence_key(&self) -> Option<i64> {
        self.presence.as_ref().map(store::presence::Presence::key)
    }

    /// Builds the context on an existing pool (migrations must already be applied), counting
    /// on `metrics`; without a presence (leases then last until they expire) unless
    /// [`SyncContext::present`] is called.
    pub fn with_pool(
        settings: Settings,
        pool: PgPool,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> anyhow::Result<SyncContext> {
        let api = ReportApiClient::new(&settings, Arc::clone(&metrics))?;
        let partners = settings
            .partners
            .iter()
            .map(|p| {
                Arc::new(
                    api.partner(p)
                        .with_personal_data(settings.sync.include_gdpr_sensitive_data),
                )
            })
            .collect();
        Ok(SyncContext {
            pool,
            settings: Arc::new(settings),
            partners,
            health: PartnerHealth::default(),
            instance: lifecycle::instance_name(),
            metrics,
            progress: Arc::new(Progress::new(ProgressView::default())),
            presence: None,
            budget_checked_hour: std::sync::atomic::AtomicI64::new(i64::MIN),
        })
    }

    /// Shows the progress of feed passes with `progress` instead.
    pub fn with_progress(mut self, progress: Progress) -> SyncContext {
        self.progress = Arc::new(progress);
        self
    }
}

/// `sync --once`: discovery, then every consented feed to its current end.
pub async fn sync_once(ctx: &Arc<SyncContext>, cancel: &CancellationToken) -> SyncReport {
    sync_once_at(ctx, cancel, chrono::Utc::now()).await
}

/// [`sync_once`] with the time the feeds' next polls are planned from (a simulated day's).
pub async fn sync_once_at(
    ctx: &Arc<SyncContext>,
    cancel: &CancellationToken,
    now: chrono::DateTime<chrono::Utc>,
) -> SyncReport {
    let started = Instant::now();
    let found = discovery::discover(ctx, cancel).await;
    let mut report = sync_feeds_at(ctx, cancel, Backoff::Ignore, now).await;
    report.grants_opened += found.opened;
    report.grants_closed += found.closed;
    report.failed_partners = found.failed_partners;
    report.elapsed = started.elapsed();
    report
}

/// Empties personal fields past `sync.personal_data_retention_days` (0: never).
async fn purge_personal_data(ctx: &SyncContext) {
    let days = ctx.settings.sync.personal_data_retention_days;
    if days == 0 {
        return;
    }
    match feeds::purge_personal_data(&ctx.pool, days).await {
        Ok(0) => {}
        Ok(rows) => tracing::info!(rows, days, "personal data past its retention emptied"),
        Err(e) => tracing::error!(error = %e, "purging personal data failed; retried next pass"),
    }
}

/// Ledgers with open grants read per query by a feed pass.
const OPEN_GRANTS_CHUNK: i64 = 500;

/// Whether a pass leaves failing units alone while they back off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// `run`: a unit that keeps failing is tried less and less often.
    Honour,
    /// `sync --once`: a person asked for everything now.
    Ignore,
}

/// Walks the feeds of every ledger with an open grant, `sync.concurrency` units at a time,
/// each with the token of a partner holding a grant (healthy partners first). One unit's
/// failure never stops the others; it is recorded and, under [`Backoff::Honour`], retried
/// later with exponential backoff. Ledgers without an open grant are not polled.
pub async fn sync_feeds(
    ctx: &Arc<SyncContext>,
    cancel: &CancellationToken,
    backoff: Backoff,
) -> SyncReport {
    let now = chrono::Utc::now();
    if backoff == Backoff::Honour && ctx.settings.sync.polling == crate::config::Polling::Adaptive {
        return sync_due_feeds(ctx, cancel, now).await;
    }
    sync_feeds_at(ctx, cancel, backoff, now).await
}

/// Every feed, as [`sync_feeds`] under fixed polling, with the time the feeds' next polls are
/// planned from (a simulated day's).
pub async fn sync_feeds_at(
    ctx: &Arc<SyncContext>,
    cancel: &CancellationToken,
    backoff: Backoff,
    now: chrono::DateTime<chrono::Utc>,
) -> SyncReport {
    let started = Instant::now();
    let mut report = SyncReport::default();
    let _shown = ctx.progress.start_pass();
    purge_personal_data(ctx).await;
    if let Err(e) = crate::store::poll_schedule::prune(&ctx.pool, now).await {
        tracing::warn!(error = %e, "could not prune the polls older than two hours");
    }
    let skip = match backoff {
        Backoff::Honour => feed_health::backing_off(&ctx.pool)
            .await
            .unwrap_or_default(),
        Backoff::Ignore => Vec::new(),
    };
    let skip: std::collections::HashSet<(String, String)> = skip.into_iter().collect();
    // At most `sync.concurrency` units exist at a time (not one task per unit up front), so
    // memory stays flat however many ledgers there are (`make_room`).
    let mut units = JoinSet::new();
    let mut after: Option<String> = None;
    loop {
        let chunk =
            match grants::open_by_ledger(&ctx.pool, after.as_deref(), OPEN_GRANTS_CHUNK).await {
                Ok(chunk) => chunk,
                Err(e) => {
                    report.failed_units.push(UnitFailure {
                        ledger_id: "(all)".to_owned(),
                        topic: Topic::Funds,
                        error: format!("reading the open grants: {e}"),
                    });
                    break;
                }
            };
        let Some((last, _)) = chunk.last() else { break };
        after = Some(last.clone());
        report.ledgers += chunk.len();
        // The chunk's topics to walk, counted before any is spawned so the progress totals
        // cover the whole chunk from the start.
        let mut queued = Vec::with_capacity(chunk.len());
        for (ledger_id, holders) in chunk {
            let topics: Vec<Topic> = ctx
                .settings
                .sync
                .topics
                .iter()
                .copied()
                .filter(|topic| !skip.contains(&(ledger_id.clone(), topic.as_str().to_owned())))
                .collect();
            report.backing_off += ctx.settings.sync.topics.len() - topics.len();
            let first = ctx.health.order(&ctx.partners, &holders);
            let partner = first
                .first()
                .map_or("(no configured partner)", |p| p.name());
            ctx.progress
                .ledger_queued(partner, &ledger_id, topics.len());
            queued.push((ledger_id, holders, topics));
        }
        for (ledger_id, holders, topics) in queued {
            for topic in topics {
                make_room(ctx, &mut units, &mut report, (now, Pass::Every)).await;
                spawn_unit(
                    ctx,
                    cancel,
                    &mut units,
                    (ledger_id.clone(), topic, holders.clone()),
                );
            }
        }
    }
    while let Some(joined) = units.join_next().await {
        absorb(ctx, &mut report, joined, (now, Pass::Every)).await;
    }
    report.elapsed = started.elapsed();
    report
}

/// Once an hour: a warning in the log when `sync.polls_per_hour` cannot poll every feed of
/// an open grant once per `sync.max_poll_interval` (`status` says so too).
async fn warn_if_budget_short(ctx: &SyncContext, now: chrono::DateTime<chrono::Utc>) {
    use std::sync::atomic::Ordering;
    let hour = now.timestamp().div_euclid(3600);
    if ctx.budget_checked_hour.swap(hour, Ordering::Relaxed) == hour {
        return;
    }
    let summary = match ctx.pool.acquire().await {
        Ok(mut conn) => crate::store::poll_schedule::summary(&mut conn, now).await,
        Err(e) => Err(e),
    };
    match summary {
        Ok(s) => {
            let sync = &ctx.settings.sync;
            let feeds = s.ledgers * sync.topics.len() as i64;
            if let Some(short) =
                schedule::budget_shortfall(feeds, sync.polls_per_hour, sync.max_poll_interval)
            {
                tracing::warn!("{short}");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not count the feeds the schedule polls"),
    }
}

/// A pass of the adaptive schedule at `now` (`sync::schedule`): the feeds due, most likely
/// to have news first, as many as `sync.polls_per_hour` leaves this pass; each one's next
/// poll planned from what it showed.
pub async fn sync_due_feeds(
    ctx: &Arc<SyncContext>,
    cancel: &CancellationToken,
    now: chrono::DateTime<chrono::Utc>,
) -> SyncReport {
    let started = Instant::now();
    let mut report = SyncReport::default();
    let _shown = ctx.progress.start_pass();
    purge_personal_data(ctx).await;
    let fail = |report: &mut SyncReport, error: String| {
        report.failed_units.push(UnitFailure {
            ledger_id: "(all)".to_owned(),
            topic: Topic::Funds,
            error,
        });
    };
    warn_if_budget_short(ctx, now).await;
    let limit = match crate::store::poll_schedule::polled_in_last_hour(&ctx.pool, now).await {
        Ok(polled) => schedule::pass_limit(ctx.settings.sync.polls_per_hour, polled),
        Err(e) => {
            fail(
                &mut report,
                format!("reading the polls of the last hour: {e}"),
            );
            return report;
        }
    };
    let topics: Vec<String> = ctx
        .settings
        .sync
        .topics
        .iter()
        .map(|t| t.as_str().to_owned())
        .collect();
    let max_wait = ctx.settings.sync.max_poll_interval;
    let due = match crate::store::poll_schedule::due(
        &ctx.pool,
        now,
        &topics,
        max_wait,
        limit.unwrap_or(i64::MAX),
    )
    .await
    {
        Ok(due) => due,
        Err(e) => {
            fail(&mut report, format!("reading the feeds due: {e}"));
            return report;
        }
    };
    match crate::store::poll_schedule::backing_off(&ctx.pool, now).await {
        Ok(n) => report.backing_off = usize::try_from(n).unwrap_or(usize::MAX),
        Err(e) => tracing::warn!(error = %e, "could not count the feeds backing off"),
    }
    // Each ledger's feeds in this pass, counted once, for the progress totals.
    let mut per_ledger: std::collections::BTreeMap<&str, (usize, &[String])> = Default::default();
    for feed in &due {
        per_ledger
            .entry(feed.ledger_id.as_str())
            .or_insert((0, &feed.holders))
            .0 += 1;
    }
    for (ledger_id, (units, holders)) in &per_ledger {
        let first = ctx.health.order(&ctx.partners, holders);
        let partner = first
            .first()
            .map_or("(no configured partner)", |p| p.name());
        ctx.progress.ledger_queued(partner, ledger_id, *units);
    }
    report.ledgers = per_ledger.len();
    let mut units = JoinSet::new();
    for feed in due {
        let Some(topic) = [Topic::Funds, Topic::Fees]
            .into_iter()
            .find(|t| t.as_str() == feed.topic)
        else {
            continue;
        };
        make_room(ctx, &mut units, &mut report, (now, Pass::Due)).await;
        spawn_unit(
            ctx,
            cancel,
            &mut units,
            (feed.ledger_id, topic, feed.holders),
        );
    }
    while let Some(joined) = units.join_next().await {
        absorb(ctx, &mut report, joined, (now, Pass::Due)).await;
    }
    report.elapsed = started.elapsed();
    report
}

/// The units of a pass in flight, each giving back its ledger, topic and result.
type Units = JoinSet<(String, Topic, Result<unit::UnitResult, String>)>;

/// Waits until fewer than `sync.concurrency` units are in flight, absorbing those that end.
async fn make_room(
    ctx: &SyncContext,
    units: &mut Units,
    report: &mut SyncReport,
    (now, pass): (chrono::DateTime<chrono::Utc>, Pass),
) {
    while units.len() >= ctx.settings.sync.concurrency {
        if let Some(joined) = units.join_next().await {
            absorb(ctx, report, joined, (now, pass)).await;
        }
    }
}

/// Which feeds a pass polls, for the timing of their next polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Every feed at once (`sync --once`, a fixed pass): their next polls are spread.
    Every,
    /// The feeds due by the adaptive schedule.
    Due,
}

/// Starts one unit (ledger, topic, the partners holding a grant) in its own task.
fn spawn_unit(
    ctx: &Arc<SyncContext>,
    cancel: &CancellationToken,
    units: &mut Units,
    (ledger_id, topic, holders): (String, Topic, Vec<String>),
) {
    let (ctx, cancel) = (Arc::clone(ctx), cancel.clone());
    let span = tracing::info_span!("feed", ledger = %ledger_id, topic = %topic);
    units.spawn(
        async move {
            ctx.progress.unit_started(&ledger_id, topic);
            let result = unit::run_unit(&ctx, &ledger_id, topic, &holders, &cancel).await;
            ctx.progress.unit_finished(&ledger_id, topic);
            (ledger_id, topic, result)
        }
        .instrument(span),
    );
}

/// Plans a polled feed's next poll (`sync::schedule`) and records it.
async fn reschedule(
    ctx: &SyncContext,
    ledger_id: &str,
    topic: Topic,
    stored: u64,
    (now, timing): (chrono::DateTime<chrono::Utc>, schedule::Timing),
) {
    use crate::store::poll_schedule;
    let planned = async {
        let state = poll_schedule::state(&ctx.pool, ledger_id, topic, now).await?;
        let plan = schedule::PollPolicy::from(&ctx.settings.sync).plan(&state, stored, now, timing);
        let polled = poll_schedule::Polled {
            ledger_id,
            topic,
            now,
            news: stored > 0,
            interval_secs: i32::try_from(plan.interval.as_secs()).unwrap_or(i32::MAX),
            news_gap_secs: plan.news_gap.map(|g| g.as_secs_f64()),
            next_poll_at: plan.next_poll_at,
            wake_at: plan.wake_at,
        };
        poll_schedule::record(&ctx.pool, &polled).await
    };
    if let Err(e) = planned.await {
        // The feed stays due, and is polled again at the next pass.
        tracing::warn!(ledger = %ledger_id, %topic, error = %e, "could not record the feed's next poll");
    }
}

/// A unit's task as joined: its ledger, topic and result.
type Joined = Result<(String, Topic, Result<unit::UnitResult, String>), tokio::task::JoinError>;

/// Adds a finished unit to the report; a failure is recorded for backoff.
async fn absorb(
    ctx: &SyncContext,
    report: &mut SyncReport,
    joined: Joined,
    (now, pass): (chrono::DateTime<chrono::Utc>, Pass),
) {
    ctx.metrics.progressed();
    let (ledger_id, topic, result) = match joined {
        Ok(done) => done,
        Err(e) => {
            // A panic in a unit is a bug; report it like any failure and go on.
            tracing::error!(error = %e, "a feed task died");
            report.failed_units.push(UnitFailure {
                ledger_id: "(unknown)".to_owned(),
                topic: Topic::Funds,
                error: e.to_string(),
            });
            return;
        }
    };
    match result {
        Ok(unit) => {
            report.pages += unit.outcome.pages;
            report.inserted += unit.outcome.inserted;
            report.chain_breaks += unit.outcome.chain_breaks;
            report.conflicts += unit.outcome.conflicts;
            report.interrupted |= unit.outcome.interrupted;
            report.grants_closed += unit.grants_closed;
            if unit.held_elsewhere {
                report.held_elsewhere += 1;
            } else if !unit.outcome.interrupted {
                report.units_ok += 1;
                let timing = match pass {
                    Pass::Every => {
                        schedule::Timing::Spread(schedule::spread(&ledger_id, topic.as_str()))
                    }
                    Pass::Due => schedule::Timing::Scheduled,
                };
                reschedule(ctx, &ledger_id, topic, unit.outcome.inserted, (now, timing)).await;
            }
        }
        Err(error) => {
            // Recorded (under the unit's lease) by the unit itself.
            let error = crate::text::error_text(&error);
            tracing::error!(ledger = %ledger_id, %topic, %error, "feed sync failed");
            report.failed_units.push(UnitFailure {
                ledger_id,
                topic,
                error,
            });
        }
    }
}
