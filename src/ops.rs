//! The operations listener (`HP_OPS_ADDRESS`, loopback by default): liveness (`/heartbeat`),
//! readiness (`/ready`: Nextcloud reachable), Prometheus metrics (`/metrics`) and the connected
//! FRP proxies (`/tunnels`, read by `harp doctor`), and `/key-check` (is `harp-shared-key` the
//! running harp's key; once a second at most). Separate from
//! the ExApp listeners so probes never pass through the brute-force guard.

use crate::listeners::Listener;
use crate::state::AppState;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub struct OpsApp {
    state: Arc<AppState>,
    /// The other listeners, which `/heartbeat` checks are accepting connections.
    listeners: Vec<Listener>,
    /// When the last `/key-check` was answered (ms since start): one a second at most.
    last_key_check: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
}

/// `/key-check` answers at most once per this many milliseconds, so the ops listener (which
/// has no brute-force guard) is no way to guess the key.
const KEY_CHECK_INTERVAL_MS: u64 = 1000;

impl OpsApp {
    pub fn new(state: Arc<AppState>) -> Self {
        OpsApp {
            state,
            listeners: Vec::new(),
            last_key_check: std::sync::atomic::AtomicU64::new(0),
            started: std::time::Instant::now(),
        }
    }

    /// `/heartbeat` answers 200 only while each of `listeners` accepts connections.
    pub fn watching(mut self, listeners: Vec<Listener>) -> Self {
        self.listeners = listeners;
        self
    }

    /// `/heartbeat`: liveness of the whole process, so every listener is tried (a connection
    /// that is opened and closed at once, which none of them logs).
    async fn heartbeat(&self) -> (u16, Vec<u8>) {
        let failing = not_serving(&self.listeners).await;
        if failing.is_empty() {
            return (200, br#"{"status":"ok"}"#.to_vec());
        }
        let body = serde_json::json!({"status": "failing", "not_serving": failing});
        (503, body.to_string().into_bytes())
    }

    /// `harp doctor` asks whether its `HP_SHARED_KEY` is the running harp's without sending it
    /// to the gateway, where a wrong key is a brute-force strike on the host's own address.
    fn key_check(&self, session: &ServerSession) -> u16 {
        use std::sync::atomic::Ordering;
        let now = self.started.elapsed().as_millis() as u64 + KEY_CHECK_INTERVAL_MS;
        let last = self.last_key_check.load(Ordering::Relaxed);
        if now.saturating_sub(last) < KEY_CHECK_INTERVAL_MS
            || self
                .last_key_check
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return 429;
        }
        let presented = session
            .req_header()
            .headers
            .get("harp-shared-key")
            .map(http::HeaderValue::as_bytes);
        match presented {
            Some(key) if self.state.is_shared_key(key) => 204,
            _ => 403,
        }
    }

    async fn ready(&self) -> (u16, String) {
        match self.state.nextcloud.probe().await {
            Ok(status) => (
                200,
                format!(r#"{{"status":"ready","nextcloud_status":{status}}}"#),
            ),
            Err(why) => (
                503,
                serde_json::json!({"status": "not ready", "reason": why}).to_string(),
            ),
        }
    }

    fn tunnels(&self) -> String {
        let proxies: Vec<serde_json::Value> = self
            .state
            .tunnels
            .proxies()
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "port": p.port,
                    "client": p.client_addr().to_string(),
                })
            })
            .collect();
        serde_json::json!({
            "clients": self.state.tunnels.control_count(),
            "proxies": proxies,
        })
        .to_string()
    }

    async fn metrics(&self) -> String {
        let state = &self.state;
        let cached = state.apps.cached_count().await;
        let unknown = state.apps.unknown_count();
        let sessions = state.sessions.cached_count().await;
        let tracked = state.bans.tracked_count();
        let banned = state.bans.banned_count() as u64;
        let tunnels = state.tunnels.control_count() as u64;
        // The sizes of the bounded caches (HaRP Q7), so their bounds can be watched.
        state.metrics.render(&[
            ("harp_banned_ips", "Client IPs currently banned.", banned),
            (
                "harp_clients_tracked",
                "Client IPs whose brute-force strikes are counted (at most 100000).",
                tracked,
            ),
            (
                "harp_exapps_cached",
                "ExApp records in the cache (at most 10000).",
                cached,
            ),
            (
                "harp_unknown_apps_cached",
                "App ids remembered as unknown for 15 s (at most 10000).",
                unknown,
            ),
            (
                "harp_sessions_cached",
                "Users cached by session (at most 100000).",
                sessions,
            ),
            ("harp_tunnel_clients", "FRP clients logged in.", tunnels),
        ])
    }
}

/// How long a listener may take to accept a connection from the heartbeat.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The listeners (`HP_EXAPPS_ADDRESS 0.0.0.0:8780`...) that refuse a connection or do not
/// accept it within `PROBE_TIMEOUT`.
async fn not_serving(listeners: &[Listener]) -> Vec<String> {
    let probes = listeners.iter().map(|l| async move {
        let connect = tokio::net::TcpStream::connect(l.connect_addr());
        match tokio::time::timeout(PROBE_TIMEOUT, connect).await {
            Ok(Ok(_)) => None,
            _ => Some(l.to_string()),
        }
    });
    futures_util::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for OpsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        const JSON: &str = "application/json";
        match session.req_header().uri.path() {
            "/heartbeat" => {
                let (status, body) = self.heartbeat().await;
                respond(status, JSON, body)
            }
            "/ready" => {
                let (status, body) = self.ready().await;
                respond(status, JSON, body.into_bytes())
            }
            "/tunnels" => respond(200, JSON, self.tunnels().into_bytes()),
            "/key-check" => respond(self.key_check(session), JSON, Vec::new()),
            "/metrics" => respond(
                200,
                "text/plain; version=0.0.4",
                self.metrics().await.into_bytes(),
            ),
            _ => respond(404, JSON, br#"{"error":"not found"}"#.to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listener_that_refuses_connections_is_not_serving() {
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let listeners = vec![
            Listener {
                setting: "HP_EXAPPS_ADDRESS",
                scheme: "http",
                addr: open.local_addr().unwrap(),
            },
            Listener {
                setting: "HP_FRP_ADDRESS",
                scheme: "frp",
                addr: closed_addr,
            },
        ];
        assert_eq!(
            not_serving(&listeners).await,
            vec![format!("HP_FRP_ADDRESS {closed_addr}")]
        );
        assert!(not_serving(&listeners[..1]).await.is_empty());
    }
}
