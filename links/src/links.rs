//! The registry of links: what the host calls.
//!
//! Owns: starting one daemon link per mesh (with its TLS setup and send
//! budget), states, budgets, reports, the change counter, waiting for the
//! links to open, and shutdown. Does not own: session links (`sessions`),
//! routing a batch (`route`), sockets (`link`, `connection`), nor any
//! judgement of a result: the policy classifies, the host only reports.

use crate::budget::{Budget, MeshBudget, UNLIMITED_REFUSED_PAUSE};
use crate::config::{ACK_TIMEOUT_MAX, LinkOptions, LinkState, MeshConfig, SessionLinkConfig};
use crate::handle::{LinkHandle, LinkPlan, Shared, spawn_link};
use crate::hello::Greeting;
use crate::report::LinkReport;
use crate::sessions::Sessions;
use crate::tls::Tls;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

/// The daemon link of every configured mesh and the session links of the
/// registered sessions. Cheap to clone; all clones share the same links.
/// Dropping the last clone stops the link tasks.
#[derive(Clone)]
pub struct Links {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// In config order, which `meshes()`, `states()` and `mesh_budgets()` keep.
    pub daemons: Vec<Daemon>,
    pub by_slug: HashMap<String, usize>,
    /// std's Mutex: held for map operations, never across an await.
    pub sessions: Mutex<Sessions>,
    pub shared: Shared,
    /// Becomes true at shutdown; daemon links watch it.
    pub shutdown: watch::Sender<bool>,
    /// std's Mutex: held only to take the handles, never across an await.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A mesh's daemon link and what its session links share with it.
pub(crate) struct Daemon {
    pub handle: LinkHandle,
    pub mesh: Arc<MeshConfig>,
    pub tls: Tls,
    pub budget: Budget,
    /// Set once the misconfigured-unlimited warning was logged.
    pub warned_unlimited: AtomicBool,
}

impl Inner {
    pub(crate) fn sessions(&self) -> MutexGuard<'_, Sessions> {
        // Every update of the map is a single insert or remove: still whole.
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The daemon link of `slug` (the first, if listed twice).
    pub(crate) fn daemon(&self, slug: &str) -> Option<&Daemon> {
        self.by_slug.get(slug).map(|&index| &self.daemons[index])
    }
}

impl Links {
    /// Starts one task per mesh and one per session; each connects, says
    /// hello and reconnects by itself. Must be called inside a tokio runtime
    /// (it spawns; outside one it panics), e.g. under `runtime.enter()`.
    pub fn start(
        meshes: Vec<MeshConfig>,
        sessions: Vec<SessionLinkConfig>,
        options: LinkOptions,
    ) -> Links {
        let shared = Shared {
            // Shared, not cloned per link: every link presents itself alike.
            options: Arc::new(options),
            changes: Arc::new(watch::channel(0).0),
            retry: Arc::new(Notify::new()),
        };
        let (shutdown, _) = watch::channel(false);
        let mut daemons = Vec::with_capacity(meshes.len());
        let mut by_slug = HashMap::new();
        let mut tasks = Vec::with_capacity(meshes.len());
        for mesh in meshes {
            if by_slug.contains_key(&mesh.slug) {
                tracing::warn!(target: "sluice", mesh = %mesh.slug, "mesh listed twice; rows for it use the first entry");
            } else {
                by_slug.insert(mesh.slug.clone(), daemons.len());
            }
            let mesh = Arc::new(mesh);
            let tls = Tls::for_mesh(&mesh);
            let budget = Budget::new(mesh.rate_limit_per_minute, mesh.rate_limit_burst);
            let plan = LinkPlan {
                mesh: Arc::clone(&mesh),
                tls: tls.clone(),
                greeting: Greeting::Daemon,
            };
            let (handle, task) = spawn_link(plan, &shared, shutdown.subscribe());
            tasks.push(task);
            daemons.push(Daemon {
                handle,
                mesh,
                tls,
                budget,
                warned_unlimited: AtomicBool::new(false),
            });
        }
        let links = Links {
            inner: Arc::new(Inner {
                daemons,
                by_slug,
                sessions: Mutex::new(Sessions::default()),
                shared,
                shutdown,
                tasks: Mutex::new(tasks),
            }),
        };
        if !sessions.is_empty() {
            links.set_sessions(sessions);
        }
        links
    }

