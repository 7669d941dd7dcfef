//! Where a Kubernetes ExApp is reached (HaRP's upstream resolution): its Service by name, else
//! a Service labelled for the app (multi-role apps), else the manual-exposure annotations on
//! its Deployment. Asked on a routing-cache miss and when AppAPI stores a record, never on a
//! cached request.

use super::api::{Api, ApiError};
use super::names::ExAppNames;
use super::objects::{
    EXPOSE_TYPE_ANNOTATION, PART_OF, UPSTREAM_HOST_ANNOTATION, UPSTREAM_PORT_ANNOTATION,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::ListParams;
use std::collections::BTreeMap;

/// An ExApp's address as the gateway dials it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
}

/// Why no address could be had; every variant means "answer 503 and cache nothing".
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    #[error("{0}")]
    Api(ApiError),
    #[error("K8s API error during Service lookup for '{0}'")]
    Lookup(String),
    #[error("{0}")]
    Service(String),
}

/// The app's upstream, `Ok(None)` when it has no Kubernetes objects (a Docker ExApp) or the
/// backend is not configured.
pub async fn resolve(api: &Api, app_id: &str) -> Result<Option<Upstream>, ResolveError> {
    match api.client().await {
        Ok(_) => {}
        Err(ApiError::Disabled | ApiError::NoApiServer | ApiError::NoToken) => return Ok(None),
        Err(e) => return Err(ResolveError::Api(e)),
    }
    let names = ExAppNames::of_app(app_id);
    let ns = api.namespace().to_string();
    let mut api_error = false;
    let by_name = {
        let (ns, name) = (ns.clone(), names.deployment.clone());
        api.call("GET Service", move |c| async move {
            kube::Api::<Service>::namespaced(c, &ns).get(&name).await
        })
        .await
    };
    let mut service = match by_name {
        Ok(svc) => Some(svc),
        Err(e) if e.is_not_found() => None,
        Err(e @ ApiError::Unreachable(_)) => return Err(ResolveError::Api(e)),
        Err(_) => {
            api_error = true;
            None
        }
    };
    if service.is_none() {
        let selector = format!("{PART_OF}={}", names.base);
        let listed = {
            let ns = ns.clone();
            api.call("LIST Services", move |c| async move {
                kube::Api::<Service>::namespaced(c, &ns)
                    .list(&ListParams::default().labels(&selector))
                    .await
            })
            .await
        };
        match listed {
            Ok(list) => service = list.items.into_iter().next(),
            Err(e @ ApiError::Unreachable(_)) => return Err(ResolveError::Api(e)),
            Err(_) => api_error = true,
        }
    }
    let Some(service) = service else {
        if api_error {
            log::warn!(
                "Kubernetes API error while looking up the Service of ExApp {app_id:?}; nothing \
                 cached"
            );
            return Err(ResolveError::Lookup(app_id.to_string()));
        }
        return manual_upstream(api, &names, app_id).await;
    };
    service_upstream(api, &service, &ns, app_id).await
}

async fn service_upstream(
    api: &Api,
    service: &Service,
    ns: &str,
    app_id: &str,
) -> Result<Option<Upstream>, ResolveError> {
    let spec = service.spec.clone().unwrap_or_default();
    let first_port = spec.ports.as_ref().and_then(|p| p.first());
    let port_of = |n: Option<i32>, what: &str| {
        n.and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n != 0)
            .ok_or_else(|| ResolveError::Service(format!("Service has no {what}.")))
    };
    let upstream = match spec.type_.as_deref().unwrap_or("ClusterIP") {
        "NodePort" => Upstream {
            port: port_of(first_port.and_then(|p| p.node_port), "nodePort assigned")?,
            host: node_address(api, "InternalIP", None, None).await?,
        },
        "ClusterIP" => {
            let name = service.metadata.name.clone().unwrap_or_default();
            Upstream {
                port: port_of(first_port.map(|p| p.port), "port defined")?,
                host: match spec.cluster_ip.as_deref() {
                    Some(ip) if !ip.is_empty() && ip != "None" => ip.to_string(),
                    _ => format!("{name}.{ns}.svc"),
                },
            }
        }
        "LoadBalancer" => {
            let port = port_of(first_port.map(|p| p.port), "port defined")?;
            match load_balancer_host(service) {
                Some(host) => Upstream { host, port },
                None => {
                    log::warn!("the LoadBalancer Service of ExApp {app_id:?} has no address yet");
                    return Ok(None);
                }
            }
        }
        other => {
            log::warn!("ExApp {app_id:?}: Service type {other:?} cannot be routed to");
            return Ok(None);
        }
    };
    log::info!(
        "Resolved Kubernetes upstream for {app_id:?}: {}:{}",
        upstream.host,
        upstream.port
    );
    Ok(Some(upstream))
}

/// The first ingress address of a LoadBalancer Service.
pub fn load_balancer_host(service: &Service) -> Option<String> {
    let ingress = service
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .first()?;
    ingress.ip.clone().or_else(|| ingress.hostname.clone())
}

fn manual_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    deployment: &str,
) -> Option<Upstream> {
    let annotations = annotations?;
    if annotations.get(EXPOSE_TYPE_ANNOTATION).map(String::as_str) != Some("manual") {
        return None;
    }
    let host = annotations
        .get(UPSTREAM_HOST_ANNOTATION)
        .filter(|h| !h.is_empty());
    let port = annotations.get(UPSTREAM_PORT_ANNOTATION);
    match (host, port.and_then(|p| p.trim().parse::<u16>().ok())) {
        (Some(host), Some(port)) if port != 0 => Some(Upstream {
            host: host.clone(),
            port,
        }),
        _ => {
            log::warn!(
                "Deployment {deployment:?} is exposed manually but its upstream-host / \
                 upstream-port annotations are missing or invalid"
            );
            None
        }
    }
}

