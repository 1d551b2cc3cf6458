//! The whole drain: the release `sluice run --exit-when-drained` binary on a
//! copy of the template, against the benchmark's broker.

use sluice::links::MemberKey;
use std::path::{Path, PathBuf};
use std::process::Command;

const SEED: [u8; 32] = [3; 32];

/// How the drain is configured for one run.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// `[policy] batch_rows`; None: the default (the adaptive claim).
    pub batch: Option<u32>,
    /// `[drain] batches_in_flight`; None: the default.
    pub in_flight: Option<u32>,
    /// The policy linked natively instead of the component.
    pub native: bool,
    /// Without the host's guard (`--unguarded`): to measure what it costs.
    pub unguarded: bool,
}

impl Shape {
    pub fn fixed(batch: u32) -> Shape {
        Shape {
            batch: Some(batch),
            in_flight: None,
            native: false,
            unguarded: false,
        }
    }

    /// Nothing set: what a user gets out of the box.
    pub fn default_config() -> Shape {
        Shape {
            batch: None,
            in_flight: None,
            native: false,
            unguarded: false,
        }
    }
}

/// What one drain run reported on its summary line.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// CPU time (user and system) of the drain process, whole run.
    pub cpu_seconds: f64,
    /// Wall time of the drain proper (from its links opening).
    pub seconds: f64,
    pub rows_per_second: f64,
    pub peak_rss_bytes: u64,
    pub ticks: u64,
    pub done: u64,
}

/// Writes the config of a drain of `outbox` with `shape`, beside it.
pub fn config(outbox: &Path, broker_url: &str, shape: Shape) -> PathBuf {
    let dir = outbox.parent().expect("the outbox has a folder");
    let key = MemberKey::from_seed(SEED);
    let drain = shape
        .in_flight
        .map(|n| format!("batches_in_flight = {n}\n"))
        .unwrap_or_default();
    let mut policy = String::new();
    if let Some(batch) = shape.batch {
        policy.push_str(&format!("batch_rows = {batch}\n"));
    }
    let text = format!(
        "outbox = \"{outbox}\"\n\
         [drain]\n{drain}\
         [policy]\n{policy}\
         [[mesh]]\nslug = \"{mesh}\"\nbroker_url = \"{broker_url}\"\nmesh_id = \"mesh_bench\"\n\
         member_id = \"mem_bench\"\npublic_key = \"{pk}\"\nsecret_key = \"{sk}{pk}\"\n\
         rate_limit_per_minute = 0\n",
        outbox = outbox.file_name().and_then(|n| n.to_str()).expect("name"),
        mesh = crate::rows::MESH,
        pk = key.public_hex(),
        sk = hex::encode(SEED)
    );
    let config = dir.join("bench.toml");
    std::fs::write(&config, text).expect("config");
    config
}

/// Drains `outbox` (a fresh copy) with `shape`.
pub fn drain(outbox: &Path, broker_url: &str, shape: Shape) -> Run {
    drain_with(outbox, broker_url, shape, None)
}

/// [`drain`] with the policy component in `policy` (`--policy`) when given.
pub fn drain_with(outbox: &Path, broker_url: &str, shape: Shape, policy: Option<&Path>) -> Run {
    let config = config(outbox, broker_url, shape);
    let cpu_before = crate::cpu::children_seconds();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--exit-when-drained")
        .env("RUST_LOG", "error");
    if shape.native {
        command.arg("--native-policy");
    }
    if shape.unguarded {
        command.arg("--unguarded");
    }
    if let Some(policy) = policy {
        command.arg("--policy").arg(policy);
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
    Run {
        cpu_seconds: crate::cpu::children_seconds() - cpu_before,
        seconds: field("seconds"),
        rows_per_second: field("rows_per_second"),
        peak_rss_bytes: field("peak_rss_bytes") as u64,
        ticks: field("ticks") as u64,
        done: field("done") as u64,
    }
}
