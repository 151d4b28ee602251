//! `[http]`: the status endpoint of `run`. Where it listens, the optional bearer token that
//! guards `/readyz` and `/metrics` (inline or from a file or systemd credential), and the bounds
//! every connection lives within: the time to send request headers, the time a request may
//! take, and how many connections may be open at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::checks::{parse_listen, read_credential};
use super::ConfigError;

/// The shortest bearer token accepted, in characters: the endpoint answers a wrong token at
/// once and without limit, so a short one could be guessed by trying.
pub const MIN_TOKEN_LEN: usize = 16;

/// The allowed range of `http.header_read_timeout`: below 100 ms a client on a busy network
/// cannot send its headers; above a minute a silent connection holds its slot for too long.
const HEADER_READ_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(60));

/// The allowed range of `http.request_timeout`: at least 3 s, because `/readyz` and `/metrics`
/// may each wait 2 s for the database; at most 5 minutes.
const REQUEST_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(3), Duration::from_secs(300));

/// The most `http.max_connections` may be: the unit's `LimitNOFILE=1024` must still leave
/// room for the database pools, the API client's connections and export files.
pub const MAX_CONNECTIONS_LIMIT: usize = 512;

/// `[http]`: the status endpoint.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Where `run` serves /healthz, /readyz and /metrics; `None` (the default) serves nothing.
    pub listen: Option<SocketAddr>,
    /// When set, `/readyz` and `/metrics` (every path but `/healthz`) answer only requests
    /// with `Authorization: Bearer <token>`. A secret: never logged, redacted in `Debug`.
    pub token: Option<SecretString>,
    /// How long a client has to send a request's headers, from the moment the connection
    /// opens or its previous response went out; a connection that takes longer is closed.
    pub header_read_timeout: Duration,
    /// How long answering one request may take once its headers are in; then `503`.
    pub request_timeout: Duration,
    /// Connections open at once. When all are taken, a new one takes the place of the oldest
    /// without a request in hand; if every one has a request in hand, it is closed at once.
    pub max_connections: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: String,
    #[serde(default)]
    token: Option<SecretString>,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    header_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    request_timeout: Duration,
    max_connections: usize,
}

/// Checks `[http]` and reads its token (a relative `token_file` is a credential's name).
pub(super) fn resolve(
    raw: RawHttp,
    credentials: Option<&Path>,
) -> Result<HttpSettings, ConfigError> {
    let listen = parse_listen(&raw.listen).map_err(|e| ConfigError::key("http.listen", e))?;
    let token = match (raw.token, raw.token_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::key(
                "http.token",
                "set either token or token_file, not both",
            ))
        }
        (Some(token), None) => Some(check_token("http.token", token)?),
        (None, Some(file)) => {
            let token = read_credential("http.token_file", &file, credentials)?;
            Some(check_token("http.token_file", token)?)
        }
        (None, None) => None,
    };
    within(
        "http.header_read_timeout",
        raw.header_read_timeout,
        HEADER_READ_TIMEOUT_RANGE,
    )?;
    within(
        "http.request_timeout",
        raw.request_timeout,
        REQUEST_TIMEOUT_RANGE,
    )?;
    if !(1..=MAX_CONNECTIONS_LIMIT).contains(&raw.max_connections) {
        return Err(ConfigError::key(
            "http.max_connections",
            format!("must be between 1 and {MAX_CONNECTIONS_LIMIT}"),
        ));
    }
    Ok(HttpSettings {
        listen,
        token,
        header_read_timeout: raw.header_read_timeout,
        request_timeout: raw.request_timeout,
        max_connections: raw.max_connections,
    })
}

/// A token fit for an `Authorization` header and too long to guess; the messages never
/// quote it.
fn check_token(key: &str, token: SecretString) -> Result<SecretString, ConfigError> {
    let text = token.expose_secret();
    if text.is_empty() {
        return Err(ConfigError::key(
            key,
            "is empty (leave the key out to serve without a token)",
        ));
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::key(
            key,
            "may hold only visible ASCII characters, no spaces: it is sent in an HTTP header",
        ));
    }
    if text.len() < MIN_TOKEN_LEN {
        return Err(ConfigError::key(
            key,
            format!("must be at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand -hex 32`)"),
        ));
    }
    Ok(token)
}

fn within(key: &str, value: Duration, (min, max): (Duration, Duration)) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::key(
            key,
            format!(
                "must be between {} and {}",
                humantime_serde::re::humantime::format_duration(min),
                humantime_serde::re::humantime::format_duration(max)
            ),
        ));
    }
    Ok(())
}
