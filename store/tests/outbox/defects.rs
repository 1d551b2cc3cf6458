//! Lenient reading: odd values in an existing file never stop a claim.

use crate::common::{LEASE_MS, outbox_with, raw, row, temp_path};
use sluice_store::Outbox;

/// An outbox whose later columns were declared without a type, as a
/// hand-rolled migration might leave them: SQLite then keeps integers as
/// integers instead of converting them to text.
const UNTYPED_LATER_COLUMNS: &str = "CREATE TABLE outbox (
    id TEXT PRIMARY KEY, client_message_id TEXT NOT NULL UNIQUE,
    request_fingerprint BLOB NOT NULL, payload BLOB NOT NULL,
    enqueued_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL, status TEXT NOT NULL,
    last_error TEXT, delivered_at INTEGER, broker_message_id TEXT,
    mesh, target_spec, nonce, ciphertext, priority, sender_session_pubkey)";

#[test]
fn odd_values_are_converted_or_flagged_and_every_row_is_still_claimed() {
    let (_dir, path) = temp_path();
    let conn = raw(&path);
    conn.execute_batch(UNTYPED_LATER_COLUMNS).unwrap();
    let insert =
        "INSERT INTO outbox (id, client_message_id, request_fingerprint, payload, enqueued_at,
        next_attempt_at, status, target_spec, nonce, ciphertext) VALUES ";
    conn.execute_batch(&format!(
        "{insert} ('int-target', 'cm1', X'01', 'text payload', 1, 1, 'pending', 42, 'n', 'c');
         {insert} ('bad-nonce', 'cm2', X'02', X'00', 2, 2, 'pending', '@p', X'FFFE', 'c');
         {insert} (NULL, 'cm3', X'03', X'00', 3, 3, 'pending', NULL, NULL, NULL);
         {insert} ('fine', 'cm4', X'04', X'00', 4, 4, 'pending', NULL, NULL, NULL);"
    ))
    .unwrap();
    let kind: String = conn
        .query_row(
            "SELECT typeof(target_spec) FROM outbox WHERE id = 'int-target'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kind, "integer", "the fixture must hold a real integer");
    drop(conn);

    let mut outbox = Outbox::open(&path).unwrap();
    let claimed = outbox.claim_due(10, 10, LEASE_MS).unwrap();
    assert_eq!(claimed.len(), 4, "{claimed:?}");

    let converted = &claimed[0];
    assert_eq!(
        (converted.id.as_str(), converted.target_spec.as_deref()),
        ("int-target", Some("42"))
    );
    assert_eq!(
        (converted.payload.as_slice(), &converted.defect),
        (&b"text payload"[..], &None)
    );

    let bad = &claimed[1];
    assert_eq!(
        (
            bad.id.as_str(),
            bad.nonce.as_deref(),
            bad.target_spec.as_deref()
        ),
        ("bad-nonce", None, Some("@p"))
    );
    assert_eq!(
        bad.defect.as_deref(),
        Some("column nonce holds bytes that are not UTF-8")
    );

    let nameless = &claimed[2];
    assert_eq!(
        (nameless.id.as_str(), nameless.client_message_id.as_str()),
        ("", "cm3")
    );
    assert_eq!(nameless.defect.as_deref(), Some("column id holds NULL"));

    assert_eq!(
        (claimed[3].id.as_str(), &claimed[3].defect),
        ("fine", &None)
    );
}

#[test]
fn non_utf8_text_in_a_typed_column_is_a_defect_of_that_row_only() {
    let (_dir, mut outbox) = outbox_with(&[row("a", 1, 1), row("b", 2, 2)]);
    raw(outbox.path())
        .execute(
            "UPDATE outbox SET mesh = CAST(X'C328' AS TEXT) WHERE id = 'a'",
            [],
        )
        .unwrap();
    let claimed = outbox.claim_due(10, 10, LEASE_MS).unwrap();
    assert_eq!(
        claimed[0].defect.as_deref(),
        Some("column mesh holds text that is not UTF-8")
    );
    assert_eq!(claimed[0].mesh, None);
    assert_eq!((claimed[1].id.as_str(), &claimed[1].defect), ("b", &None));
}
