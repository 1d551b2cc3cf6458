//! Assembles a running drainer: outbox, links, policy and loop.
//!
//! `sluice run`, `sluice demo` and the benchmark all start here, so they run
//! the same code; they differ only in where the configuration comes from.

use crate::config::Config;
use crate::control::{self, ControlServer, LoadRequest};
use crate::drain::{
    Drain, DrainOptions, Runner, Signal, Signals, TickObserver, TickTimer, Totals,
    ViolationObserver,
};
use crate::engine::{PolicyEngine, PolicyMeta};
use crate::guard::Guard;
use crate::linkstatus;
use crate::policy_settings::PolicySettings;
use crate::swap::{Audit, PolicySlot};
use crate::trace::{Header, PolicyId, Recorder, TraceWriter};
use crate::wake::{Reload, WakeListener};
use crate::watch::PolicyWatcher;
use crate::world::{HostWorld, SettleObserver};
use anyhow::Context as _;
use sluice_links::{AckObserver, LinkOptions, Links};
use sluice_policy::Settings;
use sluice_store::PolicyEvent;
use sluice_store::{Checkpointer, Outbox, SharedOutbox};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which policy drives the loop.
#[derive(Clone, Debug)]
pub enum PolicyChoice {
    /// The default policy embedded in the binary, run as a component.
    Embedded,
    /// A component file.
    File(PathBuf),
    /// The default policy crate linked natively (the benchmark's baseline).
    Native,
}

/// How long the first tick waits for the daemon links to open, so a fresh
/// start does not turn every row into a `link_not_open` retry.
const LINKS_OPEN_WAIT: Duration = Duration::from_secs(5);

/// A drainer ready to run: one loop per batch in flight, sharing the links.
pub struct Daemon {
    drains: Vec<Drain>,
    pub links: Links,
    pub meta: PolicyMeta,
    signals: Signals,
    /// Reads the config again and applies its sessions (SIGHUP, `sluice session`).
    reload: Reload,
    status_file: PathBuf,
    /// Held while running: which derived `sessionId` this drainer uses.
    _slot: Option<std::fs::File>,
    runtime: tokio::runtime::Runtime,
    _wake: Option<WakeListener>,
    _watcher: Option<PolicyWatcher>,
    _control: Option<ControlServer>,
    /// The live policy, swappable while running (None for the natively
    /// linked baseline).
    pub slot: Option<Arc<PolicySlot>>,
    _checkpointer: Checkpointer,
}

/// What a run did, for the summary line.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub totals: Totals,
    pub elapsed: Duration,
    /// Peak resident set size of this process, when the OS reports it.
    pub peak_rss_bytes: Option<u64>,
    /// Why the run stopped early: the outbox was found corrupt.
    pub corrupt: Option<String>,
}

