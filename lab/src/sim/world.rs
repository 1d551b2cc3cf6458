//! [`SimWorld`]: everything one loop's policy observes — a real outbox file
//! written by the real store, and simulated the rest: the broker, a virtual
//! clock, seeded randomness and a log sink — behind the same `World` trait
//! the real host implements.
//!
//! As in `sluice run`, every loop of a drainer has a world of its own over
//! the drainer's one write connection (`SharedOutbox`), and every drainer of
//! the simulation shares the outbox file and the broker. What they share
//! ([`SimShared`]: the broker and its links, the virtual clock, the faults)
//! is behind one lock; the ticks themselves take turns (`Sim`), so the order
//! of everything is the seed's.
//!
//! Owns: the virtual clock (moved between ticks by the caller, during a tick
//! only by sends taking their time), the "drainer dies mid-tick" fault (a
//! settle that never lands), and each loop's journal of what its current
//! tick did, which `invariants` reads. The store calls are the host's own
//! (`world::store_calls`), on the virtual clock. Not here: the outbox file
//! (`outbox`), the broker's semantics (`broker`), when ticks happen (`Sim`).

use super::broker::SimBroker;
use super::profile::{FaultCounts, Profile};
use super::rng::SimRng;
use sluice::world::{RANDOM_BYTES_MAX, store_calls};
use sluice_policy::{Answer, Call, ClaimFilter, Dispatch, Outcome, Reply, SendResult, TimestampMs};
use sluice_store::SharedOutbox;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// Distinct log event names counted; more would let a confused policy grow
/// the map without bound. Further names are counted under `OTHER_EVENTS`.
const LOG_EVENTS_MAX: usize = 64;
const OTHER_EVENTS: &str = "(other events)";

/// What every store call answers once the simulated drainer has died.
pub const CRASH_ERROR: &str =
    "simulated crash: the drainer died before its settle reached the outbox";

/// One `settle` call of the tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettleRecord {
    pub outcomes: Vec<Outcome>,
    /// How many the store applied (their claims still held).
    pub applied: u32,
    /// The virtual time of the call.
    pub at_ms: TimestampMs,
}

/// What the current tick did to the world, for the invariant checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickJournal {
    /// (rowid, attempts) of every row claimed, in claim order.
    pub claims: Vec<(i64, u32)>,
    /// Every dispatch with the broker's answer.
    pub sends: Vec<(Dispatch, SendResult)>,
    pub settles: Vec<SettleRecord>,
    /// What `reclaim` and `expire` returned, summed over the tick.
    pub reclaimed: u32,
    pub expired: u32,
    /// The drainer died in this tick: its settle was lost.
    pub crashed: bool,
    /// The rows the tick claimed or settled: the rows it can have changed
    /// besides those its reclaim and expiry changed.
    pub touched: BTreeSet<i64>,
    /// The rows the tick's claim left alone (links down): its next-due
    /// report may ignore them.
    pub skip: ClaimFilter,
}

/// What every loop and drainer of a simulation shares.
pub struct SimShared {
    pub broker: SimBroker,
    profile: Profile,
    clock_ms: TimestampMs,
    /// Crashes and clock jumps.
    faults_rng: SimRng,
    faults: FaultCounts,
    logs: BTreeMap<String, u64>,
    dispatches: u64,
    /// When the profile's opening outage ends, until it has.
    outage_ends_at: Option<TimestampMs>,
}

impl SimShared {
    pub fn new(
        broker: SimBroker,
        profile: Profile,
        clock_ms: TimestampMs,
        rng: &mut SimRng,
    ) -> SimShared {
        SimShared {
            broker,
            clock_ms,
            faults_rng: rng.fork(1),
            faults: FaultCounts::new(),
            logs: BTreeMap::new(),
            dispatches: 0,
            outage_ends_at: (profile.outage_ms > 0)
                .then(|| clock_ms.saturating_add(profile.outage_ms)),
            profile,
        }
    }

    pub fn clock_ms(&self) -> TimestampMs {
        self.clock_ms
    }

    /// Time passes between ticks: up to `until` (never back), plus a jump
    /// when the profile draws one; then links flip, and all open once the
    /// profile's opening outage is over.
    pub fn advance_to(&mut self, until: TimestampMs) {
        self.clock_ms = self.clock_ms.max(until);
        if self.faults_rng.chance(self.profile.clock_jump_ppm) {
            self.clock_ms = self.clock_ms.saturating_add(
                self.faults_rng
                    .between(1, self.profile.clock_jump_max_ms.max(1)),
            );
            *self.faults.entry("clock_jump").or_default() += 1;
        }
        self.broker.links.flip(&mut self.faults);
        if self.outage_ends_at.is_some_and(|end| self.clock_ms >= end) {
            self.outage_ends_at = None;
            self.broker.links.open_all();
            *self.faults.entry("outage_end").or_default() += 1;
        }
    }

    /// When the profile's opening outage ends, while it lasts.
    pub fn outage_ends_at(&self) -> Option<TimestampMs> {
        self.outage_ends_at
    }

    pub fn faults(&self) -> &FaultCounts {
        &self.faults
    }

    /// Log lines per event name.
    pub fn logs(&self) -> &BTreeMap<String, u64> {
        &self.logs
    }

    /// Dispatches the policies handed to `send-batch` so far.
    pub fn dispatches(&self) -> u64 {
        self.dispatches
    }
}

/// The shared part, as each world holds it.
pub type Shared = Arc<Mutex<SimShared>>;

