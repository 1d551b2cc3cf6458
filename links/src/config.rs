//! What a link is told (one mesh, its key, options) and the limits every link
//! lives within.
//!
//! Owns: `MeshConfig`, `LinkOptions`, `LinkState` and the named bounds. Does
//! not own: reading a config file (the host's `config` module does).

use crate::identity::MemberKey;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Batches a link may have queued and not yet taken up. Bounds memory when a
/// caller outpaces the link; a full queue makes `send_batch` wait (up to its
/// ack deadline) rather than pile up batches.
pub const LINK_COMMANDS_MAX: usize = 16;

/// How long a TCP + TLS + WebSocket connect may take before the link gives up
/// and backs off: prevents a black-holed address from freezing a link forever.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the broker may take to answer a hello: prevents a broker that
/// accepted the socket but never answers from holding the link in `Connecting`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest ack timeout honoured: prevents an absurd timeout from
/// overflowing a deadline or parking sends for days.
pub const ACK_TIMEOUT_MAX: Duration = Duration::from_secs(3600);

/// Extra time `send_batch` waits for a link's answer past the ack deadline:
/// the link answers at the deadline itself; this only guards against a link
/// task that died without answering, so a caller is never stuck.
pub const REPLY_GRACE: Duration = Duration::from_secs(1);

/// Largest frame or message accepted from the broker: prevents a broken or
/// hostile broker from making the link buffer unbounded memory. Acks are
/// tiny; pushes of large messages are not ours but must still fit.
pub const MAX_INBOUND_MESSAGE_BYTES: usize = 16 << 20;

/// Frames read in one go before the link looks at its other duties (new
/// batches, deadlines): prevents a chatty broker from starving sends.
pub const READ_BURST_MAX: usize = 512;

/// Frames written per flush: larger bursts amortize syscalls, smaller ones
/// bound how long the writer holds the socket before the reader gets a turn.
pub const WRITE_BURST_MAX: usize = 1024;

/// The WebSocket settings of every link.
pub(crate) fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_INBOUND_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_INBOUND_MESSAGE_BYTES))
}

/// One mesh the drain sends to: its broker and the member it speaks as.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// The name outbox rows use in their `mesh` column.
    pub slug: String,
    /// `ws://` or `wss://`.
    pub broker_url: String,
    pub mesh_id: String,
    pub member_id: String,
    pub key: MemberKey,
}

/// How links connect and present themselves.
#[derive(Clone, Debug)]
pub struct LinkOptions {
    /// First reconnect delay after a loss or a refused hello.
    pub reconnect_min: Duration,
    /// Reconnect delays double up to this cap: a broker that is down for an
    /// hour sees one attempt per cap, not a storm.
    pub reconnect_max: Duration,
    pub hostname: String,
    pub pid: u32,
    pub session_id: String,
    pub channel: String,
}

impl Default for LinkOptions {
    fn default() -> LinkOptions {
        LinkOptions {
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            hostname: default_hostname(),
            pid: std::process::id(),
            session_id: format!("sluice-{}", std::process::id()),
            channel: "sluice".to_string(),
        }
    }
}

fn default_hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|name| name.trim().to_string())
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Where a daemon link stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Connecting, saying hello, or waiting out a backoff.
    Connecting,
    /// Hello acknowledged: sends go out.
    Open,
    /// Shut down; it will not reconnect.
    Closed,
}

/// Frames a link holds for the socket while a write is still in progress:
/// prevents a stalled socket from buffering without bound. While full, the
/// link takes no new batch and callers wait on the command queue instead.
pub const WRITE_QUEUE_FRAMES_MAX: usize = 65_536;

/// How often a link pings the broker: its pongs prove the socket is alive
/// even when the broker has nothing to say.
pub const LINK_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Silence after which an open link is deemed dead and reconnects: prevents a
/// half-open TCP connection (broker gone without a FIN) from looking open
/// forever. Two missed pings and a margin.
pub const LINK_SILENCE_MAX: Duration = Duration::from_secs(75);

/// How long a link waits for its close frame to go out at shutdown:
/// prevents a stalled socket from holding up `Links::shutdown`.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
