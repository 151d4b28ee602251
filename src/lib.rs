//! vipps-ledger-sync: mirrors every Vipps MobilePay Report API ledger that merchants have
//! shared with an accounting partner into PostgreSQL, exactly once.
//!
//! `main.rs` only calls [`cli::main`]; everything else lives here so the tests can build the
//! application in-process. Module map: README.md, "Architecture".

pub mod cli;
pub mod config;
pub mod demo;
pub mod export;
pub mod http;
pub mod metrics;
pub mod reconcile;
pub mod report_api;
pub mod simulator;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod text;
pub mod views;
