//! [`NewRow`] and `enqueue`: the producers' side of the outbox, for the
//! `sluice enqueue` command, the demo and tests.
//!
//! Owns: the insert. Not here: id generation or payload encryption (the
//! caller's), waking drainers (the host).

use crate::error::{StoreError, duplicate, sqlite};
use crate::outbox::Outbox;
use crate::sweep::count;
use rusqlite::params;
use sluice_policy::TimestampMs;

/// A row to insert: `pending`, zero attempts, due at `next_attempt_at`.
#[derive(Clone, Debug, Default)]
pub struct NewRow {
    pub id: String,
    /// The idempotency key the broker sees; unique in the outbox.
    pub client_message_id: String,
    pub request_fingerprint: Vec<u8>,
    pub payload: Vec<u8>,
    pub enqueued_at: TimestampMs,
    pub next_attempt_at: TimestampMs,
    /// The mesh slug; `None` means the only mesh.
    pub mesh: Option<String>,
    /// `target_spec`, `nonce` and `ciphertext` all `None` is a legacy row
    /// (broadcast fallback); some but not all is a malformed one.
    pub target_spec: Option<String>,
    pub nonce: Option<String>,
    pub ciphertext: Option<String>,
    pub priority: Option<String>,
    /// Set for a row that must go over that session's link.
    pub sender_session_pubkey: Option<String>,
}

const INSERT_SQL: &str = "INSERT INTO outbox (
        id, client_message_id, request_fingerprint, payload, enqueued_at, attempts,
        next_attempt_at, status, mesh, target_spec, nonce, ciphertext, priority, sender_session_pubkey)
    VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, 'pending', ?7, ?8, ?9, ?10, ?11, ?12)";

impl Outbox {
    /// Inserts `rows` in one transaction and returns how many. A duplicate
    /// `id` or `client_message_id` (in the file or within `rows`) fails the
    /// whole call, naming the value; nothing is inserted then.
    pub fn enqueue(&mut self, rows: &[NewRow]) -> Result<u32, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.write("enqueue", |tx, path| {
            let map = sqlite(path, "enqueue");
            let mut insert = tx.prepare_cached(INSERT_SQL).map_err(&map)?;
            for row in rows {
                insert
                    .execute(params![
                        row.id,
                        row.client_message_id,
                        row.request_fingerprint,
                        row.payload,
                        row.enqueued_at,
                        row.next_attempt_at,
                        row.mesh,
                        row.target_spec,
                        row.nonce,
                        row.ciphertext,
                        row.priority,
                        row.sender_session_pubkey,
                    ])
                    .map_err(|e| {
                        duplicate(&e, &row.id, &row.client_message_id).unwrap_or_else(|| map(e))
                    })?;
            }
            Ok(count(rows.len()))
        })
    }
}
