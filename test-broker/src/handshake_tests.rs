//! Hello checks against hand-made hellos, one broken part at a time.

use super::*;
use crate::members::Member;
use sluice_links::MemberKey;

const NOW: i64 = 1_767_225_600_000;
const HOUR_MS: i64 = 60 * 60 * 1000;

struct Keys {
    member: MemberKey,
    session: MemberKey,
}

fn keys() -> Keys {
    Keys {
        member: MemberKey::from_seed([7; 32]),
        session: MemberKey::from_seed([9; 32]),
    }
}

/// Owned parts of a session hello, so tests can break one at a time.
struct SessionParts {
    parent: String,
    session: String,
    expires_at: i64,
    attestation_signature: String,
    signature: String,
}

fn session_parts(keys: &Keys, expires_at: i64) -> SessionParts {
    let parent = keys.member.public_hex();
    let session = keys.session.public_hex();
    let attestation_signature = keys
        .member
        .sign_hex(&session_attestation_message(&parent, &session, expires_at));
    let signature = keys
        .session
        .sign_hex(&session_hello_message("mesh", &parent, &session, NOW));
    SessionParts {
        parent,
        session,
        expires_at,
        attestation_signature,
        signature,
    }
}

fn session_hello(parts: &SessionParts) -> wire::SessionHello<'_> {
    wire::SessionHello {
        kind: "session_hello".into(),
        mesh_id: "mesh".into(),
        parent_member_id: "mem".into(),
        parent_member_pubkey: parts.parent.as_str().into(),
        session_pubkey: parts.session.as_str().into(),
        parent_attestation: wire::Attestation {
            session_pubkey: parts.session.as_str().into(),
            parent_member_pubkey: parts.parent.as_str().into(),
            expires_at: parts.expires_at,
            signature: parts.attestation_signature.as_str().into(),
        },
        session_id: "s".into(),
        pid: 1,
        cwd: Some("/work".into()),
        hostname: "h".into(),
        peer_type: "ai".into(),
        channel: "c".into(),
        timestamp: NOW,
        signature: parts.signature.as_str().into(),
    }
}

fn code(result: Result<Peer, Refusal>) -> &'static str {
    match result {
        Ok(_) => "accepted",
        Err(refusal) => refusal.code,
    }
}

#[test]
fn a_well_signed_session_hello_is_accepted_as_the_session_key() {
    let keys = keys();
    let parts = session_parts(&keys, NOW + HOUR_MS);
    let peer = check_session_hello(&session_hello(&parts), &BrokerOptions::default(), NOW)
        .expect("accepted");
    assert_eq!(peer.pubkey, keys.session.public_hex());
    assert_eq!(peer.parent_pubkey, Some(keys.member.public_hex()));
}

#[test]
fn session_hellos_with_bad_attestations_get_the_real_brokers_codes() {
    let keys = keys();
    let options = BrokerOptions::default();
    let expired = session_parts(&keys, NOW - 1);
    assert_eq!(
        code(check_session_hello(&session_hello(&expired), &options, NOW)),
        "expired"
    );
    let too_long = session_parts(&keys, NOW + 25 * HOUR_MS);
    assert_eq!(
        code(check_session_hello(
            &session_hello(&too_long),
            &options,
            NOW
        )),
        "ttl_too_long"
    );
    let mut forged = session_parts(&keys, NOW + HOUR_MS);
    forged.attestation_signature = keys.session.sign_hex(&session_attestation_message(
        &forged.parent,
        &forged.session,
        forged.expires_at,
    ));
    assert_eq!(
        code(check_session_hello(&session_hello(&forged), &options, NOW)),
        "bad_signature"
    );
    let mut wrong_signer = session_parts(&keys, NOW + HOUR_MS);
    wrong_signer.signature = keys.member.sign_hex(&session_hello_message(
        "mesh",
        &wrong_signer.parent,
        &wrong_signer.session,
        NOW,
    ));
    assert_eq!(
        code(check_session_hello(
            &session_hello(&wrong_signer),
            &options,
            NOW
        )),
        "bad_signature"
    );
}

