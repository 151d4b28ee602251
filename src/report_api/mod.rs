//! The Vipps boundary: the only place that speaks HTTP to the Report API. One
//! [`ReportApiClient`] per process (one connection pool, timeouts, the `Vipps-System-*`
//! headers), and one [`PartnerClient`] per set of keys (accounting or merchant) with its own
//! token cache; what each kind sends is decided in `keys.rs` alone.
//! Responses are parsed into [`models`]; failures are classified in [`ApiError`].

mod error;
mod gate;
mod keys;
mod members;
pub mod models;
pub mod parse;
mod token;
pub mod validate;
pub mod walk;

use std::sync::Arc;

use anyhow::Context as _;
use chrono::NaiveDate;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

pub use error::ApiError;
pub use gate::Gate;
pub use models::{DatesPage, Entry, FeedPage, Ledger, LedgerPage};
pub use token::{Bearer, TokenCache, TokenHealth};

use crate::config::{join, LimitsSettings, PartnerSettings, Settings, Topic};
use crate::metrics::{Endpoint, Metrics};
use crate::retry::{self, RetryPolicy};
use parse::ParseError;

/// Longest error body read from the API, in bytes: only its first few hundred characters are
/// ever quoted.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// The process-wide HTTP side of the Report API.
#[derive(Debug)]
pub struct ReportApiClient {
    http: reqwest::Client,
    base_url: Url,
    token_url: Url,
    retry: RetryPolicy,
    token_refresh_margin: std::time::Duration,
    limits: LimitsSettings,
    gate: Arc<Gate>,
    /// Where requests, retries and tokens are counted.
    metrics: Arc<Metrics>,
}

impl ReportApiClient {
    /// Builds the client: timeouts, user agent and `Vipps-System-*` headers on every request;
    /// requests, retries and tokens are counted on `metrics`.
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> anyhow::Result<Arc<Self>> {
        let (api, retry) = (&settings.api, &settings.retry);
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("vipps-system-name", &api.system_name),
            ("vipps-system-version", &api.system_version),
            ("vipps-system-plugin-name", &api.plugin_name),
            ("vipps-system-plugin-version", &api.plugin_version),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).with_context(|| format!("header {name}"))?,
            );
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("vipps-ledger-sync/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(api.connect_timeout)
            .timeout(api.request_timeout)
            // A redirect is answered as an error, never followed: a listing redirected to
            // another host must not open grants (the configured URLs are the API).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client")?;
        Ok(Arc::new(ReportApiClient {
            http,
            base_url: api.base_url.clone(),
            token_url: api.token_endpoint(),
            retry: RetryPolicy::from(retry),
            token_refresh_margin: api.token_refresh_margin,
            limits: settings.limits.clone(),
            gate: Arc::new(Gate::new(api.max_in_flight, api.max_requests_per_second)),
            metrics,
        }))
    }

    /// A client for one set of keys, with its own token cache.
    pub fn partner(self: &Arc<Self>, partner: &PartnerSettings) -> PartnerClient {
        PartnerClient {
            api: Arc::clone(self),
            name: partner.name.clone(),
            tokens: TokenCache::new(
                self.http.clone(),
                (&self.base_url, &self.token_url),
                partner,
                self.token_refresh_margin,
                self.retry.clone(),
                self.limits.clone(),
                Arc::clone(&self.gate),
                Arc::clone(&self.metrics),
            ),
            personal_data: false,
        }
    }
}

/// The Report API as one partner sees it.
#[derive(Debug)]
pub struct PartnerClient {
    api: Arc<ReportApiClient>,
    name: String,
    tokens: TokenCache,
    /// Ask for `name`, `maskedPhoneNo` and `message` (`includeGDPRSensitiveData=true`).
    personal_data: bool,
}

impl PartnerClient {
    /// Asks for the personal fields on every feed and dates request (off by default).
    pub fn with_personal_data(mut self, on: bool) -> Self {
        self.personal_data = on;
        self
    }

    /// The partner's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The partner's token cache.
    pub fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    /// Every ledger these keys may read, through all pages. Fails as a whole if any page
    /// fails or holds an invalid ledger, loops, or passes `limits.max_pages_per_listing`, so
    /// a partial list is never mistaken for the complete one.
    pub async fn list_ledgers(&self) -> Result<Vec<Ledger>, ApiError> {
        let mut ledgers = Vec::new();
        let mut cursors = walk::Cursors::default();
        let mut cursor: Option<String> = None;
        for _ in 0..self.api.limits.max_pages_per_listing {
            let page = self.ledger_page(cursor.as_deref()).await?;
            if let Some(why) = page.rejected.first() {
                return Err(ApiError::InvalidResponse(format!(
                    "the ledger list holds an invalid ledger: {why}"
                )));
            }
            ledgers.extend(page.ledgers());
            match page.cursor {
                Some(next) if cursors.repeat(&next).is_some() => {
                    return Err(ApiError::InvalidResponse(
                        "the ledger list's cursors go round in a circle".to_owned(),
                    ))
                }
                Some(next) => cursor = Some(next),
                None => return Ok(ledgers),
            }
        }
        Err(ApiError::OverLimit(
            "the ledger list did not end within limits.max_pages_per_listing".to_owned(),
        ))
    }

    /// One page of `GET /settlement/v1/ledgers`.
    pub async fn ledger_page(&self, cursor: Option<&str>) -> Result<LedgerPage, ApiError> {
        let mut url = join(&self.api.base_url, "settlement/v1/ledgers");
        if let Some(c) = cursor {
            url.query_pairs_mut().append_pair("cursor", c);
        }
        let max_cursor = self.api.limits.max_cursor_bytes;
        self.get(Endpoint::Ledgers, url, |body| {
            parse::ledger_page(body, max_cursor)
        })
        .await
    }

