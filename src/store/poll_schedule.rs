//! Each feed's polling schedule (migration 0018): what the adaptive schedule
//! (`sync::schedule`) reads before it plans a feed's next poll, and the feeds due.
//!
//! Every time here comes from the caller (`now`), not the database's clock, so the schedule
//! can be tested with a clock of the test's own.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;

use crate::config::Topic;

/// What a feed's schedule is planned from.
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow)]
pub struct FeedState {
    /// The interval planned at its last poll (none before its first).
    pub poll_interval_secs: Option<i32>,
    /// How long the feed takes to get news (none until two polls stored entries).
    pub news_gap_secs: Option<f64>,
    /// When a poll last stored entries.
    pub last_news_at: Option<DateTime<Utc>>,
    /// The regular poll planned at its last poll.
    pub next_poll_at: Option<DateTime<Utc>>,
    /// The ledger date of its newest stored entry…
    pub newest_date: Option<NaiveDate>,
    /// …and whether that date has reconciled (closed).
    pub newest_date_closed: bool,
    /// While the time between its news is unknown: of its newest [`HISTORY_ENTRIES`] stored
    /// entries, how many have a `time` in the week before the poll…
    pub recent_entries: i64,
    /// …the earliest of those times…
    pub recent_since: Option<DateTime<Utc>>,
    /// …and the time of its newest entry (for a feed quiet all week).
    pub newest_time: Option<DateTime<Utc>>,
}

/// The stored entries a feed's history is judged by when the time between its news is not
/// yet known (its first poll under the schedule): the newest ones, by feed order.
pub const HISTORY_ENTRIES: i64 = 100;

/// A feed's state at `now`, before its poll is planned.
pub async fn state(
    pool: &PgPool,
    ledger_id: &str,
    topic: Topic,
    now: DateTime<Utc>,
) -> sqlx::Result<FeedState> {
    let found: Option<FeedState> = sqlx::query_as(
        "SELECT c.poll_interval_secs, c.news_gap_secs, c.last_news_at, c.next_poll_at,
                e.ledger_date AS newest_date,
                EXISTS (SELECT 1 FROM reconciliations r
                        WHERE r.ledger_id = c.ledger_id AND r.topic = c.topic
                          AND r.ledger_date = e.ledger_date AND r.status = 'ok')
                    AS newest_date_closed,
                coalesce(h.recent_entries, 0) AS recent_entries, h.recent_since,
                e.time AS newest_time
         FROM feed_cursors c
         LEFT JOIN entries e ON e.ledger_id = c.ledger_id AND e.topic = c.topic
                            AND e.seq = c.last_seq
         LEFT JOIN LATERAL (
             SELECT count(*) FILTER (WHERE n.time > $3 - interval '7 days') AS recent_entries,
                    min(n.time) FILTER (WHERE n.time > $3 - interval '7 days') AS recent_since
             FROM (SELECT time FROM entries
                   WHERE ledger_id = c.ledger_id AND topic = c.topic
                   ORDER BY seq DESC LIMIT $4) n) h ON c.news_gap_secs IS NULL
         WHERE c.ledger_id = $1 AND c.topic = $2",
    )
    .bind(ledger_id)
    .bind(topic.as_str())
    .bind(now)
    .bind(HISTORY_ENTRIES)
    .fetch_optional(pool)
    .await?;
    Ok(found.unwrap_or_default())
}

/// A poll at `now` and the next one planned.
#[derive(Debug, Clone, Copy)]
pub struct Polled<'a> {
    pub ledger_id: &'a str,
    pub topic: Topic,
    pub now: DateTime<Utc>,
    /// It stored entries.
    pub news: bool,
    pub interval_secs: i32,
    pub news_gap_secs: Option<f64>,
    pub next_poll_at: DateTime<Utc>,
    pub wake_at: Option<DateTime<Utc>>,
}

