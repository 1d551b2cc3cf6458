//! End to end: the real `sluice` binary drains a real SQLite outbox over real
//! WebSockets on 127.0.0.1 to the project's test broker, running the real
//! compiled policy component.

use crate::common::*;
use sluice::store::NewRow;
use sluice_test_broker::BrokerOptions;
use std::time::Duration;

#[test]
fn every_row_is_delivered_once_and_marked_done() {
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = Setup::new(&broker.url(), "");
    let mut rows = many("row", 300);
    let legacy: Vec<NewRow> = (0..20)
        .map(|i| NewRow {
            mesh: None,
            target_spec: None,
            nonce: None,
            ciphertext: None,
            priority: None,
            ..routed(&format!("legacy-{i}"), "")
        })
        .collect();
    rows.extend(legacy);
    setup.enqueue(&rows);

    let out = setup.drain();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("done=320"), "{}", stdout(&out));
    assert_eq!(setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status = 'done' AND attempts = 1 AND broker_message_id IS NOT NULL AND delivered_at IS NOT NULL AND last_error IS NULL"), 320);
    let stats = broker.stats();
    assert_eq!(stats.receipts.len(), 320);
    assert!(
        stats.receipts.values().all(|&n| n == 1),
        "a row was sent twice"
    );
    let legacy = &stats.last_send["cm-legacy-3"];
    assert_eq!(legacy.target_spec, "*");
    assert_eq!(legacy.ciphertext, "cGF5bG9hZCBvZiBsZWdhY3ktMw==");
    assert_eq!(legacy.priority, "next");
}

#[test]
fn permanent_rejection_is_dead_with_the_brokers_error() {
    let options = BrokerOptions {
        reject_permanent: vec![("@blocked".into(), "blocked by recipient grants".into())],
        ..BrokerOptions::default()
    };
    let broker = TestBroker::start(options);
    let setup = Setup::new(&broker.url(), "");
    setup.enqueue(&[routed("bad", "@blocked"), routed("good", "@peer")]);
    assert!(setup.drain().status.success());
    assert_eq!(
        setup.row("bad"),
        ("dead".into(), 1, Some("blocked by recipient grants".into()))
    );
    assert_eq!(setup.row("good").0, "done");
    assert_eq!(broker.receipts("cm-bad"), 1);
}

#[test]
fn transient_rejection_is_retried_then_done_with_two_attempts() {
    let options = BrokerOptions {
        reject_transient: vec![("@flaky".into(), 1, "no connected peer for target".into())],
        ..BrokerOptions::default()
    };
    let broker = TestBroker::start(options);
    let setup = Setup::new(&broker.url(), "");
    setup.enqueue(&[routed("flaky", "@flaky")]);
    let out = setup.drain();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(setup.row("flaky"), ("done".into(), 2, None));
    assert_eq!(broker.receipts("cm-flaky"), 2);
    assert!(stdout(&out).contains("retried=1"), "{}", stdout(&out));
}

#[test]
fn unknown_mesh_is_dead_and_never_sent() {
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = Setup::new(&broker.url(), "");
    setup.enqueue(&[NewRow {
        mesh: Some("elsewhere".into()),
        ..routed("lost", "@peer")
    }]);
    assert!(setup.drain().status.success());
    assert_eq!(
        setup.row("lost"),
        (
            "dead".into(),
            1,
            Some("no_broker_for_mesh:elsewhere".into())
        )
    );
    assert_eq!(broker.stats().sends, 0);
}

#[test]
fn partly_routed_row_is_dead_malformed_and_never_broadcast() {
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = Setup::new(&broker.url(), "");
    setup.enqueue(&[NewRow {
        nonce: None,
        ..routed("half", "@bob")
    }]);
    assert!(setup.drain().status.success());
    assert_eq!(
        setup.row("half"),
        (
            "dead".into(),
            1,
            Some("malformed_row: missing nonce".into())
        )
    );
    assert_eq!(broker.stats().sends, 0);
}

