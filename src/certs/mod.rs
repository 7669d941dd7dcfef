//! The FRP certificate set HaRP generates (harp-behaviour §10.2): a private CA and the server
//! and client leaves signed by it, in `$HP_CERTS_DIR/frp/`. The tunnel server serves
//! `server.crt` and requires client certificates chaining to `ca.crt`; AppAPI copies `ca.crt`,
//! `client.crt` and `client.key` into ExApp containers, and remote Docker hosts get them by hand.
//!
//! * [`ensure_frp_certs`]: generate the set once, when TLS is on and the folder is missing.
//! * [`expiry_warnings`]: log lines for certificates that expire soon or have expired (HaRP
//!   never rotates them; an expired set silently breaks every tunnel, see its commit 6ab3089).
//!
//! This module must never touch an existing `frp` folder (users replace certificates by
//! deleting it, and may bring their own), never leave a half-written one behind, and never
//! write a private key readable by anyone but the owner.
//!
//! Two deliberate differences from HaRP's openssl commands: keys are ECDSA P-256, not RSA-2048
//! (rcgen on ring cannot generate RSA keys; Go's TLS stack in frpc and rustls accept both), and
//! the CA's subject is `CN=harp.nc CA`, not the server's `CN=harp.nc`: OpenSSL takes a leaf
//! whose issuer equals its subject for a self-signed certificate and rejects it, so every
//! OpenSSL-based client (`openssl verify`, Python, curl) refused HaRP's chain. The server and
//! client names, SANs and validity are HaRP's. Existing sets are used as they are.

mod expiry;
mod issue;

#[cfg(test)]
mod tests;

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub use expiry::{expiry_warnings, EXPIRY_WARNING_DAYS};

use crate::config::Settings;

/// The folder inside `$HP_CERTS_DIR`, as in HaRP (`/certs/frp`).
pub const FRP_DIR: &str = "frp";
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";
pub const CLIENT_CERT: &str = "client.crt";
pub const CLIENT_KEY: &str = "client.key";

/// CN (and SAN) of the server leaf; frpc checks the server against it
/// (`transport.tls.serverName = "harp.nc"`).
pub const SERVER_NAME: &str = "harp.nc";
/// CN of the CA, distinct from the server's so that OpenSSL does not take the server leaf for
/// a self-signed certificate (HaRP's CA has `CN=harp.nc`).
pub const CA_NAME: &str = "harp.nc CA";
/// CN and SAN of the client leaf. frps checks only the chain, never this name.
pub const CLIENT_NAME: &str = "harp.client.nc";

/// Where the set lives; the files may or may not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrpCertPaths {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl FrpCertPaths {
    /// The paths inside `$HP_CERTS_DIR/frp`.
    pub fn in_certs_dir(certs_dir: &Path) -> FrpCertPaths {
        let dir = certs_dir.join(FRP_DIR);
        FrpCertPaths {
            ca_cert: dir.join(CA_CERT),
            ca_key: dir.join(CA_KEY),
            server_cert: dir.join(SERVER_CERT),
            server_key: dir.join(SERVER_KEY),
            client_cert: dir.join(CLIENT_CERT),
            client_key: dir.join(CLIENT_KEY),
            dir,
        }
    }
}

/// HaRP's start-up step: with TLS on and no `$HP_CERTS_DIR/frp`, generate the set there
/// (validity `HP_FRP_CERT_VALIDITY_DAYS`). With TLS off, or when the folder exists (even empty
/// or incomplete: it is the user's), nothing is written. Returns the paths either way.
pub fn ensure_frp_certs(settings: &Settings) -> Result<FrpCertPaths, String> {
    let paths = FrpCertPaths::in_certs_dir(&settings.certs_dir);
    if settings.frp_disable_tls {
        return Ok(paths);
    }
    if generate_frp_certs(&settings.certs_dir, settings.frp_cert_validity_days)? {
        log::info!(
            "tunnel: generated the FRP certificates in {} (valid {} days)",
            paths.dir.display(),
            settings.frp_cert_validity_days
        );
    }
    Ok(paths)
}

/// Generates the set in `certs_dir/frp` unless that path exists; `Ok(true)` when it did.
///
/// The files are written to a private temporary folder next to it, which is then renamed into
/// place, so a crash or a full disk never leaves a partial set that a later start would take
/// for the user's.
pub fn generate_frp_certs(certs_dir: &Path, validity_days: u32) -> Result<bool, String> {
    let target = certs_dir.join(FRP_DIR);
    if target.symlink_metadata().is_ok() {
        return Ok(false);
    }
    fs::create_dir_all(certs_dir).map_err(|e| {
        format!(
            "cannot create {}: {e} (HP_CERTS_DIR names where the FRP certificates are kept; \
             point it at a writable folder)",
            certs_dir.display()
        )
    })?;
    let set = issue::issue_set(validity_days)?;
    let tmp = certs_dir.join(format!(".{FRP_DIR}.tmp-{}", std::process::id()));
    // A leftover from a crashed run of this process id is ours to remove.
    let _ = fs::remove_dir_all(&tmp);
    let result = write_set(&tmp, &set).and_then(|()| {
        if target.symlink_metadata().is_ok() {
            // Someone created it meanwhile: theirs wins.
            return Ok(false);
        }
        fs::rename(&tmp, &target)
            .map(|()| true)
            .map_err(|e| format!("cannot move the certificates to {}: {e}", target.display()))
    });
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// Only the owner may list the folder or read the keys; certificates are public.
const DIR_MODE: u32 = 0o700;
const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;

fn write_set(dir: &Path, set: &issue::CertSet) -> Result<(), String> {
    DirBuilder::new()
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let files = [
        (CA_CERT, &set.ca_cert, CERT_MODE),
        (CA_KEY, &set.ca_key, KEY_MODE),
        (SERVER_CERT, &set.server_cert, CERT_MODE),
        (SERVER_KEY, &set.server_key, KEY_MODE),
        (CLIENT_CERT, &set.client_cert, CERT_MODE),
        (CLIENT_KEY, &set.client_key, KEY_MODE),
    ];
    for (name, pem, mode) in files {
        write_file(&dir.join(name), pem.as_bytes(), mode)?;
    }
    Ok(())
}

/// Creates the file with its final mode from the start (no window where a key is readable),
/// and syncs it so the rename publishes complete files.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), String> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
