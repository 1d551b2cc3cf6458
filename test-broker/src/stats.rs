//! What tests read from the test broker: who connected and what it saw.
//!
//! Owns: `Peer`, `SentFrame`, `BrokerStats`. Does not own: keeping the
//! counts (`ledger` fills a snapshot under its lock).

use std::collections::BTreeMap;
use std::sync::Arc;

/// Who a connection said it was, once its hello was accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    pub mesh_id: String,
    pub member_id: String,
    /// The key the link authenticated with: the member key on a daemon link,
    /// the session key on a session link.
    pub pubkey: String,
    /// The member key that attested the session key (session links only).
    pub parent_pubkey: Option<String>,
    /// The hello's `sessionId`: a presence's identity across reconnects.
    pub session_id: String,
    /// Which accepted connection (counts from 1), to tell reconnects apart.
    pub connection: u64,
}

impl Peer {
    /// Whether this is a session link (a `session_hello`).
    pub fn is_session(&self) -> bool {
        self.parent_pubkey.is_some()
    }

    /// The member key: its own on a daemon link, the parent's on a session
    /// link. What the rate limit is counted by.
    pub fn member_pubkey(&self) -> &str {
        self.parent_pubkey.as_deref().unwrap_or(&self.pubkey)
    }
}

/// The last `send` frame received under one client message id.
#[derive(Clone, Debug)]
pub struct SentFrame {
    /// The link it came over.
    pub peer: Arc<Peer>,
    pub id: String,
    pub target_spec: String,
    pub priority: String,
    pub nonce: String,
    pub ciphertext: String,
    pub request_fingerprint: String,
}

/// A snapshot of the broker's counters.
#[derive(Clone, Debug, Default)]
pub struct BrokerStats {
    pub hellos_accepted: u64,
    /// Refused with an error frame and close 1008 (real or injected).
    pub hellos_rejected: u64,
    /// Hellos that passed every check but had no `cwd`: never answered.
    pub hellos_ignored: u64,
    /// Send frames after a hello, whatever became of them.
    pub sends: u64,
    /// Sends queued with a message id (including those whose ack was dropped).
    pub accepted: u64,
    /// Sends answered with an error (including rate-limited ones).
    pub rejected: u64,
    /// Sends refused by the rate limit.
    pub rate_limited: u64,
    /// Accepted sends whose ack `drop_acks` swallowed.
    pub acks_dropped: u64,
    /// Send frames without a string `targetSpec`: never answered.
    pub sends_untargeted: u64,
    /// Client message id → times received.
    pub receipts: BTreeMap<String, u32>,
    pub last_send: BTreeMap<String, SentFrame>,
    /// Client message id → the message id of its latest acceptance.
    pub message_ids: BTreeMap<String, String>,
    /// Client message id → every message id it was accepted under, in order:
    /// more than one means the recipient got it more than once.
    pub all_message_ids: BTreeMap<String, Vec<String>>,
    /// Most sends one connection had received and not yet acked: above 1
    /// proves the client pipelines.
    pub max_unacked: u32,
    /// Pongs received: proves clients answer the broker's pings.
    pub pongs: u64,
    /// WebSocket connections open now (with or without a hello).
    pub connections_open: u64,
    /// Connection number → who said hello on it (the most recent
    /// `PEERS_KEPT_MAX`): tells session links from daemon links.
    pub peers: BTreeMap<u64, Arc<Peer>>,
}
