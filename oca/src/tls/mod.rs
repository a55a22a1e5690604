//! HTTPS: certificates, the rustls configuration, and its reload.
//!
//! Ticket keys and the session cache outlive certificate reloads, so clients
//! keep resuming sessions across a SIGHUP.

#[cfg(feature = "ktls")]
pub mod ktls;
pub mod stream;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate chain {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("cannot read private key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("certificate and key do not make a usable TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The live TLS configuration.
pub struct Tls {
    current: ArcSwap<ServerConfig>,
    cert: PathBuf,
    key: PathBuf,
    ticketer: Arc<dyn ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions>,
}

impl Tls {
    /// Load the chain and key and build the configuration.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let ticketer = rustls::crypto::ring::Ticketer::new()?;
        let sessions: Arc<dyn StoresServerSessions> = ServerSessionMemoryCache::new(20_000);
        let config = build(cert, key, &ticketer, &sessions)?;
        Ok(Tls {
            current: ArcSwap::from_pointee(config),
            cert: cert.to_owned(),
            key: key.to_owned(),
            ticketer,
            sessions,
        })
    }

    /// The configuration new connections use.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Reread certificate and key. On any error the current ones stay in use;
    /// connections already open keep the configuration they started with.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.cert, &self.key, &self.ticketer, &self.sessions)?;
        self.current.store(Arc::new(config));
        Ok(())
    }
}

/// The crypto provider for the whole workspace.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(
    cert: &Path,
    key: &Path,
    ticketer: &Arc<dyn ProducesTickets>,
    sessions: &Arc<dyn StoresServerSessions>,
) -> Result<ServerConfig, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(|e| TlsError::Cert {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Cert {
            path: cert.to_owned(),
            reason: "no CERTIFICATE blocks found".into(),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, private)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = Arc::clone(ticketer);
    config.session_storage = Arc::clone(sessions);
    // Secrets stay extractable so a kernel-TLS handoff is possible.
    config.enable_secret_extraction = cfg!(feature = "ktls");
    Ok(config)
}
