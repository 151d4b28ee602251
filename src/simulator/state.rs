//! The simulator's mutable state: ledgers, partners and their grants, issued tokens, test
//! controls, fault settings, the hostile mode and request counters.
//!
//! This module owns everything behind the simulator's one `Mutex` and the rules that do not
//! depend on HTTP: who may log in (client credentials), which token belongs to whom and until
//! when, and which ledgers a partner may read. Paging lives in `pages.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::RngCore;

use super::book::LedgerBook;
use super::entry::Topic;
use super::{FaultConfig, HostileConfig, SimStats};

/// Why a data request is refused; the HTTP layer turns it into a status and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ApiError {
    /// Missing, unknown or expired bearer token.
    Unauthorized,
    /// Unknown ledger, or one not granted to the caller.
    NotFound,
    /// A malformed parameter; the text is the problem's `detail`.
    BadRequest(String),
    /// An injected failure (HTTP 500), see `Simulator::fail_ledger_list_page`.
    ServerError,
}

/// Why the token endpoint refused; both are answered `{"error":"invalid_client"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenError {
    /// 401: unknown client, wrong secret or unreadable Basic credentials.
    BadCredentials,
    /// 400: missing or wrong `grant_type`, wrong content type, or a subscription key.
    BadRequest,
}

/// A freshly issued token.
#[derive(Clone, Debug)]
pub(crate) struct IssuedToken {
    pub access_token: String,
    pub expires_in_secs: u64,
}

/// A set of keys: an accounting partner's (its secret and the ledgers merchants have granted
/// it) or, with `merchant` set, a merchant's own (the ledgers of its MSN).
#[derive(Clone, Debug, Default)]
pub(crate) struct Partner {
    pub secret: String,
    pub grants: BTreeSet<String>,
    /// Set for merchant keys: they log in at `/accesstoken/get`, never at `/miami/v1/token`.
    pub merchant: Option<super::merchant::MerchantAccess>,
}

#[derive(Clone, Debug)]
struct TokenInfo {
    client_id: String,
    expires_at: Instant,
}

/// Everything behind the simulator's lock.
#[derive(Debug)]
pub(crate) struct State {
    pub seed: u64,
    pub feed_page_size: usize,
    pub ledger_page_size: usize,
    pub token_ttl: Duration,
    pub expires_in_as_string: bool,
    pub overlap: usize,
    pub repeat_pages: bool,
    /// 1-based page of the ledger list that answers 500.
    pub fail_ledger_page: Option<usize>,
    /// Ledgers whose next feed request answers 404 once (`Simulator::not_found_once`).
    pub not_found_once: HashSet<String>,
    /// Feed positions whose page was already served once with the unchanged cursor.
    pub repeat_served: HashSet<(String, Topic, usize)>,
    /// Ledgers by id (ids are equal-length digit strings, so this is numeric order too).
    pub ledgers: BTreeMap<String, LedgerBook>,
    pub partners: BTreeMap<String, Partner>,
    tokens: HashMap<String, TokenInfo>,
    pub stats: SimStats,
    /// Fault injection settings; `None` = off.
    pub faults: Option<FaultConfig>,
    /// How many fault draws each request line (method, path, query) has had.
    pub fault_draws: HashMap<String, u64>,
    /// The hostile mode in effect; `None` = off.
    pub hostile: Option<HostileConfig>,
    /// When the longest `Retry-After` sent so far runs out (host-wide).
    pub blocked_until: Option<Instant>,
    /// When the latest 429 was sent.
    pub blocked_since: Option<Instant>,
    /// Token and data calls being handled now.
    pub in_flight: u64,
}

impl State {
    /// A state with the given ledgers and no partners.
    pub(crate) fn new(seed: u64, ledgers: Vec<LedgerBook>) -> State {
        State {
            seed,
            feed_page_size: 1000,
            ledger_page_size: 5,
            token_ttl: Duration::from_secs(900),
            expires_in_as_string: false,
            overlap: 0,
            repeat_pages: false,
            fail_ledger_page: None,
            not_found_once: HashSet::new(),
            repeat_served: HashSet::new(),
            ledgers: ledgers
                .into_iter()
                .map(|b| (b.profile.ledger_id.clone(), b))
                .collect(),
            partners: BTreeMap::new(),
            tokens: HashMap::new(),
            stats: SimStats::default(),
            faults: None,
            fault_draws: HashMap::new(),
            hostile: None,
            blocked_until: None,
            blocked_since: None,
            in_flight: 0,
        }
    }

