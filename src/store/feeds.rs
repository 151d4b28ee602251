//! `feed_cursors`, `entries` and `balance_chain_breaks` as written by the feed walker: a page of
//! entries and the cursor that follows it are committed in one transaction, in a constant
//! number of round trips whatever the page's size.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::leases::{ensure_row, Lease};
pub use super::page_entries::InsertPath;
use super::page_entries::{self, Inserted};
use crate::config::Topic;
use crate::report_api::Entry;

/// Where a (ledger, topic) feed stands.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CursorRow {
    pub ledger_id: String,
    pub topic: String,
    /// The cursor to send next; `None` before the first page.
    pub cursor: Option<String>,
    /// The `seq` of the newest stored entry (0 when none).
    pub last_seq: i64,
    /// `balance_after` of the newest stored entry.
    pub last_balance_after: Option<i64>,
    pub pages: i64,
    pub caught_up_at: Option<DateTime<Utc>>,
    /// Set when the API rejected the stored cursor; the feed waits for `reset-cursor`.
    pub blocked_reason: Option<String>,
}

/// A fetched page to commit.
#[derive(Debug)]
pub struct PageParams<'a> {
    pub ledger_id: &'a str,
    pub topic: Topic,
    /// The cursor the page was fetched with (what the database must still hold).
    pub fetched_with: Option<&'a str>,
    /// The cursor to store.
    pub next_cursor: &'a str,
    /// The lease this page is committed under; the commit renews it.
    pub lease: &'a Lease,
    /// Store the entries' personal fields (`sync.include_gdpr_sensitive_data`).
    pub personal_data: bool,
    pub caught_up: bool,
    pub entries: &'a [Entry],
    /// How the entries are told apart from those already stored: a walk takes
    /// [`InsertPath::Optimistic`] until a page brings entries that were not stored (already
    /// there, or twice in the page), then [`InsertPath::Checked`] until a page brings none.
    pub path: InsertPath,
}

/// What committing a page did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageOutcome {
    /// Entries stored by this page (the others were already there).
    pub inserted: u64,
    /// Balance-chain breaks found among them.
    pub chain_breaks: Vec<ChainBreak>,
    /// Entries that came again with a stored entry's key but different content (recorded in
    /// `entry_conflicts`; the stored entries are untouched).
    pub conflicts: u64,
}

/// A place where the balance chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: i64,
    pub kind: &'static str,
    pub expected: i64,
    pub actual: i64,
}

/// Why a page was not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Another instance took the unit's lease (this one stalled past it); nothing was written.
    #[error("the unit's lease was taken over by another instance (fence {held} is newer than ours, {ours}); this late commit is refused")]
    Fenced { ours: i64, held: i64 },
    /// Another writer moved the cursor since this page was fetched; nothing was written.
    #[error("the stored cursor moved while the page was being fetched (another instance?)")]
    CursorMoved,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The stored position of a feed, if it was ever synced.
