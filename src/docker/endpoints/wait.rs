//! `wait_for_start` (§8.7): poll `GET /containers/<c>/json` until the container runs (and is
//! healthy if it has a health check), 180 polls 0.5 s apart within 105 s. AppAPI accepts only
//! `started: true`; an unhealthy running container is reported started with a reason (R6),
//! and AppAPI's own health check then fails the deploy.

use super::{Ctx, Step};
use crate::docker::payload::ExAppName;
use crate::docker::Reply;
use bollard::models::{ContainerInspectResponse, HealthStatusEnum};
use serde::Serialize;
use std::time::Duration;

const MAX_TRIES: u32 = 180;
const INTERVAL: Duration = Duration::from_millis(500);

#[derive(Serialize)]
struct Answer<'a> {
    started: bool,
    status: Option<&'a str>,
    health: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct NotFound {
    started: bool,
    status: &'static str,
    reason: &'static str,
}

pub(super) async fn wait_for_start(ctx: &Ctx, app: &ExAppName) -> Reply {
    let container = app.names().container;
    let mut last_status: Option<String> = Some("unknown".into());
    let mut last_health: Option<String> = None;
    for attempt in 0..MAX_TRIES {
        let info = match ctx
            .step(ctx.docker.inspect_container(&container, None))
            .await
        {
            Step::Done(info, 200) => info,
            Step::Status(404, _) => {
                return Reply::json(
                    200,
                    &NotFound {
                        started: false,
                        status: "not_found",
                        reason: "container not found",
                    },
                )
            }
            Step::Done(_, status) | Step::Status(status, _) => {
                return Reply::text(
                    503,
                    format!("Error inspecting container '{container}': Status {status}"),
                )
            }
            Step::Connect(_) => return ctx.could_not_connect(),
            Step::Timeout => {
                return overall_timeout_with(last_status.as_deref(), last_health.as_deref())
            }
            Step::Other(e, _) => {
                log::warn!("wait_for_start '{container}': {e}");
                return Reply::text(
                    500,
                    "An unexpected error occurred while waiting for container start.",
                );
            }
        };
        let (status, health) = state_of(&info);
        let answer = |started, reason| {
            Reply::json(
                200,
                &Answer {
                    started,
                    status: status.as_deref(),
                    health: health.as_deref(),
                    reason,
                },
            )
        };
        match (status.as_deref(), health.as_deref()) {
            (Some("running"), None | Some("healthy")) => return answer(true, None),
            (Some("running"), Some("unhealthy")) => return answer(true, Some("unhealthy")),
            (Some(s @ ("paused" | "exited" | "dead")), _) => {
                let reason = format!("non-recoverable state: {s}");
                return answer(false, Some(&reason));
            }
            // `starting`, `created`, `restarting`...: keep polling.
            _ => {}
        }
        last_status = status;
        last_health = health;
        if attempt + 1 < MAX_TRIES {
            let wake = tokio::time::Instant::now() + INTERVAL;
            if wake >= ctx.deadline {
                tokio::time::sleep_until(ctx.deadline).await;
                return overall_timeout_with(last_status.as_deref(), last_health.as_deref());
            }
            tokio::time::sleep_until(wake).await;
        }
    }
    Reply::json(
        200,
        &Answer {
            started: false,
            status: last_status.as_deref(),
            health: last_health.as_deref(),
            reason: Some("timeout after max tries"),
        },
    )
}

/// `State.Status`, and `State.Health.Status` (`None` without a health check; HaRP crashed on
/// `Health: null`, here it means no health check too).
fn state_of(info: &ContainerInspectResponse) -> (Option<String>, Option<String>) {
    let state = info.state.as_ref();
    let status = state.and_then(|s| s.status).map(|s| s.to_string());
    let health = state
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.status)
        .filter(|h| !matches!(h, HealthStatusEnum::EMPTY | HealthStatusEnum::NONE))
        .map(|h| h.to_string());
    (status, health)
}

/// The whole request ran out of time before the engine first answered.
pub(super) fn overall_timeout(status: &str, health: Option<&str>) -> Reply {
    overall_timeout_with(Some(status), health)
}

fn overall_timeout_with(status: Option<&str>, health: Option<&str>) -> Reply {
    Reply::json(
        200,
        &Answer {
            started: false,
            status,
            health,
            reason: Some("overall timeout"),
        },
    )
}
