//! How the test broker behaves, and the keys file that says who may connect.
//!
//! Owns: `BrokerOptions`, `Member`, `load_members`. Does not own: applying
//! the options (`ledger` decides acks, `handshake` checks hellos).

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The skew allowed between a hello's timestamp and the broker's clock when
/// `BrokerOptions::max_skew` is zero, as on the real broker: a replayed hello
/// older than this is refused.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(60);

/// Switches that make the test broker reproduce the real broker's answers,
/// good and bad.
#[derive(Clone, Debug, Default)]
pub struct BrokerOptions {
    /// `Some`: only these members may hello (per mesh). `None`: any key whose
    /// signature verifies.
    pub members: Option<Vec<Member>>,
    /// Delay before every ack. Acks stay pipelined: each waits from its own
    /// send's arrival, not after the previous ack.
    pub ack_delay: Duration,
    /// Per-target ack delays that override `ack_delay` (exact `targetSpec`):
    /// makes acks arrive out of order.
    pub ack_delays: Vec<(String, Duration)>,
    /// `(targetSpec, error)`: every send to the target is rejected with `error`.
    pub reject_permanent: Vec<(String, String)>,
    /// `(targetSpec, n, error)`: the first `n` sends of each client message id
    /// to the target are rejected with `error`; later ones are accepted.
    pub reject_transient: Vec<(String, u32, String)>,
    /// Targets whose sends are never acked (to test ack timeouts).
    pub silent_targets: Vec<String>,
    /// Around acks, also send garbage text, binary frames, pings and
    /// unrelated JSON frames (`push`, `inbound`, unknown types).
    pub chatter: bool,
    /// Close each connection once it has received this many sends; the last
    /// one and any delayed acks go unanswered (to test link loss).
    pub close_after_sends: Option<u32>,
    /// Hello timestamp tolerance; zero means `DEFAULT_MAX_SKEW`.
    pub max_skew: Duration,
    /// Answer `session_hello` with `unknown_message_type`, like a broker
    /// without session support.
    pub sessions_unsupported: bool,
}

impl BrokerOptions {
    pub(crate) fn skew_allowed(&self) -> Duration {
        if self.max_skew.is_zero() {
            DEFAULT_MAX_SKEW
        } else {
            self.max_skew
        }
    }

    pub(crate) fn ack_delay_for(&self, target: &str) -> Duration {
        self.ack_delays
            .iter()
            .find(|(t, _)| t == target)
            .map_or(self.ack_delay, |(_, delay)| *delay)
    }
}

/// A member allowed into a mesh.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub mesh_id: String,
    /// `None`: the key may hello under any member id.
    pub member_id: Option<String>,
    /// Hex Ed25519 public key (64 characters).
    pub public_key: String,
}

impl Member {
    /// Whether this entry lets `pubkey` into `mesh_id` as `member_id`.
    pub(crate) fn admits(&self, mesh_id: &str, member_id: &str, pubkey: &str) -> bool {
        self.mesh_id == mesh_id
            && self.public_key.eq_ignore_ascii_case(pubkey)
            && self
                .member_id
                .as_deref()
                .is_none_or(|id| id.is_empty() || member_id.is_empty() || id == member_id)
    }
}

/// Why a keys file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MembersError {
    #[error("cannot read keys file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "keys file {path} is not valid TOML of [[member]] tables (mesh_id, member_id, public_key): {source}"
    )]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error(
        "keys file {path}: member {index} has public_key {key:?}, which is not 64 hex characters; use the member's Ed25519 public key in hex"
    )]
    BadKey {
        path: PathBuf,
        index: usize,
        key: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    member: Vec<Member>,
}

/// Reads a keys file for `sluice broker --keys FILE`:
/// `[[member]] mesh_id = "…", member_id = "…", public_key = "…"`.
pub fn load_members(path: &Path) -> Result<Vec<Member>, MembersError> {
    let text = std::fs::read_to_string(path).map_err(|source| MembersError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file: KeysFile = toml::from_str(&text).map_err(|source| MembersError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    for (index, member) in file.member.iter().enumerate() {
        let key = &member.public_key;
        if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(MembersError::BadKey {
                path: path.to_path_buf(),
                index,
                key: key.clone(),
            });
        }
    }
    Ok(file.member)
}
