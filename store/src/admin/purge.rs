//! `purge`: delete finished rows older than a cutoff without stalling a
//! drain that runs on the same file.
//!
//! Owns: the batched delete and the space report. The table is walked in
//! rowid windows of [`PURGE_BATCH_ROWS`]: each window is read without a
//! lock, and only a window holding old rows takes the write lock, for one
//! short IMMEDIATE transaction that re-checks the condition and deletes
//! them. Between those transactions the purge sleeps [`PURGE_PAUSE`] so a
//! drainer waiting for the lock gets it. Not here: parsing "7d" (the host).

use crate::error::{StoreError, sqlite};
use crate::outbox::Outbox;
use rusqlite::params;
use sluice_contract::TimestampMs;
use std::time::Duration;

/// Rows looked at, and at most deleted, per write transaction. A few
/// hundred deletes with their index updates take a few milliseconds: the
/// longest a drain's claim or settle waits for one batch.
pub const PURGE_BATCH_ROWS: u32 = 400;

/// The sleep after each write batch. SQLite's busy handler retries a
/// waiting writer after 1, 2, 5, 10… ms: a pause of that order lets a
/// waiting drainer in instead of the purge taking the lock straight back.
pub const PURGE_PAUSE: Duration = Duration::from_millis(5);

/// Free pages returned to the file system per `incremental_vacuum` step,
/// each its own short write (4 MB at 2 KB pages, 8 MB at 4 KB).
const VACUUM_PAGES_PER_STEP: u32 = 2_000;

/// `auto_vacuum` mode 2: free pages are returned only on request.
const AUTO_VACUUM_INCREMENTAL: i64 = 2;

/// A finished row's age: `done` rows by delivery, `dead` ones by the
/// decision that killed them, both by enqueue time when that is unknown.
/// A NULL cutoff matches nothing.
const OLD_DONE: &str = "status = 'done' AND COALESCE(delivered_at, enqueued_at) < ?2";
const OLD_DEAD: &str = "status = 'dead' AND COALESCE(decided_at, enqueued_at) < ?3";

/// What to delete: finished rows older than each cutoff (ms); `None`
/// deletes none of that status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeRequest {
    pub done_before: Option<TimestampMs>,
    pub dead_before: Option<TimestampMs>,
}

/// What a purge removed and what it did to the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub done: u64,
    pub dead: u64,
    /// Write transactions taken.
    pub batches: u64,
    pub page_size: i64,
    pub pages_before: i64,
    pub pages_after: i64,
    /// Free pages in the file before the purge.
    pub free_pages_before: i64,
    /// Free pages left in the file, which SQLite reuses for new rows.
    pub free_pages: i64,
    /// Whether `incremental_vacuum` ran (only when `auto_vacuum` is
    /// incremental: then the file shrinks by the freed pages).
    pub vacuumed: bool,
}

impl PurgeReport {
    pub fn bytes_before(&self) -> i64 {
        self.pages_before.saturating_mul(self.page_size)
    }
    pub fn bytes_after(&self) -> i64 {
        self.pages_after.saturating_mul(self.page_size)
    }
    pub fn reusable_bytes(&self) -> i64 {
        self.free_pages.saturating_mul(self.page_size)
    }
    /// The space the purge freed: pages given back to the file system plus
    /// pages that became free inside the file (SQLite reuses those for new
    /// rows). Writers beside the purge can take some of them at once, so it
    /// is what was freed, not what is free now.
    pub fn freed_bytes(&self) -> i64 {
        let returned = self.pages_before.saturating_sub(self.pages_after);
        let newly_free = self.free_pages.saturating_sub(self.free_pages_before);
        returned
            .saturating_add(newly_free)
            .max(0)
            .saturating_mul(self.page_size)
    }
}

impl Outbox {
    /// Deletes the finished rows `request` names, in batches, and reports
    /// the counts and the file's pages before and after.
    pub fn purge(&mut self, request: PurgeRequest) -> Result<PurgeReport, StoreError> {
        let mut report = PurgeReport {
            page_size: self.pragma_int("page_size")?,
            pages_before: self.pragma_int("page_count")?,
            free_pages_before: self.pragma_int("freelist_count")?,
            ..PurgeReport::default()
        };
        let window_sql = format!(
            "SELECT rowid, IFNULL(({OLD_DONE}) OR ({OLD_DEAD}), 0) FROM outbox
             WHERE rowid > ?1 ORDER BY rowid LIMIT ?4"
        );
        let delete_done =
            format!("DELETE FROM outbox WHERE rowid > ?1 AND rowid <= ?4 AND {OLD_DONE}");
        let delete_dead =
            format!("DELETE FROM outbox WHERE rowid > ?1 AND rowid <= ?4 AND {OLD_DEAD}");
        let (done_before, dead_before) = (request.done_before, request.dead_before);
        let mut cursor = i64::MIN;
        loop {
            let window: Vec<(i64, bool)> = self
                .conn
                .prepare_cached(&window_sql)
                .and_then(|mut stmt| {
                    stmt.query_map(
                        params![cursor, done_before, dead_before, PURGE_BATCH_ROWS],
                        |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)),
                    )?
                    .collect()
                })
                .map_err(sqlite(&self.path, "reading rows to purge"))?;
            let Some(&(last, _)) = window.last() else {
                break;
            };
            if window.iter().any(|&(_, old)| old) {
                let (done, dead) = self.write("purge", |tx, path| {
                    let map = sqlite(path, "purge");
                    let args = params![cursor, done_before, dead_before, last];
                    let done = tx.execute(&delete_done, args).map_err(&map)?;
                    let dead = tx.execute(&delete_dead, args).map_err(&map)?;
                    Ok((done, dead))
                })?;
                report.done += done as u64;
                report.dead += dead as u64;
                report.batches += 1;
                std::thread::sleep(PURGE_PAUSE);
            }
            cursor = last;
        }
        if self.pragma_int("auto_vacuum")? == AUTO_VACUUM_INCREMENTAL {
            self.vacuum_incrementally()?;
            report.vacuumed = true;
        }
        report.pages_after = self.pragma_int("page_count")?;
        report.free_pages = self.pragma_int("freelist_count")?;
        Ok(report)
    }

    /// Returns free pages to the file system a step at a time, pausing
    /// between steps like the deletes do.
    fn vacuum_incrementally(&mut self) -> Result<(), StoreError> {
        let mut free = self.pragma_int("freelist_count")?;
        while free > 0 {
            self.conn
                .execute_batch(&format!(
                    "PRAGMA incremental_vacuum({VACUUM_PAGES_PER_STEP})"
                ))
                .map_err(sqlite(&self.path, "incremental vacuum"))?;
            let left = self.pragma_int("freelist_count")?;
            if left >= free {
                break;
            }
            free = left;
            std::thread::sleep(PURGE_PAUSE);
        }
        Ok(())
    }

    fn pragma_int(&self, name: &'static str) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, name, |r| r.get(0))
            .map_err(sqlite(&self.path, "reading the file's size"))
    }
}
