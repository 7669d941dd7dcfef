//! `exists` (§8.3): `GET /containers/<c>/json`.

use super::{Ctx, Step};
use crate::docker::payload::ExAppName;
use crate::docker::Reply;
use bollard::models::ContainerInspectResponse;
use serde::Serialize;

#[derive(Serialize)]
struct Exists<'a> {
    exists: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_ref: Option<&'a str>,
}

pub(super) async fn exists(ctx: &Ctx, app: &ExAppName) -> Reply {
    let container = app.names().container;
    match ctx
        .step(ctx.docker.inspect_container(&container, None))
        .await
    {
        Step::Done(info, 200) => {
            // AppAPI removes the image after the container, so it asks which one it was.
            let image_ref = image_ref(&info);
            Reply::json(
                200,
                &Exists {
                    exists: true,
                    image_ref: Some(image_ref),
                },
            )
        }
        // Docker found it but the answer was unreadable: HaRP still says it exists.
        Step::Other(e, 200) => {
            log::warn!("container '{container}' exists but its inspect answer is unreadable: {e}");
            Reply::json(
                200,
                &Exists {
                    exists: true,
                    image_ref: Some(""),
                },
            )
        }
        Step::Status(404, _) => Reply::json(
            200,
            &Exists {
                exists: false,
                image_ref: None,
            },
        ),
        // Q13: HaRP meant 503 here but answered 500.
        Step::Done(_, status) | Step::Status(status, _) => Reply::text(
            503,
            format!("Error communicating with Docker Engine: Status {status}"),
        ),
        Step::Connect(_) => ctx.could_not_connect(),
        Step::Timeout => Reply::text(
            504,
            format!(
                "Timeout communicating with Docker Engine on port {}",
                ctx.port
            ),
        ),
        Step::Other(e, _) => {
            log::warn!("exists '{container}': {e}");
            Reply::text(
                500,
                "An unexpected error occurred while checking container status.",
            )
        }
    }
}

/// `Config.Image`, else the top-level `Image`, else "" (empty strings count as absent).
fn image_ref(info: &ContainerInspectResponse) -> &str {
    info.config
        .as_ref()
        .and_then(|c| c.image.as_deref())
        .filter(|s| !s.is_empty())
        .or(info.image.as_deref())
        .unwrap_or("")
}
