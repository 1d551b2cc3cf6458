//! The simulator: a policy against a real outbox file (the real store's code
//! on the virtual clock) and a simulated broker, with virtual time and
//! seeded faults, its invariants checked after every tick. [`Sim::step`]
//! runs one tick and its checks, and waits as the real loop waits
//! (`drain::wait_after`); [`Sim::run`] loops.
//!
//! The map:
//! - [`rng`]: the one seeded generator behind every random choice.
//! - [`profile`]: named fault profiles and their rates.
//! - [`population`]: the meshes, sessions and rows a run starts with.
//! - [`outbox`]: the outbox file, and the checks' views of it.
//! - [`links`] and [`broker`]: the links half: link states, the broker's answers.
//! - [`world`]: [`SimWorld`], the `World` a policy sees; the clock; crashes.
//! - [`invariants`] and [`violation`]: what must hold after every tick.
//! - [`runner`]: the policy (component or native) and the trace.
//! - [`outcome`]: what a step and a run report.
//!
//! Determinism: no wall clock, no thread RNG, no hash-map iteration; the same
//! seed, row count, profile, policy and settings give the same run and a
//! byte-identical trace.

pub mod broker;
pub mod invariants;
pub mod links;
pub mod outbox;
pub mod outcome;
pub mod population;
pub mod profile;
pub mod rng;
pub mod runner;
pub mod violation;
pub mod world;

pub use outcome::{SimOutcome, StepReport, Stop};
pub use profile::{PROFILES, Profile, UnknownProfile};
pub use runner::{SimPolicy, TraceSink};
pub use violation::{LoopId, Violation, ViolationKind};
pub use world::{SimShared, SimWorld};

use invariants::{Checker, TickView};
use outbox::{SimOutbox, Status};
use rng::SimRng;
use runner::{SimRunner, TraceBuffer};
use sluice::drain::{DrainOptions, wait_after, wakes_siblings};
use sluice::engine::{LoadError, TickError};
use sluice::trace::Header;
use sluice_policy::settings::SETTING_NAMES;
use sluice_policy::{Settings, TickReport};
use std::sync::{Arc, Mutex};
use world::Shared;

/// Every this many ticks the checks look at every row, not only those the
/// tick claimed or settled.
const FULL_LOOK_EVERY: u64 = 64;

/// What to simulate. The policy and its settings are given separately
/// ([`SimPolicy`]): a component is configured when it is loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    pub seed: u64,
    pub rows: u32,
    /// The run stops after this many ticks (of all loops) even if rows are
    /// still open.
    pub ticks_max: u64,
    pub profile: Profile,
    /// Drainers (processes) on the one outbox file, each with its own write
    /// connection.
    pub drainers: u32,
    /// Loops per drainer, each with its own policy instance, as `sluice run`
    /// runs `[drain] batches_in_flight` of them.
    pub loops: u32,
}

/// Rows a simulated outbox may hold: bounds memory and the per-tick checks.
pub const SIM_ROWS_MAX: u32 = 1_000_000;
/// Drainers times loops a simulation may run.
pub const SIM_LOOPS_MAX: u32 = 16;

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            rows: 1_000,
            ticks_max: 100_000,
            profile: Profile::default(),
            drainers: 1,
            loops: sluice::config::BATCHES_IN_FLIGHT_DEFAULT as u32,
        }
    }
}

/// Why a simulation could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("the simulator reads the policy's settings for its bounds, and they do not parse: {0}")]
    Settings(String),
    #[error("{rows} rows is more than the simulator holds ({SIM_ROWS_MAX})")]
    TooManyRows { rows: u32 },
    #[error(
        "{drainers} drainers of {loops} loops: give at least one of each, and at most {SIM_LOOPS_MAX} loops in all"
    )]
    Loops { drainers: u32, loops: u32 },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("cannot write the trace: {0}")]
    Trace(#[from] std::io::Error),
    #[error("cannot make the simulated outbox: {0}")]
    Outbox(String),
}

/// One loop of one drainer: a policy instance over its own world.
struct Loop {
    at: LoopId,
    runner: SimRunner,
    /// When it ticks next (virtual ms).
    next_at: i64,
    /// The simulation tick it last ran: ties go to the loop that waited longest.
    ran_at: u64,
    /// How its last tick ended: decides how long it waits.
    last: Option<Result<TickReport, ()>>,
    trace: Option<TraceBuffer>,
}

/// A simulation: its drainers' loops taking turns on one outbox file.
pub struct Sim {
    config: SimConfig,
    loops: Vec<Loop>,
    shared: Shared,
    outbox: SimOutbox,
    checker: Checker,
    tick: u64,
    failed_ticks: u64,
}

