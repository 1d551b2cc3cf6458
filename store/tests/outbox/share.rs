//! Sharing the file with other processes: Sluice keeps its locks, gives way
//! to another writer, and stops at a corrupt file.

use crate::common::{one_at_a_time, raw, rows, temp_path};
use sluice_store::{Outbox, SharedOutbox, StoreError};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The POSIX locks this process holds on `path`, as /proc/locks lists them
/// ("READ" or "WRITE", one per range).
fn own_locks(path: &Path) -> Vec<String> {
    let inode = std::fs::metadata(path).unwrap().ino();
    let pid = std::process::id().to_string();
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // "1: POSIX ADVISORY READ 1234 fe:00:5678 0 EOF"
            let ours = f.get(4) == Some(&pid.as_str())
                && f.get(5)
                    .is_some_and(|dev_ino| dev_ino.ends_with(&format!(":{inode}")));
            ours.then(|| f[3].to_string())
        })
        .collect()
}

/// `n` producer commits 2 ms apart, as a daemon at 500 a second makes them;
/// how long each waited for the write lock.
fn produce_every_2_ms(path: &Path, n: usize) -> Vec<Duration> {
    let producer = raw(path);
    producer.busy_timeout(Duration::from_secs(5)).unwrap();
    (0..n)
        .map(|i| {
            let waited = produce(&producer, i);
            std::thread::sleep(Duration::from_millis(2));
            waited
        })
        .collect()
}

/// An outbox at `path` with `n` due rows.
fn seed_due(path: &Path, n: usize) {
    Outbox::open(path).unwrap().enqueue(&rows(n)).unwrap();
}

/// One commit of a producer, as a daemon makes it: `BEGIN IMMEDIATE`, one
/// row (due far in the future, so the drain leaves it), `COMMIT`. Returns
/// how long `BEGIN IMMEDIATE` waited for the write lock, the part Sluice can
/// hold back; the commit's write to disk is the disk's (beside the other
/// tests' writes, one took half a second).
fn produce(producer: &rusqlite::Connection, i: usize) -> Duration {
    let started = Instant::now();
    producer.execute_batch("BEGIN IMMEDIATE").unwrap();
    let waited = started.elapsed();
    producer
        .execute_batch(&format!(
            "INSERT INTO outbox (id, client_message_id, request_fingerprint,
             payload, enqueued_at, next_attempt_at, status) VALUES ('p{i}', 'p{i}', x'00',
             x'00', 0, 9e15, 'pending'); COMMIT;"
        ))
        .unwrap();
    waited
}

/// Whether a background drain settles what it claims as a retry due at once
/// (so the rows never run out) or leaves it claimed.
#[derive(Clone, Copy)]
enum Again {
    Never,
    AtOnce,
}

/// Sluice claiming 1024 rows at a time as fast as it can, on a thread, until
/// stopped or (with `Again::Never`) until nothing is due.
struct Drain {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl Drain {
    fn start(shared: std::sync::Arc<SharedOutbox>, again: Again) -> Drain {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut claimed = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let rows = shared
                        .claim_due_except(i64::MAX / 2, 1024, 60_000, &Default::default())
                        .unwrap();
                    claimed += rows.len();
                    match again {
                        Again::Never if rows.is_empty() => break,
                        Again::Never => {}
                        Again::AtOnce => {
                            let retries: Vec<_> = rows
                                .iter()
                                .map(|row| sluice_contract::Outcome {
                                    rowid: row.rowid,
                                    attempts: row.attempts,
                                    verdict: sluice_contract::Verdict::Retry {
                                        next_attempt_at: 0,
                                        last_error: "again".into(),
                                    },
                                })
                                .collect();
                            shared.settle_by(&retries, None, None).unwrap();
                        }
                    }
                }
                claimed
            })
        };
        Drain { stop, thread }
    }

    /// Stops the drain; how many rows it claimed.
    fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

