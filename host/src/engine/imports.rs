//! The component's imports, answered by any [`World`].
//!
//! Only type conversion lives here; behaviour lives in the world (the real
//! one in `world.rs`). Each call adds its duration to the tick's import time,
//! so the guest's time budget counts the guest's own work and not, say, the
//! broker's ack latency.

use super::GuestState;
use super::bindings::sluice::drain::{env, links, store, types};
use sluice_policy as policy;
use sluice_policy::World;
use std::time::Instant;

impl<W: World> GuestState<W> {
    fn timed<R>(&mut self, call: impl FnOnce(&mut W) -> R) -> R {
        let started = Instant::now();
        let result = call(&mut self.world);
        self.import_time += started.elapsed();
        result
    }
}

impl<W: World> types::Host for GuestState<W> {}

impl<W: World> store::Host for GuestState<W> {
    fn claim_due(
        &mut self,
        now: i64,
        limit: u32,
        lease_ms: i64,
        skip: types::ClaimFilter,
    ) -> Result<Vec<types::Row>, String> {
        let skip = filter_from_wit(skip);
        let rows = self.timed(|w| w.claim_due(now, limit, lease_ms, &skip))?;
        Ok(rows.into_iter().map(row_to_wit).collect())
    }

    fn settle(&mut self, outcomes: Vec<types::Outcome>) -> Result<u32, String> {
        let outcomes = outcomes.into_iter().map(outcome_from_wit).collect();
        self.timed(|w| w.settle(outcomes))
    }

    fn reclaim(&mut self, now: i64) -> Result<u32, String> {
        self.timed(|w| w.reclaim(now))
    }

    fn expire(&mut self, now: i64, cutoff: i64) -> Result<u32, String> {
        self.timed(|w| w.expire(now, cutoff))
    }

    fn next_due_at(&mut self, skip: types::ClaimFilter) -> Result<Option<i64>, String> {
        let skip = filter_from_wit(skip);
        self.timed(|w| w.next_due_at(&skip))
    }
}

impl<W: World> links::Host for GuestState<W> {
    fn mesh_links(&mut self) -> Vec<types::MeshLink> {
        let links = self.timed(|w| w.mesh_links());
        links
            .into_iter()
            .map(|l| types::MeshLink {
                slug: l.slug,
                open: l.open,
                tokens: l.tokens,
                next_token_at: l.next_token_at,
                per_minute: l.per_minute,
            })
            .collect()
    }

    fn throttle(&mut self, mesh: String) {
        self.timed(|w| w.throttle(&mesh));
    }

    fn session_states(&mut self, pubkeys: Vec<String>) -> Vec<types::SessionState> {
        let states = self.timed(|w| w.session_states(pubkeys));
        states
            .into_iter()
            .map(|s| match s {
                policy::SessionState::Absent => types::SessionState::Absent,
                policy::SessionState::Connecting => types::SessionState::Connecting,
                policy::SessionState::Open => types::SessionState::Open,
            })
            .collect()
    }

    fn send_batch(
        &mut self,
        dispatches: Vec<types::Dispatch>,
        ack_timeout_ms: u32,
    ) -> Vec<types::SendResult> {
        let dispatches = dispatches.into_iter().map(dispatch_from_wit).collect();
        let results = self.timed(|w| w.send_batch(dispatches, ack_timeout_ms));
        results
            .into_iter()
            .map(|r| match r {
                policy::SendResult::Accepted(id) => types::SendResult::Accepted(id),
                policy::SendResult::Rejected(e) => types::SendResult::Rejected(e),
                policy::SendResult::Failed(e) => types::SendResult::Failed(e),
            })
            .collect()
    }
}

impl<W: World> env::Host for GuestState<W> {
    fn now(&mut self) -> i64 {
        self.timed(|w| w.now())
    }

    fn random_bytes(&mut self, len: u32) -> Vec<u8> {
        self.timed(|w| w.random_bytes(len))
    }

    fn log(&mut self, level: types::Level, event: String, fields: Vec<types::Field>) {
        let level = match level {
            types::Level::Debug => policy::Level::Debug,
            types::Level::Info => policy::Level::Info,
            types::Level::Warn => policy::Level::Warn,
            types::Level::Error => policy::Level::Error,
        };
        let fields = fields.into_iter().map(|f| (f.key, f.value)).collect();
        self.timed(|w| w.log(level, &event, fields));
    }
}

fn filter_from_wit(f: types::ClaimFilter) -> policy::ClaimFilter {
    policy::ClaimFilter {
        skip_meshes: f.skip_meshes,
        skip_unnamed: f.skip_unnamed,
    }
}

fn row_to_wit(r: policy::Row) -> types::Row {
    types::Row {
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

fn dispatch_from_wit(d: types::Dispatch) -> policy::Dispatch {
    policy::Dispatch {
        rowid: d.rowid,
        route: match d.route {
            types::Route::Daemon(mesh) => policy::Route::Daemon(mesh),
            types::Route::Session(key) => policy::Route::Session(key),
        },
        client_message_id: d.client_message_id,
        request_fingerprint_hex: d.request_fingerprint_hex,
        target_spec: d.target_spec,
        priority: d.priority,
        nonce: d.nonce,
        ciphertext: d.ciphertext,
    }
}

fn outcome_from_wit(o: types::Outcome) -> policy::Outcome {
    let verdict = match o.verdict {
        types::Verdict::Done(d) => policy::Verdict::Done {
            broker_message_id: d.broker_message_id,
            delivered_at: d.delivered_at,
        },
        types::Verdict::Dead(reason) => policy::Verdict::Dead { reason },
        types::Verdict::Retry(r) => policy::Verdict::Retry {
            next_attempt_at: r.next_attempt_at,
            last_error: r.last_error,
        },
        types::Verdict::Hold(h) => policy::Verdict::Hold {
            next_attempt_at: h.next_attempt_at,
            last_error: h.last_error,
        },
    };
    policy::Outcome {
        rowid: o.rowid,
        attempts: o.attempts,
        verdict,
    }
}
