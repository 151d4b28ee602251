//! The `/_sim/` admin routes for people running `simulate` by hand.
//!
//! This module owns the unauthenticated control surface: read the counters, grow the ledgers,
//! grant and revoke ledgers, list partners, set or clear fault injection or a hostile mode,
//! expire tokens.
//! Bodies are plain JSON; errors are `{"error": "..."}` with 400 (bad parameter or body) or
//! 404 (unknown partner or ledger).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::http::query_params;
use super::{FaultConfig, Hostile, HostileConfig, Simulator};

/// Most ledger dates one `POST /_sim/grow` may add, so a typo cannot exhaust memory.
const MAX_GROW_DAYS: u32 = 366;

/// The admin routes, to be merged into the main router.
pub(crate) fn routes() -> Router<Arc<Simulator>> {
    Router::new()
        .route("/_sim/stats", get(stats))
        .route("/_sim/grow", post(grow))
        .route("/_sim/grant", post(grant))
        .route("/_sim/revoke", post(revoke))
        .route("/_sim/partners", get(partners))
        .route("/_sim/faults", post(faults))
        .route("/_sim/hostile", get(hostile_get).post(hostile_post))
        .route("/_sim/expire-tokens", post(expire_tokens))
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn stats(AxState(sim): AxState<Arc<Simulator>>) -> Json<Value> {
    Json(sim.stats().to_json())
}

async fn grow(AxState(sim): AxState<Arc<Simulator>>, RawQuery(query): RawQuery) -> Response {
    let params = query_params(query.as_deref());
    let days = match params.get("days").map(|d| d.parse::<u32>()) {
        None => 1,
        Some(Ok(d)) if d <= MAX_GROW_DAYS => d,
        _ => {
            let msg = format!("days must be an integer from 0 to {MAX_GROW_DAYS}");
            return error(StatusCode::BAD_REQUEST, msg);
        }
    };
    sim.grow(days);
    let last: Vec<Value> = sim
        .last_ledger_dates()
        .into_iter()
        .map(|(id, date)| json!({ "ledgerId": id, "openLedgerDate": date }))
        .collect();
    Json(json!({ "grownDays": days, "ledgers": last })).into_response()
}

fn grant_params(query: Option<&str>) -> Option<(String, String)> {
    let params = query_params(query);
    match (params.get("client_id"), params.get("ledger_id")) {
        (Some(c), Some(l)) => Some((c.clone(), l.clone())),
        _ => None,
    }
}

fn missing_grant_params() -> Response {
    let msg = "client_id and ledger_id are required".to_string();
    error(StatusCode::BAD_REQUEST, msg)
}

async fn grant(AxState(sim): AxState<Arc<Simulator>>, RawQuery(query): RawQuery) -> Response {
    let Some((client, ledger)) = grant_params(query.as_deref()) else {
        return missing_grant_params();
    };
    // Separate statement: the guard must be dropped before partner_json locks again.
    let result = sim.lock().grant(&client, &ledger);
    match result {
        Ok(()) => Json(sim.partner_json(&client)).into_response(),
        Err(msg) => error(StatusCode::NOT_FOUND, msg),
    }
}

async fn revoke(AxState(sim): AxState<Arc<Simulator>>, RawQuery(query): RawQuery) -> Response {
    let Some((client, ledger)) = grant_params(query.as_deref()) else {
        return missing_grant_params();
    };
    // Separate statement: the guard must be dropped before partner_json locks again.
    let result = sim.lock().revoke(&client, &ledger);
    match result {
        Ok(()) => Json(sim.partner_json(&client)).into_response(),
        Err(msg) => error(StatusCode::NOT_FOUND, msg),
    }
}

async fn partners(AxState(sim): AxState<Arc<Simulator>>) -> Json<Value> {
    let st = sim.lock();
    let list: Vec<Value> = st
        .partners
        .iter()
        .map(|(id, p)| json!({ "clientId": id, "ledgers": p.grants }))
        .collect();
    Json(json!({ "partners": list }))
}

/// The body of `POST /_sim/faults`: [`FaultConfig`]'s fields, durations in milliseconds;
/// missing fields are 0, false or null.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
struct FaultsBody {
    seed: u64,
    only_ledger: Option<String>,
    rate_429: f64,
    retry_after_ms: u64,
    retry_after_as_date: bool,
    rate_500: f64,
    rate_502: f64,
    rate_truncated: f64,
    rate_invalid_json: f64,
    rate_html: f64,
    rate_wrong_types: f64,
    rate_missing_cursor: f64,
    rate_invalid_entry: f64,
    rate_overlap: f64,
    rate_no_progress: f64,
    rate_stall: f64,
    stall_ms: u64,
}

impl From<&FaultsBody> for FaultConfig {
    fn from(b: &FaultsBody) -> FaultConfig {
        FaultConfig {
            seed: b.seed,
            only_ledger: b.only_ledger.clone(),
            rate_429: b.rate_429,
            retry_after: Duration::from_millis(b.retry_after_ms),
            retry_after_as_date: b.retry_after_as_date,
            rate_500: b.rate_500,
            rate_502: b.rate_502,
            rate_truncated: b.rate_truncated,
            rate_invalid_json: b.rate_invalid_json,
            rate_html: b.rate_html,
            rate_wrong_types: b.rate_wrong_types,
            rate_missing_cursor: b.rate_missing_cursor,
            rate_invalid_entry: b.rate_invalid_entry,
            rate_overlap: b.rate_overlap,
            rate_no_progress: b.rate_no_progress,
            rate_stall: b.rate_stall,
            stall: Duration::from_millis(b.stall_ms),
        }
    }
}

/// `POST /_sim/faults` with a [`FaultsBody`] turns faults on; `null` (or no body) turns
/// them off. Answers `{"faults": <the settings in effect or null>}`.
async fn faults(AxState(sim): AxState<Arc<Simulator>>, body: Bytes) -> Response {
    let parsed: Result<Option<FaultsBody>, _> = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(None)
    } else {
        serde_json::from_slice(&body)
    };
    match parsed {
        Ok(settings) => {
            sim.set_faults(settings.as_ref().map(FaultConfig::from));
            Json(json!({ "faults": settings })).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, format!("bad fault settings: {e}")),
    }
}

