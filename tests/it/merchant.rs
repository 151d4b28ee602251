//! Merchant keys (issue 19): a merchant's own keys read exactly its MSN's ledgers, with the
//! subscription key and MSN on every call; accounting keys never send either; a refused
//! primary subscription key falls over to the secondary; config errors name the key; no
//! subscription key in any log or error.

use std::collections::HashMap;
use std::io::Write as _;

use secrecy::SecretString;
use vipps_ledger_sync::config::{KeyKind, MerchantKeys, PartnerSettings, Settings};

use crate::common::binary::command;
use crate::common::{assert_exact_ledgers, small, TestApp, CLIENT_ID};

const MERCHANT_ID: &str = "merchant-client";
const MERCHANT_SECRET: &str = "merchant-secret-SENTINEL-5c1e";
const PRIMARY: &str = "SENTINEL-primary-subscription-key-0a9f";
const SECONDARY: &str = "SENTINEL-secondary-subscription-key-77d2";

/// A small data set in which some MSN settles into a ledger, and that MSN with its ledgers.
async fn app_with_a_merchant() -> (TestApp, String, Vec<String>) {
    let app = TestApp::spawn(small()).await;
    let (msn, ledgers) = app
        .sim
        .merchant_serial_numbers()
        .into_iter()
        .find(|(_, l)| !l.is_empty())
        .expect("some ledger has a sales unit api:<MSN>");
    assert!(
        ledgers.len() < app.sim.ledger_ids().len(),
        "the MSN does not reach every ledger"
    );
    app.sim
        .add_merchant(MERCHANT_ID, MERCHANT_SECRET, &msn, &[PRIMARY, SECONDARY]);
    (app, msn, ledgers)
}

fn merchant(msn: &str, secondary: bool) -> PartnerSettings {
    PartnerSettings {
        name: "own-shop".to_owned(),
        client_id: MERCHANT_ID.to_owned(),
        client_secret: SecretString::from(MERCHANT_SECRET),
        keys: KeyKind::Merchant(MerchantKeys {
            msn: msn.to_owned(),
            subscription_key: SecretString::from(PRIMARY),
            secondary_subscription_key: secondary.then(|| SecretString::from(SECONDARY)),
        }),
    }
}

