//! `sluice policy check FILE [--verify DIR] [--config FILE]`: the checks a
//! running drainer makes before a policy goes live, offline, with the same
//! messages (`sluice_lab::validate`), and a short seeded simulation under the
//! host's guard that a drainer does not make. Exit 0 when everything passes, 1 when the
//! policy is refused or a trace diverges, 2 when the check cannot run.

use anyhow::Context as _;
use clap::Args;
use sluice::config::Config;
use sluice::engine::{CONTRACT, CacheStatus, PolicyEngine};
use sluice::policy_settings::PolicySettings;
use sluice_lab::validate::{BRIEF_SIM_PROFILE, simulate_briefly, verify_traces};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy component to check.
    #[arg(value_name = "FILE.wasm")]
    pub file: PathBuf,
    /// Also replay every *.trace in DIR against it, each with its recorded settings.
    #[arg(long, value_name = "DIR")]
    pub verify: Option<PathBuf>,
    /// Configure it with this config's [policy] settings (default: none).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A setting on top of the config's [policy]: KEY=VALUE.
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
}

pub fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    super::init_logging("error");
    let settings = candidate_settings(args.config.as_deref(), &args.settings)?;
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("reading policy file {}", args.file.display()))?;
    // The same load, and so the same messages, as a drainer's.
    let engine = match sluice_lab::validate::validate(&args.file, &bytes, &settings, None) {
        Ok(engine) => engine,
        Err(message) => {
            println!("refused  {message}");
            return Ok(ExitCode::from(1));
        }
    };
    print_policy(&engine, &settings);
    // The recorded traces first (as a drainer's --verify), then the short
    // simulation under the guard, which a drainer does not run.
    if let Some(dir) = &args.verify
        && !replays_every_trace(&engine, dir)
    {
        return Ok(ExitCode::from(1));
    }
    match simulate_briefly(&engine) {
        Ok(brief) => println!(
            "sim      ok: {} seeds of {} rows ({} faults) under the host's guard: {} ticks, {} done, {} dead, every rule and invariant held",
            brief.seeds, brief.rows, BRIEF_SIM_PROFILE, brief.ticks, brief.done, brief.dead
        ),
        Err(message) => {
            println!("refused  the simulation broke a rule: {message}");
            return Ok(ExitCode::from(1));
        }
    }
    println!("check    ok");
    Ok(ExitCode::SUCCESS)
}

/// The settings a candidate is checked or tested with: the config's
/// table for it (`[policy.<name>]`; none without a config), each
/// `--setting KEY=VALUE` on top.
pub fn candidate_settings(
    config: Option<&std::path::Path>,
    overrides: &[String],
) -> anyhow::Result<PolicySettings> {
    let settings = match config {
        Some(path) => Config::load(path)?.policy,
        None => PolicySettings::default(),
    };
    let extra = super::setting_flags(overrides)?;
    Ok(settings.with_extra(&extra))
}

/// Replays every trace in `dir`, printing a line each; false when one
/// diverged or there was none to replay.
fn replays_every_trace(engine: &PolicyEngine, dir: &std::path::Path) -> bool {
    let checks = match verify_traces(engine, dir) {
        Ok(checks) => checks,
        Err(message) => {
            println!("check    failed: {message}");
            return false;
        }
    };
    let mut failed = 0;
    for c in &checks {
        match &c.outcome {
            Ok(summary) => println!(
                "trace    {}: ok, {} ticks, {} calls{}",
                c.path.display(),
                summary.ticks,
                summary.calls,
                if summary.truncated {
                    " (it ends inside its last tick, which was skipped)"
                } else {
                    ""
                }
            ),
            Err(why) => {
                failed += 1;
                println!("trace    {}: {why}", c.path.display());
            }
        }
    }
    if failed == 0 {
        println!("trace    ok: {} traces replay identically", checks.len());
        true
    } else {
        println!(
            "check    failed: {failed} of {} traces diverge",
            checks.len()
        );
        false
    }
}

fn print_policy(engine: &PolicyEngine, settings: &PolicySettings) {
    let meta = engine.meta();
    println!(
        "policy   {} {} from {}",
        meta.name, meta.version, meta.source
    );
    println!("         sha256 {}", meta.sha256);
    match engine.cache_status() {
        CacheStatus::Hit(path) => println!("         compiled earlier: {}", path.display()),
        CacheStatus::Miss { why, stored, .. } => println!(
            "         compiled now ({why}){}",
            if *stored { "; cached" } else { "" }
        ),
        CacheStatus::Off(why) => println!("         compiled now (cache off: {why})"),
    }
    println!(
        "contract {CONTRACT}: fits; info() and configure() with {} settings ({}) succeeded",
        engine.settings().len(),
        settings.source_for(&meta.name)
    );
}
