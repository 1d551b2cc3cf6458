//! The component's imports as the policy's `World`, and the conversions
//! between the generated WIT types and `sluice-policy`'s plain types.
//!
//! Shared by every policy component of this repository (`guest/`, and
//! `guest-outage/` through `#[path]`): each crate generates its own
//! `bindings` from the same WIT, so the same source compiles in both.

use super::bindings::sluice::drain::types as wit;
use super::bindings::sluice::drain::{env, links, store};
use sluice_policy as policy;

/// A panic is reported through the policy's own log import: the guest has no
/// stderr (the host links no WASI), and the trap that follows abandons the tick.
pub(crate) fn install_panic_log() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let field = wit::Field {
                key: "err".into(),
                value: info.to_string(),
            };
            env::log(wit::Level::Error, "policy_panic", &[field]);
        }));
    });
}

/// The component's imports as the policy's `World`.
pub(crate) struct Imports;

impl policy::World for Imports {
    fn claim_due(
        &mut self,
        now: i64,
        limit: u32,
        lease_ms: i64,
        skip: &policy::ClaimFilter,
    ) -> Result<Vec<policy::Row>, String> {
        Ok(
            store::claim_due(now, limit, lease_ms, &filter_to_wit(skip))?
                .into_iter()
                .map(row_from_wit)
                .collect(),
        )
    }

    fn settle(&mut self, outcomes: Vec<policy::Outcome>) -> Result<u32, String> {
        let outcomes: Vec<wit::Outcome> = outcomes.into_iter().map(outcome_to_wit).collect();
        store::settle(&outcomes)
    }

    fn reclaim(&mut self, now: i64) -> Result<u32, String> {
        store::reclaim(now)
    }

    fn expire(&mut self, now: i64, cutoff: i64) -> Result<u32, String> {
        store::expire(now, cutoff)
    }

    fn next_due_at(&mut self, skip: &policy::ClaimFilter) -> Result<Option<i64>, String> {
        store::next_due_at(&filter_to_wit(skip))
    }

    fn mesh_links(&mut self) -> Vec<policy::MeshLink> {
        links::mesh_links()
            .into_iter()
            .map(|l| policy::MeshLink {
                slug: l.slug,
                open: l.open,
                tokens: l.tokens,
                next_token_at: l.next_token_at,
                per_minute: l.per_minute,
            })
            .collect()
    }

    fn throttle(&mut self, mesh: &str) {
        links::throttle(mesh)
    }

    fn session_states(&mut self, pubkeys: Vec<String>) -> Vec<policy::SessionState> {
        links::session_states(&pubkeys)
            .into_iter()
            .map(|s| match s {
                wit::SessionState::Absent => policy::SessionState::Absent,
                wit::SessionState::Connecting => policy::SessionState::Connecting,
                wit::SessionState::Open => policy::SessionState::Open,
            })
            .collect()
    }

    fn send_batch(
        &mut self,
        dispatches: Vec<policy::Dispatch>,
        ack_timeout_ms: u32,
    ) -> Vec<policy::SendResult> {
        let dispatches: Vec<wit::Dispatch> = dispatches.into_iter().map(dispatch_to_wit).collect();
        links::send_batch(&dispatches, ack_timeout_ms)
            .into_iter()
            .map(|r| match r {
                wit::SendResult::Accepted(id) => policy::SendResult::Accepted(id),
                wit::SendResult::Rejected(e) => policy::SendResult::Rejected(e),
                wit::SendResult::Failed(e) => policy::SendResult::Failed(e),
            })
            .collect()
    }

    fn now(&mut self) -> i64 {
        env::now()
    }

    fn random_bytes(&mut self, len: u32) -> Vec<u8> {
        env::random_bytes(len)
    }

    fn log(&mut self, level: policy::Level, event: &str, fields: Vec<(String, String)>) {
        let level = match level {
            policy::Level::Debug => wit::Level::Debug,
            policy::Level::Info => wit::Level::Info,
            policy::Level::Warn => wit::Level::Warn,
            policy::Level::Error => wit::Level::Error,
        };
        let fields: Vec<wit::Field> = fields
            .into_iter()
            .map(|(key, value)| wit::Field { key, value })
            .collect();
        env::log(level, event, &fields);
    }
}

fn filter_to_wit(f: &policy::ClaimFilter) -> wit::ClaimFilter {
    wit::ClaimFilter {
        skip_meshes: f.skip_meshes.clone(),
        skip_unnamed: f.skip_unnamed,
    }
}

fn row_from_wit(r: wit::Row) -> policy::Row {
    policy::Row {
        rowid: r.rowid,
        id: r.id,
        client_message_id: r.client_message_id,
        request_fingerprint: r.request_fingerprint,
        payload: r.payload,
        enqueued_at: r.enqueued_at,
        attempts: r.attempts,
        mesh: r.mesh,
        target_spec: r.target_spec,
        nonce: r.nonce,
        ciphertext: r.ciphertext,
        priority: r.priority,
        sender_session_pubkey: r.sender_session_pubkey,
        defect: r.defect,
    }
}

fn dispatch_to_wit(d: policy::Dispatch) -> wit::Dispatch {
    wit::Dispatch {
        rowid: d.rowid,
        route: match d.route {
            policy::Route::Daemon(mesh) => wit::Route::Daemon(mesh),
            policy::Route::Session(key) => wit::Route::Session(key),
        },
        client_message_id: d.client_message_id,
        request_fingerprint_hex: d.request_fingerprint_hex,
        target_spec: d.target_spec,
        priority: d.priority,
        nonce: d.nonce,
        ciphertext: d.ciphertext,
    }
}

fn outcome_to_wit(o: policy::Outcome) -> wit::Outcome {
    let verdict = match o.verdict {
        policy::Verdict::Done {
            broker_message_id,
            delivered_at,
        } => wit::Verdict::Done(wit::Delivery {
            broker_message_id,
            delivered_at,
        }),
        policy::Verdict::Dead { reason } => wit::Verdict::Dead(reason),
        policy::Verdict::Retry {
            next_attempt_at,
            last_error,
        } => wit::Verdict::Retry(wit::RetryPlan {
            next_attempt_at,
            last_error,
        }),
        policy::Verdict::Hold {
            next_attempt_at,
            last_error,
        } => wit::Verdict::Hold(wit::HoldPlan {
            next_attempt_at,
            last_error,
        }),
    };
    wit::Outcome {
        rowid: o.rowid,
        attempts: o.attempts,
        verdict,
    }
}
