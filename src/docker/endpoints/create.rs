//! `create` (§8.4): make sure the ExApp's volume exists, then create the container. No image
//! pull (AppAPI pulls through the passthrough first) and no start (AppAPI calls `start`).

use super::{timeout, Ctx, Step};
use crate::docker::payload::{ComputeDevice, CreatePayload};
use crate::docker::Reply;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, DeviceRequest, EndpointSettings, HostConfig, Mount,
    MountType, NetworkingConfig, RestartPolicy, VolumeCreateRequest,
};
use bollard::query_parameters::CreateContainerOptions;
use serde::Serialize;
use std::collections::HashMap;

#[derive(Serialize)]
struct Created<'a> {
    id: &'a str,
    name: &'a str,
}

pub(super) async fn create(ctx: &Ctx, p: &CreatePayload) -> Reply {
    let names = p.app.names();
    if let Err(reply) = ensure_volume(ctx, &names.volume).await {
        return reply;
    }
    let options = CreateContainerOptions {
        name: Some(names.container.clone()),
        ..Default::default()
    };
    let container = &names.container;
    match ctx
        .step(ctx.docker.create_container(Some(options), body(p)))
        .await
    {
        Step::Done(created, 201) => Reply::json(
            201,
            &Created {
                id: &created.id,
                name: container,
            },
        ),
        Step::Status(409, _) => Reply::text(
            409,
            format!("Container with name '{container}' already exists."),
        ),
        Step::Done(_, status) | Step::Status(status, _) => Reply::text(
            503,
            format!("Error creating container '{container}': Status {status}"),
        ),
        Step::Connect(_) => ctx.could_not_connect(),
        Step::Timeout => timeout("container creation"),
        Step::Other(e, _) => {
            log::warn!("create '{container}': {e}");
            Reply::text(
                500,
                "An unexpected error occurred during container creation.",
            )
        }
    }
}

/// `GET /volumes/<v>`; on 404 `POST /volumes/create`, which must answer 201.
async fn ensure_volume(ctx: &Ctx, volume: &str) -> Result<(), Reply> {
    let unexpected = |e: String| {
        log::warn!("volume '{volume}': {e}");
        Reply::text(500, "Unexpected error during volume management.")
    };
    match ctx.step(ctx.docker.inspect_volume(volume)).await {
        // The body is not needed: 200 means it exists.
        Step::Done(_, 200) | Step::Other(_, 200) => return Ok(()),
        Step::Status(404, _) => {}
        Step::Done(_, status) | Step::Status(status, _) => {
            return Err(Reply::text(
                503,
                format!("Error inspecting volume '{volume}': Status {status}"),
            ))
        }
        Step::Connect(_) => return Err(ctx.could_not_connect()),
        Step::Timeout => return Err(timeout("volume operation")),
        Step::Other(e, _) => return Err(unexpected(e)),
    }
    let request = VolumeCreateRequest {
        name: Some(volume.to_string()),
        ..Default::default()
    };
    match ctx.step(ctx.docker.create_volume(request)).await {
        Step::Done(_, 201) | Step::Other(_, 201) => Ok(()),
        Step::Done(_, status) | Step::Status(status, _) => Err(Reply::text(
            503,
            format!("Failed to create volume '{volume}': Status {status}"),
        )),
        Step::Connect(_) => Err(ctx.could_not_connect()),
        Step::Timeout => Err(timeout("volume operation")),
        Step::Other(e, _) => Err(unexpected(e)),
    }
}

/// The container as HaRP describes it to Docker (§8.4).
fn body(p: &CreatePayload) -> ContainerCreateBody {
    let names = p.app.names();
    // The ExApp's persistent storage (APP_PERSISTENT_STORAGE) first, then the admin's binds.
    let mut mounts = vec![Mount {
        typ: Some(MountType::VOLUME),
        source: Some(names.volume.clone()),
        target: Some(format!("/{}", names.volume)),
        read_only: Some(false),
        ..Default::default()
    }];
    mounts.extend(p.mount_points.iter().map(|m| Mount {
        typ: Some(MountType::BIND),
        source: Some(m.source.clone()),
        target: Some(m.target.clone()),
        read_only: Some(m.read_only),
        ..Default::default()
    }));
    let mut host = HostConfig {
        network_mode: Some(p.network_mode.clone()),
        mounts: Some(mounts),
        restart_policy: Some(RestartPolicy {
            name: Some(p.restart_policy),
            ..Default::default()
        }),
        memory: p.memory,
        nano_cpus: p.nano_cpus,
        ..Default::default()
    };
    match p.compute_device {
        ComputeDevice::Cpu => {}
        // Every NVIDIA GPU, with the capabilities CUDA needs.
        ComputeDevice::Cuda => {
            host.device_requests = Some(vec![DeviceRequest {
                driver: Some("nvidia".into()),
                count: Some(-1),
                capabilities: Some(vec![vec!["compute".into(), "utility".into()]]),
                ..Default::default()
            }]);
        }
        ComputeDevice::Rocm => {
            host.devices = Some(
                ["/dev/kfd", "/dev/dri"]
                    .iter()
                    .map(|d| DeviceMapping {
                        path_on_host: Some(d.to_string()),
                        path_in_container: Some(d.to_string()),
                        cgroup_permissions: Some("rwm".into()),
                    })
                    .collect(),
            );
        }
    }
    // On a user-defined network the ExApp is reachable under its app id.
    let networking_config =
        (!matches!(p.network_mode.as_str(), "host" | "bridge")).then(|| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                p.network_mode.clone(),
                EndpointSettings {
                    aliases: Some(vec![p.app.name.clone()]),
                    ..Default::default()
                },
            )])),
        });
    ContainerCreateBody {
        image: Some(p.image_id.clone()),
        hostname: Some(p.app.name.clone()),
        env: Some(p.environment_variables.clone()),
        host_config: Some(host),
        networking_config,
        ..Default::default()
    }
}
