//! The export log of the scheduled exporters: which closed ledger dates are due, and each
//! (exporter, ledger, date)'s way from `pending` through `writing` to `exported` (or `held`,
//! or `failed` and tried again after a pause).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};

/// A closed ledger date an exporter has not delivered yet.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DueDate {
    pub ledger_id: String,
    pub ledger_date: NaiveDate,
    /// Reconciliation found a mismatch: held back until it reconciles cleanly.
    pub held: bool,
    /// Per topic: its reconciliation status (`funds: ok, fees: mismatch`); for a payout, of
    /// each covered date that holds it back.
    pub reconciliation: String,
    /// Per-payout exporters: the payout's reference (`ledger_date` is then its last ledger
    /// date, the date of its `payout-scheduled` entry).
    #[sqlx(default)]
    pub payout: Option<String>,
    /// Per-payout exporters: the `seq` of the payout's entry on `funds` (pages go by it).
    #[sqlx(default)]
    pub payout_seq: i64,
    /// Per-payout exporters: a ledger date the payout covers has not closed yet, so it is not
    /// delivered yet (and not held: nothing is wrong).
    #[sqlx(default)]
    pub waiting: bool,
}

impl DueDate {
    /// `<ledger> <date>`, or `<ledger> <date> payout <reference>`: for logs and reports.
    pub fn label(&self) -> String {
        match &self.payout {
            None => format!("{} {}", self.ledger_id, self.ledger_date),
            Some(p) => format!("{} {} payout {p}", self.ledger_id, self.ledger_date),
        }
    }
}

/// Which ledgers and dates an exporter covers.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    pub exporter: &'a str,
    pub ledgers: &'a [String],
    pub partner: Option<&'a str>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// The topics the daemon syncs: each must be complete for a date before it is exported.
    pub topics: &'a [String],
    /// Dates already exported too (`export --force`).
    pub include_exported: bool,
}

/// How many dates due an exporter's pass reads at a time.
pub const DUE_PAGE: i64 = 500;

/// Where a page of [`due`] dates starts: after this (ledger, date); a page of
/// [`due_payouts`], after this (ledger, payout seq).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueAfter {
    pub ledger_id: String,
    pub ledger_date: NaiveDate,
    pub seq: i64,
}

impl DueAfter {
    /// Before every ledger's first date (ledger ids are never empty).
    pub fn start() -> Self {
        DueAfter {
            ledger_id: String::new(),
            // PostgreSQL's `date` cannot hold chrono's `NaiveDate::MIN`.
            ledger_date: NaiveDate::from_ymd_opt(1, 1, 1).expect("a valid date"),
            seq: 0,
        }
    }

    /// After `date`: where the page following it starts.
    pub fn of(date: &DueDate) -> Self {
        DueAfter {
            ledger_id: date.ledger_id.clone(),
            ledger_date: date.ledger_date,
            seq: date.payout_seq,
        }
    }
}

/// Per (ledger, date), over its `reconciliations` rows `r`: `all_ok`, `held` (a mismatch),
/// `reconciliation` (per topic, for people), `topics` and `checked_at`. With
/// [`date_complete`], the one rule of when a date has closed, for dates and payouts alike.
macro_rules! date_reconciliation {
    () => {
        "bool_and(r.status = 'ok') AS all_ok,
         bool_or(r.status = 'mismatch') AS held,
         string_agg(r.topic || ': ' || r.status, ', ' ORDER BY r.topic) AS reconciliation,
         array_agg(r.topic) AS topics,
         max(r.checked_at) AS checked_at"
    };
}

/// A date `d` (a [`date_reconciliation`] row) holds every entry of every synced topic (`$6`):
/// each topic not reconciled for it was read to its end after the date was checked.
macro_rules! date_complete {
    () => {
        "NOT EXISTS (
             SELECT 1 FROM unnest($6::text[]) t(topic)
             WHERE NOT t.topic = ANY(d.topics)
               AND NOT EXISTS (SELECT 1 FROM feed_cursors f
                   WHERE f.ledger_id = d.ledger_id AND f.topic = t.topic
                     AND f.caught_up_at > d.checked_at))"
    };
}

