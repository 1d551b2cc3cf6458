//! Unit tests of the in-memory outbox's store semantics.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use super::*;

fn stored(rowid: i64, enqueued_at: i64, next_attempt_at: i64) -> StoredRow {
    let row = Row {
        rowid,
        enqueued_at,
        ..Row::default()
    };
    StoredRow {
        row,
        status: Status::Pending,
        next_attempt_at,
        last_error: None,
        delivered_at: None,
        broker_message_id: None,
    }
}

fn retry(rowid: i64, attempts: u32, at: i64) -> Outcome {
    Outcome {
        rowid,
        attempts,
        verdict: Verdict::Retry {
            next_attempt_at: at,
            last_error: "x".into(),
        },
    }
}

#[test]
fn claim_takes_due_rows_earliest_due_first_and_leases_them() {
    let mut store = SimStore::new(vec![
        stored(1, 5, 50),
        stored(2, 1, 10),
        stored(3, 2, 10),
        stored(4, 0, 500),
    ]);
    let rows = store
        .claim_due(100, 2, 30, &ClaimFilter::default())
        .unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| (r.rowid, r.attempts))
            .collect::<Vec<_>>(),
        [(2, 1), (3, 1)]
    );
    assert_eq!(store.get(2).unwrap().next_attempt_at, 130);
    assert_eq!(
        store
            .claim_due(100, 10, 30, &ClaimFilter::default())
            .unwrap()
            .len(),
        1,
        "row 4 is not due"
    );
    assert_eq!(store.next_due_at(&ClaimFilter::default()), Some(130));
    assert!(
        store
            .claim_due(100, CLAIM_ROWS_MAX + 1, 30, &ClaimFilter::default())
            .is_err()
    );
    assert!(store.claim_due(100, 1, 0, &ClaimFilter::default()).is_err());
}

#[test]
fn settle_applies_only_to_the_claim_that_holds() {
    let mut store = SimStore::new(vec![stored(1, 0, 0), stored(2, 0, 0)]);
    store.claim_due(0, 10, 30, &ClaimFilter::default()).unwrap();
    let applied = store.settle(&[retry(1, 1, 99), retry(2, 7, 99), retry(3, 1, 99)]);
    assert_eq!(applied, [true, false, false]);
    assert_eq!(
        store.settle(&[retry(1, 1, 99)]),
        [false],
        "a settled claim is gone"
    );
    assert_eq!(store.get(1).unwrap().status, Status::Pending);
    assert_eq!(store.get(2).unwrap().status, Status::Inflight);
}

#[test]
fn reclaim_and_expire_follow_the_lease() {
    let mut store = SimStore::new(vec![stored(1, 0, 0), stored(2, 1_000, 0)]);
    store.claim_due(0, 10, 30, &ClaimFilter::default()).unwrap();
    assert!(
        store.expire(10, 5_000).is_empty(),
        "live leases are not expired"
    );
    assert_eq!(store.reclaim(29), Vec::<i64>::new());
    assert_eq!(store.reclaim(30), [1, 2]);
    assert_eq!(store.get(1).unwrap().row.attempts, 1);
    assert_eq!(store.expire(30, 500), [1]);
    assert_eq!(store.get(1).unwrap().last_error.as_deref(), Some("expired"));
    assert_eq!(store.open_rows(), 1);
    assert_eq!(store.counts()[&Status::Dead], 1);
}

#[test]
fn every_change_is_noted_as_touched_and_the_age_index_follows_status() {
    let mut store = SimStore::new(vec![stored(1, 10, 0), stored(2, 5, 0), stored(3, 1, 500)]);
    assert!(
        store.take_touched().is_empty(),
        "loading rows is not a change"
    );
    assert_eq!(store.oldest_pending().map(|r| r.row.rowid), Some(3));
    store.claim_due(0, 10, 30, &ClaimFilter::default()).unwrap();
    assert_eq!(store.take_touched().into_iter().collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        store.expire(0, 100),
        [3],
        "only pending rows and run-out leases expire"
    );
    assert_eq!(store.oldest_pending().map(|r| r.row.rowid), None);
    assert_eq!(store.take_touched().into_iter().collect::<Vec<_>>(), [3]);
}
