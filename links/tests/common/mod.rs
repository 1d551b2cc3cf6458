//! Fixtures shared by the socket tests: a broker on port 0, links to it,
//! dispatches, and waiting for a condition instead of sleeping.
#![allow(dead_code)]

use sluice_contract::{Dispatch, Route, SendResult};
use sluice_links::{
    ATTESTATION_TTL_DEFAULT, LinkOptions, Links, MemberKey, MeshConfig, SessionLinkConfig,
};
use sluice_test_broker::{Broker, BrokerOptions};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

pub const MESH_ID: &str = "mesh_test";
pub const MEMBER_ID: &str = "mem_test";

/// Long enough for any condition on a loaded 2-core machine, short enough
/// that a broken test fails in seconds.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub fn member_key() -> MemberKey {
    MemberKey::from_seed([7; 32])
}

pub async fn start_broker(options: BrokerOptions) -> Broker {
    Broker::start(SocketAddr::from(([127, 0, 0, 1], 0)), options)
        .await
        .expect("broker binds port 0")
}

/// The `sessionId` of the fixture's daemon hellos.
pub const DAEMON_SESSION_ID: &str = "test-daemon-session";

/// The working directory the fixture's hellos report.
pub const CWD: &str = "/srv/sluice-test";

pub fn mesh(slug: &str, url: &str) -> MeshConfig {
    MeshConfig {
        slug: slug.into(),
        broker_url: url.into(),
        mesh_id: MESH_ID.into(),
        member_id: MEMBER_ID.into(),
        key: member_key(),
        session_id: DAEMON_SESSION_ID.into(),
        // No budget: these tests are about links, not pacing (tests/budget.rs
        // sets one); the test broker sets no rate limit unless asked.
        rate_limit_per_minute: 0,
        rate_limit_burst: 10,
        ca_certs: Vec::new(),
        ca_file: None,
    }
}

/// A session key (seed `seed` repeated), attested by `member_key()`.
pub fn session_key(seed: u8) -> MemberKey {
    MemberKey::from_seed([seed; 32])
}

/// A session link in mesh `slug` with the key of `seed`.
pub fn session(slug: &str, seed: u8) -> SessionLinkConfig {
    SessionLinkConfig {
        mesh: slug.into(),
        session_id: format!("test-session-{seed}"),
        key: session_key(seed),
        attestation_ttl: ATTESTATION_TTL_DEFAULT,
    }
}

/// Fast reconnects so link-loss tests stay short.
pub fn link_options() -> LinkOptions {
    LinkOptions {
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        hostname: "test-host".into(),
        pid: 42,
        cwd: CWD.into(),
        channel: "sluice".into(),
        ..LinkOptions::default()
    }
}

/// Links to one broker as mesh "main", already open.
pub async fn open_links(broker: &Broker) -> Links {
    let links = Links::start(
        vec![mesh("main", &broker.url())],
        Vec::new(),
        link_options(),
    );
    assert!(
        links.wait_open(PATIENCE).await,
        "link did not open: {:?}",
        links.states()
    );
    links
}

/// A dispatch over the session link of `pubkey`.
pub fn session_dispatch(pubkey: &str, cmid: &str, target: &str) -> Dispatch {
    Dispatch {
        route: Route::Session(pubkey.into()),
        ..dispatch("main", cmid, target)
    }
}

pub fn dispatch(slug: &str, cmid: &str, target: &str) -> Dispatch {
    Dispatch {
        rowid: 0,
        route: Route::Daemon(slug.into()),
        client_message_id: cmid.into(),
        request_fingerprint_hex: "00ff".into(),
        target_spec: target.into(),
        priority: "next".into(),
        nonce: format!("nonce-{cmid}"),
        ciphertext: format!("cipher-{cmid}"),
    }
}

/// `count` dispatches to mesh "main", ids `{prefix}-{i}`.
pub fn dispatches(prefix: &str, count: usize, target: &str) -> Vec<Dispatch> {
    (0..count)
        .map(|i| dispatch("main", &format!("{prefix}-{i}"), target))
        .collect()
}

pub fn failed(reason: &str) -> SendResult {
    SendResult::Failed(reason.into())
}

/// Polls `condition` until it holds or `PATIENCE` runs out.
pub async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    condition()
}
