//! The one door every request to the API goes through: a bound on requests in flight, a
//! global request rate, and the pause a 429's `Retry-After` imposes on *every* request to
//! the host (the gateway limits us, not one ledger).

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// Shared by all partners and ledgers of the process.
#[derive(Debug)]
pub struct Gate {
    in_flight: Semaphore,
    /// Minimum spacing between requests; `None` when unlimited.
    interval: Option<Duration>,
    /// When the next request may start under the rate limit.
    next_slot: Mutex<Instant>,
    /// No request starts before this (set by `Retry-After`).
    paused_until: Mutex<Option<Instant>>,
}

impl Gate {
    /// A gate allowing `max_in_flight` concurrent requests and `per_second` requests per
    /// second (0: no rate limit).
    pub fn new(max_in_flight: usize, per_second: u32) -> Gate {
        Gate {
            in_flight: Semaphore::new(max_in_flight.max(1)),
            interval: (per_second > 0).then(|| Duration::from_secs(1) / per_second),
            next_slot: Mutex::new(Instant::now()),
            paused_until: Mutex::new(None),
        }
    }

    /// Waits for a slot: a free place in flight, the end of any pause, the rate limit. Hold
    /// the permit until the response body has been read.
    pub async fn enter(&self) -> SemaphorePermit<'_> {
        let permit = self
            .in_flight
            .acquire()
            .await
            .expect("the gate's semaphore is never closed");
        self.wait_out_pause().await;
        if let Some(interval) = self.interval {
            let slot = {
                let mut next = lock(&self.next_slot);
                let slot = (*next).max(Instant::now());
                *next = slot.checked_add(interval).unwrap_or(slot);
                slot
            };
            tokio::time::sleep_until(slot).await;
            // A 429 may have arrived while this request waited for its slot.
            self.wait_out_pause().await;
        }
        permit
    }

    /// Pauses every request for `wait` (never shortening a pause already in force). Callers
    /// bound `wait` (`limits.max_retry_after`); an unbounded one pauses as long as the clock
    /// can count, never panics.
    pub fn pause_for(&self, wait: Duration) {
        let now = Instant::now();
        let until = now
            .checked_add(wait)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
        let mut paused = lock(&self.paused_until);
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    /// A 429's `Retry-After`, as read: pauses every request for it unless it is longer than
    /// `max` (then the request fails instead; see `RetryPolicy::run`). Called before the
    /// request's slot is given back, so no other request starts in between.
    pub fn obey(&self, retry_after: Option<Duration>, max: Duration) {
        if let Some(wait) = retry_after.filter(|w| *w <= max) {
            self.pause_for(wait);
        }
    }

    async fn wait_out_pause(&self) {
        loop {
            let until = *lock(&self.paused_until);
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values are plain instants; a panic elsewhere cannot corrupt them.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_rate_limit_spaces_requests() {
        let gate = Gate::new(8, 50);
        let started = Instant::now();
        for _ in 0..11 {
            drop(gate.enter().await);
        }
        // 11 requests at 50/s: the last starts 200 ms after the first.
        assert!(
            started.elapsed() >= Duration::from_millis(195),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_pause_holds_back_every_request() {
        let gate = Gate::new(8, 0);
        gate.pause_for(Duration::from_millis(150));
        gate.pause_for(Duration::from_millis(10));
        let started = Instant::now();
        drop(gate.enter().await);
        assert!(started.elapsed() >= Duration::from_millis(145));
    }
}
