//! The one place that knows what each kind of keys sends (report-api.md §2.1–§2.3):
//!
//! | | accounting keys | merchant keys |
//! | --- | --- | --- |
//! | token | `POST {api.token_url}` (`/miami/v1/token`), Basic auth, `grant_type=client_credentials` | `POST {base_url}/accesstoken/get`, headers `client_id`, `client_secret`, `Ocp-Apim-Subscription-Key`, `Merchant-Serial-Number`, empty body |
//! | every call | `Authorization: Bearer …` | `Authorization: Bearer …`, `Ocp-Apim-Subscription-Key`, `Merchant-Serial-Number` |
//!
//! Accounting keys never send a subscription key: their token endpoint refuses one, and there
//! is none to send. Merchant keys may have two subscription keys (primary and secondary, which
//! the portal keeps so one can be regenerated while the other works); the token cache picks
//! which one by index and calls with the same one its token was fetched with. The
//! `Vipps-System-*` headers go on every request of either kind (the client's defaults).

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::RequestBuilder;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::config::{join, KeyKind, PartnerSettings};

const SUBSCRIPTION_KEY: HeaderName = HeaderName::from_static("ocp-apim-subscription-key");
const MERCHANT_SERIAL_NUMBER: HeaderName = HeaderName::from_static("merchant-serial-number");

/// One partner's keys, as the requests need them.
pub(crate) enum Keys {
    Accounting {
        client_id: String,
        client_secret: SecretString,
    },
    Merchant {
        client_id: String,
        client_secret: SecretString,
        msn: String,
        /// The primary first, then the secondary if there is one.
        subscription_keys: Vec<SecretString>,
    },
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keys::Accounting { client_id, .. } => f
                .debug_struct("Accounting")
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            Keys::Merchant {
                client_id,
                msn,
                subscription_keys,
                ..
            } => f
                .debug_struct("Merchant")
                .field("client_id", client_id)
                .field("msn", msn)
                .field("subscription_keys", &subscription_keys.len())
                .finish_non_exhaustive(),
        }
    }
}

impl Keys {
    pub(crate) fn new(partner: &PartnerSettings) -> Keys {
        let (client_id, client_secret) = (partner.client_id.clone(), partner.client_secret.clone());
        match &partner.keys {
            KeyKind::Accounting => Keys::Accounting {
                client_id,
                client_secret,
            },
            KeyKind::Merchant(m) => Keys::Merchant {
                client_id,
                client_secret,
                msn: m.msn.clone(),
                subscription_keys: std::iter::once(m.subscription_key.clone())
                    .chain(m.secondary_subscription_key.clone())
                    .collect(),
            },
        }
    }

    /// The token endpoint of this kind: `accounting_url` (`api.token_url`, by default
    /// `{base_url}/miami/v1/token`) or `{base_url}/accesstoken/get`.
    pub(crate) fn token_url(&self, base_url: &Url, accounting_url: &Url) -> Url {
        match self {
            Keys::Accounting { .. } => accounting_url.clone(),
            Keys::Merchant { .. } => join(base_url, "accesstoken/get"),
        }
    }

    /// How many subscription keys there are to choose from (0 for accounting keys).
    pub(crate) fn subscription_keys(&self) -> usize {
        match self {
            Keys::Accounting { .. } => 0,
            Keys::Merchant {
                subscription_keys, ..
            } => subscription_keys.len(),
        }
    }

    /// "primary" or "secondary", for logs: which key, never the key.
    pub(crate) fn key_label(index: usize) -> &'static str {
        if index == 0 {
            "primary"
        } else {
            "secondary"
        }
    }

    /// The token request, with subscription key number `key` for merchant keys.
    pub(crate) fn token_request(
        &self,
        http: &reqwest::Client,
        url: &Url,
        key: usize,
    ) -> Result<RequestBuilder, super::ApiError> {
        Ok(match self {
            Keys::Accounting {
                client_id,
                client_secret,
            } => http
                .post(url.clone())
                .basic_auth(client_id, Some(client_secret.expose_secret()))
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded; charset=utf-8",
                )
                .body("grant_type=client_credentials"),
            Keys::Merchant {
                client_id,
                client_secret,
                ..
            } => {
                let request = http
                    .post(url.clone())
                    .header("client_id", header("client_id", client_id)?)
                    .header(
                        "client_secret",
                        header("client_secret", client_secret.expose_secret())?,
                    )
                    .header(reqwest::header::CONTENT_LENGTH, 0);
                self.merchant_headers(request, key)?
            }
        })
    }

    /// A data call: the bearer token, and for merchant keys the subscription key `key` and
    /// the MSN.
    pub(crate) fn call(
        &self,
        request: RequestBuilder,
        token: &SecretString,
        key: usize,
    ) -> Result<RequestBuilder, super::ApiError> {
        let request = request.bearer_auth(token.expose_secret());
        match self {
            Keys::Accounting { .. } => Ok(request),
            Keys::Merchant { .. } => self.merchant_headers(request, key),
        }
    }

    fn merchant_headers(
        &self,
        request: RequestBuilder,
        key: usize,
    ) -> Result<RequestBuilder, super::ApiError> {
        let Keys::Merchant {
            msn,
            subscription_keys,
            ..
        } = self
        else {
            return Ok(request);
        };
        let subscription = subscription_keys
            .get(key)
            .or(subscription_keys.first())
            .map(|k| {
                let mut value = header("subscription_key", k.expose_secret())?;
                value.set_sensitive(true);
                Ok::<_, super::ApiError>(value)
            })
            .transpose()?;
        let mut request = request.header(MERCHANT_SERIAL_NUMBER, header("msn", msn)?);
        if let Some(value) = subscription {
            request = request.header(SUBSCRIPTION_KEY, value);
        }
        Ok(request)
    }
}

/// A header value from a configured value; the error names the key, never the value.
fn header(key: &str, value: &str) -> Result<HeaderValue, super::ApiError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        super::ApiError::InvalidResponse(format!(
            "{key} cannot be sent as an HTTP header (it holds a character headers may not)"
        ))
    })?;
    if key.contains("secret") {
        value.set_sensitive(true);
    }
    Ok(value)
}
