//! The operator's view of the outbox, for `sluice outbox`: list rows, look
//! at one, requeue what failed, purge what is finished.
//!
//! Owns: those queries and writes, [`Entry`] (a whole row as stored) and
//! [`AdminError`] (the refusals an operator can meet). Not here: parsing
//! durations, printing, waking drainers (the host), id generation (the
//! caller's, as for `enqueue`).
//!
//! Every call is safe while a drain runs on the same file: reads take no
//! lock (WAL), requeue is one IMMEDIATE transaction that refuses rows a
//! drain holds, and purge deletes in short batches (see [`purge`]).

mod purge;
mod requeue;

pub use purge::{PURGE_BATCH_ROWS, PURGE_PAUSE, PurgeReport, PurgeRequest};
pub use requeue::{REQUEUE_ROWS_MAX, Refusal, RequeueReport, RequeueRequest, Requeued, Selection};

use crate::error::{StoreError, sqlite};
use crate::history::PolicyEvent;
use crate::lenient::{integer_or_none, text_lossy};
use crate::outbox::Outbox;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension as _, Row, params};
use sluice_contract::TimestampMs;
use std::path::{Path, PathBuf};

/// The most rows one `list` returns: a listing is for reading, and every
/// row listed is held in memory with its payload.
pub const LIST_ROWS_MAX: u32 = 10_000;

/// The columns a producer's table may lack (Sluice adds every other column
/// on open). Read as NULL when missing; requeue needs them and says so.
const PRODUCER_COLUMNS: [&str; 3] = ["aborted_at", "aborted_by", "superseded_by"];

/// Every column of [`Entry`] after `rowid`, in the order it is read.
const ENTRY_COLUMNS: [&str; 22] = [
    "id",
    "client_message_id",
    "request_fingerprint",
    "payload",
    "enqueued_at",
    "attempts",
    "next_attempt_at",
    "status",
    "last_error",
    "delivered_at",
    "broker_message_id",
    "aborted_at",
    "aborted_by",
    "superseded_by",
    "mesh",
    "target_spec",
    "nonce",
    "ciphertext",
    "priority",
    "sender_session_pubkey",
    "decided_by",
    "decided_at",
];

/// The newest load of the deciding policy at or before the decision; an
/// older history entry of the same hash if none (clocks move).
const POLICY_SQL: &str = "SELECT sha256, name, version, source, loaded_at, reason
    FROM sluice_policy_history WHERE sha256 = ?1
    ORDER BY (loaded_at <= COALESCE(?2, loaded_at)) DESC, id DESC LIMIT 1";

/// A refusal or mistake of an operator's command. Each says what was
/// refused and why; on every one of them nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "no row with id {id} in {path}; nothing was changed, find ids with `sluice outbox list`"
    )]
    UnknownId { id: String, path: PathBuf },

    #[error("requeue refused, nothing was changed: {}", describe(.0))]
    Refused(Vec<Refusal>),

    #[error(
        "--new-client-id names one row's new client_message_id, but {rows} rows were selected; requeue that row alone"
    )]
    NewClientIdForMany { rows: usize },

    #[error(
        "the outbox table in {path} lacks column {column}, which requeue records the old row's fate in; add it (ALTER TABLE outbox ADD COLUMN {column}) or requeue with the producer's tools"
    )]
    MissingColumn { path: PathBuf, column: &'static str },

    #[error(transparent)]
    Store(#[from] StoreError),
}

fn describe(refusals: &[Refusal]) -> String {
    let parts: Vec<String> = refusals.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

/// One row as stored, every column, read leniently: an odd value reads as
/// its text, NULL or 0 rather than failing the listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub rowid: i64,
    pub id: String,
    pub client_message_id: String,
    pub request_fingerprint: Vec<u8>,
    pub payload: Vec<u8>,
    pub enqueued_at: TimestampMs,
    pub attempts: i64,
    pub next_attempt_at: TimestampMs,
    pub status: String,
    pub last_error: Option<String>,
    pub delivered_at: Option<TimestampMs>,
    pub broker_message_id: Option<String>,
    pub aborted_at: Option<TimestampMs>,
    pub aborted_by: Option<String>,
    pub superseded_by: Option<String>,
    pub mesh: Option<String>,
    pub target_spec: Option<String>,
    pub nonce: Option<String>,
    pub ciphertext: Option<String>,
    pub priority: Option<String>,
    pub sender_session_pubkey: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<TimestampMs>,
}

/// Which rows `list` returns; `None` filters nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListFilter {
    pub status: Option<String>,
    pub mesh: Option<String>,
    /// A substring of `last_error` (case-sensitive).
    pub error: Option<String>,
    /// Rows enqueued at or after this time (ms).
    pub since: Option<TimestampMs>,
    /// At most this many rows, capped at [`LIST_ROWS_MAX`].
    pub limit: u32,
}

impl Default for ListFilter {
    fn default() -> ListFilter {
        ListFilter {
            status: None,
            mesh: None,
            error: None,
            since: None,
            limit: 50,
        }
    }
}

/// One row and what is known about how it got there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    pub entry: Entry,
    /// The history entry of the policy named by `decided_by`, if recorded.
    pub policy: Option<PolicyEvent>,
    /// The row this one was requeued from (whose `superseded_by` is this id).
    pub requeued_from: Option<String>,
}

