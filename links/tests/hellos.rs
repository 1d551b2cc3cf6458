//! What the links say when they connect, seen by a scripted server on
//! 127.0.0.1: both hellos carry `cwd` and their `sessionId` (the real broker
//! answers nothing without `cwd`), a session hello is signed as the broker
//! checks it, and a broker without session support is asked only once.

use crate::common::*;
use crate::scripted::Scripted;
use sluice_contract::SessionState;
use sluice_links::{
    ATTESTATION_TTL_DEFAULT, LinkKind, LinkState, Links, session_attestation_message,
    session_hello_message, verify_hex,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(elapsed.as_millis()).expect("fits")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_hello_carries_cwd_and_the_configured_session_id() {
    let server = Scripted::start(crate::scripted::acknowledging()).await;
    let links = Links::start(
        vec![mesh("main", &server.url())],
        Vec::new(),
        link_options(),
    );
    assert!(links.wait_open(PATIENCE).await, "{:?}", links.reports());
    let hellos = server.frames_of("hello");
    assert_eq!(hellos.len(), 1);
    let hello = &hellos[0];
    assert_eq!(hello["cwd"], CWD);
    assert_eq!(hello["sessionId"], DAEMON_SESSION_ID);
    assert_eq!(hello["meshId"], MESH_ID);
    assert_eq!(hello["memberId"], MEMBER_ID);
    assert_eq!(hello["pubkey"], member_key().public_hex());
    assert_eq!(
        (&hello["pid"], &hello["hostname"], &hello["peerType"]),
        (&42.into(), &"test-host".into(), &"ai".into())
    );
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_hello_carries_cwd_session_id_and_both_signatures() {
    let server = Scripted::start(crate::scripted::acknowledging()).await;
    let before = now_ms();
    let links = Links::start(
        vec![mesh("main", &server.url())],
        vec![session("main", 9)],
        link_options(),
    );
    let pubkey = session_key(9).public_hex();
    assert!(
        eventually(
            || links.session_states(std::slice::from_ref(&pubkey)) == vec![SessionState::Open]
        )
        .await,
        "{:?}",
        links.reports()
    );
    let hellos = server.frames_of("session_hello");
    assert_eq!(hellos.len(), 1);
    let hello = &hellos[0];
    let member = member_key().public_hex();
    assert_eq!(hello["cwd"], CWD);
    assert_eq!(hello["sessionId"], "test-session-9");
    assert_eq!(hello["meshId"], MESH_ID);
    assert_eq!(hello["parentMemberId"], MEMBER_ID);
    assert_eq!(hello["parentMemberPubkey"], member);
    assert_eq!(hello["sessionPubkey"], pubkey);
    assert_eq!(
        (&hello["pid"], &hello["peerType"], &hello["channel"]),
        (&42.into(), &"ai".into(), &"sluice".into())
    );
    let timestamp = hello["timestamp"].as_i64().expect("timestamp");
    let signed = session_hello_message(MESH_ID, &member, &pubkey, timestamp);
    let signature = hello["signature"].as_str().expect("signature");
    assert!(
        verify_hex(&pubkey, &signed, signature),
        "the hello is not signed by the session key"
    );
    let attestation = &hello["parentAttestation"];
    assert_eq!(attestation["sessionPubkey"], pubkey);
    assert_eq!(attestation["parentMemberPubkey"], member);
    let expires = attestation["expiresAt"].as_i64().expect("expiresAt");
    let ttl = i64::try_from(ATTESTATION_TTL_DEFAULT.as_millis()).expect("fits");
    assert!(
        expires >= before + ttl && expires <= now_ms() + ttl,
        "expiresAt {expires} is not now + 12 h"
    );
    let attested = session_attestation_message(&member, &pubkey, expires);
    let signature = attestation["signature"].as_str().expect("signature");
    assert!(
        verify_hex(&member, &attested, signature),
        "the attestation is not signed by the member key"
    );
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_without_session_support_is_asked_once_and_the_link_reads_unsupported() {
    let server = Scripted::start(crate::scripted::without_sessions()).await;
    let links = Links::start(
        vec![mesh("main", &server.url())],
        vec![session("main", 9)],
        link_options(),
    );
    assert!(links.wait_open(PATIENCE).await);
    let unsupported = |links: &Links| {
        links
            .reports()
            .iter()
            .any(|r| r.kind == LinkKind::Session && r.state == LinkState::Unsupported)
    };
    assert!(
        eventually(|| unsupported(&links)).await,
        "{:?}",
        links.reports()
    );
    // Reconnects back off from 20 ms: a link that retried would have said
    // hello again many times by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(server.frames_of("session_hello").len(), 1);
    let pubkey = session_key(9).public_hex();
    assert_eq!(
        links.session_states(std::slice::from_ref(&pubkey)),
        vec![SessionState::Connecting],
        "rows of an unsupported session wait, they are not orphans"
    );
    let report = links
        .reports()
        .into_iter()
        .find(|r| r.kind == LinkKind::Session)
        .expect("a session report");
    let error = report.last_error.expect("the reason is kept");
    assert!(error.contains("no session support"), "{error}");
    let results = links
        .send_batch(
            vec![session_dispatch(&pubkey, "s-1", "*")],
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(results, vec![failed("link_not_open")]);
    // The daemon link is not affected.
    assert_eq!(links.states()[0].1, LinkState::Open);
    links.shutdown().await;
    assert_eq!(links.states()[0].1, LinkState::Closed);
}
