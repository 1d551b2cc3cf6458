//! `sluice demo`: the main job on an embedded default.
//!
//! Makes a temporary outbox holding every kind of row the policy has a rule
//! for, starts the test broker on 127.0.0.1 with switches that reject some
//! rows permanently and some transiently, drains it with the embedded policy
//! component over a daemon link and a session link while a progress bar
//! runs, and summarises what became of the rows.

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use sluice::config::Config;
use sluice::daemon::{Daemon, PolicyChoice, RunSummary};
use sluice::world::now_ms;
use sluice_links::{MemberKey, MeshConfig, SessionLinkConfig};
use sluice_store::{NewRow, Outbox};
use sluice_test_broker::{Broker, BrokerOptions, Member};
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

const MESH: &str = "demo";
const MINUTE_MS: i64 = 60_000;

/// What the demo shows at the end.
#[derive(Debug)]
pub struct DemoReport {
    pub rows: u64,
    pub policy: sluice::engine::PolicyMeta,
    pub summary: RunSummary,
    pub dead_by_reason: Vec<(String, u64)>,
    pub broker_sends: u64,
    pub broker_distinct: u64,
}

/// Runs the demo with `normal` ordinary rows (other kinds in proportion).
pub fn run(normal: u32, record: Option<&std::path::Path>) -> anyhow::Result<DemoReport> {
    let dir = tempfile::tempdir().context("making a temporary folder for the demo outbox")?;
    let outbox_path = dir.path().join("outbox.db");
    let key = MemberKey::from_seed(random_seed());
    let session_key = MemberKey::from_seed(random_seed());
    let broker_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let broker = broker_runtime.block_on(Broker::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        broker_options(&key),
    ))?;

    let rows = demo_rows(normal, &session_key.public_hex());
    let total = rows.len() as u64;
    Outbox::open(&outbox_path)?.enqueue(&rows)?;

    let config = Config {
        path: dir.path().join("demo.toml"),
        outbox: outbox_path.clone(),
        meshes: vec![MeshConfig {
            slug: MESH.into(),
            broker_url: broker.url(),
            mesh_id: "mesh_demo".into(),
            member_id: "mem_demo".into(),
            key,
            session_id: "sluice-demo".into(),
            // The demo's broker sets no rate limit; a real one does (the
            // default budget is the real broker's 60 a minute).
            rate_limit_per_minute: 0,
            rate_limit_burst: 10,
            ca_certs: Vec::new(),
            ca_file: None,
        }],
        sessions: vec![SessionLinkConfig {
            mesh: MESH.into(),
            session_id: "sluice-demo-session".into(),
            key: session_key,
            attestation_ttl: sluice_links::ATTESTATION_TTL_DEFAULT,
        }],
        cwd: dir.path().display().to_string(),
        derived_session_ids: vec![false],
        rollback_after_traps: sluice::swap::ROLLBACK_AFTER_DEFAULT,
        scheduling: sluice::config::Scheduling::Normal,
        verify: None,
        unguarded: false,
        poll_interval: Duration::from_millis(100),
        batches_in_flight: 2,
        policy: sluice::policy_settings::PolicySettings::default(),
    };
    let mut daemon = Daemon::start(&config, &PolicyChoice::Embedded, true, record)?;
    let progress = progress_bar(total);
    let retried = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    daemon.observe(|| {
        let (bar, retried) = (progress.clone(), retried.clone());
        Box::new(move |report| {
            bar.inc(u64::from(report.done + report.dead + report.expired));
            let so_far = retried.fetch_add(
                u64::from(report.retried),
                std::sync::atomic::Ordering::Relaxed,
            ) + u64::from(report.retried);
            bar.set_message(format!("retried {so_far}"));
        })
    });
    let summary = daemon.run();
    progress.finish_and_clear();

    let stats = broker.stats();
    broker_runtime.block_on(broker.shutdown());
    Ok(DemoReport {
        rows: total,
        policy: daemon.meta.clone(),
        summary,
        dead_by_reason: dead_by_reason(&outbox_path)?,
        broker_sends: stats.sends,
        broker_distinct: stats.receipts.len() as u64,
    })
}

