//! The Docker sidecar (`POST /exapps/app_api/docker/exapp/*`, HaRP §8, checklist B48-B60).
//!
//! Two kinds of engine:
//! - this machine's real Docker engine through `docker-engine-port: 24000`, which harp maps to
//!   the local socket because nothing listens on 127.0.0.1:24000. The test images are built
//!   here from tests/docker_images/ and Debian's static busybox (no registry); every container,
//!   volume, network and image a test makes is removed by a drop guard, also on failure.
//! - a recording stub engine on a loopback port, for request bodies (GPU devices) and statuses
//!   a real engine does not produce on demand (500s).
//!
//! Tests that need the real engine are skipped, loudly, only when no engine answers on
//! /var/run/docker.sock.

mod common;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ExecConfig, HostConfig, Mount, MountType, NetworkCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, RemoveContainerOptions, TagImageOptions,
};
use bollard::{Docker, API_DEFAULT_VERSION};
use common::docker::{
    build_image, docker_cli, real_engine, unique, volume_exists, Answer, Cleanup, BUSYBOX,
    LOCAL_ENGINE, SOCKET,
};
use common::{ClosedPort, Harp, SilentBackend, TempDir, KEY};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Calling harp.

/// `POST /exapps/app_api/docker/exapp/<op>` with the key and `docker-engine-port` (if any).
async fn call_raw(harp: &Harp, op: &str, port: Option<&str>, body: &str) -> Answer {
    let mut req = common::client()
        .post(harp.url(&format!("/exapps/app_api/docker/exapp/{op}")))
        .header("harp-shared-key", KEY)
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(150))
        .body(body.to_string());
    if let Some(port) = port {
        req = req.header("docker-engine-port", port);
    }
    Answer::of(req).await
}

async fn call(harp: &Harp, port: u16, op: &str, body: Value) -> Answer {
    call_raw(harp, op, Some(&port.to_string()), &body.to_string()).await
}

// ---------------------------------------------------------------------------------------------
// The real engine.

/// Tags of the shared test images.
struct Images {
    base: String,
    healthy: String,
    unhealthy: String,
    exits: String,
}

static IMAGES: tokio::sync::OnceCell<Images> = tokio::sync::OnceCell::const_new();
/// Every image tag this process made, removed when it exits.
static MADE_IMAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

extern "C" fn remove_made_images() {
    let tags = MADE_IMAGES.lock().map(|t| t.clone()).unwrap_or_default();
    if !tags.is_empty() {
        let _ = Command::new("docker")
            .args(["rmi", "-f"])
            .args(&tags)
            .output();
    }
}

fn remember_image(tag: &str) {
    let mut tags = MADE_IMAGES.lock().unwrap();
    if tags.is_empty() {
        // The images are shared by the tests of this binary, so they go when the process
        // exits (libtest exits through `exit`, which runs atexit handlers).
        unsafe { libc::atexit(remove_made_images) };
    }
    tags.push(tag.to_string());
}

/// The test images, built once per test binary from tests/docker_images/.
async fn images() -> &'static Images {
    IMAGES
        .get_or_init(|| async {
            let repo = unique("harp-rs-test-");
            let tag = |target: &str| format!("{repo}:{target}");
            let images = Images {
                base: tag("base"),
                healthy: tag("healthy"),
                unhealthy: tag("unhealthy"),
                exits: tag("exits"),
            };
            let context = TempDir::new("docker-image");
            let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/docker_images");
            for file in ["Dockerfile", "os-release", "update-ca-certificates"] {
                std::fs::copy(sources.join(file), context.join(file)).expect("copy build context");
            }
            std::fs::copy(BUSYBOX, context.join("busybox")).expect("copy busybox");
            use std::os::unix::fs::PermissionsExt;
            for exe in ["busybox", "update-ca-certificates"] {
                std::fs::set_permissions(context.join(exe), std::fs::Permissions::from_mode(0o755))
                    .unwrap();
            }
            for (target, tag) in [
                ("base", &images.base),
                ("healthy", &images.healthy),
                ("unhealthy", &images.unhealthy),
                ("exits", &images.exits),
            ] {
                remember_image(tag);
                docker_cli(&[
                    "build",
                    "-q",
                    "--target",
                    target,
                    "-t",
                    tag,
                    context.path().to_str().unwrap(),
                ])
                .await;
            }
            images
        })
        .await
}

/// A test on the real engine: harp using the local socket, a client for checks, and everything
/// the test creates, removed on drop.
struct RealTest {
    docker: Docker,
    harp: Harp,
    cleanup: Cleanup,
}

impl RealTest {
    /// `None` (after a loud message) when this machine has no engine.
    async fn start() -> Option<RealTest> {
        if !real_engine("the Docker sidecar").await {
            return None;
        }
        let docker = Docker::connect_with_unix(SOCKET, 120, API_DEFAULT_VERSION)
            .expect("client for the Docker socket")
            .negotiate_version()
            .await
            .expect("Docker API version");
        let harp = Harp::start(&[("HP_DOCKER_SOCKET", SOCKET)]);
        Some(RealTest {
            docker,
            harp,
            cleanup: Cleanup::default(),
        })
    }

    /// A fresh app id; its container and volume are cleaned up.
    fn app(&self) -> String {
        let app = unique("harptest");
        self.cleanup.container(&format!("nc_app_{app}"));
        self.cleanup.volume(&format!("nc_app_{app}_data"));
        app
    }

    async fn call(&self, op: &str, body: Value) -> Answer {
        call(&self.harp, LOCAL_ENGINE, op, body).await
    }

