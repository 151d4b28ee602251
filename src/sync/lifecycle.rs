//! The process around the sync: telling systemd (`Type=notify`) that the daemon is ready,
//! what it is doing and that it is alive; asking every partner for a token before reporting
//! ready; and draining the work in hand on shutdown within `sync.drain_deadline`.
//!
//! Every systemd call is a no-op when `NOTIFY_SOCKET` (or `WATCHDOG_USEC`) is unset, so the
//! same code runs in a terminal, under a test and under systemd.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use futures_util::FutureExt as _;
use sd_notify::NotifyState;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::SyncContext;
use crate::store::{grants, leases};

/// Sends `states` to systemd; a failure to reach its socket is logged, never fatal (the
/// daemon's work does not depend on it).
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "could not notify the service manager");
    }
}

/// `READY=1` with a first `STATUS=` line.
pub fn notify_ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A `STATUS=` line, shown by `systemctl status`.
pub fn notify_status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// `STOPPING=1`: shutdown has begun (systemd then waits up to `TimeoutStopSec`).
pub fn notify_stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: draining the work in hand"),
    ]);
}

/// Asks every configured partner for an access token once. A partner whose request fails is
/// logged (by name; the secret never appears) and recorded as failing, in memory and in
/// `partners`, exactly as a failed listing would be. Returns how many partners got a token.
pub async fn request_first_tokens(ctx: &SyncContext) -> usize {
    let mut ok = 0;
    for partner in &ctx.partners {
        match partner.tokens().get().await {
            Ok(_) => {
                ctx.health.set_ok(partner.name());
                ok += 1;
            }
            Err(e) => {
                let error = format!("token request failed: {e}");
                tracing::error!(
                    partner = partner.name(),
                    %error,
                    "the partner's keys do not work; its ledgers are read with other partners' keys where they can be"
                );
                ctx.health.set_failed(partner.name(), &error);
                let refused = e.refuses_keys();
                if let Err(db) =
                    grants::partner_failed(&ctx.pool, partner.name(), &error, refused, Utc::now())
                        .await
                {
                    tracing::error!(error = %db, "could not record the partner's failure");
                }
            }
        }
    }
    ok
}

/// The systemd watchdog as seen by the worker loop: `WATCHDOG=1` every half of the
/// `WATCHDOG_USEC` systemd set (the interval `sd_notify::watchdog_enabled` reports, which
/// also checks `WATCHDOG_PID`), or never when the watchdog is off.
///
/// The pings come from the worker loop itself, not from a ticker task of their own: the loop
/// selects on [`Watchdog::tick`] both while idle and while a piece of work is in flight (see
/// [`drain`]), so a ping proves the loop is still being polled. A separate task would go on
/// pinging while the loop was wedged (a deadlock, a blocking call on its thread), which is
/// exactly what the watchdog is there to catch; a long feed pass cannot starve the pings
/// because the work runs in the loop's `select!` next to the tick, and its units run in
/// tasks of their own, each network call bounded by `api.request_timeout`.
pub struct Watchdog {
    interval: Option<Interval>,
}

impl Watchdog {
    /// The watchdog systemd asked for in the environment, if any.
    pub fn from_env() -> Watchdog {
        let interval = sd_notify::watchdog_enabled().map(|timeout| {
            let every = (timeout / 2).max(Duration::from_millis(1));
            tracing::info!(?every, "systemd watchdog enabled");
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        });
        Watchdog { interval }
    }

    /// No watchdog (`sync --once`).
    pub fn off() -> Watchdog {
        Watchdog { interval: None }
    }

