//! [`Outbox`]: one connection to one outbox file — opening it, its pragmas,
//! and the write-transaction helper every mutating call goes through.
//!
//! Owns: connection settings (WAL, `synchronous=NORMAL`, busy timeout) and the
//! order of the open steps. Not here: what the schema is (`schema`), the
//! statements that move rows (`claim`, `settle`, `sweep`, `enqueue`).

use crate::error::{StoreError, sqlite};
use crate::schema;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How long a statement waits for another connection's write lock before it
/// fails with [`StoreError::Busy`]. Long enough to ride out a producer's
/// transaction or a checkpoint; short enough that a stuck peer is reported.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The oldest SQLite without the WAL-reset bug (3.7.0 through 3.51.2 can
/// corrupt a WAL file that several connections checkpoint and write at
/// once; fixed in 3.51.3, backported to 3.50.7 and 3.44.6). Sluice's own
/// build must be at least this; docs/operating.md asks it of every process
/// that opens the outbox.
pub const SQLITE_MIN_SAFE: (u32, u32, u32) = (3, 51, 3);

/// The SQLite this binary links, e.g. `3.54.1`.
pub fn sqlite_version() -> &'static str {
    rusqlite::version()
}

/// Whether SQLite `version` ("3.40.1") has the WAL-reset bug: before 3.51.3,
/// except the backports 3.50.7+ on 3.50 and 3.44.6+ on 3.44.
pub fn has_wal_reset_bug(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    let fixed = match (major, minor) {
        (3, 50) => patch >= 7,
        (3, 44) => patch >= 6,
        _ => (major, minor, patch) >= SQLITE_MIN_SAFE,
    };
    let affected = (major, minor, patch) >= (3, 7, 0);
    affected && !fixed
}

/// SQLite's default `wal_autocheckpoint`, restored when a checkpointer is gone.
const AUTOCHECKPOINT_PAGES: i64 = 1000;

/// One connection to an outbox file. Not shared between threads: each
/// drainer, process or thread opens its own; claims stay disjoint because
/// each claim is one statement under SQLite's single write lock.
#[derive(Debug)]
pub struct Outbox {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
    /// Set by `start_checkpointer`, which turns automatic checkpoints off on
    /// this connection. When the checkpointer is dropped the next write turns
    /// them back on, so the WAL never grows without bound.
    pub(crate) checkpointer: Option<Weak<()>>,
    /// The WAL's length in frames after this connection's last commit, as
    /// the checkpointer's WAL hook last saw it (`Outbox::wal_frames`).
    pub(crate) wal_frames: Arc<AtomicU64>,
    /// Held by whoever of this process copies the WAL back (this connection,
    /// its checkpoint thread): two copies at once make one of them give up.
    pub(crate) copying: Arc<Mutex<()>>,
}

impl Outbox {
    /// Opens or creates the outbox file at `path`.
    ///
    /// A new or empty file gets the table and indexes; an older outbox gets
    /// its missing later columns. A file that is not SQLite, a database
    /// without an `outbox` table, and an outbox lacking a base column are
    /// refused before anything is written to them.
    pub fn open(path: &Path) -> Result<Outbox, StoreError> {
        // Only SQLite ever opens the outbox file in this process, never a
        // plain `File`: POSIX locks belong to the process, and closing any
        // descriptor of the file drops all of them, the SHARED locks of
        // SQLite's own connections included. A peer's connection would then
        // take the file for its last user when it closes: it checkpoints
        // without the WAL locks and deletes the WAL while Sluice still writes
        // it (a 3.40.1 reader did exactly that). SQLite's VFS keeps such
        // descriptors open until its locks are released; a plain read would
        // not. The schema look below is where a file that is not SQLite is
        // refused (NotSqlite), before anything is written.
        let conn = connect(path)?;
        let mut outbox = Outbox {
            conn,
            path: path.to_path_buf(),
            checkpointer: None,
            wal_frames: Arc::new(AtomicU64::new(0)),
            copying: Arc::new(Mutex::new(())),
        };
        // A read-only look first: switching to WAL rewrites the file header,
        // which a foreign file must never see.
        schema::inspect(&outbox.conn, path)?;
        outbox.set_pragmas()?;
        outbox.write("opening the outbox", |tx, path| {
            // Look again under the write lock: another process may have
            // created the table between the first look and now.
            let shape = schema::inspect(tx, path)?;
            schema::migrate(tx, &shape, path)
        })?;
        Ok(outbox)
    }

    /// The file this handle has open.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `body` in a `BEGIN IMMEDIATE` transaction and commits it.
    ///
    /// IMMEDIATE takes the write lock up front (waiting up to the busy
    /// timeout), so a read inside `body` can never be invalidated by another
    /// writer before the write: the basis of every compare-and-set here.
    /// An error rolls the transaction back (the `Transaction` drops).
    pub(crate) fn write<T>(
        &mut self,
        action: &'static str,
        body: impl FnOnce(&Transaction<'_>, &Path) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.restore_autocheckpoint_if_orphaned()?;
        let map = sqlite(&self.path, action);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&map)?;
        let value = body(&tx, &self.path)?;
        tx.commit().map_err(&map)?;
        Ok(value)
    }

