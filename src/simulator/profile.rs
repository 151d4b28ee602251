//! Who owns each simulated ledger: country, currency, owner, bank account and sales units.
//!
//! This module owns the per-ledger facts that never change after start (report-api.md §3.1),
//! derived deterministically from the seed and the ledger's index, plus the quirks a ledger
//! shows in its entries (payout spelling, `time` spelling, fee rate). It also owns the seeded
//! random number streams every generator in the simulator uses.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::entry::TimeStyle;

/// First ledger id; ledgers are numbered upwards from here.
const FIRST_LEDGER_ID: usize = 100_001;

/// A random stream that depends only on `parts` (seed, ledger index, purpose, date, ...).
pub(crate) fn rng_for(parts: &[u64]) -> ChaCha8Rng {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for p in parts {
        h = splitmix64(h ^ p.wrapping_mul(0xD1B5_4A32_D192_ED03));
    }
    ChaCha8Rng::seed_from_u64(h)
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The market a ledger belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Country {
    No,
    Dk,
    Fi,
}

impl Country {
    fn for_index(index: usize) -> Country {
        match index % 4 {
            0 | 1 => Country::No,
            2 => Country::Dk,
            _ => Country::Fi,
        }
    }

    /// The ISO 4217 currency of this market.
    pub(crate) fn currency(self) -> &'static str {
        match self {
            Country::No => "NOK",
            Country::Dk => "DKK",
            Country::Fi => "EUR",
        }
    }

    fn code(self) -> &'static str {
        match self {
            Country::No => "NO",
            Country::Dk => "DK",
            Country::Fi => "FI",
        }
    }
}

/// One point of sale the ledger settles for.
#[derive(Clone, Debug)]
pub(crate) struct SalesUnit {
    pub name: String,
    /// `api:<MSN>` or `NO:`/`DK:`/`FI:<Vippsnummer>`.
    pub handle: String,
    /// The number part of the handle (used in payout bank texts).
    pub serial: String,
}

/// Static facts about one ledger.
#[derive(Clone, Debug)]
pub(crate) struct LedgerProfile {
    pub index: usize,
    pub ledger_id: String,
    pub country: Country,
    pub owner_scheme: &'static str,
    pub owner_id: String,
    pub bank_scheme: &'static str,
    pub bank_id: String,
    pub sales_units: Vec<SalesUnit>,
    /// Vippsnummer/MyShop ledger: its captures carry the GDPR fields.
    pub vippsnummer: bool,
    /// `payout-scheduled` or `scheduled-for-payout`.
    pub payout_entry_type: &'static str,
    pub time_style: TimeStyle,
    /// Main capture fee in basis points of the captured amount.
    pub fee_bps: i64,
    /// `Some("")` or `None` (absent) on `fees-retained` entries.
    pub fees_retained_reference: Option<String>,
    /// Prefix of ePayment order references.
    pub order_prefix: String,
    /// Every fifth order reference is a spreadsheet formula (`SimulatorConfig`).
    pub formula_references: bool,
    /// Gross settlement: paid the captures in full, no `fees-retained`; the fees feed grows
    /// until a weekly `fees-invoiced` entry (the EHF invoice) brings it back to zero. Every
    /// fourth ledger (100004, 100008, …); the others are on net settlement.
    pub gross_settlement: bool,
}

const NAMES_NO: &[&str] = &[
    "ACME Fitness Oslo",
    "Bakeriet på Hjørnet",
    "Fjord Kaffebar",
    "Nordlys Sport",
    "Tromsø Sykkelverksted",
    "Bergen Blomster",
];
const NAMES_DK: &[&str] = &[
    "Aarhus Kaffe ApS",
    "Nørrebro Cykler",
    "Hygge Boghandel",
    "Odense Bageri",
];
const NAMES_FI: &[&str] = &[
    "Helsinki Sauna Oy",
    "Tampere Kahvila",
    "Turun Kirjakauppa",
    "Oulu Urheilu",
];
const ORDER_PREFIXES: &[&str] = &[
    "acme-shop",
    "webshop",
    "order",
    "ordre",
    "tilaus",
    "bestilling",
];

