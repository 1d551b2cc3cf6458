//! The simulated outbox: the store half of the contract, in memory.
//!
//! Owns: the rows and the five store calls with the semantics of
//! `wit/drain.wit` and `sluice_store` — claim-due (pending and due →
//! inflight, attempts + 1, leased, earliest `next_attempt_at` then oldest
//! `enqueued_at`, up to the limit), settle (only rows still inflight with the
//! claimed attempts), reclaim, expire and next-due-at. Not here: faults (the
//! world decides when a settle is lost) and judging the policy (`invariants`).
//!
//! Ordered indexes keep every call proportional to the rows it touches:
//! pending rows by (due, enqueued, rowid) and by age, inflight rows by lease
//! end. A row is taken out of its indexes before any change and put back
//! after, in one place (`update`), so an index can never disagree with its
//! row — and `update` notes the row as touched, so the invariant checks can
//! look at the rows a tick changed instead of the whole table.

use sluice_policy::{ClaimFilter, Outcome, Row, TimestampMs, Verdict};
use std::collections::{BTreeMap, BTreeSet};

/// The most rows one claim may take (as `sluice_store::CLAIM_ROWS_MAX`).
pub const CLAIM_ROWS_MAX: u32 = 65_536;

/// A row's status. `aborted` exists in the schema but no simulated producer
/// aborts rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pending,
    Inflight,
    Done,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Inflight => "inflight",
            Status::Done => "done",
            Status::Dead => "dead",
        }
    }

    pub fn is_open(self) -> bool {
        matches!(self, Status::Pending | Status::Inflight)
    }
}

/// One row as the table holds it. `row.attempts` is the column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRow {
    pub row: Row,
    pub status: Status,
    /// When a pending row is due; for an inflight row, when its lease ends.
    pub next_attempt_at: TimestampMs,
    pub last_error: Option<String>,
    pub delivered_at: Option<TimestampMs>,
    pub broker_message_id: Option<String>,
}

/// The in-memory outbox.
#[derive(Clone, Debug, Default)]
pub struct SimStore {
    rows: BTreeMap<i64, StoredRow>,
    /// Pending rows in claim order: (next_attempt_at, enqueued_at, rowid).
    due: BTreeSet<(TimestampMs, TimestampMs, i64)>,
    /// Inflight rows by lease end: (next_attempt_at, rowid).
    leases: BTreeSet<(TimestampMs, i64)>,
    /// Pending rows oldest first: (enqueued_at, rowid), for expiry.
    by_age: BTreeSet<(TimestampMs, i64)>,
    /// Rows changed since `take_touched`: the checks look at these only.
    touched: BTreeSet<i64>,
}

impl SimStore {
    pub fn new(rows: Vec<StoredRow>) -> SimStore {
        let mut store = SimStore::default();
        for row in rows {
            let rowid = row.row.rowid;
            store.rows.insert(rowid, row);
            store.index(rowid);
        }
        store
    }

    pub fn rows(&self) -> &BTreeMap<i64, StoredRow> {
        &self.rows
    }

    pub fn get(&self, rowid: i64) -> Option<&StoredRow> {
        self.rows.get(&rowid)
    }

    /// The rows changed since the last call.
    pub fn take_touched(&mut self) -> BTreeSet<i64> {
        std::mem::take(&mut self.touched)
    }

    /// The pending row enqueued first.
    pub fn oldest_pending(&self) -> Option<&StoredRow> {
        self.by_age
            .first()
            .and_then(|(_, rowid)| self.rows.get(rowid))
    }

    /// The inflight row whose lease ends first.
    pub fn earliest_lease(&self) -> Option<&StoredRow> {
        self.leases
            .first()
            .and_then(|(_, rowid)| self.rows.get(rowid))
    }

    /// How many rows are pending or inflight: zero means drained.
    pub fn open_rows(&self) -> usize {
        self.due.len() + self.leases.len()
    }

    pub fn claim_due(
        &mut self,
        now: TimestampMs,
        limit: u32,
        lease_ms: i64,
        skip: &ClaimFilter,
    ) -> Result<Vec<Row>, String> {
        if limit > CLAIM_ROWS_MAX {
            return Err(format!(
                "claim limit {limit} exceeds the maximum of {CLAIM_ROWS_MAX} rows"
            ));
        }
        if lease_ms <= 0 {
            return Err(format!("claim lease must be positive, got {lease_ms} ms"));
        }
        let picked: Vec<i64> = self
            .due
            .iter()
            .take_while(|(due, _, _)| *due <= now)
            .filter(|(_, _, rowid)| !self.skipped(*rowid, skip))
            .take(limit as usize)
            .map(|(_, _, rowid)| *rowid)
            .collect();
        let lease_end = now.saturating_add(lease_ms);
        let mut claimed: Vec<Row> = picked
            .into_iter()
            .filter_map(|rowid| {
                self.update(rowid, |r| {
                    r.status = Status::Inflight;
                    r.row.attempts = r.row.attempts.saturating_add(1);
                    r.next_attempt_at = lease_end;
                    r.row.clone()
                })
            })
            .collect();
        // As the real store: the batch comes back oldest message first.
        claimed.sort_unstable_by_key(|row| (row.enqueued_at, row.rowid));
        Ok(claimed)
    }

    /// Applies each outcome whose claim still holds; returns, per outcome,
    /// whether it was applied.
    pub fn settle(&mut self, outcomes: &[Outcome]) -> Vec<bool> {
        outcomes
            .iter()
            .map(|outcome| self.settle_one(outcome))
            .collect()
    }

