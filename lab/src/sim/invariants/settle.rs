//! What the settle said, beyond the guard's rules (this tick's claims only,
//! each once, with the attempts its claim counted): never a retry past the
//! cap or the backoff cap; every claim settled unless the drainer died; a
//! report that agrees.

use super::{Checker, TickView, name, unknown};
use crate::sim::outbox::Status;
use crate::sim::violation::ViolationKind;
use sluice_policy::{SendResult, TickReport, Verdict};
use std::collections::BTreeMap;

impl Checker {
    /// Retries stay within the policy's own bounds. Which rows a settle may
    /// name, and with what attempts, are the guard's rules.
    pub(super) fn check_settles(&self, tick: &TickView<'_>) -> Result<(), ViolationKind> {
        for settle in &tick.journal.settles {
            for outcome in &settle.outcomes {
                let Verdict::Retry {
                    next_attempt_at, ..
                } = &outcome.verdict
                else {
                    continue;
                };
                let row = tick
                    .store
                    .get(outcome.rowid)
                    .map_or_else(|| unknown(outcome.rowid), |r| name(&r));
                let max = self.settings.max_attempts;
                if outcome.attempts >= max {
                    let why = "was retried although it had used every attempt";
                    return Err(ViolationKind::AttemptsUnbounded {
                        row,
                        attempts: outcome.attempts,
                        bound: max,
                        why,
                    });
                }
                let (wait_ms, cap_ms) = (
                    next_attempt_at.saturating_sub(settle.at_ms),
                    self.settings.backoff_cap_ms,
                );
                if wait_ms > cap_ms {
                    return Err(ViolationKind::BackoffUnbounded {
                        row,
                        wait_ms,
                        cap_ms,
                    });
                }
            }
        }
        Ok(())
    }

    /// A tick that finished settles every claim; one whose drainer died or
    /// that failed leaves its claims to the lease, and they count as lost.
    pub(super) fn check_claims_settled(
        &mut self,
        tick: &TickView<'_>,
        claims: &BTreeMap<i64, u32>,
    ) -> Result<(), ViolationKind> {
        let finished = tick.report.is_some();
        let held = |rowid: i64, attempts: u32| {
            tick.store
                .get(rowid)
                .is_some_and(|r| r.status == Status::Inflight && r.row.attempts == attempts)
        };
        for (&rowid, &attempts) in claims {
            if !held(rowid, attempts) {
                continue;
            }
            if finished {
                let row = tick
                    .store
                    .get(rowid)
                    .map_or_else(|| unknown(rowid), |r| name(&r));
                return Err(ViolationKind::ClaimNotSettled { row, attempts });
            }
            self.history.entry(rowid).or_default().lost_claims += 1;
        }
        if tick.journal.crashed {
            return Ok(());
        }
        for (dispatch, result) in &tick.journal.sends {
            let settled = claims
                .get(&dispatch.rowid)
                .is_some_and(|&attempts| !held(dispatch.rowid, attempts));
            if let (SendResult::Accepted(message_id), true) = (result, settled) {
                self.history.entry(dispatch.rowid).or_default().delivered =
                    Some(message_id.clone());
            }
        }
        Ok(())
    }
}

/// The report must agree with the journal: the host schedules by it.
pub(super) fn check_report(report: &TickReport, tick: &TickView<'_>) -> Result<(), ViolationKind> {
    let journal = tick.journal;
    // The settles' outcomes counted as the policy counts them.
    let mut settled = TickReport::default();
    for settle in &journal.settles {
        settled.tally(&settle.outcomes);
    }
    let finished = |r: &TickReport| {
        u64::from(r.done) + u64::from(r.dead) + u64::from(r.retried) + u64::from(r.held)
    };
    // Dead, retried and held are checked as a sum: which rows had to die is the
    // attempts and expiry checks' business, row by row.
    let counts = [
        (
            "claimed",
            u64::from(report.claimed),
            journal.claims.len() as u64,
        ),
        ("done", u64::from(report.done), u64::from(settled.done)),
        (
            "done + dead + retried + held",
            finished(report),
            finished(&settled),
        ),
        (
            "reclaimed",
            u64::from(report.reclaimed),
            u64::from(journal.reclaimed),
        ),
        (
            "expired",
            u64::from(report.expired),
            u64::from(journal.expired),
        ),
    ];
    for (field, reported, actual) in counts {
        if reported != actual {
            return Err(ViolationKind::ReportMismatch {
                field,
                reported: reported.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    if let Some(due) = tick.store.next_due_at(&journal.skip)
        && report.next_due_at.is_none_or(|reported| reported > due)
    {
        let reported = format!("{:?}", report.next_due_at);
        return Err(ViolationKind::ReportMismatch {
            field: "next_due_at",
            reported,
            actual: format!("work due at {due}"),
        });
    }
    Ok(())
}
