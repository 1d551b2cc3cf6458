//! Runs a drain policy component on wasmtime.
//!
//! [`PolicyEngine`] compiles (or loads from the compile cache, `cache`) and
//! validates a component once: it must be a component, import only what the
//! host provides and export `sluice:drain/policy` (`contract`, by name),
//! with the expected shapes (the linker), and accept the configured
//! settings. Every policy runs on one process-wide wasmtime engine
//! (`compile`). [`PolicyRunner`] holds one instance and a
//! [`World`] and calls `tick`. The guest gets our imports and a closed WASI
//! (`wasi`): no files, sockets or environment, output to the log, clocks
//! and randomness through the world, so ticks replay. Each tick runs
//! under a memory cap and a guest-time budget; a tick that traps is
//! abandoned (its rows come back through their lease) and the next tick gets
//! a fresh instance.

mod bindings;
mod cache;
mod compile;
mod contract;
mod imports;
mod limits;
mod probe;
mod rebind;
mod wasi;

pub use bindings::PolicyInfo;
pub use cache::{CACHE_DIR_ENV, CacheStatus, PolicyCache, WASMTIME_VERSION};
pub use contract::CONTRACT;
pub use limits::{GUEST_MEMORY_BYTES_MAX, TICK_GUEST_TIME_MAX};

use crate::policy_settings::PolicySettings;
use bindings::{DrainPolicy, DrainPolicyPre};
use probe::ProbeWorld;
use sha2::{Digest, Sha256};
use sluice_policy::World;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, StoreLimits};

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
    /// Imports or exports by the wrong name: what is missing or extra.
    #[error(
        "policy {source_name} does not fit this host: it was built against {built_against}, this host implements {CONTRACT}; it {}. Build it against this host's wit/drain.wit",
        .problems.join("; it ")
    )]
    Interfaces {
        source_name: String,
        built_against: String,
        problems: Vec<String>,
    },
    /// The right names with the wrong shapes.
    #[error(
        "policy {source_name} does not fit the contract {CONTRACT} ({cause}): build it against this host's wit/drain.wit"
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
    /// The policy broke the host's rules (`guard`): those calls were not
    /// carried out. The tick counts as failed, like a trap.
    #[error("{}", describe_breaches(.breaches, *.dropped))]
    Violation {
        /// The breaches in the order they happened (at most the guard keeps).
        breaches: Vec<crate::guard::Breach>,
        /// Further breaches of the tick, counted but not kept.
        dropped: u64,
    },
}

fn describe_breaches(breaches: &[crate::guard::Breach], dropped: u64) -> String {
    let more = breaches.len().saturating_sub(1) as u64 + dropped;
    match breaches.first() {
        Some(first) if more > 0 => format!("policy_violation {first} (and {more} more)"),
        Some(first) => format!("policy_violation {first}"),
        None => "policy_violation".into(),
    }
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
    cache: CacheStatus,
}

impl PolicyEngine {
    /// Compiles `bytes`, or loads them compiled from the compile cache the
    /// environment names ([`PolicyCache::FromEnv`]), and checks them against
    /// the contract: by name, then by instantiating the component and calling
    /// `info()` and `configure(settings)`.
    pub fn load(
        source: &str,
        bytes: &[u8],
        settings: Vec<(String, String)>,
    ) -> Result<PolicyEngine, LoadError> {
        PolicyEngine::load_with_cache(source, bytes, settings, &PolicyCache::FromEnv)
    }

    /// The embedded default policy, from the compile cache when it is there.
    pub fn load_default(settings: Vec<(String, String)>) -> Result<PolicyEngine, LoadError> {
        PolicyEngine::load("embedded default", DEFAULT_POLICY_WASM, settings)
    }

    /// [`PolicyEngine::load`] that always compiles and stores nothing.
    pub fn load_uncached(
        source: &str,
        bytes: &[u8],
        settings: Vec<(String, String)>,
    ) -> Result<PolicyEngine, LoadError> {
        PolicyEngine::load_with_cache(source, bytes, settings, &PolicyCache::Off)
    }

