//! What a step and a whole run report: [`StepReport`], [`Stop`],
//! [`SimOutcome`] and its one-line summary.

use super::violation::Violation;
use sluice_policy::{TickReport, TimestampMs};

/// What one step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepReport {
    pub tick: u64,
    pub now_ms: TimestampMs,
    /// The policy's report, or its error or trap.
    pub result: Result<TickReport, String>,
    /// The simulated drainer died in this tick (its settle was lost).
    pub crashed: bool,
}

/// Why a run stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// No row is pending or inflight.
    Drained,
    /// `ticks_max` ticks ran with rows still open.
    TickLimit,
    Violation(Violation),
}

/// How a run went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimOutcome {
    pub seed: u64,
    pub stop: Stop,
    pub ticks: u64,
    /// Ticks that returned an error or trapped (simulated crashes included).
    pub failed_ticks: u64,
    pub rows: u32,
    pub pending: usize,
    pub inflight: usize,
    pub done: usize,
    pub dead: usize,
    /// Rows an operator had taken back before the run; they must stay so.
    pub aborted: usize,
    /// Dispatches the policy handed to the broker.
    pub sends: u64,
    /// Faults injected, all kinds.
    pub faults: u64,
    /// Claims that ended without a settle (dead drainer, failed tick); their
    /// rows came back through the lease.
    pub lost_claims: u64,
    pub virtual_ms: i64,
}

impl SimOutcome {
    /// One line a script can parse: `key=value` pairs.
    pub fn summary_line(&self, profile: &str) -> String {
        let stop = match &self.stop {
            Stop::Drained => "drained",
            Stop::TickLimit => "tick_limit",
            Stop::Violation(_) => "violation",
        };
        format!(
            "sim seed={} profile={profile} stop={stop} ticks={} rows={} done={} dead={} pending={} inflight={} aborted={} sends={} faults={} lost_claims={} failed_ticks={} virtual_seconds={:.1}",
            self.seed,
            self.ticks,
            self.rows,
            self.done,
            self.dead,
            self.pending,
            self.inflight,
            self.aborted,
            self.sends,
            self.faults,
            self.lost_claims,
            self.failed_ticks,
            self.virtual_ms as f64 / 1000.0
        )
    }
}
