//! Checking a candidate policy before it goes live, or offline with
//! `sluice policy check`.
//!
//! Owns: loading a candidate with its settings (the contract by name and by
//! shape, `info()`, `configure()`; see [`sluice::engine`]), replaying a
//! directory of recorded traces against it, each with the settings it was
//! recorded with, and a short seeded simulation under the host's guard and
//! the simulator's invariants ([`simulate_briefly`], for `sluice policy
//! check`), and [`TraceVerifier`], the same trace check for a drainer's hot
//! swap. Not here: deciding what to do with a refused candidate (the hot
//! swap), or printing (`cli::policy_check`).

use crate::replay::{ReplaySummary, replay};
use crate::sim::{Profile, Sim, SimConfig, SimPolicy, Stop, TraceSink};
use sluice::engine::PolicyEngine;
use sluice::policy_settings::PolicySettings;
use sluice::swap::Verifier;
use sluice::trace::Trace;
use sluice_policy::settings::SETTING_NAMES;
use std::path::{Path, PathBuf};

/// The file extension of recorded traces (`sluice run --record`).
pub const TRACE_EXTENSION: &str = "trace";

/// One recorded trace replayed against a candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceCheck {
    pub path: PathBuf,
    /// The replay matched; or where it first differed, or why it could not run.
    pub outcome: Result<ReplaySummary, String>,
}

/// Loads the policy in `bytes` (read from `path`) with the settings its name
/// picks out of `settings`, and with
/// `verify` replays every `*.trace` there against it. Err is the message to
/// show: what does not fit, or which traces diverged and where.
pub fn validate(
    path: &Path,
    bytes: &[u8],
    settings: &PolicySettings,
    verify: Option<&Path>,
) -> Result<PolicyEngine, String> {
    let engine = PolicyEngine::load_for(&path.display().to_string(), bytes, settings)
        .map_err(|e| e.to_string())?;
    if let Some(dir) = verify {
        TraceVerifier.verify(path, &engine, dir)?;
    }
    Ok(engine)
}

/// The check a drainer's hot swap runs for `--verify DIR`: every `*.trace`
/// there replays exactly ([`verify_traces`]). The binary hands it to
/// `sluice::daemon::Start::verifier`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceVerifier;

impl Verifier for TraceVerifier {
    fn verify(&self, path: &Path, engine: &PolicyEngine, dir: &Path) -> Result<(), String> {
        let checks = verify_traces(engine, dir)?;
        let failed: Vec<String> = checks
            .iter()
            .filter_map(|c| {
                let why = c.outcome.as_ref().err()?;
                Some(format!("{}: {why}", c.path.display()))
            })
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        Err(format!(
            "policy {} does not replay {} of the {} traces in {}:\n{}",
            path.display(),
            failed.len(),
            checks.len(),
            dir.display(),
            failed.join("\n")
        ))
    }
}

/// Replays every `*.trace` in `dir` (in name order) against `engine`, each
/// with the settings in its header in place of the operator's values of the
/// default's settings. Err when `dir` holds no trace at all: a
/// check against nothing would pass.
pub fn verify_traces(engine: &PolicyEngine, dir: &Path) -> Result<Vec<TraceCheck>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the trace directory {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == TRACE_EXTENSION) && p.is_file())
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!(
            "no *.{TRACE_EXTENSION} files in {}: nothing to verify against (record one with `sluice run --record FILE.{TRACE_EXTENSION}`)",
            dir.display()
        ));
    }
    Ok(paths
        .into_iter()
        .map(|path| {
            let outcome = replay_one(engine, &path);
            TraceCheck { path, outcome }
        })
        .collect())
}

