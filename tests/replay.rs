//! Record a real run, replay it, and ask what a candidate would have done —
//! through the `sluice` command line, as a user would.

// Test code fails loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use sluice_test_broker::BrokerOptions;

#[test]
fn a_recorded_run_replays_identically_and_a_changed_setting_is_named() {
    let broker = TestBroker::start(BrokerOptions {
        reject_transient: vec![("@flaky".into(), 1, "timed out upstream".into())],
        ..BrokerOptions::default()
    });
    let setup = Setup::new(&broker.url(), "");
    let mut rows = many("plain", 40);
    rows.push(routed("shaky", "@flaky"));
    setup.enqueue(&rows);
    let trace = setup.dir.path().join("run.trace");
    let out = setup.spawn_with(&["--exit-when-drained", "--record", path_str(&trace)]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = sluice(&["replay", path_str(&trace)]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).starts_with("replay ok: "), "{}", stdout(&out));

    // A policy that gives up after one attempt decides the flaky row differently.
    let out = sluice(&["replay", path_str(&trace), "--setting", "max_attempts=1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("replay diverged") && text.contains("tick ") && text.contains("call "),
        "{text}"
    );

    let out = sluice(&[
        "replay",
        path_str(&trace),
        "--diff",
        "--setting",
        "max_attempts=1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("row shaky")
            && text.contains("recorded retry at attempt 1 in ")
            && text
                .contains("(timed out upstream), candidate dead max_attempts: timed out upstream"),
        "{text}"
    );
    assert!(
        text.contains("no longer"),
        "the what-if output must say what it cannot answer: {text}"
    );
    assert!(
        !text.contains("row plain-"),
        "rows decided alike were reported: {text}"
    );

    // A candidate that retries the same row later differs in the retry time
    // alone: what-if reports it, as plain replay does.
    let out = sluice(&[
        "replay",
        path_str(&trace),
        "--diff",
        "--setting",
        "backoff_base_ms=2000",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("row shaky"))
        .unwrap_or_else(|| panic!("the later retry is not reported: {text}"));
    let delays: Vec<&str> = line
        .split(" in ")
        .skip(1)
        .filter_map(|rest| rest.split(" ms").next())
        .collect();
    assert_eq!(delays.len(), 2, "{line}");
    assert_ne!(delays[0], delays[1], "{line}");

    let out = sluice(&["trace", "print", path_str(&trace)]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("store.claim-due") && stdout(&out).contains("policy sluice-default")
    );
}

#[test]
fn a_file_that_is_not_a_trace_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "hello\n").unwrap();
    let out = sluice(&["replay", path_str(&path)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a sluice trace"),
        "{}",
        stderr(&out)
    );
}
