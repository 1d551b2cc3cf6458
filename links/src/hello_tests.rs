use super::*;
use crate::config::ATTESTATION_TTL_DEFAULT;
use crate::identity::MemberKey;
use serde_json::Value;
use std::time::Duration;

/// Signatures made with libsodium's `crypto_sign_detached` (the copy the
/// integration tests use too).
const VECTORS: &str = include_str!("../tests/vectors/hello-signatures.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("vectors are JSON")
}

fn signature_of(vectors: &Value, kind: &str) -> String {
    vectors["vectors"]
        .as_array()
        .expect("a list of vectors")
        .iter()
        .find(|v| v["kind"] == kind)
        .and_then(|v| v["signature_hex"].as_str())
        .unwrap_or_else(|| panic!("no {kind} vector"))
        .to_string()
}

fn key(vectors: &Value, who: &str) -> MemberKey {
    let secret = vectors[who]["secret_key_hex"].as_str().expect("secret key");
    MemberKey::from_libsodium_hex(secret).expect("vector key parses")
}

fn mesh(vectors: &Value) -> MeshConfig {
    MeshConfig {
        slug: "main".into(),
        broker_url: "ws://127.0.0.1:1".into(),
        mesh_id: vectors["mesh_id"].as_str().expect("mesh_id").into(),
        member_id: vectors["member_id"].as_str().expect("member_id").into(),
        key: key(vectors, "member"),
        session_id: "daemon-session".into(),
        rate_limit_per_minute: 60,
        rate_limit_burst: 10,
        ca_certs: Vec::new(),
        ca_file: None,
    }
}

fn options() -> LinkOptions {
    LinkOptions {
        hostname: "host-a".into(),
        pid: 4242,
        cwd: "/srv/work".into(),
        channel: "sluice".into(),
        ..LinkOptions::default()
    }
}

fn session(vectors: &Value) -> SessionLinkConfig {
    SessionLinkConfig {
        mesh: "main".into(),
        session_id: "session-one".into(),
        key: key(vectors, "session"),
        attestation_ttl: ATTESTATION_TTL_DEFAULT,
    }
}

#[test]
fn the_daemon_hello_carries_cwd_and_session_id_and_the_libsodium_signature() {
    let v = vectors();
    let timestamp = v["timestamp_ms"].as_i64().expect("timestamp");
    let text = daemon_hello(&mesh(&v), &options(), timestamp).expect("encodes");
    let hello: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["meshId"], v["mesh_id"]);
    assert_eq!(hello["memberId"], v["member_id"]);
    assert_eq!(hello["pubkey"], v["member"]["public_key_hex"]);
    assert_eq!(hello["sessionId"], "daemon-session");
    assert_eq!(hello["cwd"], "/srv/work");
    assert_eq!(
        (&hello["pid"], &hello["hostname"], &hello["peerType"]),
        (
            &Value::from(4242),
            &Value::from("host-a"),
            &Value::from("ai")
        )
    );
    assert_eq!(hello["timestamp"], timestamp);
    assert_eq!(hello["signature"], signature_of(&v, "daemon-hello"));
}

#[test]
fn the_session_hello_signs_the_attestation_with_the_member_key_and_itself_with_the_session_key() {
    let v = vectors();
    let timestamp = v["timestamp_ms"].as_i64().expect("timestamp");
    let expires = v["attestation_expires_at_ms"].as_i64().expect("expiry");
    let text =
        session_hello(&mesh(&v), &session(&v), &options(), timestamp, expires).expect("encodes");
    let hello: Value = serde_json::from_str(&text).expect("JSON");
    let (member_pub, session_pub) = (
        &v["member"]["public_key_hex"],
        &v["session"]["public_key_hex"],
    );
    assert_eq!(hello["type"], "session_hello");
    assert_eq!(hello["meshId"], v["mesh_id"]);
    assert_eq!(hello["parentMemberId"], v["member_id"]);
    assert_eq!(&hello["parentMemberPubkey"], member_pub);
    assert_eq!(&hello["sessionPubkey"], session_pub);
    assert_eq!(hello["sessionId"], "session-one");
    assert_eq!(hello["cwd"], "/srv/work");
    assert_eq!(
        (&hello["pid"], &hello["peerType"]),
        (&Value::from(4242), &Value::from("ai"))
    );
    assert_eq!(hello["timestamp"], timestamp);
    assert_eq!(hello["signature"], signature_of(&v, "session-hello"));
    let attestation = &hello["parentAttestation"];
    assert_eq!(&attestation["sessionPubkey"], session_pub);
    assert_eq!(&attestation["parentMemberPubkey"], member_pub);
    assert_eq!(attestation["expiresAt"], expires);
    assert_eq!(
        attestation["signature"],
        signature_of(&v, "session-attestation")
    );
}

#[test]
fn each_session_hello_mints_an_attestation_valid_for_its_ttl_from_now() {
    let v = vectors();
    let mut config = session(&v);
    config.attestation_ttl = Duration::from_secs(3600);
    let greeting = Greeting::Session(Box::new(config));
    for now in [1_000_000, 5_000_000] {
        let text = hello_text(&greeting, &mesh(&v), &options(), now).expect("encodes");
        let hello: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(hello["timestamp"], now);
        assert_eq!(hello["parentAttestation"]["expiresAt"], now + 3_600_000);
    }
}
