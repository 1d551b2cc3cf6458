//! The operator's commands: list filters and order, inspect, requeue (all
//! or nothing, routing kept), purge in batches.

use crate::common::{outbox_with, raw, row, state};
use sluice_store::{
    AdminError, ListFilter, NewRow, Outbox, PURGE_BATCH_ROWS, PolicyEvent, PurgeRequest,
    RequeueRequest, Selection, StoreError,
};
use std::path::Path;

/// A routed row to `target` on mesh `m`, enqueued at `at`.
fn routed(id: &str, at: i64, target: &str) -> NewRow {
    NewRow {
        mesh: Some("m".into()),
        target_spec: Some(target.into()),
        nonce: Some("bm9uY2U=".into()),
        ciphertext: Some("Y2lwaGVy".into()),
        priority: Some("now".into()),
        sender_session_pubkey: Some("ab".repeat(32)),
        payload: vec![0xff, 0x00, 0x7f],
        ..row(id, at, at)
    }
}

fn set(path: &Path, sql: &str) {
    raw(path).execute_batch(sql).unwrap();
}

fn minter() -> impl FnMut() -> (String, String) {
    let mut n = 0;
    move || {
        n += 1;
        (format!("new-{n}"), format!("cm-new-{n}"))
    }
}

fn by_ids(ids: &[&str]) -> RequeueRequest {
    RequeueRequest {
        selection: Selection::Ids(ids.iter().map(ToString::to_string).collect()),
        by: "alice".into(),
        now: 5_000,
        new_client_message_id: None,
    }
}

