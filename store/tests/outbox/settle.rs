//! settle: each verdict, and the compare-and-set that protects other claims.

use crate::common::{LEASE_MS, outbox_with, raw, rows, state};
use sluice_contract::{Outcome, Verdict};

fn done(rowid: i64, attempts: u32) -> Outcome {
    Outcome {
        rowid,
        attempts,
        verdict: Verdict::Done {
            broker_message_id: "msg-1".into(),
            delivered_at: 7000,
        },
    }
}

#[test]
fn done_records_delivery_and_clears_the_error() {
    let (_dir, mut outbox) = outbox_with(&rows(1));
    let row = outbox.claim_due(5000, 1, LEASE_MS).unwrap().remove(0);
    let retry = Verdict::Retry {
        next_attempt_at: 5000,
        last_error: "rate_limited".into(),
    };
    assert_eq!(
        outbox
            .settle(&[Outcome {
                rowid: row.rowid,
                attempts: 1,
                verdict: retry
            }])
            .unwrap(),
        1
    );
    let row = outbox.claim_due(5000, 1, LEASE_MS).unwrap().remove(0);
    assert_eq!(outbox.settle(&[done(row.rowid, row.attempts)]).unwrap(), 1);
    let s = state(&mut outbox, "r0000");
    assert_eq!((s.status.as_str(), s.attempts), ("done", 2));
    assert_eq!(
        (s.delivered_at, s.broker_message_id.as_deref(), s.last_error),
        (Some(7000), Some("msg-1"), None)
    );
}

#[test]
fn dead_records_the_reason_and_retry_schedules_the_row_again() {
    let (_dir, mut outbox) = outbox_with(&rows(2));
    let claimed = outbox.claim_due(5000, 2, LEASE_MS).unwrap();
    let outcomes = [
        Outcome {
            rowid: claimed[0].rowid,
            attempts: 1,
            verdict: Verdict::Dead {
                reason: "forbidden".into(),
            },
        },
        Outcome {
            rowid: claimed[1].rowid,
            attempts: 1,
            verdict: Verdict::Retry {
                next_attempt_at: 6000,
                last_error: "ack_timeout".into(),
            },
        },
    ];
    assert_eq!(outbox.settle(&outcomes).unwrap(), 2);
    let dead = state(&mut outbox, "r0000");
    assert_eq!(
        (
            dead.status.as_str(),
            dead.last_error.as_deref(),
            dead.attempts
        ),
        ("dead", Some("forbidden"), 1)
    );
    let retried = state(&mut outbox, "r0001");
    assert_eq!(
        (
            retried.status.as_str(),
            retried.next_attempt_at,
            retried.attempts
        ),
        ("pending", 6000, 1)
    );
    assert_eq!(retried.last_error.as_deref(), Some("ack_timeout"));
    assert!(
        outbox.claim_due(5999, 5, LEASE_MS).unwrap().is_empty(),
        "a retry came back before its time"
    );
    assert_eq!(outbox.claim_due(6000, 5, LEASE_MS).unwrap()[0].attempts, 2);
}

#[test]
fn a_settle_from_a_lost_claim_is_ignored_after_the_row_was_claimed_again() {
    let (_dir, mut outbox) = outbox_with(&rows(1));
    let first = outbox.claim_due(5000, 1, LEASE_MS).unwrap().remove(0);
    assert_eq!(outbox.reclaim(5000 + LEASE_MS).unwrap(), 1);
    let second = outbox
        .claim_due(5000 + LEASE_MS, 1, LEASE_MS)
        .unwrap()
        .remove(0);
    assert_eq!((first.rowid, second.attempts), (second.rowid, 2));

    let dead = Verdict::Dead {
        reason: "late".into(),
    };
    assert_eq!(
        outbox
            .settle(&[Outcome {
                rowid: first.rowid,
                attempts: 1,
                verdict: dead
            }])
            .unwrap(),
        0
    );
    let s = state(&mut outbox, "r0000");
    assert_eq!(
        (s.status.as_str(), s.attempts, s.last_error),
        ("inflight", 2, None)
    );
}

