//! Where a Docker passthrough request goes, and which API version it may use there.
//!
//! AppAPI pins `/v1.41/` in its raw Docker calls; Docker 29 refuses versions below 1.44 (HaRP
//! issue #69). We ask each engine for its `MinAPIVersion` once a minute and raise a too-old
//! version prefix to it, so AppAPI keeps working. Port 24000 is the local engine's socket when
//! no tunnel serves it, so no bundled frpc is needed.

use moka::future::Cache;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// HaRP's bundled frpc exposes the local Docker socket on this port.
pub const LOCAL_ENGINE_PORT: u16 = 24000;
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
const VERSION_TTL: Duration = Duration::from_secs(60);
const MAX_VERSION_ANSWER: usize = 64 << 10;

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

/// Minimum API versions by engine, asked at most once a minute per engine.
pub struct MinVersions {
    cache: Cache<EngineTarget, Option<ApiVersion>>,
}

impl Default for MinVersions {
    fn default() -> Self {
        MinVersions {
            cache: Cache::builder()
                .max_capacity(256)
                .time_to_live(VERSION_TTL)
                .build(),
        }
    }
}

impl MinVersions {
    pub async fn get(&self, target: &EngineTarget) -> Option<ApiVersion> {
        self.cache
            .get_with(target.clone(), ask_min_version(target.clone()))
            .await
    }
}

async fn ask_min_version(target: EngineTarget) -> Option<ApiVersion> {
    let answer = tokio::time::timeout(PROBE_TIMEOUT, async {
        match &target {
            EngineTarget::Tcp(port) => {
                get_version(
                    tokio::net::TcpStream::connect(("127.0.0.1", *port))
                        .await
                        .ok()?,
                )
                .await
            }
            EngineTarget::Unix(path) => {
                get_version(tokio::net::UnixStream::connect(path).await.ok()?).await
            }
        }
    })
    .await
    .ok()
    .flatten();
    let answer = answer?;
    let body_start = answer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let json: serde_json::Value = serde_json::from_slice(&answer[body_start..]).ok()?;
    parse_version(json.get("MinAPIVersion")?.as_str()?)
}

async fn get_version<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> Option<Vec<u8>> {
    stream
        .write_all(b"GET /version HTTP/1.0\r\nHost: docker\r\n\r\n")
        .await
        .ok()?;
    let mut answer = Vec::new();
    (&mut stream)
        .take(MAX_VERSION_ANSWER as u64)
        .read_to_end(&mut answer)
        .await
        .ok()?;
    answer.starts_with(b"HTTP/1.").then_some(answer)
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

/// `path` with its version prefix raised to `min` when it is older; `None` when it can stay.
pub fn raise_version(path: &str, min: ApiVersion) -> Option<String> {
    let version = path_version(path)?;
    if version >= min {
        return None;
    }
    let rest = &path[2..];
    let tail = &rest[rest.find('/').unwrap_or(rest.len())..];
    Some(format!("/v{}.{}{}", min.0, min.1, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_old_versions_are_raised_and_others_kept() {
        assert_eq!(
            raise_version("/v1.41/_ping", (1, 44)).as_deref(),
            Some("/v1.44/_ping")
        );
        assert_eq!(
            raise_version("/v1.41/images/x/json", (1, 44)).as_deref(),
            Some("/v1.44/images/x/json")
        );
        assert_eq!(raise_version("/v1.45/_ping", (1, 44)), None);
        assert_eq!(raise_version("/_ping", (1, 44)), None);
        assert_eq!(
            raise_version("/v1.9/_ping", (1, 24)).as_deref(),
            Some("/v1.24/_ping")
        );
        assert_eq!(raise_version("/version", (1, 44)), None);
    }
}
