//! One tick of a policy — as a component or linked natively — marked in the
//! trace when recording and held to the host's rules. The drain loop, the
//! simulator and the benchmark's baseline all call a policy through this, so
//! a trace reads the same whoever made it and no policy runs unguarded.
//!
//! The policy sees `Recorder<Guard<W>>`: the guard stands between it and the
//! world, and the recorder above the guard writes what the policy saw, a
//! refused call's `policy_violation` answer included, so a trace of a
//! guarded tick replays exactly.

use crate::engine::{LoadError, PolicyEngine, PolicyRunner, TickError};
use crate::guard::Guard;
use crate::trace::{Recorder, TickResult, TraceWriter};
use sluice_policy::{ClaimSize, Settings, TickReport, World};

/// The world a policy is given: guarded, then recorded.
pub type Guarded<W> = Recorder<Guard<W>>;

/// `world` under the guard and a recorder (writing to `writer`, if any).
pub fn guarded<W: World>(world: W, writer: Option<TraceWriter>) -> Guarded<W> {
    Recorder::new(Guard::new(world), writer)
}

/// A policy bound to its world.
pub enum Runner<W: World + Send + 'static> {
    /// The policy as a WebAssembly component (what `sluice run` uses).
    Component(Box<PolicyRunner<Guarded<W>>>),
    /// The default policy crate linked natively (the benchmark's baseline,
    /// and fast property runs of the simulator).
    Native {
        world: Box<Guarded<W>>,
        settings: Settings,
        /// Carried from tick to tick, as the component carries its own.
        claim: ClaimSize,
    },
}

impl<W: World + Send + 'static> Runner<W> {
    /// One export call `tick(now)`, marked in the trace when recording. A
    /// tick in which the policy broke a rule fails with
    /// [`TickError::Violation`], whatever the policy itself returned.
    pub fn tick(&mut self, now: i64) -> Result<TickReport, TickError> {
        self.recorder().begin_tick(now);
        self.guard().begin_tick(now);
        let result = match self {
            Runner::Component(runner) => runner.tick(now),
            Runner::Native {
                world,
                settings,
                claim,
            } => {
                sluice_policy::tick(world.as_mut(), settings, claim, now).map_err(TickError::Policy)
            }
        };
        self.recorder().end_tick(TickResult::of(&result));
        match self.guard().end_tick() {
            (breaches, dropped) if breaches.is_empty() && dropped == 0 => result,
            (breaches, dropped) => Err(TickError::Violation { breaches, dropped }),
        }
    }

    /// Moves the world onto `engine`'s policy (a hot swap); on failure the
    /// old policy keeps running. The natively linked baseline cannot swap.
    pub fn rebind(&mut self, engine: &PolicyEngine) -> Result<(), LoadError> {
        match self {
            Runner::Component(runner) => runner.rebind(engine),
            Runner::Native { .. } => Err(LoadError::Start {
                source_name: engine.meta().source.clone(),
                cause: "the natively linked policy cannot be swapped".into(),
            }),
        }
    }

    pub fn recorder(&mut self) -> &mut Guarded<W> {
        match self {
            Runner::Component(runner) => runner.world_mut(),
            Runner::Native { world, .. } => world,
        }
    }

    /// The guard between the policy and the world.
    pub fn guard(&mut self) -> &mut Guard<W> {
        &mut self.recorder().inner
    }

    /// The world under the guard and the recorder.
    pub fn world(&mut self) -> &mut W {
        &mut self.guard().inner
    }
}
