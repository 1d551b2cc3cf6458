//! `settle`: applies the outcomes of a claimed batch in one transaction.
//!
//! Owns: the four verdict statements and their compare-and-set. Not here:
//! deciding the verdicts (the policy).
//!
//! Every statement matches `rowid AND status = 'inflight' AND attempts = ?`:
//! only the claim that produced the outcome may settle it. A row that was
//! reclaimed (status back to pending), reclaimed and claimed again (attempts
//! moved on), finished by another drainer or aborted by its producer is left
//! alone, and the settle says so by not counting it.

use crate::error::{StoreError, sqlite};
use crate::outbox::Outbox;
use rusqlite::params;
use sluice_contract::{Outcome, Verdict};
use std::time::Instant;

/// A settle with a deadline settles at least this many rows, and looks at
/// the clock once every this many.
pub(crate) const SETTLE_ROWS_MIN: usize = 16;

/// Whether a row-by-row write that has written `done` rows ends here: past
/// its `deadline`, looked at every [`SETTLE_ROWS_MIN`] rows (a clock read a
/// row would cost more than it saves). Settles and expiries alike.
pub(crate) fn cut_here(done: usize, deadline: Option<Instant>) -> bool {
    done >= SETTLE_ROWS_MIN
        && done.is_multiple_of(SETTLE_ROWS_MIN)
        && deadline.is_some_and(|deadline| Instant::now() >= deadline)
}

// Every statement also records the deciding policy (`?5`, `?6`: the
// audit columns `decided_by`, `decided_at`).
const DONE_SQL: &str = "UPDATE outbox
    SET status = 'done', delivered_at = ?3, broker_message_id = ?4, last_error = NULL,
        decided_by = ?5, decided_at = ?6
    WHERE rowid = ?1 AND status = 'inflight' AND attempts = ?2";

const DEAD_SQL: &str = "UPDATE outbox
    SET status = 'dead', last_error = ?3, decided_by = ?5, decided_at = ?6
    WHERE rowid = ?1 AND status = 'inflight' AND attempts = ?2";

/// `attempts` stays as the claim counted it; the row is due again at
/// `next_attempt_at`.
const RETRY_SQL: &str = "UPDATE outbox
    SET status = 'pending', next_attempt_at = ?3, last_error = ?4, decided_by = ?5,
        decided_at = ?6
    WHERE rowid = ?1 AND status = 'inflight' AND attempts = ?2";

/// The attempt the claim counted is given back: the row was not sent, or
/// was refused for its member's rate rather than for itself. `last_error`
/// changes only when the hold gives one.
const HOLD_SQL: &str = "UPDATE outbox
    SET status = 'pending', attempts = attempts - 1, next_attempt_at = ?3,
        last_error = COALESCE(?4, last_error), decided_by = ?5, decided_at = ?6
    WHERE rowid = ?1 AND status = 'inflight' AND attempts = ?2";

impl Outbox {
    /// Applies every outcome in one `BEGIN IMMEDIATE` transaction and returns
    /// how many rows changed: outcomes whose claim no longer holds are skipped,
    /// not errors.
    pub fn settle(&mut self, outcomes: &[Outcome]) -> Result<u32, StoreError> {
        self.settle_by(outcomes, None, None)
    }

    /// [`Outbox::settle`], recording in each changed row which policy
    /// decided it (`decided_by`, e.g. its sha256) and when (`decided_at`).
    pub fn settle_by(
        &mut self,
        outcomes: &[Outcome],
        decided_by: Option<&str>,
        decided_at: Option<i64>,
    ) -> Result<u32, StoreError> {
        self.settle_until(outcomes, decided_by, decided_at, None)
            .map(|(_, changed)| changed)
    }

    /// [`Outbox::settle_by`], ending the transaction early once `deadline`
    /// has passed: returns how many of `outcomes` (a prefix) it settled, and
    /// how many rows changed. It settles at least [`SETTLE_ROWS_MIN`] first.
    pub(crate) fn settle_until(
        &mut self,
        outcomes: &[Outcome],
        decided_by: Option<&str>,
        decided_at: Option<i64>,
        deadline: Option<Instant>,
    ) -> Result<(usize, u32), StoreError> {
        if outcomes.is_empty() {
            return Ok((0, 0));
        }
        self.write("settle", |tx, path| {
            let map = sqlite(path, "settle");
            // Prepared once per settle, not per outcome: rowid-keyed cached
            // statements are what keep a settle at a few microseconds a row.
            let mut done = tx.prepare_cached(DONE_SQL).map_err(&map)?;
            let mut dead = tx.prepare_cached(DEAD_SQL).map_err(&map)?;
            let mut retry = tx.prepare_cached(RETRY_SQL).map_err(&map)?;
            let mut hold = tx.prepare_cached(HOLD_SQL).map_err(&map)?;
            let mut changed: u32 = 0;
            let mut settled = 0;
            for Outcome {
                rowid,
                attempts,
                verdict,
            } in outcomes
            {
                if cut_here(settled, deadline) {
                    break;
                }
                settled += 1;
                let rows = match verdict {
                    Verdict::Done {
                        broker_message_id,
                        delivered_at,
                    } => done.execute(params![
                        rowid,
                        attempts,
                        delivered_at,
                        broker_message_id,
                        decided_by,
                        decided_at
                    ]),
                    Verdict::Dead { reason } => dead.execute(params![
                        rowid,
                        attempts,
                        reason,
                        None::<String>,
                        decided_by,
                        decided_at
                    ]),
                    Verdict::Retry {
                        next_attempt_at,
                        last_error,
                    } => retry.execute(params![
                        rowid,
                        attempts,
                        next_attempt_at,
                        last_error,
                        decided_by,
                        decided_at
                    ]),
                    Verdict::Hold {
                        next_attempt_at,
                        last_error,
                    } => hold.execute(params![
                        rowid,
                        attempts,
                        next_attempt_at,
                        last_error,
                        decided_by,
                        decided_at
                    ]),
                }
                .map_err(&map)?;
                // Each statement changes at most one row (rowid is unique).
                changed = changed.saturating_add(u32::from(rows > 0));
            }
            Ok((settled, changed))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use sluice_contract::ClaimFilter;

    #[test]
    fn a_settle_past_its_deadline_ends_after_its_least_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(&dir.path().join("outbox.db")).unwrap();
        outbox.enqueue(&crate::enqueue::rows_due(100)).unwrap();
        let claimed = outbox
            .claim_due_except(100, 100, 60_000, &ClaimFilter::default())
            .unwrap();
        let outcomes: Vec<Outcome> = claimed
            .iter()
            .map(|row| Outcome {
                rowid: row.rowid,
                attempts: row.attempts,
                verdict: Verdict::Dead {
                    reason: "test".into(),
                },
            })
            .collect();
        let past = Some(Instant::now());
        let (settled, changed) = outbox.settle_until(&outcomes, None, None, past).unwrap();
        assert_eq!(
            (settled, changed),
            (SETTLE_ROWS_MIN, SETTLE_ROWS_MIN as u32)
        );
        // The rest, with no deadline: every one settles, none twice.
        let rest = &outcomes[settled..];
        let (settled, changed) = outbox.settle_until(rest, None, None, None).unwrap();
        assert_eq!((settled, changed), (rest.len(), rest.len() as u32));
    }
}
