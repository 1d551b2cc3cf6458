//! The design's invariants, checked after every tick.
//!
//! Owns: [`Checker`] and the per-row history it needs (claims lost to a dead
//! drainer, sends the broker accepted, how a finished row looked). Not here:
//! the violation texts (`violation`), the tick itself (`Sim::step`).
//!
//! - `wire`: what went out — never a row the broker already has.
//! - `settle`: retries within bounds, whether every claim got one, the report.
//!
//! Which rows a tick may send and settle, over which link, with what
//! content, are the guard's rules (`sluice::guard`), not checked here: the
//! simulator runs every policy under the guard and a breach is the tick's
//! violation (`Sim::step`), so each rule has one copy.
//! - `rows`: the table as it stands — no row lost, attempts bounded,
//!   finished rows frozen, old rows expired.
//!
//! Order matters only for which violation is named when a tick breaks
//! several: what went out on the wire first (the damage that cannot be
//! undone), then what the settle said, then the rows, then the report. The
//! checks read the tick's journal and the store; they never change the world.

mod rows;
mod settle;
mod wire;

use super::outbox::{SimOutbox, Status, StoredRow};
use super::violation::{RowName, ViolationKind};
use super::world::TickJournal;
use rows::Finished;
use sluice_policy::{Settings, TickReport};
use std::collections::BTreeMap;

/// What the checks know about one row beyond the table.
#[derive(Clone, Debug, Default)]
struct RowHistory {
    /// Claims that ended without a settle (a dead drainer, a failed tick):
    /// each may leave one more attempt counted than the cap allows.
    lost_claims: u32,
    /// The broker accepted a send of this row and the claim was settled: it
    /// has arrived, and must never go out again.
    delivered: Option<String>,
    /// The row as first seen done or dead.
    finished: Option<Finished>,
}

/// One tick, as the checks see it.
#[derive(Debug)]
pub struct TickView<'a> {
    /// The virtual time the tick started at.
    pub now_ms: i64,
    /// The report, when the tick returned one and the drainer did not die.
    pub report: Option<&'a TickReport>,
    pub journal: &'a TickJournal,
    /// The outbox after the tick, read through the checks' own connection.
    pub store: &'a SimOutbox,
    /// Look at every row, not only those the tick claimed or settled: after
    /// a reclaim or expiry changed rows, and now and then.
    pub full_look: bool,
    pub meshes: &'a [String],
}

/// Checks the invariants and keeps the history they need.
#[derive(Debug)]
pub struct Checker {
    settings: Settings,
    rows_total: usize,
    history: BTreeMap<i64, RowHistory>,
}

impl Checker {
    /// `settings` are the policy's, for the bounds (attempts, backoff, TTL).
    /// Rows already inflight were claimed by a drainer that died: one lost
    /// claim. Rows already finished (aborted ones among them) are frozen
    /// from the start.
    pub fn new(settings: Settings, rows: &[StoredRow]) -> Checker {
        let history = rows
            .iter()
            .map(|r| {
                (
                    r.row.rowid,
                    RowHistory {
                        lost_claims: u32::from(r.status == Status::Inflight),
                        finished: (!r.status.is_open()).then(|| Finished::of(r)),
                        ..RowHistory::default()
                    },
                )
            })
            .collect();
        Checker {
            settings,
            rows_total: rows.len(),
            history,
        }
    }

    /// Claims lost so far, over all rows: the rows came back through the lease.
    pub fn lost_claims(&self) -> u64 {
        self.history
            .values()
            .map(|h| u64::from(h.lost_claims))
            .sum()
    }

    pub fn check(&mut self, tick: &TickView<'_>) -> Result<(), ViolationKind> {
        let claims: BTreeMap<i64, u32> = tick.journal.claims.iter().copied().collect();
        self.check_sends(tick)?;
        self.check_settles(tick)?;
        self.check_claims_settled(tick, &claims)?;
        self.check_rows(tick)?;
        if let Some(report) = tick.report {
            settle::check_report(report, tick)?;
        }
        Ok(())
    }
}

fn name(stored: &StoredRow) -> RowName {
    RowName {
        rowid: stored.row.rowid,
        id: stored.row.id.clone(),
    }
}

fn unknown(rowid: i64) -> RowName {
    RowName {
        rowid,
        id: "?".into(),
    }
}
