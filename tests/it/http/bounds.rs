//! The status endpoint stays bounded whatever clients do: connections that never send (or never
//! finish) their headers are closed after `http.header_read_timeout`, request heads are limited
//! in size and may not bring a body, at most `http.max_connections` are open at once without
//! locking out a probe, a slow request gets 503 after `http.request_timeout`, and a stop
//! closes everything by `sync.drain_deadline`, in process and through the real binary under
//! SIGTERM.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use vipps_ledger_sync::config::{HttpSettings, Settings};
use vipps_ledger_sync::status_endpoint::{MAX_HEADER_BYTES, READY_DB_TIMEOUT};

use super::{run_binary, through, Endpoint, Scrape};
use crate::common::{small, TestApp};

/// How fast `/healthz` must answer on a fresh connection while hundreds of half-open
/// connections are held. It takes a few milliseconds; the margin is for a loaded machine.
const HEALTHZ_BOUND: Duration = Duration::from_secs(1);

/// What a test allows beyond a timeout it waits for: scheduling and a loaded machine.
const MARGIN: Duration = Duration::from_millis(700);

/// `GET path` asking the server to close the connection after answering.
fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: status\r\nconnection: close\r\n\r\n")
}

/// The test's settings with `[http]` changed by `change`.
fn with_http(app: &TestApp, change: impl FnOnce(&mut HttpSettings)) -> Settings {
    let mut settings = app.settings.clone();
    change(&mut settings.http);
    settings
}

/// A database that accepts connections and never answers; keep the listener alive.
async fn black_hole() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// `n` connections that never finish a request: every other one sends nothing, the rest the
/// start of a request line.
async fn half_open(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 1 {
            stream.write_all(b"GET /metr").await.unwrap();
        }
        held.push(stream);
    }
    held
}

/// Reads until the server closes `stream`; what it sent, or `None` if it stayed open
/// `within`. A reset counts as closed.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| received)
}

/// For each of `streams`, whether it is still open (not closed within 300 ms).
async fn still_open(streams: &mut [TcpStream]) -> Vec<bool> {
    let checks = streams
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_millis(300)));
    join_all(checks).await.iter().map(Option::is_none).collect()
}

/// `request` on a new connection: the answer's status and body, or `None` when the server
/// closed the connection without answering.
async fn exchange(addr: SocketAddr, request: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // A refused connection may already be closed: the write may fail.
    let _ = stream.write_all(request.as_bytes()).await;
    let received = closed_within(&mut stream, Duration::from_secs(10))
        .await
        .expect("the server closes the connection");
    parse_response(&received)
}

fn parse_response(received: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(received);
    let status = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_owned()))
}

