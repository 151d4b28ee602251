//! The access token of one set of keys: fetched as the kind of keys requires (`keys.rs`),
//! cached, replaced a margin before it expires, one fetch at a time (concurrent callers wait
//! for the fetch in flight instead of stampeding the token endpoint). For merchant keys it
//! also holds which subscription key is in use: when the token endpoint refuses one, the
//! other (primary or secondary) is tried, and kept while it works.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::error::{quote, ApiError};
use super::gate::Gate;
use super::keys::Keys;
use crate::config::LimitsSettings;
use crate::metrics::{Endpoint, Metrics};
use crate::retry::{self, RetryPolicy};

/// The shortest token lifetime believed: a shorter `expires_in` (0, or negative) counts as
/// this, so a token is used at least once before the next is fetched.
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(1);

/// The longest token lifetime believed (merchant tokens live 24 hours, accounting-key tokens
/// 15 minutes): a longer `expires_in` counts as this, so an absurd one can neither overflow a
/// clock nor keep a revoked token in use for years.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Longest token response read, in bytes (a real one is under 2 KB).
const MAX_TOKEN_BODY: u64 = 64 * 1024;

/// A cached token and when it stops being valid.
struct Token {
    value: SecretString,
    /// The subscription key it was fetched with (merchant keys; 0 otherwise).
    key: usize,
    /// When to stop using it: expiry less the refresh margin.
    refresh_at: Instant,
}

/// A token to call with, and the subscription key to send beside it.
#[derive(Clone)]
pub struct Bearer {
    pub(crate) token: SecretString,
    pub(crate) key: usize,
}

/// The token cache of one partner.
pub struct TokenCache {
    http: reqwest::Client,
    url: Url,
    keys: Keys,
    /// The subscription key the next token is fetched with (merchant keys).
    active_key: AtomicUsize,
    margin: Duration,
    retry: RetryPolicy,
    limits: LimitsSettings,
    slot: Mutex<Option<Token>>,
    fetches: AtomicU64,
    gate: std::sync::Arc<Gate>,
    /// The partner's name, for metrics.
    partner: String,
    metrics: std::sync::Arc<Metrics>,
    /// What the last token request did, readable without waiting for a fetch in flight.
    status: std::sync::Mutex<FetchStatus>,
}

/// The outcome of the latest token request.
#[derive(Debug, Default)]
struct FetchStatus {
    /// When the latest token fetched stops being valid (its expiry, not the refresh time).
    valid_until: Option<Instant>,
    /// Why the latest request failed; `None` after a success.
    last_error: Option<String>,
}

/// Whether a partner's keys currently yield a token, for readiness and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenHealth {
    /// A token is held that has not expired, or the latest request succeeded.
    Valid,
    /// No token was asked for yet.
    NotFetched,
    /// The latest request failed and no unexpired token is held. The text says why, without
    /// any secret or response body.
    Failed(String),
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("url", &self.url.as_str())
            .field("keys", &self.keys)
            .field("fetches", &self.fetches.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The token endpoint's answer. `expires_in` is a number in the examples and a string in the
/// spec, so both are accepted.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    #[serde(default)]
    token_type: Option<String>,
    expires_in: NumberOrString,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(serde_json::Number),
    String(String),
}

impl TokenCache {
    /// The cache of `partner`'s keys, fetching from `url`, counted on `metrics`.
    #[allow(clippy::too_many_arguments)] // each is one of the client's parts, none optional
    pub(crate) fn new(
        http: reqwest::Client,
        urls: (&Url, &Url),
        partner: &crate::config::PartnerSettings,
        margin: Duration,
        retry: RetryPolicy,
        limits: LimitsSettings,
        gate: std::sync::Arc<Gate>,
        metrics: std::sync::Arc<Metrics>,
    ) -> TokenCache {
        let keys = Keys::new(partner);
        TokenCache {
            http,
            url: keys.token_url(urls.0, urls.1),
            keys,
            active_key: AtomicUsize::new(0),
            margin,
            retry,
            limits,
            slot: Mutex::new(None),
            fetches: AtomicU64::new(0),
            gate,
            partner: partner.name.clone(),
            metrics,
            status: std::sync::Mutex::new(FetchStatus::default()),
        }
    }

    /// Whether these keys currently yield a token: valid while a fetched token has not
    /// expired or the latest request succeeded.
    pub fn health(&self) -> TokenHealth {
        let status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        match (&status.last_error, status.valid_until) {
            (_, Some(until)) if Instant::now() < until => TokenHealth::Valid,
            (Some(error), _) => TokenHealth::Failed(error.clone()),
            (None, Some(_)) => TokenHealth::Valid,
            (None, None) => TokenHealth::NotFetched,
        }
    }

