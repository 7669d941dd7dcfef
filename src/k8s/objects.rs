//! The objects harp creates, as typed k8s-openapi values, shaped as HaRP shapes them so either
//! gateway can manage what the other made: one PVC per app, one Deployment per role (created at
//! zero replicas), one Service per exposed role.

use super::names::ExAppNames;
use super::payload::{ComputeDevice, CreatePayload, ExposePayload, Limit};
use crate::config::K8sSettings;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, HostAlias, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, ResourceRequirements, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const PART_OF: &str = "app.kubernetes.io/part-of";
/// Annotations that keep a manual exposure's upstream on the Deployment (HaRP's names).
pub const EXPOSE_TYPE_ANNOTATION: &str = "appapi.nextcloud.com/expose-type";
pub const UPSTREAM_HOST_ANNOTATION: &str = "appapi.nextcloud.com/upstream-host";
pub const UPSTREAM_PORT_ANNOTATION: &str = "appapi.nextcloud.com/upstream-port";

type Labels = BTreeMap<String, String>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// The labels every object of one role carries; `app` is the Deployment's selector.
fn role_labels(names: &ExAppNames, instance_id: &str) -> Labels {
    let mut l = labels(&[
        ("app", &names.deployment),
        ("app.kubernetes.io/name", &names.deployment),
        (PART_OF, &names.base),
        ("app.kubernetes.io/component", "exapp"),
    ]);
    if !instance_id.is_empty() {
        l.insert("app.kubernetes.io/instance".into(), instance_id.into());
    }
    if let Some(role) = &names.role {
        l.insert("app.kubernetes.io/role".into(), role.clone());
    }
    l
}

