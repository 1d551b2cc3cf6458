//! [`Checkpointer`]: a thread with its own connection that copies the WAL
//! back into the database file in the background.
//!
//! Why: with automatic checkpoints the drain's own commits now and then stop
//! to checkpoint; moving that work to another connection measured +22–39%
//! claim-and-settle throughput. PASSIVE never waits for readers or writers,
//! so the drain is never blocked by it.
//!
//! Owns: the thread and its stop. Not here: turning automatic checkpoints off
//! and back on, which is a setting of the drain's connection (`outbox`).

use crate::error::{StoreError, sqlite};
use crate::outbox::{Outbox, connect};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// Time between checkpoints. Short enough that the WAL stays a few MB at
/// 100k+ rows a second; each pass that finds nothing new costs microseconds.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(20);

/// The running checkpoint thread. Dropping it stops and joins the thread;
/// the outbox it came from then turns automatic checkpoints back on at its
/// next write.
#[derive(Debug)]
pub struct Checkpointer {
    /// Dropping the sender wakes the thread at once and ends it.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    failures: Arc<AtomicU64>,
    /// Held only for its liveness: the outbox keeps a `Weak` to it.
    _alive: Arc<()>,
}

impl Checkpointer {
    /// How many checkpoint passes failed so far (each is retried at the next
    /// interval; meanwhile the WAL only grows, nothing is lost).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The loop cannot panic; a join error would only repeat a panic.
            let _ = thread.join();
        }
    }
}

impl Outbox {
    /// Turns off automatic checkpoints on this connection and starts a thread
    /// with its own connection running `PRAGMA wal_checkpoint(PASSIVE)` every
    /// [`CHECKPOINT_INTERVAL`]; it stops when the [`Checkpointer`] is dropped.
    pub fn start_checkpointer(&mut self) -> Result<Checkpointer, StoreError> {
        let conn = connect(&self.path)?;
        let (stop, stopped) = mpsc::channel();
        let failures = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&failures);
        let thread = std::thread::Builder::new()
            .name("sluice-checkpoint".into())
            .spawn(move || run(&conn, &stopped, &counter))
            .map_err(StoreError::Spawn)?;
        let alive = Arc::new(());
        // From here on a failure drops the Checkpointer, which stops the thread.
        let checkpointer = Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
            failures,
            _alive: Arc::clone(&alive),
        };
        self.conn
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(sqlite(&self.path, "turning automatic checkpoints off"))?;
        self.checkpointer = Some(Arc::downgrade(&alive) as Weak<()>);
        Ok(checkpointer)
    }
}

fn run(conn: &rusqlite::Connection, stopped: &mpsc::Receiver<()>, failures: &AtomicU64) {
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_INTERVAL) {
        // The result row (busy, log pages, checkpointed pages) needs no action:
        // a partial pass is finished by the next one.
        if conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .is_err()
        {
            failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}
