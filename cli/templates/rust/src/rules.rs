//! The rules for one row, free of I/O: what to send, and what became of it.

use crate::bindings::exports::sluice::drain::policy::TickReport;
use crate::bindings::sluice::drain::types::{
    Delivery, Dispatch, Field, HoldPlan, Outcome, RetryPlan, Route, Row, SendResult, SessionState,
    Verdict,
};

pub const LEGACY_NONCE_BYTES: u32 = 24;

/// This policy's settings: its `[policy.{{name}}]` table in the config.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub batch_rows: u32,
    pub max_attempts: u32,
    pub backoff_base_ms: i64,
    pub backoff_cap_ms: i64,
    pub lease_ms: i64,
    pub ack_timeout_ms: u32,
    pub row_ttl_ms: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            batch_rows: 256,
            max_attempts: 10,
            backoff_base_ms: 1_000,
            backoff_cap_ms: 60_000,
            lease_ms: 30_000,
            ack_timeout_ms: 10_000,
            row_ttl_ms: 24 * 60 * 60 * 1000,
        }
    }
}

impl Settings {
    /// The defaults with `pairs` on top; an unknown key or a bad value is an
    /// error that names the key, and nothing changes.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Settings, String> {
        let mut s = Settings::default();
        for (key, value) in pairs {
            let number = || {
                value
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        format!("setting `{key}` = {value:?}: give a whole number above 0")
                    })
            };
            match key.as_str() {
                "batch_rows" => s.batch_rows = number()?.min(10_000),
                "max_attempts" => s.max_attempts = number()?,
                "backoff_base_ms" => s.backoff_base_ms = number()?.into(),
                "backoff_cap_ms" => s.backoff_cap_ms = number()?.into(),
                "lease_ms" => s.lease_ms = number()?.into(),
                "ack_timeout_ms" => s.ack_timeout_ms = number()?.min(3_600_000),
                "row_ttl_ms" => s.row_ttl_ms = number()?.into(),
                _ => {
                    return Err(format!(
                        "unknown setting `{key}`: this policy knows batch_rows, max_attempts, backoff_base_ms, backoff_cap_ms, lease_ms, ack_timeout_ms, row_ttl_ms"
                    ));
                }
            }
        }
        if s.lease_ms <= i64::from(s.ack_timeout_ms) {
            return Err(format!(
                "setting `lease_ms` ({}) must exceed `ack_timeout_ms` ({}): a lease must outlast the wait for an ack",
                s.lease_ms, s.ack_timeout_ms
            ));
        }
        Ok(s)
    }

    /// `base · 2^attempts`, capped.
    pub fn backoff_ms(&self, attempts: u32) -> i64 {
        let factor = 1i64 << attempts.min(30);
        self.backoff_base_ms
            .saturating_mul(factor)
            .min(self.backoff_cap_ms)
    }
}

/// What to do with a claimed row before any send.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Send(Dispatch),
    Dead(String),
    Retry(String),
}

/// An empty string is NULL, as the daemon writes it.
pub fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// The mesh whose daemon link (and budget) a row uses; Err names the mesh
/// no link exists for.
pub fn route_mesh(row: &Row, meshes: &[String]) -> Result<String, String> {
    match present(&row.mesh) {
        Some(mesh) if meshes.iter().any(|m| m == mesh) => Ok(mesh.to_string()),
        Some(mesh) => Err(mesh.to_string()),
        None if meshes.len() == 1 => Ok(meshes[0].clone()),
        None => Err("null".to_string()),
    }
}

