//! How the test broker behaves: the real broker's rules it can relax or
//! tighten, and the faults it injects.
//!
//! Owns: `BrokerOptions` and `OptionError` (a flag value that does not
//! parse). Does not own: applying the options (`ledger` decides acks,
//! `handshake` checks hellos, `faults` draws the seeded choices), or the
//! keys file (`members`).

use super::handshake::RefusalCode;
use super::members::Member;
use super::rate_limit::RateLimit;
use std::time::Duration;

/// The skew allowed between a hello's timestamp and the broker's clock when
/// `BrokerOptions::max_skew` is zero, as on the real broker: a replayed hello
/// older than this is refused.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(60);

/// Switches that make the test broker reproduce the real broker's answers,
/// good and bad. `Default` is the real broker without its rate limit, so
/// throughput tests are not throttled.
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
    /// one is recorded but unanswered, as are delayed acks (to test link loss).
    pub close_after_sends: Option<u32>,
    /// Close each connection (code 1012) when it receives its Nth text frame
    /// after the hello; that frame is lost unread. Counted per connection,
    /// so a reconnect gets N more.
    pub close_after_frames: Option<u32>,
    /// Hello timestamp tolerance; zero means `DEFAULT_MAX_SKEW`.
    pub max_skew: Duration,
    /// Answer `session_hello` with `unknown_message_type`, like a broker
    /// without session support.
    pub sessions_unsupported: bool,
    /// The real broker's per-member token bucket (`RateLimit::REAL` is its
    /// 60 a minute, burst 10). `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Pubkeys that count as connected peers for direct sends, as if another
    /// client held them online: lets a single client send direct messages.
    pub online_peers: Vec<String>,
    /// Drives every seeded choice (`drop_acks`, `refuse_hellos`): the same
    /// seed and the same frames give the same faults.
    pub seed: u64,
    /// Share (0.0–1.0) of accepted sends whose ack is never written: the
    /// message counts as queued, the client never hears so.
    pub drop_acks: f64,
    /// `(share, code)`: refuse that share of the hellos that pass the real
    /// checks, with the real refusal for `code` (error frame, close 1008).
    pub refuse_hellos: Option<(f64, RefusalCode)>,
    /// `(n, code)`: refuse the first `n` hellos that pass the real checks
    /// (counted broker-wide), as `refuse_hellos` does.
    pub refuse_hello_first: Option<(u32, RefusalCode)>,
    /// Keep no record of each message (the stats' per-message maps stay
    /// empty; the counts are kept): a benchmark's millions of rows then cost
    /// the broker neither memory nor time. Rules that count a message's
    /// sends (`reject_transient`) see every send as its first.
    pub forget_messages: bool,
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

/// A broker option given as text (a `sluice broker` flag) that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    #[error(
        "rate limit {0:?} is not PER_MINUTE/BURST in whole numbers with BURST at least 1; use e.g. 60/10 (the real broker's) or none"
    )]
    RateLimit(String),
    #[error("refusal code {code:?} is not one the broker sends; use one of: {known}")]
    RefusalCode { code: String, known: String },
}
