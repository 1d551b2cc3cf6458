//! The first frame of every link: a daemon `hello` or a `session_hello`,
//! built and signed.
//!
//! Owns: filling in both hellos (including `cwd` and `sessionId`, without
//! which the real broker answers nothing) and minting a session's parent
//! attestation. Pure: the clock is passed in, so the frames are tested
//! against libsodium's signatures. Does not own: the signed byte strings
//! (`identity`), the frame shapes (`wire`), or when a hello is sent (`link`).

use crate::config::{LinkOptions, MeshConfig, SessionLinkConfig};
use crate::identity::{daemon_hello_message, session_attestation_message, session_hello_message};
use crate::wire;

/// Which hello a link says, and with it which link it is.
#[derive(Clone, Debug)]
pub(crate) enum Greeting {
    /// `hello`, as the mesh's member.
    Daemon,
    /// `session_hello`, as this session key, attested by the member key.
    /// Boxed: a daemon greeting should not carry a session's size.
    Session(Box<SessionLinkConfig>),
}

/// The daemon hello of `mesh`, stamped `timestamp_ms`, as JSON text.
pub(crate) fn daemon_hello(
    mesh: &MeshConfig,
    options: &LinkOptions,
    timestamp_ms: i64,
) -> Result<String, serde_json::Error> {
    let pubkey = mesh.key.public_hex();
    let signature = mesh.key.sign_hex(&daemon_hello_message(
        &mesh.mesh_id,
        &mesh.member_id,
        &pubkey,
        timestamp_ms,
    ));
    serde_json::to_string(&wire::Hello {
        kind: "hello".into(),
        mesh_id: mesh.mesh_id.as_str().into(),
        member_id: mesh.member_id.as_str().into(),
        pubkey: pubkey.as_str().into(),
        session_id: mesh.session_id.as_str().into(),
        pid: options.pid,
        cwd: Some(options.cwd.as_str().into()),
        hostname: options.hostname.as_str().into(),
        peer_type: "ai".into(),
        channel: options.channel.as_str().into(),
        timestamp: timestamp_ms,
        signature: signature.as_str().into(),
    })
}

/// The session hello of `session` in `mesh`, stamped `timestamp_ms`, with a
/// fresh attestation that expires at `expires_at_ms`, as JSON text.
pub(crate) fn session_hello(
    mesh: &MeshConfig,
    session: &SessionLinkConfig,
    options: &LinkOptions,
    timestamp_ms: i64,
    expires_at_ms: i64,
) -> Result<String, serde_json::Error> {
    let parent = mesh.key.public_hex();
    let session_pub = session.key.public_hex();
    let attested = mesh.key.sign_hex(&session_attestation_message(
        &parent,
        &session_pub,
        expires_at_ms,
    ));
    let signature = session.key.sign_hex(&session_hello_message(
        &mesh.mesh_id,
        &parent,
        &session_pub,
        timestamp_ms,
    ));
    serde_json::to_string(&wire::SessionHello {
        kind: "session_hello".into(),
        mesh_id: mesh.mesh_id.as_str().into(),
        parent_member_id: mesh.member_id.as_str().into(),
        parent_member_pubkey: parent.as_str().into(),
        session_pubkey: session_pub.as_str().into(),
        parent_attestation: wire::Attestation {
            session_pubkey: session_pub.as_str().into(),
            parent_member_pubkey: parent.as_str().into(),
            expires_at: expires_at_ms,
            signature: attested.as_str().into(),
        },
        session_id: session.session_id.as_str().into(),
        pid: options.pid,
        cwd: Some(options.cwd.as_str().into()),
        hostname: options.hostname.as_str().into(),
        peer_type: "ai".into(),
        channel: options.channel.as_str().into(),
        timestamp: timestamp_ms,
        signature: signature.as_str().into(),
    })
}

/// The hello `greeting` says for `mesh` at `now_ms`; a session's
/// attestation is minted afresh, valid for its `attestation_ttl`.
pub(crate) fn hello_text(
    greeting: &Greeting,
    mesh: &MeshConfig,
    options: &LinkOptions,
    now_ms: i64,
) -> Result<String, serde_json::Error> {
    match greeting {
        Greeting::Daemon => daemon_hello(mesh, options, now_ms),
        Greeting::Session(session) => {
            let ttl_ms = i64::try_from(session.attestation_ttl.as_millis()).unwrap_or(i64::MAX);
            let expires_at_ms = now_ms.saturating_add(ttl_ms);
            session_hello(mesh, session, options, now_ms, expires_at_ms)
        }
    }
}

#[cfg(test)]
#[path = "hello_tests.rs"]
mod tests;
