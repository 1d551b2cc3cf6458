//! The `sluice` binary against the test broker behaving like the real one:
//! session links, pacing within the member's budget, broker faults, session
//! changes while running, and wss:// with a private certificate.

// Test code fails loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use sluice::links::MemberKey;
use sluice::store::NewRow;
use sluice_test_broker::{BrokerOptions, RateLimit};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// (id → (status, attempts)) of every row.
fn rows(setup: &Setup) -> BTreeMap<String, (String, u32)> {
    let conn = rusqlite::Connection::open(&setup.outbox).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, status, attempts FROM outbox")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The broker's bucket allows 10 at once and then 10 a second: 300 rows need
/// 290/10 = 29 s at best. The drain stays inside the budget instead of
/// spending attempts against it: every row done, almost no refusals, and
/// close to the bucket's own bound (the target: within 1.2x).
#[test]
fn three_hundred_rows_half_over_a_session_go_out_at_the_brokers_pace() {
    let broker = TestBroker::start(BrokerOptions {
        rate_limit: Some(RateLimit {
            per_minute: 600,
            burst: 10,
        }),
        ..BrokerOptions::default()
    });
    let (session, table) = session_toml(21);
    let setup = Setup::with_mesh(
        &broker.url(),
        "rate_limit_per_minute = 600\nrate_limit_burst = 10\n",
        &table,
    );
    let mut batch = Vec::new();
    for i in 0..150 {
        batch.push(routed(&format!("daemon-{i:03}"), "@peer"));
        batch.push(session_row(&format!("session-{i:03}"), &session));
    }
    setup.enqueue(&batch);
    let started = Instant::now();
    let out = wait_output(
        setup.spawn(&["--exit-when-drained"]),
        Duration::from_secs(120),
    );
    let elapsed = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = rows(&setup);
    assert!(
        rows.values().all(|(status, _)| status == "done"),
        "{rows:?}"
    );
    let stats = broker.stats();
    assert!(
        stats.rate_limited * 20 < stats.sends,
        "{} of {} sends refused for the rate",
        stats.rate_limited,
        stats.sends
    );
    for (id, frame) in &stats.last_send {
        let over_session = frame.peer.parent_pubkey.is_some();
        assert_eq!(
            id.starts_with("cm-session-"),
            over_session,
            "{id} went over the wrong link"
        );
    }
    assert!(
        elapsed <= Duration::from_secs_f64(29.0 * 1.2),
        "took {elapsed:?}; the bucket allows 29 s"
    );
}

/// 20,000 rows, a tenth over a session link; the broker drops a tenth of its
/// acks and closes every socket after 500 frames. Every row ends done, none
/// is sent more often than its attempts, and session rows only ever go over
/// their session's link.
#[test]
fn twenty_thousand_rows_survive_dropped_acks_and_closed_sockets() {
    let broker = TestBroker::start(BrokerOptions {
        drop_acks: 0.1,
        close_after_frames: Some(500),
        seed: 6,
        ..BrokerOptions::default()
    });
    let (session, table) = session_toml(22);
    let setup = Setup::new(
        &broker.url(),
        &format!(
            "{table}\n[policy]\nbatch_rows = 256\nack_timeout_ms = 300\nlease_ms = 5000\nbackoff_base_ms = 10\nbackoff_cap_ms = 200\n"
        ),
    );
    let batch: Vec<NewRow> = (0..20_000)
        .map(|i| {
            if i % 10 == 0 {
                session_row(&format!("session-{i:05}"), &session)
            } else {
                routed(&format!("daemon-{i:05}"), "@peer")
            }
        })
        .collect();
    setup.enqueue(&batch);
    let out = wait_output(
        setup.spawn(&["--exit-when-drained"]),
        Duration::from_secs(300),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = rows(&setup);
    assert_eq!(rows.len(), 20_000);
    let stats = broker.stats();
    assert!(stats.acks_dropped > 0, "the fault never struck");
    for (id, (status, attempts)) in &rows {
        assert_eq!(status, "done", "{id}");
        let sent = stats
            .receipts
            .get(&format!("cm-{id}"))
            .copied()
            .unwrap_or(0);
        assert!(
            sent >= 1 && sent <= *attempts,
            "{id} sent {sent} times in {attempts} attempts"
        );
        let frame = &stats.last_send[&format!("cm-{id}")];
        assert_eq!(
            frame.peer.parent_pubkey.is_some(),
            id.starts_with("session-"),
            "{id} went over the wrong link"
        );
    }
    assert!(
        stats.hellos_accepted > 10,
        "the sockets were closed and opened again: {} hellos",
        stats.hellos_accepted
    );
}

/// A session removed while the drain runs reads "absent" to the policy; one
/// added starts its link; neither needs a restart.
#[test]
fn sessions_added_and_removed_while_running_take_effect_without_a_restart() {
    let broker = TestBroker::start(BrokerOptions::default());
    let (first, first_table) = session_toml(31);
    let setup = Setup::new(&broker.url(), &first_table);
    setup.enqueue(&[session_row("before", &first)]);
    let child = setup.spawn(&[]);
    wait_for("the first session's row", Duration::from_secs(20), || {
        setup.row("before").0 == "done"
    });

    let removed = sluice(&[
        "session",
        "remove",
        "--config",
        path_str(&setup.config),
        &first,
    ]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(
        stdout(&removed).contains("told 1 running drainer"),
        "{}",
        stdout(&removed)
    );
    let second = MemberKey::from_seed([32; 32]);
    let second_public = second.public_hex();
    let added = sluice(&[
        "session",
        "add",
        "--config",
        path_str(&setup.config),
        "--mesh",
        MESH,
        "--session-id",
        "session-32",
        "--public-key",
        &second_public,
        "--secret-key",
        &format!("{}{second_public}", hex::encode([32u8; 32])),
    ]);
    assert!(added.status.success(), "{}", stderr(&added));
    setup.enqueue(&[session_row("added", &second_public)]);
    wait_for("the added session's row", Duration::from_secs(20), || {
        setup.row("added").0 == "done"
    });
    // The removed session's row waits as "absent" (it would die as
    // session_gone once old): it is not sent over any link.
    setup.enqueue(&[session_row("after-removal", &first)]);
    std::thread::sleep(Duration::from_millis(1500));
    let (status, _, error) = setup.row("after-removal");
    assert_eq!(status, "pending");
    assert_eq!(error.as_deref(), Some("session_ws_not_open"));
    assert_eq!(broker.receipts("cm-after-removal"), 0);
    signal(&child, "TERM");
    let out = wait_output(child, Duration::from_secs(20));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        broker.stats().last_send["cm-added"].peer.pubkey == second_public,
        "the added session's row went over its own link"
    );
}

/// wss:// to a broker with a certificate made in the test: trusted through
/// the mesh's `ca_file`, refused without it (and `sluice status` says why).
#[test]
fn wss_with_a_private_certificate_needs_the_ca_file() {
    let (cert, key) = sluice_test_broker::self_signed_localhost();
    let broker = TestBroker::start_tls(BrokerOptions::default(), &cert, &key);
    let url = broker.url();
    assert!(url.starts_with("wss://localhost:"), "{url}");
    let setup = Setup::with_mesh(
        &url,
        "rate_limit_per_minute = 0\nca_file = \"ca.pem\"\n",
        "",
    );
    std::fs::write(setup.dir.path().join("ca.pem"), &cert).unwrap();
    setup.enqueue(&many("tls", 20));
    let out = setup.drain();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status = 'done'"),
        20
    );

    let untrusting = Setup::with_mesh(&url, "rate_limit_per_minute = 0\n", "");
    untrusting.enqueue(&many("untrusted", 1));
    let child = untrusting.spawn(&[]);
    wait_for(
        "the refused link in sluice status",
        Duration::from_secs(20),
        || {
            let status = sluice(&["status", "--config", path_str(&untrusting.config)]);
            stdout(&status).contains("ca_file")
        },
    );
    assert_eq!(untrusting.row("untrusted-000000").0, "pending");
    signal(&child, "TERM");
    assert!(wait_output(child, Duration::from_secs(20)).status.success());
}

/// A private broker that rotates its self-signed certificate, as the test
/// broker's `--tls-self-signed DIR` does at each start: it comes back on the
/// same port with a new certificate written to the drainer's `ca_file`. The
/// drainer, never restarted, reads the file again when it reconnects and
/// every row ends done.
#[test]
fn a_broker_back_on_a_new_certificate_is_drained_to_without_a_restart() {
    let (cert, key) = sluice_test_broker::self_signed_localhost();
    let broker = TestBroker::start_tls(BrokerOptions::default(), &cert, &key);
    let address = broker.local_addr();
    let setup = Setup::with_mesh(
        &broker.url(),
        "rate_limit_per_minute = 0\nca_file = \"ca.pem\"\n",
        "",
    );
    let ca_file = setup.dir.path().join("ca.pem");
    std::fs::write(&ca_file, &cert).unwrap();
    setup.enqueue(&many("before", 10));
    let child = KillOnDrop::new(setup.spawn(&[]));
    let done = || setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status = 'done'");
    wait_for(
        "the rows before the restart",
        Duration::from_secs(20),
        || done() == 10,
    );

    drop(broker);
    let (new_cert, new_key) = sluice_test_broker::self_signed_localhost();
    std::fs::write(&ca_file, &new_cert).unwrap();
    let broker = TestBroker::start_tls_at(address, BrokerOptions::default(), &new_cert, &new_key);
    setup.enqueue(&many("after", 10));
    wait_for(
        "the rows after the restart",
        Duration::from_secs(30),
        || done() == 20,
    );
    assert_eq!(broker.stats().hellos_accepted, 1);
    let child = child.take();
    signal(&child, "TERM");
    assert!(wait_output(child, Duration::from_secs(20)).status.success());
}

/// A member configured as unlimited (`rate_limit_per_minute = 0`) on a
/// broker that limits it: each refusal pauses the member's sends for a
/// second, so in three seconds the broker sees a few claims' worth of
/// refusals (about 150 here), not every one of the 2,000 due rows sent and
/// refused once a second (over 5,000). The log says once what to set.
#[test]
fn a_member_the_config_calls_unlimited_pauses_after_a_rate_refusal() {
    let broker = TestBroker::start(BrokerOptions {
        rate_limit: Some(RateLimit {
            per_minute: 60,
            burst: 10,
        }),
        ..BrokerOptions::default()
    });
    let setup = Setup::new(&broker.url(), "");
    setup.enqueue(&many("unpaced", 2_000));
    let child = setup.spawn(&[]);
    std::thread::sleep(Duration::from_secs(3));
    signal(&child, "TERM");
    let out = wait_output(child, Duration::from_secs(30));
    let stats = broker.stats();
    assert!(stats.accepted >= 10, "{stats:?}");
    assert!(
        stats.rate_limited <= 1_000,
        "{} sends refused for rate in 3 s: the drain did not pause",
        stats.rate_limited
    );
    let warnings = stderr(&out)
        .lines()
        .filter(|l| l.contains("rate_limit_per_minute = 0 (no limit)"))
        .count();
    assert_eq!(warnings, 1, "{}", stderr(&out));
}
