//! The test broker's answers to sends, over raw sockets: targets, the rate
//! limit, no dedupe, acks out of order, and sends it never answers.

use crate::broker_support::*;
use serde_json::json;
use sluice_test_broker::NO_CONNECTED_PEER;
use sluice_test_broker::{BrokerOptions, RateLimit};
use std::time::Duration;

#[tokio::test]
async fn a_send_without_a_string_target_spec_gets_no_ack_at_all() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut socket = open(&broker.url(), &hello("s-untargeted")).await;
    let mut missing = send("missing", "*");
    missing
        .as_object_mut()
        .expect("object")
        .remove("targetSpec");
    send_json(&mut socket, &missing).await;
    let mut number = send("number", "*");
    number["targetSpec"] = json!(7);
    send_json(&mut socket, &number).await;
    assert_quiet(&mut socket, "sends without a targetSpec").await;
    // Had either been answered, that answer would come before this ack.
    assert_eq!(ack_error(&ack_of(&mut socket, "good", "*").await), None);
    let stats = broker.stats();
    assert_eq!(
        (stats.sends, stats.sends_untargeted, stats.accepted),
        (3, 2, 1)
    );
}

#[tokio::test]
async fn a_send_without_an_id_is_acked_with_an_empty_id() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut socket = open(&broker.url(), &hello("s-no-id")).await;
    let mut no_id = send("no-id", "*");
    no_id.as_object_mut().expect("object").remove("id");
    send_json(&mut socket, &no_id).await;
    let ack = next_json(&mut socket).await;
    assert_eq!(
        (ack["id"].as_str(), ack["queued"].as_bool()),
        (Some(""), Some(true)),
        "{ack}"
    );
}

#[tokio::test]
async fn a_repeated_client_message_id_is_a_new_message_every_time() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut socket = open(&broker.url(), &hello("s-repeat")).await;
    let first = ack_of(&mut socket, "again", "*").await;
    let other = ack_of(&mut socket, "other", "*").await;
    let repeat = ack_of(&mut socket, "again", "*").await;
    assert_eq!(repeat["queued"], true);
    assert_ne!(first["messageId"], repeat["messageId"]);
    assert_ne!(other["messageId"], repeat["messageId"]);
    let stats = broker.stats();
    assert_eq!(stats.receipts["again"], 2);
    assert_eq!(
        stats.all_message_ids["again"],
        [first["messageId"].clone(), repeat["messageId"].clone()]
    );
    assert_eq!(json!(stats.message_ids["again"]), repeat["messageId"]);
}

#[tokio::test]
async fn acks_can_arrive_out_of_order() {
    let broker = start_broker(BrokerOptions {
        ack_delays: vec![("@slow".into(), Duration::from_millis(300))],
        ..BrokerOptions::default()
    })
    .await;
    let mut socket = open(&broker.url(), &hello("s-order")).await;
    send_json(&mut socket, &send("first", "@slow")).await;
    send_json(&mut socket, &send("second", "@fast")).await;
    let early = next_json(&mut socket).await;
    let late = next_json(&mut socket).await;
    assert_eq!(
        (early["id"].as_str(), late["id"].as_str()),
        (Some("second"), Some("first"))
    );
    assert_eq!(
        json!(broker.stats().message_ids["first"]),
        late["messageId"],
        "ids follow arrival, not ack order"
    );
}

#[tokio::test]
async fn broadcasts_groups_and_topics_are_accepted_with_nobody_online() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut socket = open(&broker.url(), &hello("s-multi")).await;
    for (i, target) in ["*", "@all", "@nobody-here", "#topic_1"].iter().enumerate() {
        let ack = ack_of(&mut socket, &format!("m-{i}"), target).await;
        assert_eq!(ack_error(&ack), None, "{target}");
    }
}

