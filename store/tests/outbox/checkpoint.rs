//! The background checkpointer.

use crate::common::{one_at_a_time, row, temp_path};
use sluice_store::{NewRow, Outbox};
use std::time::Duration;

const BATCHES: usize = 40;
const BATCH_ROWS: usize = 250;
const PAYLOAD_BYTES: usize = 1000;

fn wal_bytes(path: &std::path::Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn the_checkpointer_keeps_the_wal_far_below_the_data_written() {
    let _timed = one_at_a_time();
    let (_dir, path) = temp_path();
    let mut outbox = Outbox::open(&path).unwrap();
    let checkpointer = outbox.start_checkpointer().unwrap();
    for batch in 0..BATCHES {
        let rows: Vec<NewRow> = (0..BATCH_ROWS)
            .map(|i| {
                let mut new = row(&format!("b{batch}-{i}"), 1, 1);
                new.payload = vec![b'x'; PAYLOAD_BYTES];
                new
            })
            .collect();
        outbox.enqueue(&rows).unwrap();
        // Gives the checkpoint thread its turns, as a drain's network waits do.
        std::thread::sleep(Duration::from_millis(30));
    }
    let written = (BATCHES * BATCH_ROWS * PAYLOAD_BYTES) as u64;
    let wal = wal_bytes(&path);
    // Without checkpoints the WAL would hold all of it; SQLite's own automatic
    // checkpoint (which the checkpointer turned off) lets it reach ~4 MB.
    assert!(
        wal < 3 * 1024 * 1024,
        "wal is {wal} bytes after writing {written}"
    );
    assert_eq!(checkpointer.failures(), 0);
    drop(checkpointer); // joins the thread: a hang here is a failure
    assert_eq!(outbox.open_work().unwrap() as usize, BATCHES * BATCH_ROWS);
}
