//! `sluice outbox list|inspect|requeue|purge`: an operator's hands on the
//! outbox file, safe whether or not a drain is running on it.
//!
//! Owns: the flags, their checks, the exit codes (2 for bad input such as
//! an unknown id or a malformed duration, 1 when rows are refused, e.g. an
//! inflight row in a requeue) and waking drainers after a requeue. Not
//! here: the queries and writes (`sluice_store::admin`), printing
//! (`show`), times (`when`).

mod show;
mod when;

use super::enqueue::random_id;
use clap::{Args, Subcommand};
use sluice::config::Config;
use sluice::wake;
use sluice::world::now_ms;
use sluice_store::{
    AdminError, LIST_ROWS_MAX, ListFilter, Outbox, PurgeRequest, RequeueRequest, STATUSES,
    Selection,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct OutboxArgs {
    #[command(subcommand)]
    command: OutboxCommand,
}

#[derive(Debug, Subcommand)]
enum OutboxCommand {
    /// List rows, newest first, as a table or --json.
    List(ListArgs),
    /// Show every column of one row and what decided it.
    Inspect(InspectArgs),
    /// Send rows again as new pending rows; the old ones become aborted.
    Requeue(RequeueArgs),
    /// Delete done and dead rows older than a duration, in short batches.
    Purge(PurgeArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    /// The TOML config file (its `outbox` is read).
    #[arg(long)]
    config: PathBuf,
    #[arg(long, value_parser = STATUSES)]
    status: Option<String>,
    /// Rows of this mesh slug.
    #[arg(long)]
    mesh: Option<String>,
    /// Rows whose last_error contains TEXT (case-sensitive).
    #[arg(long, value_name = "TEXT")]
    error: Option<String>,
    /// Rows enqueued within a duration (30s, 10m, 2h, 7d) or since a UTC time (2025-01-31T14:00Z).
    #[arg(long, value_name = "DURATION_OR_TIME", value_parser = when::parse_since)]
    since: Option<when::Since>,
    /// At most N rows.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=i64::from(LIST_ROWS_MAX)))]
    limit: u32,
    /// A JSON array of rows, every column (payload as text if UTF-8, else hex).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct InspectArgs {
    #[arg(long)]
    config: PathBuf,
    /// The row's id.
    id: String,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RequeueArgs {
    #[arg(long)]
    config: PathBuf,
    /// Rows by id; or select with --status (and --error) instead.
    #[arg(required_unless_present = "status", conflicts_with = "status")]
    ids: Vec<String>,
    /// Every row with this status not requeued before: dead, pending or aborted.
    #[arg(long, value_parser = STATUSES)]
    status: Option<String>,
    /// With --status: only rows whose last_error contains TEXT.
    #[arg(long, value_name = "TEXT", requires = "status")]
    error: Option<String>,
    /// Who asks, recorded as the old rows' aborted_by (default: $USER, else "sluice").
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    /// The new row's client_message_id (one row only; default: a fresh one).
    #[arg(long, value_name = "ID", conflicts_with = "status")]
    new_client_id: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("age").required(true).multiple(true))]
struct PurgeArgs {
    #[arg(long)]
    config: PathBuf,
    /// Delete done rows delivered longer ago than this (30s, 10m, 2h, 7d).
    #[arg(long, value_name = "DURATION", group = "age", value_parser = when::parse_duration)]
    done_older_than: Option<i64>,
    /// Delete dead rows that died (or were enqueued, if unrecorded) longer ago than this.
    #[arg(long, value_name = "DURATION", group = "age", value_parser = when::parse_duration)]
    dead_older_than: Option<i64>,
    #[arg(long)]
    json: bool,
}

pub fn outbox(args: &OutboxArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        OutboxCommand::List(args) => list(args),
        OutboxCommand::Inspect(args) => inspect(args),
        OutboxCommand::Requeue(args) => requeue(args),
        OutboxCommand::Purge(args) => purge(args),
    }
}

/// The config's outbox, which must exist: these commands never create one.
fn open(config: &Path) -> anyhow::Result<(PathBuf, Outbox)> {
    let config = Config::load(config)?;
    if !config.outbox.exists() {
        anyhow::bail!(
            "no outbox at {}: check `outbox` in {} (it is relative to the config file)",
            config.outbox.display(),
            config.path.display()
        );
    }
    let outbox = Outbox::open(&config.outbox)?;
    Ok((config.outbox, outbox))
}

fn list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let (path, mut outbox) = open(&args.config)?;
    let now = now_ms();
    let filter = ListFilter {
        status: args.status.clone(),
        mesh: args.mesh.clone(),
        error: args.error.clone(),
        since: args.since.map(|s| s.cutoff(now)),
        limit: args.limit,
    };
    let entries = outbox.list(&filter)?;
    if args.json {
        let rows: Vec<_> = entries.iter().map(show::entry_json).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if entries.is_empty() {
        eprintln!("no rows match in {}", path.display());
    } else {
        print!("{}", show::table(&entries, now));
        if entries.len() == args.limit as usize {
            eprintln!("(the newest {}; --limit N shows more)", args.limit);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let (_, mut outbox) = open(&args.config)?;
    let seen = outbox.inspect(&args.id)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&show::inspection_json(&seen))?
        );
    } else {
        print!("{}", show::inspection(&seen, now_ms()));
    }
    Ok(ExitCode::SUCCESS)
}

