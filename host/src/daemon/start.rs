//! Assembling a drainer, a step at a time: the runtime, the policy, the
//! outbox, the links, one loop per batch in flight, and what runs beside
//! them (the link watcher, the wake socket, the policy sources).

use super::sources::{Candidates, reload_sessions, swap_sources, watch_links};
use super::{Daemon, PolicyChoice};
use crate::config::Config;
use crate::drain::{Drain, DrainOptions, Runner, Signals};
use crate::engine::{PolicyEngine, PolicyMeta};
use crate::guard::Guard;
use crate::linkstatus;
use crate::swap::{Audit, PolicySlot, Verifier};
use crate::trace::{Header, PolicyId, Recorder, TraceWriter};
use crate::wake::{Reload, WakeListener};
use crate::world::HostWorld;
use anyhow::Context as _;
use sluice_links::{AckObserver, LinkOptions, Links};
use sluice_policy::Settings;
use sluice_store::{Outbox, PolicyEvent, SharedOutbox};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What a drainer starts with. `Start::new(config, policy)` is a drainer
/// that runs until stopped, unrecorded; the methods change one thing each.
pub struct Start<'a> {
    config: &'a Config,
    policy: &'a PolicyChoice,
    exit_when_drained: bool,
    record: Option<&'a Path>,
    ack_latency: Option<AckObserver>,
    verifier: Option<Arc<dyn Verifier>>,
}

