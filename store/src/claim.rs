//! `claim_due`: leases a batch of due rows (`inflight`) in one statement, then
//! reads what it leased.
//!
//! Owns: the lease statement, its bounds, the read of the leased rows, and
//! turning them into [`Row`]s. Not here: the value conversions (`lenient`),
//! what a settle does with the rows (`settle`).
//!
//! Why one `UPDATE … WHERE rowid IN (SELECT … LIMIT) RETURNING rowid, attempts`:
//! the subquery walks the `outbox_pending` index (status, next_attempt_at,
//! and the rowid every index ends with) from its first due entry and stops
//! after `limit` rows, so a claim costs the same at a backlog of a hundred or
//! a million. Ties in `next_attempt_at` go by rowid, which is insertion order:
//! the oldest enqueued first, without a second index to keep up to date.
//! Under `BEGIN IMMEDIATE` nobody else can write between the pick and the
//! update, so two drainers never claim the same row.
//!
//! Why the rows are read after the lease commits, not returned by it: every
//! microsecond inside the write transaction is a microsecond a producer of
//! the file may wait for (`share`). The lease returns two integers a row;
//! the row's content (half a kilobyte and more, decoded into owned strings)
//! is read afterwards, in a read transaction, which never blocks a writer in
//! WAL mode. The read matches `rowid`, `status = 'inflight'` and the
//! `attempts` the lease set, so it returns exactly the rows this lease still
//! holds: a row that its producer aborted or deleted in between is left out,
//! as a settle would leave it (measured on a claudemesh outbox of 300,000
//! rows, batches of 1024: the lock held 2.8 µs a row instead of 5.3;
//! `examples/row_cost`).

use crate::error::{StoreError, sqlite};
use crate::lenient::Defects;
use crate::outbox::Outbox;
use rusqlite::params;
use rusqlite::types::Value;
use sluice_contract::{ClaimFilter, Row, TimestampMs};
use std::time::Instant;

/// The most rows one claim may take. Bounds the time the write lock is held
/// and the memory of one batch; a larger limit is a caller's bug.
pub const CLAIM_ROWS_MAX: u32 = 65_536;

/// Capacity reserved up front; a claim that finds fewer rows allocates less.
const CLAIM_ROWS_PREALLOCATED: u32 = 1024;

/// A lease with a deadline takes this many rows a statement (about 0.2 ms
/// of lock), looking at the clock between them.
pub(crate) const LEASE_CHUNK: u32 = 64;

/// `attempts` is COALESCEd so a NULL that an old schema let in counts as 0
/// rather than staying NULL forever (NULL + 1 is NULL).
pub(crate) const CLAIM_SQL: &str = "UPDATE outbox
    SET status = 'inflight', attempts = COALESCE(attempts, 0) + 1, next_attempt_at = ?2
    WHERE rowid IN (
        SELECT rowid FROM outbox
        WHERE status = 'pending' AND next_attempt_at <= ?1
        ORDER BY next_attempt_at, rowid
        LIMIT ?3)
    RETURNING rowid, attempts";

/// The claim when some daemon-link rows are to be left alone (`?4`: a JSON
/// array of mesh names; `?5`: also rows without a mesh). Kept apart from
/// `CLAIM_SQL` so the common claim pays nothing for the filter; this one
/// still walks the due index, stepping over the rows it leaves.
pub(crate) const CLAIM_FILTERED_SQL: &str = "UPDATE outbox
    SET status = 'inflight', attempts = COALESCE(attempts, 0) + 1, next_attempt_at = ?2
    WHERE rowid IN (
        SELECT rowid FROM outbox
        WHERE status = 'pending' AND next_attempt_at <= ?1
            AND NOT (COALESCE(sender_session_pubkey, '') = ''
                AND (mesh IN (SELECT value FROM json_each(?4))
                    OR (?5 AND COALESCE(mesh, '') = '')))
        ORDER BY next_attempt_at, rowid
        LIMIT ?3)
    RETURNING rowid, attempts";

/// A leased row's content, read after the lease committed; only while the
/// lease still holds (see the module's comment).
pub(crate) const READ_LEASED_SQL: &str = "SELECT rowid, id, client_message_id,
        request_fingerprint, payload, enqueued_at, attempts, mesh, target_spec, nonce,
        ciphertext, priority, sender_session_pubkey
    FROM outbox WHERE rowid = ?1 AND status = 'inflight' AND attempts = ?2";

/// A row the lease took: its rowid and `attempts` as the lease wrote it (kept
/// as SQLite's value, so that the read compares exactly what was written).
#[derive(Clone, Debug)]
pub struct Leased {
    rowid: i64,
    attempts: Value,
}

