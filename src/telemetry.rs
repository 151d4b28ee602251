//! Logging: `RUST_LOG` filters (default `info`, `warn` for the demo's own output), text for people or JSON for collectors,
//! colours only on a terminal, always to stderr so stdout stays for command output. While
//! progress bars are shown (`sync --once` on a terminal), each log line is printed above them
//! instead of through them.

use std::io::{IsTerminal as _, Write as _};
use std::sync::{Mutex, PoisonError};

use indicatif::MultiProgress;
use tracing_subscriber::filter::Directive;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Dependencies held at `info` even under `RUST_LOG=trace`, unless `RUST_LOG` names them
/// itself (then it is a deliberate choice of whoever debugs the wire). Their debug and trace
/// output is about connections, TLS handshakes, HTTP/2 frames (h2 prints each frame, with the
/// request path) and every SQL statement (sqlx): hundreds of lines per sync that an operator
/// asking for *our* trace output does not want, and code we do not control deciding what
/// reaches the log. As of this writing none of them prints header values (the `Authorization`
/// header with the Basic credentials or a bearer token) or response bodies (personal data in
/// feed pages); `lifecycle::trace_logs_in_text_and_json_carry_no_secret_token_or_personal_data`
/// checks our output at trace level, and the cap keeps it so if a dependency ever starts to.
///
/// The cron scheduler is held at `warn`: at `info` it announces its own internals ("Job creator
/// created") at every start, which tells an operator nothing.
const CAPPED_DEPENDENCIES: &[(&str, &str)] = &[
    ("tokio_cron_scheduler", "warn"),
    ("h2", "info"),
    ("hyper", "info"),
    ("hyper_util", "info"),
    ("reqwest", "info"),
    ("rustls", "info"),
    ("tokio_rustls", "info"),
    ("sqlx", "info"),
    ("tower", "info"),
    ("tower_http", "info"),
    ("axum", "info"),
];

/// Installs the global subscriber with `default_level` unless `RUST_LOG` says otherwise.
/// Safe to call more than once (later calls do nothing).
pub fn init(format: LogFormat, default_level: &str) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let mut filter = rust_log
        .as_deref()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new(default_level));
    let named = rust_log.unwrap_or_default();
    for (dependency, level) in CAPPED_DEPENDENCIES {
        if !named.contains(dependency) {
            if let Ok(directive) = format!("{dependency}={level}").parse::<Directive>() {
                filter = filter.add_directive(directive);
            }
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(AboveBars);
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// The progress bars being drawn, if any; log lines suspend them while printing.
static BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Shows log lines above `bars` from now on (`None`: straight to stderr again).
pub fn set_progress_bars(bars: Option<MultiProgress>) {
    *BARS.lock().unwrap_or_else(PoisonError::into_inner) = bars;
}

/// Makes one [`LineWriter`] per log event.
struct AboveBars;

impl<'a> MakeWriter<'a> for AboveBars {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter(Vec::with_capacity(256))
    }
}

/// Collects one event's output and writes it to stderr in one piece when dropped, with any
/// progress bars cleared for the moment and redrawn below it.
struct LineWriter(Vec<u8>);

impl std::io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let write = || {
            let _ = std::io::stderr().lock().write_all(&self.0);
        };
        let bars = BARS.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match bars {
            Some(bars) => bars.suspend(write),
            None => write(),
        }
    }
}
