//! [`NewRow`], `enqueue` and `enqueue_idempotent`: the producers' side of the
//! outbox, for the `sluice enqueue` command, the demo and tests.
//!
//! Owns: the insert, and the accept table for a `client_message_id` that is
//! already in the outbox (the claudemesh daemon's: decided by the existing
//! row's status and whether its request fingerprint matches). Not here: id
//! generation, fingerprints or payload encryption (the caller's), waking
//! drainers (the host).

use crate::error::{StoreError, duplicate, sqlite};
use crate::lenient::text_lossy;
use crate::outbox::Outbox;
use crate::sweep::count;
use rusqlite::types::ValueRef;
use rusqlite::{OptionalExtension as _, Transaction, params};
use sluice_contract::TimestampMs;

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

/// The row already holding a `client_message_id`, as the accept table reads it.
const EXISTING_SQL: &str = "SELECT id, status, request_fingerprint, broker_message_id
    FROM outbox WHERE client_message_id = ?1";

/// Statuses whose row takes a repeated request with the same fingerprint as
/// the same message: it is queued, being sent, or was delivered. A `dead` or
/// `aborted` row never goes out, so a repeat of it is a conflict either way.
const ACCEPTING_STATUSES: [&str; 3] = ["pending", "inflight", "done"];

/// What became of one request to enqueue a row under its `client_message_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// The message is in the outbox: inserted now, or already there with the
    /// same fingerprint and still queued, in flight or delivered.
    Accepted(Accepted),
    /// The id is taken by a row this request cannot be: another fingerprint,
    /// or a row that will never be sent. Nothing was written.
    Conflict(Conflict),
}

/// The row that holds the message, as it is after the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub id: String,
    pub client_message_id: String,
    /// `pending` for a new row; the existing row's status otherwise.
    pub status: String,
    /// Set once the broker acknowledged the row (`done`).
    pub broker_message_id: Option<String>,
    /// True when this call inserted the row, false when it was already there.
    pub inserted: bool,
}

/// A `client_message_id` already held by a row this request does not match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The existing row's id.
    pub id: String,
    pub client_message_id: String,
    /// The existing row's status.
    pub status: String,
    pub fingerprint_matches: bool,
}

impl Conflict {
    /// The claudemesh code: `outbox_<status>_fingerprint_<match|mismatch>`,
    /// e.g. `outbox_dead_fingerprint_match`.
    pub fn code(&self) -> String {
        let matching = if self.fingerprint_matches {
            "match"
        } else {
            "mismatch"
        };
        format!("outbox_{}_fingerprint_{matching}", self.status)
    }
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
            for row in rows {
                insert(tx, row, &map)?;
            }
            Ok(count(rows.len()))
        })
    }

    /// Enqueues each of `rows` unless its `client_message_id` is already in
    /// the outbox, and says per row what happened (in the order of `rows`):
    ///
    /// | existing row | same fingerprint         | other fingerprint |
    /// |--------------|--------------------------|-------------------|
    /// | none         | inserted, accepted       | —                 |
    /// | pending      | accepted                 | conflict          |
    /// | inflight     | accepted                 | conflict          |
    /// | done         | accepted (broker id)     | conflict          |
    /// | dead         | conflict                 | conflict          |
    /// | aborted      | conflict                 | conflict          |
    ///
    /// Every lookup and insert runs in one IMMEDIATE transaction, so two
    /// processes enqueueing one id concurrently get one row and one verdict
    /// each; a conflicting row does not stop the others. A duplicate `id`
    /// under a fresh `client_message_id` is still an error that inserts
    /// nothing.
    pub fn enqueue_idempotent(
        &mut self,
        rows: &[NewRow],
    ) -> Result<Vec<EnqueueOutcome>, StoreError> {
        self.write("enqueue", |tx, path| {
            rows.iter().map(|row| accept_one(tx, path, row)).collect()
        })
    }
}

/// The accept table for one row, inside the caller's write transaction.
fn accept_one(
    tx: &Transaction<'_>,
    path: &std::path::Path,
    row: &NewRow,
) -> Result<EnqueueOutcome, StoreError> {
    let map = sqlite(path, "enqueue");
    let existing = tx
        .prepare_cached(EXISTING_SQL)
        .map_err(&map)?
        .query_row([&row.client_message_id], |r| {
            Ok((
                text_lossy(r.get_ref(0)?).unwrap_or_default(),
                text_lossy(r.get_ref(1)?).unwrap_or_default(),
                fingerprint_matches(r.get_ref(2)?, &row.request_fingerprint),
                text_lossy(r.get_ref(3)?),
            ))
        })
        .optional()
        .map_err(&map)?;
    let Some((id, status, matches, broker_message_id)) = existing else {
        insert(tx, row, &map)?;
        return Ok(EnqueueOutcome::Accepted(Accepted {
            id: row.id.clone(),
            client_message_id: row.client_message_id.clone(),
            status: "pending".to_string(),
            broker_message_id: None,
            inserted: true,
        }));
    };
    let client_message_id = row.client_message_id.clone();
    if matches && ACCEPTING_STATUSES.contains(&status.as_str()) {
        Ok(EnqueueOutcome::Accepted(Accepted {
            id,
            client_message_id,
            status,
            broker_message_id,
            inserted: false,
        }))
    } else {
        Ok(EnqueueOutcome::Conflict(Conflict {
            id,
            client_message_id,
            status,
            fingerprint_matches: matches,
        }))
    }
}

/// Whether a stored fingerprint is `wanted`. Producers store it as a BLOB;
/// one stored as TEXT is compared by its bytes, anything else never matches.
fn fingerprint_matches(stored: ValueRef<'_>, wanted: &[u8]) -> bool {
    match stored {
        ValueRef::Blob(bytes) | ValueRef::Text(bytes) => bytes == wanted,
        ValueRef::Null | ValueRef::Integer(_) | ValueRef::Real(_) => false,
    }
}

/// Inserts one row through the cached statement; a taken `id` or
/// `client_message_id` is named in the error.
fn insert(
    tx: &Transaction<'_>,
    row: &NewRow,
    map: &impl Fn(rusqlite::Error) -> StoreError,
) -> Result<(), StoreError> {
    tx.prepare_cached(INSERT_SQL)
        .map_err(map)?
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
        .map_err(|e| duplicate(&e, &row.id, &row.client_message_id).unwrap_or_else(|| map(e)))?;
    Ok(())
}

/// `n` rows due at 10, for the store's own unit tests.
#[cfg(test)]
pub(crate) fn rows_due(n: usize) -> Vec<NewRow> {
    (0..n)
        .map(|i| NewRow {
            id: format!("r{i}"),
            client_message_id: format!("cm-r{i}"),
            request_fingerprint: vec![1],
            payload: vec![2],
            enqueued_at: 10,
            next_attempt_at: 10,
            ..NewRow::default()
        })
        .collect()
}
