//! Shared fixtures of the end-to-end tests: a test broker on 127.0.0.1:0, an
//! outbox in a temporary folder, a config file, and the real `sluice` binary.
#![allow(dead_code)]
// Test fixtures fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use sluice::links::MemberKey;
use sluice::store::{NewRow, Outbox};
use sluice_test_broker::{Broker, BrokerOptions, BrokerStats};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const MESH: &str = "alpha";
pub const MINUTE_MS: i64 = 60_000;
/// The member key every test config uses (the libsodium vector's seed).
pub const MEMBER_SEED: [u8; 32] = [7; 32];

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A test broker on its own runtime.
pub struct TestBroker {
    pub broker: Option<Broker>,
    runtime: tokio::runtime::Runtime,
}

impl TestBroker {
    pub fn start(options: BrokerOptions) -> TestBroker {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let broker = runtime
            .block_on(Broker::start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                options,
            ))
            .unwrap();
        TestBroker {
            broker: Some(broker),
            runtime,
        }
    }

    /// A broker serving wss:// with this certificate and key (PEM).
    pub fn start_tls(options: BrokerOptions, cert_pem: &str, key_pem: &str) -> TestBroker {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        TestBroker::start_tls_at(any_port, options, cert_pem, key_pem)
    }

    /// As `start_tls`, on `bind` (the address of a broker that stopped).
    pub fn start_tls_at(
        bind: SocketAddr,
        options: BrokerOptions,
        cert_pem: &str,
        key_pem: &str,
    ) -> TestBroker {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let broker = runtime
            .block_on(Broker::start_tls(bind, options, cert_pem, key_pem))
            .unwrap();
        TestBroker {
            broker: Some(broker),
            runtime,
        }
    }

    pub fn url(&self) -> String {
        self.broker.as_ref().unwrap().url()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.broker.as_ref().unwrap().local_addr()
    }

    pub fn stats(&self) -> BrokerStats {
        self.broker.as_ref().unwrap().stats()
    }

    pub fn receipts(&self, client_message_id: &str) -> u32 {
        self.stats()
            .receipts
            .get(client_message_id)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(broker) = self.broker.take() {
            self.runtime.block_on(broker.shutdown());
        }
    }
}

/// A temporary folder holding an outbox and a config for it.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub outbox: PathBuf,
    pub config: PathBuf,
}

impl Setup {
    /// A config with one mesh `alpha` on `broker_url` with no send budget
    /// (the test broker sets no rate limit unless asked), plus extra TOML
    /// (e.g. a `[policy]` table).
    pub fn new(broker_url: &str, extra: &str) -> Setup {
        Setup::with_mesh(broker_url, "rate_limit_per_minute = 0\n", extra)
    }

    /// Like `new`, with `mesh_extra` added to the `[[mesh]]` table.
    pub fn with_mesh(broker_url: &str, mesh_extra: &str, extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox.db");
        let config = dir.path().join("sluice.toml");
        let key = MemberKey::from_seed(MEMBER_SEED);
        let secret = format!("{}{}", hex::encode(MEMBER_SEED), key.public_hex());
        let text = format!(
            "outbox = \"outbox.db\"\n\n[drain]\npoll_interval_ms = 50\n\n[[mesh]]\nslug = \"{MESH}\"\nbroker_url = \"{broker_url}\"\nmesh_id = \"mesh_01JTESTMESH\"\nmember_id = \"mem_01JTESTMEMBER\"\npublic_key = \"{}\"\nsecret_key = \"{secret}\"\n{mesh_extra}\n{extra}\n",
            key.public_hex()
        );
        std::fs::write(&config, text).unwrap();
        Setup {
            dir,
            outbox,
            config,
        }
    }

