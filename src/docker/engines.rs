//! Docker engines by `docker-engine-port`: one bollard client per engine, created on first use,
//! with its API version negotiated (`negotiate_version`: Docker 29 refuses versions below 1.44,
//! old engines refuse versions above theirs), kept in a bounded cache. bollard 0.21.1 actually
//! sends unversioned paths (its URL join drops the `/vX.Y` prefix), as HaRP does, so Docker
//! answers with its own current API; the negotiation keeps that true if bollard starts
//! versioning them.
//!
//! Which engine a port means is decided once, in `target::target_for`, for both the gateway's
//! passthrough and these clients: `127.0.0.1:<port>`, except port 24000 with a local Docker
//! socket and no listener there, which is the local engine. Sharing that decision keeps the
//! passthrough (image pull) and the sidecar (create) on the same engine.
//!
//! Why a custom transport: bollard folds 204/304 and 200/201 into `Ok`, but HaRP's answers
//! depend on the exact status (`start` → 204 vs 200 "already started"). The transport below is
//! bollard's own (a hyper-util client over TCP or hyperlocal over a unix socket) plus one
//! line recording each response status in a task-local that [`call`] reads.

use super::target::{target_for, EngineTarget};
use bollard::errors::Error as BollardError;
use bollard::{BollardRequest, Docker, API_DEFAULT_VERSION};
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use moka::future::Cache;
use std::cell::Cell;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// Engines a harp can serve: the 100 tunnel ports and a few more.
const MAX_ENGINES: u64 = 128;
/// Clients are rebuilt (and the API version renegotiated) this often, so an upgraded engine is
/// noticed.
const CLIENT_TTL: Duration = Duration::from_secs(300);
/// bollard's own per-request limit, a backstop only: every endpoint enforces its own, shorter
/// budget (§8.2) with `tokio::time::timeout`.
const BOLLARD_TIMEOUT_SECS: u64 = 300;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

tokio::task_local! {
    /// Status of the last Docker response seen by the current [`call`].
    static LAST_STATUS: Cell<u16>;
}

/// Why a Docker call did not succeed.
#[derive(Debug, Clone)]
pub enum Failure {
    /// Docker answered with an error status (and this message).
    Status(u16, String),
    /// The engine could not be reached.
    Connect(String),
    /// Anything else: an unreadable answer, a broken connection; with the status Docker
    /// answered, if it did (else 0).
    Other(String, u16),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(status, message) => write!(f, "Docker answered {status}: {message}"),
            Failure::Connect(e) => write!(f, "cannot connect: {e}"),
            Failure::Other(e, _) => write!(f, "{e}"),
        }
    }
}

/// Runs one bollard call and returns its value with the HTTP status Docker answered.
pub async fn call<T>(
    request: impl Future<Output = Result<T, BollardError>>,
) -> Result<(T, u16), Failure> {
    let (result, status) = with_status(request).await;
    match result.map_err(classify) {
        Ok(value) => Ok((value, status)),
        Err(Failure::Other(e, _)) => Err(Failure::Other(e, status)),
        Err(e) => Err(e),
    }
}

/// Runs one bollard call and returns bollard's own result with the HTTP status Docker answered
/// (0 when it did not), for a caller that needs the error's cause rather than a [`Failure`].
pub(crate) async fn with_status<T>(
    request: impl Future<Output = Result<T, BollardError>>,
) -> (Result<T, BollardError>, u16) {
    LAST_STATUS
        .scope(Cell::new(0), async move {
            let result = request.await;
            (result, LAST_STATUS.with(Cell::get))
        })
        .await
}

fn classify(error: BollardError) -> Failure {
    match error {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => Failure::Status(status_code, message),
        BollardError::HyperLegacyError { err } if err.is_connect() => {
            Failure::Connect(error_chain(&err))
        }
        BollardError::SocketNotFoundError(path) => Failure::Connect(format!("no socket {path}")),
        other => Failure::Other(error_chain(&other), 0),
    }
}

/// An error with its sources: hyper's own messages ("client error (Connect)") hide the cause.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn record_status(status: u16) {
    // Outside a `call` (version negotiation) there is nothing to record into.
    let _ = LAST_STATUS.try_with(|s| s.set(status));
}

/// bollard clients by engine.
pub struct Engines {
    clients: Cache<EngineTarget, Docker>,
}

impl Default for Engines {
    fn default() -> Self {
        Engines {
            clients: Cache::builder()
                .max_capacity(MAX_ENGINES)
                .time_to_live(CLIENT_TTL)
                .build(),
        }
    }
}

impl Engines {
    /// The client for `docker-engine-port: port`, connecting (and negotiating) on first use.
    /// A failed negotiation is not cached.
    pub async fn client(&self, port: u16, local_socket: &Path) -> Result<Docker, Failure> {
        let target = target_for(port, local_socket).await;
        self.clients
            .try_get_with(target.clone(), connect(target))
            .await
            .map_err(|e| (*e).clone())
    }
}

async fn connect(target: EngineTarget) -> Result<Docker, Failure> {
    let docker = client_for(&target).map_err(classify)?;
    match call(docker.clone().negotiate_version()).await {
        Ok((docker, _)) => {
            log::debug!("docker engine {target:?}: API {}", docker.client_version());
            Ok(docker)
        }
        Err(Failure::Connect(e)) => Err(Failure::Connect(e)),
        // An engine that hides its version still gets bollard's default; its answers decide.
        Err(e) => {
            log::warn!("docker engine {target:?}: version negotiation failed ({e}); using API {API_DEFAULT_VERSION:?}");
            Ok(docker)
        }
    }
}

/// A bollard client for `target` with bollard's default API version, not negotiated: the
/// sidecar's clients negotiate it (`connect`); the passthrough's version probe
/// (`target::EngineVersions`) and `harp doctor`'s `_ping` need no version.
pub(crate) fn client_for(target: &EngineTarget) -> Result<Docker, BollardError> {
    match target {
        EngineTarget::Tcp(port) => tcp_client(*port),
        EngineTarget::Unix(path) => unix_client(path),
    }
}

fn tcp_client(port: u16) -> Result<Docker, BollardError> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_nodelay(true);
    counting_client(connector, format!("http://127.0.0.1:{port}"))
}

/// bollard on `connector`, with every engine answer counted (`record_status`).
fn counting_client<C>(connector: C, addr: String) -> Result<Docker, BollardError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    // No idle pool, as bollard does: a tunnel port may change hands between requests.
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector);
    let transport = move |request: BollardRequest| {
        let response = client.request(request);
        async move {
            let response = response.await?;
            record_status(response.status().as_u16());
            Ok(response)
        }
    };
    Docker::connect_with_custom_transport(
        transport,
        Some(addr),
        BOLLARD_TIMEOUT_SECS,
        API_DEFAULT_VERSION,
    )
}

fn unix_client(path: &Path) -> Result<Docker, BollardError> {
    // hyperlocal finds the socket in the URI's host, hex-encoded.
    let hex: String = path
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    counting_client(hyperlocal::UnixConnector, format!("unix://{hex}"))
}
