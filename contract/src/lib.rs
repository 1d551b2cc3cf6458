//! The contract between the Sluice host and a drain policy, in plain Rust.
//!
//! `wit/drain.wit` is the contract as the component model sees it; this
//! crate is the same contract as the Rust on both sides of it sees it:
//!
//! - [`types`]: the shapes of the WIT types.
//! - [`world`]: the [`World`] trait, one method per import, and the imports
//!   as values ([`Call`], [`Reply`]) for the worlds that treat every call
//!   alike ([`Answer`]). The guest implements `World` over the component's
//!   imports and the host over SQLite and the broker links; the recorder,
//!   replay, what-if, the guard and the simulator answer calls.
//! - [`CONTRACT`]: the WIT package and version, written once.
//! - [`TickReport::tally`]: the report's arithmetic, from the outcomes.
//!
//! It depends on no policy: the default and outage-aware rules, the store,
//! the links and the engine all depend on it.

pub mod types;
pub mod world;

#[cfg(feature = "serde")]
mod bytes;

pub use types::*;
pub use world::*;

/// The WIT package's name.
pub const PACKAGE: &str = "sluice:drain";
/// The WIT package's version.
pub const VERSION: &str = "0.2.0";

/// The WIT package this contract is: the `package` line of `wit/drain.wit`.
pub const CONTRACT: &str = "sluice:drain@0.2.0";

impl TickReport {
    /// Counts each outcome under its verdict: done, dead, retried or held.
    pub fn tally(&mut self, outcomes: &[Outcome]) {
        for outcome in outcomes {
            match outcome.verdict {
                Verdict::Done { .. } => self.done += 1,
                Verdict::Dead { .. } => self.dead += 1,
                Verdict::Retry { .. } => self.retried += 1,
                Verdict::Hold { .. } => self.held += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_is_the_package_of_wit_drain_wit() {
        let wit = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/drain.wit"));
        let package = wit
            .lines()
            .find_map(|l| l.trim().strip_prefix("package "))
            .map(|p| p.trim_end_matches(';'));
        assert_eq!(
            package,
            Some(CONTRACT),
            "CONTRACT must be the package line of wit/drain.wit"
        );
        assert_eq!(CONTRACT, format!("{PACKAGE}@{VERSION}"));
    }

    #[test]
    fn the_report_counts_each_verdict() {
        let outcome = |verdict| Outcome {
            rowid: 1,
            attempts: 1,
            verdict,
        };
        let mut report = TickReport::default();
        report.tally(&[
            outcome(Verdict::Done {
                broker_message_id: "m".into(),
                delivered_at: 0,
            }),
            outcome(Verdict::Dead { reason: "x".into() }),
            outcome(Verdict::Hold {
                next_attempt_at: 0,
                last_error: None,
            }),
            outcome(Verdict::Done {
                broker_message_id: "n".into(),
                delivered_at: 0,
            }),
        ]);
        assert_eq!(
            (report.done, report.dead, report.retried, report.held),
            (2, 1, 0, 1)
        );
    }
}