#[test]
fn opening_more_connections_keeps_the_shared_lock_on_the_file() {
    // SQLite in WAL mode holds a SHARED lock on the database file for as
    // long as a connection is open; a peer that can take EXCLUSIVE believes
    // it is the last connection, checkpoints without locks and deletes the
    // WAL. Opening the file outside SQLite and closing it drops that lock.
    let (_dir, path) = temp_path();
    let mut first = Outbox::open(&path).unwrap();
    first.status(1).unwrap();
    assert_eq!(
        own_locks(&path),
        ["READ"],
        "an open connection holds SHARED; /proc/locks:\n{}",
        std::fs::read_to_string("/proc/locks").unwrap()
    );
    let _second = Outbox::open(&path).unwrap();
    let _shared = SharedOutbox::open(&path).unwrap();
    let _checkpointer = _shared.start_checkpointer().unwrap();
    assert_eq!(
        own_locks(&path),
        ["READ"],
        "opening more connections must not drop the SHARED lock"
    );
}

#[test]
fn a_file_that_is_not_sqlite_is_still_refused_untouched() {
    let (_dir, path) = temp_path();
    std::fs::write(&path, b"not a database, just some text that is long enough").unwrap();
    let before = std::fs::read(&path).unwrap();
    let error = Outbox::open(&path).unwrap_err();
    assert!(matches!(error, StoreError::NotSqlite { .. }), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing was written");
}

#[test]
fn a_corrupt_file_stops_every_later_write() {
    let (_dir, path) = temp_path();
    seed_due(&path, 200);
    // Damage the table's root page behind SQLite's back, then open.
    {
        let conn = raw(&path);
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        let root: i64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'outbox'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        drop(conn);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = usize::try_from((root - 1) * page_size).unwrap();
        bytes[at..at + 64].fill(0xee);
        std::fs::write(&path, &bytes).unwrap();
    }
    let shared = SharedOutbox::open(&path).unwrap();
    let first = shared.claim_due_except(i64::MAX / 2, 100, 1000, &Default::default());
    let error = first.unwrap_err();
    assert!(error.is_corrupt(), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("PRAGMA integrity_check") && text.contains(".recover"),
        "{text}"
    );
    assert!(shared.corrupt().is_some());
    assert!(shared.corrupt_report().is_some(), "reported once");
    assert!(shared.corrupt_report().is_none(), "and only once");
    // Every later call refuses without touching the file.
    assert!(shared.reclaim(0).unwrap_err().is_corrupt());
    assert!(
        shared.settle_by(&[], None, None).is_ok(),
        "an empty settle writes nothing"
    );
}

#[test]
fn another_writer_gets_the_lock_between_turns() {
    // A producer writes while Sluice claims as fast as it can: once Sluice
    // has noticed it, each producer commit waits at most a few ms.
    let _timed = one_at_a_time();
    let (_dir, path) = temp_path();
    seed_due(&path, 30_000);
    let shared = std::sync::Arc::new(SharedOutbox::open(&path).unwrap());
    let drain = Drain::start(shared.clone(), Again::Never);
    let mut waits = produce_every_2_ms(&path, 300);
    let claimed = drain.stop();
    assert!(shared.peer_active(), "Sluice noticed the producer");
    // The first commits may wait for a whole batch, before Sluice notices.
    waits.drain(..20);
    waits.sort();
    let worst = *waits.last().unwrap();
    assert!(
        worst < Duration::from_millis(100),
        "a producer commit waited {worst:?} behind the drain"
    );
    assert!(claimed > 0);
}

#[test]
fn another_process_with_the_file_open_is_company() {
    let (_dir, path) = temp_path();
    seed_due(&path, 10);
    let shared = SharedOutbox::open(&path).unwrap();
    assert!(
        !shared.peer_active(),
        "alone: no other process holds a lock on the file"
    );
    // A process that opens the outbox and reads it holds a shared lock on it.
    let mut peer = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1]); c.execute('select count(*) from outbox').fetchall()\n\
             print('open', flush=True); time.sleep(30)",
        )
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 starts a second process on the file");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(peer.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    std::thread::sleep(sluice_store::share::PEERS_LOOK_EVERY + Duration::from_millis(50));
    let seen = shared.peer_active();
    peer.kill().unwrap();
    peer.wait().unwrap();
    assert!(seen, "a second process on the file is company");
    std::thread::sleep(sluice_store::share::PEERS_LOOK_EVERY + Duration::from_millis(50));
    assert!(!shared.peer_active(), "alone again once it is gone");
}