pub async fn load_cursor(
    pool: &PgPool,
    ledger_id: &str,
    topic: Topic,
) -> sqlx::Result<Option<CursorRow>> {
    sqlx::query_as(
        "SELECT ledger_id, topic, cursor, last_seq, last_balance_after, pages, caught_up_at,
             blocked_reason
         FROM feed_cursors WHERE ledger_id = $1 AND topic = $2",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .fetch_optional(pool)
    .await
}

/// Marks a feed as caught up without any other change (an empty page at the end), under
/// `lease`; false (nothing written) when the lease was taken over.
pub async fn mark_caught_up(
    pool: &PgPool,
    ledger_id: &str,
    topic: Topic,
    lease: &Lease,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE feed_cursors SET caught_up_at = now()
         WHERE ledger_id = $1 AND topic = $2 AND fence = $3",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .bind(lease.fence)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The `LISTEN` channel woken by every committed page that stored new entries.
pub const NEW_ENTRIES_CHANNEL: &str = "vipps_ledger_sync_entries";

/// Queues a wake-up on [`NEW_ENTRIES_CHANNEL`]; PostgreSQL delivers it when (and only if) the
/// transaction commits. It carries no payload: any login may `LISTEN` on any channel, so a
/// ledger id or a count in it would tell every login of the database about every partner's
/// ledgers. A listener reads what is new with its own rights (row-level security), for
/// example `feed_cursors.last_seq` per feed, then the entries after the `seq` it has seen.
pub(crate) async fn notify_new_entries(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NEW_ENTRIES_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// Stores a page's new entries and its cursor in one transaction. Entries already stored
/// (same entry key) are skipped; new ones get the next `seq` numbers in page order. On
/// [`InsertPath::Optimistic`], a page the database refuses because one of its entries is
/// stored already is rolled back whole and committed again [`InsertPath::Checked`].
pub async fn commit_page(pool: &PgPool, page: &PageParams<'_>) -> Result<PageOutcome, CommitError> {
    if page.path == InsertPath::Optimistic {
        match commit_page_by(pool, page, InsertPath::Optimistic).await {
            Err(CommitError::Database(e)) if page_entries::is_stored_entry_key(&e) => {
                tracing::debug!(
                    "an entry of the page is stored already; the page is committed again, each entry checked"
                );
            }
            done => return done,
        }
    }
    commit_page_by(pool, page, InsertPath::Checked).await
}

/// [`commit_page`] by one path, in one transaction.
async fn commit_page_by(
    pool: &PgPool,
    page: &PageParams<'_>,
    path: InsertPath,
) -> Result<PageOutcome, CommitError> {
    let mut tx = pool.begin().await?;
    ensure_row(&mut *tx, page.ledger_id, page.topic).await?;
    let (current, fence): (CursorRow, i64) = {
        let row: LockedRow = sqlx::query_as(
            "SELECT ledger_id, topic, cursor, last_seq, last_balance_after, pages, caught_up_at,
                 blocked_reason, fence
             FROM feed_cursors WHERE ledger_id = $1 AND topic = $2 FOR UPDATE",
        )
        .bind(page.ledger_id)
        .bind(page.topic.as_str())
        .fetch_one(&mut *tx)
        .await?;
        (row.cursor_row, row.fence)
    };
    if fence != page.lease.fence {
        return Err(CommitError::Fenced {
            ours: page.lease.fence,
            held: fence,
        });
    }
    if current.cursor.as_deref() != page.fetched_with {
        return Err(CommitError::CursorMoved);
    }
    let (ledger, topic, last_seq) = (page.ledger_id, page.topic, current.last_seq);
    let personal = page.personal_data;
    let inserted = match path {
        InsertPath::Optimistic => {
            match page_entries::insert_optimistic(
                &mut tx,
                ledger,
                topic,
                last_seq,
                page.entries,
                personal,
            )
            .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    // Ended here rather than when the connection goes back to the pool, so
                    // that the checked commit that follows finds the feed's row unlocked.
                    tx.rollback().await?;
                    return Err(e.into());
                }
            }
        }
        InsertPath::Checked => {
            page_entries::insert_checked(&mut tx, ledger, topic, last_seq, page.entries, personal)
                .await?
        }
    };
    // Only an entry that was not inserted can conflict with a stored one.
    let conflicts = if inserted.len() < page.entries.len() {
        record_conflicts(&mut tx, page).await?
    } else {
        0
    };
    let (breaks, last_balance) = check_chain(current.last_balance_after, &inserted);
    record_breaks(&mut tx, page, &breaks).await?;
    let last_seq = current.last_seq + inserted.len() as i64;
    sqlx::query(
        "UPDATE feed_cursors SET cursor = $3, last_seq = $4, last_balance_after = $5,
             pages = pages + 1, updated_at = now(), last_success_at = now(),
             lease_expires_at = now() + $7 * interval '1 millisecond',
             consecutive_failures = 0, next_attempt_at = NULL,
             caught_up_at = CASE WHEN $6 THEN now() ELSE caught_up_at END
         WHERE ledger_id = $1 AND topic = $2",
    )
    .bind(page.ledger_id)
    .bind(page.topic.as_str())
    .bind(page.next_cursor)
    .bind(last_seq)
    .bind(last_balance)
    .bind(page.caught_up)
    .bind(page.lease.ttl.as_millis() as f64)
    .execute(&mut *tx)
    .await?;
    if !inserted.is_empty() {
        notify_new_entries(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(PageOutcome {
        inserted: inserted.len() as u64,
        chain_breaks: breaks,
        conflicts,
    })
}

/// The cursor row with its fence, read under lock.
#[derive(sqlx::FromRow)]
struct LockedRow {
    #[sqlx(flatten)]
    cursor_row: CursorRow,
    fence: i64,
}

/// Inserts entries found outside the feed walk (reconciliation) after `last_seq`, without
/// personal data; the caller holds the feed's row lock and moves `last_seq`.
pub async fn insert_unsequenced(
    conn: &mut PgConnection,
    ledger_id: &str,
    topic: Topic,
    last_seq: i64,
    entries: &[Entry],
) -> sqlx::Result<u64> {
    let rows =
        page_entries::insert_checked(conn, ledger_id, topic, last_seq, entries, false).await?;
    Ok(rows.len() as u64)
}

/// Empties the personal fields of entries older than `days` days; returns how many rows.
pub async fn purge_personal_data(pool: &PgPool, days: u32) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE entries SET name = NULL, masked_phone_no = NULL, message = NULL
         WHERE (name IS NOT NULL OR masked_phone_no IS NOT NULL OR message IS NOT NULL)
             AND time < now() - make_interval(days => $1)",
    )
    .bind(days as i32)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Records the page's entries whose key is stored with different content. Runs after the
/// insert, so a key repeated within the page with different content is caught too.
async fn record_conflicts(conn: &mut PgConnection, page: &PageParams<'_>) -> sqlx::Result<u64> {
    if page.entries.is_empty() {
        return Ok(0);
    }
    let keys: Vec<Vec<u8>> = page.entries.iter().map(|e| e.key().to_vec()).collect();
    let raws: Vec<&str> = page.entries.iter().map(|e| e.raw.get()).collect();
    let done = sqlx::query(
        "INSERT INTO entry_conflicts (ledger_id, topic, seq, entry_key, stored_raw, received_raw)
         SELECT e.ledger_id, e.topic, e.seq, e.entry_key, e.raw, i.raw::jsonb
         FROM UNNEST($3::bytea[], $4::text[]) AS i(entry_key, raw)
         JOIN entries e ON e.ledger_id = $1 AND e.topic = $2 AND e.entry_key = i.entry_key
         WHERE e.raw <> i.raw::jsonb
         ON CONFLICT DO NOTHING",
    )
    .bind(page.ledger_id)
    .bind(page.topic.as_str())
    .bind(&keys)
    .bind(&raws)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Checks the new entries in `seq` order against the chain so far; returns the breaks and
/// the new chain end.
fn check_chain(mut last: Option<i64>, inserted: &[Inserted]) -> (Vec<ChainBreak>, Option<i64>) {
    let mut breaks = Vec::new();
    for &(seq, amount, before, after) in inserted {
        if let Some(expected) = last.filter(|&b| b != before) {
            breaks.push(ChainBreak {
                seq,
                kind: "link",
                expected,
                actual: before,
            });
        }
        if before.checked_add(amount) != Some(after) {
            breaks.push(ChainBreak {
                seq,
                kind: "arithmetic",
                expected: before.saturating_add(amount),
                actual: after,
            });
        }
        last = Some(after);
    }
    (breaks, last)
}

async fn record_breaks(
    conn: &mut PgConnection,
    page: &PageParams<'_>,
    breaks: &[ChainBreak],
) -> sqlx::Result<()> {
    if breaks.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO balance_chain_breaks (ledger_id, topic, seq, kind, expected, actual)
         SELECT $1, $2, * FROM UNNEST($3::int8[], $4::text[], $5::int8[], $6::int8[])
         ON CONFLICT DO NOTHING",
    )
    .bind(page.ledger_id)
    .bind(page.topic.as_str())
    .bind(breaks.iter().map(|b| b.seq).collect::<Vec<_>>())
    .bind(breaks.iter().map(|b| b.kind).collect::<Vec<_>>())
    .bind(breaks.iter().map(|b| b.expected).collect::<Vec<_>>())
    .bind(breaks.iter().map(|b| b.actual).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_check_reports_links_and_arithmetic() {
        let rows = [
            (1, 100, 0, 100),
            (2, -40, 100, 60),
            (3, 10, 70, 80),
            (4, 5, 80, 99),
        ];
        let (breaks, last) = check_chain(None, &rows);
        assert_eq!(last, Some(99));
        assert_eq!(
            breaks,
            vec![
                ChainBreak {
                    seq: 3,
                    kind: "link",
                    expected: 60,
                    actual: 70
                },
                ChainBreak {
                    seq: 4,
                    kind: "arithmetic",
                    expected: 85,
                    actual: 99
                },
            ]
        );
        let (breaks, _) = check_chain(Some(5), &rows[..1]);
        assert_eq!(breaks[0].kind, "link");
    }
}
