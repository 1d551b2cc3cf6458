//! The TOML configuration of `sluice run`, `enqueue` and `status`.
//!
//! ```toml
//! outbox = "outbox.db"          # relative to this file
//! cwd = "/srv/app"              # the hellos' `cwd`; default: the working directory
//! [[mesh]]
//! slug = "main"
//! broker_url = "ws://127.0.0.1:7700"
//! mesh_id = "mesh_01…"
//! member_id = "mem_01…"
//! public_key = "…64 hex…"
//! secret_key = "…128 hex…"      # or secret_key_file = "member.key"
//! session_id = "…"              # the hello's sessionId; default: derived, stable
//! rate_limit_per_minute = 60    # the member's budget on the broker (0: none)
//! rate_limit_burst = 10
//! ca_file = "ca.pem"            # extra trust anchors for wss://
//! [[session]]
//! mesh = "main"
//! session_id = "…"
//! public_key = "…64 hex…"
//! secret_key = "…128 hex…"      # or secret_key_file
//! attestation_ttl_hours = 12    # at most 24
//! [drain]
//! poll_interval_ms = 500
//! batches_in_flight = 2
//! scheduling = "normal"         # or "batch": how Linux schedules the drain's threads
//! [policy]                      # the default's configure() (and Sluice's own policies')
//! batch_rows = 256
//! [policy.my-policy]            # the configure() of the policy whose info() names it
//! max_attempts = 5
//! ```
//! Unknown keys and bad values are errors that name the key.

use crate::policy_settings::PolicySettings;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use sluice_links::{MemberKey, MeshConfig, SessionLinkConfig, read_ca_file};
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
    cwd: Option<String>,
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
    session_id: Option<String>,
    rate_limit_per_minute: Option<u32>,
    rate_limit_burst: Option<u32>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    mesh: String,
    session_id: String,
    public_key: String,
    secret_key: Option<String>,
    secret_key_file: Option<PathBuf>,
    attestation_ttl_hours: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrain {
    poll_interval_ms: Option<u64>,
    batches_in_flight: Option<usize>,
    rollback_after_traps: Option<u32>,
    scheduling: Option<String>,
}

/// How Linux schedules the drain's threads (`drain.scheduling`): the store
/// sets it, and runs each turn on the write lock under the normal policy.
pub use sluice_store::cpu::Policy as Scheduling;

/// A checked configuration.
#[derive(Clone)]
pub struct Config {
    pub path: PathBuf,
    pub outbox: PathBuf,
    pub meshes: Vec<MeshConfig>,
    /// One session link each; rows with their `sender_session_pubkey` go
    /// over it and nowhere else.
    pub sessions: Vec<SessionLinkConfig>,
    /// What the hellos say as `cwd` (the real broker needs one).
    pub cwd: String,
    /// Per mesh: whether its `session_id` was derived (not given), so a
    /// second drainer on the same config may take another one.
    pub derived_session_ids: Vec<bool>,
    pub poll_interval: Duration,
    /// Ticks running at once, each with its own policy instance and SQLite
    /// connection: while one awaits its acks the next claims and settles.
    pub batches_in_flight: usize,
    /// `[policy]` and `[policy.<name>]` as key/value text, for
    /// `configure()` (`crate::policy_settings`).
    pub policy: PolicySettings,
    /// Traps (or runs out of time or memory) in a row after which a policy
    /// is rolled back to the last good one.
    pub rollback_after_traps: u32,
    /// How Linux schedules the process's threads (`sluice run` sets it
    /// before any thread starts).
    pub scheduling: Scheduling,
    /// Golden traces every policy swapped in must replay clean (`--verify`).
    pub verify: Option<PathBuf>,
    /// Run the policy without the host's guard (`sluice run --unguarded`,
    /// hidden): only for measuring what the guard costs.
    pub unguarded: bool,
}