#[test]
fn a_producer_that_comes_while_sluice_drains_alone_is_let_in_at_once() {
    // Sluice claims back to back, alone on the file; then a process opens it
    // and commits once. Noticed only at the next look at /proc/locks (every
    // 250 ms, as it was), the newcomer slept through its busy handler's
    // 25–100 ms steps behind whole batches and waited up to 0.7 s. Noticed at
    // the next turn and stood aside for, it waits a few tens of ms. What is
    // timed is its wait for the write lock; its commit's write to disk is the
    // disk's (beside the other tests' writes, one took half a second).
    let _timed = one_at_a_time();
    let (_dir, path) = temp_path();
    seed_due(&path, 20_000);
    let shared = std::sync::Arc::new(SharedOutbox::open(&path).unwrap());
    let drain = Drain::start(shared.clone(), Again::AtOnce);
    let mut waits = Vec::new();
    for i in 0..3 {
        // Each newcomer comes when Sluice has been alone a while: the last
        // one gone from /proc/locks, its commit older than PEER_ACTIVE.
        std::thread::sleep(sluice_store::share::PEER_ACTIVE + Duration::from_millis(100));
        assert!(!shared.peer_active(), "alone before newcomer {i}");
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import sqlite3, sys, time\n\
                 c = sqlite3.connect(sys.argv[1], timeout=5.0, isolation_level=None)\n\
                 t = time.perf_counter()\n\
                 c.execute('BEGIN IMMEDIATE')\n\
                 print((time.perf_counter() - t) * 1000)\n\
                 c.execute(\"INSERT INTO outbox (id, client_message_id, request_fingerprint, \
                 payload, enqueued_at, next_attempt_at, status) VALUES (?, ?, x'00', x'00', 0, \
                 9e15, 'pending')\", (sys.argv[2], sys.argv[2]))\n\
                 c.execute('COMMIT')",
            )
            .arg(&path)
            .arg(format!("newcomer-{i}"))
            .output()
            .expect("python3 starts a producer process");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ms: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        waits.push(ms);
    }
    let claimed = drain.stop();
    assert!(claimed > 0, "Sluice drained meanwhile");
    assert!(
        waits.iter().all(|ms| *ms < 100.0),
        "a newcomer's first write lock waited behind the drain: {waits:?} ms"
    );
}

#[test]
fn every_write_of_the_drain_keeps_the_tables_check() {
    // The drain's write connection skips the table's CHECK on status (it
    // costs a temporary table per row); every status it writes must still
    // pass it. PRAGMA integrity_check checks CHECK constraints.
    let (_dir, path) = temp_path();
    seed_due(&path, 40);
    let shared = SharedOutbox::open(&path).unwrap();
    let claimed = shared
        .claim_due_except(10_000, 40, 60_000, &Default::default())
        .unwrap();
    assert_eq!(claimed.len(), 40);
    use sluice_contract::{Outcome, Verdict};
    let outcomes: Vec<Outcome> = claimed[..32]
        .iter()
        .enumerate()
        .map(|(i, row)| Outcome {
            rowid: row.rowid,
            attempts: row.attempts,
            verdict: match i % 4 {
                0 => Verdict::Done {
                    broker_message_id: format!("m{i}"),
                    delivered_at: 10_000,
                },
                1 => Verdict::Dead {
                    reason: "gone".into(),
                },
                2 => Verdict::Retry {
                    next_attempt_at: 20_000,
                    last_error: "again".into(),
                },
                _ => Verdict::Hold {
                    next_attempt_at: 20_000,
                    last_error: None,
                },
            },
        })
        .collect();
    assert_eq!(
        shared
            .settle_by(&outcomes, Some("sha"), Some(10_000))
            .unwrap(),
        32
    );
    // The 8 rows left claimed: their leases run out and go back to pending;
    // then everything still open expires.
    assert_eq!(shared.reclaim(100_000).unwrap(), 8);
    assert!(shared.expire(10_000_000, 5_000_000).unwrap() > 0);
    let check = |conn: &rusqlite::Connection| -> String {
        conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap()
    };
    let peer = raw(&path);
    assert_eq!(check(&peer), "ok");
    // The check above can fail: a status outside the list, written past the
    // CHECK, is reported (by a connection that does not skip CHECKs itself).
    peer.pragma_update(None, "ignore_check_constraints", true)
        .unwrap();
    peer.execute("UPDATE outbox SET status = 'sent' WHERE rowid = 1", [])
        .unwrap();
    assert_ne!(check(&raw(&path)), "ok");
}

