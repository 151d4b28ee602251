//! The feed walker: one (ledger, topic) unit, from its stored cursor to the feed's current
//! end (`tryLater`), committing every page with its cursor. Stops between pages when asked.

use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::SyncContext;
use crate::config::Topic;
use crate::report_api::{ApiError, PartnerClient};
use crate::retry::RetryPolicy;
use crate::store::feeds::{self, CommitError, InsertPath, PageParams};
use crate::store::leases::Lease;

/// Why a walk stopped short, classified for the caller.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// 404: the ledger is not (or no longer) shared with this partner.
    #[error("the ledger is not shared with this partner (HTTP 404): {0}")]
    NotShared(String),
    /// The partner's keys or token were refused.
    #[error("the partner's keys were refused: {0}")]
    PartnerKeys(String),
    /// Another instance took the unit over (this one stalled past its lease).
    #[error("{0}")]
    LeaseLost(String),
    /// The API refused the stored cursor; the feed must not be restarted silently.
    #[error("the API rejected the stored cursor {cursor}: {error}")]
    CursorRejected { cursor: String, error: String },
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// What walking one feed did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitOutcome {
    pub pages: u64,
    pub inserted: u64,
    pub chain_breaks: u64,
    pub conflicts: u64,
    /// Stopped early because shutdown was requested.
    pub interrupted: bool,
}

