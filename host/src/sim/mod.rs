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
pub use violation::{Violation, ViolationKind};
pub use world::SimWorld;

use crate::drain::{DrainOptions, wait_after};
use crate::engine::{LoadError, TickError};
use crate::trace::Header;
use invariants::{Checker, TickView};
use outbox::{SimOutbox, Status};
use rng::SimRng;
use runner::{SimRunner, TraceBuffer};
use sluice_policy::settings::SETTING_NAMES;
use sluice_policy::{Settings, TickReport};

/// Every this many ticks the checks look at every row, not only those the
/// tick claimed or settled.
const FULL_LOOK_EVERY: u64 = 64;

/// What to simulate. The policy and its settings are given separately
/// ([`SimPolicy`]): a component is configured when it is loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    pub seed: u64,
    pub rows: u32,
    /// The run stops after this many ticks even if rows are still open.
    pub ticks_max: u64,
    pub profile: Profile,
}

/// Rows a simulated outbox may hold: bounds memory and the per-tick checks.
pub const SIM_ROWS_MAX: u32 = 1_000_000;

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            rows: 1_000,
            ticks_max: 100_000,
            profile: Profile::default(),
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
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("cannot write the trace: {0}")]
    Trace(#[from] std::io::Error),
    #[error("cannot make the simulated outbox: {0}")]
    Outbox(String),
}

/// One simulated drainer.
pub struct Sim {
    config: SimConfig,
    runner: SimRunner,
    checker: Checker,
    tick: u64,
    /// How the last tick ended: decides how long the loop waits.
    last: Option<Result<TickReport, ()>>,
    failed_ticks: u64,
    trace: Option<TraceBuffer>,
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
        let settings = bounds(policy.settings())?;
        let mut rng = SimRng::new(config.seed);
        let pop = population::populate(&mut rng.fork(0), config.rows, settings.max_attempts);
        let store = SimOutbox::create(&pop.rows).map_err(SimError::Outbox)?;
        let broker = broker::SimBroker::new(
            config.profile.clone(),
            rng.fork(3),
            &pop.meshes,
            &pop.sessions,
        );
        let checker = Checker::new(settings.clone(), &pop.rows);
        let world = SimWorld::new(
            store,
            broker,
            config.profile.clone(),
            population::EPOCH_START_MS,
            &mut rng,
        );
        let header = Header::new(policy.policy_id(), policy.settings().to_vec());
        let (writer, trace) = runner::open_trace(sink, &header)?;
        let runner = runner::bind(policy, crate::runner::guarded(world, writer), settings)?;
        Ok(Sim {
            config,
            runner,
            checker,
            tick: 0,
            last: None,
            failed_ticks: 0,
            trace,
        })
    }

    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// Ticks run so far.
    pub fn ticks(&self) -> u64 {
        self.tick
    }

    pub fn world(&mut self) -> &mut SimWorld {
        self.runner.world()
    }

    /// Moves the clock as the real loop would sleep, runs one tick at the
    /// virtual now, and checks every invariant against what it did.
    pub fn step(&mut self) -> Result<StepReport, Violation> {
        let wait_ms = self.wait_ms();
        if self.tick > 0 {
            self.runner.world().advance(wait_ms);
        }
        self.tick += 1;
        let now_ms = self.runner.world().clock_ms();
        let result = self.runner.tick(now_ms);
        let world = self.runner.world();
        let journal = world.take_journal();
        // The guard's rules are the simulator's invariants for what a tick
        // sends and settles: a breach is the first violation of the tick.
        if let Err(TickError::Violation { breaches, .. }) = &result
            && let Some(breach) = breaches.first()
        {
            return Err(Violation {
                tick: self.tick,
                now_ms,
                kind: ViolationKind::Guard(breach.clone()),
            });
        }
        let report = result.as_ref().ok().filter(|_| !journal.crashed);
        let meshes = world.broker.links.meshes();
        let full_look = journal.reclaimed > 0
            || journal.expired > 0
            || self.tick.is_multiple_of(FULL_LOOK_EVERY);
        let view = TickView {
            now_ms,
            report,
            journal: &journal,
            store: &world.store,
            full_look,
            meshes: &meshes,
        };
        self.checker.check(&view).map_err(|kind| Violation {
            tick: self.tick,
            now_ms,
            kind,
        })?;
        self.failed_ticks += u64::from(result.is_err());
        self.last = Some(result.as_ref().map(Clone::clone).map_err(|_| ()));
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
            if self.world().store.open_rows() == 0 {
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

    /// Flushes the trace; returns it when it was kept in memory.
    pub fn finish_trace(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        self.runner.recorder().finish()?;
        Ok(self.trace.as_ref().map(TraceBuffer::take))
    }

    fn outcome(&mut self, stop: Stop) -> SimOutcome {
        let (seed, rows, ticks, failed_ticks) = (
            self.config.seed,
            self.config.rows,
            self.tick,
            self.failed_ticks,
        );
        let lost_claims = self.checker.lost_claims();
        let world = self.runner.world();
        let counts = world.store.counts();
        let count = |status| counts.get(&status).copied().unwrap_or(0);
        SimOutcome {
            seed,
            stop,
            ticks,
            failed_ticks,
            rows,
            pending: count(Status::Pending),
            inflight: count(Status::Inflight),
            done: count(Status::Done),
            dead: count(Status::Dead),
            aborted: count(Status::Aborted),
            sends: world.dispatches(),
            faults: world.faults().values().sum(),
            lost_claims,
            virtual_ms: world.clock_ms() - population::EPOCH_START_MS,
        }
    }

    /// How long the real loop would wait after the last tick
    /// (`drain::wait_after`, the same rule), on the virtual clock.
    fn wait_ms(&mut self) -> i64 {
        let now = self.runner.world().clock_ms();
        let poll = DrainOptions::default().poll_interval;
        let Some(last) = &self.last else {
            return 0;
        };
        wait_after(last.as_ref().map_err(|_| ()), now, poll).map_or(0, |wait| {
            i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)
        })
    }
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