/// `skip` as the JSON array `CLAIM_FILTERED_SQL` and the filtered
/// next-due query read.
pub(crate) fn skip_json(skip: &ClaimFilter) -> String {
    // Serializing a list of strings cannot fail.
    serde_json::to_string(&skip.skip_meshes).unwrap_or_else(|_| "[]".to_string())
}

impl Outbox {
    /// [`Outbox::claim_due_except`] with nothing left out.
    pub fn claim_due(
        &mut self,
        now: TimestampMs,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<Row>, StoreError> {
        self.claim_due_except(now, limit, lease_ms, &ClaimFilter::default())
    }

    /// Claims up to `limit` rows that are `pending` with `next_attempt_at <=
    /// now`, earliest due first (then oldest enqueued): each becomes
    /// `inflight`, its `attempts` goes up by one and `next_attempt_at` becomes
    /// `now + lease_ms`, the time after which `reclaim` may hand it out again.
    ///
    /// The rows come back sorted by (`enqueued_at`, `rowid`). SQLite returns
    /// RETURNING rows in no promised order, and the pre-claim
    /// `next_attempt_at` is overwritten by the lease, so it cannot be the sort
    /// key; which rows are claimed follows the due order exactly, and within
    /// the batch (all of it due now) the oldest message goes first.
    ///
    /// A row whose values cannot be read as their declared types is still
    /// claimed, with defaults and `Row::defect` saying what was found.
    ///
    /// Rows `skip` names (daemon-link rows of meshes whose link is down or
    /// whose budget is spent) stay `pending` and untouched.
    pub fn claim_due_except(
        &mut self,
        now: TimestampMs,
        limit: u32,
        lease_ms: i64,
        skip: &ClaimFilter,
    ) -> Result<Vec<Row>, StoreError> {
        let leased = self.lease_due_except(now, limit, lease_ms, skip)?;
        let mut rows = self.read_leased(&leased)?;
        rows.sort_unstable_by_key(|row| (row.enqueued_at, row.rowid));
        Ok(rows)
    }

    /// The write half of a claim: one `BEGIN IMMEDIATE` transaction that
    /// leases up to `limit` due rows, as [`Outbox::claim_due_except`]
    /// describes, and returns which; [`Outbox::read_leased`] reads them.
    pub fn lease_due_except(
        &mut self,
        now: TimestampMs,
        limit: u32,
        lease_ms: i64,
        skip: &ClaimFilter,
    ) -> Result<Vec<Leased>, StoreError> {
        self.lease_due_until(now, limit, lease_ms, skip, None)
            .map(|(leased, _)| leased)
    }

    /// [`Outbox::lease_due_except`], ending the transaction early once
    /// `deadline` has passed: with a deadline the rows are leased
    /// [`LEASE_CHUNK`] at a time, and no chunk starts after it. Also returns
    /// whether the deadline cut the lease short (otherwise fewer than `limit`
    /// rows means that no more are due).
    pub(crate) fn lease_due_until(
        &mut self,
        now: TimestampMs,
        limit: u32,
        lease_ms: i64,
        skip: &ClaimFilter,
        deadline: Option<Instant>,
    ) -> Result<(Vec<Leased>, bool), StoreError> {
        if limit > CLAIM_ROWS_MAX {
            return Err(StoreError::ClaimLimit {
                limit,
                max: CLAIM_ROWS_MAX,
            });
        }
        if lease_ms <= 0 {
            return Err(StoreError::ClaimLease { lease_ms });
        }
        if limit == 0 {
            return Ok((Vec::new(), false));
        }
        let chunk = if deadline.is_some() {
            LEASE_CHUNK
        } else {
            limit
        };
        self.write("claim", |tx, path| {
            let map = sqlite(path, "claim");
            let lease_end = now.saturating_add(lease_ms);
            let (mut stmt, filtered) = if skip.is_empty() {
                (tx.prepare_cached(CLAIM_SQL).map_err(&map)?, false)
            } else {
                (tx.prepare_cached(CLAIM_FILTERED_SQL).map_err(&map)?, true)
            };
            let skip_meshes = filtered.then(|| skip_json(skip));
            let mut leased = Vec::with_capacity(limit.min(CLAIM_ROWS_PREALLOCATED) as usize);
            loop {
                let wanted = chunk.min(limit - leased.len() as u32);
                let mut cursor = match &skip_meshes {
                    Some(meshes) => {
                        stmt.query(params![now, lease_end, wanted, meshes, skip.skip_unnamed])
                    }
                    None => stmt.query(params![now, lease_end, wanted]),
                }
                .map_err(&map)?;
                let before = leased.len();
                while let Some(row) = cursor.next().map_err(&map)? {
                    leased.push(Leased {
                        rowid: row.get(0).map_err(&map)?,
                        attempts: row.get(1).map_err(&map)?,
                    });
                }
                if leased.len() - before < wanted as usize || leased.len() == limit as usize {
                    return Ok((leased, false));
                }
                if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    return Ok((leased, true));
                }
            }
        })
    }

