//! How Linux schedules the drain's threads.
//!
//! The drain shares its outbox with the programs that write it, and while
//! one of its threads holds the file's write lock, a producer's commit waits.
//! A holder taken off the CPU holds the lock the longer: beside a producer
//! and a loopback broker on two cores, 4% of the drain's transactions ran
//! past 3 ms, nine in ten of them because the thread waited for a CPU
//! (`/proc/thread-self/schedstat`), and a producer that tried during one
//! missed both of its busy handler's early retries. Under `SCHED_BATCH` a
//! waking thread never preempts a running one, so Sluice's own threads (the
//! other loops, the I/O thread, the checkpoint thread) stop cutting into the
//! lock holder's turn, and into the producer's. They still get their fair
//! share of the CPU. Any process may choose it for itself; no privilege is
//! needed. It is a choice (`[drain] scheduling = "batch"`), not the default:
//! in the harness it took the producer's commits over 5 ms from about 0.9%
//! to about 0.5%, and the drain's rate beside it did not clearly keep up
//! (docs/sharing.md).
//!
//! Owns: choosing the policy for the calling thread (and so for every thread
//! it starts afterwards, which inherit it).

use crate::config::Scheduling;

/// Applies `scheduling` to the calling thread; threads it starts afterwards
/// inherit it, so `sluice run` calls this before it starts any.
pub fn apply(scheduling: Scheduling) -> std::io::Result<()> {
    let policy = match scheduling {
        Scheduling::Batch => libc::SCHED_BATCH,
        Scheduling::Normal => libc::SCHED_OTHER,
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads `param` and touches nothing else; pid
    // 0 is the calling thread. Both policies are unprivileged (priority 0,
    // the nice value kept).
    #[allow(unsafe_code)]
    let result = unsafe { libc::sched_setscheduler(0, policy, &raw const param) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The calling thread's scheduling, if it is one of these two.
pub fn current() -> Option<Scheduling> {
    // SAFETY: no arguments but pid 0, the calling thread.
    #[allow(unsafe_code)]
    let policy = unsafe { libc::sched_getscheduler(0) };
    match policy {
        libc::SCHED_BATCH => Some(Scheduling::Batch),
        libc::SCHED_OTHER => Some(Scheduling::Normal),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_started_after_batch_inherit_it_and_others_do_not() {
        let before = current();
        let (own, child) = std::thread::spawn(|| {
            apply(Scheduling::Batch).expect("SCHED_BATCH needs no privilege");
            let child = std::thread::spawn(current).join().unwrap();
            (current(), child)
        })
        .join()
        .unwrap();
        assert_eq!(own, Some(Scheduling::Batch));
        assert_eq!(child, Some(Scheduling::Batch), "a later thread inherits it");
        assert_eq!(current(), before, "only the calling thread changed");
        let back = std::thread::spawn(|| {
            apply(Scheduling::Batch).unwrap();
            apply(Scheduling::Normal).unwrap();
            current()
        })
        .join()
        .unwrap();
        assert_eq!(back, Some(Scheduling::Normal), "and it can go back");
    }
}
