//! `start` (§8.5) and `stop` (§8.6): one call each; 204 done, 304 "already" (200), 404.
//! AppAPI's deploy needs the 204: a 200 "already started" aborts it.

use super::{timeout, Ctx, Step};
use crate::docker::payload::ExAppName;
use crate::docker::Reply;
use bollard::query_parameters::StopContainerOptions;

pub(super) async fn start(ctx: &Ctx, app: &ExAppName) -> Reply {
    let container = app.names().container;
    let step = ctx.step(ctx.docker.start_container(&container, None)).await;
    answer(ctx, step, &container, "start", "started")
}

pub(super) async fn stop(ctx: &Ctx, app: &ExAppName) -> Reply {
    let container = app.names().container;
    // No `t`: Docker's own grace period, as HaRP.
    let step = ctx
        .step(
            ctx.docker
                .stop_container(&container, None::<StopContainerOptions>),
        )
        .await;
    answer(ctx, step, &container, "stop", "stopped")
}

fn answer(ctx: &Ctx, step: Step<()>, container: &str, verb: &str, done: &str) -> Reply {
    let doing = if verb == "stop" {
        "stopping"
    } else {
        "starting"
    };
    match step {
        Step::Done((), 204) => Reply::no_content(),
        Step::Done((), 304) => Reply::text(200, format!("Container already {done}")),
        Step::Status(404, _) => Reply::text(404, format!("Container '{container}' not found.")),
        Step::Done((), status) | Step::Status(status, _) => Reply::text(
            503,
            format!("Error {doing} container '{container}' via Docker Engine: Status {status}"),
        ),
        Step::Connect(_) => ctx.could_not_connect(),
        Step::Timeout => timeout(&format!("container {verb}")),
        Step::Other(e, _) => {
            log::warn!("{verb} '{container}': {e}");
            Reply::text(
                500,
                format!("An unexpected error occurred during container {verb}."),
            )
        }
    }
}