#[test]
fn a_settle_never_resurrects_a_reclaimed_or_aborted_row() {
    let (_dir, mut outbox) = outbox_with(&rows(2));
    let claimed = outbox.claim_due(5000, 2, LEASE_MS).unwrap();
    // Both leases run out and the rows go back to pending; then the producer
    // aborts r0001.
    assert_eq!(outbox.reclaim(5000 + LEASE_MS).unwrap(), 2);
    raw(outbox.path())
        .execute(
            "UPDATE outbox SET status = 'aborted' WHERE id = 'r0001'",
            [],
        )
        .unwrap();
    let retry = |rowid| Outcome {
        rowid,
        attempts: 1,
        verdict: Verdict::Retry {
            next_attempt_at: 1,
            last_error: "late".into(),
        },
    };
    assert_eq!(
        outbox
            .settle(&[retry(claimed[0].rowid), retry(claimed[1].rowid)])
            .unwrap(),
        0
    );
    let reclaimed = state(&mut outbox, "r0000");
    assert_eq!(
        (reclaimed.status.as_str(), reclaimed.next_attempt_at),
        ("pending", 5000 + LEASE_MS)
    );
    assert_eq!(
        reclaimed.last_error, None,
        "a settle wrote to a reclaimed row"
    );
    assert_eq!(state(&mut outbox, "r0001").status, "aborted");
}

#[test]
fn a_second_outcome_for_a_settled_claim_changes_nothing() {
    let (_dir, mut outbox) = outbox_with(&rows(1));
    let row = outbox.claim_due(5000, 1, LEASE_MS).unwrap().remove(0);
    assert_eq!(outbox.settle(&[done(row.rowid, 1)]).unwrap(), 1);
    let retry = Verdict::Retry {
        next_attempt_at: 1,
        last_error: "late".into(),
    };
    assert_eq!(
        outbox
            .settle(&[Outcome {
                rowid: row.rowid,
                attempts: 1,
                verdict: retry
            }])
            .unwrap(),
        0
    );
    assert_eq!(state(&mut outbox, "r0000").status, "done");
    assert_eq!(outbox.settle(&[]).unwrap(), 0);
}

#[test]
fn a_hold_gives_the_attempt_back_and_keeps_the_error_unless_given_one() {
    let (_dir, mut outbox) = outbox_with(&rows(1));
    let hold = |rowid, attempts, last_error: Option<&str>| Outcome {
        rowid,
        attempts,
        verdict: Verdict::Hold {
            next_attempt_at: 6000,
            last_error: last_error.map(str::to_string),
        },
    };
    let row = outbox.claim_due(5000, 1, LEASE_MS).unwrap().remove(0);
    let refused = "rate_limit: max 60 msg/min (burst 10) — slow down";
    assert_eq!(
        outbox.settle(&[hold(row.rowid, 1, Some(refused))]).unwrap(),
        1
    );
    let s = state(&mut outbox, "r0000");
    assert_eq!(
        (s.status.as_str(), s.attempts, s.next_attempt_at),
        ("pending", 0, 6000)
    );
    assert_eq!(s.last_error.as_deref(), Some(refused));
    assert!(outbox.claim_due(5999, 1, LEASE_MS).unwrap().is_empty());
    let row = outbox.claim_due(6000, 1, LEASE_MS).unwrap().remove(0);
    assert_eq!(row.attempts, 1, "the held claim's attempt was given back");
    assert_eq!(outbox.settle(&[hold(row.rowid, 1, None)]).unwrap(), 1);
    assert_eq!(
        state(&mut outbox, "r0000").last_error.as_deref(),
        Some(refused)
    );
    // A hold from a claim that no longer holds the row changes nothing.
    let row = outbox.claim_due(6000, 1, LEASE_MS).unwrap().remove(0);
    assert_eq!(outbox.settle(&[hold(row.rowid, 2, None)]).unwrap(), 0);
}

#[test]
fn a_settle_records_the_deciding_policy_and_the_history_names_it() {
    let (_dir, mut outbox) = outbox_with(&rows(2));
    let claimed = outbox.claim_due(5000, 2, LEASE_MS).unwrap();
    outbox
        .record_policy(&sluice_store::PolicyEvent {
            sha256: "ab12".into(),
            name: "sluice-default".into(),
            version: "0.1.0".into(),
            source: "embedded default".into(),
            loaded_at: 4000,
            reason: "start".into(),
        })
        .unwrap();
    let outcomes: Vec<Outcome> = claimed.iter().map(|r| done(r.rowid, r.attempts)).collect();
    assert_eq!(
        outbox
            .settle_by(&outcomes, Some("ab12"), Some(7000))
            .unwrap(),
        2
    );
    let decided = outbox.decided_since(6000).unwrap();
    assert_eq!(decided.len(), 1);
    assert_eq!((decided[0].sha256.as_str(), decided[0].rows), ("ab12", 2));
    assert_eq!(decided[0].policy.as_deref(), Some("sluice-default 0.1.0"));
    assert!(outbox.decided_since(7001).unwrap().is_empty());
    let history = outbox.policy_history(10).unwrap();
    assert_eq!(history[0].reason, "start");
}
