//! Watching the `--policy` file: a new version goes live when it lands.
//!
//! Owns: noticing changes (notify, on the file's folder, so an atomic
//! rename is seen as well as an in-place write), waiting until the file
//! stops changing, and handing the bytes to validation. A half-written file
//! is never loaded: writes in place are waited out (the file must keep the
//! same size and modification time across a settle interval), and bytes
//! that are still not a whole component fail validation and are refused,
//! leaving the running policy live; the write that completes the file is a
//! change of its own and is loaded then. Not here: validating (`candidate`)
//! or going live (`swap`).

use notify::{RecursiveMode, Watcher as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

/// How long the file must stay unchanged before it is read: an in-place
/// write of a policy (tens of KiB) takes far less, and every millisecond
/// here is a millisecond of swap latency.
pub const SETTLE: Duration = Duration::from_millis(3);

/// How long one settle may keep waiting for a file that keeps changing.
const SETTLE_MAX: Duration = Duration::from_secs(5);

/// A running watcher; dropping it stops watching.
pub struct PolicyWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl PolicyWatcher {
    /// Calls `changed(bytes)` from a thread of its own whenever `path` has
    /// new contents that stayed put for [`SETTLE`].
    pub fn start(
        path: &Path,
        changed: impl Fn(Vec<u8>) + Send + 'static,
    ) -> notify::Result<PolicyWatcher> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let folder = path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let (events, received) = mpsc::channel::<()>();
        let name = path.file_name().map(ToOwned::to_owned);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event
                    && event
                        .paths
                        .iter()
                        .any(|p| p.file_name().map(ToOwned::to_owned) == name)
                {
                    let _ = events.send(());
                }
            })?;
        watcher.watch(&folder, RecursiveMode::NonRecursive)?;
        std::thread::Builder::new()
            .name("sluice-policy-watch".into())
            .spawn(move || {
                let mut last: Option<Vec<u8>> = std::fs::read(&path).ok();
                while received.recv().is_ok() {
                    // Coalesce the burst of events one write makes.
                    while received.recv_timeout(SETTLE).is_ok() {}
                    let Some(bytes) = settled(&path) else {
                        continue;
                    };
                    if last.as_deref() == Some(bytes.as_slice()) {
                        continue;
                    }
                    last = Some(bytes.clone());
                    changed(bytes);
                }
            })?;
        Ok(PolicyWatcher { _watcher: watcher })
    }
}

/// The file's bytes once its size and modification time held still across
/// [`SETTLE`]; None if it vanished or never settled.
fn settled(path: &Path) -> Option<Vec<u8>> {
    let stamp = |p: &Path| -> Option<(u64, SystemTime)> {
        let meta = std::fs::metadata(p).ok()?;
        Some((meta.len(), meta.modified().ok()?))
    };
    let started = std::time::Instant::now();
    let mut before = stamp(path)?;
    loop {
        std::thread::sleep(SETTLE);
        let now = stamp(path)?;
        if now == before {
            let bytes = std::fs::read(path).ok()?;
            // Read whole only if it did not change while being read.
            return (stamp(path)? == now && bytes.len() as u64 == now.0).then_some(bytes);
        }
        if started.elapsed() > SETTLE_MAX {
            return None;
        }
        before = now;
    }
}