/// Walks `ledger_id`'s `topic` feed to its current end under `lease`. While a page is being
/// committed, the next one is already being fetched with the cursor the page returned (the
/// cursor allows it: it is known before the commit); if the commit fails, that page is
/// dropped unused.
pub async fn walk_feed(
    ctx: &SyncContext,
    partner: &PartnerClient,
    ledger_id: &str,
    topic: Topic,
    lease: &Lease,
    cancel: &CancellationToken,
) -> Result<UnitOutcome, WalkError> {
    let retry = RetryPolicy::from(&ctx.settings.retry);
    // `stored` is the cursor as committed; `cursor` the walk's position, ahead of it after
    // pages without entries, which are not committed on their own: a feed handing out
    // fresh cursors with nothing behind them leaves the stored cursor where it was.
    let mut stored = feeds::load_cursor(&ctx.pool, ledger_id, topic)
        .await
        .context("loading the stored cursor")?
        .and_then(|row| row.cursor);
    let mut cursor = stored.clone();
    let limits = &ctx.settings.limits;
    let mut outcome = UnitOutcome::default();
    let mut stalls = 0;
    let mut empty = 0;
    let mut cursors = crate::report_api::walk::Cursors::default();
    let mut prefetched = None;
    // Pages of new entries are inserted without a lookup of each among the stored ones;
    // after a page that brought some already stored, the next is checked entry by entry.
    let mut path = InsertPath::Optimistic;
    loop {
        if cancel.is_cancelled() {
            outcome.interrupted = true;
            return Ok(outcome);
        }
        let shown = cursor.as_deref().map(short);
        let at = shown.as_deref().unwrap_or("(start of feed)");
        if outcome.pages >= limits.max_pages_per_feed {
            return Err(anyhow::anyhow!(
                "the feed did not reach its end within limits.max_pages_per_feed ({} pages) in this pass; what was read is stored, and the next pass goes on from cursor {at}",
                limits.max_pages_per_feed
            )
            .into());
        }
        let fetched = match prefetched.take() {
            Some(result) => result,
            None => partner.feed(ledger_id, topic, cursor.as_deref()).await,
        };
        let page = fetched.map_err(|e| classify(e, cursor.as_deref()))?;
        let same_cursor = cursor.as_deref() == Some(page.cursor.as_str());
        if page.items.is_empty() && same_cursor && page.try_later && stored == cursor {
            let marked = feeds::mark_caught_up(&ctx.pool, ledger_id, topic, lease)
                .await
                .context("marking the feed caught up")?;
            if !marked {
                return Err(WalkError::LeaseLost(
                    "marking the feed caught up was refused: another instance holds the unit now"
                        .to_owned(),
                ));
            }
            return Ok(outcome);
        }
        let skip = page.items.is_empty() && !page.try_later;
        let committed = if skip {
            Default::default()
        } else {
            let params = PageParams {
                ledger_id,
                topic,
                fetched_with: stored.as_deref(),
                next_cursor: &page.cursor,
                lease,
                personal_data: ctx.settings.sync.include_gdpr_sensitive_data,
                caught_up: page.try_later,
                entries: &page.items,
                path,
            };
            let commit = feeds::commit_page(&ctx.pool, &params);
            let result = if page.try_later {
                commit.await
            } else {
                let next = partner.feed(ledger_id, topic, Some(&page.cursor));
                let (result, next) = tokio::join!(commit, next);
                prefetched = Some(next);
                result
            };
            match result {
                Ok(committed) => {
                    let (n, conflicts) = (committed.inserted, committed.conflicts);
                    ctx.metrics.page_committed(topic, n, conflicts);
                    stored = Some(page.cursor.clone());
                    path = if n < page.items.len() as u64 {
                        InsertPath::Checked
                    } else {
                        InsertPath::Optimistic
                    };
                    committed
                }
                Err(CommitError::Fenced { ours, held }) => {
                    return Err(WalkError::LeaseLost(format!(
                        "the page fetched at cursor {at} was not stored: another instance holds the unit now (fence {held}, ours {ours})"
                    )))
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("storing the page fetched at cursor {at}"))
                        .into())
                }
            }
        };
        outcome.pages += 1;
        outcome.inserted += committed.inserted;
        ctx.progress.entries_stored(ledger_id, committed.inserted);
        outcome.chain_breaks += committed.chain_breaks.len() as u64;
        outcome.conflicts += committed.conflicts;
        if committed.conflicts > 0 {
            tracing::warn!(
                conflicts = committed.conflicts,
                cursor = at,
                "entries came again with different content; both versions are in entry_conflicts, the stored ones are unchanged"
            );
        }
        for b in &committed.chain_breaks {
            tracing::warn!(
                seq = b.seq,
                kind = b.kind,
                expected = b.expected,
                actual = b.actual,
                "balance chain break"
            );
        }
        if page.try_later {
            return Ok(outcome);
        }
        // Pages with nothing in them that never say "caught up": a feed handing out fresh
        // cursors with nothing behind them would otherwise be walked forever.
        empty = if page.items.is_empty() { empty + 1 } else { 0 };
        if empty >= limits.max_empty_pages {
            return Err(anyhow::anyhow!(
                "the feed gave {empty} pages in a row with no entries and no tryLater (limits.max_empty_pages); given up at cursor {at} for this pass"
            )
            .into());
        }
        if !same_cursor {
            if let Some(first) = cursors.repeat(&page.cursor) {
                return Err(anyhow::anyhow!(
                    "the feed's cursors go round in a circle: the page at cursor {at} returned the cursor of page {first} of this pass; given up for this pass"
                )
                .into());
            }
        }
        if same_cursor && committed.inserted == 0 {
            // The feed says "more now" but gives nothing new: back off rather than spin,
            // and ask again after the wait rather than use a page fetched before it.
            prefetched = None;
            stalls += 1;
            if stalls >= retry.max_attempts {
                return Err(anyhow::anyhow!(
                    "the feed made no progress at cursor {at} after {stalls} tries (same cursor, tryLater false, nothing new)"
                )
                .into());
            }
            let wait = retry.backoff(stalls).max(Duration::from_millis(1));
            tracing::warn!(?wait, "feed made no progress; backing off");
            tokio::time::sleep(wait).await;
        } else {
            stalls = 0;
        }
        cursor = Some(page.cursor);
    }
}

/// A cursor as messages show it: printable, at most [`SHOWN_CURSOR`] bytes (a cursor stored
/// before `limits.max_cursor_bytes` existed may be megabytes long).
fn short(cursor: &str) -> String {
    crate::text::bounded(cursor, SHOWN_CURSOR)
}

/// The longest part of a cursor quoted in a message, in bytes.
const SHOWN_CURSOR: usize = 256;

/// Sorts an API error into what the caller must do about it.
fn classify(e: ApiError, cursor: Option<&str>) -> WalkError {
    let shown = cursor.map(short);
    let at = shown.as_deref().unwrap_or("(start of feed)");
    match e {
        ApiError::NotFound { body } => WalkError::NotShared(body),
        ApiError::TokenRejected { .. } | ApiError::Unauthorized { .. } => {
            WalkError::PartnerKeys(e.to_string())
        }
        ApiError::Permanent { status, .. }
            if cursor.is_some() && (status == 400 || status == 410) =>
        {
            WalkError::CursorRejected {
                cursor: at.to_owned(),
                error: e.to_string(),
            }
        }
        other => WalkError::Failed(
            anyhow::Error::new(other).context(format!("fetching the feed at cursor {at}")),
        ),
    }
}
