//! The eight `/k8s/exapp/*` operations with HaRP's statuses, bodies and texts (AppAPI treats
//! every non-2xx answer as an error string, so the 2xx ones must match exactly).

use super::api::{Api, ApiError};
use super::names::ExAppNames;
use super::objects::{
    self, EXPOSE_TYPE_ANNOTATION, MANAGED_BY, UPSTREAM_HOST_ANNOTATION, UPSTREAM_PORT_ANNOTATION,
};
use super::payload::{self, CreatePayload, ExAppName, ExposePayload, ExposeType, RemovePayload};
use super::readiness::{self, Observation, StartStatus};
use super::upstream::{self, ResolveError};
use crate::reply::Reply;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

/// How long `wait_for_start` waits, as HaRP (shortened in tests through the settings).
#[derive(Debug, Clone, Copy)]
pub struct WaitBudgets {
    pub image_pull: Duration,
    pub start: Duration,
    pub poll: Duration,
}

fn invalid(e: crate::pydantic::Invalid) -> Reply {
    Reply::text(400, format!("Payload validation error: {e}"))
}

/// 503 with HaRP's text for a failed call; `what` names the object for API statuses.
fn unavailable(e: &ApiError, what: impl FnOnce(u16) -> String) -> Reply {
    Reply::text(503, e.reply_text(what))
}

fn deployments(c: kube::Client, ns: &str) -> kube::Api<Deployment> {
    kube::Api::namespaced(c, ns)
}

pub async fn exists(api: &Api, body: &Value) -> Reply {
    let app = match ExAppName::parse(body) {
        Ok(app) => app,
        Err(e) => return invalid(e),
    };
    let name = app.names().deployment;
    let ns = api.namespace().to_string();
    let n = name.clone();
    match api
        .call("GET Deployment", move |c| async move {
            deployments(c, &ns).get(&n).await
        })
        .await
    {
        Ok(_) => Reply::json(200, &json!({"exists": true})),
        Err(e) if e.is_not_found() => Reply::json(200, &json!({"exists": false})),
        Err(e) => {
            log::error!("Error checking deployment {name:?}: {e}");
            unavailable(&e, |code| {
                format!("Error checking deployment '{name}': Status {code}")
            })
        }
    }
}

pub async fn create(api: &Api, body: &Value) -> Reply {
    let payload = match CreatePayload::parse(body) {
        Ok(p) => p,
        Err(e) => return invalid(e),
    };
    if payload.mount_points > 0 {
        log::warn!(
            "Kubernetes backend ignores the {} mount point(s) AppAPI sent for ExApp {:?}",
            payload.mount_points,
            payload.app.name
        );
    }
    let names = payload.app.names();
    log::info!(
        "Creating Kubernetes objects for ExApp {:?} in namespace {:?}",
        payload.app.name,
        api.namespace()
    );
    let pvc = objects::data_volume(&names, api.settings());
    let ns = api.namespace().to_string();
    let created = {
        let ns = ns.clone();
        api.call("POST PersistentVolumeClaim", move |c| async move {
            kube::Api::<PersistentVolumeClaim>::namespaced(c, &ns)
                .create(&PostParams::default(), &pvc)
                .await
        })
        .await
    };
    match created {
        Ok(_) => log::info!("PVC {:?} created", names.pvc),
        Err(e) if e.code() == Some(409) => log::info!("PVC {:?} already exists", names.pvc),
        Err(e) => {
            log::error!("Failed to create PVC {:?}: {e}", names.pvc);
            let pvc = names.pvc.clone();
            return unavailable(&e, |code| {
                format!("Failed to create PVC '{pvc}': Status {code}")
            });
        }
    }
    let deployment = objects::deployment(&payload, api.settings());
    let name = names.deployment.clone();
    match api
        .call("POST Deployment", move |c| async move {
            deployments(c, &ns)
                .create(&PostParams::default(), &deployment)
                .await
        })
        .await
    {
        Ok(_) => {
            log::info!("Deployment {name:?} created");
            Reply::json(201, &json!({ "name": name }))
        }
        Err(e) if e.code() == Some(409) => {
            Reply::text(409, format!("Deployment '{name}' already exists."))
        }
        Err(e) => {
            log::error!("Error creating deployment {name:?}: {e}");
            unavailable(&e, |code| {
                format!("Error creating deployment '{name}': Status {code}")
            })
        }
    }
}

