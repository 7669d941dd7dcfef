//! The Kubernetes backend end to end: the real harp binary, AppAPI's calls as AppAPI 34 makes
//! them (k8s-backend contract §5), a fake API server with the real one's semantics
//! (`common/fake_k8s.rs`, itself checked in `k8s_fake.rs`), and a real ExApp process listening
//! on the cluster IP the fake hands out (127.0.100.0/22), so routed requests are real.

mod common;
#[path = "common/fake_k8s.rs"]
mod fake_k8s;

use common::*;
use fake_k8s::{FakeK8s, FakeOptions, PodState};
use serde_json::{json, Value};
use std::time::Duration;

const NS: &str = "nextcloud-exapps";
const APP: &str = "k8s_app";
/// `nc-app-k8s-app`: sanitised from `nc_app_k8s_app`.
const DEPLOYMENT: &str = "nc-app-k8s-app";
const PVC: &str = "nc-app-k8s-app-data";
const EXAPP_PORT: u16 = 23000;
const TOKEN: &str = "exapp-secret";

/// harp, the stub Nextcloud and the fake API server, wired as a Kubernetes daemon.
struct Cluster {
    harp: Harp,
    nc: StubNextcloud,
    api: FakeK8s,
}

/// AppAPI registers a Kubernetes ExApp with its app id as host (the gateway must find the real
/// address itself).
fn nextcloud_record() -> Value {
    StubNextcloud::record(
        TOKEN,
        "1.0.0",
        APP,
        EXAPP_PORT,
        &[("^/public", PUBLIC, &[]), (".*", ADMIN, &[])],
    )
}

async fn cluster(extra: &[(&str, &str)]) -> Cluster {
    cluster_with(FakeK8s::start(FakeOptions::default()).await, extra).await
}

async fn cluster_with(api: FakeK8s, extra: &[(&str, &str)]) -> Cluster {
    let nc = StubNextcloud::start().await;
    nc.set_app(APP, nextcloud_record());
    let (url, token, nc_url) = (api.url(), api.token(), nc.url());
    let mut all: Vec<(&str, &str)> = vec![
        ("NC_INSTANCE_URL", &nc_url),
        ("HP_K8S_ENABLED", "true"),
        ("HP_K8S_API_SERVER", &url),
        ("HP_K8S_BEARER_TOKEN", &token),
    ];
    all.extend_from_slice(extra);
    let harp = tokio::task::block_in_place(|| Harp::start(&all));
    Cluster { harp, nc, api }
}

/// A second (or restarted) harp for the same Nextcloud and cluster: empty caches.
fn another_harp(nc: &StubNextcloud, api: &FakeK8s) -> Harp {
    let (nc, url, token) = (nc.url(), api.url(), api.token());
    tokio::task::block_in_place(|| {
        Harp::start(&[
            ("NC_INSTANCE_URL", &nc),
            ("HP_K8S_ENABLED", "true"),
            ("HP_K8S_API_SERVER", &url),
            ("HP_K8S_BEARER_TOKEN", &token),
        ])
    })
}

/// One answer: status and body text.
struct Answer {
    status: u16,
    body: String,
    content_type: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn assert(&self, status: u16, body: &str) {
        assert_eq!(
            (self.status, self.body.as_str()),
            (status, body),
            "unexpected answer"
        );
    }
}

impl Cluster {
    async fn post(&self, op: &str, body: Value) -> Answer {
        self.post_raw(op, body.to_string()).await
    }

    async fn post_raw(&self, op: &str, body: String) -> Answer {
        let resp = client()
            .post(self.harp.url(&format!("/exapps/app_api/k8s/exapp/{op}")))
            .header("harp-shared-key", KEY)
            .header("content-type", "application/json")
            .body(body)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("control request");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        Answer {
            status,
            body: resp.text().await.unwrap(),
            content_type,
        }
    }

