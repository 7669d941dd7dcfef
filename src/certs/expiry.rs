//! Expiry check of the FRP certificates, for the log at start-up: HaRP never renews them, and
//! an expired CA, server or client certificate refuses every tunnel without a hint on the
//! HaRP side, so harp-rs says so ahead of time.

use std::path::Path;

use time::{Duration, OffsetDateTime};

use super::{CA_CERT, CLIENT_CERT, SERVER_CERT};

/// A certificate expiring within this many days gets a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

const RENEWAL: &str = "to renew: stop harp, delete the folder, start harp, then give the new \
                       ca.crt, client.crt and client.key to remote Docker hosts and reinstall \
                       the ExApps";

/// One line per certificate in `dir` (the `frp` folder) that has expired or expires within
/// [`EXPIRY_WARNING_DAYS`] days, or that cannot be read as a certificate. Missing files are
/// not reported: whether they are needed is the tunnel server's call.
pub fn expiry_warnings(dir: &Path) -> Vec<String> {
    expiry_warnings_at(dir, OffsetDateTime::now_utc())
}

/// [`expiry_warnings`] as seen at `now` (tests move the clock).
pub fn expiry_warnings_at(dir: &Path, now: OffsetDateTime) -> Vec<String> {
    let mut warnings = Vec::new();
    for name in [CA_CERT, SERVER_CERT, CLIENT_CERT] {
        let path = dir.join(name);
        let Ok(pem) = std::fs::read(&path) else {
            continue;
        };
        match not_after(&pem) {
            Ok(end) => {
                if let Some(w) = warning_for(&path, end, now) {
                    warnings.push(w);
                }
            }
            Err(e) => warnings.push(format!("{}: {e}", path.display())),
        }
    }
    warnings
}

fn warning_for(path: &Path, end: OffsetDateTime, now: OffsetDateTime) -> Option<String> {
    let date = end.date();
    if end <= now {
        return Some(format!(
            "{} expired on {date}: TLS tunnels using it fail; {RENEWAL}",
            path.display()
        ));
    }
    let left = end - now;
    if left > Duration::days(EXPIRY_WARNING_DAYS) {
        return None;
    }
    Some(format!(
        "{} expires on {date} (in {} days): {RENEWAL}",
        path.display(),
        left.whole_days()
    ))
}

/// The earliest `notAfter` of the certificates in a PEM file.
fn not_after(pem: &[u8]) -> Result<OffsetDateTime, String> {
    use rustls::pki_types::pem::PemObject;
    let ders = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM: {e}"))?;
    let mut earliest: Option<OffsetDateTime> = None;
    for der in &ders {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("not a valid certificate: {e}"))?;
        let end = cert.validity().not_after.to_datetime();
        earliest = Some(earliest.map_or(end, |e| e.min(end)));
    }
    earliest.ok_or_else(|| "holds no certificate".to_string())
}
