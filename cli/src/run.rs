//! `sluice run` and `sluice demo`.

use crate::demo;
use anyhow::Context as _;
use clap::Args;
use sluice::config::Config;
use sluice::daemon::{PolicyChoice, RunSummary, Start};
use sluice::metrics::{self, Metrics};
use sluice_lab::validate::TraceVerifier;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The TOML config file.
    #[arg(long)]
    config: PathBuf,
    /// A policy component to run instead of the embedded default.
    #[arg(long, value_name = "FILE.wasm")]
    policy: Option<PathBuf>,
    /// Exit 0 once no row is pending or inflight.
    #[arg(long)]
    exit_when_drained: bool,
    /// Run the default policy linked natively instead of as WebAssembly (the
    /// benchmark's baseline).
    #[arg(long, hide = true, conflicts_with = "policy")]
    native_policy: bool,
    /// Run the policy without the host's guard over its rows: only for
    /// measuring what the guard costs (the benchmark). Never in production.
    #[arg(long, hide = true)]
    unguarded: bool,
    /// Write every call of the policy to this trace file.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// A folder of golden traces every policy swapped in while running must
    /// replay clean (the --policy file's new versions, `sluice policy load`).
    #[arg(long, value_name = "DIR")]
    verify: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDRESS/metrics (e.g.
    /// 127.0.0.1:9464). No TLS and no auth: keep it on loopback or a
    /// private interface.
    #[arg(long, value_name = "ADDRESS")]
    metrics: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Rows of ordinary traffic in the demo outbox (other kinds are added in proportion).
    #[arg(long, default_value_t = 2400)]
    rows: u32,
    /// Write every call of the policy to this trace file.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
}

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    super::init_logging("info");
    let mut config = Config::load(&args.config)?;
    config.verify = args.verify.clone();
    config.unguarded = args.unguarded;
    // Before any thread starts: they all inherit it.
    if let Err(e) = sluice_store::cpu::set_policy(config.scheduling) {
        tracing::warn!(target: "sluice", "could not set drain.scheduling = {:?} ({e}); the drain runs with the process's scheduling", config.scheduling);
    }
    let policy = match (&args.policy, args.native_policy) {
        (Some(path), _) => PolicyChoice::File(path.clone()),
        (None, true) => PolicyChoice::Native,
        (None, false) => PolicyChoice::Embedded,
    };
    // Bound before the drain starts: a taken port fails the start.
    let served = match args.metrics {
        Some(address) => Some((metrics::bind(address)?, Arc::new(Metrics::new()))),
        None => None,
    };
    let mut daemon = Start::new(&config, &policy)
        .exit_when_drained(args.exit_when_drained)
        .record(args.record.as_deref())
        .ack_latency(served.as_ref().map(|(_, metrics)| metrics.ack_observer()))
        .verifier(Arc::new(TraceVerifier))
        .start()
        .with_context(|| format!("starting the drain of {}", config.outbox.display()))?;
    if let Some((listener, metrics)) = served {
        metrics.attach(&mut daemon, listener, &config.outbox)?;
    }
    let meta = &daemon.meta;
    tracing::info!(target: "sluice", "policy {} {} ({}, sha256 {})", meta.name, meta.version, meta.source, meta.sha256);
    tracing::info!(target: "sluice", "scheduling {:?} (drain.scheduling)", config.scheduling);
    tracing::info!(target: "sluice", "sqlite {} linked; every process that opens {} needs 3.51.3 or later (or 3.50.7 / 3.44.6)", sluice_store::sqlite_version(), config.outbox.display());
    daemon.stop_on_signals();
    let summary = daemon.run();
    println!("{}", summary_line(&summary));
    if summary.corrupt.is_some() {
        // The error itself was logged once, when it was found.
        return Ok(ExitCode::from(EXIT_CORRUPT));
    }
    Ok(ExitCode::SUCCESS)
}

/// `sluice run`'s exit status when it stopped because the outbox is corrupt.
pub const EXIT_CORRUPT: u8 = 3;

/// One line a script can parse: `key=value` pairs.
pub fn summary_line(s: &RunSummary) -> String {
    let t = &s.totals;
    format!(
        "drained ticks={} done={} dead={} expired={} retried={} reclaimed={} failed_ticks={} seconds={:.3} rows_per_second={:.0} peak_rss_bytes={}",
        t.ticks,
        t.done,
        t.dead,
        t.expired,
        t.retried,
        t.reclaimed,
        t.failed_ticks,
        s.elapsed.as_secs_f64(),
        s.rows_per_second(),
        s.peak_rss_bytes
            .map_or("unknown".to_string(), |b| b.to_string()),
    )
}

pub fn demo(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    super::init_logging("error");
    let report = demo::run(args.rows, args.record.as_deref())?;
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}
