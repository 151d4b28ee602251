//! The feed walker: one (ledger, topic) unit, from its stored cursor to the feed's current
//! end (`tryLater`), committing every page with its cursor. Stops between pages when asked.

use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::SyncContext;
use crate::config::Topic;
use crate::report_api::{PartnerClient, RetryPolicy};
use crate::store::feeds::{self, PageParams};

/// What walking one feed did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitOutcome {
    pub pages: u64,
    pub inserted: u64,
    pub chain_breaks: u64,
    /// Stopped early because shutdown was requested.
    pub interrupted: bool,
}

/// Walks `ledger_id`'s `topic` feed to its current end.
pub async fn walk_feed(
    ctx: &SyncContext,
    partner: &PartnerClient,
    ledger_id: &str,
    topic: Topic,
    cancel: &CancellationToken,
) -> anyhow::Result<UnitOutcome> {
    let retry = RetryPolicy::from(&ctx.settings.retry);
    let mut cursor = feeds::load_cursor(&ctx.pool, ledger_id, topic)
        .await
        .context("loading the stored cursor")?
        .and_then(|row| row.cursor);
    let mut outcome = UnitOutcome::default();
    let mut stalls = 0;
    loop {
        if cancel.is_cancelled() {
            outcome.interrupted = true;
            return Ok(outcome);
        }
        let at = cursor.as_deref().unwrap_or("(start of feed)");
        let page = partner
            .feed(ledger_id, topic, cursor.as_deref())
            .await
            .with_context(|| format!("fetching the feed at cursor {at}"))?;
        let same_cursor = cursor.as_deref() == Some(page.cursor.as_str());
        if page.items.is_empty() && same_cursor && page.try_later {
            feeds::mark_caught_up(&ctx.pool, ledger_id, topic).await?;
            return Ok(outcome);
        }
        let committed = if page.items.is_empty() && same_cursor {
            Default::default()
        } else {
            feeds::commit_page(
                &ctx.pool,
                &PageParams {
                    ledger_id,
                    topic,
                    fetched_with: cursor.as_deref(),
                    next_cursor: &page.cursor,
                    caught_up: page.try_later,
                    entries: &page.items,
                },
            )
            .await
            .with_context(|| format!("storing the page fetched at cursor {at}"))?
        };
        outcome.pages += 1;
        outcome.inserted += committed.inserted;
        outcome.chain_breaks += committed.chain_breaks.len() as u64;
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
        if same_cursor && committed.inserted == 0 {
            // The feed says "more now" but gives nothing new: back off rather than spin.
            stalls += 1;
            if stalls >= retry.max_attempts {
                anyhow::bail!(
                    "the feed made no progress at cursor {at} after {stalls} tries (same cursor, tryLater false, nothing new)"
                );
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
