//! The CPU for the thread that holds the outbox's turn.
//!
//! Two things, both about the lock holder not keeping a producer waiting:
//!
//! - **It wakes on time.** A gap is a string of short sleeps: it looks for a
//!   producer's commit every [`GAP_LOOK_EVERY`](crate::share::GAP_LOOK_EVERY)
//!   and ends soon after one. Linux lets a normal thread's sleep run up to its
//!   timer slack late (50 µs by default), which made each look late and the
//!   gap run on; the thread that takes turns sets its own slack to 1 µs
//!   ([`wake_on_time`]), once.
//! - **It runs under the normal policy.** With `[drain] scheduling =
//!   "batch"`, `sluice run` puts its threads under `SCHED_BATCH`
//!   ([`set_policy`]): a waking batch thread never preempts a running one, so
//!   Sluice's own threads (the other loops, the I/O thread, the checkpoint
//!   thread) stop cutting into the turn of the thread that holds the write
//!   lock, and into the producer's; they still get their fair share of the
//!   CPU. (Beside a producer and a loopback broker on two cores, 4% of the
//!   drain's transactions ran past 3 ms, nine in ten of them because the
//!   thread waited for a CPU, `/proc/thread-self/schedstat`.) It is a choice,
//!   not the default: in the harness it took the producer's commits over 5 ms
//!   from about 0.9% to about 0.5%, and the drain's rate beside it did not
//!   clearly keep up (docs/sharing.md). But the holder must not
//!   wait for a CPU either: its gap ends in a sleep, and a batch thread woken
//!   from it waits until a running thread yields (up to a scheduler tick, 4 ms
//!   here) while the lock stands free. So a batch thread runs its turns, gap
//!   included, under the normal policy ([`Urgent`]), and goes back to batch
//!   after.
//!
//! Owns: the calling thread's timer slack and scheduling policy.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// How Linux schedules a thread: the two policies a process may choose for
/// itself without privilege.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// `SCHED_BATCH`: the drain is background work. Its threads still share
    /// the CPU as usual, but one that wakes never preempts a running thread
    /// of another program, such as the producer that shares the outbox.
    Batch,
    /// `SCHED_OTHER`: the default policy of every process, and Sluice's.
    Normal,
}

/// Whether [`set_policy`] ever chose batch in this process: until then no
/// thread is batch and [`Urgent`] costs nothing, not even a system call.
static BATCH_CHOSEN: AtomicBool = AtomicBool::new(false);

/// Puts the calling thread under `policy`; threads it starts afterwards
/// inherit it, so a process calls this before it starts any.
pub fn set_policy(policy: Policy) -> std::io::Result<()> {
    if policy == Policy::Batch {
        BATCH_CHOSEN.store(true, Ordering::Relaxed);
    }
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads `param` and touches nothing else; pid
    // 0 is the calling thread. Both policies are unprivileged (priority 0,
    // the nice value kept).
    #[allow(unsafe_code)]
    let result = unsafe { libc::sched_setscheduler(0, raw(policy), &raw const param) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The calling thread's policy, if it is one of these two.
pub fn policy() -> Option<Policy> {
    // SAFETY: no arguments but pid 0, the calling thread.
    #[allow(unsafe_code)]
    let policy = unsafe { libc::sched_getscheduler(0) };
    match policy {
        libc::SCHED_OTHER => Some(Policy::Normal),
        libc::SCHED_BATCH => Some(Policy::Batch),
        _ => None,
    }
}

fn raw(policy: Policy) -> libc::c_int {
    match policy {
        Policy::Normal => libc::SCHED_OTHER,
        Policy::Batch => libc::SCHED_BATCH,
    }
}

/// While alive, the calling thread runs under the normal policy if it was
/// under batch; dropped, it goes back. Threads under any other policy are
/// left alone. Both switches are unprivileged.
pub(crate) struct Urgent {
    was_batch: bool,
}

impl Urgent {
    pub(crate) fn new() -> Urgent {
        let was_batch = BATCH_CHOSEN.load(Ordering::Relaxed) && policy() == Some(Policy::Batch);
        if was_batch {
            // A failure leaves the thread batch: it costs speed, never
            // correctness.
            let _ = set_policy(Policy::Normal);
        }
        Urgent { was_batch }
    }
}

impl Drop for Urgent {
    fn drop(&mut self) {
        if self.was_batch {
            let _ = set_policy(Policy::Batch);
        }
    }
}

/// The timer slack of a thread that takes turns, in nanoseconds.
pub const TURN_TIMER_SLACK_NS: u64 = 1_000;

thread_local! {
    static ON_TIME: Cell<bool> = const { Cell::new(false) };
}

/// Sets the calling thread's timer slack to [`TURN_TIMER_SLACK_NS`], the
/// first time it is called on the thread.
pub(crate) fn wake_on_time() {
    if ON_TIME.get() {
        return;
    }
    ON_TIME.set(true);
    // SAFETY: PR_SET_TIMERSLACK takes a value, reads and writes no memory,
    // and changes only the calling thread. A failure leaves the slack as it
    // was, which makes gaps a little longer, never wrong.
    #[allow(unsafe_code)]
    unsafe {
        libc::prctl(
            libc::PR_SET_TIMERSLACK,
            TURN_TIMER_SLACK_NS as libc::c_ulong,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's timer slack in nanoseconds.
    fn timer_slack_ns() -> u64 {
        // SAFETY: PR_GET_TIMERSLACK reads nothing and returns the value.
        #[allow(unsafe_code)]
        let slack = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK) };
        u64::try_from(slack).unwrap_or(0)
    }

    #[test]
    fn a_batch_thread_is_normal_while_urgent_and_batch_after() {
        let seen = std::thread::spawn(|| {
            set_policy(Policy::Batch).expect("SCHED_BATCH needs no privilege");
            let during = {
                let _urgent = Urgent::new();
                policy()
            };
            (during, policy())
        })
        .join()
        .unwrap();
        assert_eq!(seen, (Some(Policy::Normal), Some(Policy::Batch)));
        // A normal thread stays normal after.
        let normal = std::thread::spawn(|| {
            drop(Urgent::new());
            policy()
        })
        .join()
        .unwrap();
        assert_eq!(normal, Some(Policy::Normal));
    }

    #[test]
    fn threads_started_after_batch_inherit_it_and_others_do_not() {
        let before = policy();
        let (own, child) = std::thread::spawn(|| {
            set_policy(Policy::Batch).unwrap();
            let child = std::thread::spawn(policy).join().unwrap();
            (policy(), child)
        })
        .join()
        .unwrap();
        assert_eq!(own, Some(Policy::Batch));
        assert_eq!(child, Some(Policy::Batch), "a later thread inherits it");
        assert_eq!(policy(), before, "only the calling thread changed");
        let back = std::thread::spawn(|| {
            set_policy(Policy::Batch).unwrap();
            set_policy(Policy::Normal).unwrap();
            policy()
        })
        .join()
        .unwrap();
        assert_eq!(back, Some(Policy::Normal), "and it can go back");
    }

    #[test]
    fn a_thread_that_takes_turns_sleeps_with_a_slack_of_a_microsecond() {
        let spawner = timer_slack_ns();
        let (before, after) = std::thread::spawn(|| {
            let before = timer_slack_ns();
            wake_on_time();
            (before, timer_slack_ns())
        })
        .join()
        .unwrap();
        assert_ne!(before, TURN_TIMER_SLACK_NS, "the slack it started with");
        assert_eq!(after, TURN_TIMER_SLACK_NS);
        assert_eq!(timer_slack_ns(), spawner, "only the calling thread changed");
    }
}
