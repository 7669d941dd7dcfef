//! Self-test of the fake Kubernetes API server (tests/common/fake_k8s.rs).
//!
//! harp's Kubernetes backend is tested against the fake, so the fake must answer kube's typed
//! client the way a real kube-apiserver does: typed objects that deserialize, the same status
//! codes, reasons and messages in `kube::Error::Api`, server-side defaults and metadata. Each
//! test drives it through `kube::Api` (and raw HTTP where kube hides the wire).

mod common;
// Included here and in k8s.rs only, so the other test binaries do not compile it.
#[path = "common/fake_k8s.rs"]
mod fake_k8s;

use std::net::Ipv4Addr;

use fake_k8s::{FakeK8s, FakeOptions, PodState, FAKE_USER, NODE_PORT_RANGE};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, ObjectList, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

const NS: &str = "nextcloud-exapps";

async fn fake() -> FakeK8s {
    FakeK8s::start(FakeOptions::default()).await
}

fn typed<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("typed object")
}

fn names<K: kube::Resource + Clone>(list: &ObjectList<K>) -> Vec<String> {
    list.items.iter().map(|o| o.name_any()).collect()
}

/// The kind of Deployment harp creates for an ExApp: one container, env, a port, resources and
/// a claim mounted.
fn deployment_json(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{
                        "name": "app",
                        "image": "ghcr.io/nextcloud/test-deploy:release",
                        "env": [
                            {"name": "APP_ID", "value": name},
                            {"name": "APP_PORT", "value": "23000"},
                        ],
                        "ports": [{"containerPort": 23000}],
                        "resources": {
                            "requests": {"cpu": "500m", "memory": "512Mi"},
                            "limits": {"cpu": "1000m", "memory": "1024Mi"},
                        },
                        "volumeMounts": [{"name": "data", "mountPath": "/nc_app_data"}],
                    }],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": format!("{name}-data")}}],
                },
            },
        },
    })
}

fn pvc_json(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1024Mi"}}},
    })
}

fn service_json(name: &str, ty: &str, ports: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": ty, "selector": {"app": name}, "ports": ports},
    })
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("a JSON body")
}

