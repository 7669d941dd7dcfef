//! ExApp stand-ins: an echo server, a port with nothing listening, and a server that never
//! answers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Map, Value};

use super::{all_headers, header_list, last_header, local, ServerTask};

/// One request as the echo backend received it.
#[derive(Clone, Debug)]
pub struct EchoRequest {
    pub method: String,
    /// The request target exactly as on the request line (absolute form included).
    pub target: String,
    /// Its path, not normalised or decoded.
    pub path: String,
    /// Raw query (`None` when there was no `?`).
    pub query: Option<String>,
    /// Lower-case names, every value, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl EchoRequest {
    /// Last value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        last_header(&self.headers, name)
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        all_headers(&self.headers, name)
    }
}

type Log = Arc<Mutex<Vec<EchoRequest>>>;

/// Answers any request with 200 JSON
/// `{"method","target","path","query","headers":{name:[values]},"body"}`, except:
/// `/status/<code>` (that status, body `status <code>`), `/sleep/<ms>` (echo after a delay),
/// `/ws`, `/ws/...` (WebSocket echo of text and binary), `/sse` (`data: n` every 200 ms, five
/// times), `/big/<bytes>` (that many bytes of [`big_body`]).
#[derive(Clone)]
pub struct EchoBackend {
    addr: SocketAddr,
    log: Log,
    _server: Arc<ServerTask>,
}

impl EchoBackend {
    pub async fn start() -> EchoBackend {
        EchoBackend::start_on("127.0.0.1:0").await
    }

    /// On another loopback address, e.g. `[::1]:0`.
    pub async fn start_on(bind: &str) -> EchoBackend {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .expect("bind echo backend");
        let addr = listener.local_addr().unwrap();
        let log: Log = Arc::default();
        let app = Router::new().fallback(handle).with_state(log.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        EchoBackend {
            addr,
            log,
            _server: Arc::new(ServerTask::new(task)),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn requests(&self) -> Vec<EchoRequest> {
        self.log.lock().unwrap().clone()
    }

    pub fn last_request(&self) -> Option<EchoRequest> {
        self.log.lock().unwrap().last().cloned()
    }

    pub fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

async fn handle(State(log): State<Log>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    // hyper keeps the request-target as sent (no dot-segment removal, no decoding).
    let request = EchoRequest {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: header_list(&parts.headers),
        body,
    };
    log.lock().unwrap().push(request.clone());

    let path = request.path.as_str();
    if let Some(code) = path.strip_prefix("/status/") {
        return match code.parse::<u16>() {
            Ok(status) => Response::builder()
                .status(status)
                .header("content-type", "text/plain")
                .body(Body::from(format!("status {status}")))
                .unwrap(),
            Err(_) => echo(&request),
        };
    }
    if let Some(ms) = path.strip_prefix("/sleep/") {
        if let Ok(ms) = ms.parse::<u64>() {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        return echo(&request);
    }
    if path == "/ws" || path.starts_with("/ws/") {
        return match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => upgrade.on_upgrade(ws_echo),
            Err(rejection) => rejection.into_response(),
        };
    }
    if path == "/sse" {
        return sse();
    }
    if let Some(n) = path.strip_prefix("/big/") {
        if let Ok(n) = n.parse::<usize>() {
            return Response::builder()
                .header("content-type", "application/octet-stream")
                .body(Body::from(big_body(n)))
                .unwrap();
        }
    }
    echo(&request)
}

fn echo(request: &EchoRequest) -> Response {
    let mut headers = Map::new();
    for (name, value) in &request.headers {
        let values = headers.entry(name.clone()).or_insert_with(|| json!([]));
        values.as_array_mut().unwrap().push(json!(value));
    }
    let body = json!({
        "method": request.method,
        "target": request.target,
        "path": request.path,
        "query": request.query,
        "headers": Value::Object(headers),
        "body": String::from_utf8_lossy(&request.body),
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// Echoes text and binary frames; never pings (idle-timeout tests rely on silence).
async fn ws_echo(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(_) | Message::Binary(_) => message,
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

/// Five events, one every 200 ms, so a test can tell streaming from buffering.
fn sse() -> Response {
    let events = futures_util::stream::unfold(0u32, |n| async move {
        if n >= 5 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        Some((
            Ok::<_, Infallible>(Bytes::from(format!("data: {n}\n\n"))),
            n + 1,
        ))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(events))
        .unwrap()
}

/// The body `/big/<n>` answers: a repeating `a..z` pattern.
pub fn big_body(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A loopback port with nothing listening (bound then released), for connection-refused tests.
pub struct ClosedPort {
    port: u16,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        ClosedPort {
            port: super::free_port(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        local(self.port)
    }
}

/// Accepts TCP connections, reads and discards whatever arrives, never answers; connections
/// stay open until the backend is dropped (504 / server-timeout tests).
pub struct SilentBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    _server: ServerTask,
}

impl SilentBackend {
    pub async fn start() -> SilentBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind silent backend");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            // Readers live in this JoinSet, so aborting the accept task closes every connection.
            let mut readers = tokio::task::JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                readers.spawn(async move {
                    let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
                    // Peer closed its side: keep ours open until the backend is dropped.
                    std::future::pending::<()>().await;
                });
            }
        });
        SilentBackend {
            addr,
            accepted,
            _server: ServerTask::new(task),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far (e.g. to count harp's connect attempts).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}
