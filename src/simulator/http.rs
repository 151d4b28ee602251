//! The simulator's HTTP surface: routes, request parsing and the real API's response shapes.
//!
//! This module owns the mapping from requests to `State` calls and from outcomes to status
//! codes and bodies (report-api.md §2, §3, §4): the MIAMI token endpoint, the three data
//! endpoints, the removed v1 endpoint (410) and a problem+json fallback. An authenticated
//! request a hostile mode hits gets that mode's answer (see `hostile_wire.rs`); otherwise data
//! requests that would answer 200 get their drawn fault (see `faults.rs`, `inject.rs`)
//! applied. Handlers take the lock briefly and never across an `.await`; no request can make
//! them panic.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::faults::{Endpoint, InFlight};
use super::hostile_wire::{self, DataRequest};
use super::inject::{respond, respond_page};
use super::pages::FeedTweak;
use super::state::{ApiError, State, TokenError};
use super::Simulator;

/// Response header carrying the feed page size in effect (report-api.md §3.2).
pub(crate) const PAGE_SIZE_HEADER: &str = "vipps-feed-page-size";
/// The headers partners must send on every call (report-api.md §2.3).
const SYSTEM_HEADERS: [&str; 4] = [
    "vipps-system-name",
    "vipps-system-version",
    "vipps-system-plugin-name",
    "vipps-system-plugin-version",
];

/// The full router: API routes, `/_sim/` admin routes and the fallback.
pub(crate) fn router(sim: Arc<Simulator>) -> Router {
    Router::new()
        .route("/miami/v1/token", post(token))
        .route("/accesstoken/get", post(super::merchant::token))
        .route("/settlement/v1/ledgers", get(ledgers))
        .route("/report/v2/ledgers/{ledger_id}/{topic}/feed", get(feed))
        .route(
            "/report/v2/ledgers/{ledger_id}/{topic}/dates/{ledger_date}",
            get(dates),
        )
        .route("/report/v1/ledgertransactions", get(gone))
        .merge(super::admin::routes())
        .fallback(no_route)
        .with_state(sim)
}

/// Query string to a map (the last value of a repeated key wins).
pub(crate) fn query_params(query: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// A header's value, if it is sent and is text.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// What a fault draw is keyed on: method, path and query exactly as received.
fn request_line(method: &Method, uri: &Uri) -> String {
    let target = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    format!("{method} {target}")
}

/// Counts a call without all four `Vipps-System-*` headers.
pub(crate) fn note_system_headers(st: &mut State, headers: &HeaderMap) {
    if !SYSTEM_HEADERS.iter().all(|h| headers.contains_key(*h)) {
        st.stats.missing_system_headers += 1;
    }
}

/// Counts missing `Vipps-System-*` headers and a stray subscription key on the MIAMI token
/// endpoint; true if one was sent.
fn note_headers(st: &mut State, headers: &HeaderMap) -> bool {
    note_system_headers(st, headers);
    let key_sent = headers.contains_key(super::merchant::SUBSCRIPTION_KEY);
    if key_sent {
        st.stats.subscription_key_sent += 1;
    }
    key_sent
}

fn problem(status: StatusCode, detail: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = json!({
        "type": format!("https://developer.vippsmobilepay.com/docs/APIs/report-api/api-guide/errors/#{}", status.as_u16()),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) fn api_error(e: ApiError) -> Response {
    match e {
        ApiError::Unauthorized => (
            StatusCode::UNAUTHORIZED,
            [(WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "code": "Unauthorized", "message": "Please check your API keys" })),
        )
            .into_response(),
        ApiError::NotFound => problem(StatusCode::NOT_FOUND, "No such ledgerId"),
        ApiError::BadRequest(detail) => problem(StatusCode::BAD_REQUEST, &detail),
        ApiError::ServerError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({
                "errorCode": 10001,
                "errorMessage": "Unknown or undocumented error (simulated)",
                "contextId": "00000000-0000-4000-8000-000000000000",
            })),
        )
            .into_response(),
    }
}

