//! The Report API boundary's errors, classified for the caller: the sync decides from the
//! class alone whether to retry, pause a ledger, mark a partner failed, or give up.

use std::time::Duration;

use reqwest::StatusCode;

/// Longest piece of an error body quoted in an error message.
const MAX_BODY_QUOTE: usize = 300;

/// What went wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The token endpoint refused the keys (wrong client id or secret, a wrong subscription
    /// key, or revoked keys).
    #[error("the token endpoint refused the keys (HTTP {status}): {body}; check client_id and client_secret (merchant keys: also subscription_key)")]
    TokenRejected { status: u16, body: String },
    /// A data call answered 401 even with a freshly fetched token.
    #[error("unauthorized (HTTP 401) even with a fresh token: {body}")]
    Unauthorized { body: String },
    /// 404: the ledger does not exist or is not (any longer) shared with these keys.
    #[error("not found (HTTP 404): {body}")]
    NotFound { body: String },
    /// 429 on the last attempt.
    #[error("rate limited (HTTP 429) on every attempt; last Retry-After {retry_after:?}")]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx, timeouts, connection errors, on every attempt.
    #[error("transient failure on every attempt: {0}")]
    Transient(String),
    /// Any other status: a bug in the request or a change in the API; never retried.
    #[error("HTTP {status}: {body}")]
    Permanent { status: u16, body: String },
    /// The body is not (complete) JSON: a transfer broken off, a proxy's error page. Retried
    /// like a transient failure.
    #[error("unreadable response: {0}")]
    Malformed(String),
    /// JSON of the wrong shape, or a value that breaks a bound of the boundary's validation.
    /// Not a passing glitch: retried once, then the unit fails for this pass.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// The response broke a bound of `[limits]` (the message names the key): a body too
    /// large, a `Retry-After` too long. Never retried: the unit fails for this pass.
    #[error("{0}")]
    OverLimit(String),
}

impl ApiError {
    /// Builds the error for a non-success status, quoting a bounded part of the body.
    pub(crate) fn from_status(status: StatusCode, body: &[u8]) -> ApiError {
        let body = quote(body);
        match status.as_u16() {
            s if status.is_redirection() => ApiError::Permanent {
                status: s,
                body: "a redirect, which is never followed (the API and the token endpoint answer at their configured URLs)".to_owned(),
            },
            401 => ApiError::Unauthorized { body },
            404 => ApiError::NotFound { body },
            429 => ApiError::RateLimited { retry_after: None },
            s if status.is_server_error() => ApiError::Transient(format!("HTTP {s}: {body}")),
            s => ApiError::Permanent { status: s, body },
        }
    }

    /// Whether the API refused the accounting keys themselves (not a passing failure): the
    /// token endpoint said no, a data call answered 401 even with a fresh token, or 403.
    pub fn refuses_keys(&self) -> bool {
        matches!(
            self,
            ApiError::TokenRejected { .. }
                | ApiError::Unauthorized { .. }
                | ApiError::Permanent { status: 403, .. }
        )
    }

    /// Whether some [`ApiError`] in `error`'s chain refuses the keys.
    pub fn refuses_keys_in(error: &anyhow::Error) -> bool {
        error.chain().any(|e| {
            e.downcast_ref::<ApiError>()
                .is_some_and(ApiError::refuses_keys)
        })
    }

    /// Whether another attempt of the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ApiError::RateLimited { .. }
                | ApiError::Transient(_)
                | ApiError::Malformed(_)
                | ApiError::InvalidResponse(_)
        )
    }
}

impl crate::retry::Failure for ApiError {
    fn is_retryable(&self) -> bool {
        ApiError::is_retryable(self)
    }

    fn retry_once(&self) -> bool {
        matches!(self, ApiError::InvalidResponse(_))
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    fn wait_too_long(what: &str, asked: Duration, bound: Duration) -> Self {
        ApiError::OverLimit(format!(
            "{what}: the API asked to wait {}s (Retry-After), longer than limits.max_retry_after ({}s); this request fails for this pass",
            asked.as_secs(),
            bound.as_secs()
        ))
    }
}

/// A printable, bounded quote of a response body: no control characters, at most
/// [`MAX_BODY_QUOTE`] bytes.
pub(crate) fn quote(body: &[u8]) -> String {
    let head = &body[..body.len().min(4 * MAX_BODY_QUOTE)];
    let text = String::from_utf8_lossy(head);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    crate::text::bounded(text, MAX_BODY_QUOTE)
}

impl From<reqwest::Error> for ApiError {
    fn from(e: reqwest::Error) -> Self {
        // Without the URL: its query holds the cursor, which may be long (or hostile), and
        // the request is named by whoever logs the error (ledger, topic, cursor position).
        let e = e.without_url();
        let kind = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "connection failed"
        } else if e.is_body() || e.is_decode() {
            "response body broken off"
        } else {
            "request failed"
        };
        ApiError::Transient(format!("{kind}: {}", error_chain(&e)))
    }
}

/// The error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// How the one retry loop (`crate::retry`) treats the API's failures.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::RetryPolicy;

    fn policy() -> RetryPolicy {
        RetryPolicy::for_tests()
    }

    #[tokio::test]
    async fn an_absurd_retry_after_fails_the_request_at_once_and_pauses_nobody() {
        let gate = crate::report_api::Gate::new(4, 0);
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
