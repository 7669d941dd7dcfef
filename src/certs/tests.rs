//! The generated set must work as HaRP's does: the chain verifies both ways in a real TLS
//! handshake (mutual TLS, server name `harp.nc`), names and validity are HaRP's, keys are
//! private, and an existing folder is never touched.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x509_parser::extensions::GeneralName;

use super::expiry::expiry_warnings_at;
use super::*;

/// A fresh, empty directory standing for `$HP_CERTS_DIR`, removed on drop.
struct TempCerts(PathBuf);

impl TempCerts {
    fn new() -> TempCerts {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "harp-certs-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempCerts(path)
    }
}

impl Drop for TempCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn generated(days: u32) -> (TempCerts, FrpCertPaths) {
    let tmp = TempCerts::new();
    assert!(generate_frp_certs(&tmp.0, days).unwrap());
    let paths = FrpCertPaths::in_certs_dir(&tmp.0);
    (tmp, paths)
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    let pem = std::fs::read(path).unwrap();
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn key(path: &Path) -> PrivateKeyDer<'static> {
    let pem = std::fs::read(path).unwrap();
    PrivateKeyDer::from_pem_slice(&pem).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(paths: &FrpCertPaths) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for ca in certs(&paths.ca_cert) {
        roots.add(ca).unwrap();
    }
    Arc::new(roots)
}

/// The tunnel server's configuration: server leaf, client certificates required against the CA.
fn server_config(paths: &FrpCertPaths) -> Arc<ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(paths), provider())
        .build()
        .unwrap();
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&paths.server_cert), key(&paths.server_key))
        .unwrap();
    Arc::new(config)
}

/// frpc's: trusts only the CA, presents the client leaf.
fn client_config(paths: &FrpCertPaths) -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(paths))
        .with_client_auth_cert(certs(&paths.client_cert), key(&paths.client_key))
        .unwrap();
    Arc::new(config)
}

/// A full mutual-TLS handshake plus one byte each way; `Err` names the side that failed.
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: &str,
) -> Result<(), String> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server_side = tokio::spawn(async move {
        let mut s = tokio_rustls::TlsAcceptor::from(server)
            .accept(b)
            .await
            .map_err(|e| format!("server: {e}"))?;
        s.write_all(b"s").await.map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())?;
        let mut one = [0u8; 1];
        s.read_exact(&mut one).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(one)
    });
    let name = ServerName::try_from(name.to_string()).unwrap();
    let client_result = async {
        let mut c = tokio_rustls::TlsConnector::from(client)
            .connect(name, a)
            .await
            .map_err(|e| format!("client: {e}"))?;
        c.write_all(b"c").await.map_err(|e| e.to_string())?;
        c.flush().await.map_err(|e| e.to_string())?;
        let mut one = [0u8; 1];
        c.read_exact(&mut one).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(one)
    }
    .await;
    let server_result = server_side.await.unwrap();
    match (client_result, server_result) {
        (Ok(c), Ok(s)) => {
            assert_eq!((c, s), (*b"s", *b"c"));
            Ok(())
        }
        (c, s) => Err(format!("client: {c:?}; server: {s:?}")),
    }
}

#[tokio::test]
async fn generated_set_works_for_mutual_tls_with_server_name_harp_nc() {
    let (_tmp, paths) = generated(5000);
    handshake(server_config(&paths), client_config(&paths), SERVER_NAME)
        .await
        .expect("mutual TLS with the generated set");
}

#[tokio::test]
async fn server_certificate_is_only_valid_for_harp_nc() {
    let (_tmp, paths) = generated(5000);
    let err = handshake(server_config(&paths), client_config(&paths), "other.nc")
        .await
        .unwrap_err();
    assert!(err.contains("not valid for name \\\"other.nc\\\""), "{err}");
}