fn include_gdpr(params: &HashMap<String, String>) -> bool {
    params
        .get("includeGDPRSensitiveData")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

async fn token(AxState(sim): AxState<Arc<Simulator>>, headers: HeaderMap, body: Bytes) -> Response {
    let _flight = InFlight::arrive(&sim);
    let is_form = header(&headers, CONTENT_TYPE.as_str()).is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    let grant_type = is_form
        .then(|| {
            url::form_urlencoded::parse(&body)
                .find(|(k, _)| k == "grant_type")
                .map(|(_, v)| v.into_owned())
        })
        .flatten();
    let mut st = sim.lock();
    st.stats.token_requests += 1;
    let key_sent = note_headers(&mut st, &headers);
    let result = if key_sent {
        Err(TokenError::BadRequest)
    } else {
        st.issue_token(
            header(&headers, AUTHORIZATION.as_str()),
            grant_type.as_deref(),
        )
    };
    let issued = match result {
        Ok(t) => t,
        Err(e) => {
            st.stats.token_failures += 1;
            let status = match e {
                TokenError::BadCredentials => StatusCode::UNAUTHORIZED,
                TokenError::BadRequest => StatusCode::BAD_REQUEST,
            };
            return (status, Json(json!({ "error": "invalid_client" }))).into_response();
        }
    };
    let expires_in: Value = if let Some(huge) = hostile_wire::token_expires_in(&mut st) {
        huge
    } else if st.expires_in_as_string {
        issued.expires_in_secs.to_string().into()
    } else {
        issued.expires_in_secs.into()
    };
    drop(st);
    let body = json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
    });
    (
        [(CACHE_CONTROL, "no-store")],
        [(CONTENT_TYPE, "application/json;charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

async fn ledgers(
    AxState(sim): AxState<Arc<Simulator>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let _flight = InFlight::arrive(&sim);
    let params = query_params(query.as_deref());
    let injected = {
        let mut st = sim.lock();
        st.stats.ledger_list_requests += 1;
        note_system_headers(&mut st, &headers);
        let client = match st.authorize(&headers) {
            Ok(client) => client,
            Err(refused) => return refused.response(),
        };
        let line = request_line(&method, &uri);
        let cursor = params.get("cursor").map(String::as_str);
        let req = DataRequest {
            endpoint: Endpoint::LedgerList,
            client: &client,
            ledger_id: None,
            topic: "",
            ledger_date: "",
            cursor,
            include_gdpr: false,
            request_line: &line,
            uri: &uri,
            page_size: 0,
        };
        if let Some(response) = hostile_wire::answer(&mut st, &req) {
            return response;
        }
        let fault = st.draw_fault(Endpoint::LedgerList, None, &line);
        let result = st.ledger_page(
            &client,
            cursor,
            params.get("settlesForRecipientHandles").map(String::as_str),
        );
        match st.record(result) {
            Ok(body) => respond(&mut st, fault, Endpoint::LedgerList, body, None),
            Err(e) => return api_error(e),
        }
    };
    injected.send().await
}

async fn feed(
    AxState(sim): AxState<Arc<Simulator>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let _flight = InFlight::arrive(&sim);
    let Ok(Path((ledger_id, topic))) = path else {
        return problem(StatusCode::BAD_REQUEST, "Malformed path");
    };
    let params = query_params(query.as_deref());
    let injected = {
        let mut st = sim.lock();
        *st.stats
            .feed_requests
            .entry((ledger_id.clone(), topic.clone()))
            .or_default() += 1;
        note_system_headers(&mut st, &headers);
        let page_size = st.feed_page_size.max(1);
        let client = match st.authorize(&headers) {
            Ok(client) => client,
            Err(refused) => return refused.response(),
        };
        if st.not_found_once.remove(&ledger_id) {
            return api_error(ApiError::NotFound);
        }
        let line = request_line(&method, &uri);
        let req = DataRequest {
            endpoint: Endpoint::Feed,
            client: &client,
            ledger_id: Some(&ledger_id),
            topic: &topic,
            ledger_date: "",
            cursor: params.get("cursor").map(String::as_str),
            include_gdpr: include_gdpr(&params),
            request_line: &line,
            uri: &uri,
            page_size,
        };
        if let Some(response) = hostile_wire::answer(&mut st, &req) {
            return response;
        }
        let mut fault = st.draw_fault(Endpoint::Feed, Some(&ledger_id), &line);
        let tweak = FeedTweak::for_fault(fault);
        let result = st.feed_page(
            &client,
            &ledger_id,
            &topic,
            params.get("cursor").map(String::as_str),
            include_gdpr(&params),
            tweak,
        );
        match st.record(result) {
            Ok(page) => {
                if tweak.changes_page() && !page.tweaked {
                    fault = None; // nothing to overlap, or no cursor: served as usual
                }
                respond_page(&mut st, fault, page, page_size)
            }
            Err(e) => return api_error(e),
        }
    };
    injected.send().await
}

async fn dates(
    AxState(sim): AxState<Arc<Simulator>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    path: Result<Path<(String, String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let _flight = InFlight::arrive(&sim);
    let Ok(Path((ledger_id, topic, ledger_date))) = path else {
        return problem(StatusCode::BAD_REQUEST, "Malformed path");
    };
    let params = query_params(query.as_deref());
    let injected = {
        let mut st = sim.lock();
        st.stats.dates_requests += 1;
        note_system_headers(&mut st, &headers);
        let page_size = st.feed_page_size.max(1);
        let client = match st.authorize(&headers) {
            Ok(client) => client,
            Err(refused) => return refused.response(),
        };
        let line = request_line(&method, &uri);
        let req = DataRequest {
            endpoint: Endpoint::Dates,
            client: &client,
            ledger_id: Some(&ledger_id),
            topic: &topic,
            ledger_date: &ledger_date,
            cursor: params.get("cursor").map(String::as_str),
            include_gdpr: include_gdpr(&params),
            request_line: &line,
            uri: &uri,
            page_size,
        };
        if let Some(response) = hostile_wire::answer(&mut st, &req) {
            return response;
        }
        let fault = st.draw_fault(Endpoint::Dates, Some(&ledger_id), &line);
        let result = st.dates_page(
            &client,
            &ledger_id,
            &topic,
            &ledger_date,
            params.get("cursor").map(String::as_str),
            include_gdpr(&params),
        );
        match st.record(result) {
            Ok(body) => respond(&mut st, fault, Endpoint::Dates, body, Some(page_size)),
            Err(e) => return api_error(e),
        }
    };
    injected.send().await
}

async fn gone() -> Response {
    problem(
        StatusCode::GONE,
        "GET /report/v1/ledgertransactions was removed; use /report/v2/ledgers/{ledgerId}/{topic}/feed",
    )
}

async fn no_route() -> Response {
    problem(StatusCode::NOT_FOUND, "No such endpoint")
}
