//! The `/_sim/` admin routes for people running `simulate` by hand.
//!
//! This module owns the unauthenticated control surface: read the counters, grow the ledgers,
//! grant and revoke ledgers, list partners. Bodies are plain JSON; errors are
//! `{"error": "..."}` with 400 (bad parameter) or 404 (unknown partner or ledger).

use std::sync::Arc;

use axum::extract::{RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::http::query_params;
use super::Simulator;

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
