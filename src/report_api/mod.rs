//! The Vipps boundary: the only place that speaks HTTP to the Report API. One
//! [`ReportApiClient`] per process (one connection pool, timeouts, the `Vipps-System-*`
//! headers), and one [`PartnerClient`] per set of accounting keys with its own token cache.
//! Responses are parsed into [`models`]; failures are classified in [`ApiError`].

mod error;
mod gate;
pub mod models;
pub mod retry;
mod token;

use std::sync::Arc;

use anyhow::Context as _;
use chrono::NaiveDate;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use serde_json::Value;
use url::Url;

pub use error::ApiError;
pub use gate::Gate;
pub use models::{DatesPage, Entry, FeedPage, Ledger, LedgerPage};
pub use retry::RetryPolicy;
pub use token::{TokenCache, TokenHealth};

use crate::config::{join, ApiSettings, PartnerSettings, RetrySettings, Topic};
use crate::metrics::{Endpoint, Metrics};

/// The process-wide HTTP side of the Report API.
#[derive(Debug)]
pub struct ReportApiClient {
    http: reqwest::Client,
    base_url: Url,
    token_url: Url,
    retry: RetryPolicy,
    token_refresh_margin: std::time::Duration,
    gate: Arc<Gate>,
    /// Where requests, retries and tokens are counted.
    metrics: Arc<Metrics>,
}

impl ReportApiClient {
    /// Builds the client: timeouts, user agent and `Vipps-System-*` headers on every request.
    /// Counts on the process's metrics.
    pub fn new(api: &ApiSettings, retry: &RetrySettings) -> anyhow::Result<Arc<Self>> {
        Self::with_metrics(api, retry, Arc::clone(crate::metrics::global()))
    }

    /// [`ReportApiClient::new`], counting requests, retries and tokens on `metrics`.
    pub fn with_metrics(
        api: &ApiSettings,
        retry: &RetrySettings,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
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
            .build()
            .context("building the HTTP client")?;
        Ok(Arc::new(ReportApiClient {
            http,
            base_url: api.base_url.clone(),
            token_url: api.token_endpoint(),
            retry: RetryPolicy::from(retry),
            token_refresh_margin: api.token_refresh_margin,
            gate: Arc::new(Gate::new(api.max_in_flight, api.max_requests_per_second)),
            metrics,
        }))
    }

    /// A client for one set of accounting keys, with its own token cache.
    pub fn partner(self: &Arc<Self>, partner: &PartnerSettings) -> PartnerClient {
        PartnerClient {
            api: Arc::clone(self),
            name: partner.name.clone(),
            tokens: TokenCache::new(
                self.http.clone(),
                self.token_url.clone(),
                partner.client_id.clone(),
                partner.client_secret.clone(),
                self.token_refresh_margin,
                self.retry.clone(),
                Arc::clone(&self.gate),
            )
            .counted_as(partner.name.clone(), Arc::clone(&self.metrics)),
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
    /// fails, so a partial list is never mistaken for the complete one.
    pub async fn list_ledgers(&self) -> Result<Vec<Ledger>, ApiError> {
        let mut ledgers = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.ledger_page(cursor.as_deref()).await?;
            ledgers.extend(page.ledgers());
            match page.cursor {
                Some(next) if Some(&next) == cursor.as_ref() => {
                    return Err(ApiError::InvalidResponse(
                        "the ledger list returned the same cursor twice".to_owned(),
                    ))
                }
                Some(next) => cursor = Some(next),
                None => return Ok(ledgers),
            }
        }
    }

    /// One page of `GET /settlement/v1/ledgers`.
    pub async fn ledger_page(&self, cursor: Option<&str>) -> Result<LedgerPage, ApiError> {
        let mut url = join(&self.api.base_url, "settlement/v1/ledgers");
        if let Some(c) = cursor {
            url.query_pairs_mut().append_pair("cursor", c);
        }
        self.get(Endpoint::Ledgers, url, parse_ledger_page).await
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
        self.get(Endpoint::Feed, url, parse_feed_page).await
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
        self.get(Endpoint::Dates, url, parse_dates_page).await
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

    /// GET with the token, the retry policy, and one token refresh on 401.
    async fn get<T>(
        &self,
        endpoint: Endpoint,
        url: Url,
        parse: fn(&[u8]) -> Result<T, String>,
    ) -> Result<T, ApiError> {
        let policy = &self.api.retry;
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            attempt += 1;
            let token = self.tokens.get().await?;
            let permit = self.api.gate.enter().await;
            let result = self
                .api
                .http
                .get(url.clone())
                .bearer_auth(token.expose_secret())
                .send()
                .await;
            let status = result.as_ref().ok().map(|r| r.status().as_u16());
            self.api.metrics.api_request(endpoint, status);
            let err = match result {
                Err(e) => ApiError::from(e),
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    match response.bytes().await {
                        Err(e) => ApiError::from(e),
                        Ok(body) if status.is_success() => match parse(&body) {
                            Ok(page) => return Ok(page),
                            Err(why) => ApiError::InvalidResponse(why),
                        },
                        Ok(_) if status == 401 && !refreshed => {
                            // The token may have been revoked or expired early: fetch one new
                            // token and try once more, without spending an attempt.
                            refreshed = true;
                            attempt -= 1;
                            self.tokens.invalidate(&token).await;
                            continue;
                        }
                        Ok(body) => match ApiError::from_status(status, &body) {
                            ApiError::RateLimited { .. } => {
                                let retry_after = retry::retry_after(&headers);
                                if let Some(wait) = retry_after {
                                    // The gateway limits the host: everyone waits.
                                    self.api.gate.pause_for(wait);
                                }
                                ApiError::RateLimited { retry_after }
                            }
                            other => other,
                        },
                    }
                }
            };
            drop(permit);
            if !err.is_retryable() || attempt >= policy.max_attempts {
                return Err(err);
            }
            self.api.metrics.api_retry(endpoint);
            let retry_after = match &err {
                ApiError::RateLimited { retry_after } => *retry_after,
                _ => None,
            };
            // After a Retry-After the gate holds every request back; this request adds its
            // own jittered backoff only when the server named no time.
            let wait = if retry_after.is_some() {
                std::time::Duration::ZERO
            } else {
                policy.backoff(attempt)
            };
            tracing::warn!(attempt, ?wait, path = url.path(), error = %err, "request failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get(name).filter(|f| !f.is_null())
}

fn items<T>(v: &mut Value, parse: impl Fn(Value) -> Result<T, String>) -> Result<Vec<T>, String> {
    let items = match v.get_mut("items").map(Value::take) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err("field `items` is not an array".to_owned()),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| parse(item).map_err(|e| format!("item {i} of the page: {e}")))
        .collect()
}

fn flag(v: &Value, name: &str) -> Result<Option<bool>, String> {
    match field(v, name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("field `{name}` is not a boolean")),
    }
}

fn text(v: &Value, name: &str) -> Result<Option<String>, String> {
    match field(v, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("field `{name}` is not a string")),
    }
}

