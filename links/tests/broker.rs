//! The test broker, spoken to by a raw WebSocket client writing JSON by
//! hand: the broker must answer as the real one was observed to.

mod common;

use common::*;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use sluice_links::{
    BrokerOptions, Member, MemberKey, daemon_hello_message, session_attestation_message,
    session_hello_message,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn now_ms() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(elapsed.as_millis()).expect("fits")
}

async fn connect(url: &str) -> Socket {
    connect_async(url).await.expect("connects").0
}

async fn send_json(socket: &mut Socket, value: &Value) {
    socket
        .send(Message::text(value.to_string()))
        .await
        .expect("write");
}

/// The next frame that is not a ping or pong.
async fn next_frame(socket: &mut Socket) -> Message {
    loop {
        let frame = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("a frame in time");
        match frame.expect("socket open").expect("read") {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return other,
        }
    }
}

async fn next_json(socket: &mut Socket) -> Value {
    match next_frame(socket).await {
        Message::Text(text) => serde_json::from_str(&text).expect("JSON"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

fn hello(key: &MemberKey, timestamp: i64) -> Value {
    let pubkey = key.public_hex();
    let signature = key.sign_hex(&daemon_hello_message(
        MESH_ID, MEMBER_ID, &pubkey, timestamp,
    ));
    json!({"type": "hello", "meshId": MESH_ID, "memberId": MEMBER_ID, "pubkey": pubkey, "sessionId": "s", "pid": 1,
        "hostname": "h", "peerType": "ai", "channel": "c", "timestamp": timestamp, "signature": signature})
}

fn send(cmid: &str) -> Value {
    json!({"type": "send", "id": cmid, "client_message_id": cmid, "request_fingerprint": "ab", "targetSpec": "*",
        "priority": "next", "nonce": "n", "ciphertext": "c"})
}

/// Sends `hello` and expects an error frame with `code`, then close 1008.
async fn assert_refused(url: &str, hello: &Value, code: &str) {
    let mut socket = connect(url).await;
    send_json(&mut socket, hello).await;
    let error = next_json(&mut socket).await;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("error"), Some(code)),
        "{error}"
    );
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    match next_frame(&mut socket).await {
        Message::Close(Some(close)) => assert_eq!(close.code, CloseCode::Policy),
        other => panic!("expected close 1008, got {other:?}"),
    }
}

#[tokio::test]
async fn a_good_hello_gets_a_hello_ack_with_extra_fields() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut socket = connect(&broker.url()).await;
    send_json(&mut socket, &hello(&member_key(), now_ms())).await;
    let ack = next_json(&mut socket).await;
    assert_eq!(ack["type"], "hello_ack");
    assert!(
        ack["presenceId"].is_string()
            && ack["displayName"].is_string()
            && ack["policy"].is_object(),
        "{ack}"
    );
    assert_eq!(broker.stats().hellos_accepted, 1);
}

#[tokio::test]
async fn a_bad_signature_is_refused_with_bad_signature_and_close_1008() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut forged = hello(&member_key(), now_ms());
    forged["memberId"] = json!("mem_someone_else");
    assert_refused(&broker.url(), &forged, "bad_signature").await;
    assert_eq!(
        (
            broker.stats().hellos_rejected,
            broker.stats().hellos_accepted
        ),
        (1, 0)
    );
}

#[tokio::test]
async fn a_stale_timestamp_is_refused_with_timestamp_skew() {
    let broker = start_broker(BrokerOptions {
        max_skew: Duration::from_secs(5),
        ..BrokerOptions::default()
    })
    .await;
    assert_refused(
        &broker.url(),
        &hello(&member_key(), now_ms() - 6_000),
        "timestamp_skew",
    )
    .await;
    assert_refused(
        &broker.url(),
        &hello(&member_key(), now_ms() + 6_000),
        "timestamp_skew",
    )
    .await;
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
    assert_refused(
        &broker.url(),
        &hello(&MemberKey::from_seed([2; 32]), now_ms()),
        "unauthorized",
    )
    .await;
    let mut socket = connect(&broker.url()).await;
    send_json(&mut socket, &hello(&member_key(), now_ms())).await;
    assert_eq!(
        next_json(&mut socket).await["type"],
        "hello_ack",
        "the listed key is let in"
    );
}

#[tokio::test]
async fn a_send_before_hello_gets_no_hello_and_the_socket_stays_open() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut socket = connect(&broker.url()).await;
    send_json(&mut socket, &send("early")).await;
    let error = next_json(&mut socket).await;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("error"), Some("no_hello"))
    );
    send_json(&mut socket, &hello(&member_key(), now_ms())).await;
    assert_eq!(next_json(&mut socket).await["type"], "hello_ack");
    send_json(&mut socket, &send("late")).await;
    let ack = next_json(&mut socket).await;
    assert_eq!(
        (
            ack["type"].as_str(),
            ack["id"].as_str(),
            ack["queued"].as_bool()
        ),
        (Some("ack"), Some("late"), Some(true))
    );
    assert_eq!(broker.stats().sends, 1, "the early send was not taken");
}

