//! `sluice outbox` end to end: the real binary on a real outbox, with and
//! without a drain running on it.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

// The outbox shared with other programs (another SQLite, a corrupt file).
#[path = "share.rs"]
mod share;

use crate::common::*;
use sluice_test_broker::BrokerOptions;
use std::time::Duration;

fn exec(setup: &Setup, sql: &str) {
    rusqlite::Connection::open(&setup.outbox)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

fn outbox(setup: &Setup, args: &[&str]) -> std::process::Output {
    let mut all = vec!["outbox", args[0], "--config", path_str(&setup.config)];
    all.extend(&args[1..]);
    sluice(&all)
}

#[test]
fn a_dead_direct_message_requeued_by_error_goes_to_its_original_target() {
    let options = BrokerOptions {
        reject_permanent: vec![("@bob".into(), "blocked by recipient grants".into())],
        ..BrokerOptions::default()
    };
    let broker = TestBroker::start(options);
    let setup = Setup::new(&broker.url(), "");
    setup.enqueue(&[routed("direct", "@bob"), routed("fine", "@peer")]);
    let drain = setup.spawn(&[]);
    wait_for("the direct row to die", Duration::from_secs(20), || {
        setup.row("direct").0 == "dead"
    });

    let out = outbox(
        &setup,
        &[
            "requeue",
            "--status",
            "dead",
            "--error",
            "recipient grants",
            "--by",
            "ops",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let requeued: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let requeued = requeued.as_array().unwrap();
    assert_eq!(requeued.len(), 1, "{requeued:?}");
    assert_eq!(requeued[0]["old_id"], "direct");
    let new_id = requeued[0]["new_id"].as_str().unwrap().to_string();
    let new_cm = requeued[0]["new_client_message_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        new_id.starts_with("ob_") && new_cm.starts_with("cm_"),
        "{requeued:?}"
    );

    wait_for(
        "the requeued row to go out",
        Duration::from_secs(20),
        || broker.receipts(&new_cm) == 1,
    );
    let stats = broker.stats();
    let sent = &stats.last_send[&new_cm];
    assert_eq!(
        sent.target_spec, "@bob",
        "the requeued row lost its routing"
    );
    assert_eq!(sent.ciphertext, stats.last_send["cm-direct"].ciphertext);
    let (status, by, successor): (String, String, String) =
        rusqlite::Connection::open(&setup.outbox)
            .unwrap()
            .query_row(
                "SELECT status, aborted_by, superseded_by FROM outbox WHERE id = 'direct'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
    assert_eq!((status.as_str(), by.as_str()), ("aborted", "ops"));
    assert_eq!(successor, new_id);
    assert_eq!(
        broker.receipts("cm-direct"),
        1,
        "the old row went out again"
    );
    signal(&drain, "TERM");
    let out = wait_output(drain, Duration::from_secs(20));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn list_and_inspect_show_rows_and_refuse_bad_input_by_name() {
    let setup = Setup::new("ws://127.0.0.1:9", "");
    setup.enqueue(&[routed("first", "@bob"), routed("second", "*")]);
    exec(
        &setup,
        "UPDATE outbox SET enqueued_at = enqueued_at - 1000 WHERE id = 'first';
         UPDATE outbox SET status = 'dead', last_error = 'blocked by recipient grants' WHERE id = 'first';
         UPDATE outbox SET payload = x'ff00' WHERE id = 'second';",
    );
    let out = outbox(&setup, &["list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["second", "first"], "newest first");
    assert_eq!(
        (
            rows[0]["payload"].as_str(),
            rows[0]["payload_encoding"].as_str()
        ),
        (Some("ff00"), Some("hex"))
    );
    assert_eq!(rows[1]["payload"], "payload of first");
    assert_eq!(rows[1]["target_spec"], "@bob");

    let out = outbox(&setup, &["list", "--error", "grants", "--since", "1h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.starts_with("ID") && table.contains("first") && !table.contains("second"),
        "{table}"
    );

    let out = outbox(&setup, &["list", "--since", "7x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--since"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("give a number followed by s, m, h or d"),
        "{}",
        stderr(&out)
    );

    let out = outbox(&setup, &["inspect", "first"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for wanted in [
        "@bob",
        "blocked by recipient grants",
        "payload of first",
        "ago",
    ] {
        assert!(text.contains(wanted), "{wanted:?} missing from:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("status ") && l.ends_with(" dead")),
        "{text}"
    );
    let out = outbox(&setup, &["inspect", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no row with id nope"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn requeue_of_an_inflight_row_is_refused_with_the_reason_and_changes_nothing() {
    let setup = Setup::new("ws://127.0.0.1:9", "");
    setup.enqueue(&[routed("held", "@bob"), routed("failed", "@bob")]);
    exec(
        &setup,
        "UPDATE outbox SET status = 'inflight' WHERE id = 'held';
         UPDATE outbox SET status = 'dead' WHERE id = 'failed';",
    );
    let out = outbox(&setup, &["requeue", "failed", "held"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("row held is inflight: a drain holds it"),
        "{}",
        stderr(&out)
    );
    assert_eq!(setup.row("failed").0, "dead");
    assert_eq!(setup.sql::<i64>("SELECT COUNT(*) FROM outbox"), 2);

    let out = outbox(&setup, &["requeue", "failed", "ghost"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no row with id ghost"),
        "{}",
        stderr(&out)
    );

    let out = outbox(&setup, &["requeue", "failed", "--new-client-id", "cm-mine"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("failed → ob_"), "{}", stdout(&out));
    assert_eq!(
        setup.sql::<String>("SELECT status FROM outbox WHERE client_message_id = 'cm-mine'"),
        "pending"
    );
}

#[test]
fn purge_removes_old_finished_rows_and_reports_the_space() {
    let setup = Setup::new("ws://127.0.0.1:9", "");
    setup.enqueue(&many("row", 1_000));
    exec(
        &setup,
        "UPDATE outbox SET status = 'done', delivered_at = 0 WHERE id < 'row-000900';
         UPDATE outbox SET status = 'dead' WHERE id >= 'row-000990';",
    );
    let out = outbox(&setup, &["purge", "--done-older-than", "7x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--done-older-than"),
        "{}",
        stderr(&out)
    );

    let out = outbox(
        &setup,
        &[
            "purge",
            "--done-older-than",
            "7d",
            "--dead-older-than",
            "30d",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("purged 900 done and 0 dead row(s)"), "{text}");
    // The space freed, not the file's size before and after.
    assert!(
        text.contains("freed ") && text.contains("SQLite reuses") && !text.contains(" → "),
        "{text}"
    );
    let freed: f64 = text
        .split("freed ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|figure| figure.parse().ok())
        .expect("a figure of kB or MB");
    assert!(freed > 0.0, "{text}");
    assert_eq!(setup.sql::<i64>("SELECT COUNT(*) FROM outbox"), 100);
}

#[test]
fn a_file_that_is_not_an_outbox_is_refused_and_left_untouched() {
    let setup = Setup::new("ws://127.0.0.1:9", "");
    let junk = b"not a database\n".repeat(100);
    std::fs::write(&setup.outbox, &junk).unwrap();
    for args in [
        &["list"][..],
        &["requeue", "x"],
        &["purge", "--done-older-than", "1d"],
    ] {
        let out = outbox(&setup, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains("not a SQLite database"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(std::fs::read(&setup.outbox).unwrap(), junk);
}