/// The Status of a `kube::Error::Api`; anything else fails the test.
fn api_status<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn typed_crud_round_trips_like_a_real_api_server() {
    let fake = fake().await;
    let client = fake.client();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let pp = PostParams::default();

    let pvc = pvcs
        .create(&pp, &typed(pvc_json("nc-app-data")))
        .await
        .unwrap();
    assert_eq!(
        pvc.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
    let requests = pvc.spec.as_ref().unwrap().resources.as_ref().unwrap();
    assert_eq!(
        requests.requests.as_ref().unwrap()["storage"].0,
        "1Gi",
        "quantities are stored canonical"
    );
    assert_eq!(
        pvc.metadata.finalizers,
        Some(vec!["kubernetes.io/pvc-protection".to_string()])
    );

    let created = deployments
        .create(&pp, &typed(deployment_json("nc-app")))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert_eq!(meta.namespace.as_deref(), Some(NS));
    assert_eq!(meta.generation, Some(1));
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.uid.as_deref().map(str::len), Some(36));
    assert_ne!(meta.uid, pvc.metadata.uid);
    let rv_created: u64 = meta.resource_version.as_deref().unwrap().parse().unwrap();
    let rv_pvc: u64 = pvc
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv_created > rv_pvc, "one global counter bumped per write");
    let spec = created.spec.clone().unwrap();
    assert_eq!(
        spec.selector.match_labels.as_ref().unwrap()["app"],
        "nc-app"
    );
    assert_eq!(
        spec.template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap()["app"],
        "nc-app"
    );
    assert_eq!(
        spec.strategy.as_ref().unwrap().type_.as_deref(),
        Some("RollingUpdate")
    );
    let container = &spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let limits = container
        .resources
        .as_ref()
        .unwrap()
        .limits
        .as_ref()
        .unwrap();
    assert_eq!(
        (limits["cpu"].0.as_str(), limits["memory"].0.as_str()),
        ("1", "1Gi")
    );
    assert_eq!(created.status.as_ref().unwrap().replicas, Some(1));

    let got = deployments.get("nc-app").await.unwrap();
    assert_eq!(
        got.metadata.resource_version,
        created.metadata.resource_version
    );
    assert_eq!(
        serde_json::to_value(&got).unwrap(),
        fake.deployment("nc-app").unwrap(),
        "the stored object survives k8s-openapi's Deployment unchanged"
    );

    let by_label = |selector: &str| ListParams::default().labels(selector);
    let list = deployments.list(&by_label("app=nc-app")).await.unwrap();
    assert_eq!(names(&list), ["nc-app"]);
    assert!(list.metadata.resource_version.is_some());
    assert_eq!(
        names(&deployments.list(&by_label("app==nc-app")).await.unwrap()),
        ["nc-app"]
    );
    assert!(deployments
        .list(&by_label("app=other"))
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(deployments
        .list(&by_label("app!=nc-app"))
        .await
        .unwrap()
        .items
        .is_empty());
    let elsewhere: Api<Deployment> = Api::namespaced(client.clone(), "other-ns");
    assert!(elsewhere
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(api_status(elsewhere.get("nc-app").await).code, 404);

    let strategic = json!({
        "metadata": {"annotations": {"harp.nextcloud.com/x": "1"}},
        "spec": {"replicas": 0, "template": {"spec": {"containers": [
            {"name": "app", "image": "ghcr.io/nextcloud/test-deploy:v2"}
        ]}}},
    });
    let patched = deployments
        .patch(
            "nc-app",
            &PatchParams::default(),
            &Patch::Strategic(&strategic),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.as_ref().unwrap().replicas, Some(0));
    let annotations = patched.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations["harp.nextcloud.com/x"], "1");
    assert_eq!(annotations["deployment.kubernetes.io/revision"], "2");
    assert_eq!(patched.metadata.generation, Some(2));
    let rv_patched: u64 = patched.resource_version().unwrap().parse().unwrap();
    assert!(rv_patched > rv_created);
    let container = &patched
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("ghcr.io/nextcloud/test-deploy:v2")
    );
    assert_eq!(
        container.env.as_ref().map(Vec::len),
        Some(2),
        "containers merge by name: fields the patch leaves out stay"
    );
    assert!(fake
        .content_types()
        .contains(&"application/strategic-merge-patch+json".to_string()));
    assert!(fake.requests().contains(&format!(
        "PATCH /apis/apps/v1/namespaces/{NS}/deployments/nc-app"
    )));

    let merge = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "ghcr.io/nextcloud/test-deploy:v3"}]}}}});
    let merged = deployments
        .patch("nc-app", &PatchParams::default(), &Patch::Merge(&merge))
        .await
        .unwrap();
    let container = &merged
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(container.env, None, "a JSON merge patch replaces lists");

    let noop = deployments
        .patch(
            "nc-app",
            &PatchParams::default(),
            &Patch::Strategic(&json!({"spec": {"replicas": 0}})),
        )
        .await
        .unwrap();
    assert_eq!(
        noop.metadata.resource_version, merged.metadata.resource_version,
        "a no-op patch does not bump the resourceVersion"
    );

    let deleted = deployments
        .delete("nc-app", &DeleteParams::default())
        .await
        .unwrap();
    let status = deleted.right().expect("a Status for a deleted Deployment");
    assert!(status.is_success());
    assert_eq!(status.details.unwrap().name, "nc-app");
    let missing = api_status(deployments.get("nc-app").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, r#"deployments.apps "nc-app" not found"#);
    let details = missing.details.unwrap();
    assert_eq!(
        (
            details.name.as_str(),
            details.group.as_str(),
            details.kind.as_str()
        ),
        ("nc-app", "apps", "deployments")
    );

    let gone = pvcs
        .delete("nc-app-data", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = gone.left().expect("the claim, marked for deletion");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(
        api_status(pvcs.get("nc-app-data").await).message,
        r#"persistentvolumeclaims "nc-app-data" not found"#,
        "no Pod uses the claim, so the finalizer goes at once"
    );
}

#[tokio::test]
async fn invalid_objects_get_the_real_servers_status_codes_and_messages() {
    let fake = fake().await;
    let deployments: Api<Deployment> = Api::namespaced(fake.client(), NS);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(fake.client(), NS);
    let pp = PostParams::default();
    let create = |v: Value| {
        let deployments = deployments.clone();
        async move { deployments.create(&PostParams::default(), &typed(v)).await }
    };

    create(deployment_json("nc-app")).await.unwrap();
    let dup = api_status(create(deployment_json("nc-app")).await);
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(dup.message, r#"deployments.apps "nc-app" already exists"#);

    let bad_name = api_status(create(deployment_json("Bad_Name")).await);
    assert_eq!((bad_name.code, bad_name.reason.as_str()), (422, "Invalid"));
    assert!(
        bad_name.message.starts_with(
            r#"Deployment.apps "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of"#
        ),
        "{}",
        bad_name.message
    );
    let details = bad_name.details.unwrap();
    assert_eq!(details.kind, "Deployment");
    assert_eq!(details.causes[0].field, "metadata.name");

    let mut mismatch = deployment_json("nc-mismatch");
    mismatch["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    let s = api_status(create(mismatch).await);
    assert_eq!(s.code, 422);
    assert!(
        s.message.ends_with(
            r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: `selector` does not match template `labels`"#
        ),
        "{}",
        s.message
    );

    let mut env = deployment_json("nc-env");
    env["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"] = "1BAD".into();
    let s = api_status(create(env).await);
    assert_eq!(s.code, 422);
    assert!(
        s.message.contains(r#"spec.template.spec.containers[0].env[0].name: Invalid value: "1BAD": a valid environment variable name"#),
        "{}",
        s.message
    );

    let mut over = deployment_json("nc-over");
    over["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "2".into();
    let s = api_status(create(over).await);
    assert_eq!(
        s.message,
        r#"Deployment.apps "nc-over" is invalid: spec.template.spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1"#
    );

    let mut negative = deployment_json("nc-negative");
    negative["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] =
        "-1".into();
    let s = api_status(create(negative).await);
    assert_eq!(s.code, 422);
    assert!(
        s.message.contains(r#"spec.template.spec.containers[0].resources.limits[cpu]: Invalid value: "-1": must be greater than or equal to 0"#),
        "{}",
        s.message
    );

    for garbage in ["1.5.5", "abc"] {
        let mut bad = deployment_json("nc-garbage");
        bad["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] =
            garbage.into();
        let s = api_status(create(bad).await);
        assert_eq!(
            (s.code, s.reason.as_str()),
            (400, "BadRequest"),
            "{garbage}: the Go decoder rejects it before validation"
        );
        assert!(
            s.message
                .starts_with("Deployment in version \"v1\" cannot be handled as a Deployment: quantities must match the regular expression"),
            "{}",
            s.message
        );
    }

    let mut no_storage = pvc_json("nc-nostore");
    no_storage["spec"] = json!({});
    let s = api_status(pvcs.create(&pp, &typed(no_storage)).await);
    assert_eq!(
        s.message,
        r#"PersistentVolumeClaim "nc-nostore" is invalid: [spec.accessModes: Required value: at least 1 access mode is required, spec.resources[storage]: Required value]"#
    );

    for name in [
        "Bad_Name",
        "nc-mismatch",
        "nc-env",
        "nc-over",
        "nc-negative",
        "nc-garbage",
    ] {
        assert!(fake.deployment(name).is_none(), "{name} was stored");
    }
    assert!(fake.pvc("nc-nostore").is_none());

    let missing = api_status(
        deployments
            .patch(
                "nope",
                &PatchParams::default(),
                &Patch::Strategic(&json!({"spec": {"replicas": 2}})),
            )
            .await,
    );
    assert_eq!(missing.code, 404);
    let immutable = json!({"spec": {
        "selector": {"matchLabels": {"app": "x"}},
        "template": {"metadata": {"labels": {"app": "x"}}},
    }});
    let s = api_status(
        deployments
            .patch(
                "nc-app",
                &PatchParams::default(),
                &Patch::Strategic(&immutable),
            )
            .await,
    );
    assert_eq!(s.code, 422);
    assert!(
        s.message.contains("spec.selector: Invalid value: ")
            && s.message.ends_with("field is immutable"),
        "{}",
        s.message
    );
}

#[tokio::test]
async fn pods_follow_replicas_and_the_state_set_pod_sets() {
    let fake = fake().await;
    let deployments: Api<Deployment> = Api::namespaced(fake.client(), NS);
    let pods: Api<Pod> = Api::namespaced(fake.client(), NS);
    deployments
        .create(&PostParams::default(), &typed(deployment_json("nc-app")))
        .await
        .unwrap();
    let lp = ListParams::default().labels("app=nc-app");

    let list = pods.list(&lp).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let pod = &list.items[0];
    let name = pod.name_any();
    assert!(name.starts_with("nc-app-"), "{name}");
    let labels = pod.labels();
    assert_eq!(labels["app"], "nc-app");
    assert!(labels.contains_key("pod-template-hash"));
    let status = pod.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert!(status.container_statuses.is_none());
    assert!(pods
        .list(&ListParams::default().labels("app=nc-other"))
        .await
        .unwrap()
        .items
        .is_empty());
    let deployment_status = deployments.get("nc-app").await.unwrap().status.unwrap();
    assert_eq!(deployment_status.replicas, Some(1));
    assert_eq!(deployment_status.ready_replicas, None);

    fake.set_pod("nc-app", PodState::Running { ready: true });
    let status = pods.get(&name).await.unwrap().status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert!(status
        .conditions
        .unwrap()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True"));
    let container = &status.container_statuses.unwrap()[0];
    assert_eq!(container.name, "app");
    assert!(container.ready);
    assert!(container.state.as_ref().unwrap().running.is_some());
    let deployment_status = deployments.get("nc-app").await.unwrap().status.unwrap();
    assert_eq!(deployment_status.ready_replicas, Some(1));
    assert_eq!(deployment_status.available_replicas, Some(1));

    fake.set_pod("nc-app", PodState::Running { ready: false });
    let status = pods.get(&name).await.unwrap().status.unwrap();
    assert!(status
        .conditions
        .unwrap()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "False"));

    fake.set_pod(
        "nc-app",
        PodState::waiting("ImagePullBackOff", "Back-off pulling image"),
    );
    let status = pods.list(&lp).await.unwrap().items[0]
        .status
        .clone()
        .unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    let waiting = status.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ImagePullBackOff"));
    assert_eq!(waiting.message.as_deref(), Some("Back-off pulling image"));
    assert_eq!(
        deployments
            .get("nc-app")
            .await
            .unwrap()
            .status
            .unwrap()
            .ready_replicas,
        None
    );

    fake.set_pod(
        "nc-app",
        PodState::failed("Evicted", "The node was low on resource: memory."),
    );
    let status = pods.get(&name).await.unwrap().status.unwrap();
    assert_eq!(
        (status.phase.as_deref(), status.reason.as_deref()),
        (Some("Failed"), Some("Evicted"))
    );

    let scale = |n: i32| {
        let deployments = deployments.clone();
        async move {
            deployments
                .patch(
                    "nc-app",
                    &PatchParams::default(),
                    &Patch::Strategic(&json!({"spec": {"replicas": n}})),
                )
                .await
                .unwrap()
        }
    };
    scale(0).await;
    assert!(pods.list(&lp).await.unwrap().items.is_empty());
    assert_eq!(api_status(pods.get(&name).await).code, 404);
    scale(2).await;
    assert_eq!(pods.list(&lp).await.unwrap().items.len(), 2);
}

#[tokio::test]
async fn a_claim_in_use_stays_terminating_until_its_pods_go() {
    let fake = fake().await;
    let deployments: Api<Deployment> = Api::namespaced(fake.client(), NS);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(fake.client(), NS);
    let pp = PostParams::default();
    pvcs.create(&pp, &typed(pvc_json("nc-app-data")))
        .await
        .unwrap();
    deployments
        .create(&pp, &typed(deployment_json("nc-app")))
        .await
        .unwrap();

    pvcs.delete("nc-app-data", &DeleteParams::default())
        .await
        .unwrap();
    let still = pvcs.get("nc-app-data").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_some());
    let again = api_status(pvcs.create(&pp, &typed(pvc_json("nc-app-data"))).await);
    assert_eq!(again.reason, "AlreadyExists");

    deployments
        .delete("nc-app", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(api_status(pvcs.get("nc-app-data").await).code, 404);
}

#[tokio::test]
async fn services_get_loopback_cluster_ips_and_node_ports() {
    let fake = fake().await;
    let services: Api<Service> = Api::namespaced(fake.client(), NS);
    let pp = PostParams::default();

    let created = services
        .create(
            &pp,
            &typed(service_json("nc-app", "NodePort", json!([{"port": 23000}]))),
        )
        .await
        .unwrap();
    let spec = created.spec.unwrap();
    let ip: Ipv4Addr = spec.cluster_ip.as_deref().unwrap().parse().unwrap();
    assert!(ip.is_loopback(), "{ip}");
    assert_eq!(spec.cluster_ips, Some(vec![ip.to_string()]));
    assert_eq!(spec.ip_families, Some(vec!["IPv4".to_string()]));
    assert_eq!(spec.session_affinity.as_deref(), Some("None"));
    let port = &spec.ports.unwrap()[0];
    let node_port = port.node_port.unwrap();
    assert!(
        NODE_PORT_RANGE.contains(&i64::from(node_port)),
        "{node_port}"
    );
    assert_eq!(port.target_port, Some(IntOrString::Int(23000)));
    assert_eq!(port.protocol.as_deref(), Some("TCP"));

    let plain = services
        .create(
            &pp,
            &typed(json!({
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "nc-plain"},
                "spec": {"selector": {"app": "nc-plain"}, "ports": [{"port": 80, "targetPort": 8080}]},
            })),
        )
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(plain.type_.as_deref(), Some("ClusterIP"));
    let plain_ip: Ipv4Addr = plain.cluster_ip.as_deref().unwrap().parse().unwrap();
    assert!(plain_ip.is_loopback() && plain_ip != ip);
    assert_eq!(plain.ports.unwrap()[0].node_port, None);

    let s = api_status(
        services
            .create(
                &pp,
                &typed(service_json(
                    "nc-low",
                    "NodePort",
                    json!([{"port": 80, "nodePort": 99}]),
                )),
            )
            .await,
    );
    assert_eq!(
        s.message,
        r#"Service "nc-low" is invalid: spec.ports[0].nodePort: Invalid value: 99: provided port is not in the valid range. The range of valid ports is 30000-32767"#
    );
    let taken = service_json(
        "nc-taken",
        "NodePort",
        json!([{"port": 80, "nodePort": node_port}]),
    );
    let s = api_status(services.create(&pp, &typed(taken.clone())).await);
    assert_eq!(s.code, 422);
    assert!(
        s.message.ends_with("provided port is already allocated"),
        "{}",
        s.message
    );
    let s = api_status(
        services
            .create(
                &pp,
                &typed(service_json("Nc_App", "ClusterIP", json!([{"port": 80}]))),
            )
            .await,
    );
    assert!(
        s.message.contains("a DNS-1035 label must consist of"),
        "{}",
        s.message
    );

    services
        .create(
            &pp,
            &typed(service_json(
                "nc-lb",
                "LoadBalancer",
                json!([{"port": 443}]),
            )),
        )
        .await
        .unwrap();
    fake.set_lb_ingress("nc-lb", "192.0.2.10");
    let ingress = services
        .get("nc-lb")
        .await
        .unwrap()
        .status
        .unwrap()
        .load_balancer
        .unwrap()
        .ingress
        .unwrap();
    assert_eq!(ingress[0].ip.as_deref(), Some("192.0.2.10"));

    let deleted = services
        .delete("nc-app", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        deleted.left().expect("the deleted Service").name_any(),
        "nc-app"
    );
    let reused = services.create(&pp, &typed(taken)).await.unwrap();
    assert_eq!(
        reused.spec.unwrap().ports.unwrap()[0].node_port,
        Some(node_port),
        "a deleted Service releases its node port"
    );

    fake.put_service(json!({"metadata": {"name": "external", "namespace": NS}, "spec": {"ports": [{"port": 443}]}}));
    let seeded = services.get("external").await.unwrap().spec.unwrap();
    assert!(seeded
        .cluster_ip
        .unwrap()
        .parse::<Ipv4Addr>()
        .unwrap()
        .is_loopback());
}

#[tokio::test]
async fn a_wrong_token_gets_401_and_set_token_rotates_it() {
    let fake = FakeK8s::start(FakeOptions {
        token: "first".into(),
        tls: false,
    })
    .await;
    let mut config = fake.kube_config();
    config.auth_info.token = Some("wrong".to_string().into());
    let wrong: Api<Deployment> = Api::namespaced(kube::Client::try_from(config).unwrap(), NS);
    let s = api_status(wrong.list(&ListParams::default()).await);
    assert_eq!(
        (s.code, s.reason.as_str(), s.message.as_str()),
        (401, "Unauthorized", "Unauthorized")
    );

    let right: Api<Deployment> = Api::namespaced(fake.client(), NS);
    right.list(&ListParams::default()).await.unwrap();
    fake.set_token("second");
    assert_eq!(
        api_status(right.list(&ListParams::default()).await).code,
        401
    );
    let rotated: Api<Deployment> = Api::namespaced(fake.client(), NS);
    rotated.list(&ListParams::default()).await.unwrap();
}

#[tokio::test]
async fn tls_is_verified_against_the_fakes_ca() {
    let fake = FakeK8s::start(FakeOptions {
        tls: true,
        ..Default::default()
    })
    .await;
    assert!(
        fake.url().starts_with("https://127.0.0.1:"),
        "{}",
        fake.url()
    );
    let pem = fake.ca_pem().unwrap();
    use rustls::pki_types::pem::PemObject;
    let from_pem = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate in ca_pem")
        .unwrap();
    assert_eq!(from_pem.as_ref(), fake.ca_der().unwrap().as_slice());

    let ok: Api<Deployment> = Api::namespaced(fake.client(), NS);
    assert!(ok
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    let mut by_name = fake.kube_config();
    by_name.cluster_url = format!("https://localhost:{}", fake.addr().port())
        .parse()
        .unwrap();
    let by_name: Api<Deployment> = Api::namespaced(kube::Client::try_from(by_name).unwrap(), NS);
    by_name.list(&ListParams::default()).await.unwrap();

    let other = FakeK8s::start(FakeOptions {
        tls: true,
        ..Default::default()
    })
    .await;
    let mut config = fake.kube_config();
    config.root_cert = Some(vec![other.ca_der().unwrap()]);
    let seen = fake.requests().len();
    let err = Api::<Deployment>::namespaced(kube::Client::try_from(config).unwrap(), NS)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(!matches!(err, kube::Error::Api(_)), "{err:?}");
    assert_eq!(
        fake.requests().len(),
        seen,
        "nothing got past the handshake"
    );
}

#[tokio::test]
async fn fail_injects_errors_until_cleared_and_stop_refuses_connections() {
    let fake = fake().await;
    let deployments: Api<Deployment> = Api::namespaced(fake.client(), NS);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(fake.client(), NS);

    fake.fail("GET", "/apis/apps/v1/", 500);
    let s = api_status(deployments.get("nc-app").await);
    assert_eq!((s.code, s.reason.as_str()), (500, "InternalError"));
    assert_eq!(
        api_status(pvcs.get("nc-app").await).code,
        404,
        "other paths answer normally"
    );
    deployments
        .create(&PostParams::default(), &typed(deployment_json("nc-app")))
        .await
        .expect("other methods answer normally");
    fake.clear_failures();
    deployments.get("nc-app").await.unwrap();

    fake.fail_times(
        "*",
        &format!("/apis/apps/v1/namespaces/{NS}/deployments/nc-app"),
        409,
        1,
    );
    assert_eq!(api_status(deployments.get("nc-app").await).code, 409);
    deployments.get("nc-app").await.unwrap();

    fake.stop();
    let err = common::client()
        .get(format!("{}/api", fake.url()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let err = deployments.get("nc-app").await.unwrap_err();
    assert!(!matches!(err, kube::Error::Api(_)), "{err:?}");
}

#[tokio::test]
async fn raw_http_answers_match_the_api_servers() {
    let fake = fake().await;
    let http = common::client();
    let url = fake.url();
    let auth = ("authorization", "Bearer test-token");
    let deployments_url = format!("{url}/apis/apps/v1/namespaces/{NS}/deployments");

    let res = http.get(format!("{url}/api")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.bytes().await.map(|b| json_of(&b)).unwrap(),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401})
    );

    let api: Value = http
        .get(format!("{url}/api"))
        .header(auth.0, auth.1)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| json_of(&b))
        .unwrap();
    assert_eq!(api["kind"], "APIVersions");
    assert_eq!(api["versions"], json!(["v1"]));
    assert_eq!(
        api["serverAddressByClientCIDRs"][0]["serverAddress"],
        format!("127.0.0.1:{}", fake.addr().port())
    );
    let version = fake.client().apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "33")
    );

    let res = http
        .get(format!("{url}/apis/nope/v1/things"))
        .header(auth.0, auth.1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = json_of(&res.bytes().await.unwrap());
    assert_eq!(
        (body["reason"].as_str(), body["message"].as_str()),
        (
            Some("NotFound"),
            Some("the server could not find the requested resource")
        )
    );

    let res = http
        .post(&deployments_url)
        .header(auth.0, auth.1)
        .header("content-type", "application/json")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.bytes().await.map(|b| json_of(&b)).unwrap()["reason"],
        "BadRequest"
    );

    let mut typo = deployment_json("nc-typo");
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullSecret"] = "regcred".into();
    let res = http
        .post(&deployments_url)
        .header(auth.0, auth.1)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&typo).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let warning = res
        .headers()
        .get("warning")
        .expect("a Warning header")
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        warning,
        r#"299 - "unknown field \"spec.template.spec.containers[0].imagePullSecret\"""#
    );
    assert!(
        fake.deployment("nc-typo").unwrap()["spec"]["template"]["spec"]["containers"][0]
            .get("imagePullSecret")
            .is_none()
    );
    typo["metadata"]["name"] = "nc-strict".into();
    let res = http
        .post(format!("{deployments_url}?fieldValidation=Strict"))
        .header(auth.0, auth.1)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&typo).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = json_of(&res.bytes().await.unwrap());
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("strict decoding error: unknown field"),
        "{body}"
    );

    let res = http
        .patch(format!("{deployments_url}/nc-typo"))
        .header(auth.0, auth.1)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    assert_eq!(
        res.bytes().await.map(|b| json_of(&b)).unwrap()["reason"],
        "UnsupportedMediaType"
    );

    let res = http
        .put(format!("{url}/api"))
        .header(auth.0, auth.1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);

    let deployments: Api<Deployment> = Api::namespaced(fake.client(), NS);
    deployments
        .list(&ListParams::default().labels("app=nc-typo"))
        .await
        .unwrap();
    assert!(
        fake.requests().contains(&format!(
            "GET /apis/apps/v1/namespaces/{NS}/deployments?labelSelector=app=nc-typo"
        )),
        "{:?}",
        fake.requests()
    );
}

#[tokio::test]
async fn access_reviews_and_requests_follow_deny() {
    let fake = fake().await;
    let pp = PostParams::default();
    let reviews: Api<SelfSubjectAccessReview> = Api::all(fake.client());
    let review = |verb: &str| -> SelfSubjectAccessReview {
        typed(json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"namespace": NS, "verb": verb, "group": "apps", "resource": "deployments"}},
        }))
    };
    let allowed = reviews.create(&pp, &review("create")).await.unwrap();
    assert!(allowed.status.unwrap().allowed);
    assert_eq!(
        allowed.spec.resource_attributes.unwrap().verb.as_deref(),
        Some("create")
    );

    fake.deny("create", "deployments");
    let denied = reviews.create(&pp, &review("create")).await.unwrap();
    assert!(!denied.status.unwrap().allowed);
    let other_verb = reviews.create(&pp, &review("delete")).await.unwrap();
    assert!(other_verb.status.unwrap().allowed);

    let deployments: Api<Deployment> = Api::namespaced(fake.client(), NS);
    let s = api_status(
        deployments
            .create(&pp, &typed(deployment_json("nc-app")))
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.message,
        format!(
            r#"deployments.apps is forbidden: User "{FAKE_USER}" cannot create resource "deployments" in API group "apps" in the namespace "{NS}""#
        )
    );
    deployments.list(&ListParams::default()).await.unwrap();
    fake.allow_all();
    deployments
        .create(&pp, &typed(deployment_json("nc-app")))
        .await
        .unwrap();
}

#[tokio::test]
async fn nodes_come_from_put_node_and_list_by_label() {
    let fake = fake().await;
    fake.put_node(json!({
        "metadata": {"name": "node-a", "labels": {"gpu": "yes"}},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.5"}]},
    }));
    fake.put_node(json!({"metadata": {"name": "node-b"}}));
    let nodes: Api<Node> = Api::all(fake.client());
    assert_eq!(
        names(&nodes.list(&ListParams::default()).await.unwrap()),
        ["node-a", "node-b"]
    );
    let gpu = nodes
        .list(&ListParams::default().labels("gpu=yes"))
        .await
        .unwrap();
    assert_eq!(names(&gpu), ["node-a"]);
    assert_eq!(
        gpu.items[0]
            .status
            .as_ref()
            .unwrap()
            .addresses
            .as_ref()
            .unwrap()[0]
            .address,
        "10.0.0.5"
    );
    assert_eq!(
        api_status(nodes.get("node-c").await).message,
        r#"nodes "node-c" not found"#
    );
}
