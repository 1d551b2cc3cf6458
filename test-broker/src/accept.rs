//! Accepting connections: the listener loop, TLS when the broker has it, and
//! the WebSocket upgrade, each bounded in time.
//!
//! Owns: the set of connection tasks and their end at shutdown. Does not
//! own: what a connection does once upgraded (`client`) or the TLS
//! configuration (`tls`).

use super::client::Client;
use super::{Io, MAX_FRAME_BYTES, Shared};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_tungstenite::accept_async_with_config;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How long a TCP connection may take to finish the TLS handshake and the
/// WebSocket upgrade: prevents idle half-open sockets from piling up
/// connection tasks.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `shutdown` lets connections send their close frames before it
/// aborts them: prevents a stalled client from holding the broker up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
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
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let upgrade = async {
        let io: Box<dyn Io> = match &shared.tls {
            Some(acceptor) => Box::new(
                acceptor
                    .accept(stream)
                    .await
                    .map_err(|e| format!("tls handshake failed: {e}"))?,
            ),
            None => Box::new(stream),
        };
        accept_async_with_config(io, Some(config))
            .await
            .map_err(|e| format!("websocket upgrade failed: {e}"))
    };
    let ws = match timeout(UPGRADE_TIMEOUT, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return tracing::debug!(target: "sluice", "broker: {e}"),
        Err(_) => return tracing::debug!(target: "sluice", "broker: connection upgrade timed out"),
    };
    let connection = shared.ledger().next_connection();
    Client::new(ws, shared, connection).run().await;
}
