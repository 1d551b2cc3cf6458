//! What a policy can see and do: the host side of every import.
//!
//! [`HostWorld`] owns the outbox handle, the broker links, the clock, the
//! random source and the policy's log. It implements the policy crate's
//! [`World`] trait, so the same code answers the WebAssembly component (through
//! `engine::imports`, which only converts types) and the natively linked
//! baseline. It never classifies an error or decides a row's fate.

use sluice_links::{LinkState, Links};
use sluice_policy::{
    Call, ClaimFilter, Dispatch, Level, MeshLink, Outcome, Reply, Row, SendResult, SessionState,
    TimestampMs, World,
};
use sluice_store::SharedOutbox;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Told the outcomes of every settle that committed (metrics count dead
/// rows by reason from them).
pub type SettleObserver = Arc<dyn Fn(&[Outcome]) + Send + Sync>;

/// The host's side of the contract.
pub struct HostWorld {
    /// The process's write connection to the outbox, shared by every loop:
    /// it takes turns with the other programs that write the file and
    /// refuses every write once the file is found corrupt.
    pub store: Arc<SharedOutbox>,
    pub links: Links,
    /// The runtime the links live on; the drain thread blocks on it to send.
    pub runtime: tokio::runtime::Handle,
    /// The sha256 of the policy deciding this world's rows, recorded with
    /// each settled row (the audit column `decided_by`).
    pub decided_by: Option<String>,
    /// Hears each committed settle; `None` unless metrics are served.
    pub on_settle: Option<SettleObserver>,
}

impl HostWorld {
    /// `store` is shared by every world of the process on this outbox.
    pub fn new(
        store: Arc<SharedOutbox>,
        links: Links,
        runtime: tokio::runtime::Handle,
    ) -> HostWorld {
        HostWorld {
            store,
            links,
            runtime,
            decided_by: None,
            on_settle: None,
        }
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

/// The store half of the contract on a real outbox: what the host answers,
/// and what the simulator answers too (its outbox is a real file), so the
/// two cannot drift apart.
pub mod store_calls {
    use super::*;

    pub fn claim_due(
        store: &SharedOutbox,
        now: TimestampMs,
        limit: u32,
        lease_ms: i64,
        skip: &ClaimFilter,
    ) -> Result<Vec<Row>, String> {
        store
            .claim_due_except(now, limit, lease_ms, skip)
            .map_err(|e| e.to_string())
    }

    /// `decided_at`: when the rows were decided (the host's clock, or the
    /// simulator's), recorded with `decided_by`.
    pub fn settle(
        store: &SharedOutbox,
        outcomes: &[Outcome],
        decided_by: Option<&str>,
        decided_at: TimestampMs,
    ) -> Result<u32, String> {
        store
            .settle_by(outcomes, decided_by, Some(decided_at))
            .map_err(|e| e.to_string())
    }

    pub fn reclaim(store: &SharedOutbox, now: TimestampMs) -> Result<u32, String> {
        store.reclaim(now).map_err(|e| e.to_string())
    }

    pub fn expire(
        store: &SharedOutbox,
        now: TimestampMs,
        cutoff: TimestampMs,
    ) -> Result<u32, String> {
        store.expire(now, cutoff).map_err(|e| e.to_string())
    }

    pub fn next_due_at(
        store: &SharedOutbox,
        skip: &ClaimFilter,
    ) -> Result<Option<TimestampMs>, String> {
        store
            .read(|o| o.next_due_at_except(skip))
            .map_err(|e| e.to_string())
    }

    /// Answers a store call; gives any other call back. The simulator
    /// answers its store calls through this, so an import added to the
    /// store here is simulated on the real outbox with nothing more.
    pub fn answer(
        store: &SharedOutbox,
        call: Call,
        decided_by: Option<&str>,
        decided_at: TimestampMs,
    ) -> Result<Reply, Call> {
        Ok(match call {
            Call::ClaimDue {
                now,
                limit,
                lease_ms,
                skip,
            } => Reply::Rows(claim_due(store, now, limit, lease_ms, &skip)),
            Call::Settle { outcomes } => {
                Reply::Count(settle(store, &outcomes, decided_by, decided_at))
            }
            Call::Reclaim { now } => Reply::Count(reclaim(store, now)),
            Call::Expire { now, cutoff } => Reply::Count(expire(store, now, cutoff)),
            Call::NextDueAt { skip } => Reply::DueAt(next_due_at(store, &skip)),
            other => return Err(other),
        })
    }
}

impl World for HostWorld {
    fn claim_due(
        &mut self,
        now: TimestampMs,
        limit: u32,
        lease_ms: i64,
        skip: &ClaimFilter,
    ) -> Result<Vec<Row>, String> {
        store_calls::claim_due(&self.store, now, limit, lease_ms, skip)
    }

    fn settle(&mut self, outcomes: Vec<Outcome>) -> Result<u32, String> {
        let settled =
            store_calls::settle(&self.store, &outcomes, self.decided_by.as_deref(), now_ms());
        if let (Ok(_), Some(observer)) = (&settled, &self.on_settle) {
            observer(&outcomes);
        }
        settled
    }

    fn reclaim(&mut self, now: TimestampMs) -> Result<u32, String> {
        store_calls::reclaim(&self.store, now)
    }

    fn expire(&mut self, now: TimestampMs, cutoff: TimestampMs) -> Result<u32, String> {
        store_calls::expire(&self.store, now, cutoff)
    }

    fn next_due_at(&mut self, skip: &ClaimFilter) -> Result<Option<TimestampMs>, String> {
        store_calls::next_due_at(&self.store, skip)
    }

    fn mesh_links(&mut self) -> Vec<MeshLink> {
        let now = now_ms();
        self.links
            .mesh_budgets()
            .into_iter()
            .map(|budget| {
                let wait = i64::try_from(budget.next_token_in.as_millis()).unwrap_or(i64::MAX);
                MeshLink {
                    slug: budget.slug,
                    open: budget.state == LinkState::Open,
                    // u32::MAX for an unlimited member (0 while it pauses).
                    tokens: budget.tokens,
                    next_token_at: now.saturating_add(wait),
                    per_minute: budget.per_minute,
                }
            })
            .collect()
    }

    fn throttle(&mut self, mesh: &str) {
        self.links.throttle(mesh);
    }

    fn session_states(&mut self, pubkeys: Vec<String>) -> Vec<SessionState> {
        self.links.session_states(&pubkeys)
    }

    fn send_batch(&mut self, dispatches: Vec<Dispatch>, ack_timeout_ms: u32) -> Vec<SendResult> {
        let timeout = Duration::from_millis(u64::from(ack_timeout_ms));
        self.runtime
            .block_on(self.links.send_batch(dispatches, timeout))
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

/// Writes one policy log line: the message is `event k=v …` (the event leads,
/// so operators can grep for it in either format), and `event` is a field of
/// its own too: a top-level key in JSON logs, left out of text logs where it
/// would repeat the message's first word (see `cli::logging`). Tracing wants
/// field names fixed at compile time, so the policy's own fields stay `k=v`
/// pairs in the message.
pub fn policy_log(level: Level, event: &str, fields: &[(String, String)]) {
    let mut text = String::with_capacity(64);
    for (key, value) in fields {
        text.push(' ');
        text.push_str(key);
        text.push('=');
        text.push_str(value);
    }
    match level {
        Level::Debug => {
            tracing::debug!(target: "sluice::policy", event, "{event}{text}");
        }
        Level::Info => {
            tracing::info!(target: "sluice::policy", event, "{event}{text}");
        }
        Level::Warn => {
            tracing::warn!(target: "sluice::policy", event, "{event}{text}");
        }
        Level::Error => {
            tracing::error!(target: "sluice::policy", event, "{event}{text}");
        }
    }
}
