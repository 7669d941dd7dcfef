//! The Docker sidecar: AppAPI's `/docker/exapp/*` lifecycle endpoints through bollard, one client
//! per Docker engine (work in progress).

use crate::state::AppState;
use bytes::Bytes;

/// One answer of a `/docker/exapp/*` endpoint.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
}

/// Docker engines by `docker-engine-port`, created lazily.
#[derive(Default)]
pub struct Engines {}

/// Serve `/docker/exapp/<operation>` for AppAPI. `engine_port` is the raw `docker-engine-port`
/// header, `body` the request body.
pub async fn handle(
    state: &AppState,
    operation: &str,
    engine_port: Option<&[u8]>,
    body: &[u8],
) -> Reply {
    let _ = (state, operation, engine_port, body);
    Reply {
        status: 501,
        content_type: "text/plain; charset=utf-8",
        body: Bytes::from_static(
            b"501: Not Implemented. harp-rs does not serve this control endpoint yet.",
        ),
    }
}
