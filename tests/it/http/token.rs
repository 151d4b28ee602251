//! The status endpoint's bearer token (`http.token` / `http.token_file`): `/readyz` and
//! `/metrics` answer only the right one, `/healthz` stays open, the token never shows in logs,
//! `status --json` or `Debug` output; and the `[http]` settings fail at start naming their key.

use std::collections::HashMap;
use std::io::Read as _;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;
use vipps_ledger_sync::config::Settings;

use super::{run_binary, Endpoint, Scrape};
use crate::common::{small, TestApp};
use crate::lifecycle::Captured;

/// The token the tests configure; looked for in every output.
const TOKEN: &str = "SENTINEL-status-token-5d1e9a77";
/// A wrong guess sharing most of it.
const WRONG: &str = "SENTINEL-status-token-5d1e9a78";

/// A GET of `path` with `authorization` (if any): the status, `WWW-Authenticate` and body.
async fn get(ep: &Endpoint, path: &str, authorization: Option<&str>) -> (u16, String, String) {
    let mut request = ep.http.get(format!("{}{path}", ep.base));
    if let Some(value) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, value);
    }
    let response = request.send().await.unwrap();
    let challenge = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        response.status().as_u16(),
        challenge,
        response.text().await.unwrap(),
    )
}

#[tokio::test]
async fn with_a_token_readyz_and_metrics_answer_only_the_right_bearer_and_healthz_stays_open() {
    let app = TestApp::spawn(small()).await;
    let mut settings = app.settings.clone();
    settings.http.token = Some(SecretString::from(TOKEN));
    let ep = Endpoint::start(settings, app.db.pool.clone()).await;
    let right = format!("Bearer {TOKEN}");
    let refused = (401, "Bearer".to_owned(), String::new());

    assert_eq!(
        get(&ep, "/healthz", None).await,
        (200, String::new(), "ok".to_owned())
    );
    for path in ["/metrics", "/readyz", "/no-such-path"] {
        for wrong in [
            None,
            Some(format!("Bearer {WRONG}")),
            Some(format!("Basic {TOKEN}")),
            Some(TOKEN.to_owned()),
            Some("Bearer ".to_owned()),
        ] {
            let answer = get(&ep, path, wrong.as_deref()).await;
            assert_eq!(answer, refused, "{path} with {wrong:?}: the same bare 401");
        }
    }
    let (status, _, body) = get(&ep, "/metrics", Some(&right)).await;
    assert_eq!(status, 200);
    assert_eq!(Scrape::parse(&body).get("vls_up", &[]), Some(1.0));
    let (status, _, body) = get(&ep, "/readyz", Some(&format!("bearer {TOKEN}"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(&ep, "/no-such-path", Some(&right)).await.0, 404);

    // No path takes a body, token or not.
    let response = ep
        .http
        .post(format!("{}/healthz", ep.base))
        .body("x".repeat(100))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
}

#[test]
fn http_settings_out_of_bounds_fail_at_start_naming_their_key_and_never_quoting_the_token() {
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(credentials.path().join("short-token"), "SENTINEL-short\n").unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("HEADER_READ_TIMEOUT", "0s")], "http.header_read_timeout"),
        (&[("HEADER_READ_TIMEOUT", "2m")], "http.header_read_timeout"),
        (&[("REQUEST_TIMEOUT", "1s")], "http.request_timeout"),
        (&[("REQUEST_TIMEOUT", "soon")], "http.request_timeout"),
        (&[("MAX_CONNECTIONS", "0")], "http.max_connections"),
        (&[("MAX_CONNECTIONS", "513")], "http.max_connections"),
        (&[("TOKEN", "SENTINEL-short")], "http.token"),
        (&[("TOKEN", "SENTINEL with spaces in it")], "http.token"),
        (&[("TOKEN", "")], "http.token"),
        (
            &[("TOKEN", TOKEN), ("TOKEN_FILE", "short-token")],
            "http.token",
        ),
        (&[("TOKEN_FILE", "short-token")], "http.token_file"),
        (&[("TOKEN_FILE", "no-such-credential")], "http.token_file"),
        (&[("TOKN", TOKEN)], "tokn"),
    ];
    for (vars, key) in cases {
        let mut env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (format!("VLS_HTTP__{k}"), (*v).to_owned()))
            .collect();
        env.insert(
            "CREDENTIALS_DIRECTORY".to_owned(),
            credentials.path().to_str().unwrap().to_owned(),
        );
        let err = Settings::load_with_env(None, env).unwrap_err().to_string();
        assert!(err.contains(key), "{vars:?} → {err} (expected {key})");
        assert!(!err.contains("SENTINEL"), "{vars:?} → {err}");
    }
}

