//! The HTTPS listener's certificate, reloadable without dropping connections.
//!
//! `$HP_CERTS_DIR/cert.pem` holds the chain and the key in one file, as HaRP's HAProxy `crt`.
//! SIGHUP re-reads it; a broken file keeps the previous certificate in service (and says so),
//! so a bad renewal never takes HTTPS down. Handshakes already under way are unaffected.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

#[derive(Debug)]
pub struct ReloadableCert {
    path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

/// Reads a PEM file holding a certificate chain and its private key.
pub fn load(path: &Path) -> Result<CertifiedKey, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: bad certificate PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    let key = match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Some(key),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => None,
        Err(e) => return Err(format!("{}: bad private key PEM: {e}", path.display())),
    }
    .ok_or_else(|| {
        format!(
            "{} holds no private key (HaRP's cert.pem has chain and key)",
            path.display()
        )
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("{}: unsupported private key: {e}", path.display()))?;
    let certified = CertifiedKey::new(certs, signer);
    certified.keys_match().map_err(|e| {
        format!(
            "{}: the key does not belong to the certificate: {e}",
            path.display()
        )
    })?;
    Ok(certified)
}

impl ReloadableCert {
    pub fn new(path: &Path) -> Result<Self, String> {
        Ok(ReloadableCert {
            path: path.to_path_buf(),
            current: RwLock::new(Arc::new(load(path)?)),
        })
    }

    /// Swap in the file's current contents; on error keep serving the previous certificate.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = Arc::new(load(&self.path)?);
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}
