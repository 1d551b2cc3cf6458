//! Raw-socket fixtures of the test-broker tests: a broker on 127.0.0.1:0, a
//! WebSocket client writing JSON by hand, and hellos signed here. Kept apart
//! from `common` so these tests depend only on the broker's API.
#![allow(dead_code)]

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use sluice_links::{
    MemberKey, daemon_hello_message, session_attestation_message, session_hello_message,
};
use sluice_test_broker::{Broker, BrokerOptions};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const MESH_ID: &str = "mesh_test";
pub const MEMBER_ID: &str = "mem_test";
pub const PEER_ID: &str = "mem_peer";
pub const CWD: &str = "/srv/broker-test";
pub const HOUR_MS: i64 = 3_600_000;

/// Long enough for any frame on a loaded 2-core machine, short enough that a
/// broken test fails in seconds.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How long a test waits to be sure that nothing comes: the broker answers
/// within milliseconds, so a frame would have arrived by then.
pub const QUIET: Duration = Duration::from_millis(300);

/// The member of most tests (the libsodium vector's seed, as the real
/// broker's seeded member 1).
pub fn member_key() -> MemberKey {
    MemberKey::from_seed([7; 32])
}

/// Another member of the mesh.
pub fn peer_key() -> MemberKey {
    MemberKey::from_seed([8; 32])
}

/// A session key of `member_key()`.
pub fn session_key() -> MemberKey {
    MemberKey::from_seed([9; 32])
}

pub fn now_ms() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(elapsed.as_millis()).expect("fits")
}

pub async fn start_broker(options: BrokerOptions) -> Broker {
    Broker::start(SocketAddr::from(([127, 0, 0, 1], 0)), options)
        .await
        .expect("broker binds port 0")
}

pub async fn connect(url: &str) -> Socket {
    connect_async(url).await.expect("connects").0
}

pub async fn send_json(socket: &mut Socket, value: &Value) {
    socket
        .send(Message::text(value.to_string()))
        .await
        .expect("write");
}

/// The next frame that is not a ping or pong.
pub async fn next_frame(socket: &mut Socket) -> Message {
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

pub async fn next_json(socket: &mut Socket) -> Value {
    match next_frame(socket).await {
        Message::Text(text) => serde_json::from_str(&text).expect("JSON"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// The close frame that must come next (after any text frames are skipped
/// by the caller).
pub async fn next_close(socket: &mut Socket) -> CloseFrame {
    match next_frame(socket).await {
        Message::Close(Some(close)) => close,
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// Asserts that no frame but pings comes for `QUIET`, and that the socket
/// is still open.
pub async fn assert_quiet(socket: &mut Socket, why: &str) {
    let deadline = tokio::time::Instant::now() + QUIET;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => panic!("{why}: expected nothing, got {other:?}"),
        }
    }
}

/// A daemon hello of `key` as member `member_id`.
pub fn hello_as(key: &MemberKey, member_id: &str, session_id: &str, timestamp: i64) -> Value {
    let pubkey = key.public_hex();
    let signature = key.sign_hex(&daemon_hello_message(
        MESH_ID, member_id, &pubkey, timestamp,
    ));
    json!({"type": "hello", "meshId": MESH_ID, "memberId": member_id, "pubkey": pubkey,
        "sessionId": session_id, "pid": 1, "cwd": CWD, "hostname": "h", "peerType": "ai",
        "channel": "c", "timestamp": timestamp, "signature": signature})
}

/// A daemon hello of `member_key()`, stamped now.
pub fn hello(session_id: &str) -> Value {
    hello_as(&member_key(), MEMBER_ID, session_id, now_ms())
}

/// A session hello of `session` attested by `member` until `expires_at`.
pub fn session_hello_as(
    member: &MemberKey,
    session: &MemberKey,
    session_id: &str,
    expires_at: i64,
) -> Value {
    let (parent, session_pubkey, timestamp) = (member.public_hex(), session.public_hex(), now_ms());
    let attestation = member.sign_hex(&session_attestation_message(
        &parent,
        &session_pubkey,
        expires_at,
    ));
    let signature = session.sign_hex(&session_hello_message(
        MESH_ID,
        &parent,
        &session_pubkey,
        timestamp,
    ));
    json!({"type": "session_hello", "meshId": MESH_ID, "parentMemberId": MEMBER_ID,
        "parentMemberPubkey": parent, "sessionPubkey": session_pubkey,
        "parentAttestation": {"sessionPubkey": session_pubkey, "parentMemberPubkey": parent,
            "expiresAt": expires_at, "signature": attestation},
        "sessionId": session_id, "pid": 1, "cwd": CWD, "hostname": "h", "peerType": "ai",
        "channel": "c", "timestamp": timestamp, "signature": signature})
}

/// A session hello of `session_key()`, attested for an hour.
pub fn session_hello(session_id: &str) -> Value {
    session_hello_as(
        &member_key(),
        &session_key(),
        session_id,
        now_ms() + HOUR_MS,
    )
}

pub fn send(cmid: &str, target: &str) -> Value {
    json!({"type": "send", "id": cmid, "client_message_id": cmid, "request_fingerprint": "ab",
        "targetSpec": target, "priority": "next", "nonce": "n", "ciphertext": "c"})
}

/// A socket whose `hello` was answered with a hello_ack.
pub async fn open(url: &str, hello: &Value) -> Socket {
    let mut socket = connect(url).await;
    send_json(&mut socket, hello).await;
    let ack = next_json(&mut socket).await;
    assert_eq!(ack["type"], "hello_ack", "{ack}");
    socket
}

/// Sends `send(cmid, target)` and returns its ack.
pub async fn ack_of(socket: &mut Socket, cmid: &str, target: &str) -> Value {
    send_json(socket, &send(cmid, target)).await;
    let ack = next_json(socket).await;
    assert_eq!(
        (ack["type"].as_str(), ack["id"].as_str()),
        (Some("ack"), Some(cmid)),
        "{ack}"
    );
    ack
}

/// The ack's error, `None` when it was accepted (queued with a message id).
pub fn ack_error(ack: &Value) -> Option<String> {
    match ack["error"].as_str() {
        Some(error) => {
            assert_eq!(
                (ack["queued"].as_bool(), ack["messageId"].as_str()),
                (Some(false), Some("")),
                "{ack}"
            );
            Some(error.to_string())
        }
        None => {
            assert_eq!(ack["queued"], true, "{ack}");
            assert!(
                ack["messageId"].as_str().is_some_and(|id| !id.is_empty()),
                "{ack}"
            );
            None
        }
    }
}

/// Sends `hello` and expects an error frame with `code` and `message`, then
/// a close 1008 whose reason is the code.
pub async fn assert_refused(url: &str, hello: &Value, code: &str, message: &str) {
    let mut socket = connect(url).await;
    send_json(&mut socket, hello).await;
    let error = next_json(&mut socket).await;
    assert_eq!(
        error,
        json!({"type": "error", "code": code, "message": message}),
    );
    let close = next_close(&mut socket).await;
    assert_eq!((u16::from(close.code), close.reason.as_str()), (1008, code));
}

/// Polls `condition` until it holds or `PATIENCE` runs out.
pub async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    condition()
}
