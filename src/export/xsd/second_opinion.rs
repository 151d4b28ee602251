//! `export::xsd::second_opinion` (tests only): xmllint (libxml2), where it is installed, asked
//! about the same document against the same official schema file, so every document the tests
//! validate in process is also a check of this module against an independent validator. Where
//! xmllint is missing, or `VLS_NO_XMLLINT=1` is set, only the in-process verdict counts.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Schema, Violation};

/// The official schema file `name` in `src/export/xsd/schemas/`.
pub(crate) fn schema_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/export/xsd/schemas")
        .join(name)
}

/// xmllint's verdict on `document` against the schema file `xsd`: `None` where xmllint is
/// not installed or `VLS_NO_XMLLINT` is set; `Some(Err(its messages))` when it rejects.
pub(crate) fn xmllint(xsd: &Path, document: &[u8]) -> Option<Result<(), String>> {
    if std::env::var_os("VLS_NO_XMLLINT").is_some_and(|v| !v.is_empty() && v != "0") {
        return None;
    }
    let mut child = match Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(xsd)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run xmllint: {e}"),
    };
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(document)
        .expect("xmllint reads the document");
    drop(stdin);
    let output = child.wait_with_output().expect("xmllint runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !stderr.contains("failed to compile"),
        "xmllint could not load {}: {stderr}",
        xsd.display()
    );
    Some(if output.status.success() {
        Ok(())
    } else {
        Err(stderr)
    })
}

/// The in-process verdict on `document`, after checking that xmllint, where installed, reaches
/// the same verdict (it panics with both outputs when they disagree).
pub(crate) fn validate(schema: &Schema, xsd: &Path, document: &[u8]) -> Result<(), Vec<Violation>> {
    let ours = schema.validate(document);
    if let Some(theirs) = xmllint(xsd, document) {
        assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "the validators disagree on this document against {}:\n\
             in process: {ours:?}\nxmllint: {theirs:?}\n{}",
            xsd.display(),
            String::from_utf8_lossy(document)
        );
    }
    ours
}

/// [`validate`] against the embedded camt.053.001.02 schema.
pub(crate) fn camt053(document: &[u8]) -> Result<(), Vec<Violation>> {
    validate(
        super::camt053(),
        &schema_file("camt.053.001.02.xsd"),
        document,
    )
}

/// [`validate`] against the embedded SettlementReport-3.0 schema.
pub(crate) fn settlement_report(document: &[u8]) -> Result<(), Vec<Violation>> {
    validate(
        super::settlement_report(),
        &schema_file("SettlementReport-3.0.xsd"),
        document,
    )
}
