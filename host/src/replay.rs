//! Replay: run a policy against a host that answers every import from a
//! trace, and stop at the first call that differs.
//!
//! Every call is compared by name and by its full arguments (the rows a
//! policy settles, the frames it sends, the lines it logs), in order, and
//! each tick's result is compared with the recorded one. A replay that only
//! counted calls would miss a changed backoff or a different route.

use crate::engine::{PolicyEngine, TickError};
use crate::trace::{TickRecord, TickResult, Trace, calls};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sluice_policy::{
    ClaimFilter, Dispatch, Level, MeshLink, Outcome, Row, SendResult, SessionState, TickReport,
    TimestampMs, World,
};
use std::fmt;

/// The first place a replay differed from its trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    pub tick: u64,
    /// 1-based position of the import call within the tick; 0 for the tick's result.
    pub call: usize,
    /// What the trace holds there.
    pub recorded: String,
    /// What the policy did.
    pub replayed: String,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = if self.call == 0 {
            "its result".to_string()
        } else {
            format!("call {}", self.call)
        };
        write!(
            f,
            "tick {}, {place}:\n  trace:  {}\n  policy: {}",
            self.tick, self.recorded, self.replayed
        )
    }
}

/// A replay that matched its trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplaySummary {
    pub ticks: usize,
    pub calls: usize,
    /// The trace ended inside a tick (the recording was cut off); that tick was not compared.
    pub truncated: bool,
}

/// Replays `trace` against `engine` (configured with the trace's settings).
pub fn replay(
    trace: &Trace,
    engine: &PolicyEngine,
) -> anyhow::Result<Result<ReplaySummary, Divergence>> {
    let mut runner = engine.runner(ReplayWorld::default())?;
    let mut summary = ReplaySummary {
        ticks: 0,
        calls: 0,
        truncated: false,
    };
    for record in &trace.ticks {
        let Some(recorded_result) = &record.result else {
            summary.truncated = true;
            break;
        };
        runner.world_mut().start(record);
        let result = runner.tick(record.now);
        let world = runner.world_mut();
        if let Some(divergence) = world.divergence.take() {
            return Ok(Err(divergence));
        }
        if let Some(next) = record.calls.get(world.position) {
            return Ok(Err(Divergence {
                tick: record.tick,
                call: world.position + 1,
                recorded: describe(&next.call, &next.args),
                replayed: "no further call: the tick returned".into(),
            }));
        }
        if let Some(divergence) = compare_results(record.tick, recorded_result, &result) {
            return Ok(Err(divergence));
        }
        summary.ticks += 1;
        summary.calls += record.calls.len();
    }
    Ok(Ok(summary))
}

fn compare_results(
    tick: u64,
    recorded: &TickResult,
    replayed: &Result<TickReport, TickError>,
) -> Option<Divergence> {
    let replayed = TickResult::of(replayed);
    let same = match (recorded, &replayed) {
        // Trap messages carry addresses and backtraces; a trap is a trap.
        (TickResult::Trap(_), TickResult::Trap(_)) => true,
        (a, b) => a == b,
    };
    (!same).then(|| Divergence {
        tick,
        call: 0,
        recorded: format!("{recorded:?}"),
        replayed: format!("{replayed:?}"),
    })
}

/// How much of a call's arguments a message shows.
const DESCRIBE_CHARS_MAX: usize = 240;

/// `name(args)` on one line, for messages, with long arguments cut short.
pub fn describe(name: &str, args: &Value) -> String {
    let args = args.to_string();
    if args.chars().count() <= DESCRIBE_CHARS_MAX {
        return format!("{name}({args})");
    }
    let head: String = args.chars().take(DESCRIBE_CHARS_MAX).collect();
    format!("{name}({head}…)")
}

/// Where two JSON values first differ: a path and both sides.
pub fn first_difference(
    recorded: &Value,
    replayed: &Value,
    path: &str,
) -> Option<(String, Value, Value)> {
    match (recorded, replayed) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| {
                let (x, y) = (
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                );
                first_difference(x, y, &format!("{path}.{k}"))
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]"))),
        (a, b) if a == b => None,
        (a, b) => Some((path.to_string(), a.clone(), b.clone())),
    }
}

/// A world that answers from one recorded tick at a time.
#[derive(Default)]
pub struct ReplayWorld {
    tick: u64,
    calls: Vec<crate::trace::Call>,
    position: usize,
    divergence: Option<Divergence>,
}

impl ReplayWorld {
    fn start(&mut self, record: &TickRecord) {
        self.tick = record.tick;
        self.calls = record.calls.clone();
        self.position = 0;
        self.divergence = None;
    }

