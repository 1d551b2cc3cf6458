//! `sluice run --metrics`: the drainer's Prometheus metrics.
//!
//! Owns: the metric families and their names, the hooks that feed the
//! counters and histograms as the drain runs (tick reports, tick times,
//! settles, acks), and the class of a dead row's reason. Not here: what is
//! read afresh at each scrape (`scrape`: the outbox, the links, the live
//! policy) or HTTP (`serve`).
//!
//! Dead rows are counted by reason from the outcomes of every committed
//! settle (the `HostWorld` hook): the tick report only has their number.
//! Rows the sweep expires without a claim count as dead with reason
//! `expired`, so the reasons add up to `verdict="dead"`.

mod scrape;
mod serve;

pub use scrape::Scrape;
pub use serve::{bind, spawn};

use crate::daemon::Daemon;
use crate::drain::ViolationObserver;
use crate::drain::{TickObserver, TickTimer};
use crate::engine::PolicyMeta;
use crate::guard::Breach;
use crate::world::SettleObserver;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use sluice_links::AckObserver;
use sluice_policy::{Outcome, Verdict};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// Every metric's name starts with this (and `_`).
pub const PREFIX: &str = "sluice";

/// The verdicts counted by `sluice_outcomes_total`.
pub const VERDICTS: [&str; 4] = ["done", "dead", "retry", "hold"];

/// The classes of `sluice_dead_rows_total`; `permanent` takes every reason
/// that is none of the others (a broker error the policy judged permanent).
pub const DEAD_REASONS: [&str; 6] = [
    "no_broker",
    "malformed",
    "permanent",
    "max_attempts",
    "expired",
    "session_gone",
];

/// Buckets of the tick duration: 0.5 ms doubling up to about 8 s.
const TICK_BUCKETS: (f64, u16) = (0.000_5, 15);
/// Buckets of send-to-ack latency: 0.5 ms doubling up to about 16 s.
const ACK_BUCKETS: (f64, u16) = (0.000_5, 16);

