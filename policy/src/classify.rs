//! One error classifier for both link kinds.
//!
//! The reference drain had two different regular expressions, one per link
//! kind, that disagreed. Here the broker's text (or the host's transport
//! error) is normalised once — lowercase, `_` and `-` read as spaces — and
//! matched against one table. Transient patterns are checked first, so a text
//! that mentions both (`auth timeout`) is retried rather than dropped; text
//! that matches nothing is transient, because giving up on a message that
//! could still be delivered is the worse mistake.

/// Whether a failure can succeed on a later attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    Permanent,
    Transient,
}

/// Failures that may clear by themselves: checked first.
const TRANSIENT: &[&str] = &[
    "rate limit",
    "too many requests",
    "timeout",
    "timed out",
    "closed",
    "not open",
    "no connected peer for target",
];

/// Failures no retry can fix.
const PERMANENT: &[&str] = &[
    "payload too large",
    "forbidden",
    "not found",
    "invalid",
    "schema",
    "auth",
    "signature",
    "blocked by recipient grants",
];

/// Refusals for the member's send rate rather than the message: the
/// broker's `rate_limit: max 60 msg/min (burst 10) — slow down`.
const RATE: &[&str] = &["rate limit", "too many requests"];

fn normalise(error: &str) -> String {
    error
        .chars()
        .map(|c| {
            if c == '_' || c == '-' {
                ' '
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Whether a rejection refuses the member's rate, not the message: such a
/// send spends no attempt and slows the whole member.
pub fn is_rate_limit(error: &str) -> bool {
    let text = normalise(error);
    RATE.iter().any(|p| text.contains(p))
}

/// Classifies a broker rejection or transport failure by its text.
pub fn classify(error: &str) -> ErrorClass {
    let text = normalise(error);
    if TRANSIENT.iter().any(|p| text.contains(p)) {
        ErrorClass::Transient
    } else if PERMANENT.iter().any(|p| text.contains(p)) {
        ErrorClass::Permanent
    } else {
        ErrorClass::Transient
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;

    #[test]
    fn rate_refusals_are_told_apart() {
        assert!(is_rate_limit(
            "rate_limit: max 60 msg/min (burst 10) — slow down"
        ));
        assert!(is_rate_limit("429 Too Many Requests"));
        assert!(!is_rate_limit("no connected peer for target"));
        assert!(!is_rate_limit("ack_timeout"));
    }

    #[test]
    fn the_design_table() {
        let table = [
            ("payload_too_large", Permanent),
            ("payload too large (65536 > 32768)", Permanent),
            ("Forbidden", Permanent),
            ("not_found", Permanent),
            ("target not found", Permanent),
            ("target_not_found: @bob", Permanent),
            ("invalid targetSpec", Permanent),
            ("schema violation: nonce", Permanent),
            ("auth required", Permanent),
            ("unauthorized", Permanent),
            ("not authorized", Permanent),
            ("bad_signature", Permanent),
            ("blocked by recipient grants", Permanent),
            ("rate_limited", Transient),
            ("rate limit exceeded", Transient),
            ("ack_timeout", Transient),
            ("timed out", Transient),
            ("link_closed", Transient),
            ("session_ws_not_open", Transient),
            ("link_not_open", Transient),
            ("no connected peer for target", Transient),
            ("no_connected_peer_for_target", Transient),
            ("internal error", Transient),
            ("", Transient),
            ("auth timeout", Transient),
        ];
        for (text, want) in table {
            assert_eq!(classify(text), want, "{text:?}");
        }
    }
}