/// Bounds on the poll interval: below, an idle drainer burns CPU; above, rows
/// written by other producers wait too long.
const POLL_INTERVAL_MS_MIN: u64 = 1;
const POLL_INTERVAL_MS_MAX: u64 = 3_600_000;
/// Two in flight measured +10–70% over one; a third added nothing on two
/// cores. The bound stops a typo from opening a connection per row.
pub const BATCHES_IN_FLIGHT_DEFAULT: usize = 2;
const BATCHES_IN_FLIGHT_MAX: usize = 8;
/// A policy that traps this often in a row is broken, not unlucky.
const ROLLBACK_AFTER_MAX: u32 = 1_000;
/// The real broker's budget per member: 60 sends a minute, bursts of 10.
const RATE_LIMIT_PER_MINUTE_DEFAULT: u32 = 60;
const RATE_LIMIT_BURST_DEFAULT: u32 = 10;
/// A burst larger than this is a typo: the broker's own is 10.
const RATE_LIMIT_BURST_MAX: u32 = 1_000_000;
/// The broker refuses a session attestation valid for longer than a day.
const ATTESTATION_TTL_HOURS_MAX: f64 = 24.0;
const ATTESTATION_TTL_HOURS_DEFAULT: f64 = 12.0;

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
        let mut derived_session_ids = Vec::new();
        for (i, mesh) in raw.mesh.into_iter().enumerate() {
            if meshes.iter().any(|m: &MeshConfig| m.slug == mesh.slug) {
                return Err(invalid(format!(
                    "mesh[{i}].slug: `{}` appears twice; give every mesh its own slug",
                    mesh.slug
                )));
            }
            derived_session_ids.push(mesh.session_id.is_none());
            meshes.push(mesh_config(i, mesh, base, path).map_err(invalid)?);
        }
        let mut sessions: Vec<SessionLinkConfig> = Vec::new();
        for (i, s) in raw.session.into_iter().enumerate() {
            let session = session_config(i, s, base, &meshes).map_err(invalid)?;
            let key = session.key.public_hex();
            if sessions.iter().any(|other| other.key.public_hex() == key) {
                return Err(invalid(format!(
                    "session[{i}].public_key: {key} appears twice; list each session once"
                )));
            }
            sessions.push(session);
        }
        let cwd = match raw.cwd {
            Some(cwd) if cwd.trim().is_empty() => {
                return Err(invalid(
                    "cwd is empty: give the directory the hellos should name, or leave cwd out"
                        .to_string(),
                ));
            }
            Some(cwd) => cwd,
            None => std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| "/".to_string()),
        };
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
        let rollback_after_traps = raw
            .drain
            .rollback_after_traps
            .unwrap_or(crate::swap::ROLLBACK_AFTER_DEFAULT);
        if !(1..=ROLLBACK_AFTER_MAX).contains(&rollback_after_traps) {
            return Err(invalid(format!(
                "drain.rollback_after_traps = {rollback_after_traps} is out of range: give 1 to {ROLLBACK_AFTER_MAX}"
            )));
        }
        let scheduling = match raw.drain.scheduling.as_deref() {
            None | Some("normal") => Scheduling::Normal,
            Some("batch") => Scheduling::Batch,
            Some(other) => {
                return Err(invalid(format!(
                    "drain.scheduling = {other:?} is not known: give \"normal\" (the default) or \"batch\" (a waking drain thread never preempts another program's: the producers' commits first, at some of the drain's rate)"
                )));
            }
        };
        let mut policy = PolicySettings::default();
        for (key, value) in raw.policy {
            match value {
                toml::Value::Table(table) => {
                    let mut pairs = Vec::new();
                    for (inner, value) in table {
                        pairs.push((
                            inner.clone(),
                            setting_text(&format!("policy.{key}.{inner}"), value)
                                .map_err(&invalid)?,
                        ));
                    }
                    policy.tables.insert(key, pairs);
                }
                value => {
                    let text = setting_text(&format!("policy.{key}"), value).map_err(&invalid)?;
                    policy.shared.push((key, text));
                }
            }
        }
        Ok(Config {
            path: path.to_path_buf(),
            outbox: base.join(raw.outbox),
            meshes,
            sessions,
            cwd,
            derived_session_ids,
            poll_interval: Duration::from_millis(poll_ms),
            batches_in_flight,
            policy,
            rollback_after_traps,
            scheduling,
            verify: None,
            unguarded: false,
        })
    }
}

/// A setting's value as the text `configure()` gets.
fn setting_text(name: &str, value: toml::Value) -> Result<String, String> {
    match value {
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::String(s) => Ok(s),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        other => Err(format!(
            "{name}: a {} cannot be a setting; give a number or a string",
            other.type_str()
        )),
    }
}

