//! The simulated broker: its answer to every dispatch.
//!
//! Owns: what comes back for a send as the fault profile draws it —
//! accepted with a message id, rejected permanently (`forbidden`,
//! `payload_too_large`, ...), rejected transiently (`rate_limited`, `no
//! connected peer for target`), `ack_timeout`, `link_closed` for every send
//! on a link that drops mid-batch — and how long the batch took. Sends on a
//! link that is not open fail as the links say (`links`). Not here: the
//! outbox, the clock, judging the policy.
//!
//! Like the real host, it never classifies: it answers with the texts the
//! real broker and links produce, and the policy decides what they mean.

use super::links::SimLinks;
use super::profile::{FaultCounts, Profile};
use super::rng::{PPM, SimRng};
use sluice_policy::{Dispatch, Route, SendResult};
use std::collections::{BTreeMap, BTreeSet};

/// Broker error texts the policy must treat as permanent.
const PERMANENT_ERRORS: [&str; 6] = [
    "forbidden",
    "payload_too_large",
    "payload too large",
    "target not found",
    "not authorized",
    "blocked by recipient grants",
];
/// Broker error texts the policy must treat as transient.
const TRANSIENT_ERRORS: [&str; 3] = [
    "rate_limited",
    "no connected peer for target",
    "internal hiccup",
];

/// The broker behind the simulated links.
#[derive(Clone, Debug)]
pub struct SimBroker {
    profile: Profile,
    rng: SimRng,
    pub links: SimLinks,
    /// Message ids handed out so far.
    accepted: u64,
}

/// What one `send-batch` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchAnswer {
    pub results: Vec<SendResult>,
    /// Time until the last ack (sends are concurrent): the clock moves by this.
    pub elapsed_ms: i64,
}

impl SimBroker {
    pub fn new(
        profile: Profile,
        mut rng: SimRng,
        meshes: &[String],
        sessions: &[String],
    ) -> SimBroker {
        let links = SimLinks::new(profile.clone(), rng.fork(0), meshes, sessions);
        SimBroker {
            profile,
            rng,
            links,
            accepted: 0,
        }
    }

    /// Answers every dispatch, in order.
    pub fn send_batch(
        &mut self,
        dispatches: &[Dispatch],
        ack_timeout_ms: u32,
        faults: &mut FaultCounts,
    ) -> BatchAnswer {
        let timeout_ms = i64::from(ack_timeout_ms);
        let dropped = self.drop_links(dispatches, timeout_ms, faults);
        let mut elapsed_ms = 0;
        let mut results = Vec::with_capacity(dispatches.len());
        for dispatch in dispatches {
            let (result, latency_ms) = match (
                self.links.check_open(&dispatch.route),
                dropped.get(&dispatch.route),
            ) {
                (Err(error), _) => (SendResult::Failed(error), 0),
                (Ok(()), Some(at_ms)) => (SendResult::Failed("link_closed".into()), *at_ms),
                (Ok(()), None) => self.answer(timeout_ms, faults),
            };
            elapsed_ms = elapsed_ms.max(latency_ms);
            results.push(result);
        }
        // A dropped daemon link stays down and a session goes back to
        // connecting, until a later flip reconnects them.
        for route in dropped.keys() {
            self.links.close(route);
        }
        BatchAnswer {
            results,
            elapsed_ms,
        }
    }

    /// The routes of this batch whose link closes mid-batch, with when.
    fn drop_links(
        &mut self,
        dispatches: &[Dispatch],
        timeout_ms: i64,
        faults: &mut FaultCounts,
    ) -> BTreeMap<Route, i64> {
        let routes: BTreeSet<&Route> = dispatches
            .iter()
            .map(|d| &d.route)
            .filter(|r| self.links.check_open(r).is_ok())
            .collect();
        let mut dropped = BTreeMap::new();
        for route in routes {
            if self.rng.chance(self.profile.link_drop_ppm) {
                let at_ms = self
                    .rng
                    .between(1, self.profile.ack_latency_max_ms.min(timeout_ms).max(1));
                dropped.insert(route.clone(), at_ms);
                *faults.entry("link_drop").or_default() += 1;
            }
        }
        dropped
    }

