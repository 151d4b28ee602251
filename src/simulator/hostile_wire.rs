//! How each hostile mode looks on the wire, and which answer a hit request gets.
//!
//! This module owns the entry point the HTTP handlers call for every authenticated data
//! request ([`answer`]) and the token's `expires_in`, plus the responses that are not pages:
//! the 429 with a huge `Retry-After`, the redirect, and the huge page, which is streamed in
//! fixed-size chunks so that its size costs the simulator no memory. Everything is built while
//! the caller holds the lock; the huge page's chunks are produced after it has let go.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::faults::Endpoint;
use super::hostile::{Hostile, DEFAULT_REDIRECT_LOCATION, MAX_HUGE_PAGE_MEGABYTES};
use super::hostile_pages::huge_cursor;
use super::http::{api_error, PAGE_SIZE_HEADER};
use super::inject::ok_json;
use super::pages::FeedTweak;
use super::schema_random;
use super::state::{ApiError, State};

/// Size of each chunk of a huge page's filler, in bytes.
const HUGE_PAGE_CHUNK: usize = 64 * 1024;
/// The huge page's filler text (plain ASCII: nothing to escape inside a JSON string).
const FILLER: &str = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do ";
/// Where the filler goes in the serialised page (replaced by the streamed filler).
const PAD_MARK: &str = "@@hostile-padding@@";

/// An authenticated data request, as the hostile modes need it.
pub(crate) struct DataRequest<'a> {
    pub endpoint: Endpoint,
    pub client: &'a str,
    /// `None` for the ledger list.
    pub ledger_id: Option<&'a str>,
    /// Path segments as received (empty for the ledger list; the date only for dates).
    pub topic: &'a str,
    pub ledger_date: &'a str,
    pub cursor: Option<&'a str>,
    pub include_gdpr: bool,
    /// Method, path and query exactly as received.
    pub request_line: &'a str,
    pub uri: &'a Uri,
    /// The feed page size in effect (for the `Vipps-Feed-Page-Size` header).
    pub page_size: usize,
}

/// The answer the hostile mode in effect gives `req`, counted, or `None` when no mode
/// changes it (it is then answered as usual, faults included).
pub(crate) fn answer(st: &mut State, req: &DataRequest<'_>) -> Option<Response> {
    let Some(mode) = st.hostile_hit(req.endpoint, req.ledger_id) else {
        // The hostile ids' own feeds and dates answer as usual; they still count.
        if req
            .ledger_id
            .is_some_and(|l| st.hostile_id_book(l).is_some())
        {
            st.count_hostile(&Hostile::HostileLedgerIds);
        }
        return None;
    };
    let ledger_id = req.ledger_id.unwrap_or_default();
    let page_size = Some(req.page_size);
    let result: Result<Option<(Response, bool)>, ApiError> = match &mode {
        Hostile::HugeRetryAfter { retry_after } => Ok(Some((too_many_requests(retry_after), true))),
        Hostile::Redirect {
            status, location, ..
        } => Ok(Some((redirect(*status, location, req.uri), true))),
        Hostile::SchemaRandom => {
            let body = schema_random::body(st.seed, req.request_line, req.endpoint);
            Ok(Some((Json(body).into_response(), true)))
        }
        Hostile::LedgerCursorCycle { period } => {
            let body = st.ledger_cycle_page(req.client, req.cursor, *period);
            Ok(Some((ok_json(&body, None), true)))
        }
        Hostile::HostileLedgerIds => {
            st.count_hostile(&mode);
            return None; // the usual list, which now shows the hostile ids
        }
        Hostile::FeedEmptyForever => st
            .empty_forever_page(req.client, ledger_id, req.topic, req.cursor)
            .map(|body| Some((ok_json(&body, page_size), true))),
        Hostile::HugePage { megabytes, chunked } => st
            .feed_page(
                req.client,
                ledger_id,
                req.topic,
                req.cursor,
                req.include_gdpr,
                FeedTweak::None,
            )
            .map(|page| {
                Some((
                    huge_page(page.into_json(), *megabytes, *chunked, req.page_size),
                    true,
                ))
            }),
        Hostile::HugeCursor { bytes } => st
            .feed_page(
                req.client,
                ledger_id,
                req.topic,
                req.cursor,
                req.include_gdpr,
                FeedTweak::None,
            )
            .map(|mut page| {
                page.cursor = huge_cursor(&page.cursor, *bytes);
                Some((ok_json(&page.into_json(), page_size), true))
            }),
        Hostile::FarFutureEntry if req.endpoint == Endpoint::Feed => st
            .far_future_feed_page(
                req.client,
                ledger_id,
                req.topic,
                req.cursor,
                req.include_gdpr,
            )
            .map(|(body, far)| Some((ok_json(&body, page_size), far))),
        Hostile::FarFutureEntry => st
            .far_future_dates_page(
                req.client,
                ledger_id,
                req.topic,
                req.ledger_date,
                req.cursor,
                req.include_gdpr,
            )
            .map(|(body, far)| Some((ok_json(&body, page_size), far))),
        Hostile::DatesCursorRepeat => st
            .dates_repeat_page(
                req.client,
                ledger_id,
                req.topic,
                req.ledger_date,
                req.cursor,
                req.include_gdpr,
            )
            .map(|body| Some((ok_json(&body, page_size), true))),
        Hostile::HugeTokenLifetime { .. } => Ok(None),
    };
    match st.record(result) {
        Ok(Some((response, counted))) => {
            if counted {
                st.count_hostile(&mode);
            }
            Some(response)
        }
        Ok(None) => None,
        Err(e) => Some(api_error(e)),
    }
}

