//! The drain benchmark: `cargo bench -p sluice`.
//!
//! Drains outboxes of real SQLite rows to the test broker over loopback with
//! the real `sluice run` binary, and prints rows/s and peak RSS of the drain
//! process for the policy as a WebAssembly component and for the same policy
//! crate linked natively (the baseline). Runs alternate between the two and
//! each figure is the median of `RUNS`, because the machine is shared and
//! noisy; the ratios are what to read.
//!
//! Environment: `SLUICE_BENCH_ROWS` (default 100000), `SLUICE_BENCH_RUNS`
//! (default 3), `SLUICE_BENCH_BIG` (default 1000000: the large backlog; 0 skips it).

use sluice::links::{Broker, BrokerOptions, MemberKey};
use sluice::store::{NewRow, Outbox};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SEED: [u8; 32] = [3; 32];

struct Figures {
    rows_per_second: f64,
    peak_rss_bytes: u64,
}

fn main() {
    let rows = env_number("SLUICE_BENCH_ROWS", 100_000);
    let runs = env_number("SLUICE_BENCH_RUNS", 3).max(1);
    let big = env_number("SLUICE_BENCH_BIG", 1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    println!(
        "sluice drain benchmark: {rows} rows, median of {runs} runs, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let template = dir.path().join("template.db");
    make_outbox(&template, rows);
    for (label, delay_ms) in [("instant broker", 0), ("1 ms ack latency", 1)] {
        let broker = runtime
            .block_on(Broker::start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                BrokerOptions {
                    ack_delay: Duration::from_millis(delay_ms),
                    ..BrokerOptions::default()
                },
            ))
            .expect("broker");
        for batch in [32u32, 1024] {
            let mut component = Vec::new();
            let mut native = Vec::new();
            for _ in 0..runs {
                component.push(drain_once(
                    dir.path(),
                    &template,
                    &broker.url(),
                    batch,
                    false,
                ));
                native.push(drain_once(
                    dir.path(),
                    &template,
                    &broker.url(),
                    batch,
                    true,
                ));
            }
            let (c, n) = (median(&component), median(&native));
            println!(
                "{label:<17} batch {batch:>4}: component {:>8.0} rows/s, peak RSS {:>5.1} MB | native {:>8.0} rows/s, peak RSS {:>5.1} MB | component/native {:.2}",
                c.rows_per_second,
                mb(c.peak_rss_bytes),
                n.rows_per_second,
                mb(n.peak_rss_bytes),
                c.rows_per_second / n.rows_per_second
            );
        }
        runtime.block_on(broker.shutdown());
    }

    if big > 0 {
        let broker = runtime
            .block_on(Broker::start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                BrokerOptions::default(),
            ))
            .expect("broker");
        let small_template = dir.path().join("small.db");
        make_outbox(&small_template, 10_000);
        let big_template = dir.path().join("big.db");
        make_outbox(&big_template, big);
        let mut small = Vec::new();
        let mut large = Vec::new();
        for _ in 0..runs {
            small.push(drain_once(
                dir.path(),
                &small_template,
                &broker.url(),
                1024,
                false,
            ));
            large.push(drain_once(
                dir.path(),
                &big_template,
                &broker.url(),
                1024,
                false,
            ));
        }
        let (s, l) = (median(&small), median(&large));
        println!(
            "backlog scaling   batch 1024: 10,000 rows {:>8.0} rows/s | {big} rows {:>8.0} rows/s, peak RSS {:.1} MB | large/small {:.2}",
            s.rows_per_second,
            l.rows_per_second,
            mb(l.peak_rss_bytes),
            l.rows_per_second / s.rows_per_second
        );
        runtime.block_on(broker.shutdown());
    }
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

fn median(figures: &[Figures]) -> Figures {
    let mut rates: Vec<f64> = figures.iter().map(|f| f.rows_per_second).collect();
    rates.sort_by(f64::total_cmp);
    let mut rss: Vec<u64> = figures.iter().map(|f| f.peak_rss_bytes).collect();
    rss.sort_unstable();
    Figures {
        rows_per_second: rates[rates.len() / 2],
        peak_rss_bytes: rss[rss.len() - 1],
    }
}

fn make_outbox(path: &Path, rows: usize) {
    let mut outbox = Outbox::open(path).expect("outbox");
    let now = 1_767_225_600_000i64 + 365 * 86_400_000;
    let now = now.min(sluice::world::now_ms());
    for chunk in (0..rows).collect::<Vec<_>>().chunks(50_000) {
        let batch: Vec<NewRow> = chunk
            .iter()
            .map(|i| NewRow {
                id: format!("bench-{i:08}"),
                client_message_id: format!("cm-bench-{i:08}"),
                request_fingerprint: vec![0xab; 32],
                payload: vec![b'x'; 64],
                enqueued_at: now,
                next_attempt_at: now,
                mesh: Some("bench".into()),
                target_spec: Some("@peer".into()),
                nonce: Some("bm9uY2Utbm9uY2Utbm9uY2Utbm9uY2Ut".into()),
                ciphertext: Some(
                    "Y2lwaGVydGV4dC1jaXBoZXJ0ZXh0LWNpcGhlcnRleHQtY2lwaGVydGV4dA==".into(),
                ),
                priority: Some("next".into()),
                sender_session_pubkey: None,
            })
            .collect();
        outbox.enqueue(&batch).expect("enqueue");
    }
    drop(outbox);
    // Fold the WAL into the file so a copy carries every row.
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpoint");
}

/// Copies the template, drains it with a fresh `sluice run`, returns its figures.
fn drain_once(dir: &Path, template: &Path, broker_url: &str, batch: u32, native: bool) -> Figures {
    let outbox = dir.join("run.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(PathBuf::from(format!("{}{suffix}", outbox.display())));
    }
    std::fs::copy(template, &outbox).expect("copy outbox");
    let key = MemberKey::from_seed(SEED);
    let config = dir.join("bench.toml");
    let text = format!(
        "outbox = \"run.db\"\n[policy]\nbatch_rows = {batch}\n[[mesh]]\nslug = \"bench\"\nbroker_url = \"{broker_url}\"\nmesh_id = \"mesh_bench\"\nmember_id = \"mem_bench\"\npublic_key = \"{pk}\"\nsecret_key = \"{sk}{pk}\"\nrate_limit_per_minute = 0\n",
        pk = key.public_hex(),
        sk = hex::encode(SEED)
    );
    std::fs::write(&config, text).expect("config");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--exit-when-drained")
        .env("RUST_LOG", "error");
    if native {
        command.arg("--native-policy");
    }
    let out = command.output().expect("run sluice");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sluice run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> f64 {
        stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
    };
    Figures {
        rows_per_second: field("rows_per_second"),
        peak_rss_bytes: field("peak_rss_bytes") as u64,
    }
}