    /// The recorded result of the next call if it is `name(args)`; after a
    /// divergence every call gets `fallback` (the tick is already lost).
    fn answer<R: DeserializeOwned>(&mut self, name: &str, args: &Value, fallback: R) -> R {
        if self.divergence.is_some() {
            return fallback;
        }
        let call_number = self.position + 1;
        let Some(recorded) = self.calls.get(self.position) else {
            self.diverge(
                call_number,
                "no further call: the tick returned".into(),
                describe(name, args),
            );
            return fallback;
        };
        if recorded.call != name {
            let (r, p) = (
                describe(&recorded.call, &recorded.args),
                describe(name, args),
            );
            self.diverge(call_number, r, p);
            return fallback;
        }
        if let Some((path, a, b)) = first_difference(&recorded.args, args, "args") {
            self.diverge(
                call_number,
                format!("{name}: {path} = {a}"),
                format!("{name}: {path} = {b}"),
            );
            return fallback;
        }
        self.position += 1;
        match serde_json::from_value(recorded.result.clone()) {
            Ok(result) => result,
            Err(e) => {
                self.diverge(
                    call_number,
                    format!("{name} result {}", recorded.result),
                    format!("cannot be read: {e}"),
                );
                fallback
            }
        }
    }

    fn diverge(&mut self, call: usize, recorded: String, replayed: String) {
        if self.divergence.is_none() {
            self.divergence = Some(Divergence {
                tick: self.tick,
                call,
                recorded,
                replayed,
            });
        }
    }
}

const DIVERGED: &str = "replay diverged";

impl World for ReplayWorld {
    fn claim_due(
        &mut self,
        now: TimestampMs,
        limit: u32,
        lease_ms: i64,
        skip: &ClaimFilter,
    ) -> Result<Vec<Row>, String> {
        self.answer(
            calls::CLAIM_DUE,
            &calls::claim_due(now, limit, lease_ms, skip),
            Err(DIVERGED.into()),
        )
    }
    fn settle(&mut self, outcomes: Vec<Outcome>) -> Result<u32, String> {
        self.answer(
            calls::SETTLE,
            &calls::settle(&outcomes),
            Err(DIVERGED.into()),
        )
    }
    fn reclaim(&mut self, now: TimestampMs) -> Result<u32, String> {
        self.answer(calls::RECLAIM, &calls::now_only(now), Err(DIVERGED.into()))
    }
    fn expire(&mut self, now: TimestampMs, cutoff: TimestampMs) -> Result<u32, String> {
        self.answer(
            calls::EXPIRE,
            &calls::expire(now, cutoff),
            Err(DIVERGED.into()),
        )
    }
    fn next_due_at(&mut self, skip: &ClaimFilter) -> Result<Option<TimestampMs>, String> {
        self.answer(
            calls::NEXT_DUE_AT,
            &calls::next_due_at(skip),
            Err(DIVERGED.into()),
        )
    }
    fn mesh_links(&mut self) -> Vec<MeshLink> {
        self.answer(calls::MESH_LINKS, &calls::none(), Vec::new())
    }
    fn throttle(&mut self, mesh: &str) {
        self.answer::<()>(calls::THROTTLE, &calls::throttle(mesh), ());
    }
    fn session_states(&mut self, pubkeys: Vec<String>) -> Vec<SessionState> {
        let fallback = vec![SessionState::Absent; pubkeys.len()];
        self.answer(
            calls::SESSION_STATES,
            &calls::session_states(&pubkeys),
            fallback,
        )
    }
    fn send_batch(&mut self, dispatches: Vec<Dispatch>, ack_timeout_ms: u32) -> Vec<SendResult> {
        let fallback = vec![SendResult::Failed(DIVERGED.into()); dispatches.len()];
        self.answer(
            calls::SEND_BATCH,
            &calls::send_batch(&dispatches, ack_timeout_ms),
            fallback,
        )
    }
    fn now(&mut self) -> TimestampMs {
        self.answer(calls::NOW, &calls::none(), 0)
    }
    fn random_bytes(&mut self, len: u32) -> Vec<u8> {
        let text: String = self.answer(
            calls::RANDOM_BYTES,
            &calls::random_bytes(len),
            String::new(),
        );
        calls::bytes_from_text(&text).unwrap_or_default()
    }
    fn log(&mut self, level: Level, event: &str, fields: Vec<(String, String)>) {
        self.answer::<()>(calls::LOG, &calls::log(level, event, &fields), ());
    }
}