#[tokio::test]
async fn a_client_certificate_from_another_set_is_refused() {
    let (_tmp, paths) = generated(5000);
    let (_tmp2, other) = generated(5000);
    // Trusts the right CA but presents a client leaf of another CA.
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(&paths))
        .with_client_auth_cert(certs(&other.client_cert), key(&other.client_key))
        .unwrap();
    let err = handshake(server_config(&paths), Arc::new(client), SERVER_NAME)
        .await
        .unwrap_err();
    // TLS 1.3: the client finishes first; the server then refuses the foreign signature.
    assert!(
        err.contains("server: Err(\"server: invalid peer certificate"),
        "{err}"
    );
}

fn parsed<T>(path: &Path, f: impl FnOnce(&x509_parser::certificate::X509Certificate) -> T) -> T {
    let der = certs(path).remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    f(&cert)
}

fn cn(name: &x509_parser::x509::X509Name) -> String {
    name.iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

fn dns_sans(cert: &x509_parser::certificate::X509Certificate) -> Vec<String> {
    match cert.subject_alternative_name().unwrap() {
        None => Vec::new(),
        Some(ext) => ext
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                other => panic!("unexpected SAN {other:?}"),
            })
            .collect(),
    }
}

#[test]
fn names_issuers_and_extensions_are_harps() {
    let (_tmp, paths) = generated(5000);
    // The CA's name is ours (issue 10, 7): HaRP's `CN=harp.nc` for both CA and server made
    // OpenSSL reject the server certificate as self-signed.
    parsed(&paths.ca_cert, |c| {
        assert_eq!(cn(c.subject()), "harp.nc CA");
        assert_eq!(cn(c.issuer()), "harp.nc CA");
        assert!(c.is_ca());
        assert!(dns_sans(c).is_empty());
    });
    parsed(&paths.server_cert, |c| {
        assert_eq!(cn(c.subject()), "harp.nc");
        assert_eq!(cn(c.issuer()), "harp.nc CA");
        assert!(!c.is_ca());
        assert_eq!(dns_sans(c), ["harp.nc"]);
        assert!(c.extended_key_usage().unwrap().is_none(), "no EKU, as HaRP");
    });
    parsed(&paths.client_cert, |c| {
        assert_eq!(cn(c.subject()), "harp.client.nc");
        assert_eq!(cn(c.issuer()), "harp.nc CA");
        assert!(!c.is_ca());
        assert_eq!(dns_sans(c), ["harp.client.nc"]);
        assert!(c.extended_key_usage().unwrap().is_none(), "no EKU, as HaRP");
    });
    let serial = |p: &Path| parsed(p, |c| c.raw_serial().to_vec());
    assert_ne!(serial(&paths.server_cert), serial(&paths.client_cert));
}

#[test]
fn validity_is_the_configured_number_of_days() {
    for days in [1, 5000] {
        let (_tmp, paths) = generated(days);
        let now = OffsetDateTime::now_utc().unix_timestamp();
        for p in [&paths.ca_cert, &paths.server_cert, &paths.client_cert] {
            let (start, end) = parsed(p, |c| {
                (
                    c.validity().not_before.timestamp(),
                    c.validity().not_after.timestamp(),
                )
            });
            let expected_end = now + i64::from(days) * 86_400;
            assert!(
                (end - expected_end).abs() < 120,
                "{p:?}: {end} vs {expected_end}"
            );
            assert!(
                start <= now && start > now - 2 * 3600,
                "{p:?}: notBefore {start}"
            );
        }
    }
}

#[test]
fn keys_are_private_and_the_folder_restricted() {
    let (tmp, paths) = generated(5000);
    assert_eq!(mode(&paths.dir), 0o700);
    for key in [&paths.ca_key, &paths.server_key, &paths.client_key] {
        assert_eq!(mode(key), 0o600, "{key:?}");
    }
    for cert in [&paths.ca_cert, &paths.server_cert, &paths.client_cert] {
        assert_eq!(mode(cert) & 0o600, 0o600, "{cert:?}");
        assert_eq!(mode(cert) & 0o022, 0, "{cert:?}");
    }
    // Exactly the six files, and no temporary folder left next to them.
    let mut names: Vec<_> = std::fs::read_dir(&paths.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ca.crt",
            "ca.key",
            "client.crt",
            "client.key",
            "server.crt",
            "server.key"
        ]
    );
    let siblings: Vec<_> = std::fs::read_dir(&tmp.0).unwrap().collect();
    assert_eq!(siblings.len(), 1);
}

