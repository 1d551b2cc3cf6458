//! Wakes running drainers when rows are enqueued through Sluice.
//!
//! Each `sluice run` binds a Unix datagram socket in `<outbox>.wake/`, named
//! by its process id; `sluice enqueue` (and [`notify`]) sends one byte to every
//! socket there after its transaction commits. `sluice session add|remove`
//! sends [`RELOAD`] instead ([`notify_reload`]): the drainer reads its config
//! again, as on SIGHUP. Several drainers on one file
//! each get the signal. A socket whose drainer died refuses the datagram and
//! is removed. Producers that write the outbox directly are found by the
//! poll interval instead.

use crate::drain::{Signal, Signals};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The datagram that asks a drainer to read its config again.
pub const RELOAD: &[u8] = b"reload";

/// What a drainer does when asked to reload.
pub type Reload = Arc<dyn Fn() + Send + Sync>;

/// The folder of wake sockets for an outbox file.
pub fn wake_dir(outbox: &Path) -> PathBuf {
    let mut name = outbox.as_os_str().to_owned();
    name.push(".wake");
    PathBuf::from(name)
}

/// A bound wake socket; removed from the folder when dropped.
pub struct WakeListener {
    path: PathBuf,
}

impl WakeListener {
    /// Binds this process's socket and forwards every datagram as
    /// [`Signal::Wake`], except [`RELOAD`], which calls `reload`.
    pub fn bind(outbox: &Path, signals: Signals, reload: Reload) -> std::io::Result<WakeListener> {
        let dir = wake_dir(outbox);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path)?;
        std::thread::Builder::new()
            .name("sluice-wake".into())
            .spawn(move || {
                let mut buf = [0u8; 16];
                while let Ok(len) = socket.recv(&mut buf) {
                    if &buf[..len] == RELOAD {
                        reload();
                    }
                    signals.send(Signal::Wake);
                }
            })?;
        Ok(WakeListener { path })
    }
}

impl Drop for WakeListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Signals every drainer of `outbox`; returns how many were reached.
pub fn notify(outbox: &Path) -> usize {
    send_all(outbox, &[1])
}

/// Asks every drainer of `outbox` to read its config again; returns how
/// many were reached.
pub fn notify_reload(outbox: &Path) -> usize {
    send_all(outbox, RELOAD)
}

fn send_all(outbox: &Path, datagram: &[u8]) -> usize {
    let Ok(entries) = std::fs::read_dir(wake_dir(outbox)) else {
        return 0;
    };
    let Ok(sender) = UnixDatagram::unbound() else {
        return 0;
    };
    let mut reached = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "sock") {
            match sender.send_to(datagram, &path) {
                Ok(_) => reached += 1,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    let _ = std::fs::remove_file(&path);
                }
                Err(_) => {}
            }
        }
    }
    reached
}
