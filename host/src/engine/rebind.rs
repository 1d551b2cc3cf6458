//! Moving a running policy's world onto another policy: the hot swap.
//!
//! Owns: building a runner of another [`PolicyEngine`] around the world of
//! an existing runner, and giving the world back when that fails, so a
//! refused swap leaves the old policy running with everything it had.

use super::bindings::{DrainPolicy, DrainPolicyPre, PolicyInfo};
use super::{GuestState, LoadError, PolicyEngine, PolicyRunner, root_cause};
use sluice_policy::World;
use wasmtime::component::{HasSelf, Linker};

impl<W: World + Send + 'static> PolicyRunner<W> {
    /// Replaces this runner's policy with `engine`'s, keeping the world.
    /// On failure nothing changes: the old policy keeps running.
    pub fn rebind(&mut self, engine: &PolicyEngine) -> Result<(), LoadError> {
        let contract = |e: wasmtime::Error| LoadError::Contract {
            source_name: engine.meta.source.clone(),
            cause: root_cause(&e),
        };
        let mut linker: Linker<GuestState<W>> = Linker::new(&engine.engine);
        DrainPolicy::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(contract)?;
        linker
            .define_unknown_imports_as_traps(&engine.component)
            .map_err(contract)?;
        let pre = linker
            .instantiate_pre(&engine.component)
            .map_err(contract)?;
        let pre = DrainPolicyPre::new(pre).map_err(contract)?;
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