fn broker_options(key: &MemberKey) -> BrokerOptions {
    BrokerOptions {
        members: Some(vec![Member {
            mesh_id: "mesh_demo".into(),
            member_id: Some("mem_demo".into()),
            public_key: key.public_hex(),
        }]),
        reject_permanent: vec![("@blocked".into(), "blocked by recipient grants".into())],
        reject_transient: vec![(
            "@flaky".into(),
            1,
            "no connected peer for target (not online, or targetSpec is your own key without another session)".into(),
        )],
        ..BrokerOptions::default()
    }
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{spinner} draining [{bar:40}] {pos}/{len} rows settled, {msg} ({elapsed})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Every kind of row the policy has a rule for.
fn demo_rows(normal: u32, session_pubkey: &str) -> Vec<NewRow> {
    let now = now_ms();
    let n = normal.max(24);
    let mut rows = Vec::new();
    let mut add = |count: u32, kind: &str, age_ms: i64, shape: &dyn Fn(&mut NewRow, u32)| {
        for i in 0..count {
            let mut row = base_row(kind, i, now - age_ms);
            shape(&mut row, i);
            rows.push(row);
        }
    };
    let priorities = ["now", "next", "low", "urgent"];
    add(n, "normal", 0, &|r, i| {
        routed(
            r,
            &format!("@peer-{}", i % 20),
            priorities[(i % 4) as usize],
        )
    });
    add(n / 8, "legacy", 0, &|r, _| r.mesh = None);
    add(n / 24, "unknown-mesh", 0, &|r, _| {
        routed(r, "@peer", "next");
        r.mesh = Some("elsewhere".into());
    });
    add(n / 24, "session", 15 * MINUTE_MS, &|r, i| {
        routed(r, "@peer", "now");
        r.sender_session_pubkey = Some(format!("{:064x}", i + 1));
    });
    add(n / 12, "session-link", 0, &|r, _| {
        routed(r, "@peer", "now");
        r.sender_session_pubkey = Some(session_pubkey.to_string());
    });
    add(n / 24, "blocked", 0, &|r, _| routed(r, "@blocked", "next"));
    add(n / 12, "flaky", 0, &|r, _| routed(r, "@flaky", "next"));
    add(n / 120, "expired", 25 * 60 * MINUTE_MS, &|r, _| {
        routed(r, "@peer", "next")
    });
    add(n / 120, "malformed", 0, &|r, _| {
        routed(r, "@peer", "next");
        r.nonce = None;
    });
    rows
}

fn base_row(kind: &str, i: u32, enqueued_at: i64) -> NewRow {
    let payload = format!("{kind} message {i}").into_bytes();
    NewRow {
        id: format!("{kind}-{i:05}"),
        client_message_id: format!("cm-{kind}-{i:05}"),
        request_fingerprint: payload.iter().rev().copied().collect(),
        payload,
        enqueued_at,
        next_attempt_at: enqueued_at,
        mesh: Some(MESH.into()),
        ..NewRow::default()
    }
}

fn routed(row: &mut NewRow, target: &str, priority: &str) {
    row.target_spec = Some(target.into());
    row.nonce = Some("bm9uY2Utbm9uY2Utbm9uY2Utbm9uY2Ut".into());
    row.ciphertext = Some("c2VhbGVkIGJveA==".into());
    row.priority = Some(priority.into());
}

fn random_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    let _ = getrandom::fill(&mut seed);
    seed
}

fn dead_by_reason(path: &std::path::Path) -> anyhow::Result<Vec<(String, u64)>> {
    let conn = rusqlite::Connection::open(path)?;
    let mut stmt = conn.prepare("SELECT COALESCE(last_error, ''), COUNT(*) FROM outbox WHERE status = 'dead' GROUP BY 1 ORDER BY 2 DESC, 1")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.summary.totals;
        let p = &self.policy;
        writeln!(
            f,
            "policy   {} {} — WebAssembly component on wasmtime, {}",
            p.name, p.version, p.source
        )?;
        writeln!(f, "         sha256 {}", p.sha256)?;
        writeln!(f, "rows     {} in the demo outbox", self.rows)?;
        writeln!(f, "done     {}", t.done)?;
        let mut dead = String::new();
        for (reason, count) in &self.dead_by_reason {
            let _ = write!(dead, "\n           {count:>6}  {reason}");
        }
        writeln!(f, "dead     {}{dead}", t.dead + t.expired)?;
        writeln!(
            f,
            "retried  {} (transient rejections, sent again after backoff)",
            t.retried
        )?;
        writeln!(
            f,
            "broker   {} sends for {} distinct messages",
            self.broker_sends, self.broker_distinct
        )?;
        writeln!(
            f,
            "time     {:.2} s, {} ticks: most of it the 1 s backoff before the rows rejected once go out again\n         (for throughput see docs/performance.md: `cargo bench -p sluice-cli`)",
            self.summary.elapsed.as_secs_f64(),
            t.ticks
        )
    }
}
