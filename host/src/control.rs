//! The control socket of a running drainer: `sluice policy load` hands it a
//! policy file.
//!
//! Each `sluice run` listens on `<outbox>.wake/<pid>.control`, a Unix stream
//! socket that only its owner may use: the socket file is made 0600, the
//! drainer checks every caller's user id (`SO_PEERCRED`) and refuses any
//! other, and the client refuses a socket not owned by its user or open to
//! others. One request a connection, one JSON line each way.

use crate::wake::wake_dir;
use serde::{Deserialize, Serialize};
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

/// Largest request read: a path and a few settings.
const REQUEST_BYTES_MAX: u64 = 64 * 1024;

/// How long a client waits for the drainer to validate and swap (a cold
/// compile and a folder of golden traces to replay).
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// What a client asks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadRequest {
    /// An absolute path to the policy component.
    pub load: PathBuf,
    /// Settings for this policy on top of the config's `[policy]`.
    #[serde(default)]
    pub settings: Vec<(String, String)>,
}

/// What the drainer answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadReply {
    pub ok: bool,
    /// The live policy now, or why the candidate stayed out.
    pub message: String,
}

/// What the drainer does with a request.
pub type Handler = Arc<dyn Fn(LoadRequest) -> Result<String, String> + Send + Sync>;

/// The control socket of this process for `outbox`.
pub fn own_path(outbox: &Path) -> PathBuf {
    wake_dir(outbox).join(format!("{}.control", std::process::id()))
}

/// This process's user id, read from `/proc/self` (no libc call needed).
pub fn own_uid() -> std::io::Result<u32> {
    Ok(std::fs::metadata("/proc/self")?.uid())
}

/// A listening control socket; removed when dropped.
pub struct ControlServer {
    path: PathBuf,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listens on `own_path(outbox)` on `runtime`, answering with `handler`
/// (run on a blocking thread: validation compiles and replays).
pub fn serve(
    runtime: &tokio::runtime::Handle,
    outbox: &Path,
    handler: Handler,
) -> std::io::Result<ControlServer> {
    let path = own_path(outbox);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = {
        let _runtime = runtime.enter();
        tokio::net::UnixListener::bind(&path)?
    };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let owner = own_uid()?;
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = Arc::clone(&handler);
            tokio::spawn(async move { answer(stream, owner, handler).await });
        }
    });
    Ok(ControlServer { path })
}

async fn answer(stream: tokio::net::UnixStream, owner: u32, handler: Handler) {
    let caller = stream.peer_cred().map(|c| c.uid()).ok();
    let (read, mut write) = stream.into_split();
    let reply = if caller != Some(owner) {
        tracing::warn!(target: "sluice", ?caller, "control socket: refused a caller that is not the drainer's owner");
        LoadReply {
            ok: false,
            message: format!("refused: only the drainer's owner (uid {owner}) may load policies"),
        }
    } else {
        let mut line = String::new();
        let mut reader =
            tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, REQUEST_BYTES_MAX));
        let _ = reader.read_line(&mut line).await;
        match serde_json::from_str::<LoadRequest>(&line) {
            Err(e) => LoadReply {
                ok: false,
                message: format!("malformed request: {e}"),
            },
            Ok(request) => {
                let result = tokio::task::spawn_blocking(move || handler(request)).await;
                match result {
                    Ok(Ok(message)) => LoadReply { ok: true, message },
                    Ok(Err(message)) => LoadReply { ok: false, message },
                    Err(e) => LoadReply {
                        ok: false,
                        message: format!("the drainer failed while loading: {e}"),
                    },
                }
            }
        }
    };
    if let Ok(mut json) = serde_json::to_string(&reply) {
        json.push('\n');
        let _ = write.write_all(json.as_bytes()).await;
    }
}

/// Sends `request` to every drainer of `outbox`; returns (socket, reply) per
/// drainer. A socket not owned by this user, or open to others, is refused.
pub fn load(outbox: &Path, request: &LoadRequest) -> Result<Vec<(PathBuf, LoadReply)>, String> {
    let dir = wake_dir(outbox);
    let owner = own_uid().map_err(|e| format!("cannot tell this process's user: {e}"))?;
    let mut sockets: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|_| no_drainer(outbox))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "control"))
        .collect();
    sockets.sort();
    if sockets.is_empty() {
        return Err(no_drainer(outbox));
    }
    let mut replies = Vec::new();
    for socket in sockets {
        let meta = std::fs::metadata(&socket).map_err(|e| format!("{}: {e}", socket.display()))?;
        if meta.uid() != owner || meta.mode() & 0o077 != 0 {
            return Err(format!(
                "refused the control socket {}: it must belong to you (uid {owner}) and be usable by nobody else (mode 0600), but it is uid {} mode {:o}",
                socket.display(),
                meta.uid(),
                meta.mode() & 0o777
            ));
        }
        let Ok(mut stream) = std::os::unix::net::UnixStream::connect(&socket) else {
            // A drainer that died left its socket behind.
            let _ = std::fs::remove_file(&socket);
            continue;
        };
        let _ = stream.set_read_timeout(Some(REPLY_TIMEOUT));
        let mut json = serde_json::to_string(request).map_err(|e| e.to_string())?;
        json.push('\n');
        stream
            .write_all(json.as_bytes())
            .map_err(|e| format!("{}: {e}", socket.display()))?;
        let mut line = String::new();
        BufReader::new(&stream)
            .read_line(&mut line)
            .map_err(|e| format!("{}: no answer: {e}", socket.display()))?;
        let reply: LoadReply = serde_json::from_str(&line)
            .map_err(|e| format!("{}: unreadable answer {line:?}: {e}", socket.display()))?;
        replies.push((socket, reply));
    }
    if replies.is_empty() {
        return Err(no_drainer(outbox));
    }
    Ok(replies)
}

fn no_drainer(outbox: &Path) -> String {
    format!(
        "no drainer is running on {}: start `sluice run --config …` first (or give the policy with --policy)",
        outbox.display()
    )
}
