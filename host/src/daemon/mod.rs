//! A running drainer: its loops, the links they share, and what stops,
//! wakes and observes them.
//!
//! `sluice run`, `sluice demo` and the benchmark all start one here, so they
//! run the same code; they differ only in where the configuration comes
//! from. [`Start`] (`start.rs`) assembles it a step at a time; `sources.rs`
//! is where it hears of new policies, sessions and link changes.

mod sources;
mod start;

pub use start::Start;

use crate::config::Config;
use crate::control::ControlServer;
use crate::drain::{Drain, Signal, Signals, TickObserver, TickTimer, Totals, ViolationObserver};
use crate::engine::PolicyMeta;
use crate::swap::PolicySlot;
use crate::wake::{Reload, WakeListener};
use crate::watch::PolicyWatcher;
use crate::world::SettleObserver;
use sluice_links::Links;
use sluice_store::Checkpointer;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    /// Assembles a drainer; `record` names a trace file to write (see
    /// [`Start`] for the other choices).
    pub fn start(
        config: &Config,
        policy: &PolicyChoice,
        exit_when_drained: bool,
        record: Option<&Path>,
    ) -> anyhow::Result<Daemon> {
        Start::new(config, policy)
            .exit_when_drained(exit_when_drained)
            .record(record)
            .start()
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

/// `VmHWM` from `/proc/self/status`: the peak resident set size.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
