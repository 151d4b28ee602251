//! Settings: layering (defaults, file, DATABASE_URL, VLS_*), and errors that name their key.

use std::collections::HashMap;
use std::io::Write as _;

use secrecy::ExposeSecret;
use vipps_ledger_sync::config::{Settings, Topic};

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load_err(text: &str) -> String {
    let f = file(text);
    Settings::load_with_env(Some(f.path()), HashMap::new())
        .unwrap_err()
        .to_string()
}

const PARTNER: &str = r#"
[[partners]]
name = "acme"
client_id = "id-1"
client_secret = "s3cr3t-value"
"#;

#[test]
fn the_built_in_defaults_load_without_any_file() {
    let s = Settings::load_with_env(None, HashMap::new()).unwrap();
    assert_eq!(s.api.base_url.as_str(), "https://api.vipps.no/");
    assert_eq!(
        s.api.token_endpoint().as_str(),
        "https://api.vipps.no/miami/v1/token"
    );
    assert_eq!(s.sync.topics, [Topic::Funds, Topic::Fees]);
    assert_eq!(s.sync.schedule, "0 17 * * * *");
    assert!(s.partners.is_empty());
    assert!(s
        .require_partners()
        .unwrap_err()
        .to_string()
        .contains("partners"));
}

#[test]
fn the_file_overrides_defaults_and_the_environment_overrides_the_file() {
    let f = file(&format!(
        "[sync]\nschedule = \"0 23 * * * *\"\nconcurrency = 2\n{PARTNER}"
    ));
    let s = Settings::load_with_env(
        Some(f.path()),
        env(&[("VLS_SYNC__CONCURRENCY", "7"), ("VLS_SYNC__TOPICS", "fees")]),
    )
    .unwrap();
    assert_eq!(s.sync.schedule, "0 23 * * * *", "file over defaults");
    assert_eq!(s.sync.concurrency, 7, "environment over file");
    assert_eq!(s.sync.topics, [Topic::Fees]);
    assert_eq!(s.partners[0].name, "acme");
    assert_eq!(s.partners[0].client_secret.expose_secret(), "s3cr3t-value");
}

#[test]
fn database_url_is_honoured_and_vls_database_url_wins_over_it() {
    let s = Settings::load_with_env(None, env(&[("DATABASE_URL", "postgres://a@127.0.0.1/x")]))
        .unwrap();
    assert_eq!(s.database.url.expose_secret(), "postgres://a@127.0.0.1/x");
    let s = Settings::load_with_env(
        None,
        env(&[
            ("DATABASE_URL", "postgres://a@127.0.0.1/x"),
            ("VLS_DATABASE__URL", "postgres://b@127.0.0.1/y"),
        ]),
    )
    .unwrap();
    assert_eq!(s.database.url.expose_secret(), "postgres://b@127.0.0.1/y");
}