/// A manually exposed app keeps its address in annotations on its Deployment (or on the
/// Deployment of the role that was exposed).
async fn manual_upstream(
    api: &Api,
    names: &ExAppNames,
    app_id: &str,
) -> Result<Option<Upstream>, ResolveError> {
    let ns = api.namespace().to_string();
    let got = {
        let (ns, name) = (ns.clone(), names.deployment.clone());
        api.call("GET Deployment", move |c| async move {
            kube::Api::<Deployment>::namespaced(c, &ns).get(&name).await
        })
        .await
    };
    match got {
        Ok(d) => {
            if let Some(up) = manual_annotations(d.metadata.annotations.as_ref(), &names.deployment)
            {
                return Ok(Some(up));
            }
        }
        Err(e) if e.is_not_found() => {}
        Err(e @ ApiError::Unreachable(_)) => return Err(ResolveError::Api(e)),
        Err(e) => {
            log::warn!(
                "Kubernetes API error reading Deployment {:?} for its manual upstream: {e}",
                names.deployment
            );
            return Ok(None);
        }
    }
    let selector = format!("{PART_OF}={}", names.base);
    let listed = api
        .call("LIST Deployments", move |c| async move {
            kube::Api::<Deployment>::namespaced(c, &ns)
                .list(&ListParams::default().labels(&selector))
                .await
        })
        .await;
    match listed {
        Ok(list) => Ok(list
            .items
            .iter()
            .find_map(|d| {
                let name = d.metadata.name.clone().unwrap_or_default();
                manual_annotations(d.metadata.annotations.as_ref(), &name)
            })
            .inspect(|up| {
                log::info!(
                    "Resolved manual upstream for {app_id:?}: {}:{}",
                    up.host,
                    up.port
                );
            })),
        Err(e @ ApiError::Unreachable(_)) => Err(ResolveError::Api(e)),
        Err(_) => Ok(None),
    }
}

/// A node's address for a NodePort Service: Ready nodes first, the preferred address type, then
/// the other IP type, then the host name.
pub async fn node_address(
    api: &Api,
    preferred: &str,
    node_name: Option<&str>,
    label_selector: Option<&str>,
) -> Result<String, ResolveError> {
    let params = match label_selector {
        Some(selector) => ListParams::default().labels(selector),
        None => ListParams::default(),
    };
    let nodes = api
        .call("LIST Nodes", move |c| async move {
            kube::Api::<Node>::all(c).list(&params).await
        })
        .await
        .map_err(|e| match e {
            ApiError::Status { code, message } => ResolveError::Service(format!(
                "Failed to list K8s nodes: Status {code}, {message}"
            )),
            other => ResolveError::Api(other),
        })?;
    pick_node_address(&nodes.items, preferred, node_name).ok_or_else(|| {
        ResolveError::Service(
            "Could not determine a node address (no InternalIP/ExternalIP/Hostname).".to_string(),
        )
    })
}

/// The address choice of [`node_address`], without I/O.
pub fn pick_node_address(
    nodes: &[Node],
    preferred: &str,
    node_name: Option<&str>,
) -> Option<String> {
    let named: Vec<&Node> = nodes
        .iter()
        .filter(|n| node_name.is_none_or(|want| n.metadata.name.as_deref() == Some(want)))
        .collect();
    let is_ready = |n: &&&Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let ready: Vec<&&Node> = named.iter().filter(is_ready).collect();
    let candidates: Vec<&Node> = if ready.is_empty() {
        named.clone()
    } else {
        ready.into_iter().copied().collect()
    };
    let fallback = if preferred == "InternalIP" {
        "ExternalIP"
    } else {
        "InternalIP"
    };
    candidates.iter().find_map(|node| {
        [preferred, fallback, "Hostname"].iter().find_map(|kind| {
            node.status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == *kind && !a.address.is_empty())
                .map(|a| a.address.clone())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ready: bool, addresses: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
                "addresses": addresses
            }
        }))
        .unwrap()
    }

    #[test]
    fn node_address_order() {
        let nodes = [
            node(
                "a",
                false,
                json!([{"type": "InternalIP", "address": "10.0.0.1"}]),
            ),
            node(
                "b",
                true,
                json!([{"type": "Hostname", "address": "b"}, {"type": "ExternalIP", "address": "1.2.3.4"}]),
            ),
        ];
        assert_eq!(
            pick_node_address(&nodes, "InternalIP", None).as_deref(),
            Some("1.2.3.4")
        );
        assert_eq!(
            pick_node_address(&nodes, "InternalIP", Some("a")).as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(pick_node_address(&nodes, "InternalIP", Some("c")), None);
    }

    #[test]
    fn manual_annotations_need_host_and_port() {
        let mut a = BTreeMap::new();
        a.insert(EXPOSE_TYPE_ANNOTATION.to_string(), "manual".to_string());
        a.insert(UPSTREAM_HOST_ANNOTATION.to_string(), "10.1.1.1".to_string());
        assert_eq!(manual_annotations(Some(&a), "d"), None);
        a.insert(UPSTREAM_PORT_ANNOTATION.to_string(), "8080".to_string());
        assert_eq!(
            manual_annotations(Some(&a), "d"),
            Some(Upstream {
                host: "10.1.1.1".into(),
                port: 8080
            })
        );
        a.insert(EXPOSE_TYPE_ANNOTATION.to_string(), "clusterip".to_string());
        assert_eq!(manual_annotations(Some(&a), "d"), None);
    }
}
