//! Delivering one ledger date: a file by the temporary-name, log, rename, log protocol, or a
//! webhook POST; and finishing a delivery an earlier run left `writing`.
//!
//! The export directory may be shared with importers that take files away, so nothing here
//! trusts what it finds there: the temporary file is created exclusively (`O_CREAT|O_EXCL`,
//! which never follows a symbolic link), one left over is unlinked (the link, never what it
//! points to), publishing renames a directory entry rather than writing through a link, and
//! a file's name encodes its ledger id so that two ledgers can never share one.

use std::io::Write as _;
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::NaiveDate;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use super::produce::{produce, DeliveryKey};
use crate::config::{ExporterKind, ExporterSettings, WebhookUrl};
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

/// Longest ledger id written into a file name as it is.
const PLAIN_ID_MAX: usize = 64;
/// How much of an encoded ledger id stays readable in its file name.
const ENCODED_PREFIX_MAX: usize = 40;

/// `<ledger>_<date>_<kind>.<ext>`. A ledger id of letters, digits and `-` only (the API's
/// six-digit ids), at most 64 characters, is written as it is; any other id as its safe
/// characters (others replaced by `_`, at most 40) followed by `~` and the first 16 hex
/// digits of its SHA-256. The plain form never holds `_` or `~` and the encoded one always
/// holds `~`, so two ledger ids never give one name: `acme.1` and `acme_1` become
/// `acme_1~…` with different hashes.
pub fn file_name(ledger_id: &str, date: NaiveDate, kind: ExporterKind, format: Format) -> String {
    format!(
        "{}_{date}_{}.{}",
        name_part(ledger_id),
        kind.as_str(),
        extension(kind, format)
    )
}

/// `<ledger>_<date>_<payout>_<kind>.<ext>` for the per-payout exporters: `date` is the
/// payout's last ledger date, and the payout's reference is written like a ledger id (as it
/// is if plain, else encoded), so two payouts never share a name either.
pub fn payout_file_name(
    ledger_id: &str,
    date: NaiveDate,
    payout_reference: &str,
    kind: ExporterKind,
    format: Format,
) -> String {
    format!(
        "{}_{date}_{}_{}.{}",
        name_part(ledger_id),
        name_part(payout_reference),
        kind.as_str(),
        extension(kind, format)
    )
}

fn extension(kind: ExporterKind, format: Format) -> &'static str {
    match (kind, format) {
        (ExporterKind::Camt053 | ExporterKind::SettlementXml, _) => "xml",
        (ExporterKind::Gbat10, _) => "txt",
        (ExporterKind::SettlementCsv, _) => "csv",
        (_, Format::Csv) => "csv",
        (_, Format::Jsonl) => "jsonl",
    }
}

/// An identifier from the API as part of a file name (or of a webhook's idempotency key):
/// as it is if plain (letters, digits, `-`; 1 to 64 characters), else encoded (see
/// [`file_name`]).
pub(super) fn name_part(id: &str) -> String {
    let plain = id.len() <= PLAIN_ID_MAX
        && !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if plain {
        return id.to_owned();
    }
    let readable: String = id
        .chars()
        .take(ENCODED_PREFIX_MAX)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = crate::text::hex(&Sha256::digest(id.as_bytes()));
    format!("{readable}~{}", &hash[..16])
}

