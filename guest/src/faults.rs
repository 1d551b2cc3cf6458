//! Deliberate faults, compiled only with the `faults` feature: the test
//! policy that proves the host survives a misbehaving policy and that the
//! simulator and replay catch a wrong one. Never part of the default policy.
//!
//! `configure()` takes one extra setting, `fault`, naming the fault.

use sluice_policy as policy;
use sluice_policy::{Answer, Call, Reply, World};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Behaves exactly as the default policy.
    None,
    /// Panics at the start of every tick (a trap).
    Trap,
    /// Loops forever in every tick.
    Loop,
    /// Allocates until memory runs out.
    Oom,
    /// Claims rows, then traps before sending: its rows stay inflight.
    TrapAfterClaim,
    /// Sends session rows over the daemon link.
    SessionOverDaemon,
    /// Never dead-letters: every dead verdict becomes a retry.
    NeverDead,
    /// Leaves the first row of every settle out.
    ForgetSettle,
    /// Answers the first dispatch of every batch `accepted` itself, without
    /// sending it: the row would be marked done, and its message lost.
    DoneWithoutSend,
    /// Sends every routed row to `*`: a direct message broadcast to the mesh.
    BroadcastDirect,
    /// Sends each routed row with another row's ciphertext (or a changed
    /// one, alone in its batch).
    TamperCiphertext,
    /// Sends the first row of every batch under a rowid it never claimed,
    /// and settles that rowid too.
    ForeignRowid,
    /// Sends the first row of every batch twice.
    DoubleSend,
    /// Behaves as the default policy, and at every tick prints to stdout and
    /// stderr and reads the time through std (WASI's clock): all of it must
    /// work and replay.
    Print,
    /// Sleeps at the start of every tick: waiting on a clock traps.
    Sleep,
}

/// The rowid `ForeignRowid` uses for a row it claimed: never one it claimed.
const FOREIGN_ROWID_OFFSET: i64 = 1 << 40;

impl Fault {
    pub fn parse(value: &str) -> Result<Fault, String> {
        Ok(match value {
            "none" => Fault::None,
            "trap" => Fault::Trap,
            "loop" => Fault::Loop,
            "oom" => Fault::Oom,
            "trap_after_claim" => Fault::TrapAfterClaim,
            "session_over_daemon" => Fault::SessionOverDaemon,
            "never_dead" => Fault::NeverDead,
            "forget_settle" => Fault::ForgetSettle,
            "done_without_send" => Fault::DoneWithoutSend,
            "broadcast_direct" => Fault::BroadcastDirect,
            "tamper_ciphertext" => Fault::TamperCiphertext,
            "foreign_rowid" => Fault::ForeignRowid,
            "double_send" => Fault::DoubleSend,
            "print" => Fault::Print,
            "sleep" => Fault::Sleep,
            other => return Err(format!("unknown fault {other:?}")),
        })
    }

    /// Faults that strike before the tick does anything.
    pub fn strike_early(self) {
        match self {
            Fault::Print => {
                let since_epoch = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                println!("tick; std's clock reads {} ms", since_epoch.as_millis());
                eprintln!("a line on stderr");
            }
            Fault::Sleep => std::thread::sleep(std::time::Duration::from_millis(5)),
            Fault::Trap => panic!("fault: trap"),
            Fault::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Fault::Oom => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            _ => {}
        }
    }
}

/// A world that misbehaves as its fault says.
pub struct Faulty<W> {
    pub inner: W,
    pub fault: Fault,
}

impl<W: World> Answer for Faulty<W> {
    fn answer(&mut self, call: Call) -> Reply {
        match call {
            Call::Settle { outcomes } => Reply::Count(self.settle(outcomes)),
            Call::SendBatch {
                dispatches,
                ack_timeout_ms,
            } => Reply::Sent(self.send_batch(dispatches, ack_timeout_ms)),
            other => other.on(&mut self.inner),
        }
    }
}

impl<W: World> Faulty<W> {
    fn settle(&mut self, mut outcomes: Vec<policy::Outcome>) -> Result<u32, String> {
        match self.fault {
            Fault::ForgetSettle if !outcomes.is_empty() => {
                outcomes.remove(0);
            }
            Fault::ForeignRowid if !outcomes.is_empty() => {
                let mut foreign = outcomes[0].clone();
                foreign.rowid += FOREIGN_ROWID_OFFSET;
                outcomes.push(foreign);
            }
            Fault::NeverDead => {
                for o in &mut outcomes {
                    if let policy::Verdict::Dead { reason } = &o.verdict {
                        let last_error = reason.clone();
                        o.verdict = policy::Verdict::Retry {
                            next_attempt_at: 0,
                            last_error,
                        };
                    }
                }
            }
            _ => {}
        }
        self.inner.settle(outcomes)
    }
    fn send_batch(
        &mut self,
        mut dispatches: Vec<policy::Dispatch>,
        ack_timeout_ms: u32,
    ) -> Vec<policy::SendResult> {
        match self.fault {
            Fault::TrapAfterClaim => panic!("fault: trap after claim"),
            Fault::SessionOverDaemon => {
                let mesh = self
                    .inner
                    .mesh_links()
                    .into_iter()
                    .next()
                    .map(|l| l.slug)
                    .unwrap_or_default();
                for d in &mut dispatches {
                    if matches!(d.route, policy::Route::Session(_)) {
                        d.route = policy::Route::Daemon(mesh.clone());
                    }
                }
            }
            Fault::BroadcastDirect => {
                for d in &mut dispatches {
                    d.target_spec = "*".into();
                }
            }
            Fault::TamperCiphertext => {
                if dispatches.len() > 1 {
                    let first = dispatches[0].ciphertext.clone();
                    let n = dispatches.len();
                    for i in 0..n - 1 {
                        dispatches[i].ciphertext = dispatches[i + 1].ciphertext.clone();
                    }
                    dispatches[n - 1].ciphertext = first;
                }
                // Rows with the same ciphertext, or alone in the batch.
                for d in &mut dispatches {
                    d.ciphertext.push_str("AAAA");
                }
            }
            Fault::ForeignRowid if !dispatches.is_empty() => {
                dispatches[0].rowid += FOREIGN_ROWID_OFFSET;
            }
            Fault::DoubleSend if !dispatches.is_empty() => {
                let again = dispatches[0].clone();
                dispatches.insert(1, again);
                let mut results = self.inner.send_batch(dispatches, ack_timeout_ms);
                // The policy expects one result per dispatch it asked for.
                results.remove(1);
                return results;
            }
            Fault::DoneWithoutSend if !dispatches.is_empty() => {
                let skipped = dispatches.remove(0);
                let mut results = self.inner.send_batch(dispatches, ack_timeout_ms);
                let made_up = format!("made-up-{}", skipped.rowid);
                results.insert(0, policy::SendResult::Accepted(made_up));
                return results;
            }
            _ => {}
        }
        self.inner.send_batch(dispatches, ack_timeout_ms)
    }
}
