//! `sluice policy test FILE`: a candidate's behaviour, side by side with the
//! default's (`sluice_lab::behaviour`): seeded simulations over several fault
//! profiles under the host's guard and invariants, and what-if over the
//! golden traces. Exit 0 when every rule and invariant held, 1 otherwise, 2
//! when the test cannot run. How the candidate differs from the default,
//! rows it still holds at the tick limit included, is reported, never a
//! failure.

use anyhow::{Context as _, bail};
use clap::Args;
use sluice::engine::PolicyEngine;
use sluice_lab::behaviour::{self, Figures, Plan};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The policy component to test.
    #[arg(value_name = "FILE.wasm")]
    pub file: PathBuf,
    /// Configure it with this config's [policy] settings (default: none).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A setting on top of the config's: KEY=VALUE.
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// Seeds per profile.
    #[arg(long, default_value_t = Plan::default().seeds)]
    pub seeds: u64,
    /// Rows per run.
    #[arg(long, default_value_t = Plan::default().rows)]
    pub rows: u32,
}

pub fn test(args: &TestArgs) -> anyhow::Result<ExitCode> {
    super::init_logging("error");
    let settings = super::policy_check::candidate_settings(args.config.as_deref(), &args.settings)?;
    if args.seeds == 0 || args.rows == 0 {
        bail!("--seeds and --rows: give at least 1 of each");
    }
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("reading policy file {}", args.file.display()))?;
    let candidate = match sluice_lab::validate::validate(&args.file, &bytes, &settings, None) {
        Ok(engine) => engine,
        Err(message) => {
            println!("refused  {message}");
            return Ok(ExitCode::from(1));
        }
    };
    let default = PolicyEngine::load_default(Vec::new())?;
    let plan = Plan {
        seeds: args.seeds,
        rows: args.rows,
    };
    let meta = candidate.meta();
    println!(
        "policy   {} {} from {} (sha256 {})",
        meta.name,
        meta.version,
        meta.source,
        &meta.sha256[..12]
    );
    println!(
        "runs     {} seeds x {} rows per profile, every call under the host's guard, every tick's invariants checked",
        plan.seeds, plan.rows
    );
    let verdict = behaviour::test(&candidate, &default, plan);
    println!(
        "{:<11} {:<9} {:>6} {:>6} {:>5} {:>7} {:>10}   rules and invariants",
        "profile", "policy", "done", "dead", "open", "sends", "virtual s"
    );
    for p in &verdict.profiles {
        row(p.profile, "candidate", &p.candidate);
        row("", "default", &p.default);
    }
    let g = &verdict.golden;
    println!(
        "golden   {} traces asked what-if: {} decisions differ from the recorded default's, in {} traces",
        g.traces, g.differing_decisions, g.differing_traces
    );
    for error in &g.errors {
        println!("golden   cannot ask {error}");
    }
    if verdict.passed() {
        println!(
            "test     ok: every rule and invariant held ({} runs)",
            verdict.profiles.len() as u64 * plan.seeds
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("test     failed");
        Ok(ExitCode::from(1))
    }
}

fn row(profile: &str, who: &str, f: &Figures) {
    let held = match &f.failure {
        None if f.unfinished > 0 => format!(
            "held; {} run(s) still holding rows after {} ticks",
            f.unfinished,
            behaviour::TICKS_MAX
        ),
        None => "held".to_string(),
        Some(why) if who == "default" => format!("(the default: {why})"),
        Some(why) => format!("BROKEN: {why}"),
    };
    println!(
        "{profile:<11} {who:<9} {:>6} {:>6} {:>5} {:>7} {:>10.1}   {held}",
        f.done, f.dead, f.open, f.sends, f.virtual_s
    );
}