/// Up to `limit` closed dates in `scope` after `after` not yet exported (or all closed ones,
/// with `include_exported`), by ledger and date: a pass reads them page by page, so a new
/// exporter over years of history holds one page in memory, not the whole history. A date is
/// closed once every reconciled topic of it is `ok` and every other synced topic of the
/// ledger was read to its end after that (so it holds every entry of the date too); a date
/// with a `mismatch` is returned as held. With a partner, only dates it may see whole: checked
/// (last) within one of its grant periods on the ledger.
///
/// The dates already exported are left out before grouping, by a merge of two indexes in
/// (ledger, date) order from the page's start (migration 0010): `vls-bench --exporter-due`
/// measures it.
pub async fn due(
    pool: &PgPool,
    scope: &Scope<'_>,
    after: &DueAfter,
    limit: i64,
) -> sqlx::Result<Vec<DueDate>> {
    sqlx::query_as(concat!(
        "WITH per_date AS (
             SELECT r.ledger_id, r.ledger_date, ",
        date_reconciliation!(),
        "
             FROM reconciliations r
             LEFT JOIN export_log x
                    ON x.ledger_id = r.ledger_id AND x.ledger_date = r.ledger_date
                   AND x.exporter = $1 AND x.status = 'exported'
                   AND (x.ledger_id, x.ledger_date) > ($8, $9)
             WHERE ($7 OR x.ledger_id IS NULL)
               AND (r.ledger_id, r.ledger_date) > ($8, $9)
               AND (cardinality($2::text[]) = 0 OR r.ledger_id = ANY($2))
               AND ($4::date IS NULL OR r.ledger_date >= $4)
               AND ($5::date IS NULL OR r.ledger_date <= $5)
             GROUP BY r.ledger_id, r.ledger_date
         )
         SELECT d.ledger_id, d.ledger_date, d.held, d.reconciliation
         FROM per_date d
         WHERE (d.all_ok OR d.held)
           AND (d.held OR ",
        date_complete!(),
        ")
           AND ($3::text IS NULL OR ",
        // A reconciled date held every entry of it when it was checked: in the partner's
        // scope if checked within one of its grant periods (then it sees all of the date).
        consented!("$3", "d", "checked_at"),
        ")
         ORDER BY d.ledger_id, d.ledger_date
         LIMIT $10",
    ))
    .bind(scope.exporter)
    .bind(scope.ledgers)
    .bind(scope.partner)
    .bind(scope.from)
    .bind(scope.to)
    .bind(scope.topics)
    .bind(scope.include_exported)
    .bind(&after.ledger_id)
    .bind(after.ledger_date)
    .bind(limit)
    // Planned for these parameters every time (an unnamed statement): with `$7` known, the
    // join becomes a merge anti-join of the two indexes, which a generic plan cannot be.
    .persistent(false)
    .fetch_all(pool)
    .await
}

/// Up to `limit` payouts in `scope` after `after` (ledger, payout seq) that the exporter has
/// not delivered yet (or all, with `include_exported`), by ledger and payout, for the
/// per-payout exporters; `ledger_date` is the payout's last ledger date, and `from`/`to`
/// select on it. Each payout comes with its state: `held` if a ledger date its funds entries
/// are on found a mismatch (`reconciliation` says which), `waiting` if one of them has not
/// closed yet (the same rule as [`due`]: every synced topic of the date reconciled `ok`, or
/// read to its end after the date was checked), else ready. Its fees are on the fees feed of
/// the same dates, which closing covers too. With a partner, only payouts whose entry was
/// recorded within one of its grant periods (as `export --kind payouts --partner`).
pub async fn due_payouts(
    pool: &PgPool,
    scope: &Scope<'_>,
    after: &DueAfter,
    limit: i64,
) -> sqlx::Result<Vec<DueDate>> {
    sqlx::query_as(concat!(
        "WITH p AS (
             SELECT t.ledger_id, t.payout_reference, t.first_seq, t.last_seq, t.last_ledger_date
             FROM payouts t
             JOIN entries pe ON pe.ledger_id = t.ledger_id AND pe.topic = 'funds'
                            AND pe.seq = t.last_seq
             WHERE (t.ledger_id, t.last_seq) > ($8, $9)
               AND (cardinality($2::text[]) = 0 OR t.ledger_id = ANY($2))
               AND ($4::date IS NULL OR t.last_ledger_date >= $4)
               AND ($5::date IS NULL OR t.last_ledger_date <= $5)
               AND ($7 OR NOT EXISTS (
                   SELECT 1 FROM export_log x
                   WHERE x.exporter = $1 AND x.ledger_id = t.ledger_id
                     AND x.ledger_date = t.last_ledger_date
                     AND x.payout_reference = t.payout_reference AND x.status = 'exported'))
               AND ($3::text IS NULL OR ",
        consented!("$3", "pe", "synced_at"),
        ")
             ORDER BY t.ledger_id, t.last_seq
             LIMIT $10
         ),
         covered AS (
             SELECT DISTINCT p.ledger_id, p.last_seq, e.ledger_date
             FROM p JOIN entries e ON e.ledger_id = p.ledger_id AND e.topic = 'funds'
                                  AND e.seq BETWEEN p.first_seq AND p.last_seq
         ),
         per_date AS (
             SELECT r.ledger_id, r.ledger_date, ",
        date_reconciliation!(),
        "
             FROM reconciliations r
             WHERE (r.ledger_id, r.ledger_date) IN (SELECT ledger_id, ledger_date FROM covered)
             GROUP BY r.ledger_id, r.ledger_date
         ),
         state AS (
             SELECT c.ledger_id, c.last_seq, c.ledger_date, d.reconciliation,
                    coalesce(d.held, false) AS held,
                    coalesce(d.all_ok AND ",
        date_complete!(),
        ", false) AS closed
             FROM covered c LEFT JOIN per_date d USING (ledger_id, ledger_date)
         )
         SELECT p.ledger_id, p.last_ledger_date AS ledger_date, p.payout_reference AS payout,
                p.last_seq AS payout_seq,
                bool_or(s.held) AS held,
                NOT bool_or(s.held) AND NOT bool_and(s.closed) AS waiting,
                coalesce(string_agg(s.ledger_date || ' ' || s.reconciliation, '; '
                                    ORDER BY s.ledger_date) FILTER (WHERE s.held),
                         'ok') AS reconciliation
         FROM p JOIN state s ON s.ledger_id = p.ledger_id AND s.last_seq = p.last_seq
         GROUP BY p.ledger_id, p.last_ledger_date, p.payout_reference, p.last_seq
         ORDER BY p.ledger_id, p.last_seq",
    ))
    .bind(scope.exporter)
    .bind(scope.ledgers)
    .bind(scope.partner)
    .bind(scope.from)
    .bind(scope.to)
    .bind(scope.topics)
    .bind(scope.include_exported)
    .bind(&after.ledger_id)
    .bind(after.seq)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// An export log row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LogRow {
    pub exporter: String,
    pub ledger_id: String,
    pub ledger_date: NaiveDate,
    /// Empty for a ledger date; the payout's reference for per-payout exporters.
    pub payout_reference: String,
    pub kind: String,
    pub status: String,
    pub target: Option<String>,
    pub checksum: Option<String>,
    pub entries: i32,
    pub attempts: i32,
    pub forced: i32,
    pub last_error: Option<String>,
    pub exported_at: Option<DateTime<Utc>>,
    /// Failed attempts in a row; the ledger's dates wait until `retry_at`.
    pub failures: i32,
    pub retry_at: Option<DateTime<Utc>>,
    /// 0 for the first delivery, then 1, 2, … (migration 0014).
    pub revision: i32,
}

/// One (exporter, ledger, date).
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    pub exporter: &'a str,
    pub ledger_id: &'a str,
    pub ledger_date: NaiveDate,
    /// The payout's reference for per-payout exporters, empty for the date exporters.
    pub payout: &'a str,
    pub kind: &'a str,
    /// The partner the exporter delivers for (its `partner` key), recorded so that partner's
    /// finance readers see the row.
    pub partner: Option<&'a str>,
}

pub async fn get(pool: &PgPool, key: &Key<'_>) -> sqlx::Result<Option<LogRow>> {
    sqlx::query_as(
        "SELECT exporter, ledger_id, ledger_date, payout_reference, kind, status, target,
                checksum, entries, attempts, forced, last_error, exported_at, failures, retry_at,
                revision
         FROM export_log WHERE exporter = $1 AND ledger_id = $2 AND ledger_date = $3
                           AND payout_reference = $4",
    )
    .bind(key.exporter)
    .bind(key.ledger_id)
    .bind(key.ledger_date)
    .bind(key.payout)
    .fetch_optional(pool)
    .await
}

/// Every row of an exporter (or of all), by exporter, ledger and date.
pub async fn list(pool: &PgPool, exporter: Option<&str>) -> sqlx::Result<Vec<LogRow>> {
    sqlx::query_as(
        "SELECT exporter, ledger_id, ledger_date, payout_reference, kind, status, target,
                checksum, entries, attempts, forced, last_error, exported_at, failures, retry_at,
                revision
         FROM export_log WHERE ($1::text IS NULL OR exporter = $1)
         ORDER BY exporter, ledger_id, ledger_date, payout_reference",
    )
    .bind(exporter)
    .fetch_all(pool)
    .await
}

/// Records that the date is held back (reconciliation mismatch); a no-op once exported.
pub async fn hold(pool: &PgPool, key: &Key<'_>, reason: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO export_log
             (exporter, ledger_id, ledger_date, kind, status, last_error, partner, payout_reference)
         VALUES ($1, $2, $3, $4, 'held', $5, $6, $7)
         ON CONFLICT (exporter, ledger_id, ledger_date, payout_reference) DO UPDATE
             SET status = 'held', last_error = $5, partner = $6, updated_at = now()
             WHERE export_log.status <> 'exported'",
    )
    .bind(key.exporter)
    .bind(key.ledger_id)
    .bind(key.ledger_date)
    .bind(key.kind)
    .bind(reason)
    .bind(key.partner)
    .bind(key.payout)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records, before delivery starts, what is about to be delivered where: from here on a run
/// that stops finishes this delivery rather than producing the date again.
pub async fn start_writing(
    pool: &PgPool,
    key: &Key<'_>,
    target: &str,
    checksum: &str,
    entries: i32,
    revision: i32,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO export_log
             (exporter, ledger_id, ledger_date, kind, status, target, checksum, entries, attempts,
              partner, revision, payout_reference)
         VALUES ($1, $2, $3, $4, 'writing', $5, $6, $7, 1, $8, $9, $10)
         ON CONFLICT (exporter, ledger_id, ledger_date, payout_reference) DO UPDATE
             SET status = 'writing', kind = $4, target = $5, checksum = $6, entries = $7,
                 attempts = export_log.attempts + 1, exported_at = NULL, partner = $8,
                 revision = $9, updated_at = now()",
    )
    .bind(key.exporter)
    .bind(key.ledger_id)
    .bind(key.ledger_date)
    .bind(key.kind)
    .bind(target)
    .bind(checksum)
    .bind(entries)
    .bind(key.partner)
    .bind(revision)
    .bind(key.payout)
    .execute(pool)
    .await?;
    Ok(())
}