/// `start` (replicas 1) and `stop` (replicas 0), with a strategic-merge patch as HaRP.
pub async fn scale(api: &Api, body: &Value, replicas: i32) -> Reply {
    let app = match ExAppName::parse(body) {
        Ok(app) => app,
        Err(e) => return invalid(e),
    };
    let name = app.names().deployment;
    let ns = api.namespace().to_string();
    let n = name.clone();
    let patch = json!({"spec": {"replicas": replicas}});
    let (verb, done) = if replicas > 0 {
        ("starting", "scaled to 1")
    } else {
        ("stopping", "scaled to 0")
    };
    match api
        .call("PATCH Deployment", move |c| async move {
            deployments(c, &ns)
                .patch(&n, &PatchParams::default(), &Patch::Strategic(patch))
                .await
        })
        .await
    {
        Ok(_) => {
            log::info!("Deployment {name:?} {done}");
            Reply::no_content()
        }
        Err(e) if e.is_not_found() => Reply::text(404, format!("Deployment '{name}' not found.")),
        Err(e) => {
            log::error!("Error {verb} deployment {name:?}: {e}");
            unavailable(&e, |code| {
                format!("Error {verb} deployment '{name}': Status {code}")
            })
        }
    }
}

pub async fn wait_for_start(api: &Api, body: &Value, budgets: WaitBudgets) -> Reply {
    let app = match ExAppName::parse(body) {
        Ok(app) => app,
        Err(e) => return invalid(e),
    };
    let name = app.names().deployment;
    log::info!(
        "Waiting for the pod of Deployment {name:?} to become Ready (image pull up to {}s, \
         then start-up up to {}s)",
        budgets.image_pull.as_secs(),
        budgets.start.as_secs()
    );
    let started = Instant::now();
    let mut pulled_at: Option<Instant> = None;
    let mut last: Option<Observation> = None;
    loop {
        match pulled_at {
            Some(at) if at.elapsed() > budgets.start => {
                log::warn!(
                    "Deployment {name:?} did not become Ready within {}s after its image was \
                     pulled",
                    budgets.start.as_secs()
                );
                break;
            }
            None if started.elapsed() > budgets.image_pull => {
                log::warn!(
                    "Deployment {name:?}: image pull did not finish within {}s",
                    budgets.image_pull.as_secs()
                );
                break;
            }
            _ => {}
        }
        let ns = api.namespace().to_string();
        let selector = format!("app={name}");
        let pods = match api
            .call("LIST Pods", move |c| async move {
                kube::Api::<Pod>::namespaced(c, &ns)
                    .list(&ListParams::default().labels(&selector))
                    .await
            })
            .await
        {
            Ok(list) => list.items,
            Err(e) => {
                log::error!("Error listing pods for {name:?}: {e}");
                return unavailable(&e, |code| {
                    format!("Error listing pods for deployment '{name}': Status {code}")
                });
            }
        };
        let observation = readiness::observe(&pods);
        match &observation {
            Observation::Done(status) => {
                if status.health == "image_error" {
                    log::error!(
                        "Deployment {name:?}: image pull error {} {}",
                        status.status,
                        status.message.as_deref().unwrap_or("")
                    );
                } else {
                    log::info!("Deployment {name:?}: {} ({})", status.status, status.health);
                }
                return Reply::json(200, status);
            }
            Observation::Waiting { pulling: false, .. } if pulled_at.is_none() => {
                log::info!(
                    "Deployment {name:?}: image pulled after {}s; start-up countdown begins",
                    started.elapsed().as_secs()
                );
                pulled_at = Some(Instant::now());
            }
            Observation::Waiting { .. } => {}
        }
        last = Some(observation);
        tokio::time::sleep(budgets.poll).await;
    }
    let status: StartStatus = readiness::timed_out(last.as_ref());
    Reply::json(200, &status)
}

