//! `sluice sim`: runs a policy against the simulator (see `sluice_lab::sim`).
//!
//! Exit 0 with a one-line summary when every invariant held and every row
//! finished; exit 1 when one broke, after printing the seed, the tick, the
//! invariant, where the trace was written and the exact command that reruns
//! the failure; exit 3 when the tick limit came first, with rows still open.

use anyhow::{Context as _, bail};
use clap::Args;
use sluice::engine::PolicyEngine;
use sluice_lab::sim::runner::loop_trace_path;
use sluice_lab::sim::{Profile, Sim, SimConfig, SimOutcome, SimPolicy, Stop, TraceSink, Violation};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The exit status of a run that reached its tick limit with rows open.
pub const UNFINISHED: u8 = 3;

/// The environment variable that gives the seed when `--seed` does not.
pub const SEED_VAR: &str = "SLUICE_SEED";

#[derive(Debug, Args)]
pub struct SimArgs {
    /// The seed behind every random choice of the run (default: $SLUICE_SEED).
    #[arg(long)]
    seed: Option<u64>,
    /// Rows in the simulated outbox.
    #[arg(long, default_value_t = 1_000)]
    rows: u32,
    /// Stop after this many ticks even if rows are still open.
    #[arg(long, default_value_t = 100_000)]
    ticks: u64,
    /// Fault profile: mixed (= default), none, harsh, broker-down.
    #[arg(long, default_value = "mixed", value_name = "PROFILE")]
    faults: String,
    /// A policy component to simulate instead of the embedded default.
    #[arg(long, value_name = "FILE.wasm")]
    policy: Option<PathBuf>,
    /// Run the default policy linked natively instead of as WebAssembly.
    #[arg(long, hide = true, conflicts_with = "policy")]
    native_policy: bool,
    /// A policy setting, as in the config's [policy] table; repeatable.
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// Write the trace here (always); without it, a failing run writes
    /// sim-<seed>.trace in the current directory. Each loop has its own:
    /// the second loop's is NAME.loop1.trace beside it, and so on.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Drainers (processes) on the outbox file, each with its own write
    /// connection.
    #[arg(long, default_value_t = 1)]
    drainers: u32,
    /// Loops per drainer, each with its own policy instance (as
    /// `[drain] batches_in_flight`).
    #[arg(long, default_value_t = 2)]
    loops: u32,
}

pub fn sim(args: &SimArgs) -> anyhow::Result<ExitCode> {
    super::init_logging("error");
    let seed = seed(args.seed)?;
    let profile = Profile::named(&args.faults)?;
    let settings = super::setting_flags(&args.settings)?;
    let engine = match (&args.policy, args.native_policy) {
        (_, true) => None,
        (Some(path), false) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading policy file {}", path.display()))?;
            Some(PolicyEngine::load(
                &path.display().to_string(),
                &bytes,
                settings.clone(),
            )?)
        }
        (None, false) => Some(PolicyEngine::load_default(settings.clone())?),
    };
    let policy = match &engine {
        Some(engine) => SimPolicy::Component(engine),
        None => SimPolicy::Native(&settings),
    };
    let sink = args
        .trace
        .clone()
        .map_or(TraceSink::Memory, TraceSink::File);
    let config = SimConfig {
        seed,
        rows: args.rows,
        ticks_max: args.ticks,
        profile: profile.clone(),
        drainers: args.drainers,
        loops: args.loops,
    };
    let mut sim = Sim::new(config, &policy, &sink).context("starting the simulation")?;
    let outcome = sim.run();
    let kept = sim.finish_traces().context("finishing the trace")?;
    println!("{}", outcome.summary_line(profile.name));
    let Stop::Violation(violation) = &outcome.stop else {
        if outcome.stop == Stop::TickLimit {
            eprintln!(
                "sim: stopped at the tick limit ({} ticks) with {} rows still open: no invariant broke, \
                 but the run did not finish; raise --ticks to see how those rows end",
                outcome.ticks,
                outcome.pending + outcome.inflight
            );
            return Ok(ExitCode::from(UNFINISHED));
        }
        return Ok(ExitCode::SUCCESS);
    };
    let first = args
        .trace
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("sim-{seed}.trace")));
    for (n, bytes) in kept.into_iter().enumerate() {
        if let Some(bytes) = bytes {
            let path = loop_trace_path(&first, n as u64);
            std::fs::write(&path, bytes)
                .with_context(|| format!("writing the trace to {}", path.display()))?;
        }
    }
    let failing = u64::from(violation.at.drainer * args.loops + violation.at.index);
    let path = loop_trace_path(&first, failing);
    eprint!("{}", failure_report(violation, &outcome, &path, args));
    Ok(ExitCode::from(1))
}

