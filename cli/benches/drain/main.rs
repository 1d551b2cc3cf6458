//! The drain benchmark: `cargo bench -p sluice-cli` prints every figure of the
//! README's performance section from one run.
//!
//! 1. The limits and the whole drain, per claim size, on the same rows, the
//!    same machine and the same broker: the store alone (claim and settle),
//!    the links alone (pipelined sends and acks), and `sluice run`. The
//!    whole drain is printed as a fraction of the lower limit, and the
//!    default config (the adaptive claim) against the best fixed batch.
//! 2. Wake latency: enqueue to broker, 1,000 single rows against a running
//!    drain.
//! 3. Scaling: backlogs of 10k, 100k and 1M rows, 1, 2 and 4 batches in
//!    flight, with the CPU time of the drain and of the broker, to show
//!    what stops it.
//! 4. The guard's cost: the whole drain (default config) with the host's
//!    guard and without it (`--unguarded`), interleaved on the same rows.
//! 5. A policy in Python (`python`): the default's rules in Python against
//!    the embedded default, the whole drain interleaved, and both loads,
//!    cold and cached (`python.rs`).
//!
//! The rows are claudemesh's (200-byte payloads, 300-character
//! ciphertexts) in a file with claudemesh's schema (`rows`). Each figure of
//! part 1 is the median of `SLUICE_BENCH_RUNS` runs, interleaved, because
//! the machine is shared and noisy; the ratios are what to read.
//!
//! Environment: `SLUICE_BENCH_ROWS` (100000), `SLUICE_BENCH_RUNS` (3),
//! `SLUICE_BENCH_WAKES` (1000), `SLUICE_BENCH_BIG` (1000000; 0 leaves the
//! largest backlog out), `SLUICE_BENCH_PARTS` (`limits,wake,scale,guard`),
//! `SLUICE_BENCH_GUARD_RUNS` (7: pairs of runs for part 4),
//! `SLUICE_BENCH_PYTHON_ROWS` (20000) and `COMPONENTIZE_PY` or
//! `SLUICE_BENCH_PYTHON_POLICY` for part 5.

mod cpu;
mod limits;
mod python;
mod rows;
mod wake;
mod whole;

use sluice::links::MemberKey;
use sluice_test_broker::{Broker, BrokerOptions};
use std::net::SocketAddr;
use std::path::Path;
use whole::Shape;

/// Fixed claim sizes tried; the best of them is what the default must match.
const BATCHES: [u32; 5] = [32, 128, 512, 2048, 8192];
const SCALE_IN_FLIGHT: [u32; 3] = [1, 2, 4];