/// The slowest of five `/healthz` exchanges, each on a new connection.
async fn slowest_healthz(addr: SocketAddr) -> Duration {
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let answer = exchange(addr, &get("/healthz")).await;
        assert_eq!(answer, Some((200, "ok".to_owned())));
        slowest = slowest.max(started.elapsed());
    }
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_at_once_while_three_hundred_half_open_connections_fill_every_slot() {
    let app = TestApp::spawn(small()).await;
    let max = app.settings.http.max_connections;
    assert_eq!(max, 32, "the default");
    let ep = Endpoint::start(app.settings.clone(), app.db.pool.clone()).await;
    let mut held = half_open(ep.addr, 300).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let slowest = slowest_healthz(ep.addr).await;
    eprintln!("/healthz under 300 half-open connections ({max} slots): slowest of 5 {slowest:?}");
    assert!(slowest < HEALTHZ_BOUND, "{slowest:?}");

    // Never more than `max` open; each probe took the oldest idle connection's slot, so
    // the ones still open are the newest.
    let open = still_open(&mut held).await;
    let kept = open.iter().filter(|o| **o).count();
    assert!(kept <= max && kept >= max - 5, "{kept} of 300 still open");
    let first_kept = open.iter().position(|o| *o).unwrap();
    assert!(open[first_kept..].iter().all(|o| *o), "{open:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_read_timeout_closes_connections_that_never_finish_their_headers() {
    let app = TestApp::spawn(small()).await;
    let timeout = Duration::from_millis(300);
    let settings = with_http(&app, |h| h.header_read_timeout = timeout);
    let ep = Endpoint::start(settings, app.db.pool.clone()).await;

    let started = Instant::now();
    let mut silent = TcpStream::connect(ep.addr).await.unwrap();
    let mut partial = TcpStream::connect(ep.addr).await.unwrap();
    partial.write_all(b"GET /healthz HT").await.unwrap();
    // One header line every 100 ms: each byte in time, the whole never.
    let slow = TcpStream::connect(ep.addr).await.unwrap();
    let (mut slow_read, mut slow_write) = slow.into_split();
    tokio::spawn(async move {
        let _ = slow_write.write_all(b"GET /healthz HTTP/1.1\r\n").await;
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let line = format!("x-line-{i}: a\r\n");
            if slow_write.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut cut = Vec::new();
    for stream in [&mut silent, &mut partial] {
        let sent = closed_within(stream, Duration::from_secs(5)).await;
        assert_eq!(
            sent.as_deref().map(<[u8]>::len),
            Some(0),
            "closed, no answer"
        );
        cut.push(started.elapsed());
    }
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), slow_read.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0) | Err(_))), "{n:?}");
    cut.push(started.elapsed());

    // A complete request is answered; the connection, kept alive, is closed once it has
    // been idle for the timeout.
    let mut kept = TcpStream::connect(ep.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: status\r\n\r\n")
        .await
        .unwrap();
    let n = kept.read(&mut buf).await.unwrap();
    assert_eq!(parse_response(&buf[..n]).map(|r| r.0), Some(200));
    let answered = Instant::now();
    assert!(closed_within(&mut kept, Duration::from_secs(5))
        .await
        .is_some());
    cut.push(answered.elapsed());

    eprintln!("header_read_timeout {timeout:?}: silent, partial line, slow headers, idle kept-alive closed after {cut:?}");
    for took in cut {
        // The kept-alive connection's clock starts as its answer is written, a moment
        // before this test has read it.
        let early = Duration::from_millis(50);
        assert!(
            took >= timeout - early && took < timeout + MARGIN,
            "{took:?}"
        );
    }
}