    async fn info(&self) -> Value {
        let resp = client()
            .get(self.harp.url("/exapps/app_api/info"))
            .header("harp-shared-key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        serde_json::from_str(&resp.text().await.unwrap()).unwrap()
    }

    /// AppAPI's own six-header request to the ExApp (heartbeat, init, enabled).
    async fn appapi(&self, path: &str) -> reqwest::Response {
        client()
            .get(self.harp.url(&format!("/exapps/{APP}{path}")))
            .header("harp-shared-key", KEY)
            .header("ex-app-version", "1.0.0")
            .header("ex-app-id", APP)
            .header("ex-app-host", APP)
            .header("ex-app-port", EXAPP_PORT.to_string())
            .header("authorization-app-api", "YWRtaW46c2VjcmV0")
            .send()
            .await
            .expect("AppAPI request through the gateway")
    }

    async fn user_get(&self, path: &str) -> reqwest::Response {
        client()
            .get(self.harp.url(&format!("/exapps/{APP}{path}")))
            .send()
            .await
            .expect("user request through the gateway")
    }

    async fn exapp_storage(&self, method: reqwest::Method, record: Option<Value>) -> u16 {
        let mut req = client()
            .request(
                method,
                self.harp
                    .url(&format!("/exapps/app_api/exapp_storage/{APP}")),
            )
            .header("harp-shared-key", KEY);
        if let Some(record) = record {
            req = req
                .header("content-type", "application/json")
                .body(record.to_string());
        }
        req.send().await.unwrap().status().as_u16()
    }

    fn replicas(&self, name: &str) -> Option<i64> {
        self.api
            .deployment(name)
            .and_then(|d| d["spec"]["replicas"].as_i64())
    }
}

/// The body AppAPI 34's KubernetesActions sends to `create`.
fn create_body(name: &str, role: Option<&str>) -> Value {
    let mut body = json!({
        "name": name,
        "instance_id": "",
        "image": "ghcr.io/nextcloud/test-exapp:1.0.0",
        "environment_variables": [
            format!("APP_ID={name}"), "APP_PORT=23000", "APP_SECRET=s3cret",
            format!("APP_PERSISTENT_STORAGE=/nc_app_{name}_data"), "NEXTCLOUD_URL=http://nc"
        ],
        "compute_device": "cpu",
        "resource_limits": {"memory": 536870912, "nanoCPUs": 500000000},
        "mount_points": []
    });
    if let Some(role) = role {
        body["role_suffix"] = json!(role);
    }
    body
}

fn name_body(name: &str) -> Value {
    json!({"name": name, "instance_id": ""})
}

/// The ExApp process: an echo server on the Service's cluster IP and port.
async fn exapp_on_service(api: &FakeK8s, service: &str) -> EchoBackend {
    let svc = api.service(service).expect("the Service exists");
    let ip = svc["spec"]["clusterIP"]
        .as_str()
        .expect("a cluster IP")
        .to_string();
    let port = svc["spec"]["ports"][0]["port"].as_u64().unwrap();
    EchoBackend::start_on(&format!("{ip}:{port}")).await
}

#[tokio::test(flavor = "multi_thread")]
async fn appapi_kubernetes_sequence_deploy_route_disable_enable_remove() {
    let c = cluster(&[]).await;

    // Register daemon / "Check connection": /info must say enabled and reachable.
    let info = c.info().await;
    assert_eq!(
        info["kubernetes"],
        json!({"enabled": true, "api_server": c.api.url(), "reachable": true})
    );
    assert_eq!(info["docker"], json!(true));

    // Deploy: exists, create, start, install_certificates, wait_for_start, expose.
    let a = c.post("exists", name_body(APP)).await;
    assert_eq!((a.status, a.json()), (200, json!({"exists": false})));
    assert!(
        a.content_type.starts_with("application/json"),
        "{}",
        a.content_type
    );
    let a = c.post("create", create_body(APP, None)).await;
    assert_eq!((a.status, a.json()), (201, json!({"name": DEPLOYMENT})));
    let deployment = c.api.deployment(DEPLOYMENT).expect("Deployment created");
    assert_eq!(deployment["spec"]["replicas"], 0);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "ghcr.io/nextcloud/test-exapp:1.0.0");
    assert_eq!(
        container["resources"],
        json!({"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "500m", "memory": "512Mi"}})
    );
    assert_eq!(
        container["volumeMounts"][0]["mountPath"],
        "/nc_app_k8s_app_data"
    );
    let pvc = c.api.pvc(PVC).expect("PVC created");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "10Gi");
    assert_eq!(
        c.post("exists", name_body(APP)).await.json(),
        json!({"exists": true})
    );

    c.api.clear_requests();
    c.post("start", name_body(APP)).await.assert(204, "");
    assert_eq!(c.replicas(DEPLOYMENT), Some(1));
    assert!(
        c.api
            .content_types()
            .iter()
            .any(|t| t == "application/strategic-merge-patch+json"),
        "start is a strategic-merge patch: {:?}",
        c.api.content_types()
    );
    c.post(
        "install_certificates",
        json!({"name": APP, "instance_id": "", "system_certs_bundle": null, "install_frp_certs": true}),
    )
    .await
    .assert(204, "");

    c.api.set_pod(DEPLOYMENT, PodState::Running { ready: true });
    let a = c.post("wait_for_start", name_body(APP)).await;
    assert_eq!(
        (a.status, a.json()),
        (
            200,
            json!({"started": true, "status": "running", "health": "ready", "reason": null, "message": null})
        )
    );

    let a = c
        .post(
            "expose",
            json!({"name": APP, "instance_id": "", "port": EXAPP_PORT, "expose_type": "clusterip"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let exposed = a.json();
    let svc = c.api.service(DEPLOYMENT).expect("Service created");
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap();
    assert_eq!(
        exposed,
        json!({"appId": APP, "host": cluster_ip, "port": EXAPP_PORT, "exposeType": "clusterip",
               "serviceName": DEPLOYMENT, "namespace": NS})
    );
    assert_eq!(
        svc["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "harp"
    );

    // Heartbeat through the gateway (AppAPI's six headers) and a user's request: both reach
    // the ExApp at the Service's address, with no FRP.
    let exapp = exapp_on_service(&c.api, DEPLOYMENT).await;
    let resp = c.appapi("/heartbeat").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(exapp.last_request().unwrap().path, "/heartbeat");
    let resp = c.user_get("/public/page").await;
    assert_eq!(resp.status(), 200);
    let seen = exapp.last_request().unwrap();
    assert_eq!(seen.path, "/public/page");
    assert_eq!(seen.header("ex-app-id"), Some(APP));

    // A cached route never asks the API again.
    c.api.clear_requests();
    for _ in 0..5 {
        assert_eq!(c.user_get("/public/again").await.status(), 200);
    }
    assert!(c.api.requests().is_empty(), "{:?}", c.api.requests());

    // Disable: stop, DELETE exapp_storage.
    c.post("stop", name_body(APP)).await.assert(204, "");
    assert_eq!(c.replicas(DEPLOYMENT), Some(0));
    assert_eq!(c.exapp_storage(reqwest::Method::DELETE, None).await, 204);

    // Enable: start, wait_for_start, heartbeat, POST exapp_storage with AppAPI's record (host =
    // the app id): the stored record must point at the Service, not at the app id.
    c.post("start", name_body(APP)).await.assert(204, "");
    assert_eq!(
        c.post("wait_for_start", name_body(APP)).await.json()["started"],
        true
    );
    assert_eq!(c.appapi("/heartbeat").await.status(), 200);
    assert_eq!(
        c.exapp_storage(reqwest::Method::POST, Some(nextcloud_record()))
            .await,
        204
    );
    exapp.clear();
    assert_eq!(c.user_get("/public/after-enable").await.status(), 200);
    assert_eq!(exapp.last_request().unwrap().path, "/public/after-enable");

    // A restarted harp (empty caches) resolves the Service on the first request.
    drop(c.harp);
    let c = Cluster {
        harp: another_harp(&c.nc, &c.api),
        nc: c.nc,
        api: c.api,
    };
    exapp.clear();
    assert_eq!(c.user_get("/public/after-restart").await.status(), 200);
    assert_eq!(exapp.count(), 1);

    // Unregister without --rm-data: Deployment and harp's Service go, the data stays.
    c.post(
        "remove",
        json!({"name": APP, "instance_id": "", "remove_data": false}),
    )
    .await
    .assert(204, "");
    assert!(c.api.deployment(DEPLOYMENT).is_none());
    assert!(c.api.service(DEPLOYMENT).is_none());
    assert!(c.api.pvc(PVC).is_some());
    // With --rm-data the volume goes too (removing again is fine: the Deployment is gone).
    c.post(
        "remove",
        json!({"name": APP, "instance_id": "", "remove_data": true}),
    )
    .await
    .assert(204, "");
    assert!(c.api.pvc(PVC).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_roles_share_one_volume_and_an_existing_app_is_replaced() {
    let c = cluster(&[]).await;
    c.post("create", create_body(APP, None)).await;
    let a = c.post("create", create_body(APP, Some("rp"))).await;
    assert_eq!(
        (a.status, a.json()),
        (201, json!({"name": "nc-app-k8s-app-rp"}))
    );
    let role = c.api.deployment("nc-app-k8s-app-rp").unwrap();
    let labels = &role["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/role"], "rp");
    assert_eq!(labels["app.kubernetes.io/part-of"], DEPLOYMENT);
    assert_eq!(
        role["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        PVC
    );
    // A second create of the same role: HaRP's 409 text.
    c.post("create", create_body(APP, Some("rp")))
        .await
        .assert(409, "Deployment 'nc-app-k8s-app-rp' already exists.");

    // AppAPI on an app that exists already: exists -> remove (keep data) -> create.
    assert_eq!(
        c.post("exists", name_body(APP)).await.json(),
        json!({"exists": true})
    );
    c.post("remove", json!({"name": APP, "remove_data": false}))
        .await
        .assert(204, "");
    assert_eq!(c.post("create", create_body(APP, None)).await.status, 201);
    assert!(c.api.pvc(PVC).is_some());

    // Exposing the role: the gateway finds it by label when the base Service does not exist.
    let a = c
        .post(
            "expose",
            json!({"name": APP, "role_suffix": "rp", "port": 23001, "expose_type": "clusterip"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["serviceName"], "nc-app-k8s-app-rp");
    let exapp = exapp_on_service(&c.api, "nc-app-k8s-app-rp").await;
    let restarted = another_harp(&c.nc, &c.api);
    let resp = client()
        .get(restarted.url(&format!("/exapps/{APP}/public/x")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(exapp.count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn nodeport_loadbalancer_and_manual_exposure() {
    let c = cluster(&[]).await;
    c.api.put_node(json!({
        "metadata": {"name": "node-a"},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "Hostname", "address": "node-a"}, {"type": "InternalIP", "address": "127.0.0.1"}]
        }
    }));
    c.post("create", create_body(APP, None)).await;
    let a = c
        .post(
            "expose",
            json!({"name": APP, "port": EXAPP_PORT, "expose_type": "nodeport", "node_port": 30777}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let body = a.json();
    assert_eq!(
        (body["host"].clone(), body["port"].clone()),
        (json!("127.0.0.1"), json!(30777))
    );
    assert_eq!(body["exposeType"], "nodeport");
    let svc = c.api.service(DEPLOYMENT).unwrap();
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30777);
    // The ExApp behind the node port (kube-proxy's job on a real node).
    let exapp = EchoBackend::start_on("127.0.0.1:30777").await;
    assert_eq!(c.user_get("/public/np").await.status(), 200);
    assert_eq!(exapp.count(), 1);
    c.post("remove", json!({"name": APP})).await.assert(204, "");

    // LoadBalancer: the address appears while harp waits for it.
    c.post("create", create_body(APP, None)).await;
    let api = c.api.clone();
    let setter = tokio::spawn(async move {
        for _ in 0..100 {
            if api.service(DEPLOYMENT).is_some() {
                api.set_lb_ingress(DEPLOYMENT, "127.0.0.1");
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let a = c
        .post(
            "expose",
            json!({"name": APP, "port": 23010, "expose_type": "loadbalancer",
                   "wait_timeout_seconds": 10, "wait_interval_seconds": 0.1}),
        )
        .await;
    setter.await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        (a.json()["host"].clone(), a.json()["port"].clone()),
        (json!("127.0.0.1"), json!(23010))
    );
    c.post("remove", json!({"name": APP})).await.assert(204, "");

    // Manual: no Service; the address is kept in annotations, so a fresh harp finds it.
    c.post("create", create_body(APP, None)).await;
    let manual_exapp = EchoBackend::start().await;
    let a = c
        .post(
            "expose",
            json!({"name": APP, "port": EXAPP_PORT, "expose_type": "manual",
                   "upstream_host": "127.0.0.1", "upstream_port": manual_exapp.port()}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(c.api.service(DEPLOYMENT).is_none());
    let annotations = &c.api.deployment(DEPLOYMENT).unwrap()["metadata"]["annotations"];
    assert_eq!(annotations["appapi.nextcloud.com/expose-type"], "manual");
    assert_eq!(
        annotations["appapi.nextcloud.com/upstream-port"],
        manual_exapp.port().to_string()
    );
    let restarted = another_harp(&c.nc, &c.api);
    let resp = client()
        .get(restarted.url(&format!("/exapps/{APP}/public/manual")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(manual_exapp.last_request().unwrap().path, "/public/manual");
    // An operator's Service (not labelled managed-by harp) survives remove.
    c.api.put_service(json!({
        "metadata": {"name": DEPLOYMENT, "namespace": NS, "labels": {"team": "ops"}},
        "spec": {"ports": [{"port": 80}], "selector": {"app": DEPLOYMENT}}
    }));
    c.post("remove", json!({"name": APP})).await.assert(204, "");
    assert!(c.api.service(DEPLOYMENT).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_for_start_fails_fast_on_image_errors_and_times_out() {
    let c = cluster(&[
        ("HP_K8S_START_TIMEOUT", "2s"),
        ("HP_K8S_IMAGE_PULL_TIMEOUT", "3s"),
    ])
    .await;
    c.post("create", create_body(APP, None)).await;
    c.post("start", name_body(APP)).await;
    c.api.set_pod(
        DEPLOYMENT,
        PodState::waiting("ImagePullBackOff", "Back-off pulling image"),
    );
    let started = std::time::Instant::now();
    let a = c.post("wait_for_start", name_body(APP)).await;
    assert_eq!(
        a.json(),
        json!({"started": false, "status": "ImagePullBackOff", "health": "image_error",
               "reason": "ImagePullBackOff", "message": "Back-off pulling image"})
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "image errors fail at once"
    );

    // Pulled but never Ready: the start-up budget (2 s here) ends it.
    c.api.set_pod(
        DEPLOYMENT,
        PodState::waiting("CrashLoopBackOff", "back-off restarting"),
    );
    let started = std::time::Instant::now();
    let a = c.post("wait_for_start", name_body(APP)).await;
    let body = a.json();
    assert_eq!(
        (body["started"].clone(), body["health"].clone()),
        (json!(false), json!("timeout"))
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );

    // Still pulling: the image budget (3 s here) ends it.
    c.api.set_pod(DEPLOYMENT, PodState::NoContainerStatus);
    let a = c.post("wait_for_start", name_body(APP)).await;
    assert_eq!(a.json()["health"], "timeout");

    c.api.set_pod(
        DEPLOYMENT,
        PodState::failed("Evicted", "The node was low on resource: memory."),
    );
    let body = c.post("wait_for_start", name_body(APP)).await.json();
    assert_eq!(
        (
            body["started"].clone(),
            body["status"].clone(),
            body["health"].clone()
        ),
        (json!(false), json!("Failed"), json!("not_ready"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_for_start_stops_when_appapi_hangs_up() {
    let c = cluster(&[]).await;
    c.post("create", create_body(APP, None)).await;
    c.post("start", name_body(APP)).await;
    // Pulling forever (HaRP would poll for an hour).
    let url = c.harp.url("/exapps/app_api/k8s/exapp/wait_for_start");
    let waiting = tokio::spawn(async move {
        client()
            .post(url)
            .header("harp-shared-key", KEY)
            .body(name_body(APP).to_string())
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let polls_before = pod_lists(&c.api);
    assert!(polls_before >= 1, "harp polls the pods while AppAPI waits");
    waiting.abort();
    let _ = waiting.await;
    // One poll may be in flight when the client goes; after that, none.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after_hangup = pod_lists(&c.api);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        pod_lists(&c.api),
        after_hangup,
        "polling stopped after the hang-up"
    );
    assert!(after_hangup <= polls_before + 3);
}

fn pod_lists(api: &FakeK8s) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/namespaces/nextcloud-exapps/pods"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn api_failures_give_harps_503_texts_and_cache_nothing() {
    let c = cluster(&[]).await;
    c.post("create", create_body(APP, None)).await;
    c.post("expose", json!({"name": APP, "port": EXAPP_PORT}))
        .await;
    let exapp = exapp_on_service(&c.api, DEPLOYMENT).await;

    c.api.fail("GET", "/apis/apps/v1", 500);
    c.post("exists", name_body(APP)).await.assert(
        503,
        &format!("Error checking deployment '{DEPLOYMENT}': Status 500"),
    );
    c.api.fail("PATCH", "/apis/apps/v1", 500);
    c.post("start", name_body(APP)).await.assert(
        503,
        &format!("Error starting deployment '{DEPLOYMENT}': Status 500"),
    );
    c.api
        .fail("GET", "/api/v1/namespaces/nextcloud-exapps/pods", 500);
    c.post("wait_for_start", name_body(APP)).await.assert(
        503,
        &format!("Error listing pods for deployment '{DEPLOYMENT}': Status 500"),
    );
    c.api.clear_failures();
    c.post("start", json!({"name": "not_there"}))
        .await
        .assert(404, "Deployment 'nc-app-not-there' not found.");

    // A routing-cache miss while the API fails: 503, nothing cached; then it recovers.
    assert_eq!(c.exapp_storage(reqwest::Method::DELETE, None).await, 204);
    c.api
        .fail("GET", "/api/v1/namespaces/nextcloud-exapps/services", 500);
    assert_eq!(c.user_get("/public/a").await.status(), 503);
    assert_eq!(exapp.count(), 0);
    // AppAPI's update in the same state is refused, not stored with the app id as host.
    assert_eq!(
        c.exapp_storage(reqwest::Method::POST, Some(nextcloud_record()))
            .await,
        503
    );
    c.api.clear_failures();
    assert_eq!(c.user_get("/public/b").await.status(), 200);
    assert_eq!(exapp.last_request().unwrap().path, "/public/b");

    // A wrong token: the API's 401 in HaRP's text.
    c.api.set_token("rotated");
    c.post("exists", name_body(APP)).await.assert(
        503,
        &format!("Error checking deployment '{DEPLOYMENT}': Status 401"),
    );
    assert_eq!(c.info().await["kubernetes"]["reachable"], false);

    // The API server gone: HaRP's connection text, /info says unreachable.
    c.api.stop();
    c.post("exists", name_body(APP))
        .await
        .assert(503, "Error communicating with Kubernetes API");
    assert_eq!(c.info().await["kubernetes"]["reachable"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_token_file_is_used_from_the_next_call_on() {
    let api = FakeK8s::start(FakeOptions::default()).await;
    let dir = std::env::temp_dir().join(format!("harp-k8s-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, format!("{}\n", api.token())).unwrap();
    let nc = StubNextcloud::start().await;
    let (nc_url, url) = (nc.url(), api.url());
    let harp = tokio::task::block_in_place(|| {
        Harp::start(&[
            ("NC_INSTANCE_URL", &nc_url),
            ("HP_K8S_ENABLED", "true"),
            ("HP_K8S_API_SERVER", &url),
            ("HP_K8S_BEARER_TOKEN_FILE", file.to_str().unwrap()),
        ])
    });
    let c = Cluster { harp, nc, api };
    assert_eq!(
        c.post("exists", name_body(APP)).await.json(),
        json!({"exists": false})
    );
    // The kubelet rotates the projected token: the API accepts only the new one.
    c.api.set_token("rotated-token");
    std::fs::write(&file, "rotated-token").unwrap();
    assert_eq!(
        c.post("exists", name_body(APP)).await.json(),
        json!({"exists": false})
    );
    std::fs::write(&file, "").unwrap();
    c.post("exists", name_body(APP))
        .await
        .assert(503, "Kubernetes token is not configured.");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_the_right_ca_a_wrong_ca_and_verification_off() {
    let api = FakeK8s::start(FakeOptions {
        tls: true,
        ..FakeOptions::default()
    })
    .await;
    let dir = std::env::temp_dir().join(format!("harp-k8s-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let right = dir.join("right.crt");
    std::fs::write(&right, api.ca_pem().unwrap()).unwrap();
    let other = FakeK8s::start(FakeOptions {
        tls: true,
        ..FakeOptions::default()
    })
    .await;
    let wrong = dir.join("wrong.crt");
    std::fs::write(&wrong, other.ca_pem().unwrap()).unwrap();

    let c = cluster_with(api.clone(), &[("HP_K8S_CA_FILE", right.to_str().unwrap())]).await;
    assert_eq!(c.info().await["kubernetes"]["reachable"], true);
    assert_eq!(
        c.post("exists", name_body(APP)).await.json(),
        json!({"exists": false})
    );
    drop(c);

    let c = cluster_with(api.clone(), &[("HP_K8S_CA_FILE", wrong.to_str().unwrap())]).await;
    assert_eq!(c.info().await["kubernetes"]["reachable"], false);
    c.post("exists", name_body(APP))
        .await
        .assert(503, "Error communicating with Kubernetes API");
    drop(c);

    let c = cluster_with(
        api,
        &[
            ("HP_K8S_CA_FILE", wrong.to_str().unwrap()),
            ("HP_K8S_VERIFY_SSL", "false"),
        ],
    )
    .await;
    assert_eq!(
        c.post("exists", name_body(APP)).await.json(),
        json!({"exists": false})
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_or_unconfigured_backend_answers_harps_503() {
    let nc = StubNextcloud::start().await;
    let harp = tokio::task::block_in_place(|| Harp::start(&[("NC_INSTANCE_URL", &nc.url())]));
    let c = Cluster {
        harp,
        nc,
        api: FakeK8s::start(FakeOptions::default()).await,
    };
    assert_eq!(c.info().await["kubernetes"], json!({"enabled": false}));
    c.post("exists", name_body(APP))
        .await
        .assert(503, "Kubernetes backend is disabled in HaRP.");
    // Unknown operations and other methods, as aiohttp's router.
    c.post("scale", name_body(APP))
        .await
        .assert(404, "404: Not Found");
    let resp = client()
        .get(c.harp.url("/exapps/app_api/k8s/exapp/exists"))
        .header("harp-shared-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    // Without the key: HaRP's 401 (and a strike), as for every control route.
    let resp = client()
        .post(c.harp.url("/exapps/app_api/k8s/exapp/exists"))
        .body(name_body(APP).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    drop(c.harp);

    let nc = StubNextcloud::start().await;
    let no_server = tokio::task::block_in_place(|| {
        Harp::start(&[("NC_INSTANCE_URL", &nc.url()), ("HP_K8S_ENABLED", "yes")])
    });
    let resp = client()
        .post(no_server.url("/exapps/app_api/k8s/exapp/exists"))
        .header("harp-shared-key", KEY)
        .body(name_body(APP).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.text().await.unwrap(),
        "Kubernetes API server is not configured."
    );

    let token_less = tokio::task::block_in_place(|| {
        Harp::start(&[
            ("NC_INSTANCE_URL", &nc.url()),
            ("HP_K8S_ENABLED", "1"),
            ("HP_K8S_API_SERVER", "http://127.0.0.1:9"),
            ("HP_K8S_BEARER_TOKEN_FILE", "/nonexistent/token"),
        ])
    });
    let resp = client()
        .post(token_less.url("/exapps/app_api/k8s/exapp/exists"))
        .header("harp-shared-key", KEY)
        .body(name_body(APP).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.text().await.unwrap(),
        "Kubernetes token is not configured."
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_before_the_api_sees_it() {
    let c = cluster(&[]).await;
    c.api.clear_requests();
    c.post_raw("create", "{not json".into())
        .await
        .assert(400, "Invalid JSON body");
    let cases: Vec<(&str, Value, &str)> = vec![
        ("exists", json!({}), "name\n  Field required [type=missing]"),
        ("create", json!({"name": APP}), "image_id\n  Field required"),
        (
            "create",
            json!({"name": "___", "image": "img"}),
            "\nname\n  Value error",
        ),
        (
            "create",
            json!({"name": "a/../b", "image": "img"}),
            "\nname\n  Value error",
        ),
        (
            "create",
            json!({"name": APP, "image": "img", "environment_variables": ["NO_EQUALS"]}),
            "environment_variables.0\n  Value error",
        ),
        (
            "create",
            json!({"name": APP, "image": "img", "resource_limits": {"memory": -5}}),
            "resource_limits.memory\n  Input should be greater than or equal to 0",
        ),
        (
            "create",
            json!({"name": APP, "image": "img", "resource_limits": {"nanoCPUs": 1e300}}),
            "resource_limits.nanoCPUs",
        ),
        (
            "create",
            json!({"name": APP, "image": "img", "compute_device": "tpu"}),
            "Input should be 'cpu', 'rocm' or 'cuda'",
        ),
        (
            "expose",
            json!({"name": APP, "port": 80, "expose_type": "ingress"}),
            "Input should be 'nodeport', 'clusterip', 'loadbalancer' or 'manual'",
        ),
        (
            "expose",
            json!({"name": APP, "port": 80, "expose_type": "manual"}),
            "upstream_host is required when expose_type='manual'",
        ),
        (
            "expose",
            json!({"name": APP, "port": 70000}),
            "less than or equal to 65535",
        ),
        (
            "remove",
            json!({"name": APP, "remove_data": "maybe"}),
            "remove_data\n  Input should be a valid boolean",
        ),
    ];
    for (op, body, needle) in cases {
        let a = c.post(op, body.clone()).await;
        assert_eq!(a.status, 400, "{op} {body}: {}", a.body);
        assert!(
            a.body.starts_with("Payload validation error: ") && a.body.contains(needle),
            "{op} {body}: {:?} lacks {needle:?}",
            a.body
        );
    }
    assert!(
        c.api.requests().is_empty(),
        "nothing reached the API: {:?}",
        c.api.requests()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_and_check_config_report_the_api_and_missing_permissions() {
    let c = cluster(&[]).await;
    let env: Vec<(String, String)> = vec![
        ("HP_SHARED_KEY".into(), KEY.into()),
        ("NC_INSTANCE_URL".into(), c.nc.url()),
        ("HP_K8S_ENABLED".into(), "true".into()),
        ("HP_K8S_API_SERVER".into(), c.api.url()),
        ("HP_K8S_BEARER_TOKEN".into(), c.api.token()),
        ("HP_OPS_ADDRESS".into(), c.harp.ops_addr().to_string()),
        ("HP_EXAPPS_ADDRESS".into(), c.harp.http_addr().to_string()),
    ];
    let run = |args: &[&str], env: &[(String, String)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_harp"))
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run harp");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (_, out) = tokio::task::block_in_place(|| run(&["doctor"], &env));
    assert!(out.contains("ok    kubernetes: the API server at"), "{out}");
    assert!(
        out.contains("ok    kubernetes rbac: the token may do all 13 verbs"),
        "{out}"
    );

    c.api.deny("delete", "persistentvolumeclaims");
    let (code, out) = tokio::task::block_in_place(|| run(&["doctor"], &env));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL  kubernetes rbac: not allowed: delete persistentvolumeclaims"),
        "{out}"
    );
    assert!(out.contains("deploy/kubernetes/role.yaml"), "{out}");

    let mut wrong_token = env.clone();
    wrong_token.retain(|(k, _)| k != "HP_K8S_BEARER_TOKEN");
    wrong_token.push(("HP_K8S_BEARER_TOKEN".into(), "nope".into()));
    let (_, out) = tokio::task::block_in_place(|| run(&["doctor"], &wrong_token));
    assert!(
        out.contains("FAIL  kubernetes: ") && out.contains("401"),
        "{out}"
    );
    assert!(!out.contains("nope"), "the token is never printed: {out}");

    // check-config: the token masked, an unreadable token file and CA reported.
    let (code, out) = tokio::task::block_in_place(|| run(&["check-config"], &env));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("HP_K8S_BEARER_TOKEN=********"), "{out}");
    assert!(!out.contains(&c.api.token()), "{out}");
    let mut files = env.clone();
    files.retain(|(k, _)| k != "HP_K8S_BEARER_TOKEN");
    files.push((
        "HP_K8S_BEARER_TOKEN_FILE".into(),
        "/nonexistent/token".into(),
    ));
    files.push(("HP_K8S_CA_FILE".into(), "/nonexistent/ca.crt".into()));
    let (code, out) = tokio::task::block_in_place(|| run(&["check-config"], &files));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("HP_K8S_BEARER_TOKEN_FILE=/nonexistent/token: cannot be read"),
        "{out}"
    );
    assert!(
        out.contains("HP_K8S_CA_FILE=/nonexistent/ca.crt: cannot be read"),
        "{out}"
    );
}
