//! The two limits a drain cannot beat, each measured alone on the same rows.
//!
//! - The store: claim a batch, settle it done, until the outbox is empty.
//!   The same statements and transactions the drain's store calls make, in
//!   this process, no network.
//! - The links: the same rows' frames, sent pipelined over one daemon link
//!   to the same broker a batch at a time, each batch waiting for its acks,
//!   as the drain's `send_batch` does. No SQLite.
//!
//! The whole drain does both, one after the other per batch, plus the
//! policy: at best it reaches the lower of the two.

use sluice::links::{LinkOptions, Links, MemberKey, MeshConfig};
use sluice::policy::{Dispatch, Outcome, Route, Verdict};
use sluice::store::Outbox;
use std::path::Path;
use std::time::{Duration, Instant};

/// A policy's sha256, as the drain records it on every settled row.
const DECIDED_BY: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const LEASE_MS: i64 = 30_000;
const ACK_TIMEOUT: Duration = Duration::from_secs(15);

/// Rows per second claiming and settling every row of `outbox` (a fresh
/// copy, which this empties) `batch` at a time.
pub fn store(outbox: &Path, batch: u32) -> f64 {
    let mut store = Outbox::open(outbox).expect("open the outbox");
    let started = Instant::now();
    let mut settled = 0u64;
    loop {
        let now = sluice::world::now_ms();
        let rows = store.claim_due(now, batch, LEASE_MS).expect("claim");
        if rows.is_empty() {
            break;
        }
        let outcomes: Vec<Outcome> = rows
            .iter()
            .map(|row| Outcome {
                rowid: row.rowid,
                attempts: row.attempts,
                verdict: Verdict::Done {
                    broker_message_id: format!("msg_{}", row.rowid),
                    delivered_at: now,
                },
            })
            .collect();
        settled += u64::from(
            store
                .settle_by(&outcomes, Some(DECIDED_BY), Some(now))
                .expect("settle"),
        );
    }
    settled as f64 / started.elapsed().as_secs_f64()
}

/// The frames of every row of `outbox` (a fresh copy, which this claims
/// whole), as the policy dispatches them.
pub fn dispatches(outbox: &Path) -> Vec<Dispatch> {
    let mut store = Outbox::open(outbox).expect("open the outbox");
    let mut all = Vec::new();
    loop {
        let rows = store
            .claim_due(sluice::world::now_ms(), 65_536, LEASE_MS)
            .expect("claim");
        if rows.is_empty() {
            return all;
        }
        all.extend(rows.iter().map(|row| Dispatch {
            rowid: row.rowid,
            route: Route::Daemon(row.mesh.clone().unwrap_or_default()),
            client_message_id: row.client_message_id.clone(),
            request_fingerprint_hex: hex::encode(&row.request_fingerprint),
            target_spec: row.target_spec.clone().unwrap_or_default(),
            priority: row.priority.clone().unwrap_or_default(),
            nonce: row.nonce.clone().unwrap_or_default(),
            ciphertext: row.ciphertext.clone().unwrap_or_default(),
        }));
    }
}

/// A link to the benchmark's broker, as the drain makes it.
pub struct Link {
    runtime: tokio::runtime::Runtime,
    links: Links,
}

impl Link {
    pub fn open(broker_url: &str, key: MemberKey) -> Link {
        // The drain's own runtime shape: one worker for the links.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let mesh = MeshConfig {
            slug: crate::rows::MESH.to_string(),
            broker_url: broker_url.to_string(),
            mesh_id: "mesh_bench".to_string(),
            member_id: "mem_bench_links".to_string(),
            key,
            session_id: "bench-links-only".to_string(),
            rate_limit_per_minute: 0,
            rate_limit_burst: 0,
            ca_certs: Vec::new(),
            ca_file: None,
        };
        let links = {
            let _entered = runtime.enter();
            Links::start(vec![mesh], Vec::new(), LinkOptions::default())
        };
        assert!(
            runtime.block_on(links.wait_open(Duration::from_secs(10))),
            "the benchmark's link did not open"
        );
        Link { runtime, links }
    }

    /// Rows per second sending every dispatch, `batch` at a time.
    pub fn send_all(&self, dispatches: &[Dispatch], batch: u32) -> f64 {
        let started = Instant::now();
        let mut acked = 0u64;
        for chunk in dispatches.chunks(batch as usize) {
            let results = self
                .runtime
                .block_on(self.links.send_batch(chunk.to_vec(), ACK_TIMEOUT));
            acked += results
                .iter()
                .filter(|r| matches!(r, sluice::policy::SendResult::Accepted(_)))
                .count() as u64;
        }
        assert_eq!(
            acked,
            dispatches.len() as u64,
            "every send of the links-only run should be acked"
        );
        acked as f64 / started.elapsed().as_secs_f64()
    }

    pub fn close(self) {
        self.runtime.block_on(self.links.shutdown());
    }
}
