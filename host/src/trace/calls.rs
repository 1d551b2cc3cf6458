//! The names and argument shapes of the import calls in a trace.
//!
//! The recorder writes them and replay builds them again from what a policy
//! does; both go through these functions, so a difference in a trace is a
//! difference in behaviour, never in formatting.

use serde_json::{Value, json};
use sluice_policy::{ClaimFilter, Dispatch, Level, Outcome};

pub const CLAIM_DUE: &str = "store.claim-due";
pub const SETTLE: &str = "store.settle";
pub const RECLAIM: &str = "store.reclaim";
pub const EXPIRE: &str = "store.expire";
pub const NEXT_DUE_AT: &str = "store.next-due-at";
pub const MESH_LINKS: &str = "links.mesh-links";
pub const THROTTLE: &str = "links.throttle";
pub const SESSION_STATES: &str = "links.session-states";
pub const SEND_BATCH: &str = "links.send-batch";
pub const NOW: &str = "env.now";
pub const RANDOM_BYTES: &str = "env.random-bytes";
pub const LOG: &str = "env.log";

pub fn claim_due(now: i64, limit: u32, lease_ms: i64, skip: &ClaimFilter) -> Value {
    json!({ "now": now, "limit": limit, "lease_ms": lease_ms, "skip": skip })
}

pub fn next_due_at(skip: &ClaimFilter) -> Value {
    json!({ "skip": skip })
}

pub fn throttle(mesh: &str) -> Value {
    json!({ "mesh": mesh })
}

pub fn settle(outcomes: &[Outcome]) -> Value {
    json!({ "outcomes": outcomes })
}

pub fn now_only(now: i64) -> Value {
    json!({ "now": now })
}

pub fn expire(now: i64, cutoff: i64) -> Value {
    json!({ "now": now, "cutoff": cutoff })
}

pub fn none() -> Value {
    json!({})
}

pub fn session_states(pubkeys: &[String]) -> Value {
    json!({ "pubkeys": pubkeys })
}

pub fn send_batch(dispatches: &[Dispatch], ack_timeout_ms: u32) -> Value {
    json!({ "dispatches": dispatches, "ack_timeout_ms": ack_timeout_ms })
}

pub fn random_bytes(len: u32) -> Value {
    json!({ "len": len })
}

pub fn log(level: Level, event: &str, fields: &[(String, String)]) -> Value {
    json!({ "level": level, "event": event, "fields": fields })
}

/// Random bytes as base64 text, like every other byte field of a trace.
pub fn bytes_text(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn bytes_from_text(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}