impl Outbox {
    /// Rows matching `filter`, newest first (by `enqueued_at`, then rowid).
    pub fn list(&mut self, filter: &ListFilter) -> Result<Vec<Entry>, StoreError> {
        let map = sqlite(&self.path, "listing rows");
        let sql = format!(
            "SELECT {} FROM outbox
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR mesh = ?2)
                AND (?3 IS NULL OR instr(last_error, ?3) > 0)
                AND (?4 IS NULL OR enqueued_at >= ?4)
             ORDER BY enqueued_at DESC, rowid DESC LIMIT ?5",
            entry_select(&self.conn, &self.path)?
        );
        let mut stmt = self.conn.prepare(&sql).map_err(&map)?;
        let rows = stmt
            .query_map(
                params![
                    filter.status,
                    filter.mesh,
                    filter.error,
                    filter.since,
                    filter.limit.min(LIST_ROWS_MAX)
                ],
                read_entry,
            )
            .map_err(&map)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&map)?;
        Ok(rows)
    }

    /// The row with this `id`, the policy that decided it and the row it
    /// was requeued from.
    pub fn inspect(&mut self, id: &str) -> Result<Inspection, AdminError> {
        let map = sqlite(&self.path, "inspecting a row");
        let sql = format!(
            "SELECT {} FROM outbox WHERE id = ?1",
            entry_select(&self.conn, &self.path)?
        );
        let entry = self
            .conn
            .query_row(&sql, [id], read_entry)
            .optional()
            .map_err(&map)?
            .ok_or_else(|| AdminError::UnknownId {
                id: id.to_string(),
                path: self.path.clone(),
            })?;
        let policy = match &entry.decided_by {
            Some(sha) => self
                .conn
                .query_row(POLICY_SQL, params![sha, entry.decided_at], |r| {
                    Ok(PolicyEvent {
                        sha256: r.get(0)?,
                        name: r.get(1)?,
                        version: r.get(2)?,
                        source: r.get(3)?,
                        loaded_at: r.get(4)?,
                        reason: r.get(5)?,
                    })
                })
                .optional()
                .map_err(&map)?,
            None => None,
        };
        let requeued_from = if missing_producer_column(&self.conn, &self.path)?.is_none() {
            self.conn
                .query_row(
                    "SELECT id FROM outbox WHERE superseded_by = ?1 LIMIT 1",
                    [id],
                    |r| Ok(text_lossy(r.get_ref(0)?)),
                )
                .optional()
                .map_err(&map)?
                .flatten()
        } else {
            None
        };
        Ok(Inspection {
            entry,
            policy,
            requeued_from,
        })
    }
}

/// `rowid, id, …` with `NULL AS c` for each producer column the table lacks.
/// Every name comes from [`ENTRY_COLUMNS`], never from the file.
fn entry_select(conn: &Connection, path: &Path) -> Result<String, StoreError> {
    let present = columns(conn, path)?;
    let mut select = vec!["rowid".to_string()];
    for column in ENTRY_COLUMNS {
        if present.iter().any(|c| c.eq_ignore_ascii_case(column)) {
            select.push(column.to_string());
        } else {
            select.push(format!("NULL AS {column}"));
        }
    }
    Ok(select.join(", "))
}

/// The first of [`PRODUCER_COLUMNS`] the table lacks, if any.
pub(crate) fn missing_producer_column(
    conn: &Connection,
    path: &Path,
) -> Result<Option<&'static str>, StoreError> {
    let present = columns(conn, path)?;
    Ok(PRODUCER_COLUMNS
        .into_iter()
        .find(|wanted| !present.iter().any(|c| c.eq_ignore_ascii_case(wanted))))
}

fn columns(conn: &Connection, path: &Path) -> Result<Vec<String>, StoreError> {
    conn.prepare("SELECT name FROM pragma_table_info('outbox')")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()
        })
        .map_err(sqlite(path, "reading the columns"))
}

/// Reads a row selected by [`entry_select`].
fn read_entry(r: &Row<'_>) -> rusqlite::Result<Entry> {
    let text = |i| r.get_ref(i).map(text_lossy);
    let int = |i| r.get_ref(i).map(integer_or_none);
    Ok(Entry {
        rowid: r.get(0)?,
        id: text(1)?.unwrap_or_default(),
        client_message_id: text(2)?.unwrap_or_default(),
        request_fingerprint: bytes(r.get_ref(3)?),
        payload: bytes(r.get_ref(4)?),
        enqueued_at: int(5)?.unwrap_or(0),
        attempts: int(6)?.unwrap_or(0),
        next_attempt_at: int(7)?.unwrap_or(0),
        status: text(8)?.unwrap_or_default(),
        last_error: text(9)?,
        delivered_at: int(10)?,
        broker_message_id: text(11)?,
        aborted_at: int(12)?,
        aborted_by: text(13)?,
        superseded_by: text(14)?,
        mesh: text(15)?,
        target_spec: text(16)?,
        nonce: text(17)?,
        ciphertext: text(18)?,
        priority: text(19)?,
        sender_session_pubkey: text(20)?,
        decided_by: text(21)?,
        decided_at: int(22)?,
    })
}

/// A BLOB column's bytes; text reads as its bytes, a number as its decimal
/// text, NULL as nothing.
fn bytes(value: ValueRef<'_>) -> Vec<u8> {
    match value {
        ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
        other => text_lossy(other).unwrap_or_default().into_bytes(),
    }
}
