//! `run`: discovery and a feed pass at start-up, then discovery on every firing of
//! `sync.discovery_schedule`, a feed pass on every firing of `sync.schedule` and
//! reconciliation on every firing of `sync.verify_schedule`, until cancelled. The cron jobs
//! only *request* work (tokio-cron-scheduler spawns firings detached and does not wait for
//! them on shutdown); the one worker loop here does it, so work is never cut inside a
//! transaction, the three kinds of work never overlap, and firings during a long pass
//! coalesce into one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::Notify;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use super::{discovery, sync_feeds, Backoff, SyncContext};

/// The kinds of work a schedule can ask for.
#[derive(Debug, Clone, Copy)]
enum Work {
    Discover,
    Sync,
    Verify,
}

/// Pending requests for work: at most one of each kind.
#[derive(Default)]
struct Requests {
    discover: AtomicBool,
    sync: AtomicBool,
    verify: AtomicBool,
    wake: Notify,
}

impl Requests {
    fn request(&self, flag: &AtomicBool) {
        flag.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// Runs until `cancel` fires; returns once the work in hand is committed and the scheduler
/// is stopped.
pub async fn run(ctx: Arc<SyncContext>, cancel: CancellationToken) -> anyhow::Result<()> {
    let requests = Arc::new(Requests::default());
    let mut scheduler = JobScheduler::new()
        .await
        .context("starting the scheduler")?;
    let sync = &ctx.settings.sync;
    for (schedule, key, work) in [
        (&sync.schedule, "sync.schedule", Work::Sync),
        (
            &sync.discovery_schedule,
            "sync.discovery_schedule",
            Work::Discover,
        ),
        (&sync.verify_schedule, "sync.verify_schedule", Work::Verify),
    ] {
        let requests = Arc::clone(&requests);
        let job = Job::new_async(schedule.as_str(), move |_, _| {
            let requests = Arc::clone(&requests);
            Box::pin(async move {
                match work {
                    // New grants are synced right after they are found.
                    Work::Discover => {
                        requests.request(&requests.discover);
                        requests.request(&requests.sync);
                    }
                    Work::Sync => requests.request(&requests.sync),
                    Work::Verify => requests.request(&requests.verify),
                }
            })
        })
        .with_context(|| key.to_owned())?;
        scheduler
            .add(job)
            .await
            .context("adding a job to the scheduler")?;
    }
    scheduler.start().await.context("starting the scheduler")?;
    requests.request(&requests.discover);
    requests.request(&requests.sync);
    tracing::info!(
        schedule = %sync.schedule,
        discovery_schedule = %sync.discovery_schedule,
        verify_schedule = %sync.verify_schedule,
        "daemon running"
    );

    while !cancel.is_cancelled() {
        if requests.discover.swap(false, Ordering::SeqCst) {
            let found = discovery::discover(&ctx).await;
            tracing::info!(
                listed = found.listed,
                grants_opened = found.opened,
                grants_closed = found.closed,
                failed_partners = found.failed_partners.len(),
                "discovery finished"
            );
            continue;
        }
        if requests.sync.swap(false, Ordering::SeqCst) {
            let report = sync_feeds(&ctx, &cancel, Backoff::Honour).await;
            if report.success() {
                tracing::info!(
                    ledgers = report.ledgers,
                    inserted = report.inserted,
                    pages = report.pages,
                    seconds = report.elapsed.as_secs_f64(),
                    "feed pass finished"
                );
            } else {
                tracing::warn!(
                    ledgers = report.ledgers,
                    inserted = report.inserted,
                    failed_feeds = report.failed_units.len(),
                    interrupted = report.interrupted,
                    "feed pass finished with failures"
                );
            }
            continue;
        }
        if requests.verify.swap(false, Ordering::SeqCst) {
            // Only dates not yet reconciled (or open ones that are due) cost requests.
            match crate::reconcile::verify(&ctx, &cancel).await {
                Ok(v) if v.clean() => tracing::info!(feeds = v.feeds.len(), "reconciliation clean"),
                Ok(v) => tracing::warn!(
                    feeds = v.feeds.len(),
                    mismatching_dates = v.feeds.iter().map(|f| f.dates_mismatch).sum::<usize>(),
                    "reconciliation found differences (see reconciliations)"
                ),
                Err(e) => tracing::error!(error = format!("{e:#}"), "reconciliation failed"),
            }
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = requests.wake.notified() => {}
        }
    }
    tracing::info!("stopping: no work running, scheduler shutting down");
    scheduler
        .shutdown()
        .await
        .context("stopping the scheduler")?;
    Ok(())
}
