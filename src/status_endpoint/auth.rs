//! The status endpoint's optional bearer token (`http.token`): what a request must present to
//! read `/readyz` and `/metrics`. Only the token's SHA-256 digest is kept; a presented value is
//! hashed the same way and the two digests are compared in constant time, so neither the
//! token's length nor how much of a guess matched shows in the time an answer takes.

use axum::http::{header, HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The token a request must present, as its digest.
pub(super) struct BearerToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken([REDACTED])")
    }
}

impl BearerToken {
    pub(super) fn new(token: &SecretString) -> BearerToken {
        BearerToken {
            digest: digest(token.expose_secret().as_bytes()),
        }
    }

    /// Whether `headers` carry `Authorization: Bearer <the token>` (the scheme's case does not
    /// matter, RFC 9110 §11.1).
    pub(super) fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        let presented = match value.as_bytes().split_at_checked(7) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"bearer ") => rest.trim_ascii(),
            _ => return false,
        };
        same(&digest(presented), &self.digest)
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Equal digests, looking at every byte whatever the first difference.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_the_bearer_scheme_with_exactly_the_token_is_admitted() {
        let token = BearerToken::new(&SecretString::from("0123456789abcdef-token"));
        assert!(token.admits(&with_authorization("Bearer 0123456789abcdef-token")));
        assert!(token.admits(&with_authorization("bearer 0123456789abcdef-token")));
        for refused in [
            "Bearer 0123456789abcdef-toke",
            "Bearer 0123456789abcdef-token2",
            "Bearer ",
            "Basic 0123456789abcdef-token",
            "0123456789abcdef-token",
            "Bearer0123456789abcdef-token",
        ] {
            assert!(!token.admits(&with_authorization(refused)), "{refused}");
        }
        assert!(!token.admits(&HeaderMap::new()));
    }

    #[test]
    fn its_debug_output_shows_no_part_of_the_token() {
        let token = BearerToken::new(&SecretString::from("0123456789abcdef-token"));
        let shown = format!("{token:?}");
        assert!(!shown.contains("0123456789"), "{shown}");
    }
}
