//! Several drainers and crashes: at-least-once without needless re-sends.

use crate::common::*;
use sluice_test_broker::BrokerOptions;
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn two_drainers_on_one_file_never_send_a_row_twice() {
    let broker = TestBroker::start(BrokerOptions {
        ack_delay: Duration::from_millis(1),
        ..BrokerOptions::default()
    });
    let setup = Setup::new(&broker.url(), "[policy]\nbatch_rows = 64\n");
    setup.enqueue(&many("shared", 6000));
    let first = setup.spawn(&["--exit-when-drained"]);
    let second = setup.spawn(&["--exit-when-drained"]);
    let (a, b) = (
        wait_output(first, Duration::from_secs(120)),
        wait_output(second, Duration::from_secs(120)),
    );
    assert!(
        a.status.success() && b.status.success(),
        "{}\n{}",
        stderr(&a),
        stderr(&b)
    );
    let done = |out: &std::process::Output| -> u64 {
        let text = stdout(out);
        let field = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("done="))
            .unwrap();
        field.parse().unwrap()
    };
    assert_eq!(done(&a) + done(&b), 6000);
    assert!(
        done(&a) > 0 && done(&b) > 0,
        "one drainer did all the work: the test proves nothing"
    );
    let stats = broker.stats();
    assert_eq!(stats.receipts.len(), 6000);
    let twice: Vec<_> = stats.receipts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
}

#[test]
fn killed_drainer_loses_nothing_and_resends_only_rows_inflight_at_the_kill() {
    let broker = TestBroker::start(BrokerOptions {
        ack_delay: Duration::from_millis(2),
        ..BrokerOptions::default()
    });
    // Short ack timeout and lease so the restarted drainer reclaims quickly.
    let setup = Setup::new(
        &broker.url(),
        "[policy]\nbatch_rows = 256\nack_timeout_ms = 1000\nlease_ms = 1500\n",
    );
    setup.enqueue(&many("crash", 20_000));
    let mut child = setup.spawn(&[]);
    wait_for("a fifth of the rows", Duration::from_secs(60), || {
        broker.stats().sends >= 4000
    });
    // Freeze the drainer, and kill it only in a moment when it holds claimed
    // rows: the frozen state is exactly the state the kill leaves behind.
    let mut inflight: BTreeSet<String> = BTreeSet::new();
    for _ in 0..200 {
        signal(&child, "STOP");
        let conn = rusqlite::Connection::open(&setup.outbox).unwrap();
        let mut stmt = conn
            .prepare("SELECT client_message_id FROM outbox WHERE status = 'inflight'")
            .unwrap();
        inflight = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        if !inflight.is_empty() {
            break;
        }
        signal(&child, "CONT");
        std::thread::sleep(Duration::from_millis(3));
    }
    signal(&child, "KILL");
    let _ = child.wait();
    assert!(
        !inflight.is_empty(),
        "never caught the drainer holding rows: the test proves nothing"
    );
    let pending_at_kill = setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status = 'pending'");
    assert!(pending_at_kill > 0, "everything was sent before the kill");

    let out = setup.drain();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status = 'done'"),
        20_000
    );
    let stats = broker.stats();
    assert_eq!(stats.receipts.len(), 20_000, "a row was never sent");
    for (cmid, count) in &stats.receipts {
        if *count > 1 {
            assert!(
                inflight.contains(cmid),
                "{cmid} was sent {count} times but was not inflight at the kill"
            );
        }
    }
}