#[tokio::test]
async fn request_heads_over_the_size_or_field_limit_get_431_and_requests_with_a_body_413() {
    let app = TestApp::spawn(small()).await;
    let ep = Endpoint::start(app.settings.clone(), app.db.pool.clone()).await;
    let head = |extra: &str| format!("GET /healthz HTTP/1.1\r\nhost: status\r\n{extra}\r\n");
    let big = format!("x-big: {}\r\n", "a".repeat(MAX_HEADER_BYTES));
    let many: String = (0..40).map(|i| format!("x-field-{i}: a\r\n")).collect();
    let fits = format!(
        "x-fits: {}\r\nconnection: close\r\n",
        "a".repeat(MAX_HEADER_BYTES / 2)
    );
    let body = "content-length: 5\r\n\r\nhello";
    let answers = [
        exchange(ep.addr, &head(&big)).await.map(|a| a.0),
        exchange(ep.addr, &head(&many)).await.map(|a| a.0),
        exchange(ep.addr, &head(&fits)).await.map(|a| a.0),
        exchange(
            ep.addr,
            &format!("POST /healthz HTTP/1.1\r\nhost: status\r\n{body}"),
        )
        .await
        .map(|a| a.0),
    ];
    assert_eq!(answers, [Some(431), Some(431), Some(200), Some(413)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_is_refused_only_while_every_connection_has_a_request_in_hand() {
    let app = TestApp::spawn(small()).await;
    let hole = black_hole().await;
    let request_timeout = Duration::from_secs(1);
    let mut settings = with_http(&app, |h| {
        h.max_connections = 2;
        h.request_timeout = request_timeout;
    });
    // /readyz waits for a database that never answers.
    settings.database.url = through(&app.db.url, hole.local_addr().unwrap());
    let ep = Endpoint::start(settings, app.db.pool.clone()).await;

    let started = Instant::now();
    let mut in_hand = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(ep.addr).await.unwrap();
        stream.write_all(get("/readyz").as_bytes()).await.unwrap();
        in_hand.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused_at = Instant::now();
    assert_eq!(exchange(ep.addr, &get("/healthz")).await, None, "refused");
    let refused_in = refused_at.elapsed();
    assert!(refused_in < MARGIN, "refused after {refused_in:?}");

    for stream in &mut in_hand {
        let received = closed_within(stream, Duration::from_secs(5)).await.unwrap();
        let (status, body) = parse_response(&received).expect("an answer");
        assert_eq!(status, 503);
        assert!(body.contains("http.request_timeout"), "{body}");
    }
    let answered_in = started.elapsed();
    eprintln!("newcomer refused in {refused_in:?}; requests in hand cut with 503 after {answered_in:?} (request_timeout {request_timeout:?})");
    assert!(answered_in >= request_timeout && answered_in < READY_DB_TIMEOUT);
    // Slots free again.
    assert_eq!(
        exchange(ep.addr, &get("/healthz")).await,
        Some((200, "ok".to_owned()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_closes_idle_connections_at_once_and_a_request_in_hand_by_the_drain_deadline() {
    let app = TestApp::spawn(small()).await;
    let hole = black_hole().await;
    let mut settings = with_http(&app, |h| h.request_timeout = Duration::from_secs(10));
    let drain = Duration::from_secs(1);
    settings.sync.drain_deadline = drain;
    // /readyz waits 2 s for a database that never answers: longer than the drain deadline.
    settings.database.url = through(&app.db.url, hole.local_addr().unwrap());
    let mut ep = Endpoint::start(settings, app.db.pool.clone()).await;
    let mut held = half_open(ep.addr, 20).await;
    let mut in_hand = TcpStream::connect(ep.addr).await.unwrap();
    in_hand.write_all(get("/readyz").as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    ep.stop.cancel();
    let stopped = Instant::now();
    let idle_closed = join_all(
        held.iter_mut()
            .map(|s| closed_within(s, Duration::from_secs(5))),
    )
    .await;
    let idle_in = stopped.elapsed();
    assert!(idle_closed.iter().all(Option::is_some));
    assert!(
        TcpStream::connect(ep.addr).await.is_err(),
        "no longer listening"
    );
    let served = tokio::time::timeout(Duration::from_secs(5), &mut ep.served).await;
    let drained_in = stopped.elapsed();
    assert!(matches!(served, Ok(Ok(Ok(())))), "{served:?}");
    let unanswered = closed_within(&mut in_hand, Duration::from_secs(1)).await;
    assert_eq!(unanswered, Some(Vec::new()), "cut without an answer");
    eprintln!("stop: 20 idle connections closed in {idle_in:?}; the endpoint ended after {drained_in:?} (drain_deadline {drain:?})");
    assert!(idle_in < Duration::from_millis(300), "{idle_in:?}");
    assert!(
        drained_in >= drain && drained_in < drain + MARGIN,
        "{drained_in:?}"
    );
}

/// Polls `/metrics` until the start-up pass has caught every ledger up (30 s at most).
async fn until_caught_up(http: &reqwest::Client, base: &str, child: &mut std::process::Child) {
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(30), "not caught up");
        assert!(child.try_wait().unwrap().is_none(), "run exited early");
        if let Ok(r) = http.get(format!("{base}/metrics")).send().await {
            let scrape = Scrape::parse(&r.text().await.unwrap());
            if scrape.get("vls_ledgers", &[("state", "caught_up")]) == Some(4.0) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_holding_three_hundred_half_open_connections_answers_healthz_and_exits_within_the_drain_deadline(
) {
    let app = TestApp::spawn(small()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Room for every connection, and a header timeout far beyond the test: only the stop
    // can close them, as in the report that 300 of them delayed an exit.
    let cfg = crate::common::binary::config_file(
        &app,
        &format!(
            "[http]\nlisten = \"{port}\"\nheader_read_timeout = \"60s\"\nmax_connections = 400"
        ),
    );
    let mut child = run_binary(cfg.path())
        .env("VLS_SYNC__DRAIN_DEADLINE", "2s")
        .spawn()
        .unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let http = reqwest::Client::new();
    until_caught_up(&http, &format!("http://{addr}"), &mut child).await;

    let mut held = half_open(addr, 300).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let slowest = slowest_healthz(addr).await;
    let open = still_open(&mut held).await;
    assert!(
        open.iter().all(|o| *o),
        "every half-open connection is held"
    );

    crate::common::binary::sigterm(&child);
    let signalled = Instant::now();
    let status = crate::common::binary::wait_exit(&mut child, Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    if status.is_none() {
        let _ = child.kill();
    }
    let stderr = crate::common::binary::stderr_of(&mut child);
    eprintln!("run, 300 half-open connections held: /healthz slowest of 5 {slowest:?}; SIGTERM -> exit in {took:?} (drain_deadline 2 s)");
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {stderr}");
    assert!(slowest < HEALTHZ_BOUND, "{slowest:?}");
    assert!(took < Duration::from_secs(2) + MARGIN, "{took:?}");
}
