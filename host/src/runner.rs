//! One tick of a policy — as a component or linked natively — marked in the
//! trace when recording. The drain loop, the simulator and the benchmark's
//! baseline all call a policy through this, so a trace reads the same
//! whoever made it.

use crate::engine::{LoadError, PolicyEngine, PolicyRunner, TickError};
use crate::trace::{Recorder, TickResult};
use sluice_policy::{ClaimSize, Settings, TickReport, World};

/// A policy bound to its world.
pub enum Runner<W: World + Send + 'static> {
    /// The policy as a WebAssembly component (what `sluice run` uses).
    Component(Box<PolicyRunner<Recorder<W>>>),
    /// The default policy crate linked natively (the benchmark's baseline,
    /// and fast property runs of the simulator).
    Native {
        world: Box<Recorder<W>>,
        settings: Settings,
        /// Carried from tick to tick, as the component carries its own.
        claim: ClaimSize,
    },
}

impl<W: World + Send + 'static> Runner<W> {
    /// One export call `tick(now)`, marked in the trace when recording.
    pub fn tick(&mut self, now: i64) -> Result<TickReport, TickError> {
        self.recorder().begin_tick(now);
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
        result
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

    pub fn recorder(&mut self) -> &mut Recorder<W> {
        match self {
            Runner::Component(runner) => runner.world_mut(),
            Runner::Native { world, .. } => world,
        }
    }

    /// The world under the recorder.
    pub fn world(&mut self) -> &mut W {
        &mut self.recorder().inner
    }
}
