//! claim_due: which rows, in what order, and what it does to them.

use crate::common::{LEASE_MS, ids, outbox_with, row, rows, state};
use sluice_contract::{ClaimFilter, Row};
use sluice_store::{CLAIM_ROWS_MAX, NewRow, StoreError};

#[test]
fn a_claim_takes_the_earliest_due_rows_up_to_the_limit_oldest_enqueued_first() {
    // Due order: c (30), b (35), e (40), a (50), d (60); d is the oldest
    // enqueued but the latest due, so it is left for the next claim.
    let (_dir, mut outbox) = outbox_with(&[
        row("a", 10, 50),
        row("b", 20, 35),
        row("c", 30, 30),
        row("d", 5, 60),
        row("e", 40, 40),
    ]);
    let first = outbox.claim_due(100, 3, LEASE_MS).unwrap();
    assert_eq!(ids(&first), ["b", "c", "e"]);
    let second = outbox.claim_due(100, 3, LEASE_MS).unwrap();
    assert_eq!(ids(&second), ["d", "a"]);
    assert!(outbox.claim_due(100, 3, LEASE_MS).unwrap().is_empty());
}

#[test]
fn equal_enqueue_times_come_back_in_insertion_order() {
    let batch: Vec<NewRow> = ["x", "y", "z"].iter().map(|id| row(id, 7, 7)).collect();
    let (_dir, mut outbox) = outbox_with(&batch);
    let claimed = outbox.claim_due(7, 10, LEASE_MS).unwrap();
    assert_eq!(ids(&claimed), ["x", "y", "z"]);
    assert!(claimed.windows(2).all(|w| w[0].rowid < w[1].rowid));
}

#[test]
fn a_claim_marks_rows_inflight_counts_the_attempt_and_sets_the_lease() {
    let (_dir, mut outbox) = outbox_with(&rows(2));
    let claimed = outbox.claim_due(5000, 1, LEASE_MS).unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempts, 1);
    let claimed_state = state(&mut outbox, "r0000");
    assert_eq!(
        (claimed_state.status.as_str(), claimed_state.attempts),
        ("inflight", 1)
    );
    assert_eq!(claimed_state.next_attempt_at, 5000 + LEASE_MS);
    let untouched = state(&mut outbox, "r0001");
    assert_eq!(
        (
            untouched.status.as_str(),
            untouched.attempts,
            untouched.next_attempt_at
        ),
        ("pending", 0, 1001)
    );

    // A lost lease and a second claim count a second attempt.
    outbox.reclaim(5000 + LEASE_MS).unwrap();
    let again = outbox.claim_due(5000 + LEASE_MS, 2, LEASE_MS).unwrap();
    let attempts: Vec<(&str, u32)> = again.iter().map(|r| (r.id.as_str(), r.attempts)).collect();
    assert_eq!(attempts, [("r0000", 2), ("r0001", 1)]);
}

#[test]
fn rows_not_yet_due_are_not_claimed() {
    let (_dir, mut outbox) = outbox_with(&[row("later", 1, 2000), row("now", 1, 1000)]);
    assert_eq!(ids(&outbox.claim_due(1999, 10, LEASE_MS).unwrap()), ["now"]);
    assert!(
        outbox.claim_due(1999, 10, LEASE_MS).unwrap().is_empty(),
        "an inflight row was claimed again"
    );
    assert_eq!(
        ids(&outbox.claim_due(2000, 10, LEASE_MS).unwrap()),
        ["later"]
    );
}