#[test]
fn an_existing_folder_is_never_touched() {
    let tmp = TempCerts::new();
    let dir = tmp.0.join("frp");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("ca.crt"), "mine").unwrap();
    assert!(!generate_frp_certs(&tmp.0, 5000).unwrap());
    assert_eq!(std::fs::read_to_string(dir.join("ca.crt")).unwrap(), "mine");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    // Even an empty folder is the user's.
    let tmp = TempCerts::new();
    std::fs::create_dir(tmp.0.join("frp")).unwrap();
    assert!(!generate_frp_certs(&tmp.0, 5000).unwrap());
    assert_eq!(std::fs::read_dir(tmp.0.join("frp")).unwrap().count(), 0);

    // A second run keeps the first set.
    let (tmp, paths) = generated(5000);
    let before = std::fs::read(&paths.ca_cert).unwrap();
    assert!(!generate_frp_certs(&tmp.0, 5000).unwrap());
    assert_eq!(std::fs::read(&paths.ca_cert).unwrap(), before);
}

fn settings(certs_dir: &Path, extra: &[(&str, &str)]) -> Settings {
    let mut env: HashMap<String, String> = HashMap::from([
        ("HP_SHARED_KEY".into(), "key".into()),
        ("NC_INSTANCE_URL".into(), "http://127.0.0.1:9".into()),
        ("HP_CERTS_DIR".into(), certs_dir.display().to_string()),
    ]);
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    crate::config::load(None, &|name| env.get(name).cloned()).unwrap()
}

#[test]
fn ensure_generates_only_with_tls_on() {
    let tmp = TempCerts::new();
    let certs_dir = tmp.0.join("not-yet-created");
    let off = settings(&certs_dir, &[("HP_FRP_DISABLE_TLS", "true")]);
    let paths = ensure_frp_certs(&off).unwrap();
    assert_eq!(paths.dir, certs_dir.join("frp"));
    assert!(!certs_dir.exists());

    let on = settings(&certs_dir, &[("HP_FRP_CERT_VALIDITY_DAYS", "7")]);
    let paths = ensure_frp_certs(&on).unwrap();
    assert!(paths.client_key.is_file());
    let end = parsed(&paths.client_cert, |c| c.validity().not_after.timestamp());
    let expected = OffsetDateTime::now_utc().unix_timestamp() + 7 * 86_400;
    assert!((end - expected).abs() < 120);
    // Generated with a 7-day validity: the log warns at once.
    assert_eq!(expiry_warnings(&paths.dir).len(), 3);
}

#[test]
fn expiry_warnings_for_soon_and_past_expiry() {
    let (_tmp, paths) = generated(40);
    let now = OffsetDateTime::now_utc();
    assert!(expiry_warnings_at(&paths.dir, now).is_empty());
    let soon = expiry_warnings_at(&paths.dir, now + Duration::days(15));
    assert_eq!(soon.len(), 3, "{soon:?}");
    assert!(soon
        .iter()
        .all(|w| w.contains("expires on") && w.contains("in 24 days")));
    let past = expiry_warnings_at(&paths.dir, now + Duration::days(41));
    assert_eq!(past.len(), 3, "{past:?}");
    assert!(past.iter().all(|w| w.contains("expired on")));
    assert!(past[0].contains("ca.crt"));
}

#[test]
fn expiry_warnings_report_unreadable_certificates_and_skip_missing_ones() {
    let tmp = TempCerts::new();
    assert!(expiry_warnings(&tmp.0).is_empty());
    std::fs::write(tmp.0.join("server.crt"), "not a certificate").unwrap();
    let w = expiry_warnings(&tmp.0);
    assert_eq!(w.len(), 1);
    assert!(
        w[0].contains("server.crt") && w[0].contains("no certificate"),
        "{w:?}"
    );
}
