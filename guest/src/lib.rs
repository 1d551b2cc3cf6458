//! The default drain policy as a component: bindings only.
//!
//! Every decision lives in `sluice-policy`; this file converts between the
//! generated WIT types and that crate's plain types, and lets the policy see
//! the world through the component's imports and nothing else.

#[cfg(feature = "faults")]
mod faults;
mod imports;

use imports::{Imports, install_panic_log};

use sluice_policy as policy;
use std::cell::{Cell, RefCell};

/// The generated bindings: the only place with `unsafe` (the canonical ABI glue).
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "drain-policy",
    });

    use super::DefaultPolicy;
    export!(DefaultPolicy with_types_in self);
}

use bindings::exports::sluice::drain::policy::{Guest, PolicyInfo, TickReport};

struct DefaultPolicy;

thread_local! {
    static SETTINGS: RefCell<policy::Settings> = RefCell::new(policy::Settings::default());
    /// The claim size, carried from tick to tick (`sluice_policy::claim`):
    /// the only state besides the configuration.
    static CLAIM: Cell<policy::ClaimSize> = Cell::new(policy::ClaimSize::default());
}

#[cfg(feature = "faults")]
thread_local! {
    static FAULT: std::cell::Cell<faults::Fault> = const { std::cell::Cell::new(faults::Fault::None) };
}

/// The name `info()` reports: the faulty build must never pass for the default.
#[cfg(not(feature = "faults"))]
const NAME: &str = policy::POLICY_NAME;
#[cfg(feature = "faults")]
const NAME: &str = "sluice-faulty";

impl Guest for DefaultPolicy {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: NAME.into(),
            version: policy::POLICY_VERSION.into(),
        }
    }

    fn configure(settings: Vec<(String, String)>) -> Result<(), String> {
        #[cfg(feature = "faults")]
        let settings = {
            let (fault, rest): (Vec<_>, Vec<_>) =
                settings.into_iter().partition(|(k, _)| k == "fault");
            let fault = match fault.last() {
                Some((_, value)) => faults::Fault::parse(value)?,
                None => faults::Fault::None,
            };
            FAULT.with(|f| f.set(fault));
            rest
        };
        let parsed = policy::Settings::from_pairs(&settings).map_err(|e| e.0)?;
        SETTINGS.with(|s| *s.borrow_mut() = parsed);
        CLAIM.with(|c| c.set(policy::ClaimSize::default()));
        Ok(())
    }

    fn tick(now: i64) -> Result<TickReport, String> {
        install_panic_log();
        let settings = SETTINGS.with(|s| s.borrow().clone());
        let mut claim = CLAIM.with(Cell::get);
        #[cfg(not(feature = "faults"))]
        let report = policy::tick(&mut Imports, &settings, &mut claim, now)?;
        #[cfg(feature = "faults")]
        let report = {
            let fault = FAULT.with(|f| f.get());
            fault.strike_early();
            policy::tick(
                &mut faults::Faulty {
                    inner: Imports,
                    fault,
                },
                &settings,
                &mut claim,
                now,
            )?
        };
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
