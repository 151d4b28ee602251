//! The `schema-random` mode: answers made up from the OpenAPI file's schemas alone.
//!
//! This module owns random bodies shaped like `tests/data/report-api-openapi.yaml` (the official file), the way a
//! mock server generating from the schema (e.g. `prism mock -d`) fills them: every documented
//! property present with a value of its declared type and nothing more: strings of one to five
//! lorem-ipsum words (whatever their `format`), `Money` (`type: number`) as floats or integers
//! around ±2^31, `entryType` from the spec's enum, random booleans, and arrays of 0 to 5
//! items. The ledger list gets `{cursor, items: [Ledger]}`; feed and dates get the shared
//! response `{cursor, hasMore, tryLater, items: [Transaction]}`. The random stream depends on
//! the seed and the request line only, so the same request always gets the same answer.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::faults::Endpoint;

/// The words of the strings (as the faker behind such mock servers uses them).
const LOREM: &[&str] = &[
    "Lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipisicing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "Ut",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "aliquip",
    "ex",
    "ea",
    "commodo",
    "consequat",
    "Duis",
    "aute",
    "irure",
    "in",
    "reprehenderit",
    "voluptate",
    "velit",
    "esse",
    "cillum",
    "eu",
    "fugiat",
    "nulla",
    "pariatur",
    "Excepteur",
    "sint",
    "occaecat",
    "cupidatat",
    "non",
    "proident",
    "sunt",
    "culpa",
    "qui",
    "officia",
    "deserunt",
    "mollit",
    "anim",
    "id",
    "est",
    "laborum",
];

/// `Transaction.entryType`'s enum in the OpenAPI file.
pub(crate) const ENTRY_TYPES: &[&str] = &[
    "refund",
    "capture",
    "fees-retained",
    "fees-invoiced",
    "scheduled-for-payout",
    "payout-aborted",
    "retained-disputed-capture",
    "returned-disputed-capture",
    "correction",
    "capture-fee",
    "top-up",
];

/// Most items of an array (the faker's default range is 0 to 5).
const MAX_ITEMS: usize = 5;
/// Money's range: about `int32`'s, which the spec names as the format of a `number`.
const MONEY_LIMIT: f64 = 2_147_483_647.0;

/// The random stream of one request: SHA-256 of the seed and the request line.
fn rng_for_request(seed: u64, request_line: &str) -> ChaCha8Rng {
    let digest = Sha256::new()
        .chain_update(seed.to_le_bytes())
        .chain_update(b"schema-random\0")
        .chain_update(request_line.as_bytes())
        .finalize();
    ChaCha8Rng::from_seed(digest.into())
}

/// One to five lorem-ipsum words.
fn lorem(rng: &mut ChaCha8Rng) -> Value {
    let n = rng.gen_range(1..=5);
    let words: Vec<&str> = (0..n)
        .map(|_| *LOREM.choose(rng).unwrap_or(&"lorem"))
        .collect();
    words.join(" ").into()
}

/// A `Money` value: mostly a float, sometimes a whole number, within ±2^31.
fn money(rng: &mut ChaCha8Rng) -> Value {
    if rng.gen_bool(0.25) {
        rng.gen_range(-(MONEY_LIMIT as i64)..=MONEY_LIMIT as i64)
            .into()
    } else {
        rng.gen_range(-MONEY_LIMIT..MONEY_LIMIT).into()
    }
}

fn array(rng: &mut ChaCha8Rng, item: fn(&mut ChaCha8Rng) -> Value) -> Vec<Value> {
    let n = rng.gen_range(0..=MAX_ITEMS);
    (0..n).map(|_| item(rng)).collect()
}

/// `components.schemas.Ledger`: `ledgerId`, `payoutBankAccount`, `owner`,
/// `settlesForRecipientHandles` (the spec has no `currency` or `salesUnits` in it).
fn ledger(rng: &mut ChaCha8Rng) -> Value {
    json!({
        "ledgerId": lorem(rng),
        "payoutBankAccount": { "scheme": lorem(rng), "id": lorem(rng) },
        "owner": { "id": lorem(rng), "scheme": lorem(rng) },
        "settlesForRecipientHandles": array(rng, lorem),
    })
}

/// `components.schemas.Transaction`.
fn transaction(rng: &mut ChaCha8Rng) -> Value {
    json!({
        "pspReference": lorem(rng),
        "time": lorem(rng),
        "ledgerDate": lorem(rng),
        "entryType": *ENTRY_TYPES.choose(rng).unwrap_or(&"capture"),
        "reference": lorem(rng),
        "currency": lorem(rng),
        "amount": money(rng),
        "balanceBefore": money(rng),
        "balanceAfter": money(rng),
        "recipientHandle": lorem(rng),
    })
}

/// The random 200 body of a request to `endpoint`.
pub(crate) fn body(seed: u64, request_line: &str, endpoint: Endpoint) -> Value {
    let mut rng = rng_for_request(seed, request_line);
    match endpoint {
        Endpoint::LedgerList => json!({
            "cursor": lorem(&mut rng),
            "items": array(&mut rng, ledger),
        }),
        Endpoint::Feed | Endpoint::Dates => json!({
            "cursor": lorem(&mut rng),
            "hasMore": rng.gen_bool(0.5),
            "tryLater": rng.gen_bool(0.5),
            "items": array(&mut rng, transaction),
        }),
    }
}
