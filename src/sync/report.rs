//! What one pass did: [`SyncReport`], printed by `sync --once` and logged by `run`.

use std::fmt;
use std::time::Duration;

use crate::config::Topic;

/// A (ledger, topic) unit that failed in a pass.
#[derive(Debug, Clone)]
pub struct UnitFailure {
    pub ledger_id: String,
    pub topic: Topic,
    pub error: String,
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Ledgers with an open grant, synced in this pass.
    pub ledgers: usize,
    pub units_ok: usize,
    pub pages: u64,
    pub inserted: u64,
    pub chain_breaks: u64,
    pub conflicts: u64,
    /// Units left alone because they are backing off after failures (`run` only).
    pub backing_off: usize,
    /// Units another instance was syncing at the time (its lease was live).
    pub held_elsewhere: usize,
    /// Grant periods opened and closed by this pass.
    pub grants_opened: usize,
    pub grants_closed: usize,
    pub failed_partners: Vec<(String, String)>,
    pub failed_units: Vec<UnitFailure>,
    pub interrupted: bool,
    pub elapsed: Duration,
}

impl SyncReport {
    /// True when every partner and every unit succeeded and the pass ran to its end.
    /// A unit another instance was syncing is not a success of this pass.
    pub fn success(&self) -> bool {
        self.failed_partners.is_empty()
            && self.failed_units.is_empty()
            && !self.interrupted
            && self.held_elsewhere == 0
    }
}

impl fmt::Display for SyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "synced {} ledgers ({} feeds ok, {} failed): {} new entries in {} pages, {:.2} s",
            self.ledgers,
            self.units_ok,
            self.failed_units.len(),
            self.inserted,
            self.pages,
            self.elapsed.as_secs_f64()
        )?;
        if self.grants_opened + self.grants_closed > 0 {
            writeln!(
                f,
                "grants: {} opened, {} closed (see `vipps-ledger-sync grants`)",
                self.grants_opened, self.grants_closed
            )?;
        }
        if self.conflicts > 0 {
            writeln!(
                f,
                "conflicting re-deliveries: {} (see entry_conflicts)",
                self.conflicts
            )?;
        }
        if self.held_elsewhere > 0 {
            writeln!(
                f,
                "feeds being synced by another instance: {}",
                self.held_elsewhere
            )?;
        }
        if self.backing_off > 0 {
            writeln!(
                f,
                "feeds backing off after failures, not tried this time: {}",
                self.backing_off
            )?;
        }
        if self.chain_breaks > 0 {
            writeln!(
                f,
                "balance chain breaks found: {} (see balance_chain_breaks)",
                self.chain_breaks
            )?;
        }
        for (partner, error) in &self.failed_partners {
            writeln!(f, "partner {partner} failed: {error}")?;
        }
        for u in &self.failed_units {
            writeln!(f, "ledger {} {} failed: {}", u.ledger_id, u.topic, u.error)?;
        }
        if self.interrupted {
            writeln!(
                f,
                "stopped early on request; the next run continues from the stored cursors"
            )?;
        }
        Ok(())
    }
}