    /// [`PolicyEngine::load`] with the compile cache in `cache`.
    pub fn load_with_cache(
        source: &str,
        bytes: &[u8],
        settings: Vec<(String, String)>,
        cache: &PolicyCache,
    ) -> Result<PolicyEngine, LoadError> {
        let mut engine = PolicyEngine::compiled(source, bytes, cache)?;
        engine.settings = Arc::new(settings);
        engine.probed(None)
    }

    /// [`PolicyEngine::load`] with the settings the policy's own name picks
    /// out of `settings` (`[policy.<name>]`, see `crate::policy_settings`).
    pub fn load_for(
        source: &str,
        bytes: &[u8],
        settings: &PolicySettings,
    ) -> Result<PolicyEngine, LoadError> {
        PolicyEngine::compiled(source, bytes, &PolicyCache::FromEnv)?.probed(Some(settings))
    }

    /// Compiled (or read from the cache) and checked against the contract by
    /// name; not yet instantiated.
    fn compiled(
        source: &str,
        bytes: &[u8],
        cache: &PolicyCache,
    ) -> Result<PolicyEngine, LoadError> {
        let source_name = source.to_string();
        let engine = compile::shared_engine().map_err(|cause| LoadError::Start {
            source_name: source_name.clone(),
            cause: format!("cannot make the wasmtime engine: {cause}"),
        })?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        let (component, cache) = compile::obtain(engine, source, bytes, &sha256, cache)?;
        contract::check(engine, &component).map_err(|m| LoadError::Interfaces {
            source_name: source_name.clone(),
            built_against: m.built_against,
            problems: m.problems,
        })?;
        Ok(PolicyEngine {
            engine: engine.clone(),
            component,
            meta: PolicyMeta {
                source: source_name,
                name: String::new(),
                version: String::new(),
                sha256,
            },
            settings: Arc::new(Vec::new()),
            cache,
        })
    }

    /// The same policy with other settings: checked by `configure(settings)`,
    /// without compiling again.
    pub fn reconfigured(&self, settings: Vec<(String, String)>) -> Result<PolicyEngine, LoadError> {
        PolicyEngine {
            engine: self.engine.clone(),
            component: self.component.clone(),
            meta: self.meta.clone(),
            settings: Arc::new(settings),
            cache: self.cache.clone(),
        }
        .probed(None)
    }

    /// Instantiates the policy and calls `info()` and `configure()`;
    /// fills in the name and version `info()` gives. With `by_name`, the
    /// settings are the ones that name picks out of it, and stay this
    /// engine's.
    fn probed(mut self, by_name: Option<&PolicySettings>) -> Result<PolicyEngine, LoadError> {
        let runner = self.runner_choosing(ProbeWorld, by_name.map(|s| Arc::new(s.clone())))?;
        self.settings = runner.settings.clone();
        self.meta.name = runner.info.name.clone();
        self.meta.version = runner.info.version.clone();
        Ok(self)
    }

    pub fn meta(&self) -> &PolicyMeta {
        &self.meta
    }

    /// Whether the compiled policy came from the compile cache.
    pub fn cache_status(&self) -> &CacheStatus {
        &self.cache
    }

    pub fn settings(&self) -> &[(String, String)] {
        &self.settings
    }

    /// A runner of this policy over `world`: instantiated and configured.
    pub fn runner<W: World + Send + 'static>(
        &self,
        world: W,
    ) -> Result<PolicyRunner<W>, LoadError> {
        self.runner_choosing(world, None)
    }

    fn runner_choosing<W: World + Send + 'static>(
        &self,
        world: W,
        by_name: Option<Arc<PolicySettings>>,
    ) -> Result<PolicyRunner<W>, LoadError> {
        let pre = self.instance_pre()?;
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
            by_name,
            settings_from: None,
        };
        runner.instantiate()?;
        Ok(runner)
    }
}

