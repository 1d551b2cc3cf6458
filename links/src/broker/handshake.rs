//! The test broker's hello checks, as observed on the real broker.
//!
//! Owns: deciding whether a `hello` or `session_hello` is accepted, and the
//! refusal codes (`timestamp_skew`, `bad_signature`, `unauthorized`,
//! `expired`, `ttl_too_long`). Does not own: the frames on the socket or the
//! close that follows a refusal (`client`).

use super::ledger::Peer;
use super::options::BrokerOptions;
use crate::identity::{
    daemon_hello_message, session_attestation_message, session_hello_message, verify_hex,
};
use crate::wire;

/// The longest a member may let a session key speak for it: an attestation
/// valid for longer is refused as `ttl_too_long`, bounding the damage of a
/// leaked session key.
pub const ATTESTATION_TTL_MAX_MS: i64 = 24 * 60 * 60 * 1000;

/// Why a hello was refused: the `code` and `message` of the error frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: String) -> Refusal {
    Refusal { code, message }
}

/// Checks a daemon hello: timestamp, signature, then membership.
pub(crate) fn check_hello(
    hello: &wire::Hello<'_>,
    options: &BrokerOptions,
    now_ms: i64,
) -> Result<Peer, Refusal> {
    check_skew(hello.timestamp, options, now_ms)?;
    let message = daemon_hello_message(
        &hello.mesh_id,
        &hello.member_id,
        &hello.pubkey,
        hello.timestamp,
    );
    if !verify_hex(&hello.pubkey, &message, &hello.signature) {
        return Err(refuse(
            "bad_signature",
            "hello signature does not verify with pubkey".to_string(),
        ));
    }
    check_member(options, &hello.mesh_id, &hello.member_id, &hello.pubkey)?;
    Ok(Peer {
        mesh_id: hello.mesh_id.to_string(),
        member_id: hello.member_id.to_string(),
        pubkey: hello.pubkey.to_string(),
        parent_pubkey: None,
        connection: 0,
    })
}

/// Checks a session hello: timestamp, the attestation (same keys, not
/// expired, at most 24 h, signed by the member key), the hello signature
/// (by the session key), then the member's membership.
pub(crate) fn check_session_hello(
    hello: &wire::SessionHello<'_>,
    options: &BrokerOptions,
    now_ms: i64,
) -> Result<Peer, Refusal> {
    check_skew(hello.timestamp, options, now_ms)?;
    let attestation = &hello.parent_attestation;
    if *attestation.session_pubkey != *hello.session_pubkey
        || *attestation.parent_member_pubkey != *hello.parent_member_pubkey
    {
        return Err(refuse(
            "bad_signature",
            "attestation is for other keys than the hello".to_string(),
        ));
    }
    if attestation.expires_at <= now_ms {
        return Err(refuse(
            "expired",
            format!("attestation expired at {}", attestation.expires_at),
        ));
    }
    if attestation.expires_at - now_ms > ATTESTATION_TTL_MAX_MS {
        return Err(refuse(
            "ttl_too_long",
            "attestation is valid for more than 24 h".to_string(),
        ));
    }
    let attested = session_attestation_message(
        &hello.parent_member_pubkey,
        &hello.session_pubkey,
        attestation.expires_at,
    );
    if !verify_hex(
        &hello.parent_member_pubkey,
        &attested,
        &attestation.signature,
    ) {
        return Err(refuse(
            "bad_signature",
            "attestation signature does not verify with the member key".to_string(),
        ));
    }
    let message = session_hello_message(
        &hello.mesh_id,
        &hello.parent_member_pubkey,
        &hello.session_pubkey,
        hello.timestamp,
    );
    if !verify_hex(&hello.session_pubkey, &message, &hello.signature) {
        return Err(refuse(
            "bad_signature",
            "session hello signature does not verify with the session key".to_string(),
        ));
    }
    check_member(
        options,
        &hello.mesh_id,
        &hello.parent_member_id,
        &hello.parent_member_pubkey,
    )?;
    Ok(Peer {
        mesh_id: hello.mesh_id.to_string(),
        member_id: hello.parent_member_id.to_string(),
        pubkey: hello.session_pubkey.to_string(),
        parent_pubkey: Some(hello.parent_member_pubkey.to_string()),
        connection: 0,
    })
}

fn check_skew(timestamp_ms: i64, options: &BrokerOptions, now_ms: i64) -> Result<(), Refusal> {
    let allowed = i64::try_from(options.skew_allowed().as_millis()).unwrap_or(i64::MAX);
    let skew = now_ms.saturating_sub(timestamp_ms).saturating_abs();
    if skew > allowed {
        return Err(refuse(
            "timestamp_skew",
            format!("hello timestamp is {skew} ms from broker time (allowed {allowed} ms)"),
        ));
    }
    Ok(())
}

fn check_member(
    options: &BrokerOptions,
    mesh_id: &str,
    member_id: &str,
    pubkey: &str,
) -> Result<(), Refusal> {
    match &options.members {
        Some(members) if !members.iter().any(|m| m.admits(mesh_id, member_id, pubkey)) => {
            Err(refuse(
                "unauthorized",
                format!("key {pubkey} is not a member of mesh {mesh_id}"),
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
