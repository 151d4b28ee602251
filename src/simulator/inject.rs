//! How each injected fault looks on the wire.
//!
//! This module owns the responses of the fault kinds drawn in `faults.rs`: the 429 with its
//! `Retry-After` (and the host-wide block it starts), the 500 and 502 bodies, the broken-off
//! and half-written bodies, the maintenance page and the changed JSON pages. Everything is
//! built while the caller holds the lock; only a stall's wait, and a truncated body's pause
//! before it fails, happen after the handler has let go of it. The overlap and no-progress
//! pages are built by `pages.rs` and only counted here.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Sleep;
use tokio_util::io::ReaderStream;

use super::faults::{Endpoint, Fault, FaultKind};
use super::http::PAGE_SIZE_HEADER;
use super::pages::FeedPage;
use super::state::State;

/// How long a truncated body waits after its first half before it fails, so hyper has
/// flushed the headers and that half to the client before it aborts the connection.
const TRUNCATE_PAUSE: Duration = Duration::from_millis(20);

/// The body of the `html` fault (HTTP 200).
const MAINTENANCE_HTML: &str = "<html><head><title>Scheduled maintenance</title></head>\
<body><h1>Down for maintenance</h1><p>We'll be back shortly (simulated).</p></body></html>";

/// The body of the `502` fault.
const BAD_GATEWAY_HTML: &str = "<html><head><title>502 Bad Gateway</title></head>\
<body><center><h1>502 Bad Gateway</h1></center><hr><center>simulated gateway</center></body></html>";

/// A response ready to send, after `stall` if one was injected.
pub(crate) struct Injected {
    stall: Option<Duration>,
    response: Response,
}

impl Injected {
    fn now(response: Response) -> Injected {
        Injected {
            stall: None,
            response,
        }
    }

    /// Waits out the stall, if any, and hands over the response.
    pub(crate) async fn send(self) -> Response {
        if let Some(d) = self.stall {
            tokio::time::sleep(d).await;
        }
        self.response
    }
}

/// The answer to a data request whose normal answer is 200 with `body` (with the page-size
/// header when `page_size` is set): as is, or changed by `fault`, which is then counted. An
/// entry fault that finds no entry (an empty page) leaves the page alone and is not counted.
pub(crate) fn respond(
    st: &mut State,
    fault: Option<Fault>,
    endpoint: Endpoint,
    mut body: Value,
    page_size: Option<usize>,
) -> Injected {
    let Some(Fault { kind, detail }) = fault else {
        return Injected::now(ok_json(&body, page_size));
    };
    let config = st.faults.clone().unwrap_or_default();
    let mut stall = None;
    let response = match kind {
        FaultKind::TooManyRequests => {
            let secs = config.retry_after_secs();
            st.block_for(secs);
            too_many_requests(secs, config.retry_after_as_date)
        }
        FaultKind::ServerError => server_error(detail),
        FaultKind::BadGateway => html(StatusCode::BAD_GATEWAY, BAD_GATEWAY_HTML),
        FaultKind::Truncated => truncated(&body, page_size),
        FaultKind::InvalidJson => {
            let text = body.to_string();
            let half = text.as_bytes().get(..text.len() / 2).unwrap_or_default();
            let mut resp = ok_json(&Value::Null, page_size);
            *resp.body_mut() = Body::from(Bytes::copy_from_slice(half));
            resp
        }
        FaultKind::Html => html(StatusCode::OK, MAINTENANCE_HTML),
        FaultKind::WrongTypes => {
            wrong_types(&mut body, endpoint, detail);
            ok_json(&body, page_size)
        }
        FaultKind::MissingCursor => {
            if let Some(map) = body.as_object_mut() {
                map.remove("cursor");
            }
            ok_json(&body, page_size)
        }
        FaultKind::InvalidEntry => {
            let item = pick_item(&mut body, detail);
            if item.and_then(|i| i.remove("balanceAfter")).is_none() {
                return Injected::now(ok_json(&body, page_size));
            }
            ok_json(&body, page_size)
        }
        FaultKind::Overlap | FaultKind::NoProgress => ok_json(&body, page_size),
        FaultKind::Stall => {
            stall = Some(config.stall);
            ok_json(&body, page_size)
        }
    };
    st.count_fault(kind);
    Injected { stall, response }
}

/// [`respond`] for a feed page: without a fault its text is served as written, no JSON tree
/// built (a page holds up to 1000 entries); a fault changes the page's tree.
pub(crate) fn respond_page(
    st: &mut State,
    fault: Option<Fault>,
    page: FeedPage,
    page_size: usize,
) -> Injected {
    match fault {
        None => Injected::now(ok_text(page.to_text(), Some(page_size))),
        fault => respond(st, fault, Endpoint::Feed, page.into_json(), Some(page_size)),
    }
}

