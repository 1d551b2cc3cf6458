//! What a broken invariant looks like: one variant per way a policy (or the
//! simulator itself) can go wrong, each with a stable name and a message that
//! names the row.
//!
//! Owns: the names and messages. Not here: detecting them (`invariants`).

use super::population::EPOCH_START_MS;
use sluice::guard::Breach;
use sluice_policy::TimestampMs;
use std::fmt;

/// An invariant that did not hold after a tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub tick: u64,
    /// The virtual time the tick started at.
    pub now_ms: TimestampMs,
    /// Whose tick it was.
    pub at: LoopId,
    pub kind: ViolationKind,
}

/// One loop of one drainer, counted from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LoopId {
    pub drainer: u32,
    pub index: u32,
}

impl fmt::Display for LoopId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "drainer {} loop {}", self.drainer, self.index)
    }
}

/// A row in a message: rowid and primary key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowName {
    pub rowid: i64,
    pub id: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    /// The outbox holds a different number of rows than it started with.
    RowLost { detail: String },
    /// An inflight row's lease ran out before a tick that finished, and the
    /// tick left it inflight: nothing would ever send it again.
    LeaseNotReclaimed {
        row: RowName,
        lease_end_ms: TimestampMs,
        tick_ms: TimestampMs,
    },
    /// A row went out again with no failure or lost lease since it was accepted.
    ResentWithoutFailure { row: RowName, why: String },
    /// A row was retried at or past the cap, or counts more attempts than allowed.
    AttemptsUnbounded {
        row: RowName,
        attempts: u32,
        bound: u32,
        why: &'static str,
    },
    /// A retry was scheduled further out than the backoff cap.
    BackoffUnbounded {
        row: RowName,
        wait_ms: i64,
        cap_ms: i64,
    },
    /// A row claimed by a tick that finished normally is still inflight.
    ClaimNotSettled { row: RowName, attempts: u32 },
    /// A done or dead row changed afterwards.
    FinishedRowChanged {
        row: RowName,
        was: String,
        now: String,
    },
    /// A pending row older than the row TTL survived an expiry sweep.
    ExpiryMissed {
        row: RowName,
        age_ms: i64,
        ttl_ms: i64,
    },
    /// The tick report disagrees with what the tick did.
    ReportMismatch {
        field: &'static str,
        reported: String,
        actual: String,
    },
    /// The policy broke one of the host's rules: the guard refused the call.
    Guard(Breach),
}

impl ViolationKind {
    /// The invariant's stable name (tests and scripts match on it).
    pub fn name(&self) -> &'static str {
        match self {
            ViolationKind::RowLost { .. } | ViolationKind::LeaseNotReclaimed { .. } => {
                "no_row_lost"
            }
            ViolationKind::ResentWithoutFailure { .. } => "resent_only_after_failure",
            ViolationKind::AttemptsUnbounded { .. } => "attempts_bounded",
            ViolationKind::BackoffUnbounded { .. } => "backoff_bounded",
            ViolationKind::ClaimNotSettled { .. } => "claim_settled_in_its_tick",
            ViolationKind::FinishedRowChanged { .. } => "finished_row_never_changes",
            ViolationKind::ExpiryMissed { .. } => "old_rows_expire",
            ViolationKind::ReportMismatch { .. } => "report_matches_tick",
            ViolationKind::Guard(breach) => breach.rule.name(),
        }
    }
}

impl fmt::Display for RowName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {} (id {})", self.rowid, self.id)
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ViolationKind::RowLost { detail } => write!(f, "{detail}"),
            ViolationKind::LeaseNotReclaimed {
                row,
                lease_end_ms,
                tick_ms,
            } => write!(
                f,
                "{row} is still inflight after a tick at {tick_ms} although its lease ran out at {lease_end_ms}: it was never reclaimed"
            ),
            ViolationKind::ResentWithoutFailure { row, why } => {
                write!(f, "{row} was sent again: {why}")
            }
            ViolationKind::AttemptsUnbounded {
                row,
                attempts,
                bound,
                why,
            } => {
                write!(f, "{row} {why}: {attempts} attempts, bound {bound}")
            }
            ViolationKind::BackoffUnbounded {
                row,
                wait_ms,
                cap_ms,
            } => {
                write!(
                    f,
                    "{row} was retried {wait_ms} ms out, past the backoff cap of {cap_ms} ms"
                )
            }
            ViolationKind::ClaimNotSettled { row, attempts } => write!(
                f,
                "{row} was claimed (attempt {attempts}) by a tick that finished, yet no settle reached it: it stays inflight until its lease runs out"
            ),
            ViolationKind::FinishedRowChanged { row, was, now } => {
                write!(f, "{row} was {was} and became {now}")
            }
            ViolationKind::ExpiryMissed {
                row,
                age_ms,
                ttl_ms,
            } => {
                write!(
                    f,
                    "{row} is still pending at {age_ms} ms old after an expiry sweep (row TTL {ttl_ms} ms)"
                )
            }
            ViolationKind::ReportMismatch {
                field,
                reported,
                actual,
            } => {
                write!(
                    f,
                    "the tick report says {field} = {reported}, but the tick did {actual}"
                )
            }
            ViolationKind::Guard(breach) => match &breach.row {
                Some(row) => write!(f, "{row} {}", breach.detail),
                None => write!(f, "{}", breach.detail),
            },
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let elapsed_s = (self.now_ms - EPOCH_START_MS) as f64 / 1000.0;
        write!(
            f,
            "invariant `{}` broken at tick {} of {} (virtual time +{elapsed_s:.3} s): {}",
            self.kind.name(),
            self.tick,
            self.at,
            self.kind
        )
    }
}

impl std::error::Error for Violation {}
