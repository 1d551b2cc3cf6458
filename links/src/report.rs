//! What a link tells about itself: its state, since when, and its last
//! failure, for `sluice status` and for the host's wake-ups.
//!
//! Owns: `LinkKind`, `LinkReport` and `LinkStatus`, the value each link
//! publishes on its watch channel. Does not own: deciding the state (`link`)
//! or logging its changes (`tracker`).

use crate::config::LinkState;

/// Which kind of link a report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// A mesh's member link (`hello`).
    Daemon,
    /// A session key's link (`session_hello`).
    Session,
}

/// One link, as `sluice status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkReport {
    pub kind: LinkKind,
    /// The slug of its mesh.
    pub mesh: String,
    /// The session's public key (hex); `None` for a daemon link.
    pub session_pubkey: Option<String>,
    pub url: String,
    pub state: LinkState,
    /// Wall-clock ms since the epoch when it entered this state.
    pub since_ms: i64,
    /// The last failure: a refused hello with the broker's code, message
    /// and what to do; a connect error; `None` after it opened.
    pub last_error: Option<String>,
    /// Failed attempts since it was last open.
    pub failures: u32,
}

/// What a link publishes about itself; readers borrow it, never wait on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LinkStatus {
    pub state: LinkState,
    pub since_ms: i64,
    pub last_error: Option<String>,
    pub failures: u32,
}

impl LinkStatus {
    pub(crate) fn connecting(now_ms: i64) -> LinkStatus {
        LinkStatus {
            state: LinkState::Connecting,
            since_ms: now_ms,
            last_error: None,
            failures: 0,
        }
    }
}

/// Who a link is, for its reports and log lines.
#[derive(Clone, Debug)]
pub(crate) struct LinkName {
    pub kind: LinkKind,
    pub mesh: String,
    pub session_pubkey: Option<String>,
    pub url: String,
}

impl LinkName {
    pub(crate) fn report(&self, status: &LinkStatus) -> LinkReport {
        LinkReport {
            kind: self.kind,
            mesh: self.mesh.clone(),
            session_pubkey: self.session_pubkey.clone(),
            url: self.url.clone(),
            state: status.state,
            since_ms: status.since_ms,
            last_error: status.last_error.clone(),
            failures: status.failures,
        }
    }
}

impl std::fmt::Display for LinkName {
    /// `main` for a daemon link, `main session fd1724385aa0` for a session
    /// link: short enough for a log line, long enough to tell keys apart.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.session_pubkey {
            None => f.write_str(&self.mesh),
            Some(pubkey) => {
                let short = pubkey.get(..12).unwrap_or(pubkey);
                write!(f, "{} session {short}", self.mesh)
            }
        }
    }
}
