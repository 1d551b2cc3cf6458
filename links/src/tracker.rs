//! A link's state changes, published and logged: loud when something
//! changes, quiet while nothing does.
//!
//! Owns: the link's `LinkStatus` (state, since, last error, failures), the
//! registry-wide change counter, and the log lines of state changes (open,
//! lost, refused, unsupported). A link that stays down logs its first
//! failure at WARN, identical repeats at DEBUG, and a WARN with the count
//! every `FAILURE_WARN_EVERY` attempts; a different failure is news and is
//! logged at WARN again. Nothing is logged per send. Does not own: deciding
//! what happened (`link`).

use crate::config::LinkState;
use crate::connect::LinkError;
use crate::identity::now_ms;
use crate::report::{LinkName, LinkStatus};
use std::sync::Arc;
use tokio::sync::watch;

/// Identical failures in a row between two WARN lines while a link stays
/// down: prevents a broker that is down for a day from filling the log (one
/// line per backoff cap, ~8600 a day) while still saying now and then that
/// the link is not back.
pub const FAILURE_WARN_EVERY: u32 = 60;

/// How loud one failure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailureLog {
    /// The first failure of an outage, or a different one than before.
    Warn,
    /// The same failure again, on a `FAILURE_WARN_EVERY` boundary.
    StillFailing,
    /// The same failure again.
    Quiet,
}

/// How loud the `failures`-th failure in a row is; `repeated` when it is the
/// same as the one before it.
pub(crate) fn failure_log(failures: u32, repeated: bool) -> FailureLog {
    if !repeated {
        FailureLog::Warn
    } else if failures.is_multiple_of(FAILURE_WARN_EVERY) {
        FailureLog::StillFailing
    } else {
        FailureLog::Quiet
    }
}

/// Publishes one link's status and logs its changes.
pub(crate) struct Tracker {
    name: LinkName,
    status: watch::Sender<LinkStatus>,
    /// Bumped on every state change and every new kind of failure, of any
    /// link: the host wakes on it and rewrites its status file.
    changes: Arc<watch::Sender<u64>>,
    /// What the last failure was, to tell a repeat from news.
    last_failure: Option<String>,
}

impl Tracker {
    pub(crate) fn new(
        name: LinkName,
        status: watch::Sender<LinkStatus>,
        changes: Arc<watch::Sender<u64>>,
    ) -> Tracker {
        Tracker {
            name,
            status,
            changes,
            last_failure: None,
        }
    }

    pub(crate) fn name(&self) -> &LinkName {
        &self.name
    }

    /// Failed attempts since the link was last open.
    pub(crate) fn failures(&self) -> u32 {
        self.status.borrow().failures
    }

    pub(crate) fn opened(&mut self) {
        self.last_failure = None;
        self.publish(LinkState::Open, None, 0);
        tracing::info!(target: "sluice", mesh = %self.name.mesh, session = self.name.session_pubkey.as_deref(), url = %self.name.url, "broker link open");
    }

    pub(crate) fn lost(&mut self, reason: &str) {
        self.publish(
            LinkState::Connecting,
            Some(format!("link lost: {reason}")),
            0,
        );
        tracing::warn!(target: "sluice", mesh = %self.name.mesh, session = self.name.session_pubkey.as_deref(), "broker link lost: {reason}; reconnecting");
    }

    /// An attempt to open failed; the link stays `Connecting` and retries.
    pub(crate) fn failed(&mut self, error: &LinkError) {
        let failures = self.failures().saturating_add(1);
        let key = error.repeat_key();
        let repeated = self.last_failure.as_deref() == Some(key.as_str());
        self.last_failure = Some(key);
        self.publish(LinkState::Connecting, Some(error.to_string()), failures);
        let (mesh, session) = (&self.name.mesh, self.name.session_pubkey.as_deref());
        match failure_log(failures, repeated) {
            FailureLog::Warn => {
                tracing::warn!(target: "sluice", mesh = %mesh, session, failures, "{error}")
            }
            FailureLog::StillFailing => {
                tracing::warn!(target: "sluice", mesh = %mesh, session, failures, "broker link still not open after {failures} attempts: {error}")
            }
            FailureLog::Quiet => {
                tracing::debug!(target: "sluice", mesh = %mesh, session, failures, "{error}")
            }
        }
    }

    /// The broker has no session support: the link stops trying.
    pub(crate) fn unsupported(&mut self, error: &LinkError) {
        let failures = self.failures().saturating_add(1);
        self.publish(LinkState::Unsupported, Some(error.to_string()), failures);
        tracing::warn!(target: "sluice", mesh = %self.name.mesh, session = self.name.session_pubkey.as_deref(), "{error}; not retried");
    }

    pub(crate) fn closed(&mut self) {
        let (last_error, failures) = {
            let status = self.status.borrow();
            (status.last_error.clone(), status.failures)
        };
        self.publish(LinkState::Closed, last_error, failures);
        tracing::debug!(target: "sluice", mesh = %self.name.mesh, session = self.name.session_pubkey.as_deref(), "broker link closed");
    }

    /// Sets the status; bumps `changes` when the state or the failure text
    /// changed (not for an identical repeat, which changes only a count).
    fn publish(&self, state: LinkState, last_error: Option<String>, failures: u32) {
        let mut changed = false;
        self.status.send_modify(|status| {
            if status.state != state {
                status.state = state;
                status.since_ms = now_ms();
                changed = true;
            }
            if status.last_error != last_error {
                status.last_error = last_error;
                changed = true;
            }
            status.failures = failures;
        });
        if changed {
            self.changes
                .send_modify(|count| *count = count.wrapping_add(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_warns_and_identical_repeats_are_quiet_but_counted() {
        assert_eq!(failure_log(1, false), FailureLog::Warn);
        for failures in 2..FAILURE_WARN_EVERY {
            assert_eq!(failure_log(failures, true), FailureLog::Quiet);
        }
        assert_eq!(
            failure_log(FAILURE_WARN_EVERY, true),
            FailureLog::StillFailing
        );
        assert_eq!(failure_log(FAILURE_WARN_EVERY + 1, true), FailureLog::Quiet);
        assert_eq!(
            failure_log(FAILURE_WARN_EVERY * 2, true),
            FailureLog::StillFailing
        );
    }

    #[test]
    fn a_different_failure_is_news_whatever_the_count() {
        assert_eq!(failure_log(7, false), FailureLog::Warn);
        assert_eq!(failure_log(FAILURE_WARN_EVERY + 3, false), FailureLog::Warn);
    }
}
