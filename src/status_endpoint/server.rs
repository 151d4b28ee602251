//! The status endpoint's connections, each bounded whatever the client does: HTTP/1.1 only,
//! request headers within `http.header_read_timeout` and [`MAX_HEADER_BYTES`], no request
//! bodies, each request answered within `http.request_timeout`, each connection closed after
//! [`MAX_CONNECTION_AGE`], and at most `http.max_connections` at once (see `slots`). On stop
//! the listener closes, idle connections close at once, and requests in hand may finish within
//! `http.request_timeout` but never past `sync.drain_deadline`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::http1;
use hyper::service::{service_fn, Service as _};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::auth::BearerToken;
use super::slots::{Slot, Slots};

/// Largest request head (request line and headers), in bytes; larger gets 431. A probe or a
/// scrape sends a few hundred bytes; 8 KiB leaves room for a long token.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Most header fields in a request; more gets 431.
const MAX_HEADERS: usize = 32;

/// A connection's read buffer, in bytes (hyper's minimum is 8 KiB): with
/// `http.max_connections` it bounds what pipelined requests can make the endpoint hold.
const MAX_BUF_BYTES: usize = 16 * 1024;

/// After this long a connection is asked to close once its request in hand is answered (at
/// most `http.request_timeout` later); so a client that never stops sending requests, or never
/// reads its response, holds a connection for a bounded time.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);

/// The wait after a failed `accept()` (out of file descriptors, say) before the next one, so
/// the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(250);

/// The bounds of one endpoint, from `[http]` and `sync.drain_deadline`.
#[derive(Debug, Clone)]
pub(super) struct Limits {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub drain_deadline: Duration,
}

/// What every request passes through before the routes: the body check, the token, the
/// request timeout.
pub(super) struct Gate {
    pub router: Router,
    pub token: Option<BearerToken>,
    pub request_timeout: Duration,
}

/// Accepts connections on `listener` until `stop` fires, then drains them (see the module).
pub(super) async fn run(
    listener: TcpListener,
    gate: Gate,
    limits: Limits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let gate = Arc::new(gate);
    let slots = Slots::new(limits.max_connections);
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(_) = connections.join_next() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "status endpoint: cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        match slots.admit() {
            Some(slot) => {
                let (gate, limits, stop) = (Arc::clone(&gate), limits.clone(), stop.clone());
                connections.spawn(connection(stream, gate, slot, limits, stop));
            }
            // Dropped: closed at once. Every slot has a request in hand.
            None => tracing::debug!("status endpoint: every connection busy; one refused"),
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.drain_deadline, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "status endpoint: connections still open at sync.drain_deadline are dropped"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// `accept()` errors about one connection that went away before it was accepted.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted)
}

/// Serves one connection within its bounds; closing it (dropping it) when it is evicted, when
/// it is idle at `stop`, or when a request in hand outlives `request_timeout` after either
/// `stop` or [`MAX_CONNECTION_AGE`].
async fn connection(
    stream: TcpStream,
    gate: Arc<Gate>,
    slot: Slot,
    limits: Limits,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let state = slot.state();
    let service = service_fn(move |request: Request<Incoming>| {
        let (gate, state) = (Arc::clone(&gate), Arc::clone(&state));
        async move {
            let _busy = state.busy();
            Ok::<_, Infallible>(gate.answer(request).await)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_BUF_BYTES);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        () = slot.evicted() => return,
        () = stop.cancelled() => {
            if !slot.is_busy() {
                return;
            }
        }
        () = tokio::time::sleep(MAX_CONNECTION_AGE) => {}
    }
    // No further request on this connection: the one in hand is answered, then it closes.
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        _ = tokio::time::timeout(limits.request_timeout, connection) => {}
        () = slot.evicted() => {}
    }
}

impl Gate {
    async fn answer(&self, request: Request<Incoming>) -> Response<Body> {
        if !request.body().is_end_stream() {
            // Nothing here takes a body; it is not read, and the connection is not reused.
            let mut response = bare(StatusCode::PAYLOAD_TOO_LARGE);
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
        if let Some(token) = &self.token {
            if request.uri().path() != "/healthz" && !token.admits(request.headers()) {
                let mut response = bare(StatusCode::UNAUTHORIZED);
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
        }
        let routes = TowerToHyperService::new(self.router.clone());
        match tokio::time::timeout(self.request_timeout, routes.call(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(_) => {
                let mut response =
                    Response::new(Body::from("no answer within http.request_timeout\n"));
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                response
            }
        }
    }
}

/// A response with `status` and an empty body.
fn bare(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}
