//! The webhook exporter's delivery: one JSON POST per (ledger, date), signed, idempotent,
//! retried with backoff.
//!
//! Headers on every request:
//! - `Idempotency-Key`: `<exporter>:<ledger>:<date>`, the same on every retry and after a
//!   restart, so a receiver that stores it can drop a repeated delivery; a later delivery of
//!   the same date (`export --force`, a corrected date) carries `<exporter>:<ledger>:<date>:r<n>`
//!   and its body says which key it revises;
//! - `X-VLS-Timestamp`: Unix seconds when this attempt was signed;
//! - `X-VLS-Signature`: `v2=` and the lower-case hex HMAC-SHA256, keyed with the exporter's
//!   secret, of `<timestamp>.<idempotency key>.<body>` (the timestamp, a full stop, the key, a
//!   full stop, the exact body bytes). A receiver recomputes it, compares in constant time,
//!   and rejects a timestamp more than [`TOLERANCE`] from its clock (a replay), so neither
//!   the body nor the key it deduplicates on can be changed or replayed.
//!
//! Any 2xx marks the date exported; anything else (or no answer) is retried with the `[retry]`
//! policy, and what is still failing then is tried again at the next pass.

use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use url::Url;

use crate::config::{redact_url, WebhookUrl};
use crate::retry::{self, Failure, RetryPolicy};
use crate::text::hex;

pub const SIGNATURE_HEADER: &str = "X-VLS-Signature";
pub const TIMESTAMP_HEADER: &str = "X-VLS-Timestamp";
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// How far a signed timestamp may be from the receiver's clock (either way) for the request to
/// be taken: five minutes, as Stripe's webhooks do. Senders sign each attempt anew.
pub const TOLERANCE: Duration = Duration::from_secs(300);

/// `v2=<hex HMAC-SHA256(secret, "<timestamp>.<idempotency key>.<body>")>`.
pub fn signature(secret: &SecretString, timestamp: i64, key: &str, body: &[u8]) -> String {
    format!(
        "v2={}",
        hex(&mac(secret, timestamp, key, body).finalize().into_bytes())
    )
}

/// Checks a request as a receiver should: the signature (constant-time) over the timestamp,
/// the `Idempotency-Key` and the body, and the timestamp within [`TOLERANCE`] of `now` (Unix
/// seconds). For receivers written in Rust and for the tests.
pub fn verify(
    secret: &SecretString,
    timestamp: i64,
    key: &str,
    body: &[u8],
    header: &str,
    now: i64,
) -> bool {
    if now.abs_diff(timestamp) > TOLERANCE.as_secs() {
        return false;
    }
    let Some(hex_sig) = header.strip_prefix("v2=") else {
        return false;
    };
    let Some(bytes) = unhex(hex_sig) else {
        return false;
    };
    mac(secret, timestamp, key, body)
        .verify_slice(&bytes)
        .is_ok()
}

/// The HMAC-SHA256, keyed with `secret`, of `<timestamp>.<key>.<body>`. The parts cannot be
/// shifted into each other: the timestamp is digits, and the body is a JSON object, beginning
/// with `{`, which no key holds (`<exporter>:<ledger>:<date>[:r<n>]`, ledger ids being
/// letters, digits and `.`, `_`, `:`, `-`).
fn mac(secret: &SecretString, timestamp: i64, key: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(key.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Why one POST failed.
#[derive(Debug)]
enum PostError {
    /// The receiver answered with a status other than 2xx (and perhaps a `Retry-After`).
    Status {
        url: String,
        status: reqwest::StatusCode,
        retry_after: Option<Duration>,
    },
    /// No answer: a timeout, a refused connection.
    Transport(String),
    /// The receiver asked to wait longer than `limits.max_retry_after`.
    WaitTooLong(String),
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::Status { url, status, .. } => write!(f, "{url} answered {status}"),
            PostError::Transport(e) | PostError::WaitTooLong(e) => f.write_str(e),
        }
    }
}