    /// `PRAGMA data_version`: changes between two calls exactly when another
    /// connection committed in between (this connection's commits leave it).
    pub fn data_version(&mut self) -> Result<i64, StoreError> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(sqlite(&self.path, "reading data_version"))
    }

    fn set_pragmas(&mut self) -> Result<(), StoreError> {
        let map = sqlite(&self.path, "setting the journal mode");
        let mode: String = self
            .conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(&map)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NotWal {
                path: self.path.clone(),
                mode,
            });
        }
        // NORMAL in WAL mode: a power loss may drop the last commits but never
        // corrupts the file; FULL would fsync every claim and settle.
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(&map)?;
        // A statement's journal and the claim's RETURNING rows are temporary
        // tables: in memory they cost no file writes inside the write lock.
        self.conn
            .pragma_update(None, "temp_store", "MEMORY")
            .map_err(&map)?;
        // The claim binds a new value to its `LIMIT ?` every time; without a
        // stable plan SQLite re-prepares the statement on each new binding,
        // inside the write lock. The plan does not depend on the values.
        self.conn
            .set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .map_err(&map)?;
        Ok(())
    }

    /// Skips the table's `CHECK` constraints on this connection's writes.
    ///
    /// For a drain's write connection only (`share`, `examples/row_cost`).
    /// claudemesh's `CHECK(status IN (five values))` builds a temporary table
    /// of the five values for every row whose status a statement changes: a third
    /// of a settle's time inside the write lock (measured with
    /// `examples/row_cost`). Every statement of the drain writes a literal
    /// status from that list and no other checked column, so none can break
    /// the constraint; `store/tests/outbox/share.rs` runs `PRAGMA
    /// integrity_check`, which checks it, after every kind of write.
    pub fn skip_check_constraints(&mut self) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "ignore_check_constraints", true)
            .map_err(sqlite(&self.path, "setting ignore_check_constraints"))
    }

    fn restore_autocheckpoint_if_orphaned(&mut self) -> Result<(), StoreError> {
        let orphaned = self
            .checkpointer
            .as_ref()
            .is_some_and(|alive| alive.strong_count() == 0);
        if orphaned {
            self.conn
                .pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES)
                .map_err(sqlite(&self.path, "restoring automatic checkpoints"))?;
            self.checkpointer = None;
        }
        Ok(())
    }
}

/// Opens a connection with the busy timeout set; used for the outbox handle
/// and for the checkpoint thread's own connection.
pub(crate) fn connect(path: &Path) -> Result<Connection, StoreError> {
    // No SQLITE_OPEN_URI: a path is a path, even one starting with "file:".
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let open = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(path, flags).map_err(open)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
    Ok(conn)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
impl Outbox {
    /// The `detail` lines of `EXPLAIN QUERY PLAN sql`, all parameters bound to 0.
    pub(crate) fn query_plan(&self, sql: &str) -> Vec<String> {
        let mut stmt = self
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let zeros = vec![0; stmt.parameter_count()];
        let details = stmt
            .query_map(rusqlite::params_from_iter(zeros), |r| r.get::<_, String>(3))
            .unwrap();
        details.map(|d| d.unwrap()).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn the_linked_sqlite_is_free_of_the_wal_reset_bug() {
        let version = sqlite_version();
        assert!(
            !has_wal_reset_bug(version),
            "this build links SQLite {version}, which has the WAL-reset bug; \
             rusqlite's bundled SQLite must be 3.51.3 or later"
        );
    }

    #[test]
    fn versions_with_the_wal_reset_bug_are_told_apart() {
        for bad in ["3.40.1", "3.51.2", "3.50.6", "3.44.5", "3.7.0", "3.46.0"] {
            assert!(has_wal_reset_bug(bad), "{bad} has the bug");
        }
        for good in [
            "3.51.3", "3.52.0", "3.54.1", "3.50.7", "3.44.6", "3.6.23", "4.0.0",
        ] {
            assert!(!has_wal_reset_bug(good), "{good} is fixed or predates WAL");
        }
    }

    #[test]
    fn a_dropped_checkpointer_turns_automatic_checkpoints_back_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(&dir.path().join("outbox.db")).unwrap();
        let pages = |o: &Outbox| {
            o.conn
                .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get::<_, i64>(0))
                .unwrap()
        };
        let checkpointer = outbox.start_checkpointer().unwrap();
        assert_eq!(
            pages(&outbox),
            0,
            "the checkpointer owns checkpoints while it runs"
        );
        drop(checkpointer);
        outbox.reclaim(0).unwrap();
        assert_eq!(pages(&outbox), AUTOCHECKPOINT_PAGES);
    }
}