impl RunSummary {
    /// Rows settled (done or dead, expiry included) per second of run time.
    pub fn rows_per_second(&self) -> f64 {
        let settled = self.totals.done + self.totals.dead + self.totals.expired;
        settled as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl Daemon {
    /// Assembles a drainer; `record` names a trace file to write (recording
    /// runs a single loop, so the trace is one sequence of ticks).
    pub fn start(
        config: &Config,
        policy: &PolicyChoice,
        exit_when_drained: bool,
        record: Option<&Path>,
    ) -> anyhow::Result<Daemon> {
        Daemon::start_observed(config, policy, exit_when_drained, record, None)
    }

    /// Like [`Daemon::start`], with `ack_latency` told each acked send's
    /// latency by every link (`sluice run --metrics`).
    pub fn start_observed(
        config: &Config,
        policy: &PolicyChoice,
        exit_when_drained: bool,
        record: Option<&Path>,
        ack_latency: Option<AckObserver>,
    ) -> anyhow::Result<Daemon> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sluice-io")
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let (meta, engine) = load_policy(policy, config)?;
        let slot = match engine {
            Some(engine) => Some(PolicySlot::new(
                engine,
                config.rollback_after_traps,
                audit_trail(&config.outbox)?,
            )),
            None => None,
        };
        let store = Arc::new(SharedOutbox::open(&config.outbox)?);
        let checkpointer = store.start_checkpointer()?;
        let (drainer_slot, slot_lock) = take_slot(&config.outbox);
        let links = {
            let _guard = runtime.enter();
            let options = LinkOptions {
                cwd: config.cwd.clone(),
                ack_latency,
                ..LinkOptions::default()
            };
            Links::start(
                meshes_for_slot(config, drainer_slot),
                config.sessions.clone(),
                options,
            )
        };
        let loops = if record.is_some() {
            1
        } else {
            config.batches_in_flight
        };
        let mut signals = Signals::default();
        let mut drains = Vec::with_capacity(loops);
        for i in 0..loops {
            let writer = if i == 0 {
                trace_writer(record, &meta, config)?
            } else {
                None
            };
            let host = HostWorld::new(Arc::clone(&store), links.clone(), runtime.handle().clone());
            let guard = if config.unguarded {
                Guard::disabled(host)
            } else {
                Guard::new(host)
            };
            let world = Recorder::new(guard, writer);
            let runner = match slot.as_ref().and_then(|slot| slot.live()) {
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
                exit_when_drained,
            };
            let mut drain = Drain::new(runner, options, signals.subscribe());
            if let Some(slot) = &slot {
                drain.follow(Arc::clone(slot));
            }
            drains.push(drain);
        }
        for (i, drain) in drains.iter_mut().enumerate() {
            drain.set_siblings(signals.siblings_of(i));
        }
        let reload: Reload = {
            let (path, links) = (config.path.clone(), links.clone());
            let handle = runtime.handle().clone();
            // Called from the wake socket's thread: new links are spawned on
            // the runtime, so enter it first.
            Arc::new(move || {
                let _runtime = handle.enter();
                reload_sessions(&path, &links);
            })
        };
        runtime.spawn(watch_links(
            links.clone(),
            signals.clone(),
            linkstatus::own_path(&config.outbox),
        ));
        let wake = match WakeListener::bind(&config.outbox, signals.clone(), reload.clone()) {
            Ok(listener) => Some(listener),
            Err(e) => {
                tracing::warn!(target: "sluice", "no wake socket for {} ({e}): rows enqueued by sluice wait for the poll interval", config.outbox.display());
                None
            }
        };
        let (watcher, control) = match &slot {
            Some(slot) => swap_sources(slot, policy, config, runtime.handle(), &signals),
            None => (None, None),
        };
        Ok(Daemon {
            drains,
            links,
            meta,
            signals,
            reload,
            status_file: linkstatus::own_path(&config.outbox),
            _slot: slot_lock,
            runtime,
            _wake: wake,
            _checkpointer: checkpointer,
            _watcher: watcher,
            _control: control,
            slot,
        })
    }

    /// Wakes or stops every loop (signal handlers, tests).
    pub fn signals(&self) -> Signals {
        self.signals.clone()
    }

    /// Calls `make()` once per loop for an observer of that loop's ticks.
    pub fn observe(&mut self, make: impl Fn() -> TickObserver) {
        for drain in &mut self.drains {
            drain.observe(make());
        }
    }

    /// Calls `make()` once per loop for a timer of that loop's ticks.
    pub fn time_ticks(&mut self, make: impl Fn() -> TickTimer) {
        for drain in &mut self.drains {
            drain.time_ticks(make());
        }
    }

    /// Tells `observer` every committed settle of every loop.
    pub fn observe_settles(&mut self, observer: &SettleObserver) {
        for drain in &mut self.drains {
            drain.runner_mut().world().on_settle = Some(Arc::clone(observer));
        }
    }

    /// Tells `observer` the breaches of every loop's ticks.
    pub fn observe_violations(&mut self, observer: &ViolationObserver) {
        for drain in &mut self.drains {
            drain.observe_violations(Arc::clone(observer));
        }
    }

    /// The runtime the links live on (servers that run beside them).
    pub fn runtime(&self) -> tokio::runtime::Handle {
        self.runtime.handle().clone()
    }

    /// Stops the loops on SIGINT or SIGTERM, after their current tick;
    /// reads the config again on SIGHUP, and has every link waiting to
    /// reconnect try at once (reading its `ca_file` again).
    pub fn stop_on_signals(&self) {
        let signals = self.signals.clone();
        let reload = self.reload.clone();
        let links = self.links.clone();
        self.runtime.spawn(async move {
            let Ok(mut hangups) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hangups.recv().await.is_some() {
                tracing::info!(target: "sluice", "SIGHUP: reading the config again");
                let reload = reload.clone();
                // Reading a file and starting links: off the runtime's thread.
                let _ = tokio::task::spawn_blocking(move || reload()).await;
                links.retry_now();
            }
        });
        self.runtime.spawn(async move {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!(target: "sluice", "stopping after the current tick");
            signals.send(Signal::Stop);
        });
    }

    /// Runs every loop until stopped or drained; then closes the links.
    pub fn run(&mut self) -> RunSummary {
        let links = self.links.clone();
        if !self.runtime.block_on(links.wait_open(LINKS_OPEN_WAIT))
            && !self.links.meshes().is_empty()
        {
            tracing::warn!(target: "sluice", "not every broker link opened within {LINKS_OPEN_WAIT:?}; draining anyway");
        }
        let started = Instant::now();
        let mut totals = Totals::default();
        std::thread::scope(|scope| {
            let (first, rest) = self
                .drains
                .split_first_mut()
                .expect("a daemon has at least one loop");
            let others: Vec<_> = rest
                .iter_mut()
                .map(|drain| scope.spawn(move || drain.run().clone()))
                .collect();
            totals.merge(first.run());
            for other in others {
                match other.join() {
                    Ok(t) => totals.merge(&t),
                    Err(_) => tracing::error!(target: "sluice", "a drain loop panicked"),
                }
            }
        });
        let elapsed = started.elapsed();
        let corrupt = self
            .drains
            .first_mut()
            .and_then(|d| d.runner_mut().world().store.corrupt().map(str::to_string));
        self.runtime.block_on(links.shutdown());
        let _ = std::fs::remove_file(&self.status_file);
        for drain in &mut self.drains {
            if let Err(e) = drain.runner_mut().recorder().finish() {
                tracing::error!(target: "sluice", "the trace is incomplete: {e}");
            }
        }
        RunSummary {
            totals,
            elapsed,
            peak_rss_bytes: peak_rss_bytes(),
            corrupt,
        }
    }
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

/// Takes a candidate policy from either source: validates it (with the
/// settings its name picks, and `--verify`'s golden traces), installs it and
/// wakes the loops, or logs why it stays out while the running policy goes on.
#[derive(Clone)]
struct Candidates {
    slot: Arc<PolicySlot>,
    signals: Signals,
    settings: PolicySettings,
    verify: Option<PathBuf>,
}

impl Candidates {
    fn take(
        &self,
        path: &Path,
        bytes: &[u8],
        extra: &[(String, String)],
        reason: &'static str,
    ) -> Result<PolicyMeta, String> {
        let settings = self.settings.with_extra(extra);
        match crate::validate::validate(path, bytes, &settings, self.verify.as_deref()) {
            Ok(engine) => {
                let meta = self.slot.install(engine, reason);
                self.signals.send(Signal::Wake);
                Ok(meta)
            }
            Err(e) => {
                tracing::error!(target: "sluice", "policy_refused source={} {e}; the running policy goes on", path.display());
                Err(format!("{e}; the running policy goes on"))
            }
        }
    }
}

/// Where new policies come from while running: the watched `--policy` file,
/// and the control socket of `sluice policy load`; both through
/// [`Candidates::take`].
fn swap_sources(
    slot: &Arc<PolicySlot>,
    policy: &PolicyChoice,
    config: &Config,
    runtime: &tokio::runtime::Handle,
    signals: &Signals,
) -> (Option<PolicyWatcher>, Option<ControlServer>) {
    let candidates = Candidates {
        slot: Arc::clone(slot),
        signals: signals.clone(),
        settings: config.policy.clone(),
        verify: config.verify.clone(),
    };
    let watcher = match policy {
        PolicyChoice::File(path) => {
            let (candidates, shown) = (candidates.clone(), path.clone());
            let started = PolicyWatcher::start(path, move |bytes| {
                // A refusal is logged; the watcher waits for the next change.
                let _ = candidates.take(&shown, &bytes, &[], "file change");
            });
            match started {
                Ok(watcher) => Some(watcher),
                Err(e) => {
                    tracing::warn!(target: "sluice", "cannot watch {} ({e}): a new version is picked up only by `sluice policy load`", path.display());
                    None
                }
            }
        }
        _ => None,
    };
    let handler: control::Handler = Arc::new(move |request: LoadRequest| {
        let bytes = std::fs::read(&request.load)
            .map_err(|e| format!("cannot read policy file {}: {e}", request.load.display()))?;
        let meta = candidates.take(&request.load, &bytes, &request.settings, "load command")?;
        Ok(format!(
            "{} {} is live (sha256 {})",
            meta.name, meta.version, meta.sha256
        ))
    });
    let control = match control::serve(runtime, &config.outbox, handler) {
        Ok(server) => Some(server),
        Err(e) => {
            tracing::warn!(target: "sluice", "no control socket ({e}): `sluice policy load` cannot reach this drainer");
            None
        }
    };
    (watcher, control)
}

/// Reads the config at `path` again and applies its sessions: new ones
/// start, removed ones stop (their rows see "absent"). Other changes need a
/// restart, and the log says so; a config that no longer parses changes
/// nothing.
fn reload_sessions(path: &Path, links: &Links) {
    match Config::load(path) {
        Ok(config) => {
            let meshes: Vec<String> = config.meshes.iter().map(|m| m.slug.clone()).collect();
            if meshes != links.meshes() {
                tracing::warn!(target: "sluice", "config reload: the [[mesh]] list changed; mesh changes take effect at the next start (sessions were reloaded)");
            }
            let count = config.sessions.len();
            links.set_sessions(config.sessions);
            tracing::info!(target: "sluice", sessions = count, "config reloaded: sessions applied");
        }
        Err(e) => {
            tracing::error!(target: "sluice", "config reload failed, keeping the running sessions: {e}")
        }
    }
}

/// On every change of a link's state: wake the loops (a link that opened has
/// rows waiting; the claim filter may have changed) and rewrite the status
/// file `sluice status` reads.
async fn watch_links(links: Links, signals: Signals, status_file: PathBuf) {
    let mut changes = links.changes();
    loop {
        if let Err(e) = linkstatus::write(&status_file, &links.reports()) {
            tracing::debug!(target: "sluice", "could not write {}: {e}", status_file.display());
        }
        signals.send(Signal::Wake);
        if changes.changed().await.is_err() {
            return;
        }
    }
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

/// `VmHWM` from `/proc/self/status`: the peak resident set size.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