    /// Every link waiting to reconnect tries now, instead of at the end of
    /// its delay; each attempt reads its mesh's `ca_file` again (SIGHUP
    /// after a broker's certificate changed).
    pub fn retry_now(&self) {
        self.inner.shared.retry.notify_waiters();
    }

    /// Mesh slugs, in config order.
    pub fn meshes(&self) -> Vec<String> {
        self.inner
            .daemons
            .iter()
            .map(|daemon| daemon.mesh.slug.clone())
            .collect()
    }

    /// Each daemon link's state, in config order.
    pub fn states(&self) -> Vec<(String, LinkState)> {
        self.inner
            .daemons
            .iter()
            .map(|daemon| (daemon.mesh.slug.clone(), daemon.handle.state()))
            .collect()
    }

    /// Each mesh's send budget as the broker keeps it, mirrored, in config
    /// order.
    pub fn mesh_budgets(&self) -> Vec<MeshBudget> {
        self.inner
            .daemons
            .iter()
            .map(|daemon| {
                let (tokens, next_token_in, per_minute, burst) = daemon.budget.read();
                MeshBudget {
                    slug: daemon.mesh.slug.clone(),
                    state: daemon.handle.state(),
                    tokens,
                    next_token_in,
                    per_minute,
                    burst,
                }
            })
            .collect()
    }

    /// The broker said this member's bucket is empty (a `rate_limit`
    /// rejection): the mirror drops to zero tokens now.
    pub fn throttle(&self, slug: &str) {
        match self.inner.daemon(slug) {
            Some(daemon) => {
                daemon.budget.empty();
                if daemon.mesh.rate_limit_per_minute == 0
                    && !daemon.warned_unlimited.swap(true, Ordering::Relaxed)
                {
                    tracing::warn!(
                        target: "sluice",
                        mesh = slug,
                        "the broker refused this member for its send rate, but the config says rate_limit_per_minute = 0 (no limit): sends pause {UNLIMITED_REFUSED_PAUSE:?} after each refusal. Fix: set rate_limit_per_minute and rate_limit_burst to the broker's (the claudemesh broker's are 60 and 10) so the drain paces itself"
                    );
                }
            }
            None => {
                tracing::debug!(target: "sluice", mesh = slug, "throttle for a mesh with no link")
            }
        }
    }

    /// Every daemon link (config order), then every session link (by public
    /// key), for `sluice status`.
    pub fn reports(&self) -> Vec<LinkReport> {
        let mut reports: Vec<LinkReport> = self
            .inner
            .daemons
            .iter()
            .map(|daemon| daemon.handle.report())
            .collect();
        reports.extend(self.inner.sessions().reports());
        reports
    }

    /// Bumped on every state change of any link, on every new kind of
    /// failure, and by `set_sessions`: the host wakes its loops and rewrites
    /// its status file.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.shared.changes.subscribe()
    }

    /// Waits until every daemon link is open; false when `timeout` passes
    /// first or a link is closed for good.
    pub async fn wait_open(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout.min(ACK_TIMEOUT_MAX);
        for daemon in &self.inner.daemons {
            let mut status = daemon.handle.watch();
            let settled = timeout_at(
                deadline,
                status.wait_for(|s| s.state != LinkState::Connecting),
            )
            .await;
            match settled {
                Ok(Ok(status)) if status.state == LinkState::Open => {}
                _ => return false,
            }
        }
        true
    }

    /// Stops every link, session links too: sends still waiting fail with
    /// `link_closed`, each socket gets a close frame, and the states become
    /// `Closed`. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        let mut tasks = self.inner.sessions().close();
        tasks.append(&mut std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        ));
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(target: "sluice", "a broker link task failed: {e}");
            }
        }
    }
}
