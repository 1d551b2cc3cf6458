//! The benchmark's outboxes: claudemesh's own table, filled with rows of
//! claudemesh's sizes.
//!
//! The table and its index are the ones claudemesh's daemon creates
//! (`apps/cli/src/daemon/db/outbox.ts`: the v0.9 table, the `outbox_pending`
//! index, the columns later versions add), so the drain reads the same file
//! a daemon leaves behind. Sluice opens it once before the copies are made,
//! as it would the first time it meets the file: that adds its audit columns
//! and its own tables, which a real file also gets once (the daemon's
//! `outbox_pending` stays the only index).

use rusqlite::{Connection, params};
use std::path::{Path, PathBuf};

/// claudemesh's outbox as its daemon creates it, later columns included.
const CLAUDEMESH_SCHEMA: &str = "
    CREATE TABLE outbox (
      id                  TEXT PRIMARY KEY,
      client_message_id   TEXT NOT NULL UNIQUE,
      request_fingerprint BLOB NOT NULL,
      payload             BLOB NOT NULL,
      enqueued_at         INTEGER NOT NULL,
      attempts            INTEGER NOT NULL DEFAULT 0,
      next_attempt_at     INTEGER NOT NULL,
      status              TEXT NOT NULL CHECK(status IN
                            ('pending','inflight','done','dead','aborted')),
      last_error          TEXT,
      delivered_at        INTEGER,
      broker_message_id   TEXT,
      aborted_at          INTEGER,
      aborted_by          TEXT,
      superseded_by       TEXT
    );
    CREATE INDEX outbox_pending ON outbox(status, next_attempt_at);
    CREATE INDEX outbox_aborted ON outbox(status, aborted_at) WHERE status = 'aborted';
    ALTER TABLE outbox ADD COLUMN mesh TEXT;
    ALTER TABLE outbox ADD COLUMN target_spec TEXT;
    ALTER TABLE outbox ADD COLUMN nonce TEXT;
    ALTER TABLE outbox ADD COLUMN ciphertext TEXT;
    ALTER TABLE outbox ADD COLUMN priority TEXT;
    ALTER TABLE outbox ADD COLUMN sender_session_pubkey TEXT;";

/// A claudemesh payload: about 200 bytes.
pub const PAYLOAD_BYTES: usize = 200;
/// A claudemesh ciphertext: about 300 characters of base64.
pub const CIPHERTEXT_CHARS: usize = 300;
/// The mesh every row is for.
pub const MESH: &str = "bench";

/// Makes `path` a claudemesh outbox of `rows` due rows, opened once by
/// Sluice, with its WAL folded in so that a plain copy carries every row.
pub fn make(path: &Path, rows: usize) {
    let _ = std::fs::remove_file(path);
    let mut conn = Connection::open(path).expect("create the template outbox");
    conn.execute_batch("PRAGMA journal_mode = WAL;")
        .expect("wal");
    conn.execute_batch(CLAUDEMESH_SCHEMA)
        .expect("claudemesh schema");
    let now = sluice::world::now_ms();
    let payload = payload();
    let ciphertext = ciphertext();
    for start in (0..rows).step_by(50_000) {
        let tx = conn.transaction().expect("transaction");
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO outbox (id, client_message_id, request_fingerprint, payload,
                        enqueued_at, attempts, next_attempt_at, status, mesh, target_spec, nonce,
                        ciphertext, priority)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0, ?5, 'pending', ?6, '*', ?7, ?8, 'next')",
                )
                .expect("prepare");
            for i in start..(start + 50_000).min(rows) {
                insert
                    .execute(params![
                        format!("bench-{i:08}"),
                        format!("cm-bench-{i:08}"),
                        [0xabu8; 32].as_slice(),
                        payload.as_slice(),
                        now,
                        MESH,
                        "bm9uY2Utbm9uY2Utbm9uY2Utbm9uY2Ut",
                        ciphertext.as_str(),
                    ])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    drop(conn);
    // What Sluice does to a claudemesh file the first time it opens it.
    drop(sluice::store::Outbox::open(path).expect("sluice opens the claudemesh file"));
    let conn = Connection::open(path).expect("open");
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpoint");
}

/// A fresh copy of `template` at `dir/name`, with no WAL beside it.
pub fn copy(template: &Path, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    std::fs::copy(template, &path).expect("copy the template outbox");
    path
}

fn payload() -> Vec<u8> {
    (0..PAYLOAD_BYTES).map(|i| b'a' + (i % 26) as u8).collect()
}

fn ciphertext() -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..CIPHERTEXT_CHARS)
        .map(|i| alphabet[(i * 7) % alphabet.len()] as char)
        .collect()
}
