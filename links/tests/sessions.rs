//! Session links against the test broker, over real sockets on 127.0.0.1:
//! opening, sending as the session, states, adding and removing sessions,
//! losing the link.

use crate::common::*;
use crate::scripted::Scripted;
use sluice_contract::{SendResult, SessionState};
use sluice_links::{LinkKind, LinkState, Links};
use sluice_test_broker::BrokerOptions;
use std::time::Duration;
use tokio::time::Instant;

const ACK_TIMEOUT: Duration = Duration::from_secs(10);

fn pubkey(seed: u8) -> String {
    session_key(seed).public_hex()
}

fn states(links: &Links, seeds: &[u8]) -> Vec<SessionState> {
    let keys: Vec<String> = seeds.iter().map(|&seed| pubkey(seed)).collect();
    links.session_states(&keys)
}

async fn session_open(links: &Links, seed: u8) -> bool {
    eventually(|| states(links, &[seed]) == vec![SessionState::Open]).await
}

/// A `ws://` address nobody listens on.
fn dead_url() -> String {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("ws://{}", unused.local_addr().expect("address"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_link_opens_and_its_sends_arrive_as_the_session_of_the_member() {
    let broker = start_broker(BrokerOptions::default()).await;
    let links = Links::start(
        vec![mesh("main", &broker.url())],
        vec![session("main", 9)],
        link_options(),
    );
    assert!(session_open(&links, 9).await, "{:?}", links.reports());
    let results = links
        .send_batch(
            vec![
                session_dispatch(&pubkey(9), "s-1", "*"),
                dispatch("main", "d-1", "*"),
            ],
            ACK_TIMEOUT,
        )
        .await;
    assert!(
        results.iter().all(|r| matches!(r, SendResult::Accepted(_))),
        "{results:?}"
    );
    let stats = broker.stats();
    let over_session = &stats.last_send["s-1"].peer;
    assert_eq!(over_session.pubkey, pubkey(9));
    assert_eq!(
        over_session.parent_pubkey.as_deref(),
        Some(member_key().public_hex().as_str())
    );
    let over_daemon = &stats.last_send["d-1"].peer;
    assert_eq!(over_daemon.pubkey, member_key().public_hex());
    assert_eq!(over_daemon.parent_pubkey, None);
    assert_ne!(over_session.connection, over_daemon.connection);
    assert_eq!(over_session.session_id, "test-session-9");
    assert_eq!(over_daemon.session_id, DAEMON_SESSION_ID);
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_states_read_absent_connecting_and_open() {
    let broker = start_broker(BrokerOptions::default()).await;
    let links = Links::start(
        vec![mesh("main", &broker.url()), mesh("dead", &dead_url())],
        vec![session("main", 9), session("dead", 10)],
        link_options(),
    );
    assert!(session_open(&links, 9).await, "{:?}", links.reports());
    assert_eq!(
        states(&links, &[9, 10, 11]),
        vec![
            SessionState::Open,
            SessionState::Connecting,
            SessionState::Absent
        ]
    );
    let reports = links.reports();
    let kinds: Vec<(LinkKind, &str, Option<String>)> = reports
        .iter()
        .map(|r| (r.kind, r.mesh.as_str(), r.session_pubkey.clone()))
        .collect();
    assert_eq!(kinds.len(), 4, "{reports:?}");
    assert!(kinds.contains(&(LinkKind::Session, "dead", Some(pubkey(10)))));
    assert!(kinds.contains(&(LinkKind::Session, "main", Some(pubkey(9)))));
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_sessions_starts_new_keys_and_removed_ones_read_absent_at_once() {
    let broker = start_broker(BrokerOptions::default()).await;
    let links = open_links(&broker).await;
    assert_eq!(states(&links, &[9]), vec![SessionState::Absent]);
    let mut changes = links.changes();
    changes.borrow_and_update();
    links.set_sessions(vec![session("main", 9)]);
    assert!(
        changes.has_changed().expect("links alive"),
        "set_sessions did not bump changes"
    );
    assert!(session_open(&links, 9).await, "{:?}", links.reports());
    links.set_sessions(vec![session("main", 10)]);
    assert_eq!(states(&links, &[9]), vec![SessionState::Absent]);
    assert!(session_open(&links, 10).await, "{:?}", links.reports());
    let results = links
        .send_batch(
            vec![
                session_dispatch(&pubkey(9), "gone", "*"),
                session_dispatch(&pubkey(10), "here", "*"),
            ],
            ACK_TIMEOUT,
        )
        .await;
    assert_eq!(results[0], failed("link_not_open: no session link"));
    assert!(matches!(results[1], SendResult::Accepted(_)), "{results:?}");
    assert!(!broker.stats().receipts.contains_key("gone"));
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_session_fails_its_waiting_sends_at_once() {
    let slow = ("@slow".to_string(), Duration::from_secs(60));
    let broker = start_broker(BrokerOptions {
        ack_delays: vec![slow],
        ..BrokerOptions::default()
    })
    .await;
    let links = open_links(&broker).await;
    links.set_sessions(vec![session("main", 9)]);
    assert!(session_open(&links, 9).await, "{:?}", links.reports());
    let sender = links.clone();
    let waiting = tokio::spawn(async move {
        let batch = vec![session_dispatch(&pubkey(9), "w-1", "@slow")];
        sender.send_batch(batch, Duration::from_secs(30)).await
    });
    assert!(eventually(|| broker.stats().sends == 1).await);
    let removed = Instant::now();
    links.set_sessions(Vec::new());
    assert_eq!(states(&links, &[9]), vec![SessionState::Absent]);
    let results = waiting.await.expect("send task");
    assert!(
        removed.elapsed() < Duration::from_secs(1),
        "waiting sends failed only after {:?}",
        removed.elapsed()
    );
    assert_eq!(results, vec![failed("link_closed")]);
    assert_eq!(
        links.states()[0].1,
        LinkState::Open,
        "the daemon link stays"
    );
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_session_link_fails_its_waiting_sends_and_reconnects() {
    let slow = ("@slow".to_string(), Duration::from_secs(60));
    let broker = start_broker(BrokerOptions {
        ack_delays: vec![slow],
        ..BrokerOptions::default()
    })
    .await;
    let links = Links::start(
        vec![mesh("main", &broker.url())],
        vec![session("main", 9)],
        link_options(),
    );
    assert!(session_open(&links, 9).await, "{:?}", links.reports());
    let sender = links.clone();
    let waiting = tokio::spawn(async move {
        let batch = vec![session_dispatch(&pubkey(9), "w-1", "@slow")];
        sender.send_batch(batch, Duration::from_secs(30)).await
    });
    assert!(eventually(|| broker.stats().sends == 1).await);
    let dropped = Instant::now();
    broker.drop_connections();
    assert_eq!(
        waiting.await.expect("send task"),
        vec![failed("link_closed")]
    );
    assert!(dropped.elapsed() < Duration::from_secs(2));
    assert!(
        eventually(|| broker.stats().hellos_accepted == 4).await,
        "daemon and session link did not both reconnect: {:?}",
        links.reports()
    );
    assert!(session_open(&links, 9).await);
    let again = links
        .send_batch(vec![session_dispatch(&pubkey(9), "a-1", "*")], ACK_TIMEOUT)
        .await;
    assert!(matches!(again[0], SendResult::Accepted(_)), "{again:?}");
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_of_a_mesh_without_a_daemon_link_is_refused() {
    let broker = start_broker(BrokerOptions::default()).await;
    let links = open_links(&broker).await;
    links.set_sessions(vec![session("nowhere", 9), session("main", 10)]);
    assert!(session_open(&links, 10).await);
    assert_eq!(states(&links, &[9]), vec![SessionState::Absent]);
    assert!(
        links
            .reports()
            .iter()
            .all(|r| r.session_pubkey != Some(pubkey(9))),
        "a refused session got a link"
    );
    let mut too_long = session("main", 11);
    too_long.attestation_ttl = Duration::from_secs(25 * 3600);
    links.set_sessions(vec![too_long]);
    assert_eq!(states(&links, &[10, 11]), vec![SessionState::Absent; 2]);
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_session_restarts_its_link_and_an_unchanged_one_does_not() {
    let server = Scripted::start(crate::scripted::acknowledging()).await;
    let links = Links::start(
        vec![mesh("main", &server.url())],
        vec![session("main", 9)],
        link_options(),
    );
    assert!(session_open(&links, 9).await, "{:?}", links.reports());
    links.set_sessions(vec![session("main", 9)]);
    let mut renamed = session("main", 9);
    renamed.session_id = "renamed".into();
    links.set_sessions(vec![renamed]);
    let said = || server.frames_of("session_hello");
    assert!(eventually(|| said().len() == 2).await, "{:?}", said());
    assert!(session_open(&links, 9).await, "{:?}", links.reports());
    let ids: Vec<String> = said()
        .iter()
        .map(|hello| hello["sessionId"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        ids,
        vec!["test-session-9".to_string(), "renamed".to_string()]
    );
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_row_never_goes_over_the_daemon_link() {
    let broker = start_broker(BrokerOptions::default()).await;
    let links = Links::start(
        vec![mesh("main", &broker.url()), mesh("dead", &dead_url())],
        vec![session("dead", 9)],
        link_options(),
    );
    assert!(
        eventually(|| links.states()[0].1 == LinkState::Open).await,
        "{:?}",
        links.reports()
    );
    let results = links
        .send_batch(vec![session_dispatch(&pubkey(9), "s", "*")], ACK_TIMEOUT)
        .await;
    assert_eq!(results, vec![failed("link_not_open")]);
    assert_eq!(broker.stats().sends, 0);
    links.shutdown().await;
}
