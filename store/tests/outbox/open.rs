//! Opening files: new, empty, old-schema, foreign, not SQLite, damaged.

use crate::common::{LEASE_MS, ids, raw, temp_path};
use sluice_store::{AUDIT_COLUMNS, LATER_COLUMNS, Outbox, StoreError};
use std::path::Path;

/// The outbox's columns and the names of its indexes, read through SQLite.
fn columns_and_indexes(path: &Path) -> (Vec<String>, Vec<String>) {
    let conn = raw(path);
    let names = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(|n| n.unwrap())
            .collect()
    };
    (
        names("SELECT name FROM pragma_table_info('outbox')"),
        names(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'outbox_%' ORDER BY name",
        ),
    )
}

/// The schema claudemesh outbox files had before the six later columns.
const OLD_SCHEMA: &str = "CREATE TABLE outbox (
    id TEXT PRIMARY KEY, client_message_id TEXT NOT NULL UNIQUE,
    request_fingerprint BLOB NOT NULL, payload BLOB NOT NULL,
    enqueued_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    status TEXT NOT NULL CHECK(status IN ('pending','inflight','done','dead','aborted')),
    last_error TEXT, delivered_at INTEGER, broker_message_id TEXT,
    aborted_at INTEGER, aborted_by TEXT, superseded_by TEXT);
    CREATE INDEX outbox_pending ON outbox(status, next_attempt_at);";

#[test]
fn a_new_file_gets_the_full_table_its_indexes_and_wal_mode() {
    let (_dir, path) = temp_path();
    let outbox = Outbox::open(&path).unwrap();
    assert_eq!(outbox.path(), path);
    let (columns, indexes) = columns_and_indexes(&path);
    assert_eq!(columns.len(), 22);
    assert_eq!(
        &columns[..3],
        ["id", "client_message_id", "request_fingerprint"]
    );
    assert_eq!(&columns[14..20], LATER_COLUMNS);
    assert_eq!(&columns[20..], AUDIT_COLUMNS.map(|(name, _)| name));
    assert_eq!(indexes, ["outbox_pending"]);
    let mode: String = raw(&path)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_zero_length_file_becomes_an_outbox() {
    let (_dir, path) = temp_path();
    std::fs::write(&path, b"").unwrap();
    let mut outbox = Outbox::open(&path).unwrap();
    assert_eq!(outbox.open_work().unwrap(), 0);
    assert_eq!(columns_and_indexes(&path).0.len(), 22);
}

#[test]
fn opening_an_outbox_twice_changes_nothing_and_keeps_rows() {
    let (_dir, path) = temp_path();
    Outbox::open(&path)
        .unwrap()
        .enqueue(&crate::common::rows(3))
        .unwrap();
    let mut again = Outbox::open(&path).unwrap();
    assert_eq!(again.open_work().unwrap(), 3);
    assert_eq!(columns_and_indexes(&path).0.len(), 22);
}

#[test]
fn an_old_outbox_gains_the_later_and_audit_columns_and_keeps_its_rows_claimable() {
    let (_dir, path) = temp_path();
    let conn = raw(&path);
    conn.execute_batch(OLD_SCHEMA).unwrap();
    for i in 0..3 {
        conn.execute(
            "INSERT INTO outbox (id, client_message_id, request_fingerprint, payload, enqueued_at, next_attempt_at, status)
             VALUES (?1, ?2, X'01', ?3, ?4, ?4, 'pending')",
            rusqlite::params![format!("old{i}"), format!("cm{i}"), format!("legacy {i}").into_bytes(), 10 + i],
        )
        .unwrap();
    }
    drop(conn);

    let mut outbox = Outbox::open(&path).unwrap();
    let (columns, indexes) = columns_and_indexes(&path);
    assert_eq!(columns.len(), 22, "{columns:?}");
    assert!(
        LATER_COLUMNS
            .iter()
            .all(|c| columns.iter().any(|have| have == c))
    );
    assert_eq!(indexes, ["outbox_pending"]);

    let claimed = outbox.claim_due(100, 10, LEASE_MS).unwrap();
    assert_eq!(ids(&claimed), ["old0", "old1", "old2"]);
    assert_eq!(claimed[2].payload, b"legacy 2");
    assert_eq!(claimed[0].request_fingerprint, [1]);
    assert!(
        claimed
            .iter()
            .all(|r| r.target_spec.is_none() && r.mesh.is_none() && r.defect.is_none())
    );
}

/// Opening `path` must fail, and leave the file byte for byte as it was.
fn refused_untouched(path: &Path) -> StoreError {
    let before = std::fs::read(path).unwrap();
    let error = Outbox::open(path).expect_err("the file must be refused");
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "a refused file was modified"
    );
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    assert!(
        !Path::new(&wal).exists(),
        "a refused file was switched to WAL"
    );
    error
}