/// A `sessionId` that stays the same across restarts for this config file and
/// mesh: the broker keeps a closed connection for 90 s, and a reconnect under
/// another id makes a second presence that can swallow direct messages.
pub fn derived_session_id(config_path: &Path, slug: &str) -> String {
    let path = std::fs::canonicalize(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    let mut hash = Sha256::new();
    hash.update(path.as_os_str().as_encoded_bytes());
    hash.update([0]);
    hash.update(slug.as_bytes());
    let digest = hash.finalize();
    format!("sluice-{}", hex::encode(&digest[..8]))
}

/// A secret key given inline or in a file (relative to the config).
fn secret(
    what: &str,
    inline: Option<String>,
    file: Option<PathBuf>,
    base: &Path,
) -> Result<String, String> {
    match (inline, file) {
        (Some(hex), None) => Ok(hex),
        (None, Some(file)) => {
            let file = base.join(file);
            std::fs::read_to_string(&file)
                .map(|text| text.trim().to_string())
                .map_err(|e| format!("{what}.secret_key_file {}: {e}", file.display()))
        }
        (Some(_), Some(_)) => Err(format!(
            "{what}: give secret_key or secret_key_file, not both"
        )),
        (None, None) => Err(format!("{what}: missing secret_key (or secret_key_file)")),
    }
}

fn session_config(
    i: usize,
    s: RawSession,
    base: &Path,
    meshes: &[MeshConfig],
) -> Result<SessionLinkConfig, String> {
    if !meshes.iter().any(|m| m.slug == s.mesh) {
        return Err(format!(
            "session[{i}].mesh: no [[mesh]] has slug `{}`",
            s.mesh
        ));
    }
    if s.session_id.trim().is_empty() {
        return Err(format!(
            "session[{i}].session_id is empty: give the session's id"
        ));
    }
    let hex = secret(
        &format!("session[{i}]"),
        s.secret_key,
        s.secret_key_file,
        base,
    )?;
    let key =
        MemberKey::from_libsodium_hex(&hex).map_err(|e| format!("session[{i}].secret_key: {e}"))?;
    if !key.public_hex().eq_ignore_ascii_case(&s.public_key) {
        return Err(format!(
            "session[{i}].public_key does not match session[{i}].secret_key: copy both from the same session"
        ));
    }
    let hours = s
        .attestation_ttl_hours
        .unwrap_or(ATTESTATION_TTL_HOURS_DEFAULT);
    if !(hours > 0.0 && hours <= ATTESTATION_TTL_HOURS_MAX) {
        return Err(format!(
            "session[{i}].attestation_ttl_hours = {hours} is out of range: give more than 0 and at most {ATTESTATION_TTL_HOURS_MAX} (the broker refuses longer)"
        ));
    }
    Ok(SessionLinkConfig {
        mesh: s.mesh,
        session_id: s.session_id,
        key,
        attestation_ttl: Duration::from_secs_f64(hours * 3600.0),
    })
}

fn mesh_config(
    i: usize,
    mesh: RawMesh,
    base: &Path,
    config_path: &Path,
) -> Result<MeshConfig, String> {
    if !(mesh.broker_url.starts_with("ws://") || mesh.broker_url.starts_with("wss://")) {
        return Err(format!(
            "mesh[{i}].broker_url = {:?}: give a ws:// or wss:// URL",
            mesh.broker_url
        ));
    }
    let secret = secret(
        &format!("mesh[{i}]"),
        mesh.secret_key,
        mesh.secret_key_file,
        base,
    )?;
    let key =
        MemberKey::from_libsodium_hex(&secret).map_err(|e| format!("mesh[{i}].secret_key: {e}"))?;
    if !key.public_hex().eq_ignore_ascii_case(&mesh.public_key) {
        return Err(format!(
            "mesh[{i}].public_key does not match mesh[{i}].secret_key: copy both from the same member"
        ));
    }
    let session_id = match mesh.session_id {
        Some(id) if id.trim().is_empty() => {
            return Err(format!(
                "mesh[{i}].session_id is empty: give an id, or leave it out for a derived one"
            ));
        }
        Some(id) => id,
        None => derived_session_id(config_path, &mesh.slug),
    };
    let rate_limit_per_minute = mesh
        .rate_limit_per_minute
        .unwrap_or(RATE_LIMIT_PER_MINUTE_DEFAULT);
    let rate_limit_burst = mesh.rate_limit_burst.unwrap_or(RATE_LIMIT_BURST_DEFAULT);
    if !(1..=RATE_LIMIT_BURST_MAX).contains(&rate_limit_burst) {
        return Err(format!(
            "mesh[{i}].rate_limit_burst = {rate_limit_burst} is out of range: give 1 to {RATE_LIMIT_BURST_MAX} (the broker's is 10)"
        ));
    }
    // Read now, so a file that cannot be used stops the start; the links
    // read it again at every connect.
    let ca_file = mesh.ca_file.map(|file| base.join(file));
    let ca_certs = match &ca_file {
        Some(file) => read_ca_file(file).map_err(|e| format!("mesh[{i}].ca_file: {e}"))?,
        None => Vec::new(),
    };
    Ok(MeshConfig {
        slug: mesh.slug,
        broker_url: mesh.broker_url,
        mesh_id: mesh.mesh_id,
        member_id: mesh.member_id,
        key,
        session_id,
        rate_limit_per_minute,
        rate_limit_burst,
        ca_certs,
        ca_file,
    })
}