#[test]
fn a_claimed_row_carries_every_column_as_enqueued() {
    let new = NewRow {
        id: "full".into(),
        client_message_id: "cm-full".into(),
        request_fingerprint: vec![0, 1, 0xfe, 0xff],
        payload: vec![0xff, 0, 0x80],
        enqueued_at: 11,
        next_attempt_at: 12,
        mesh: Some("main".into()),
        target_spec: Some("@peer".into()),
        nonce: Some("bm9uY2U=".into()),
        ciphertext: Some("Y2lwaGVy".into()),
        priority: Some("now".into()),
        sender_session_pubkey: Some("ab12".into()),
    };
    let (_dir, mut outbox) = outbox_with(std::slice::from_ref(&new));
    let claimed = outbox.claim_due(12, 1, LEASE_MS).unwrap();
    let expected = Row {
        rowid: claimed[0].rowid,
        id: new.id,
        client_message_id: new.client_message_id,
        request_fingerprint: new.request_fingerprint,
        payload: new.payload,
        enqueued_at: 11,
        attempts: 1,
        mesh: new.mesh,
        target_spec: new.target_spec,
        nonce: new.nonce,
        ciphertext: new.ciphertext,
        priority: new.priority,
        sender_session_pubkey: new.sender_session_pubkey,
        defect: None,
    };
    assert_eq!(claimed, [expected]);
}

#[test]
fn a_zero_limit_claims_nothing_and_bad_bounds_are_refused() {
    let (_dir, mut outbox) = outbox_with(&rows(2));
    assert!(outbox.claim_due(5000, 0, LEASE_MS).unwrap().is_empty());
    let too_many = outbox
        .claim_due(5000, CLAIM_ROWS_MAX + 1, LEASE_MS)
        .unwrap_err();
    assert!(
        matches!(too_many, StoreError::ClaimLimit { .. }),
        "{too_many:?}"
    );
    let no_lease = outbox.claim_due(5000, 1, 0).unwrap_err();
    assert!(
        no_lease
            .to_string()
            .contains("claim lease out of range: 0 ms"),
        "{no_lease}"
    );
    assert_eq!(outbox.open_work().unwrap(), 2);
    assert_eq!(
        state(&mut outbox, "r0000").status,
        "pending",
        "a refused claim changed a row"
    );
}

#[test]
fn a_filtered_claim_leaves_the_daemon_rows_of_skipped_meshes_alone() {
    let in_mesh = |id: &str, due: i64, mesh: Option<&str>, session: Option<&str>| NewRow {
        mesh: mesh.map(str::to_string),
        sender_session_pubkey: session.map(str::to_string),
        ..row(id, due, due)
    };
    let (_dir, mut outbox) = outbox_with(&[
        in_mesh("down-1", 1, Some("down"), None),
        in_mesh("up-1", 2, Some("up"), None),
        in_mesh("down-session", 3, Some("down"), Some("abcd")),
        in_mesh("unnamed", 4, None, None),
        in_mesh("down-2", 5, Some("down"), None),
    ]);
    let skip = ClaimFilter {
        skip_meshes: vec!["down".into()],
        skip_unnamed: true,
    };
    // The earliest row the filter lets through is due at 2.
    assert_eq!(outbox.next_due_at_except(&skip).unwrap(), Some(2));
    let claimed = outbox.claim_due_except(100, 10, LEASE_MS, &skip).unwrap();
    assert_eq!(ids(&claimed), ["up-1", "down-session"]);
    assert_eq!(state(&mut outbox, "down-1").attempts, 0);
    assert_eq!(
        outbox.next_due_at_except(&skip).unwrap(),
        Some(100 + LEASE_MS)
    );
    let rest = outbox.claim_due(100, 10, LEASE_MS).unwrap();
    assert_eq!(ids(&rest), ["down-1", "unnamed", "down-2"]);
}

#[test]
fn a_row_aborted_between_the_lease_and_the_read_is_left_out() {
    // The lease commits first; the rows are read after. A row its producer
    // aborted in between is no longer this claim's, so it is not returned.
    let (dir, mut outbox) = outbox_with(&rows(3));
    let leased = outbox
        .lease_due_except(10_000, 10, LEASE_MS, &ClaimFilter::default())
        .unwrap();
    assert_eq!(leased.len(), 3);
    let producer = rusqlite::Connection::open(dir.path().join("outbox.db")).unwrap();
    producer
        .execute(
            "UPDATE outbox SET status = 'aborted' WHERE id = 'r0001'",
            [],
        )
        .unwrap();
    let claimed = outbox.read_leased(&leased).unwrap();
    assert_eq!(ids(&claimed), ["r0000", "r0002"]);
    assert!(
        claimed
            .iter()
            .all(|r| r.attempts == 1 && !r.payload.is_empty())
    );
}
