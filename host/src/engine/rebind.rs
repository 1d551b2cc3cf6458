//! Moving a running policy's world onto another policy: the hot swap.
//!
//! Owns: building a runner of another [`PolicyEngine`] around the world of
//! an existing runner, and giving the world back when that fails, so a
//! refused swap leaves the old policy running with everything it had.

use super::bindings::PolicyInfo;
use super::{LoadError, PolicyEngine, PolicyRunner};
use sluice_policy::World;

impl<W: World + Send + 'static> PolicyRunner<W> {
    /// Replaces this runner's policy with `engine`'s, keeping the world.
    /// On failure nothing changes: the old policy keeps running.
    pub fn rebind(&mut self, engine: &PolicyEngine) -> Result<(), LoadError> {
        let pre = engine.instance_pre()?;
        let world = match (self.slot.take(), self.spare.take()) {
            (Some((store, _)), _) => store.into_data().world,
            (None, Some(world)) => world,
            (None, None) => unreachable!("policy runner lost its world"),
        };
        let mut next = PolicyRunner {
            pre,
            engine: engine.engine.clone(),
            settings: engine.settings.clone(),
            source: engine.meta.source.clone(),
            info: PolicyInfo {
                name: String::new(),
                version: String::new(),
            },
            slot: None,
            spare: Some(world),
            by_name: None,
            settings_from: None,
        };
        match next.instantiate() {
            Ok(()) => {
                *self = next;
                Ok(())
            }
            Err(e) => {
                // The world goes back where it was; the old policy's next
                // tick makes itself a fresh instance.
                self.spare = next
                    .spare
                    .take()
                    .or_else(|| next.slot.take().map(|(store, _)| store.into_data().world));
                Err(e)
            }
        }
    }
}