/// The app's data volume, shared by all its roles.
pub fn data_volume(names: &ExAppNames, settings: &K8sSettings) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(names.pvc.clone()),
            labels: Some(labels(&[
                ("app.kubernetes.io/name", &names.base),
                (PART_OF, &names.base),
                ("app.kubernetes.io/component", "exapp-data"),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(settings.default_storage_size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            storage_class_name: settings.storage_class.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// Requests equal to limits: memory bytes to whole Mi, nanoCPUs to whole millicores (both
/// rounded up, as HaRP), one GPU for cuda or rocm.
pub fn resources(payload: &CreatePayload) -> Option<ResourceRequirements> {
    let mut limits = BTreeMap::new();
    match &payload.memory {
        Some(Limit::Units(bytes)) => {
            let mebibytes = bytes.div_ceil(1024 * 1024);
            limits.insert("memory".to_string(), Quantity(format!("{mebibytes}Mi")));
        }
        Some(Limit::Quantity(q)) => {
            limits.insert("memory".to_string(), Quantity(q.clone()));
        }
        None => {}
    }
    match &payload.cpu {
        Some(Limit::Units(nano)) => {
            let milli = nano.div_ceil(1_000_000).max(1);
            limits.insert("cpu".to_string(), Quantity(format!("{milli}m")));
        }
        Some(Limit::Quantity(q)) => {
            limits.insert("cpu".to_string(), Quantity(q.clone()));
        }
        None => {}
    }
    let requests = limits.clone();
    match payload.compute_device {
        ComputeDevice::Cuda => {
            limits.insert("nvidia.com/gpu".into(), Quantity("1".into()));
        }
        ComputeDevice::Rocm => {
            limits.insert("amd.com/gpu".into(), Quantity("1".into()));
        }
        ComputeDevice::Cpu => {}
    }
    if limits.is_empty() {
        return None;
    }
    Some(ResourceRequirements {
        limits: Some(limits),
        requests: (!requests.is_empty()).then_some(requests),
        ..ResourceRequirements::default()
    })
}

/// One role's Deployment, at zero replicas until `start`.
pub fn deployment(payload: &CreatePayload, settings: &K8sSettings) -> Deployment {
    let names = payload.app.names();
    let labels = role_labels(&names, &payload.app.instance_id);
    let container = Container {
        name: "app".into(),
        image: Some(payload.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        env: Some(
            payload
                .env
                .iter()
                .map(|(name, value)| EnvVar {
                    name: name.clone(),
                    value: Some(value.clone()),
                    ..EnvVar::default()
                })
                .collect(),
        ),
        resources: resources(payload),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: names.mount_path.clone(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let host_aliases: Vec<HostAlias> = settings
        .host_aliases
        .iter()
        .map(|a| HostAlias {
            ip: a.ip.to_string(),
            hostnames: Some(a.hostnames.clone()),
        })
        .collect();
    Deployment {
        metadata: ObjectMeta {
            name: Some(names.deployment.clone()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(0),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "app".to_string(),
                    names.deployment.clone(),
                )])),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "data".into(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: names.pvc.clone(),
                            ..PersistentVolumeClaimVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    host_aliases: (!host_aliases.is_empty()).then_some(host_aliases),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The Service `expose` creates for one role, labelled as harp's so `remove` may delete it.
pub fn service(payload: &ExposePayload, service_type: &str) -> Service {
    let names = payload.app.names();
    let mut labels = role_labels(&names, &payload.app.instance_id);
    labels.insert(MANAGED_BY.into(), "harp".into());
    for (key, value) in &payload.service_labels {
        labels.insert(key.clone(), value.clone());
    }
    // harp's own labels win over the caller's: they are how harp finds and removes the Service.
    labels.insert("app".into(), names.deployment.clone());
    labels.insert(MANAGED_BY.into(), "harp".into());
    labels.insert(PART_OF.into(), names.base.clone());
    let annotations: BTreeMap<String, String> =
        payload.service_annotations.iter().cloned().collect();
    let node_port = match service_type {
        "NodePort" => payload.node_port.map(i32::from),
        _ => None,
    };
    let external_traffic_policy = match service_type {
        "NodePort" | "LoadBalancer" => payload.external_traffic_policy.map(str::to_string),
        _ => None,
    };
    let load_balancer_ip = match service_type {
        "LoadBalancer" => payload.load_balancer_ip.clone(),
        _ => None,
    };
    Service {
        metadata: ObjectMeta {
            name: Some(names.deployment.clone()),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(service_type.to_string()),
            selector: Some(BTreeMap::from([(
                "app".to_string(),
                names.deployment.clone(),
            )])),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: i32::from(payload.service_port.unwrap_or(payload.port)),
                target_port: Some(IntOrString::Int(i32::from(payload.port))),
                node_port,
                ..ServicePort::default()
            }]),
            external_traffic_policy,
            load_balancer_ip,
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::payload::{CreatePayload, ExposePayload};
    use serde_json::json;

    fn create(extra: serde_json::Value) -> CreatePayload {
        let mut body = json!({"name": "app", "image": "img:1", "role_suffix": "rp"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        CreatePayload::parse(&body).unwrap()
    }

    #[test]
    fn deployment_shape() {
        let settings = K8sSettings {
            host_aliases: vec![crate::config::HostAlias {
                ip: "10.0.0.5".parse().unwrap(),
                hostnames: vec!["nc.local".into(), "cloud".into()],
            }],
            ..K8sSettings::default()
        };
        let d = deployment(
            &create(json!({"environment_variables": ["A=1"]})),
            &settings,
        );
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["metadata"]["name"], "nc-app-app-rp");
        assert_eq!(v["spec"]["replicas"], 0);
        assert_eq!(
            v["spec"]["selector"]["matchLabels"],
            json!({"app": "nc-app-app-rp"})
        );
        let labels = &v["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["app"], "nc-app-app-rp");
        assert_eq!(labels[PART_OF], "nc-app-app");
        assert_eq!(labels["app.kubernetes.io/role"], "rp");
        let pod = &v["spec"]["template"]["spec"];
        assert_eq!(pod["containers"][0]["name"], "app");
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(
            pod["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}])
        );
        assert_eq!(
            pod["containers"][0]["volumeMounts"][0]["mountPath"],
            "/nc_app_app_data"
        );
        assert_eq!(
            pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "nc-app-app-data"
        );
        assert_eq!(
            pod["hostAliases"],
            json!([{"ip": "10.0.0.5", "hostnames": ["nc.local", "cloud"]}])
        );
        assert!(pod["containers"][0].get("resources").is_none());
    }

    #[test]
    fn limits_round_up_and_gpus() {
        let p = create(
            json!({"resource_limits": {"memory": 1048577, "nanoCPUs": 1500001}, "compute_device": "rocm"}),
        );
        let r = serde_json::to_value(resources(&p)).unwrap();
        assert_eq!(
            r,
            json!({"limits": {"amd.com/gpu": "1", "cpu": "2m", "memory": "2Mi"},
                   "requests": {"cpu": "2m", "memory": "2Mi"}})
        );
        let p = create(json!({"compute_device": "cuda"}));
        let r = serde_json::to_value(resources(&p)).unwrap();
        assert_eq!(r, json!({"limits": {"nvidia.com/gpu": "1"}}));
        assert!(resources(&create(json!({}))).is_none());
    }

    #[test]
    fn pvc_and_service_shape() {
        let settings = K8sSettings {
            storage_class: Some("fast".into()),
            ..K8sSettings::default()
        };
        let names = ExAppNames::derive("app", "", "rp");
        let v = serde_json::to_value(data_volume(&names, &settings)).unwrap();
        assert_eq!(v["metadata"]["name"], "nc-app-app-data");
        assert_eq!(v["spec"]["resources"]["requests"]["storage"], "10Gi");
        assert_eq!(v["spec"]["storageClassName"], "fast");
        assert_eq!(v["spec"]["accessModes"], json!(["ReadWriteOnce"]));
        let p = ExposePayload::parse(&json!({
            "name": "app", "port": 23000, "expose_type": "nodeport", "node_port": 30080,
            "external_traffic_policy": "Local", "service_labels": {"app": "x", "team": "a"}
        }))
        .unwrap();
        let v = serde_json::to_value(service(&p, "NodePort")).unwrap();
        assert_eq!(v["metadata"]["labels"]["app"], "nc-app-app");
        assert_eq!(v["metadata"]["labels"]["team"], "a");
        assert_eq!(v["metadata"]["labels"][MANAGED_BY], "harp");
        assert_eq!(
            v["spec"]["ports"],
            json!([{"name": "http", "port": 23000, "targetPort": 23000, "nodePort": 30080}])
        );
        assert_eq!(v["spec"]["externalTrafficPolicy"], "Local");
        assert_eq!(v["spec"]["selector"], json!({"app": "nc-app-app"}));
    }
}