pub async fn remove(api: &Api, body: &Value) -> Reply {
    let payload = match RemovePayload::parse(body) {
        Ok(p) => p,
        Err(e) => return invalid(e),
    };
    let names = payload.app.names();
    log::info!(
        "Removing Kubernetes objects of {:?} (remove_data={})",
        names.deployment,
        payload.remove_data
    );
    let ns = api.namespace().to_string();
    let gone = |r: &Result<(), ApiError>| match r {
        Ok(()) => true,
        Err(e) => e.is_not_found(),
    };
    let deleted = {
        let (ns, n) = (ns.clone(), names.deployment.clone());
        api.call("DELETE Deployment", move |c| async move {
            deployments(c, &ns)
                .delete(&n, &DeleteParams::default())
                .await
                .map(|_| ())
        })
        .await
    };
    if !gone(&deleted) {
        let e = deleted.expect_err("not gone means an error");
        log::error!("Error removing deployment {:?}: {e}", names.deployment);
        let n = names.deployment.clone();
        return unavailable(&e, |code| {
            format!("Error removing deployment '{n}': Status {code}")
        });
    }
    if payload.remove_data {
        let deleted = {
            let (ns, n) = (ns.clone(), names.pvc.clone());
            api.call("DELETE PersistentVolumeClaim", move |c| async move {
                kube::Api::<PersistentVolumeClaim>::namespaced(c, &ns)
                    .delete(&n, &DeleteParams::default())
                    .await
                    .map(|_| ())
            })
            .await
        };
        if !gone(&deleted) {
            let e = deleted.expect_err("not gone means an error");
            log::error!("Error removing PVC {:?}: {e}", names.pvc);
            let n = names.pvc.clone();
            return unavailable(&e, |code| {
                format!("Error removing PVC '{n}': Status {code}")
            });
        }
    }
    remove_own_service(api, &names, &ns).await
}

/// Deletes the role's Service only when harp (or HaRP) made it: one an operator made for a
/// manual exposure stays.
async fn remove_own_service(api: &Api, names: &ExAppNames, ns: &str) -> Reply {
    let name = names.deployment.clone();
    let found = {
        let (ns, n) = (ns.to_string(), name.clone());
        api.call("GET Service", move |c| async move {
            kube::Api::<Service>::namespaced(c, &ns).get(&n).await
        })
        .await
    };
    match found {
        Ok(svc) => {
            let ours = svc
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY))
                .is_some_and(|v| v == "harp");
            if !ours {
                log::info!("Keeping Service {name:?}: it is not managed by harp");
                return Reply::no_content();
            }
            let (ns, n) = (ns.to_string(), name.clone());
            let deleted = api
                .call("DELETE Service", move |c| async move {
                    kube::Api::<Service>::namespaced(c, &ns)
                        .delete(&n, &DeleteParams::default())
                        .await
                        .map(|_| ())
                })
                .await;
            match deleted {
                Ok(()) => Reply::no_content(),
                Err(e) if e.is_not_found() => Reply::no_content(),
                Err(e) => {
                    log::error!("Error removing Service {name:?}: {e}");
                    unavailable(&e, |code| {
                        format!("Error removing Service '{name}': Status {code}")
                    })
                }
            }
        }
        Err(e) if e.is_not_found() => Reply::no_content(),
        Err(e) => {
            log::warn!("Error checking Service {name:?}, not deleting it: {e}");
            Reply::no_content()
        }
    }
}

pub fn install_certificates(body: &Value) -> Reply {
    // Pods get no FRP certificates and the system CA bundle is the image's business: HaRP
    // validates the body and does nothing, and so does harp.
    match payload::parse_certificates(body) {
        Ok(()) => Reply::no_content(),
        Err(e) => invalid(e),
    }
}

/// What `expose` decided; the caller binds it to the ExApp's record and answers.
#[derive(Debug, Clone, Serialize)]
pub struct Exposed {
    #[serde(rename = "appId")]
    pub app_id: String,
    pub host: String,
    pub port: u16,
    #[serde(rename = "exposeType")]
    pub expose_type: &'static str,
    #[serde(rename = "serviceName")]
    pub service_name: String,
    pub namespace: String,
}

pub async fn expose(api: &Api, body: &Value) -> Result<Exposed, Reply> {
    let payload = ExposePayload::parse(body).map_err(invalid)?;
    let names = payload.app.names();
    let service_name = names.deployment.clone();
    let (host, port) = match payload.expose_type.service_type() {
        None => {
            let host = payload.upstream_host.clone().unwrap_or_default();
            let port = payload.upstream_port.unwrap_or(payload.port);
            annotate_manual(api, &names.deployment, &host, port).await;
            (host, port)
        }
        Some(service_type) => expose_service(api, &payload, service_type).await?,
    };
    let app_id = payload.app.name.to_lowercase();
    log::info!(
        "Expose {app_id:?} ({}): upstream {host}:{port}",
        payload.expose_type.as_str()
    );
    Ok(Exposed {
        app_id,
        host,
        port,
        expose_type: payload.expose_type.as_str(),
        service_name,
        namespace: api.namespace().to_string(),
    })
}

