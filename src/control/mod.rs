//! AppAPI's control API, reached as `/exapps/app_api/<route>` with a valid `harp-shared-key`.
//! Served in-process; answers mirror HaRP's aiohttp agent (status codes, bodies, content types).
//! Must never block the data plane: everything here is async and bounded.

use crate::gateway::decide::last_header;
use crate::gateway::responses::write;
use crate::nextcloud::ExAppRecord;
use crate::state::AppState;
use bytes::Bytes;
use http::Method;
use pingora::prelude::*;
use pingora::proxy::Session;

const JSON: &str = "application/json; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
/// An ExApp record is a few KiB; anything far larger is not one.
const MAX_BODY: usize = 1 << 20;

async fn text(session: &mut Session, status: u16, body: &'static str) -> Result<()> {
    write(
        session,
        status,
        TEXT,
        Bytes::from_static(body.as_bytes()),
        &[],
    )
    .await
}

async fn json(session: &mut Session, status: u16, body: String) -> Result<()> {
    write(session, status, JSON, Bytes::from(body), &[]).await
}

async fn no_content(session: &mut Session) -> Result<()> {
    let resp = pingora::http::ResponseHeader::build(204, Some(0))?;
    session.write_response_header(Box::new(resp), true).await
}

/// Body of a request, refusing more than `MAX_BODY` bytes.
async fn read_body(session: &mut Session) -> Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        if body.len() + chunk.len() > MAX_BODY {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

pub fn info_body(state: &AppState) -> String {
    let _ = state;
    format!(
        r#"{{"version":"{}","docker":true,"kubernetes":{{"enabled":false}}}}"#,
        env!("CARGO_PKG_VERSION")
    )
}

/// Serve one control request; `route` is the target path after `/exapps/app_api`.
pub async fn serve(session: &mut Session, state: &AppState, route: &str) -> Result<()> {
    let method = session.req_header().method.clone();
    let is_get = method == Method::GET || method == Method::HEAD;
    match route {
        "/heartbeat" if is_get => json(session, 200, r#"{"status":"ok"}"#.into()).await,
        "/info" if is_get => json(session, 200, info_body(state)).await,
        "/heartbeat" | "/info" => text(session, 405, "405: Method Not Allowed").await,
        _ => {
            if let Some(app) = route
                .strip_prefix("/exapp_storage/")
                .filter(|a| !a.is_empty() && !a.contains('/'))
            {
                let app_lower = app.to_ascii_lowercase();
                return match method {
                    Method::POST => store_record(session, state, app_lower).await,
                    Method::DELETE => {
                        if state.apps.remove(&app_lower).await {
                            no_content(session).await
                        } else {
                            text(session, 404, "404: Not Found").await
                        }
                    }
                    _ => text(session, 405, "405: Method Not Allowed").await,
                };
            }
            if let Some(operation) = route.strip_prefix("/docker/exapp/") {
                if method != Method::POST {
                    return text(session, 405, "405: Method Not Allowed").await;
                }
                let operation = operation.to_string();
                let engine_port = last_header(&session.req_header().headers, "docker-engine-port")
                    .map(<[u8]>::to_vec);
                let Some(body) = read_body(session).await? else {
                    return text(session, 413, "413: Request Entity Too Large").await;
                };
                let reply =
                    crate::docker::handle(state, &operation, engine_port.as_deref(), &body).await;
                if reply.status == 204 {
                    return no_content(session).await;
                }
                return write(session, reply.status, reply.content_type, reply.body, &[]).await;
            }
            if route.starts_with("/k8s/exapp/") {
                return text(
                    session,
                    501,
                    "501: Not Implemented. harp-rs does not serve this control endpoint yet.",
                )
                .await;
            }
            text(session, 404, "404: Not Found").await
        }
    }
}

async fn store_record(session: &mut Session, state: &AppState, app_lower: String) -> Result<()> {
    let Some(body) = read_body(session).await? else {
        return text(session, 413, "413: Request Entity Too Large").await;
    };
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        // HaRP's agent fails unhandled on non-JSON bodies; AppAPI only ever sends JSON.
        Err(_) => {
            return text(
                session,
                500,
                "500 Internal Server Error\n\nServer got itself in trouble",
            )
            .await;
        }
    };
    match ExAppRecord::from_value(&value) {
        Ok(record) => {
            state.apps.store(app_lower, record).await;
            no_content(session).await
        }
        Err(e) => {
            log::warn!("exapp_storage: {e}");
            text(session, 400, "400: Bad Request").await
        }
    }
}