impl Sim {
    pub fn new(
        config: SimConfig,
        policy: &SimPolicy<'_>,
        sink: &TraceSink,
    ) -> Result<Sim, SimError> {
        if config.rows > SIM_ROWS_MAX {
            return Err(SimError::TooManyRows { rows: config.rows });
        }
        let total = config.drainers.saturating_mul(config.loops);
        if config.drainers == 0 || config.loops == 0 || total > SIM_LOOPS_MAX {
            return Err(SimError::Loops {
                drainers: config.drainers,
                loops: config.loops,
            });
        }
        let settings = bounds(policy.settings())?;
        let mut rng = SimRng::new(config.seed);
        let pop = population::populate(&mut rng.fork(0), config.rows, settings.max_attempts);
        let outbox = SimOutbox::create(&pop.rows).map_err(SimError::Outbox)?;
        let broker = broker::SimBroker::new(
            config.profile.clone(),
            rng.fork(3),
            &pop.meshes,
            &pop.sessions,
        );
        let checker = Checker::new(
            checked_bounds(&settings, policy.settings(), &policy.policy_id().name),
            &pop.rows,
        );
        let shared: Shared = Arc::new(Mutex::new(SimShared::new(
            broker,
            config.profile.clone(),
            population::EPOCH_START_MS,
            &mut rng,
        )));
        let header = Header::new(policy.policy_id(), policy.settings().to_vec());
        let mut loops = Vec::new();
        for drainer in 0..config.drainers {
            let store = match drainer {
                0 => Arc::clone(&outbox.store),
                _ => Arc::new(outbox.open_another().map_err(SimError::Outbox)?),
            };
            for index in 0..config.loops {
                let at = LoopId { drainer, index };
                let n = loops.len() as u64;
                // The first loop's randomness is what a one-loop run had.
                let random = rng.fork(if n == 0 { 2 } else { 100 + n });
                let world = SimWorld::new(Arc::clone(&shared), Arc::clone(&store), random);
                let (writer, trace) = runner::open_trace(&sink.for_loop(n), &header)?;
                let runner = runner::bind(
                    policy,
                    sluice::runner::guarded(world, writer),
                    settings.clone(),
                )?;
                loops.push(Loop {
                    at,
                    runner,
                    next_at: population::EPOCH_START_MS,
                    ran_at: 0,
                    last: None,
                    trace,
                });
            }
        }
        Ok(Sim {
            config,
            loops,
            shared,
            outbox,
            checker,
            tick: 0,
            failed_ticks: 0,
        })
    }

    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// Ticks run so far, by all loops.
    pub fn ticks(&self) -> u64 {
        self.tick
    }

    /// The outbox file, through the checks' connection.
    pub fn outbox(&self) -> &SimOutbox {
        &self.outbox
    }