impl<'a> Start<'a> {
    pub fn new(config: &'a Config, policy: &'a PolicyChoice) -> Start<'a> {
        Start {
            config,
            policy,
            exit_when_drained: false,
            record: None,
            ack_latency: None,
            verifier: None,
        }
    }

    /// Stop once nothing is due (`sluice run --exit-when-drained`, the demo).
    pub fn exit_when_drained(mut self, exit: bool) -> Start<'a> {
        self.exit_when_drained = exit;
        self
    }

    /// Write a trace to this file; recording runs a single loop, so the
    /// trace is one sequence of ticks.
    pub fn record(mut self, path: Option<&'a Path>) -> Start<'a> {
        self.record = path;
        self
    }

    /// Tell `observer` each acked send's latency, from every link
    /// (`sluice run --metrics`).
    pub fn ack_latency(mut self, observer: Option<AckObserver>) -> Start<'a> {
        self.ack_latency = observer;
        self
    }

    /// What replays `--verify`'s traces against a candidate before a hot
    /// swap (the binary gives the lab's). Without one, a config that names
    /// `verify` is refused at start rather than swapped unverified.
    pub fn verifier(mut self, verifier: Arc<dyn Verifier>) -> Start<'a> {
        self.verifier = Some(verifier);
        self
    }

    /// Assembles the drainer; nothing runs until [`Daemon::run`].
    pub fn start(self) -> anyhow::Result<Daemon> {
        let config = self.config;
        let verify = match (&config.verify, &self.verifier) {
            (Some(dir), Some(verifier)) => Some((dir.clone(), Arc::clone(verifier))),
            (Some(dir), None) => anyhow::bail!(
                "verify = {} is set, but this drainer was assembled without a trace verifier, so no swapped-in policy could be checked against it; give daemon::Start::verifier one (the sluice binary gives sluice_lab::validate::TraceVerifier), or leave verify unset",
                dir.display()
            ),
            (None, _) => None,
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sluice-io")
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let (meta, slot) = self.policy_slot()?;
        let store = Arc::new(SharedOutbox::open(&config.outbox)?);
        let checkpointer = store.start_checkpointer()?;
        let (drainer_slot, slot_lock) = take_slot(&config.outbox);
        let links = {
            let _guard = runtime.enter();
            let options = LinkOptions {
                cwd: config.cwd.clone(),
                ack_latency: self.ack_latency.clone(),
                ..LinkOptions::default()
            };
            let meshes = meshes_for_slot(config, drainer_slot);
            Links::start(meshes, config.sessions.clone(), options)
        };
        let host = |store: &Arc<SharedOutbox>| {
            HostWorld::new(Arc::clone(store), links.clone(), runtime.handle().clone())
        };
        let mut signals = Signals::default();
        let drains = self.loops(&meta, slot.as_ref(), || host(&store), &mut signals)?;
        let reload = reloader(config, &links, runtime.handle());
        let status_file = linkstatus::own_path(&config.outbox);
        runtime.spawn(watch_links(
            links.clone(),
            signals.clone(),
            status_file.clone(),
        ));
        let wake = match WakeListener::bind(&config.outbox, signals.clone(), reload.clone()) {
            Ok(listener) => Some(listener),
            Err(e) => {
                tracing::warn!(target: "sluice", "no wake socket for {} ({e}): rows enqueued by sluice wait for the poll interval", config.outbox.display());
                None
            }
        };
        let (watcher, control) = match &slot {
            Some(slot) => {
                let candidates = Candidates::new(slot, &signals, config, verify);
                swap_sources(candidates, self.policy, config, runtime.handle())
            }
            None => (None, None),
        };
        Ok(Daemon {
            drains,
            links,
            meta,
            signals,
            reload,
            status_file,
            _slot: slot_lock,
            runtime,
            _wake: wake,
            _checkpointer: checkpointer,
            _watcher: watcher,
            _control: control,
            slot,
        })
    }

    /// The policy and the slot that holds it while it runs (none for the
    /// natively linked baseline).
    fn policy_slot(&self) -> anyhow::Result<(PolicyMeta, Option<Arc<PolicySlot>>)> {
        let config = self.config;
        let (meta, engine) = load_policy(self.policy, config)?;
        let slot = match engine {
            Some(engine) => Some(PolicySlot::new(
                engine,
                config.rollback_after_traps,
                audit_trail(&config.outbox)?,
            )),
            None => None,
        };
        Ok((meta, slot))
    }

    /// One loop per batch in flight (one when recording), each with its own
    /// guarded world from `host`, and the first with the trace.
    fn loops(
        &self,
        meta: &PolicyMeta,
        slot: Option<&Arc<PolicySlot>>,
        host: impl Fn() -> HostWorld,
        signals: &mut Signals,
    ) -> anyhow::Result<Vec<Drain>> {
        let config = self.config;
        let loops = if self.record.is_some() {
            1
        } else {
            config.batches_in_flight
        };
        let mut drains = Vec::with_capacity(loops);
        for i in 0..loops {
            let writer = if i == 0 {
                trace_writer(self.record, meta, config)?
            } else {
                None
            };
            let guard = if config.unguarded {
                Guard::disabled(host())
            } else {
                Guard::new(host())
            };
            let world = Recorder::new(guard, writer);
            let runner = match slot.and_then(|slot| slot.live()) {
                Some((_, engine)) => Runner::Component(Box::new(engine.runner(world)?)),
                None => Runner::Native {
                    world: Box::new(world),
                    settings: Settings::from_pairs(
                        &config.policy.for_policy(sluice_policy::POLICY_NAME),
                    )
                    .map_err(|e| anyhow::anyhow!(e.0))?,
                    claim: sluice_policy::ClaimSize::default(),
                },
            };
            let options = DrainOptions {
                poll_interval: config.poll_interval,
                exit_when_drained: self.exit_when_drained,
            };
            let mut drain = Drain::new(runner, options, signals.subscribe());
            if let Some(slot) = slot {
                drain.follow(Arc::clone(slot));
            }
            drains.push(drain);
        }
        for (i, drain) in drains.iter_mut().enumerate() {
            drain.set_siblings(signals.siblings_of(i));
        }
        Ok(drains)
    }
}