#[test]
fn a_token_from_a_credential_is_read_without_its_newline_and_never_shown_by_debug() {
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(
        credentials.path().join("status-token"),
        format!("{TOKEN}\n"),
    )
    .unwrap();
    let env = HashMap::from([
        ("VLS_HTTP__TOKEN_FILE".to_owned(), "status-token".to_owned()),
        (
            "CREDENTIALS_DIRECTORY".to_owned(),
            credentials.path().to_str().unwrap().to_owned(),
        ),
    ]);
    let settings = Settings::load_with_env(None, env).unwrap();
    let token = settings.http.token.as_ref().expect("a token");
    assert_eq!(token.expose_secret(), TOKEN);
    let debug = format!("{settings:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    // The defaults: no token.
    let defaults = Settings::load_with_env(None, HashMap::new()).unwrap();
    assert!(defaults.http.token.is_none());
}

/// The log lines `start` writes for `listen`, with or without a token.
async fn start_logs(app: &TestApp, listen: &str, token: Option<&str>) -> String {
    let mut settings = app.settings.clone();
    settings.http.listen = Some(listen.parse().unwrap());
    settings.http.token = token.map(SecretString::from);
    let ctx = std::sync::Arc::new(
        vipps_ledger_sync::sync::SyncContext::with_pool(
            settings,
            app.db.pool.clone(),
            Default::default(),
        )
        .unwrap(),
    );
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    let stop = CancellationToken::new();
    let started = {
        let _guard = tracing::subscriber::set_default(subscriber);
        vipps_ledger_sync::status_endpoint::start(&ctx, &stop)
            .await
            .unwrap()
    };
    stop.cancel();
    let (_, task) = started.expect("listening");
    task.await.unwrap();
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    text
}

#[tokio::test]
async fn a_listener_beyond_loopback_without_a_token_is_warned_about_at_start() {
    let app = TestApp::spawn(small()).await;
    let open = start_logs(&app, "0.0.0.0:0", None).await;
    assert!(
        open.contains("WARN") && open.contains("http.token") && open.contains("/metrics"),
        "{open}"
    );
    for (listen, token) in [("0.0.0.0:0", Some(TOKEN)), ("127.0.0.1:0", None)] {
        let logs = start_logs(&app, listen, token).await;
        assert!(
            !logs.contains("WARN") && logs.contains("INFO"),
            "{listen}: {logs}"
        );
        assert!(!logs.contains(TOKEN), "{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_a_token_never_writes_it_to_its_log_or_to_status_json() {
    let app = TestApp::spawn(small()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = crate::common::binary::config_file(
        &app,
        &format!("[http]\nlisten = \"{port}\"\ntoken = \"{TOKEN}\""),
    );
    let mut child = run_binary(cfg.path())
        .env("RUST_LOG", "debug")
        .spawn()
        .unwrap();
    // Debug logs outgrow a pipe's buffer: read them as they come.
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    });
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(30), "never ready");
        let ready = http
            .get(format!("{base}/readyz"))
            .bearer_auth(TOKEN)
            .send()
            .await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (token, want) in [(TOKEN, 200), (WRONG, 401)] {
        let r = http
            .get(format!("{base}/metrics"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want);
    }
    crate::common::binary::sigterm(&child);
    let status = crate::common::binary::wait_exit(&mut child, Duration::from_secs(20)).await;
    let log = reader.join().unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {log}");
    assert!(log.contains("DEBUG"), "debug lines were written");
    assert!(log.contains("with the bearer token"), "{log}");
    assert!(
        !log.contains(TOKEN) && !log.contains(WRONG),
        "the token in the log"
    );

    let out = crate::common::binary::command(&[
        "--config",
        cfg.path().to_str().unwrap(),
        "status",
        "--json",
    ])
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("\"partners\""), "{stdout}");
    assert!(!stdout.contains(TOKEN), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(TOKEN));
}