/// Records a poll and the next one planned.
pub async fn record(pool: &PgPool, p: &Polled<'_>) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO feed_polls (polled_at) VALUES ($1)")
        .bind(p.now)
        .execute(pool)
        .await?;
    sqlx::query(
        "UPDATE feed_cursors SET poll_interval_secs = $3, next_poll_at = $4, polled_at = $5,
                last_news_at = CASE WHEN $6 THEN $5 ELSE last_news_at END, news_gap_secs = $7,
                wake_at = $8
         WHERE ledger_id = $1 AND topic = $2",
    )
    .bind(p.ledger_id)
    .bind(p.topic.as_str())
    .bind(p.interval_secs)
    .bind(p.next_poll_at)
    .bind(p.now)
    .bind(p.news)
    .bind(p.news_gap_secs)
    .bind(p.wake_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// A feed due: its ledger, topic, and the partners holding an open grant (oldest first).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DueFeed {
    pub ledger_id: String,
    pub topic: String,
    pub holders: Vec<String>,
}

/// Up to `limit` feeds of ledgers with an open grant that are due at `now` (their regular
/// poll or their wake-up has come), in this order: feeds never polled (a new grant's); feeds
/// at their deadline, longest past it first: a feed's regular poll may slip by the maximum
/// less its interval (so none waits longer than `max_wait` since its last poll, however busy
/// the others are, as long as the budget covers every feed once per `max_wait`; and feeds
/// whose next polls were spread keep spread deadlines); then the most likely to have news:
/// the most entries expected since the last poll (the time since, over the time between its
/// entries), one more for a woken feed (its date's last entries and payout), then the
/// shortest interval. A wake-up alone never makes a deadline: after midnight, thousands of
/// woken feeds wait behind the feeds due, and behind busy feeds expecting more than one
/// entry. Blocked feeds and feeds backing off after failures are left out.
pub async fn due(
    pool: &PgPool,
    now: DateTime<Utc>,
    topics: &[String],
    max_wait: std::time::Duration,
    limit: i64,
) -> sqlx::Result<Vec<DueFeed>> {
    sqlx::query_as(
        "WITH open AS (
             SELECT ledger_id, array_agg(partner ORDER BY granted_seen_at, partner) AS holders
             FROM grants WHERE revoked_seen_at IS NULL GROUP BY ledger_id)
         SELECT o.ledger_id, t.topic, o.holders
         FROM open o CROSS JOIN unnest($2::text[]) t(topic)
         LEFT JOIN feed_cursors c ON c.ledger_id = o.ledger_id AND c.topic = t.topic
         CROSS JOIN LATERAL (
             SELECT least(c.next_poll_at
                              + make_interval(secs => greatest($4 - c.poll_interval_secs, 0)),
                          c.polled_at + make_interval(secs => $4)) AS deadline) d
         WHERE c.ledger_id IS NULL
            OR ((c.next_poll_at IS NULL OR c.next_poll_at <= $1 OR c.wake_at <= $1)
                AND (c.next_attempt_at IS NULL OR c.next_attempt_at <= $1)
                AND c.blocked_at IS NULL)
         ORDER BY c.next_poll_at IS NOT NULL,
                  coalesce(d.deadline <= $1, true) DESC,
                  CASE WHEN d.deadline <= $1 THEN d.deadline END,
                  coalesce(extract(epoch FROM $1 - c.polled_at)
                               / greatest(coalesce(c.news_gap_secs, c.poll_interval_secs), 1),
                           1e9)
                      + CASE WHEN c.wake_at <= $1 THEN 1 ELSE 0 END DESC,
                  c.poll_interval_secs, o.ledger_id, t.topic
         LIMIT $3",
    )
    .bind(now)
    .bind(topics)
    .bind(limit)
    .bind(max_wait.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// Feeds of ledgers with an open grant left alone at `now` while they back off after
/// failures (`next_attempt_at`).
pub async fn backing_off(pool: &PgPool, now: DateTime<Utc>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM feed_cursors c
         WHERE c.next_attempt_at > $1
           AND EXISTS (SELECT 1 FROM grants g
                       WHERE g.ledger_id = c.ledger_id AND g.revoked_seen_at IS NULL)",
    )
    .bind(now)
    .fetch_one(pool)
    .await
}

/// Forgets the polls older than two hours (every pass does it, whatever its polling, so
/// `feed_polls` holds at most two hours of polls).
pub async fn prune(pool: &PgPool, now: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM feed_polls WHERE polled_at < $1 - interval '2 hours'")
        .bind(now)
        .execute(pool)
        .await?;
    Ok(())
}

/// Polls in the hour before `now`, by any instance (a feed polled twice counts twice): what
/// `sync.polls_per_hour` has left. Polls older than two hours are pruned on the way.
pub async fn polled_in_last_hour(pool: &PgPool, now: DateTime<Utc>) -> sqlx::Result<i64> {
    prune(pool, now).await?;
    sqlx::query_scalar(
        "SELECT count(*) FROM feed_polls
         WHERE polled_at > $1 - interval '1 hour' AND polled_at <= $1",
    )
    .bind(now)
    .fetch_one(pool)
    .await
}

/// The schedule at `now`, for `status` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct ScheduleSummary {
    /// Ledgers with an open grant: the schedule polls a feed of each per configured topic.
    pub ledgers: i64,
    /// Feeds of open grants due now, by their regular poll or a wake-up (or never polled).
    pub due: i64,
    /// Of those, due for longer than their own interval.
    pub overdue: i64,
    /// Feeds by interval: up to 5 minutes, an hour, 6 hours, longer.
    pub interval_5m: i64,
    pub interval_1h: i64,
    pub interval_6h: i64,
    pub interval_longer: i64,
    pub polled_last_hour: i64,
}

pub async fn summary(
    conn: &mut sqlx::PgConnection,
    now: DateTime<Utc>,
) -> sqlx::Result<ScheduleSummary> {
    sqlx::query_as(
        "SELECT (SELECT count(DISTINCT g.ledger_id) FROM grants g
                 WHERE g.revoked_seen_at IS NULL) AS ledgers,
                count(*) FILTER (WHERE c.next_poll_at IS NULL OR c.next_poll_at <= $1
                                       OR c.wake_at <= $1) AS due,
                count(*) FILTER (WHERE c.next_poll_at + make_interval(secs => c.poll_interval_secs) <= $1)
                    AS overdue,
                count(*) FILTER (WHERE c.poll_interval_secs <= 300) AS interval_5m,
                count(*) FILTER (WHERE c.poll_interval_secs > 300 AND c.poll_interval_secs <= 3600)
                    AS interval_1h,
                count(*) FILTER (WHERE c.poll_interval_secs > 3600 AND c.poll_interval_secs <= 21600)
                    AS interval_6h,
                count(*) FILTER (WHERE c.poll_interval_secs > 21600) AS interval_longer,
                (SELECT count(*) FROM feed_polls
                 WHERE polled_at > $1 - interval '1 hour' AND polled_at <= $1) AS polled_last_hour
         FROM feed_cursors c
         WHERE EXISTS (SELECT 1 FROM grants g
                       WHERE g.ledger_id = c.ledger_id AND g.revoked_seen_at IS NULL)",
    )
    .bind(now)
    .fetch_one(conn)
    .await
}