    /// Adds `lines` to the config's `[drain]` table.
    pub fn add_to_drain(&self, lines: &str) {
        let text = std::fs::read_to_string(&self.config)
            .unwrap()
            .replace("[drain]", &format!("[drain]\n{lines}"));
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn open(&self) -> Outbox {
        Outbox::open(&self.outbox).unwrap()
    }

    pub fn enqueue(&self, rows: &[NewRow]) {
        self.open().enqueue(rows).unwrap();
    }

    /// Runs `sluice run --exit-when-drained` to completion (bounded).
    pub fn drain(&self) -> Output {
        let child = self.spawn(&["--exit-when-drained"]);
        wait_output(child, Duration::from_secs(60))
    }

    /// Runs `sluice run` with `extra` flags to completion (bounded).
    pub fn spawn_with(&self, extra: &[&str]) -> Output {
        wait_output(self.spawn(extra), Duration::from_secs(60))
    }

    pub fn spawn(&self, extra: &[&str]) -> Child {
        Command::new(sluice_bin())
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn sql<T: rusqlite::types::FromSql>(&self, query: &str) -> T {
        let conn = rusqlite::Connection::open(&self.outbox).unwrap();
        conn.query_row(query, [], |r| r.get(0)).unwrap()
    }

    /// (status, attempts, last_error) of the row with `id`.
    pub fn row(&self, id: &str) -> (String, i64, Option<String>) {
        let conn = rusqlite::Connection::open(&self.outbox).unwrap();
        conn.query_row(
            "SELECT status, attempts, last_error FROM outbox WHERE id = ?",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    }
}

pub fn sluice_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sluice")
}

/// Runs `sluice` with `args` and waits (bounded).
pub fn sluice(args: &[&str]) -> Output {
    sluice_within(args, Duration::from_secs(60))
}

/// How long a command on a Python component may take before it counts as
/// hung: its first compile alone takes 10 s on an idle machine, and `policy
/// test` runs it through a dozen simulations beside the other tests.
pub const PYTHON_COMMAND_TIME_MAX: Duration = Duration::from_secs(300);

/// Runs `sluice` with `args` and waits at most `limit`.
pub fn sluice_within(args: &[&str], limit: Duration) -> Output {
    let child = Command::new(sluice_bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, limit)
}

/// Waits for a child, killing it if it outlives `limit`.
pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    // Read both pipes while the child runs: a chatty child would otherwise
    // fill a pipe and block on its next write, and never finish.
    fn drain(
        pipe: Option<impl std::io::Read + Send + 'static>,
    ) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + limit;
    let mut timed_out = false;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().unwrap();
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        !timed_out,
        "sluice did not finish within {limit:?}; stderr:\n{}",
        String::from_utf8_lossy(&stderr)
    );
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Polls `condition` every 20 ms until it holds; panics after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a signal with the system's `kill` (no unsafe code in tests either).
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A routed row for mesh `alpha` to `target`.
pub fn routed(id: &str, target: &str) -> NewRow {
    let now = now_ms();
    NewRow {
        id: id.into(),
        client_message_id: format!("cm-{id}"),
        request_fingerprint: vec![0xfe, 0xed, id.len() as u8],
        payload: format!("payload of {id}").into_bytes(),
        enqueued_at: now,
        next_attempt_at: now,
        mesh: Some(MESH.into()),
        target_spec: Some(target.into()),
        nonce: Some("bm9uY2U=".into()),
        ciphertext: Some("Y2lwaGVydGV4dA==".into()),
        priority: Some("now".into()),
        sender_session_pubkey: None,
    }
}

/// `count` routed rows named `{prefix}-{i}`.
pub fn many(prefix: &str, count: usize) -> Vec<NewRow> {
    (0..count)
        .map(|i| routed(&format!("{prefix}-{i:06}"), "@peer"))
        .collect()
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// (status line, body) of `GET path` on `address`.
pub fn get(address: &str, path: &str) -> std::io::Result<(String, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: text/plain\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}

/// A loopback address no one listens on (yet).
pub fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A session's `[[session]]` table for mesh alpha, from a one-byte seed.
pub fn session_toml(seed: u8) -> (String, String) {
    let key = MemberKey::from_seed([seed; 32]);
    let public = key.public_hex();
    let table = format!(
        "[[session]]\nmesh = \"{MESH}\"\nsession_id = \"session-{seed}\"\npublic_key = \"{public}\"\nsecret_key = \"{}{public}\"\n",
        hex::encode([seed; 32])
    );
    (public, table)
}

pub fn session_row(id: &str, pubkey: &str) -> NewRow {
    NewRow {
        sender_session_pubkey: Some(pubkey.to_string()),
        ..routed(id, "@peer")
    }
}

/// A child process killed if the test fails before it is taken back: a
/// failed assertion must not leave a drainer running.
pub struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    pub fn new(child: Child) -> KillOnDrop {
        KillOnDrop(Some(child))
    }

    pub fn child(&self) -> &Child {
        self.0.as_ref().unwrap()
    }

    /// The child, no longer killed on drop.
    pub fn take(mut self) -> Child {
        self.0.take().unwrap()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// componentize-py, for the Python policies: `$COMPONENTIZE_PY` when set,
/// else a venv of its own under the target directory, made with python3
/// and PyPI the first time (as the template's `build.sh` does).
pub fn componentize_py() -> PathBuf {
    static READY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    READY
        .get_or_init(|| {
            if let Some(given) = std::env::var_os("COMPONENTIZE_PY") {
                return PathBuf::from(given);
            }
            let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
            let venv = target.join("venv-componentize-py");
            let bin = venv.join("bin/componentize-py");
            if !bin.exists() {
                let made = Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&venv)
                    .status();
                assert!(
                    made.is_ok_and(|s| s.success()),
                    "the Python policy tests need python3 with venv (Debian: apt install python3-venv), or COMPONENTIZE_PY naming a componentize-py"
                );
                let pip = Command::new(venv.join("bin/pip"))
                    .args(["install", "--quiet", "componentize-py==0.25.1"])
                    .status();
                assert!(
                    pip.is_ok_and(|s| s.success()),
                    "installing componentize-py 0.25.1 from PyPI into {} failed; install it yourself and set COMPONENTIZE_PY",
                    venv.display()
                );
            }
            bin
        })
        .clone()
}

/// Builds the Python policy in `dir` (`app.py`, the contract in `wit`) into `out`.
pub fn componentize(dir: &Path, wit: &Path, out: &Path) {
    let built = Command::new(componentize_py())
        .current_dir(dir)
        .arg("-d")
        .arg(wit)
        .args(["-w", "drain-policy", "componentize", "app", "-o"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "componentize-py failed in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&built.stderr)
    );
}