    /// The shared part of the world: the broker, the clock, the faults.
    pub fn shared(&self) -> std::sync::MutexGuard<'_, SimShared> {
        world::lock(&self.shared)
    }

    /// Runs one tick of the loop due first (ties: the one that waited
    /// longest) at its time, and checks every invariant against what it did;
    /// then the loop waits as the real loop would (`drain::wait_after`), and
    /// its drainer's other loops are woken if it did work, as `sluice run`
    /// wakes them.
    pub fn step(&mut self) -> Result<StepReport, Violation> {
        let next = (0..self.loops.len())
            .min_by_key(|&i| (self.loops[i].next_at, self.loops[i].ran_at, i))
            .expect("a simulation has at least one loop");
        if self.tick > 0 {
            world::lock(&self.shared).advance_to(self.loops[next].next_at);
        }
        self.tick += 1;
        let now_ms = world::lock(&self.shared).clock_ms();
        let tick = self.tick;
        let turn = &mut self.loops[next];
        turn.ran_at = tick;
        let at = turn.at;
        let result = turn.runner.tick(now_ms);
        let journal = turn.runner.world().take_journal();
        let violation = |kind| Violation {
            tick,
            now_ms,
            at,
            kind,
        };
        // The guard's rules are the simulator's invariants for what a tick
        // sends and settles: a breach is the first violation of the tick.
        if let Err(TickError::Violation { breaches, .. }) = &result
            && let Some(breach) = breaches.first()
        {
            return Err(violation(ViolationKind::Guard(breach.clone())));
        }
        let report = result.as_ref().ok().filter(|_| !journal.crashed);
        let meshes = world::lock(&self.shared).broker.links.meshes();
        let full_look = journal.reclaimed > 0
            || journal.expired > 0
            || self.tick.is_multiple_of(FULL_LOOK_EVERY);
        let view = TickView {
            now_ms,
            report,
            journal: &journal,
            store: &self.outbox,
            full_look,
            meshes: &meshes,
        };
        self.checker.check(&view).map_err(violation)?;
        self.failed_ticks += u64::from(result.is_err());
        let ended = result.as_ref().map(Clone::clone).map_err(|_| ());
        let after = world::lock(&self.shared).clock_ms();
        let poll = DrainOptions::default().poll_interval;
        let wait = wait_after(ended.as_ref().map_err(|_| ()), after, poll).map_or(0, |wait| {
            i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)
        });
        let woke_siblings = ended.as_ref().is_ok_and(wakes_siblings);
        let turn = &mut self.loops[next];
        turn.next_at = after.saturating_add(wait);
        turn.last = Some(ended);
        if woke_siblings {
            for sibling in &mut self.loops {
                if sibling.at.drainer == at.drainer && sibling.at != at {
                    sibling.next_at = sibling.next_at.min(after);
                }
            }
        }
        let result = result.map_err(|e| match e {
            TickError::Policy(message) | TickError::Trap(message) => message,
            violation @ TickError::Violation { .. } => violation.to_string(),
        });
        Ok(StepReport {
            tick: self.tick,
            now_ms,
            result,
            crashed: journal.crashed,
        })
    }

    /// Steps until no row is open, `ticks_max` ticks ran, or an invariant broke.
    pub fn run(&mut self) -> SimOutcome {
        let stop = loop {
            if self.outbox.open_rows() == 0 {
                break Stop::Drained;
            }
            if self.tick >= self.config.ticks_max {
                break Stop::TickLimit;
            }
            if let Err(violation) = self.step() {
                break Stop::Violation(violation);
            }
        };
        self.outcome(stop)
    }

    /// Flushes every loop's trace; returns the first loop's when it was
    /// kept in memory.
    pub fn finish_trace(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self.finish_traces()?.into_iter().next().flatten())
    }

    /// Flushes every loop's trace; returns each one kept in memory, in loop
    /// order (`SimConfig::loops` per drainer).
    pub fn finish_traces(&mut self) -> std::io::Result<Vec<Option<Vec<u8>>>> {
        let mut kept = Vec::with_capacity(self.loops.len());
        for turn in &mut self.loops {
            turn.runner.recorder().finish()?;
            kept.push(turn.trace.as_ref().map(TraceBuffer::take));
        }
        Ok(kept)
    }

    fn outcome(&mut self, stop: Stop) -> SimOutcome {
        let lost_claims = self.checker.lost_claims();
        let counts = self.outbox.counts();
        let count = |status| counts.get(&status).copied().unwrap_or(0);
        let shared = world::lock(&self.shared);
        SimOutcome {
            seed: self.config.seed,
            stop,
            ticks: self.tick,
            failed_ticks: self.failed_ticks,
            rows: self.config.rows,
            pending: count(Status::Pending),
            inflight: count(Status::Inflight),
            done: count(Status::Done),
            dead: count(Status::Dead),
            aborted: count(Status::Aborted),
            sends: shared.dispatches(),
            faults: shared.faults().values().sum(),
            lost_claims,
            virtual_ms: shared.clock_ms() - population::EPOCH_START_MS,
        }
    }
}

/// The bounds the invariants hold a policy to. Sluice's own policies are
/// held to the default's constants, as configured. Another policy is held
/// to those it was given by the default's names (`max_attempts`,
/// `backoff_cap_ms`, `row_ttl_ms`); of the rest, its attempts are not
/// bounded and its backoff is bounded by the row's time to live (a retry
/// further out than that is never tried), since its own constants are its
/// author's.
fn checked_bounds(settings: &Settings, given: &[(String, String)], name: &str) -> Settings {
    let mut bounds = settings.clone();
    if name.starts_with(sluice::policy_settings::OWN_PREFIX) {
        return bounds;
    }
    let has = |key: &str| given.iter().any(|(k, _)| k == key);
    if !has("max_attempts") {
        bounds.max_attempts = u32::MAX;
    }
    if !has("backoff_cap_ms") {
        bounds.backoff_cap_ms = bounds.row_ttl_ms;
    }
    bounds
}

/// The policy's constants as the checks need them; keys the default policy
/// does not know (a faulty policy's `fault`, another policy's own) are skipped.
fn bounds(settings: &[(String, String)]) -> Result<Settings, SimError> {
    let known: Vec<(String, String)> = settings
        .iter()
        .filter(|(k, _)| SETTING_NAMES.contains(&k.as_str()))
        .cloned()
        .collect();
    Settings::from_pairs(&known).map_err(|e| SimError::Settings(e.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sluices_own_are_held_to_the_defaults_constants_and_others_to_what_they_were_given() {
        let settings = Settings::default();
        let own = checked_bounds(&settings, &[], "sluice-outage-aware");
        assert_eq!(own, settings);
        let other = checked_bounds(&settings, &[], "my-policy");
        assert_eq!(other.max_attempts, u32::MAX);
        assert_eq!(other.backoff_cap_ms, settings.row_ttl_ms);
        let pairs = given(&[("max_attempts", "5"), ("backoff_cap_ms", "9000")]);
        let told = bounds(&pairs).unwrap();
        let bounded = checked_bounds(&told, &pairs, "my-policy");
        assert_eq!((bounded.max_attempts, bounded.backoff_cap_ms), (5, 9000));
    }
}
