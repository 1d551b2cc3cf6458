//! `sluice enqueue`: adds rows the way a producer would, then wakes drainers.
//!
//! Owns: reading rows from flags or JSON lines, their fingerprint (SHA-256 of
//! the payload unless given), and reporting each row's outcome. Idempotent
//! under `client_message_id`: a repeat is accepted as the existing row or is a
//! conflict, by the store's accept table (`Outbox::enqueue_idempotent`).
//! Exit 0 when every row was accepted, [`EXIT_CONFLICT`] when one was not.

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::Args;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use sluice::config::Config;
use sluice::wake;
use sluice::world::now_ms;
use sluice_store::enqueue::EnqueueOutcome;
use sluice_store::{NewRow, Outbox};
use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// The exit status when a row's `client_message_id` is taken by a row it does
/// not match (2 is any other error).
pub const EXIT_CONFLICT: u8 = 3;

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The TOML config file (its `outbox` is written).
    #[arg(long)]
    config: PathBuf,
    /// JSON lines: print each outcome as a JSON object; without --payload, also read the
    /// rows as JSON objects, one per line, from stdin (fields as the flags, snake_case;
    /// `payload` as text or `payload_base64`).
    #[arg(long)]
    json: bool,
    /// The message body (for legacy rows it is what gets broadcast).
    #[arg(long)]
    payload: Option<String>,
    #[arg(long)]
    id: Option<String>,
    /// The idempotency key; a repeat with the same fingerprint is accepted as the
    /// existing row (default: a fresh one).
    #[arg(long)]
    client_message_id: Option<String>,
    #[arg(long)]
    mesh: Option<String>,
    #[arg(long)]
    target_spec: Option<String>,
    #[arg(long)]
    nonce: Option<String>,
    #[arg(long)]
    ciphertext: Option<String>,
    /// `now`, `next` or `low`.
    #[arg(long)]
    priority: Option<String>,
    /// Hex public key of the session the row was written by.
    #[arg(long)]
    sender_session_pubkey: Option<String>,
    /// Hex request fingerprint; defaults to SHA-256 of the payload.
    #[arg(long, visible_alias = "fingerprint")]
    request_fingerprint: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRow {
    id: Option<String>,
    client_message_id: Option<String>,
    payload: Option<String>,
    payload_base64: Option<String>,
    mesh: Option<String>,
    target_spec: Option<String>,
    nonce: Option<String>,
    ciphertext: Option<String>,
    priority: Option<String>,
    sender_session_pubkey: Option<String>,
    request_fingerprint: Option<String>,
}

pub fn enqueue(args: &EnqueueArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let rows = if args.payload.is_none() && args.json {
        refuse_row_flags(args)?;
        read_json_rows()?
    } else {
        vec![flag_row(args)?]
    };
    let mut outbox = Outbox::open(&config.outbox)?;
    let outcomes = outbox.enqueue_idempotent(&rows)?;
    let inserted = outcomes
        .iter()
        .filter(|o| matches!(o, EnqueueOutcome::Accepted(a) if a.inserted))
        .count();
    let woken = if inserted > 0 {
        wake::notify(&config.outbox)
    } else {
        0
    };
    let mut conflicts = 0;
    for outcome in &outcomes {
        conflicts += usize::from(matches!(outcome, EnqueueOutcome::Conflict(_)));
        if args.json {
            println!("{}", outcome_json(outcome));
        } else {
            report_text(outcome);
        }
    }
    eprintln!(
        "enqueued {inserted} row(s) in {}; woke {woken} drainer(s)",
        config.outbox.display()
    );
    Ok(if conflicts == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CONFLICT)
    })
}

/// `{"outcome":"accepted",…}` or `{"outcome":"conflict","code":…,…}`.
fn outcome_json(outcome: &EnqueueOutcome) -> serde_json::Value {
    match outcome {
        EnqueueOutcome::Accepted(a) => json!({
            "outcome": "accepted",
            "status": a.status,
            "id": a.id,
            "client_message_id": a.client_message_id,
            "broker_message_id": a.broker_message_id,
        }),
        EnqueueOutcome::Conflict(c) => json!({
            "outcome": "conflict",
            "code": c.code(),
            "id": c.id,
            "client_message_id": c.client_message_id,
        }),
    }
}