/// `{"hostile": <the mode in effect or null>, "modes": [<every mode's name>]}`.
fn hostile_json(sim: &Simulator) -> Value {
    let current = sim.hostile().map(|c| c.to_json());
    json!({ "hostile": current, "modes": Hostile::NAMES })
}

/// `GET /_sim/hostile`: the mode in effect and the modes there are.
async fn hostile_get(AxState(sim): AxState<Arc<Simulator>>) -> Json<Value> {
    Json(hostile_json(&sim))
}

/// `POST /_sim/hostile` with `{"mode": <name>, "only_ledger": <id>, <parameters>}` turns a
/// hostile mode on (replacing the one in effect); `null` (or no body) turns it off. Answers
/// like `GET`, with every parameter in effect spelled out; 400 says what is wrong.
async fn hostile_post(AxState(sim): AxState<Arc<Simulator>>, body: Bytes) -> Response {
    let parsed: Result<Value, _> = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Value::Null)
    } else {
        serde_json::from_slice(&body)
    };
    let config = match parsed {
        Ok(Value::Null) => None,
        Ok(value) => match HostileConfig::from_json(&value) {
            Ok(config) => Some(config),
            Err(msg) => return error(StatusCode::BAD_REQUEST, format!("bad hostile mode: {msg}")),
        },
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad hostile mode: {e}")),
    };
    sim.set_hostile(config);
    Json(hostile_json(&sim)).into_response()
}

/// `POST /_sim/expire-tokens`: every token issued so far is refused from now on.
async fn expire_tokens(AxState(sim): AxState<Arc<Simulator>>) -> Json<Value> {
    sim.expire_tokens();
    Json(json!({ "expired": true }))
}
