//! The TOML configuration of `sluice run`, `enqueue` and `status`.
//!
//! ```toml
//! outbox = "outbox.db"          # relative to this file
//! [[mesh]]
//! slug = "main"
//! broker_url = "ws://127.0.0.1:7700"
//! mesh_id = "mesh_01…"
//! member_id = "mem_01…"
//! public_key = "…64 hex…"
//! secret_key = "…128 hex…"      # or secret_key_file = "member.key"
//! [drain]
//! poll_interval_ms = 500
//! batches_in_flight = 2
//! [policy]                      # passed to the policy's configure()
//! batch_rows = 256
//! ```
//! Unknown keys and bad values are errors that name the key.

use serde::Deserialize;
use sluice_links::{MemberKey, MeshConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    outbox: PathBuf,
    #[serde(default)]
    mesh: Vec<RawMesh>,
    #[serde(default)]
    session: Vec<RawSession>,
    #[serde(default)]
    drain: RawDrain,
    #[serde(default)]
    policy: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMesh {
    slug: String,
    broker_url: String,
    mesh_id: String,
    member_id: String,
    public_key: String,
    secret_key: Option<String>,
    secret_key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    mesh: String,
    session_id: String,
    public_key: String,
    secret_key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrain {
    poll_interval_ms: Option<u64>,
    batches_in_flight: Option<usize>,
}

/// A session the config declares (links for sessions come later; until then
/// every session is reported absent to the policy).
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub mesh: String,
    pub session_id: String,
    pub public_key: String,
}

/// A checked configuration.
#[derive(Clone)]
pub struct Config {
    pub path: PathBuf,
    pub outbox: PathBuf,
    pub meshes: Vec<MeshConfig>,
    pub sessions: Vec<SessionConfig>,
    pub poll_interval: Duration,
    /// Ticks running at once, each with its own policy instance and SQLite
    /// connection: while one awaits its acks the next claims and settles.
    pub batches_in_flight: usize,
    /// `[policy]` as key/value text, for `configure()`.
    pub policy: Vec<(String, String)>,
}

/// Bounds on the poll interval: below, an idle drainer burns CPU; above, rows
/// written by other producers wait too long.
const POLL_INTERVAL_MS_MIN: u64 = 1;
const POLL_INTERVAL_MS_MAX: u64 = 3_600_000;
/// Two in flight measured +10–70% over one; a third added nothing on two
/// cores. The bound stops a typo from opening a connection per row.
const BATCHES_IN_FLIGHT_DEFAULT: usize = 2;
const BATCHES_IN_FLIGHT_MAX: usize = 8;

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Parses `text` as if read from `path` (relative paths resolve against it).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| invalid(e.to_string().trim().to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut meshes = Vec::new();
        for (i, mesh) in raw.mesh.into_iter().enumerate() {
            if meshes.iter().any(|m: &MeshConfig| m.slug == mesh.slug) {
                return Err(invalid(format!(
                    "mesh[{i}].slug: `{}` appears twice; give every mesh its own slug",
                    mesh.slug
                )));
            }
            meshes.push(mesh_config(i, mesh, base).map_err(invalid)?);
        }
        let mut sessions = Vec::new();
        for (i, s) in raw.session.into_iter().enumerate() {
            if !meshes.iter().any(|m| m.slug == s.mesh) {
                return Err(invalid(format!(
                    "session[{i}].mesh: no [[mesh]] has slug `{}`",
                    s.mesh
                )));
            }
            let key = MemberKey::from_libsodium_hex(&s.secret_key)
                .map_err(|e| invalid(format!("session[{i}].secret_key: {e}")))?;
            if !key.public_hex().eq_ignore_ascii_case(&s.public_key) {
                return Err(invalid(format!(
                    "session[{i}].public_key does not match session[{i}].secret_key"
                )));
            }
            sessions.push(SessionConfig {
                mesh: s.mesh,
                session_id: s.session_id,
                public_key: s.public_key.to_ascii_lowercase(),
            });
        }
        let poll_ms = raw.drain.poll_interval_ms.unwrap_or(500);
        if !(POLL_INTERVAL_MS_MIN..=POLL_INTERVAL_MS_MAX).contains(&poll_ms) {
            return Err(invalid(format!(
                "drain.poll_interval_ms = {poll_ms} is out of range: give {POLL_INTERVAL_MS_MIN} to {POLL_INTERVAL_MS_MAX}"
            )));
        }
        let batches_in_flight = raw
            .drain
            .batches_in_flight
            .unwrap_or(BATCHES_IN_FLIGHT_DEFAULT);
        if !(1..=BATCHES_IN_FLIGHT_MAX).contains(&batches_in_flight) {
            return Err(invalid(format!(
                "drain.batches_in_flight = {batches_in_flight} is out of range: give 1 to {BATCHES_IN_FLIGHT_MAX}"
            )));
        }
        let mut policy = Vec::new();
        for (key, value) in raw.policy {
            let text = match value {
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::String(s) => s,
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Float(f) => f.to_string(),
                other => {
                    return Err(invalid(format!(
                        "policy.{key}: a {} cannot be a setting; give a number or a string",
                        other.type_str()
                    )));
                }
            };
            policy.push((key, text));
        }
        Ok(Config {
            path: path.to_path_buf(),
            outbox: base.join(raw.outbox),
            meshes,
            sessions,
            poll_interval: Duration::from_millis(poll_ms),
            batches_in_flight,
            policy,
        })
    }
}

fn mesh_config(i: usize, mesh: RawMesh, base: &Path) -> Result<MeshConfig, String> {
    if !(mesh.broker_url.starts_with("ws://") || mesh.broker_url.starts_with("wss://")) {
        return Err(format!(
            "mesh[{i}].broker_url = {:?}: give a ws:// or wss:// URL",
            mesh.broker_url
        ));
    }
    let secret = match (mesh.secret_key, mesh.secret_key_file) {
        (Some(hex), None) => hex,
        (None, Some(file)) => {
            let file = base.join(file);
            std::fs::read_to_string(&file)
                .map_err(|e| format!("mesh[{i}].secret_key_file {}: {e}", file.display()))?
                .trim()
                .to_string()
        }
        (Some(_), Some(_)) => {
            return Err(format!(
                "mesh[{i}]: give secret_key or secret_key_file, not both"
            ));
        }
        (None, None) => {
            return Err(format!(
                "mesh[{i}]: missing secret_key (or secret_key_file)"
            ));
        }
    };
    let key =
        MemberKey::from_libsodium_hex(&secret).map_err(|e| format!("mesh[{i}].secret_key: {e}"))?;
    if !key.public_hex().eq_ignore_ascii_case(&mesh.public_key) {
        return Err(format!(
            "mesh[{i}].public_key does not match mesh[{i}].secret_key: copy both from the same member"
        ));
    }
    Ok(MeshConfig {
        slug: mesh.slug,
        broker_url: mesh.broker_url,
        mesh_id: mesh.mesh_id,
        member_id: mesh.member_id,
        key,
    })
}