/// The `expires_in` of a token answer in `huge-token-lifetime` (counted), or `None`.
pub(crate) fn token_expires_in(st: &mut State) -> Option<Value> {
    let config = st.hostile.as_ref().filter(|c| c.hits_token())?;
    let mode = config.mode.clone();
    let Hostile::HugeTokenLifetime { as_string } = mode else {
        return None;
    };
    st.count_hostile(&mode);
    Some(if as_string {
        u64::MAX.to_string().into()
    } else {
        u64::MAX.into()
    })
}

/// 429 as Azure API Management sends it, with `retry_after` as the `Retry-After` verbatim.
fn too_many_requests(retry_after: &str) -> Response {
    let message = if retry_after.bytes().all(|b| b.is_ascii_digit()) {
        format!("Rate limit is exceeded. Try again in {retry_after} seconds.")
    } else {
        "Rate limit is exceeded. Try again later.".to_string()
    };
    let value = HeaderValue::from_str(retry_after).unwrap_or(HeaderValue::from_static("999999999"));
    let body = json!({ "statusCode": 429, "message": message });
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(RETRY_AFTER, value)],
        Json(body),
    )
        .into_response()
}

/// The redirect: `location` as is, or, when it has no path (nor query), `location` followed
/// by the request's path and query. An empty body.
fn redirect(status: u16, location: &str, uri: &Uri) -> Response {
    let status = StatusCode::from_u16(status)
        .ok()
        .filter(StatusCode::is_redirection)
        .unwrap_or(StatusCode::FOUND);
    let target = match url::Url::parse(location) {
        Ok(u) if u.path() == "/" && u.query().is_none() && u.fragment().is_none() => {
            let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
            format!("{}{path}", location.trim_end_matches('/'))
        }
        _ => location.to_string(),
    };
    let value = HeaderValue::from_str(&target)
        .unwrap_or(HeaderValue::from_static(DEFAULT_REDIRECT_LOCATION));
    (status, [(LOCATION, value)]).into_response()
}

/// `huge-page`: `page` with a huge `note` string in its first item (or in the page, if it
/// has none), `megabytes` MiB in all, streamed: the JSON before the string, the filler in
/// [`HUGE_PAGE_CHUNK`] chunks, the JSON after it. With `Content-Length`, or chunked.
fn huge_page(mut page: Value, megabytes: u64, chunked: bool, page_size: usize) -> Response {
    let first_item = page
        .get_mut("items")
        .and_then(Value::as_array_mut)
        .and_then(|items| items.first_mut())
        .and_then(Value::as_object_mut);
    match first_item {
        Some(item) => item.insert("note".into(), PAD_MARK.into()),
        None => page
            .as_object_mut()
            .and_then(|m| m.insert("note".into(), PAD_MARK.into())),
    };
    let text = page.to_string();
    let quoted = format!("\"{PAD_MARK}\"");
    let Some(at) = text.find(&quoted) else {
        return ok_json(&page, Some(page_size));
    };
    // Keep the quotes: the filler goes between them.
    let prefix = Bytes::from(text[..=at].to_string());
    let suffix = Bytes::from(text[at + quoted.len() - 1..].to_string());
    let total = megabytes.clamp(1, MAX_HUGE_PAGE_MEGABYTES) << 20;
    let fill = total.saturating_sub((prefix.len() + suffix.len()) as u64);
    let length = fill + (prefix.len() + suffix.len()) as u64;
    let chunk =
        Bytes::from(FILLER.repeat(HUGE_PAGE_CHUNK / FILLER.len() + 1)).slice(..HUGE_PAGE_CHUNK);
    let size = HUGE_PAGE_CHUNK as u64;
    let chunks = (0..fill.div_ceil(size)).map(move |i| {
        let n = (fill - i * size).min(size) as usize;
        chunk.slice(..n)
    });
    let parts = std::iter::once(prefix)
        .chain(chunks)
        .chain(std::iter::once(suffix))
        .map(Ok::<Bytes, Infallible>);
    let mut response = Response::new(Body::from_stream(futures_util::stream::iter(parts)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(PAGE_SIZE_HEADER, HeaderValue::from(page_size));
    if !chunked {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}
