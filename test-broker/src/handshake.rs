//! The test broker's hello checks, in the real broker's order and with its
//! codes and messages (`apps/broker/src/index.ts`, `crypto.ts`).
//!
//! Owns: deciding whether a `hello` or `session_hello` is accepted, and the
//! refusals (`RefusalCode`, `Refusal`). Does not own: the capacity check
//! and the `cwd` rule (`answer`, which needs the presences), the frames on
//! the socket or the close that follows a refusal (`client`).

use super::options::{BrokerOptions, OptionError};
use super::stats::Peer;
use sluice_links::wire;
use sluice_links::{
    daemon_hello_message, session_attestation_message, session_hello_message, verify_hex,
};
use std::str::FromStr;

/// The longest a member may let a session key speak for it: an attestation
/// valid for longer is refused as `ttl_too_long`, bounding the damage of a
/// leaked session key.
pub const ATTESTATION_TTL_MAX_MS: i64 = 24 * 60 * 60 * 1000;

/// A refusal the broker can be told to give (`BrokerOptions::refuse_hellos`,
/// `refuse_hello_first`): each with the real broker's code and message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RefusalCode {
    #[default]
    BadSignature,
    TimestampSkew,
    Malformed,
    Unauthorized,
    Expired,
    TtlTooLong,
    Capacity,
}

impl RefusalCode {
    pub const ALL: [RefusalCode; 7] = [
        RefusalCode::BadSignature,
        RefusalCode::TimestampSkew,
        RefusalCode::Malformed,
        RefusalCode::Unauthorized,
        RefusalCode::Expired,
        RefusalCode::TtlTooLong,
        RefusalCode::Capacity,
    ];

    /// The `code` of the error frame (and the close reason).
    pub fn code(self) -> &'static str {
        match self {
            RefusalCode::BadSignature => "bad_signature",
            RefusalCode::TimestampSkew => "timestamp_skew",
            RefusalCode::Malformed => "malformed",
            RefusalCode::Unauthorized => "unauthorized",
            RefusalCode::Expired => "expired",
            RefusalCode::TtlTooLong => "ttl_too_long",
            RefusalCode::Capacity => "capacity",
        }
    }

    /// The refusal with the real broker's message for a daemon or session hello.
    pub(crate) fn refusal(self, session: bool) -> Refusal {
        let code = self.code();
        let prefix = if session { "session_hello" } else { "hello" };
        let message = match self {
            RefusalCode::BadSignature | RefusalCode::TimestampSkew | RefusalCode::Malformed => {
                format!("{prefix} rejected: {code}")
            }
            RefusalCode::Unauthorized if session => "parent pubkey not found in mesh".into(),
            RefusalCode::Unauthorized => "pubkey not found in mesh".into(),
            RefusalCode::Expired | RefusalCode::TtlTooLong => {
                format!("attestation rejected: {code}")
            }
            RefusalCode::Capacity => "mesh at connection capacity".into(),
        };
        Refusal { code, message }
    }
}

impl FromStr for RefusalCode {
    type Err = OptionError;

    fn from_str(text: &str) -> Result<RefusalCode, OptionError> {
        RefusalCode::ALL
            .into_iter()
            .find(|code| code.code() == text)
            .ok_or_else(|| OptionError::RefusalCode {
                code: text.to_string(),
                known: RefusalCode::ALL.map(RefusalCode::code).join(", "),
            })
    }
}

/// Why a hello was refused: the `code` and `message` of the error frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: &str) -> Refusal {
    Refusal {
        code,
        message: message.to_string(),
    }
}

/// Checks a daemon hello: timestamp, shape, signature, then membership.
pub(crate) fn check_hello(
    hello: &wire::Hello<'_>,
    options: &BrokerOptions,
    now_ms: i64,
) -> Result<Peer, Refusal> {
    check_skew(hello.timestamp, options, now_ms).map_err(|code| code.refusal(false))?;
    if !is_hex(&hello.pubkey, 64) || !is_hex(&hello.signature, 128) {
        return Err(RefusalCode::Malformed.refusal(false));
    }
    let message = daemon_hello_message(
        &hello.mesh_id,
        &hello.member_id,
        &hello.pubkey,
        hello.timestamp,
    );
    if !verify_hex(&hello.pubkey, &message, &hello.signature) {
        return Err(RefusalCode::BadSignature.refusal(false));
    }
    match membership(options, &hello.mesh_id, &hello.member_id, &hello.pubkey) {
        Membership::Member => {}
        Membership::Stranger | Membership::OtherMemberId => {
            return Err(RefusalCode::Unauthorized.refusal(false));
        }
    }
    Ok(Peer {
        mesh_id: hello.mesh_id.to_string(),
        member_id: hello.member_id.to_string(),
        pubkey: hello.pubkey.to_string(),
        parent_pubkey: None,
        session_id: hello.session_id.to_string(),
        connection: 0,
    })
}

