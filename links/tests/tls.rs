//! wss:// links against the test broker serving a self-signed localhost
//! certificate, over real sockets: trusted through `ca_certs` the link
//! opens; without them it does not, and says to set `ca_file`. And
//! `read_ca_file` names the file and the fix when it cannot be used.

use crate::common::*;
use sluice_contract::{SendResult, SessionState};
use sluice_links::{Broker, BrokerOptions, LinkState, Links, MeshConfig, read_ca_file};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A file under the temp dir, unique to this process and `name`.
fn temp_file(name: &str, contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("sluice-tls-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).expect("temp file");
    path
}

async fn tls_broker() -> (Broker, String) {
    let (cert_pem, key_pem) = sluice_links::self_signed_localhost();
    let bind = SocketAddr::from(([127, 0, 0, 1], 0));
    let broker = Broker::start_tls(bind, BrokerOptions::default(), &cert_pem, &key_pem)
        .await
        .expect("broker binds port 0");
    (broker, cert_pem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_trusts_the_brokers_certificate_opens_over_wss() {
    let (broker, cert_pem) = tls_broker().await;
    assert!(broker.url().starts_with("wss://"), "{}", broker.url());
    let ca_file = temp_file("trusted.pem", &cert_pem);
    let ca_certs = read_ca_file(&ca_file).expect("the broker's certificate reads");
    let _ = std::fs::remove_file(&ca_file);
    assert_eq!(ca_certs.len(), 1);
    let trusted = MeshConfig {
        ca_certs,
        ..mesh("main", &broker.url())
    };
    let links = Links::start(vec![trusted], vec![session("main", 9)], link_options());
    assert!(links.wait_open(PATIENCE).await, "{:?}", links.reports());
    let pubkey = session_key(9).public_hex();
    assert!(
        eventually(
            || links.session_states(std::slice::from_ref(&pubkey)) == vec![SessionState::Open]
        )
        .await,
        "the session link shares the mesh's trust: {:?}",
        links.reports()
    );
    let results = links
        .send_batch(
            vec![
                dispatch("main", "d-1", "*"),
                session_dispatch(&pubkey, "s-1", "*"),
            ],
            Duration::from_secs(10),
        )
        .await;
    assert!(
        results.iter().all(|r| matches!(r, SendResult::Accepted(_))),
        "{results:?}"
    );
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_without_the_certificate_stays_down_and_says_to_set_ca_file() {
    let (broker, _) = tls_broker().await;
    let links = Links::start(
        vec![mesh("main", &broker.url())],
        Vec::new(),
        link_options(),
    );
    assert!(
        eventually(|| links.reports()[0].failures >= 2).await,
        "{:?}",
        links.reports()
    );
    let report = links.reports().remove(0);
    assert_eq!(report.state, LinkState::Connecting);
    let error = report.last_error.expect("the failure is kept");
    assert!(
        error.contains("not trusted") && error.contains("set ca_file"),
        "{error}"
    );
    assert_eq!(broker.stats().hellos_accepted, 0);
    links.shutdown().await;
}

#[test]
fn a_ca_file_that_cannot_be_used_is_named_with_what_to_give() {
    let missing = std::env::temp_dir().join("sluice-tls-no-such-file.pem");
    let error = read_ca_file(&missing).expect_err("missing");
    assert!(
        error.contains("cannot read ca_file") && error.contains("sluice-tls-no-such-file.pem"),
        "{error}"
    );
    assert!(error.contains("give a PEM file"), "{error}");
    let empty = temp_file("empty.pem", "no certificates here\n");
    let error = read_ca_file(&empty).expect_err("no certificate");
    let _ = std::fs::remove_file(&empty);
    assert!(
        error.contains("holds no PEM certificate") && error.contains("empty.pem"),
        "{error}"
    );
    let broken = temp_file(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    );
    let error = read_ca_file(&broken).expect_err("not a certificate");
    let _ = std::fs::remove_file(&broken);
    assert!(
        error.contains("broken.pem") && error.contains("certificate 1"),
        "{error}"
    );
}
