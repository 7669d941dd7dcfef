//! The operations listener (HP_OPS_ADDRESS, loopback by default): liveness (`/heartbeat`),
//! readiness (`/ready`: Nextcloud reachable), Prometheus metrics (`/metrics`) and the connected
//! FRP proxies (`/tunnels`, read by `harp doctor`), and `/key-check` (is `harp-shared-key` the
//! running harp's key; once a second at most). Separate from
//! the ExApp listeners so probes never pass through the brute-force guard.

use crate::state::AppState;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub struct OpsApp {
    state: Arc<AppState>,
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
            last_key_check: std::sync::atomic::AtomicU64::new(0),
            started: std::time::Instant::now(),
        }
    }

    /// `harp doctor` asks whether its HP_SHARED_KEY is the running harp's without sending it
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
            .map(|v| v.as_bytes());
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
            "/heartbeat" => respond(200, JSON, br#"{"status":"ok"}"#.to_vec()),
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