/// Checks a session hello as the real broker does: key shapes, the
/// attestation (same keys, not expired, at most 24 h, signed by the member
/// key), the hello (timestamp, signed by the session key), then the
/// member's membership.
pub(crate) fn check_session_hello(
    hello: &wire::SessionHello<'_>,
    options: &BrokerOptions,
    now_ms: i64,
) -> Result<Peer, Refusal> {
    if !is_lower_hex(&hello.session_pubkey, 64) {
        return Err(refuse(
            "bad_session_pubkey",
            "sessionPubkey must be 64 lowercase hex chars",
        ));
    }
    if !is_lower_hex(&hello.parent_member_pubkey, 64) {
        return Err(refuse(
            "bad_parent_pubkey",
            "parentMemberPubkey must be 64 lowercase hex chars",
        ));
    }
    let attestation = &hello.parent_attestation;
    if *attestation.session_pubkey != *hello.session_pubkey
        || *attestation.parent_member_pubkey != *hello.parent_member_pubkey
    {
        return Err(refuse(
            "attestation_mismatch",
            "parentAttestation does not bind the claimed session+parent pubkeys",
        ));
    }
    check_attestation(hello, now_ms).map_err(|code| code.refusal(true))?;
    check_skew(hello.timestamp, options, now_ms).map_err(|code| code.refusal(true))?;
    if !is_hex(&hello.signature, 128) {
        return Err(RefusalCode::Malformed.refusal(true));
    }
    let message = session_hello_message(
        &hello.mesh_id,
        &hello.parent_member_pubkey,
        &hello.session_pubkey,
        hello.timestamp,
    );
    if !verify_hex(&hello.session_pubkey, &message, &hello.signature) {
        return Err(RefusalCode::BadSignature.refusal(true));
    }
    let parent = &hello.parent_member_pubkey;
    match membership(options, &hello.mesh_id, &hello.parent_member_id, parent) {
        Membership::Member => {}
        Membership::Stranger => return Err(RefusalCode::Unauthorized.refusal(true)),
        Membership::OtherMemberId => {
            return Err(refuse(
                "parent_member_id_mismatch",
                "parentMemberId does not match parentMemberPubkey",
            ));
        }
    }
    Ok(Peer {
        mesh_id: hello.mesh_id.to_string(),
        member_id: hello.parent_member_id.to_string(),
        pubkey: hello.session_pubkey.to_string(),
        parent_pubkey: Some(parent.to_string()),
        session_id: hello.session_id.to_string(),
        connection: 0,
    })
}

fn check_attestation(hello: &wire::SessionHello<'_>, now_ms: i64) -> Result<(), RefusalCode> {
    let attestation = &hello.parent_attestation;
    if attestation.expires_at <= now_ms {
        return Err(RefusalCode::Expired);
    }
    if attestation.expires_at - now_ms > ATTESTATION_TTL_MAX_MS {
        return Err(RefusalCode::TtlTooLong);
    }
    if !is_hex(&attestation.signature, 128) {
        return Err(RefusalCode::Malformed);
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
        return Err(RefusalCode::BadSignature);
    }
    Ok(())
}

fn check_skew(timestamp_ms: i64, options: &BrokerOptions, now_ms: i64) -> Result<(), RefusalCode> {
    let allowed = i64::try_from(options.skew_allowed().as_millis()).unwrap_or(i64::MAX);
    let skew = now_ms.saturating_sub(timestamp_ms).saturating_abs();
    if skew > allowed {
        return Err(RefusalCode::TimestampSkew);
    }
    Ok(())
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

enum Membership {
    Member,
    /// The key is not listed for the mesh.
    Stranger,
    /// The key is listed, under another member id.
    OtherMemberId,
}

fn membership(options: &BrokerOptions, mesh_id: &str, member_id: &str, pubkey: &str) -> Membership {
    let Some(members) = &options.members else {
        return Membership::Member;
    };
    if members.iter().any(|m| m.admits(mesh_id, member_id, pubkey)) {
        Membership::Member
    } else if members.iter().any(|m| m.admits(mesh_id, "", pubkey)) {
        Membership::OtherMemberId
    } else {
        Membership::Stranger
    }
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
