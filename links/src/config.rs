//! What a link is told (one mesh, its key, its sessions, options) and the
//! limits every link lives within.
//!
//! Owns: `MeshConfig`, `SessionLinkConfig`, `LinkOptions` (with its
//! `AckObserver`), `LinkState` and
//! the named bounds. Does not own: reading a config file (the host's
//! `config` module does; `tls::read_ca_file` reads its CA certificates).

use crate::identity::MemberKey;
use rustls::pki_types::CertificateDer;
use std::path::PathBuf;
use std::sync::Arc;
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

/// How long a session's parent attestation is valid when the config does not
/// say: long enough that a link never reconnects just to renew it (it is
/// minted afresh on every connect anyway), well inside the broker's 24 h cap.
pub const ATTESTATION_TTL_DEFAULT: Duration = Duration::from_secs(12 * 60 * 60);

/// The longest attestation the broker accepts (`ttl_too_long` beyond):
/// bounds how long a leaked session key can speak for its member. A session
/// configured for longer is refused before it connects.
pub const ATTESTATION_TTL_MAX: Duration = Duration::from_secs(24 * 60 * 60);

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
    /// `sessionId` of the daemon hello; stable across restarts (the host
    /// derives it or takes it from the config): a reconnect under the same id
    /// reattaches the broker's offline lease instead of making a second
    /// presence that could swallow direct messages.
    pub session_id: String,
    /// The member's send budget on the broker, shared by its daemon link and
    /// all its session links (the broker's token bucket refills this many a
    /// minute).
    pub rate_limit_per_minute: u32,
    /// How many sends the member's bucket holds when full.
    pub rate_limit_burst: u32,
    /// Trust anchors for wss:// besides the web roots (webpki-roots), from
    /// the mesh's `ca_file`.
    pub ca_certs: Vec<CertificateDer<'static>>,
    /// Where `ca_certs` came from. When set, each connect attempt reads the
    /// file again and trusts what it holds then (in place of `ca_certs`), so
    /// a broker's new certificate at the same path needs no restart.
    pub ca_file: Option<PathBuf>,
}

/// One session link: a session key, attested by its mesh's member key, that
/// sends the rows written for that session. Same broker, same member (and so
/// the same send budget) as the mesh's daemon link.
#[derive(Clone, Debug)]
pub struct SessionLinkConfig {
    /// Slug of its mesh; a session whose mesh has no daemon link config is
    /// refused.
    pub mesh: String,
    /// `sessionId` of its session_hello.
    pub session_id: String,
    /// The session's own key; its public key is the session's identity
    /// (`Route::Session`).
    pub key: MemberKey,
    /// Lifetime of the parent attestation, minted afresh on every connect:
    /// `ATTESTATION_TTL_DEFAULT` unless configured, at most
    /// `ATTESTATION_TTL_MAX`.
    pub attestation_ttl: Duration,
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
    /// The working directory both hellos report. The real broker answers
    /// nothing at all to a hello without it.
    pub cwd: String,
    pub channel: String,
    /// Told the time from each send's frame being queued to its ack (the
    /// host's latency histogram). `None` costs nothing per send.
    pub ack_latency: Option<AckObserver>,
}

/// Called on a link's task once per acked send (accepted or rejected, not
/// timed out) with the time since its frame was queued. Must be quick: it
/// runs between reading frames.
#[derive(Clone)]
pub struct AckObserver(pub Arc<dyn Fn(Duration) + Send + Sync>);

impl std::fmt::Debug for AckObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AckObserver")
    }
}

impl Default for LinkOptions {
    fn default() -> LinkOptions {
        LinkOptions {
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            hostname: default_hostname(),
            pid: std::process::id(),
            cwd: default_cwd(),
            channel: "sluice".to_string(),
            ack_latency: None,
        }
    }
}

/// The process's working directory, or `/` when it cannot be read (deleted,
/// or not valid Unicode): the broker needs some directory, not a true one.
fn default_cwd() -> String {
    std::env::current_dir()
        .ok()
        .and_then(|dir| dir.to_str().map(str::to_string))
        .unwrap_or_else(|| "/".to_string())
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

/// Where a link (daemon or session) stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Connecting, saying hello, or waiting out a backoff.
    Connecting,
    /// Hello acknowledged: sends go out.
    Open,
    /// The broker answered session_hello with `unknown_message_type`: no
    /// session support; not retried (its rows see `Connecting`).
    Unsupported,
    /// Shut down; it will not reconnect.
    Closed,
}

impl LinkState {
    /// The lowercase name, for status output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Open => "open",
            LinkState::Unsupported => "unsupported",
            LinkState::Closed => "closed",
        }
    }
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
