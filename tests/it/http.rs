//! The status endpoint (`/healthz`, `/readyz`, `/metrics`) served in-process on 127.0.0.1:0
//! for a sync context of the test's own. Each test injects its own `Metrics`, so the
//! counters it reads moved only by its own sync, whatever else runs in the process. The
//! endpoint's bounds (connections, timeouts, shutdown) are tested in `bounds`, its token in
//! `token`.

mod bounds;
mod token;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use vipps_ledger_sync::config::{Settings, Topic};
use vipps_ledger_sync::metrics::Metrics;
use vipps_ledger_sync::simulator::FaultConfig;
use vipps_ledger_sync::status_endpoint::READY_DB_TIMEOUT;
use vipps_ledger_sync::store::feed_health;
use vipps_ledger_sync::sync::{self, SyncContext};

use crate::common::{small, test_settings, TestApp, CLIENT_ID, CLIENT_SECRET};

/// The endpoint of one sync context, stopped when dropped.
struct Endpoint {
    ctx: Arc<SyncContext>,
    addr: SocketAddr,
    base: String,
    http: reqwest::Client,
    stop: CancellationToken,
    /// The serving task: it ends once the endpoint stopped and every connection is closed.
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Endpoint {
    async fn start(settings: Settings, pool: sqlx::PgPool) -> Endpoint {
        let metrics = Arc::new(Metrics::new());
        let ctx = Arc::new(SyncContext::with_pool(settings, pool, metrics).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let stop = CancellationToken::new();
        let served = tokio::spawn(vipps_ledger_sync::status_endpoint::serve(
            Arc::clone(&ctx),
            listener,
            stop.clone(),
        ));
        Endpoint {
            ctx,
            addr,
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            stop,
            served,
        }
    }

    async fn get(&self, path: &str) -> (u16, String, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, response.text().await.unwrap())
    }

    async fn scrape(&self) -> Scrape {
        let (status, content_type, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        Scrape::parse(&body)
    }

    async fn sync_once(&self) -> sync::SyncReport {
        sync::sync_once(&self.ctx, &CancellationToken::new()).await
    }
}

/// A parsed `/metrics` page: every sample by name and label set.
#[derive(Debug)]
struct Scrape {
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
}

impl Scrape {
    /// A strict parser of the OpenMetrics text format as served: every line is a `# TYPE`,
    /// `# HELP`, `# UNIT` comment, a sample `name{k="v",…} value` or `name value`, or the
    /// final `# EOF`; every sample belongs to a family declared by `# TYPE` before it (a
    /// counter's samples end in `_total`); values parse as f64; no sample appears twice.
    fn parse(text: &str) -> Scrape {
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut samples = BTreeMap::new();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.last(), Some(&"# EOF"), "ends with # EOF");
        assert!(text.ends_with('\n'));
        for (i, line) in lines.iter().enumerate() {
            let at = format!("line {}: {line:?}", i + 1);
            if *line == "# EOF" {
                assert_eq!(i, lines.len() - 1, "{at}: # EOF only at the end");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (kind, name) = (parts.next().unwrap(), parts.next().expect(&at));
                assert!(valid_name(name), "{at}: metric name");
                match kind {
                    "TYPE" => {
                        let t = parts.next().expect(&at);
                        assert!(
                            [
                                "counter",
                                "gauge",
                                "info",
                                "histogram",
                                "summary",
                                "unknown"
                            ]
                            .contains(&t),
                            "{at}: type"
                        );
                        assert!(
                            types.insert(name.to_owned(), t.to_owned()).is_none(),
                            "{at}: family declared twice"
                        );
                    }
                    "HELP" | "UNIT" => {}
                    _ => panic!("{at}: unknown comment"),
                }
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect(&at);
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{at}: value"));
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect(&at);
                    (name, parse_labels(inner, &at))
                }
            };
            assert!(valid_name(name), "{at}: name");
            let family = types
                .iter()
                .find(|(f, t)| match t.as_str() {
                    "counter" => name == format!("{f}_total") || name == format!("{f}_created"),
                    "info" => name == format!("{f}_info"),
                    _ => name == f.as_str(),
                })
                .unwrap_or_else(|| panic!("{at}: no # TYPE for this sample's family"));
            let _ = family;
            assert!(
                samples.insert((name.to_owned(), labels), value).is_none(),
                "{at}: sample repeated"
            );
        }
        Scrape { samples }
    }

