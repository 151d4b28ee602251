//! Layered settings: the built-in defaults (`config/default.toml`, compiled in), then the file
//! given with `--config`, then `DATABASE_URL`, then `VLS_*` environment variables. Deserialized
//! once into typed `*Settings` that reject unknown keys, then validated across fields so that
//! every mistake fails at start with a message naming its key.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod checks;
mod exporters;
mod http;
mod partners;
use checks::{
    check_database_transport, check_url, describe, inline_or_file, read_credential, syntax_error,
};
pub use checks::{parse_cron, redact_url, scrub, without_userinfo};
pub use exporters::{
    Accounts, Booking, CsvFormulas, ExporterKind, ExporterSettings, ExporterTarget, FeesInvoiced,
    Format, WebhookUrl,
};
pub use http::{HttpSettings, MAX_CONNECTIONS_LIMIT, MIN_TOKEN_LEN};
use partners::{resolve_partners, RawPartner};
pub use partners::{KeyKind, MerchantKeys, PartnerSettings};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

/// The built-in defaults, documented key by key.
const DEFAULTS: &str = include_str!("../../config/default.toml");

/// Prefix of the environment variables that override settings (`VLS_SYNC__SCHEDULE`).
pub const ENV_PREFIX: &str = "VLS";

/// Longest value Vipps accepts in a `Vipps-System-*` header.
const MAX_SYSTEM_HEADER_LEN: usize = 30;

/// A configuration problem, always naming the key (or file) it is about.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn key(key: &str, message: impl fmt::Display) -> Self {
        Self(format!("{key}: {message}"))
    }
}

/// Everything the daemon is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub api: ApiSettings,
    pub retry: RetrySettings,
    pub limits: LimitsSettings,
    pub partners: Vec<PartnerSettings>,
    pub sync: SyncSettings,
    pub log: LogSettings,
    pub http: HttpSettings,
    /// `[[exporters]]`, in the order written.
    pub exporters: Vec<ExporterSettings>,
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Connection URL; may carry a password, so it is a secret.
    pub url: SecretString,
    /// A file holding the URL instead (a systemd credential); read at start, then `None`.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Pool size.
    pub max_connections: u32,
    /// Wait for a pooled connection before giving up.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

/// `[api]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    pub base_url: Url,
    /// Empty in the file means `{base_url}/miami/v1/token`; always resolved after loading.
    #[serde(deserialize_with = "empty_as_none")]
    pub token_url: Option<Url>,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub token_refresh_margin: Duration,
    /// Requests per second, all together; 0 = unlimited.
    pub max_requests_per_second: u32,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    pub system_name: String,
    pub system_version: String,
    pub plugin_name: String,
    pub plugin_version: String,
}

impl ApiSettings {
    /// The token endpoint: `api.token_url`, or `{base_url}/miami/v1/token`.
    pub fn token_endpoint(&self) -> Url {
        self.token_url
            .clone()
            .unwrap_or_else(|| join(&self.base_url, "miami/v1/token"))
    }
}

/// Joins a relative path onto a base URL, keeping any path prefix the base has.
pub fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let prefix = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{prefix}/{path}"));
    url
}

/// `[retry]`: the one retry policy for every request to the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub base_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

/// `[limits]`: bounds on what the API may send (config/default.toml says why each is what it
/// is). Breaking one fails the request for this pass, never the process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSettings {
    /// Longest response body read, in bytes.
    pub max_body_bytes: u64,
    /// Longest cursor accepted, in bytes.
    pub max_cursor_bytes: usize,
    /// Longest `Retry-After` obeyed; a longer one fails the request for this pass.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// Pages one feed may take in one pass.
    pub max_pages_per_feed: u64,
    /// Pages one ledger listing may take.
    pub max_pages_per_listing: u64,
    /// Consecutive empty feed pages without `tryLater` before the feed is failed.
    pub max_empty_pages: u32,
    /// Bytes of one ledger date's daily report, all pages together.
    pub max_report_bytes_per_date: u64,
    /// Invalid items of one ledger listing before it is given up.
    pub max_invalid_ledgers: usize,
}

/// A feed of a ledger: what the account it mirrors holds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Topic {
    /// What Vipps MobilePay owes the merchant.
    Funds,
    /// What the merchant owes Vipps MobilePay.
    Fees,
}

impl Topic {
    pub const ALL: [Topic; 2] = [Topic::Funds, Topic::Fees];