/// An accepted row's id on stdout (as before idempotency, for scripts), the
/// verdict on stderr.
fn report_text(outcome: &EnqueueOutcome) {
    match outcome {
        EnqueueOutcome::Accepted(a) => {
            println!("{}", a.id);
            if !a.inserted {
                let delivered = a
                    .broker_message_id
                    .as_ref()
                    .map(|m| format!(", broker message {m}"))
                    .unwrap_or_default();
                eprintln!(
                    "accepted: client_message_id {} is already in the outbox as {} ({}{delivered}); nothing new was written",
                    a.client_message_id, a.id, a.status
                );
            }
        }
        EnqueueOutcome::Conflict(c) => {
            let fix = if c.fingerprint_matches {
                "it will not be sent again; enqueue it under a fresh client_message_id"
            } else {
                "this is a different request under the same key; give it a fresh client_message_id"
            };
            eprintln!(
                "conflict {}: client_message_id {} is already in the outbox as {} ({}); {fix}",
                c.code(),
                c.client_message_id,
                c.id,
                c.status
            );
        }
    }
}

/// With rows on stdin the row flags have nothing to describe.
fn refuse_row_flags(args: &EnqueueArgs) -> anyhow::Result<()> {
    let given = [
        ("--id", args.id.is_some()),
        ("--client-message-id", args.client_message_id.is_some()),
        ("--mesh", args.mesh.is_some()),
        ("--target-spec", args.target_spec.is_some()),
        ("--nonce", args.nonce.is_some()),
        ("--ciphertext", args.ciphertext.is_some()),
        ("--priority", args.priority.is_some()),
        (
            "--sender-session-pubkey",
            args.sender_session_pubkey.is_some(),
        ),
        ("--request-fingerprint", args.request_fingerprint.is_some()),
    ];
    if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
        bail!(
            "{flag} describes a row given by flags, but --json without --payload reads the rows from stdin; put the field in the JSON, or give --payload"
        );
    }
    Ok(())
}

fn flag_row(args: &EnqueueArgs) -> anyhow::Result<NewRow> {
    let Some(payload) = &args.payload else {
        bail!(
            "nothing to enqueue: give --payload TEXT (with routing flags), or --json with rows on stdin"
        );
    };
    let json = JsonRow {
        id: args.id.clone(),
        client_message_id: args.client_message_id.clone(),
        payload: Some(payload.clone()),
        mesh: args.mesh.clone(),
        target_spec: args.target_spec.clone(),
        nonce: args.nonce.clone(),
        ciphertext: args.ciphertext.clone(),
        priority: args.priority.clone(),
        sender_session_pubkey: args.sender_session_pubkey.clone(),
        request_fingerprint: args.request_fingerprint.clone(),
        ..JsonRow::default()
    };
    new_row(json)
}

fn read_json_rows() -> anyhow::Result<Vec<NewRow>> {
    let mut rows = Vec::new();
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.context("reading stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let json: JsonRow = serde_json::from_str(&line)
            .with_context(|| format!("stdin line {}: not a row object", n + 1))?;
        rows.push(new_row(json).with_context(|| format!("stdin line {}", n + 1))?);
    }
    if rows.is_empty() {
        bail!("no rows on stdin: give one JSON object per line");
    }
    Ok(rows)
}

fn new_row(json: JsonRow) -> anyhow::Result<NewRow> {
    let payload = match (json.payload, json.payload_base64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .context("payload_base64 is not base64")?,
        (None, None) => bail!("a row needs `payload` or `payload_base64`"),
        (Some(_), Some(_)) => bail!("give `payload` or `payload_base64`, not both"),
    };
    let fingerprint = match json.request_fingerprint {
        Some(h) => {
            hex::decode(&h).with_context(|| format!("request_fingerprint {h:?} is not hex"))?
        }
        None => Sha256::digest(&payload).to_vec(),
    };
    let now = now_ms();
    let id = json.id.unwrap_or_else(|| random_id("ob_"));
    Ok(NewRow {
        client_message_id: json.client_message_id.unwrap_or_else(|| random_id("cm_")),
        id,
        request_fingerprint: fingerprint,
        payload,
        enqueued_at: now,
        next_attempt_at: now,
        mesh: json.mesh,
        target_spec: json.target_spec,
        nonce: json.nonce,
        ciphertext: json.ciphertext,
        priority: json.priority,
        sender_session_pubkey: json.sender_session_pubkey,
    })
}

/// A prefix and 16 random bytes in hex.
pub(crate) fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}