    /// Checks Basic credentials and the grant type, and issues a token.
    pub(crate) fn issue_token(
        &mut self,
        authorization: Option<&str>,
        grant_type: Option<&str>,
    ) -> Result<IssuedToken, TokenError> {
        let (id, secret) = authorization
            .and_then(parse_basic)
            .ok_or(TokenError::BadCredentials)?;
        match self.partners.get(&id) {
            // Merchant keys are not accounting keys: the MIAMI endpoint does not know them.
            Some(p) if p.secret == secret && p.merchant.is_none() => {}
            _ => return Err(TokenError::BadCredentials),
        }
        if grant_type != Some("client_credentials") {
            return Err(TokenError::BadRequest);
        }
        Ok(self.new_token(id))
    }

    /// Issues a token to `id` (whose keys were checked), valid for `token_ttl`.
    pub(crate) fn new_token(&mut self, id: String) -> IssuedToken {
        let now = Instant::now();
        self.tokens.retain(|_, t| t.expires_at > now);
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let access_token = URL_SAFE_NO_PAD.encode(bytes);
        self.tokens.insert(
            access_token.clone(),
            TokenInfo {
                client_id: id,
                // A huge test TTL must not overflow `Instant`; ten years is forever here.
                expires_at: now
                    .checked_add(self.token_ttl)
                    .or_else(|| now.checked_add(Duration::from_secs(315_360_000)))
                    .unwrap_or(now),
            },
        );
        IssuedToken {
            access_token,
            expires_in_secs: self.token_ttl.as_secs(),
        }
    }

    /// The tokens issued and still valid.
    pub(crate) fn issued_tokens(&self) -> Vec<String> {
        self.tokens.keys().cloned().collect()
    }

    /// Forgets every issued token, so each is refused from now on.
    pub(crate) fn expire_tokens(&mut self) {
        self.tokens.clear();
    }

    /// The client id behind a `Bearer` token that has not expired.
    pub(crate) fn authenticate(&self, authorization: Option<&str>) -> Result<String, ApiError> {
        let value = authorization.ok_or(ApiError::Unauthorized)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(ApiError::Unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::Unauthorized);
        }
        match self.tokens.get(token.trim()) {
            Some(t) if Instant::now() < t.expires_at => Ok(t.client_id.clone()),
            _ => Err(ApiError::Unauthorized),
        }
    }

    /// The ledger if it exists and is granted to `client_id`; otherwise "No such ledgerId".
    pub(crate) fn accessible(
        &self,
        client_id: &str,
        ledger_id: &str,
    ) -> Result<&LedgerBook, ApiError> {
        let granted = self
            .partners
            .get(client_id)
            .is_some_and(|p| p.grants.contains(ledger_id));
        match self.ledgers.get(ledger_id) {
            Some(book) if granted => Ok(book),
            _ => Err(ApiError::NotFound),
        }
    }

    /// Counts a refused data request in the stats and passes the result on.
    pub(crate) fn record<T>(&mut self, result: Result<T, ApiError>) -> Result<T, ApiError> {
        match &result {
            Err(ApiError::Unauthorized) => self.stats.unauthorized += 1,
            Err(ApiError::NotFound) => self.stats.not_found += 1,
            _ => {}
        }
        result
    }

    /// Grants a ledger to a partner; fails if either is unknown.
    pub(crate) fn grant(&mut self, client_id: &str, ledger_id: &str) -> Result<(), String> {
        if !self.ledgers.contains_key(ledger_id) {
            return Err(format!("unknown ledger {ledger_id}"));
        }
        let partner = self
            .partners
            .get_mut(client_id)
            .ok_or_else(|| format!("unknown partner {client_id}"))?;
        partner.grants.insert(ledger_id.to_string());
        Ok(())
    }

    /// Withdraws a grant; fails if the partner is unknown.
    pub(crate) fn revoke(&mut self, client_id: &str, ledger_id: &str) -> Result<(), String> {
        let partner = self
            .partners
            .get_mut(client_id)
            .ok_or_else(|| format!("unknown partner {client_id}"))?;
        partner.grants.remove(ledger_id);
        Ok(())
    }

    /// Appends `days` ledger dates to every ledger.
    pub(crate) fn grow_ledger(&mut self, ledger_id: &str, days: u32) {
        let seed = self.seed;
        if let Some(book) = self.ledgers.get_mut(ledger_id) {
            book.grow(seed, days);
        }
    }

    pub(crate) fn grow(&mut self, days: u32) {
        let seed = self.seed;
        for book in self.ledgers.values_mut() {
            book.grow(seed, days);
        }
    }
}

/// `Basic base64(id:secret)` to `(id, secret)`.
fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}
