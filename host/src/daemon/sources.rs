//! Where a running drainer hears of change: new policies (the watched
//! `--policy` file and the control socket, both through one
//! [`Candidates::take`]), a config read again for its sessions, and the
//! links' state changes.

use super::PolicyChoice;
use crate::config::Config;
use crate::control::{self, ControlServer, LoadRequest};
use crate::drain::{Signal, Signals};
use crate::engine::{PolicyEngine, PolicyMeta};
use crate::linkstatus;
use crate::policy_settings::PolicySettings;
use crate::swap::{PolicySlot, Verifier};
use crate::watch::PolicyWatcher;
use sluice_links::Links;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Takes a candidate policy from either source: validates it (with the
/// settings its name picks, and `--verify`'s golden traces), installs it and
/// wakes the loops, or logs why it stays out while the running policy goes on.
#[derive(Clone)]
pub(super) struct Candidates {
    slot: Arc<PolicySlot>,
    signals: Signals,
    settings: PolicySettings,
    /// `--verify`'s directory and what replays its traces.
    verify: Option<(PathBuf, Arc<dyn Verifier>)>,
}

impl Candidates {
    pub(super) fn new(
        slot: &Arc<PolicySlot>,
        signals: &Signals,
        config: &Config,
        verify: Option<(PathBuf, Arc<dyn Verifier>)>,
    ) -> Candidates {
        Candidates {
            slot: Arc::clone(slot),
            signals: signals.clone(),
            settings: config.policy.clone(),
            verify,
        }
    }

    /// The candidate loaded with `settings` (the contract by name and shape,
    /// `info()`, `configure()`), then replayed against `--verify`'s traces.
    fn check(
        &self,
        path: &Path,
        bytes: &[u8],
        settings: &PolicySettings,
    ) -> Result<PolicyEngine, String> {
        let engine = PolicyEngine::load_for(&path.display().to_string(), bytes, settings)
            .map_err(|e| e.to_string())?;
        if let Some((dir, verifier)) = &self.verify {
            verifier.verify(path, &engine, dir)?;
        }
        Ok(engine)
    }

    fn take(
        &self,
        path: &Path,
        bytes: &[u8],
        extra: &[(String, String)],
        reason: &'static str,
    ) -> Result<PolicyMeta, String> {
        let settings = self.settings.with_extra(extra);
        match self.check(path, bytes, &settings) {
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
pub(super) fn swap_sources(
    candidates: Candidates,
    policy: &PolicyChoice,
    config: &Config,
    runtime: &tokio::runtime::Handle,
) -> (Option<PolicyWatcher>, Option<ControlServer>) {
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
pub(super) fn reload_sessions(path: &Path, links: &Links) {
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
pub(super) async fn watch_links(links: Links, signals: Signals, status_file: PathBuf) {
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