/// The revision a new delivery of `existing` carries: the same as a delivery left `writing`
/// (finishing it, or sending it again under the same key), one more than a delivered one
/// (`--force`, a corrected date), else the row's own (0 until first delivered).
pub fn next_revision(existing: Option<&LogRow>) -> i32 {
    match existing {
        None => 0,
        Some(row) if row.status == "exported" => row.revision + 1,
        Some(row) => row.revision,
    }
}

/// Marks the delivery done.
pub async fn exported(pool: &PgPool, key: &Key<'_>, forced: bool) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE export_log SET status = 'exported', exported_at = now(), last_error = NULL,
                forced = forced + CASE WHEN $4 THEN 1 ELSE 0 END, failures = 0, retry_at = NULL,
                updated_at = now()
         WHERE exporter = $1 AND ledger_id = $2 AND ledger_date = $3 AND payout_reference = $5",
    )
    .bind(key.exporter)
    .bind(key.ledger_id)
    .bind(key.ledger_date)
    .bind(forced)
    .bind(key.payout)
    .execute(pool)
    .await?;
    Ok(())
}

/// The pause after the first failed delivery of a date; it doubles with each failure in a row
/// up to [`FAILED_RETRY_MAX`] (README, "Exporting").
pub const FAILED_RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(60);
pub const FAILED_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(3600);

