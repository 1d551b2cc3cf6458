//! Session links: one per registered session key, started, stopped and
//! restarted as the set of sessions changes.
//!
//! Owns: the map of session links by public key, `set_sessions` (start the
//! new, stop the removed, restart the changed), refusing a session whose
//! mesh has no daemon link or whose attestation lifetime the broker would
//! refuse, and `session_states`. Does not own: a session link's life
//! (`link`, the same machinery as daemon links) or routing (`route`).

use crate::config::{ATTESTATION_TTL_MAX, LinkState, SessionLinkConfig};
use crate::handle::{LinkHandle, LinkPlan, spawn_link};
use crate::hello::Greeting;
use crate::links::{Inner, Links};
use crate::report::LinkReport;
use sluice_contract::SessionState;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// One running session link.
struct Session {
    config: SessionLinkConfig,
    handle: LinkHandle,
    /// Its own stop switch: removing one session stops only its link.
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Session {
    /// Whether `wanted` is this link as configured, or needs a restart.
    fn same_as(&self, wanted: &SessionLinkConfig) -> bool {
        self.config.mesh == wanted.mesh
            && self.config.session_id == wanted.session_id
            && self.config.attestation_ttl == wanted.attestation_ttl
    }
}

/// The session links, by session public key (ordered: reports and stops
/// come in a fixed order).
#[derive(Default)]
pub(crate) struct Sessions {
    by_pubkey: BTreeMap<String, Session>,
    /// Tasks of removed links still closing their socket; awaited at
    /// shutdown, reaped as they finish.
    stopping: Vec<JoinHandle<()>>,
    /// Set by shutdown: no session link starts after it.
    closed: bool,
}

impl Sessions {
    /// The queue of the open link of `pubkey` and the mesh whose budget its
    /// sends spend, or why there is none.
    pub(crate) fn open_link(
        &self,
        pubkey: &str,
    ) -> Result<(mpsc::Sender<crate::connection::Batch>, String), String> {
        match self.by_pubkey.get(pubkey) {
            None => Err("link_not_open: no session link".to_string()),
            Some(session) if session.handle.state() == LinkState::Open => {
                Ok((session.handle.commands.clone(), session.config.mesh.clone()))
            }
            Some(_) => Err("link_not_open".to_string()),
        }
    }

    pub(crate) fn reports(&self) -> Vec<LinkReport> {
        self.by_pubkey
            .values()
            .map(|session| session.handle.report())
            .collect()
    }

    /// Stops every session link for good; returns every task to await.
    pub(crate) fn close(&mut self) -> Vec<JoinHandle<()>> {
        self.closed = true;
        let mut tasks = std::mem::take(&mut self.stopping);
        for (_, session) in std::mem::take(&mut self.by_pubkey) {
            session.stop.send_replace(true);
            tasks.push(session.task);
        }
        tasks
    }

    fn remove(&mut self, pubkey: &str) {
        if let Some(session) = self.by_pubkey.remove(pubkey) {
            session.stop.send_replace(true);
            self.stopping.push(session.task);
        }
    }
}

impl Links {
    /// Replaces the set of session links: new keys start, removed ones stop
    /// (their waiting sends fail `link_closed`, and they read as `Absent` at
    /// once), a changed entry (same key, other session_id, mesh or
    /// attestation_ttl) restarts. A session whose mesh has no daemon link
    /// config, or whose attestation_ttl is zero or over 24 h, is refused with
    /// a logged error. A key listed twice uses its first entry.
    pub fn set_sessions(&self, sessions: Vec<SessionLinkConfig>) {
        let inner = &*self.inner;
        let mut wanted: BTreeMap<String, SessionLinkConfig> = BTreeMap::new();
        for session in sessions {
            let pubkey = session.key.public_hex();
            if let Err(problem) = check_session(inner, &session) {
                tracing::error!(target: "sluice", mesh = %session.mesh, session = %pubkey, "session link refused: {problem}");
                continue;
            }
            match wanted.entry(pubkey) {
                Entry::Vacant(entry) => {
                    entry.insert(session);
                }
                Entry::Occupied(entry) => {
                    tracing::warn!(target: "sluice", session = %entry.key(), "session listed twice; its link uses the first entry");
                }
            }
        }
        let mut current = inner.sessions();
        if current.closed {
            tracing::debug!(target: "sluice", "set_sessions after shutdown: no session link starts");
            return;
        }
        current.stopping.retain(|task| !task.is_finished());
        let stale: Vec<String> = current
            .by_pubkey
            .iter()
            .filter(|(pubkey, session)| wanted.get(*pubkey).is_none_or(|w| !session.same_as(w)))
            .map(|(pubkey, _)| pubkey.clone())
            .collect();
        for pubkey in &stale {
            current.remove(pubkey);
        }
        for (pubkey, config) in wanted {
            if current.by_pubkey.contains_key(&pubkey) {
                continue;
            }
            if let Some(session) = start_session(inner, config) {
                current.by_pubkey.insert(pubkey, session);
            }
        }
        drop(current);
        inner
            .shared
            .changes
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    /// For each session public key: `Absent` when no session link is
    /// registered for it, `Open` when its link is open, else `Connecting`
    /// (an `Unsupported` link too: its rows wait, they are not orphans).
    pub fn session_states(&self, pubkeys: &[String]) -> Vec<SessionState> {
        let sessions = self.inner.sessions();
        pubkeys
            .iter()
            .map(|pubkey| match sessions.by_pubkey.get(pubkey) {
                None => SessionState::Absent,
                Some(session) if session.handle.state() == LinkState::Open => SessionState::Open,
                Some(_) => SessionState::Connecting,
            })
            .collect()
    }
}

fn check_session(inner: &Inner, session: &SessionLinkConfig) -> Result<(), String> {
    if inner.daemon(&session.mesh).is_none() {
        return Err(format!(
            "its mesh {:?} has no daemon link config; add the mesh to the config or fix the session's mesh",
            session.mesh
        ));
    }
    if session.attestation_ttl.is_zero() || session.attestation_ttl > ATTESTATION_TTL_MAX {
        return Err(format!(
            "attestation_ttl {:?} is outside (0, 24 h], which the broker refuses; leave it unset for 12 h",
            session.attestation_ttl
        ));
    }
    Ok(())
}

fn start_session(inner: &Inner, config: SessionLinkConfig) -> Option<Session> {
    let daemon = inner.daemon(&config.mesh)?;
    let (stop, stopped) = watch::channel(false);
    let plan = LinkPlan {
        mesh: Arc::clone(&daemon.mesh),
        tls: daemon.tls.clone(),
        greeting: Greeting::Session(Box::new(config.clone())),
    };
    let (handle, task) = spawn_link(plan, &inner.shared, stopped);
    Some(Session {
        config,
        handle,
        stop,
        task,
    })
}