/// Checks the export directory before a pass writes into it (creating it, owner-only, if it
/// is missing). World-writable: refused, since anyone on the host could plant or replace
/// files there. Group-writable: allowed (importers often need to take files away), with a
/// warning, since the group could do the same.
pub(super) fn check_directory(exporter: &str, dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .with_context(|| format!("creating the export directory {}", dir.display()))?;
    }
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("reading the export directory {}", dir.display()))?;
    anyhow::ensure!(
        meta.is_dir(),
        "the export directory {} is not a directory",
        dir.display()
    );
    let mode = meta.permissions().mode();
    anyhow::ensure!(
        mode & 0o002 == 0,
        "the export directory {} is writable by every user of the host (mode {:o}): anyone \
         could plant or replace export files; remove that (chmod o-w) and run again",
        dir.display(),
        mode & 0o7777
    );
    if mode & 0o020 != 0 {
        tracing::warn!(exporter, directory = %dir.display(), mode = format!("{:o}", mode & 0o7777),
            "the export directory is writable by its group: every member can replace export files \
             before they are imported (the exporter itself cannot be made to overwrite anything)");
    }
    Ok(())
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
    let target = dir.join(match &date.payout {
        None => file_name(&date.ledger_id, date.ledger_date, exporter.kind, format),
        Some(payout) => payout_file_name(
            &date.ledger_id,
            date.ledger_date,
            payout,
            exporter.kind,
            format,
        ),
    });
    let partial = partial_path(&target);
    let existing = log::get(pool, key).await?;
    // A delivery under way when a run stopped (`writing`) or failed part-way (`failed`, with
    // what it was writing recorded): finish that one rather than making another.
    let under_way = |r: &&log::LogRow| {
        (r.status == "writing" || r.status == "failed") && r.checksum.is_some() && !force
    };
    if let Some(row) = existing.as_ref().filter(under_way) {
        let recorded = row.target.as_deref().map(Path::new) == Some(target.as_path());
        if recorded && finish(&partial, &target, row.checksum.as_deref())? {
            log::exported(pool, key, false).await?;
            remove_quietly(&partial);
            tracing::info!(exporter = %exporter.name, ledger = %date.ledger_id, date = %date.ledger_date,
                payout = date.payout.as_deref(),
                file = %target.display(), "finished a delivery an earlier run had started");
            return Ok(());
        }
        tracing::warn!(exporter = %exporter.name, ledger = %date.ledger_id, date = %date.ledger_date,
            payout = date.payout.as_deref(),
            file = %target.display(), status = %row.status,
            "an unfinished delivery left neither its temporary file nor its final one: producing it again");
    }
    let revision = log::next_revision(existing.as_ref());
    let (bytes, entries) = produce(pool, exporter, date, format, None).await?;
    write_partial(&partial, &bytes).with_context(|| format!("writing {}", partial.display()))?;
    // The temporary file's directory entry is durable before `writing` is: a run after a
    // power cut finds it.
    sync_directory(dir)?;
    let checksum = crate::text::hex(&Sha256::digest(&bytes));
    log::start_writing(
        pool,
        key,
        &target.to_string_lossy(),
        &checksum,
        entries,
        revision,
    )
    .await?;
    publish(&partial, &target)?;
    log::exported(pool, key, force).await?;
    remove_quietly(&partial);
    tracing::info!(exporter = %exporter.name, ledger = %date.ledger_id, date = %date.ledger_date,
        payout = date.payout.as_deref(),
        file = %target.display(), entries, %checksum, "exported");
    Ok(())
}

/// Finishes a delivery left `writing`: true once the file is (or was) in place, false if
/// it must be produced again.
///
/// The temporary file stays linked until the log says `exported`, and publishing only adds
/// a second name (the final one) to it, so what a stopped run left tells what happened:
/// - the temporary file, with the recorded checksum, linked once: never published, or
///   published and deleted by an importer: published (again), the same bytes;
/// - linked twice: published, and the final name is still there or was moved away within
///   the filesystem (an importer's archive directory): done, never written again;
/// - no temporary file (removed by hand): done if the final file is there, else false.
fn finish(partial: &Path, target: &Path, checksum: Option<&str>) -> anyhow::Result<bool> {
    remove_quietly(&staging_path(target));
    let Some(found) = checksum_of(partial)? else {
        return is_regular_file(target);
    };
    if Some(found.as_str()) != checksum {
        return Ok(false);
    }
    let links = std::fs::symlink_metadata(partial)
        .with_context(|| format!("looking at {}", partial.display()))?
        .nlink();
    if links < 2 {
        publish(partial, target)?;
    }
    Ok(true)
}

/// Gives the written temporary file its final name as well, atomically: a link under a
/// second hidden name, renamed onto the final one (replacing whatever entry is there, a
/// planted link included, never writing through it), then the directory fsynced.
fn publish(partial: &Path, target: &Path) -> anyhow::Result<()> {
    if std::fs::symlink_metadata(target).is_ok_and(|m| m.is_dir()) {
        anyhow::bail!(
            "{} is a directory where the export file goes; remove it",
            target.display()
        );
    }
    let staging = staging_path(target);
    remove_quietly(&staging);
    std::fs::hard_link(partial, &staging)
        .with_context(|| format!("linking {} to {}", partial.display(), staging.display()))?;
    std::fs::rename(&staging, target)
        .with_context(|| format!("renaming {} to {}", staging.display(), target.display()))?;
    if let Some(dir) = target.parent() {
        sync_directory(dir)?;
    }
    Ok(())
}

