//! wss:// for the test broker: the server side of TLS and a certificate it
//! can make for itself.
//!
//! Owns: `self_signed_localhost` and turning PEM text into a `TlsAcceptor`
//! (rustls with the `ring` provider, as the links use). Does not own: the
//! TLS handshake of each connection (`mod`) or the client side (the links'
//! own `tls` module).

use rustls::ServerConfig;
use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{Error, ErrorKind};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// A fresh self-signed certificate for `localhost` and `127.0.0.1`, and its
/// private key, both PEM: for `Broker::start_tls`, and for a client's CA
/// file (the certificate is its own authority).
pub fn self_signed_localhost() -> (String, String) {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    // Fails only for names that are not valid DNS names or IP addresses, or
    // if the ring provider cannot make a key: neither happens here.
    #[allow(clippy::expect_used)]
    let certified =
        rcgen::generate_simple_self_signed(names).expect("a localhost certificate can be made");
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

/// The TLS acceptor for a certificate chain and key in PEM.
pub(crate) fn acceptor(cert_pem: &str, key_pem: &str) -> std::io::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("tls certificate is not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(
            "tls certificate has no CERTIFICATE block; pass a PEM certificate, e.g. the cert.pem of --tls-self-signed".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
        invalid(format!(
            "tls key has no usable PRIVATE KEY block ({e}); pass the PEM key that goes with the certificate"
        ))
    })?;
    let config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("tls protocol versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            invalid(format!(
                "tls certificate and key do not go together: {e}; pass the key the certificate was made for"
            ))
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_makes_an_acceptor_and_bad_pem_is_named() {
        let (cert, key) = self_signed_localhost();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        assert!(acceptor(&cert, &key).is_ok());
        let no_cert = acceptor("", &key).err().map(|e| e.to_string());
        assert!(no_cert.is_some_and(|e| e.contains("no CERTIFICATE block")));
        let no_key = acceptor(&cert, "").err().map(|e| e.to_string());
        assert!(no_key.is_some_and(|e| e.contains("tls key")));
        let (_, other_key) = self_signed_localhost();
        let mismatch = acceptor(&cert, &other_key).err().map(|e| e.to_string());
        assert!(
            mismatch
                .as_deref()
                .is_some_and(|e| e.contains("do not go together")),
            "{mismatch:?}"
        );
    }
}
