//! Integration tests: real PostgreSQL (a fresh database per test) and the simulator over real
//! HTTP on 127.0.0.1. One test binary, so the crate links once.

mod access;
mod arithmetic;
mod binary;
mod client;
mod common;
mod config;
mod consent;
mod export_safety;
mod exporters;
mod follow;
mod hostile;
mod http;
mod layers;
mod lifecycle;
mod merchant;
mod payout_exporters;
mod personal;
mod polling;
mod reconcile;
mod resilience;
mod schema;
mod settlement;
mod store;
mod sync;
mod systemd;
mod takeover;
mod views;
