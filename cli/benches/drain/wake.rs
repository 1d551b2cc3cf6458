//! Wake latency: from an enqueue to the broker receiving the row's frame,
//! against a running drain with nothing else to do.
//!
//! Two clocks, both started in this process and stopped when the broker
//! (also in this process) reads the frame:
//! - from spawning `sluice enqueue` (process start, config, open, insert,
//!   wake datagram): what a producer using the CLI sees;
//! - from the library's insert (what a producer linking the store does),
//!   then the same wake datagram: the drain's own share.

use sluice::store::{NewRow, Outbox};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Pause after each receipt, so the drain's settle is done before the next
/// enqueue: single enqueues, not a stream.
const GAP: Duration = Duration::from_millis(2);
const RECEIPT_WAIT: Duration = Duration::from_secs(5);

/// Latencies in microseconds, sorted.
pub struct Latencies(Vec<u64>);

impl Latencies {
    pub fn percentile(&self, p: f64) -> f64 {
        let index = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[index] as f64 / 1000.0
    }
}

/// A running `sluice run` on `config`, stopped on drop.
pub struct Running(Child);

impl Running {
    pub fn start(config: &Path) -> Running {
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sluice run");
        Running(child)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Times `count` enqueues through the `sluice enqueue` binary.
pub fn through_cli(
    runtime: &tokio::runtime::Runtime,
    config: &Path,
    sends: &mut watch::Receiver<u64>,
    count: usize,
) -> Latencies {
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let seen = *sends.borrow_and_update();
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("enqueue")
            .arg("--config")
            .arg(config)
            .args(["--payload", &"p".repeat(crate::rows::PAYLOAD_BYTES)])
            .args(["--mesh", crate::rows::MESH, "--target-spec", "*"])
            .args(["--nonce", "bm9uY2Utbm9uY2Utbm9uY2Utbm9uY2Ut"])
            .args(["--ciphertext", &"c".repeat(crate::rows::CIPHERTEXT_CHARS)])
            .args(["--id", &format!("wake-cli-{i}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run sluice enqueue");
        wait_for_receipt(runtime, sends, seen);
        samples.push(started.elapsed().as_micros() as u64);
        let status = child.wait().expect("sluice enqueue");
        assert!(status.success(), "sluice enqueue failed");
        std::thread::sleep(GAP);
    }
    samples.sort_unstable();
    Latencies(samples)
}

/// Times `count` enqueues through the store library plus the wake datagram.
pub fn through_library(
    runtime: &tokio::runtime::Runtime,
    outbox_path: &Path,
    sends: &mut watch::Receiver<u64>,
    count: usize,
) -> Latencies {
    let mut outbox = Outbox::open(outbox_path).expect("open the outbox");
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let seen = *sends.borrow_and_update();
        let started = Instant::now();
        let now = sluice::world::now_ms();
        let row = NewRow {
            id: format!("wake-lib-{i}"),
            client_message_id: format!("cm-wake-lib-{i}"),
            request_fingerprint: vec![0xab; 32],
            payload: vec![b'p'; crate::rows::PAYLOAD_BYTES],
            enqueued_at: now,
            next_attempt_at: now,
            mesh: Some(crate::rows::MESH.into()),
            target_spec: Some("*".into()),
            nonce: Some("bm9uY2Utbm9uY2Utbm9uY2Utbm9uY2Ut".into()),
            ciphertext: Some("c".repeat(crate::rows::CIPHERTEXT_CHARS)),
            priority: Some("next".into()),
            sender_session_pubkey: None,
        };
        outbox.enqueue(&[row]).expect("enqueue");
        sluice::wake::notify(outbox_path);
        wait_for_receipt(runtime, sends, seen);
        samples.push(started.elapsed().as_micros() as u64);
        std::thread::sleep(GAP);
    }
    samples.sort_unstable();
    Latencies(samples)
}

fn wait_for_receipt(
    runtime: &tokio::runtime::Runtime,
    sends: &mut watch::Receiver<u64>,
    seen: u64,
) {
    let received = runtime.block_on(async {
        tokio::time::timeout(RECEIPT_WAIT, sends.wait_for(|&n| n > seen)).await
    });
    assert!(
        matches!(received, Ok(Ok(_))),
        "the broker did not receive the enqueued row within {RECEIPT_WAIT:?}"
    );
}