#[tokio::test]
async fn malformed_json_gets_no_answer_and_unknown_types_get_unknown_message_type() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut socket = connect(&broker.url()).await;
    send_json(&mut socket, &hello(&member_key(), now_ms())).await;
    assert_eq!(next_json(&mut socket).await["type"], "hello_ack");
    socket
        .send(Message::text("{ not json"))
        .await
        .expect("write");
    send_json(&mut socket, &json!({"type": "teleport"})).await;
    // Had the garbage been answered, that answer would come first.
    let error = next_json(&mut socket).await;
    assert_eq!(error["code"], "unknown_message_type", "{error}");
}

#[tokio::test]
async fn a_repeated_client_message_id_gets_the_first_message_id_back() {
    let broker = start_broker(BrokerOptions::default()).await;
    let mut socket = connect(&broker.url()).await;
    send_json(&mut socket, &hello(&member_key(), now_ms())).await;
    assert_eq!(next_json(&mut socket).await["type"], "hello_ack");
    send_json(&mut socket, &send("again")).await;
    let first = next_json(&mut socket).await;
    send_json(&mut socket, &send("other")).await;
    let other = next_json(&mut socket).await;
    send_json(&mut socket, &send("again")).await;
    let repeat = next_json(&mut socket).await;
    assert_eq!(first["messageId"], repeat["messageId"]);
    assert_ne!(first["messageId"], other["messageId"]);
    assert_eq!(repeat["queued"], true);
    assert_eq!(broker.stats().receipts["again"], 2);
}

fn session_hello(member: &MemberKey, session: &MemberKey, expires_at: i64) -> Value {
    let (parent, session_pubkey, timestamp) = (member.public_hex(), session.public_hex(), now_ms());
    json!({"type": "session_hello", "meshId": MESH_ID, "parentMemberId": MEMBER_ID, "parentMemberPubkey": parent,
        "sessionPubkey": session_pubkey,
        "parentAttestation": {"sessionPubkey": session_pubkey, "parentMemberPubkey": parent, "expiresAt": expires_at,
            "signature": member.sign_hex(&session_attestation_message(&parent, &session_pubkey, expires_at))},
        "sessionId": "s", "pid": 1, "hostname": "h", "peerType": "ai", "channel": "c", "timestamp": timestamp,
        "signature": session.sign_hex(&session_hello_message(MESH_ID, &parent, &session_pubkey, timestamp))})
}

#[tokio::test]
async fn a_session_hello_is_verified_and_its_sends_carry_the_session_key() {
    let broker = start_broker(BrokerOptions::default()).await;
    let session = MemberKey::from_seed([9; 32]);
    let mut socket = connect(&broker.url()).await;
    send_json(
        &mut socket,
        &session_hello(&member_key(), &session, now_ms() + 3_600_000),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["type"], "hello_ack");
    send_json(&mut socket, &send("from-session")).await;
    assert_eq!(next_json(&mut socket).await["type"], "ack");
    let peer = broker.stats().last_send["from-session"].peer.clone();
    assert_eq!(
        (&peer.pubkey, &peer.parent_pubkey),
        (&session.public_hex(), &Some(member_key().public_hex()))
    );
    assert_refused(
        &broker.url(),
        &session_hello(&member_key(), &session, now_ms() + 48 * 3_600_000),
        "ttl_too_long",
    )
    .await;
}

#[tokio::test]
async fn a_broker_without_session_support_answers_unknown_message_type() {
    let broker = start_broker(BrokerOptions {
        sessions_unsupported: true,
        ..BrokerOptions::default()
    })
    .await;
    let mut socket = connect(&broker.url()).await;
    let session = MemberKey::from_seed([9; 32]);
    send_json(
        &mut socket,
        &session_hello(&member_key(), &session, now_ms() + 3_600_000),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["code"], "unknown_message_type");
}

#[tokio::test]
async fn a_keys_file_lists_members_and_a_bad_key_is_named() {
    let dir = std::env::temp_dir().join(format!("sluice-links-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good = dir.join("good.toml");
    let key = member_key().public_hex();
    std::fs::write(&good, format!("[[member]]\nmesh_id = \"m\"\nmember_id = \"u\"\npublic_key = \"{key}\"\n\n[[member]]\nmesh_id = \"n\"\npublic_key = \"{key}\"\n"))
        .expect("write");
    let members = sluice_links::load_members(&good).expect("valid keys file");
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
    let error = sluice_links::load_members(&bad)
        .expect_err("short key")
        .to_string();
    assert!(
        error.contains("member 0") && error.contains("64 hex"),
        "{error}"
    );
    let missing = sluice_links::load_members(&dir.join("absent.toml"))
        .expect_err("missing file")
        .to_string();
    assert!(missing.contains("cannot read keys file"), "{missing}");
    let _ = std::fs::remove_dir_all(&dir);
}