    /// The sample `name` with exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples.get(&(name.to_owned(), labels)).copied()
    }

    /// The sample `name` with `labels`, 0 when absent (a counter never bumped).
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// Every sample of `name`: its labels and value.
    fn all(&self, name: &str) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, l), v)| (l, *v))
            .collect()
    }

    /// The sum of every sample of `name`.
    fn sum(&self, name: &str) -> f64 {
        self.all(name).iter().map(|(_, v)| v).sum()
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `k="v",k2="v2"` with `\\`, `\"` and `\n` escapes in values.
fn parse_labels(mut s: &str, at: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"").expect(at);
        assert!(valid_name(key), "{at}: label name {key:?}");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect(at) {
                (i, '"') => break i,
                (_, '\\') => match chars.next().expect(at).1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => panic!("{at}: bad escape \\{c}"),
                },
                (_, c) => value.push(c),
            }
        };
        assert!(
            labels.insert(key.to_owned(), value).is_none(),
            "{at}: label repeated"
        );
        s = &rest[end + 1..];
        if let Some(more) = s.strip_prefix(',') {
            s = more;
        } else {
            assert!(s.is_empty(), "{at}: junk after a label");
        }
    }
    labels
}

async fn stored(pool: &sqlx::PgPool, topic: &str) -> f64 {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM entries WHERE topic = $1")
        .bind(topic)
        .fetch_one(pool)
        .await
        .unwrap();
    n as f64
}

#[tokio::test]
async fn metrics_parse_and_their_counters_move_by_exactly_what_a_sync_did() {
    let app = TestApp::spawn(small()).await;
    let ep = Endpoint::start(app.settings.clone(), app.db.pool.clone()).await;
    let before = ep.scrape().await;
    assert_eq!(before.get("vls_up", &[]), Some(1.0));
    assert_eq!(before.get("vls_database_up", &[]), Some(1.0));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        before.get("vls_build_info", &[("version", version)]),
        Some(1.0)
    );
    assert_eq!(before.sum("vls_entries_ingested_total"), 0.0);
    assert_eq!(before.sum("vls_api_requests_total"), 0.0);
    assert_eq!(before.get("vls_entry_conflicts_total", &[]), Some(0.0));
    assert_eq!(
        before.get("vls_ledgers", &[("state", "caught_up")]),
        Some(0.0)
    );

    let report = ep.sync_once().await;
    assert!(report.success(), "{report}");
    let stats = app.sim.stats();
    let after = ep.scrape().await;
    for topic in ["funds", "fees"] {
        assert_eq!(
            after.counter("vls_entries_ingested_total", &[("topic", topic)]),
            stored(&app.db.pool, topic).await,
            "{topic}: the counter is the number of entries stored"
        );
    }
    assert_eq!(
        after.sum("vls_entries_ingested_total"),
        crate::common::expected_total(&app.sim) as f64
    );
    let pages: i64 = sqlx::query_scalar("SELECT sum(pages)::int8 FROM feed_cursors")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(after.sum("vls_pages_total"), pages as f64);
    assert_eq!(
        after.counter(
            "vls_api_requests_total",
            &[("endpoint", "feed"), ("status", "200")]
        ),
        stats.total_feed_requests() as f64,
        "every feed call the simulator saw, answered 200"
    );
    assert_eq!(
        after.counter(
            "vls_api_requests_total",
            &[("endpoint", "ledgers"), ("status", "200")]
        ),
        stats.ledger_list_requests as f64
    );
    assert_eq!(
        after.counter(
            "vls_api_requests_total",
            &[("endpoint", "token"), ("status", "200")]
        ),
        stats.token_requests as f64
    );
    assert_eq!(
        after.counter("vls_token_refreshes_total", &[("partner", "test-partner")]),
        1.0
    );
    assert_eq!(after.sum("vls_api_retries_total"), 0.0);

    // The gauges read from the database: 4 ledgers caught up, 8 feeds, none failing.
    assert_eq!(
        after.get("vls_ledgers", &[("state", "caught_up")]),
        Some(4.0)
    );
    for state in ["syncing", "failing", "blocked", "no_access"] {
        assert_eq!(after.get("vls_ledgers", &[("state", state)]), Some(0.0));
    }
    let lag = after.all("vls_feed_lag_seconds");
    assert_eq!(lag.len(), 8, "{lag:?}");
    assert!(lag.iter().all(|(_, v)| *v > 0.0), "{lag:?}");
    let failures = after.all("vls_feed_consecutive_failures");
    assert_eq!(failures.len(), 8);
    assert!(failures.iter().all(|(_, v)| *v == 0.0));
    let now = chrono::Utc::now().timestamp() as f64;
    let success = after.all("vls_feed_last_success_timestamp_seconds");
    assert_eq!(success.len(), 8);
    assert!(
        success.iter().all(|(_, v)| (now - v).abs() < 120.0),
        "{success:?}"
    );
    assert_eq!(
        after.get("vls_partner_up", &[("partner", "test-partner")]),
        Some(1.0)
    );

    // A day later: the counters move by what the second pass stored, and no more.
    app.sim.grow(1);
    let stored_before = after.sum("vls_entries_ingested_total");
    let feed_calls_before = stats.total_feed_requests();
    let report = ep.sync_once().await;
    assert!(report.success(), "{report}");
    let later = ep.scrape().await;
    assert!(report.inserted > 0);
    assert_eq!(
        later.sum("vls_entries_ingested_total") - stored_before,
        report.inserted as f64
    );
    assert_eq!(
        later.counter(
            "vls_api_requests_total",
            &[("endpoint", "feed"), ("status", "200")]
        ) - after.counter(
            "vls_api_requests_total",
            &[("endpoint", "feed"), ("status", "200")]
        ),
        (app.sim.stats().total_feed_requests() - feed_calls_before) as f64
    );
}