/// Keeps a manual exposure's address on the Deployment, so a restarted harp (or another
/// replica) finds it. Best effort, as in HaRP: the answer does not depend on it.
async fn annotate_manual(api: &Api, deployment: &str, host: &str, port: u16) {
    if api.client().await.is_err() {
        return;
    }
    let patch = json!({"metadata": {"annotations": {
        EXPOSE_TYPE_ANNOTATION: "manual",
        UPSTREAM_HOST_ANNOTATION: host,
        UPSTREAM_PORT_ANNOTATION: port.to_string(),
    }}});
    let ns = api.namespace().to_string();
    let n = deployment.to_string();
    if let Err(e) = api
        .call("PATCH Deployment annotations", move |c| async move {
            deployments(c, &ns)
                .patch(&n, &PatchParams::default(), &Patch::Strategic(patch))
                .await
        })
        .await
    {
        log::warn!("Could not annotate Deployment {deployment:?} with its manual upstream: {e}");
    }
}

async fn expose_service(
    api: &Api,
    payload: &ExposePayload,
    service_type: &str,
) -> Result<(String, u16), Reply> {
    api.client()
        .await
        .map_err(|e| Reply::text(503, e.to_string()))?;
    let name = payload.app.names().deployment;
    let ns = api.namespace().to_string();
    let service = objects::service(payload, service_type);
    let created = {
        let ns = ns.clone();
        api.call("POST Service", move |c| async move {
            kube::Api::<Service>::namespaced(c, &ns)
                .create(&PostParams::default(), &service)
                .await
        })
        .await
    };
    match created {
        Ok(_) => {}
        Err(e) if e.code() == Some(409) => {}
        Err(e) => {
            log::error!("Failed to create Service {name:?}: {e}");
            return Err(unavailable(&e, |code| {
                format!("Failed to create Service '{name}': Status {code}")
            }));
        }
    }
    let svc = read_service(api, &name).await?;
    let spec = svc.spec.clone().unwrap_or_default();
    let first = spec.ports.as_ref().and_then(|p| p.first()).cloned();
    let service_port = || {
        first
            .as_ref()
            .and_then(|p| u16::try_from(p.port).ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| Reply::text(503, "Service has no port defined."))
    };
    let resolve_err = |e: ResolveError| Reply::text(503, e.to_string());
    match payload.expose_type {
        ExposeType::NodePort => {
            let port = first
                .as_ref()
                .and_then(|p| p.node_port)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| Reply::text(503, "Service has no nodePort assigned."))?;
            let host = match &payload.upstream_host {
                Some(host) => host.clone(),
                None => upstream::node_address(
                    api,
                    payload.node_address_type,
                    payload.node_name.as_deref(),
                    payload.node_label_selector.as_deref(),
                )
                .await
                .map_err(resolve_err)?,
            };
            Ok((host, port))
        }
        ExposeType::ClusterIp => {
            let port = service_port()?;
            let host = match (&payload.upstream_host, spec.cluster_ip.as_deref()) {
                (Some(host), _) => host.clone(),
                (None, Some(ip)) if !ip.is_empty() && ip != "None" => ip.to_string(),
                (None, _) => format!("{name}.{ns}.svc"),
            };
            Ok((host, port))
        }
        ExposeType::LoadBalancer => {
            let port = service_port()?;
            let host = match payload
                .upstream_host
                .clone()
                .or_else(|| upstream::load_balancer_host(&svc))
            {
                Some(host) => host,
                None => wait_for_load_balancer(api, &name, payload).await?,
            };
            Ok((host, port))
        }
        ExposeType::Manual => unreachable!("manual exposure creates no Service"),
    }
}

async fn read_service(api: &Api, name: &str) -> Result<Service, Reply> {
    let (ns, n) = (api.namespace().to_string(), name.to_string());
    api.call("GET Service", move |c| async move {
        kube::Api::<Service>::namespaced(c, &ns).get(&n).await
    })
    .await
    .map_err(|e| {
        log::error!("Failed to read Service {name:?}: {e}");
        unavailable(&e, |code| {
            format!("Failed to read Service '{name}': Status {code}")
        })
    })
}

async fn wait_for_load_balancer(
    api: &Api,
    name: &str,
    payload: &ExposePayload,
) -> Result<String, Reply> {
    let deadline = Instant::now() + payload.wait_timeout;
    loop {
        let svc = read_service(api, name).await?;
        if let Some(host) = upstream::load_balancer_host(&svc) {
            return Ok(host);
        }
        if Instant::now() >= deadline {
            return Err(Reply::text(
                503,
                format!("Timed out waiting for LoadBalancer address for Service '{name}'"),
            ));
        }
        tokio::time::sleep(payload.wait_interval).await;
    }
}
