//! reclaim, expire, next_due_at and open_work.

use crate::common::{LEASE_MS, ids, outbox_with, row, rows, state};
use sluice_contract::{Outcome, Verdict};

#[test]
fn reclaim_returns_only_rows_whose_lease_has_run_out() {
    let (_dir, mut outbox) = outbox_with(&rows(2));
    outbox.claim_due(1000, 1, 500).unwrap(); // r0000, lease until 1500
    outbox.claim_due(1001, 1, 5000).unwrap(); // r0001, lease until 6001
    assert_eq!(outbox.reclaim(1499).unwrap(), 0);
    assert_eq!(outbox.reclaim(1500).unwrap(), 1);
    let back = state(&mut outbox, "r0000");
    assert_eq!(
        (back.status.as_str(), back.attempts, back.next_attempt_at),
        ("pending", 1, 1500)
    );
    assert_eq!(state(&mut outbox, "r0001").status, "inflight");
    // Due at once: the attempt it used stays counted and the next one adds to it.
    let again = outbox.claim_due(1500, 10, LEASE_MS).unwrap();
    assert_eq!((ids(&again), again[0].attempts), (vec!["r0000"], 2));
}

#[test]
fn expire_kills_old_undelivered_rows_but_not_live_leases_or_finished_rows() {
    let (_dir, mut outbox) = outbox_with(&[
        row("old-pending", 10, 10_000),
        row("old-lost-lease", 11, 11),
        row("old-live-lease", 12, 12),
        row("old-done", 13, 13),
        row("new-pending", 500, 10_000),
    ]);
    assert_eq!(
        ids(&outbox.claim_due(100, 1, 50).unwrap()),
        ["old-lost-lease"]
    ); // lease until 150
    assert_eq!(
        ids(&outbox.claim_due(100, 1, 10_000).unwrap()),
        ["old-live-lease"]
    ); // until 10_100
    let finished = outbox.claim_due(100, 1, LEASE_MS).unwrap().remove(0);
    let done = Verdict::Done {
        broker_message_id: "m".into(),
        delivered_at: 100,
    };
    outbox
        .settle(&[Outcome {
            rowid: finished.rowid,
            attempts: 1,
            verdict: done,
        }])
        .unwrap();

    assert_eq!(outbox.expire(200, 400).unwrap(), 2);
    for id in ["old-pending", "old-lost-lease"] {
        let s = state(&mut outbox, id);
        assert_eq!(
            (s.status.as_str(), s.last_error.as_deref()),
            ("dead", Some("expired")),
            "{id}"
        );
    }
    assert_eq!(state(&mut outbox, "old-live-lease").status, "inflight");
    assert_eq!(state(&mut outbox, "old-done").status, "done");
    assert_eq!(state(&mut outbox, "new-pending").status, "pending");
    assert_eq!(
        outbox.expire(200, 400).unwrap(),
        0,
        "dead rows were expired twice"
    );
}

/// A row whose `enqueued_at` a producer wrote as text has no age to read:
/// nothing shows it young, so the sweep expires it rather than leave it
/// waiting forever behind a link that stays down.
#[test]
fn expire_takes_a_row_whose_enqueued_at_is_not_a_number() {
    let (dir, mut outbox) =
        outbox_with(&[row("undated", 500, 10_000), row("new-pending", 500, 10_000)]);
    let conn = rusqlite::Connection::open(dir.path().join("outbox.db")).unwrap();
    conn.execute(
        "UPDATE outbox SET enqueued_at = 'yesterday' WHERE id = 'undated'",
        [],
    )
    .unwrap();
    drop(conn);
    assert_eq!(outbox.expire(200, 400).unwrap(), 1);
    let s = state(&mut outbox, "undated");
    assert_eq!(
        (s.status.as_str(), s.last_error.as_deref()),
        ("dead", Some("expired"))
    );
    assert_eq!(state(&mut outbox, "new-pending").status, "pending");
}

#[test]
fn next_due_at_is_the_earliest_pending_due_time_or_lease_end() {
    let (_dir, mut outbox) = outbox_with(&[]);
    assert_eq!(outbox.next_due_at().unwrap(), None);
    outbox
        .enqueue(&[row("a", 1, 900), row("b", 2, 700)])
        .unwrap();
    assert_eq!(outbox.next_due_at().unwrap(), Some(700));
    // b is claimed with a lease ending at 800: its lease end counts.
    outbox.claim_due(750, 1, 50).unwrap();
    assert_eq!(outbox.next_due_at().unwrap(), Some(800));
    let done = Verdict::Done {
        broker_message_id: "m".into(),
        delivered_at: 1,
    };
    let b = state(&mut outbox, "b");
    assert_eq!(b.status, "inflight");
    let rowid = outbox.claim_due(900, 1, 50).unwrap().remove(0).rowid; // a
    outbox
        .settle(&[Outcome {
            rowid,
            attempts: 1,
            verdict: done,
        }])
        .unwrap();
    assert_eq!(
        outbox.next_due_at().unwrap(),
        Some(800),
        "a done row still counted"
    );
}

#[test]
fn open_work_counts_pending_and_inflight_rows_only() {
    let (_dir, mut outbox) = outbox_with(&rows(4));
    let claimed = outbox.claim_due(5000, 2, LEASE_MS).unwrap();
    assert_eq!(outbox.open_work().unwrap(), 4);
    let dead = Verdict::Dead {
        reason: "forbidden".into(),
    };
    outbox
        .settle(&[Outcome {
            rowid: claimed[0].rowid,
            attempts: 1,
            verdict: dead,
        }])
        .unwrap();
    assert_eq!(outbox.open_work().unwrap(), 3);
}
