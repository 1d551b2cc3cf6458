//! [`StoreError`]: everything that can go wrong at the store boundary, and the
//! one place SQLite's errors are translated into it.
//!
//! Expected states (nothing due, a settle that no longer matches its claim, a
//! row with an odd value) are not errors: they are empty results, counts and
//! `Row::defect`. Callers see a message naming the file and, where there is
//! one, the fix.

use rusqlite::ErrorCode;
use std::path::{Path, PathBuf};

/// An outbox operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open outbox file: {path}: {source}; check that its folder exists and is writable"
    )]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },

    #[error(
        "cannot read outbox file: {path}: {source}; check that the path names a file sluice may read"
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "outbox file is not a SQLite database: {path}; point sluice at the outbox file the producers write"
    )]
    NotSqlite { path: PathBuf },

    #[error(
        "outbox file has no outbox table: {path} (it holds {objects}); it belongs to another program and was left untouched, point sluice at the outbox file"
    )]
    Foreign { path: PathBuf, objects: String },

    #[error(
        "outbox table lacks required column: {column} in {path}; this is not a claudemesh outbox or it is damaged, it was left untouched"
    )]
    MissingColumn { path: PathBuf, column: &'static str },

    #[error(
        "outbox journal mode could not be set to WAL: {path} reports {mode}; keep the outbox on a local file system"
    )]
    NotWal { path: PathBuf, mode: String },

    #[error(
        "outbox is busy: {action} on {path} waited out the busy timeout; another process holds the write lock, retry or stop it"
    )]
    Busy { action: &'static str, path: PathBuf },

    #[error(
        "duplicate id: {0} is already in the outbox; give each row a fresh id (nothing was inserted)"
    )]
    DuplicateId(String),

    #[error(
        "duplicate client_message_id: {0} is already in the outbox; give each row a fresh one (nothing was inserted)"
    )]
    DuplicateClientMessageId(String),

    #[error("claim limit out of range: {limit}; claim between 0 and {max} rows at a time")]
    ClaimLimit { limit: u32, max: u32 },

    #[error(
        "claim lease out of range: {lease_ms} ms; a lease must be positive or the row is reclaimable while it is sent"
    )]
    ClaimLease { lease_ms: i64 },

    #[error("checkpoint thread could not start: {0}; the system is out of threads or memory")]
    Spawn(std::io::Error),

    #[error(
        "outbox file is corrupt: {path} ({action}: database disk image is malformed); sluice stopped and writes nothing more to it. Next: stop every process that opens the file, run `sqlite3 {path} 'PRAGMA integrity_check'` to see the damage, then `sqlite3 {path} .recover | sqlite3 {path}.recovered` and move the recovered file into place; before restarting, check that every process that opens the outbox links SQLite 3.51.3 or later (or 3.50.7 / 3.44.6): older ones can corrupt a shared WAL file"
    )]
    Corrupt { action: &'static str, path: PathBuf },

    #[error("{action} failed on {path}: {source}")]
    Sqlite {
        action: &'static str,
        path: PathBuf,
        source: rusqlite::Error,
    },
}

impl StoreError {
    /// The file is damaged: nothing more may be written to it. A file that
    /// stopped being SQLite while open counts too (its header was overwritten).
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            StoreError::Corrupt { .. } | StoreError::NotSqlite { .. }
        )
    }
}

/// Translates a SQLite error from `action` on the file at `path`.
///
/// Used as `.map_err(sqlite(&self.path, "claim"))` so every message names the
/// file and the operation without repeating it at each call site.
pub(crate) fn sqlite<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl Fn(rusqlite::Error) -> StoreError + 'a {
    move |source| match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::NotSqlite {
            path: path.to_path_buf(),
        },
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            action,
            path: path.to_path_buf(),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy {
            action,
            path: path.to_path_buf(),
        },
        _ => StoreError::Sqlite {
            action,
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Names the duplicate value of a failed insert, if uniqueness is what failed.
pub(crate) fn duplicate(
    source: &rusqlite::Error,
    id: &str,
    client_message_id: &str,
) -> Option<StoreError> {
    if source.sqlite_error_code() != Some(ErrorCode::ConstraintViolation) {
        return None;
    }
    // SQLite names the column in the message ("UNIQUE constraint failed:
    // outbox.client_message_id"); the extended code alone does not say which
    // of the two unique columns it was.
    let message = source.to_string();
    if message.contains("outbox.client_message_id") {
        Some(StoreError::DuplicateClientMessageId(
            client_message_id.to_string(),
        ))
    } else if message.contains("outbox.id") {
        Some(StoreError::DuplicateId(id.to_string()))
    } else {
        None
    }
}
