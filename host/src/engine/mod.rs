//! Runs a drain policy component on wasmtime.
//!
//! [`PolicyEngine`] compiles and validates a component once: it must be a
//! component, export `sluice:drain/policy` with the expected shape, and
//! accept the configured settings. [`PolicyRunner`] holds one instance and a
//! [`World`] and calls `tick`. The guest gets nothing but our imports: no
//! WASI is linked, and any other import traps when called. Each tick runs
//! under a memory cap and a guest-time budget; a tick that traps is
//! abandoned (its rows come back through their lease) and the next tick gets
//! a fresh instance.

mod bindings;
mod imports;
mod limits;
mod probe;

pub use bindings::PolicyInfo;
pub use limits::{GUEST_MEMORY_BYTES_MAX, TICK_GUEST_TIME_MAX};

use bindings::{DrainPolicy, DrainPolicyPre};
use limits::EpochTicker;
use probe::ProbeWorld;
use sha2::{Digest, Sha256};
use sluice_policy::World;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store, StoreLimits};

/// The default policy, built from `guest/` by `build.rs`.
pub const DEFAULT_POLICY_WASM: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/default_policy.wasm"));

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "policy {source_name} is a core WebAssembly module, not a component: build it for wasm32-wasip2 (its linker makes a component)"
    )]
    CoreModule { source_name: String },
    #[error(
        "policy {source_name} is not a WebAssembly component ({cause}): give a .wasm component built against wit/drain.wit"
    )]
    NotComponent { source_name: String, cause: String },
    #[error(
        "policy {source_name} does not fit the contract sluice:drain@0.2.0 ({cause}): build it against this host's wit/drain.wit"
    )]
    Contract { source_name: String, cause: String },
    #[error("policy {source_name} failed while starting ({cause})")]
    Start { source_name: String, cause: String },
    #[error("policy {source_name} refused its settings: {message}")]
    Settings {
        source_name: String,
        message: String,
    },
}

/// Why a tick produced no report.
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    /// The policy returned an error (e.g. a store call failed); the instance is fine.
    #[error("{0}")]
    Policy(String),
    /// The guest trapped, ran out of time or memory; the instance was replaced.
    #[error("policy trapped: {0}")]
    Trap(String),
}

/// What identifies a loaded policy in logs, traces and the demo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyMeta {
    /// Where it came from: a file path, or `embedded default`.
    pub source: String,
    pub name: String,
    pub version: String,
    /// Hex SHA-256 of the component bytes.
    pub sha256: String,
}

impl PolicyMeta {
    /// The default policy crate linked natively: no component, so no hash.
    pub fn native() -> PolicyMeta {
        PolicyMeta {
            source: "linked natively".into(),
            name: sluice_policy::POLICY_NAME.into(),
            version: sluice_policy::POLICY_VERSION.into(),
            sha256: "-".into(),
        }
    }
}

/// A compiled, validated policy component.
pub struct PolicyEngine {
    engine: Engine,
    component: Component,
    meta: PolicyMeta,
    settings: Arc<Vec<(String, String)>>,
    ticker: Arc<EpochTicker>,
}

impl PolicyEngine {
    /// Compiles `bytes` and checks it against the contract by instantiating
    /// it and calling `info()` and `configure(settings)`.
    pub fn load(
        source: &str,
        bytes: &[u8],
        settings: Vec<(String, String)>,
    ) -> Result<PolicyEngine, LoadError> {
        let name = source.to_string();
        let engine = new_engine().map_err(|e| LoadError::Start {
            source_name: name.clone(),
            cause: e.to_string(),
        })?;
        let component = Component::from_binary(&engine, bytes).map_err(|e| {
            if bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0] {
                LoadError::CoreModule {
                    source_name: name.clone(),
                }
            } else {
                LoadError::NotComponent {
                    source_name: name.clone(),
                    cause: root_cause(&e),
                }
            }
        })?;
        let ticker = Arc::new(EpochTicker::start(&engine));
        let mut loaded = PolicyEngine {
            engine,
            component,
            meta: PolicyMeta {
                source: name,
                name: String::new(),
                version: String::new(),
                sha256: hex::encode(Sha256::digest(bytes)),
            },
            settings: Arc::new(settings),
            ticker,
        };
        let probe = loaded.runner(ProbeWorld)?;
        let info = probe.info;
        loaded.meta.name = info.name;
        loaded.meta.version = info.version;
        Ok(loaded)
    }

    /// The embedded default policy.
    pub fn load_default(settings: Vec<(String, String)>) -> Result<PolicyEngine, LoadError> {
        PolicyEngine::load("embedded default", DEFAULT_POLICY_WASM, settings)
    }

    pub fn meta(&self) -> &PolicyMeta {
        &self.meta
    }

    pub fn settings(&self) -> &[(String, String)] {
        &self.settings
    }

    /// A runner of this policy over `world`: instantiated and configured.
    pub fn runner<W: World + Send + 'static>(
        &self,
        world: W,
    ) -> Result<PolicyRunner<W>, LoadError> {
        let contract = |e: wasmtime::Error| LoadError::Contract {
            source_name: self.meta.source.clone(),
            cause: root_cause(&e),
        };
        let mut linker: Linker<GuestState<W>> = Linker::new(&self.engine);
        DrainPolicy::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(contract)?;
        // Anything else the component imports (WASI included) traps if called:
        // the policy sees the world only through our imports.
        linker
            .define_unknown_imports_as_traps(&self.component)
            .map_err(contract)?;
        let pre = linker.instantiate_pre(&self.component).map_err(contract)?;
        let pre = DrainPolicyPre::new(pre).map_err(contract)?;
        let mut runner = PolicyRunner {
            pre,
            engine: self.engine.clone(),
            settings: self.settings.clone(),
            source: self.meta.source.clone(),
            info: PolicyInfo {
                name: String::new(),
                version: String::new(),
            },
            slot: None,
            spare: Some(world),
            _ticker: self.ticker.clone(),
        };
        runner.instantiate()?;
        Ok(runner)
    }
}

