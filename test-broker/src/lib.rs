//! A test broker that speaks the claudemesh wire protocol and is at least as
//! strict as the real broker (claudemesh's `apps/broker`, checked against
//! commit 213a6b3; `docs/broker.md` has the conformance table). `sluice
//! broker` runs it.
//!
//! Real-broker behaviour it mirrors:
//! - Hellos: `hello` signs `meshId|memberId|pubkey|timestamp`, ±60 s skew;
//!   `session_hello` with the member's attestation (≤ 24 h) and the session
//!   key's signature; checks in the real order with its codes and messages
//!   (`hello rejected: bad_signature`, `… timestamp_skew`, `pubkey not found
//!   in mesh`, `attestation rejected: expired`, …), each refusal an error
//!   frame then close 1008. `capacity` past 100 presences a mesh.
//! - A hello without `cwd` (missing or empty) passes its checks and then gets
//!   nothing at all; the socket stays open (the real presence insert fails).
//! - A frame before the hello: `no_hello` / `must send hello first`, socket
//!   open. Malformed JSON and unknown types after the hello: no answer.
//! - Sends: the per-member token bucket is checked first on every send frame
//!   (a session counts as its parent member; other rejections still spend a
//!   token); a send without a string `targetSpec` then gets no ack at all;
//!   a direct `targetSpec` (not `*`, `@…`, `#…`) needs a peer holding that
//!   key on another connection, online or left less than 90 s ago, else the
//!   real `no connected peer …` rejection. Rejections carry `messageId: ""`.
//! - No dedupe: a repeated `client_message_id` is a new message, new id.
//! - Presences: a reconnect with the same `sessionId` (daemon) or session key
//!   reattaches; another connection with the same `sessionId` is closed with
//!   1000 `session_replaced`.
//! - Frames over 64 KiB close the socket; pings every 30 s; acks may come
//!   out of order (per-target delays).
//!
//! Faults it adds: ack delays, dropped acks, closes after N frames or sends,
//! garbage frames, refused hellos, no session support, silent or rejecting
//! targets. The random ones (dropped acks, refused hellos) are drawn from
//! `BrokerOptions::seed`, so a failing run can be repeated.
//!
//! - `options`: what it is told; `members`: the keys file.
//! - `handshake`: hello checks and refusal codes.
//! - `ledger`: counters, receipts, each send's answer; `rate_limit` the
//!   buckets; `presence` who is connected; `stats` what tests read.
//! - `accept`: the listener, TLS and the upgrade of each connection.
//! - `client`: one connection's socket loop; `answer`: what each frame
//!   gets; `chatter`: distracting frames; `faults`: the seeded draws.
//! - `tls`: wss:// and a self-signed localhost certificate.
//!
//! This module owns accepting sockets (plain or TLS), the shared state and
//! stopping; it is not a message router: nothing is delivered to anyone.
//! Not mirrored: only path `/ws` upgrading (any path does here), recipient
//! grants, payload-size acks (unreachable under the 64 KiB frame limit).

mod accept;
mod answer;
mod chatter;
mod client;
mod faults;
mod handshake;
mod ledger;
mod members;
mod options;
mod presence;
mod rate_limit;
mod stats;
mod tls;

pub use handshake::{ATTESTATION_TTL_MAX_MS, RefusalCode};
pub use ledger::NO_CONNECTED_PEER;
pub use members::{Member, MembersError, load_members};
pub use options::{BrokerOptions, DEFAULT_MAX_SKEW, OptionError};
pub use presence::{CONNECTIONS_PER_MESH_MAX, OFFLINE_LEASE_MS};
pub use rate_limit::RateLimit;
pub use stats::{BrokerStats, Peer, SentFrame};
pub use tls::self_signed_localhost;

use ledger::Ledger;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;

/// How often the broker pings each client, as the real one does.
pub const BROKER_PING_INTERVAL: Duration = Duration::from_secs(30);

/// The largest frame accepted, as on the real broker (`MAX_MESSAGE_BYTES`,
/// the `ws` server's `maxPayload`): a larger one closes the socket. Bounds
/// what one client can make the broker buffer.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Frames a connection reads before it flushes its answers: bounds the
/// latency of the first ack of a long burst.
const READ_BURST_MAX: usize = 512;

/// A connection's byte stream: plain TCP or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One connection's WebSocket.
pub(crate) type Socket = WebSocketStream<Box<dyn Io>>;

/// What every connection shares.
pub(crate) struct Shared {
    options: BrokerOptions,
    /// std's Mutex: held for a few map operations, never across an await.
    ledger: Mutex<Ledger>,
    /// Bumped by `drop_connections`; every connection ends when it changes.
    drops: watch::Sender<u64>,
    /// Bumped when a hello replaced open connections; each asks the ledger
    /// whether it was one of them.
    replacements: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
    /// The count of send frames received, bumped as each arrives: what a
    /// benchmark waits on to time a row from enqueue to the broker.
    sends: watch::Sender<u64>,
    /// `Some`: connections speak TLS first.
    tls: Option<TlsAcceptor>,
    /// The zero of `clock_ms`.
    started: Instant,
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // A panic under the lock leaves counters that are still usable.
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Milliseconds since the broker started, on tokio's clock: what rate
    /// buckets and offline leases are measured in.
    fn clock_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A running test broker.
pub struct Broker {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl Broker {
    /// Binds `bind` (port 0 picks a free port) and serves ws:// until
    /// `shutdown` or drop.
    pub async fn start(bind: SocketAddr, options: BrokerOptions) -> std::io::Result<Broker> {
        Broker::serve(bind, options, None).await
    }

    /// Like `start`, serving wss:// with a PEM certificate chain and its
    /// private key (e.g. from `self_signed_localhost`).
    pub async fn start_tls(
        bind: SocketAddr,
        options: BrokerOptions,
        cert_pem: &str,
        key_pem: &str,
    ) -> std::io::Result<Broker> {
        let acceptor = tls::acceptor(cert_pem, key_pem)?;
        Broker::serve(bind, options, Some(acceptor)).await
    }

    async fn serve(
        bind: SocketAddr,
        options: BrokerOptions,
        tls: Option<TlsAcceptor>,
    ) -> std::io::Result<Broker> {
        let listener = TcpListener::bind(bind).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            options,
            ledger: Mutex::new(Ledger::default()),
            drops: watch::channel(0).0,
            replacements: watch::channel(0).0,
            shutdown: watch::channel(false).0,
            sends: watch::channel(0).0,
            tls,
            started: Instant::now(),
        });
        let acceptor = tokio::spawn(accept::accept_loop(listener, Arc::clone(&shared)));
        Ok(Broker {
            shared,
            local_addr,
            acceptor: Some(acceptor),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `ws://ADDRESS:PORT`, or `wss://localhost:PORT` for a TLS broker (the
    /// name its certificate is for), for a `MeshConfig`.
    pub fn url(&self) -> String {
        if self.shared.tls.is_some() {
            format!("wss://localhost:{}", self.local_addr.port())
        } else {
            format!("ws://{}", self.local_addr)
        }
    }

    /// A snapshot of what the broker has seen so far.
    pub fn stats(&self) -> BrokerStats {
        self.shared.ledger().snapshot()
    }

    /// The count of send frames received so far; `changed()` wakes on each
    /// new one, without the copying of `stats()`.
    pub fn sends(&self) -> watch::Receiver<u64> {
        self.shared.sends.subscribe()
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