/// The second hidden name `publish` links before its rename.
fn staging_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.publish"))
}

/// Unlinks `path` if it is there (a link is removed, never what it points to).
fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a temporary file");
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn deliver_webhook(
    pool: &PgPool,
    exporter: &ExporterSettings,
    date: &DueDate,
    key: &Key<'_>,
    http: &reqwest::Client,
    url: &WebhookUrl,
    secret: &secrecy::SecretString,
    retry: &RetryPolicy,
    max_retry_after: std::time::Duration,
    force: bool,
) -> anyhow::Result<()> {
    let existing = log::get(pool, key).await?;
    let revision = log::next_revision(existing.as_ref());
    let delivery = DeliveryKey::new(exporter, date, revision);
    let (body, entries) = produce(pool, exporter, date, Format::Jsonl, Some(&delivery)).await?;
    let checksum = crate::text::hex(&Sha256::digest(&body));
    log::start_writing(pool, key, &url.to_string(), &checksum, entries, revision).await?;
    let attempts = webhook::deliver(
        http,
        url,
        secret,
        &delivery.key,
        &body,
        retry,
        max_retry_after,
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))?;
    log::exported(pool, key, force).await?;
    tracing::info!(exporter = %exporter.name, ledger = %date.ledger_id, date = %date.ledger_date,
        payout = date.payout.as_deref(),
        %url, key = %delivery.key, attempts, entries, "delivered to the webhook");
    Ok(())
}

/// Creates the temporary file exclusively and writes it in full, fsynced. One left over (a
/// run that stopped, or something planted: a file, a symbolic link) is unlinked first; the
/// exclusive create then fails rather than follow anything put back in between.
fn write_partial(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(std::io::Error::other(format!(
                "{} is a directory where the temporary file goes; remove it",
                path.display()
            )))
        }
        Ok(_) => std::fs::remove_file(path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The SHA-256 (hex) of the regular file at `path`; `None` if there is none (or something
/// else is there: a link, a directory).
fn checksum_of(path: &Path) -> anyhow::Result<Option<String>> {
    if !is_regular_file(path)? {
        return Ok(None);
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(crate::text::hex(&Sha256::digest(&bytes))))
}

/// A regular file is at `path` itself (a symbolic link is not followed).
fn is_regular_file(path: &Path) -> anyhow::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => Ok(meta.file_type().is_file()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("looking at {}", path.display())),
    }
}

fn sync_directory(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing the directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_never_collide_and_stay_short_and_printable() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let name = |id: &str| file_name(id, date, ExporterKind::Journal, Format::Csv);
        assert_eq!(name("100001"), "100001_2026-11-20_journal.csv");
        let ids = [
            "acme.1",
            "acme_1",
            "acme:1",
            "acme-1",
            "acme~1",
            "..",
            "a/b",
            "a\nb",
            &"x".repeat(300),
            &"x".repeat(301),
            &"x".repeat(64),
            &"x".repeat(65),
        ];
        let names: std::collections::BTreeSet<String> = ids.iter().map(|id| name(id)).collect();
        assert_eq!(names.len(), ids.len(), "{names:?}");
        for n in &names {
            assert!(n.len() < 120, "{n}");
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_~.".contains(&b)),
                "{n}"
            );
            assert!(!n.starts_with('.'), "{n}");
        }
        assert!(name("acme.1").starts_with("acme_1~"));
        let payout = |id: &str| {
            payout_file_name("100001", date, id, ExporterKind::SettlementXml, Format::Csv)
        };
        assert_eq!(
            payout("2000123456"),
            "100001_2026-11-20_2000123456_settlement-xml.xml"
        );
        let payouts: std::collections::BTreeSet<String> = ids.iter().map(|id| payout(id)).collect();
        assert_eq!(payouts.len(), ids.len(), "{payouts:?}");
        assert!(payouts.iter().all(|n| n.len() < 140 && !n.contains('/')));
    }
}