impl LedgerProfile {
    /// The profile of the ledger at `index` (0-based); the same seed always gives the same one.
    /// Ledger 1 has the same owner as ledger 0 (one merchant with two ledgers).
    pub(crate) fn generate(seed: u64, index: usize) -> LedgerProfile {
        let mut rng = rng_for(&[seed, index as u64, 1]);
        let owner_index = if index == 1 { 0 } else { index };
        let country = Country::for_index(owner_index);
        let mut owner_rng = rng_for(&[seed, owner_index as u64, 2]);
        let (owner_scheme, owner_id) = owner_for(country, &mut owner_rng);
        let (bank_scheme, bank_id) = bank_account_for(country, &mut rng);
        let vippsnummer = index % 3 == 2;
        let names = match country {
            Country::No => NAMES_NO,
            Country::Dk => NAMES_DK,
            Country::Fi => NAMES_FI,
        };
        let unit_count = if index == 4 { 2 } else { 1 };
        // Spread names over the ledgers of one country; ledger 1 is ledger 0's web shop.
        let ordinal = match index % 4 {
            0 | 1 => (index / 4) * 2 + index % 4,
            _ => index / 4,
        };
        let name_offset = rng_for(&[seed, 0]).gen_range(0..names.len());
        let (name_start, suffix) = match index {
            1 => (name_offset, " Nettbutikk"),
            _ => (name_offset + ordinal, ""),
        };
        let sales_units = (0..unit_count)
            .map(|u| {
                let base = names[name_start % names.len()];
                let name = match u {
                    0 => format!("{base}{suffix}"),
                    _ => format!("{base} Kiosk {u}"),
                };
                let (handle, serial) = if vippsnummer {
                    let n = rng.gen_range(10_000..100_000u32).to_string();
                    (format!("{}:{n}", country.code()), n)
                } else {
                    let n = rng.gen_range(100_000..1_000_000u32).to_string();
                    (format!("api:{n}"), n)
                };
                SalesUnit {
                    name,
                    handle,
                    serial,
                }
            })
            .collect();
        let utc_offset_secs = if country == Country::Fi { 7200 } else { 3600 };
        LedgerProfile {
            index,
            ledger_id: (FIRST_LEDGER_ID + index).to_string(),
            country,
            owner_scheme,
            owner_id,
            bank_scheme,
            bank_id,
            sales_units,
            vippsnummer,
            payout_entry_type: if index % 2 == 0 {
                "payout-scheduled"
            } else {
                "scheduled-for-payout"
            },
            time_style: TimeStyle {
                utc_offset_secs,
                show_offset: index % 5 == 1,
            },
            fee_bps: rng.gen_range(149..=299),
            fees_retained_reference: if index % 2 == 0 {
                Some(String::new())
            } else {
                None
            },
            order_prefix: ORDER_PREFIXES[rng.gen_range(0..ORDER_PREFIXES.len())].to_string(),
            formula_references: false,
            gross_settlement: index % 4 == 3,
        }
    }

    /// The ledger object as served by `GET /settlement/v1/ledgers`.
    pub(crate) fn to_json(&self) -> Value {
        let units: Vec<Value> = self
            .sales_units
            .iter()
            .map(|u| {
                json!({
                    "name": u.name,
                    "recipientHandle": u.handle,
                    "businessIdentifier": { "scheme": self.owner_scheme, "id": self.owner_id },
                })
            })
            .collect();
        let handles: Vec<&str> = self.sales_units.iter().map(|u| u.handle.as_str()).collect();
        json!({
            "ledgerId": self.ledger_id,
            "currency": self.country.currency(),
            "payoutBankAccount": { "scheme": self.bank_scheme, "id": self.bank_id },
            "owner": { "scheme": self.owner_scheme, "id": self.owner_id },
            "settlesForRecipientHandles": handles,
            "salesUnits": units,
        })
    }

    /// Whether the ledger settles for `handle`.
    pub(crate) fn settles_for(&self, handle: &str) -> bool {
        self.sales_units.iter().any(|u| u.handle == handle)
    }
}

fn digits(rng: &mut ChaCha8Rng, n: usize) -> Vec<u32> {
    (0..n).map(|_| rng.gen_range(0..10)).collect()
}

