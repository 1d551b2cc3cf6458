//! The keys file of `sluice broker --keys`: who may connect to which mesh.
//!
//! Owns: `Member`, `load_members` and their errors. Does not own: checking a
//! hello against the list (`handshake`).

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A member allowed into a mesh.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub mesh_id: String,
    /// `None`: the key may hello under any member id.
    pub member_id: Option<String>,
    /// Hex Ed25519 public key (64 characters).
    pub public_key: String,
}

impl Member {
    /// Whether this entry lets `pubkey` into `mesh_id` as `member_id`.
    pub(crate) fn admits(&self, mesh_id: &str, member_id: &str, pubkey: &str) -> bool {
        self.mesh_id == mesh_id
            && self.public_key.eq_ignore_ascii_case(pubkey)
            && self
                .member_id
                .as_deref()
                .is_none_or(|id| id.is_empty() || member_id.is_empty() || id == member_id)
    }
}

/// Why a keys file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MembersError {
    #[error("cannot read keys file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "keys file {path} is not valid TOML of [[member]] tables (mesh_id, member_id, public_key): {source}"
    )]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error(
        "keys file {path}: member {index} has public_key {key:?}, which is not 64 hex characters; use the member's Ed25519 public key in hex"
    )]
    BadKey {
        path: PathBuf,
        index: usize,
        key: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    member: Vec<Member>,
}

/// Reads a keys file for `sluice broker --keys FILE`:
/// `[[member]] mesh_id = "…", member_id = "…", public_key = "…"`.
pub fn load_members(path: &Path) -> Result<Vec<Member>, MembersError> {
    let text = std::fs::read_to_string(path).map_err(|source| MembersError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file: KeysFile = toml::from_str(&text).map_err(|source| MembersError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    for (index, member) in file.member.iter().enumerate() {
        let key = &member.public_key;
        if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(MembersError::BadKey {
                path: path.to_path_buf(),
                index,
                key: key.clone(),
            });
        }
    }
    Ok(file.member)
}
