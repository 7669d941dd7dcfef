//! The operations listener (HP_OPS_ADDRESS, loopback by default): liveness for health checks.
//! Separate from the ExApp listeners so probes never pass through the brute-force guard.

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

pub struct OpsApp;

#[async_trait]
impl ServeHttp for OpsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (status, body): (u16, &[u8]) = match session.req_header().uri.path() {
            "/heartbeat" => (200, br#"{"status":"ok"}"#),
            _ => (404, br#"{"error":"not found"}"#),
        };
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(body.to_vec())
            .unwrap_or_default()
    }
}