/// What a failing run prints: the violation, the seed, the trace and the rerun.
fn failure_report(
    violation: &Violation,
    outcome: &SimOutcome,
    trace: &Path,
    args: &SimArgs,
) -> String {
    let policy = args
        .policy
        .as_ref()
        .map(|p| format!(" --policy {}", quote(&p.display().to_string())))
        .unwrap_or_default();
    format!(
        "sim: {violation}\n\
         sim: failed with {SEED_VAR}={seed} at tick {tick} ({at}): invariant `{name}`\n\
         sim: trace written to {trace}; replay it with: sluice replay {trace}{policy}\n\
         sim: rerun with: {SEED_VAR}={seed} {command}\n",
        seed = outcome.seed,
        tick = violation.tick,
        at = violation.at,
        name = violation.kind.name(),
        trace = quote(&trace.display().to_string()),
        command = rerun_command(outcome.seed, args),
    )
}

/// The exact command line that reruns this simulation.
pub fn rerun_command(seed: u64, args: &SimArgs) -> String {
    let mut words = vec![
        "sluice".to_string(),
        "sim".into(),
        "--seed".into(),
        seed.to_string(),
    ];
    words.extend([
        "--rows".into(),
        args.rows.to_string(),
        "--ticks".into(),
        args.ticks.to_string(),
    ]);
    words.extend(["--faults".into(), quote(&args.faults)]);
    if args.drainers != 1 {
        words.extend(["--drainers".into(), args.drainers.to_string()]);
    }
    if args.loops != 2 {
        words.extend(["--loops".into(), args.loops.to_string()]);
    }
    if let Some(path) = &args.policy {
        words.extend(["--policy".into(), quote(&path.display().to_string())]);
    }
    if args.native_policy {
        words.push("--native-policy".into());
    }
    for setting in &args.settings {
        words.extend(["--setting".into(), quote(setting)]);
    }
    words.join(" ")
}

fn seed(flag: Option<u64>) -> anyhow::Result<u64> {
    if let Some(seed) = flag {
        return Ok(seed);
    }
    match std::env::var(SEED_VAR) {
        Ok(text) => text.trim().parse().with_context(|| {
            format!(
                "{SEED_VAR}={text:?} is not a whole number from 0 to {}",
                u64::MAX
            )
        }),
        Err(_) => bail!("no seed: give --seed N (or set {SEED_VAR}=N)"),
    }
}

/// Quotes a word for a POSIX shell when it needs it.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-=./:,@+".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn the_rerun_command_quotes_what_a_shell_would_split() {
        let args = SimArgs {
            seed: None,
            rows: 10,
            ticks: 5,
            faults: "mixed".into(),
            policy: Some(PathBuf::from("my policy.wasm")),
            native_policy: false,
            settings: vec!["fault=forget_settle".into()],
            trace: None,
            drainers: 1,
            loops: 2,
        };
        assert_eq!(
            rerun_command(7, &args),
            "sluice sim --seed 7 --rows 10 --ticks 5 --faults mixed --policy 'my policy.wasm' --setting fault=forget_settle"
        );
        let two = SimArgs {
            drainers: 2,
            ..args
        };
        assert!(
            rerun_command(7, &two).contains(" --drainers 2 "),
            "{}",
            rerun_command(7, &two)
        );
    }
}