/// A float gauge (seconds, rates).
type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LinkLabels {
    kind: &'static str,
    mesh: String,
    /// The session's public key; empty for a mesh's daemon link.
    session: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViolationLabels {
    /// The policy's name and version.
    policy: String,
    sha256: String,
    rule: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    name: String,
    version: String,
    sha256: String,
}

/// Every metric of one drainer. Cloning a metric shares it, so the hooks
/// hold clones and the registry encodes what they counted.
pub struct Metrics {
    registry: Registry,
    outcomes: Family<VerdictLabels, Counter>,
    dead_rows: Family<ReasonLabels, Counter>,
    settled: Counter,
    tick_seconds: Histogram,
    ack_seconds: Histogram,
    rows: Family<StatusLabels, Gauge>,
    oldest_pending_seconds: FloatGauge,
    settled_per_second: FloatGauge,
    link_state: Family<LinkLabels, Gauge>,
    policy_info: Family<PolicyLabels, Gauge>,
    violations: Family<ViolationLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let metrics = Metrics {
            registry: Registry::default(),
            outcomes: Family::default(),
            dead_rows: Family::default(),
            settled: Counter::default(),
            tick_seconds: Histogram::new(exponential_buckets(TICK_BUCKETS.0, 2.0, TICK_BUCKETS.1)),
            ack_seconds: Histogram::new(exponential_buckets(ACK_BUCKETS.0, 2.0, ACK_BUCKETS.1)),
            rows: Family::default(),
            oldest_pending_seconds: FloatGauge::default(),
            settled_per_second: FloatGauge::default(),
            link_state: Family::default(),
            policy_info: Family::default(),
            violations: Family::default(),
        };
        // Zero from the start, so `rate()` and `increase()` see the first one.
        for verdict in VERDICTS {
            let _ = metrics.outcomes.get_or_create(&VerdictLabels { verdict });
        }
        for reason in DEAD_REASONS {
            let _ = metrics.dead_rows.get_or_create(&ReasonLabels { reason });
        }
        registry.register(
            "outcomes",
            "Claimed rows by the policy's verdict (dead includes rows expired by the sweep)",
            metrics.outcomes.clone(),
        );
        registry.register(
            "dead_rows",
            "Rows made dead, by the class of their reason",
            metrics.dead_rows.clone(),
        );
        registry.register(
            "rows_settled",
            "Rows settled done or dead, expired ones included",
            metrics.settled.clone(),
        );
        registry.register_with_unit(
            "tick_duration",
            "How long each drain tick took, failed ticks included",
            Unit::Seconds,
            metrics.tick_seconds.clone(),
        );
        registry.register_with_unit(
            "send_ack_latency",
            "Time from a send's frame being queued to the broker's ack",
            Unit::Seconds,
            metrics.ack_seconds.clone(),
        );
        registry.register(
            "outbox_rows",
            "Rows in the outbox by status, read at scrape time",
            metrics.rows.clone(),
        );
        registry.register_with_unit(
            "oldest_pending_age",
            "Age of the oldest pending row (0 when none is pending), read at scrape time",
            Unit::Seconds,
            metrics.oldest_pending_seconds.clone(),
        );
        registry.register(
            "rows_settled_per_second",
            "Rows settled per second since the previous scrape",
            metrics.settled_per_second.clone(),
        );
        registry.register(
            "link_state",
            "1 for each link's current state, 0 for its others",
            metrics.link_state.clone(),
        );
        registry.register(
            "policy_info",
            "The live policy: always 1, its name, version and sha256 as labels",
            metrics.policy_info.clone(),
        );
        registry.register(
            "policy_violations",
            "Calls of a policy the host's guard refused, by policy and rule",
            metrics.violations.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Counts each tick's breaches of the host's rules, by policy and rule.
    pub fn violation_observer(&self) -> ViolationObserver {
        let violations = self.violations.clone();
        Arc::new(move |meta: &PolicyMeta, breaches: &[Breach], _dropped| {
            for breach in breaches {
                violations
                    .get_or_create(&ViolationLabels {
                        policy: format!("{} {}", meta.name, meta.version),
                        sha256: meta.sha256.clone(),
                        rule: breach.rule.name(),
                    })
                    .inc();
            }
        })
    }

    /// Counts each tick's verdicts and settled rows.
    pub fn tick_observer(&self) -> TickObserver {
        let (outcomes, dead_rows, settled) = (
            self.outcomes.clone(),
            self.dead_rows.clone(),
            self.settled.clone(),
        );
        Box::new(move |report| {
            let counts = [
                ("done", report.done),
                ("dead", report.dead + report.expired),
                ("retry", report.retried),
                ("hold", report.held),
            ];
            for (verdict, n) in counts {
                outcomes
                    .get_or_create(&VerdictLabels { verdict })
                    .inc_by(u64::from(n));
            }
            // The settle hook counts claimed rows' reasons; the sweep's are these.
            dead_rows
                .get_or_create(&ReasonLabels { reason: "expired" })
                .inc_by(u64::from(report.expired));
            settled.inc_by(u64::from(report.done + report.dead + report.expired));
        })
    }

    /// Observes each tick's duration.
    pub fn tick_timer(&self) -> TickTimer {
        let histogram = self.tick_seconds.clone();
        Box::new(move |elapsed| histogram.observe(elapsed.as_secs_f64()))
    }

    /// Counts the dead rows of each committed settle by reason.
    pub fn settle_observer(&self) -> SettleObserver {
        let dead_rows = self.dead_rows.clone();
        Arc::new(move |outcomes: &[Outcome]| {
            for outcome in outcomes {
                if let Verdict::Dead { reason } = &outcome.verdict {
                    dead_rows
                        .get_or_create(&ReasonLabels {
                            reason: dead_reason_class(reason),
                        })
                        .inc();
                }
            }
        })
    }

    /// Observes each acked send's latency (given to the links at start).
    pub fn ack_observer(&self) -> AckObserver {
        let histogram = self.ack_seconds.clone();
        AckObserver(Arc::new(move |elapsed| {
            histogram.observe(elapsed.as_secs_f64())
        }))
    }

    /// Hooks these metrics into `daemon` and serves them on `listener` (from
    /// [`bind`]), reading `outbox` through a connection of their own. The
    /// daemon must have been started with [`Metrics::ack_observer`].
    pub fn attach(
        self: &Arc<Metrics>,
        daemon: &mut Daemon,
        listener: std::net::TcpListener,
        outbox: &Path,
    ) -> anyhow::Result<()> {
        daemon.observe(|| self.tick_observer());
        daemon.time_ticks(|| self.tick_timer());
        daemon.observe_settles(&self.settle_observer());
        daemon.observe_violations(&self.violation_observer());
        let scrape = Scrape::new(Arc::clone(self), daemon, outbox)?;
        spawn(&daemon.runtime(), listener, Arc::new(scrape))
    }
}

/// The class of a dead row's reason, as the default policy words them
/// (`policy/src/rules.rs`); anything else is a broker error judged permanent.
pub fn dead_reason_class(reason: &str) -> &'static str {
    const PREFIXES: [(&str, &str); 5] = [
        ("no_broker", "no_broker"),
        ("malformed", "malformed"),
        ("max_attempts", "max_attempts"),
        ("expired", "expired"),
        ("session_gone", "session_gone"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| reason.starts_with(prefix))
        .map_or("permanent", |(_, class)| class)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_policy::TickReport;

    #[test]
    fn dead_reasons_fall_into_their_classes() {
        let cases = [
            ("no_broker_for_mesh:beta", "no_broker"),
            ("malformed_row: missing ciphertext", "malformed"),
            ("max_attempts: ack_timeout", "max_attempts"),
            ("expired", "expired"),
            ("session_gone", "session_gone"),
            ("target_not_found: @bob", "permanent"),
            ("Forbidden", "permanent"),
        ];
        for (reason, class) in cases {
            assert_eq!(dead_reason_class(reason), class, "{reason}");
            assert!(DEAD_REASONS.contains(&class));
        }
    }

    #[test]
    fn ticks_and_settles_add_up_by_verdict_and_reason() {
        let metrics = Metrics::new();
        let mut observe = metrics.tick_observer();
        observe(&TickReport {
            claimed: 4,
            done: 2,
            dead: 1,
            held: 1,
            expired: 3,
            ..TickReport::default()
        });
        let settle = metrics.settle_observer();
        settle(&[Outcome {
            rowid: 1,
            attempts: 1,
            verdict: Verdict::Dead {
                reason: "Forbidden".to_string(),
            },
        }]);
        let verdict = |verdict| {
            metrics
                .outcomes
                .get_or_create(&VerdictLabels { verdict })
                .get()
        };
        let reason = |reason| {
            metrics
                .dead_rows
                .get_or_create(&ReasonLabels { reason })
                .get()
        };
        assert_eq!(
            (verdict("done"), verdict("dead"), verdict("hold")),
            (2, 4, 1)
        );
        assert_eq!((reason("permanent"), reason("expired")), (1, 3));
        assert_eq!(metrics.settled.get(), 6);
    }
}
