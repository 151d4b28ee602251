//! `run`, the daemon, above the work it schedules (`sync`, `reconcile`, `export`): discovery and a feed pass at start-up, then discovery on every firing of
//! `sync.discovery_schedule`, a feed pass on every firing of `sync.schedule` and
//! reconciliation on every firing of `sync.verify_schedule`, followed by the `[[exporters]]`,
//! until cancelled. The cron jobs
//! only *request* work (tokio-cron-scheduler spawns firings detached and does not wait for
//! them on shutdown); the one worker loop here does it, so work stops between pages on a stop
//! request (and is only dropped, its open transaction rolling back, if still running at
//! `sync.drain_deadline`), the three kinds of work never overlap, and firings during a long
//! pass coalesce into one. The loop also pings the systemd watchdog (see `lifecycle.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::Notify;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use crate::sync::lifecycle::{self, Drained, Watchdog};
use crate::sync::{discovery, sync_feeds, Backoff, SyncContext};

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

/// Runs until `cancel` fires; returns once the work in hand is committed (or abandoned after
/// `sync.drain_deadline`) and the scheduler is stopped. Under systemd (`Type=notify`) it
/// reports `READY=1` once every partner has been asked for a token (the database is already
/// migrated by then), keeps `STATUS=` current, pings the watchdog from the worker loop, and
/// sends `STOPPING=1` as soon as a stop is requested. Fails without reporting ready when no
/// partner could get a token: systemd then sees the start fail.
pub async fn run(ctx: Arc<SyncContext>, cancel: CancellationToken) -> anyhow::Result<()> {
    let working = lifecycle::request_first_tokens(&ctx).await;
    if working == 0 {
        anyhow::bail!(
            "none of the {} configured partners could get an access token (see the errors above); not starting",
            ctx.partners.len()
        );
    }
    let requests = Arc::new(Requests::default());
    let mut scheduler = JobScheduler::new()
        .await
        .context("starting the scheduler")?;
    let sync = &ctx.settings.sync;
    let mut sync_job = None;
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
        let id = scheduler
            .add(job)
            .await
            .context("adding a job to the scheduler")?;
        if matches!(work, Work::Sync) {
            sync_job = Some(id);
        }
    }
    scheduler.start().await.context("starting the scheduler")?;
    requests.request(&requests.discover);
    requests.request(&requests.sync);
    tracing::info!(
        schedule = %sync.schedule,
        discovery_schedule = %sync.discovery_schedule,
        verify_schedule = %sync.verify_schedule,
        partners_with_token = working,
        partners = ctx.partners.len(),
        "daemon running"
    );
    lifecycle::notify_ready("starting: first discovery and feed pass");
    // `STOPPING=1` at once, even in the middle of work; and at the latest when the loop ends,
    // since an idle daemon can return before the spawned task has had its turn.
    let stopping = Arc::new(std::sync::Once::new());
    {
        let (cancel, stopping) = (cancel.clone(), Arc::clone(&stopping));
        tokio::spawn(async move {
            cancel.cancelled().await;
            stopping.call_once(lifecycle::notify_stopping);
        });
    }

    let mut watchdog = Watchdog::from_env();
    let mut idle_announced = false;
    while !cancel.is_cancelled() {
        if requests.discover.swap(false, Ordering::SeqCst) {
            idle_announced = false;
            lifecycle::notify_status("discovering ledgers");
            let work = discovery::discover(&ctx, &cancel);
            let found =
                match lifecycle::drain(&ctx, "discovery", work, &cancel, &mut watchdog).await {
                    Drained::Done(found) => found,
                    // Logged where it was caught; the other work goes on.
                    Drained::Panicked(_) => continue,
                    Drained::Abandoned(_) => break,
                };
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
            idle_announced = false;
            lifecycle::notify_status("syncing");
            let work = sync_feeds(&ctx, &cancel, Backoff::Honour);
            let report =
                match lifecycle::drain(&ctx, "feed pass", work, &cancel, &mut watchdog).await {
                    Drained::Done(report) => report,
                    // Logged where it was caught; the other work goes on.
                    Drained::Panicked(_) => continue,
                    Drained::Abandoned(_) => break,
                };
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
            idle_announced = false;
            lifecycle::notify_status("reconciling");
            // Only dates not yet reconciled (or open ones that are due) cost requests.
            let work = crate::reconcile::verify(&ctx, &cancel);
            let verified = match lifecycle::drain(
                &ctx,
                "reconciliation",
                work,
                &cancel,
                &mut watchdog,
            )
            .await
            {
                Drained::Done(verified) => verified,
                // Logged where it was caught; the other work goes on.
                Drained::Panicked(_) => continue,
                Drained::Abandoned(_) => break,
            };
            match verified {
                Ok(v) if v.clean() => tracing::info!(feeds = v.feeds.len(), "reconciliation clean"),
                Ok(v) => tracing::warn!(
                    feeds = v.feeds.len(),
                    mismatching_dates = v.feeds.iter().map(|f| f.dates_mismatch).sum::<usize>(),
                    "reconciliation found differences (see reconciliations)"
                ),
                Err(e) => tracing::error!(error = format!("{e:#}"), "reconciliation failed"),
            }
            // Dates that have just closed and reconciled go to the exporters. Cut off at the
            // drain deadline, a delivery is finished by the next run, never repeated.
            if !ctx.settings.exporters.is_empty() {
                lifecycle::notify_status("exporting");
                let work = crate::export::scheduled::run_all(
                    &ctx.pool,
                    &ctx.settings,
                    &ctx.metrics,
                    &cancel,
                );
                // A panic is logged where it was caught; the other work goes on.
                if let Drained::Abandoned(_) =
                    lifecycle::drain(&ctx, "exports", work, &cancel, &mut watchdog).await
                {
                    break;
                }
            }
            continue;
        }
        if !idle_announced {
            let next = match sync_job {
                Some(id) => scheduler.next_tick_for_job(id).await.ok().flatten(),
                None => None,
            };
            lifecycle::notify_status(&match next {
                Some(at) => format!("idle; next sync at {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
                None => "idle".to_owned(),
            });
            idle_announced = true;
        }
        // The watchdog tick wakes the loop while idle too, so an idle daemon stays alive.
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = requests.wake.notified() => {}
            _ = watchdog.tick() => watchdog.ping(),
        }
    }
    stopping.call_once(lifecycle::notify_stopping);
    tracing::info!("stopping: no work of ours running any more, scheduler shutting down");
    scheduler
        .shutdown()
        .await
        .context("stopping the scheduler")?;
    Ok(())
}