    fn settle_one(&mut self, outcome: &Outcome) -> bool {
        let holds = self
            .rows
            .get(&outcome.rowid)
            .is_some_and(|r| r.status == Status::Inflight && r.row.attempts == outcome.attempts);
        if !holds {
            return false;
        }
        self.update(outcome.rowid, |r| match &outcome.verdict {
            Verdict::Done {
                broker_message_id,
                delivered_at,
            } => {
                r.status = Status::Done;
                r.delivered_at = Some(*delivered_at);
                r.broker_message_id = Some(broker_message_id.clone());
                r.last_error = None;
            }
            Verdict::Dead { reason } => {
                r.status = Status::Dead;
                r.last_error = Some(reason.clone());
            }
            Verdict::Retry {
                next_attempt_at,
                last_error,
            } => {
                r.status = Status::Pending;
                r.next_attempt_at = *next_attempt_at;
                r.last_error = Some(last_error.clone());
            }
            Verdict::Hold {
                next_attempt_at,
                last_error,
            } => {
                r.status = Status::Pending;
                r.row.attempts = r.row.attempts.saturating_sub(1);
                r.next_attempt_at = *next_attempt_at;
                if let Some(error) = last_error {
                    r.last_error = Some(error.clone());
                }
            }
        })
        .is_some()
    }

    /// Inflight rows whose lease ended by `now` go back to pending, due at
    /// once; the attempt stays counted. Returns their rowids.
    pub fn reclaim(&mut self, now: TimestampMs) -> Vec<i64> {
        let ended: Vec<i64> = self
            .leases
            .iter()
            .take_while(|(end, _)| *end <= now)
            .map(|(_, rowid)| *rowid)
            .collect();
        for rowid in &ended {
            self.update(*rowid, |r| r.status = Status::Pending);
        }
        ended
    }

    /// Pending rows, and inflight ones whose lease ended by `now`, enqueued
    /// before `cutoff` become dead `expired`. Returns their rowids.
    pub fn expire(&mut self, now: TimestampMs, cutoff: TimestampMs) -> Vec<i64> {
        let pending = self
            .by_age
            .iter()
            .take_while(|(enqueued_at, _)| *enqueued_at < cutoff);
        let ended = self.leases.iter().take_while(|(end, _)| *end <= now);
        let ended = ended.filter(|(_, rowid)| {
            self.rows
                .get(rowid)
                .is_some_and(|r| r.row.enqueued_at < cutoff)
        });
        let mut expired: Vec<i64> = pending
            .map(|(_, rowid)| *rowid)
            .chain(ended.map(|(_, rowid)| *rowid))
            .collect();
        expired.sort_unstable();
        for rowid in &expired {
            self.update(*rowid, |r| {
                r.status = Status::Dead;
                r.last_error = Some("expired".into());
            });
        }
        expired
    }

    /// The earliest `next_attempt_at` of any pending or inflight row.
    /// Whether `skip` leaves the row out, as the real store's filtered claim
    /// does: a daemon-link row of a skipped mesh.
    fn skipped(&self, rowid: i64, skip: &ClaimFilter) -> bool {
        let Some(stored) = self.rows.get(&rowid) else {
            return false;
        };
        let row = &stored.row;
        let mesh = row.mesh.as_deref().unwrap_or("");
        row.sender_session_pubkey
            .as_deref()
            .unwrap_or("")
            .is_empty()
            && (skip.skip_meshes.iter().any(|m| m == mesh)
                || (skip.skip_unnamed && mesh.is_empty()))
    }

    pub fn next_due_at(&self, skip: &ClaimFilter) -> Option<TimestampMs> {
        let pending = self
            .due
            .iter()
            .find(|(_, _, rowid)| !self.skipped(*rowid, skip))
            .map(|(due, _, _)| *due);
        let inflight = self.leases.first().map(|(end, _)| *end);
        match (pending, inflight) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Rows per status.
    pub fn counts(&self) -> BTreeMap<Status, usize> {
        let mut counts = BTreeMap::new();
        for row in self.rows.values() {
            *counts.entry(row.status).or_insert(0) += 1;
        }
        counts
    }

    /// Changes one row with its indexes kept in step.
    fn update<T>(&mut self, rowid: i64, change: impl FnOnce(&mut StoredRow) -> T) -> Option<T> {
        self.unindex(rowid);
        let result = self.rows.get_mut(&rowid).map(change);
        self.index(rowid);
        self.touched.insert(rowid);
        result
    }

    fn index(&mut self, rowid: i64) {
        if let Some(r) = self.rows.get(&rowid) {
            match r.status {
                Status::Pending => {
                    self.due
                        .insert((r.next_attempt_at, r.row.enqueued_at, rowid));
                    self.by_age.insert((r.row.enqueued_at, rowid));
                }
                Status::Inflight => _ = self.leases.insert((r.next_attempt_at, rowid)),
                Status::Done | Status::Dead => {}
            }
        }
    }

    fn unindex(&mut self, rowid: i64) {
        if let Some(r) = self.rows.get(&rowid) {
            match r.status {
                Status::Pending => {
                    self.due
                        .remove(&(r.next_attempt_at, r.row.enqueued_at, rowid));
                    self.by_age.remove(&(r.row.enqueued_at, rowid));
                }
                Status::Inflight => _ = self.leases.remove(&(r.next_attempt_at, rowid)),
                Status::Done | Status::Dead => {}
            }
        }
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