    /// One page of `GET /report/v2/ledgers/{ledgerId}/{topic}/feed`; no cursor means the start
    /// of the ledger's history.
    pub async fn feed(
        &self,
        ledger_id: &str,
        topic: Topic,
        cursor: Option<&str>,
    ) -> Result<FeedPage, ApiError> {
        let mut url = self.ledger_url(ledger_id, topic, &["feed"]);
        if let Some(c) = cursor {
            url.query_pairs_mut().append_pair("cursor", c);
        }
        let max_cursor = self.api.limits.max_cursor_bytes;
        self.get(Endpoint::Feed, url, |body| {
            parse::feed_page(body, max_cursor, chrono::Utc::now())
        })
        .await
    }

    /// One page of `GET /report/v2/ledgers/{ledgerId}/{topic}/dates/{ledgerDate}`.
    pub async fn dates(
        &self,
        ledger_id: &str,
        topic: Topic,
        date: NaiveDate,
        cursor: Option<&str>,
    ) -> Result<DatesPage, ApiError> {
        let date = date.format("%Y-%m-%d").to_string();
        let mut url = self.ledger_url(ledger_id, topic, &["dates", &date]);
        if let Some(c) = cursor {
            url.query_pairs_mut().append_pair("cursor", c);
        }
        let max_cursor = self.api.limits.max_cursor_bytes;
        self.get(Endpoint::Dates, url, |body| {
            parse::dates_page(body, max_cursor, chrono::Utc::now())
        })
        .await
    }

    fn ledger_url(&self, ledger_id: &str, topic: Topic, rest: &[&str]) -> Url {
        let mut url = join(&self.api.base_url, "report/v2/ledgers");
        url.path_segments_mut()
            .expect("base URLs are http(s) and have a path")
            .push(ledger_id)
            .push(topic.as_str())
            .extend(rest);
        if self.personal_data {
            // Repeated on every paged request, as the API requires.
            url.query_pairs_mut()
                .append_pair("includeGDPRSensitiveData", "true");
        }
        url
    }

    /// GET with the token and the retry policy ([`RetryPolicy::run`]); each attempt gets one
    /// token refresh on 401.
    async fn get<T>(
        &self,
        endpoint: Endpoint,
        url: Url,
        parse: impl Fn(&[u8]) -> Result<T, ParseError>,
    ) -> Result<T, ApiError> {
        let what = format!("GET {}", url.path());
        self.api
            .retry
            .run(
                self.api.limits.max_retry_after,
                &what,
                || self.api.metrics.api_retry(endpoint),
                || self.attempt(endpoint, &url, &parse),
            )
            .await
    }

    /// One attempt of a GET: a fresh token and one more request if the first answers 401
    /// (the token may have been revoked or expired early).
    async fn attempt<T>(
        &self,
        endpoint: Endpoint,
        url: &Url,
        parse: &impl Fn(&[u8]) -> Result<T, ParseError>,
    ) -> Result<T, ApiError> {
        let mut refreshed = false;
        loop {
            let token = self.tokens.get().await?;
            let request =
                self.tokens
                    .keys()
                    .call(self.api.http.get(url.clone()), &token.token, token.key)?;
            let permit = self.api.gate.enter().await;
            let result = request.send().await;
            self.api
                .metrics
                .api_request(endpoint, result.as_ref().ok().map(|r| r.status().as_u16()));
            let response = result?;
            let status = response.status();
            if status.is_success() {
                let body = read_body(
                    response,
                    self.api.limits.max_body_bytes,
                    "limits.max_body_bytes",
                )
                .await?;
                drop(permit);
                return parse(&body).map_err(|e| match e {
                    ParseError::NotJson(why) => ApiError::Malformed(why),
                    ParseError::Invalid(why) => ApiError::InvalidResponse(why),
                });
            }
            if status == 401 && !refreshed {
                refreshed = true;
                drop(permit);
                self.tokens.invalidate(&token).await;
                continue;
            }
            let retry_after = retry::retry_after(response.headers());
            if status == 429 {
                self.api
                    .gate
                    .obey(retry_after, self.api.limits.max_retry_after);
            }
            let body = read_body(response, MAX_ERROR_BODY, "the error-body bound")
                .await
                .unwrap_or_default();
            drop(permit);
            return Err(match ApiError::from_status(status, &body) {
                ApiError::RateLimited { .. } => ApiError::RateLimited { retry_after },
                other => other,
            });
        }
    }
}

/// A response's body, at most `max` bytes: refused at once when its `Content-Length` says
/// more, and as soon as the bytes read pass `max` otherwise (chunked or lying), so a hostile
/// body never sits in memory whole. `key` names the bound in the error.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    max: u64,
    key: &str,
) -> Result<Vec<u8>, ApiError> {
    let too_large = |n: u64| {
        ApiError::OverLimit(format!(
            "the response body is {n} bytes or more, over {key} ({max}); it was not read"
        ))
    };
    if let Some(len) = response.content_length().filter(|&len| len > max) {
        return Err(too_large(len));
    }
    let expected = response.content_length().unwrap_or(0).min(max);
    let mut body = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    while let Some(chunk) = response.chunk().await? {
        let needed = body.len() + chunk.len();
        if needed as u64 > max {
            return Err(too_large(needed as u64));
        }
        if needed > body.capacity() {
            // Doubling, but never past the bound: a body of the largest size allowed never
            // holds twice that.
            let to = needed.max(body.capacity() * 2).min(max as usize);
            body.reserve_exact(to - body.len());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
