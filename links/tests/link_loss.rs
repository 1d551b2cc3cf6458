//! Daemon links losing and regaining their broker, over real sockets on
//! 127.0.0.1: drops, closes, refusals, dead ports, shutdown, noise.

mod common;

use common::*;
use sluice_links::{BrokerOptions, LinkState, Links};
use sluice_policy::SendResult;
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
    let links = Links::start(vec![mesh("main", &url)], link_options());
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
    let members = vec![sluice_links::Member {
        mesh_id: MESH_ID.into(),
        member_id: None,
        public_key: stranger,
    }];
    let broker = start_broker(BrokerOptions {
        members: Some(members),
        ..BrokerOptions::default()
    })
    .await;
    let links = Links::start(vec![mesh("main", &broker.url())], link_options());
    assert!(
        eventually(|| broker.stats().hellos_rejected >= 3).await,
        "the link gave up after a refusal"
    );
    assert_eq!(links.states()[0].1, LinkState::Connecting);
    assert_eq!(broker.stats().hellos_accepted, 0);
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
