//! The table as it stands after a tick: no row lost (none left inflight
//! past its lease), attempts within the cap plus the claims lost to dead
//! drainers, done and dead rows frozen, and no pending row past its TTL once
//! an expiry sweep ran.
//!
//! The rows the tick claimed or settled are looked at, and every row after a
//! tick whose reclaim or expiry changed rows, and every so many ticks: a row
//! nobody touched cannot have broken a per-row bound, so most ticks cost
//! what they touched, not the size of the table.

use super::{Checker, TickView, name};
use crate::sim::outbox::{Status, StoredRow};
use crate::sim::violation::ViolationKind;

/// The columns of a done or dead row, which must never change again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Finished {
    status: Status,
    attempts: u32,
    last_error: Option<String>,
    broker_message_id: Option<String>,
    delivered_at: Option<i64>,
}

impl Finished {
    pub(super) fn of(stored: &StoredRow) -> Finished {
        Finished {
            status: stored.status,
            attempts: stored.row.attempts,
            last_error: stored.last_error.clone(),
            broker_message_id: stored.broker_message_id.clone(),
            delivered_at: stored.delivered_at,
        }
    }

    /// Compares without cloning: this runs for every finished row every tick.
    fn matches(&self, stored: &StoredRow) -> bool {
        self.status == stored.status
            && self.attempts == stored.row.attempts
            && self.last_error == stored.last_error
            && self.broker_message_id == stored.broker_message_id
            && self.delivered_at == stored.delivered_at
    }

    fn describe(&self) -> String {
        format!(
            "{} (attempts {}, last_error {:?}, broker_message_id {:?}, delivered_at {:?})",
            self.status.as_str(),
            self.attempts,
            self.last_error,
            self.broker_message_id,
            self.delivered_at
        )
    }
}

impl Checker {
    pub(super) fn check_rows(&mut self, tick: &TickView<'_>) -> Result<(), ViolationKind> {
        // Counting is a look at the whole table: with the full look only.
        let held = if tick.full_look {
            tick.store.row_count()
        } else {
            self.rows_total
        };
        if held != self.rows_total {
            let detail = format!(
                "the outbox holds {held} rows; it started with {}",
                self.rows_total
            );
            return Err(ViolationKind::RowLost { detail });
        }
        if tick.full_look {
            for stored in tick.store.rows().values() {
                self.check_row(stored)?;
            }
        } else {
            for rowid in &tick.journal.touched {
                if let Some(stored) = tick.store.get(*rowid) {
                    self.check_row(&stored)?;
                }
            }
        }
        // A finished tick reclaimed at its start every lease run out by then;
        // the lease that ends first is the one to look at.
        if let Some(stored) = tick.report.and_then(|_| tick.store.earliest_lease())
            && stored.next_attempt_at <= tick.now_ms
        {
            let (lease_end_ms, tick_ms) = (stored.next_attempt_at, tick.now_ms);
            return Err(ViolationKind::LeaseNotReclaimed {
                row: name(&stored),
                lease_end_ms,
                tick_ms,
            });
        }
        // Only the oldest pending row can be past its TTL first.
        let sweep_ran = tick.report.is_some_and(|r| !r.more_due);
        let ttl_ms = self.settings.row_ttl_ms;
        if let Some(stored) = sweep_ran.then(|| tick.store.oldest_pending()).flatten() {
            let age_ms = tick.now_ms.saturating_sub(stored.row.enqueued_at);
            if age_ms > ttl_ms {
                return Err(ViolationKind::ExpiryMissed {
                    row: name(&stored),
                    age_ms,
                    ttl_ms,
                });
            }
        }
        Ok(())
    }

    /// One changed row: attempts within bounds, and frozen once finished.
    /// Rows the tick did not change cannot break either.
    fn check_row(&mut self, stored: &StoredRow) -> Result<(), ViolationKind> {
        let history = self.history.entry(stored.row.rowid).or_default();
        let bound = self
            .settings
            .max_attempts
            .saturating_add(history.lost_claims);
        if stored.row.attempts > bound {
            let why = "counts more attempts than the cap plus its lost claims";
            let attempts = stored.row.attempts;
            return Err(ViolationKind::AttemptsUnbounded {
                row: name(stored),
                attempts,
                bound,
                why,
            });
        }
        match &history.finished {
            Some(was) if !was.matches(stored) => {
                let (was, now) = (was.describe(), Finished::of(stored).describe());
                Err(ViolationKind::FinishedRowChanged {
                    row: name(stored),
                    was,
                    now,
                })
            }
            Some(_) => Ok(()),
            None if !stored.status.is_open() => {
                history.finished = Some(Finished::of(stored));
                Ok(())
            }
            None => Ok(()),
        }
    }
}
