//! The client's rustls configuration, as frpc 0.61.1 builds its Go one (spec §2.1):
//!
//! * `trustedCaFile` set: the server chain must verify against that CA only, for the name
//!   `serverName` (else `serverAddr`); HaRP: CA `ca.crt`, name `harp.nc`.
//! * no `trustedCaFile`: any server certificate is accepted (Go's `InsecureSkipVerify`). The
//!   handshake signatures are still checked, so the peer holds the key of what it presented.
//! * `certFile` + `keyFile`: offered as the client certificate (HaRP's mutual TLS).
//! * TLS 1.2 and 1.3, no ALPN, SNI = the server name.
//!
//! Files are read once, when the client starts, so a wrong path fails at once instead of at
//! every reconnect. Key material is never logged.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::config::TlsConfig;
use crate::tunnel::pem::{read_certs, read_key, read_roots};

/// What the dialer needs for TLS.
#[derive(Clone)]
pub struct TlsSetup {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
    pub custom_first_byte: bool,
}

pub fn setup(tls: &TlsConfig) -> Result<TlsSetup, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match &tls.trusted_ca_file {
        Some(ca) => builder.with_root_certificates(read_roots(ca)?),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider))),
    };
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(|e| {
                format!(
                    "{} and {} are not a usable certificate and key: {e}",
                    cert.display(),
                    key.display()
                )
            })?,
        _ => builder.with_no_client_auth(),
    };
    let server_name = ServerName::try_from(tls.server_name.clone())
        .map_err(|_| format!("{:?} is not a valid TLS server name", tls.server_name))?;
    Ok(TlsSetup {
        config: Arc::new(config),
        server_name,
        custom_first_byte: tls.custom_first_byte,
    })
}

/// frpc without `trustedCaFile`: trust whatever certificate the server shows.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
