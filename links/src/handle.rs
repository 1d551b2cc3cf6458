//! The registry's side of one link: starting its task and the handle that
//! reaches it.
//!
//! Owns: `LinkHandle` (the command queue into a link task and its published
//! status) and `spawn_link`, which wires a task's channels. Does not own:
//! the task's life (`link`) or which links exist (`links`, `sessions`).

use crate::config::{LINK_COMMANDS_MAX, LinkOptions, LinkState, MeshConfig};
use crate::connection::Batch;
use crate::hello::Greeting;
use crate::identity::now_ms;
use crate::link::LinkTask;
use crate::report::{LinkKind, LinkName, LinkReport, LinkStatus};
use crate::tls::Tls;
use crate::tracker::Tracker;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

/// How to reach a running link task.
pub(crate) struct LinkHandle {
    name: LinkName,
    pub commands: mpsc::Sender<Batch>,
    status: watch::Receiver<LinkStatus>,
}

impl LinkHandle {
    pub(crate) fn state(&self) -> LinkState {
        self.status.borrow().state
    }

    pub(crate) fn report(&self) -> LinkReport {
        self.name.report(&self.status.borrow())
    }

    /// A receiver of the status, to wait on a change.
    pub(crate) fn watch(&self) -> watch::Receiver<LinkStatus> {
        self.status.clone()
    }
}

/// What every link of the registry shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub options: Arc<LinkOptions>,
    pub changes: Arc<watch::Sender<u64>>,
    /// Wakes every link waiting out a reconnect delay to try now
    /// (`Links::retry_now`, on SIGHUP).
    pub retry: Arc<Notify>,
}

/// One link of a mesh: the mesh, how it connects, how it says hello.
pub(crate) struct LinkPlan {
    pub mesh: Arc<MeshConfig>,
    pub tls: Tls,
    pub greeting: Greeting,
}

/// Starts a link task; it runs until `shutdown` becomes true or its sender
/// is dropped. Must be called inside a tokio runtime.
pub(crate) fn spawn_link(
    plan: LinkPlan,
    shared: &Shared,
    shutdown: watch::Receiver<bool>,
) -> (LinkHandle, JoinHandle<()>) {
    let LinkPlan {
        mesh,
        tls,
        greeting,
    } = plan;
    let (commands, receiver) = mpsc::channel(LINK_COMMANDS_MAX);
    let (status, status_receiver) = watch::channel(LinkStatus::connecting(now_ms()));
    let (kind, session_pubkey) = match &greeting {
        Greeting::Daemon => (LinkKind::Daemon, None),
        Greeting::Session(session) => (LinkKind::Session, Some(session.key.public_hex())),
    };
    let name = LinkName {
        kind,
        mesh: mesh.slug.clone(),
        session_pubkey,
        url: mesh.broker_url.clone(),
    };
    let task = LinkTask {
        mesh,
        greeting,
        tls,
        options: Arc::clone(&shared.options),
        commands: receiver,
        tracker: Tracker::new(name.clone(), status, Arc::clone(&shared.changes)),
        shutdown,
        retry: Arc::clone(&shared.retry),
    };
    let handle = LinkHandle {
        name,
        commands,
        status: status_receiver,
    };
    (handle, tokio::spawn(task.run()))
}
