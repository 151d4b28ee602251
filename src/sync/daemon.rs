//! `run`: a pass at start-up, then one on every firing of `sync.schedule`, until cancelled.
//! The cron job only *requests* a pass (tokio-cron-scheduler spawns firings detached and does
//! not wait for them on shutdown); the one worker loop here does the work, so a pass is never
//! cut inside a transaction and firings during a long pass coalesce into one.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use super::{sync_once, SyncContext};

/// Runs passes on the schedule until `cancel` fires; returns once the current page is
/// committed and the scheduler is stopped.
pub async fn run(ctx: Arc<SyncContext>, cancel: CancellationToken) -> anyhow::Result<()> {
    // Capacity one: a firing while a pass runs leaves one request waiting, not a queue.
    let (requests, mut pending) = mpsc::channel::<&'static str>(1);
    let mut scheduler = JobScheduler::new()
        .await
        .context("starting the scheduler")?;
    let on_fire = requests.clone();
    let job = Job::new_async(ctx.settings.sync.schedule.as_str(), move |_, _| {
        let on_fire = on_fire.clone();
        Box::pin(async move {
            let _ = on_fire.try_send("schedule");
        })
    })
    .context("sync.schedule")?;
    scheduler.add(job).await.context("adding the sync job")?;
    scheduler.start().await.context("starting the scheduler")?;
    let _ = requests.try_send("start-up");
    tracing::info!(schedule = %ctx.settings.sync.schedule, "daemon running");

    loop {
        let reason = tokio::select! {
            _ = cancel.cancelled() => break,
            reason = pending.recv() => match reason {
                Some(reason) => reason,
                None => break,
            },
        };
        tracing::info!(reason, "sync pass starting");
        let report = sync_once(&ctx, &cancel).await;
        if report.success() {
            tracing::info!(
                ledgers = report.ledgers,
                inserted = report.inserted,
                pages = report.pages,
                seconds = report.elapsed.as_secs_f64(),
                "sync pass finished"
            );
        } else {
            tracing::warn!(
                ledgers = report.ledgers,
                inserted = report.inserted,
                failed_partners = report.failed_partners.len(),
                failed_feeds = report.failed_units.len(),
                interrupted = report.interrupted,
                "sync pass finished with failures"
            );
        }
    }
    tracing::info!("stopping: no pass running, scheduler shutting down");
    scheduler
        .shutdown()
        .await
        .context("stopping the scheduler")?;
    Ok(())
}
