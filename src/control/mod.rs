//! AppAPI's control API, reached as `/exapps/app_api/<route>` with a valid `harp-shared-key`.
//! Served in-process; answers mirror HaRP's aiohttp agent (status codes, bodies, content types).
//! Must never block the data plane: everything here is async and bounded.

use crate::answers::{last_header, write};
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

/// `/info`, fields in HaRP's order; AppAPI requires `kubernetes.enabled` and `.reachable`
/// before it deploys to a Kubernetes daemon.
pub async fn info_body(state: &AppState) -> String {
    #[derive(serde::Serialize)]
    struct Info {
        version: &'static str,
        docker: bool,
        kubernetes: crate::k8s::KubernetesInfo,
    }
    serde_json::to_string(&Info {
        version: env!("CARGO_PKG_VERSION"),
        docker: true,
        kubernetes: state.k8s.info().await,
    })
    .unwrap_or_default()
}

/// Serve one control request; `route` is the target path after `/exapps/app_api`.
pub async fn serve(session: &mut Session, state: &AppState, route: &str) -> Result<()> {
    let method = session.req_header().method.clone();
    let is_get = method == Method::GET || method == Method::HEAD;
    match route {
        "/heartbeat" if is_get => json(session, 200, r#"{"status":"ok"}"#.into()).await,
        "/info" if is_get => {
            let body = info_body(state).await;
            json(session, 200, body).await
        }
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
                let reply = state
                    .docker
                    .handle(&operation, engine_port.as_deref(), &body)
                    .await;
                if reply.status == 204 {
                    return no_content(session).await;
                }
                return write(session, reply.status, reply.content_type, reply.body, &[]).await;
            }
            if let Some(operation) = route.strip_prefix("/k8s/exapp/") {
                // aiohttp's router: an unknown route is 404 before the method is looked at.
                let Some(op) = crate::k8s::Operation::from_path(operation) else {
                    return text(session, 404, "404: Not Found").await;
                };
                if method != Method::POST {
                    return text(session, 405, "405: Method Not Allowed").await;
                }
                return kubernetes(session, state, op).await;
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
        Ok(mut record) => {
            // AppAPI names the app id as host for a Kubernetes ExApp: the real address comes
            // from its Service, or the update would make the app unreachable.
            match state.apps.override_upstream(&app_lower).await {
                Ok(Some((host, port))) => {
                    record.host = host;
                    record.port = port;
                }
                Ok(None) => {}
                Err(why) => {
                    log::warn!("exapp_storage for {app_lower:?}: {why}; nothing stored");
                    return write(session, 503, TEXT, Bytes::from(why), &[]).await;
                }
            }
            state.apps.store(app_lower, record).await;
            no_content(session).await
        }
        Err(e) => {
            log::warn!("exapp_storage: {e}");
            text(session, 400, "400: Bad Request").await
        }
    }
}

/// `/k8s/exapp/<op>`: the Kubernetes backend, and for `expose` the ExApp's record bound to the
/// address it exposed. `wait_for_start` can wait an hour: it stops when AppAPI hangs up.
async fn kubernetes(
    session: &mut Session,
    state: &AppState,
    op: crate::k8s::Operation,
) -> Result<()> {
    let Some(body) = read_body(session).await? else {
        return text(session, 413, "413: Request Entity Too Large").await;
    };
    let work = state.k8s.handle(op, &body);
    tokio::pin!(work);
    // The request is read; the only thing the client can still send is its hang-up.
    session.set_read_timeout(None);
    let outcome = tokio::select! {
        outcome = &mut work => outcome,
        gone = session.downstream_session.read_body_or_idle(true) => match gone {
            Err(e) => {
                log::info!("k8s/exapp/{op:?}: AppAPI closed the connection; stopped waiting");
                return Err(e);
            }
            Ok(_) => work.await,
        },
    };
    let reply = match outcome {
        crate::k8s::Outcome::Reply(reply) => reply,
        crate::k8s::Outcome::Exposed(exposed) => bind_exposed(state, exposed).await,
    };
    if reply.status == 204 {
        return no_content(session).await;
    }
    write(session, reply.status, reply.content_type, reply.body, &[]).await
}

/// HaRP's end of `expose`: the ExApp's record from Nextcloud, with the exposed address, cached
/// for the gateway.
async fn bind_exposed(state: &AppState, exposed: crate::k8s::Exposed) -> crate::reply::Reply {
    use crate::nextcloud::client::MetaError;
    use crate::reply::Reply;
    let app = exposed.app_id.clone();
    match state.nextcloud.exapp_meta(&app).await {
        Ok(mut record) => {
            record.host = crate::nextcloud::Host::parse(&exposed.host);
            record.port = exposed.port;
            state.apps.store(app, record).await;
            Reply::json(200, &exposed)
        }
        Err(MetaError::NotFound) => {
            log::error!("expose: Nextcloud has no ExApp {app:?}");
            Reply::text(404, format!("No ExApp metadata for '{app}'"))
        }
        Err(MetaError::Failed(why)) => {
            log::error!("expose: fetching the record of ExApp {app:?} failed: {why}");
            Reply::text(503, format!("Failed to fetch metadata for '{app}'"))
        }
    }
}
