//! TLS for `wss://` links: which certificates a link trusts, and what to say
//! when the broker's certificate is not one of them.
//!
//! Owns: reading a mesh's `ca_file` (at start, and again at every connect
//! attempt), the rustls client configuration of an attempt (the web roots of
//! webpki-roots plus the mesh's extra CA certificates, ring as the crypto
//! provider), and saying in a connect error which certificate the broker
//! showed and what was trusted. Does not own: connecting (`link`) or
//! where `ca_file` is configured (the host's `config`).

use crate::config::MeshConfig;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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

/// How a link makes its TLS connections: plain for `ws://`; for `wss://`
/// the web roots plus the mesh's extra CA certificates, with `ca_file` read
/// again at every attempt, so a broker that comes back with a new
/// certificate at the same path is trusted without a restart.
#[derive(Clone)]
pub(crate) enum Tls {
    Plain,
    Rustls {
        /// The certificates given with the mesh (read from `ca_file` at
        /// start, or set by hand); used when there is no `ca_file`.
        extra: Arc<Vec<CertificateDer<'static>>>,
        ca_file: Option<Arc<PathBuf>>,
    },
}

/// The TLS side of one connect attempt: its connector, and what it trusted
/// and was shown, for the error when the broker's certificate is refused.
pub(crate) struct Attempt {
    pub connector: Option<Connector>,
    /// The `ca_file` read for this attempt and what it holds, if any.
    trusted: Option<String>,
    /// The broker's certificate, once the verifier has refused it.
    refused: Arc<Mutex<Option<String>>>,
}

impl Tls {
    /// The TLS setup for a mesh's `broker_url` and trust anchors.
    pub(crate) fn for_mesh(mesh: &MeshConfig) -> Tls {
        let secure = mesh
            .broker_url
            .get(..6)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("wss://"));
        if !secure {
            return Tls::Plain;
        }
        Tls::Rustls {
            extra: Arc::new(mesh.ca_certs.clone()),
            ca_file: mesh.ca_file.clone().map(Arc::new),
        }
    }

    /// Sets up one attempt. A `ca_file` is read now, not at start: Err names
    /// the file and what is wrong with it.
    pub(crate) fn attempt(&self) -> Result<Attempt, String> {
        let (extra, ca_file) = match self {
            Tls::Plain => {
                return Ok(Attempt {
                    connector: None,
                    trusted: None,
                    refused: Arc::default(),
                });
            }
            Tls::Rustls { extra, ca_file } => (extra, ca_file),
        };
        let (certs, trusted) = match ca_file {
            Some(path) => {
                let certs = read_ca_file(path)?;
                let held: Vec<String> = certs.iter().map(|c| describe(c)).collect();
                let trusted = format!("ca_file {} (holding {})", path.display(), held.join("; "));
                (certs, Some(trusted))
            }
            None => (extra.to_vec(), None),
        };
        let refused = Arc::new(Mutex::new(None));
        let config = client_config(&certs, Arc::clone(&refused))
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        Ok(Attempt {
            connector: Some(Connector::Rustls(config)),
            trusted,
            refused,
        })
    }
}

fn client_config(
    extra: &[CertificateDer<'static>],
    refused: Arc<Mutex<Option<String>>>,
) -> Result<Arc<ClientConfig>, String> {
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
    let webpki =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|e| e.to_string())?;
    let verifier = Arc::new(Remembering { webpki, refused });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// rustls's own WebPKI verification, unchanged; it only remembers the
/// certificate it refused, so the error can say which one the broker showed.
#[derive(Debug)]
struct Remembering {
    webpki: Arc<WebPkiServerVerifier>,
    refused: Arc<Mutex<Option<String>>>,
}

impl ServerCertVerifier for Remembering {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        if verdict.is_err() {
            let mut refused = self
                .refused
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            *refused = Some(describe(end_entity));
        }
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A certificate as an operator tells it from another: its subject and
/// issuer.
fn describe(cert: &CertificateDer<'_>) -> String {
    match x509_parser::parse_x509_certificate(cert.as_ref()) {
        Ok((_, parsed)) => format!(
            "subject \"{}\", issuer \"{}\"",
            parsed.subject(),
            parsed.issuer()
        ),
        Err(_) => "a certificate that does not parse as X.509".to_string(),
    }
}

/// When a connect failed because the broker's certificate was refused: what
/// is wrong with it, which certificate the broker showed, what was trusted,
/// and what to do.
pub(crate) fn certificate_problem(error: &WsError, attempt: &Attempt) -> Option<String> {
    let WsError::Io(io) = error else {
        return None;
    };
    let rustls::Error::InvalidCertificate(problem) =
        io.get_ref()?.downcast_ref::<rustls::Error>()?
    else {
        return None;
    };
    let shown = attempt
        .refused
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
        .map(|cert| format!(" ({cert})"))
        .unwrap_or_default();
    Some(match problem {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            match &attempt.trusted {
                Some(trusted) => format!(
                    "the broker's TLS certificate{shown} is not signed by a CA in {trusted}, nor by a web root ({problem:?}); put the certificate of the CA that signed it in that file (it is read again at every connect)"
                ),
                None => format!(
                    "the broker's TLS certificate{shown} is not trusted ({problem:?}); set ca_file in this mesh's config to the PEM certificate of the CA that signed it"
                ),
            }
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!(
                "the broker's TLS certificate{shown} is not valid for this host name ({problem}); use in broker_url the host name the certificate names"
            )
        }
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => format!(
            "the broker's TLS certificate{shown} is outside its validity period ({problem}); check this machine's clock, or renew the certificate"
        ),
        other => format!(
            "the broker's TLS certificate{shown} was refused ({other}); check the certificate and ca_file"
        ),
    })
}
