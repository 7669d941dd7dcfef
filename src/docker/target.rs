//! Which engine a `docker-engine-port` means (for the passthrough and the sidecar's clients
//! alike), and which API version a passthrough request may use there.
//!
//! AppAPI pins the API version in its raw Docker calls: `/v1.41/` up to 31.0.11 and 32.0.2,
//! `/v1.44/` from 31.0.12 and 32.0.3 on (33, 34; 34 also takes the app setting
//! `docker_api_version`). Docker 29 refuses versions below 1.44 (HaRP issue #69), engines before
//! Docker 25 versions above their own ("client version 1.44 is too new"). We ask each engine
//! for `MinAPIVersion` and `ApiVersion` once a minute and move a version prefix outside that
//! range to its nearest end, so AppAPI keeps working with both. Port 24000 is the local engine's
//! socket when no tunnel serves it, so no bundled frpc is needed.

use moka::future::Cache;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// HaRP's bundled frpc exposes the local Docker socket on this port.
pub const LOCAL_ENGINE_PORT: u16 = 24000;
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
const VERSION_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EngineTarget {
    Tcp(u16),
    Unix(PathBuf),
}

/// Engine choice for `docker-engine-port`: a listener on loopback wins; port 24000 falls back
/// to the local socket.
pub async fn target_for(port: u16, local_socket: &Path) -> EngineTarget {
    if port != LOCAL_ENGINE_PORT || !local_socket.exists() {
        return EngineTarget::Tcp(port);
    }
    let probe = tokio::net::TcpStream::connect(("127.0.0.1", port));
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(_)) => EngineTarget::Tcp(port),
        _ => EngineTarget::Unix(local_socket.to_path_buf()),
    }
}

pub type ApiVersion = (u32, u32);

/// The API versions an engine serves (`GET /version`'s `MinAPIVersion` and `ApiVersion`);
/// either may be unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VersionRange {
    pub min: Option<ApiVersion>,
    pub max: Option<ApiVersion>,
}

/// API version ranges by engine, asked at most once a minute per engine.
pub struct EngineVersions {
    cache: Cache<EngineTarget, Option<VersionRange>>,
}

impl Default for EngineVersions {
    fn default() -> Self {
        EngineVersions {
            cache: Cache::builder()
                .max_capacity(256)
                .time_to_live(VERSION_TTL)
                .build(),
        }
    }
}

impl EngineVersions {
    pub async fn get(&self, target: &EngineTarget) -> Option<VersionRange> {
        self.cache
            .get_with(target.clone(), ask_versions(target.clone()))
            .await
    }
}

/// One `GET /version` through bollard, within `PROBE_TIMEOUT`; `None` when the engine does not
/// answer in time, answers an error, or names neither version.
async fn ask_versions(target: EngineTarget) -> Option<VersionRange> {
    let docker = super::engines::client_for(&target).ok()?;
    let version = tokio::time::timeout(PROBE_TIMEOUT, docker.version())
        .await
        .ok()?
        .ok()?;
    let field = |text: Option<String>| parse_version(&text?);
    let range = VersionRange {
        min: field(version.min_api_version),
        max: field(version.api_version),
    };
    (range != VersionRange::default()).then_some(range)
}

fn parse_version(text: &str) -> Option<ApiVersion> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The path's `/vX.Y` prefix, if it has one.
pub fn path_version(path: &str) -> Option<ApiVersion> {
    let rest = path.strip_prefix("/v")?;
    let end = rest.find('/').unwrap_or(rest.len());
    parse_version(&rest[..end])
}

/// `path` with its version prefix moved into the engine's range: raised to `min` when older,
/// lowered to `max` when newer; `None` when it can stay.
pub fn fit_version(path: &str, range: VersionRange) -> Option<String> {
    let version = path_version(path)?;
    let fitted = match range {
        VersionRange { min: Some(min), .. } if version < min => min,
        VersionRange { max: Some(max), .. } if version > max => max,
        _ => return None,
    };
    let rest = &path[2..];
    let tail = &rest[rest.find('/').unwrap_or(rest.len())..];
    Some(format!("/v{}.{}{}", fitted.0, fitted.1, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn min(v: ApiVersion) -> VersionRange {
        VersionRange {
            min: Some(v),
            max: None,
        }
    }

    #[test]
    fn too_old_versions_are_raised_and_others_kept() {
        assert_eq!(
            fit_version("/v1.41/_ping", min((1, 44))).as_deref(),
            Some("/v1.44/_ping")
        );
        assert_eq!(
            fit_version("/v1.41/images/x/json", min((1, 44))).as_deref(),
            Some("/v1.44/images/x/json")
        );
        assert_eq!(fit_version("/v1.45/_ping", min((1, 44))), None);
        assert_eq!(fit_version("/_ping", min((1, 44))), None);
        assert_eq!(
            fit_version("/v1.9/_ping", min((1, 24))).as_deref(),
            Some("/v1.24/_ping")
        );
        assert_eq!(fit_version("/version", min((1, 44))), None);
    }

    #[test]
    fn too_new_versions_are_lowered_to_the_engines_maximum() {
        // Docker 24: API 1.12-1.43; AppAPI 34 sends 1.44.
        let docker24 = VersionRange {
            min: Some((1, 12)),
            max: Some((1, 43)),
        };
        assert_eq!(
            fit_version("/v1.44/containers/nc_app_x/json", docker24).as_deref(),
            Some("/v1.43/containers/nc_app_x/json")
        );
        assert_eq!(
            fit_version("/v2.0/_ping", docker24).as_deref(),
            Some("/v1.43/_ping")
        );
        assert_eq!(fit_version("/v1.43/_ping", docker24), None);
        assert_eq!(fit_version("/v1.41/_ping", docker24), None);
        assert_eq!(
            fit_version("/v1.9/_ping", docker24).as_deref(),
            Some("/v1.12/_ping")
        );
        let max_only = VersionRange {
            min: None,
            max: Some((1, 41)),
        };
        assert_eq!(
            fit_version("/v1.44/_ping", max_only).as_deref(),
            Some("/v1.41/_ping")
        );
        assert_eq!(fit_version("/v1.44/_ping", VersionRange::default()), None);
    }
}
