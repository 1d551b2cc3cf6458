//! The outage-aware drain policy as a component: bindings only.
//!
//! Every decision lives in `sluice-outage-policy` (and the `sluice-policy`
//! rules it reuses); this file converts between the generated WIT types and
//! the plain types, and lets the policy see the world through the
//! component's imports and nothing else. The binding shape is guest/'s.

/// The imports and conversions are guest/'s, compiled against this crate's
/// own bindings of the same WIT.
#[path = "../../guest/src/imports.rs"]
mod imports;

use imports::{Imports, install_panic_log};
use sluice_outage_policy as outage;
use sluice_policy::ClaimSize;
use std::cell::{Cell, RefCell};

/// The generated bindings: the only place with `unsafe` (the canonical ABI glue).
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "drain-policy",
    });

    use super::OutagePolicy;
    export!(OutagePolicy with_types_in self);
}

use bindings::exports::sluice::drain::policy::{Guest, PolicyInfo, TickReport};

struct OutagePolicy;

thread_local! {
    static SETTINGS: RefCell<outage::OutageSettings> = RefCell::new(outage::OutageSettings::default());
    /// The claim size, carried from tick to tick (`sluice_policy::claim`):
    /// the only state besides the configuration.
    static CLAIM: Cell<ClaimSize> = Cell::new(ClaimSize::default());
}

impl Guest for OutagePolicy {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: outage::POLICY_NAME.into(),
            version: outage::POLICY_VERSION.into(),
        }
    }

    fn configure(settings: Vec<(String, String)>) -> Result<(), String> {
        let parsed = outage::OutageSettings::from_pairs(&settings).map_err(|e| e.0)?;
        SETTINGS.with(|s| *s.borrow_mut() = parsed);
        CLAIM.with(|c| c.set(ClaimSize::default()));
        Ok(())
    }

    fn tick(now: i64) -> Result<TickReport, String> {
        install_panic_log();
        let settings = SETTINGS.with(|s| s.borrow().clone());
        let mut claim = CLAIM.with(Cell::get);
        let report = outage::tick(&mut Imports, &settings, &mut claim, now)?;
        CLAIM.with(|c| c.set(claim));
        Ok(TickReport {
            claimed: report.claimed,
            done: report.done,
            dead: report.dead,
            retried: report.retried,
            held: report.held,
            reclaimed: report.reclaimed,
            expired: report.expired,
            more_due: report.more_due,
            next_due_at: report.next_due_at,
        })
    }
}
