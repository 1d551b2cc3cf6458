//! What a policy can see and do: the host side of every import.
//!
//! [`HostWorld`] owns the outbox handle, the broker links, the clock, the
//! random source and the policy's log. It implements the policy crate's
//! [`World`] trait, so the same code answers the WebAssembly component (through
//! `engine::imports`, which only converts types) and the natively linked
//! baseline. It never classifies an error or decides a row's fate.

use sluice_links::Links;
use sluice_policy::{Dispatch, Level, Outcome, Row, SendResult, SessionState, TimestampMs, World};
use sluice_store::Outbox;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The host's side of the contract.
pub struct HostWorld {
    pub outbox: Outbox,
    pub links: Links,
    /// The runtime the links live on; the drain thread blocks on it to send.
    pub runtime: tokio::runtime::Handle,
}

impl HostWorld {
    pub fn new(outbox: Outbox, links: Links, runtime: tokio::runtime::Handle) -> HostWorld {
        HostWorld { outbox, links, runtime }
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> TimestampMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Largest random buffer a policy may ask for in one call: a bound on what a
/// confused policy can make the host allocate.
pub const RANDOM_BYTES_MAX: u32 = 64 * 1024;

impl World for HostWorld {
    fn claim_due(&mut self, now: TimestampMs, limit: u32, lease_ms: i64) -> Result<Vec<Row>, String> {
        self.outbox.claim_due(now, limit, lease_ms).map_err(|e| e.to_string())
    }

    fn settle(&mut self, outcomes: Vec<Outcome>) -> Result<u32, String> {
        self.outbox.settle(&outcomes).map_err(|e| e.to_string())
    }

    fn reclaim(&mut self, now: TimestampMs) -> Result<u32, String> {
        self.outbox.reclaim(now).map_err(|e| e.to_string())
    }

    fn expire(&mut self, now: TimestampMs, cutoff: TimestampMs) -> Result<u32, String> {
        self.outbox.expire(now, cutoff).map_err(|e| e.to_string())
    }

    fn next_due_at(&mut self) -> Result<Option<TimestampMs>, String> {
        self.outbox.next_due_at().map_err(|e| e.to_string())
    }

    fn meshes(&mut self) -> Vec<String> {
        self.links.meshes()
    }

    fn session_states(&mut self, pubkeys: Vec<String>) -> Vec<SessionState> {
        self.links.session_states(&pubkeys)
    }

    fn send_batch(&mut self, dispatches: Vec<Dispatch>, ack_timeout_ms: u32) -> Vec<SendResult> {
        let timeout = Duration::from_millis(u64::from(ack_timeout_ms));
        self.runtime.block_on(self.links.send_batch(dispatches, timeout))
    }

    fn now(&mut self) -> TimestampMs {
        now_ms()
    }

    fn random_bytes(&mut self, len: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; len.min(RANDOM_BYTES_MAX) as usize];
        // The OS source failing is not something a drain can work around.
        if let Err(e) = getrandom::fill(&mut bytes) {
            tracing::error!(target: "sluice", "random source failed: {e}");
        }
        bytes
    }

    fn log(&mut self, level: Level, event: &str, fields: Vec<(String, String)>) {
        policy_log(level, event, &fields);
    }
}

/// Writes one policy log line; `event` leads, so operators can grep for it.
pub fn policy_log(level: Level, event: &str, fields: &[(String, String)]) {
    let mut text = String::with_capacity(64);
    for (key, value) in fields {
        text.push(' ');
        text.push_str(key);
        text.push('=');
        text.push_str(value);
    }
    match level {
        Level::Debug => tracing::debug!(target: "sluice::policy", "{event}{text}"),
        Level::Info => tracing::info!(target: "sluice::policy", "{event}{text}"),
        Level::Warn => tracing::warn!(target: "sluice::policy", "{event}{text}"),
        Level::Error => tracing::error!(target: "sluice::policy", "{event}{text}"),
    }
}
