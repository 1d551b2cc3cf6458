//! The live policy of a running drainer, swappable at tick boundaries.
//!
//! Owns: which policy is live, the last good one, counting ticks that trap
//! in a row, rolling back (or halting) after too many, and telling the audit
//! trail. Not here: validating a candidate (`engine`, before it reaches
//! [`PolicySlot::install`]), noticing one (`watch`, `control`), or running
//! it (`drain`).
//!
//! Every loop of the process holds the same slot. A loop compares the slot's
//! generation with the one its runner was built from at the start of each
//! tick: a tick in progress always finishes on the policy it started with,
//! and the next one runs on the new policy.

use crate::engine::{PolicyEngine, PolicyMeta};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Ticks in a row that may trap (or run out of time or memory) before the
/// policy is rolled back, unless the config says otherwise.
pub const ROLLBACK_AFTER_DEFAULT: u32 = 3;

/// Called whenever a policy goes live: (its meta, why). The audit trail.
pub type Audit = Box<dyn Fn(&PolicyMeta, &str) + Send + Sync>;

/// Why a tick failed, for the count toward rollback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// It trapped, or ran out of time or memory: the cause.
    Trapped(String),
    /// The guard refused calls of it: the first breach.
    BrokeRules(String),
}

/// What a trapped tick led to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterTrap {
    /// Under the limit: the next tick tries the same policy again.
    Retry,
    /// The last good policy is live again.
    RolledBack { to: PolicyMeta, from: PolicyMeta },
    /// No good policy to go back to: the drainer stops ticking.
    Halted(String),
}

struct State {
    live: Arc<PolicyEngine>,
    /// The policy that was live before, if it ever completed a tick.
    last_good: Option<Arc<PolicyEngine>>,
    /// The live policy has completed at least one tick.
    live_proven: bool,
    traps_in_a_row: u32,
    halted: Option<String>,
}

/// Checks a candidate against the recorded traces of `--verify DIR` before
/// it reaches [`PolicySlot::install`]. Replaying traces is the lab's work
/// (`sluice_lab::validate::TraceVerifier`); a drainer is handed a verifier by
/// whoever assembles it ([`crate::daemon::Start::verifier`]), and one that
/// was given none refuses to start with `verify` set.
pub trait Verifier: Send + Sync {
    /// Ok when `engine`, loaded from `path`, replays every trace in `dir`;
    /// Err is the message to log: which traces diverged and where, or why
    /// none could be read.
    fn verify(&self, path: &Path, engine: &PolicyEngine, dir: &Path) -> Result<(), String>;
}

/// The live policy, shared by every loop of the process.
pub struct PolicySlot {
    state: Mutex<State>,
    generation: AtomicU64,
    rollback_after: u32,
    audit: Audit,
}

impl PolicySlot {
    /// `first` goes live; `audit` hears about it (`reason` "start").
    pub fn new(first: PolicyEngine, rollback_after: u32, audit: Audit) -> Arc<PolicySlot> {
        audit(first.meta(), "start");
        Arc::new(PolicySlot {
            state: Mutex::new(State {
                live: Arc::new(first),
                last_good: None,
                live_proven: false,
                traps_in_a_row: 0,
                halted: None,
            }),
            generation: AtomicU64::new(1),
            rollback_after: rollback_after.max(1),
            audit,
        })
    }

    /// Bumped whenever another policy goes live.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The live policy and its generation; None while halted.
    pub fn live(&self) -> Option<(u64, Arc<PolicyEngine>)> {
        let state = self.lock();
        if state.halted.is_some() {
            return None;
        }
        Some((self.generation(), Arc::clone(&state.live)))
    }

    pub fn live_meta(&self) -> PolicyMeta {
        self.lock().live.meta().clone()
    }

    /// Why the drainer stopped ticking, if it did.
    pub fn halted(&self) -> Option<String> {
        self.lock().halted.clone()
    }

    /// Makes a validated policy live from the next tick on. The one it
    /// replaces becomes the last good one if it ever completed a tick.
    pub fn install(&self, engine: PolicyEngine, reason: &str) -> PolicyMeta {
        let meta = engine.meta().clone();
        let mut state = self.lock();
        let previous = std::mem::replace(&mut state.live, Arc::new(engine));
        if state.live_proven {
            state.last_good = Some(previous);
        }
        state.live_proven = false;
        state.traps_in_a_row = 0;
        state.halted = None;
        self.generation.fetch_add(1, Ordering::AcqRel);
        drop(state);
        tracing::info!(target: "sluice", policy = %meta.name, version = %meta.version, sha256 = %meta.sha256, source = %meta.source, "policy_swapped reason={reason}");
        (self.audit)(&meta, reason);
        meta
    }

    /// A tick of `generation` completed: the policy can run. Only a tick
    /// that claimed rows (`worked`) clears the count of failed ticks: a
    /// policy that traps or breaks the rules whenever it has rows, and idles
    /// cleanly in between, is still rolled back.
    pub fn tick_ok(&self, generation: u64, worked: bool) {
        if generation != self.generation() {
            return;
        }
        let mut state = self.lock();
        state.live_proven = true;
        if worked {
            state.traps_in_a_row = 0;
        }
    }

    /// A tick of `generation` trapped (or ran out of time or memory), or
    /// broke the host's rules, as `failure` says.
    pub fn tick_trapped(&self, generation: u64, failure: &Failure) -> AfterTrap {
        if generation != self.generation() {
            // A trap of a policy already replaced counts for nothing.
            return AfterTrap::Retry;
        }
        let mut state = self.lock();
        state.traps_in_a_row += 1;
        if state.traps_in_a_row < self.rollback_after {
            return AfterTrap::Retry;
        }
        let from = state.live.meta().clone();
        // A breach of the host's rules counts like a trap; say which it was.
        let (failed, cause) = match failure {
            Failure::Trapped(cause) => ("trapped", cause),
            Failure::BrokeRules(cause) => ("failed (trapped or broke the host's rules)", cause),
        };
        let why = format!(
            "{} {} {failed} {} ticks in a row (last: {cause})",
            from.name, from.version, state.traps_in_a_row
        );
        match state.last_good.take() {
            Some(good) => {
                let to = good.meta().clone();
                state.live = good;
                state.live_proven = true;
                state.traps_in_a_row = 0;
                self.generation.fetch_add(1, Ordering::AcqRel);
                drop(state);
                tracing::error!(target: "sluice", "policy_rolled_back to={} {} ({}): {why}", to.name, to.version, to.sha256);
                (self.audit)(&to, &format!("rollback: {why}"));
                AfterTrap::RolledBack { to, from }
            }
            None => {
                let message = format!(
                    "{why}; no earlier policy completed a tick to go back to: the drainer stops ticking (no row is touched) until a policy is loaded (`sluice policy load`, or a new version of the --policy file)"
                );
                state.halted = Some(message.clone());
                drop(state);
                tracing::error!(target: "sluice", "policy_halted {message}");
                (self.audit)(&from, &format!("halted: {why}"));
                AfterTrap::Halted(message)
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update keeps the state whole; a panic elsewhere changes nothing.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