#[tokio::test]
async fn a_direct_send_needs_a_connected_peer_on_another_connection() {
    let broker = start_broker(BrokerOptions::default()).await;
    let url = broker.url();
    let (own, peer) = (member_key().public_hex(), peer_key().public_hex());
    let mut daemon = open(&url, &hello("s-daemon")).await;
    let no_peer = Some(NO_CONNECTED_PEER.to_string());
    assert_eq!(
        ack_error(&ack_of(&mut daemon, "to-stranger", &peer).await),
        no_peer
    );
    assert_eq!(
        ack_error(&ack_of(&mut daemon, "to-self", &own).await),
        no_peer
    );
    assert_eq!(
        ack_error(&ack_of(&mut daemon, "to-name", "peer2").await),
        no_peer
    );
    assert_eq!(
        NO_CONNECTED_PEER,
        "no connected peer for target (not online, or targetSpec is your own key without another session)"
    );
    // The peer member comes online: its key is a target.
    let peer_socket = open(&url, &hello_as(&peer_key(), PEER_ID, "s-peer", now_ms())).await;
    assert_eq!(
        ack_error(&ack_of(&mut daemon, "to-peer", &peer).await),
        None
    );
    // A session of our own member: its key, and our own member key, are
    // now held by another connection.
    let mut session = open(&url, &session_hello("s-session")).await;
    let session_pubkey = session_key().public_hex();
    assert_eq!(
        ack_error(&ack_of(&mut daemon, "to-session", &session_pubkey).await),
        None
    );
    assert_eq!(
        ack_error(&ack_of(&mut daemon, "to-self-again", &own).await),
        None
    );
    assert_eq!(
        ack_error(&ack_of(&mut session, "session-to-member", &own).await),
        None
    );
    assert_eq!(
        ack_error(&ack_of(&mut session, "to-own-session", &session_pubkey).await),
        no_peer
    );
    // The peer leaves: it stays a target through its offline lease.
    drop(peer_socket);
    assert!(
        eventually(|| broker.stats().connections_open == 2).await,
        "the broker never saw the peer leave"
    );
    assert_eq!(
        ack_error(&ack_of(&mut daemon, "to-leased-peer", &peer).await),
        None
    );
}

#[tokio::test]
async fn online_peers_are_targets_without_a_second_client() {
    let peer = peer_key().public_hex();
    let broker = start_broker(BrokerOptions {
        online_peers: vec![peer.clone()],
        ..BrokerOptions::default()
    })
    .await;
    let mut socket = open(&broker.url(), &hello("s-alone")).await;
    assert_eq!(
        ack_error(&ack_of(&mut socket, "to-peer", &peer).await),
        None
    );
    let stranger = "ab".repeat(32);
    assert_eq!(
        ack_error(&ack_of(&mut socket, "to-stranger", &stranger).await),
        Some(NO_CONNECTED_PEER.to_string())
    );
}

/// A limit that refills so slowly a test never sees a new token.
const TIGHT: RateLimit = RateLimit {
    per_minute: 1,
    burst: 4,
};

#[tokio::test]
async fn the_rate_limit_is_per_member_shared_by_daemon_and_session_links() {
    let broker = start_broker(BrokerOptions {
        rate_limit: Some(TIGHT),
        ..BrokerOptions::default()
    })
    .await;
    let url = broker.url();
    let mut daemon = open(&url, &hello("s-daemon")).await;
    let mut session = open(&url, &session_hello("s-session")).await;
    let mut other = open(&url, &hello_as(&peer_key(), PEER_ID, "s-peer", now_ms())).await;
    for i in 0..2 {
        assert_eq!(
            ack_error(&ack_of(&mut daemon, &format!("d-{i}"), "*").await),
            None
        );
        assert_eq!(
            ack_error(&ack_of(&mut session, &format!("s-{i}"), "*").await),
            None
        );
    }
    let limited = Some("rate_limit: max 1 msg/min (burst 4) — slow down".to_string());
    assert_eq!(
        ack_error(&ack_of(&mut daemon, "d-over", "*").await),
        limited
    );
    assert_eq!(
        ack_error(&ack_of(&mut session, "s-over", "*").await),
        limited
    );
    assert_eq!(
        ack_error(&ack_of(&mut other, "other-member", "*").await),
        None,
        "another member has its own bucket"
    );
    let stats = broker.stats();
    assert_eq!(
        (stats.rate_limited, stats.accepted, stats.rejected),
        (2, 5, 2)
    );
}

#[tokio::test]
async fn sends_rejected_for_other_reasons_and_untargeted_sends_still_spend_tokens() {
    let broker = start_broker(BrokerOptions {
        rate_limit: Some(TIGHT),
        reject_permanent: vec![("@blocked".into(), "blocked by recipient grants".into())],
        ..BrokerOptions::default()
    })
    .await;
    let mut socket = open(&broker.url(), &hello("s-spend")).await;
    let blocked = Some("blocked by recipient grants".to_string());
    assert_eq!(
        ack_error(&ack_of(&mut socket, "a", "@blocked").await),
        blocked
    );
    let stranger = peer_key().public_hex();
    assert_eq!(
        ack_error(&ack_of(&mut socket, "b", &stranger).await),
        Some(NO_CONNECTED_PEER.to_string())
    );
    let mut untargeted = send("c", "*");
    untargeted
        .as_object_mut()
        .expect("object")
        .remove("targetSpec");
    send_json(&mut socket, &untargeted).await;
    assert_eq!(
        ack_error(&ack_of(&mut socket, "d", "*").await),
        None,
        "the last token"
    );
    // An empty bucket answers even a send without a targetSpec.
    send_json(&mut socket, &untargeted).await;
    let ack = next_json(&mut socket).await;
    assert_eq!(
        (ack["id"].as_str(), ack_error(&ack)),
        (Some("c"), Some(TIGHT.rejection()))
    );
}
