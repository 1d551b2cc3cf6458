//! [`SharedOutbox`]: how one Sluice process writes an outbox file that other
//! programs write too.
//!
//! Every write of the drain (claim, settle, reclaim, expire) goes through one
//! connection here, one transaction at a time, and gives way to the other
//! programs on the file:
//!
//! - **Company is noticed.** Sluice has company while another process holds
//!   a lock on the file (every open SQLite connection holds one; Linux's
//!   `/proc/locks` lists them, looked at every [`ALONE_LOOK_EVERY`] while
//!   alone), or while another connection committed within [`PEER_ACTIVE`]
//!   (this connection's `PRAGMA data_version` changes only then). Alone, a
//!   transaction is cut to about [`ALONE_TURN_BUDGET`], so a newcomer is
//!   noticed within about one.
//! - **Producers first.** With company, Sluice holds the write lock in turns
//!   of about [`TURN_BUDGET`] and leaves it free for [`GAP`] after each. A
//!   turn is one transaction or several back to back (the loops' claims,
//!   settles and sweeps share it); a claim or settle of more rows than fit
//!   becomes several transactions. The rows that fit are guessed from their
//!   measured cost, and a transaction also ends at the turn's deadline
//!   (claims lease [`LEASE_CHUNK`](crate::claim::LEASE_CHUNK) rows a
//!   statement, settles look at the clock every 16 rows): a moment when rows
//!   cost more than measured, on a busy CPU, cannot stretch a turn. A
//!   producer that finds the lock taken sleeps in SQLite's busy handler and
//!   tries again 1 ms, then 3 ms after its first try: with turns of at most
//!   3 ms and gaps of 2.3 ms, one of those two tries lands in a gap. A turn
//!   that ran past 3 ms anyway (its thread waited for a CPU) is followed by
//!   a gap that reaches the next try, 8 ms after the first
//!   ([`GAP_AFTER_LONG_TURN`]). A gap ends [`AFTER_PEER`] after another
//!   connection has committed in it: the producer that waited got in. Alone,
//!   no gap. (The thread that takes turns sleeps with a timer slack of 1 µs,
//!   and with `scheduling = "batch"` runs its turns under the normal policy:
//!   `cpu`.)
//! - **A turn ends before a producer's retry.** A waiting producer retries
//!   whole milliseconds after its first try, and one that writes on a clock
//!   of whole milliseconds (500 commits a second) tries at one point of the
//!   millisecond: its commits in the gaps come there. Once the gaps' first
//!   commits cluster, a turn after a gap that a producer committed in ends
//!   just before that point (`rhythm`), after 1.1 to 2.1 ms, and the lock
//!   passes to the producer at once instead of lying free until its next
//!   retry. After a gap nobody committed in, and for producers at random
//!   moments (they never cluster), turns stay as above.
//! - **Nobody waits long.** A producer that misses both tries sleeps 5, 10,
//!   15, 20 ms before the next ones, and one that came while Sluice was alone
//!   may be well into that. The lock is left free for [`STAND_ASIDE`], longer
//!   than those steps, when company comes, and whenever a producer that
//!   committed every few milliseconds falls silent (a producer asleep in its
//!   busy handler looks exactly like that; up to [`ASIDES_PER_SILENCE`] times
//!   in one silence).
//! - **A WAL copied back in the gaps.** A producer whose commit finds 1000
//!   frames in the WAL checkpoints inside that commit. With company, once
//!   the WAL holds [`WAL_FRAMES_COPY`] frames, Sluice copies it back itself
//!   at the end of the gap, just before its next transaction: a writer that
//!   begins on a WAL copied whole starts it over from its first frame, so
//!   the WAL stays short and a producer's commit seldom has anything to copy
//!   (a gap cut short still waits for a whole copy). A shorter WAL is left to
//!   the checkpoint thread, nudged by Sluice's commits (`checkpoint`), which
//!   also does it all while Sluice is alone.
//! - **Little inside the lock.** A claim's lease returns only rowids; the
//!   rows are read after it commits, when the lock is free. The write
//!   connection skips the table's `CHECK` (`Outbox::skip_check_constraints`).
//! - **A corrupt file stops every write.** The first `SQLITE_CORRUPT` is kept;
//!   from then on every call fails with it and touches nothing.
//!
//! Owns: the turn, the gap, standing aside, noticing company, the
//! corruption latch.
//! Not here: the statements (`claim`, `settle`, `sweep`), the checkpoint
//! thread (`checkpoint`).

