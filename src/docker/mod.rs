//! The Docker sidecar: AppAPI's `/docker/exapp/*` lifecycle endpoints (HaRP §8) through
//! bollard, one client per Docker engine.
//!
//! Owns: the eight endpoints' request validation (`payload`, `names`), the Docker call
//! sequences and the exact statuses and texts AppAPI relies on (`endpoints/`), the engine
//! clients (`engines`), the small tar archives of `install_certificates` (`tar`), and for the
//! gateway's raw Engine API passthrough (§7) the allowlist (`passthrough`) and which engine a
//! port means with the API versions it serves (`target`).
//! Must never: block the data plane (everything is async, each endpoint bounded by its §8.2
//! budget, no blocking file I/O on the runtime), put an unchecked name into a Docker URL (Q16),
//! or touch containers other than the `nc_app_*` one a request names.
//!
//! Deviations from HaRP (documented in §16): unexpected Docker statuses are 503, never 500
//! (Q13); names and image references are validated (Q16); `Health: null` is "no health check"
//! instead of a crash; a timeout in `install_certificates` is a 504.

mod endpoints;
pub(crate) mod engines;
mod names;
pub(crate) mod passthrough;
mod payload;
mod tar;
pub(crate) mod target;

pub use crate::reply::Reply;

use crate::config::Settings;
use crate::metrics::{DockerOp, Metrics, SidecarCall};
use engines::Engines;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The sidecar with what its endpoints use: the engine clients, the two paths they read from the
/// settings and the metrics. Built once at start; the sidecar never sees the rest of harp's state.
pub struct Sidecar {
    engines: Engines,
    /// `HP_DOCKER_SOCKET`: the local engine behind port 24000 (`target::target_for`).
    docker_socket: PathBuf,
    /// `HP_CERTS_DIR`, read by `install_certificates`.
    certs_dir: PathBuf,
    metrics: Arc<Metrics>,
}

/// The eight operations, `/docker/exapp/<operation>`, with their total budgets (§8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Exists,
    Create,
    Start,
    Stop,
    WaitForStart,
    Remove,
    InstallCertificates,
    ImageRemove,
}

impl Operation {
    const ALL: [Operation; 8] = [
        Operation::Exists,
        Operation::Create,
        Operation::Start,
        Operation::Stop,
        Operation::WaitForStart,
        Operation::Remove,
        Operation::InstallCertificates,
        Operation::ImageRemove,
    ];

    /// The path segment.
    fn as_str(self) -> &'static str {
        match self {
            Operation::Exists => "exists",
            Operation::Create => "create",
            Operation::Start => "start",
            Operation::Stop => "stop",
            Operation::WaitForStart => "wait_for_start",
            Operation::Remove => "remove",
            Operation::InstallCertificates => "install_certificates",
            Operation::ImageRemove => "image_remove",
        }
    }

    fn from_path(operation: &str) -> Option<Operation> {
        Operation::ALL
            .into_iter()
            .find(|op| op.as_str() == operation)
    }

    fn budget(self) -> Duration {
        Duration::from_secs(match self {
            Operation::Exists => 15,
            Operation::Create => 60,
            Operation::Start | Operation::Stop | Operation::Remove | Operation::ImageRemove => 30,
            // 180 polls 0.5 s apart, plus 15 s.
            Operation::WaitForStart => 105,
            Operation::InstallCertificates => 120,
        })
    }
}

/// The `op` label of the sidecar's `harp_docker_calls_total` series.
impl From<Operation> for SidecarCall {
    fn from(op: Operation) -> SidecarCall {
        match op {
            Operation::Exists => SidecarCall::Exists,
            Operation::Create => SidecarCall::Create,
            Operation::Start => SidecarCall::Start,
            Operation::Stop => SidecarCall::Stop,
            Operation::WaitForStart => SidecarCall::WaitForStart,
            Operation::Remove => SidecarCall::Remove,
            Operation::InstallCertificates => SidecarCall::InstallCertificates,
            Operation::ImageRemove => SidecarCall::ImageRemove,
        }
    }
}

