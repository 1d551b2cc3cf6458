//! The test broker over wss://: a client trusting only the broker's
//! self-signed certificate gets through; one trusting the public roots does
//! not.

use crate::broker_support::*;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{ClientConfig, RootCertStore};
use sluice_test_broker::{Broker, BrokerOptions, self_signed_localhost};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_tungstenite::{Connector, connect_async_tls_with_config};

async fn start_tls_broker(cert: &str, key: &str) -> Broker {
    Broker::start_tls(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        BrokerOptions::default(),
        cert,
        key,
    )
    .await
    .expect("tls broker binds port 0")
}

/// A rustls client that trusts exactly `roots`.
fn client_config(roots: RootCertStore) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

#[tokio::test]
async fn a_client_trusting_the_self_signed_certificate_gets_a_hello_ack_over_wss() {
    let (cert, key) = self_signed_localhost();
    let broker = start_tls_broker(&cert, &key).await;
    let url = broker.url();
    assert!(url.starts_with("wss://localhost:"), "{url}");
    let mut roots = RootCertStore::empty();
    let der = CertificateDer::from_pem_slice(cert.as_bytes()).expect("the cert is PEM");
    roots.add(der).expect("the cert is a usable root");
    let connector = Connector::Rustls(client_config(roots));
    let (mut socket, _) = connect_async_tls_with_config(&url, None, false, Some(connector))
        .await
        .expect("a wss connection");
    send_json(&mut socket, &hello("s-tls")).await;
    assert_eq!(next_json(&mut socket).await["type"], "hello_ack");
    assert_eq!(ack_error(&ack_of(&mut socket, "over-tls", "*").await), None);
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_is_turned_away() {
    let (cert, key) = self_signed_localhost();
    let broker = start_tls_broker(&cert, &key).await;
    let (other_cert, _) = self_signed_localhost();
    let mut roots = RootCertStore::empty();
    let der = CertificateDer::from_pem_slice(other_cert.as_bytes()).expect("PEM");
    roots.add(der).expect("root");
    let connector = Connector::Rustls(client_config(roots));
    let result = connect_async_tls_with_config(broker.url(), None, false, Some(connector)).await;
    assert!(
        result.is_err(),
        "a certificate from another authority was trusted"
    );
    assert_eq!(broker.stats().connections_open, 0);
}

#[tokio::test]
async fn bad_pem_is_refused_at_start_with_a_named_cause() {
    let (cert, _) = self_signed_localhost();
    let bind = SocketAddr::from(([127, 0, 0, 1], 0));
    let error = Broker::start_tls(bind, BrokerOptions::default(), &cert, "not a key")
        .await
        .err()
        .map(|e| e.to_string());
    assert!(
        error.as_deref().is_some_and(|e| e.contains("tls key")),
        "{error:?}"
    );
}
