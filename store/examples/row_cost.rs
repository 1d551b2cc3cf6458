//! How long the drain's write lock is held per row: claims and settles on a
//! claudemesh-shaped outbox of many pending rows, with nobody else on the file.
//!
//!     cargo run --release -p sluice-store --example row_cost -- [ROWS] [BATCH]
//!
//! Prints the median microseconds per row of a claim's lease and of a settle
//! (done), each one `BEGIN IMMEDIATE` … `COMMIT`: the time a producer beside
//! the drain would find the write lock taken. And of the claim's read of the
//! leased rows, which takes no write lock.

use rusqlite::{Connection, params};
use sluice_contract::{ClaimFilter, Outcome, Verdict};
use sluice_store::Outbox;
use std::time::Instant;

/// claudemesh's second index, which the store does not make: the daemon's
/// files have it, and each claim and settle keeps it up to date.
const ABORTED_INDEX: &str =
    "CREATE INDEX outbox_aborted ON outbox(status, aborted_at) WHERE status = 'aborted'";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rows: u32 = args.next().map_or(Ok(300_000), |a| a.parse())?;
    let batch: u32 = args.next().map_or(Ok(1024), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("outbox.db");
    // The store makes claudemesh's table and its `outbox_pending` index.
    drop(Outbox::open(&path)?);
    {
        let conn = Connection::open(&path)?;
        conn.execute_batch(ABORTED_INDEX)?;
        conn.execute_batch("BEGIN")?;
        let mut insert = conn.prepare(
            "INSERT INTO outbox (id, client_message_id, request_fingerprint, payload,
                enqueued_at, attempts, next_attempt_at, status, mesh, target_spec, nonce,
                ciphertext, priority)
             VALUES (?1, ?2, ?3, ?4, 1, 0, 1, 'pending', 'bench', '*',
                'bm9uY2Utbm9uY2Utbm9uY2Utbm9uY2Ut', ?5, 'next')",
        )?;
        let (payload, ciphertext) = (vec![b'a'; 200], "C".repeat(300));
        for i in 0..rows {
            insert.execute(params![
                format!("bench-{i:08}"),
                format!("cm-bench-{i:08}"),
                [0xab_u8; 32],
                payload,
                ciphertext
            ])?;
        }
        drop(insert);
        conn.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);")?;
    }
    // As the drain's write connection is (`SharedOutbox`).
    let mut outbox = Outbox::open(&path)?;
    outbox.skip_check_constraints()?;
    let _checkpointer = outbox.start_checkpointer()?;
    let decided_by = "6877e9658b22b84b07f0374cf2891b3d22a01a66d87e29c35bee180ed189ec75";
    let (mut claims, mut settles, mut reads) = (Vec::new(), Vec::new(), Vec::new());
    let mut now = 2;
    loop {
        let started = Instant::now();
        let leased = outbox.lease_due_except(now, batch, 60_000, &ClaimFilter::default())?;
        let claim_took = started.elapsed();
        let started = Instant::now();
        let claimed = outbox.read_leased(&leased)?;
        reads.push(started.elapsed().as_secs_f64() * 1e6 / claimed.len().max(1) as f64);
        if claimed.is_empty() {
            break;
        }
        let outcomes: Vec<Outcome> = claimed
            .iter()
            .map(|r| Outcome {
                rowid: r.rowid,
                attempts: r.attempts,
                verdict: Verdict::Done {
                    broker_message_id: format!("msg-{}", r.rowid),
                    delivered_at: now,
                },
            })
            .collect();
        let started = Instant::now();
        outbox.settle_by(&outcomes, Some(decided_by), Some(now))?;
        let settle_took = started.elapsed();
        let n = claimed.len() as f64;
        claims.push(claim_took.as_secs_f64() * 1e6 / n);
        settles.push(settle_took.as_secs_f64() * 1e6 / n);
        now += 1;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "rows {rows} batch {batch}: lease {:.2} µs/row, settle {:.2} µs/row; read after the lease {:.2} µs/row (medians of {} batches)",
        median(&mut claims),
        median(&mut settles),
        median(&mut reads),
        claims.len()
    );
    Ok(())
}
