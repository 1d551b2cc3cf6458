//! `sluice enqueue --client-message-id`: the accept table from the command
//! line, and concurrent producer processes racing on one id.

use crate::common::*;
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Producer processes started at once on one id.
const PROCESSES: usize = 8;
/// `sluice enqueue`'s exit status for a conflict.
const EXIT_CONFLICT: i32 = 3;

/// A config and an existing outbox; no broker is needed to enqueue.
fn setup() -> Setup {
    let setup = Setup::new("ws://127.0.0.1:9", "");
    drop(setup.open());
    setup
}

fn enqueue_args<'a>(setup: &'a Setup, cmid: &'a str, payload: &'a str) -> Vec<&'a str> {
    vec![
        "enqueue",
        "--config",
        path_str(&setup.config),
        "--client-message-id",
        cmid,
        "--payload",
        payload,
        "--json",
    ]
}

/// The one JSON outcome line of a `--json` enqueue.
fn outcome(out: &Output) -> Value {
    let text = stdout(out);
    let mut lines = text.lines();
    let value = serde_json::from_str(lines.next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("stdout is not a JSON outcome ({e}): {text}"));
    assert_eq!(lines.next(), None, "more than one outcome: {text}");
    value
}

/// Starts `PROCESSES` enqueues of `cmid` at once, the n-th with `payload(n)`.
fn race(setup: &Setup, cmid: &str, payload: impl Fn(usize) -> String) -> Vec<Output> {
    let payloads: Vec<String> = (0..PROCESSES).map(payload).collect();
    let children: Vec<_> = payloads
        .iter()
        .map(|p| {
            Command::new(sluice_bin())
                .args(enqueue_args(setup, cmid, p))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("sluice enqueue starts")
        })
        .collect();
    children
        .into_iter()
        .map(|c| wait_output(c, Duration::from_secs(60)))
        .collect()
}

#[test]
fn concurrent_processes_with_one_id_and_one_body_make_one_row_and_all_accept() {
    let setup = setup();
    let outs = race(&setup, "cm-race", |_| "the same body".into());
    let mut ids = Vec::new();
    for out in &outs {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
        let o = outcome(out);
        assert_eq!(o["outcome"], "accepted", "{o}");
        assert_eq!(o["status"], "pending", "{o}");
        assert_eq!(o["client_message_id"], "cm-race", "{o}");
        ids.push(o["id"].as_str().unwrap().to_string());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "processes name different rows: {ids:?}");
    assert_eq!(setup.sql::<i64>("SELECT COUNT(*) FROM outbox"), 1);
    let inserted = outs
        .iter()
        .filter(|o| stderr(o).contains("enqueued 1 row(s)"))
        .count();
    assert_eq!(inserted, 1, "more than one process inserted the row");
}

#[test]
fn concurrent_processes_with_one_id_and_different_bodies_accept_one_and_refuse_the_rest() {
    let setup = setup();
    let outs = race(&setup, "cm-clash", |n| format!("body {n}"));
    let (accepted, refused): (Vec<&Output>, Vec<&Output>) =
        outs.iter().partition(|o| o.status.code() == Some(0));
    assert_eq!(
        accepted.len(),
        1,
        "{} processes were accepted",
        accepted.len()
    );
    for out in &refused {
        assert_eq!(out.status.code(), Some(EXIT_CONFLICT), "{}", stderr(out));
        let o = outcome(out);
        assert_eq!(o["outcome"], "conflict", "{o}");
        assert_eq!(o["code"], "outbox_pending_fingerprint_mismatch", "{o}");
    }
    let winner = outcome(accepted[0]);
    assert_eq!(setup.sql::<i64>("SELECT COUNT(*) FROM outbox"), 1);
    let stored: String = setup.sql("SELECT id FROM outbox WHERE client_message_id = 'cm-clash'");
    assert_eq!(winner["id"], stored.as_str());
}

#[test]
fn a_repeat_of_a_delivered_row_reports_its_broker_message_id() {
    let setup = setup();
    assert!(
        sluice(&enqueue_args(&setup, "cm-done", "hello"))
            .status
            .success()
    );
    rusqlite::Connection::open(&setup.outbox)
        .unwrap()
        .execute(
            "UPDATE outbox SET status = 'done', broker_message_id = 'msg_7'",
            [],
        )
        .unwrap();
    let out = sluice(&enqueue_args(&setup, "cm-done", "hello"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let o = outcome(&out);
    assert_eq!(
        (&o["outcome"], &o["status"], &o["broker_message_id"]),
        (&"accepted".into(), &"done".into(), &"msg_7".into()),
        "{o}"
    );
}

#[test]
fn a_repeat_of_a_dead_row_is_a_conflict_that_names_the_code_and_the_fix() {
    let setup = setup();
    // The caller's fingerprint, not the body's: a new body, the same request.
    let fingerprint = ["--fingerprint", "c0ffee"];
    let first = [
        enqueue_args(&setup, "cm-dead", "hello"),
        fingerprint.to_vec(),
    ]
    .concat();
    assert!(sluice(&first).status.success());
    rusqlite::Connection::open(&setup.outbox)
        .unwrap()
        .execute("UPDATE outbox SET status = 'dead'", [])
        .unwrap();
    // Text output this time: the verdict goes to stderr, nothing to stdout.
    let mut again = enqueue_args(&setup, "cm-dead", "another body");
    again.pop();
    let out = sluice(&[again, fingerprint.to_vec()].concat());
    assert_eq!(out.status.code(), Some(EXIT_CONFLICT), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("conflict outbox_dead_fingerprint_match")
            && stderr(&out).contains("fresh client_message_id"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "");
    assert_eq!(setup.sql::<i64>("SELECT COUNT(*) FROM outbox"), 1);
}
