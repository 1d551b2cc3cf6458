//! What a scrape reads afresh: rows by status and the oldest pending row's
//! age (a read connection of its own), each link's state, the live policy,
//! and the settle rate since the previous scrape. Then it encodes every
//! metric.
//!
//! Owns: refreshing those gauges and encoding. Not here: the counters the
//! drain feeds (`metrics`), HTTP (`serve`).
//!
//! Cheap by design: the counts per status are one `GROUP BY status` over the
//! `outbox_pending(status, …)` index, and the oldest pending row is found on
//! the same index; no other row is read (no top errors).

use super::{LinkLabels, Metrics, PolicyLabels, StatusLabels};
use crate::daemon::Daemon;
use crate::engine::PolicyMeta;
use crate::swap::PolicySlot;
use crate::world::now_ms;
use anyhow::Context as _;
use prometheus_client::encoding::text::encode;
use sluice_links::{LinkKind, LinkState, Links};
use sluice_store::Outbox;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Every state a link can be in, each a `sluice_link_state` series.
const LINK_STATES: [LinkState; 4] = [
    LinkState::Connecting,
    LinkState::Open,
    LinkState::Unsupported,
    LinkState::Closed,
];

/// Refreshes and encodes the metrics; one scrape at a time.
pub struct Scrape {
    metrics: Arc<Metrics>,
    links: Links,
    slot: Option<Arc<PolicySlot>>,
    /// The natively linked policy (no slot): it never changes.
    native: PolicyMeta,
    /// Held for a whole scrape: the read connection, and the settled count
    /// and time of the previous scrape.
    state: Mutex<State>,
}

struct State {
    outbox: Outbox,
    previous: (Instant, u64),
}

impl Scrape {
    /// Opens the read connection to `outbox`.
    pub fn new(metrics: Arc<Metrics>, daemon: &Daemon, outbox: &Path) -> anyhow::Result<Scrape> {
        let reader = Outbox::open(outbox).with_context(|| {
            format!(
                "opening {} for the metrics' read connection",
                outbox.display()
            )
        })?;
        let settled = metrics.settled.get();
        Ok(Scrape {
            metrics,
            links: daemon.links.clone(),
            slot: daemon.slot.clone(),
            native: daemon.meta.clone(),
            state: Mutex::new(State {
                outbox: reader,
                previous: (Instant::now(), settled),
            }),
        })
    }

    /// Every metric in the OpenMetrics text format. Blocks on SQLite: call
    /// it off the async runtime's threads.
    pub fn render(&self) -> Result<String, String> {
        // A scrape that panicked left at worst stale gauges: go on.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.refresh_outbox(&mut state.outbox)?;
        self.refresh_rate(&mut state.previous);
        self.refresh_links();
        self.refresh_policy();
        let mut text = String::new();
        encode(&mut text, &self.metrics.registry)
            .map_err(|e| format!("encoding the metrics: {e}"))?;
        Ok(text)
    }

    fn refresh_outbox(&self, outbox: &mut Outbox) -> Result<(), String> {
        let report = outbox
            .status(0)
            .map_err(|e| format!("reading the outbox for the metrics: {e}"))?;
        let metrics = &self.metrics;
        metrics.rows.clear();
        for (status, count) in report.counts {
            metrics
                .rows
                .get_or_create(&StatusLabels { status })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let age_ms = report
            .oldest_pending_enqueued_at
            .map_or(0, |enqueued| now_ms().saturating_sub(enqueued).max(0));
        metrics.oldest_pending_seconds.set(age_ms as f64 / 1000.0);
        Ok(())
    }

    fn refresh_rate(&self, previous: &mut (Instant, u64)) {
        let settled = self.metrics.settled.get();
        let (then, before) = *previous;
        let seconds = then.elapsed().as_secs_f64();
        if seconds > 0.0 {
            let rate = settled.saturating_sub(before) as f64 / seconds;
            self.metrics.settled_per_second.set(rate);
        }
        *previous = (Instant::now(), settled);
    }

    fn refresh_links(&self) {
        let family = &self.metrics.link_state;
        // Links come and go (sessions are reloaded): only today's are listed.
        family.clear();
        for report in self.links.reports() {
            let kind = match report.kind {
                LinkKind::Daemon => "daemon",
                LinkKind::Session => "session",
            };
            for state in LINK_STATES {
                let labels = LinkLabels {
                    kind,
                    mesh: report.mesh.clone(),
                    session: report.session_pubkey.clone().unwrap_or_default(),
                    state: state.as_str(),
                };
                family
                    .get_or_create(&labels)
                    .set(i64::from(state == report.state));
            }
        }
    }

    fn refresh_policy(&self) {
        let meta = self
            .slot
            .as_ref()
            .map_or_else(|| self.native.clone(), |slot| slot.live_meta());
        let family = &self.metrics.policy_info;
        family.clear();
        family
            .get_or_create(&PolicyLabels {
                name: meta.name,
                version: meta.version,
                sha256: meta.sha256,
            })
            .set(1);
    }
}
