//! The checks values must pass, each failing with the key it is about: URLs, cron
//! expressions, the status endpoint's address, partners and their secrets (inline, in a file,
//! or a systemd credential).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::{ConfigError, PartnerSettings, RawPartner};

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
            format!("http:// is accepted only for loopback hosts, not {url}; use https://"),
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

pub(super) fn resolve_partners(
    raw: Vec<RawPartner>,
    credentials: Option<&Path>,
) -> Result<Vec<PartnerSettings>, ConfigError> {
    let mut partners: Vec<PartnerSettings> = Vec::with_capacity(raw.len());
    for (i, p) in raw.into_iter().enumerate() {
        let at = format!("partners[{i}]");
        if p.name.trim().is_empty() {
            return Err(ConfigError::key(&format!("{at}.name"), "is missing"));
        }
        let at = format!("{at} ({})", p.name);
        if partners.iter().any(|q| q.name == p.name) {
            return Err(ConfigError::key(&format!("{at}.name"), "is used twice"));
        }
        if p.client_id.trim().is_empty() {
            return Err(ConfigError::key(&format!("{at}.client_id"), "is missing"));
        }
        let client_secret = inline_or_file(
            &at,
            "client_secret",
            p.client_secret,
            p.client_secret_file,
            credentials,
            "is missing (or set client_secret_file)",
        )?;
        if client_secret.expose_secret().is_empty() {
            return Err(ConfigError::key(&format!("{at}.client_secret"), "is empty"));
        }
        partners.push(PartnerSettings {
            name: p.name,
            client_id: p.client_id,
            client_secret,
        });
    }
    Ok(partners)
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

/// Makes the `config` crate's messages say where the problem is.
pub(super) fn describe(e: config::ConfigError, file: Option<&Path>) -> String {
    let msg = e.to_string();
    match file {
        Some(path) => format!(
            "{msg} (layers: built-in defaults, {}, environment)",
            path.display()
        ),
        None => format!("{msg} (layers: built-in defaults, environment)"),
    }
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
