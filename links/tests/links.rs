//! Sending over daemon links against the test broker, over real sockets on
//! 127.0.0.1: pipelining, matching acks, rejections, timeouts, routing.

use crate::common::*;
use sluice_contract::{Dispatch, Route, SendResult};
use sluice_links::Links;
use sluice_test_broker::BrokerOptions;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;

const ACK_TIMEOUT: Duration = Duration::from_secs(10);

fn accepted_ids(results: &[SendResult]) -> Vec<String> {
    results
        .iter()
        .map(|result| match result {
            SendResult::Accepted(id) => id.clone(),
            other => panic!("expected every send accepted, got {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_500_is_accepted_pipelined_and_received_once() {
    let ack_delay = Duration::from_millis(100);
    let broker = start_broker(BrokerOptions {
        ack_delay,
        ..BrokerOptions::default()
    })
    .await;
    let links = open_links(&broker).await;
    let started = Instant::now();
    let results = links
        .send_batch(dispatches("row", 500, "*"), ACK_TIMEOUT)
        .await;
    let elapsed = started.elapsed();
    let ids = accepted_ids(&results);
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        500,
        "every send got its own message id"
    );
    let stats = broker.stats();
    assert_eq!(stats.receipts.len(), 500);
    assert!(
        stats.receipts.values().all(|&times| times == 1),
        "a send went out twice"
    );
    assert_eq!(stats.hellos_accepted, 1);
    // One ack round trip per row would take 500 x 100 ms.
    assert!(
        elapsed < Duration::from_secs(3),
        "batch took {elapsed:?}: not pipelined"
    );
    assert!(
        stats.max_unacked >= 250,
        "at most {} sends were outstanding: not pipelined",
        stats.max_unacked
    );
    let sent = &stats.last_send["row-7"];
    assert_eq!(
        (
            sent.target_spec.as_str(),
            sent.nonce.as_str(),
            sent.ciphertext.as_str()
        ),
        ("*", "nonce-row-7", "cipher-row-7")
    );
    assert_eq!(
        (
            sent.id.as_str(),
            sent.request_fingerprint.as_str(),
            sent.priority.as_str()
        ),
        ("row-7", "00ff", "next")
    );
    assert_eq!(
        (sent.peer.mesh_id.as_str(), sent.peer.pubkey.clone()),
        (MESH_ID, member_key().public_hex())
    );
}

/// Regression: the broker once read the frame after a full read burst and
/// dropped it, so batches over 512 sends lost one ack per burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_far_larger_than_a_read_burst_loses_no_frame() {
    let broker = start_broker(BrokerOptions::default()).await;
    let links = open_links(&broker).await;
    for round in 0..3 {
        let results = links
            .send_batch(
                dispatches(&format!("big{round}"), 4000, "*"),
                Duration::from_secs(5),
            )
            .await;
        assert_eq!(accepted_ids(&results).len(), 4000);
    }
    assert_eq!(broker.stats().sends, 12_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_out_of_order_are_matched_by_id() {
    let slow = ("@slow".to_string(), Duration::from_millis(300));
    let broker = start_broker(BrokerOptions {
        ack_delays: vec![slow],
        ..BrokerOptions::default()
    })
    .await;
    let links = open_links(&broker).await;
    let batch: Vec<Dispatch> = (0..40)
        .map(|i| {
            dispatch(
                "main",
                &format!("m-{i}"),
                if i % 2 == 0 { "@slow" } else { "@fast" },
            )
        })
        .collect();
    let cmids: Vec<String> = batch.iter().map(|d| d.client_message_id.clone()).collect();
    let results = links.send_batch(batch, ACK_TIMEOUT).await;
    let stats = broker.stats();
    for (cmid, result) in cmids.iter().zip(&results) {
        assert_eq!(
            result,
            &SendResult::Accepted(stats.message_ids[cmid].clone()),
            "{cmid} got another send's ack"
        );
    }
    // The broker numbers messages in arrival order: the even (slow) sends
    // came first but were acked last, so position matching would fail.
    assert_eq!(stats.message_ids["m-0"], "msg_1");
    assert_eq!(stats.message_ids["m-1"], "msg_2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_come_back_with_the_brokers_text() {
    let broker = start_broker(BrokerOptions {
        reject_permanent: vec![("@blocked".into(), "blocked by recipient grants".into())],
        reject_transient: vec![("@flaky".into(), 1, "rate_limited: burst 10".into())],
        ..BrokerOptions::default()
    })
    .await;
    let links = open_links(&broker).await;
    let batch = vec![
        dispatch("main", "a", "@blocked"),
        dispatch("main", "b", "@flaky"),
        dispatch("main", "c", "*"),
    ];
    let results = links.send_batch(batch, ACK_TIMEOUT).await;
    assert_eq!(
        results[0],
        SendResult::Rejected("blocked by recipient grants".into())
    );
    assert_eq!(
        results[1],
        SendResult::Rejected("rate_limited: burst 10".into())
    );
    assert!(matches!(&results[2], SendResult::Accepted(id) if id.starts_with("msg_")));
    let retry = links
        .send_batch(vec![dispatch("main", "b", "@flaky")], ACK_TIMEOUT)
        .await;
    assert!(
        matches!(&retry[0], SendResult::Accepted(_)),
        "the second try of a transient rejection is accepted: {retry:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacked_send_times_out_while_the_rest_of_its_batch_succeeds() {
    let broker = start_broker(BrokerOptions {
        silent_targets: vec!["@void".into()],
        ..BrokerOptions::default()
    })
    .await;
    let links = open_links(&broker).await;
    let mut batch = dispatches("ok", 20, "*");
    batch.insert(5, dispatch("main", "lost", "@void"));
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let results = links.send_batch(batch, timeout).await;
    let elapsed = started.elapsed();
    assert_eq!(results[5], failed("ack_timeout"));
    let others: Vec<SendResult> = results
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 5)
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(accepted_ids(&others).len(), 20);
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(1),
        "answered after {elapsed:?}"
    );
    // The link survives a timeout.
    let again = links
        .send_batch(dispatches("after", 3, "*"), ACK_TIMEOUT)
        .await;
    assert_eq!(accepted_ids(&again).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_twice_in_flight_fails_the_second_as_duplicate() {
    let broker = start_broker(BrokerOptions::default()).await;
    let links = open_links(&broker).await;
    let batch = vec![
        dispatch("main", "same", "*"),
        dispatch("main", "other", "*"),
        dispatch("main", "same", "*"),
    ];
    let results = links.send_batch(batch, ACK_TIMEOUT).await;
    assert!(matches!(&results[0], SendResult::Accepted(_)));
    assert!(matches!(&results[1], SendResult::Accepted(_)));
    assert_eq!(results[2], failed("duplicate_in_flight"));
    assert_eq!(broker.stats().receipts["same"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_meshes_and_session_routes_fail_without_touching_the_link() {
    let broker = start_broker(BrokerOptions::default()).await;
    let links = open_links(&broker).await;
    let mut session = dispatch("main", "s", "*");
    session.route = Route::Session("ab".repeat(32));
    let batch = vec![
        dispatch("nowhere", "u", "*"),
        session,
        dispatch("main", "ok", "*"),
    ];
    let results = links.send_batch(batch, ACK_TIMEOUT).await;
    assert_eq!(results[0], failed("link_not_open: unknown mesh nowhere"));
    assert_eq!(results[1], failed("link_not_open: no session link"));
    assert!(matches!(&results[2], SendResult::Accepted(_)));
    assert_eq!(broker.stats().sends, 1);
    assert_eq!(
        links.session_states(&["ab".repeat(32)]),
        vec![sluice_contract::SessionState::Absent]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_meshes_send_in_parallel_and_results_keep_dispatch_order() {
    let delay = Duration::from_millis(200);
    let first = start_broker(BrokerOptions {
        ack_delay: delay,
        ..BrokerOptions::default()
    })
    .await;
    let second = start_broker(BrokerOptions {
        ack_delay: delay,
        ..BrokerOptions::default()
    })
    .await;
    let links = Links::start(
        vec![mesh("one", &first.url()), mesh("two", &second.url())],
        Vec::new(),
        link_options(),
    );
    assert!(links.wait_open(PATIENCE).await);
    assert_eq!(links.meshes(), vec!["one".to_string(), "two".to_string()]);
    let batch: Vec<Dispatch> = (0..10)
        .map(|i| {
            dispatch(
                if i % 2 == 0 { "one" } else { "two" },
                &format!("d-{i}"),
                "*",
            )
        })
        .collect();
    let started = Instant::now();
    let results = links.send_batch(batch, ACK_TIMEOUT).await;
    assert!(
        started.elapsed() < delay * 2,
        "meshes were sent one after the other: {:?}",
        started.elapsed()
    );
    let (one, two) = (first.stats(), second.stats());
    for (i, result) in results.iter().enumerate() {
        let cmid = format!("d-{i}");
        let stats = if i % 2 == 0 { &one } else { &two };
        assert_eq!(
            result,
            &SendResult::Accepted(stats.message_ids[&cmid].clone())
        );
    }
    assert_eq!((one.sends, two.sends), (5, 5));
}
