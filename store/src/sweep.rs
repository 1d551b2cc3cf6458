//! The sweeps around the claim: reclaim run-out leases, expire old rows, say
//! when work is next due and how much is open.
//!
//! Owns: their statements, each written so SQLite answers it from an index
//! (`outbox_pending`, or the rowid). Not here: how often they run (the policy's tick).

use crate::claim::skip_json;
use crate::error::{StoreError, sqlite};
use crate::lenient::integer_or_none;
use crate::outbox::Outbox;
use crate::settle::cut_here;
use rusqlite::{OptionalExtension as _, params};
use sluice_contract::{ClaimFilter, TimestampMs};
use std::time::Instant;

/// `next_attempt_at` stays: a reclaimed row is due at once, and the attempt
/// its lost claim used stays counted.
const RECLAIM_SQL: &str = "UPDATE outbox SET status = 'pending'
    WHERE status = 'inflight' AND next_attempt_at <= ?1";

/// Pending and inflight rows are expired apart: each statement is one index
/// range (`status = ?` and then `next_attempt_at` or a scan of that status
/// only). A row whose `enqueued_at` is not a number (text a producer wrote
/// there) cannot be shown to be young: the TTL bounds it too, or a row whose
/// link stays down, and so is never claimed, would wait forever.
///
/// Finding the old pending rows reads every pending row (`enqueued_at` is in
/// no index): 0.1–0.2 s under a backlog of half a million. That is a read,
/// and holds no lock; only the rows found are written, each checked again.
/// (As one `UPDATE`, the whole read held the write lock, and a producer's
/// commit beside a backlog waited 53–180 ms for it.)
const EXPIRED_PENDING_SQL: &str = "SELECT rowid FROM outbox
    WHERE status = 'pending' AND (enqueued_at < ?1 OR typeof(enqueued_at) NOT IN ('integer', 'real'))";
const EXPIRE_PENDING_ROW_SQL: &str = "UPDATE outbox SET status = 'dead', last_error = 'expired'
    WHERE rowid = ?2 AND status = 'pending'
        AND (enqueued_at < ?1 OR typeof(enqueued_at) NOT IN ('integer', 'real'))";
const EXPIRE_INFLIGHT_SQL: &str = "UPDATE outbox SET status = 'dead', last_error = 'expired'
    WHERE status = 'inflight' AND next_attempt_at <= ?2
        AND (enqueued_at < ?1 OR typeof(enqueued_at) NOT IN ('integer', 'real'))";

/// MIN over one status: with the status fixed, SQLite reads the first entry
/// of the index range instead of aggregating the rows.
const EARLIEST_SQL: &str = "SELECT MIN(next_attempt_at) FROM outbox WHERE status = ?1";

/// The earliest due pending row that a claim with the same filter would
/// take (see `CLAIM_FILTERED_SQL`): walks the due index in order and stops
/// at the first row the filter lets through.
const EARLIEST_FILTERED_SQL: &str = "SELECT next_attempt_at FROM outbox
    WHERE status = 'pending'
        AND NOT (COALESCE(sender_session_pubkey, '') = ''
            AND (mesh IN (SELECT value FROM json_each(?1))
                OR (?2 AND COALESCE(mesh, '') = '')))
    ORDER BY next_attempt_at LIMIT 1";

const OPEN_WORK_SQL: &str = "SELECT
    (SELECT COUNT(*) FROM outbox WHERE status = 'pending')
  + (SELECT COUNT(*) FROM outbox WHERE status = 'inflight')";

impl Outbox {
    /// Hands back rows whose drainer let the lease run out: `inflight` with
    /// `next_attempt_at <= now` become `pending`. Returns how many.
    pub fn reclaim(&mut self, now: TimestampMs) -> Result<u32, StoreError> {
        self.write("reclaim", |tx, path| {
            let changed = tx
                .prepare_cached(RECLAIM_SQL)
                .and_then(|mut s| s.execute([now]));
            Ok(count(changed.map_err(sqlite(path, "reclaim"))?))
        })
    }

    /// Gives up on rows enqueued before `cutoff` that are still undelivered:
    /// `pending` ones, and `inflight` ones whose lease has run out by `now`
    /// (a live lease means a send may be under way; its settle decides).
    /// They become `dead` with reason `expired`. Returns how many.
    pub fn expire(&mut self, now: TimestampMs, cutoff: TimestampMs) -> Result<u32, StoreError> {
        let old = self.expired_pending(cutoff)?;
        let (_, pending) = self.expire_pending_until(cutoff, &old, None)?;
        Ok(pending.saturating_add(self.expire_inflight(now, cutoff)?))
    }