#[test]
fn a_session_of_a_member_not_in_the_mesh_is_unauthorized() {
    let keys = keys();
    let parts = session_parts(&keys, NOW + HOUR_MS);
    let stranger = MemberKey::from_seed([1; 32]).public_hex();
    let options = BrokerOptions {
        members: Some(vec![Member {
            mesh_id: "mesh".into(),
            member_id: None,
            public_key: stranger,
        }]),
        ..BrokerOptions::default()
    };
    assert_eq!(
        code(check_session_hello(&session_hello(&parts), &options, NOW)),
        "unauthorized"
    );
}

#[test]
fn a_listed_member_id_must_match_the_hello() {
    let key = MemberKey::from_seed([7; 32]);
    let pubkey = key.public_hex();
    let signature = key.sign_hex(&daemon_hello_message("mesh", "mem_b", &pubkey, NOW));
    let hello = wire::Hello {
        kind: "hello".into(),
        mesh_id: "mesh".into(),
        member_id: "mem_b".into(),
        pubkey: pubkey.as_str().into(),
        session_id: "s".into(),
        pid: 1,
        cwd: Some("/work".into()),
        hostname: "h".into(),
        peer_type: "ai".into(),
        channel: "c".into(),
        timestamp: NOW,
        signature: signature.as_str().into(),
    };
    let only = |member_id: &str| BrokerOptions {
        members: Some(vec![Member {
            mesh_id: "mesh".into(),
            member_id: Some(member_id.into()),
            public_key: pubkey.to_uppercase(),
        }]),
        ..BrokerOptions::default()
    };
    assert_eq!(
        code(check_hello(&hello, &only("mem_a"), NOW)),
        "unauthorized"
    );
    assert_eq!(code(check_hello(&hello, &only("mem_b"), NOW)), "accepted");
}

#[test]
fn session_hellos_with_misshapen_keys_are_refused_before_any_signature() {
    let keys = keys();
    let mut upper = session_parts(&keys, NOW + HOUR_MS);
    upper.session = upper.session.to_uppercase();
    assert_eq!(
        code(check_session_hello(
            &session_hello(&upper),
            &BrokerOptions::default(),
            NOW
        )),
        "bad_session_pubkey"
    );
    let parts = session_parts(&keys, NOW + HOUR_MS);
    let mut hello = session_hello(&parts);
    let other = MemberKey::from_seed([1; 32]).public_hex();
    hello.parent_attestation.session_pubkey = other.as_str().into();
    let refusal =
        check_session_hello(&hello, &BrokerOptions::default(), NOW).expect_err("mismatch");
    assert_eq!(refusal.code, "attestation_mismatch");
}

#[test]
fn refusals_carry_the_real_brokers_messages() {
    let message = |code: RefusalCode, session| code.refusal(session).message;
    assert_eq!(
        message(RefusalCode::BadSignature, false),
        "hello rejected: bad_signature"
    );
    assert_eq!(
        message(RefusalCode::TimestampSkew, false),
        "hello rejected: timestamp_skew"
    );
    assert_eq!(
        message(RefusalCode::BadSignature, true),
        "session_hello rejected: bad_signature"
    );
    assert_eq!(
        message(RefusalCode::Unauthorized, false),
        "pubkey not found in mesh"
    );
    assert_eq!(
        message(RefusalCode::Expired, true),
        "attestation rejected: expired"
    );
    assert_eq!(
        message(RefusalCode::Capacity, false),
        "mesh at connection capacity"
    );
    assert_eq!("timestamp_skew".parse(), Ok(RefusalCode::TimestampSkew));
    let error = "nope"
        .parse::<RefusalCode>()
        .expect_err("unknown")
        .to_string();
    assert!(error.contains("bad_signature, timestamp_skew"), "{error}");
}
