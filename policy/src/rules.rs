//! The decisions of the default policy for one row, free of I/O.
//!
//! `decide` looks at a claimed row before anything is sent: where it goes and
//! what goes out, or why it is settled without sending. `judge` turns what the
//! host reports for a dispatch into a verdict. Both are pure; `tick` wires
//! them to the imports.

use crate::classify::{ErrorClass, classify};
use crate::settings::Settings;
use crate::types::{Dispatch, Level, Route, Row, SendResult, SessionState, TimestampMs, Verdict};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Bytes of the fresh nonce a legacy row is broadcast with.
pub const LEGACY_NONCE_BYTES: u32 = 24;

/// A log line a decision wants written: stable event name plus fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    pub event: &'static str,
    pub fields: Vec<(String, String)>,
}

/// What to do with a claimed row before sending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Send(Dispatch),
    /// Settle as dead without sending.
    Dead {
        reason: String,
        log: Option<LogLine>,
    },
    /// Retry later without sending (counts an attempt; may hit the cap).
    Retry {
        error: String,
        log: Option<LogLine>,
    },
}

/// What the tick learned from the host before deciding.
#[derive(Debug)]
pub struct View<'a> {
    pub now: TimestampMs,
    pub settings: &'a Settings,
    /// Meshes the host has a daemon link for.
    pub meshes: &'a [String],
    /// Session link state per pubkey the batch mentions.
    pub sessions: &'a [(String, SessionState)],
}

impl View<'_> {
    /// The state of the session link for `pubkey`; absent when unknown.
    pub fn session_state(&self, pubkey: &str) -> SessionState {
        self.sessions
            .iter()
            .find(|(key, _)| key == pubkey)
            .map_or(SessionState::Absent, |(_, state)| *state)
    }
}

/// Treats an empty column like a NULL one, as the reference drain did.
fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

fn line(level: Level, event: &'static str, row: &Row, extra: &[(&str, String)]) -> Option<LogLine> {
    let mut fields = vec![("id".to_string(), row.id.clone())];
    fields.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    Some(LogLine {
        level,
        event,
        fields,
    })
}

/// Decides what to do with `row`. `fresh_nonce` is called only for a legacy
/// row, which is broadcast with a new random nonce.
pub fn decide(row: &Row, view: &View<'_>, fresh_nonce: &mut dyn FnMut() -> Vec<u8>) -> Decision {
    if let Some(defect) = &row.defect {
        let reason = format!("malformed_row: {defect}");
        let log = line(
            Level::Warn,
            "drain_malformed_row",
            row,
            &[("err", reason.clone())],
        );
        return Decision::Dead { reason, log };
    }
    if view.now - row.enqueued_at > view.settings.row_ttl_ms {
        let age = (view.now - row.enqueued_at).to_string();
        let log = line(Level::Warn, "drain_expired_rows", row, &[("age_ms", age)]);
        return Decision::Dead {
            reason: "expired".into(),
            log,
        };
    }
    let mesh = match route_mesh(row, view.meshes) {
        Ok(mesh) => mesh,
        Err(label) => {
            let log = line(
                Level::Warn,
                "drain_no_broker_for_mesh",
                row,
                &[("mesh", label.clone())],
            );
            return Decision::Dead {
                reason: format!("no_broker_for_mesh:{label}"),
                log,
            };
        }
    };
    let (target_spec, nonce, ciphertext, priority) = match payload_fields(row) {
        Ok(PayloadFields::Routed {
            target_spec,
            nonce,
            ciphertext,
            priority,
        }) => (
            target_spec.to_string(),
            nonce.to_string(),
            ciphertext.to_string(),
            priority,
        ),
        Ok(PayloadFields::Legacy) => {
            let nonce = BASE64.encode(fresh_nonce());
            ("*".to_string(), nonce, BASE64.encode(&row.payload), "next")
        }
        Err(missing) => {
            let reason = format!("malformed_row: missing {}", missing.join(", "));
            let log = line(
                Level::Warn,
                "drain_malformed_row",
                row,
                &[("err", reason.clone())],
            );
            return Decision::Dead { reason, log };
        }
    };
    let route = match present(&row.sender_session_pubkey) {
        None => Route::Daemon(mesh),
        Some(pubkey) => match session_route(row, pubkey, view) {
            Ok(route) => route,
            Err(decision) => return *decision,
        },
    };
    Decision::Send(Dispatch {
        rowid: row.rowid,
        route,
        client_message_id: row.client_message_id.clone(),
        request_fingerprint_hex: hex(&row.request_fingerprint),
        target_spec,
        priority: priority.to_string(),
        nonce,
        ciphertext,
    })
}

