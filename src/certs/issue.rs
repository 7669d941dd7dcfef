//! Issues HaRP's three certificates with rcgen, in memory (PEM text); writing them is the
//! caller's job.
//!
//! Shape, as HaRP's openssl commands make it (spec frp-protocol §2.3) but for the CA's name: the
//! CA is self-signed with subject `CN=harp.nc CA` (HaRP's is `CN=harp.nc`, which makes OpenSSL
//! reject the server leaf as self-signed) and CA basic constraints; the server leaf has subject
//! `CN=harp.nc` and SAN `DNS:harp.nc`; the client leaf `CN=harp.client.nc` and SAN
//! `DNS:harp.client.nc`.
//! Leaves carry no key usage or extended key usage (none means "any" to Go and webpki), so
//! either could serve either role, as with HaRP's.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};

use super::{CA_NAME, CLIENT_NAME, SERVER_NAME};

/// The six PEM texts of a set.
pub struct CertSet {
    pub ca_cert: String,
    pub ca_key: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

/// `notBefore` is set this far in the past: a remote Docker host or ExApp whose clock is a
/// little behind must not see a freshly generated certificate as not yet valid.
const BACKDATE: Duration = Duration::hours(1);

/// Validity of all three certificates: `[now − 1 h, now + days]`.
struct Validity {
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

fn validity(days: u32) -> Validity {
    let now = OffsetDateTime::now_utc();
    Validity {
        not_before: now - BACKDATE,
        not_after: now + Duration::days(i64::from(days)),
    }
}

/// A random positive 128-bit serial, as `openssl x509 -CAcreateserial` draws one; a fixed
/// serial would make two generated sets indistinguishable to a verifier's cache.
fn random_serial() -> Result<SerialNumber, String> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system random number generator failed".to_string())?;
    bytes[0] &= 0x7f; // DER INTEGER: keep it positive
    bytes[0] |= 0x01; // and of full length
    Ok(SerialNumber::from_slice(&bytes))
}

fn params(cn: &str, san: Option<&str>, validity: &Validity) -> Result<CertificateParams, String> {
    let sans: Vec<String> = san.map(str::to_string).into_iter().collect();
    let mut params =
        CertificateParams::new(sans).map_err(|e| format!("certificate parameters: {e}"))?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

fn new_key() -> Result<KeyPair, String> {
    KeyPair::generate().map_err(|e| format!("key generation failed: {e}"))
}

/// Issues a fresh CA, server and client certificate valid for `days` days.
pub fn issue_set(days: u32) -> Result<CertSet, String> {
    let validity = validity(days);
    let sign_err = |what: &str, e: rcgen::Error| format!("cannot sign the {what} certificate: {e}");

    let mut ca_params = params(CA_NAME, None, &validity)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = new_key()?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|e| sign_err("CA", e))?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let leaf = |name: &str, what: &str| -> Result<(String, String), String> {
        let mut params = params(name, Some(name), &validity)?;
        // Lets verifiers find the issuer by key, not only by its subject name.
        params.use_authority_key_identifier_extension = true;
        let key = new_key()?;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| sign_err(what, e))?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_cert, server_key) = leaf(SERVER_NAME, "server")?;
    let (client_cert, client_key) = leaf(CLIENT_NAME, "client")?;
    Ok(CertSet {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
    })
}
