//! The outbox table as claudemesh's daemon makes it, the look at an existing file that
//! decides whether Sluice may touch it, and the additive migration.
//!
//! Owns: the DDL, the column lists, the refusal of foreign and non-SQLite
//! files. Not here: pragmas and transactions (`outbox`), the statements that
//! move rows (`claim`, `settle`, `sweep`).
//!
//! The one rule: a file is written only after it has been recognised as an
//! empty database or as an outbox. A refusal leaves every byte as it was.

use crate::error::{StoreError, sqlite};
use rusqlite::Connection;
use std::path::Path;

/// Columns of the outbox that Sluice reads or writes; an existing table that
/// lacks one is refused with the column's name. (`aborted_at`, `aborted_by`
/// and `superseded_by` belong to the producers: Sluice neither needs nor adds
/// them.)
pub const BASE_COLUMNS: [&str; 11] = [
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
];

/// Columns that older outbox files lack; open adds each missing one as a
/// nullable TEXT column, which is what a legacy row means by NULL.
pub const LATER_COLUMNS: [&str; 6] = [
    "mesh",
    "target_spec",
    "nonce",
    "ciphertext",
    "priority",
    "sender_session_pubkey",
];

/// Sluice's own audit columns, added to every outbox on open (nullable, so
/// producers and old files are unaffected): which policy decided a row, and
/// when. Rows settled before the column existed keep NULL.
pub const AUDIT_COLUMNS: [(&str, &str); 2] = [("decided_by", "TEXT"), ("decided_at", "INTEGER")];

/// The history of the policies that drove this outbox: what, when, why.
pub(crate) const CREATE_POLICY_HISTORY: &str = "CREATE TABLE IF NOT EXISTS sluice_policy_history (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    source TEXT NOT NULL,
    loaded_at INTEGER NOT NULL,
    reason TEXT NOT NULL
)";

/// What the host's guard refused of each policy: a count per policy and
/// rule, with the latest breach (`sluice status`).
pub(crate) const CREATE_POLICY_VIOLATIONS: &str =
    "CREATE TABLE IF NOT EXISTS sluice_policy_violations (
    sha256 TEXT NOT NULL,
    rule TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    last_row TEXT NOT NULL,
    last_detail TEXT NOT NULL,
    PRIMARY KEY (sha256, rule)
)";

/// The table of a new file, column for column as claudemesh's daemon makes it.
pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    client_message_id TEXT NOT NULL UNIQUE,
    request_fingerprint BLOB NOT NULL,
    payload BLOB NOT NULL,
    enqueued_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    status TEXT NOT NULL CHECK(status IN ('pending','inflight','done','dead','aborted')),
    last_error TEXT,
    delivered_at INTEGER,
    broker_message_id TEXT,
    aborted_at INTEGER,
    aborted_by TEXT,
    superseded_by TEXT,
    mesh TEXT,
    target_spec TEXT,
    nonce TEXT,
    ciphertext TEXT,
    priority TEXT,
    sender_session_pubkey TEXT
)";

/// One index, the producers' own: `outbox_pending(status, next_attempt_at)`,
/// which claudemesh's daemon creates too. Every index ends with the rowid, so
/// the claim's `ORDER BY next_attempt_at, rowid` is a walk of it, not a sort
/// of the due backlog. Every row's claim and settle changes both columns, so
/// each further index on them costs every claim and settle: Sluice's earlier
/// `outbox_due(status, next_attempt_at, enqueued_at)`, kept beside the
/// producers' index, cost about a fifth of the store's throughput (measured:
/// `cargo bench -p sluice-cli`); it is dropped where found.
pub(crate) const CREATE_INDEXES: &str = "
    CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(status, next_attempt_at);
    DROP INDEX IF EXISTS outbox_due;";

/// How many schema objects a foreign-file error lists before eliding.
const FOREIGN_OBJECTS_SHOWN: usize = 5;

/// What an openable file holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// No schema objects at all (a new or zero-length file): create the table.
    Empty,
    /// An outbox table with every base column; `missing` are later columns to add.
    Outbox { missing: Vec<&'static str> },
}

/// Reads (never writes) the schema and says whether and how the file may be used.
pub(crate) fn inspect(conn: &Connection, path: &Path) -> Result<Shape, StoreError> {
    let map = sqlite(path, "reading the schema");
    let mut stmt = conn
        .prepare("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")
        .map_err(&map)?;
    let objects = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(&map)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(&map)?;
    if objects.is_empty() {
        return Ok(Shape::Empty);
    }
    // Identifiers are case-insensitive in SQLite: `OUTBOX` is the same table.
    if !objects
        .iter()
        .any(|(kind, name)| kind == "table" && name.eq_ignore_ascii_case("outbox"))
    {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            objects: describe(&objects),
        });
    }
    let columns = conn
        .prepare("SELECT name FROM pragma_table_info('outbox')")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(&map)?;
    let has = |wanted: &str| columns.iter().any(|c| c.eq_ignore_ascii_case(wanted));
    if let Some(column) = BASE_COLUMNS.into_iter().find(|c| !has(c)) {
        return Err(StoreError::MissingColumn {
            path: path.to_path_buf(),
            column,
        });
    }
    // Claims and settles address rows by rowid; a WITHOUT ROWID table has none.
    if conn.prepare("SELECT rowid FROM outbox LIMIT 0").is_err() {
        return Err(StoreError::MissingColumn {
            path: path.to_path_buf(),
            column: "rowid",
        });
    }
    let missing = LATER_COLUMNS.into_iter().filter(|c| !has(c)).collect();
    Ok(Shape::Outbox { missing })
}

/// Creates the table or adds the missing later columns, then the indexes.
/// Additive only: no column, row or index is ever dropped or rewritten.
pub(crate) fn migrate(conn: &Connection, shape: &Shape, path: &Path) -> Result<(), StoreError> {
    let map = sqlite(path, "migrating the schema");
    match shape {
        Shape::Empty => conn.execute_batch(CREATE_TABLE).map_err(&map)?,
        Shape::Outbox { missing } => {
            for column in missing {
                // `column` comes from LATER_COLUMNS, never from the file.
                conn.execute_batch(&format!("ALTER TABLE outbox ADD COLUMN {column} TEXT"))
                    .map_err(&map)?;
            }
        }
    }
    let present: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('outbox')")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()
        })
        .map_err(&map)?;
    for (column, kind) in AUDIT_COLUMNS {
        if !present.iter().any(|c| c.eq_ignore_ascii_case(column)) {
            // `column` and `kind` come from AUDIT_COLUMNS, never from the file.
            conn.execute_batch(&format!("ALTER TABLE outbox ADD COLUMN {column} {kind}"))
                .map_err(&map)?;
        }
    }
    conn.execute_batch(CREATE_POLICY_HISTORY).map_err(&map)?;
    conn.execute_batch(CREATE_POLICY_VIOLATIONS).map_err(&map)?;
    conn.execute_batch(CREATE_INDEXES).map_err(&map)
}

/// "table orders, table users, …" for the foreign-file message.
fn describe(objects: &[(String, String)]) -> String {
    let mut shown: Vec<String> = objects
        .iter()
        .take(FOREIGN_OBJECTS_SHOWN)
        .map(|(kind, name)| format!("{kind} {name}"))
        .collect();
    if objects.len() > FOREIGN_OBJECTS_SHOWN {
        shown.push(format!(
            "and {} more",
            objects.len() - FOREIGN_OBJECTS_SHOWN
        ));
    }
    shown.join(", ")
}