/// Reads the config again and applies its sessions (SIGHUP, `sluice
/// session`). Called from the wake socket's thread: new links are spawned
/// on the runtime, so it enters it first.
fn reloader(config: &Config, links: &Links, runtime: &tokio::runtime::Handle) -> Reload {
    let (path, links) = (config.path.clone(), links.clone());
    let handle = runtime.clone();
    Arc::new(move || {
        let _runtime = handle.enter();
        reload_sessions(&path, &links);
    })
}

/// Drainers on one outbox at once, each with its own derived `sessionId`.
const SLOTS_MAX: usize = 64;

/// The lowest free drainer slot of `outbox`, held by a file lock for as long
/// as the returned file lives. The real broker lets one connection per
/// `sessionId` live (a second hello replaces the first), so two drainers on
/// one config must not share an id; yet a restarted drainer should get its
/// old id back (the broker reattaches it). Slot 0 is the first drainer's,
/// and a restart finds it free again.
fn take_slot(outbox: &Path) -> (usize, Option<std::fs::File>) {
    let dir = crate::wake::wake_dir(outbox);
    if std::fs::create_dir_all(&dir).is_err() {
        return (0, None);
    }
    for slot in 0..SLOTS_MAX {
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("slot-{slot}.lock")))
        else {
            return (0, None);
        };
        if file.try_lock().is_ok() {
            return (slot, Some(file));
        }
    }
    tracing::warn!(target: "sluice", "more than {SLOTS_MAX} drainers on {}: sessionIds may be shared", outbox.display());
    (0, None)
}

/// The meshes with the derived `sessionId`s of drainer `slot` (slot 0 keeps
/// them as derived; a configured `session_id` is never changed).
fn meshes_for_slot(config: &Config, slot: usize) -> Vec<sluice_links::MeshConfig> {
    let mut meshes = config.meshes.clone();
    if slot > 0 {
        for (mesh, derived) in meshes.iter_mut().zip(&config.derived_session_ids) {
            if *derived {
                mesh.session_id = format!("{}-{slot}", mesh.session_id);
            }
        }
    }
    meshes
}

/// The audit trail of `outbox`: each policy that goes live is appended to
/// its history table, through a connection of its own.
fn audit_trail(outbox: &Path) -> anyhow::Result<Audit> {
    let history = Mutex::new(Outbox::open(outbox)?);
    Ok(Box::new(move |meta, reason| {
        let event = PolicyEvent {
            sha256: meta.sha256.clone(),
            name: meta.name.clone(),
            version: meta.version.clone(),
            source: meta.source.clone(),
            loaded_at: crate::world::now_ms(),
            reason: reason.to_string(),
        };
        let mut history = history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(e) = history.record_policy(&event) {
            tracing::error!(target: "sluice", "could not record {} in the policy history: {e}", meta.name);
        }
    }))
}

fn trace_writer(
    record: Option<&Path>,
    meta: &PolicyMeta,
    config: &Config,
) -> anyhow::Result<Option<TraceWriter>> {
    let Some(path) = record else { return Ok(None) };
    let id = PolicyId::from(meta);
    // The settings the policy was configured with: its own table's.
    let settings = config.policy.for_policy(&meta.name);
    let writer = TraceWriter::create(path, &Header::new(id, settings))
        .with_context(|| format!("creating trace file {}", path.display()))?;
    Ok(Some(writer))
}

fn load_policy(
    policy: &PolicyChoice,
    config: &Config,
) -> anyhow::Result<(PolicyMeta, Option<PolicyEngine>)> {
    let settings = &config.policy;
    let engine = match policy {
        PolicyChoice::Embedded => {
            PolicyEngine::load_default(settings.for_policy(sluice_policy::POLICY_NAME))?
        }
        PolicyChoice::File(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading policy file {}", path.display()))?;
            PolicyEngine::load_for(&path.display().to_string(), &bytes, settings)?
        }
        PolicyChoice::Native => return Ok((PolicyMeta::native(), None)),
    };
    Ok((engine.meta().clone(), Some(engine)))
}
