//! `sluice status`: what is in the outbox, at a glance.

use clap::Args;
use sluice::config::Config;
use sluice::linkstatus;
use sluice::world::now_ms;
use sluice_store::Outbox;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The TOML config file.
    #[arg(long)]
    config: PathBuf,
    /// Wait up to this many seconds until no row is pending or inflight,
    /// then print; exit 1 if some still are (for scripts, and the docs'
    /// walkthroughs).
    #[arg(long, value_name = "SECONDS")]
    wait_drained: Option<f64>,
}

/// How often `--wait-drained` looks at the counts.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// How many distinct last errors to list.
const TOP_ERRORS: usize = 5;

pub fn status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    if !config.outbox.exists() {
        anyhow::bail!(
            "no outbox at {}: check `outbox` in {} (it is relative to the config file)",
            config.outbox.display(),
            config.path.display()
        );
    }
    let mut outbox = Outbox::open(&config.outbox)?;
    let mut report = outbox.status(TOP_ERRORS)?;
    let open = |report: &sluice_store::StatusReport| -> u64 {
        report
            .counts
            .iter()
            .filter(|(status, _)| matches!(status.as_str(), "pending" | "inflight"))
            .map(|(_, count)| *count)
            .sum()
    };
    if let Some(seconds) = args.wait_drained {
        let limit = Duration::try_from_secs_f64(seconds).map_err(|_| {
            anyhow::anyhow!("--wait-drained {seconds}: give a number of seconds, as in 30")
        })?;
        let deadline = Instant::now() + limit;
        while open(&report) > 0 && Instant::now() < deadline {
            std::thread::sleep(WAIT_POLL);
            report = outbox.status(TOP_ERRORS)?;
        }
    }
    println!("outbox {}", config.outbox.display());
    println!(
        "sqlite {} (linked by sluice)",
        sluice_store::sqlite_version()
    );
    for (status, count) in &report.counts {
        println!("  {status:<9} {count}");
    }
    match report.oldest_pending_enqueued_at {
        Some(at) => println!("oldest pending row: {} old", human_age(now_ms() - at)),
        None => println!("oldest pending row: none"),
    }
    if !report.top_errors.is_empty() {
        println!("most common last errors:");
        for (error, count) in &report.top_errors {
            println!("  {count:>7}  {error}");
        }
    }
    print_policies(&mut outbox)?;
    let drainers = linkstatus::read_all(&config.outbox);
    if drainers.is_empty() {
        println!("links: no drainer is running on this outbox");
    }
    let now = now_ms();
    for (pid, lines) in drainers {
        println!("links of drainer {pid}:");
        for line in lines {
            let name = match &line.session_pubkey {
                Some(key) => format!("session {}…", key.chars().take(12).collect::<String>()),
                None => format!("mesh {}", line.mesh),
            };
            println!(
                "  {name:<22} {:<11} for {}  {}",
                line.state,
                human_age(now - line.since_ms),
                line.url
            );
            if let Some(error) = &line.last_error {
                println!("  {:<22} {} failures; last: {error}", "", line.failures);
            }
        }
    }
    if args.wait_drained.is_some() && open(&report) > 0 {
        eprintln!(
            "still {} row(s) pending or inflight after --wait-drained",
            open(&report)
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// How far back `status` looks for the policies that decided rows.
const DECIDED_WINDOW_MS: i64 = 60 * 60 * 1000;
/// History entries shown.
const HISTORY_SHOWN: u32 = 5;

/// The live policy (the newest history entry), what happened before it, and
/// which policies decided the rows of the last hour.
fn print_policies(outbox: &mut Outbox) -> anyhow::Result<()> {
    let history = outbox.policy_history(HISTORY_SHOWN)?;
    let now = now_ms();
    match history.first() {
        Some(live) if live.reason.starts_with("halted") => println!(
            "policy: HALTED, no policy is ticking: {} {} {}",
            live.name, live.version, live.reason
        ),
        Some(live) => println!(
            "policy: {} {} (sha256 {}…, {}), live since {} ago: {}",
            live.name,
            live.version,
            live.sha256.chars().take(12).collect::<String>(),
            live.source,
            human_age(now - live.loaded_at),
            live.reason
        ),
        None => println!("policy: none recorded yet"),
    }
    for event in history.iter().skip(1) {
        println!(
            "  before: {} {} {} ago: {}",
            event.name,
            event.version,
            human_age(now - event.loaded_at),
            event.reason
        );
    }
    let violations = outbox.policy_violations()?;
    if !violations.is_empty() {
        println!("calls the guard refused, by policy and rule (`policy_violation` in the log):");
        for v in violations {
            println!(
                "  {:>7}  {:<34} {} ({}…), last {} ago: {} {}",
                v.count,
                v.rule,
                v.policy.as_deref().unwrap_or("unknown policy"),
                v.sha256.chars().take(12).collect::<String>(),
                human_age(now - v.last_at),
                v.last_row,
                v.last_detail
            );
        }
    }
    let decided = outbox.decided_since(now - DECIDED_WINDOW_MS)?;
    if !decided.is_empty() {
        println!("rows decided in the last hour:");
        for d in decided {
            println!(
                "  {:>7}  {} ({}…)",
                d.rows,
                d.policy.as_deref().unwrap_or("unknown policy"),
                d.sha256.chars().take(12).collect::<String>()
            );
        }
    }
    Ok(())
}

fn human_age(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{:.1} min", ms as f64 / 60_000.0),
        _ => format!("{:.1} h", ms as f64 / 3_600_000.0),
    }
}