/// A TCP proxy in front of PostgreSQL that a test can cut (listener closed, every connection
/// dropped) and restore on the same port.
struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    up: CancellationToken,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = CancellationToken::new();
        tokio::spawn(Self::serve(listener, upstream, up.clone()));
        Proxy { addr, upstream, up }
    }

    async fn serve(listener: TcpListener, upstream: SocketAddr, up: CancellationToken) {
        loop {
            let (mut client, _) = tokio::select! {
                _ = up.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            let up = up.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    return;
                };
                tokio::select! {
                    _ = up.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                }
            });
        }
    }

    /// Closes the listener and drops every connection through it.
    fn cut(&self) {
        self.up.cancel();
    }

    /// Listens on the same port again.
    async fn restore(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.up = CancellationToken::new();
        tokio::spawn(Self::serve(listener, self.upstream, self.up.clone()));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.up.cancel();
    }
}

/// Polls `/readyz` until it answers `want`; the body of that answer.
async fn readyz_becomes(ep: &Endpoint, want: u16, within: Duration) -> String {
    let started = Instant::now();
    loop {
        let (status, _, body) = ep.get("/readyz").await;
        if status == want {
            return body;
        }
        assert!(
            started.elapsed() < within,
            "/readyz still {status} after {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `url` with its host and port replaced by `addr`.
fn through(url: &str, addr: SocketAddr) -> secrecy::SecretString {
    let mut url = url::Url::parse(url).unwrap();
    url.set_host(Some(&addr.ip().to_string())).unwrap();
    url.set_port(Some(addr.port())).unwrap();
    secrecy::SecretString::from(url.to_string())
}

#[tokio::test]
async fn readyz_and_metrics_see_the_database_while_a_pass_holds_every_pooled_connection() {
    let app = TestApp::spawn(small()).await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&app.db.url)
        .await
        .unwrap();
    let ep = Endpoint::start(app.settings.clone(), pool.clone()).await;
    assert!(ep.sync_once().await.success());
    // Every connection of the daemon's pool is busy (a long pass, a slow reconciliation).
    let held = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
    let started = Instant::now();
    let (status, _, body) = ep.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < READY_DB_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    let scrape = ep.scrape().await;
    assert_eq!(scrape.get("vls_database_up", &[]), Some(1.0));
    assert_eq!(
        scrape.get("vls_ledgers", &[("state", "caught_up")]),
        Some(4.0)
    );
    drop(held);
}

#[tokio::test]
async fn readyz_fails_while_the_database_is_unreachable_and_recovers_when_it_is_back() {
    let app = TestApp::spawn(small()).await;
    let direct = PgConnectOptions::from_str(&app.db.url).unwrap();
    let upstream: SocketAddr = tokio::net::lookup_host((direct.get_host(), direct.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let mut proxy = Proxy::start(upstream).await;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(1))
        .connect_with(direct.clone().host("127.0.0.1").port(proxy.addr.port()))
        .await
        .unwrap();
    // The endpoint's own pool goes through the proxy too.
    let mut settings = app.settings.clone();
    settings.database.url = through(&app.db.url, proxy.addr);
    let ep = Endpoint::start(settings, pool).await;

    let body = readyz_becomes(&ep, 200, Duration::from_secs(5)).await;
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["ready"], true);
    assert_eq!(doc["database"], "ok");

    proxy.cut();
    let started = Instant::now();
    let body = readyz_becomes(&ep, 503, Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["ready"], false, "{body}");
    assert_ne!(doc["database"], "ok", "{body}");
    assert!(
        !body.contains("postgres://"),
        "no connection URL in the body: {body}"
    );
    // The scrape still answers, without the database's gauges.
    let scrape = ep.scrape().await;
    assert_eq!(scrape.get("vls_database_up", &[]), Some(0.0));
    assert_eq!(scrape.get("vls_up", &[]), Some(1.0));
    assert!(scrape.all("vls_ledgers").is_empty());

    proxy.restore().await;
    let body = readyz_becomes(&ep, 200, Duration::from_secs(15)).await;
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["database"], "ok", "{body}");
    assert_eq!(
        ep.scrape().await.get("vls_database_up", &[]),
        Some(1.0),
        "the gauges are back"
    );
}

#[tokio::test]
async fn healthz_answers_ok_and_a_partner_whose_keys_fail_makes_readyz_fail_naming_it() {
    let app = TestApp::spawn(small()).await;
    let wrong_secret = "wrong-secret-8f2a91";
    let settings = test_settings(
        &app.base_url,
        &app.db.url,
        &[
            ("good-partner", CLIENT_ID, CLIENT_SECRET),
            ("bad-partner", CLIENT_ID, wrong_secret),
        ],
    );
    let ep = Endpoint::start(settings, app.db.pool.clone()).await;
    let (status, _, body) = ep.get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    // No token asked for yet: ready.
    let (status, _, body) = ep.get("/readyz").await;
    assert_eq!(status, 200, "{body}");

    let report = ep.sync_once().await;
    let failed: BTreeSet<&str> = report
        .failed_partners
        .iter()
        .map(|(p, _)| p.as_str())
        .collect();
    assert_eq!(failed, BTreeSet::from(["bad-partner"]), "{report}");

    let (status, _, body) = ep.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["ready"], false);
    assert_eq!(doc["database"], "ok");
    assert_eq!(doc["partners"]["good-partner"], "ok", "{body}");
    let bad = doc["partners"]["bad-partner"].as_str().unwrap();
    assert!(
        bad.starts_with("failed: ") && bad.contains("refused"),
        "{body}"
    );
    assert!(!body.contains(wrong_secret) && !body.contains(CLIENT_SECRET));

    let scrape = ep.scrape().await;
    assert_eq!(
        scrape.get("vls_partner_up", &[("partner", "bad-partner")]),
        Some(0.0)
    );
    assert_eq!(
        scrape.get("vls_partner_up", &[("partner", "good-partner")]),
        Some(1.0)
    );
    assert_eq!(
        scrape.counter("vls_token_failures_total", &[("partner", "bad-partner")]),
        1.0
    );
    assert_eq!(
        scrape.counter("vls_token_failures_total", &[("partner", "good-partner")]),
        0.0
    );
    let refused: f64 = scrape
        .all("vls_api_requests_total")
        .iter()
        .filter(|(l, _)| l["endpoint"] == "token" && l["status"].starts_with('4'))
        .map(|(_, v)| v)
        .sum();
    assert!(refused >= 1.0, "{:?}", scrape.all("vls_api_requests_total"));
}

