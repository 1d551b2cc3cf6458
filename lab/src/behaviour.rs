//! Testing a policy by what it does, not by what it is: `sluice policy test`.
//!
//! Owns: running a candidate and the default side by side in the seeded
//! simulator over a spread of fault profiles (every call under the host's
//! guard, every tick's invariants checked), asking the golden traces what
//! the candidate would have decided in each recorded situation (what-if,
//! not exact replay), and the figures of both. Not here: printing the
//! table (`cli::policy_test`), exact replay (`validate`, `--verify`).

use crate::sim::{Profile, Sim, SimConfig, SimOutcome, SimPolicy, Stop, TraceSink};
use crate::whatif::what_if;
use sluice::bundled::GOLDEN_TRACES;
use sluice::engine::PolicyEngine;
use sluice::trace::Trace;

/// The profiles a behavioural test runs, in order. (The simulated broker
/// has no rate limit, so pacing is not among them: the golden traces of
/// rate refusals and pacing are.)
pub const PROFILES: [&str; 4] = ["none", "mixed", "harsh", "outage-10m"];
/// Ticks per run (of both loops) before it stops unfinished: enough for
/// every profile to drain under the default (a few thousand ticks at most),
/// so what is left open then is rows the candidate holds back.
pub const TICKS_MAX: u64 = 20_000;

/// How many seeds and rows each profile runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub seeds: u64,
    pub rows: u32,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            seeds: 3,
            rows: 300,
        }
    }
}

/// One policy's runs of one profile, summed over the seeds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    pub done: usize,
    pub dead: usize,
    /// Rows still pending or inflight when a run stopped.
    pub open: usize,
    /// Runs that reached [`TICKS_MAX`] with rows open: not a broken rule
    /// (a policy may hold rows until their TTL), but reported.
    pub unfinished: u64,
    /// Dispatches handed to the broker: the attempts spent.
    pub sends: u64,
    /// Virtual seconds until the last seed drained.
    pub virtual_s: f64,
    /// The first rule or invariant broken, with its seed and how to see it
    /// again.
    pub failure: Option<String>,
}

/// The candidate and the default on one profile.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileResult {
    pub profile: &'static str,
    pub candidate: Figures,
    pub default: Figures,
}

/// What the golden traces say of the candidate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoldenResult {
    pub traces: usize,
    /// Traces where at least one decision differs from the recorded one.
    pub differing_traces: usize,
    pub differing_decisions: usize,
    /// A trace that could not be asked (its name and why).
    pub errors: Vec<String>,
}

/// The whole verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub plan: Plan,
    pub profiles: Vec<ProfileResult>,
    pub golden: GoldenResult,
}

impl Verdict {
    /// Every rule and invariant held (some runs may not have finished).
    pub fn passed(&self) -> bool {
        self.profiles.iter().all(|p| p.candidate.failure.is_none()) && self.golden.errors.is_empty()
    }
}

/// Runs `candidate` and `default` over [`PROFILES`] and the golden traces.
///
/// The default's runs take a thread of their own beside the candidate's:
/// the two sides share nothing but the engines, and each run is the same
/// whichever thread makes it.
pub fn test(candidate: &PolicyEngine, default: &PolicyEngine, plan: Plan) -> Verdict {
    let (candidates, defaults) = std::thread::scope(|scope| {
        let defaults = scope.spawn(|| {
            PROFILES
                .iter()
                .map(|&profile| run(default, profile, plan))
                .collect::<Vec<_>>()
        });
        let candidates: Vec<Figures> = PROFILES
            .iter()
            .map(|&profile| run(candidate, profile, plan))
            .collect();
        let defaults = defaults.join().unwrap_or_else(|_| {
            let failed = Figures {
                failure: Some("the default's runs panicked".into()),
                ..Figures::default()
            };
            vec![failed; PROFILES.len()]
        });
        (candidates, defaults)
    });
    let profiles = PROFILES
        .iter()
        .zip(candidates.into_iter().zip(defaults))
        .map(|(&profile, (candidate, default))| ProfileResult {
            profile,
            candidate,
            default,
        })
        .collect();
    Verdict {
        plan,
        profiles,
        golden: golden(candidate),
    }
}

fn run(engine: &PolicyEngine, profile: &'static str, plan: Plan) -> Figures {
    let mut figures = Figures::default();
    let Ok(named) = Profile::named(profile) else {
        figures.failure = Some(format!("no profile {profile}"));
        return figures;
    };
    for seed in 1..=plan.seeds {
        let config = SimConfig {
            seed,
            rows: plan.rows,
            ticks_max: TICKS_MAX,
            profile: named.clone(),
            ..SimConfig::default()
        };
        let outcome = match Sim::new(config, &SimPolicy::Component(engine), &TraceSink::Off) {
            Ok(mut sim) => sim.run(),
            Err(e) => {
                figures.failure = Some(format!("seed {seed}: the simulation cannot start: {e}"));
                return figures;
            }
        };
        add(&mut figures, &outcome);
        let rerun = format!(
            "`sluice sim --policy FILE --seed {seed} --rows {} --faults {profile}`",
            plan.rows
        );
        match &outcome.stop {
            Stop::Violation(violation) if figures.failure.is_none() => {
                figures.failure = Some(format!("seed {seed}: {violation} ({rerun})"));
            }
            Stop::TickLimit => figures.unfinished += 1,
            _ => {}
        }
    }
    figures
}

fn add(figures: &mut Figures, outcome: &SimOutcome) {
    figures.done += outcome.done;
    figures.dead += outcome.dead;
    figures.open += outcome.pending + outcome.inflight;
    figures.sends += outcome.sends;
    figures.virtual_s = figures.virtual_s.max(outcome.virtual_ms as f64 / 1000.0);
}

/// Asks every golden trace what the candidate would have decided.
fn golden(candidate: &PolicyEngine) -> GoldenResult {
    let mut result = GoldenResult::default();
    for (name, bytes) in GOLDEN_TRACES {
        result.traces += 1;
        let asked = Trace::read(std::path::Path::new(name), *bytes)
            .map_err(|e| e.to_string())
            .and_then(|trace| what_if(&trace, candidate).map_err(|e| format!("{e:#}")));
        match asked {
            Ok(report) if report.differences.is_empty() => {}
            Ok(report) => {
                result.differing_traces += 1;
                result.differing_decisions += report.differences.len();
            }
            Err(why) => result.errors.push(format!("{name}: {why}")),
        }
    }
    result
}