/// Records a failed delivery: `failed`, with the error and when it may be tried again
/// ([`FAILED_RETRY_FIRST`], doubling, at most [`FAILED_RETRY_MAX`]); the ledger's later dates
/// wait for it. What a delivery that got as far as `writing` recorded (target, checksum,
/// revision) stays, so the next attempt finishes that delivery rather than making another.
pub async fn failed(pool: &PgPool, key: &Key<'_>, error: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO export_log
             (exporter, ledger_id, ledger_date, kind, status, attempts, last_error, partner,
              failures, retry_at, payout_reference)
         VALUES ($1, $2, $3, $4, 'failed', 1, $5, $6, 1, now() + make_interval(secs => $7), $9)
         ON CONFLICT (exporter, ledger_id, ledger_date, payout_reference) DO UPDATE
             SET status = CASE WHEN export_log.status = 'exported'
                               THEN 'exported' ELSE 'failed' END,
                 last_error = $5, failures = export_log.failures + 1,
                 retry_at = now() + make_interval(secs => least(
                     $7 * power(2, least(export_log.failures, 30)), $8)),
                 updated_at = now()",
    )
    .bind(key.exporter)
    .bind(key.ledger_id)
    .bind(key.ledger_date)
    .bind(key.kind)
    .bind(error)
    .bind(key.partner)
    .bind(FAILED_RETRY_FIRST.as_secs_f64())
    .bind(FAILED_RETRY_MAX.as_secs_f64())
    .bind(key.payout)
    .execute(pool)
    .await?;
    Ok(())
}

