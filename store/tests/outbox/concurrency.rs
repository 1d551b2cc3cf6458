//! Two handles on one file, as two drainer processes would have.

use crate::common::{LEASE_MS, rows, temp_path};
use sluice_contract::{Outcome, Verdict};
use sluice_store::Outbox;
use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

const ROWS: usize = 3000;

/// Claims until nothing is due, settling every other batch, and returns
/// every rowid it claimed.
fn drain(path: &std::path::Path, start: &Barrier, seed: u32) -> Vec<i64> {
    let mut outbox = Outbox::open(path).unwrap();
    start.wait();
    let mut claimed = Vec::new();
    for round in 0u32.. {
        // Batch sizes 1..=17, differing between the two handles.
        let limit = (round.wrapping_mul(7).wrapping_add(seed) % 17) + 1;
        let batch = outbox.claim_due(1_000_000, limit, LEASE_MS).unwrap();
        if batch.is_empty() {
            break;
        }
        if round % 2 == 0 {
            let outcomes: Vec<Outcome> = batch
                .iter()
                .map(|r| Outcome {
                    rowid: r.rowid,
                    attempts: r.attempts,
                    verdict: Verdict::Done {
                        broker_message_id: "m".into(),
                        delivered_at: 1,
                    },
                })
                .collect();
            assert_eq!(outbox.settle(&outcomes).unwrap() as usize, batch.len());
        }
        claimed.extend(batch.iter().map(|r| r.rowid));
        // Give the other handle a turn: without it one thread can drain all
        // rows before the other starts on a busy machine, and nothing
        // interleaves. (Correctness never depends on this pause.)
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    claimed
}

#[test]
fn two_handles_on_one_file_never_claim_the_same_row() {
    let (_dir, path) = temp_path();
    Outbox::open(&path).unwrap().enqueue(&rows(ROWS)).unwrap();
    let start = Arc::new(Barrier::new(2));
    let handles: Vec<_> = [3, 11]
        .into_iter()
        .map(|seed| {
            let (path, start) = (path.clone(), Arc::clone(&start));
            std::thread::spawn(move || drain(&path, &start, seed))
        })
        .collect();
    let claims: Vec<Vec<i64>> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    assert!(
        claims.iter().all(|c| !c.is_empty()),
        "one handle claimed nothing: no interleaving was tested"
    );
    let first: BTreeSet<i64> = claims[0].iter().copied().collect();
    let second: BTreeSet<i64> = claims[1].iter().copied().collect();
    assert_eq!(first.len(), claims[0].len(), "a handle claimed a row twice");
    assert_eq!(
        second.len(),
        claims[1].len(),
        "a handle claimed a row twice"
    );
    assert!(
        first.is_disjoint(&second),
        "both handles claimed {:?}",
        first.intersection(&second).next()
    );
    assert_eq!(
        first.len() + second.len(),
        ROWS,
        "some row was never claimed"
    );
}
