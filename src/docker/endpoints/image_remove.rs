//! `image_remove` (§8.9): inspect the image for its size, then delete it (no force, no
//! noprune). "Already gone" is success; an image still used by a container is reported, not
//! forced.

use super::{timeout, Ctx, Step};
use crate::docker::names::quote_all;
use crate::docker::payload::ImageRemovePayload;
use crate::docker::Reply;
use bollard::query_parameters::RemoveImageOptions;
use serde::Serialize;

#[derive(Serialize)]
struct Removed {
    deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_freed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

fn not_found() -> Reply {
    Reply::json(
        200,
        &Removed {
            deleted: true,
            bytes_freed: Some(0),
            reason: Some("not_found"),
        },
    )
}

pub(super) async fn image_remove(ctx: &Ctx, p: &ImageRemovePayload) -> Reply {
    let image_ref = &p.image_ref;
    // HaRP's `quote(ref, safe="")`: `repo/img:1` → `/images/repo%2Fimg%3A1` (Q16 checked the
    // grammar already; Docker decodes the path).
    let quoted = quote_all(image_ref);
    // Best effort: any failure but 404, connect and timeout just means "size unknown".
    let size = match ctx.step(ctx.docker.inspect_image(&quoted)).await {
        Step::Done(info, 200) => info.size.unwrap_or(0),
        Step::Status(404, _) => return not_found(),
        Step::Connect(_) => return ctx.could_not_connect(),
        Step::Timeout => return timeout("image inspect"),
        Step::Done(_, status) | Step::Status(status, _) => {
            log::warn!("image inspect '{image_ref}': status {status}; deleting anyway");
            0
        }
        Step::Other(e, _) => {
            log::warn!("image inspect '{image_ref}': {e}; deleting anyway");
            0
        }
    };
    let options = RemoveImageOptions::default();
    match ctx
        .step(ctx.docker.remove_image(&quoted, Some(options), None))
        .await
    {
        Step::Done(items, 200) => {
            // Only an item with `Deleted` frees space; a pure untag frees nothing.
            let deleted = items.iter().any(|i| i.deleted.is_some());
            Reply::json(
                200,
                &Removed {
                    deleted: true,
                    bytes_freed: Some(if deleted { size } else { 0 }),
                    reason: None,
                },
            )
        }
        // Removed, but the answer was unreadable: HaRP counts no bytes.
        Step::Other(e, 200) => {
            log::warn!("image remove '{image_ref}': unreadable answer: {e}");
            Reply::json(
                200,
                &Removed {
                    deleted: true,
                    bytes_freed: Some(0),
                    reason: None,
                },
            )
        }
        Step::Status(404, _) => not_found(),
        Step::Status(409, _) => Reply::json(
            200,
            &Removed {
                deleted: false,
                bytes_freed: None,
                reason: Some("in_use"),
            },
        ),
        Step::Done(_, status) | Step::Status(status, _) => Reply::text(
            503,
            format!("Error removing image '{image_ref}' via Docker Engine: Status {status}"),
        ),
        Step::Connect(_) => ctx.could_not_connect(),
        Step::Timeout => timeout("image removal"),
        Step::Other(e, _) => {
            log::warn!("image remove '{image_ref}': {e}");
            Reply::text(500, "An unexpected error occurred during image removal.")
        }
    }
}
