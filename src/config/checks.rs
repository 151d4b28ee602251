//! The checks values must pass, each failing with the key it is about: URLs, cron
//! expressions, the status endpoint's address, secrets (inline, in a file, or a systemd
//! credential).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::ConfigError;

/// Parses a cron expression with seconds exactly as tokio-cron-scheduler will.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map_err(|e| {
            format!(
                "invalid cron expression {expr:?} (six fields: sec min hour dom month dow): {e}"
            )
        })
}

pub(super) fn check_url(key: &str, url: &Url) -> Result<(), ConfigError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(ConfigError::key(
            key,
            format!(
                "http:// is accepted only for loopback hosts, not {}; use https://",
                redact_url(url)
            ),
        )),
        other => Err(ConfigError::key(
            key,
            format!("unsupported scheme {other:?}"),
        )),
    }
}

pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Where a `*_file` setting points: a relative path names a systemd credential, found in
/// `$CREDENTIALS_DIRECTORY` when the service manager set it (`LoadCredential=`), else relative
/// to the working directory.
fn credential_path(file: &Path, credentials: Option<&Path>) -> PathBuf {
    match credentials {
        Some(dir) if file.is_relative() => dir.join(file),
        _ => file.to_owned(),
    }
}

/// `http.listen`: empty is off; `PORT` or `:PORT` is loopback; otherwise `HOST:PORT`.
pub(super) fn parse_listen(raw: &str) -> Result<Option<std::net::SocketAddr>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let port_only = raw.strip_prefix(':').unwrap_or(raw);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))));
    }
    raw.parse().map(Some).map_err(|_| {
        format!("{raw:?} is not an address: write \"127.0.0.1:9187\", \"[::1]:9187\" or a port")
    })
}

/// Reads a secret from a file (e.g. a systemd credential), without its trailing newline.
fn read_secret_file(path: &Path) -> std::io::Result<SecretString> {
    let text = std::fs::read_to_string(path)?;
    Ok(SecretString::from(
        text.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

/// Makes the `config` crate's messages say where the problem is, without any value: a value
/// in the wrong place may be a secret (a client secret written where a number belongs, a URL
/// with a password), so only its kind is named, never its text.
pub(super) fn describe(e: config::ConfigError, file: Option<&Path>) -> String {
    let msg = without_values(&e);
    match file {
        Some(path) => format!(
            "{msg} (layers: built-in defaults, {}, environment)",
            path.display()
        ),
        None => format!("{msg} (layers: built-in defaults, environment)"),
    }
}

fn without_values(e: &config::ConfigError) -> String {
    match e {
        config::ConfigError::Type {
            unexpected,
            expected,
            key,
            ..
        } => {
            // "string \"…\"" / "64-bit integer `…`": the kind is what comes before the value.
            let found = unexpected.to_string();
            let kind = found.split(['`', '"']).next().unwrap_or("").trim();
            match key {
                Some(key) => format!("{key}: expected {expected}, found a {kind}"),
                None => format!("expected {expected}, found a {kind}"),
            }
        }
        config::ConfigError::At {
            error,
            key: Some(key),
            ..
        } => format!("{key}: {}", without_values(error)),
        config::ConfigError::At { error, .. } => without_values(error),
        other => scrub(&other.to_string()),
    }
}

/// A message from a library with every double-quoted value replaced and every URL's user and
/// password removed, for messages that may echo what was written (serde's "invalid value:
/// string \"…\""). Text in backticks (keys, the characters a parser expected) is kept.
pub fn scrub(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let (mut quoted, mut ticked) = (false, false);
    for c in message.chars() {
        match c {
            '`' if !quoted => {
                ticked = !ticked;
                out.push(c);
            }
            '"' if !ticked && !quoted => {
                out.push_str("\"(value not shown)\"");
                quoted = true;
            }
            '"' if quoted => quoted = false,
            _ if quoted => {}
            c => out.push(c),
        }
    }
    without_userinfo(&out)
}

/// Removes `user:password@` from every `scheme://user:password@host` in `text`.
pub fn without_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => out.push_str(&authority[at + 1..]),
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A URL as messages and logs may show it: without user, password, query and fragment (a
/// query may carry a token).
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// `--config FILE` that is not valid TOML: where (line and column) and what, never the text
/// of the line, which may hold a secret.
pub(super) fn syntax_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let at = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("line {line}, column {column}")
        }
        None => "an unknown place".to_owned(),
    };
    ConfigError(format!(
        "--config {}: not valid TOML at {at}: {} (the line is not shown: it may hold a secret)",
        path.display(),
        scrub(e.message().trim())
    ))
}

/// `database.url` must not let the connection fall back to plaintext or to an unchecked
/// certificate when the server is on another machine: `sslmode=verify-full` (or `verify-ca`)
/// is required then. Loopback addresses and Unix sockets are as before.
pub(super) fn check_database_transport(url: &SecretString) -> Result<(), ConfigError> {
    use sqlx::postgres::{PgConnectOptions, PgSslMode};
    let options: PgConnectOptions = url
        .expose_secret()
        .parse()
        .map_err(|_| ConfigError::key("database.url", "is not a valid PostgreSQL URL"))?;
    let host = options.get_host();
    let local = host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if local
        || matches!(
            options.get_ssl_mode(),
            PgSslMode::VerifyFull | PgSslMode::VerifyCa
        )
    {
        return Ok(());
    }
    Err(ConfigError::key(
        "database.url",
        format!(
            "the server {host} is not on this machine, so the connection must verify its certificate: \
             add sslmode=verify-full to the URL (and sslrootcert=/path/to/ca.pem for a private CA); \
             without it the connection may fall back to plaintext or accept any certificate"
        ),
    ))
}

/// A secret given in the file as `<at>.<key>`, or in a file named by `<at>.<key>_file`: exactly
/// one of the two; `missing` says what to do when neither is.
pub(super) fn inline_or_file(
    at: &str,
    key: &str,
    inline: Option<SecretString>,
    file: Option<PathBuf>,
    credentials: Option<&Path>,
    missing: &str,
) -> Result<SecretString, ConfigError> {
    match (inline, file) {
        (Some(secret), None) => Ok(secret),
        (None, Some(file)) => read_credential(&format!("{at}.{key}_file"), &file, credentials),
        (Some(_), Some(_)) => Err(ConfigError::key(
            &format!("{at}.{key}"),
            format!("set either {key} or {key}_file, not both"),
        )),
        (None, None) => Err(ConfigError::key(&format!("{at}.{key}"), missing)),
    }
}

/// Reads the secret in `file` (a credential name when relative), naming `key` when it cannot.
pub(super) fn read_credential(
    key: &str,
    file: &Path,
    credentials: Option<&Path>,
) -> Result<SecretString, ConfigError> {
    let path = credential_path(file, credentials);
    read_secret_file(&path).map_err(|e| ConfigError::key(key, format!("{}: {e}", path.display())))
}
