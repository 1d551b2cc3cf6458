//! The test broker's hellos, spoken to by a raw WebSocket client writing
//! JSON by hand: each answer as the real broker was observed to give it.

use crate::broker_support::*;
use futures_util::SinkExt as _;
use serde_json::json;
use sluice_links::MemberKey;
use sluice_test_broker::{BrokerOptions, Member};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_good_hello_gets_a_hello_ack_with_extra_fields() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut socket = connect(&broker.url()).await;
    send_json(&mut socket, &hello("s-good")).await;
    let ack = next_json(&mut socket).await;
    assert_eq!(ack["type"], "hello_ack");
    assert!(
        ack["presenceId"].is_string() && ack["memberDisplayName"].is_string(),
        "{ack}"
    );
    let stats = broker.stats();
    assert_eq!(stats.hellos_accepted, 1);
    let peer = stats.peers.values().next().expect("the connection's peer");
    assert!(!peer.is_session());
    assert_eq!(peer.session_id, "s-good");
}

#[tokio::test]
async fn a_hello_without_cwd_gets_nothing_and_the_socket_stays_open() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut socket = connect(&broker.url()).await;
    let mut no_cwd = hello("s-cwd");
    no_cwd.as_object_mut().expect("object").remove("cwd");
    send_json(&mut socket, &no_cwd).await;
    assert_quiet(&mut socket, "a hello without cwd").await;
    let mut empty_cwd = hello("s-cwd");
    empty_cwd["cwd"] = json!("");
    send_json(&mut socket, &empty_cwd).await;
    assert_quiet(&mut socket, "a hello with an empty cwd").await;
    send_json(&mut socket, &send("after", "*")).await;
    assert_eq!(
        next_json(&mut socket).await["code"],
        "no_hello",
        "the ignored hellos did not open the link"
    );
    send_json(&mut socket, &hello("s-cwd")).await;
    assert_eq!(next_json(&mut socket).await["type"], "hello_ack");
    let stats = broker.stats();
    assert_eq!(
        (
            stats.hellos_ignored,
            stats.hellos_accepted,
            stats.hellos_rejected
        ),
        (2, 1, 0)
    );
}

#[tokio::test]
async fn a_session_hello_without_cwd_gets_nothing() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut socket = connect(&broker.url()).await;
    let mut no_cwd = session_hello("s-session");
    no_cwd.as_object_mut().expect("object").remove("cwd");
    send_json(&mut socket, &no_cwd).await;
    assert_quiet(&mut socket, "a session hello without cwd").await;
    assert_eq!(broker.stats().hellos_ignored, 1);
}

#[tokio::test]
async fn a_bad_signature_is_refused_with_the_real_message_and_close_1008() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut forged = hello("s-forged");
    forged["memberId"] = json!("mem_someone_else");
    let message = "hello rejected: bad_signature";
    assert_refused(&broker.url(), &forged, "bad_signature", message).await;
    let stats = broker.stats();
    assert_eq!((stats.hellos_rejected, stats.hellos_accepted), (1, 0));
}

#[tokio::test]
async fn a_stale_or_future_timestamp_is_refused_with_timestamp_skew() {
    let broker = start_broker(BrokerOptions {
        max_skew: Duration::from_secs(5),
        ..BrokerOptions::default()
    })
    .await;
    let message = "hello rejected: timestamp_skew";
    for skew_ms in [-6_000, 6_000] {
        let stale = hello_as(&member_key(), MEMBER_ID, "s-skew", now_ms() + skew_ms);
        assert_refused(&broker.url(), &stale, "timestamp_skew", message).await;
    }
}

#[tokio::test]
async fn a_key_not_listed_for_the_mesh_is_unauthorized() {
    let listed = Member {
        mesh_id: MESH_ID.into(),
        member_id: Some(MEMBER_ID.into()),
        public_key: member_key().public_hex(),
    };
    let broker = start_broker(BrokerOptions {
        members: Some(vec![listed]),
        ..BrokerOptions::default()
    })
    .await;
    let stranger = hello_as(&MemberKey::from_seed([2; 32]), MEMBER_ID, "s-x", now_ms());
    let message = "pubkey not found in mesh";
    assert_refused(&broker.url(), &stranger, "unauthorized", message).await;
    open(&broker.url(), &hello("s-listed")).await;
}

#[tokio::test]
async fn an_expired_or_too_long_attestation_is_refused() {
    let broker = start_broker(BrokerOptions::default()).await;
    let (member, session) = (member_key(), session_key());
    let expired = session_hello_as(&member, &session, "s-old", now_ms() - 1);
    let message = "attestation rejected: expired";
    assert_refused(&broker.url(), &expired, "expired", message).await;
    let too_long = session_hello_as(&member, &session, "s-long", now_ms() + 48 * HOUR_MS);
    let message = "attestation rejected: ttl_too_long";
    assert_refused(&broker.url(), &too_long, "ttl_too_long", message).await;
}

