//! What a broken invariant looks like: one variant per way a policy (or the
//! simulator itself) can go wrong, each with a stable name and a message that
//! names the row.
//!
//! Owns: the names and messages. Not here: detecting them (`invariants`).

use super::population::EPOCH_START_MS;
use sluice_policy::TimestampMs;
use std::fmt;

/// An invariant that did not hold after a tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub tick: u64,
    /// The virtual time the tick started at.
    pub now_ms: TimestampMs,
    pub kind: ViolationKind,
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
    /// A row with a sender session went out over a daemon link.
    SessionRowOverDaemon {
        row: RowName,
        session: String,
        mesh: String,
    },
    /// A dispatch went over a link that is not the row's.
    WrongLink {
        row: RowName,
        route: String,
        expected: String,
    },
    /// A row with a defect or with some routing columns missing was sent.
    MalformedRowSent { row: RowName, why: String },
    /// A row the tick had not claimed (pending, done, dead) was dispatched.
    DispatchedUnclaimedRow { row: RowName, status: &'static str },
    /// A row went out again with no failure or lost lease since it was accepted.
    ResentWithoutFailure { row: RowName, why: String },
    /// A dispatch carried another client message id than its row.
    ClientMessageIdChanged {
        row: RowName,
        row_cmid: String,
        sent_cmid: String,
    },
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
    /// A settle named a row this tick had not claimed, or named one twice.
    SettledUnclaimedRow { rowid: i64, why: &'static str },
    /// An outcome carried other attempts than the claim returned.
    OutcomeAttemptsChanged {
        row: RowName,
        claimed: u32,
        settled: u32,
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
}

impl ViolationKind {
    /// The invariant's stable name (tests and scripts match on it).
    pub fn name(&self) -> &'static str {
        match self {
            ViolationKind::RowLost { .. } | ViolationKind::LeaseNotReclaimed { .. } => {
                "no_row_lost"
            }
            ViolationKind::SessionRowOverDaemon { .. } => "session_row_never_over_daemon",
            ViolationKind::WrongLink { .. } => "route_matches_row",
            ViolationKind::MalformedRowSent { .. } => "malformed_row_never_sent",
            ViolationKind::DispatchedUnclaimedRow { .. } => "only_claimed_rows_dispatched",
            ViolationKind::ResentWithoutFailure { .. } => "resent_only_after_failure",
            ViolationKind::ClientMessageIdChanged { .. } => "same_client_message_id",
            ViolationKind::AttemptsUnbounded { .. } => "attempts_bounded",
            ViolationKind::BackoffUnbounded { .. } => "backoff_bounded",
            ViolationKind::SettledUnclaimedRow { .. } => "settle_only_own_claims",
            ViolationKind::OutcomeAttemptsChanged { .. } => "outcome_carries_claimed_attempts",
            ViolationKind::ClaimNotSettled { .. } => "claim_settled_in_its_tick",
            ViolationKind::FinishedRowChanged { .. } => "finished_row_never_changes",
            ViolationKind::ExpiryMissed { .. } => "old_rows_expire",
            ViolationKind::ReportMismatch { .. } => "report_matches_tick",
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
            ViolationKind::SessionRowOverDaemon { row, session, mesh } => {
                write!(
                    f,
                    "{row} has sender session {} but was dispatched over the daemon link of mesh {mesh:?}",
                    short(session)
                )
            }
            ViolationKind::WrongLink {
                row,
                route,
                expected,
            } => write!(
                f,
                "{row} was dispatched over {route}; it belongs on {expected}"
            ),
            ViolationKind::MalformedRowSent { row, why } => write!(
                f,
                "{row} was sent although {why}: it must die, never be broadcast"
            ),
            ViolationKind::DispatchedUnclaimedRow { row, status } => {
                write!(
                    f,
                    "{row} was dispatched without being claimed in this tick (it is {status})"
                )
            }
            ViolationKind::ResentWithoutFailure { row, why } => {
                write!(f, "{row} was sent again: {why}")
            }
            ViolationKind::ClientMessageIdChanged {
                row,
                row_cmid,
                sent_cmid,
            } => {
                write!(
                    f,
                    "{row} has client_message_id {row_cmid:?} but went out as {sent_cmid:?}"
                )
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
            ViolationKind::SettledUnclaimedRow { rowid, why } => {
                write!(f, "the settle named rowid {rowid}, {why}")
            }
            ViolationKind::OutcomeAttemptsChanged {
                row,
                claimed,
                settled,
            } => {
                write!(
                    f,
                    "{row} was claimed with {claimed} attempts but settled with {settled}"
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
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let elapsed_s = (self.now_ms - EPOCH_START_MS) as f64 / 1000.0;
        write!(
            f,
            "invariant `{}` broken at tick {} (virtual time +{elapsed_s:.3} s): {}",
            self.kind.name(),
            self.tick,
            self.kind
        )
    }
}

impl std::error::Error for Violation {}

/// The first 12 characters of a session key, as the policy logs them.
fn short(key: &str) -> String {
    key.chars().take(12).collect()
}