    /// `create` through harp, which must answer 201.
    async fn create(&self, app: &str, image: &str, extra: Value) -> String {
        let mut body = json!({"name": app, "instance_id": "", "image_id": image,
                              "network_mode": "bridge", "restart_policy": "no"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let out = self.call("create", body).await;
        assert_eq!(out.status, 201, "{}", out.body);
        let id = out.json()["id"].as_str().unwrap().to_string();
        assert_eq!(out.json()["name"], format!("nc_app_{app}"));
        id
    }

    async fn inspect(&self, container: &str) -> bollard::models::ContainerInspectResponse {
        self.docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .unwrap_or_else(|e| panic!("inspect {container}: {e}"))
    }

    async fn exists(&self, container: &str) -> bool {
        self.docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .is_ok()
    }

    /// Runs `cmd` in a running container and returns its output.
    async fn exec(&self, container: &str, cmd: &[&str]) -> String {
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let exec = self.docker.create_exec(container, config).await.unwrap();
        let started = self
            .docker
            .start_exec(&exec.id, None::<StartExecOptions>)
            .await
            .unwrap();
        let StartExecResults::Attached { mut output, .. } = started else {
            panic!("exec detached")
        };
        let mut text = Vec::new();
        while let Some(frame) = output.next().await {
            text.extend_from_slice(frame.unwrap().as_ref());
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// Waits (up to 20 s) until the container's state is `status`.
    async fn wait_state(&self, container: &str, status: &str) {
        for _ in 0..200 {
            let info = self.inspect(container).await;
            if info.state.and_then(|s| s.status).map(|s| s.to_string()) == Some(status.into()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{container} never reached state {status}");
    }

    /// An image of its own, with a single tag, derived from `base` (a label makes it distinct).
    async fn own_image(&self, base: &str, tag: &str) {
        self.cleanup.image(tag);
        let dir = TempDir::new("docker-own-image");
        std::fs::write(dir.join("Dockerfile"), format!("FROM {base}\n")).unwrap();
        build_image(&dir, tag).await;
    }
}

// ---------------------------------------------------------------------------------------------
// A recording stub engine.

#[derive(Clone, Debug)]
struct EngineCall {
    method: String,
    /// Path without bollard's `/vX.Y` prefix.
    path: String,
    query: String,
    body: Value,
}

type Script = Arc<dyn Fn(&str, &str) -> (u16, String) + Send + Sync>;

/// Answers like Docker: `GET /version` says API 1.41; everything else as `script(method,
/// path)` decides. Records every call but `/version`.
struct StubEngine {
    port: u16,
    calls: Arc<Mutex<Vec<EngineCall>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StubEngine {
    async fn start(script: impl Fn(&str, &str) -> (u16, String) + Send + Sync + 'static) -> Self {
        let script: Script = Arc::new(script);
        let calls: Arc<Mutex<Vec<EngineCall>>> = Arc::default();
        let log = calls.clone();
        let app = Router::new().fallback(move |req: Request| {
            let (script, log) = (script.clone(), log.clone());
            async move {
                let method = req.method().to_string();
                let raw_path = req.uri().path().to_string();
                let query = req.uri().query().unwrap_or("").to_string();
                let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                    .await
                    .unwrap_or_default();
                let path = strip_version(&raw_path);
                let (status, answer) = if path == "/version" {
                    (
                        200,
                        r#"{"ApiVersion":"1.41","MinAPIVersion":"1.12","Version":"20.10.0"}"#
                            .to_string(),
                    )
                } else {
                    log.lock().unwrap().push(EngineCall {
                        method: method.clone(),
                        path: path.clone(),
                        query,
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    });
                    script(&method, &path)
                };
                Response::builder()
                    .status(StatusCode::from_u16(status).unwrap())
                    .header("content-type", "application/json")
                    .body(Body::from(answer))
                    .unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StubEngine { port, calls, task }
    }

    fn calls(&self) -> Vec<EngineCall> {
        self.calls.lock().unwrap().clone()
    }

    fn lines(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|c| {
                if c.query.is_empty() {
                    format!("{} {}", c.method, c.path)
                } else {
                    format!("{} {}?{}", c.method, c.path, c.query)
                }
            })
            .collect()
    }
}

impl Drop for StubEngine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn strip_version(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some(slash) = rest.find('/') {
            if rest[..slash]
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.')
            {
                return rest[slash..].to_string();
            }
        }
    }
    path.to_string()
}

const VOLUME: &str =
    r#"{"Name":"v","Driver":"local","Mountpoint":"/v","Labels":{},"Scope":"local","Options":{}}"#;
const CREATED: &str = r#"{"Id":"c0ffee","Warnings":[]}"#;
const FAILED: &str = r#"{"message":"boom"}"#;

fn stub_harp() -> Harp {
    Harp::start(&[])
}

// =============================================================================================
// B49 and request validation (no engine needed).

#[tokio::test(flavor = "multi_thread")]
async fn b49_missing_or_invalid_engine_port_is_400() {
    let harp = stub_harp();
    let body = r#"{"name":"app"}"#;
    call_raw(&harp, "exists", None, body)
        .await
        .assert_text(400, "Missing 'docker-engine-port' header.");
    call_raw(&harp, "exists", Some(""), body)
        .await
        .assert_text(400, "Missing 'docker-engine-port' header.");
    for bad in ["abc", "70000", "0"] {
        call_raw(&harp, "start", Some(bad), body).await.assert_text(
            400,
            &format!("Invalid 'docker-engine-port' header value: {bad}"),
        );
    }
    // The header is checked before the body.
    call_raw(&harp, "create", Some("abc"), "not json")
        .await
        .assert_text(400, "Invalid 'docker-engine-port' header value: abc");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_bodies_are_400_before_any_docker_call() {
    let engine = StubEngine::start(|_, _| (500, FAILED.into())).await;
    let harp = stub_harp();
    let port = Some(engine.port.to_string());
    let port = port.as_deref();
    for op in [
        "exists",
        "create",
        "remove",
        "image_remove",
        "install_certificates",
    ] {
        call_raw(&harp, op, port, "{nope")
            .await
            .assert_text(400, "Invalid JSON body");
        call_raw(&harp, op, port, "")
            .await
            .assert_text(400, "Invalid JSON body");
    }
    let out = call_raw(&harp, "exists", port, "{}").await;
    out.assert_text(
        400,
        "Payload validation error: 1 validation error for ExAppName\nname\n  Field required [type=missing]",
    );
    // Lax mode: strings are not coerced from numbers.
    let out = call_raw(&harp, "start", port, r#"{"name": 5}"#).await;
    assert_eq!(out.status, 400);
    assert!(
        out.body.starts_with("Payload validation error: "),
        "{}",
        out.body
    );
    assert!(
        out.body
            .contains("\nname\n  Input should be a valid string"),
        "{}",
        out.body
    );
    let out = call_raw(
        &harp,
        "create",
        port,
        r#"{"name":"app","image_id":"img","compute_device":"tpu"}"#,
    )
    .await;
    assert_eq!(out.status, 400);
    assert!(out.body.contains("\ncompute_device\n"), "{}", out.body);
    let out = call_raw(&harp, "image_remove", port, r#"{"image_ref":""}"#).await;
    assert_eq!(out.status, 400);
    assert!(out.body.contains("\nimage_ref\n"), "{}", out.body);
    assert!(engine.calls().is_empty(), "{:?}", engine.lines());
}

#[tokio::test(flavor = "multi_thread")]
async fn q16_names_outside_docker_grammar_never_reach_a_docker_url() {
    let engine = StubEngine::start(|_, _| (200, "{}".into())).await;
    let harp = stub_harp();
    for (op, body, field) in [
        ("exists", json!({"name": "../../images/x"}), "name"),
        (
            "start",
            json!({"name": "app", "instance_id": "a/b"}),
            "instance_id",
        ),
        (
            "stop",
            json!({"name": "app", "role_suffix": "x?y=1"}),
            "role_suffix",
        ),
        (
            "remove",
            json!({"name": "app%2F..", "remove_data": true}),
            "name",
        ),
        ("create", json!({"name": "a b", "image_id": "img"}), "name"),
        (
            "image_remove",
            json!({"image_ref": "../containers/x"}),
            "image_ref",
        ),
        (
            "image_remove",
            json!({"image_ref": "img?force=1"}),
            "image_ref",
        ),
    ] {
        let out = call(&harp, engine.port, op, body).await;
        assert_eq!(out.status, 400, "{op}: {}", out.body);
        assert!(
            out.body.starts_with("Payload validation error: ")
                && out.body.contains(&format!("\n{field}\n  Value error")),
            "{op}: {}",
            out.body
        );
    }
    assert!(engine.calls().is_empty(), "{:?}", engine.lines());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_operation_is_404() {
    let harp = stub_harp();
    call_raw(&harp, "explode", Some("24000"), "{}")
        .await
        .assert_text(404, "404: Not Found");
}

#[tokio::test(flavor = "multi_thread")]
async fn engine_refusing_connections_is_503() {
    let closed = ClosedPort::new();
    let harp = stub_harp();
    let expected = format!(
        "Could not connect to Docker Engine on port {}",
        closed.port()
    );
    for op in [
        "exists",
        "start",
        "stop",
        "wait_for_start",
        "remove",
        "install_certificates",
    ] {
        call(&harp, closed.port(), op, json!({"name": "app"}))
            .await
            .assert_text(503, &expected);
    }
    call(
        &harp,
        closed.port(),
        "create",
        json!({"name": "app", "image_id": "img"}),
    )
    .await
    .assert_text(503, &expected);
    call(
        &harp,
        closed.port(),
        "image_remove",
        json!({"image_ref": "img"}),
    )
    .await
    .assert_text(503, &expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_engine_makes_exists_time_out_after_15_s_with_504() {
    let silent = SilentBackend::start().await;
    let harp = stub_harp();
    let started = std::time::Instant::now();
    call(&harp, silent.port(), "exists", json!({"name": "app"}))
        .await
        .assert_text(
            504,
            &format!(
                "Timeout communicating with Docker Engine on port {}",
                silent.port()
            ),
        );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(14) && took < Duration::from_secs(25),
        "{took:?}"
    );
}

// =============================================================================================
// Stub engine: request bodies and statuses a real engine does not give on demand.

#[tokio::test(flavor = "multi_thread")]
async fn b50_create_sends_harps_container_body_with_cuda() {
    let engine = StubEngine::start(|method, path| match (method, path) {
        ("GET", "/volumes/nc_app_app_data") => (404, FAILED.into()),
        ("POST", "/volumes/create") => (201, VOLUME.into()),
        ("POST", "/containers/create") => (201, CREATED.into()),
        _ => (500, FAILED.into()),
    })
    .await;
    let harp = stub_harp();
    let out = call(
        &harp,
        engine.port,
        "create",
        json!({"name": "app", "instance_id": "", "image_id": "img", "network_mode": "net1",
               "compute_device": "cuda", "environment_variables": ["A=1", "B=two"],
               "mount_points": [{"source": "/a", "target": "/b", "mode": "ro"},
                                {"source": "/c", "target": "/d"}],
               "resource_limits": {"memory": 1, "nanoCPUs": 2}, "start_container": true}),
    )
    .await;
    out.assert_json(201, json!({"id": "c0ffee", "name": "nc_app_app"}));
    assert_eq!(
        engine.lines(),
        [
            "GET /volumes/nc_app_app_data",
            "POST /volumes/create",
            "POST /containers/create?name=nc_app_app&platform="
        ]
    );
    let calls = engine.calls();
    assert_eq!(calls[1].body["Name"], "nc_app_app_data");
    let body = &calls[2].body;
    assert_eq!(body["Image"], "img");
    assert_eq!(body["Hostname"], "app");
    assert_eq!(body["Env"], json!(["A=1", "B=two"]));
    let host = &body["HostConfig"];
    assert_eq!(host["NetworkMode"], "net1");
    assert_eq!(host["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(host["Memory"], 1);
    assert_eq!(host["NanoCpus"], 2);
    assert_eq!(
        host["Mounts"],
        json!([
            {"Type": "volume", "Source": "nc_app_app_data", "Target": "/nc_app_app_data", "ReadOnly": false},
            {"Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": true},
            {"Type": "bind", "Source": "/c", "Target": "/d", "ReadOnly": false}
        ])
    );
    assert_eq!(
        host["DeviceRequests"],
        json!([{"Driver": "nvidia", "Count": -1, "Capabilities": [["compute", "utility"]]}])
    );
    assert!(host.get("Devices").is_none());
    assert_eq!(
        body["NetworkingConfig"]["EndpointsConfig"]["net1"]["Aliases"],
        json!(["app"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn b50_b52_create_with_rocm_roles_and_an_existing_volume() {
    let engine = StubEngine::start(|method, path| match (method, path) {
        ("GET", "/volumes/nc_app_i1_app_data") => (200, VOLUME.into()),
        ("POST", "/containers/create") => (201, CREATED.into()),
        _ => (500, FAILED.into()),
    })
    .await;
    let harp = stub_harp();
    let out = call(
        &harp,
        engine.port,
        "create",
        json!({"name": "app", "instance_id": "i1", "role_suffix": "rp", "image": "img",
               "compute_device": "rocm"}),
    )
    .await;
    out.assert_json(201, json!({"id": "c0ffee", "name": "nc_app_i1_app_rp"}));
    assert_eq!(
        engine.lines(),
        [
            "GET /volumes/nc_app_i1_app_data",
            "POST /containers/create?name=nc_app_i1_app_rp&platform="
        ]
    );
    let body = &engine.calls()[1].body;
    let host = &body["HostConfig"];
    assert_eq!(host["NetworkMode"], "bridge");
    assert!(body.get("NetworkingConfig").is_none(), "{body}");
    assert_eq!(host["Mounts"][0]["Target"], "/nc_app_i1_app_data");
    assert_eq!(
        host["Devices"],
        json!([
            {"PathOnHost": "/dev/kfd", "PathInContainer": "/dev/kfd", "CgroupPermissions": "rwm"},
            {"PathOnHost": "/dev/dri", "PathInContainer": "/dev/dri", "CgroupPermissions": "rwm"}
        ])
    );
    assert!(host.get("DeviceRequests").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn b51_create_conflicts_and_volume_failures() {
    let engine = StubEngine::start(|method, path| match (method, path) {
        ("GET", "/volumes/nc_app_taken_data") => (200, VOLUME.into()),
        ("POST", "/containers/create") => (409, FAILED.into()),
        ("GET", "/volumes/nc_app_novol_data") => (404, FAILED.into()),
        ("POST", "/volumes/create") => (500, FAILED.into()),
        ("GET", "/volumes/nc_app_broken_data") => (500, FAILED.into()),
        _ => (500, FAILED.into()),
    })
    .await;
    let harp = stub_harp();
    let create = |name: &str| json!({"name": name, "image_id": "img"});
    call(&harp, engine.port, "create", create("taken"))
        .await
        .assert_text(409, "Container with name 'nc_app_taken' already exists.");
    call(&harp, engine.port, "create", create("novol"))
        .await
        .assert_text(
            503,
            "Failed to create volume 'nc_app_novol_data': Status 500",
        );
    call(&harp, engine.port, "create", create("broken"))
        .await
        .assert_text(
            503,
            "Error inspecting volume 'nc_app_broken_data': Status 500",
        );
}

#[tokio::test(flavor = "multi_thread")]
async fn b54_b55_q13_unexpected_engine_statuses_are_503() {
    let engine = StubEngine::start(|_, _| (500, FAILED.into())).await;
    let harp = stub_harp();
    let app = json!({"name": "app"});
    call(&harp, engine.port, "start", app.clone())
        .await
        .assert_text(
            503,
            "Error starting container 'nc_app_app' via Docker Engine: Status 500",
        );
    call(&harp, engine.port, "stop", app.clone())
        .await
        .assert_text(
            503,
            "Error stopping container 'nc_app_app' via Docker Engine: Status 500",
        );
    // Q13: HaRP answered 500 here; the intended 503.
    call(&harp, engine.port, "exists", app.clone())
        .await
        .assert_text(503, "Error communicating with Docker Engine: Status 500");
    call(&harp, engine.port, "wait_for_start", app.clone())
        .await
        .assert_text(503, "Error inspecting container 'nc_app_app': Status 500");
    call(&harp, engine.port, "remove", app.clone())
        .await
        .assert_text(
            503,
            "Error removing container 'nc_app_app' via Docker Engine: Status 500",
        );
    call(&harp, engine.port, "install_certificates", app)
        .await
        .assert_text(503, "Failed to inspect container: Status 500");
    call(
        &harp,
        engine.port,
        "create",
        json!({"name": "app", "image_id": "i"}),
    )
    .await
    .assert_text(503, "Error inspecting volume 'nc_app_app_data': Status 500");
}

#[tokio::test(flavor = "multi_thread")]
async fn b54_b55_start_and_stop_map_304_and_404() {
    let engine = StubEngine::start(|_, path| match path {
        "/containers/nc_app_up/start" | "/containers/nc_app_down/stop" => (304, String::new()),
        "/containers/nc_app_new/start" | "/containers/nc_app_new/stop" => (204, String::new()),
        _ => (404, FAILED.into()),
    })
    .await;
    let harp = stub_harp();
    let app = |name: &str| json!({"name": name});
    call(&harp, engine.port, "start", app("new"))
        .await
        .assert_no_content();
    call(&harp, engine.port, "start", app("up"))
        .await
        .assert_text(200, "Container already started");
    call(&harp, engine.port, "start", app("gone"))
        .await
        .assert_text(404, "Container 'nc_app_gone' not found.");
    call(&harp, engine.port, "stop", app("new"))
        .await
        .assert_no_content();
    call(&harp, engine.port, "stop", app("down"))
        .await
        .assert_text(200, "Container already stopped");
    call(&harp, engine.port, "stop", app("gone"))
        .await
        .assert_text(404, "Container 'nc_app_gone' not found.");
    // No `t` on stop: Docker's own grace period.
    assert!(
        engine
            .lines()
            .contains(&"POST /containers/nc_app_new/stop".to_string()),
        "{:?}",
        engine.lines()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn b57_remove_sequence_and_volume_statuses() {
    let engine = StubEngine::start(|method, path| match (method, path) {
        ("DELETE", "/containers/nc_app_app") => (204, String::new()),
        ("DELETE", "/containers/nc_app_gone") => (404, FAILED.into()),
        ("DELETE", "/containers/nc_app_busy") => (409, FAILED.into()),
        ("DELETE", "/volumes/nc_app_app_data") => (204, String::new()),
        ("DELETE", "/volumes/nc_app_gone_data") => (409, FAILED.into()),
        ("DELETE", "/volumes/nc_app_busy_data") => (500, FAILED.into()),
        _ => (500, FAILED.into()),
    })
    .await;
    let harp = stub_harp();
    let remove = |name: &str, data: bool| json!({"name": name, "remove_data": data});
    call(&harp, engine.port, "remove", remove("app", true))
        .await
        .assert_no_content();
    assert_eq!(
        engine.lines(),
        [
            "DELETE /containers/nc_app_app?v=false&force=true&link=false",
            "DELETE /volumes/nc_app_app_data"
        ]
    );
    call(&harp, engine.port, "remove", remove("gone", true))
        .await
        .assert_text(
            409,
            "Volume 'nc_app_gone_data' is in use and could not be removed.",
        );
    call(&harp, engine.port, "remove", remove("busy", true))
        .await
        .assert_text(
            503,
            "Error removing volume 'nc_app_busy_data' via Docker Engine: Status 500",
        );
    // Without remove_data only the container goes; a 409 on it counts as removed.
    let before = engine.calls().len();
    call(&harp, engine.port, "remove", remove("busy", false))
        .await
        .assert_no_content();
    assert_eq!(engine.calls().len(), before + 1, "{:?}", engine.lines());
}

#[tokio::test(flavor = "multi_thread")]
async fn b58_image_remove_quotes_the_reference_and_maps_statuses() {
    let engine = StubEngine::start(|method, path| match (method, path) {
        ("GET", "/images/repo%2Fimg%3A1/json") => (200, r#"{"Id":"sha256:1","Size":1234}"#.into()),
        ("DELETE", "/images/repo%2Fimg%3A1") => (
            200,
            r#"[{"Untagged":"repo/img:1"},{"Deleted":"sha256:1"}]"#.into(),
        ),
        ("GET", "/images/tagged%3A2/json") => (200, r#"{"Id":"sha256:2","Size":99}"#.into()),
        ("DELETE", "/images/tagged%3A2") => (200, r#"[{"Untagged":"tagged:2"}]"#.into()),
        ("GET", "/images/used/json") => (500, FAILED.into()),
        ("DELETE", "/images/used") => (409, FAILED.into()),
        ("GET", "/images/racy/json") => (200, r#"{"Size":5}"#.into()),
        ("DELETE", "/images/racy") => (404, FAILED.into()),
        ("GET", "/images/odd/json") => (200, r#"{"Size":5}"#.into()),
        ("DELETE", "/images/odd") => (500, FAILED.into()),
        _ => (404, FAILED.into()),
    })
    .await;
    let harp = stub_harp();
    let remove = |r: &str| json!({"image_ref": r});
    call(&harp, engine.port, "image_remove", remove("repo/img:1"))
        .await
        .assert_json(200, json!({"deleted": true, "bytes_freed": 1234}));
    call(&harp, engine.port, "image_remove", remove("tagged:2"))
        .await
        .assert_json(200, json!({"deleted": true, "bytes_freed": 0}));
    call(&harp, engine.port, "image_remove", remove("used"))
        .await
        .assert_json(200, json!({"deleted": false, "reason": "in_use"}));
    call(&harp, engine.port, "image_remove", remove("missing"))
        .await
        .assert_json(
            200,
            json!({"deleted": true, "bytes_freed": 0, "reason": "not_found"}),
        );
    call(&harp, engine.port, "image_remove", remove("racy"))
        .await
        .assert_json(
            200,
            json!({"deleted": true, "bytes_freed": 0, "reason": "not_found"}),
        );
    call(&harp, engine.port, "image_remove", remove("odd"))
        .await
        .assert_text(
            503,
            "Error removing image 'odd' via Docker Engine: Status 500",
        );
    let lines = engine.lines();
    assert_eq!(lines[0], "GET /images/repo%2Fimg%3A1/json");
    assert_eq!(
        lines[1],
        "DELETE /images/repo%2Fimg%3A1?force=false&noprune=false"
    );
    // An inspect 404 ends it: no delete.
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("DELETE /images/missing")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn b56_wait_for_start_polls_while_starting_and_reports_other_states() {
    let polls = Arc::new(AtomicUsize::new(0));
    let seen = polls.clone();
    let engine = StubEngine::start(move |_, path| match path {
        "/containers/nc_app_slow/json" => {
            // Two polls in `starting`, then healthy.
            let health = if seen.fetch_add(1, Ordering::SeqCst) < 2 {
                "starting"
            } else {
                "healthy"
            };
            let state = json!({"State": {"Status": "running", "Running": true,
                                         "Health": {"Status": health}}});
            (200, state.to_string())
        }
        "/containers/nc_app_paused/json" => (
            200,
            json!({"State": {"Status": "paused", "Health": null}}).to_string(),
        ),
        _ => (404, FAILED.into()),
    })
    .await;
    let harp = stub_harp();
    let started = std::time::Instant::now();
    call(
        &harp,
        engine.port,
        "wait_for_start",
        json!({"name": "slow"}),
    )
    .await
    .assert_json(
        200,
        json!({"started": true, "status": "running", "health": "healthy"}),
    );
    assert_eq!(polls.load(Ordering::SeqCst), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "0.5 s between polls"
    );
    // `Health: null` crashed HaRP's loop; here it is "no health check".
    call(
        &harp,
        engine.port,
        "wait_for_start",
        json!({"name": "paused"}),
    )
    .await
    .assert_json(
        200,
        json!({"started": false, "status": "paused", "health": null,
                   "reason": "non-recoverable state: paused"}),
    );
}

// =============================================================================================
// The real engine, through docker-engine-port 24000 → the local socket.

#[tokio::test(flavor = "multi_thread")]
async fn b48_b53_exists_reports_the_container_and_its_image() {
    let Some(t) = RealTest::start().await else {
        return;
    };
    let images = images().await;
    let app = t.app();
    t.call("exists", json!({"name": app, "instance_id": ""}))
        .await
        .assert_json(200, json!({"exists": false}));
    t.create(&app, &images.base, json!({})).await;
    t.call("exists", json!({"name": app, "instance_id": ""}))
        .await
        .assert_json(200, json!({"exists": true, "image_ref": images.base}));
}

#[tokio::test(flavor = "multi_thread")]
async fn b50_b52_create_makes_volume_container_network_alias_and_mounts() {
    let Some(t) = RealTest::start().await else {
        return;
    };
    let images = images().await;
    let app = unique("harptest");
    let (container, volume) = (
        format!("nc_app_i1_{app}_rp"),
        format!("nc_app_i1_{app}_data"),
    );
    t.cleanup.container(&container);
    t.cleanup.volume(&volume);
    let network = unique("harp-rs-test-net-");
    t.cleanup.network(&network);
    t.docker
        .create_network(NetworkCreateRequest {
            name: network.clone(),
            ..Default::default()
        })
        .await
        .expect("create network");
    let bind = TempDir::new("docker-bind");
    std::fs::write(bind.join("hello.txt"), "from the host").unwrap();
    let out = t
        .call(
            "create",
            json!({"name": app, "instance_id": "i1", "role_suffix": "rp", "image_id": images.base,
                   "network_mode": network, "environment_variables": ["APP_ID=x", "SPACED=a b"],
                   "restart_policy": "unless-stopped", "compute_device": "cpu",
                   "mount_points": [{"source": bind.path().to_str().unwrap(), "target": "/host", "mode": "ro"}],
                   "resource_limits": {"memory": 268435456, "nanoCPUs": 500000000},
                   "start_container": true}),
        )
        .await;
    assert_eq!(out.status, 201, "{}", out.body);
    assert_eq!(out.json()["name"], container.as_str());
    let info = t.inspect(&container).await;
    assert_eq!(Some(out.json()["id"].as_str().unwrap()), info.id.as_deref());
    let config = info.config.unwrap();
    assert_eq!(config.hostname.as_deref(), Some(app.as_str()));
    let env = config.env.unwrap();
    assert!(
        env.contains(&"APP_ID=x".into()) && env.contains(&"SPACED=a b".into()),
        "{env:?}"
    );
    let host = info.host_config.unwrap();
    assert_eq!(host.network_mode.as_deref(), Some(network.as_str()));
    assert_eq!(host.memory, Some(268435456));
    assert_eq!(host.nano_cpus, Some(500000000));
    assert_eq!(
        host.restart_policy
            .and_then(|r| r.name)
            .map(|n| n.to_string())
            .as_deref(),
        Some("unless-stopped")
    );
    let mounts = host.mounts.unwrap();
    assert_eq!(mounts.len(), 2, "{mounts:?}");
    assert_eq!(mounts[0].typ, Some(MountType::VOLUME));
    assert_eq!(mounts[0].source.as_deref(), Some(volume.as_str()));
    assert_eq!(
        mounts[0].target.as_deref(),
        Some(format!("/{volume}").as_str())
    );
    assert_eq!(mounts[1].typ, Some(MountType::BIND));
    assert_eq!(mounts[1].read_only, Some(true));
    let aliases = info
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|mut n| n.remove(&network))
        .and_then(|e| e.aliases)
        .unwrap_or_default();
    assert!(aliases.contains(&app), "{aliases:?}");
    assert!(volume_exists(&volume).await);
    // Running, it sees the volume at APP_PERSISTENT_STORAGE and the read-only bind mount.
    t.call(
        "start",
        json!({"name": app, "instance_id": "i1", "role_suffix": "rp"}),
    )
    .await
    .assert_no_content();
    assert_eq!(
        t.exec(&container, &["cat", "/host/hello.txt"]).await,
        "from the host"
    );
    let touch = t
        .exec(&container, &["touch", &format!("/{volume}/ok"), "/host/no"])
        .await;
    assert!(touch.contains("Read-only file system"), "{touch}");
    // B51 on the real engine: the name is taken.
    let again = t
        .call(
            "create",
            json!({"name": app, "instance_id": "i1", "role_suffix": "rp", "image_id": images.base}),
        )
        .await;
    again.assert_text(
        409,
        &format!("Container with name '{container}' already exists."),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn b54_b55_start_and_stop_on_the_real_engine() {
    let Some(t) = RealTest::start().await else {
        return;
    };
    let images = images().await;
    let app = t.app();
    let container = format!("nc_app_{app}");
    let name = json!({"name": app, "instance_id": ""});
    t.create(&app, &images.base, json!({})).await;
    t.call("start", name.clone()).await.assert_no_content();
    assert_eq!(
        t.inspect(&container).await.state.unwrap().running,
        Some(true)
    );
    t.call("start", name.clone())
        .await
        .assert_text(200, "Container already started");
    t.call("stop", name.clone()).await.assert_no_content();
    assert_eq!(
        t.inspect(&container).await.state.unwrap().running,
        Some(false)
    );
    t.call("stop", name.clone())
        .await
        .assert_text(200, "Container already stopped");
    let missing = json!({"name": unique("harptestmissing")});
    let missing_name = format!("nc_app_{}", missing["name"].as_str().unwrap());
    t.call("start", missing.clone())
        .await
        .assert_text(404, &format!("Container '{missing_name}' not found."));
    t.call("stop", missing)
        .await
        .assert_text(404, &format!("Container '{missing_name}' not found."));
}

#[tokio::test(flavor = "multi_thread")]
async fn b56_wait_for_start_running_without_health_check() {
    let Some(t) = RealTest::start().await else {
        return;
    };
    let images = images().await;
    let app = t.app();
    t.create(&app, &images.base, json!({})).await;
    t.call("start", json!({"name": app}))
        .await
        .assert_no_content();
    t.call("wait_for_start", json!({"name": app, "instance_id": ""}))
        .await
        .assert_json(
            200,
            json!({"started": true, "status": "running", "health": null}),
        );
}

#[tokio::test(flavor = "multi_thread")]
async fn b56_wait_for_start_waits_for_healthy() {
    let Some(t) = RealTest::start().await else {
        return;
    };
    let images = images().await;
    let app = t.app();
    t.create(&app, &images.healthy, json!({})).await;
    t.call("start", json!({"name": app}))
        .await
        .assert_no_content();
    t.call("wait_for_start", json!({"name": app}))
        .await
        .assert_json(
            200,
            json!({"started": true, "status": "running", "health": "healthy"}),
        );
}

#[tokio::test(flavor = "multi_thread")]
async fn b56_wait_for_start_unhealthy_is_started_with_a_reason() {
    let Some(t) = RealTest::start().await else {
        return;
    };
    let images = images().await;
    let app = t.app();
    t.create(&app, &images.unhealthy, json!({})).await;
    t.call("start", json!({"name": app}))
        .await
        .assert_no_content();
    t.call("wait_for_start", json!({"name": app}))
        .await
        .assert_json(
            200,
            json!({"started": true, "status": "running", "health": "unhealthy", "reason": "unhealthy"}),
        );
}

#[tokio::test(flavor = "multi_thread")]
async fn b56_wait_for_start_exited_is_non_recoverable() {
    let Some(t) = RealTest::start().await else {
        return;
    };
    let images = images().await;
    let app = t.app();
    t.create(&app, &images.exits, json!({"restart_policy": "no"}))
        .await;
    t.call("start", json!({"name": app}))
        .await
        .assert_no_content();
    t.wait_state(&format!("nc_app_{app}"), "exited").await;
    t.call("wait_for_start", json!({"name": app}))
        .await
        .assert_json(
            200,
            json!({"started": false, "status": "exited", "health": null,
                   "reason": "non-recoverable state: exited"}),
        );
}

#[tokio::test(flavor = "multi_thread")]
async fn b56_wait_for_start_missing_container() {
    let Some(t) = RealTest::start().await else {
        return;
    };
    t.call("wait_for_start", json!({"name": unique("harptestmissing")}))
        .await
        .assert_json(
            200,
            json!({"started": false, "status": "not_found", "reason": "container not found"}),
        );
}

#[tokio::test(flavor = "multi_thread")]
async fn b57_remove_with_and_without_data() {
    let Some(t) = RealTest::start().await else {
        return;
    };
    let images = images().await;
    let app = t.app();
    let (container, volume) = (format!("nc_app_{app}"), format!("nc_app_{app}_data"));
    t.create(&app, &images.base, json!({})).await;
    t.call("start", json!({"name": app}))
        .await
        .assert_no_content();
    // A running container is removed too (force), and the volume stays.
    t.call(
        "remove",
        json!({"name": app, "instance_id": "", "remove_data": false}),
    )
    .await
    .assert_no_content();
    assert!(!t.exists(&container).await);
    assert!(volume_exists(&volume).await);
    // Again, with the data: the container is already gone (404 counts as removed).
    t.call("remove", json!({"name": app, "remove_data": true}))
        .await
        .assert_no_content();
    assert!(!volume_exists(&volume).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn b57_volume_still_in_use_is_409() {
    let Some(t) = RealTest::start().await else {
        return;
    };
    let images = images().await;
    let app = t.app();
    let volume = format!("nc_app_{app}_data");
    t.create(&app, &images.base, json!({})).await;
    // Another container uses the ExApp's volume.
    let other = unique("harp-rs-test-user-");
    t.cleanup.container(&other);
    t.docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(other.clone()),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(images.base.clone()),
                host_config: Some(HostConfig {
                    mounts: Some(vec![Mount {
                        typ: Some(MountType::VOLUME),
                        source: Some(volume.clone()),
                        target: Some("/data".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create the other container");
    t.call("remove", json!({"name": app, "remove_data": true}))
        .await
        .assert_text(
            409,
            &format!("Volume '{volume}' is in use and could not be removed."),
        );
    assert!(!t.exists(&format!("nc_app_{app}")).await);
    assert!(volume_exists(&volume).await);
    t.docker
        .remove_container(&other, None::<RemoveContainerOptions>)
        .await
        .unwrap();
    t.call("remove", json!({"name": app, "remove_data": true}))
        .await
        .assert_no_content();
    assert!(!volume_exists(&volume).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn b58_image_remove_untags_deletes_and_refuses_images_in_use() {
    let Some(t) = RealTest::start().await else {
        return;
    };
    let images = images().await;
    // `repo/name:tag`, so the reference is quoted (`%2F`, `%3A`) on its way to Docker.
    let repo = unique("harp-rs-test/img-");
    let (own, second) = (format!("{repo}:1"), format!("{repo}:2"));
    t.own_image(&images.base, &own).await;
    t.cleanup.image(&second);
    t.docker
        .tag_image(
            &own,
            Some(TagImageOptions {
                repo: Some(repo.clone()),
                tag: Some("2".into()),
            }),
        )
        .await
        .unwrap();
    let size = t.docker.inspect_image(&own).await.unwrap().size.unwrap();
    assert!(size > 0);
    // Two tags: removing one only untags.
    t.call("image_remove", json!({"image_ref": second}))
        .await
        .assert_json(200, json!({"deleted": true, "bytes_freed": 0}));
    // In use by a container (even a stopped one): refused.
    let app = t.app();
    t.create(&app, &own, json!({})).await;
    t.call("image_remove", json!({"image_ref": own}))
        .await
        .assert_json(200, json!({"deleted": false, "reason": "in_use"}));
    t.call("remove", json!({"name": app}))
        .await
        .assert_no_content();
    // The last tag, unused: deleted, and its size reported.
    t.call("image_remove", json!({"image_ref": own}))
        .await
        .assert_json(200, json!({"deleted": true, "bytes_freed": size}));
    assert!(t.docker.inspect_image(&own).await.is_err());
    t.call("image_remove", json!({"image_ref": own}))
        .await
        .assert_json(
            200,
            json!({"deleted": true, "bytes_freed": 0, "reason": "not_found"}),
        );
}

const CERT_A: &str = "-----BEGIN CERTIFICATE-----\nMIIBaaaa\n-----END CERTIFICATE-----";
const CERT_B: &str = "-----BEGIN CERTIFICATE-----\nMIIBbbbb\n-----END CERTIFICATE-----";

/// The FRP client certificates harp hands to ExApps: harp's own if it generated them, else
/// written here.
fn frp_files(harp: &Harp) -> Vec<(&'static str, String)> {
    let dir = harp.certs_dir().join("frp");
    std::fs::create_dir_all(&dir).unwrap();
    ["ca.crt", "client.crt", "client.key"]
        .into_iter()
        .map(|name| {
            let path = dir.join(name);
            if !path.exists() {
                std::fs::write(&path, format!("test {name}\n")).unwrap();
            }
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn b59_install_certificates_on_a_stopped_debian_like_container() {
    let Some(t) = RealTest::start().await else {
        return;
    };
    let images = images().await;
    let frp = frp_files(&t.harp);
    let app = t.app();
    let container = format!("nc_app_{app}");
    t.create(&app, &images.base, json!({})).await;
    let bundle = format!("# Nextcloud's bundle\n{CERT_A}\n\nsome text\n{CERT_B}\n");
    t.call(
        "install_certificates",
        json!({"name": app, "instance_id": "", "system_certs_bundle": bundle,
               "install_frp_certs": true}),
    )
    .await
    .assert_no_content();
    // Left stopped, so AppAPI's following start is a 204.
    let state = t.inspect(&container).await.state.unwrap();
    assert_eq!(state.running, Some(false), "{state:?}");
    t.call("start", json!({"name": app}))
        .await
        .assert_no_content();
    let dir = "/usr/local/share/ca-certificates";
    assert_eq!(
        t.exec(&container, &["cat", &format!("{dir}/custom_ca_cert_0.crt")])
            .await,
        CERT_A
    );
    assert_eq!(
        t.exec(&container, &["cat", &format!("{dir}/custom_ca_cert_1.crt")])
            .await,
        CERT_B
    );
    // update-ca-certificates ran after the upload (the test image's stand-in rebuilds the bundle).
    let bundle_in_container = t
        .exec(&container, &["cat", "/etc/ssl/certs/ca-certificates.crt"])
        .await;
    assert_eq!(bundle_in_container, format!("{CERT_A}{CERT_B}"));
    for (name, contents) in &frp {
        assert_eq!(
            &t.exec(&container, &["cat", &format!("/certs/frp/{name}")])
                .await,
            contents
        );
    }
    let listing = t.exec(&container, &["ls", "-ln", dir]).await;
    assert!(
        listing
            .lines()
            .filter(|l| l.starts_with('-'))
            .all(|l| l.starts_with("-rw-r--r--") && l.split_whitespace().nth(2) == Some("0")),
        "mode 0644, owner root: {listing}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn install_certificates_on_a_running_container_leaves_it_running() {
    let Some(t) = RealTest::start().await else {
        return;
    };
    let images = images().await;
    let _ = frp_files(&t.harp);
    let app = t.app();
    let container = format!("nc_app_{app}");
    t.create(&app, &images.base, json!({})).await;
    t.call("start", json!({"name": app}))
        .await
        .assert_no_content();
    // No bundle and no FRP certificates asked for: only the OS probe runs.
    t.call(
        "install_certificates",
        json!({"name": app, "system_certs_bundle": null, "install_frp_certs": false}),
    )
    .await
    .assert_no_content();
    assert_eq!(
        t.inspect(&container).await.state.unwrap().running,
        Some(true)
    );
    let ls = t
        .exec(
            &container,
            &["ls", "/certs/frp", "/usr/local/share/ca-certificates"],
        )
        .await;
    assert!(ls.matches("No such file or directory").count() == 2, "{ls}");
}

#[tokio::test(flavor = "multi_thread")]
async fn install_certificates_without_frp_certificates_skips_them() {
    let Some(t) = RealTest::start().await else {
        return;
    };
    let images = images().await;
    let _ = std::fs::remove_dir_all(t.harp.certs_dir().join("frp"));
    let app = t.app();
    let container = format!("nc_app_{app}");
    t.create(&app, &images.base, json!({})).await;
    t.call(
        "install_certificates",
        json!({"name": app, "system_certs_bundle": CERT_A}),
    )
    .await
    .assert_no_content();
    t.call("start", json!({"name": app}))
        .await
        .assert_no_content();
    let ls = t.exec(&container, &["ls", "/certs/frp"]).await;
    assert!(ls.contains("No such file or directory"), "{ls}");
    assert_eq!(
        t.exec(
            &container,
            &[
                "cat",
                "/usr/local/share/ca-certificates/custom_ca_cert_0.crt"
            ]
        )
        .await,
        CERT_A
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn b60_install_certificates_for_a_missing_container_is_404() {
    let Some(t) = RealTest::start().await else {
        return;
    };
    let app = unique("harptestmissing");
    t.call(
        "install_certificates",
        json!({"name": app, "system_certs_bundle": CERT_A}),
    )
    .await
    .assert_text(404, &format!("Container 'nc_app_{app}' not found."));
}
