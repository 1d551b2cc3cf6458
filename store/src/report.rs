//! Read-only views of the outbox: the status report for `sluice status`, and
//! one row's state for tests of this and other crates.
//!
//! Owns: those queries and their shapes. Not here: anything that writes.
//! Values are read leniently: a report must not fail on a row a producer
//! wrote oddly.

use crate::error::{StoreError, sqlite};
use crate::lenient::{integer_or_none, text_lossy};
use crate::outbox::Outbox;
use rusqlite::OptionalExtension;
use sluice_contract::TimestampMs;

/// Every status the table allows, in the order reports list them.
pub const STATUSES: [&str; 5] = ["pending", "inflight", "done", "dead", "aborted"];

/// How many rows are in each state, and what is going wrong.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatusReport {
    /// Each of [`STATUSES`] in order, zero included; then any other status
    /// value found (a file without the CHECK constraint), by name.
    pub counts: Vec<(String, u64)>,
    /// `enqueued_at` of the oldest `pending` row.
    pub oldest_pending_enqueued_at: Option<TimestampMs>,
    /// The most common `last_error` values among `pending`, `inflight` and
    /// `dead` rows, most frequent first (ties by text).
    pub top_errors: Vec<(String, u64)>,
}

/// One row's state, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowState {
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: TimestampMs,
    pub delivered_at: Option<TimestampMs>,
    pub broker_message_id: Option<String>,
}

const COUNTS_SQL: &str = "SELECT status, COUNT(*) FROM outbox GROUP BY status";
/// The first-inserted pending row's `enqueued_at`: its rowid is a walk of the
/// `outbox_pending` index alone (rowids end every index entry); a
/// `MIN(enqueued_at)` would read every pending row from the table.
const OLDEST_PENDING_SQL: &str = "SELECT (SELECT enqueued_at FROM outbox
    WHERE rowid = (SELECT MIN(rowid) FROM outbox WHERE status = 'pending'))";
const TOP_ERRORS_SQL: &str = "SELECT last_error, COUNT(*) AS n FROM outbox
    WHERE status IN ('pending', 'inflight', 'dead') AND last_error IS NOT NULL
    GROUP BY last_error ORDER BY n DESC, last_error LIMIT ?1";
const ROW_SQL: &str =
    "SELECT status, attempts, last_error, next_attempt_at, delivered_at, broker_message_id
    FROM outbox WHERE id = ?1";

impl Outbox {
    /// Counts by status, the oldest pending row, and the `top_errors` most
    /// common errors. Reads every row: for operators, not for the hot loop.
    pub fn status(&mut self, top_errors: usize) -> Result<StatusReport, StoreError> {
        let map = sqlite(&self.path, "reading the status");
        let mut counts: Vec<(String, u64)> = STATUSES.iter().map(|s| (s.to_string(), 0)).collect();
        let mut others = Vec::new();
        let mut stmt = self.conn.prepare(COUNTS_SQL).map_err(&map)?;
        let found = stmt.query_map([], |r| {
            Ok((
                text_lossy(r.get_ref(0)?).unwrap_or_default(),
                r.get::<_, i64>(1)?,
            ))
        });
        for entry in found.map_err(&map)? {
            let (status, n) = entry.map_err(&map)?;
            let n = u64::try_from(n).unwrap_or(0);
            match counts.iter_mut().find(|(name, _)| *name == status) {
                Some((_, total)) => *total += n,
                None => others.push((status, n)),
            }
        }
        others.sort();
        counts.extend(others);

        let oldest = self.conn.query_row(OLDEST_PENDING_SQL, [], |r| {
            Ok(integer_or_none(r.get_ref(0)?))
        });
        let limit = i64::try_from(top_errors).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare(TOP_ERRORS_SQL).map_err(&map)?;
        let errors = stmt
            .query_map([limit], |r| {
                Ok((
                    text_lossy(r.get_ref(0)?).unwrap_or_default(),
                    u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>());
        Ok(StatusReport {
            counts,
            oldest_pending_enqueued_at: oldest.map_err(&map)?,
            top_errors: errors.map_err(&map)?,
        })
    }

    /// The stored state of the row with this `id`, or `None` if there is none.
    pub fn row_status(&mut self, id: &str) -> Result<Option<RowState>, StoreError> {
        let map = sqlite(&self.path, "reading a row");
        self.conn
            .query_row(ROW_SQL, [id], |r| {
                Ok(RowState {
                    status: text_lossy(r.get_ref(0)?).unwrap_or_default(),
                    attempts: integer_or_none(r.get_ref(1)?)
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(0),
                    last_error: text_lossy(r.get_ref(2)?),
                    next_attempt_at: integer_or_none(r.get_ref(3)?).unwrap_or(0),
                    delivered_at: integer_or_none(r.get_ref(4)?),
                    broker_message_id: text_lossy(r.get_ref(5)?),
                })
            })
            .optional()
            .map_err(&map)
    }
}
