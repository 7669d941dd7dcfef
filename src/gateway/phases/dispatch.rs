//! Phase unit of `request_filter` (D6, R4, §6, §7): `/exapps/app_api/...` is AppAPI talking to
//! harp itself. Without the valid key: 401 and a strike. With it, a non-empty
//! `docker-engine-port` and a route outside `/docker/` is the Docker passthrough (the allowlist,
//! then the upstream phases); everything else is answered by the control API here.

use super::super::{path, responses, RequestCtx, Upstream};
use super::{refuse, upstream_uri, Answer, Refusal};
use crate::answers::last_header;
use crate::docker::{passthrough, target};
use crate::metrics::Outcome;
use crate::state::AppState;
use pingora::prelude::*;
use pingora::proxy::Session;

/// The app id of AppAPI's own requests.
pub const APP_API: &str = "app_api";

/// The control route (unreserved escapes decoded) and the query, owned: the control API's
/// future outlives the borrow of the request head.
pub struct ControlRoute {
    route: String,
    query: Option<String>,
}

impl ControlRoute {
    pub fn new(target: &str, query: Option<&str>) -> Self {
        ControlRoute {
            route: path::normalize_unreserved(target).into_owned(),
            query: query.map(str::to_string),
        }
    }
}

pub async fn app_api(
    state: &AppState,
    engine_versions: &target::EngineVersions,
    session: &mut Session,
    ctx: &mut RequestCtx,
    ControlRoute { route, query }: ControlRoute,
) -> Result<bool> {
    if !ctx.key_valid {
        let refusal = Refusal {
            answer: Answer::Status(401),
            strike: true,
        };
        return refuse(state, session, ctx, refusal).await;
    }
    let engine_port =
        last_header(&session.req_header().headers, "docker-engine-port").filter(|p| !p.is_empty());
    if let (Some(port), false) = (engine_port, route.starts_with("/docker/")) {
        let Some(port) = std::str::from_utf8(port)
            .ok()
            .and_then(|p| p.trim().parse::<u16>().ok())
            .filter(|p| *p != 0)
        else {
            let refusal = Refusal {
                answer: Answer::Status(503),
                strike: false,
            };
            return refuse(state, session, ctx, refusal).await;
        };
        let decoded = path::percent_decode(&route);
        let Some(op) = passthrough::operation(&session.req_header().method, &decoded) else {
            responses::write_haproxy(session, 403).await?;
            return Ok(true);
        };
        let target = target::target_for(port, &state.settings.docker_socket).await;
        let fitted = match target::path_version(&route) {
            Some(_) => match engine_versions.get(&target).await {
                Some(range) => target::fit_version(&route, range),
                None => None,
            },
            None => None,
        };
        let uri = upstream_uri(fitted.as_deref().unwrap_or(&route), query.as_deref())?;
        ctx.upstream = Some(Upstream::DockerEngine { target, uri, op });
        ctx.outcome = Outcome::Proxied;
        return Ok(false);
    }
    ctx.outcome = Outcome::Control;
    crate::control::serve(session, state, &route).await?;
    Ok(true)
}