    /// Waits for the next ping to be due (forever when the watchdog is off).
    pub async fn tick(&mut self) {
        match &mut self.interval {
            Some(interval) => {
                interval.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// Sends `WATCHDOG=1`.
    pub fn ping(&self) {
        if self.interval.is_some() {
            notify(&[NotifyState::Watchdog]);
        }
    }
}

/// How a piece of work ended under [`drain`].
#[derive(Debug)]
pub enum Drained<T> {
    /// It ran to its end (possibly stopping early between pages because of the cancel).
    Done(T),
    /// It was still running `sync.drain_deadline` after the cancel and was dropped; the
    /// units that were in flight are listed. Their open transactions roll back.
    Abandoned(Vec<String>),
    /// It panicked (a bug): caught here, so the daemon goes on with its other work; the
    /// panic's message. Its open transactions roll back, like a crash's.
    Panicked(String),
}

/// How long work may run without progress (`Metrics::progressed`) before the watchdog is no
/// longer pinged: the longest a single request may legitimately take through the retry
/// policy (every attempt timing out, each followed by the longest backoff), plus the
/// longest `Retry-After` obeyed, plus one more request timeout. With the defaults: 5 × (60 s
/// + 60 s) + 5 min + 60 s = 16 minutes.
pub fn stall_limit(settings: &crate::config::Settings) -> Duration {
    let attempt = settings.api.request_timeout + settings.retry.max_backoff;
    attempt.saturating_mul(settings.retry.max_attempts)
        + settings.limits.max_retry_after
        + settings.api.request_timeout
}

/// Runs `work` to its end while pinging the watchdog; once `cancel` fires, gives it
/// `deadline` to finish the page in hand (the walkers stop between pages by themselves),
/// then drops it. Dropping a feed pass drops its `JoinSet`, which aborts the unit tasks:
/// each open transaction is dropped uncommitted and rolls back, and a page is stored with
/// its cursor in one transaction, so nothing is half-written. `what` names the work in the
/// log, with the (ledger, topic) units in flight from the context's progress.
pub async fn drain<T>(
    ctx: &SyncContext,
    what: &str,
    work: impl Future<Output = T>,
    cancel: &CancellationToken,
    watchdog: &mut Watchdog,
) -> Drained<T> {
    let deadline = ctx.settings.sync.drain_deadline;
    let expired = async {
        cancel.cancelled().await;
        tokio::time::sleep(deadline).await;
    };
    // A panic inside the work (not inside a unit's task, which its pass catches) is caught
    // here rather than ending the process.
    let mut work = Box::pin(std::panic::AssertUnwindSafe(work).catch_unwind());
    tokio::pin!(expired);
    ctx.metrics.progressed();
    let stall = stall_limit(&ctx.settings);
    let mut stalled = false;
    loop {
        tokio::select! {
            done = &mut work => return match done {
                Ok(done) => Drained::Done(done),
                Err(panic) => {
                    let why = panic_message(&*panic);
                    tracing::error!(work = what, panic = %why, "the work panicked (a bug); its open transactions roll back and the daemon goes on");
                    Drained::Panicked(why)
                }
            },
            _ = watchdog.tick() => {
                let idle = ctx.metrics.since_progress();
                if idle < stall {
                    watchdog.ping();
                    stalled = false;
                } else if !stalled {
                    stalled = true;
                    tracing::error!(work = what, idle_secs = idle.as_secs(), limit_secs = stall.as_secs(), "no progress for longer than any request may take; the systemd watchdog is no longer pinged, so the service will be restarted");
                }
            }
            _ = &mut expired => break,
        }
    }
    let in_flight = ctx.progress.in_flight();
    tracing::warn!(
        work = what,
        ?deadline,
        in_flight = ?in_flight,
        "drain deadline passed: abandoning the work still running; its open transactions roll back and the next run continues from the stored cursors"
    );
    // Dropping the work aborts its unit tasks; then their leases are handed back so the next
    // run (here or in another instance) need not wait for them to expire.
    drop(work);
    hand_back_leases(ctx).await;
    Drained::Abandoned(in_flight)
}

/// A panic's message, for the log.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    crate::text::error_text(&text)
}

/// Releases every lease this process still holds, after its work was abandoned (at the drain
/// deadline, or on a second stop signal), so the next run need not wait `sync.lease_ttl` for
/// those units. Gives up after `LEASE_RELEASE_LIMIT`: the leases then simply expire.
pub async fn hand_back_leases(ctx: &SyncContext) {
    let released = tokio::time::timeout(
        LEASE_RELEASE_LIMIT,
        leases::release_leases_of(&ctx.pool, &ctx.instance),
    )
    .await;
    match released {
        Ok(Ok(n)) => tracing::info!(leases = n, "leases of the abandoned units released"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not release the abandoned units' leases; they expire after sync.lease_ttl")
        }
        Err(_) => tracing::warn!(
            "releasing the abandoned units' leases took too long; they expire after sync.lease_ttl"
        ),
    }
}

/// How long handing back the abandoned units' leases may take before the process exits
/// anyway (they then expire after `sync.lease_ttl`).
const LEASE_RELEASE_LIMIT: Duration = Duration::from_secs(3);

/// A name for this process on its leases, unique enough among instances of one database:
/// `<host>:<pid>:<random>`. The host name comes from uname(2), which works where /proc is
/// hidden (the unit's `ProcSubset=pid`).
pub(super) fn instance_name() -> String {
    format!(
        "{}:{}:{:08x}",
        host_name(),
        std::process::id(),
        rand::random::<u32>()
    )
}

fn host_name() -> String {
    let uname = rustix::system::uname();
    let host = uname.nodename().to_string_lossy();
    if host.is_empty() {
        "unknown-host".to_owned()
    } else {
        host.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_host_pid_and_a_random_part() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let (a, b) = (instance_name(), instance_name());
        let prefix = format!("{}:{}:", host.trim(), std::process::id());
        assert!(a.starts_with(&prefix), "{a} should start with {prefix}");
        assert_eq!(a.len(), prefix.len() + 8, "{a}");
        assert_ne!(a, b, "two instances in one process still differ");
    }
}
