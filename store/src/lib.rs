//! Sluice's outbox store: every byte Sluice reads from or writes to the
//! SQLite outbox file goes through this crate.
//!
//! The map, in the order a row travels:
//! - [`schema`]: the table as claudemesh's daemon makes it, the look at an existing
//!   file that decides whether it may be touched, and the additive migration.
//! - [`outbox`]: [`Outbox`], one connection to one file: opening, pragmas,
//!   the write-transaction helper.
//! - [`enqueue`]: [`NewRow`] and inserting rows (the producers' side, for the
//!   CLI, the demo and tests).
//! - [`claim`]: `claim_due`, the one-statement batch claim.
//! - [`lenient`]: reading loosely typed SQLite values into a
//!   [`sluice_contract::Row`] without letting one odd row stop a claim.
//! - [`settle`]: applying outcomes, compare-and-set on the claim.
//! - [`sweep`]: reclaim run-out leases, expire old rows, when work is next due.
//! - [`report`]: the status report and the per-row look used by tests.
//! - [`admin`]: the operator's commands: list, inspect, requeue, purge.
//! - [`share`]: [`SharedOutbox`], the process's one write connection: turns
//!   that give way to other writers, the WAL bound, the corruption latch.
//! - [`rhythm`]: when a waiting producer will retry, so a turn ends just before.
//! - [`checkpoint`]: the background WAL checkpoint thread.
//! - [`error`]: [`StoreError`], the one error type of this boundary.
//!
//! Not here: what to do with a row (the policy), sockets (links), the loop
//! (host). Nothing here is async: every call is a short SQLite transaction.

pub mod admin;
pub mod checkpoint;
pub mod claim;
pub mod cpu;
pub mod enqueue;
pub mod error;
pub mod history;
pub mod lenient;
pub mod outbox;
pub mod report;
pub mod rhythm;
pub mod schema;
pub mod settle;
pub mod share;
pub mod sweep;

pub use admin::{
    AdminError, Entry, Inspection, LIST_ROWS_MAX, ListFilter, PURGE_BATCH_ROWS, PurgeReport,
    PurgeRequest, REQUEUE_ROWS_MAX, Refusal, RequeueReport, RequeueRequest, Requeued, Selection,
};
pub use checkpoint::{CHECKPOINT_INTERVAL, Checkpointer, WAL_FRAMES_NUDGE};
pub use claim::{CLAIM_ROWS_MAX, Leased};
pub use enqueue::NewRow;
pub use error::StoreError;
pub use history::{DecidedBy, PolicyEvent, ViolationCount};
pub use outbox::{BUSY_TIMEOUT, Outbox, SQLITE_MIN_SAFE, has_wal_reset_bug, sqlite_version};
pub use report::{RowState, STATUSES, StatusReport};
pub use schema::{AUDIT_COLUMNS, BASE_COLUMNS, LATER_COLUMNS};
pub use share::SharedOutbox;