/// The ledgers whose delivery failed recently for `exporter`: a scheduled pass leaves all of
/// their dates until `retry_at`, keeping each ledger's dates in order.
pub async fn waiting_ledgers(pool: &PgPool, exporter: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT DISTINCT ledger_id FROM export_log
         WHERE exporter = $1 AND retry_at IS NOT NULL AND retry_at > now()",
    )
    .bind(exporter)
    .fetch_all(pool)
    .await
}

/// Takes the exporter's lock for one pass, so two instances never run the same exporter at
/// once; false if another holds it. Session-level: it goes with the connection if the process
/// dies, and [`unlock`] releases it.
pub async fn try_lock(conn: &mut PgConnection, exporter: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('vls-exporter'), hashtext($1))")
        .bind(exporter)
        .fetch_one(conn)
        .await
}

pub async fn unlock(conn: &mut PgConnection, exporter: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_unlock(hashtext('vls-exporter'), hashtext($1))")
        .bind(exporter)
        .execute(conn)
        .await?;
    Ok(())
}

/// Per exporter and status: how many dates, and (for `held` and `pending`) the oldest few with
/// their reason, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct StatusCount {
    pub exporter: String,
    pub status: String,
    pub dates: i64,
    /// Up to five `<ledger> <date>: <reason>` lines (not for `exported`).
    pub examples: Vec<String>,
}

pub async fn status_counts(pool: &PgPool) -> sqlx::Result<Vec<StatusCount>> {
    sqlx::query_as(
        "SELECT exporter, status, count(*) AS dates,
                coalesce((array_agg(ledger_id || ' ' || ledger_date
                                    || CASE WHEN payout_reference = '' THEN ''
                                            ELSE ' payout ' || payout_reference END
                                    || ': ' || coalesce(last_error, status)
                          ORDER BY ledger_date, ledger_id)
                          FILTER (WHERE status <> 'exported'))[1:5], '{}') AS examples
         FROM export_log GROUP BY exporter, status ORDER BY exporter, status",
    )
    .fetch_all(pool)
    .await
}