#[test]
fn absent_session_row_is_retried_and_dead_session_gone_once_older_than_ten_minutes() {
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = Setup::new(&broker.url(), "");
    let session = "ab".repeat(32);
    let old = now_ms() - 11 * MINUTE_MS;
    setup.enqueue(&[
        NewRow {
            sender_session_pubkey: Some(session.clone()),
            ..routed("young", "@peer")
        },
        NewRow {
            sender_session_pubkey: Some(session),
            enqueued_at: old,
            next_attempt_at: old,
            ..routed("old", "@peer")
        },
    ]);
    let mut child = setup.spawn(&[]);
    wait_for(
        "the old session row to die",
        Duration::from_secs(20),
        || setup.row("old").0 == "dead",
    );
    wait_for(
        "the young session row to be retried",
        Duration::from_secs(20),
        || setup.row("young").1 >= 1 && setup.row("young").0 == "pending",
    );
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
    assert_eq!(
        setup.row("old"),
        ("dead".into(), 1, Some("session_gone".into()))
    );
    let (status, _, error) = setup.row("young");
    assert_eq!(
        (status.as_str(), error.as_deref()),
        ("pending", Some("session_ws_not_open"))
    );
    assert_eq!(
        broker.stats().sends,
        0,
        "a session row went out over the daemon link"
    );
}

#[test]
fn row_older_than_a_day_is_dead_expired() {
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = Setup::new(&broker.url(), "");
    let day_ago = now_ms() - 25 * 60 * MINUTE_MS;
    setup.enqueue(&[NewRow {
        enqueued_at: day_ago,
        next_attempt_at: day_ago,
        ..routed("stale", "@peer")
    }]);
    assert!(setup.drain().status.success());
    assert_eq!(setup.row("stale").0, "dead");
    assert_eq!(setup.row("stale").2.as_deref(), Some("expired"));
    assert_eq!(broker.stats().sends, 0);
}

#[test]
fn row_with_a_run_out_lease_is_reclaimed_and_delivered() {
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = Setup::new(&broker.url(), "");
    setup.enqueue(&[routed("orphan", "@peer")]);
    // A drainer claimed it and died: inflight, one attempt used, lease run out.
    let conn = rusqlite::Connection::open(&setup.outbox).unwrap();
    conn.execute("UPDATE outbox SET status = 'inflight', attempts = 1, next_attempt_at = ?1 WHERE id = 'orphan'", [now_ms() - 1]).unwrap();
    drop(conn);
    let out = setup.drain();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(setup.row("orphan"), ("done".into(), 2, None));
    assert!(stdout(&out).contains("reclaimed=1"), "{}", stdout(&out));
}

#[test]
fn old_schema_outbox_is_migrated_and_drained() {
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = Setup::new(&broker.url(), "");
    let conn = rusqlite::Connection::open(&setup.outbox).unwrap();
    conn.execute_batch(
        "CREATE TABLE outbox (id TEXT PRIMARY KEY, client_message_id TEXT NOT NULL UNIQUE, request_fingerprint BLOB NOT NULL,
           payload BLOB NOT NULL, enqueued_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL,
           status TEXT NOT NULL CHECK(status IN ('pending','inflight','done','dead','aborted')), last_error TEXT, delivered_at INTEGER,
           broker_message_id TEXT, aborted_at INTEGER, aborted_by TEXT, superseded_by TEXT);
         CREATE INDEX outbox_pending ON outbox(status, next_attempt_at);",
    )
    .unwrap();
    for i in 0..5 {
        conn.execute(
            "INSERT INTO outbox (id, client_message_id, request_fingerprint, payload, enqueued_at, next_attempt_at, status) VALUES (?1, ?2, x'01', 'old payload', ?3, ?3, 'pending')",
            rusqlite::params![format!("v09-{i}"), format!("cm-v09-{i}"), now_ms()],
        )
        .unwrap();
    }
    conn.execute("INSERT INTO outbox (id, client_message_id, request_fingerprint, payload, enqueued_at, next_attempt_at, status, last_error) VALUES ('gone', 'cm-gone', x'02', 'x', 1, 1, 'done', 'kept')", []).unwrap();
    drop(conn);

    let out = setup.drain();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status = 'done'"),
        6
    );
    assert_eq!(setup.row("gone").2.as_deref(), Some("kept"));
    assert_eq!(setup.sql::<i64>("SELECT COUNT(*) FROM pragma_table_info('outbox') WHERE name IN ('mesh','target_spec','nonce','ciphertext','priority','sender_session_pubkey')"), 6);
    assert_eq!(broker.stats().last_send["cm-v09-0"].target_spec, "*");
}

