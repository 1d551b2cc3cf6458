//! The audit trail: which policies drove this outbox, and which decided
//! which rows.
//!
//! Owns: the `sluice_policy_history` table (one row per policy that went
//! live: its hash, name, version, source, when and why), the
//! `sluice_policy_violations` table (what the host's guard refused of each
//! policy, counted by rule), and the summary of
//! the audit columns `decided_by`/`decided_at` that `settle_by` fills. Not
//! here: deciding when a policy goes live (the host).

use crate::error::{StoreError, sqlite};
use crate::outbox::Outbox;
use rusqlite::params;

/// A policy that went live on this outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyEvent {
    pub sha256: String,
    pub name: String,
    pub version: String,
    /// A file path, or `embedded default`.
    pub source: String,
    pub loaded_at: i64,
    /// `start`, `file change`, `load command`, `rollback: …`.
    pub reason: String,
}

/// Rows a policy decided since some time: (sha256, name and version when the
/// history knows them, rows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecidedBy {
    pub sha256: String,
    pub policy: Option<String>,
    pub rows: u64,
}

/// Breaches of one rule by one policy, as the host's guard counted them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViolationCount {
    pub sha256: String,
    /// The policy's name and version when the history knows them.
    pub policy: Option<String>,
    pub rule: String,
    pub count: u64,
    pub last_at: i64,
    /// The row of the latest breach (`row 7 (id m-7)`, or `-`).
    pub last_row: String,
    pub last_detail: String,
}

impl Outbox {
    /// Adds to the violation counts of policy `sha256`: per rule, how many
    /// breaches, and the row and sentence of the latest, at `at` (ms).
    pub fn record_violations(
        &mut self,
        sha256: &str,
        breaches: &[(String, u64, String, String)],
        at: i64,
    ) -> Result<(), StoreError> {
        self.write("counting a policy's violations", |tx, path| {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO sluice_policy_violations (sha256, rule, count, last_at, last_row, last_detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (sha256, rule) DO UPDATE SET count = count + excluded.count,
                        last_at = excluded.last_at, last_row = excluded.last_row,
                        last_detail = excluded.last_detail",
                )
                .map_err(sqlite(path, "counting violations"))?;
            for (rule, count, row, detail) in breaches {
                let count = i64::try_from(*count).unwrap_or(i64::MAX);
                stmt.execute(params![sha256, rule, count, at, row, detail])
                    .map_err(sqlite(path, "counting violations"))?;
            }
            Ok(())
        })
    }

    /// Every policy's violation counts, the latest first.
    pub fn policy_violations(&mut self) -> Result<Vec<ViolationCount>, StoreError> {
        let map = sqlite(&self.path, "reading the policy violations");
        let mut stmt = self
            .conn
            .prepare(
                "SELECT v.sha256, v.rule, v.count, v.last_at, v.last_row, v.last_detail,
                    (SELECT h.name || ' ' || h.version FROM sluice_policy_history h
                     WHERE h.sha256 = v.sha256 ORDER BY h.id DESC LIMIT 1)
                 FROM sluice_policy_violations v ORDER BY v.last_at DESC, v.rule",
            )
            .map_err(&map)?;
        let counts = stmt
            .query_map([], |r| {
                Ok(ViolationCount {
                    sha256: r.get(0)?,
                    rule: r.get(1)?,
                    count: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    last_at: r.get(3)?,
                    last_row: r.get(4)?,
                    last_detail: r.get(5)?,
                    policy: r.get(6)?,
                })
            })
            .map_err(&map)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&map)?;
        Ok(counts)
    }

    /// Appends a policy to the history.
    pub fn record_policy(&mut self, event: &PolicyEvent) -> Result<(), StoreError> {
        self.write("recording a policy in the history", |tx, path| {
            tx.execute(
                "INSERT INTO sluice_policy_history (sha256, name, version, source, loaded_at, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    event.sha256,
                    event.name,
                    event.version,
                    event.source,
                    event.loaded_at,
                    event.reason
                ],
            )
            .map_err(sqlite(path, "recording a policy"))?;
            Ok(())
        })
    }

    /// The newest `limit` entries of the history, newest first.
    pub fn policy_history(&mut self, limit: u32) -> Result<Vec<PolicyEvent>, StoreError> {
        let map = sqlite(&self.path, "reading the policy history");
        let mut stmt = self
            .conn
            .prepare(
                "SELECT sha256, name, version, source, loaded_at, reason
                 FROM sluice_policy_history ORDER BY id DESC LIMIT ?1",
            )
            .map_err(&map)?;
        let events = stmt
            .query_map([limit], |r| {
                Ok(PolicyEvent {
                    sha256: r.get(0)?,
                    name: r.get(1)?,
                    version: r.get(2)?,
                    source: r.get(3)?,
                    loaded_at: r.get(4)?,
                    reason: r.get(5)?,
                })
            })
            .map_err(&map)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&map)?;
        Ok(events)
    }

    /// Which policies decided the rows settled since `since` (ms), most
    /// rows first. Reads every row: for `sluice status`, not a hot path.
    pub fn decided_since(&mut self, since: i64) -> Result<Vec<DecidedBy>, StoreError> {
        let map = sqlite(&self.path, "summarising the deciding policies");
        let mut stmt = self
            .conn
            .prepare(
                "SELECT o.decided_by, COUNT(*),
                    (SELECT h.name || ' ' || h.version FROM sluice_policy_history h
                     WHERE h.sha256 = o.decided_by ORDER BY h.id DESC LIMIT 1)
                 FROM outbox o WHERE o.decided_at >= ?1 AND o.decided_by IS NOT NULL
                 GROUP BY o.decided_by ORDER BY 2 DESC",
            )
            .map_err(&map)?;
        let rows = stmt
            .query_map([since], |r| {
                Ok(DecidedBy {
                    sha256: r.get(0)?,
                    rows: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    policy: r.get(2)?,
                })
            })
            .map_err(&map)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&map)?;
        Ok(rows)
    }
}