fn object(v: &Value) -> Result<(), String> {
    if v.is_object() {
        Ok(())
    } else {
        Err("body is not a JSON object".to_owned())
    }
}

/// A body as JSON, or why not (serde's message names a position, never content).
fn json(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("body is not JSON ({e})"))
}

/// The ledger list is read item by item from the raw text, never as one JSON tree, so a page
/// of a thousand ledgers costs little memory.
fn parse_ledger_page(body: &[u8]) -> Result<LedgerPage, String> {
    #[derive(serde::Deserialize)]
    struct Wire<'a> {
        #[serde(default)]
        cursor: Option<String>,
        #[serde(default, borrow)]
        items: Option<Vec<&'a serde_json::value::RawValue>>,
    }
    let wire: Wire = serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            format!("body is not JSON ({e})")
        } else {
            format!("the ledger list does not match the documented schema ({e})")
        }
    })?;
    let items = wire.items.unwrap_or_default();
    for (i, raw) in items.iter().enumerate() {
        serde_json::from_str::<Ledger>(raw.get()).map_err(|e| {
            format!("item {i} of the page: ledger does not match the documented schema: {e}")
        })?;
    }
    let items = items.into_iter().map(|raw| raw.to_owned()).collect();
    Ok(LedgerPage {
        cursor: wire.cursor.filter(|c| !c.is_empty()),
        items,
    })
}

fn parse_feed_page(body: &[u8]) -> Result<FeedPage, String> {
    let mut v = json(body)?;
    object(&v)?;
    let cursor = text(&v, "cursor")?
        .filter(|c| !c.is_empty())
        .ok_or("field `cursor` is missing or empty (the feed always returns one)")?;
    let try_later = flag(&v, "tryLater")?.unwrap_or(false);
    let items = items(&mut v, Entry::from_json)?;
    Ok(FeedPage {
        cursor,
        try_later,
        items,
    })
}

fn parse_dates_page(body: &[u8]) -> Result<DatesPage, String> {
    let mut v = json(body)?;
    object(&v)?;
    let has_more = flag(&v, "hasMore")?.unwrap_or(false);
    let cursor = text(&v, "cursor")?.filter(|c| !c.is_empty());
    if has_more && cursor.is_none() {
        return Err("`hasMore` is true but there is no `cursor`".to_owned());
    }
    let try_later = flag(&v, "tryLater")?.unwrap_or(false);
    let items = items(&mut v, Entry::from_json)?;
    Ok(DatesPage {
        cursor: cursor.filter(|_| has_more),
        has_more,
        try_later,
        items,
    })
}
