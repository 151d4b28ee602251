//! The one retry policy for every request to the API: how many attempts, and how long to wait
//! between them (exponential backoff with full jitter, or the server's `Retry-After`, within
//! `limits.max_retry_after`), and [`RetryPolicy::run`], the loop that applies it to data calls
//! and token requests alike.

use std::future::Future;
use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::error::ApiError;
use crate::config::RetrySettings;

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
    /// `max_attempts` are spent. A 429's `Retry-After` pauses every request through `gate`
    /// (the gateway limits the host; the attempt calls `Gate::obey` while it still holds
    /// its slot), unless it is longer than `max_retry_after`: then this request fails at once
    /// ([`ApiError::OverLimit`]), so one absurd answer cannot stop every partner for years. A response of the wrong shape is tried once more, not
    /// `max_attempts` times: it is rarely a passing glitch. `on_retry` hears of every retry
    /// (for metrics) before its wait.
    pub async fn run<T, F, Fut>(
        &self,
        max_retry_after: Duration,
        what: &str,
        mut on_retry: impl FnMut(),
        mut attempt: F,
    ) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut attempts = 0;
        let mut invalid = 0;
        loop {
            attempts += 1;
            let err = match attempt().await {
                Ok(done) => return Ok(done),
                Err(err) => err,
            };
            let mut wait = None;
            if let ApiError::RateLimited {
                retry_after: Some(after),
            } = &err
            {
                if *after > max_retry_after {
                    return Err(ApiError::OverLimit(format!(
                        "{what}: the API asked to wait {}s (Retry-After), longer than limits.max_retry_after ({}s); this request fails for this pass",
                        after.as_secs(),
                        max_retry_after.as_secs()
                    )));
                }
                // The attempt paused the gate as it read the 429 (`Gate::obey`), before its
                // slot was free for another request; no backoff of our own on top.
                wait = Some(Duration::ZERO);
            }
            if matches!(err, ApiError::InvalidResponse(_)) {
                invalid += 1;
            }
            if !err.is_retryable() || invalid > 1 || attempts >= self.max_attempts {
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
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        }
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

    #[tokio::test]
    async fn an_absurd_retry_after_fails_the_request_at_once_and_pauses_nobody() {
        let gate = super::super::gate::Gate::new(4, 0);
        gate.obey(
            Some(Duration::from_secs(999_999_999)),
            Duration::from_secs(300),
        );
        let started = tokio::time::Instant::now();
        let mut calls = 0;
        let result: Result<(), ApiError> = policy()
            .run(
                Duration::from_secs(300),
                "GET /x",
                || {},
                || {
                    calls += 1;
                    async {
                        Err(ApiError::RateLimited {
                            retry_after: Some(Duration::from_secs(999_999_999)),
                        })
                    }
                },
            )
            .await;
        assert!(
            matches!(result, Err(ApiError::OverLimit(ref m)) if m.contains("limits.max_retry_after"))
        );
        assert_eq!(calls, 1);
        drop(gate.enter().await);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_response_of_the_wrong_shape_is_tried_once_more_and_a_broken_one_until_the_end() {
        let count = |err: fn() -> ApiError| async move {
            let mut calls = 0;
            let _: Result<(), ApiError> = policy()
                .run(
                    Duration::from_secs(300),
                    "GET /x",
                    || {},
                    || {
                        calls += 1;
                        let e = err();
                        async move { Err(e) }
                    },
                )
                .await;
            calls
        };
        assert_eq!(count(|| ApiError::InvalidResponse("x".into())).await, 2);
        assert_eq!(count(|| ApiError::Malformed("x".into())).await, 5);
        assert_eq!(count(|| ApiError::OverLimit("x".into())).await, 1);
    }
}
