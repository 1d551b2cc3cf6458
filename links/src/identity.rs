//! Member keys and the three signed messages of the claudemesh handshake.
//!
//! Owns: parsing libsodium secret keys, signing, verifying, and the exact
//! byte strings that get signed. Does not own: the frames that carry the
//! signatures (`wire`) or when a hello is sent (`link`).
//!
//! Ed25519 is deterministic, so a signature made here equals libsodium's
//! `crypto_sign_detached` over the same message, byte for byte; the tests
//! hold this against vectors made with libsodium.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of libsodium's secret key in hex: a 32-byte seed, then the 32-byte
/// public key.
const LIBSODIUM_SECRET_HEX_LEN: usize = 128;

/// Why a member secret key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "member secret key has the wrong length: {0} hex characters; expected 128 (libsodium's 64-byte secret key: seed then public key)"
    )]
    Length(usize),
    #[error("member secret key is not hex: {0}; write it as 128 hex characters")]
    Hex(#[from] hex::FromHexError),
    #[error(
        "member secret key halves disagree: public half {given} is not the key of the seed half (which gives {derived}); copy the whole libsodium secret key, not parts of two"
    )]
    Mismatch { given: String, derived: String },
}

/// A member's (or a session's) Ed25519 signing key.
#[derive(Clone)]
pub struct MemberKey(SigningKey);

impl MemberKey {
    /// Parses libsodium's secret key form, `seed || public` in hex, and checks
    /// that the public half belongs to the seed: a key pasted together from two
    /// members would otherwise sign hellos the broker rejects as
    /// `bad_signature`, far from the mistake.
    pub fn from_libsodium_hex(secret_hex: &str) -> Result<MemberKey, KeyError> {
        let secret_hex = secret_hex.trim();
        if secret_hex.len() != LIBSODIUM_SECRET_HEX_LEN {
            return Err(KeyError::Length(secret_hex.len()));
        }
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(secret_hex, &mut bytes)?;
        let (seed, public) = bytes.split_at(32);
        let mut seed_bytes = [0u8; 32];
        seed_bytes.copy_from_slice(seed);
        let key = MemberKey::from_seed(seed_bytes);
        let derived = key.0.verifying_key().to_bytes();
        if derived.as_slice() != public {
            return Err(KeyError::Mismatch {
                given: hex::encode(public),
                derived: hex::encode(derived),
            });
        }
        Ok(key)
    }

    /// The key whose seed is `seed` (libsodium's `crypto_sign_seed_keypair`).
    pub fn from_seed(seed: [u8; 32]) -> MemberKey {
        MemberKey(SigningKey::from_bytes(&seed))
    }

    /// The public key as 64 lowercase hex characters, as the broker expects it.
    pub fn public_hex(&self) -> String {
        hex::encode(self.0.verifying_key().to_bytes())
    }

    /// The detached signature of the UTF-8 bytes of `message`, in lowercase hex.
    pub fn sign_hex(&self, message: &str) -> String {
        hex::encode(self.0.sign(message.as_bytes()).to_bytes())
    }
}

impl fmt::Debug for MemberKey {
    /// Shows the public key only: a secret must never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MemberKey")
            .field(&self.public_hex())
            .finish()
    }
}

/// What a daemon hello signs: `meshId|memberId|pubkey|timestamp`.
pub fn daemon_hello_message(
    mesh_id: &str,
    member_id: &str,
    pubkey_hex: &str,
    timestamp_ms: i64,
) -> String {
    format!("{mesh_id}|{member_id}|{pubkey_hex}|{timestamp_ms}")
}

/// What a member signs to let a session key speak for it until `expires_at_ms`.
pub fn session_attestation_message(
    parent_pubkey_hex: &str,
    session_pubkey_hex: &str,
    expires_at_ms: i64,
) -> String {
    format!("claudemesh-session-attest|{parent_pubkey_hex}|{session_pubkey_hex}|{expires_at_ms}")
}

/// What a session hello signs, with the session key.
pub fn session_hello_message(
    mesh_id: &str,
    parent_pubkey_hex: &str,
    session_pubkey_hex: &str,
    timestamp_ms: i64,
) -> String {
    format!(
        "claudemesh-session-hello|{mesh_id}|{parent_pubkey_hex}|{session_pubkey_hex}|{timestamp_ms}"
    )
}

/// Whether `signature_hex` is a valid signature of `message` by `pubkey_hex`.
///
/// Malformed hex, a key that is not a curve point, or a weak (small-order)
/// key all answer `false`: to a verifier they are all just "not signed".
pub fn verify_hex(pubkey_hex: &str, message: &str, signature_hex: &str) -> bool {
    let mut key_bytes = [0u8; 32];
    let mut signature_bytes = [0u8; 64];
    if hex::decode_to_slice(pubkey_hex, &mut key_bytes).is_err()
        || hex::decode_to_slice(signature_hex, &mut signature_bytes).is_err()
    {
        return false;
    }
    let Ok(key) = VerifyingKey::from_bytes(&key_bytes) else {
        return false;
    };
    // Strict verification rejects the malleable and small-order cases that
    // libsodium's verifier rejects too.
    key.verify_strict(message.as_bytes(), &Signature::from_bytes(&signature_bytes))
        .is_ok()
}

/// Wall-clock milliseconds since the Unix epoch: the clock hellos are
/// stamped with and checked against.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_verifies_its_own_signature_and_not_another_message() {
        let key = MemberKey::from_seed([3; 32]);
        let signature = key.sign_hex("a|b|c|1");
        assert!(verify_hex(&key.public_hex(), "a|b|c|1", &signature));
        assert!(!verify_hex(&key.public_hex(), "a|b|c|2", &signature));
        assert!(!verify_hex("zz", "a|b|c|1", &signature));
    }

    #[test]
    fn debug_output_never_shows_the_seed() {
        let key = MemberKey::from_seed([0xab; 32]);
        let shown = format!("{key:?}");
        assert!(shown.contains(&key.public_hex()));
        assert!(!shown.contains(&"ab".repeat(32)));
    }

    #[test]
    fn messages_join_their_fields_in_protocol_order() {
        assert_eq!(daemon_hello_message("m", "u", "p", 7), "m|u|p|7");
        assert_eq!(
            session_attestation_message("p", "s", 9),
            "claudemesh-session-attest|p|s|9"
        );
        assert_eq!(
            session_hello_message("m", "p", "s", 9),
            "claudemesh-session-hello|m|p|s|9"
        );
    }
}