/// One loop's simulated host.
pub struct SimWorld {
    shared: Shared,
    /// The drainer's write connection, shared by its loops.
    store: Arc<SharedOutbox>,
    /// The policy's `random-bytes`.
    random: SimRng,
    journal: TickJournal,
}

impl SimWorld {
    pub fn new(shared: Shared, store: Arc<SharedOutbox>, random: SimRng) -> SimWorld {
        SimWorld {
            shared,
            store,
            random,
            journal: TickJournal::default(),
        }
    }

    /// The shared part: the broker, the clock, the faults.
    pub fn shared(&self) -> MutexGuard<'_, SimShared> {
        lock(&self.shared)
    }

    /// Starts a fresh journal for the next tick and hands back the last one.
    pub fn take_journal(&mut self) -> TickJournal {
        let mut journal = std::mem::take(&mut self.journal);
        let claimed = journal.claims.iter().map(|(rowid, _)| *rowid);
        let settled = journal
            .settles
            .iter()
            .flat_map(|s| s.outcomes.iter().map(|o| o.rowid));
        journal.touched = claimed.chain(settled).collect();
        journal
    }

    fn alive(&self) -> Result<(), String> {
        if self.journal.crashed {
            Err(CRASH_ERROR.to_string())
        } else {
            Ok(())
        }
    }
}

/// The shared part, even after a loop panicked holding it: the simulation
/// stops at the panic anyway, and its state is what the checks must see.
pub fn lock(shared: &Shared) -> MutexGuard<'_, SimShared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SimWorld {
    /// A store call, on the real outbox (the host's own code, on the
    /// virtual clock), noted in the tick's journal.
    fn store(&mut self, call: Call) -> Reply {
        if let Err(e) = self.alive() {
            return Reply::failing(&call, &e);
        }
        if let Call::Settle { outcomes } = call {
            return Reply::Count(self.settle(outcomes));
        }
        if let Call::ClaimDue { skip, .. } = &call {
            self.journal.skip = skip.clone();
        }
        let reclaim = matches!(call, Call::Reclaim { .. });
        let expire = matches!(call, Call::Expire { .. });
        let clock_ms = self.shared().clock_ms;
        let reply = match store_calls::answer(&self.store, call, None, clock_ms) {
            Ok(reply) => reply,
            Err(other) => Reply::failing(&other, "not a store call"),
        };
        let journal = &mut self.journal;
        match &reply {
            Reply::Rows(Ok(rows)) => journal
                .claims
                .extend(rows.iter().map(|r| (r.rowid, r.attempts))),
            Reply::Count(Ok(count)) if reclaim => {
                journal.reclaimed = journal.reclaimed.saturating_add(*count);
            }
            Reply::Count(Ok(count)) if expire => {
                journal.expired = journal.expired.saturating_add(*count);
            }
            _ => {}
        }
        reply
    }

    fn settle(&mut self, outcomes: Vec<Outcome>) -> Result<u32, String> {
        let at_ms = {
            let mut shared = self.shared();
            let crash_ppm = shared.profile.crash_ppm;
            if !outcomes.is_empty() && shared.faults_rng.chance(crash_ppm) {
                // The process died after sending: nothing of this settle lands.
                *shared.faults.entry("drainer_crash").or_default() += 1;
                drop(shared);
                self.journal.crashed = true;
                return Err(CRASH_ERROR.to_string());
            }
            shared.clock_ms
        };
        let applied = store_calls::settle(&self.store, &outcomes, None, at_ms)?;
        self.journal.settles.push(SettleRecord {
            outcomes,
            applied,
            at_ms,
        });
        Ok(applied)
    }

    fn send_batch(&mut self, dispatches: Vec<Dispatch>, ack_timeout_ms: u32) -> Vec<SendResult> {
        let results = {
            let mut guard = self.shared();
            let shared = &mut *guard;
            shared.dispatches += dispatches.len() as u64;
            let answer = shared
                .broker
                .send_batch(&dispatches, ack_timeout_ms, &mut shared.faults);
            shared.clock_ms = shared.clock_ms.saturating_add(answer.elapsed_ms);
            answer.results
        };
        self.journal
            .sends
            .extend(dispatches.into_iter().zip(results.iter().cloned()));
        results
    }

    fn log(&mut self, event: &str) {
        let mut shared = self.shared();
        let logs = &mut shared.logs;
        let key = if logs.len() < LOG_EVENTS_MAX || logs.contains_key(event) {
            event
        } else {
            OTHER_EVENTS
        };
        *logs.entry(key.to_string()).or_default() += 1;
    }
}

impl Answer for SimWorld {
    fn answer(&mut self, call: Call) -> Reply {
        if call.interface() == "store" {
            return self.store(call);
        }
        match call {
            Call::MeshLinks {} => {
                let shared = self.shared();
                Reply::Links(shared.broker.links.mesh_links(shared.clock_ms))
            }
            // The simulated broker has no rate limit: nothing to slow.
            Call::Throttle { .. } => Reply::Nothing,
            Call::SessionStates { pubkeys } => {
                Reply::Sessions(self.shared().broker.links.session_states(&pubkeys))
            }
            Call::SendBatch {
                dispatches,
                ack_timeout_ms,
            } => Reply::Sent(self.send_batch(dispatches, ack_timeout_ms)),
            Call::Now {} => Reply::Time(self.shared().clock_ms),
            Call::RandomBytes { len } => {
                Reply::Bytes(self.random.bytes(len.min(RANDOM_BYTES_MAX) as usize))
            }
            Call::Log { event, .. } => {
                self.log(&event);
                Reply::Nothing
            }
            // An import the simulator does not model answers as an empty world.
            other => Reply::nothing(&other, "not simulated"),
        }
    }
}