fn requeue(args: &RequeueArgs) -> anyhow::Result<ExitCode> {
    let (path, mut outbox) = open(&args.config)?;
    let selection = match &args.status {
        Some(status) => Selection::Matching {
            status: status.clone(),
            error: args.error.clone(),
        },
        None => Selection::Ids(args.ids.clone()),
    };
    let by = args.by.clone().unwrap_or_else(|| {
        std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "sluice".into())
    });
    let request = RequeueRequest {
        selection,
        by,
        now: now_ms(),
        new_client_message_id: args.new_client_id.clone(),
    };
    let report = match outbox.requeue(&request, || (random_id("ob_"), random_id("cm_"))) {
        Ok(report) => report,
        Err(refused @ (AdminError::Refused(_) | AdminError::MissingColumn { .. })) => {
            eprintln!("error: {refused}");
            return Ok(ExitCode::from(1));
        }
        Err(other) => return Err(other.into()),
    };
    let woken = if report.rows.is_empty() {
        0
    } else {
        wake::notify(&path)
    };
    if args.json {
        let rows: Vec<_> = report
            .rows
            .iter()
            .map(|r| {
                serde_json::json!({"old_id": r.old_id, "old_status": r.old_status,
                    "new_id": r.new_id, "new_client_message_id": r.new_client_message_id})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for r in &report.rows {
            println!(
                "{} → {} ({}, was {})",
                r.old_id, r.new_id, r.new_client_message_id, r.old_status
            );
        }
    }
    eprintln!(
        "requeued {} row(s) in {}; woke {woken} drainer(s)",
        report.rows.len(),
        path.display()
    );
    if report.more_match {
        eprintln!("more rows match: run the command again to requeue the next batch");
    }
    Ok(ExitCode::SUCCESS)
}

fn purge(args: &PurgeArgs) -> anyhow::Result<ExitCode> {
    let (path, mut outbox) = open(&args.config)?;
    let now = now_ms();
    let report = outbox.purge(PurgeRequest {
        done_before: args.done_older_than.map(|age| now - age),
        dead_before: args.dead_older_than.map(|age| now - age),
    })?;
    if args.json {
        let value = serde_json::json!({
            "done": report.done, "dead": report.dead, "batches": report.batches,
            "bytes_before": report.bytes_before(), "bytes_after": report.bytes_after(),
            "freed_bytes": report.freed_bytes(), "reusable_bytes": report.reusable_bytes(),
            "vacuumed": report.vacuumed,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "purged {} done and {} dead row(s) from {} in {} batch(es)",
        report.done,
        report.dead,
        path.display(),
        report.batches
    );
    let size = |bytes: i64| match bytes {
        ..1_000_000 => format!("{} kB", (bytes + 999) / 1000),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    };
    if report.vacuumed {
        println!(
            "freed {}, given back to the file system: the file went from {} to {} (auto_vacuum is incremental)",
            size(report.freed_bytes()),
            size(report.bytes_before()),
            size(report.bytes_after())
        );
    } else {
        println!(
            "freed {} inside the file, which SQLite reuses for new rows; the file stays {} (it shrinks only when auto_vacuum is incremental)",
            size(report.freed_bytes()),
            size(report.bytes_after())
        );
    }
    Ok(ExitCode::SUCCESS)
}
