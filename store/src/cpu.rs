//! The CPU for the thread that holds the outbox's turn.
//!
//! With `[drain] scheduling = "batch"`, `sluice run` puts its threads under
//! `SCHED_BATCH` (the host's `sched`):
//! a waking batch thread never preempts a running one, so Sluice's own
//! threads stop cutting into the turn of the thread that holds the write
//! lock, and into the producer's. But the holder itself must not wait for a
//! CPU either: its gap ends in a sleep, and a batch thread woken from it
//! waits until a running thread yields (up to a scheduler tick, 4 ms here)
//! while the lock stands free. So a batch thread runs its turns, gap
//! included, under the normal policy, and goes back to batch after.
//!
//! Owns: switching the calling thread between the two policies.

/// While alive, the calling thread runs under `SCHED_OTHER` if it was under
/// `SCHED_BATCH`; dropped, it goes back. Threads under any other policy are
/// left alone. Both switches are unprivileged.
pub(crate) struct Urgent {
    was_batch: bool,
}

impl Urgent {
    pub(crate) fn new() -> Urgent {
        let was_batch = policy() == libc::SCHED_BATCH;
        if was_batch {
            set_policy(libc::SCHED_OTHER);
        }
        Urgent { was_batch }
    }
}

impl Drop for Urgent {
    fn drop(&mut self) {
        if self.was_batch {
            set_policy(libc::SCHED_BATCH);
        }
    }
}

fn policy() -> libc::c_int {
    // SAFETY: pid 0 is the calling thread; nothing else is read or written.
    #[allow(unsafe_code)]
    unsafe {
        libc::sched_getscheduler(0)
    }
}

fn set_policy(policy: libc::c_int) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: reads `param` only; pid 0 is the calling thread. A failure
    // leaves the policy as it was, which costs speed, never correctness.
    #[allow(unsafe_code)]
    unsafe {
        libc::sched_setscheduler(0, policy, &raw const param);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_thread_is_normal_while_urgent_and_batch_after() {
        let seen = std::thread::spawn(|| {
            set_policy(libc::SCHED_BATCH);
            let during = {
                let _urgent = Urgent::new();
                policy()
            };
            (during, policy())
        })
        .join()
        .unwrap();
        assert_eq!(seen, (libc::SCHED_OTHER, libc::SCHED_BATCH));
        // A normal thread stays normal after.
        let normal = std::thread::spawn(|| {
            drop(Urgent::new());
            policy()
        })
        .join()
        .unwrap();
        assert_eq!(normal, libc::SCHED_OTHER);
    }
}
