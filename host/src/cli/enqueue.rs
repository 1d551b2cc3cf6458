//! `sluice enqueue`: adds rows the way a producer would, then wakes drainers.

use crate::config::Config;
use crate::wake;
use crate::world::now_ms;
use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::Args;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sluice_store::{NewRow, Outbox};
use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The TOML config file (its `outbox` is written).
    #[arg(long)]
    config: PathBuf,
    /// Read rows as JSON objects, one per line, from stdin (fields as the flags, snake_case;
    /// `payload` as text or `payload_base64`).
    #[arg(long, conflicts_with_all = ["payload", "id", "client_message_id"])]
    json: bool,
    /// The message body (for legacy rows it is what gets broadcast).
    #[arg(long)]
    payload: Option<String>,
    #[arg(long)]
    id: Option<String>,
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
    #[arg(long)]
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
    let rows = if args.json {
        read_json_rows()?
    } else {
        vec![flag_row(args)?]
    };
    let mut outbox = Outbox::open(&config.outbox)?;
    let count = outbox.enqueue(&rows)?;
    let woken = wake::notify(&config.outbox);
    for row in &rows {
        println!("{}", row.id);
    }
    eprintln!(
        "enqueued {count} row(s) in {}; woke {woken} drainer(s)",
        config.outbox.display()
    );
    Ok(ExitCode::SUCCESS)
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
