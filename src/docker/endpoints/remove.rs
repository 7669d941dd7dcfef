//! `remove` (§8.8): force-remove the container, then (with `remove_data`) its volume. A
//! container that is already gone (404) or being removed (409) counts as removed.

use super::{timeout, Ctx, Step};
use crate::docker::payload::RemovePayload;
use crate::docker::Reply;
use bollard::query_parameters::{RemoveContainerOptions, RemoveVolumeOptions};

pub(super) async fn remove(ctx: &Ctx, p: &RemovePayload) -> Reply {
    let names = p.app.names();
    let container = &names.container;
    let options = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    match ctx
        .step(ctx.docker.remove_container(container, Some(options)))
        .await
    {
        Step::Done((), 204) | Step::Status(404 | 409, _) => {}
        Step::Done((), status) | Step::Status(status, _) => {
            return Reply::text(
                503,
                format!(
                    "Error removing container '{container}' via Docker Engine: Status {status}"
                ),
            )
        }
        Step::Connect(_) => return ctx.could_not_connect(),
        Step::Timeout => return timeout("container removal"),
        Step::Other(e, _) => {
            log::warn!("remove '{container}': {e}");
            return Reply::text(
                500,
                "An unexpected error occurred during container removal.",
            );
        }
    }
    if !p.remove_data {
        return Reply::no_content();
    }
    let volume = &names.volume;
    match ctx
        .step(
            ctx.docker
                .remove_volume(volume, None::<RemoveVolumeOptions>),
        )
        .await
    {
        Step::Done((), 204) | Step::Status(404, _) => Reply::no_content(),
        Step::Status(409, _) => Reply::text(
            409,
            format!("Volume '{volume}' is in use and could not be removed."),
        ),
        Step::Done((), status) | Step::Status(status, _) => Reply::text(
            503,
            format!("Error removing volume '{volume}' via Docker Engine: Status {status}"),
        ),
        Step::Connect(_) => Reply::text(
            503,
            format!(
                "Could not connect to Docker Engine on port {} for volume removal",
                ctx.port
            ),
        ),
        Step::Timeout => timeout("volume removal"),
        Step::Other(e, _) => {
            log::warn!("remove volume '{volume}': {e}");
            Reply::text(500, "An unexpected error occurred during volume removal.")
        }
    }
}
