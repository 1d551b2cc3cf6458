//! The host's guard, end to end: each lie of the faulty policy, swapped in
//! live into a running drainer, reaches the broker with nothing forbidden,
//! leaves no row done without an ack, is named in the log, in `sluice
//! status` and in the metrics, and is rolled back to the default.
//!
//! A module of the `swap` test binary: the guard's consequence is a
//! rollback.

use super::load;
use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sluice::store::NewRow;
use sluice_test_broker::BrokerOptions;
use std::time::{Duration, Instant};

/// A row with a ciphertext of its own (so a swapped one shows), over the
/// session `session` when given.
fn row(id: &str, session: Option<&str>) -> NewRow {
    NewRow {
        ciphertext: Some(BASE64.encode(format!("ciphertext of {id}"))),
        nonce: Some(BASE64.encode(format!("nonce of {id}"))),
        sender_session_pubkey: session.map(str::to_string),
        ..routed(id, &format!("@peer-{id}"))
    }
}

/// One outbox row as the checks need it.
#[derive(Debug)]
struct Stored {
    id: String,
    client_message_id: String,
    status: String,
    broker_message_id: Option<String>,
    session: Option<String>,
    target_spec: String,
    nonce: String,
    ciphertext: String,
}

fn stored(setup: &Setup) -> Vec<Stored> {
    let conn = rusqlite::Connection::open(&setup.outbox).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT id, client_message_id, status, broker_message_id, sender_session_pubkey,
                    target_spec, nonce, ciphertext FROM outbox ORDER BY rowid",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(Stored {
            id: r.get(0)?,
            client_message_id: r.get(1)?,
            status: r.get(2)?,
            broker_message_id: r.get(3)?,
            session: r.get(4)?,
            target_spec: r.get(5)?,
            nonce: r.get(6)?,
            ciphertext: r.get(7)?,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Swaps the faulty policy with `fault` into a running drainer fed a row
/// over the daemon link and one over a session every 200 ms, and checks
/// what the guard must guarantee; `rule` is the rule the fault breaks.
fn lie_is_refused_and_rolled_back(fault: &str, rule: &str) {
    let broker = TestBroker::start(BrokerOptions::default());
    let (session, table) = session_toml(41);
    let setup = Setup::new(
        &broker.url(),
        &format!("[policy]\nlease_ms = 1500\nack_timeout_ms = 500\n\n{table}"),
    );
    let metrics = free_address();
    let child = KillOnDrop::new(setup.spawn(&["--metrics", &metrics]));
    // The default proves itself first: it is what the rollback returns to.
    let first: Vec<NewRow> = (0..4)
        .flat_map(|i| {
            [
                row(&format!("warm-d{i}"), None),
                row(&format!("warm-s{i}"), Some(&session)),
            ]
        })
        .collect();
    setup.enqueue(&first);
    let done = || setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status = 'done'");
    wait_for("the default's rows", Duration::from_secs(30), || {
        done() == 8
    });

    let faulty = std::path::Path::new(sluice::bundled::FAULTY_POLICY_FILE);
    let setting = format!("fault={fault}");
    let loaded = load(&setup, faulty, &["--setting", &setting]);
    assert!(loaded.status.success(), "{}", stderr(&loaded));
    let status = || stdout(&sluice(&["status", "--config", path_str(&setup.config)]));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut fed = 0;
    while !status().contains("rollback") {
        assert!(
            Instant::now() < deadline,
            "{fault}: no rollback within 60 s:\n{}",
            status()
        );
        setup.enqueue(&[
            row(&format!("lie-d{fed}"), None),
            row(&format!("lie-s{fed}"), Some(&session)),
        ]);
        fed += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let total = 8 + 2 * fed;
    // The rows the guard kept back come home through their lease.
    wait_for("every row done", Duration::from_secs(30), || {
        done() == total
    });

    // Nothing forbidden reached the broker: each row once, over its own
    // link, with its own content; and done only with the broker's own id.
    let stats = broker.stats();
    let rows = stored(&setup);
    assert_eq!(rows.len() as i64, total);
    for r in &rows {
        let cmid = &r.client_message_id;
        assert_eq!(r.status, "done", "{fault}: {r:?}");
        assert_eq!(
            stats.receipts.get(cmid),
            Some(&1),
            "{fault}: {r:?} sent once"
        );
        let frame = &stats.last_send[cmid];
        match &r.session {
            Some(key) => {
                assert!(frame.peer.is_session(), "{fault}: {} over the daemon", r.id);
                assert_eq!(&frame.peer.pubkey, key, "{fault}: {}", r.id);
            }
            None => assert!(!frame.peer.is_session(), "{fault}: {}", r.id),
        }
        assert_eq!(frame.target_spec, r.target_spec, "{fault}: {}", r.id);
        assert_eq!(frame.nonce, r.nonce, "{fault}: {}", r.id);
        assert_eq!(frame.ciphertext, r.ciphertext, "{fault}: {}", r.id);
        assert_eq!(
            r.broker_message_id.as_ref(),
            stats.message_ids.get(cmid),
            "{fault}: {} done without the broker's ack",
            r.id
        );
    }
    assert_eq!(
        stats.receipts.len(),
        rows.len(),
        "{fault}: the broker got a message no row holds"
    );

    let shown = status();
    assert!(shown.contains("policy: sluice-default"), "{shown}");
    assert!(
        shown.contains(rule),
        "{fault}: status lacks {rule}:\n{shown}"
    );
    assert!(shown.contains("broke the host's rules"), "{shown}");
    let (_, body) = get(&metrics, "/metrics").unwrap();
    let counted = body.lines().any(|line| {
        line.starts_with("sluice_policy_violations_total")
            && line.contains(&format!("rule=\"{rule}\""))
            && line.contains("sluice-faulty")
    });
    assert!(counted, "{fault}: no {rule} in the metrics:\n{body}");
    signal(child.child(), "TERM");
    let out = wait_output(child.take(), Duration::from_secs(30));
    let log = stderr(&out);
    assert!(
        log.contains(&format!("policy_violation rule={rule}")),
        "{fault}: the log does not name {rule}:\n{log}"
    );
    assert!(log.contains("policy_rolled_back"), "{log}");
}

#[test]
fn a_session_row_sent_over_the_daemon_link_is_refused_and_rolled_back() {
    lie_is_refused_and_rolled_back("session_over_daemon", "session_row_never_over_daemon");
}

#[test]
fn done_for_a_row_never_sent_is_refused_and_rolled_back() {
    lie_is_refused_and_rolled_back("done_without_send", "done_only_after_accept");
}

#[test]
fn a_direct_message_broadcast_is_refused_and_rolled_back() {
    lie_is_refused_and_rolled_back("broadcast_direct", "content_matches_row");
}

#[test]
fn another_rows_ciphertext_is_refused_and_rolled_back() {
    lie_is_refused_and_rolled_back("tamper_ciphertext", "content_matches_row");
}

#[test]
fn a_row_never_claimed_is_refused_and_rolled_back() {
    lie_is_refused_and_rolled_back("foreign_rowid", "only_claimed_rows_dispatched");
}

#[test]
fn a_second_send_of_a_row_is_refused_and_rolled_back() {
    lie_is_refused_and_rolled_back("double_send", "one_dispatch_per_row");
}