#[tokio::test]
async fn a_failing_ledger_list_leaves_a_partner_up_and_refused_keys_take_it_down() {
    let app = TestApp::spawn(small()).await;
    let settings = test_settings(
        &app.base_url,
        &app.db.url,
        &[
            ("good-partner", CLIENT_ID, CLIENT_SECRET),
            ("bad-partner", CLIENT_ID, "wrong-secret-77c1"),
        ],
    );
    // The ledger list answers 500 on every attempt: the API is having a bad time.
    app.sim.fail_ledger_list_page(Some(1));
    let ep = Endpoint::start(settings.clone(), app.db.pool.clone()).await;
    let report = ep.sync_once().await;
    assert_eq!(report.failed_partners.len(), 2, "{report}");
    drop(ep);

    // A restarted daemon has nothing in memory: the database tells the two failures apart.
    let ep = Endpoint::start(settings.clone(), app.db.pool.clone()).await;
    let scrape = ep.scrape().await;
    assert_eq!(
        scrape.get("vls_partner_up", &[("partner", "good-partner")]),
        Some(1.0),
        "a 500 on the ledger list is not a key problem"
    );
    assert_eq!(
        scrape.get("vls_partner_up", &[("partner", "bad-partner")]),
        Some(0.0),
        "refused keys stay down across a restart"
    );
    let status = vipps_ledger_sync::tables::status_report(&app.db.pool, &settings)
        .await
        .unwrap();
    let text = vipps_ledger_sync::tables::render_status(&status);
    let line = |partner: &str| {
        text.lines()
            .find(|l| l.starts_with(partner))
            .unwrap_or_else(|| panic!("no {partner} line in:\n{text}"))
            .to_owned()
    };
    assert!(
        line("good-partner").contains("ok; listing failing since"),
        "{text}"
    );
    assert!(line("good-partner").contains("HTTP 500"), "{text}");
    assert!(line("bad-partner").contains("REFUSED since"), "{text}");

    // The list works again: the good partner's next listing clears its failure.
    app.sim.fail_ledger_list_page(None);
    ep.sync_once().await;
    let rows: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT partner, failed_at IS NOT NULL, keys_refused FROM partners ORDER BY 1",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("bad-partner".to_owned(), true, true),
            ("good-partner".to_owned(), false, false)
        ]
    );
}

