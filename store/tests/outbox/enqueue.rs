//! enqueue: all or nothing, duplicates named.

use crate::common::{outbox_with, row, rows, state};
use sluice_store::StoreError;

#[test]
fn enqueued_rows_are_pending_with_no_attempts() {
    let (_dir, mut outbox) = outbox_with(&rows(2));
    let s = state(&mut outbox, "r0001");
    assert_eq!(
        (
            s.status.as_str(),
            s.attempts,
            s.next_attempt_at,
            s.last_error
        ),
        ("pending", 0, 1001, None)
    );
    assert_eq!(outbox.row_status("nope").unwrap(), None);
}

#[test]
fn a_duplicate_id_fails_the_whole_batch_and_names_the_id() {
    let (_dir, mut outbox) = outbox_with(&rows(1));
    let mut twin = row("r0000", 1, 1);
    twin.client_message_id = "cm-unique".into();
    let error = outbox.enqueue(&[row("fresh", 1, 1), twin]).unwrap_err();
    assert!(
        matches!(&error, StoreError::DuplicateId(id) if id == "r0000"),
        "{error:?}"
    );
    assert!(error.to_string().contains("duplicate id: r0000"), "{error}");
    assert_eq!(
        outbox.row_status("fresh").unwrap(),
        None,
        "part of a failed batch was inserted"
    );
}

#[test]
fn a_duplicate_client_message_id_fails_the_whole_batch_and_names_it() {
    let (_dir, mut outbox) = outbox_with(&rows(1));
    let mut twin = row("other", 1, 1);
    twin.client_message_id = "cm-r0000".into();
    let error = outbox.enqueue(&[row("fresh", 1, 1), twin]).unwrap_err();
    assert!(
        matches!(&error, StoreError::DuplicateClientMessageId(c) if c == "cm-r0000"),
        "{error:?}"
    );
    assert_eq!(
        outbox.open_work().unwrap(),
        1,
        "part of a failed batch was inserted"
    );
    assert_eq!(outbox.enqueue(&[]).unwrap(), 0);
}
