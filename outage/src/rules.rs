//! The rules the outage-aware policy changes, free of I/O.
//!
//! Owns: which failures mean the link never carried the send, the shared
//! recheck time, and [`OutageRules`], the hooks that hold such rows instead
//! of retrying them. Every other decision is `sluice_policy::rules`'.

use sluice_policy::rules::{Decision, LogLine, View, decide, judge, retry};
use sluice_policy::{Row, Rules, SendResult, SessionState, TimestampMs, Verdict};

/// Transport failures of a link that was down or never connected (prefixes
/// of the host's texts): the broker never saw the send. `ack_timeout` is not
/// one: the send went out and may have arrived, so it counts as a try.
pub const OUTAGE_FAILURES: &[&str] = &["link_not_open", "link_closed", "write_failed"];

/// What a held session row's `last_error` says.
pub const SESSION_NOT_OPEN: &str = "session_ws_not_open";

/// Whether a transport failure says the link never carried the send.
pub fn is_outage_failure(error: &str) -> bool {
    OUTAGE_FAILURES.iter().any(|p| error.starts_with(p))
}

/// When rows held for a link that is down are next due: the first multiple
/// of `recheck_ms` after `now`. Every row held in any tick of the same period
/// gets the same time, so a mesh's rows come back together, in one claim.
pub fn mesh_recheck_at(now: TimestampMs, recheck_ms: i64) -> TimestampMs {
    let period = recheck_ms.max(1);
    now.div_euclid(period)
        .saturating_add(1)
        .saturating_mul(period)
}

/// The outage-aware hooks over the default policy's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutageRules {
    /// The recheck period (`outage_recheck_ms`).
    pub recheck_ms: i64,
}

impl OutageRules {
    fn hold(&self, error: &str, after: TimestampMs) -> (Verdict, Option<LogLine>) {
        let verdict = Verdict::Hold {
            next_attempt_at: mesh_recheck_at(after, self.recheck_ms),
            last_error: Some(error.to_string()),
        };
        (verdict, None)
    }
}

/// A session row whose session is registered but whose link is not open.
fn session_connecting(row: &Row, view: &View<'_>) -> bool {
    row.sender_session_pubkey
        .as_deref()
        .filter(|key| !key.is_empty())
        .is_some_and(|key| view.session_state(key) == SessionState::Connecting)
}

impl Rules for OutageRules {
    /// The default's decision; a session row held for its connecting link
    /// writes no not-ready line (its attempts no longer count up, so the
    /// default's every-60th-attempt rule would log it on every recheck).
    fn decide(
        &self,
        row: &Row,
        view: &View<'_>,
        fresh_nonce: &mut dyn FnMut() -> Vec<u8>,
    ) -> Decision {
        match decide(row, view, fresh_nonce) {
            Decision::Retry { error, .. } if session_connecting(row, view) => {
                Decision::Retry { error, log: None }
            }
            decision => decision,
        }
    }

    /// A session row whose link is connecting is held; anything else kept
    /// back (a session nobody registered) is retried as by the default.
    fn unsent(
        &self,
        row: &Row,
        error: &str,
        view: &View<'_>,
        after: TimestampMs,
    ) -> (Verdict, Option<LogLine>) {
        if session_connecting(row, view) {
            self.hold(error, after)
        } else {
            retry(row, error, after, view.settings, None)
        }
    }

    /// A send the link never carried is held; every other result is judged
    /// by the default.
    fn judge(
        &self,
        row: &Row,
        result: &SendResult,
        view: &View<'_>,
        after: TimestampMs,
    ) -> (Verdict, Option<LogLine>) {
        match result {
            SendResult::Failed(error) if is_outage_failure(error) => self.hold(error, after),
            _ => judge(row, result, after, view.settings),
        }
    }
}