    fn set_status(&self, result: Result<Instant, String>) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(until) => {
                status.valid_until = Some(until);
                status.last_error = None;
            }
            Err(why) => status.last_error = Some(why),
        }
    }

    /// How many tokens have been fetched (for tests and metrics).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The keys, which say what each call sends.
    pub(crate) fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A valid token: the cached one, or a new one if it is missing or about to expire.
    pub async fn get(&self) -> Result<Bearer, ApiError> {
        let mut slot = self.slot.lock().await;
        if let Some(token) = slot.as_ref() {
            if Instant::now() < token.refresh_at {
                return Ok(Bearer {
                    token: token.value.clone(),
                    key: token.key,
                });
            }
        }
        let token = self.fetch().await?;
        let bearer = Bearer {
            token: token.value.clone(),
            key: token.key,
        };
        *slot = Some(token);
        Ok(bearer)
    }

    /// Forgets `used` after the API refused it, unless another caller has already replaced it.
    pub async fn invalidate(&self, used: &Bearer) {
        let mut slot = self.slot.lock().await;
        if slot
            .as_ref()
            .is_some_and(|t| t.value.expose_secret() == used.token.expose_secret())
        {
            *slot = None;
        }
    }

    /// A new token with the subscription key in use; if the token endpoint refuses the keys
    /// and there is another subscription key, once more with that one, which stays in use
    /// if it works (the refused one may have been regenerated in the portal).
    async fn fetch(&self) -> Result<Token, ApiError> {
        let active = self.active_key.load(Ordering::Relaxed);
        let mut fetched = self.fetch_with(active).await;
        let count = self.keys.subscription_keys();
        if count > 1 && matches!(fetched, Err(ApiError::TokenRejected { .. })) {
            let other = (active + 1) % count;
            tracing::warn!(
                partner = %self.partner,
                refused = Keys::key_label(active),
                trying = Keys::key_label(other),
                "the token endpoint refused the keys with the {} subscription key; trying the {}",
                Keys::key_label(active),
                Keys::key_label(other),
            );
            fetched = self.fetch_with(other).await;
            if fetched.is_ok() {
                self.active_key.store(other, Ordering::Relaxed);
            }
        }
        fetched
    }

    /// [`TokenCache::fetch`] with subscription key `key`, under the retry policy.
    async fn fetch_with(&self, key: usize) -> Result<Token, ApiError> {
        let fetched = self
            .retry
            .run(
                self.limits.max_retry_after,
                "token request",
                || self.metrics.api_retry(Endpoint::Token),
                || self.fetch_once(key),
            )
            .await;
        match fetched {
            Ok((token, valid_until)) => {
                self.metrics.token_refreshed(&self.partner);
                self.set_status(Ok(valid_until));
                Ok(token)
            }
            Err(err) => {
                self.metrics.token_failed(&self.partner);
                self.set_status(Err(short_reason(&err)));
                Err(err)
            }
        }
    }

    /// One token request: the token and when it expires.
    async fn fetch_once(&self, key: usize) -> Result<(Token, Instant), ApiError> {
        let request = self.keys.token_request(&self.http, &self.url, key)?;
        let _permit = self.gate.enter().await;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let response = request.send().await;
        self.metrics.api_request(
            Endpoint::Token,
            response.as_ref().ok().map(|r| r.status().as_u16()),
        );
        let response = response?;
        let status = response.status();
        let headers = response.headers().clone();
        let body =
            super::read_body(response, MAX_TOKEN_BODY, "limits (64 KiB for a token)").await?;
        if status == 400 || status == 401 || status == 403 {
            return Err(ApiError::TokenRejected {
                status: status.as_u16(),
                body: quote(&body),
            });
        }
        if !status.is_success() {
            let retry_after = retry::retry_after(&headers);
            if status == 429 {
                self.gate.obey(retry_after, self.limits.max_retry_after);
            }
            return Err(match ApiError::from_status(status, &body) {
                ApiError::RateLimited { .. } => ApiError::RateLimited { retry_after },
                other => other,
            });
        }
        let (value, stated) = parse_token(&body)?;
        let lifetime = stated.clamp(MIN_TOKEN_LIFETIME, MAX_TOKEN_LIFETIME);
        if lifetime != stated {
            tracing::warn!(
                expires_in = stated.as_secs(),
                used = lifetime.as_secs(),
                "the token endpoint stated an implausible lifetime; using the nearest bound"
            );
        }
        // Never spend more than half the lifetime as margin, so short tokens are still used.
        let margin = self.margin.min(lifetime / 2);
        tracing::debug!(
            lifetime_secs = lifetime.as_secs(),
            "fetched a new access token"
        );
        // Within a day of now: no Instant arithmetic here can overflow.
        Ok((
            Token {
                value,
                key,
                refresh_at: started + (lifetime - margin),
            },
            started + lifetime,
        ))
    }
}

