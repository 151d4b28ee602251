//! The one retry loop for every outgoing request (the Report API's data calls, its token
//! requests, the webhook exporter's POSTs): how many attempts, how long to wait between them
//! (exponential backoff with full jitter, or the server's `Retry-After`, within a bound), and
//! which failures are worth another attempt ([`Failure`], said by each caller's error type).

use std::future::Future;
use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::config::RetrySettings;

/// What the retry loop needs to know about a failed attempt.
pub trait Failure: std::fmt::Display + Sized {
    /// Another attempt may succeed (a timeout, a 5xx, a 429, a broken body).
    fn is_retryable(&self) -> bool;
    /// Worth exactly one more attempt, not more (a response of the wrong shape is rarely a
    /// passing glitch).
    fn retry_once(&self) -> bool {
        false
    }
    /// The server asked to wait this long before the next request (a 429's `Retry-After`).
    /// The caller has already paused whatever it must (see `report_api::Gate::obey`); the
    /// loop adds no backoff of its own on top.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
    /// The failure to report when `Retry-After` asked for longer than the bound: the request
    /// fails at once, so one absurd answer cannot hold everything up for years.
    fn wait_too_long(what: &str, asked: Duration, bound: Duration) -> Self;
}

/// Attempts and backoff for one request, from `[retry]`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl From<&RetrySettings> for RetryPolicy {
    fn from(s: &RetrySettings) -> Self {
        RetryPolicy {
            max_attempts: s.max_attempts,
            base_backoff: s.base_backoff,
            max_backoff: s.max_backoff,
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based): a random duration in
    /// `[0, min(max_backoff, base_backoff * 2^(attempt-1))]` ("full jitter"), so that many
    /// workers failing together do not retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base_backoff.saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let cap = exp.min(self.max_backoff);
        if cap.is_zero() {
            return cap;
        }
        rand::thread_rng().gen_range(Duration::ZERO..=cap)
    }
}

impl RetryPolicy {
    /// Runs `attempt` until it succeeds, fails in a way another attempt cannot mend, or
    /// `max_attempts` are spent. A `Retry-After` longer than `max_retry_after` fails the
    /// request at once ([`Failure::wait_too_long`]); a shorter one replaces the backoff. A
    /// failure worth [`Failure::retry_once`] gets one more attempt only. `on_retry` hears of
    /// every retry (for metrics) before its wait; `what` names the request in the log.
    pub async fn run<T, E, F, Fut>(
        &self,
        max_retry_after: Duration,
        what: &str,
        mut on_retry: impl FnMut(),
        mut attempt: F,
    ) -> Result<T, E>
    where
        E: Failure,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempts = 0;
        let mut once = 0;
        loop {
            attempts += 1;
            let err = match attempt().await {
                Ok(done) => return Ok(done),
                Err(err) => err,
            };
            let mut wait = None;
            if let Some(after) = err.retry_after() {
                if after > max_retry_after {
                    return Err(E::wait_too_long(what, after, max_retry_after));
                }
                wait = Some(Duration::ZERO);
            }
            if err.retry_once() {
                once += 1;
            }
            if !err.is_retryable() || once > 1 || attempts >= self.max_attempts {
                return Err(err);
            }
            on_retry();
            let wait = wait.unwrap_or_else(|| self.backoff(attempts));
            tracing::warn!(attempt = attempts, ?wait, error = %err, "{what} failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

/// Reads `Retry-After` as delta-seconds or as an HTTP date (any size: the caller bounds it).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
        // More seconds than u64 holds: as long as can be.
        return Some(Duration::MAX);
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let when = SystemTime::from(when);
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
impl RetryPolicy {
    /// Five attempts, backoff from 100 ms up to 1 s.
    pub(crate) fn for_tests() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn policy() -> RetryPolicy {
        RetryPolicy::for_tests()
    }

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let p = policy();
        for _ in 0..200 {
            assert!(p.backoff(1) <= Duration::from_millis(100));
            assert!(p.backoff(3) <= Duration::from_millis(400));
            assert!(p.backoff(40) <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_http_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = chrono::Utc::now() + chrono::Duration::seconds(30);
        let date = later.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        let got = retry_after(&h).unwrap();
        assert!(
            got > Duration::from_secs(25) && got <= Duration::from_secs(30),
            "{got:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("184467440737095516150000"),
        );
        assert_eq!(retry_after(&h), Some(Duration::MAX));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Fri, 31 Dec 9999 23:59:59 GMT"),
        );
        assert!(retry_after(&h).unwrap() > Duration::from_secs(3600 * 24 * 365 * 7000));
    }
}
