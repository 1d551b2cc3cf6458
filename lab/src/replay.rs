//! Replay: run a policy against a host that answers every import from a
//! trace, and stop at the first call that differs.
//!
//! Every call is compared by name and by its full arguments (the rows a
//! policy settles, the frames it sends, the lines it logs), in order, and
//! each tick's result is compared with the recorded one. A replay that only
//! counted calls would miss a changed backoff or a different route.

use serde_json::Value;
use sluice::engine::{PolicyEngine, TickError};
use sluice::trace::{TickRecord, TickResult, Trace, calls};
use sluice_policy::{Answer, Call, Reply, TickReport};
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
    calls: Vec<sluice::trace::Recorded>,
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

    /// The recorded reply to the next call if it is this one; after a
    /// divergence every call is refused (the tick is already lost).
    fn replay(&mut self, call: &Call) -> Option<Reply> {
        if self.divergence.is_some() {
            return None;
        }
        let (name, args) = (call.name(), calls::args(call));
        let call_number = self.position + 1;
        let Some(recorded) = self.calls.get(self.position) else {
            self.diverge(
                call_number,
                "no further call: the tick returned".into(),
                describe(name, &args),
            );
            return None;
        };
        if recorded.call != name {
            let (r, p) = (
                describe(&recorded.call, &recorded.args),
                describe(name, &args),
            );
            self.diverge(call_number, r, p);
            return None;
        }
        if let Some((path, a, b)) = first_difference(&recorded.args, &args, "args") {
            self.diverge(
                call_number,
                format!("{name}: {path} = {a}"),
                format!("{name}: {path} = {b}"),
            );
            return None;
        }
        self.position += 1;
        match calls::read(call, &recorded.result) {
            Ok(reply) => Some(reply),
            Err(e) => {
                let recorded = format!("{name} result {}", recorded.result);
                self.diverge(call_number, recorded, format!("cannot be read: {e}"));
                None
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

impl Answer for ReplayWorld {
    fn answer(&mut self, call: Call) -> Reply {
        self.replay(&call)
            .unwrap_or_else(|| Reply::failing(&call, DIVERGED))
    }
}
