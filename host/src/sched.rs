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
//! Owns: mapping `drain.scheduling` to the policy; the store's `cpu` sets it
//! (on the calling thread, and so on every thread it starts afterwards).

use crate::config::Scheduling;
use sluice_store::cpu::{self, Policy};

/// Applies `scheduling` to the calling thread; threads it starts afterwards
/// inherit it, so `sluice run` calls this before it starts any.
pub fn apply(scheduling: Scheduling) -> std::io::Result<()> {
    cpu::set_policy(match scheduling {
        Scheduling::Batch => Policy::Batch,
        Scheduling::Normal => Policy::Normal,
    })
}

/// The calling thread's scheduling, if it is one of these two.
pub fn current() -> Option<Scheduling> {
    cpu::policy().map(|policy| match policy {
        Policy::Batch => Scheduling::Batch,
        Policy::Normal => Scheduling::Normal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scheduling_is_the_policy_it_names() {
        for scheduling in [Scheduling::Batch, Scheduling::Normal] {
            let seen = std::thread::spawn(move || {
                apply(scheduling).expect("neither needs privilege");
                current()
            })
            .join()
            .unwrap();
            assert_eq!(seen, Some(scheduling));
        }
    }
}