impl Sidecar {
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Sidecar {
        Sidecar {
            engines: Engines::default(),
            docker_socket: settings.docker_socket.clone(),
            certs_dir: settings.certs_dir.clone(),
            metrics,
        }
    }

    /// Serve `/docker/exapp/<operation>` for AppAPI. `engine_port` is the raw
    /// `docker-engine-port` header, `body` the request body.
    pub async fn handle(&self, operation: &str, engine_port: Option<&[u8]>, body: &[u8]) -> Reply {
        // aiohttp's router answers unknown routes before any handler runs.
        let Some(op) = Operation::from_path(operation) else {
            return Reply::text(404, "404: Not Found");
        };
        let reply = self.handle_operation(op, engine_port, body).await;
        // Every answer of a known operation counts, requests refused before any engine call
        // (400) as errors too.
        self.metrics
            .record_docker_call(DockerOp::Sidecar(op.into()), reply.status, false);
        reply
    }

    async fn handle_operation(
        &self,
        op: Operation,
        engine_port: Option<&[u8]>,
        body: &[u8],
    ) -> Reply {
        let port = match parse_engine_port(engine_port) {
            Ok(port) => port,
            Err(reply) => return reply,
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Reply::text(400, "Invalid JSON body");
        };
        let reply = endpoints::run(self, op, port, &value).await;
        if reply.status >= 500 {
            log::warn!(
                "docker/exapp/{} on engine port {port}: {} {}",
                op.as_str(),
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
        }
        reply
    }
}

/// HaRP's `get_docker_engine_port`: Python's `int()` of the header, 1-65535.
fn parse_engine_port(header: Option<&[u8]>) -> Result<u16, Reply> {
    let raw = match header {
        Some(raw) if !raw.is_empty() => String::from_utf8_lossy(raw).into_owned(),
        _ => return Err(Reply::text(400, "Missing 'docker-engine-port' header.")),
    };
    python_int(&raw)
        .filter(|p| (1..=65535).contains(p))
        .map(|p| p as u16)
        .ok_or_else(|| {
            Reply::text(
                400,
                format!("Invalid 'docker-engine-port' header value: {raw}"),
            )
        })
}

/// `int(s)` for ASCII input: surrounding whitespace, a sign, digits with single underscores.
fn python_int(s: &str) -> Option<i64> {
    let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let (negative, digits) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let value: i64 = digits.replace('_', "").parse().ok()?;
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(raw: Option<&str>) -> Result<u16, String> {
        parse_engine_port(raw.map(str::as_bytes))
            .map_err(|r| format!("{} {}", r.status, String::from_utf8_lossy(&r.body)))
    }

    #[test]
    fn engine_port_header_like_harp() {
        assert_eq!(port(Some("24000")), Ok(24000));
        assert_eq!(port(Some(" +24_001 ")), Ok(24001));
        assert_eq!(
            port(None),
            Err("400 Missing 'docker-engine-port' header.".into())
        );
        assert_eq!(
            port(Some("")),
            Err("400 Missing 'docker-engine-port' header.".into())
        );
        for bad in ["abc", "70000", "0", "-1", "1__0", "_1", "1.0", "0x10"] {
            assert_eq!(
                port(Some(bad)),
                Err(format!(
                    "400 Invalid 'docker-engine-port' header value: {bad}"
                ))
            );
        }
    }

    #[test]
    fn operations_and_budgets() {
        assert_eq!(Operation::from_path("exists"), Some(Operation::Exists));
        assert_eq!(Operation::from_path("Exists"), None);
        assert_eq!(Operation::from_path("exists/x"), None);
        assert_eq!(Operation::WaitForStart.budget(), Duration::from_secs(105));
        for op in Operation::ALL {
            assert_eq!(Operation::from_path(op.as_str()), Some(op));
            // The metric label is the path segment.
            assert_eq!(SidecarCall::from(op).as_str(), op.as_str());
        }
    }
}