/// The mesh a row's daemon link is keyed by, or the label of the missing one.
/// A session row's mesh is the member whose send budget it spends.
pub fn route_mesh(row: &Row, meshes: &[String]) -> Result<String, String> {
    match present(&row.mesh) {
        Some(mesh) if meshes.iter().any(|m| m == mesh) => Ok(mesh.to_string()),
        Some(mesh) => Err(mesh.to_string()),
        None if meshes.len() == 1 => Ok(meshes[0].clone()),
        None => Err("null".to_string()),
    }
}

enum PayloadFields<'a> {
    Routed {
        target_spec: &'a str,
        nonce: &'a str,
        ciphertext: &'a str,
        priority: &'static str,
    },
    /// All three routing columns are missing: a row from before they existed.
    Legacy,
}

/// The routed fields of a row, or the names of the ones missing from a row
/// that has some but not all: broadcasting such a row would leak a direct
/// message to the whole mesh.
fn payload_fields(row: &Row) -> Result<PayloadFields<'_>, Vec<&'static str>> {
    let fields = [
        ("target_spec", present(&row.target_spec)),
        ("nonce", present(&row.nonce)),
        ("ciphertext", present(&row.ciphertext)),
    ];
    match fields {
        [
            (_, Some(target_spec)),
            (_, Some(nonce)),
            (_, Some(ciphertext)),
        ] => {
            let priority = match row.priority.as_deref() {
                Some("now") => "now",
                Some("low") => "low",
                _ => "next",
            };
            Ok(PayloadFields::Routed {
                target_spec,
                nonce,
                ciphertext,
                priority,
            })
        }
        [(_, None), (_, None), (_, None)] => Ok(PayloadFields::Legacy),
        _ => Err(fields
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(name, _)| *name)
            .collect()),
    }
}

/// A session row goes over its session's link or not at all: it was
/// encrypted for the session, and a daemon-link send would change its sender.
fn session_route(row: &Row, pubkey: &str, view: &View<'_>) -> Result<Route, Box<Decision>> {
    let short: String = pubkey.chars().take(12).collect();
    match view.session_state(pubkey) {
        SessionState::Open => Ok(Route::Session(pubkey.to_string())),
        SessionState::Absent
            if view.now - row.enqueued_at > view.settings.session_gone_after_ms =>
        {
            let log = line(
                Level::Warn,
                "drain_session_gone",
                row,
                &[("session_pubkey", short)],
            );
            Err(Box::new(Decision::Dead {
                reason: "session_gone".into(),
                log,
            }))
        }
        SessionState::Absent | SessionState::Connecting => {
            let every = view.settings.session_not_ready_log_every;
            let log = if row.attempts == 1 || row.attempts.is_multiple_of(every) {
                let attempts = row.attempts.to_string();
                line(
                    Level::Info,
                    "drain_session_ws_not_ready",
                    row,
                    &[("session_pubkey", short), ("attempts", attempts)],
                )
            } else {
                None
            };
            Err(Box::new(Decision::Retry {
                error: "session_ws_not_open".into(),
                log,
            }))
        }
    }
}

/// Turns the host's report for a dispatch into a verdict. `now` is read after
/// the sends returned.
pub fn judge(
    row: &Row,
    result: &SendResult,
    now: TimestampMs,
    settings: &Settings,
) -> (Verdict, Option<LogLine>) {
    match result {
        SendResult::Accepted(id) => (
            Verdict::Done {
                broker_message_id: id.clone(),
                delivered_at: now,
            },
            None,
        ),
        SendResult::Rejected(error) if classify(error) == ErrorClass::Permanent => {
            let log = line(
                Level::Warn,
                "drain_permanent_failure",
                row,
                &[("err", error.clone())],
            );
            (
                Verdict::Dead {
                    reason: error.clone(),
                },
                log,
            )
        }
        SendResult::Rejected(error) => retry(row, error, now, settings, None),
        // A transport failure says nothing about the message: always
        // transient. It is logged once per tick and link (`tick`), not per
        // row: a link that is down would otherwise write a line per row.
        SendResult::Failed(error) => retry(row, error, now, settings, None),
    }
}

/// A retry with backoff, or dead `max_attempts` once the row has used them all.
pub fn retry(
    row: &Row,
    error: &str,
    now: TimestampMs,
    settings: &Settings,
    log: Option<LogLine>,
) -> (Verdict, Option<LogLine>) {
    if row.attempts >= settings.max_attempts {
        let log = line(
            Level::Warn,
            "drain_max_attempts",
            row,
            &[("err", error.to_string())],
        );
        return (
            Verdict::Dead {
                reason: format!("max_attempts: {error}"),
            },
            log,
        );
    }
    let next_attempt_at = now.saturating_add(settings.backoff_ms(row.attempts));
    (
        Verdict::Retry {
            next_attempt_at,
            last_error: error.to_string(),
        },
        log,
    )
}

/// Lowercase hex, as the wire wants the request fingerprint.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}