    /// The name used in URLs and in the `topic` columns.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Funds => "funds",
            Topic::Fees => "fees",
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[sync]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSettings {
    pub topics: Vec<Topic>,
    /// Cron with seconds, validated with the scheduler's own parser: feed passes in `run`.
    pub schedule: String,
    /// Cron with seconds: discovery of ledgers and grants in `run`.
    pub discovery_schedule: String,
    /// Cron with seconds: reconciliation against the daily reports in `run`.
    pub verify_schedule: String,
    /// (ledger, topic) units synced at the same time.
    pub concurrency: usize,
    /// First wait before `run` retries a failing unit; doubles per failure.
    #[serde(with = "humantime_serde")]
    pub failure_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_failure_backoff: Duration,
    /// Request and store the payer's personal fields.
    pub include_gdpr_sensitive_data: bool,
    /// Days after an entry's `time` its personal fields are emptied; 0 = never.
    pub personal_data_retention_days: u32,
    /// How long a unit's lease lasts without renewal.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// After SIGTERM, how long the work in hand may take to commit before it is abandoned
    /// (rolled back, never half-written) and the process exits.
    #[serde(with = "humantime_serde")]
    pub drain_deadline: Duration,
    /// How `run` chooses the feeds of a pass (README, "Polling").
    pub polling: Polling,
    /// Adaptive polling: a feed that just stored entries is polled again after this long
    /// (at least a minute: Vipps asks for no more than one poll of a feed a minute).
    #[serde(with = "humantime_serde")]
    pub min_poll_interval: Duration,
    /// Adaptive polling: the longest a quiet feed waits between polls.
    #[serde(with = "humantime_serde")]
    pub max_poll_interval: Duration,
    /// Adaptive polling: feeds polled per hour at most, spread evenly over the passes (0: no
    /// limit).
    pub polls_per_hour: u32,
}

/// How `run` chooses the feeds a pass polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Polling {
    /// Each feed when it is due by its own schedule, busiest first, within
    /// `polls_per_hour`.
    Adaptive,
    /// Every feed at every pass (`schedule`), as before adaptive polling.
    Fixed,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The shape of the merged layers, before secrets are resolved and rules checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    database: DatabaseSettings,
    api: ApiSettings,
    retry: RetrySettings,
    limits: LimitsSettings,
    partners: Vec<RawPartner>,
    sync: SyncSettings,
    log: LogSettings,
    http: http::RawHttp,
    #[serde(default)]
    exporters: Vec<exporters::RawExporter>,
}

fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    let raw = String::deserialize(d)?;
    if raw.trim().is_empty() {
        return Ok(None);
    }
    Url::parse(raw.trim())
        .map(Some)
        .map_err(serde::de::Error::custom)
}