fn replay_one(engine: &PolicyEngine, path: &Path) -> Result<ReplaySummary, String> {
    let trace = Trace::load(path).map_err(|e| e.to_string())?;
    // The trace's own settings, not the operator's: the trace shows what the
    // default policy did under the settings in its header, so the candidate
    // must be asked under those. The operator's values of the default's
    // settings (`lease_ms = 5000`) would change the calls and make every
    // trace diverge, the running policy's too. A setting only the candidate
    // knows is not the trace's business and stays as it was given.
    let mut settings: Vec<(String, String)> = engine
        .settings()
        .iter()
        .filter(|(key, _)| !SETTING_NAMES.contains(&key.as_str()))
        .cloned()
        .collect();
    settings.extend(trace.header.settings.iter().cloned());
    let reconfigured;
    let engine = if engine.settings() == settings.as_slice() {
        engine
    } else {
        reconfigured = engine
            .reconfigured(settings)
            .map_err(|e| format!("the trace's settings cannot be used: {e}"))?;
        &reconfigured
    };
    match replay(&trace, engine) {
        Ok(Ok(summary)) => Ok(summary),
        Ok(Err(divergence)) => Err(format!("diverged at {divergence}")),
        Err(e) => Err(format!("cannot replay: {e:#}")),
    }
}

/// The seeds, rows and profile of the short simulation: rows of every kind
/// (routed, session, legacy, malformed) under the mixed faults, a few
/// seeds, a fraction of a second each.
pub const BRIEF_SIM_SEEDS: u64 = 3;
pub const BRIEF_SIM_ROWS: u32 = 150;
pub const BRIEF_SIM_PROFILE: &str = "mixed";
/// Ticks per seed before a run counts as stuck.
const BRIEF_SIM_TICKS_MAX: u64 = 20_000;

/// What the short simulation found: every seed held every rule and invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BriefSim {
    pub seeds: u64,
    pub rows: u32,
    pub ticks: u64,
    pub done: usize,
    pub dead: usize,
    /// Rows an operator had aborted before the run, left as they were.
    pub aborted: usize,
}

/// Runs `engine` (with its own settings) in the simulator for
/// [`BRIEF_SIM_SEEDS`] seeds of [`BRIEF_SIM_ROWS`] rows: every call under the
/// host's guard, every tick's invariants checked. Err names the rule or
/// invariant broken first, the seed and the tick, and how to see it again;
/// or the first tick that trapped or failed (other than by a simulated
/// crash): a policy that cannot finish a tick here would be rolled back
/// live (sleeping on a clock traps, for one).
pub fn simulate_briefly(engine: &PolicyEngine) -> Result<BriefSim, String> {
    let profile = Profile::named(BRIEF_SIM_PROFILE).map_err(|e| e.to_string())?;
    let mut brief = BriefSim {
        seeds: BRIEF_SIM_SEEDS,
        rows: BRIEF_SIM_ROWS,
        ticks: 0,
        done: 0,
        dead: 0,
        aborted: 0,
    };
    for seed in 1..=BRIEF_SIM_SEEDS {
        let config = SimConfig {
            seed,
            rows: BRIEF_SIM_ROWS,
            ticks_max: BRIEF_SIM_TICKS_MAX,
            profile: profile.clone(),
            ..SimConfig::default()
        };
        let mut sim = Sim::new(config, &SimPolicy::Component(engine), &TraceSink::Off)
            .map_err(|e| format!("the simulation cannot start: {e}"))?;
        let rerun = format!(
            "see it again with `sluice sim --policy FILE --seed {seed} --rows {BRIEF_SIM_ROWS} --faults {BRIEF_SIM_PROFILE}` and the same --setting flags"
        );
        while sim.outbox().open_rows() > 0 && sim.ticks() < BRIEF_SIM_TICKS_MAX {
            match sim.step() {
                Ok(step) if !step.crashed => {
                    if let Err(message) = step.result {
                        return Err(format!(
                            "tick {} failed: {message} (seed {seed}; {rerun})",
                            step.tick
                        ));
                    }
                }
                Ok(_) => {}
                Err(violation) => return Err(format!("{violation} (seed {seed}; {rerun})")),
            }
        }
        let outcome = sim.run();
        if let Stop::Violation(violation) = &outcome.stop {
            return Err(format!(
                "{violation} (seed {seed}; see it again with `sluice sim --policy FILE --seed {seed} --rows {BRIEF_SIM_ROWS} --faults {BRIEF_SIM_PROFILE}` and the same --setting flags)"
            ));
        }
        brief.ticks += outcome.ticks;
        brief.done += outcome.done;
        brief.dead += outcome.dead;
        brief.aborted += outcome.aborted;
    }
    Ok(brief)
}
