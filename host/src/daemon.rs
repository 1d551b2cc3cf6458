//! Assembles a running drainer: outbox, links, policy and loop.
//!
//! `sluice run`, `sluice demo` and the benchmark all start here, so they run
//! the same code; they differ only in where the configuration comes from.

use crate::config::Config;
use crate::drain::{Drain, DrainOptions, Runner, Signal, Totals};
use crate::engine::{PolicyEngine, PolicyMeta};
use crate::trace::{Header, PolicyId, Recorder, TraceWriter};
use crate::wake::WakeListener;
use crate::world::HostWorld;
use anyhow::Context as _;
use sluice_links::{LinkOptions, Links};
use sluice_policy::Settings;
use sluice_store::{Checkpointer, Outbox};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};
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

/// A drainer ready to run.
pub struct Daemon {
    pub drain: Drain,
    pub links: Links,
    pub meta: PolicyMeta,
    signals: Sender<Signal>,
    runtime: tokio::runtime::Runtime,
    _wake: Option<WakeListener>,
    _checkpointer: Checkpointer,
}

/// What a run did, for the summary line.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub totals: Totals,
    pub elapsed: Duration,
    /// Peak resident set size of this process, when the OS reports it.
    pub peak_rss_bytes: Option<u64>,
}

impl RunSummary {
    /// Rows settled (done or dead, expiry included) per second of run time.
    pub fn rows_per_second(&self) -> f64 {
        let settled = self.totals.done + self.totals.dead + self.totals.expired;
        settled as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl Daemon {
    /// Assembles a drainer; `record` names a trace file to write.
    pub fn start(config: &Config, policy: &PolicyChoice, exit_when_drained: bool, record: Option<&Path>) -> anyhow::Result<Daemon> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sluice-io")
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let (signals, receiver) = channel();
        let (meta, engine) = load_policy(policy, config)?;
        let mut outbox = Outbox::open(&config.outbox)?;
        let checkpointer = outbox.start_checkpointer()?;
        let links = {
            let _guard = runtime.enter();
            Links::start(config.meshes.clone(), LinkOptions::default())
        };
        let wake = match WakeListener::bind(&config.outbox, signals.clone()) {
            Ok(listener) => Some(listener),
            Err(e) => {
                tracing::warn!(target: "sluice", "no wake socket for {} ({e}): rows enqueued by sluice wait for the poll interval", config.outbox.display());
                None
            }
        };
        let writer = match record {
            Some(path) => {
                let header = Header::new(PolicyId { name: meta.name.clone(), version: meta.version.clone(), sha256: meta.sha256.clone() }, config.policy.clone());
                Some(TraceWriter::create(path, &header).with_context(|| format!("creating trace file {}", path.display()))?)
            }
            None => None,
        };
        let world = Recorder::new(HostWorld::new(outbox, links.clone(), runtime.handle().clone()), writer);
        let runner = match engine {
            Some(engine) => Runner::Component(engine.runner(world)?),
            None => Runner::Native { world, settings: Settings::from_pairs(&config.policy).map_err(|e| anyhow::anyhow!(e.0))? },
        };
        let options = DrainOptions { poll_interval: config.poll_interval, exit_when_drained };
        let drain = Drain::new(runner, options, receiver);
        Ok(Daemon { drain, links, meta, signals, runtime, _wake: wake, _checkpointer: checkpointer })
    }

    /// A sender that wakes or stops the loop (signal handlers, tests).
    pub fn signals(&self) -> Sender<Signal> {
        self.signals.clone()
    }

    /// Stops the loop on SIGINT or SIGTERM, after the current tick.
    pub fn stop_on_signals(&self) {
        let signals = self.signals.clone();
        self.runtime.spawn(async move {
            let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else { return };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!(target: "sluice", "stopping after the current tick");
            let _ = signals.send(Signal::Stop);
        });
    }

    /// Runs until stopped or drained; then closes the links.
    pub fn run(&mut self) -> RunSummary {
        let links = self.links.clone();
        if !self.runtime.block_on(links.wait_open(LINKS_OPEN_WAIT)) && !self.links.meshes().is_empty() {
            tracing::warn!(target: "sluice", "not every broker link opened within {LINKS_OPEN_WAIT:?}; draining anyway");
        }
        let started = Instant::now();
        let totals = self.drain.run().clone();
        let elapsed = started.elapsed();
        self.runtime.block_on(links.shutdown());
        if let Err(e) = self.drain.runner_mut().recorder().finish() {
            tracing::error!(target: "sluice", "the trace is incomplete: {e}");
        }
        RunSummary { totals, elapsed, peak_rss_bytes: peak_rss_bytes() }
    }
}

fn load_policy(policy: &PolicyChoice, config: &Config) -> anyhow::Result<(PolicyMeta, Option<PolicyEngine>)> {
    let settings = config.policy.clone();
    let engine = match policy {
        PolicyChoice::Embedded => PolicyEngine::load_default(settings)?,
        PolicyChoice::File(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("reading policy file {}", path.display()))?;
            PolicyEngine::load(&path.display().to_string(), &bytes, settings)?
        }
        PolicyChoice::Native => {
            let meta = PolicyMeta {
                source: "linked natively".into(),
                name: sluice_policy::POLICY_NAME.into(),
                version: sluice_policy::POLICY_VERSION.into(),
                sha256: "-".into(),
            };
            return Ok((meta, None));
        }
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
