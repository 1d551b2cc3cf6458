//! [`Checkpointer`]: a thread with its own connection that copies the WAL
//! back into the database file in the background.
//!
//! Why a thread: with automatic checkpoints the drain's own commits now and
//! then stop to checkpoint; moving that work to another connection measured
//! +22–39% claim-and-settle throughput. PASSIVE never waits for readers or
//! writers, so neither the drain nor a producer is blocked by it.
//!
//! Why nudged: a producer whose commit finds 1000 or more frames in the WAL
//! (SQLite's default `wal_autocheckpoint`) runs a checkpoint inside that
//! commit, copying what is not yet copied while its caller waits. The
//! drain's write connection learns the WAL's length after each of its
//! commits (a WAL hook) and nudges this thread once the WAL holds
//! [`WAL_FRAMES_NUDGE`] frames, so a producer's checkpoint finds little left.
//! The length is kept too: with company, a gap copies the WAL back itself
//! only once it is long (`share`).
//!
//! Owns: the thread, its stop and its nudges. Not here: turning automatic
//! checkpoints off and back on, which is a setting of the drain's
//! connection (`outbox`).

use crate::error::{StoreError, sqlite};
use crate::outbox::{Outbox, connect};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest time between checkpoints. Short enough that the WAL stays a few
/// MB at 100k+ rows a second; each pass that finds nothing new costs
/// microseconds.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(20);

/// The drain's commits nudge the thread once the WAL holds this many frames.
pub const WAL_FRAMES_NUDGE: u64 = 256;

/// The running checkpoint thread. Dropping it stops and joins the thread;
/// the outbox it came from then turns automatic checkpoints back on at its
/// next write.
#[derive(Debug)]
pub struct Checkpointer {
    nudge: mpsc::Sender<()>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Passes that failed (each is retried at the next interval; meanwhile
    /// the WAL only grows, nothing is lost).
    failures: Arc<AtomicU64>,
    /// Held only for its liveness: the outbox keeps a `Weak` to it.
    _alive: Arc<()>,
}

impl Checkpointer {
    /// How many checkpoint passes failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.nudge.send(());
        if let Some(thread) = self.thread.take() {
            // The loop cannot panic; a join error would only repeat a panic.
            let _ = thread.join();
        }
    }
}

impl Outbox {
    /// One passive checkpoint on this connection: copies back what the WAL
    /// holds beyond every reader's snapshot, without waiting for anybody.
    /// Whether the whole WAL is now copied back (the next writer then starts
    /// it over); not when another process's checkpoint was running or a
    /// reader's snapshot held frames back. A pass of this process's
    /// checkpoint thread under way is waited for: SQLite lets one checkpoint
    /// run at a time and answers a second with "busy" at once, which made
    /// most of the copies in the gaps beside a producer come back not whole
    /// (the thread, nudged by the turn's commits, was copying).
    pub(crate) fn copy_back(&mut self) -> Result<bool, StoreError> {
        passive_checkpoint(&self.conn, &self.copying)
            .map_err(sqlite(&self.path, "copying the WAL back"))
    }

    /// How many frames the WAL held after this connection's last commit,
    /// while a checkpointer runs (its WAL hook sees each commit); `None`
    /// when none does.
    pub(crate) fn wal_frames(&self) -> Option<u64> {
        self.checkpointer
            .as_ref()
            .filter(|alive| alive.strong_count() > 0)?;
        Some(self.wal_frames.load(Ordering::Relaxed))
    }