/// 200 `application/json` with `body`, plus the page-size header if given.
pub(crate) fn ok_json(body: &Value, page_size: Option<usize>) -> Response {
    ok_text(serde_json::to_vec(body).unwrap_or_default(), page_size)
}

/// [`ok_json`] with the body's JSON text.
fn ok_text(body: Vec<u8>, page_size: Option<usize>) -> Response {
    let mut resp = ([(CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(n) = page_size {
        resp.headers_mut()
            .insert(PAGE_SIZE_HEADER, HeaderValue::from(n));
    }
    resp
}

fn html(status: StatusCode, text: &'static str) -> Response {
    (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], text).into_response()
}

/// 429 as Azure API Management sends it, with `Retry-After` in seconds or as an HTTP-date.
fn too_many_requests(secs: u64, as_date: bool) -> Response {
    let retry_after = if as_date {
        http_date_after(secs)
    } else {
        secs.to_string()
    };
    let body = json!({
        "statusCode": 429,
        "message": format!("Rate limit is exceeded. Try again in {secs} seconds."),
    });
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(RETRY_AFTER, retry_after)],
        Json(body),
    )
        .into_response()
}

/// The IMF-fixdate of now + `secs`, rounded up to the next whole second so a client waiting
/// until that date waits at least `secs`.
fn http_date_after(secs: u64) -> String {
    let now = chrono::Utc::now();
    let whole = now.timestamp() + i64::from(now.timestamp_subsec_nanos() > 0);
    let at = whole.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX));
    chrono::DateTime::from_timestamp(at, 0)
        .unwrap_or(now)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// 500 with the Report API's documented error body and a uuid-like `contextId`.
fn server_error(detail: u64) -> Response {
    let mixed = detail.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (detail >> 29);
    let context_id = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        detail >> 32,
        (detail >> 16) & 0xffff,
        detail & 0xfff,
        0x8000 | ((mixed >> 48) & 0x3fff),
        mixed & 0xffff_ffff_ffff,
    );
    let body = json!({
        "errorCode": 10001,
        "errorMessage": "Unknown or undocumented error (simulated fault)",
        "contextId": context_id,
    });
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}

/// One of the page's items (chosen by `detail`), if it has any.
fn pick_item(body: &mut Value, detail: u64) -> Option<&mut serde_json::Map<String, Value>> {
    let items = body.get_mut("items")?.as_array_mut()?;
    let n = items.len() as u64;
    let index = usize::try_from(detail.checked_rem(n)?).ok()?;
    items.get_mut(index)?.as_object_mut()
}

/// `"items": "none"` on the ledger list; on feed and dates, by `detail`, an item's amount
/// as a decimal string (`"12.50"`) or, on an empty page or otherwise, `"tryLater": "no"`.
fn wrong_types(body: &mut Value, endpoint: Endpoint, detail: u64) {
    let Some(map) = body.as_object_mut() else {
        return;
    };
    if endpoint == Endpoint::LedgerList {
        map.insert("items".into(), "none".into());
        return;
    }
    if detail & 1 == 1 {
        if let Some(item) = pick_item(body, detail >> 1) {
            if let Some(minor) = item.get("amount").and_then(Value::as_i64) {
                let sign = if minor < 0 { "-" } else { "" };
                let abs = minor.unsigned_abs();
                let text = format!("{sign}{}.{:02}", abs / 100, abs % 100);
                item.insert("amount".into(), text.into());
                return;
            }
        }
    }
    if let Some(map) = body.as_object_mut() {
        map.insert("tryLater".into(), "no".into());
    }
}

/// 200 with the usual headers (including the full `Content-Length`) whose body stops half
/// way: the stream yields the first half, pauses, then fails, and hyper drops the connection.
fn truncated(body: &Value, page_size: Option<usize>) -> Response {
    let full = Bytes::from(body.to_string());
    let part = full.slice(..full.len() / 2);
    let reader = BrokenOff { part, pause: None };
    let mut resp = ok_json(&Value::Null, page_size);
    *resp.body_mut() = Body::from_stream(ReaderStream::new(reader));
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(full.len()));
    resp
}

/// A reader that hands out `part`, waits [`TRUNCATE_PAUSE`], then fails.
struct BrokenOff {
    part: Bytes,
    pause: Option<Pin<Box<Sleep>>>,
}

impl AsyncRead for BrokenOff {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.part.is_empty() && buf.remaining() > 0 {
            let n = self.part.len().min(buf.remaining());
            let chunk = self.part.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        let pause = self
            .pause
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(TRUNCATE_PAUSE)));
        ready!(pause.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "simulated fault: connection lost mid-body",
        )))
    }
}