/// Open grants as (partner, ledger), sorted.
async fn open_grants(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT partner, ledger_id FROM grants WHERE revoked_seen_at IS NULL ORDER BY 1, 2",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_merchant_credential_syncs_exactly_its_own_ledgers_sending_its_key_and_msn_on_every_call()
{
    let (mut app, msn, ledgers) = app_with_a_merchant().await;
    app.settings.partners = vec![merchant(&msn, false)];
    let report = app.sync_once().await;
    assert!(report.success(), "{report}");
    assert_eq!(report.ledgers, ledgers.len());
    // Exactly its ledgers, every entry, and nothing of any other ledger.
    assert_exact_ledgers(&app, &ledgers).await;
    let others: i64 = sqlx::query_scalar("SELECT count(*) FROM entries WHERE ledger_id <> ALL($1)")
        .bind(&ledgers)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(others, 0);
    // The merchant credential is recorded as the party that reads.
    let grants = open_grants(&app).await;
    let want: Vec<_> = ledgers
        .iter()
        .map(|l| ("own-shop".to_owned(), l.clone()))
        .collect();
    assert_eq!(grants, want);

    let stats = app.sim.stats();
    assert_eq!(stats.merchant_token_requests, 1, "one token for the pass");
    assert_eq!(stats.token_requests, 0, "never the MIAMI endpoint");
    assert_eq!(
        stats.merchant_requests,
        stats.ledger_list_requests + stats.total_feed_requests() + stats.dates_requests,
        "every data call made with the merchant's token"
    );
    assert!(stats.total_feed_requests() >= 2 * ledgers.len() as u64);
    assert_eq!(
        stats.merchant_headers_missing, 0,
        "subscription key and MSN on every call"
    );
    assert_eq!(stats.missing_system_headers, 0);
    assert_eq!(stats.subscription_key_refused, 0);
}

#[tokio::test]
async fn a_merchant_and_an_accounting_credential_in_one_configuration_each_see_their_own_ledgers() {
    let (mut app, msn, ledgers) = app_with_a_merchant().await;
    // The accounting partner holds every ledger but the merchant's.
    for l in &ledgers {
        app.sim.revoke(CLIENT_ID, l);
    }
    app.settings.partners.push(merchant(&msn, true));
    let report = app.sync_once().await;
    assert!(report.success(), "{report}");
    app.assert_exact().await;

    let all = app.sim.ledger_ids();
    let mut want: Vec<(String, String)> = all
        .iter()
        .filter(|l| !ledgers.contains(l))
        .map(|l| ("test-partner".to_owned(), l.clone()))
        .chain(ledgers.iter().map(|l| ("own-shop".to_owned(), l.clone())))
        .collect();
    want.sort();
    assert_eq!(open_grants(&app).await, want);

    let stats = app.sim.stats();
    assert_eq!(
        (stats.token_requests, stats.merchant_token_requests),
        (1, 1),
        "one token per credential, each from its own endpoint"
    );
    assert_eq!(
        stats.subscription_key_sent, 0,
        "accounting keys never send a subscription key"
    );
    assert_eq!(stats.merchant_headers_missing, 0);
    assert!(stats.merchant_requests > 0);
    assert_eq!(stats.missing_system_headers, 0);
}

#[tokio::test]
async fn a_refused_primary_subscription_key_falls_over_to_the_secondary() {
    let (mut app, msn, ledgers) = app_with_a_merchant().await;
    app.settings.partners = vec![merchant(&msn, true)];
    // Regenerated before the first token: the token endpoint refuses the primary.
    app.sim.regenerate_subscription_key(MERCHANT_ID, PRIMARY);
    let report = app.sync_once().await;
    assert!(report.success(), "{report}");
    assert_exact_ledgers(&app, &ledgers).await;
    let stats = app.sim.stats();
    assert_eq!(stats.subscription_key_refused, 1, "the primary, once");
    assert_eq!(stats.merchant_token_requests, 2);

    // Regenerated while a token obtained with it is still valid: the data call is refused,
    // the token refreshed with the other key, and the call made again with that one.
    let (app2, msn2, ledgers2) = app_with_a_merchant().await;
    let mut app2 = app2;
    app2.settings.partners = vec![merchant(&msn2, true)];
    let ctx = app2.context();
    let cancel = tokio_util::sync::CancellationToken::new();
    assert!(vipps_ledger_sync::sync::sync_once(&ctx, &cancel)
        .await
        .success());
    app2.sim.regenerate_subscription_key(MERCHANT_ID, PRIMARY);
    app2.sim.grow(1);
    app2.sim.reset_stats();
    let report = vipps_ledger_sync::sync::sync_once(&ctx, &cancel).await;
    assert!(report.success(), "{report}");
    assert!(report.inserted > 0);
    assert_exact_ledgers(&app2, &ledgers2).await;
    let stats = app2.sim.stats();
    assert!(stats.subscription_key_refused >= 2, "{stats:?}");
    assert_eq!(stats.merchant_headers_missing, 0);

    // Without a secondary, a refused primary fails the credential, and says so.
    let (mut app3, msn3, _) = app_with_a_merchant().await;
    app3.settings.partners = vec![merchant(&msn3, false)];
    app3.sim.regenerate_subscription_key(MERCHANT_ID, PRIMARY);
    let report = app3.sync_once().await;
    assert!(!report.success());
    let (partner, error) = &report.failed_partners[0];
    assert_eq!(partner, "own-shop");
    assert!(error.contains("refused the keys"), "{error}");
    assert!(
        !error.contains(PRIMARY) && !error.contains(MERCHANT_SECRET),
        "{error}"
    );
}

fn load(text: &str) -> Result<Settings, String> {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    Settings::load_with_env(Some(f.path()), HashMap::new()).map_err(|e| e.to_string())
}

#[test]
fn merchant_keys_are_checked_at_start_and_errors_name_the_key() {
    let base = "[[partners]]\nname = \"shop\"\nclient_id = \"id\"\nclient_secret = \"s\"\n";
    let cases = [
        (
            "kind = \"merchant\"\nsubscription_key = \"SENTINEL-k\"\n",
            "partners[0] (shop).msn: is missing",
        ),
        (
            "kind = \"merchant\"\nmsn = \"12a456\"\nsubscription_key = \"SENTINEL-k\"\n",
            "partners[0] (shop).msn: must be 4 to 10 digits",
        ),
        (
            "kind = \"merchant\"\nmsn = \"123456\"\n",
            "partners[0] (shop).subscription_key: is missing",
        ),
        (
            "kind = \"merchant\"\nmsn = \"123456\"\nsubscription_key = \"SENTINEL-k\"\nsubscription_key_file = \"/nonexistent\"\n",
            "partners[0] (shop).subscription_key: set either",
        ),
        (
            "kind = \"merchant\"\nmsn = \"123456\"\nsubscription_key = \"SENTINEL-k\"\nsecondary_subscription_key = \"SENTINEL k\"\n",
            "partners[0] (shop).secondary_subscription_key: must be printable",
        ),
        (
            "subscription_key = \"SENTINEL-k\"\n",
            "partners[0] (shop).subscription_key: belongs to merchant keys",
        ),
        ("msn = \"123456\"\n", "partners[0] (shop).msn: belongs to merchant keys"),
        ("kind = \"merchnat\"\n", "kind"),
    ];
    for (extra, want) in cases {
        let err = load(&format!("{base}{extra}")).unwrap_err();
        assert!(err.contains(want), "{extra}: {err}");
        assert!(
            !err.contains("SENTINEL"),
            "{extra}: the key is quoted: {err}"
        );
    }
    let err = load(
        "[[partners]]\nname = \"shop\"\nkind = \"merchant\"\nclient_id = \"id\"\nclient_secret = \"SENTINEL\\u0001\"\nmsn = \"123456\"\nsubscription_key = \"k\"\n",
    )
    .unwrap_err();
    assert!(
        err.contains("partners[0] (shop).client_secret: must not hold control characters"),
        "{err}"
    );
    assert!(!err.contains("SENTINEL"), "{err}");
    // A merchant's keys with the secondary in a file; both held as secrets.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secondary"), "SENTINEL-from-file\n").unwrap();
    let s = load(&format!(
        "{base}kind = \"merchant\"\nmsn = \" 123456 \"\nsubscription_key = \"SENTINEL-k\"\nsecondary_subscription_key_file = \"{}\"\n",
        dir.path().join("secondary").display()
    ))
    .unwrap();
    let p = &s.partners[0];
    assert_eq!(p.kind_name(), "merchant");
    let KeyKind::Merchant(m) = &p.keys else {
        panic!("merchant keys")
    };
    assert_eq!(m.msn, "123456");
    use secrecy::ExposeSecret as _;
    assert_eq!(
        m.secondary_subscription_key
            .as_ref()
            .unwrap()
            .expose_secret(),
        "SENTINEL-from-file"
    );
    assert!(!format!("{s:?}").contains("SENTINEL"), "Debug shows no key");
    // Accounting is the default kind.
    assert_eq!(load(base).unwrap().partners[0].kind_name(), "accounting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_subscription_key_in_any_log_or_error_even_at_trace_level() {
    let (app, msn, ledgers) = app_with_a_merchant().await;
    // The primary is refused, so the fallover is logged too.
    app.sim.regenerate_subscription_key(MERCHANT_ID, PRIMARY);
    let config = |secondary: &str| {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        write!(
            f,
            r#"
[database]
url = "{db}"
[api]
base_url = "{api}"
max_requests_per_second = 0
[retry]
base_backoff = "1ms"
max_backoff = "20ms"
[[partners]]
name = "own-shop"
kind = "merchant"
client_id = "{MERCHANT_ID}"
client_secret = "{MERCHANT_SECRET}"
msn = "{msn}"
subscription_key = "{PRIMARY}"
secondary_subscription_key = "{secondary}"
"#,
            db = app.db.url,
            api = app.base_url,
        )
        .unwrap();
        f
    };
    let mut outputs = Vec::new();
    for (secondary, ok) in [(SECONDARY, true), ("SENTINEL-wrong-secondary-3b", false)] {
        let cfg = config(secondary);
        let out = command(&["--config", cfg.path().to_str().unwrap(), "sync", "--once"])
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), ok, "{text}");
        assert!(
            text.contains("trying the secondary"),
            "the fallover is logged: {text}"
        );
        outputs.push(text);
    }
    assert_exact_ledgers(&app, &ledgers).await;
    // A config error with the keys in the file quotes none of them.
    let cfg = config("has a space SENTINEL");
    let out = command(&["--config", cfg.path().to_str().unwrap(), "sync", "--once"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    outputs.push(String::from_utf8_lossy(&out.stderr).into_owned());

    let mut needles = vec![PRIMARY, SECONDARY, MERCHANT_SECRET, "SENTINEL"];
    let tokens = app.sim.issued_tokens();
    needles.extend(tokens.iter().map(String::as_str));
    for output in &outputs {
        for needle in &needles {
            assert!(!output.contains(needle), "{needle:?} in:\n{output}");
        }
    }
}

#[test]
fn the_examples_merchant_table_loads_once_uncommented() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml"))
            .unwrap();
    let start = example
        .find("# [[partners]]")
        .expect("a commented merchant table");
    let table: String = example[start..]
        .lines()
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    assert!(table.contains("kind = \"merchant\""), "{table}");
    let credentials = tempfile::tempdir().unwrap();
    for name in [
        "webshop-client-secret",
        "webshop-subscription-key",
        "webshop-subscription-key-secondary",
    ] {
        std::fs::write(credentials.path().join(name), format!("value-of-{name}\n")).unwrap();
    }
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(table.as_bytes()).unwrap();
    let env = HashMap::from([(
        "CREDENTIALS_DIRECTORY".to_owned(),
        credentials.path().display().to_string(),
    )]);
    let s = Settings::load_with_env(Some(f.path()), env).unwrap();
    let KeyKind::Merchant(m) = &s.partners[0].keys else {
        panic!("merchant keys")
    };
    use secrecy::ExposeSecret as _;
    assert_eq!(m.msn, "123456");
    assert_eq!(
        m.secondary_subscription_key
            .as_ref()
            .unwrap()
            .expose_secret(),
        "value-of-webshop-subscription-key-secondary"
    );
}