#[test]
fn garbage_and_unrelated_frames_do_not_break_the_link() {
    let broker = TestBroker::start(BrokerOptions {
        chatter: true,
        ..BrokerOptions::default()
    });
    let setup = Setup::new(&broker.url(), "");
    setup.enqueue(&many("chatty", 200));
    let out = setup.drain();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status = 'done' AND attempts = 1"),
        200
    );
}

#[test]
fn rows_enqueued_through_sluice_wake_the_drainer_at_once() {
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = Setup::new(&broker.url(), "");
    // A long poll interval: only the wake signal can explain a prompt delivery.
    let text = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("poll_interval_ms = 50", "poll_interval_ms = 600000");
    std::fs::write(&setup.config, text).unwrap();
    setup.enqueue(&[routed("first", "@peer")]);
    let mut child = setup.spawn(&[]);
    wait_for("the first row", Duration::from_secs(20), || {
        setup.row("first").0 == "done"
    });
    let out = sluice(&[
        "enqueue",
        "--config",
        path_str(&setup.config),
        "--id",
        "woken",
        "--payload",
        "hi",
        "--target-spec",
        "@peer",
        "--nonce",
        "bg==",
        "--ciphertext",
        "Yw==",
        "--mesh",
        MESH,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("woke 1 drainer"), "{}", stderr(&out));
    wait_for("the woken row", Duration::from_secs(20), || {
        setup.row("woken").0 == "done"
    });
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
}

#[test]
fn sigterm_finishes_the_tick_and_leaves_nothing_claimed() {
    let broker = TestBroker::start(BrokerOptions {
        ack_delay: Duration::from_millis(20),
        ..BrokerOptions::default()
    });
    let setup = Setup::new(&broker.url(), "");
    setup.enqueue(&many("busy", 3000));
    let mut child = setup.spawn(&[]);
    wait_for("some deliveries", Duration::from_secs(20), || {
        broker.stats().sends >= 100
    });
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
    assert_eq!(
        setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status = 'inflight'"),
        0
    );
    assert!(
        setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status = 'pending'") > 0,
        "finished before the signal: the test proves nothing"
    );
}

/// The number in `name=N` of the summary line.
fn summary_number(out: &std::process::Output, name: &str) -> u64 {
    let text = stdout(out);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {text}"))
}

/// By default the claim grows while the backlog is large: 5,000 rows take a
/// few dozen ticks, where 32 rows a tick would take over 150. `batch_rows`
/// set alone fixes the claim, and then it does take that many.
#[test]
fn the_default_claim_grows_with_the_backlog_and_batch_rows_fixes_it() {
    let broker = TestBroker::start(BrokerOptions::default());
    let adaptive = Setup::new(&broker.url(), "");
    adaptive.enqueue(&many("grow", 5_000));
    let out = adaptive.drain();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary_number(&out, "done"), 5_000);
    let ticks = summary_number(&out, "ticks");
    assert!(ticks <= 60, "the claim did not grow: {ticks} ticks");

    let fixed = Setup::new(&broker.url(), "[policy]\nbatch_rows = 32\n");
    fixed.enqueue(&many("fixed", 5_000));
    let out = fixed.drain();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary_number(&out, "done"), 5_000);
    let ticks = summary_number(&out, "ticks");
    assert!(
        ticks >= 5_000 / 32,
        "a fixed claim of 32 took only {ticks} ticks"
    );
}