#[test]
fn a_foreign_database_is_refused_and_left_untouched() {
    let (_dir, path) = temp_path();
    let conn = raw(&path);
    conn.execute_batch("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ada');")
        .unwrap();
    drop(conn);
    let error = refused_untouched(&path);
    assert!(matches!(error, StoreError::Foreign { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("no outbox table") && message.contains("table users"),
        "{message}"
    );
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn a_text_file_is_refused_as_not_sqlite() {
    let (_dir, path) = temp_path();
    std::fs::write(&path, "outbox = \"outbox.db\"\n").unwrap();
    let error = refused_untouched(&path);
    assert!(
        error.to_string().contains("is not a SQLite database"),
        "{error}"
    );
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[test]
fn a_file_of_random_bytes_is_refused_as_not_sqlite() {
    let (_dir, path) = temp_path();
    let bytes: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(
        refused_untouched(&path),
        StoreError::NotSqlite { .. }
    ));
}

#[test]
fn an_outbox_lacking_a_base_column_is_refused_naming_it() {
    let (_dir, path) = temp_path();
    raw(&path)
        .execute_batch(&OLD_SCHEMA.replace("payload BLOB NOT NULL,", ""))
        .unwrap();
    let error = refused_untouched(&path);
    assert!(
        matches!(
            error,
            StoreError::MissingColumn {
                column: "payload",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("lacks required column: payload"),
        "{error}"
    );
}

#[test]
fn a_file_in_a_missing_folder_is_an_open_error() {
    let (dir, _) = temp_path();
    let error = Outbox::open(&dir.path().join("no/such/folder/outbox.db")).unwrap_err();
    assert!(matches!(error, StoreError::Open { .. }), "{error:?}");
    assert!(
        error.to_string().contains("check that its folder exists"),
        "{error}"
    );
}

/// Sluice's earlier second index cost every claim and settle; a file that
/// has it loses it on open and keeps the producers' one.
#[test]
fn the_earlier_due_index_is_dropped_on_open() {
    let (_dir, path) = temp_path();
    drop(Outbox::open(&path).unwrap());
    raw(&path)
        .execute_batch("CREATE INDEX outbox_due ON outbox(status, next_attempt_at, enqueued_at);")
        .unwrap();
    assert_eq!(
        columns_and_indexes(&path).1,
        ["outbox_due", "outbox_pending"]
    );
    drop(Outbox::open(&path).unwrap());
    assert_eq!(columns_and_indexes(&path).1, ["outbox_pending"]);
}

/// Sluice's own tables keep the names files already have: a file that a
/// drainer of an earlier build opened holds its policy history under them.
#[test]
fn sluices_own_tables_keep_their_names() {
    let (_dir, path) = temp_path();
    Outbox::open(&path).unwrap();
    let conn = raw(&path);
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|n| n.unwrap())
        .collect();
    assert_eq!(
        tables,
        [
            "outbox",
            "sluice_policy_history",
            "sluice_policy_violations"
        ]
    );
}
