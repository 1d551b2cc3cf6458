//! Our signatures against ones made with libsodium: Ed25519 is
//! deterministic, so they must match byte for byte.

use serde::Deserialize;
use sluice_links::{
    KeyError, MemberKey, daemon_hello_message, session_attestation_message, session_hello_message,
    verify_hex,
};
use std::path::PathBuf;

#[derive(Deserialize)]
struct Vectors {
    member: KeyVector,
    session: KeyVector,
    mesh_id: String,
    member_id: String,
    timestamp_ms: i64,
    attestation_expires_at_ms: i64,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct KeyVector {
    seed_hex: String,
    public_key_hex: String,
    secret_key_hex: String,
}

#[derive(Deserialize)]
struct Vector {
    kind: String,
    signer: String,
    message: String,
    signature_hex: String,
}

fn load_vectors() -> Vectors {
    // Signatures made with libsodium's crypto_sign_detached, kept with the tests.
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/hello-signatures.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the libsodium test vectors at {}: {e}",
            path.display()
        )
    });
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("test vectors {} are not valid: {e}", path.display()))
}

fn key_of(vector: &KeyVector) -> MemberKey {
    let key =
        MemberKey::from_libsodium_hex(&vector.secret_key_hex).expect("vector secret key parses");
    assert_eq!(key.public_hex(), vector.public_key_hex);
    let mut seed = [0u8; 32];
    hex::decode_to_slice(&vector.seed_hex, &mut seed).expect("seed hex");
    assert_eq!(
        MemberKey::from_seed(seed).public_hex(),
        vector.public_key_hex,
        "seed and secret key give one key"
    );
    key
}

#[test]
fn the_three_signature_kinds_reproduce_the_libsodium_vectors() {
    let v = load_vectors();
    let (member, session) = (key_of(&v.member), key_of(&v.session));
    let (member_pub, session_pub) = (member.public_hex(), session.public_hex());
    assert_eq!(v.vectors.len(), 3);
    for vector in &v.vectors {
        let (message, signer) = match vector.kind.as_str() {
            "daemon-hello" => (
                daemon_hello_message(&v.mesh_id, &v.member_id, &member_pub, v.timestamp_ms),
                &member,
            ),
            "session-attestation" => (
                session_attestation_message(&member_pub, &session_pub, v.attestation_expires_at_ms),
                &member,
            ),
            "session-hello" => (
                session_hello_message(&v.mesh_id, &member_pub, &session_pub, v.timestamp_ms),
                &session,
            ),
            other => panic!("unknown vector kind {other}"),
        };
        assert_eq!(message, vector.message, "{} message", vector.kind);
        assert_eq!(
            &signer.public_hex(),
            if vector.signer == "member" {
                &member_pub
            } else {
                &session_pub
            }
        );
        assert_eq!(
            signer.sign_hex(&message),
            vector.signature_hex,
            "{} signature",
            vector.kind
        );
    }
}

#[test]
fn verify_accepts_the_vectors_and_rejects_a_flipped_bit() {
    let v = load_vectors();
    for vector in &v.vectors {
        let pubkey = if vector.signer == "member" {
            &v.member.public_key_hex
        } else {
            &v.session.public_key_hex
        };
        assert!(
            verify_hex(pubkey, &vector.message, &vector.signature_hex),
            "{} does not verify",
            vector.kind
        );
        let mut signature = hex::decode(&vector.signature_hex).expect("hex");
        signature[10] ^= 0x01;
        assert!(
            !verify_hex(pubkey, &vector.message, &hex::encode(&signature)),
            "{} verified with a flipped bit",
            vector.kind
        );
        let mut message = vector.message.clone().into_bytes();
        message[0] ^= 0x01;
        let message = String::from_utf8(message).expect("ascii");
        assert!(
            !verify_hex(pubkey, &message, &vector.signature_hex),
            "{} verified another message",
            vector.kind
        );
    }
}

#[test]
fn a_secret_key_with_halves_of_two_keys_is_refused_with_both_keys_named() {
    let v = load_vectors();
    let spliced = format!("{}{}", v.member.seed_hex, v.session.public_key_hex);
    match MemberKey::from_libsodium_hex(&spliced) {
        Err(e @ KeyError::Mismatch { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&v.session.public_key_hex) && text.contains(&v.member.public_key_hex),
                "{text}"
            );
            assert!(
                text.starts_with("member secret key halves disagree"),
                "{text}"
            );
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[test]
fn a_secret_key_that_is_not_128_hex_characters_is_refused_clearly() {
    let short = MemberKey::from_libsodium_hex("abcd")
        .expect_err("too short")
        .to_string();
    assert!(
        short.contains("4 hex characters") && short.contains("expected 128"),
        "{short}"
    );
    let not_hex = MemberKey::from_libsodium_hex(&"zz".repeat(64))
        .expect_err("not hex")
        .to_string();
    assert!(
        not_hex.starts_with("member secret key is not hex"),
        "{not_hex}"
    );
    let v = load_vectors();
    let padded = format!("  {}\n", v.member.secret_key_hex.to_uppercase());
    assert_eq!(
        MemberKey::from_libsodium_hex(&padded)
            .expect("whitespace and case are tolerated")
            .public_hex(),
        v.member.public_key_hex
    );
}
