//! What-if: run a candidate policy against the recorded inputs of a trace and
//! report, per row, where its decisions differ from the recorded ones.
//!
//! Each recorded tick is replayed on its own: the candidate is given the same
//! claimed rows, link states, clock readings, random bytes and broker answers
//! as the recorded policy was, whatever it asks, and its sends and settles are
//! compared row by row instead of stopping at the first difference.
//!
//! What it can answer: for every tick, what the candidate would have decided
//! in the recorded situation. What it cannot: what would have happened next.
//! Once the candidate decides a row differently, the recording no longer
//! describes the candidate's world — a row it dead-letters may be claimed
//! again in a later recorded tick, and a row it sends that the recorded
//! policy did not send has no broker answer (it is answered `failed`).

use serde::de::DeserializeOwned;
use sluice::engine::PolicyEngine;
use sluice::trace::{Recorded, TickRecord, Trace, calls};
use sluice_policy::{
    Answer, Call, Dispatch, Outcome, Reply, Route, SendResult, SessionState, TimestampMs, Verdict,
};
use std::collections::{BTreeMap, VecDeque};

/// The answer given for a row the recording never sent.
pub const NOT_SENT_IN_RECORDING: &str = "what_if: not sent in the recording";

/// One decision that differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowDifference {
    pub tick: u64,
    pub row_id: String,
    pub attempts: u32,
    pub recorded: String,
    pub candidate: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WhatIfReport {
    pub ticks: usize,
    pub differences: Vec<RowDifference>,
}

/// Compares `engine`'s decisions with the recorded ones, tick by tick.
pub fn what_if(trace: &Trace, engine: &PolicyEngine) -> anyhow::Result<WhatIfReport> {
    let mut runner = engine.runner(WhatIfWorld::default())?;
    let mut report = WhatIfReport::default();
    for record in trace.ticks.iter().filter(|t| t.result.is_some()) {
        runner.world_mut().start(record);
        // A candidate that fails or traps simply settles nothing this tick.
        let _ = runner.tick(record.now);
        report.differences.extend(runner.world_mut().finish());
        report.ticks += 1;
    }
    Ok(report)
}

/// Answers each import from the recorded tick by call name, in order.
#[derive(Default)]
struct WhatIfWorld {
    tick: u64,
    /// The tick's clock, for a retry's delay.
    now: TimestampMs,
    answers: BTreeMap<String, VecDeque<Recorded>>,
    claimed: BTreeMap<i64, (String, u32)>,
    sent: BTreeMap<i64, (Dispatch, SendResult)>,
    recorded_outcomes: BTreeMap<i64, Verdict>,
    candidate_outcomes: BTreeMap<i64, Verdict>,
    differences: Vec<RowDifference>,
}

impl WhatIfWorld {
    fn start(&mut self, record: &TickRecord) {
        *self = WhatIfWorld {
            tick: record.tick,
            now: record.now,
            ..WhatIfWorld::default()
        };
        for call in &record.calls {
            self.answers
                .entry(call.call.clone())
                .or_default()
                .push_back(call.clone());
            match call.call.as_str() {
                "links.send-batch" => self.index_sends(call),
                "store.settle" => {
                    let outcomes: Vec<Outcome> = decode(&call.args["outcomes"]).unwrap_or_default();
                    self.recorded_outcomes
                        .extend(outcomes.into_iter().map(|o| (o.rowid, o.verdict)));
                }
                _ => {}
            }
        }
    }

    fn index_sends(&mut self, call: &Recorded) {
        let dispatches: Vec<Dispatch> = decode(&call.args["dispatches"]).unwrap_or_default();
        let results: Vec<SendResult> = decode(&call.result).unwrap_or_default();
        for (d, r) in dispatches.into_iter().zip(results) {
            self.sent.insert(d.rowid, (d, r));
        }
    }

    /// The recorded reply to the next call of this name, whatever its
    /// arguments.
    fn next(&mut self, call: &Call) -> Option<Reply> {
        let recorded = self.answers.get_mut(call.name())?.pop_front()?;
        calls::read(call, &recorded.result).ok()
    }

    fn differ(&mut self, rowid: i64, recorded: String, candidate: String) {
        let (row_id, attempts) = self
            .claimed
            .get(&rowid)
            .cloned()
            .unwrap_or_else(|| (format!("rowid {rowid}"), 0));
        self.differences.push(RowDifference {
            tick: self.tick,
            row_id,
            attempts,
            recorded,
            candidate,
        });
    }

