//! `[[partners]]`: one table per set of API keys that reads ledgers, of one of two kinds.
//!
//! *Accounting keys* (the default) belong to an accounting partner and read every ledger
//! merchants have shared with it; they get a token from `/miami/v1/token` and must never send
//! a subscription key (that endpoint refuses it). *Merchant keys* belong to one merchant's
//! sales unit and read only the ledgers of its Merchant Serial Number (MSN); they get a token
//! from `/accesstoken/get` and send `Ocp-Apim-Subscription-Key` and `Merchant-Serial-Number`
//! on every call (report-api.md §2.2, §2.3). Each kind's keys are checked here at start, with
//! messages that name the key (`partners[0] (name).msn`) and never quote a secret.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::checks::inline_or_file;
use super::ConfigError;

/// Shortest and longest Merchant Serial Number, in digits (the Access Token API spec's
/// `Merchant-Serial-Number` pattern `^[0-9]{4,10}$`).
const MSN_DIGITS: std::ops::RangeInclusive<usize> = 4..=10;

/// One `[[partners]]` table: a set of API keys, secrets resolved.
#[derive(Debug, Clone)]
pub struct PartnerSettings {
    /// Our name for these keys; recorded on every grant as the party that reads.
    pub name: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// Accounting or merchant keys, with what the merchant kind needs besides.
    pub keys: KeyKind,
}

impl PartnerSettings {
    /// A set of accounting keys (what tests and the demo mostly use).
    pub fn accounting(name: &str, client_id: &str, client_secret: &str) -> PartnerSettings {
        PartnerSettings {
            name: name.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: SecretString::from(client_secret),
            keys: KeyKind::Accounting,
        }
    }

    /// `accounting` or `merchant`, as written in `kind`.
    pub fn kind_name(&self) -> &'static str {
        match self.keys {
            KeyKind::Accounting => "accounting",
            KeyKind::Merchant(_) => "merchant",
        }
    }
}

/// Which kind of keys a `[[partners]]` table holds, which decides the token endpoint and the
/// headers of every call (`report_api::keys`).
#[derive(Debug, Clone)]
pub enum KeyKind {
    /// An accounting partner's keys: every ledger shared with the partner.
    Accounting,
    /// A merchant's own keys: the ledgers of one sales unit.
    Merchant(MerchantKeys),
}

/// What merchant keys need besides the client id and secret.
#[derive(Debug, Clone)]
pub struct MerchantKeys {
    /// The sales unit's Merchant Serial Number, sent as `Merchant-Serial-Number`.
    pub msn: String,
    /// The primary `Ocp-Apim-Subscription-Key`.
    pub subscription_key: SecretString,
    /// The secondary value, used when the primary is refused: the portal keeps two so one
    /// can be regenerated while the other works.
    pub secondary_subscription_key: Option<SecretString>,
}

/// `kind` as written.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawKind {
    #[default]
    Accounting,
    Merchant,
}

/// `[[partners]]` as written in the file, before the secrets are resolved.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPartner {
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: RawKind,
    #[serde(default)]
    client_id: String,
    client_secret: Option<SecretString>,
    client_secret_file: Option<PathBuf>,
    #[serde(default)]
    msn: Option<String>,
    subscription_key: Option<SecretString>,
    subscription_key_file: Option<PathBuf>,
    secondary_subscription_key: Option<SecretString>,
    secondary_subscription_key_file: Option<PathBuf>,
}

/// Checks every table and reads its secrets: names unique and present, a client id and a
/// secret, and what the kind needs (and nothing the other kind needs).
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
        let keys = match p.kind {
            RawKind::Accounting => {
                let merchant_only = [
                    ("msn", p.msn.is_some()),
                    ("subscription_key", p.subscription_key.is_some()),
                    ("subscription_key_file", p.subscription_key_file.is_some()),
                    (
                        "secondary_subscription_key",
                        p.secondary_subscription_key.is_some(),
                    ),
                    (
                        "secondary_subscription_key_file",
                        p.secondary_subscription_key_file.is_some(),
                    ),
                ];
                if let Some((key, _)) = merchant_only.iter().find(|(_, set)| *set) {
                    return Err(ConfigError::key(
                        &format!("{at}.{key}"),
                        "belongs to merchant keys: accounting keys never send a subscription key \
                         or MSN (their token endpoint refuses one); set kind = \"merchant\" if \
                         these are your own merchant keys",
                    ));
                }
                KeyKind::Accounting
            }
            RawKind::Merchant => {
                // Merchant keys travel as headers: a character no header may hold fails here,
                // naming the key, rather than on the first token request.
                for (key, value) in [
                    ("client_id", p.client_id.as_str()),
                    ("client_secret", client_secret.expose_secret()),
                ] {
                    if value.bytes().any(|b| b.is_ascii_control()) {
                        return Err(ConfigError::key(
                            &format!("{at}.{key}"),
                            "must not hold control characters (merchant keys send it as a header)",
                        ));
                    }
                }
                KeyKind::Merchant(MerchantKeys {
                    msn: check_msn(&at, p.msn)?,
                    subscription_key: subscription_key(
                        &at,
                        "subscription_key",
                        p.subscription_key,
                        p.subscription_key_file,
                        credentials,
                    )?,
                    secondary_subscription_key: match (
                        p.secondary_subscription_key,
                        p.secondary_subscription_key_file,
                    ) {
                        (None, None) => None,
                        (inline, file) => Some(subscription_key(
                            &at,
                            "secondary_subscription_key",
                            inline,
                            file,
                            credentials,
                        )?),
                    },
                })
            }
        };
        partners.push(PartnerSettings {
            name: p.name,
            client_id: p.client_id,
            client_secret,
            keys,
        });
    }
    Ok(partners)
}

/// `msn`: present, 4 to 10 digits.
fn check_msn(at: &str, msn: Option<String>) -> Result<String, ConfigError> {
    let key = format!("{at}.msn");
    let msn = msn.map(|m| m.trim().to_owned()).unwrap_or_default();
    if msn.is_empty() {
        return Err(ConfigError::key(
            &key,
            "is missing: merchant keys reach one sales unit, named by its Merchant Serial Number",
        ));
    }
    if !MSN_DIGITS.contains(&msn.len()) || !msn.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::key(
            &key,
            format!(
                "must be {} to {} digits (the sales unit's Merchant Serial Number)",
                MSN_DIGITS.start(),
                MSN_DIGITS.end()
            ),
        ));
    }
    Ok(msn)
}

/// A subscription key, inline or in a file, not empty and fit for an HTTP header (checked
/// here so a bad one fails at start, naming the key, never on the first call).
fn subscription_key(
    at: &str,
    key: &str,
    inline: Option<SecretString>,
    file: Option<PathBuf>,
    credentials: Option<&Path>,
) -> Result<SecretString, ConfigError> {
    let value = inline_or_file(
        at,
        key,
        inline,
        file,
        credentials,
        &format!("is missing (or set {key}_file): merchant keys send it on every call"),
    )?;
    let text = value.expose_secret();
    if text.is_empty() {
        return Err(ConfigError::key(&format!("{at}.{key}"), "is empty"));
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::key(
            &format!("{at}.{key}"),
            "must be printable ASCII without spaces (it is sent as a header)",
        ));
    }
    Ok(value)
}