fn ids_of(outbox: &mut Outbox, filter: &ListFilter) -> Vec<String> {
    outbox
        .list(filter)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

#[test]
fn list_is_newest_first_and_every_filter_narrows_it() {
    let mut rows = vec![row("a", 100, 100), row("b", 300, 300), row("c", 300, 300)];
    rows.push(routed("d", 200, "@bob"));
    let (dir, mut outbox) = outbox_with(&rows);
    let path = dir.path().join("outbox.db");
    set(
        &path,
        "UPDATE outbox SET status = 'dead', last_error = 'blocked by recipient grants' WHERE id IN ('a', 'd');",
    );
    let all = ListFilter::default();
    // Same enqueued_at: the later rowid is newer.
    assert_eq!(ids_of(&mut outbox, &all), ["c", "b", "d", "a"]);
    let dead = ListFilter {
        status: Some("dead".into()),
        ..all.clone()
    };
    assert_eq!(ids_of(&mut outbox, &dead), ["d", "a"]);
    let mesh = ListFilter {
        mesh: Some("m".into()),
        ..all.clone()
    };
    assert_eq!(ids_of(&mut outbox, &mesh), ["d"]);
    let error = ListFilter {
        error: Some("recipient".into()),
        ..all.clone()
    };
    assert_eq!(ids_of(&mut outbox, &error), ["d", "a"]);
    let since = ListFilter {
        since: Some(200),
        ..all.clone()
    };
    assert_eq!(ids_of(&mut outbox, &since), ["c", "b", "d"]);
    let limit = ListFilter { limit: 1, ..all };
    assert_eq!(ids_of(&mut outbox, &limit), ["c"]);
    let d = &outbox.list(&mesh).unwrap()[0];
    assert_eq!(d.payload, [0xff, 0x00, 0x7f]);
    assert_eq!(d.target_spec.as_deref(), Some("@bob"));
    assert_eq!(d.aborted_at, None);
}

#[test]
fn inspect_names_the_deciding_policy_and_refuses_an_unknown_id() {
    let (dir, mut outbox) = outbox_with(&[row("a", 100, 100)]);
    outbox
        .record_policy(&PolicyEvent {
            sha256: "c625".into(),
            name: "sluice-default".into(),
            version: "0.1.0".into(),
            source: "embedded default".into(),
            loaded_at: 50,
            reason: "start".into(),
        })
        .unwrap();
    set(
        &dir.path().join("outbox.db"),
        "UPDATE outbox SET status = 'dead', decided_by = 'c625', decided_at = 150 WHERE id = 'a'",
    );
    let seen = outbox.inspect("a").unwrap();
    assert_eq!(seen.entry.decided_at, Some(150));
    assert_eq!(seen.policy.unwrap().name, "sluice-default");
    assert_eq!(seen.requeued_from, None);
    let error = outbox.inspect("nope").unwrap_err();
    assert!(
        matches!(&error, AdminError::UnknownId { id, .. } if id == "nope"),
        "{error:?}"
    );
    assert!(error.to_string().contains("no row with id nope"), "{error}");
}

#[test]
fn requeue_keeps_payload_fingerprint_and_routing_and_supersedes_the_old_row() {
    let (_dir, mut outbox) = outbox_with(&[routed("a", 100, "@bob")]);
    let report = outbox.requeue(&by_ids(&["a"]), minter()).unwrap();
    assert_eq!(report.rows.len(), 1);
    assert_eq!(report.rows[0].new_id, "new-1");
    let old = outbox.inspect("a").unwrap().entry;
    let new = outbox.inspect("new-1").unwrap();
    assert_eq!(
        (
            old.status.as_str(),
            old.aborted_at,
            old.aborted_by.as_deref(),
            old.superseded_by.as_deref()
        ),
        ("aborted", Some(5_000), Some("alice"), Some("new-1"))
    );
    assert_eq!(new.requeued_from.as_deref(), Some("a"));
    let new = new.entry;
    assert_eq!(
        (
            new.status.as_str(),
            new.attempts,
            new.next_attempt_at,
            new.client_message_id.as_str()
        ),
        ("pending", 0, 5_000, "cm-new-1")
    );
    assert_eq!(
        (&new.payload, &new.request_fingerprint),
        (&old.payload, &old.request_fingerprint)
    );
    let routing = |e: &sluice_store::Entry| {
        (
            e.mesh.clone(),
            e.target_spec.clone(),
            e.nonce.clone(),
            e.ciphertext.clone(),
            e.priority.clone(),
            e.sender_session_pubkey.clone(),
        )
    };
    assert_eq!(routing(&new), routing(&old));
    assert_eq!(new.decided_by, None);
}

#[test]
fn requeue_refuses_inflight_done_and_superseded_rows_and_changes_nothing() {
    let rows = [
        row("dead", 1, 1),
        row("held", 2, 2),
        row("sent", 3, 3),
        row("gone", 4, 4),
    ];
    let (dir, mut outbox) = outbox_with(&rows);
    set(
        &dir.path().join("outbox.db"),
        "UPDATE outbox SET status = 'dead' WHERE id = 'dead';
         UPDATE outbox SET status = 'inflight' WHERE id = 'held';
         UPDATE outbox SET status = 'done', broker_message_id = 'msg-9' WHERE id = 'sent';
         UPDATE outbox SET status = 'aborted', superseded_by = 'dead' WHERE id = 'gone';",
    );
    let error = outbox
        .requeue(&by_ids(&["dead", "held", "sent", "gone"]), minter())
        .unwrap_err();
    let AdminError::Refused(refusals) = &error else {
        panic!("{error:?}");
    };
    let refused: Vec<&str> = refusals.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(refused, ["held", "sent", "gone"]);
    let text = error.to_string();
    assert!(
        text.contains("row held is inflight: a drain holds it"),
        "{text}"
    );
    assert!(text.contains("msg-9") && text.contains("as dead"), "{text}");
    assert_eq!(
        state(&mut outbox, "dead").status,
        "dead",
        "a refused call changed a row"
    );
    assert_eq!(outbox.list(&ListFilter::default()).unwrap().len(), 4);

    let error = outbox
        .requeue(&by_ids(&["dead", "nope"]), minter())
        .unwrap_err();
    assert!(
        matches!(&error, AdminError::UnknownId { id, .. } if id == "nope"),
        "{error:?}"
    );
    assert_eq!(state(&mut outbox, "dead").status, "dead");
}

#[test]
fn requeue_by_status_and_error_takes_only_matching_rows_never_requeued() {
    let rows = [row("x", 1, 1), row("y", 2, 2), row("z", 3, 3)];
    let (dir, mut outbox) = outbox_with(&rows);
    set(
        &dir.path().join("outbox.db"),
        "UPDATE outbox SET status = 'dead', last_error = 'blocked by recipient grants' WHERE id IN ('x', 'y');
         UPDATE outbox SET status = 'dead', last_error = 'expired' WHERE id = 'z';",
    );
    let request = RequeueRequest {
        selection: Selection::Matching {
            status: "dead".into(),
            error: Some("grants".into()),
        },
        ..by_ids(&[])
    };
    let report = outbox.requeue(&request, minter()).unwrap();
    let old: Vec<&str> = report.rows.iter().map(|r| r.old_id.as_str()).collect();
    assert_eq!((old, report.more_match), (vec!["x", "y"], false));
    assert_eq!(state(&mut outbox, "z").status, "dead");
    // The aborted rows have successors: asking for aborted rows finds none.
    let aborted = RequeueRequest {
        selection: Selection::Matching {
            status: "aborted".into(),
            error: None,
        },
        ..by_ids(&[])
    };
    assert!(outbox.requeue(&aborted, minter()).unwrap().rows.is_empty());
    let inflight = RequeueRequest {
        selection: Selection::Matching {
            status: "inflight".into(),
            error: None,
        },
        ..by_ids(&[])
    };
    assert!(matches!(
        outbox.requeue(&inflight, minter()),
        Err(AdminError::Refused(_))
    ));
}

#[test]
fn a_chosen_client_id_that_is_taken_fails_the_requeue_and_changes_nothing() {
    let (_dir, mut outbox) = outbox_with(&[row("a", 1, 1), row("b", 2, 2)]);
    let request = RequeueRequest {
        new_client_message_id: Some("cm-b".into()),
        ..by_ids(&["a"])
    };
    let error = outbox.requeue(&request, minter()).unwrap_err();
    assert!(
        matches!(&error, AdminError::Store(StoreError::DuplicateClientMessageId(c)) if c == "cm-b"),
        "{error:?}"
    );
    assert_eq!(state(&mut outbox, "a").status, "pending");
    let two = RequeueRequest {
        new_client_message_id: Some("cm-z".into()),
        ..by_ids(&["a", "b"])
    };
    assert!(matches!(
        outbox.requeue(&two, minter()),
        Err(AdminError::NewClientIdForMany { rows: 2 })
    ));
    let one = RequeueRequest {
        new_client_message_id: Some("cm-z".into()),
        ..by_ids(&["a"])
    };
    let report = outbox.requeue(&one, minter()).unwrap();
    assert_eq!(report.rows[0].new_client_message_id, "cm-z");
}

#[test]
fn requeue_on_a_table_without_the_producer_columns_says_which_is_missing() {
    let (dir, path) = crate::common::temp_path();
    set(
        &path,
        "CREATE TABLE outbox (id TEXT PRIMARY KEY, client_message_id TEXT NOT NULL UNIQUE,
            request_fingerprint BLOB NOT NULL, payload BLOB NOT NULL, enqueued_at INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL,
            status TEXT NOT NULL, last_error TEXT, delivered_at INTEGER, broker_message_id TEXT);",
    );
    let mut outbox = Outbox::open(&path).unwrap();
    outbox.enqueue(&[row("a", 1, 1)]).unwrap();
    assert_eq!(outbox.inspect("a").unwrap().entry.aborted_by, None);
    let error = outbox.requeue(&by_ids(&["a"]), minter()).unwrap_err();
    assert!(
        matches!(
            error,
            AdminError::MissingColumn {
                column: "aborted_at",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(state(&mut outbox, "a").status, "pending");
    drop(dir);
}

#[test]
fn purge_deletes_only_old_finished_rows_in_several_batches() {
    let old = PURGE_BATCH_ROWS as usize * 2 + 10;
    let mut rows: Vec<NewRow> = (0..old).map(|i| row(&format!("old-{i}"), 10, 10)).collect();
    rows.extend([
        row("young", 10, 10),
        row("dead-old", 10, 10),
        row("dead-young", 10, 10),
    ]);
    rows.push(row("open", 10, 10));
    let (dir, mut outbox) = outbox_with(&rows);
    set(
        &dir.path().join("outbox.db"),
        "UPDATE outbox SET status = 'done', delivered_at = 100 WHERE id LIKE 'old-%';
         UPDATE outbox SET status = 'done', delivered_at = 900 WHERE id = 'young';
         UPDATE outbox SET status = 'dead' WHERE id = 'dead-old';
         UPDATE outbox SET status = 'dead', decided_at = 900 WHERE id = 'dead-young';",
    );
    let report = outbox
        .purge(PurgeRequest {
            done_before: Some(500),
            dead_before: Some(500),
        })
        .unwrap();
    assert_eq!((report.done, report.dead), (old as u64, 1));
    assert!(report.batches >= 3, "{report:?}");
    assert!(!report.vacuumed);
    assert!(
        report.free_pages > 0,
        "deleted rows leave reusable pages: {report:?}"
    );
    // What was freed is the pages that became free, not the file's size.
    assert_eq!(
        report.freed_bytes(),
        (report.free_pages - report.free_pages_before) * report.page_size,
        "{report:?}"
    );
    assert!(report.freed_bytes() < report.bytes_after(), "{report:?}");
    let left = ids_of(
        &mut outbox,
        &ListFilter {
            limit: 100,
            ..ListFilter::default()
        },
    );
    assert_eq!(left, ["open", "dead-young", "young"]);
    let none = outbox
        .purge(PurgeRequest {
            done_before: None,
            dead_before: Some(1_000),
        })
        .unwrap();
    assert_eq!((none.done, none.dead), (0, 1));
}

#[test]
fn purge_returns_pages_when_auto_vacuum_is_incremental() {
    let (dir, path) = crate::common::temp_path();
    set(
        &path,
        "PRAGMA auto_vacuum = INCREMENTAL; CREATE TABLE t(x); DROP TABLE t;",
    );
    let mut outbox = Outbox::open(&path).unwrap();
    let big: Vec<NewRow> = (0..2_000)
        .map(|i| NewRow {
            payload: vec![b'x'; 1_000],
            ..row(&format!("r{i}"), 10, 10)
        })
        .collect();
    outbox.enqueue(&big).unwrap();
    set(
        &path,
        "UPDATE outbox SET status = 'done', delivered_at = 10",
    );
    let report = outbox
        .purge(PurgeRequest {
            done_before: Some(500),
            dead_before: None,
        })
        .unwrap();
    assert_eq!(report.done, 2_000);
    assert!(report.vacuumed);
    assert!(
        report.bytes_after() < report.bytes_before() / 4,
        "{report:?}"
    );
    assert_eq!(report.free_pages, 0);
    assert_eq!(
        report.freed_bytes(),
        report.bytes_before() - report.bytes_after(),
        "{report:?}"
    );
    drop(dir);
}