/// A token response: the token and the lifetime it states (`expires_in`, a number or a
/// string of digits; one too large for u64 is u64::MAX seconds, a negative or fractional one
/// 0; the caller clamps it). No body makes this panic (a property test feeds it any).
fn parse_token(body: &[u8]) -> Result<(SecretString, Duration), ApiError> {
    let parsed: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::Malformed(format!("token response is not JSON ({e})"))
        } else {
            ApiError::InvalidResponse(format!("token response does not parse: {e}"))
        }
    })?;
    if let Some(kind) = parsed.token_type.as_deref() {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::InvalidResponse(format!(
                "token_type is \"{}\", expected Bearer",
                crate::text::bounded(kind, 32)
            )));
        }
    }
    let lifetime = match parsed.expires_in {
        // Negative or fractional counts as 0 (then clamped up), too large as u64::MAX.
        NumberOrString::Number(n) => n.as_u64().unwrap_or_else(|| {
            if n.as_f64().is_some_and(|f| f > 0.0) {
                u64::MAX
            } else {
                0
            }
        }),
        NumberOrString::String(s) => match s.trim().parse::<u64>() {
            Ok(n) => n,
            // All digits, but more than u64 holds: as long as can be (then clamped).
            Err(_) if !s.trim().is_empty() && s.trim().bytes().all(|b| b.is_ascii_digit()) => {
                u64::MAX
            }
            Err(_) => {
                return Err(ApiError::InvalidResponse(
                    "expires_in is not a number".to_owned(),
                ))
            }
        },
    };
    Ok((parsed.access_token, Duration::from_secs(lifetime)))
}

/// Why a token request failed, in a few words: the class and status, never a body (which
/// could echo anything) and never a secret.
fn short_reason(err: &ApiError) -> String {
    match err {
        ApiError::TokenRejected { status, .. } => {
            format!("the token endpoint refused the keys (HTTP {status})")
        }
        ApiError::RateLimited { .. } => "the token endpoint rate-limited every attempt".to_owned(),
        ApiError::Transient(_) => {
            "the token endpoint failed on every attempt (5xx, timeout or connection)".to_owned()
        }
        ApiError::Permanent { status, .. } => format!("the token endpoint answered HTTP {status}"),
        ApiError::Unauthorized { .. } => "the token endpoint answered HTTP 401".to_owned(),
        ApiError::NotFound { .. } => "the token endpoint answered HTTP 404".to_owned(),
        ApiError::InvalidResponse(_) | ApiError::Malformed(_) => {
            "the token endpoint's answer could not be read".to_owned()
        }
        ApiError::OverLimit(why) => why.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn expires_in_as_a_number_a_string_or_absurdly_large() {
        let life = |body: &str| parse_token(body.as_bytes()).map(|(_, d)| d.as_secs());
        assert_eq!(
            life(r#"{"access_token":"t","token_type":"Bearer","expires_in":900}"#).unwrap(),
            900
        );
        assert_eq!(
            life(r#"{"access_token":"t","expires_in":"3600"}"#).unwrap(),
            3600
        );
        assert_eq!(
            life(r#"{"access_token":"t","expires_in":18446744073709551615}"#).unwrap(),
            u64::MAX
        );
        assert_eq!(
            life(r#"{"access_token":"t","expires_in":1e300}"#).unwrap(),
            u64::MAX
        );
        assert_eq!(
            life(r#"{"access_token":"t","expires_in":"99999999999999999999999"}"#).unwrap(),
            u64::MAX
        );
        assert_eq!(life(r#"{"access_token":"t","expires_in":-5}"#).unwrap(), 0);
        assert!(life(r#"{"access_token":"t","expires_in":"soon"}"#).is_err());
        assert!(matches!(life("<html>"), Err(ApiError::Malformed(_))));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn no_token_response_makes_the_parser_panic(body in prop::collection::vec(any::<u8>(), 0..256),
                                                    n in any::<i128>(), f in any::<f64>(), s in ".{0,30}") {
            let _ = parse_token(&body);
            for expires in [n.to_string(), f.to_string(), format!("{s:?}")] {
                let json = format!(r#"{{"access_token":"t","token_type":"Bearer","expires_in":{expires}}}"#);
                if let Ok((_, stated)) = parse_token(json.as_bytes()) {
                    let clamped = stated.clamp(MIN_TOKEN_LIFETIME, MAX_TOKEN_LIFETIME);
                    let now = tokio::time::Instant::now();
                    let _ = now + clamped;
                }
            }
        }
    }
}