use crate::checkpoint::Checkpointer;
use crate::error::StoreError;
use crate::outbox::Outbox;
use crate::rhythm::Rhythm;
use sluice_contract::{ClaimFilter, Outcome, Row, TimestampMs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How long after another connection's last commit Sluice keeps giving way.
pub const PEER_ACTIVE: Duration = Duration::from_secs(1);
/// The write lock is left free at least this long after each of Sluice's
/// commits while it has company (unless another connection commits in it). A
/// producer that just missed its retry 1 ms after its first try comes back
/// 2 ms later, plus what its two sleeps overran: 2 ms left no room for that.
pub const GAP: Duration = Duration::from_micros(2300);
/// A random extra gap of up to this much, drawn for each gap. A producer's
/// later busy-handler retries come 25, 50 and 100 ms apart: with a cycle of
/// turns and gaps that never varied, a producer that missed one gap would
/// find every later retry at the same point of the cycle and miss them all.
pub const GAP_JITTER: Duration = Duration::from_millis(1);
/// Once another connection has committed in a gap, the gap ends this much
/// later: the producer that was waiting got in. (The copy of the WAL still
/// runs; it takes no write lock.) Room for a producer's next statement, not
/// for its next transaction: 0.2 ms, looked at every 0.2 ms, let Sluice's
/// next turn begin 0.4–0.5 ms after the producer's commit, in a cycle of
/// about 4.6 ms.
pub const AFTER_PEER: Duration = Duration::from_micros(100);
/// How often a gap looks for another connection's commit (`PRAGMA
/// data_version`, a few microseconds).
pub const GAP_LOOK_EVERY: Duration = Duration::from_micros(100);
/// A turn that held the write lock longer than this (a transaction that ran
/// past its deadline: its last chunk or its commit was slow, or the thread
/// was preempted holding the lock) may have covered a producer's tries 0, 1
/// and 3 ms after its first; the gap after it is then [`GAP_AFTER_LONG_TURN`].
pub const LONG_TURN: Duration = Duration::from_millis(3);
/// The gap after a [`LONG_TURN`]: it reaches the retry 8 ms after the first
/// try of every producer whose retry at 3 ms the turn covered (5 ms after the
/// turn ended at the latest), with the same 0.3 ms for overrun sleeps as
/// [`GAP`]. Like every gap, it ends [`AFTER_PEER`] after a producer's
/// commit. Without it the next gap often came too soon: a gap and a turn
/// together last about 5 ms, the distance between those two retries.
pub const GAP_AFTER_LONG_TURN: Duration = Duration::from_micros(5300);
/// About how long one of Sluice's transactions may hold the write lock while
/// it has company; under 3 ms with room for a slow turn (see above).
pub const TURN_BUDGET: Duration = Duration::from_micros(2500);
/// The most one transaction's overrun of its deadline counts for in the
/// average an aimed turn allows for.
const OVERRUN_MAX: Duration = Duration::from_micros(300);
/// Fewest rows a cut transaction moves, so that a slow moment cannot make
/// Sluice crawl a row at a time.
const TURN_ROWS_MIN: usize = 16;

/// With company, a gap copies the WAL back (and Sluice's next transaction
/// starts it over) only once Sluice's last commit left this many frames in
/// it. A copy after a producer's commit took about 1 ms of the gap (two
/// syncs and the turn's pages) and every gap paid it; a turn writes 150–300
/// frames, so now about every other gap does, and the WAL a producer's
/// commit finds stays under the 1000 frames at which that commit would
/// checkpoint. Shorter, the checkpoint thread's copies suffice.
pub const WAL_FRAMES_COPY: u64 = 500;

/// Alone, a transaction holds the write lock about this long at most, so that
/// a newcomer is noticed within about one of them.
pub const ALONE_TURN_BUDGET: Duration = Duration::from_millis(8);
/// Alone, how often `/proc/locks` is read for a newcomer on the file: at
/// almost every turn. A newcomer's busy handler retries 1, 3, 8, 18 and 33 ms
/// after its first try; noticed a quarter of a second later, its retries
/// would be 100 ms apart.
pub const ALONE_LOOK_EVERY: Duration = Duration::from_millis(2);
/// With company, how often `/proc/locks` is read to learn it has gone.
pub const PEERS_LOOK_EVERY: Duration = Duration::from_millis(250);

/// How long the lock is left free when company comes, and for a producer
/// fallen silent: longer than the busy handler's steps in the first 100 ms
/// of a wait (5, 10, 15, 20, 25 ms), so one of its retries lands in it.
pub const STAND_ASIDE: Duration = Duration::from_millis(26);
/// A producer is taken to be waiting when it has not committed for this many
/// of its usual intervals between commits, and at least [`SILENCE_MIN`].
pub const SILENCE_FACTOR: u32 = 3;
pub const SILENCE_MIN: Duration = Duration::from_millis(10);
/// How many times Sluice stands aside in one silence, each [`STAND_ASIDE`]
/// and [`SILENCE_MIN`] after the one before: the stand-asides then catch a
/// retry of a producer whose wait began up to about 90 ms into the silence,
/// not only of one that began with it.
pub const ASIDES_PER_SILENCE: u32 = 3;

/// One process's writing side of an outbox file. Shared by every loop of the
/// process (`Arc`); each call is one or more short transactions.
#[derive(Debug)]
pub struct SharedOutbox {
    path: PathBuf,
    turn: Mutex<Turn>,
    corrupt: OnceLock<String>,
    reported: AtomicBool,
}

#[derive(Debug)]
struct Turn {
    outbox: Outbox,
    /// `PRAGMA data_version` after Sluice's last transaction.
    data_version: i64,
    /// When Sluice's last transaction ended.
    last_commit: Instant,
    /// When another connection's commit was last noticed.
    peer_seen: Option<Instant>,
    /// Average time between two noticed commits of other connections, learnt
    /// anew each time company comes.
    peer_every: Duration,
    /// How many times Sluice stood aside in the silence since `peer_seen`,
    /// and when it last did.
    asides: (u32, Option<Instant>),
    /// Whether the last turn had company: its WAL is then copied back at the
    /// end of the gap, and company that comes anew is stood aside for.
    had_company: bool,
    /// With company, when the current turn began: the write lock has been
    /// Sluice's since, one transaction after another, with no gap between.
    turn_started: Option<Instant>,
    /// How long copying the WAL back in a gap takes (a moving average), so
    /// that it can start that long before the gap ends.
    copy_cost: Duration,
    /// Measured cost of one row in a claim, a settle; of a whole sweep
    /// (which is not cut).
    per_row: [Duration; 3],
    /// Whether another process had the file open at the last look, and when
    /// that look was.
    others: Option<(bool, Instant)>,
    /// State of the gap's random extra.
    jitter: u64,
    /// When a waiting producer will try again: a turn ends just before
    /// (`rhythm`).
    rhythm: Rhythm,
    /// How long the current turn may hold the lock: [`TURN_BUDGET`], or
    /// less when it ends just before a producer's retry.
    turn_budget: Duration,
    /// How far a transaction cut at its deadline ends past it (a moving
    /// average).
    overrun: Duration,
}

impl SharedOutbox {
    /// Opens the process's write connection to the outbox at `path`.
    pub fn open(path: &Path) -> Result<SharedOutbox, StoreError> {
        let mut outbox = Outbox::open(path)?;
        outbox.skip_check_constraints()?;
        let data_version = outbox.data_version()?;
        Ok(SharedOutbox {
            path: path.to_path_buf(),
            turn: Mutex::new(Turn {
                outbox,
                data_version,
                last_commit: Instant::now(),
                peer_seen: None,
                peer_every: Duration::ZERO,
                asides: (0, None),
                had_company: false,
                turn_started: None,
                copy_cost: Duration::from_micros(500),
                per_row: [Duration::from_micros(10); 3],
                others: None,
                jitter: u64::from(std::process::id()) | 1,
                rhythm: Rhythm::new(Instant::now()),
                turn_budget: TURN_BUDGET,
                overrun: Duration::from_micros(200),
            }),
            corrupt: OnceLock::new(),
            reported: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The first corruption any call met, if one did: nothing is written
    /// after it.
    pub fn corrupt(&self) -> Option<&str> {
        self.corrupt.get().map(String::as_str)
    }

    /// Starts the checkpoint thread for this file; automatic checkpoints go
    /// off on the write connection while it runs (see `checkpoint`).
    pub fn start_checkpointer(&self) -> Result<Checkpointer, StoreError> {
        self.lock().outbox.start_checkpointer()
    }

    /// The corruption message, the first time it is asked for after the file
    /// was found corrupt; `None` before and after: one loop reports it, once.
    pub fn corrupt_report(&self) -> Option<&str> {
        let message = self.corrupt.get()?;
        (!self.reported.swap(true, Ordering::Relaxed)).then_some(message.as_str())
    }

    /// Whether Sluice has company: another process has the file open, or
    /// another connection committed within [`PEER_ACTIVE`].
    pub fn peer_active(&self) -> bool {
        let mut turn = self.lock();
        turn.company(&self.path)
    }

    /// Claims up to `limit` due rows, as [`Outbox::claim_due_except`]; with
    /// company, in several transactions of about [`TURN_BUDGET`] each.
    pub fn claim_due_except(
        &self,
        now: TimestampMs,
        limit: u32,
        lease_ms: i64,
        skip: &ClaimFilter,
    ) -> Result<Vec<Row>, StoreError> {
        let mut rows = Vec::new();
        let mut left = limit as usize;
        loop {
            // The lease holds the write lock; the leased rows are read after
            // it commits, before the next transaction.
            let (moved, full) = self.turn_then(
                Kind::Claim,
                left,
                |outbox, take, deadline| {
                    let take = u32::try_from(take).unwrap_or(u32::MAX);
                    let (leased, cut) =
                        outbox.lease_due_until(now, take, lease_ms, skip, Some(deadline))?;
                    // A lease cut by the deadline may leave more due.
                    let full = cut || leased.len() == take as usize;
                    Ok((leased.len(), (leased, full)))
                },
                |outbox, (leased, full)| {
                    rows.extend(outbox.read_leased(&leased)?);
                    Ok(full)
                },
            )?;
            left -= moved;
            // A short chunk means nothing more is due.
            if left == 0 || !full {
                rows.sort_unstable_by_key(|row| (row.enqueued_at, row.rowid));
                return Ok(rows);
            }
        }
    }

    /// Settles `outcomes` as [`Outbox::settle_by`]; with company, in several
    /// transactions. Returns how many rows changed.
    pub fn settle_by(
        &self,
        outcomes: &[Outcome],
        decided_by: Option<&str>,
        decided_at: Option<TimestampMs>,
    ) -> Result<u32, StoreError> {
        let mut settled = 0;
        let mut done = 0;
        while done < outcomes.len() {
            let (n, changed) = self.turn(
                Kind::Settle,
                outcomes.len() - done,
                |outbox, take, deadline| {
                    outbox.settle_until(
                        &outcomes[done..done + take],
                        decided_by,
                        decided_at,
                        Some(deadline),
                    )
                },
            )?;
            done += n;
            settled += changed;
        }
        Ok(settled)
    }

    /// Returns run-out leases to pending, as [`Outbox::reclaim`].
    pub fn reclaim(&self, now: TimestampMs) -> Result<u32, StoreError> {
        self.turn(Kind::Sweep, usize::MAX, |outbox, _, _| {
            Ok((0, outbox.reclaim(now)?))
        })
        .map(|(_, n)| n)
    }

    /// Expires old rows, as [`Outbox::expire`]. The search for old pending
    /// rows is a read outside any turn; the rows found are written in turns
    /// cut at their deadline, as a settle's are.
    pub fn expire(&self, now: TimestampMs, cutoff: TimestampMs) -> Result<u32, StoreError> {
        let old = self.read(|outbox| outbox.expired_pending(cutoff))?;
        let mut expired: u32 = 0;
        let mut done = 0;
        while done < old.len() {
            let (n, changed) =
                self.turn(Kind::Settle, old.len() - done, |outbox, take, deadline| {
                    outbox.expire_pending_until(cutoff, &old[done..done + take], Some(deadline))
                })?;
            done += n.max(1);
            expired = expired.saturating_add(changed);
        }
        let (_, inflight) = self.turn(Kind::Sweep, usize::MAX, |outbox, _, _| {
            Ok((0, outbox.expire_inflight(now, cutoff)?))
        })?;
        Ok(expired.saturating_add(inflight))
    }

    /// Counts a policy's breaches of the host's rules, as
    /// [`Outbox::record_violations`].
    pub fn record_violations(
        &self,
        sha256: &str,
        breaches: &[(String, u64, String, String)],
        at: TimestampMs,
    ) -> Result<(), StoreError> {
        self.turn(Kind::Sweep, usize::MAX, |outbox, _, _| {
            Ok((0, outbox.record_violations(sha256, breaches, at)?))
        })
        .map(|_| ())
    }

    /// A read on the write connection (no turn, no gap: reads never block a
    /// writer in WAL mode).
    pub fn read<R>(
        &self,
        body: impl FnOnce(&mut Outbox) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.check_corrupt()?;
        let mut turn = self.lock();
        let result = body(&mut turn.outbox);
        self.latch(result)
    }

    /// One transaction of at most `wanted` rows: waits for its turn, then runs
    /// `body(outbox, rows_this_turn, deadline)`, which returns (rows moved,
    /// value). Claims and settles end their transaction at the deadline even
    /// short of those rows.
    fn turn<R>(
        &self,
        kind: Kind,
        wanted: usize,
        body: impl FnOnce(&mut Outbox, usize, Instant) -> Result<(usize, R), StoreError>,
    ) -> Result<(usize, R), StoreError> {
        self.turn_then(kind, wanted, body, |_, value| Ok(value))
    }

    /// [`SharedOutbox::turn`], then `after(outbox, value)` once the
    /// transaction has committed, before any other loop's transaction: work
    /// that needs no write lock (reading what a claim leased).
    fn turn_then<R, S>(
        &self,
        kind: Kind,
        wanted: usize,
        body: impl FnOnce(&mut Outbox, usize, Instant) -> Result<(usize, R), StoreError>,
        after: impl FnOnce(&mut Outbox, R) -> Result<S, StoreError>,
    ) -> Result<(usize, S), StoreError> {
        self.check_corrupt()?;
        // The gap's end and the turn run under the normal policy, and the
        // gap's sleeps end on time (`cpu`).
        let _urgent = crate::cpu::Urgent::new();
        crate::cpu::wake_on_time();
        let mut turn = self.lock();
        let version = turn.outbox.data_version();
        let mut before = self.latch(version)?;
        let peer_in_gap = before != turn.data_version;
        if peer_in_gap {
            turn.peer_committed(Instant::now());
        }
        let company = turn.company(&self.path);
        let budget = if company {
            match turn.room_in_turn(kind) {
                // The lock has been Sluice's for less than a turn: this
                // transaction continues it, and the gap comes after.
                Some(room) => room,
                None => {
                    let committed = turn.give_way(peer_in_gap);
                    let committed = self.latch(committed)?;
                    turn.turn_started = None;
                    let now = turn.outbox.data_version();
                    let now = self.latch(now)?;
                    if now != before {
                        turn.peer_committed(Instant::now());
                        before = now;
                    }
                    // A turn ends just before a waiting producer's retry
                    // when its retries keep to one point of the millisecond.
                    // Its last transaction ends past its deadline by about
                    // `overrun` (its last chunk, its commit). Only after a
                    // gap that a producer committed in: aimed turns end on
                    // the millisecond's grid, so turn and gap together last
                    // whole milliseconds, as the busy handler's sleeps do;
                    // a producer that missed one retry would find the later
                    // ones, 5, 10, 15 … ms apart, at the same point of that
                    // cycle (waits of 53, 103 and 330 ms were seen). With
                    // nobody committing, turns end anywhere, as before.
                    let start = Instant::now();
                    let overrun = turn.overrun;
                    let aim = if committed {
                        turn.rhythm.aim(start + overrun)
                    } else {
                        None
                    };
                    turn.turn_budget = match aim {
                        Some(aim) => (aim - start).saturating_sub(overrun),
                        None => TURN_BUDGET,
                    };
                    turn.turn_budget
                }
            }
        } else {
            turn.turn_started = None;
            ALONE_TURN_BUDGET
        };
        turn.had_company = company;
        let fits = budget.as_nanos() / turn.per_row[kind as usize].as_nanos().max(1);
        let take = wanted.min(
            usize::try_from(fits)
                .unwrap_or(usize::MAX)
                .max(TURN_ROWS_MIN),
        );
        let started = Instant::now();
        let result = body(&mut turn.outbox, take, started + budget);
        let result = self.latch(result)?;
        let ended = Instant::now();
        if let Some(past) = ended.checked_duration_since(started + budget) {
            // A thread preempted holding the lock overruns by a time slice:
            // not what the next turn's end should allow for.
            turn.overrun = (turn.overrun * 3 + past.min(OVERRUN_MAX)) / 4;
        }
        if company {
            turn.turn_started.get_or_insert(started);
        }
        // A moving average: one slow turn does not halve the next. A sweep
        // is not cut: its whole transaction is what is measured.
        let cost = match kind {
            Kind::Sweep => Some(ended - started),
            _ if result.0 >= TURN_ROWS_MIN => {
                Some((ended - started) / u32::try_from(result.0).unwrap_or(u32::MAX))
            }
            _ => None,
        };
        if let Some(cost) = cost {
            let average = &mut turn.per_row[kind as usize];
            *average = (*average * 3 + cost) / 4;
        }
        turn.last_commit = ended;
        // A peer that committed while this turn waited for the lock shows
        // here; Sluice's own commit leaves data_version as it was.
        let version_after = turn.outbox.data_version();
        let version_after = self.latch(version_after)?;
        if version_after != before {
            turn.peer_committed(ended);
        }
        turn.data_version = version_after;
        let value = after(&mut turn.outbox, result.1);
        Ok((result.0, self.latch(value)?))
    }

    fn check_corrupt(&self) -> Result<(), StoreError> {
        match self.corrupt.get() {
            Some(_) => Err(StoreError::Corrupt {
                action: "writing (refused: the file was found corrupt earlier)",
                path: self.path.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Keeps the first corruption seen, so every later call refuses.
    fn latch<R>(&self, result: Result<R, StoreError>) -> Result<R, StoreError> {
        if let Err(e) = &result
            && e.is_corrupt()
        {
            let _ = self.corrupt.set(e.to_string());
        }
        result
    }

    fn lock(&self) -> MutexGuard<'_, Turn> {
        // A poisoned lock only means another loop panicked mid-call; SQLite's
        // own transaction kept the file consistent.
        self.turn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a turn does; claims and settles cost differently per row.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Claim = 0,
    Settle = 1,
    /// Reclaim and expire: one statement, not cut (rows are counted, not
    /// taken from a list).
    Sweep = 2,
}

impl Turn {
    fn peer_committed(&mut self, at: Instant) {
        // The first commit after Sluice stood aside ends a producer's wait in
        // its busy handler, not one of its usual intervals, and is not learnt
        // from: one wait of 34 ms would raise the pace from about 5 ms to 10
        // and the silence threshold to 30 ms, and the next stand-aside would
        // come later than the producer's retries it is there for.
        let ends_a_wait = self.asides.0 > 0;
        self.peer_every = match self.peer_seen {
            Some(seen) if at.saturating_duration_since(seen) < PEER_ACTIVE => {
                if ends_a_wait {
                    self.peer_every
                } else {
                    (self.peer_every * 3 + (at - seen)) / 4
                }
            }
            // Company anew, or back after a quiet second: its pace is learnt
            // from here, starting from none, so that until then a silence of
            // SILENCE_MIN is enough to stand aside. (Starting from a second,
            // the average took some 20 noticed commits to come down, and the
            // rule could not fire for a producer that missed the gaps in
            // about the first 100 ms of company.)
            _ => Duration::ZERO,
        };
        self.peer_seen = Some(at);
        self.asides = (0, None);
    }

    /// How much of the current turn is left for a transaction of `kind`, if
    /// the turn has room for at least the smallest one: the loops' claims,
    /// settles and sweeps then share one turn and one gap after it, instead
    /// of each taking a gap of its own (a gap after every 1.4 ms claim or
    /// settle, and after every sweep, kept the lock Sluice's 28% of the time
    /// beside a producer; turns of [`TURN_BUDGET`] and gaps as before allow
    /// about half).
    fn room_in_turn(&self, kind: Kind) -> Option<Duration> {
        let used = self.turn_started?.elapsed();
        let least = match kind {
            Kind::Sweep => self.per_row[kind as usize],
            _ => self.per_row[kind as usize] * TURN_ROWS_MIN as u32,
        };
        self.turn_budget
            .checked_sub(used)
            .filter(|room| *room >= least)
    }

    /// Whether a producer may be asleep in its busy handler past the gaps'
    /// reach: company has just come (it may have been trying since before it
    /// was noticed), or a producer that committed every few milliseconds has
    /// gone quiet for several of its intervals. Up to [`ASIDES_PER_SILENCE`]
    /// times per silence, [`STAND_ASIDE`] and [`SILENCE_MIN`] apart: a
    /// producer may be idle for the first of them and start its wait after
    /// it (a busy CPU can hold its process back that long).
    fn someone_waits(&mut self) -> bool {
        if !self.had_company {
            return true;
        }
        let Some(seen) = self.peer_seen else {
            return false;
        };
        let silence = seen.elapsed();
        let (count, last) = self.asides;
        let waits = count < ASIDES_PER_SILENCE
            && last.is_none_or(|at| at.elapsed() >= STAND_ASIDE + SILENCE_MIN)
            && silence >= (self.peer_every * SILENCE_FACTOR).max(SILENCE_MIN)
            && silence < PEER_ACTIVE;
        if waits {
            self.asides = (count + 1, Some(Instant::now()));
        }
        waits
    }

    /// Leaves the write lock free until [`GAP`] and up to [`GAP_JITTER`]
    /// more after Sluice's last commit ([`STAND_ASIDE`] when someone may be
    /// waiting), copying the WAL back at the end of it once the WAL holds
    /// [`WAL_FRAMES_COPY`] frames. A gap is there for a producer asleep in
    /// its busy handler: once another connection has committed in it
    /// (`peer_in_gap`: before it began), the gap ends [`AFTER_PEER`] later
    /// (with a long WAL, once the copy is whole). Returns whether another
    /// connection committed in it.
    fn give_way(&mut self, peer_in_gap: bool) -> Result<bool, StoreError> {
        // xorshift: cheap, and any spread will do.
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let extra = GAP_JITTER.mul_f64((self.jitter % 1024) as f64 / 1024.0);
        let long_turn = self
            .turn_started
            .is_some_and(|started| self.last_commit.saturating_duration_since(started) > LONG_TURN);
        let gap = if self.someone_waits() {
            STAND_ASIDE
        } else if long_turn {
            GAP_AFTER_LONG_TURN + extra
        } else {
            GAP + extra
        };
        let whole_gap = self.last_commit + gap;
        let mut seen = peer_in_gap.then(Instant::now);
        let mut copied = Ok(true);
        let wal_is_long = self
            .outbox
            .wal_frames()
            .is_none_or(|frames| frames >= WAL_FRAMES_COPY);
        if self.had_company && wal_is_long {
            if seen.is_none() {
                let copy_at = whole_gap.checked_sub(self.copy_cost).unwrap_or(whole_gap);
                seen = self.watch_until(copy_at, true)?;
            }
            // Copying holds no write lock: producers commit through it.
            let started = Instant::now();
            copied = self.outbox.copy_back();
            let took = started.elapsed().min(GAP);
            self.copy_cost = (self.copy_cost * 3 + took) / 4;
            // Cut short, a gap still ends with the WAL copied back whole (or
            // at its full length): Sluice's next transaction then starts the
            // WAL over, and the producer's commits find it short.
            while seen.is_some() && matches!(copied, Ok(false)) && Instant::now() < whole_gap {
                std::thread::sleep(GAP_LOOK_EVERY);
                copied = self.outbox.copy_back();
            }
        }
        if seen.is_none() {
            // After a copy, a commit made during it is seen late.
            let precise = !(self.had_company && wal_is_long);
            seen = self.watch_until(whole_gap, precise)?;
        }
        self.rhythm.gap_ended();
        sleep_until(seen.map_or(whole_gap, |at| whole_gap.min(at + AFTER_PEER)));
        // Only corruption matters here: a copy that failed otherwise is
        // finished by the next gap or by the checkpoint thread.
        match copied {
            Err(e) if e.is_corrupt() => Err(e),
            _ => Ok(seen.is_some()),
        }
    }

    /// Sleeps until `until`, looking every [`GAP_LOOK_EVERY`] whether another
    /// connection has committed since Sluice's last transaction; when one has,
    /// returns when that was first seen. `precise`: nothing has committed
    /// since Sluice last looked, just before the call; a commit seen within
    /// two looks' interval of the look before is then a sample of when
    /// producers commit (`rhythm`).
    fn watch_until(
        &mut self,
        until: Instant,
        precise: bool,
    ) -> Result<Option<Instant>, StoreError> {
        let mut looked = precise.then(Instant::now);
        loop {
            let now = Instant::now();
            if now >= until {
                return Ok(None);
            }
            std::thread::sleep((until - now).min(GAP_LOOK_EVERY));
            let changed = self.outbox.data_version()? != self.data_version;
            let at = Instant::now();
            if changed {
                if looked.is_some_and(|before| at - before <= GAP_LOOK_EVERY * 2) {
                    self.rhythm.first_commit_seen(at);
                }
                return Ok(Some(at));
            }
            looked = looked.map(|_| at);
        }
    }

    /// Another process on the file, or a recent commit by another connection.
    fn company(&mut self, path: &Path) -> bool {
        if self
            .peer_seen
            .is_some_and(|seen| seen.elapsed() < PEER_ACTIVE)
        {
            return true;
        }
        match self.others {
            Some((true, at)) if at.elapsed() < PEERS_LOOK_EVERY => true,
            Some((false, at)) if at.elapsed() < ALONE_LOOK_EVERY => false,
            _ => {
                let others = other_processes_on(path);
                self.others = Some((others, Instant::now()));
                others
            }
        }
    }
}

fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

/// Whether a process other than this one holds a POSIX lock on the file at
/// `path`: every open SQLite connection holds a shared lock on its database
/// file. Where `/proc/locks` cannot be read, the answer is yes: Sluice then
/// always gives way, which costs speed and never a producer's commit.
fn other_processes_on(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(meta), Ok(locks)) = (
        std::fs::metadata(path),
        std::fs::read_to_string("/proc/locks"),
    ) else {
        return true;
    };
    // The kernel prints the device as MAJOR:MINOR in hex, then the inode.
    let dev = meta.dev();
    let (major, minor) = (
        ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
        (dev & 0xff) | ((dev >> 12) & !0xff),
    );
    let file = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let own = std::process::id().to_string();
    locks.lines().any(|line| {
        // "1: POSIX  ADVISORY  READ 1234 fe:00:5678 1073741826 1073742335";
        // a waiter's line has "->" before POSIX and is not a holder.
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(4).is_some_and(|pid| *pid != own) && fields.get(5) == Some(&file.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `test` on the turn of a fresh outbox that has company.
    fn with_company(test: impl FnOnce(&mut Turn)) {
        let dir = tempfile::tempdir().unwrap();
        let shared = SharedOutbox::open(&dir.path().join("outbox.db")).unwrap();
        let mut turn = shared.lock();
        turn.had_company = true;
        test(&mut turn);
    }

    #[test]
    fn a_turn_held_past_3_ms_is_followed_by_a_gap_that_reaches_the_8_ms_retry() {
        with_company(|turn| {
            // A producer has just committed: nobody is taken to be waiting,
            // so only the turn's length decides the gap.
            turn.peer_committed(Instant::now());
            turn.last_commit = Instant::now();
            turn.turn_started = Some(turn.last_commit - Duration::from_millis(4));
            let gap = Instant::now();
            // Nobody committed in it: the next turn does not aim.
            assert!(!turn.give_way(false).unwrap());
            // A gap after a turn of usual length would end by GAP + GAP_JITTER.
            assert!(gap.elapsed() >= GAP_AFTER_LONG_TURN, "{:?}", gap.elapsed());
        });
    }

    #[test]
    fn a_producer_that_comes_anew_and_falls_silent_is_stood_aside_for() {
        // Its pace is not known yet: a silence of SILENCE_MIN is enough. (The
        // pace used to start at a second, and the silence rule then could
        // not fire in about the first 100 ms of company.)
        with_company(|turn| {
            turn.peer_committed(Instant::now());
            assert!(!turn.someone_waits(), "it has just committed");
            std::thread::sleep(SILENCE_MIN + Duration::from_millis(2));
            assert!(turn.someone_waits(), "silent for {SILENCE_MIN:?}");
            assert!(!turn.someone_waits(), "not again at once");
        });
    }

    #[test]
    fn the_commit_that_ends_a_wait_does_not_slow_the_learnt_pace() {
        with_company(|turn| {
            let start = Instant::now() - Duration::from_millis(500);
            for i in 0..20 {
                turn.peer_committed(start + Duration::from_millis(5) * i);
            }
            let pace = turn.peer_every;
            assert!(pace <= Duration::from_millis(5), "{pace:?}");
            // Silent for 40 ms: Sluice stands aside, and the commit 40 ms after
            // the last one is the producer's wait ending.
            turn.peer_seen = Some(Instant::now() - Duration::from_millis(40));
            assert!(turn.someone_waits());
            turn.peer_committed(Instant::now());
            assert_eq!(turn.peer_every, pace);
            // The same interval without a stand-aside is learnt from.
            turn.peer_seen = Some(Instant::now() - Duration::from_millis(40));
            turn.peer_committed(Instant::now());
            assert!(turn.peer_every > pace * 2, "{:?}", turn.peer_every);
        });
    }

    #[test]
    fn a_long_silence_is_stood_aside_for_a_few_times_spaced_apart() {
        with_company(|turn| {
            turn.peer_committed(Instant::now());
            turn.peer_seen = Some(Instant::now() - Duration::from_millis(300));
            let apart = STAND_ASIDE + SILENCE_MIN;
            let mut asides = 0;
            for _ in 0..10 {
                if turn.someone_waits() {
                    asides += 1;
                    assert!(!turn.someone_waits(), "not again at once");
                    // As if the stand-aside and the silence after it had passed.
                    turn.asides.1 = turn.asides.1.map(|at| at - apart);
                }
            }
            assert_eq!(asides, ASIDES_PER_SILENCE);
            turn.peer_committed(Instant::now());
            turn.peer_seen = Some(Instant::now() - Duration::from_millis(300));
            assert!(turn.someone_waits(), "a new silence");
        });
    }

    #[test]
    fn company_back_after_a_quiet_second_is_learnt_anew() {
        with_company(|turn| {
            let start = Instant::now();
            // A producer that committed every 200 ms...
            for i in 0..5 {
                turn.peer_committed(start + Duration::from_millis(200) * i);
            }
            assert!(turn.peer_every > Duration::from_millis(100));
            // ...then nothing for over a second, then again.
            turn.peer_committed(start + Duration::from_millis(800) + PEER_ACTIVE * 2);
            assert_eq!(turn.peer_every, Duration::ZERO);
        });
    }
}
