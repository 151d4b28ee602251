//! A page's entries into `entries`, numbered after the feed's `last_seq`, in one statement
//! whatever the page's size, two ways. The caller holds the feed's `feed_cursors` row lock,
//! so no other writer adds entries to the feed meanwhile.
//!
//! - [`InsertPath::Optimistic`]: the page's repeats are dropped here (first of each key
//!   kept), the rest numbered here and inserted by a plain multi-row `INSERT`. Nothing is
//!   checked against the stored entries: the entry-key constraint does it as the rows go in,
//!   and refuses the whole statement if one is stored already ([`is_stored_entry_key`]); the
//!   caller then rolls the page's transaction back and commits it again the checked way.
//! - [`InsertPath::Checked`]: the statement itself leaves out entries already stored and
//!   numbers the rest.
//!
//! The optimistic statement costs about half the checked one: no sorts, no anti-join, and no
//! read of the feed's stored entries, which the planner does whole when its statistics of
//! `entries` are stale (a new table on a first sync; README, "Why it is fast").

use std::collections::HashSet;

use sqlx::PgConnection;

use crate::config::Topic;
use crate::report_api::models::PersonalData;
use crate::report_api::Entry;

/// `(seq, amount, balance_before, balance_after)` of an inserted entry.
pub(super) type Inserted = (i64, i64, i64, i64);

/// How a page's entries are told apart from those already stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InsertPath {
    /// Plain insert; an entry already stored makes the database refuse the page whole, and
    /// the page is committed again [`InsertPath::Checked`]. For pages of new entries: every
    /// page of a first sync, and of a feed that does not serve entries twice.
    #[default]
    Optimistic,
    /// Each entry looked up among the stored ones in the statement. For a page that follows
    /// one that brought entries already stored (an API serving overlapping pages).
    Checked,
}

/// The constraint that keeps an entry key once per feed (migration 0001).
const ENTRY_KEY_CONSTRAINT: &str = "entries_ledger_id_topic_entry_key_key";

/// Whether `e` is the database refusing an entry whose key the feed already holds (the
/// optimistic insert met a stored entry).
pub(super) fn is_stored_entry_key(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.code().as_deref() == Some("23505") && d.constraint() == Some(ENTRY_KEY_CONSTRAINT)
    })
}

/// Binds a page's columns as arrays, `$5` to `$18` in the order both insert statements
/// declare them (psp reference … message), after the ledger, topic, `seq` and keys.
macro_rules! bind_page_columns {
    ($query:expr, $entries:expr, $personal_data:expr) => {{
        let e = $entries;
        $query
            .bind(
                e.iter()
                    .map(|e| e.psp_reference.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(e.iter().map(|e| e.entry_type.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.time).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.ledger_date).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.reference.as_deref()).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.currency.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.amount).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.balance_before).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.balance_after).collect::<Vec<_>>())
            .bind(
                e.iter()
                    .map(|e| e.recipient_handle.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(e.iter().map(|e| e.raw.get()).collect::<Vec<_>>())
            .bind(personal(e, $personal_data, |p| p.name.as_deref()))
            .bind(personal(e, $personal_data, |p| {
                p.masked_phone_no.as_deref()
            }))
            .bind(personal(e, $personal_data, |p| p.message.as_deref()))
    }};
}

