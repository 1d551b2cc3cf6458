//! A test broker that speaks the claudemesh wire protocol: hellos verified
//! as the real broker does, every send acked (or rejected, delayed, ignored
//! on request), stats for tests to assert on. `sluice broker` runs it.
//!
//! - `options`: what it is told (`BrokerOptions`, keys file).
//! - `handshake`: hello checks and refusal codes.
//! - `ledger`: counters, receipts, dedupe, each send's answer.
//! - `client`: one connection's socket loop; `answer`: what each frame
//!   gets; `chatter`: distracting frames.
//!
//! This module owns accepting sockets, the shared state and stopping; it is
//! not a message router: nothing is delivered to anyone.

mod answer;
mod chatter;
mod client;
mod handshake;
mod ledger;
mod options;

pub use handshake::ATTESTATION_TTL_MAX_MS;
pub use ledger::{BrokerStats, Peer, SentFrame};
pub use options::{BrokerOptions, DEFAULT_MAX_SKEW, Member, MembersError, load_members};

use crate::config::MAX_INBOUND_MESSAGE_BYTES;
use client::Client;
use ledger::Ledger;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;
use tokio_tungstenite::accept_async_with_config;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How often the broker pings each client, as the real one does.
pub const BROKER_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Frames a connection reads before it flushes its answers: bounds the
/// latency of the first ack of a long burst.
const READ_BURST_MAX: usize = 512;

/// How long a TCP connection may take to finish the WebSocket upgrade:
/// prevents idle half-open sockets from piling up connection tasks.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `shutdown` lets connections send their close frames before it
/// aborts them: prevents a stalled client from holding the broker up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What every connection shares.
pub(crate) struct Shared {
    options: BrokerOptions,
    /// std's Mutex: held for a few map operations, never across an await.
    ledger: Mutex<Ledger>,
    /// Bumped by `drop_connections`; every connection ends when it changes.
    drops: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // A panic under the lock leaves counters that are still usable.
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running test broker.
pub struct Broker {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl Broker {
    /// Binds `bind` (port 0 picks a free port) and serves until `shutdown`
    /// or drop.
    pub async fn start(bind: SocketAddr, options: BrokerOptions) -> std::io::Result<Broker> {
        let listener = TcpListener::bind(bind).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            options,
            ledger: Mutex::new(Ledger::default()),
            drops: watch::channel(0).0,
            shutdown: watch::channel(false).0,
        });
        let acceptor = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Broker {
            shared,
            local_addr,
            acceptor: Some(acceptor),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `ws://ADDRESS:PORT`, for a `MeshConfig`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.local_addr)
    }

    /// A snapshot of what the broker has seen so far.
    pub fn stats(&self) -> BrokerStats {
        self.shared.ledger().snapshot()
    }

    /// Drops every open connection at once, without a close frame, as a
    /// network failure would. New connections are accepted as before.
    pub fn drop_connections(&self) {
        self.shared.drops.send_modify(|generation| *generation += 1);
    }

    /// Stops accepting, closes every connection and waits for them.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.await;
        }
    }
}

impl Drop for Broker {
    /// A broker dropped without `shutdown` still stops serving.
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, Arc::clone(&shared)));
                }
                Err(e) => tracing::warn!(target: "sluice", "broker accept failed: {e}"),
            },
            // Reap finished connections so the set does not grow forever.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.shutdown().await;
    }
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    // Acks are flushed per burst already; Nagle would only delay them.
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_INBOUND_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_INBOUND_MESSAGE_BYTES));
    let ws = match timeout(
        UPGRADE_TIMEOUT,
        accept_async_with_config(stream, Some(config)),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            return tracing::debug!(target: "sluice", "broker: websocket upgrade failed: {e}");
        }
        Err(_) => return tracing::debug!(target: "sluice", "broker: websocket upgrade timed out"),
    };
    let connection = shared.ledger().next_connection();
    Client::new(ws, shared, connection).run().await;
}