#[tokio::test]
async fn failed_requests_retries_and_429s_are_counted_as_the_simulator_sent_them() {
    let app = TestApp::spawn(small()).await;
    app.sim.set_feed_page_size(10);
    app.sim.set_faults(Some(FaultConfig {
        seed: 11,
        rate_500: 0.08,
        rate_502: 0.05,
        rate_429: 0.03,
        retry_after: Duration::from_secs(1),
        ..FaultConfig::default()
    }));
    let ep = Endpoint::start(app.settings.clone(), app.db.pool.clone()).await;
    let report = ep.sync_once().await;
    assert!(report.success(), "{report}");
    app.assert_exact().await;
    let stats = app.sim.stats();
    let faults = |kind: &str| stats.faults_injected.get(kind).copied().unwrap_or(0) as f64;
    assert!(faults("500") + faults("502") >= 3.0, "{stats:?}");
    let scrape = ep.scrape().await;
    let by_status = |status: &str| -> f64 {
        scrape
            .all("vls_api_requests_total")
            .iter()
            .filter(|(l, _)| l["status"] == status)
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(by_status("500"), faults("500"));
    assert_eq!(by_status("502"), faults("502"));
    assert_eq!(by_status("429"), faults("429"));
    assert_eq!(
        scrape.get("vls_api_rate_limited_total", &[]),
        Some(faults("429"))
    );
    // The pass succeeded, so every failed attempt was tried again.
    assert_eq!(
        scrape.sum("vls_api_retries_total"),
        faults("500") + faults("502") + faults("429")
    );
    let feed_calls: f64 = scrape
        .all("vls_api_requests_total")
        .iter()
        .filter(|(l, _)| l["endpoint"] == "feed")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(feed_calls, stats.total_feed_requests() as f64);
    assert_eq!(
        scrape.sum("vls_entries_ingested_total"),
        crate::common::expected_total(&app.sim) as f64
    );
}

/// A config file for the real binary with `[http] listen`.
fn run_config(app: &TestApp, listen: &str) -> tempfile::NamedTempFile {
    crate::common::binary::config_file(app, &format!("[http]\nlisten = \"{listen}\""))
}

/// `run` of the real binary, stderr captured.
fn run_binary(config: &std::path::Path) -> std::process::Command {
    let mut cmd = crate::common::binary::command(&["--config", config.to_str().unwrap(), "run"]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    cmd
}

#[tokio::test]
async fn run_serves_the_endpoint_on_http_listen_and_stops_it_on_sigterm() {
    let app = TestApp::spawn(small()).await;
    // A free port: bound, read, released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = run_config(&app, &port.to_string());
    let mut child = run_binary(cfg.path()).spawn().unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    // The start-up pass syncs everything; then /metrics shows it.
    let total = crate::common::expected_total(&app.sim) as f64;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no synced /metrics (every entry, 4 ledgers caught up) within 30 s"
        );
        assert!(child.try_wait().unwrap().is_none(), "run exited early");
        if let Ok(r) = http.get(format!("{base}/metrics")).send().await {
            let scrape = Scrape::parse(&r.text().await.unwrap());
            // The last page's entries are counted when the page commits; the ledger turns
            // `caught_up` a moment later, when its feeds' cursors come back empty. Wait for
            // both rather than asserting on the scrape between them.
            let caught_up = scrape.get("vls_ledgers", &[("state", "caught_up")]);
            if scrape.sum("vls_entries_ingested_total") == total && caught_up == Some(4.0) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    crate::common::binary::sigterm(&child);
    let status = crate::common::binary::wait_exit(&mut child, Duration::from_secs(20))
        .await
        .expect("run did not stop");
    assert!(status.success(), "{status:?}");
    assert!(
        http.get(format!("{base}/healthz")).send().await.is_err(),
        "the endpoint stopped with the daemon"
    );
}

#[tokio::test]
async fn run_fails_at_start_naming_http_listen_when_the_port_is_taken() {
    let app = TestApp::spawn(small()).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = run_config(&app, &taken.local_addr().unwrap().to_string());
    let out = tokio::task::spawn_blocking(move || {
        let out = run_binary(cfg.path()).output().unwrap();
        drop(cfg);
        out
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("http.listen"), "{stderr}");
    drop(taken);
}

#[tokio::test]
async fn a_conflicting_redelivery_and_a_blocked_feed_show_in_the_metrics() {
    let app = TestApp::spawn(small()).await;
    let ep = Endpoint::start(app.settings.clone(), app.db.pool.clone()).await;
    assert!(ep.sync_once().await.success());
    let ledger = app.sim.ledger_ids()[0].clone();
    let first = ep.scrape().await;

    // The stored first entry differs from what the API serves (outside the entry key), and
    // the feed is blocked: one blocked ledger.
    sqlx::query(
        "UPDATE entries SET raw = raw || '{\"reference\": \"changed-in-the-database\"}'
         WHERE ledger_id = $1 AND topic = 'funds' AND seq = 1",
    )
    .bind(&ledger)
    .execute(&mut crate::common::behind_the_back(&app.db.pool).await)
    .await
    .unwrap();
    let lease = crate::common::test_lease(&app.db.pool, &ledger, Topic::Funds).await;
    feed_health::block(&app.db.pool, &ledger, Topic::Funds, "test", &lease)
        .await
        .unwrap();
    vipps_ledger_sync::store::leases::release_lease(&app.db.pool, &ledger, Topic::Funds, &lease)
        .await
        .unwrap();
    let blocked = ep.scrape().await;
    assert_eq!(
        blocked.get("vls_ledgers", &[("state", "blocked")]),
        Some(1.0)
    );
    assert_eq!(
        blocked.get("vls_ledgers", &[("state", "caught_up")]),
        Some(3.0)
    );

    // Read again from the start: nothing new is stored, the changed entry is a conflict.
    assert!(
        feed_health::reset_cursor(&app.db.pool, &ledger, Topic::Funds)
            .await
            .unwrap()
    );
    let report = ep.sync_once().await;
    assert!(report.success(), "{report}");
    assert_eq!((report.inserted, report.conflicts), (0, 1));
    let after = ep.scrape().await;
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM entry_conflicts")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(recorded, 1);
    assert_eq!(after.get("vls_entry_conflicts_total", &[]), Some(1.0));
    assert_eq!(
        after.sum("vls_entries_ingested_total"),
        first.sum("vls_entries_ingested_total"),
        "nothing stored twice"
    );
    assert!(after.sum("vls_pages_total") > first.sum("vls_pages_total"));
    assert_eq!(after.get("vls_ledgers", &[("state", "blocked")]), Some(0.0));
    assert_eq!(
        after.get("vls_ledgers", &[("state", "caught_up")]),
        Some(4.0)
    );
}
