//! Daemon links losing and regaining their broker, over real sockets on
//! 127.0.0.1: drops, closes, refusals, dead ports, shutdown, noise.

use crate::common::*;
use crate::scripted::Scripted;
use sluice_contract::SendResult;
use sluice_links::{LinkKind, LinkState, Links};
use sluice_test_broker::BrokerOptions;
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
async fn dropped_connections_fail_waiting_sends_at_once_and_the_link_reconnects() {
    let slow = ("@slow".to_string(), Duration::from_secs(60));
    let broker = start_broker(BrokerOptions {
        ack_delays: vec![slow],
        ..BrokerOptions::default()
    })
    .await;
    let links = open_links(&broker).await;
    let sender = links.clone();
    let waiting = tokio::spawn(async move {
        sender
            .send_batch(dispatches("w", 50, "@slow"), Duration::from_secs(30))
            .await
    });
    assert!(
        eventually(|| broker.stats().sends == 50).await,
        "the broker never got the batch"
    );
    let dropped = Instant::now();
    broker.drop_connections();
    let results = waiting.await.expect("send task");
    assert!(
        dropped.elapsed() < Duration::from_secs(2),
        "waiting sends failed only after {:?}",
        dropped.elapsed()
    );
    assert!(
        results.iter().all(|r| *r == failed("link_closed")),
        "{results:?}"
    );
    assert!(
        eventually(|| broker.stats().hellos_accepted == 2).await,
        "the link did not reconnect"
    );
    assert!(links.wait_open(PATIENCE).await);
    let later = links
        .send_batch(dispatches("later", 10, "*"), ACK_TIMEOUT)
        .await;
    assert_eq!(accepted_ids(&later).len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_closing_mid_batch_fails_only_the_unanswered_sends() {
    let broker = start_broker(BrokerOptions {
        close_after_sends: Some(10),
        ..BrokerOptions::default()
    })
    .await;
    let links = open_links(&broker).await;
    let results = links
        .send_batch(dispatches("c", 20, "*"), ACK_TIMEOUT)
        .await;
    let accepted = results
        .iter()
        .filter(|r| matches!(r, SendResult::Accepted(_)))
        .count();
    let closed = results
        .iter()
        .filter(|r| **r == failed("link_closed"))
        .count();
    assert_eq!((accepted, closed), (9, 11), "{results:?}");
    assert!(
        results[..9]
            .iter()
            .all(|r| matches!(r, SendResult::Accepted(_)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chatter_from_the_broker_does_not_break_the_link() {
    let broker = start_broker(BrokerOptions {
        chatter: true,
        ..BrokerOptions::default()
    })
    .await;
    let links = open_links(&broker).await;
    for round in 0..3 {
        let results = links
            .send_batch(dispatches(&format!("r{round}"), 300, "*"), ACK_TIMEOUT)
            .await;
        assert_eq!(accepted_ids(&results).len(), 300);
    }
    assert_eq!(
        broker.stats().hellos_accepted,
        1,
        "the link reconnected: chatter broke it"
    );
    assert!(
        eventually(|| broker.stats().pongs > 0).await,
        "the link never answered the broker's pings"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_to_a_closed_port_stays_connecting_and_refuses_sends_at_once() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("ws://{}", unused.local_addr().expect("address"));
    drop(unused);
    let links = Links::start(vec![mesh("main", &url)], Vec::new(), link_options());
    assert!(!links.wait_open(Duration::from_millis(300)).await);
    assert_eq!(
        links.states(),
        vec![("main".to_string(), LinkState::Connecting)]
    );
    let started = Instant::now();
    let results = links.send_batch(dispatches("x", 3, "*"), ACK_TIMEOUT).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "send_batch waited {:?}",
        started.elapsed()
    );
    assert_eq!(results, vec![failed("link_not_open"); 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_hello_keeps_the_link_connecting_and_it_tries_again() {
    let stranger = sluice_links::MemberKey::from_seed([1; 32]).public_hex();
    let members = vec![sluice_test_broker::Member {
        mesh_id: MESH_ID.into(),
        member_id: None,
        public_key: stranger,
    }];
    let broker = start_broker(BrokerOptions {
        members: Some(members),
        ..BrokerOptions::default()
    })
    .await;
    let links = Links::start(
        vec![mesh("main", &broker.url())],
        Vec::new(),
        link_options(),
    );
    assert!(
        eventually(|| broker.stats().hellos_rejected >= 3).await,
        "the link gave up after a refusal"
    );
    // The broker counts a refusal as it sends it; the link counts it once it
    // has read it, a moment later.
    assert!(
        eventually(|| links.reports()[0].failures >= 3).await,
        "{:?}",
        links.reports()
    );
    assert_eq!(links.states()[0].1, LinkState::Connecting);
    assert_eq!(broker.stats().hellos_accepted, 0);
    let report = links.reports().remove(0);
    let error = report.last_error.expect("the refusal is kept");
    assert!(
        error.contains("unauthorized") && error.contains("not a member of this mesh"),
        "{error}"
    );
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_hello_is_reported_with_the_brokers_code_message_and_what_to_do() {
    let server = Scripted::start(crate::scripted::refusing(
        "bad_signature",
        "hello rejected: bad_signature",
    ))
    .await;
    let links = Links::start(
        vec![mesh("main", &server.url())],
        Vec::new(),
        link_options(),
    );
    assert!(
        eventually(|| links.reports()[0].failures >= 2).await,
        "{:?}",
        links.reports()
    );
    let report = links.reports().remove(0);
    assert_eq!(
        (report.kind, report.mesh.as_str(), report.state),
        (LinkKind::Daemon, "main", LinkState::Connecting)
    );
    assert_eq!(report.url, server.url());
    assert_eq!(report.session_pubkey, None);
    let error = report.last_error.expect("the refusal is kept");
    for part in [
        "bad_signature",
        "hello rejected: bad_signature",
        "check public_key/secret_key and mesh_id/member_id",
    ] {
        assert!(error.contains(part), "{part:?} missing from {error}");
    }
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_reports_when_it_entered_its_state_and_clears_the_error_once_open() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = unused.local_addr().expect("address");
    drop(unused);
    let links = Links::start(
        vec![mesh("main", &format!("ws://{address}"))],
        Vec::new(),
        link_options(),
    );
    assert!(eventually(|| links.reports()[0].failures >= 2).await);
    let down = links.reports().remove(0);
    assert!(
        down.last_error
            .as_deref()
            .is_some_and(|e| e.contains("connecting to")),
        "{down:?}"
    );
    let mut changes = links.changes();
    changes.borrow_and_update();
    // A broker appears on that port: the link opens and forgets the error.
    let broker = sluice_test_broker::Broker::start(address, BrokerOptions::default())
        .await
        .expect("the port is free again");
    assert!(links.wait_open(PATIENCE).await, "{:?}", links.reports());
    // The status is published first, then the change: wait for the bump.
    assert!(
        tokio::time::timeout(PATIENCE, changes.changed())
            .await
            .is_ok(),
        "opening bumped no change"
    );
    let open = links.reports().remove(0);
    assert!(open.since_ms >= down.since_ms, "{open:?} {down:?}");
    assert_eq!(
        (open.state, open.last_error, open.failures),
        (LinkState::Open, None, 0)
    );
    changes.borrow_and_update();
    broker.drop_connections();
    assert!(
        tokio::time::timeout(PATIENCE, changes.changed())
            .await
            .is_ok(),
        "losing the link bumped no change"
    );
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_fails_waiting_sends_and_closes_every_link() {
    let broker = start_broker(BrokerOptions {
        ack_delay: Duration::from_secs(60),
        ..BrokerOptions::default()
    })
    .await;
    let links = open_links(&broker).await;
    let sender = links.clone();
    let waiting = tokio::spawn(async move {
        sender
            .send_batch(dispatches("s", 5, "*"), Duration::from_secs(30))
            .await
    });
    assert!(eventually(|| broker.stats().sends == 5).await);
    links.shutdown().await;
    assert_eq!(
        waiting.await.expect("send task"),
        vec![failed("link_closed"); 5]
    );
    assert_eq!(links.states()[0].1, LinkState::Closed);
    assert_eq!(
        links.send_batch(dispatches("t", 2, "*"), ACK_TIMEOUT).await,
        vec![failed("link_not_open"); 2]
    );
    links.shutdown().await;
}
