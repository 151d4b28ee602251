//! The `vipps-ledger-sync` binary: everything is in the library; see `cli.rs`.

fn main() -> std::process::ExitCode {
    vipps_ledger_sync::cli::main()
}
