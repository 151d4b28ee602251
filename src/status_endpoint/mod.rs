//! The status endpoint of `run` on `http.listen`: `/healthz` (the process runs), `/readyz`
//! (the database answers and every partner's keys yield a token) and `/metrics`
//! (Prometheus). It reads the sync context, and the database through a small pool of its own
//! (so a pass holding every connection of the daemon's pool does not make it look down). This
//! file owns the routes and their answers; `server` the connections and their bounds, `slots`
//! the connection limit, `auth` the optional bearer token. See docs/monitoring.md.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod auth;
mod gauges;
mod server;
mod slots;

pub use server::{MAX_CONNECTION_AGE, MAX_HEADER_BYTES};

use crate::report_api::TokenHealth;
use crate::sync::SyncContext;

/// How long `/readyz` waits for the database to answer `SELECT 1`.
pub const READY_DB_TIMEOUT: Duration = Duration::from_secs(2);

/// What the handlers read: the sync context, and a database pool of the endpoint's own.
#[derive(Clone)]
struct Status {
    ctx: Arc<SyncContext>,
    db: sqlx::PgPool,
}

/// Serves the endpoints on `listener` until `cancel` fires, within the bounds of `[http]`;
/// returns once every connection is closed, at most `sync.drain_deadline` after `cancel`.
pub async fn serve(
    ctx: Arc<SyncContext>,
    listener: TcpListener,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let db = crate::store::connect_observer(&ctx.settings.database, READY_DB_TIMEOUT)
        .unwrap_or_else(|e| {
            // Not expected: the URL was checked when the daemon's own pool connected.
            tracing::warn!(error = %e, "status endpoint: using the daemon's pool");
            ctx.pool.clone()
        });
    let http = &ctx.settings.http;
    let limits = server::Limits {
        header_read_timeout: http.header_read_timeout,
        request_timeout: http.request_timeout,
        max_connections: http.max_connections,
        drain_deadline: ctx.settings.sync.drain_deadline,
    };
    let token = http.token.as_ref().map(auth::BearerToken::new);
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Status { ctx, db });
    let gate = server::Gate {
        router,
        token,
        request_timeout: limits.request_timeout,
    };
    server::run(listener, gate, limits, cancel).await
}

/// For `run`: binds `http.listen` (if set) and serves there until `cancel` fires. Fails,
/// naming the key, if the address cannot be bound. Returns the bound address and the task.
pub async fn start(
    ctx: &Arc<SyncContext>,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<(SocketAddr, JoinHandle<()>)>> {
    let Some(addr) = ctx.settings.http.listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("http.listen = {addr}: cannot listen there"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    let token = ctx.settings.http.token.is_some();
    let (ctx, cancel) = (Arc::clone(ctx), cancel.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = serve(ctx, listener, cancel).await {
            tracing::error!(error = %e, "the status endpoint stopped");
        }
    });
    if token {
        tracing::info!(%bound, "status endpoint: /healthz; /readyz and /metrics with the bearer token");
    } else if bound.ip().is_loopback() {
        tracing::info!(%bound, "status endpoint: /healthz, /readyz, /metrics");
    } else {
        tracing::warn!(
            %bound,
            "status endpoint: http.listen is not a loopback address and http.token is not set: \
             anyone who can reach it reads /readyz and /metrics (partner names, ledger ids, \
             error messages); set http.token or restrict the address"
        );
    }
    Ok(Some((bound, task)))
}

async fn healthz() -> &'static str {
    "ok"
}

/// 200 when the database answers `SELECT 1` within [`READY_DB_TIMEOUT`] and no partner's
/// latest token request failed (a partner not asked yet counts as ready); else 503. The JSON
/// body names each check: `{"ready", "database", "partners": {name: state}}`.
async fn readyz(State(Status { ctx, db }): State<Status>) -> impl IntoResponse {
    let database =
        match tokio::time::timeout(READY_DB_TIMEOUT, crate::store::monitoring::ping(&db)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("failed: {}", database_error(&e))),
            Err(_) => Err(format!("no answer within {} s", READY_DB_TIMEOUT.as_secs())),
        };
    let mut ready = database.is_ok();
    let mut partners = serde_json::Map::new();
    for p in &ctx.partners {
        let state = match p.tokens().health() {
            TokenHealth::Valid => "ok".to_owned(),
            TokenHealth::NotFetched => "ok (no token requested yet)".to_owned(),
            TokenHealth::Failed(why) => {
                ready = false;
                format!("failed: {why}")
            }
        };
        partners.insert(p.name().to_owned(), state.into());
    }
    let body = json!({
        "ready": ready,
        "database": database.err().unwrap_or_else(|| "ok".to_owned()),
        "partners": partners,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// A database error in a few words, without the connection URL.
fn database_error(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::PoolTimedOut => "no connection available in time",
        sqlx::Error::Io(_) => "connection failed",
        sqlx::Error::Tls(_) => "TLS failed",
        sqlx::Error::Database(_) => "the query was refused",
        sqlx::Error::PoolClosed => "the pool is closed",
        _ => "error",
    }
}

async fn metrics(State(Status { ctx, db }): State<Status>) -> impl IntoResponse {
    let body = gauges::scrape(&ctx, &db).await;
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body)
}
