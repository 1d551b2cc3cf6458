//! The state of a running drainer's broker links, for `sluice status`.
//!
//! `sluice run` writes `<outbox>.wake/<pid>.links.json` whenever a link
//! changes state (and removes it when it stops); `sluice status`, another
//! process, reads every such file whose drainer is still alive. A file and
//! not a table: link states change while the outbox's writer is busy, and
//! they are not the outbox's data.

use crate::wake::wake_dir;
use serde::{Deserialize, Serialize};
use sluice_links::{LinkKind, LinkReport, LinkState};
use std::path::{Path, PathBuf};

/// One link as `sluice status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkLine {
    /// `mesh` or `session`.
    pub kind: String,
    pub mesh: String,
    pub session_pubkey: Option<String>,
    pub url: String,
    /// `connecting`, `open`, `unsupported` or `closed`.
    pub state: String,
    /// Wall-clock ms when the link entered its state.
    pub since_ms: i64,
    pub last_error: Option<String>,
    pub failures: u32,
}

impl From<&LinkReport> for LinkLine {
    fn from(report: &LinkReport) -> LinkLine {
        LinkLine {
            kind: match report.kind {
                LinkKind::Daemon => "mesh",
                LinkKind::Session => "session",
            }
            .to_string(),
            mesh: report.mesh.clone(),
            session_pubkey: report.session_pubkey.clone(),
            url: report.url.clone(),
            state: state_name(report.state).to_string(),
            since_ms: report.since_ms,
            last_error: report.last_error.clone(),
            failures: report.failures,
        }
    }
}

pub fn state_name(state: LinkState) -> &'static str {
    match state {
        LinkState::Connecting => "connecting",
        LinkState::Open => "open",
        LinkState::Unsupported => "unsupported",
        LinkState::Closed => "closed",
    }
}

/// This process's status file for `outbox`.
pub fn own_path(outbox: &Path) -> PathBuf {
    wake_dir(outbox).join(format!("{}.links.json", std::process::id()))
}

/// Writes the file whole (temporary file, then rename): a reader never sees
/// half of it.
pub fn write(path: &Path, reports: &[LinkReport]) -> std::io::Result<()> {
    let lines: Vec<LinkLine> = reports.iter().map(LinkLine::from).collect();
    let json = serde_json::to_vec_pretty(&lines).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, json)?;
    std::fs::rename(&temporary, path)
}

/// Every live drainer's links: (pid, links). Files of drainers that died are
/// skipped (and removed).
pub fn read_all(outbox: &Path) -> Vec<(u32, Vec<LinkLine>)> {
    let Ok(entries) = std::fs::read_dir(wake_dir(outbox)) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".links.json"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        let Ok(text) = std::fs::read(entry.path()) else {
            continue;
        };
        if let Ok(lines) = serde_json::from_slice::<Vec<LinkLine>>(&text) {
            found.push((pid, lines));
        }
    }
    found.sort_by_key(|(pid, _)| *pid);
    found
}