impl Settings {
    /// Loads the settings from the defaults, `file` and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(file, std::env::vars().collect())
    }

    /// Loads the settings with `env` standing in for the process environment (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: HashMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "--config {}: no such file",
                    path.display()
                )));
            }
            // Parsed here first, so a syntax error is reported by line and column without
            // the line's text (the `config` crate quotes it, and it may hold a secret).
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!("--config {}: cannot be read: {e}", path.display()))
            })?;
            if let Err(e) = toml::de::DeTable::parse(&text) {
                return Err(syntax_error(path, &text, &e));
            }
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        let credentials = env.get("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        let vls_url = format!("{ENV_PREFIX}_DATABASE__URL");
        if let (Some(url), false) = (env.get("DATABASE_URL"), env.contains_key(&vls_url)) {
            builder = builder
                .set_override("database.url", url.as_str())
                .map_err(|e| ConfigError::key("DATABASE_URL", e))?;
        }
        let vls_env: HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}_")))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("sync.topics")
                .try_parsing(true)
                .source(Some(vls_env)),
        );
        let merged = builder
            .build()
            .map_err(|e| ConfigError(describe(e, file)))?;
        let raw: RawSettings = merged
            .try_deserialize()
            .map_err(|e| ConfigError(describe(e, file)))?;
        Self::validate(raw, credentials.as_deref())
    }

    fn validate(raw: RawSettings, credentials: Option<&Path>) -> Result<Settings, ConfigError> {
        check_url("api.base_url", &raw.api.base_url)?;
        if let Some(token_url) = &raw.api.token_url {
            check_url("api.token_url", token_url)?;
        }
        for (key, url) in [
            ("api.base_url", Some(&raw.api.base_url)),
            ("api.token_url", raw.api.token_url.as_ref()),
        ] {
            if url.is_some_and(|u| !u.username().is_empty() || u.password().is_some()) {
                return Err(ConfigError::key(
                    key,
                    "must not carry a user or password: the keys go in [[partners]]",
                ));
            }
        }
        let mut api = raw.api;
        let version = env!("CARGO_PKG_VERSION");
        for (key, value) in [
            ("api.system_name", &mut api.system_name),
            ("api.system_version", &mut api.system_version),
            ("api.plugin_name", &mut api.plugin_name),
            ("api.plugin_version", &mut api.plugin_version),
        ] {
            if value.is_empty() {
                *value = if key.ends_with("version") {
                    version.to_owned()
                } else {
                    "vipps-ledger-sync".to_owned()
                };
            }
            if value.len() > MAX_SYSTEM_HEADER_LEN || !value.is_ascii() {
                return Err(ConfigError::key(
                    key,
                    format!("must be at most {MAX_SYSTEM_HEADER_LEN} ASCII characters"),
                ));
            }
        }
        let mut database = raw.database;
        if let Some(file) = database.url_file.take() {
            database.url = read_credential("database.url_file", &file, credentials)?;
        }
        if database.url.expose_secret().trim().is_empty() {
            return Err(ConfigError::key("database.url", "must not be empty"));
        }
        check_database_transport(&database.url)?;
        if database.max_connections == 0 {
            return Err(ConfigError::key(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        if api.max_in_flight == 0 {
            return Err(ConfigError::key("api.max_in_flight", "must be at least 1"));
        }
        if raw.retry.max_attempts == 0 {
            return Err(ConfigError::key("retry.max_attempts", "must be at least 1"));
        }
        if raw.retry.base_backoff > raw.retry.max_backoff {
            return Err(ConfigError::key(
                "retry.base_backoff",
                "must not be larger than retry.max_backoff",
            ));
        }
        let limits = &raw.limits;
        for (key, zero) in [
            ("limits.max_body_bytes", limits.max_body_bytes == 0),
            ("limits.max_cursor_bytes", limits.max_cursor_bytes == 0),
            ("limits.max_pages_per_feed", limits.max_pages_per_feed == 0),
            (
                "limits.max_pages_per_listing",
                limits.max_pages_per_listing == 0,
            ),
            ("limits.max_empty_pages", limits.max_empty_pages == 0),
            (
                "limits.max_report_bytes_per_date",
                limits.max_report_bytes_per_date == 0,
            ),
        ] {
            if zero {
                return Err(ConfigError::key(key, "must be at least 1"));
            }
        }
        if raw.sync.topics.is_empty() {
            return Err(ConfigError::key("sync.topics", "name at least one topic"));
        }
        if raw.sync.min_poll_interval < Duration::from_secs(60) {
            return Err(ConfigError::key(
                "sync.min_poll_interval",
                "must be at least 1m: Vipps asks for no more than one poll of a feed a minute",
            ));
        }
        if raw.sync.max_poll_interval < raw.sync.min_poll_interval
            || raw.sync.max_poll_interval > Duration::from_secs(7 * 24 * 3600)
        {
            return Err(ConfigError::key(
                "sync.max_poll_interval",
                "must be between sync.min_poll_interval and 7 days",
            ));
        }
        if raw.sync.lease_ttl < Duration::from_secs(1) {
            return Err(ConfigError::key("sync.lease_ttl", "must be at least 1s"));
        }
        if raw.sync.concurrency == 0 {
            return Err(ConfigError::key("sync.concurrency", "must be at least 1"));
        }
        parse_cron(&raw.sync.schedule).map_err(|e| ConfigError::key("sync.schedule", e))?;
        parse_cron(&raw.sync.discovery_schedule)
            .map_err(|e| ConfigError::key("sync.discovery_schedule", e))?;
        parse_cron(&raw.sync.verify_schedule)
            .map_err(|e| ConfigError::key("sync.verify_schedule", e))?;
        if raw.sync.drain_deadline < Duration::from_secs(1) {
            return Err(ConfigError::key(
                "sync.drain_deadline",
                "must be at least 1s",
            ));
        }
        let partners = resolve_partners(raw.partners, credentials)?;
        let http = http::resolve(raw.http, credentials)?;
        let exporters = exporters::resolve(raw.exporters, credentials)?;
        for (i, e) in exporters.iter().enumerate() {
            if let Some(partner) = &e.partner {
                if !partners.iter().any(|p| &p.name == partner) {
                    return Err(ConfigError::key(
                        &format!("exporters[{i}] ({}).partner", e.name),
                        format!("{partner:?} is not the name of a [[partners]] table"),
                    ));
                }
            }
        }
        let mut sync = raw.sync;
        sync.topics.sort();
        sync.topics.dedup();
        Ok(Settings {
            database,
            api,
            retry: raw.retry,
            limits: raw.limits,
            partners,
            sync,
            log: raw.log,
            http,
            exporters,
        })
    }

    /// Fails unless at least one partner is configured (needed by `run` and `sync`).
    pub fn require_partners(&self) -> Result<(), ConfigError> {
        if self.partners.is_empty() {
            return Err(ConfigError::key(
                "partners",
                "no [[partners]] table is configured: add your accounting keys (see config/example.toml)",
            ));
        }
        Ok(())
    }
}
