//! How `sluice outbox` prints rows: the table, the JSON, the inspection.
//!
//! Owns: layout and the text-or-hex rule for bytes. Not here: what is
//! read (the store) or the flags (`outbox.rs`).

use super::when::{relative, span, utc};
use serde_json::{Map, Value, json};
use sluice_store::{Entry, Inspection};

/// Characters of `last_error` a table row shows; the rest is elided (see
/// `inspect` or `--json` for the whole text) so one long error does not
/// wrap every line.
const ERROR_SHOWN_CHARS: usize = 48;

/// Bytes as text when they are UTF-8, else as hex: (text, "utf8" | "hex").
pub fn text_or_hex(bytes: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_string(), "utf8"),
        Err(_) => (hex::encode(bytes), "hex"),
    }
}

/// Every column of a row, for `--json`.
pub fn entry_json(e: &Entry) -> Value {
    let (payload, encoding) = text_or_hex(&e.payload);
    let mut m = Map::new();
    let mut put = |key: &str, value: Value| {
        m.insert(key.to_string(), value);
    };
    put("rowid", json!(e.rowid));
    put("id", json!(e.id));
    put("client_message_id", json!(e.client_message_id));
    put(
        "request_fingerprint",
        json!(hex::encode(&e.request_fingerprint)),
    );
    put("payload", json!(payload));
    put("payload_encoding", json!(encoding));
    put("enqueued_at", json!(e.enqueued_at));
    put("attempts", json!(e.attempts));
    put("next_attempt_at", json!(e.next_attempt_at));
    put("status", json!(e.status));
    put("last_error", json!(e.last_error));
    put("delivered_at", json!(e.delivered_at));
    put("broker_message_id", json!(e.broker_message_id));
    put("aborted_at", json!(e.aborted_at));
    put("aborted_by", json!(e.aborted_by));
    put("superseded_by", json!(e.superseded_by));
    put("mesh", json!(e.mesh));
    put("target_spec", json!(e.target_spec));
    put("nonce", json!(e.nonce));
    put("ciphertext", json!(e.ciphertext));
    put("priority", json!(e.priority));
    put("sender_session_pubkey", json!(e.sender_session_pubkey));
    put("decided_by", json!(e.decided_by));
    put("decided_at", json!(e.decided_at));
    Value::Object(m)
}

/// The row plus the deciding policy and the row it was requeued from.
pub fn inspection_json(seen: &Inspection) -> Value {
    let mut value = entry_json(&seen.entry);
    if let Value::Object(m) = &mut value {
        let policy = seen.policy.as_ref().map(|p| {
            json!({"sha256": p.sha256, "name": p.name, "version": p.version,
                   "source": p.source, "loaded_at": p.loaded_at, "reason": p.reason})
        });
        m.insert("decided_by_policy".into(), json!(policy));
        m.insert("requeued_from".into(), json!(seen.requeued_from));
    }
    value
}

/// The listing as an aligned table, one line per row.
pub fn table(entries: &[Entry], now: i64) -> String {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let lines: Vec<[String; 7]> = entries
        .iter()
        .map(|e| {
            [
                e.id.clone(),
                e.status.clone(),
                e.attempts.to_string(),
                span(now - e.enqueued_at),
                dash(&e.mesh),
                dash(&e.target_spec),
                shorten(e.last_error.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    let header = ["ID", "STATUS", "ATT", "AGE", "MESH", "TARGET", "LAST ERROR"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in std::iter::once(&header).chain(&lines) {
        let cells: Vec<String> = line
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= ERROR_SHOWN_CHARS {
        return text.to_string();
    }
    let kept: String = text.chars().take(ERROR_SHOWN_CHARS - 1).collect();
    format!("{kept}…")
}

/// Every column of one row and what decided it, one field a line.
pub fn inspection(seen: &Inspection, now: i64) -> String {
    let e = &seen.entry;
    let at = |ms: i64| format!("{} ({})", utc(ms), relative(ms, now));
    let opt_at = |ms: Option<i64>| ms.map_or_else(|| "-".to_string(), at);
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut lines = vec![
        ("id", format!("{} (rowid {})", e.id, e.rowid)),
        ("client_message_id", e.client_message_id.clone()),
        ("status", e.status.clone()),
        ("enqueued_at", at(e.enqueued_at)),
        ("attempts", e.attempts.to_string()),
        ("next_attempt_at", next_due(e, now)),
        ("last_error", opt(&e.last_error)),
        ("delivered_at", opt_at(e.delivered_at)),
        ("broker_message_id", opt(&e.broker_message_id)),
        ("decided_by", decided(seen)),
        ("decided_at", opt_at(e.decided_at)),
        ("aborted_at", opt_at(e.aborted_at)),
        ("aborted_by", opt(&e.aborted_by)),
        ("superseded_by", opt(&e.superseded_by)),
        ("requeued_from", opt(&seen.requeued_from)),
        (
            "mesh",
            e.mesh.clone().unwrap_or_else(|| "- (the only mesh)".into()),
        ),
        ("target_spec", opt(&e.target_spec)),
        ("priority", opt(&e.priority)),
        ("sender_session_pubkey", opt(&e.sender_session_pubkey)),
        ("nonce", opt(&e.nonce)),
        ("ciphertext", opt(&e.ciphertext)),
        (
            "request_fingerprint",
            format!("{} (hex)", hex::encode(&e.request_fingerprint)),
        ),
    ];
    let (payload, encoding) = text_or_hex(&e.payload);
    let how = if encoding == "utf8" {
        "UTF-8"
    } else {
        "not UTF-8, in hex"
    };
    lines.push((
        "payload",
        format!("({} bytes, {how}) {payload}", e.payload.len()),
    ));
    if e.target_spec.is_none() && e.nonce.is_none() && e.ciphertext.is_none() {
        lines.push((
            "routing",
            "none: a legacy row, its payload is broadcast".into(),
        ));
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    lines
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

/// When the row is next due, and what that means for its status.
fn next_due(e: &Entry, now: i64) -> String {
    let when = format!(
        "{} ({})",
        utc(e.next_attempt_at),
        relative(e.next_attempt_at, now)
    );
    match e.status.as_str() {
        "pending" => format!("{when}: due then"),
        "inflight" => format!("{when}: the drain's lease runs out then"),
        _ => format!("{when}: not due again ({})", e.status),
    }
}

fn decided(seen: &Inspection) -> String {
    match (&seen.entry.decided_by, &seen.policy) {
        (None, _) => "- (no policy decision recorded)".into(),
        (Some(sha), None) => format!("sha256 {sha} (not in sluice_policy_history)"),
        (Some(sha), Some(p)) => format!(
            "{} {} (sha256 {sha}, {}, loaded {} for {})",
            p.name,
            p.version,
            p.source,
            utc(p.loaded_at),
            p.reason
        ),
    }
}
