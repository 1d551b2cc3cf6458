//! The life of one link, daemon or session: connect, hello, run open, lose,
//! back off, connect again — until shutdown, or until the broker says it
//! has no session support.
//!
//! Owns: the loop of attempts, stopping for good on `Unsupported`, and
//! refusing batches (`link_not_open`) while not open, so a caller never
//! waits on a link that cannot send. Does not own: one attempt to open
//! (`connect`), the open socket's loop (`connection`), publishing and
//! logging state (`tracker`), or the delay arithmetic (`backoff`).

use crate::backoff::{jitter_seed, reconnect_delay};
use crate::config::{LinkOptions, MeshConfig};
use crate::connect::{LinkError, connect_and_hello};
use crate::connection::{Batch, Ended, run_open};
use crate::hello::Greeting;
use crate::tls::Tls;
use crate::tracker::Tracker;
use sluice_contract::SendResult;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, watch};

/// Everything one link task owns.
pub(crate) struct LinkTask {
    /// The mesh the link belongs to: its broker, and the member key that
    /// says (or attests) the hello.
    pub mesh: Arc<MeshConfig>,
    pub greeting: Greeting,
    pub tls: Tls,
    pub options: Arc<LinkOptions>,
    pub commands: mpsc::Receiver<Batch>,
    pub tracker: Tracker,
    /// Becomes true (or loses its sender) when the link is to stop.
    pub shutdown: watch::Receiver<bool>,
    /// Cuts a reconnect delay short.
    pub retry: Arc<Notify>,
}

impl LinkTask {
    pub(crate) async fn run(mut self) {
        // A link started after the stop was given never sees it change.
        if !*self.shutdown.borrow_and_update() {
            self.live().await;
        }
        self.tracker.closed();
        self.commands.close();
        while let Ok(batch) = self.commands.try_recv() {
            refuse(batch, "link_not_open");
        }
    }

    /// Connects, runs open, and reconnects after a backoff, until told to
    /// stop or the broker has no session support.
    async fn live(&mut self) {
        let label = self.tracker.name().to_string();
        loop {
            let connecting =
                connect_and_hello(&self.mesh, &self.greeting, &self.tls, &self.options);
            let Some(opened) =
                while_not_open(connecting, &mut self.commands, &mut self.shutdown).await
            else {
                return;
            };
            match opened {
                Ok(ws) => {
                    self.tracker.opened();
                    let ended = run_open(
                        ws,
                        &label,
                        &mut self.commands,
                        &mut self.shutdown,
                        self.options.ack_latency.clone(),
                    )
                    .await;
                    match ended {
                        Ended::Shutdown => return,
                        Ended::Lost(reason) => self.tracker.lost(&reason),
                    }
                }
                Err(e @ LinkError::Unsupported { .. }) => {
                    self.tracker.unsupported(&e);
                    let forever = std::future::pending::<()>();
                    let _ = while_not_open(forever, &mut self.commands, &mut self.shutdown).await;
                    return;
                }
                Err(e) => self.tracker.failed(&e),
            }
            let delay = reconnect_delay(
                self.tracker.failures(),
                self.options.reconnect_min,
                self.options.reconnect_max,
                jitter_seed(),
            );
            let retry = Arc::clone(&self.retry);
            let sleep = async move {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = retry.notified() => {}
                }
            };
            if while_not_open(sleep, &mut self.commands, &mut self.shutdown)
                .await
                .is_none()
            {
                return;
            }
        }
    }
}

/// Runs `work` while answering every batch that arrives `link_not_open`;
/// `None` when the link is to stop.
async fn while_not_open<F: Future>(
    work: F,
    commands: &mut mpsc::Receiver<Batch>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<F::Output> {
    let mut work = pin!(work);
    loop {
        tokio::select! {
            biased;
            // A change (only ever to `true`) or a dropped sender: stop.
            _ = shutdown.changed() => return None,
            output = &mut work => return Some(output),
            batch = commands.recv() => match batch {
                Some(batch) => refuse(batch, "link_not_open"),
                None => return None,
            },
        }
    }
}

fn refuse(batch: Batch, reason: &str) {
    let results = vec![SendResult::Failed(reason.to_string()); batch.dispatches.len()];
    let _ = batch.reply.send(results);
}