    /// The broker's answer to one send on an open link, and its latency.
    fn answer(&mut self, timeout_ms: i64, faults: &mut FaultCounts) -> (SendResult, i64) {
        let p = &self.profile;
        let weights = [
            p.reject_permanent_ppm,
            p.reject_transient_ppm,
            p.ack_timeout_ppm,
            PPM.saturating_sub(p.reject_permanent_ppm + p.reject_transient_ppm + p.ack_timeout_ppm),
        ];
        let latency_ms = self
            .rng
            .between(1, self.profile.ack_latency_max_ms.min(timeout_ms).max(1));
        let drawn = self.rng.weighted(&weights);
        if let Some(kind) = ["reject_permanent", "reject_transient", "ack_timeout"].get(drawn) {
            *faults.entry(kind).or_default() += 1;
        }
        match drawn {
            0 => (
                SendResult::Rejected(self.error_text(&PERMANENT_ERRORS)),
                latency_ms,
            ),
            1 => (
                SendResult::Rejected(self.error_text(&TRANSIENT_ERRORS)),
                latency_ms,
            ),
            2 => (SendResult::Failed("ack_timeout".into()), timeout_ms),
            _ => {
                self.accepted += 1;
                (
                    SendResult::Accepted(format!("msg-{:08}", self.accepted)),
                    latency_ms,
                )
            }
        }
    }

    fn error_text(&mut self, texts: &[&str]) -> String {
        self.rng
            .pick(texts)
            .copied()
            .unwrap_or("unknown")
            .to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn dispatch(rowid: i64, route: Route) -> Dispatch {
        Dispatch {
            rowid,
            route,
            client_message_id: format!("c{rowid}"),
            request_fingerprint_hex: String::new(),
            target_spec: "*".into(),
            priority: "next".into(),
            nonce: String::new(),
            ciphertext: String::new(),
        }
    }

    #[test]
    fn a_clean_broker_accepts_everything_on_open_links() {
        let profile = Profile::named("none").unwrap();
        let mut broker = SimBroker::new(profile, SimRng::new(1), &["alpha".into()], &[]);
        let mut faults = FaultCounts::new();
        let batch = [
            dispatch(1, Route::Daemon("alpha".into())),
            dispatch(2, Route::Daemon("nope".into())),
            dispatch(3, Route::Session("k".into())),
        ];
        let answer = broker.send_batch(&batch, 15_000, &mut faults);
        assert_eq!(
            answer.results[0],
            SendResult::Accepted("msg-00000001".into())
        );
        assert_eq!(
            answer.results[1],
            SendResult::Failed("link_not_open: unknown mesh nope".into())
        );
        assert_eq!(
            answer.results[2],
            SendResult::Failed("link_not_open: no session link".into())
        );
        assert!((1..=50).contains(&answer.elapsed_ms));
        assert!(faults.is_empty());
    }

    #[test]
    fn a_dropped_link_fails_every_send_on_it() {
        let profile = Profile {
            link_drop_ppm: PPM,
            ..Profile::named("none").unwrap()
        };
        let mut broker = SimBroker::new(profile, SimRng::new(2), &["alpha".into()], &[]);
        let mut faults = FaultCounts::new();
        let batch = [
            dispatch(1, Route::Daemon("alpha".into())),
            dispatch(2, Route::Daemon("alpha".into())),
        ];
        let answer = broker.send_batch(&batch, 15_000, &mut faults);
        assert!(
            answer
                .results
                .iter()
                .all(|r| *r == SendResult::Failed("link_closed".into()))
        );
        assert_eq!(faults["link_drop"], 1);
        let next = broker.send_batch(&batch[..1], 15_000, &mut faults);
        assert_eq!(
            next.results[0],
            SendResult::Failed("link_not_open".into()),
            "the link stays down"
        );
    }
}