fn join(d: &[u32]) -> String {
    d.iter().map(|x| char::from(b'0' + *x as u8)).collect()
}

/// Norwegian MOD11 check digit (organisation and account numbers); `None` when invalid.
fn mod11_no(d: &[u32], weights: &[u32]) -> Option<u32> {
    let sum: u32 = d.iter().zip(weights).map(|(a, b)| a * b).sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        c => Some(c),
    }
}

fn owner_for(country: Country, rng: &mut ChaCha8Rng) -> (&'static str, String) {
    loop {
        match country {
            Country::No => {
                let mut d = digits(rng, 8);
                d[0] = if rng.gen_bool(0.5) { 9 } else { 8 };
                if let Some(c) = mod11_no(&d, &[3, 2, 7, 6, 5, 4, 3, 2]) {
                    d.push(c);
                    return ("business:NO:ORG", join(&d));
                }
            }
            Country::Dk => {
                let mut d = digits(rng, 7);
                d[0] = rng.gen_range(1..10);
                let sum: u32 = d
                    .iter()
                    .zip([2, 7, 6, 5, 4, 3, 2])
                    .map(|(a, b)| a * b)
                    .sum();
                let c = (11 - sum % 11) % 11;
                if c < 10 {
                    d.push(c);
                    return ("business:DK:CVR", join(&d));
                }
            }
            Country::Fi => {
                let mut d = digits(rng, 7);
                d[0] = rng.gen_range(1..4);
                let sum: u32 = d
                    .iter()
                    .zip([7, 9, 10, 5, 8, 4, 2])
                    .map(|(a, b)| a * b)
                    .sum();
                let c = match sum % 11 {
                    0 => 0,
                    1 => continue,
                    r => 11 - r,
                };
                return ("business:FI:Y-tunnus", format!("{}-{c}", join(&d)));
            }
        }
    }
}

fn bank_account_for(country: Country, rng: &mut ChaCha8Rng) -> (&'static str, String) {
    loop {
        match country {
            Country::No => {
                let mut d = digits(rng, 10);
                d[0] = rng.gen_range(1..10);
                if let Some(c) = mod11_no(&d, &[5, 4, 3, 2, 7, 6, 5, 4, 3, 2]) {
                    d.push(c);
                    return ("BBAN:NO", join(&d));
                }
            }
            Country::Dk => {
                let mut d = digits(rng, 14);
                d[0] = rng.gen_range(1..10);
                return ("BBAN:DK", join(&d));
            }
            Country::Fi => {
                let mut d = digits(rng, 14);
                d[0] = rng.gen_range(1..8);
                let bban = join(&d);
                // IBAN check digits: move "FI00" to the end, letters as numbers, mod 97.
                let numeric = format!("{bban}151800");
                let rem = numeric
                    .bytes()
                    .fold(0u32, |acc, b| (acc * 10 + u32::from(b - b'0')) % 97);
                return ("IBAN:FI", format!("FI{:02}{bban}", 98 - rem));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_one_shares_the_owner_of_ledger_zero_but_not_its_sales_unit() {
        let a = LedgerProfile::generate(42, 0);
        let b = LedgerProfile::generate(42, 1);
        assert_eq!((a.owner_scheme, &a.owner_id), (b.owner_scheme, &b.owner_id));
        assert_ne!(a.sales_units[0].handle, b.sales_units[0].handle);
        assert_eq!(a.ledger_id, "100001");
        assert_eq!(b.ledger_id, "100002");
    }

    #[test]
    fn identifiers_have_the_documented_shapes() {
        for i in 0..12 {
            let p = LedgerProfile::generate(7, i);
            match p.country {
                Country::No => assert_eq!(p.owner_id.len(), 9),
                Country::Dk => assert_eq!(p.owner_id.len(), 8),
                Country::Fi => assert_eq!(p.owner_id.len(), 9),
            }
            for u in &p.sales_units {
                let (prefix, num) = u.handle.split_once(':').expect("handle has a colon");
                assert_eq!(num, u.serial);
                if p.vippsnummer {
                    assert_eq!(prefix, p.country.code());
                    assert_eq!(num.len(), 5);
                } else {
                    assert_eq!(prefix, "api");
                    assert_eq!(num.len(), 6);
                }
            }
        }
    }
}