impl PolicyEngine {
    /// The component linked to our imports and the closed WASI, ready to
    /// instantiate over any world.
    fn instance_pre<W: World + Send + 'static>(
        &self,
    ) -> Result<DrainPolicyPre<GuestState<W>>, LoadError> {
        let contract = |e: wasmtime::Error| LoadError::Contract {
            source_name: self.meta.source.clone(),
            cause: root_cause(&e),
        };
        let mut linker: Linker<GuestState<W>> = Linker::new(&self.engine);
        DrainPolicy::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(contract)?;
        wasi::add_to_linker(&mut linker).map_err(contract)?;
        // Nothing else is linked: a component that imports more (a WASI
        // interface that is not 0.2's, say) is refused here, by name.
        let pre = linker.instantiate_pre(&self.component).map_err(contract)?;
        DrainPolicyPre::new(pre).map_err(contract)
    }
}

/// What a guest instance keeps in its Store.
pub struct GuestState<W> {
    world: W,
    limits: StoreLimits,
    tick_started: Instant,
    /// Time spent in imports during this tick: not charged to the guest.
    import_time: Duration,
    /// True while `tick` runs: WASI's clocks and randomness then go to the
    /// world (and into a trace); outside a tick they answer 0.
    in_tick: bool,
    wasi: wasi::ClosedWasi,
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
    /// While loading: pick `settings` by the name `info()` gives.
    by_name: Option<Arc<PolicySettings>>,
    /// Where the settings came from, when `by_name` picked them.
    settings_from: Option<String>,
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
        store.data_mut().in_tick = true;
        let result = instance.sluice_drain_policy().call_tick(&mut *store, now);
        store.data_mut().in_tick = false;
        match result {
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
            in_tick: false,
            wasi: wasi::ClosedWasi::new(&self.source),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_callback(limits::guest_time_check);
        store.set_epoch_deadline(1);
        let instance = match self.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) => {
                self.spare = Some(store.into_data().world);
                let source_name = self.source.clone();
                // Without a trap, instantiating failed on the export's
                // shape: a function missing or of another type.
                return Err(match e.downcast_ref::<wasmtime::Trap>() {
                    Some(_) => LoadError::Start {
                        source_name,
                        cause: describe_trap(&e),
                    },
                    None => LoadError::Contract {
                        source_name,
                        cause: root_cause(&e),
                    },
                });
            }
        };
        let started = (|| {
            let info = instance.sluice_drain_policy().call_info(&mut store)?;
            if let Some(choice) = self.by_name.take() {
                self.settings = Arc::new(choice.for_policy(&info.name));
                self.settings_from = Some(choice.source_for(&info.name));
            }
            let configured = instance
                .sluice_drain_policy()
                .call_configure(&mut store, &self.settings)?;
            wasmtime::Result::Ok((instance, info, configured))
        })();
        match started {
            Ok((instance, info, Ok(()))) => {
                self.info = info;
                self.slot = Some((store, instance));
                Ok(())
            }
            Ok((_, info, Err(message))) => {
                self.spare = Some(store.into_data().world);
                let message = match &self.settings_from {
                    Some(from) => format!("{message} (policy {}, settings from {from})", info.name),
                    None => message,
                };
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
        Some(trap) => {
            let cause = root_cause(error);

            let trap = trap.to_string();
            // The trap is often the innermost cause already.
            if cause.ends_with(&trap) {
                cause
            } else {
                format!("{trap}: {cause}")
            }
        }
        None => root_cause(error),
    }
}

/// The causes of `error` on one line, for a refusal, a rollback and
/// `sluice status`: the first line of each, without the wasm backtrace or
/// the byte dump of a bad header. The whole error goes to the debug log.
fn root_cause(error: &wasmtime::Error) -> String {
    tracing::debug!(target: "sluice", "policy error in full: {error:?}");
    error
        .chain()
        .map(ToString::to_string)
        .filter(|cause| !cause.starts_with("error while executing at wasm backtrace"))
        .map(|cause| one_line(&cause))
        .collect::<Vec<_>>()
        .join(": ")
}

/// The first line of a cause, cut before a dump of expected and actual
/// bytes ("bad magic number - expected=[").
fn one_line(cause: &str) -> String {
    let first = cause.lines().next().unwrap_or_default();
    let cut = first.find(" - expected=").map_or(first, |at| &first[..at]);
    cut.trim_end().to_string()
}
