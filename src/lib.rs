//! vipps-ledger-sync: mirrors every Vipps MobilePay Report API ledger that merchants have
//! shared with an accounting partner into PostgreSQL, exactly once.
//!
//! `main.rs` only calls [`cli::main`]; everything else lives here so the tests can build the
//! application in-process. Module map: README.md, "Architecture".
//!
//! The top-level modules form layers. A module imports only from the layers below its own:
//! never from its own layer, never from above (`tests/it/layers.rs` reads this table and fails
//! on an import that breaks it, or on a module missing from it). The binaries (`main.rs`,
//! `bin/vls-bench.rs`) sit on top of everything.
//!
//! | layer | modules | what they hold |
//! | --- | --- | --- |
//! | 9 | `cli` | the command line: parses, builds the pieces below, runs a subcommand |
//! | 8 | `status_endpoint`, `demo` | `/healthz`, `/readyz`, `/metrics` with their scrape; the demo |
//! | 7 | `daemon`, `tables` | `run`'s loop over the schedules; the tables `status` and `ledgers` print |
//! | 6 | `reconcile`, `export` | checks against the daily reports; exports and scheduled exporters |
//! | 5 | `sync` | discovery, the feed walk, leases and the instance's lifecycle |
//! | 4 | `store` | every SQL statement, the migrations |
//! | 3 | `report_api`, `simulator` | the API client; the simulated API |
//! | 2 | `metrics`, `retry`, `telemetry` | counters, the one retry loop, logging |
//! | 1 | `config` | settings, their defaults and checks |
//! | 0 | `text` | text helpers: bounded, printable, hex |

pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod export;
pub mod metrics;
pub mod reconcile;
pub mod report_api;
pub mod retry;
pub mod simulator;
pub mod status_endpoint;
pub mod store;
pub mod sync;
pub mod tables;
pub mod telemetry;
pub mod text;
