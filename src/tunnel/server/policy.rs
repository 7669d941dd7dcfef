//! What a client may register (spec §9.1 and HaRP's frps configuration, harp-behaviour §10.1):
//! only `tcp` proxies, only ports 23000-23999 (ExApps) and 24000-24099 (Docker engines), and,
//! unless `HP_FRP_STRICT_PORTS=false`, an ExApp port only under the name of the ExApp that
//! Nextcloud knows with that port (harp-behaviour Q10: HaRP lets any key holder squat any port).
//!
//! Error texts are frps' where frps has one, so frpc logs read the same; the others name the
//! cause. This module decides; it never touches sockets or the registry.

use std::ops::RangeInclusive;

use tokio::time::timeout;

use super::limits::{MAX_PROXY_NAME_LEN, STRICT_LOOKUP_TIMEOUT};
use super::Admission;
use crate::nextcloud::LookupError;
use crate::tunnel::msg::NewProxy;

pub const EXAPP_PORTS: RangeInclusive<u16> = 23000..=23999;
pub const DOCKER_PORTS: RangeInclusive<u16> = 24000..=24099;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    ExApp,
    DockerEngine,
}

/// Which allowed range `port` is in (HaRP's `allowPorts`).
pub fn port_kind(port: u16) -> Option<PortKind> {
    if EXAPP_PORTS.contains(&port) {
        Some(PortKind::ExApp)
    } else if DOCKER_PORTS.contains(&port) {
        Some(PortKind::DockerEngine)
    } else {
        None
    }
}

/// Checks that need nothing but the message (spec §9.1 steps 1-2, plus what harp cannot do).
pub fn check_request(req: &NewProxy) -> Result<(), String> {
    match req.proxy_type.as_str() {
        // frps treats an empty type as tcp.
        "" | "tcp" => {}
        "http" => return Err("type [http] not supported when vhost http port is not set".into()),
        "https" => {
            return Err("type [https] not supported when vhost https port is not set".into())
        }
        t @ ("udp" | "stcp" | "xtcp" | "sudp" | "tcpmux") => {
            return Err(format!(
                "proxy type [{t}] not supported by harp: only tcp proxies are served"
            ))
        }
        other => return Err(format!("unknown proxy type: {}", clip(other))),
    }
    if req.proxy_name.is_empty() {
        return Err("proxy name is empty".into());
    }
    if req.proxy_name.chars().any(char::is_control) {
        return Err("proxy name contains control characters".into());
    }
    if req.proxy_name.len() > MAX_PROXY_NAME_LEN {
        return Err(format!(
            "proxy name is longer than {MAX_PROXY_NAME_LEN} bytes"
        ));
    }
    // These change the bytes on the work stream; harp would relay them untouched and break the
    // connection, so refuse instead (HaRP's clients never set them).
    if req.use_encryption || req.use_compression {
        return Err(format!(
            "proxy [{}]: transport.useEncryption / useCompression are not supported by harp \
             (the tunnel is already TLS-protected when TLS is on)",
            req.proxy_name
        ));
    }
    Ok(())
}

/// The anti-squatting check (harp-behaviour Q10): an ExApp port only for the ExApp that
/// Nextcloud registered with it. Docker-engine ports are not known to Nextcloud and pass.
///
/// A cached "not found" or another port is asked again before it refuses (bounded per app, see
/// `ExAppDirectory::get_current`): a request for an app that was not registered yet must not
/// lock out its tunnel when AppAPI installs it moments later (frpc retries only after 30 s),
/// nor a stale record (AppAPI tells harp about an app only when it is enabled or disabled) an
/// app registered again on another port.
pub async fn check_owner(
    admission: &Admission,
    name: &str,
    port: u16,
    kind: PortKind,
) -> Result<(), String> {
    if kind != PortKind::ExApp || !admission.strict_ports {
        return Ok(());
    }
    let app = name.to_ascii_lowercase();
    match timeout(
        STRICT_LOOKUP_TIMEOUT,
        admission
            .apps
            .get_current(&admission.nextcloud, &app, |cached| {
                cached.is_none_or(|r| r.nextcloud_port != port)
            }),
    )
    .await
    {
        Ok(Ok(record)) if record.nextcloud_port == port => Ok(()),
        Ok(Ok(record)) => Err(format!(
            "port [{port}] is not the port of ExApp [{name}]: Nextcloud has it on port {} \
             (HP_FRP_STRICT_PORTS)",
            record.nextcloud_port
        )),
        Ok(Err(LookupError::NotFound)) => Err(format!(
            "port [{port}] is reserved for ExApps and [{name}] is not an ExApp registered in \
             Nextcloud (HP_FRP_STRICT_PORTS)"
        )),
        Ok(Err(LookupError::Failed(why) | LookupError::Unavailable(why))) => Err(format!(
            "cannot check ExApp [{name}] with Nextcloud, try again later: {why}"
        )),
        Err(_) => Err(format!(
            "cannot check ExApp [{name}] with Nextcloud, try again later: no answer within \
             {STRICT_LOOKUP_TIMEOUT:?}"
        )),
    }
}

/// A peer-chosen string, shortened for an error message.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ty: &str) -> NewProxy {
        NewProxy {
            proxy_name: "app".into(),
            proxy_type: ty.into(),
            remote_port: 23000,
            ..Default::default()
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(port_kind(23000), Some(PortKind::ExApp));
        assert_eq!(port_kind(23999), Some(PortKind::ExApp));
        assert_eq!(port_kind(24000), Some(PortKind::DockerEngine));
        assert_eq!(port_kind(24099), Some(PortKind::DockerEngine));
        assert_eq!(port_kind(22999), None);
        assert_eq!(port_kind(24100), None);
    }

    #[test]
    fn types() {
        assert!(check_request(&req("")).is_ok());
        assert!(check_request(&req("tcp")).is_ok());
        assert_eq!(
            check_request(&req("http")).unwrap_err(),
            "type [http] not supported when vhost http port is not set"
        );
        assert!(check_request(&req("udp")).unwrap_err().contains("only tcp"));
        assert_eq!(
            check_request(&req("bogus")).unwrap_err(),
            "unknown proxy type: bogus"
        );
        let mut enc = req("tcp");
        enc.use_encryption = true;
        assert!(check_request(&enc).is_err());
    }
}