    /// The per-row differences of the settles, once the tick is over.
    fn finish(&mut self) -> Vec<RowDifference> {
        let rowids: Vec<i64> = self.claimed.keys().copied().collect();
        for rowid in rowids {
            let attempts = self.claimed.get(&rowid).map_or(0, |c| c.1);
            let recorded = self
                .recorded_outcomes
                .get(&rowid)
                .map(|v| verdict_text(v, attempts, self.now));
            let candidate = self
                .candidate_outcomes
                .get(&rowid)
                .map(|v| verdict_text(v, attempts, self.now));
            if recorded != candidate {
                let none = || "no settle (left inflight)".to_string();
                self.differ(
                    rowid,
                    recorded.unwrap_or_else(none),
                    candidate.unwrap_or_else(none),
                );
            }
        }
        std::mem::take(&mut self.differences)
    }
}

fn decode<R: DeserializeOwned>(value: &serde_json::Value) -> Option<R> {
    serde_json::from_value(value.clone()).ok()
}

/// A verdict as a reader wants it, with what two verdicts can differ in:
/// `retry at attempt 3 in 4000 ms (rate_limited)`. The delay is from the
/// tick's clock, so a candidate that backs off differently differs here.
fn verdict_text(verdict: &Verdict, attempts: u32, now: TimestampMs) -> String {
    match verdict {
        Verdict::Done { .. } => "done".into(),
        Verdict::Dead { reason } => format!("dead {reason}"),
        Verdict::Retry {
            next_attempt_at,
            last_error,
        } => format!(
            "retry at attempt {attempts} in {} ms ({last_error})",
            next_attempt_at - now
        ),
        Verdict::Hold {
            next_attempt_at,
            last_error,
        } => {
            let delay = next_attempt_at - now;
            match last_error {
                Some(error) => format!("hold at attempt {attempts} for {delay} ms ({error})"),
                None => format!("hold at attempt {attempts} for {delay} ms"),
            }
        }
    }
}

fn route_text(route: &Route) -> String {
    match route {
        Route::Daemon(mesh) => format!("daemon link of {mesh}"),
        Route::Session(key) => format!("session link {}", key.chars().take(12).collect::<String>()),
    }
}

impl Answer for WhatIfWorld {
    fn answer(&mut self, call: Call) -> Reply {
        match call {
            Call::SendBatch { dispatches, .. } => Reply::Sent(self.send_batch(dispatches)),
            Call::Settle { outcomes } => {
                let count = u32::try_from(outcomes.len()).unwrap_or(u32::MAX);
                self.candidate_outcomes
                    .extend(outcomes.into_iter().map(|o| (o.rowid, o.verdict)));
                let call = Call::Settle {
                    outcomes: Vec::new(),
                };
                self.next(&call).unwrap_or(Reply::Count(Ok(count)))
            }
            // What the candidate asks of the links changes nothing recorded.
            Call::Throttle { .. } | Call::Log { .. } => Reply::Nothing,
            call => {
                let reply = self
                    .next(&call)
                    .unwrap_or_else(|| Reply::nothing(&call, NOT_SENT_IN_RECORDING));
                match (call, reply) {
                    (Call::ClaimDue { .. }, Reply::Rows(Ok(rows))) => {
                        self.claimed
                            .extend(rows.iter().map(|r| (r.rowid, (r.id.clone(), r.attempts))));
                        Reply::Rows(Ok(rows))
                    }
                    // One state per key the candidate asked about.
                    (Call::SessionStates { pubkeys }, Reply::Sessions(states)) => Reply::Sessions(
                        states
                            .into_iter()
                            .chain(std::iter::repeat(SessionState::Absent))
                            .take(pubkeys.len())
                            .collect(),
                    ),
                    (_, reply) => reply,
                }
            }
        }
    }
}

impl WhatIfWorld {
    fn send_batch(&mut self, dispatches: Vec<Dispatch>) -> Vec<SendResult> {
        let mut results = Vec::with_capacity(dispatches.len());
        for d in dispatches {
            match self.sent.get(&d.rowid).cloned() {
                Some((recorded, result)) => {
                    if recorded.route != d.route {
                        self.differ(
                            d.rowid,
                            format!("sent over the {}", route_text(&recorded.route)),
                            format!("sent over the {}", route_text(&d.route)),
                        );
                    } else if recorded != d {
                        self.differ(d.rowid, format!("sent {recorded:?}"), format!("sent {d:?}"));
                    }
                    results.push(result);
                }
                None => {
                    self.differ(
                        d.rowid,
                        "not sent".into(),
                        format!("sent over the {}", route_text(&d.route)),
                    );
                    results.push(SendResult::Failed(NOT_SENT_IN_RECORDING.into()));
                }
            }
        }
        results
    }
}