impl Failure for PostError {
    /// Any answer but a 2xx is worth another attempt (the receiver may be restarting).
    fn is_retryable(&self) -> bool {
        !matches!(self, PostError::WaitTooLong(_))
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            PostError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn wait_too_long(what: &str, asked: Duration, bound: Duration) -> Self {
        PostError::WaitTooLong(format!(
            "{what}: the receiver asked to wait {}s (Retry-After), longer than limits.max_retry_after ({}s)",
            asked.as_secs(),
            bound.as_secs()
        ))
    }
}

/// Posts `body` with the one retry loop (`crate::retry`) until a 2xx, or until the attempts
/// run out; returns how many attempts it took, or what the last one got.
pub async fn deliver(
    http: &reqwest::Client,
    url: &WebhookUrl,
    secret: &SecretString,
    idempotency_key: &str,
    body: &[u8],
    retry: &RetryPolicy,
    max_retry_after: Duration,
) -> Result<u32, String> {
    let mut attempts = 0;
    // `url` shows without credentials (Display); only the request gets it whole.
    let what = format!("POST {url}");
    retry
        .run(
            max_retry_after,
            &what,
            || {},
            || {
                attempts += 1;
                post(http, url.expose(), secret, idempotency_key, body)
            },
        )
        .await
        .map(|()| attempts)
        .map_err(|e| e.to_string())
}

/// One signed POST (signed anew: its timestamp is the attempt's).
async fn post(
    http: &reqwest::Client,
    url: &Url,
    secret: &SecretString,
    idempotency_key: &str,
    body: &[u8],
) -> Result<(), PostError> {
    let timestamp = chrono::Utc::now().timestamp();
    let sent = http
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(IDEMPOTENCY_HEADER, idempotency_key)
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(
            SIGNATURE_HEADER,
            signature(secret, timestamp, idempotency_key, body),
        )
        .body(body.to_vec())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(PostError::Status {
            url: redact_url(url),
            status: response.status(),
            retry_after: retry::retry_after(response.headers()),
        }),
        // The error's text names the URL without its credentials, never the body or the
        // signature.
        Err(e) => Err(PostError::Transport(format!(
            "POST {}: {}",
            redact_url(url),
            e.without_url()
        ))),
    }
}

/// The client for webhooks: its own timeouts, no redirects (a signed body goes only where it
/// was configured to go).
pub fn client(
    request_timeout: Duration,
    connect_timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("vipps-ledger-sync/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(request_timeout)
        .connect_timeout(connect_timeout)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_any_change_breaks_them() {
        let secret = SecretString::from("0123456789abcdef-secret");
        let (t, key, body) = (1_700_000_000, "hook:100001:2026-11-20", b"{\"a\":1}");
        let sig = signature(&secret, t, key, body);
        assert!(sig.starts_with("v2=") && sig.len() == 3 + 64);
        assert!(verify(&secret, t, key, body, &sig, t));
        assert!(verify(&secret, t, key, body, &sig, t + 300));
        assert!(verify(&secret, t, key, body, &sig, t - 300));
        assert!(!verify(&secret, t, key, body, &sig, t + 301), "too old");
        assert!(
            !verify(&secret, t, key, body, &sig, t - 301),
            "from the future"
        );
        assert!(!verify(&secret, t + 1, key, body, &sig, t));
        assert!(!verify(
            &secret,
            t,
            "hook:100001:2026-11-20:r1",
            body,
            &sig,
            t
        ));
        assert!(!verify(&secret, t, key, b"{\"a\":2}", &sig, t));
        let other = SecretString::from("another-secret-of-16");
        assert!(!verify(&other, t, key, body, &sig, t));
        assert!(!verify(&secret, t, key, body, "v2=zz", t));
        let v1 = sig.replacen("v2=", "v1=", 1);
        assert!(!verify(&secret, t, key, body, &v1, t));
    }
}
