//! `sluice replay` and `sluice trace print`.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use sluice::engine::PolicyEngine;
use sluice::trace::{TickResult, Trace};
use sluice_lab::replay::replay;
use sluice_lab::whatif::what_if;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The trace to replay.
    trace: PathBuf,
    /// The policy to replay (default: the embedded one).
    #[arg(long, value_name = "FILE.wasm")]
    policy: Option<PathBuf>,
    /// Report, per row, where the policy's decisions differ from the trace,
    /// instead of stopping at the first difference.
    #[arg(long)]
    diff: bool,
    /// Override a setting recorded in the trace's header: KEY=VALUE.
    #[arg(long, value_name = "KEY=VALUE")]
    setting: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    #[command(subcommand)]
    command: TraceCommand,
}

#[derive(Debug, Subcommand)]
enum TraceCommand {
    /// Show a trace as readable text.
    Print { trace: PathBuf },
}

pub fn replay_command(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    super::init_logging("error");
    let trace = Trace::load(&args.trace)?;
    let engine = load(args.policy.as_deref(), settings(&trace, &args.setting)?)?;
    let recorded = &trace.header.policy;
    let meta = engine.meta();
    if recorded.sha256 != meta.sha256 {
        println!(
            "note: the trace was recorded with {} {} (sha256 {}); replaying {} {} (sha256 {})",
            recorded.name,
            recorded.version,
            short(&recorded.sha256),
            meta.name,
            meta.version,
            short(&meta.sha256)
        );
    }
    if args.diff {
        return diff(&trace, &engine, &args.trace);
    }
    match replay(&trace, &engine)? {
        Ok(summary) => {
            let cut = if summary.truncated {
                " (the trace ends inside its last tick, which was skipped)"
            } else {
                ""
            };
            println!(
                "replay ok: {} ticks, {} calls identical to {}{cut}",
                summary.ticks,
                summary.calls,
                args.trace.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(divergence) => {
            println!(
                "replay diverged from {} at {divergence}",
                args.trace.display()
            );
            Ok(ExitCode::from(1))
        }
    }
}

fn diff(trace: &Trace, engine: &PolicyEngine, path: &Path) -> anyhow::Result<ExitCode> {
    let report = what_if(trace, engine)?;
    for d in &report.differences {
        println!(
            "row {} (tick {}, attempt {}): recorded {}, candidate {}",
            d.row_id, d.tick, d.attempts, d.recorded, d.candidate
        );
    }
    let rows: std::collections::BTreeSet<&str> = report
        .differences
        .iter()
        .map(|d| d.row_id.as_str())
        .collect();
    println!(
        "what-if: {} ticks of {} compared; {} decisions differ, on {} rows.",
        report.ticks,
        path.display(),
        report.differences.len(),
        rows.len()
    );
    println!(
        "note: each tick is answered from the recording. After a row's first different decision the recording no longer \
         describes the candidate's world (a row it dead-letters may still be claimed in later ticks), and a row the candidate \
         sends that the recording did not has no broker answer: it is answered `failed`."
    );
    Ok(if report.differences.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The trace's settings, each `--setting` flag in place of its key.
fn settings(trace: &Trace, overrides: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut settings = trace.header.settings.clone();
    for (key, value) in super::setting_flags(overrides)? {
        settings.retain(|(k, _)| *k != key);
        settings.push((key, value));
    }
    Ok(settings)
}

fn load(policy: Option<&Path>, settings: Vec<(String, String)>) -> anyhow::Result<PolicyEngine> {
    Ok(match policy {
        None => PolicyEngine::load_default(settings)?,
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading policy file {}", path.display()))?;
            PolicyEngine::load(&path.display().to_string(), &bytes, settings)?
        }
    })
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

pub fn trace_command(args: &TraceArgs) -> anyhow::Result<ExitCode> {
    let TraceCommand::Print { trace } = &args.command;
    let trace = Trace::load(trace)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match print_trace(&trace, &mut out).and_then(|()| out.flush()) {
        // A reader that stops early (`| head`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn print_trace(trace: &Trace, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let h = &trace.header;
    writeln!(
        out,
        "{} version {}, contract {}",
        h.format, h.version, h.wit
    )?;
    writeln!(
        out,
        "policy {} {} (sha256 {})",
        h.policy.name, h.policy.version, h.policy.sha256
    )?;
    let settings: Vec<String> = h.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    writeln!(
        out,
        "settings {}",
        if settings.is_empty() {
            "(defaults)".into()
        } else {
            settings.join(" ")
        }
    )?;
    for tick in &trace.ticks {
        writeln!(out, "tick {} now={}", tick.tick, tick.now)?;
        for (i, call) in tick.calls.iter().enumerate() {
            writeln!(
                out,
                "  {:>3} {} {} -> {}",
                i + 1,
                call.call,
                call.args,
                call.result
            )?;
        }
        match &tick.result {
            Some(TickResult::Report(r)) => writeln!(
                out,
                "  = claimed {} done {} dead {} retried {} reclaimed {} expired {} more_due {} next_due_at {:?}",
                r.claimed,
                r.done,
                r.dead,
                r.retried,
                r.reclaimed,
                r.expired,
                r.more_due,
                r.next_due_at
            )?,
            Some(TickResult::Error(e)) => writeln!(out, "  = error: {e}")?,
            Some(TickResult::Trap(e)) => writeln!(out, "  = trap: {e}")?,
            None => writeln!(out, "  = (the trace ends here)")?,
        }
    }
    Ok(())
}
