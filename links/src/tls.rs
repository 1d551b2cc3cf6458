//! TLS for `wss://` links: which certificates a link trusts, and what to say
//! when the broker's certificate is not one of them.
//!
//! Owns: reading a mesh's `ca_file`, the rustls client configuration of a
//! mesh (the web roots of webpki-roots plus the mesh's extra CA
//! certificates, ring as the crypto provider), and recognising a refused
//! certificate in a connect error. Does not own: connecting (`link`) or
//! where `ca_file` is configured (the host's `config`).

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{CertificateError, ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Error as WsError;

/// Certificates accepted from one `ca_file`: prevents a wrong path (a whole
/// system bundle, a log file full of PEM) from loading without bound.
pub const CA_FILE_CERTS_MAX: usize = 1024;

/// Reads the PEM certificates of a mesh's `ca_file`, each checked to be
/// usable as a trust anchor. The error names the file, says what is wrong
/// and what to give instead.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let give = "give a PEM file with the certificate of the CA that signed the broker's certificate (or the broker's certificate itself)";
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read ca_file {shown}: {e}; {give}"))?;
    let mut certs = Vec::new();
    for (index, cert) in CertificateDer::pem_slice_iter(&bytes).enumerate() {
        let cert = cert.map_err(|e| format!("ca_file {shown} is not valid PEM: {e}; {give}"))?;
        let mut scratch = RootCertStore::empty();
        scratch.add(cert.clone()).map_err(|e| {
            format!(
                "ca_file {shown}: certificate {} is not a usable CA certificate: {e}; {give}",
                index + 1
            )
        })?;
        if certs.len() == CA_FILE_CERTS_MAX {
            return Err(format!(
                "ca_file {shown} holds more than {CA_FILE_CERTS_MAX} certificates; {give}, not a whole bundle"
            ));
        }
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(format!(
            "ca_file {shown} holds no PEM certificate (no -----BEGIN CERTIFICATE----- block); {give}"
        ));
    }
    Ok(certs)
}

/// How a link makes its TLS connections: plain for `ws://`, one rustls
/// configuration per mesh for `wss://`.
#[derive(Clone)]
pub(crate) enum Tls {
    Plain,
    Rustls(Arc<ClientConfig>),
    /// No configuration could be built; every connect fails with this.
    Broken(String),
}

impl Tls {
    /// The TLS setup for `url`, trusting the web roots plus `extra`.
    pub(crate) fn for_url(url: &str, extra: &[CertificateDer<'static>]) -> Tls {
        let secure = url
            .get(..6)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("wss://"));
        if !secure {
            return Tls::Plain;
        }
        match client_config(extra) {
            Ok(config) => Tls::Rustls(config),
            Err(e) => Tls::Broken(format!("cannot set up TLS: {e}")),
        }
    }

    pub(crate) fn connector(&self) -> Result<Option<Connector>, String> {
        match self {
            Tls::Plain => Ok(None),
            Tls::Rustls(config) => Ok(Some(Connector::Rustls(Arc::clone(config)))),
            Tls::Broken(reason) => Err(reason.clone()),
        }
    }
}

fn client_config(extra: &[CertificateDer<'static>]) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // `read_ca_file` checked each one; a config built by hand may not be.
    let (_, ignored) = roots.add_parsable_certificates(extra.iter().cloned());
    if ignored > 0 {
        tracing::error!(target: "sluice", ignored, "some ca_certs are not usable CA certificates and are ignored");
    }
    // The provider is named here, not taken from the process default, so no
    // other part of the process can change what a link trusts.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// When a connect failed because the broker's certificate was refused: what
/// is wrong with it and what to do.
pub(crate) fn certificate_problem(error: &WsError) -> Option<String> {
    let WsError::Io(io) = error else {
        return None;
    };
    let rustls::Error::InvalidCertificate(problem) =
        io.get_ref()?.downcast_ref::<rustls::Error>()?
    else {
        return None;
    };
    Some(match problem {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
            "the broker's TLS certificate is not trusted ({problem:?}); set ca_file in this mesh's config to the PEM certificate of the CA that signed it"
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!(
                "the broker's TLS certificate is not valid for this host name ({problem}); use in broker_url the host name the certificate names"
            )
        }
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => format!(
            "the broker's TLS certificate is outside its validity period ({problem}); check this machine's clock, or renew the certificate"
        ),
        other => format!(
            "the broker's TLS certificate was refused ({other}); check the certificate and ca_file"
        ),
    })
}