#[test]
fn with_company_back_to_back_writes_share_one_turn() {
    // Each of the loops' writes used to take a gap of its own; now writes
    // that come while Sluice's turn has room continue it, and one gap
    // follows the turn. Forty sweeps of a few microseconds each fit in one
    // turn; with a gap each they would take at least 40 × GAP.
    let _timed = one_at_a_time();
    let (_dir, path) = temp_path();
    seed_due(&path, 10);
    let shared = SharedOutbox::open(&path).unwrap();
    // Another connection's commit makes company (data_version).
    raw(&path)
        .execute("UPDATE outbox SET priority = 'now' WHERE rowid = 1", [])
        .unwrap();
    shared.reclaim(0).unwrap();
    assert!(
        shared.peer_active(),
        "the other connection's commit is company"
    );
    let started = Instant::now();
    for _ in 0..40 {
        shared.reclaim(0).unwrap();
    }
    let took = started.elapsed();
    let gapped = sluice_store::share::GAP * 40;
    assert!(
        took < gapped / 2,
        "40 small writes took {took:?}, as if each had a gap ({gapped:?})"
    );
}

#[test]
fn beside_a_producer_the_wal_is_started_over_before_it_is_long() {
    // A producer whose commit leaves 1000 frames in the WAL checkpoints
    // inside that commit. With company Sluice copies the WAL back at the end
    // of a gap once it holds WAL_FRAMES_COPY frames, so that its next
    // transaction starts the WAL over; a shorter WAL is left to the
    // checkpoint thread.
    let _timed = one_at_a_time();
    let (_dir, path) = temp_path();
    seed_due(&path, 30_000);
    let shared = std::sync::Arc::new(SharedOutbox::open(&path).unwrap());
    let _checkpointer = shared.start_checkpointer().unwrap();
    let drain = Drain::start(shared.clone(), Again::AtOnce);
    let mut producer = raw(&path);
    producer.busy_timeout(Duration::from_secs(5)).unwrap();
    // The WAL's length after each of the producer's commits. (The hook also
    // turns the producer's own automatic checkpoints off: only Sluice's
    // copies keep the WAL short here.)
    let frames = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let frames = frames.clone();
        producer
            .wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, n| {
                frames.lock().unwrap().push(n);
                Ok(())
            }))
            .unwrap();
    }
    for i in 0..1000 {
        produce(&producer, i);
        std::thread::sleep(Duration::from_millis(2));
    }
    let claimed = drain.stop();
    let frames = frames.lock().unwrap();
    let longest = frames.iter().copied().max().unwrap();
    // ~560,000 rows claimed and settled here; without the gaps' copies the
    // WAL reached 1,500-1,800 frames, with them under 600.
    assert!(
        claimed > 10_000,
        "the drain ran beside the producer: {claimed}"
    );
    assert!(
        longest < 1000,
        "a producer's commit left {longest} frames in the WAL: it would have checkpointed"
    );
}

#[test]
fn looking_for_rows_to_expire_leaves_the_write_lock_free() {
    // Old pending rows are found by reading every pending row (`enqueued_at`
    // is in no index): about 0.1 s under half a million. As one UPDATE, that
    // read held the write lock, and a producer beside a backlog waited 53–180
    // ms in its busy handler. Now it is a read, and only the rows found are
    // written, in turns.
    let _timed = one_at_a_time();
    let (_dir, path) = temp_path();
    seed_due(&path, 200_000);
    let shared = std::sync::Arc::new(SharedOutbox::open(&path).unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sweeper = {
        let (shared, stop) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut sweeps = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Every row was enqueued at 1000 ms or later: none is old.
                assert_eq!(shared.expire(0, 0).unwrap(), 0);
                sweeps += 1;
            }
            sweeps
        })
    };
    let waits = produce_every_2_ms(&path, 300);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sweeps = sweeper.join().unwrap();
    assert!(sweeps >= 3, "the sweeps ran meanwhile ({sweeps})");
    let worst = waits.iter().max().unwrap();
    assert!(
        *worst < Duration::from_millis(25),
        "a producer commit waited {worst:?} behind {sweeps} expiry sweeps"
    );
    // The rows found are expired all the same, in turns.
    let all = shared.expire(0, i64::MAX).unwrap();
    assert_eq!(all as usize, 200_000 + 300, "every pending row is old now");
}
