//! The plain Rust shapes of the types in `wit/drain.wit`.
//!
//! The guest converts the component's generated types into these, and the
//! host's store and links produce and take them directly, so one vocabulary
//! serves the WebAssembly policy, the native baseline and the host.

/// Milliseconds since the Unix epoch.
pub type TimestampMs = i64;

/// One claimed outbox row: already `inflight`, attempts already counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Row {
    /// SQLite rowid: the handle a settle uses for this claim.
    pub rowid: i64,
    pub id: String,
    pub client_message_id: String,
    #[cfg_attr(feature = "serde", serde(with = "crate::bytes"))]
    pub request_fingerprint: Vec<u8>,
    #[cfg_attr(feature = "serde", serde(with = "crate::bytes"))]
    pub payload: Vec<u8>,
    pub enqueued_at: TimestampMs,
    /// Attempts including the one this claim starts.
    pub attempts: u32,
    pub mesh: Option<String>,
    pub target_spec: Option<String>,
    pub nonce: Option<String>,
    pub ciphertext: Option<String>,
    pub priority: Option<String>,
    pub sender_session_pubkey: Option<String>,
    /// A column the host could not read as its declared type; such a row is
    /// never sent.
    pub defect: Option<String>,
}

/// Which broker link a dispatch goes over.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Route {
    /// The daemon link of the mesh with this slug.
    Daemon(String),
    /// The session link of the session with this hex public key.
    Session(String),
}

/// One `send` frame to put on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Dispatch {
    pub rowid: i64,
    pub route: Route,
    pub client_message_id: String,
    pub request_fingerprint_hex: String,
    pub target_spec: String,
    pub priority: String,
    pub nonce: String,
    pub ciphertext: String,
}

/// What became of one dispatch, as the host saw it (never classified).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum SendResult {
    /// Acked without error: the broker's message id.
    Accepted(String),
    /// Acked with an error: the broker's text.
    Rejected(String),
    /// Transport failure (`link_not_open`, `ack_timeout`, `link_closed`, ...).
    Failed(String),
}

/// Whether a session link exists for a session public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum SessionState {
    Absent,
    Connecting,
    Open,
}

/// The decision for one claimed row.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Verdict {
    Done {
        broker_message_id: String,
        delivered_at: TimestampMs,
    },
    Dead {
        reason: String,
    },
    Retry {
        next_attempt_at: TimestampMs,
        last_error: String,
    },
    /// Back to `pending` without spending an attempt: held back for the
    /// member's send budget, or refused for the member's rate.
    Hold {
        next_attempt_at: TimestampMs,
        /// Replaces `last_error` when given.
        last_error: Option<String>,
    },
}

/// A mesh the host has a daemon link for, with its member's send budget.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct MeshLink {
    pub slug: String,
    /// The daemon link is open.
    pub open: bool,
    /// Sends the budget allows now (`u32::MAX` without a limit).
    pub tokens: u32,
    /// When the budget next gains a send (now while `tokens > 0`).
    pub next_token_at: TimestampMs,
    /// Sends gained per minute; 0 when the mesh has no limit.
    pub per_minute: u32,
}

/// The daemon-link rows a claim leaves alone (and `next_due_at` ignores).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ClaimFilter {
    /// Rows whose `mesh` is one of these.
    pub skip_meshes: Vec<String>,
    /// Also rows whose `mesh` is NULL or empty.
    pub skip_unnamed: bool,
}

impl ClaimFilter {
    /// Whether the filter leaves every row in.
    pub fn is_empty(&self) -> bool {
        self.skip_meshes.is_empty() && !self.skip_unnamed
    }
}

/// What `send_batch` answers for a dispatch the member's budget did not
/// allow: it was not written.
pub const RATE_BUDGET_EMPTY: &str = "rate_budget_empty";

/// A verdict for the claim of `rowid` that counted `attempts`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Outcome {
    pub rowid: i64,
    pub attempts: u32,
    pub verdict: Verdict,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TickReport {
    pub claimed: u32,
    pub done: u32,
    pub dead: u32,
    pub retried: u32,
    /// Rows given back without spending an attempt.
    pub held: u32,
    pub reclaimed: u32,
    pub expired: u32,
    /// The claim was full: more rows may be due now.
    pub more_due: bool,
    pub next_due_at: Option<TimestampMs>,
}