    /// The read half of a claim: the content of the rows `leased` took, in
    /// one read transaction (no write lock), in lease order. A row whose
    /// lease no longer holds is left out.
    pub fn read_leased(&mut self, leased: &[Leased]) -> Result<Vec<Row>, StoreError> {
        if leased.is_empty() {
            return Ok(Vec::new());
        }
        let map = sqlite(&self.path, "reading the claimed rows");
        let tx = self.conn.transaction().map_err(&map)?;
        let mut rows = Vec::with_capacity(leased.len());
        {
            let mut stmt = tx.prepare_cached(READ_LEASED_SQL).map_err(&map)?;
            for Leased { rowid, attempts } in leased {
                let mut cursor = stmt.query(params![rowid, attempts]).map_err(&map)?;
                if let Some(row) = cursor.next().map_err(&map)? {
                    rows.push(decode(row).map_err(&map)?);
                }
            }
        }
        tx.commit().map_err(&map)?;
        Ok(rows)
    }
}

/// One leased row as a [`Row`]; fails only if SQLite itself does.
fn decode(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let mut defects = Defects::default();
    let mut row = Row {
        rowid: r.get(0)?,
        id: defects.text("id", r.get_ref(1)?),
        client_message_id: defects.text("client_message_id", r.get_ref(2)?),
        request_fingerprint: defects.bytes("request_fingerprint", r.get_ref(3)?),
        payload: defects.bytes("payload", r.get_ref(4)?),
        enqueued_at: defects.integer("enqueued_at", r.get_ref(5)?),
        attempts: defects.count("attempts", r.get_ref(6)?),
        mesh: defects.optional_text("mesh", r.get_ref(7)?),
        target_spec: defects.optional_text("target_spec", r.get_ref(8)?),
        nonce: defects.optional_text("nonce", r.get_ref(9)?),
        ciphertext: defects.optional_text("ciphertext", r.get_ref(10)?),
        priority: defects.optional_text("priority", r.get_ref(11)?),
        sender_session_pubkey: defects.optional_text("sender_session_pubkey", r.get_ref(12)?),
        defect: None,
    };
    row.defect = defects.into_message();
    Ok(row)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn skip_lists_are_json_arrays_of_strings() {
        let skip = ClaimFilter {
            skip_meshes: vec!["a".into(), "q\"b\\".into(), "\n".into()],
            skip_unnamed: false,
        };
        let parsed: Vec<String> = serde_json::from_str(&skip_json(&skip)).unwrap();
        assert_eq!(parsed, skip.skip_meshes);
        assert_eq!(skip_json(&ClaimFilter::default()), "[]");
    }

    #[test]
    fn the_claim_walks_the_due_index_without_sorting() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox.db")).unwrap();
        let details = outbox.query_plan(CLAIM_SQL);
        assert!(
            details
                .iter()
                .any(|d| d.contains("INDEX outbox_pending (status=? AND next_attempt_at<?)")),
            "{details:?}"
        );
        assert!(
            !details.iter().any(|d| d.contains("TEMP B-TREE")),
            "{details:?}"
        );
        assert!(
            !details.iter().any(|d| d.starts_with("SCAN outbox")),
            "{details:?}"
        );
    }

    /// An outbox with `n` rows due at once.
    fn due(n: usize) -> (tempfile::TempDir, Outbox) {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(&dir.path().join("outbox.db")).unwrap();
        outbox.enqueue(&crate::enqueue::rows_due(n)).unwrap();
        (dir, outbox)
    }

    #[test]
    fn a_lease_past_its_deadline_ends_after_one_chunk() {
        let (_dir, mut outbox) = due(1000);
        let skip = ClaimFilter::default();
        let past = Instant::now();
        let (leased, cut) = outbox
            .lease_due_until(100, 1000, 60_000, &skip, Some(past))
            .unwrap();
        assert_eq!((leased.len(), cut), (LEASE_CHUNK as usize, true));
        // With time left it goes on chunk after chunk to the limit...
        let later = Instant::now() + std::time::Duration::from_secs(60);
        let (leased, cut) = outbox
            .lease_due_until(100, 500, 60_000, &skip, Some(later))
            .unwrap();
        assert_eq!((leased.len(), cut), (500, false));
        // ...and a short chunk means nothing more is due.
        let (leased, cut) = outbox
            .lease_due_until(100, 1000, 60_000, &skip, Some(later))
            .unwrap();
        assert_eq!(
            (leased.len(), cut),
            (1000 - 500 - LEASE_CHUNK as usize, false)
        );
        let mut all: Vec<i64> = leased.iter().map(|l| l.rowid).collect();
        all.dedup();
        assert_eq!(all.len(), leased.len(), "no row leased twice");
    }
}
