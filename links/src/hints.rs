//! What to do about a broker's refusal: one hint per refusal code.
//!
//! Owns: the table from the broker's hello refusal codes (as seen on the
//! real broker and in its code) to a fix an operator can act on. Does not
//! own: the error that carries the hint (`link::LinkError`) or when it is
//! logged (`tracker`).

/// The fix for a hello refused with `code`.
pub(crate) fn refusal_hint(code: &str) -> &'static str {
    match code {
        "bad_signature" => {
            "the secret key does not sign as the public key the broker has for this member; check public_key/secret_key and mesh_id/member_id"
        }
        "unauthorized" => {
            "the key is not a member of this mesh; check mesh_id and that this public key was added to the mesh"
        }
        "timestamp_skew" => {
            "this machine's clock is off by more than 60 s from the broker's; sync it (NTP)"
        }
        "expired" | "ttl_too_long" => {
            "the broker refused the session attestation's lifetime; check this machine's clock and the session's attestation_ttl (at most 24 h)"
        }
        "revoked" => "this member or session key was revoked; add it to the mesh again",
        "capacity" => {
            "the mesh is at its connection limit; close other connections of the mesh or wait"
        }
        "malformed" | "invalid_hello" => {
            "the broker could not read the hello; this client and the broker disagree on the protocol, update one of them"
        }
        _ => "see the broker's log for this code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_seen_refusal_code_has_its_own_fix() {
        assert!(refusal_hint("bad_signature").contains("secret_key"));
        assert!(refusal_hint("unauthorized").contains("not a member"));
        assert!(refusal_hint("timestamp_skew").contains("clock"));
        assert!(refusal_hint("expired").contains("attestation_ttl"));
        assert_eq!(refusal_hint("expired"), refusal_hint("ttl_too_long"));
        assert!(refusal_hint("something_new").contains("broker's log"));
    }
}