pub fn decide(
    row: &Row,
    now: i64,
    settings: &Settings,
    meshes: &[String],
    sessions: &[(String, SessionState)],
    fresh_nonce: impl FnOnce() -> Vec<u8>,
) -> Decision {
    if let Some(defect) = &row.defect {
        return Decision::Dead(format!("malformed_row: {defect}"));
    }
    if now - row.enqueued_at > settings.row_ttl_ms {
        return Decision::Dead("expired".into());
    }
    let mesh = match route_mesh(row, meshes) {
        Ok(mesh) => mesh,
        Err(label) => return Decision::Dead(format!("no_broker_for_mesh:{label}")),
    };
    let fields = [
        ("target_spec", present(&row.target_spec)),
        ("nonce", present(&row.nonce)),
        ("ciphertext", present(&row.ciphertext)),
    ];
    let (target_spec, nonce, ciphertext) = match fields {
        [(_, Some(t)), (_, Some(n)), (_, Some(c))] => (t.into(), n.into(), c.into()),
        // A legacy row: a broadcast, with a fresh nonce.
        [(_, None), (_, None), (_, None)] => {
            ("*".into(), base64(&fresh_nonce()), base64(&row.payload))
        }
        // Never broadcast a half-routed direct message.
        _ => {
            let missing: Vec<&str> = fields
                .iter()
                .filter(|f| f.1.is_none())
                .map(|f| f.0)
                .collect();
            return Decision::Dead(format!("malformed_row: missing {}", missing.join(", ")));
        }
    };
    let route = match present(&row.sender_session_pubkey) {
        None => Route::Daemon(mesh),
        // A session's row goes over that session's link, or waits for it.
        Some(key) => match sessions.iter().find(|(k, _)| k == key) {
            Some((_, SessionState::Open)) => Route::Session(key.to_string()),
            _ => return Decision::Retry("session_ws_not_open".into()),
        },
    };
    let priority = row
        .priority
        .as_deref()
        .filter(|p| matches!(*p, "now" | "low"))
        .unwrap_or("next");
    Decision::Send(Dispatch {
        rowid: row.rowid,
        route,
        client_message_id: row.client_message_id.clone(),
        request_fingerprint_hex: row
            .request_fingerprint
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        target_spec,
        priority: priority.into(),
        nonce,
        ciphertext,
    })
}

/// Refused for the member's rate, or not written because its budget was
/// spent: not the row's fault.
pub fn rate_refused(result: &SendResult) -> bool {
    match result {
        SendResult::Rejected(text) => {
            let text = text.to_lowercase().replace(['_', '-'], " ");
            text.contains("rate limit") || text.contains("too many requests")
        }
        SendResult::Failed(reason) => reason == "rate_budget_empty",
        SendResult::Accepted(_) => false,
    }
}

/// Broker refusals no retry can fix.
fn permanent(text: &str) -> bool {
    let text = text.to_lowercase();
    [
        "payload too large",
        "forbidden",
        "not found",
        "invalid",
        "schema",
        "signature",
    ]
    .iter()
    .any(|p| text.contains(p))
}

pub fn judge(row: &Row, result: &SendResult, now: i64, settings: &Settings) -> Verdict {
    match result {
        SendResult::Accepted(id) => Verdict::Done(Delivery {
            broker_message_id: id.clone(),
            delivered_at: now,
        }),
        // Give the attempt back and come back in a second.
        r if rate_refused(r) => Verdict::Hold(HoldPlan {
            next_attempt_at: now + 1_000,
            last_error: None,
        }),
        SendResult::Rejected(text) if permanent(text) => Verdict::Dead(text.clone()),
        SendResult::Rejected(text) | SendResult::Failed(text) => retry(row, text, now, settings),
    }
}

pub fn retry(row: &Row, error: &str, now: i64, settings: &Settings) -> Verdict {
    if row.attempts >= settings.max_attempts {
        return Verdict::Dead(format!("max_attempts: {error}"));
    }
    Verdict::Retry(RetryPlan {
        next_attempt_at: now + settings.backoff_ms(row.attempts),
        last_error: error.to_string(),
    })
}

/// The report's counts of the settled verdicts.
pub fn tally(outcomes: &[Outcome]) -> TickReport {
    let mut r = TickReport {
        claimed: 0,
        done: 0,
        dead: 0,
        retried: 0,
        held: 0,
        reclaimed: 0,
        expired: 0,
        more_due: false,
        next_due_at: None,
    };
    for outcome in outcomes {
        match outcome.verdict {
            Verdict::Done(_) => r.done += 1,
            Verdict::Dead(_) => r.dead += 1,
            Verdict::Retry(_) => r.retried += 1,
            Verdict::Hold(_) => r.held += 1,
        }
    }
    r
}

