//! How many sends a second one daemon link gets acked by the test broker.
//!
//! `cargo run --release -p sluice-links --example ack_rate -- [rows] [batch] [in_flight]`
//! Not a test: a measurement, printed for a human.

use sluice_contract::{Dispatch, Route, SendResult};
use sluice_links::{LinkOptions, Links, MemberKey, MeshConfig};
use sluice_test_broker::{Broker, BrokerOptions};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn arg(index: usize, default: usize) -> usize {
    std::env::args()
        .nth(index)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn batch(start: usize, len: usize) -> Vec<Dispatch> {
    (start..start + len)
        .map(|i| Dispatch {
            rowid: i64::try_from(i).unwrap_or(i64::MAX),
            route: Route::Daemon("main".into()),
            client_message_id: format!("cm-{i:012}"),
            request_fingerprint_hex:
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            target_spec: "@peer".into(),
            priority: "next".into(),
            nonce: "MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1u".into(),
            ciphertext: "Y2lwaGVydGV4dCBvZiBhIHNtYWxsIG1lc3NhZ2UgdGhhdCBhIHBlZXIgd2lsbCBkZWNyeXB0"
                .into(),
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (rows, batch_len, in_flight) = (arg(1, 200_000), arg(2, 1024), arg(3, 2).max(1));
    let broker_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let broker = broker_runtime.block_on(Broker::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        BrokerOptions::default(),
    ))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mesh = MeshConfig {
        slug: "main".into(),
        broker_url: broker.url(),
        mesh_id: "m".into(),
        member_id: "u".into(),
        key: MemberKey::from_seed([5; 32]),
        session_id: "ack-rate".into(),
        rate_limit_per_minute: 60,
        rate_limit_burst: 10,
        ca_certs: Vec::new(),
        ca_file: None,
    };
    let links = {
        let _guard = runtime.enter();
        Links::start(vec![mesh], Vec::new(), LinkOptions::default())
    };
    if !runtime.block_on(links.wait_open(Duration::from_secs(5))) {
        return Err("link did not open".into());
    }
    let started = Instant::now();
    let accepted = runtime.block_on(async {
        let mut accepted = 0usize;
        let mut next = 0usize;
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < in_flight && next < rows {
                let len = batch_len.min(rows - next);
                let links = links.clone();
                let dispatches = batch(next, len);
                running.spawn(async move {
                    links.send_batch(dispatches, Duration::from_secs(15)).await
                });
                next += len;
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            accepted += done.map_or(0, |results| {
                results
                    .iter()
                    .filter(|r| matches!(r, SendResult::Accepted(_)))
                    .count()
            });
        }
        accepted
    });
    let elapsed = started.elapsed();
    let rate = accepted as f64 / elapsed.as_secs_f64();
    println!(
        "{accepted}/{rows} accepted in {elapsed:.2?}: {rate:.0} acks/s (batch {batch_len}, {in_flight} in flight)"
    );
    runtime.block_on(links.shutdown());
    Ok(())
}
