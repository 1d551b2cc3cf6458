//! The simulated outbox is a real one: an outbox file on a temporary folder,
//! written only by the real store (`sluice_store::SharedOutbox`, through
//! `world::store_calls`, as `sluice run` writes it), and read by the
//! invariant checks through a connection of their own.
//!
//! Owns: making the file from a drawn population (rows written as a
//! producer would have left them, a column of the wrong type included), and
//! the checks' views of it: a row, the counts, the oldest pending row, the
//! lease that ends first. Not here: claiming, settling, reclaiming and
//! expiring (the store's), faults (the world decides when a settle is lost)
//! and judging the policy (`invariants`).

use sluice_policy::{Row, TimestampMs};
use sluice_store::{Outbox, SharedOutbox};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A row's status, as the table holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pending,
    Inflight,
    Done,
    Dead,
    /// Taken back by an operator (`sluice outbox requeue`): never sent again.
    Aborted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Inflight => "inflight",
            Status::Done => "done",
            Status::Dead => "dead",
            Status::Aborted => "aborted",
        }
    }

    fn parse(text: &str) -> Option<Status> {
        [
            Status::Pending,
            Status::Inflight,
            Status::Done,
            Status::Dead,
            Status::Aborted,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    pub fn is_open(self) -> bool {
        matches!(self, Status::Pending | Status::Inflight)
    }
}

/// One row as the table holds it. `row.attempts` is the column. In a drawn
/// population, `row.defect` names the column to write with a value of the
/// wrong type (see [`SimOutbox::create`]).
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

/// The columns a defect may be in, and the wrongly typed value written there.
pub const DEFECTS: [&str; 3] = ["enqueued_at", "payload", "mesh"];

/// A simulation's outbox file, removed when the simulation ends.
pub struct SimOutbox {
    dir: PathBuf,
    path: PathBuf,
    /// The process's write connection, as `sluice run` has it.
    pub store: Arc<SharedOutbox>,
    /// The checks' own connection: reads only, so the store never sees it
    /// commit and never gives way to it.
    read: rusqlite::Connection,
}

const COLUMNS: &str = "rowid, id, attempts, enqueued_at, status, next_attempt_at, last_error, \
                       delivered_at, broker_message_id";

impl SimOutbox {
    /// A new outbox holding `rows`, each with its rowid, status and columns.
    /// Err says what failed, naming the file.
    pub fn create(rows: &[StoredRow]) -> Result<SimOutbox, String> {
        let dir = scratch_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot make the simulator's folder {}: {e}", dir.display()))?;
        let path = dir.join("outbox.db");
        // The real schema, as a first `sluice run` makes it.
        drop(Outbox::open(&path).map_err(|e| e.to_string())?);
        let sql = |e: rusqlite::Error| {
            format!(
                "writing the simulated population to {}: {e}",
                path.display()
            )
        };
        let mut writer = rusqlite::Connection::open(&path).map_err(sql)?;
        let tx = writer.transaction().map_err(sql)?;
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO outbox (rowid, id, client_message_id, request_fingerprint, payload,
                     enqueued_at, attempts, next_attempt_at, status, mesh, target_spec, nonce,
                     ciphertext, priority, sender_session_pubkey)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                )
                .map_err(sql)?;
            for stored in rows {
                let r = &stored.row;
                let defect = r.defect.as_deref().unwrap_or("");
                let column = |name: &str| defect.starts_with(name);
                use rusqlite::types::Value;
                let enqueued_at = if column("enqueued_at") {
                    Value::Text("yesterday".into())
                } else {
                    Value::Integer(r.enqueued_at)
                };
                let payload = if column("payload") {
                    Value::Integer(42)
                } else {
                    Value::Blob(r.payload.clone())
                };
                let mesh = match &r.mesh {
                    _ if column("mesh") => Value::Blob(vec![0xff, 0xfe, 0x00]),
                    Some(mesh) => Value::Text(mesh.clone()),
                    None => Value::Null,
                };
                insert
                    .execute(rusqlite::params![
                        r.rowid,
                        r.id,
                        r.client_message_id,
                        r.request_fingerprint,
                        payload,
                        enqueued_at,
                        r.attempts,
                        stored.next_attempt_at,
                        stored.status.as_str(),
                        mesh,
                        r.target_spec,
                        r.nonce,
                        r.ciphertext,
                        r.priority,
                        r.sender_session_pubkey,
                    ])
                    .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        drop(writer);
        let store = Arc::new(SharedOutbox::open(&path).map_err(|e| e.to_string())?);
        let read = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        Ok(SimOutbox {
            dir,
            path,
            store,
            read,
        })
    }

    /// Another drainer's write connection to the same file, as a second
    /// `sluice run` on it has.
    pub fn open_another(&self) -> Result<SharedOutbox, String> {
        SharedOutbox::open(&self.path).map_err(|e| e.to_string())
    }

    /// One row, as the checks see it; `None` if there is no such rowid.
    pub fn get(&self, rowid: i64) -> Option<StoredRow> {
        self.query_one(
            &format!("SELECT {COLUMNS} FROM outbox WHERE rowid = ?1"),
            [rowid],
        )
    }

    /// Every row by rowid (for a whole-table look, and the end of a run).
    pub fn rows(&self) -> BTreeMap<i64, StoredRow> {
        let mut rows = BTreeMap::new();
        if let Ok(mut stmt) = self
            .read
            .prepare_cached(&format!("SELECT {COLUMNS} FROM outbox ORDER BY rowid"))
            && let Ok(found) = stmt.query_map([], read_row)
        {
            for row in found.flatten() {
                rows.insert(row.row.rowid, row);
            }
        }
        rows
    }

    /// How many rows the table holds.
    pub fn row_count(&self) -> usize {
        self.count("SELECT COUNT(*) FROM outbox")
    }

    /// The pending row enqueued first. A row whose `enqueued_at` is not a
    /// number counts as the oldest (it reads as 0): nothing shows it young,
    /// and the store's sweep expires it.
    pub fn oldest_pending(&self) -> Option<StoredRow> {
        self.query_one(
            &format!(
                "SELECT {COLUMNS} FROM outbox WHERE status = 'pending'
                 ORDER BY typeof(enqueued_at) IN ('integer', 'real'), enqueued_at, rowid LIMIT 1"
            ),
            [],
        )
    }

    /// The inflight row whose lease ends first.
    pub fn earliest_lease(&self) -> Option<StoredRow> {
        self.query_one(
            &format!(
                "SELECT {COLUMNS} FROM outbox WHERE status = 'inflight'
                 ORDER BY next_attempt_at, rowid LIMIT 1"
            ),
            [],
        )
    }

    /// The earliest `next_attempt_at` of an open row `skip` leaves in, as
    /// the store answers the policy (the same call).
    pub fn next_due_at(&self, skip: &sluice_policy::ClaimFilter) -> Option<TimestampMs> {
        sluice::world::store_calls::next_due_at(&self.store, skip)
            .ok()
            .flatten()
    }

    /// How many rows are pending or inflight: zero means drained.
    pub fn open_rows(&self) -> usize {
        self.count("SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'inflight')")
    }

    /// Rows per status.
    pub fn counts(&self) -> BTreeMap<Status, usize> {
        let mut counts = BTreeMap::new();
        if let Ok(mut stmt) = self
            .read
            .prepare_cached("SELECT status, COUNT(*) FROM outbox GROUP BY status")
            && let Ok(found) =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        {
            for (status, count) in found.flatten() {
                if let Some(status) = Status::parse(&status) {
                    counts.insert(status, usize::try_from(count).unwrap_or(0));
                }
            }
        }
        counts
    }

    fn count(&self, sql: &str) -> usize {
        self.read
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.query_row([], |r| r.get::<_, i64>(0)))
            .map_or(0, |n| usize::try_from(n).unwrap_or(0))
    }

    fn query_one(&self, sql: &str, params: impl rusqlite::Params) -> Option<StoredRow> {
        let mut stmt = self.read.prepare_cached(sql).ok()?;
        stmt.query_row(params, read_row).ok()
    }
}

