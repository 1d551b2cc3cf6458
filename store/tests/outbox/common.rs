//! Fixtures: a fresh outbox in a temporary folder, rows, a raw connection.

use rusqlite::Connection;
use sluice_contract::Row;
use sluice_store::{NewRow, Outbox, RowState};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A lease long enough that nothing is reclaimed by accident in a test.
pub const LEASE_MS: i64 = 30_000;

/// Held by the tests that time Sluice against a producer or the checkpoint
/// thread against a writer: on two cores, two of them at once starve each
/// other's threads and disks, and time the machine instead of Sluice (a
/// producer's lock waited 179 ms, a WAL grew past 5 MB, in about one run of
/// the suite in twenty). The other tests still run beside them.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TIMED: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A failed timed test poisons the lock; the next one still runs.
    TIMED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A temporary folder and the path of an outbox file inside it (not created).
pub fn temp_path() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    (dir, path)
}

/// A new outbox holding `rows`.
pub fn outbox_with(rows: &[NewRow]) -> (TempDir, Outbox) {
    let (dir, path) = temp_path();
    let mut outbox = Outbox::open(&path).unwrap();
    outbox.enqueue(rows).unwrap();
    (dir, outbox)
}

/// A plain row enqueued at `enqueued_at`, due at `next_attempt_at`.
pub fn row(id: &str, enqueued_at: i64, next_attempt_at: i64) -> NewRow {
    NewRow {
        id: id.to_string(),
        client_message_id: format!("cm-{id}"),
        request_fingerprint: vec![0xab, 0xcd],
        payload: format!("payload of {id}").into_bytes(),
        enqueued_at,
        next_attempt_at,
        ..NewRow::default()
    }
}

/// `n` rows `r0000…`, enqueued and due at 1000 + i.
pub fn rows(n: usize) -> Vec<NewRow> {
    (0..n)
        .map(|i| row(&format!("r{i:04}"), 1000 + i as i64, 1000 + i as i64))
        .collect()
}

pub fn ids(rows: &[Row]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

pub fn state(outbox: &mut Outbox, id: &str) -> RowState {
    outbox
        .row_status(id)
        .unwrap()
        .unwrap_or_else(|| panic!("row {id} is missing"))
}

/// A second connection, bypassing the store, for setting up odd files.
pub fn raw(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}