fn main() {
    let rows = env_number("SLUICE_BENCH_ROWS", 100_000);
    let runs = env_number("SLUICE_BENCH_RUNS", 3).max(1);
    let wakes = env_number("SLUICE_BENCH_WAKES", 1000);
    let big = env_number("SLUICE_BENCH_BIG", 1_000_000);
    let guard_runs = env_number("SLUICE_BENCH_GUARD_RUNS", 7).max(1);
    let parts = std::env::var("SLUICE_BENCH_PARTS")
        .unwrap_or_else(|_| "limits,wake,scale,guard,python".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let broker = runtime
        .block_on(Broker::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            BrokerOptions {
                forget_messages: true,
                ..BrokerOptions::default()
            },
        ))
        .expect("broker");
    let dir = tempfile::tempdir().expect("tempdir");
    println!(
        "sluice drain benchmark: claudemesh rows ({} B payload, {} char ciphertext), {} cores",
        rows::PAYLOAD_BYTES,
        rows::CIPHERTEXT_CHARS,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if parts.contains("limits") {
        limits_and_whole(dir.path(), &broker.url(), rows, runs);
    }
    if parts.contains("wake") && wakes > 0 {
        wake_latency(dir.path(), &runtime, &broker, wakes);
    }
    if parts.contains("scale") {
        scaling(dir.path(), &broker.url(), big);
    }
    if parts.contains("guard") {
        guard_cost(dir.path(), &broker.url(), rows, guard_runs);
    }
    if parts.contains("python") {
        match python::component(dir.path()) {
            Ok(policy) => {
                let rows = env_number("SLUICE_BENCH_PYTHON_ROWS", 20_000);
                python::compare(dir.path(), &broker.url(), rows, guard_runs, &policy);
            }
            Err(why) => println!("\n5. a policy in Python: left out: {why}"),
        }
    }
    runtime.block_on(broker.shutdown());
}

fn limits_and_whole(dir: &Path, broker_url: &str, rows: usize, runs: usize) {
    let template = dir.join("template.db");
    rows::make(&template, rows);
    let frames = limits::dispatches(&rows::copy(&template, dir, "frames.db"));
    let link = limits::Link::open(broker_url, MemberKey::from_seed([5; 32]));
    println!("\n1. limits and the whole drain: {rows} rows, median of {runs} runs");
    println!(
        "{:>7} | {:>12} | {:>12} | {:>12} | {:>12} | {:>10} | {:>6}",
        "batch", "store alone", "links alone", "lower limit", "whole drain", "of limit", "ticks"
    );
    let mut store = vec![Vec::new(); BATCHES.len()];
    let mut links = vec![Vec::new(); BATCHES.len()];
    let mut whole = vec![Vec::new(); BATCHES.len()];
    let mut default = Vec::new();
    let mut native = Vec::new();
    for _ in 0..runs {
        for (i, &batch) in BATCHES.iter().enumerate() {
            store[i].push(limits::store(
                &rows::copy(&template, dir, "store.db"),
                batch,
            ));
            links[i].push(link.send_all(&frames, batch));
            whole[i].push(whole::drain(
                &rows::copy(&template, dir, "run.db"),
                broker_url,
                Shape::fixed(batch),
            ));
        }
        default.push(whole::drain(
            &rows::copy(&template, dir, "run.db"),
            broker_url,
            Shape::default_config(),
        ));
        native.push(whole::drain(
            &rows::copy(&template, dir, "run.db"),
            broker_url,
            Shape {
                native: true,
                ..Shape::default_config()
            },
        ));
    }
    link.close();
    let mut best = (0u32, 0.0f64, 0.0f64);
    for (i, &batch) in BATCHES.iter().enumerate() {
        let (s, l) = (median(&store[i]), median(&links[i]));
        let w = median_run(&whole[i]);
        let limit = s.min(l);
        println!(
            "{batch:>7} | {s:>8.0} r/s | {l:>8.0} r/s | {limit:>8.0} r/s | {:>8.0} r/s | {:>10.2} | {:>6}",
            w.rows_per_second,
            w.rows_per_second / limit,
            w.ticks
        );
        if w.rows_per_second > best.1 {
            best = (batch, w.rows_per_second, limit);
        }
    }
    let d = median_run(&default);
    println!(
        "default | {:>51} | {:>8.0} r/s | {:>10.2} | {:>6}",
        "(adaptive claim)",
        d.rows_per_second,
        d.rows_per_second / best.2,
        d.ticks
    );
    let n = median_run(&native);
    println!(
        "best fixed batch {}: {:.0} rows/s, {:.2} of its lower limit; default config {:.0} rows/s = {:.2}x the best fixed batch; peak RSS {:.1} MB",
        best.0,
        best.1,
        best.1 / best.2,
        d.rows_per_second,
        d.rows_per_second / best.1,
        mb(d.peak_rss_bytes)
    );
    println!(
        "the policy linked natively instead (default config): {:.0} rows/s; component/native {:.2}",
        n.rows_per_second,
        d.rows_per_second / n.rows_per_second
    );
}

fn wake_latency(dir: &Path, runtime: &tokio::runtime::Runtime, broker: &Broker, count: usize) {
    let template = dir.join("empty.db");
    rows::make(&template, 0);
    let outbox = rows::copy(&template, dir, "wake.db");
    let config = whole::config(&outbox, &broker.url(), Shape::default_config());
    let mut sends = broker.sends();
    let hellos = broker.stats().hellos_accepted;
    let _running = wake::Running::start(&config);
    // Ready once its link said hello.
    for _ in 0..200 {
        if broker.stats().hellos_accepted > hellos {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let library = wake::through_library(runtime, &outbox, &mut sends, count);
    let cli = wake::through_cli(runtime, &config, &mut sends, count);
    println!(
        "\n2. wake latency: enqueue to the broker reading the frame, {count} single rows, running drain"
    );
    println!(
        "from the store library's insert + wake: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        library.percentile(0.5),
        library.percentile(0.99),
        library.percentile(1.0)
    );
    println!(
        "from spawning `sluice enqueue`:         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        cli.percentile(0.5),
        cli.percentile(0.99),
        cli.percentile(1.0)
    );
}

fn scaling(dir: &Path, broker_url: &str, big: usize) {
    let mut backlogs = vec![10_000usize, 100_000];
    if big > 0 {
        backlogs.push(big);
    }
    println!("\n3. scaling: default config, one run each");
    println!(
        "{:>9} | {:>9} | {:>10} | {:>9} | {:>12} | {:>12} | {:>12} | {:>8}",
        "backlog",
        "in flight",
        "rows/s",
        "us/row",
        "drain CPU",
        "broker CPU",
        "store alone",
        "peak RSS"
    );
    for backlog in backlogs {
        let template = dir.join("scale.db");
        rows::make(&template, backlog);
        let store = limits::store(&rows::copy(&template, dir, "store.db"), 2048);
        for in_flight in SCALE_IN_FLIGHT {
            let own = cpu::own_seconds();
            let run = whole::drain(
                &rows::copy(&template, dir, "run.db"),
                broker_url,
                Shape {
                    in_flight: Some(in_flight),
                    ..Shape::default_config()
                },
            );
            let broker_cpu = cpu::own_seconds() - own;
            println!(
                "{backlog:>9} | {in_flight:>9} | {:>10.0} | {:>9.1} | {:>10.0} % | {:>10.0} % | {:>8.0} r/s | {:>5.1} MB",
                run.rows_per_second,
                1e6 / run.rows_per_second,
                100.0 * run.cpu_seconds / run.seconds,
                100.0 * broker_cpu / run.seconds,
                store,
                mb(run.peak_rss_bytes)
            );
            assert_eq!(run.done as usize, backlog, "every row should be done");
        }
    }
    println!(
        "(drain CPU: the drain process's CPU time over its drain time, startup included; 100 % is one core)"
    );
}

/// The whole drain with the guard and without it, in alternating runs on
/// copies of one outbox: the guard's cost in rows per second and in the
/// drain's CPU time per row.
fn guard_cost(dir: &Path, broker_url: &str, rows: usize, runs: usize) {
    let template = dir.join("guard.db");
    rows::make(&template, rows);
    let mut guarded = Vec::new();
    let mut unguarded = Vec::new();
    for i in 0..runs {
        // Alternate which goes first, so a drift of the machine favours neither.
        for without in [i % 2 == 1, i % 2 == 0] {
            let shape = Shape {
                unguarded: without,
                ..Shape::default_config()
            };
            let run = whole::drain(&rows::copy(&template, dir, "run.db"), broker_url, shape);
            assert_eq!(run.done as usize, rows, "every row should be done");
            if without {
                unguarded.push(run);
            } else {
                guarded.push(run);
            }
        }
    }
    let rate =
        |runs: &[whole::Run]| median(&runs.iter().map(|r| r.rows_per_second).collect::<Vec<_>>());
    let cpu = |runs: &[whole::Run]| {
        median(
            &runs
                .iter()
                .map(|r| 1e6 * r.cpu_seconds / rows as f64)
                .collect::<Vec<_>>(),
        )
    };
    let (with_rate, without_rate) = (rate(&guarded), rate(&unguarded));
    let (with_cpu, without_cpu) = (cpu(&guarded), cpu(&unguarded));
    println!(
        "\n4. the guard's cost: default config, {rows} rows, median of {runs} runs each, alternating"
    );
    println!(
        "with the guard {with_rate:.0} rows/s, {with_cpu:.1} us CPU/row; without {without_rate:.0} rows/s, {without_cpu:.1} us CPU/row"
    );
    println!(
        "guarded/unguarded: rate {:.3}, CPU per row {:.3} (the guard's cost: {:+.1} % rate, {:+.1} % CPU)",
        with_rate / without_rate,
        with_cpu / without_cpu,
        100.0 * (with_rate / without_rate - 1.0),
        100.0 * (with_cpu / without_cpu - 1.0)
    );
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// The run with the median rate; its peak RSS is replaced by the largest seen.
fn median_run(runs: &[whole::Run]) -> whole::Run {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.rows_per_second.total_cmp(&b.rows_per_second));
    let mut run = sorted[sorted.len() / 2];
    run.peak_rss_bytes = runs.iter().map(|r| r.peak_rss_bytes).max().unwrap_or(0);
    run
}