#[tokio::test]
async fn a_send_before_hello_gets_no_hello_and_the_socket_stays_open() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut socket = connect(&broker.url()).await;
    for early in [send("early", "*"), json!({"type": "teleport"}), json!({})] {
        send_json(&mut socket, &early).await;
        assert_eq!(
            next_json(&mut socket).await,
            json!({"type": "error", "code": "no_hello", "message": "must send hello first"})
        );
    }
    send_json(&mut socket, &hello("s-late")).await;
    assert_eq!(next_json(&mut socket).await["type"], "hello_ack");
    assert_eq!(ack_error(&ack_of(&mut socket, "late", "*").await), None);
    assert_eq!(broker.stats().sends, 1, "the early send was not taken");
}

#[tokio::test]
async fn malformed_json_and_unknown_types_get_no_answer() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut socket = open(&broker.url(), &hello("s-noise")).await;
    socket
        .send(Message::text("{ not json"))
        .await
        .expect("write");
    send_json(&mut socket, &json!({"type": "teleport"})).await;
    send_json(&mut socket, &json!(null)).await;
    // Had any of those been answered, that answer would come first.
    assert_eq!(ack_error(&ack_of(&mut socket, "after", "*").await), None);
}

#[tokio::test]
async fn a_session_hello_is_verified_and_its_sends_carry_the_session_key() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut socket = open(&broker.url(), &session_hello("s-session")).await;
    assert_eq!(
        ack_error(&ack_of(&mut socket, "from-session", "*").await),
        None
    );
    let stats = broker.stats();
    let peer = &stats.last_send["from-session"].peer;
    assert_eq!(
        (&peer.pubkey, &peer.parent_pubkey),
        (
            &session_key().public_hex(),
            &Some(member_key().public_hex())
        )
    );
    assert!(stats.peers[&peer.connection].is_session());
}

#[tokio::test]
async fn a_broker_without_session_support_answers_unknown_message_type() {
    let broker = start_broker(BrokerOptions {
        sessions_unsupported: true,
        ..BrokerOptions::default()
    })
    .await;
    let mut socket = connect(&broker.url()).await;
    send_json(&mut socket, &session_hello("s-session")).await;
    let error = next_json(&mut socket).await;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("error"), Some("unknown_message_type"))
    );
}

#[tokio::test]
async fn the_same_session_id_closes_the_older_connection_with_session_replaced() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut first = open(&broker.url(), &hello("s-shared")).await;
    let _second = open(&broker.url(), &hello("s-shared")).await;
    let close = next_close(&mut first).await;
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (1000, "session_replaced")
    );
    let _other = open(&broker.url(), &hello("s-other")).await;
    assert_eq!(broker.stats().hellos_accepted, 3);
}

#[tokio::test]
async fn a_mesh_at_capacity_refuses_the_next_hello() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut sockets = Vec::new();
    for i in 0..sluice_test_broker::CONNECTIONS_PER_MESH_MAX {
        sockets.push(open(&broker.url(), &hello(&format!("s-{i}"))).await);
    }
    let message = "mesh at connection capacity";
    assert_refused(&broker.url(), &hello("s-one-more"), "capacity", message).await;
}

#[tokio::test]
async fn a_frame_over_64_kib_closes_the_socket() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut socket = open(&broker.url(), &hello("s-big")).await;
    let mut big = send("big", "*");
    big["ciphertext"] = json!("x".repeat(sluice_test_broker::MAX_FRAME_BYTES));
    let _ = socket.send(Message::text(big.to_string())).await;
    let ended = tokio::time::timeout(PATIENCE, async {
        use futures_util::StreamExt as _;
        loop {
            match socket.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return true,
                Some(Ok(other)) => panic!("expected the socket to end, got {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true));
    assert_eq!(broker.stats().sends, 0);
}

#[tokio::test]
async fn a_keys_file_lists_members_and_a_bad_key_is_named() {
    let dir = std::env::temp_dir().join(format!("sluice-links-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good = dir.join("good.toml");
    let key = member_key().public_hex();
    std::fs::write(&good, format!("[[member]]\nmesh_id = \"m\"\nmember_id = \"u\"\npublic_key = \"{key}\"\n\n[[member]]\nmesh_id = \"n\"\npublic_key = \"{key}\"\n"))
        .expect("write");
    let members = sluice_test_broker::load_members(&good).expect("valid keys file");
    assert_eq!(members.len(), 2);
    assert_eq!(
        (
            members[0].member_id.as_deref(),
            members[1].member_id.as_deref()
        ),
        (Some("u"), None)
    );
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[member]]\nmesh_id = \"m\"\npublic_key = \"xyz\"\n").expect("write");
    let error = sluice_test_broker::load_members(&bad)
        .expect_err("short key")
        .to_string();
    assert!(
        error.contains("member 0") && error.contains("64 hex"),
        "{error}"
    );
    let missing = sluice_test_broker::load_members(&dir.join("absent.toml"))
        .expect_err("missing file")
        .to_string();
    assert!(missing.contains("cannot read keys file"), "{missing}");
    let _ = std::fs::remove_dir_all(&dir);
}
