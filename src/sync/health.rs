//! Which partners' keys are failing, in memory, so that a ledger shared with several partners
//! is read with a healthy partner's token first. The database keeps the same facts for people
//! (`partners`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::report_api::PartnerClient;

/// Failed partners and why.
#[derive(Debug, Default)]
pub struct PartnerHealth {
    failed: Mutex<BTreeMap<String, String>>,
}

impl PartnerHealth {
    /// Records that `partner` worked.
    pub fn set_ok(&self, partner: &str) {
        self.lock().remove(partner);
    }

    /// Records that `partner` failed with `error`.
    pub fn set_failed(&self, partner: &str, error: &str) {
        self.lock().insert(partner.to_owned(), error.to_owned());
    }

    /// The configured partners among `holders` (partner names with an open grant, in grant
    /// order), healthy ones first. Grants of partners no longer configured are skipped.
    pub fn order(
        &self,
        configured: &[Arc<PartnerClient>],
        holders: &[String],
    ) -> Vec<Arc<PartnerClient>> {
        let failed = self.lock();
        let mut ordered: Vec<Arc<PartnerClient>> = holders
            .iter()
            .filter_map(|h| configured.iter().find(|p| p.name() == h))
            .cloned()
            .collect();
        ordered.sort_by_key(|p| failed.contains_key(p.name()));
        ordered
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.failed.lock().unwrap_or_else(|e| e.into_inner())
    }
}
