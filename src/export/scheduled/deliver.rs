//! Delivering one ledger date: a file by the temporary-name, log, rename, log protocol, or a
//! webhook POST; and finishing a delivery an earlier run left `writing`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::NaiveDate;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use super::produce::{idempotency_key, produce};
use crate::config::{ExporterKind, ExporterSettings};
use crate::export::{webhook, Format};
use crate::retry::RetryPolicy;
use crate::store::export_log::{self as log, DueDate, Key};

/// The hidden name a file is written under before it is renamed into place. A fixed name
/// (not `tempfile`'s random one, which `export` uses for its one-off files): a run after a
/// crash must find the file a `writing` record points to.
fn partial_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.partial"))
}

/// `<ledger>_<date>_<kind>.<ext>`, with anything but letters, digits, '-' and '_' in the
/// ledger id replaced.
pub fn file_name(ledger_id: &str, date: NaiveDate, kind: ExporterKind, format: Format) -> String {
    let ledger: String = ledger_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let ext = match (kind, format) {
        (ExporterKind::Camt053, _) => "xml",
        (_, Format::Csv) => "csv",
        (_, Format::Jsonl) => "jsonl",
    };
    format!("{ledger}_{date}_{}.{ext}", kind.as_str())
}

pub(super) async fn deliver_file(
    pool: &PgPool,
    exporter: &ExporterSettings,
    date: &DueDate,
    key: &Key<'_>,
    dir: &Path,
    format: Format,
    force: bool,
) -> anyhow::Result<()> {
    let target = dir.join(file_name(
        &date.ledger_id,
        date.ledger_date,
        exporter.kind,
        format,
    ));
    let partial = partial_path(&target);
    let existing = log::get(pool, key).await?;
    if let Some(row) = existing.filter(|r| r.status == "writing" && !force) {
        // A run stopped mid-delivery: finish it, never produce the date again.
        let target = row.target.map(PathBuf::from).unwrap_or(target);
        let partial = partial_path(&target);
        if partial.exists() {
            rename_into_place(&partial, &target)?;
        }
        log::exported(pool, key, false).await?;
        tracing::info!(exporter = %exporter.name, ledger = %date.ledger_id, date = %date.ledger_date,
            file = %target.display(), "finished a delivery an earlier run had started");
        return Ok(());
    }
    let (bytes, entries) = produce(pool, exporter, date, format).await?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the export directory {}", dir.display()))?;
    write_synced(&partial, &bytes).with_context(|| format!("writing {}", partial.display()))?;
    let checksum = crate::text::hex(&Sha256::digest(&bytes));
    log::start_writing(pool, key, &target.to_string_lossy(), &checksum, entries).await?;
    rename_into_place(&partial, &target)?;
    log::exported(pool, key, force).await?;
    tracing::info!(exporter = %exporter.name, ledger = %date.ledger_id, date = %date.ledger_date,
        file = %target.display(), entries, %checksum, "exported");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn deliver_webhook(
    pool: &PgPool,
    exporter: &ExporterSettings,
    date: &DueDate,
    key: &Key<'_>,
    http: &reqwest::Client,
    url: &url::Url,
    secret: &secrecy::SecretString,
    retry: &RetryPolicy,
    max_retry_after: std::time::Duration,
    force: bool,
) -> anyhow::Result<()> {
    let (body, entries) = produce(pool, exporter, date, Format::Jsonl).await?;
    let checksum = crate::text::hex(&Sha256::digest(&body));
    log::start_writing(pool, key, url.as_str(), &checksum, entries).await?;
    let key_header = idempotency_key(exporter, date);
    let attempts = webhook::deliver(
        http,
        url,
        secret,
        &key_header,
        &body,
        retry,
        max_retry_after,
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))?;
    log::exported(pool, key, force).await?;
    tracing::info!(exporter = %exporter.name, ledger = %date.ledger_id, date = %date.ledger_date,
        %url, attempts, entries, "delivered to the webhook");
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Renames and makes the rename durable (fsync of the directory).
fn rename_into_place(partial: &Path, target: &Path) -> anyhow::Result<()> {
    std::fs::rename(partial, target)
        .with_context(|| format!("renaming {} to {}", partial.display(), target.display()))?;
    if let Some(dir) = target.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