pub fn fields(pairs: &[(&str, &str)]) -> Vec<Field> {
    pairs
        .iter()
        .map(|(k, v)| Field {
            key: k.to_string(),
            value: v.to_string(),
        })
        .collect()
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn row() -> Row {
        Row {
            rowid: 1,
            id: "r1".into(),
            client_message_id: "c1".into(),
            request_fingerprint: vec![0x01, 0xab],
            payload: b"hello".to_vec(),
            enqueued_at: NOW - 1_000,
            attempts: 1,
            mesh: Some("m".into()),
            target_spec: Some("peer".into()),
            nonce: Some("bm9uY2U=".into()),
            ciphertext: Some("Y3Q=".into()),
            priority: None,
            sender_session_pubkey: None,
            defect: None,
        }
    }

    fn decide_row(row: &Row) -> Decision {
        let meshes = ["m".to_string()];
        decide(row, NOW, &Settings::default(), &meshes, &[], || vec![0; 24])
    }

    #[test]
    fn a_routed_row_is_sent_with_its_own_content() {
        let Decision::Send(d) = decide_row(&row()) else {
            panic!("not sent")
        };
        assert_eq!(d.route, Route::Daemon("m".into()));
        assert_eq!(d.request_fingerprint_hex, "01ab");
        assert_eq!(
            (d.target_spec.as_str(), d.priority.as_str()),
            ("peer", "next")
        );
    }

    #[test]
    fn a_legacy_row_is_broadcast_and_a_half_routed_one_is_dead() {
        let legacy = Row {
            target_spec: Some(String::new()),
            nonce: None,
            ciphertext: None,
            ..row()
        };
        let Decision::Send(d) = decide_row(&legacy) else {
            panic!("not sent")
        };
        assert_eq!(
            (d.target_spec.as_str(), d.ciphertext.as_str()),
            ("*", "aGVsbG8=")
        );
        let half = Row {
            nonce: None,
            ..row()
        };
        assert_eq!(
            decide_row(&half),
            Decision::Dead("malformed_row: missing nonce".into())
        );
    }

    #[test]
    fn a_session_row_waits_for_its_session_and_an_unknown_mesh_is_dead() {
        let session = Row {
            sender_session_pubkey: Some("ab".repeat(32)),
            ..row()
        };
        assert_eq!(
            decide_row(&session),
            Decision::Retry("session_ws_not_open".into())
        );
        let elsewhere = Row {
            mesh: Some("x".into()),
            ..row()
        };
        assert_eq!(
            decide_row(&elsewhere),
            Decision::Dead("no_broker_for_mesh:x".into())
        );
    }

    #[test]
    fn rate_refusals_hold_and_other_failures_back_off_then_die() {
        let s = Settings::default();
        let refused = SendResult::Rejected("rate_limit: slow down".into());
        assert!(matches!(judge(&row(), &refused, NOW, &s), Verdict::Hold(_)));
        let timeout = SendResult::Failed("ack_timeout".into());
        assert!(matches!(
            judge(&row(), &timeout, NOW, &s),
            Verdict::Retry(_)
        ));
        let last = Row {
            attempts: s.max_attempts,
            ..row()
        };
        assert!(matches!(judge(&last, &timeout, NOW, &s), Verdict::Dead(_)));
        let forbidden = SendResult::Rejected("forbidden".into());
        assert_eq!(
            judge(&row(), &forbidden, NOW, &s),
            Verdict::Dead("forbidden".into())
        );
    }

    #[test]
    fn settings_errors_name_the_key() {
        let pairs = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert!(
            Settings::from_pairs(&pairs("nope", "1"))
                .unwrap_err()
                .contains("`nope`")
        );
        assert!(
            Settings::from_pairs(&pairs("max_attempts", "x"))
                .unwrap_err()
                .contains("`max_attempts`")
        );
        assert_eq!(
            Settings::from_pairs(&pairs("max_attempts", "3"))
                .unwrap()
                .max_attempts,
            3
        );
    }
}