    /// Turns off automatic checkpoints on this connection and starts a thread
    /// with its own connection running `PRAGMA wal_checkpoint(PASSIVE)` every
    /// [`CHECKPOINT_INTERVAL`], or sooner when nudged; it stops when the
    /// [`Checkpointer`] is dropped. This connection's commits report the
    /// WAL's length to it and nudge it when the WAL is long.
    pub fn start_checkpointer(&mut self) -> Result<Checkpointer, StoreError> {
        let conn = connect(&self.path)?;
        let (nudge, nudged) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, failures) = (Arc::clone(&stop), Arc::clone(&failures));
            let copying = Arc::clone(&self.copying);
            std::thread::Builder::new()
                .name("sluice-checkpoint".into())
                .spawn(move || run(&conn, &nudged, &stop, &failures, &copying))
                .map_err(StoreError::Spawn)?
        };
        let alive = Arc::new(());
        // From here on a failure drops the Checkpointer, which stops the thread.
        let checkpointer = Checkpointer {
            nudge: nudge.clone(),
            stop,
            thread: Some(thread),
            failures,
            _alive: Arc::clone(&alive),
        };
        let wal_frames = Arc::clone(&self.wal_frames);
        let map = sqlite(&self.path, "turning automatic checkpoints off");
        self.conn
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(&map)?;
        // Replaces the automatic checkpoint's own hook (now off). Setting
        // wal_autocheckpoint again, as a dropped checkpointer does, removes it.
        self.conn
            .wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, frames| {
                let frames = u64::try_from(frames).unwrap_or(0);
                wal_frames.store(frames, Ordering::Relaxed);
                if frames >= WAL_FRAMES_NUDGE {
                    let _ = nudge.send(());
                }
                Ok(())
            }))
            .map_err(&map)?;
        self.checkpointer = Some(Arc::downgrade(&alive) as Weak<()>);
        Ok(checkpointer)
    }
}

fn run(
    conn: &rusqlite::Connection,
    nudged: &mpsc::Receiver<()>,
    stop: &AtomicBool,
    failures: &AtomicU64,
    copying: &Mutex<()>,
) {
    while !stop.load(Ordering::Relaxed) {
        match nudged.recv_timeout(CHECKPOINT_INTERVAL) {
            Ok(()) => while nudged.try_recv().is_ok() {},
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        // Whether the pass copied the WAL back whole needs no action: a
        // partial pass is finished by the next one, and a WAL copied back
        // whole is started over by the next writer that finds no reader on it.
        if passive_checkpoint(conn, copying).is_err() {
            failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One `PRAGMA wal_checkpoint(PASSIVE)` on `conn`, holding the process's
/// `copying` lock; whether it copied the WAL back whole (not busy, every
/// frame copied).
fn passive_checkpoint(conn: &rusqlite::Connection, copying: &Mutex<()>) -> rusqlite::Result<bool> {
    // A poisoned lock only means a pass panicked; the file is SQLite's to
    // keep consistent, and it did.
    let _copying = copying
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        let (busy, frames, copied): (i64, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        Ok(busy == 0 && frames == copied)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use crate::enqueue::NewRow;
    use crate::outbox::Outbox;

    #[test]
    fn a_copy_waits_for_the_checkpoint_thread_instead_of_giving_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(&dir.path().join("outbox.db")).unwrap();
        let _thread = outbox.start_checkpointer().unwrap();
        let mut not_whole = 0;
        for batch in 0..100 {
            // Enough pages that the commit nudges the thread (256 frames), so
            // that its pass is under way as the copy begins.
            let rows: Vec<NewRow> = (0..400)
                .map(|i| NewRow {
                    id: format!("r{batch}-{i}"),
                    client_message_id: format!("cm{batch}-{i}"),
                    request_fingerprint: vec![1; 32],
                    payload: vec![b'p'; 600],
                    ..NewRow::default()
                })
                .collect();
            outbox.enqueue(&rows).unwrap();
            // The thread wakes to the nudge in a moment; the copy comes at
            // moments spread over its pass.
            std::thread::sleep(std::time::Duration::from_micros(batch % 10 * 50));
            if !outbox.copy_back().unwrap() {
                not_whole += 1;
            }
        }
        // Nobody else is on the file: every copy is whole. (Without the
        // lock, most came back "busy" while the thread copied.)
        assert_eq!(not_whole, 0, "copies of 100 not whole");
    }
}
