//! The command line's shape: every subcommand and flag, with the help text `--help` prints.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Topic;
use crate::demo;
use crate::simulator::Hostile;

/// Mirror the Vipps MobilePay Report API ledgers shared with you into PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "vipps-ledger-sync", version, about)]
pub struct Cli {
    /// TOML file layered over the built-in defaults (see config/default.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: sync on `sync.schedule` until SIGTERM or SIGINT.
    Run,
    /// Discover ledgers and walk every consented feed to its current end, then exit.
    Sync {
        /// Required: one pass, then exit (0 only if every ledger succeeded, or if it was
        /// stopped by SIGTERM/SIGINT with nothing failed).
        #[arg(long)]
        once: bool,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Print each partner's health and where every feed stands.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print every ledger ever seen: merchant, state, partners that may read it.
    Ledgers {
        /// Only what this partner may see: the ledgers it holds or held a grant for, and the
        /// entries stored while a grant held (docs/schema.md, "Who sees what").
        #[arg(long)]
        partner: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print the open grants per partner and merchant (or every period, or one ledger's history).
    Grants {
        /// The whole grant history of this ledger.
        #[arg(long, value_name = "LEDGER_ID")]
        ledger: Option<String>,
        /// Only this partner's periods.
        #[arg(long)]
        partner: Option<String>,
        /// Closed periods too.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Compare every closed ledger date with the API's daily report and check the balance
    /// chains; exit 0 only if nothing differs.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Write entries, per-date summaries, journal vouchers or a camt.053 statement of ledger
    /// dates FROM..=TO; or, with --exporter, run a configured exporter now.
    Export {
        /// Only these ledgers (repeat the flag); default: every ledger (or the partner's).
        #[arg(long = "ledger", value_name = "LEDGER_ID")]
        ledgers: Vec<String>,
        /// Only what this partner may see: entries of ledgers it holds a grant for, and of
        /// ledgers it held one for, those stored before it ended (docs/schema.md).
        #[arg(long)]
        partner: Option<String>,
        #[arg(long)]
        topic: Option<Topic>,
        /// First ledger date (YYYY-MM-DD); required unless --exporter.
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// Last ledger date, included; required unless --exporter.
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        /// What to write.
        #[arg(long, value_enum, default_value = "entries")]
        kind: crate::export::Kind,
        /// Shorthand for --kind summary.
        #[arg(long)]
        summary: bool,
        #[arg(long, value_enum, default_value = "csv")]
        format: crate::export::Format,
        /// CSV text cells that a spreadsheet would run as a formula (beginning with =, +, -,
        /// @, a tab or a carriage return, and not a number) get a leading ' (neutralise), or
        /// are written as they are (raw, for importers that are not spreadsheets).
        #[arg(long, value_enum, default_value = "neutralise")]
        csv_formulas: crate::config::CsvFormulas,
        /// Write here (atomically) instead of to stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// The journal's accounts come from this `[[exporters]]` entry (default: the only
        /// journal exporter configured, else the built-in chart).
        #[arg(long, value_name = "EXPORTER")]
        accounts: Option<String>,
        /// Run this `[[exporters]]` entry now: deliver its due dates (within --ledger,
        /// --from and --to, if given).
        #[arg(long, value_name = "NAME")]
        exporter: Option<String>,
        /// With --exporter: deliver dates already exported again.
        #[arg(long, requires = "exporter")]
        force: bool,
    },
    /// Unblock a feed whose cursor the API rejected, and read it again from the start (only
    /// missing entries are stored).
    ResetCursor {
        ledger: String,
        /// Only this topic (default: every topic of the ledger).
        #[arg(long)]
        topic: Option<Topic>,
    },
    /// The whole thing against the built-in simulator: no keys needed.
    Demo {
        /// PostgreSQL server to use; the demo (re)creates its own database
        /// `vipps_ledger_sync_demo` there and touches nothing else.
        /// (`--help` never shows the environment's value: it may hold a password.)
        #[arg(long, env = "DATABASE_URL", hide_env_values = true, default_value = demo::DEFAULT_SERVER)]
        database_url: String,
        /// Run it with a merchant's own keys (kind = "merchant") for one sales unit, which
        /// read only that MSN's ledgers, instead of accounting keys.
        #[arg(long)]
        merchant: bool,
    },
    /// Serve the simulated Report API alone.
    Simulate {
        #[arg(long, default_value = "127.0.0.1:8400")]
        listen: SocketAddr,
        /// Seed of the generated data (same seed, same data).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 12)]
        ledgers: usize,
        #[arg(long, default_value_t = 10)]
        days: u32,
        /// Average captures per ledger and day.
        #[arg(long, default_value_t = 20)]
        captures_per_day: u32,
        /// Entries per feed page (the API's maximum is 1000).
        #[arg(long, default_value_t = 1000)]
        page_size: usize,
        /// Ledgers per page of the ledger list.
        #[arg(long, default_value_t = 5)]
        ledger_page_size: usize,
        /// Some order references are spreadsheet formulas (`=HYPERLINK(…)`), as merchant
        /// text can be: what CSV exports must neutralise.
        #[arg(long)]
        formula_references: bool,
        /// Accounting keys the simulator accepts (granted every ledger).
        #[arg(long, default_value = "demo-client")]
        client_id: String,
        #[arg(long, default_value = "demo-secret")]
        client_secret: String,
        /// Also accept merchant keys for this sales unit: client id `demo-merchant`, secret
        /// `demo-merchant-secret`, subscription keys `demo-subscription-primary` and
        /// `demo-subscription-secondary`; the token lists this MSN's ledgers only.
        #[arg(long, value_name = "MSN")]
        merchant_msn: Option<String>,
        /// With --merchant-msn: the primary subscription key was regenerated, so it is
        /// refused and only the secondary works (the `primary-key-regenerated` behaviour).
        #[arg(long, requires = "merchant_msn")]
        primary_key_regenerated: bool,
        /// Misbehave from the start in this hostile mode (README, "The simulator"); change
        /// it later with `POST /_sim/hostile`.
        #[arg(long, value_name = "MODE", value_parser = clap::builder::PossibleValuesParser::new(Hostile::NAMES))]
        hostile: Option<String>,
        /// Only this ledger's feed and dates misbehave.
        #[arg(long, value_name = "LEDGER_ID", requires = "hostile")]
        hostile_ledger: Option<String>,
        /// A parameter of the mode, e.g. `megabytes=20`, `chunked=true`,
        /// `location=http://127.0.0.1:8401` (repeat the flag).
        #[arg(long, value_name = "KEY=VALUE", requires = "hostile")]
        hostile_param: Vec<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::HostileConfig;

    #[test]
    fn simulate_flags_build_the_same_hostile_configuration_as_the_simulator_reads() {
        let cli = Cli::try_parse_from([
            "vipps-ledger-sync",
            "simulate",
            "--hostile",
            "huge-page",
            "--hostile-ledger",
            "100002",
            "--hostile-param",
            "megabytes=20",
            "--hostile-param",
            "chunked=true",
        ])
        .expect("valid flags");
        let Command::Simulate {
            hostile,
            hostile_ledger,
            hostile_param,
            ..
        } = cli.command
        else {
            panic!("not simulate");
        };
        let config = HostileConfig::from_args(
            hostile.as_deref().unwrap_or_default(),
            hostile_ledger.as_deref(),
            &hostile_param,
        );
        let want = HostileConfig::on_ledger(
            Hostile::HugePage {
                megabytes: 20,
                chunked: true,
            },
            "100002",
        );
        assert_eq!(config, Ok(want));
        for bad in [
            &["simulate", "--hostile", "huge"][..],
            &["simulate", "--hostile-ledger", "100002"],
        ] {
            let args = std::iter::once("vipps-ledger-sync").chain(bad.iter().copied());
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
    }
}
