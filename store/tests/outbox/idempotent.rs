//! enqueue_idempotent: every cell of the accept table, in one transaction.

use crate::common::{raw, row, temp_path};
use sluice_store::Outbox;
use sluice_store::enqueue::{Accepted, EnqueueOutcome};
use std::sync::{Arc, Barrier};

/// The fingerprint `common::row` gives every row.
const SAME: [u8; 2] = [0xab, 0xcd];
const OTHER: [u8; 2] = [0x01, 0x02];

/// An outbox holding row `orig` (client_message_id `cm-orig`) in `status`.
fn outbox_with_status(status: &str) -> (tempfile::TempDir, Outbox) {
    let (dir, path) = temp_path();
    let mut outbox = Outbox::open(&path).unwrap();
    outbox.enqueue(&[row("orig", 1, 1)]).unwrap();
    let broker_message_id = (status == "done").then_some("msg_1");
    raw(&path)
        .execute(
            "UPDATE outbox SET status = ?1, broker_message_id = ?2 WHERE id = 'orig'",
            rusqlite::params![status, broker_message_id],
        )
        .unwrap();
    (dir, outbox)
}

/// Enqueues a repeat of `cm-orig` (a fresh row id) with `fingerprint`.
fn repeat(outbox: &mut Outbox, fingerprint: [u8; 2]) -> EnqueueOutcome {
    let mut again = row("again", 2, 2);
    again.client_message_id = "cm-orig".into();
    again.request_fingerprint = fingerprint.to_vec();
    let mut outcomes = outbox.enqueue_idempotent(&[again]).unwrap();
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0)
}

fn rows_in(outbox: &Outbox) -> i64 {
    raw(outbox.path())
        .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
        .unwrap()
}

fn conflict_code(outcome: &EnqueueOutcome) -> String {
    match outcome {
        EnqueueOutcome::Conflict(c) => c.code(),
        EnqueueOutcome::Accepted(a) => panic!("accepted, expected a conflict: {a:?}"),
    }
}

#[test]
fn a_new_client_message_id_is_inserted_pending() {
    let (_dir, path) = temp_path();
    let mut outbox = Outbox::open(&path).unwrap();
    let outcomes = outbox.enqueue_idempotent(&[row("r1", 1, 1)]).unwrap();
    assert_eq!(
        outcomes,
        vec![EnqueueOutcome::Accepted(Accepted {
            id: "r1".into(),
            client_message_id: "cm-r1".into(),
            status: "pending".into(),
            broker_message_id: None,
            inserted: true,
        })]
    );
    assert_eq!(outbox.row_status("r1").unwrap().unwrap().status, "pending");
}

#[test]
fn a_repeat_of_a_live_or_delivered_row_is_accepted_as_that_row() {
    for (status, broker_message_id) in [
        ("pending", None),
        ("inflight", None),
        ("done", Some("msg_1".to_string())),
    ] {
        let (_dir, mut outbox) = outbox_with_status(status);
        let outcome = repeat(&mut outbox, SAME);
        assert_eq!(
            outcome,
            EnqueueOutcome::Accepted(Accepted {
                id: "orig".into(),
                client_message_id: "cm-orig".into(),
                status: status.into(),
                broker_message_id,
                inserted: false,
            }),
            "existing row {status}"
        );
        assert_eq!(
            rows_in(&outbox),
            1,
            "a repeat of a {status} row inserted one"
        );
    }
}

#[test]
fn a_repeat_with_another_fingerprint_is_a_mismatch_conflict_for_every_status() {
    for status in ["pending", "inflight", "done", "dead", "aborted"] {
        let (_dir, mut outbox) = outbox_with_status(status);
        let outcome = repeat(&mut outbox, OTHER);
        assert_eq!(
            conflict_code(&outcome),
            format!("outbox_{status}_fingerprint_mismatch")
        );
        assert_eq!(rows_in(&outbox), 1);
        assert_eq!(
            outbox.row_status("orig").unwrap().unwrap().status,
            status,
            "a conflict changed the existing row"
        );
    }
}

#[test]
fn a_repeat_of_a_dead_or_aborted_row_is_a_conflict_even_when_it_matches() {
    for status in ["dead", "aborted"] {
        let (_dir, mut outbox) = outbox_with_status(status);
        let outcome = repeat(&mut outbox, SAME);
        assert_eq!(
            conflict_code(&outcome),
            format!("outbox_{status}_fingerprint_match")
        );
        let EnqueueOutcome::Conflict(conflict) = outcome else {
            unreachable!()
        };
        assert_eq!(
            (conflict.id.as_str(), conflict.fingerprint_matches),
            ("orig", true)
        );
        assert_eq!(rows_in(&outbox), 1);
    }
}

#[test]
fn a_batch_decides_each_row_and_a_conflict_does_not_stop_the_others() {
    let (_dir, mut outbox) = outbox_with_status("dead");
    let mut clash = row("clash", 2, 2);
    clash.client_message_id = "cm-orig".into();
    let mut twin = row("twin", 3, 3);
    twin.client_message_id = "cm-fresh".into();
    let outcomes = outbox
        .enqueue_idempotent(&[row("fresh", 2, 2), clash, twin])
        .unwrap();
    let summary: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            EnqueueOutcome::Accepted(a) => format!("{} {} {}", a.id, a.status, a.inserted),
            EnqueueOutcome::Conflict(c) => c.code(),
        })
        .collect();
    // `twin` repeats `fresh`'s client_message_id within the batch: it sees
    // the row the same transaction just inserted.
    assert_eq!(
        summary,
        [
            "fresh pending true",
            "outbox_dead_fingerprint_match",
            "fresh pending false"
        ]
    );
    assert_eq!(rows_in(&outbox), 2);
}

#[test]
fn a_duplicate_row_id_under_a_fresh_client_message_id_is_an_error_and_inserts_nothing() {
    let (_dir, mut outbox) = outbox_with_status("pending");
    let mut same_id = row("orig", 2, 2);
    same_id.client_message_id = "cm-new".into();
    let error = outbox
        .enqueue_idempotent(&[row("fresh", 2, 2), same_id])
        .unwrap_err();
    assert!(error.to_string().contains("duplicate id: orig"), "{error}");
    assert_eq!(rows_in(&outbox), 1, "part of a failed batch was inserted");
}

#[test]
fn concurrent_handles_enqueueing_one_id_make_one_row_and_all_accept() {
    const HANDLES: usize = 8;
    let (_dir, path) = temp_path();
    drop(Outbox::open(&path).unwrap());
    let start = Arc::new(Barrier::new(HANDLES));
    let threads: Vec<_> = (0..HANDLES)
        .map(|n| {
            let (path, start) = (path.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                let mut outbox = Outbox::open(&path).unwrap();
                let mut mine = row(&format!("h{n}"), 1, 1);
                mine.client_message_id = "cm-shared".into();
                start.wait();
                outbox.enqueue_idempotent(&[mine]).unwrap().remove(0)
            })
        })
        .collect();
    let outcomes: Vec<EnqueueOutcome> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let accepted: Vec<&Accepted> = outcomes
        .iter()
        .map(|o| match o {
            EnqueueOutcome::Accepted(a) => a,
            EnqueueOutcome::Conflict(c) => panic!("conflict {}", c.code()),
        })
        .collect();
    assert_eq!(accepted.iter().filter(|a| a.inserted).count(), 1);
    let winner = &accepted.iter().find(|a| a.inserted).unwrap().id;
    assert!(accepted.iter().all(|a| &a.id == winner), "{accepted:?}");
    assert_eq!(rows_in(&Outbox::open(&path).unwrap()), 1);
}
