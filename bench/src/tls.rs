//! TLS client configuration: rustls with the ring provider (the workspace's
//! one crypto provider), ALPN http/1.1, TLS 1.3 unless asked for 1.2.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Where Debian and most distributions keep the system trust store; used when
/// neither `--ca` nor `--insecure` is given.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How to trust the server.
#[derive(Debug, Clone)]
pub enum Trust {
    /// PEM roots from this file.
    Ca(std::path::PathBuf),
    /// Accept any certificate (but still check handshake signatures).
    Insecure,
    /// The system trust store.
    System,
}

/// Builds the client configuration once per run; connections share it (and so
/// its session cache).
pub fn client_config(trust: &Trust, tls12: bool) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .context("TLS protocol versions")?;
    let mut config = match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
        Trust::Ca(path) => builder
            .with_root_certificates(roots(path)?)
            .with_no_client_auth(),
        Trust::System => builder
            .with_root_certificates(
                roots(Path::new(SYSTEM_ROOTS))
                    .map_err(|e| anyhow!("{e}; for https give --ca FILE or --insecure"))?,
            )
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The SNI name (or IP) to present for a host.
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned()).map_err(|_| anyhow!("{host:?} is not a valid TLS name"))
}

fn roots(path: &Path) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read CA file {}", path.display()))?;
    for cert in certs {
        let cert = cert.with_context(|| format!("bad PEM in {}", path.display()))?;
        store
            .add(cert)
            .with_context(|| format!("bad CA certificate in {}", path.display()))?;
    }
    if store.is_empty() {
        bail!("no certificates in {}", path.display());
    }
    Ok(store)
}

/// `--insecure`: any certificate chain is accepted (for self-signed lab
/// certificates), but the handshake signature is still verified with the
/// provider's algorithms, so the TLS work the server does (and that a
/// benchmark is measuring) is the real one.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
