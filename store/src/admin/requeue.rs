//! `requeue`: send a failed or stuck row again as a new row, keeping the
//! old one as the record of what happened.
//!
//! Owns: which rows may be requeued and the one transaction that does it.
//! The old row becomes `aborted` (when, by whom, `superseded_by` the new
//! id); the new row is `pending`, due now, with no attempts, a fresh `id`
//! and `client_message_id` (the broker would deduplicate the old one), and
//! the old row's payload, fingerprint and routing columns, copied by SQLite
//! byte for byte. Not here: minting ids (the caller's `mint`), waking
//! drainers (the host).

use super::{AdminError, missing_producer_column};
use crate::error::{StoreError, duplicate, sqlite};
use crate::outbox::Outbox;
use rusqlite::{OptionalExtension as _, Transaction, params};
use sluice_contract::TimestampMs;
use std::fmt;
use std::path::Path;

/// The most rows one requeue by status moves. The whole requeue is one
/// write transaction, and a drain cannot claim or settle while it runs:
/// this bounds that pause. The rest are left for the next call.
pub const REQUEUE_ROWS_MAX: usize = 5_000;

/// Which rows to requeue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// These rows, by `id`; every one must exist and be requeueable.
    Ids(Vec<String>),
    /// The oldest [`REQUEUE_ROWS_MAX`] rows with this status (and this
    /// substring in `last_error`) that were not requeued before.
    Matching {
        status: String,
        error: Option<String>,
    },
}

/// A requeue: which rows, who asks, when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequeueRequest {
    pub selection: Selection,
    /// Recorded as the old row's `aborted_by`.
    pub by: String,
    pub now: TimestampMs,
    /// The new row's `client_message_id` instead of a minted one; only
    /// when one row is selected.
    pub new_client_message_id: Option<String>,
}

/// One row requeued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requeued {
    pub old_id: String,
    /// The old row's status before it became `aborted`.
    pub old_status: String,
    pub new_id: String,
    pub new_client_message_id: String,
}

/// What a requeue did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequeueReport {
    pub rows: Vec<Requeued>,
    /// More rows matched a [`Selection::Matching`] than one call moves.
    pub more_match: bool,
}

/// A row that may not be requeued, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub id: String,
    pub status: String,
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {} is {}: {}", self.id, self.status, self.reason)
    }
}

const FIND_SQL: &str =
    "SELECT rowid, status, superseded_by, broker_message_id FROM outbox WHERE id = ?1";

const MATCHING_SQL: &str = "SELECT rowid, id, status FROM outbox
    WHERE status = ?1 AND superseded_by IS NULL AND (?2 IS NULL OR instr(last_error, ?2) > 0)
    ORDER BY enqueued_at, rowid LIMIT ?3";

const COPY_SQL: &str = "INSERT INTO outbox (
        id, client_message_id, request_fingerprint, payload, enqueued_at, attempts,
        next_attempt_at, status, mesh, target_spec, nonce, ciphertext, priority, sender_session_pubkey)
    SELECT ?1, ?2, request_fingerprint, payload, ?3, 0, ?3, 'pending',
        mesh, target_spec, nonce, ciphertext, priority, sender_session_pubkey
    FROM outbox WHERE rowid = ?4";

/// A row aborted by its producer keeps its own `aborted_at`/`aborted_by`.
const SUPERSEDE_SQL: &str = "UPDATE outbox SET
        aborted_at = CASE WHEN status = 'aborted' AND aborted_at IS NOT NULL THEN aborted_at ELSE ?1 END,
        aborted_by = CASE WHEN status = 'aborted' AND aborted_by IS NOT NULL THEN aborted_by ELSE ?2 END,
        status = 'aborted', superseded_by = ?3
    WHERE rowid = ?4";

/// A row picked for requeueing: (rowid, id, status).
type Picked = (i64, String, String);

impl Outbox {
    /// Requeues the selected rows in one IMMEDIATE transaction; `mint`
    /// gives each new row its (id, client_message_id). Any unknown id or
    /// refused row fails the whole call and nothing changes.
    pub fn requeue(
        &mut self,
        request: &RequeueRequest,
        mut mint: impl FnMut() -> (String, String),
    ) -> Result<RequeueReport, AdminError> {
        // The inner result is the refusal: checked before any write, so
        // committing the empty transaction changes nothing.
        self.write("requeue", |tx, path| {
            if let Some(column) = missing_producer_column(tx, path)? {
                return Ok(Err(AdminError::MissingColumn {
                    path: path.to_path_buf(),
                    column,
                }));
            }
            let picked = match &request.selection {
                Selection::Ids(ids) => pick_ids(tx, path, ids)?,
                Selection::Matching { status, error } => {
                    pick_matching(tx, path, status, error.as_deref())?
                }
            };
            let (rows, more_match) = match picked {
                Ok(picked) => picked,
                Err(refused) => return Ok(Err(refused)),
            };
            if request.new_client_message_id.is_some() && rows.len() != 1 {
                return Ok(Err(AdminError::NewClientIdForMany { rows: rows.len() }));
            }
            let map = sqlite(path, "requeue");
            let mut copy = tx.prepare_cached(COPY_SQL).map_err(&map)?;
            let mut supersede = tx.prepare_cached(SUPERSEDE_SQL).map_err(&map)?;
            let mut report = RequeueReport {
                rows: Vec::with_capacity(rows.len()),
                more_match,
            };
            for (rowid, old_id, old_status) in rows {
                let (new_id, minted_client_id) = mint();
                let client_id = request
                    .new_client_message_id
                    .clone()
                    .unwrap_or(minted_client_id);
                copy.execute(params![new_id, client_id, request.now, rowid])
                    .map_err(|e| duplicate(&e, &new_id, &client_id).unwrap_or_else(|| map(e)))?;
                supersede
                    .execute(params![request.now, request.by, new_id, rowid])
                    .map_err(&map)?;
                report.rows.push(Requeued {
                    old_id,
                    old_status,
                    new_id,
                    new_client_message_id: client_id,
                });
            }
            Ok(Ok(report))
        })?
    }
}

