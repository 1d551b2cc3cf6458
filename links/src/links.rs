//! The registry of links: what the host calls.
//!
//! Owns: starting one task per mesh, routing each dispatch of a batch to its
//! link, reassembling results in dispatch order, states, shutdown. Does not
//! own: sockets (`link`, `connection`), nor any judgement of a result: the
//! policy classifies, the host only reports.

use crate::config::{
    ACK_TIMEOUT_MAX, LINK_COMMANDS_MAX, LinkOptions, LinkState, MeshConfig, REPLY_GRACE,
};
use crate::connection::Batch;
use crate::link::LinkTask;
use sluice_policy::{Dispatch, Route, SendResult, SessionState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

/// The daemon links of every configured mesh. Cheap to clone; all clones
/// share the same links. Dropping the last clone stops the link tasks.
#[derive(Clone)]
pub struct Links {
    inner: Arc<Inner>,
}

struct Inner {
    /// In config order, which `meshes()` and `states()` keep.
    links: Vec<LinkHandle>,
    by_slug: HashMap<String, usize>,
    shutdown: watch::Sender<bool>,
    /// std's Mutex: held only to take the handles, never across an await.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

struct LinkHandle {
    slug: String,
    commands: mpsc::Sender<Batch>,
    state: watch::Receiver<LinkState>,
}

impl Links {
    /// Starts one task per mesh; each connects, says hello and reconnects by
    /// itself. Must be called inside a tokio runtime (it spawns; outside one
    /// it panics), e.g. under `runtime.enter()`.
    pub fn start(meshes: Vec<MeshConfig>, options: LinkOptions) -> Links {
        // Shared, not cloned per link: every link presents itself alike.
        let options = Arc::new(options);
        let (shutdown, _) = watch::channel(false);
        let mut links = Vec::with_capacity(meshes.len());
        let mut by_slug = HashMap::new();
        let mut tasks = Vec::with_capacity(meshes.len());
        for mesh in meshes {
            let (commands, receiver) = mpsc::channel(LINK_COMMANDS_MAX);
            let (state, state_receiver) = watch::channel(LinkState::Connecting);
            let slug = mesh.slug.clone();
            if by_slug.contains_key(&slug) {
                tracing::warn!(target: "sluice", mesh = %slug, "mesh listed twice; rows for it use the first entry");
            } else {
                by_slug.insert(slug.clone(), links.len());
            }
            let task = LinkTask {
                mesh,
                options: Arc::clone(&options),
                commands: receiver,
                state,
                shutdown: shutdown.subscribe(),
            };
            tasks.push(tokio::spawn(task.run()));
            links.push(LinkHandle {
                slug,
                commands,
                state: state_receiver,
            });
        }
        Links {
            inner: Arc::new(Inner {
                links,
                by_slug,
                shutdown,
                tasks: Mutex::new(tasks),
            }),
        }
    }

    /// Mesh slugs, in config order.
    pub fn meshes(&self) -> Vec<String> {
        self.inner
            .links
            .iter()
            .map(|link| link.slug.clone())
            .collect()
    }

    /// Session links come in a later issue: until then every key is `Absent`.
    pub fn session_states(&self, pubkeys: &[String]) -> Vec<SessionState> {
        vec![SessionState::Absent; pubkeys.len()]
    }

    /// Each link's state, in config order.
    pub fn states(&self) -> Vec<(String, LinkState)> {
        self.inner
            .links
            .iter()
            .map(|link| (link.slug.clone(), *link.state.borrow()))
            .collect()
    }

    /// Sends every dispatch, concurrently and pipelined per link, and returns
    /// one result per dispatch in dispatch order. Dispatches for a link that
    /// is not open fail at once (`link_not_open…`); the others wait for their
    /// ack up to `ack_timeout` (capped at `ACK_TIMEOUT_MAX`).
    pub async fn send_batch(
        &self,
        dispatches: Vec<Dispatch>,
        ack_timeout: Duration,
    ) -> Vec<SendResult> {
        let deadline = Instant::now() + ack_timeout.min(ACK_TIMEOUT_MAX);
        let mut results: Vec<Option<SendResult>> = vec![None; dispatches.len()];
        let mut groups: Vec<(Vec<usize>, Vec<Dispatch>)> = self
            .inner
            .links
            .iter()
            .map(|_| (Vec::new(), Vec::new()))
            .collect();
        // Batches are mostly one route: look a route up once per run of it.
        let mut last: Option<(Route, Result<usize, String>)> = None;
        for (index, dispatch) in dispatches.into_iter().enumerate() {
            let link = match &last {
                Some((route, link)) if *route == dispatch.route => link.clone(),
                _ => {
                    let link = self.open_link_for(&dispatch.route);
                    last = Some((dispatch.route.clone(), link.clone()));
                    link
                }
            };
            match link {
                Ok(link) => {
                    groups[link].0.push(index);
                    groups[link].1.push(dispatch);
                }
                Err(reason) => results[index] = Some(SendResult::Failed(reason)),
            }
        }
        // Hand every link its share first, then wait: the links send in
        // parallel and the batch takes as long as its slowest link.
        let mut waiting = Vec::new();
        for (link, (indices, dispatches)) in groups.into_iter().enumerate() {
            if indices.is_empty() {
                continue;
            }
            let (reply, answer) = oneshot::channel();
            let queued = timeout_at(
                deadline,
                self.inner.links[link].commands.send(Batch {
                    dispatches,
                    deadline,
                    reply,
                }),
            )
            .await;
            match queued {
                Ok(Ok(())) => waiting.push((indices, answer)),
                Ok(Err(_)) => fill(&mut results, &indices, "link_not_open"),
                Err(_) => fill(&mut results, &indices, "ack_timeout"),
            }
        }
        for (indices, answer) in waiting {
            match timeout_at(deadline + REPLY_GRACE, answer).await {
                Ok(Ok(answers)) if answers.len() == indices.len() => {
                    for (index, result) in indices.into_iter().zip(answers) {
                        results[index] = Some(result);
                    }
                }
                _ => fill(&mut results, &indices, "link_closed"),
            }
        }
        results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| SendResult::Failed("link_closed".to_string())))
            .collect()
    }

    /// Waits until every daemon link is open; false when `timeout` passes
    /// first or a link is closed for good.
    pub async fn wait_open(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout.min(ACK_TIMEOUT_MAX);
        for link in &self.inner.links {
            let mut state = link.state.clone();
            let settled =
                timeout_at(deadline, state.wait_for(|s| *s != LinkState::Connecting)).await;
            match settled {
                Ok(Ok(state)) if *state == LinkState::Open => {}
                _ => return false,
            }
        }
        true
    }

    /// Stops every link: sends still waiting fail with `link_closed`, each
    /// socket gets a close frame, and the states become `Closed`. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        let tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(target: "sluice", "a broker link task failed: {e}");
            }
        }
    }

    /// The index of the open link a route goes over, or why there is none.
    fn open_link_for(&self, route: &Route) -> Result<usize, String> {
        match route {
            Route::Daemon(slug) => {
                let Some(&link) = self.inner.by_slug.get(slug) else {
                    return Err(format!("link_not_open: unknown mesh {slug}"));
                };
                if *self.inner.links[link].state.borrow() == LinkState::Open {
                    Ok(link)
                } else {
                    Err("link_not_open".to_string())
                }
            }
            Route::Session(_) => Err("link_not_open: no session link".to_string()),
        }
    }
}

fn fill(results: &mut [Option<SendResult>], indices: &[usize], reason: &str) {
    for &index in indices {
        results[index] = Some(SendResult::Failed(reason.to_string()));
    }
}