impl std::fmt::Debug for SimOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimOutbox").field("dir", &self.dir).finish()
    }
}

impl Drop for SimOutbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads a row loosely: a value of the wrong type reads as its default,
/// as the store's claim reads it.
fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRow> {
    use rusqlite::types::ValueRef;
    let integer = |i: usize| -> rusqlite::Result<Option<i64>> {
        Ok(match r.get_ref(i)? {
            ValueRef::Integer(n) => Some(n),
            _ => None,
        })
    };
    let text = |i: usize| -> rusqlite::Result<Option<String>> {
        Ok(match r.get_ref(i)? {
            ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
            _ => None,
        })
    };
    let row = Row {
        rowid: r.get(0)?,
        id: text(1)?.unwrap_or_default(),
        attempts: integer(2)?.map_or(0, |n| u32::try_from(n).unwrap_or(0)),
        enqueued_at: integer(3)?.unwrap_or(0),
        ..Row::default()
    };
    Ok(StoredRow {
        row,
        status: text(4)?
            .as_deref()
            .and_then(Status::parse)
            .unwrap_or(Status::Dead),
        next_attempt_at: integer(5)?.unwrap_or(0),
        last_error: text(6)?,
        delivered_at: integer(7)?,
        broker_message_id: text(8)?,
    })
}

/// A folder of its own for one simulation: on tmpfs where there is one
/// (`/dev/shm`), so the store's syncs cost nothing.
fn scratch_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!(
        "sluice-sim-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}