fn new_engine() -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    // One compile of a small component at start: threads would only add
    // their arenas to the peak resident memory.
    config.parallel_compilation(false);
    Engine::new(&config)
}

/// What a guest instance keeps in its Store.
pub struct GuestState<W> {
    world: W,
    limits: StoreLimits,
    tick_started: Instant,
    /// Time spent in imports during this tick: not charged to the guest.
    import_time: Duration,
}

/// One instance of a policy with its world.
pub struct PolicyRunner<W: World + Send + 'static> {
    pre: DrainPolicyPre<GuestState<W>>,
    engine: Engine,
    settings: Arc<Vec<(String, String)>>,
    source: String,
    info: PolicyInfo,
    /// The live instance; None after a trap until the next tick.
    slot: Option<(Store<GuestState<W>>, DrainPolicy)>,
    /// The world while no instance holds it.
    spare: Option<W>,
    /// Keeps the epoch advancing while this runner lives.
    _ticker: Arc<EpochTicker>,
}

impl<W: World + Send + 'static> PolicyRunner<W> {
    /// The policy's `info()`, read when the instance was made.
    pub fn info(&self) -> &PolicyInfo {
        &self.info
    }

    /// Runs one tick. After a trap the instance is dropped and the next call
    /// makes a fresh one; the world survives.
    pub fn tick(&mut self, now: i64) -> Result<sluice_policy::TickReport, TickError> {
        if self.slot.is_none() {
            self.instantiate()
                .map_err(|e| TickError::Trap(e.to_string()))?;
        }
        let Some((store, instance)) = self.slot.as_mut() else {
            return Err(TickError::Trap("no instance".into()));
        };
        store.data_mut().tick_started = Instant::now();
        store.data_mut().import_time = Duration::ZERO;
        store.set_epoch_deadline(1);
        match instance.sluice_drain_policy().call_tick(&mut *store, now) {
            Ok(Ok(r)) => Ok(sluice_policy::TickReport {
                claimed: r.claimed,
                done: r.done,
                dead: r.dead,
                retried: r.retried,
                held: r.held,
                reclaimed: r.reclaimed,
                expired: r.expired,
                more_due: r.more_due,
                next_due_at: r.next_due_at,
            }),
            Ok(Err(message)) => Err(TickError::Policy(message)),
            Err(trap) => {
                let cause = describe_trap(&trap);
                if let Some((store, _)) = self.slot.take() {
                    self.spare = Some(store.into_data().world);
                }
                Err(TickError::Trap(cause))
            }
        }
    }

    /// The world, for the host's own reads between ticks.
    pub fn world_mut(&mut self) -> &mut W {
        match (&mut self.slot, &mut self.spare) {
            (Some((store, _)), _) => &mut store.data_mut().world,
            (None, Some(world)) => world,
            // Every path that takes the world out of one puts it in the other.
            (None, None) => unreachable!("policy runner lost its world"),
        }
    }

    pub fn into_world(mut self) -> W {
        match (self.slot.take(), self.spare.take()) {
            (Some((store, _)), _) => store.into_data().world,
            (None, Some(world)) => world,
            (None, None) => unreachable!("policy runner lost its world"),
        }
    }

    fn instantiate(&mut self) -> Result<(), LoadError> {
        let world = match (self.slot.take(), self.spare.take()) {
            (Some((store, _)), _) => store.into_data().world,
            (None, Some(world)) => world,
            (None, None) => unreachable!("policy runner lost its world"),
        };
        let state = GuestState {
            world,
            limits: limits::store_limits(),
            tick_started: Instant::now(),
            import_time: Duration::ZERO,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_callback(limits::guest_time_check);
        store.set_epoch_deadline(1);
        let started = self.pre.instantiate(&mut store).and_then(|instance| {
            let info = instance.sluice_drain_policy().call_info(&mut store)?;
            let configured = instance
                .sluice_drain_policy()
                .call_configure(&mut store, &self.settings)?;
            Ok((instance, info, configured))
        });
        match started {
            Ok((instance, info, Ok(()))) => {
                self.info = info;
                self.slot = Some((store, instance));
                Ok(())
            }
            Ok((_, _, Err(message))) => {
                self.spare = Some(store.into_data().world);
                Err(LoadError::Settings {
                    source_name: self.source.clone(),
                    message,
                })
            }
            Err(e) => {
                self.spare = Some(store.into_data().world);
                Err(LoadError::Start {
                    source_name: self.source.clone(),
                    cause: describe_trap(&e),
                })
            }
        }
    }
}

/// A readable cause of a failed guest call: the trap code when there is one,
/// with the innermost message.
fn describe_trap(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => {
            format!("guest ran past its time budget of {TICK_GUEST_TIME_MAX:?} in one tick")
        }
        Some(trap) => format!("{trap}: {}", root_cause(error)),
        None => root_cause(error),
    }
}

fn root_cause(error: &wasmtime::Error) -> String {
    error
        .chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