/// The rows named by id, each checked; ids named twice count once.
fn pick_ids(
    tx: &Transaction<'_>,
    path: &Path,
    ids: &[String],
) -> Result<Result<(Vec<Picked>, bool), AdminError>, StoreError> {
    let map = sqlite(path, "finding the rows to requeue");
    let mut find = tx.prepare_cached(FIND_SQL).map_err(&map)?;
    let mut picked: Vec<Picked> = Vec::new();
    let mut refusals = Vec::new();
    for id in ids {
        if picked.iter().any(|(_, seen, _)| seen == id) {
            continue;
        }
        let found = find
            .query_row([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    crate::lenient::text_lossy(r.get_ref(1)?).unwrap_or_default(),
                    crate::lenient::text_lossy(r.get_ref(2)?),
                    crate::lenient::text_lossy(r.get_ref(3)?),
                ))
            })
            .optional()
            .map_err(&map)?;
        let Some((rowid, status, successor, broker_id)) = found else {
            return Ok(Err(AdminError::UnknownId {
                id: id.clone(),
                path: path.to_path_buf(),
            }));
        };
        match refusal(&status, successor.as_deref(), broker_id.as_deref()) {
            Some(reason) => refusals.push(Refusal {
                id: id.clone(),
                status,
                reason,
            }),
            None => picked.push((rowid, id.clone(), status)),
        }
    }
    if refusals.is_empty() {
        Ok(Ok((picked, false)))
    } else {
        Ok(Err(AdminError::Refused(refusals)))
    }
}

/// The oldest rows with `status` (and `error` in `last_error`) that were
/// never requeued, at most [`REQUEUE_ROWS_MAX`].
fn pick_matching(
    tx: &Transaction<'_>,
    path: &Path,
    status: &str,
    error: Option<&str>,
) -> Result<Result<(Vec<Picked>, bool), AdminError>, StoreError> {
    if let Some(reason) = refusal(status, None, None) {
        return Ok(Err(AdminError::Refused(vec![Refusal {
            id: format!("selected by --status {status}: every"),
            status: status.to_string(),
            reason,
        }])));
    }
    let map = sqlite(path, "finding the rows to requeue");
    let mut stmt = tx.prepare_cached(MATCHING_SQL).map_err(&map)?;
    let limit = i64::try_from(REQUEUE_ROWS_MAX).unwrap_or(i64::MAX) + 1;
    let mut rows = stmt
        .query_map(params![status, error, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                crate::lenient::text_lossy(r.get_ref(1)?).unwrap_or_default(),
                crate::lenient::text_lossy(r.get_ref(2)?).unwrap_or_default(),
            ))
        })
        .map_err(&map)?
        .collect::<Result<Vec<Picked>, _>>()
        .map_err(&map)?;
    let more = rows.len() > REQUEUE_ROWS_MAX;
    rows.truncate(REQUEUE_ROWS_MAX);
    Ok(Ok((rows, more)))
}

/// Why a row in `status` may not be requeued, or `None` if it may.
fn refusal(status: &str, successor: Option<&str>, broker_id: Option<&str>) -> Option<String> {
    match (status, successor) {
        ("dead" | "pending", _) | ("aborted", None) => None,
        ("aborted", Some(next)) => Some(format!(
            "it was requeued already, as {next}; requeue that row instead"
        )),
        ("inflight", _) => Some(
            "a drain holds it and may be sending it now; wait until it settles (or its lease runs out), then requeue it"
                .to_string(),
        ),
        ("done", _) => Some(format!(
            "the broker accepted it already{}; enqueue a new message to send it again",
            broker_id.map(|b| format!(" (message id {b})")).unwrap_or_default()
        )),
        (other, _) => Some(format!(
            "{other:?} is not a status sluice knows (pending, inflight, done, dead, aborted); only dead, pending and aborted rows are requeued"
        )),
    }
}