#[test]
fn an_unknown_key_is_an_error_naming_it() {
    let err = load_err("[sync]\nschedul = \"0 17 * * * *\"\n");
    assert!(err.contains("schedul"), "{err}");
    let err = load_err("[databse]\nurl = \"postgres://x\"\n");
    assert!(err.contains("databse"), "{err}");
    let err = Settings::load_with_env(None, env(&[("VLS_SYNC__CONCURENCY", "3")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("concurency"), "{err}");
}

#[test]
fn a_missing_client_id_is_an_error_naming_the_key() {
    let err = load_err("[[partners]]\nname = \"acme\"\nclient_secret = \"x\"\n");
    assert!(err.contains("partners[0] (acme).client_id"), "{err}");
}

#[test]
fn a_missing_secret_or_two_secrets_are_errors() {
    let err = load_err("[[partners]]\nname = \"acme\"\nclient_id = \"x\"\n");
    assert!(err.contains("client_secret"), "{err}");
    let err = load_err(
        "[[partners]]\nname = \"acme\"\nclient_id = \"x\"\nclient_secret = \"y\"\nclient_secret_file = \"/nope\"\n",
    );
    assert!(err.contains("not both"), "{err}");
}

#[test]
fn the_secret_can_come_from_a_file_and_a_missing_file_is_named() {
    let secret = file("from-a-file\n");
    let f = file(&format!(
        "[[partners]]\nname = \"acme\"\nclient_id = \"x\"\nclient_secret_file = {:?}\n",
        secret.path()
    ));
    let s = Settings::load_with_env(Some(f.path()), HashMap::new()).unwrap();
    assert_eq!(s.partners[0].client_secret.expose_secret(), "from-a-file");
    let err = load_err("[[partners]]\nname = \"acme\"\nclient_id = \"x\"\nclient_secret_file = \"/no/such/file\"\n");
    assert!(
        err.contains("partners[0] (acme).client_secret_file") && err.contains("/no/such/file"),
        "{err}"
    );
}

#[test]
fn plain_http_is_refused_except_for_loopback_hosts() {
    let err = load_err("[api]\nbase_url = \"http://api.vipps.no\"\n");
    assert!(
        err.contains("api.base_url") && err.contains("loopback"),
        "{err}"
    );
    let err = load_err("[api]\ntoken_url = \"http://example.com/token\"\n");
    assert!(err.contains("api.token_url"), "{err}");
    for ok in [
        "http://127.0.0.1:8400",
        "http://localhost:1",
        "http://[::1]:8",
    ] {
        let f = file(&format!("[api]\nbase_url = \"{ok}\"\n"));
        Settings::load_with_env(Some(f.path()), HashMap::new()).unwrap();
    }
}

#[test]
fn a_bad_cron_expression_is_an_error_naming_the_key() {
    let err = load_err("[sync]\nschedule = \"every hour\"\n");
    assert!(err.contains("sync.schedule"), "{err}");
    let err = load_err("[sync]\nschedule = \"17 * * * *\"\n");
    assert!(
        err.contains("sync.schedule"),
        "five fields (no seconds) are refused: {err}"
    );
}

#[test]
fn bad_values_are_errors_naming_the_key() {
    assert!(load_err("[sync]\ntopics = [\"payouts\"]\n").contains("payouts"));
    assert!(load_err("[sync]\nconcurrency = 0\n").contains("sync.concurrency"));
    assert!(load_err("[api]\nrequest_timeout = \"soon\"\n").contains("request_timeout"));
    assert!(
        load_err("[api]\nsystem_name = \"a-name-that-is-far-too-long-for-vipps\"\n")
            .contains("api.system_name")
    );
    let missing =
        Settings::load_with_env(Some(std::path::Path::new("/no/such.toml")), HashMap::new())
            .unwrap_err()
            .to_string();
    assert!(missing.contains("/no/such.toml"), "{missing}");
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let f = file(&format!(
        "[database]\nurl = \"postgres://u:db-password-77@127.0.0.1/x\"\n{PARTNER}"
    ));
    let s = Settings::load_with_env(Some(f.path()), HashMap::new()).unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains("s3cr3t-value"), "{debug}");
    assert!(!debug.contains("db-password-77"), "{debug}");
}

#[test]
fn a_remote_database_without_certificate_verification_is_refused_naming_the_key() {
    for url in [
        "postgres://u@db.example.com/x",
        "postgres://u@db.example.com/x?sslmode=require",
        "postgres://u@10.0.0.5:5432/x?sslmode=prefer",
        "postgres://u@db.example.com/x?sslmode=disable",
    ] {
        let err = Settings::load_with_env(None, env(&[("DATABASE_URL", url)]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("database.url") && err.contains("sslmode=verify-full"),
            "{url}: {err}"
        );
        assert!(err.contains("sslrootcert"), "{err}");
    }
    for url in [
        "postgres://u@db.example.com/x?sslmode=verify-full",
        "postgres://u@db.example.com/x?sslmode=verify-ca&sslrootcert=/etc/ssl/ca.pem",
        "postgres://u@127.0.0.1/x",
        "postgres://u@localhost:5433/x",
        "postgres://u@[::1]/x",
        "postgres:///x?user=u&host=/var/run/postgresql",
    ] {
        Settings::load_with_env(None, env(&[("DATABASE_URL", url)]))
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

/// Stands in for a secret in the configuration: no message may show it.
const SENTINEL: &str = "Zq9SENTINELx7";

#[test]
fn no_configuration_error_shows_a_secret() {
    let partner = |secret: &str| {
        format!("[[partners]]\nname = \"a\"\nclient_id = \"i\"\nclient_secret = {secret}\n")
    };
    let cases = [
        // Not TOML: the `config` crate would quote the line.
        (partner(&format!("\"{SENTINEL}")), "line 4, column"),
        (
            format!("[[partners]]\nname = \"a\"\nclient_secret \"{SENTINEL}\"\n"),
            "line 3, column",
        ),
        (partner(&format!("\"{SENTINEL}\\q\"")), "line 4, column"),
        (
            format!("{}client_secret = \"{SENTINEL}\"\n", partner(&format!("\"{SENTINEL}\""))),
            "line 5, column",
        ),
        (partner(SENTINEL), "line 4, column"),
        (partner(&format!("'''{SENTINEL}")), "line 5, column 1"),
        // TOML, but a value in the wrong place.
        (partner(&format!("[\"{SENTINEL}\"]")), "client_secret"),
        (
            format!("[database]\nmax_connections = \"{SENTINEL}\"\n"),
            "database.max_connections",
        ),
        (
            format!("[sync]\ndrain_deadline = \"{SENTINEL}\"\n"),
            "drain_deadline",
        ),
        // URLs with a password.
        (
            format!("[database]\nurl = \"postgres://u:{SENTINEL}@db.example.com/x\"\n"),
            "database.url",
        ),
        (
            format!("[database]\nurl = \"postgres://u:{SENTINEL}@db.example.com:x/x\"\n"),
            "database.url",
        ),
        (
            format!("[api]\nbase_url = \"https://u:{SENTINEL}@api.example.com\"\n"),
            "api.base_url",
        ),
        (
            format!("[api]\nbase_url = \"http://u:{SENTINEL}@api.example.com\"\n"),
            "api.base_url",
        ),
        (
            format!("[api]\nbase_url = \"http//u:{SENTINEL}@api.example.com\"\n"),
            "base_url",
        ),
        (
            format!(
                "[[exporters]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"http://u:{SENTINEL}@h.example.com/x?token={SENTINEL}\"\nsecret = \"0123456789abcdef0\"\n"
            ),
            "exporters[0] (w).url",
        ),
        (
            format!(
                "[[exporters]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"https://u:{SENTINEL}@[h/x\"\nsecret = \"0123456789abcdef0\"\n"
            ),
            "exporters[0] (w).url",
        ),
    ];
    for (text, names) in cases {
        let err = load_err(&text);
        assert!(!err.contains(SENTINEL), "{text}\n=> {err}");
        assert!(
            err.contains(names),
            "{text}\n=> {err} (should name {names})"
        );
    }
    // Through the environment too.
    let err = Settings::load_with_env(
        None,
        env(&[(
            "VLS_DATABASE__URL",
            &format!("postgres://u:{SENTINEL}@db.example.com/x"),
        )]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        !err.contains(SENTINEL) && err.contains("database.url"),
        "{err}"
    );
}

#[test]
fn settings_print_no_secret_in_debug() {
    let f = file(&format!(
        "[database]\nurl = \"postgres://u:{SENTINEL}@127.0.0.1/x\"\n{PARTNER}"
    ));
    let s = Settings::load_with_env(Some(f.path()), HashMap::new()).unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains(SENTINEL), "{debug}");
    assert!(!debug.contains("s3cr3t-value"), "{debug}");
}
