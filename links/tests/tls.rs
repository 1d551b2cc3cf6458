//! wss:// links against the test broker serving a self-signed localhost
//! certificate, over real sockets: trusted through `ca_certs` the link
//! opens; without them it does not, and says to set `ca_file`. A broker that
//! comes back on a new certificate is trusted again once its `ca_file` holds
//! it, read again at every connect (and at once on `retry_now`, SIGHUP's
//! part). And `read_ca_file` names the file and the fix when it cannot be
//! used.

use crate::common::*;
use sluice_contract::{SendResult, SessionState};
use sluice_links::{LinkState, Links, MeshConfig, read_ca_file};
use sluice_test_broker::{Broker, BrokerOptions};
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
    tls_broker_at(SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// A test broker on `bind` serving a certificate made for it.
async fn tls_broker_at(bind: SocketAddr) -> (Broker, String) {
    let (cert_pem, key_pem) = sluice_test_broker::self_signed_localhost();
    let broker = Broker::start_tls(bind, BrokerOptions::default(), &cert_pem, &key_pem)
        .await
        .expect("broker binds");
    (broker, cert_pem)
}

/// The mesh `main` on `url`, trusting what `ca_file` holds.
fn mesh_with_ca_file(url: &str, ca_file: &std::path::Path) -> MeshConfig {
    MeshConfig {
        ca_certs: read_ca_file(ca_file).expect("the certificate reads"),
        ca_file: Some(ca_file.to_path_buf()),
        ..mesh("main", url)
    }
}

async fn send_one(links: &Links, cmid: &str) -> Vec<SendResult> {
    links
        .send_batch(vec![dispatch("main", cmid, "*")], Duration::from_secs(10))
        .await
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
        ca_file: None,
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

/// The broker restarts on the same port with a new self-signed
/// certificate. While `ca_file` still holds the old one, each attempt fails
/// and says which certificate the broker showed and which file was read,
/// without telling to set a `ca_file` that is set. Once the new certificate
/// is written to that path, the link opens again with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_back_on_a_new_certificate_is_trusted_once_ca_file_holds_it() {
    let (first, first_cert) = tls_broker().await;
    let url = first.url();
    let address = first.local_addr();
    let ca_file = temp_file("rotated.pem", &first_cert);
    let links = Links::start(
        vec![mesh_with_ca_file(&url, &ca_file)],
        Vec::new(),
        link_options(),
    );
    assert!(links.wait_open(PATIENCE).await, "{:?}", links.reports());
    assert!(matches!(
        send_one(&links, "before").await[..],
        [SendResult::Accepted(_)]
    ));

    first.shutdown().await;
    let (second, second_cert) = tls_broker_at(address).await;
    // The first failures may be refused connections, before the broker is back.
    let refused_certificate = || {
        links.reports()[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("certificate"))
    };
    assert!(
        eventually(refused_certificate).await,
        "{:?}",
        links.reports()
    );
    let error = links.reports()[0]
        .last_error
        .clone()
        .expect("the failure is kept");
    assert!(
        error.contains("rotated.pem") && error.contains("subject") && error.contains("issuer"),
        "{error}"
    );
    assert!(!error.contains("set ca_file"), "{error}");

    std::fs::write(&ca_file, &second_cert).unwrap();
    assert!(links.wait_open(PATIENCE).await, "{:?}", links.reports());
    assert!(matches!(
        send_one(&links, "after").await[..],
        [SendResult::Accepted(_)]
    ));
    assert_eq!(second.stats().hellos_accepted, 1);
    let _ = std::fs::remove_file(&ca_file);
    links.shutdown().await;
    second.shutdown().await;
}

/// `retry_now` (what SIGHUP does) cuts a long reconnect delay short: a link
/// that would wait a minute before its next attempt tries at once, reading
/// `ca_file` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_now_reads_ca_file_again_without_waiting_out_the_delay() {
    let (broker, cert) = tls_broker().await;
    let ca_file = temp_file("later.pem", "");
    let (other_cert, _) = sluice_test_broker::self_signed_localhost();
    std::fs::write(&ca_file, &other_cert).unwrap();
    let patient = sluice_links::LinkOptions {
        reconnect_min: Duration::from_secs(60),
        reconnect_max: Duration::from_secs(60),
        ..link_options()
    };
    let links = Links::start(
        vec![mesh_with_ca_file(&broker.url(), &ca_file)],
        Vec::new(),
        patient,
    );
    assert!(
        eventually(|| links.reports()[0].failures >= 1).await,
        "{:?}",
        links.reports()
    );
    std::fs::write(&ca_file, &cert).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        links.reports()[0].state,
        LinkState::Connecting,
        "the link waits out its delay until told"
    );
    links.retry_now();
    assert!(links.wait_open(PATIENCE).await, "{:?}", links.reports());
    let _ = std::fs::remove_file(&ca_file);
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