    /// The rowids of `pending` rows enqueued before `cutoff`: a read, which
    /// takes no write lock.
    pub(crate) fn expired_pending(&mut self, cutoff: TimestampMs) -> Result<Vec<i64>, StoreError> {
        let map = sqlite(&self.path, "finding rows to expire");
        let mut stmt = self
            .conn
            .prepare_cached(EXPIRED_PENDING_SQL)
            .map_err(&map)?;
        let rows = stmt
            .query_map([cutoff], |r| r.get(0))
            .map_err(&map)?
            .collect::<Result<Vec<i64>, _>>()
            .map_err(&map)?;
        Ok(rows)
    }

    /// Expires the rows `rowids` names that are still `pending` and old, in
    /// one transaction that ends at `deadline` (after at least
    /// `SETTLE_ROWS_MIN` rows, as a settle). Returns (rows looked at, rows expired).
    pub(crate) fn expire_pending_until(
        &mut self,
        cutoff: TimestampMs,
        rowids: &[i64],
        deadline: Option<Instant>,
    ) -> Result<(usize, u32), StoreError> {
        if rowids.is_empty() {
            return Ok((0, 0));
        }
        self.write("expire", |tx, path| {
            let map = sqlite(path, "expire");
            let mut stmt = tx.prepare_cached(EXPIRE_PENDING_ROW_SQL).map_err(&map)?;
            let mut expired: u32 = 0;
            let mut looked = 0;
            for rowid in rowids {
                if cut_here(looked, deadline) {
                    break;
                }
                looked += 1;
                let changed = stmt.execute(params![cutoff, rowid]).map_err(&map)?;
                expired = expired.saturating_add(count(changed));
            }
            Ok((looked, expired))
        })
    }

    /// Expires `inflight` rows enqueued before `cutoff` whose lease ran out by
    /// `now`: one index range, short.
    pub(crate) fn expire_inflight(
        &mut self,
        now: TimestampMs,
        cutoff: TimestampMs,
    ) -> Result<u32, StoreError> {
        self.write("expire", |tx, path| {
            let changed = tx
                .prepare_cached(EXPIRE_INFLIGHT_SQL)
                .and_then(|mut s| s.execute(params![cutoff, now]));
            Ok(count(changed.map_err(sqlite(path, "expire"))?))
        })
    }

    /// The earliest `next_attempt_at` of any `pending` or `inflight` row: when
    /// a pending row becomes due or a lease runs out. `None` when no work is open.
    pub fn next_due_at(&mut self) -> Result<Option<TimestampMs>, StoreError> {
        self.next_due_at_except(&ClaimFilter::default())
    }

    /// [`Outbox::next_due_at`] leaving out the pending rows `skip` names (a
    /// claim with that filter would not take them). Leases always count.
    pub fn next_due_at_except(
        &mut self,
        skip: &ClaimFilter,
    ) -> Result<Option<TimestampMs>, StoreError> {
        let map = sqlite(&self.path, "finding the next due row");
        let pending = if skip.is_empty() {
            let mut stmt = self.conn.prepare_cached(EARLIEST_SQL).map_err(&map)?;
            stmt.query_row(["pending"], |r| Ok(integer_or_none(r.get_ref(0)?)))
        } else {
            let mut stmt = self
                .conn
                .prepare_cached(EARLIEST_FILTERED_SQL)
                .map_err(&map)?;
            stmt.query_row(params![skip_json(skip), skip.skip_unnamed], |r| {
                Ok(integer_or_none(r.get_ref(0)?))
            })
            .optional()
            .map(Option::flatten)
        }
        .map_err(&map)?;
        let mut stmt = self.conn.prepare_cached(EARLIEST_SQL).map_err(&map)?;
        let inflight = stmt
            .query_row(["inflight"], |r| Ok(integer_or_none(r.get_ref(0)?)))
            .map_err(&map)?;
        Ok(match (pending, inflight) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// How many rows are `pending` or `inflight`: zero means drained.
    pub fn open_work(&mut self) -> Result<u64, StoreError> {
        let map = sqlite(&self.path, "counting open rows");
        let mut stmt = self.conn.prepare_cached(OPEN_WORK_SQL).map_err(&map)?;
        let open: i64 = stmt.query_row([], |r| r.get(0)).map_err(&map)?;
        Ok(u64::try_from(open).unwrap_or(0))
    }
}

/// A changed-row count as the `u32` the contract reports, saturating.
pub(crate) fn count(changed: usize) -> u32 {
    u32::try_from(changed).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn every_sweep_searches_an_index_instead_of_scanning_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox.db")).unwrap();
        for sql in [
            RECLAIM_SQL,
            EXPIRED_PENDING_SQL,
            EXPIRE_PENDING_ROW_SQL,
            EXPIRE_INFLIGHT_SQL,
            EARLIEST_SQL,
            OPEN_WORK_SQL,
        ] {
            let details = outbox.query_plan(sql);
            assert!(
                details.iter().all(|d| !d.starts_with("SCAN outbox")),
                "{sql}: {details:?}"
            );
            assert!(
                details.iter().any(|d| d.starts_with("SEARCH outbox USING")),
                "{sql}: {details:?}"
            );
        }
    }
}