/// [`InsertPath::Optimistic`]: inserts `entries` less their repeats within the page, numbered
/// `last_seq + 1, …` in page order; the database refuses the statement if one of them is
/// stored already.
pub(super) async fn insert_optimistic(
    conn: &mut PgConnection,
    ledger_id: &str,
    topic: Topic,
    last_seq: i64,
    entries: &[Entry],
    personal_data: bool,
) -> sqlx::Result<Vec<Inserted>> {
    let mut seen = HashSet::with_capacity(entries.len());
    let (keys, kept): (Vec<[u8; 32]>, Vec<&Entry>) = entries
        .iter()
        .map(|e| (e.key(), e))
        .filter(|(key, _)| seen.insert(*key))
        .unzip();
    if kept.is_empty() {
        return Ok(Vec::new());
    }
    let e = &kept;
    let query = sqlx::query(
        // The arrays unnested in the select list, in lockstep with the `seq` numbers: rows
        // stream into the insert, where `UNNEST(…)` in FROM would first copy them all into
        // a tuplestore (measured: 10 % less time for the statement).
        "INSERT INTO entries (ledger_id, topic, seq, entry_key, psp_reference, entry_type, time,
             ledger_date, reference, currency, amount, balance_before, balance_after,
             recipient_handle, raw, name, masked_phone_no, message)
         SELECT $1, $2, generate_series($3 + 1, $3 + cardinality($4::bytea[])),
             unnest($4::bytea[]), unnest($5::text[]), unnest($6::text[]),
             unnest($7::timestamptz[]), unnest($8::date[]), unnest($9::text[]),
             unnest($10::text[]), unnest($11::int8[]), unnest($12::int8[]), unnest($13::int8[]),
             unnest($14::text[]), unnest($15::text[])::jsonb, unnest($16::text[]),
             unnest($17::text[]), unnest($18::text[])",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .bind(last_seq)
    .bind(keys.iter().map(|k| k.as_slice()).collect::<Vec<_>>());
    bind_page_columns!(query, e, personal_data)
        .execute(conn)
        .await?;
    Ok(e.iter()
        .zip(last_seq + 1..)
        .map(|(e, seq)| (seq, e.amount, e.balance_before, e.balance_after))
        .collect())
}

/// [`InsertPath::Checked`]: one statement for the whole page: array binds unnested in page
/// order, duplicates within the page and entries already stored filtered out, the rest
/// numbered after `last_seq`.
pub(super) async fn insert_checked(
    conn: &mut PgConnection,
    ledger_id: &str,
    topic: Topic,
    last_seq: i64,
    entries: &[Entry],
    personal_data: bool,
) -> sqlx::Result<Vec<Inserted>> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let e = entries;
    let keys: Vec<Vec<u8>> = e.iter().map(|e| e.key().to_vec()).collect();
    let query = sqlx::query_as(
        "WITH incoming AS (
             SELECT * FROM UNNEST($4::bytea[], $5::text[], $6::text[], $7::timestamptz[],
                 $8::date[], $9::text[], $10::text[], $11::int8[], $12::int8[], $13::int8[],
                 $14::text[], $15::text[], $16::text[], $17::text[], $18::text[])
             WITH ORDINALITY AS i(entry_key, psp_reference, entry_type, time, ledger_date,
                 reference, currency, amount, balance_before, balance_after, recipient_handle,
                 raw, name, masked_phone_no, message, ord)
         ), first_of_key AS (
             SELECT DISTINCT ON (entry_key) * FROM incoming ORDER BY entry_key, ord
         ), fresh AS (
             SELECT f.*, row_number() OVER (ORDER BY ord) AS n FROM first_of_key f
             WHERE NOT EXISTS (SELECT 1 FROM entries x
                 WHERE x.ledger_id = $1 AND x.topic = $2 AND x.entry_key = f.entry_key)
         )
         INSERT INTO entries (ledger_id, topic, seq, entry_key, psp_reference, entry_type, time,
             ledger_date, reference, currency, amount, balance_before, balance_after,
             recipient_handle, raw, name, masked_phone_no, message)
         SELECT $1, $2, $3 + n, entry_key, psp_reference, entry_type, time, ledger_date,
             reference, currency, amount, balance_before, balance_after, recipient_handle,
             raw::jsonb, name, masked_phone_no, message
         FROM fresh ORDER BY n
         RETURNING seq, amount, balance_before, balance_after",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .bind(last_seq)
    .bind(&keys);
    let mut rows: Vec<Inserted> = bind_page_columns!(query, e, personal_data)
        .fetch_all(conn)
        .await?;
    rows.sort_unstable_by_key(|r| r.0);
    Ok(rows)
}

/// One personal field of every entry, or all NULL when personal data is not to be stored.
fn personal<'a, E: std::borrow::Borrow<Entry>>(
    entries: &'a [E],
    store: bool,
    field: impl Fn(&'a PersonalData) -> Option<&'a str>,
) -> Vec<Option<&'a str>> {
    entries
        .iter()
        .map(|e| {
            if store {
                field(&e.borrow().personal)
            } else {
                None
            }
        })
        .collect()
}
