//! AppAPI's deploy path end to end on this machine's real Docker engine (appapi-contract.md §4,
//! §5, §8; harp-behaviour.md §7, §8, §10.4):
//!
//! - an image pull from a local registry through the Docker passthrough, streamed, with
//!   Docker's 404 for a missing tag relayed unchanged;
//! - the whole deploy sequence of a HaRP daemon as AppAPI sends it: ping, info, pull, exists,
//!   create, install_certificates, start, wait_for_start, inspect, heartbeat and requests
//!   through the gateway *and the FRP tunnel* into the ExApp container, exapp_storage, stop,
//!   remove with data, image_remove; then the Docker-call metrics on the ops listener.
//!
//! No registry on the internet is needed: each test runs its own `docker-registry` (Debian's
//! package docker-registry) on a loopback port, which Docker treats as an insecure registry,
//! and pushes images built here from Debian's static busybox. The ExApp image
//! (tests/docker_images/exapp/) also holds the `harp` binary under test as its FRP client.
//! Everything a test makes (containers, volumes, images, the registry process, temp dirs) is
//! removed by drop guards, also on failure. Tests are skipped, loudly, only when no Docker
//! engine answers on /var/run/docker.sock.

mod common;

use common::docker::{
    build_image, docker_cli, docker_raw, image_exists, real_engine, unique, volume_exists, Answer,
    Cleanup, BUSYBOX, LOCAL_ENGINE, SOCKET,
};
use common::{basic_auth, client, get, Harp, StubNextcloud, TempDir, KEY, PUBLIC};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REGISTRY: &str = "docker-registry";
/// AppAPI 32.0.0-32.0.2's API version; this machine's Docker 20.10 supports up to 1.41.
const API: &str = "/v1.41";
/// Budget of every wait on something external (registry start, a pull, the tunnel coming up).
const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// A test's start: its cleanup guard and its own registry, or `None` (after a loud message)
/// when this machine has no Docker engine.
async fn start() -> Option<(Cleanup, Registry)> {
    if !real_engine("the deploy path").await {
        return None;
    }
    assert!(
        Command::new(REGISTRY)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "the local registry needs `{REGISTRY}`: apt-get install docker-registry"
    );
    Some((Cleanup::default(), Registry::start().await))
}

// ---------------------------------------------------------------------------------------------
// A local registry.

/// `docker-registry serve` on 127.0.0.1:<port>, storing in a temp dir; killed on drop.
struct Registry {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Registry {
    async fn start() -> Registry {
        let dir = TempDir::new("registry");
        let port = common::free_port();
        let config = dir.join("config.yml");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: {}\n",
                dir.join("data").display(),
                unique("harp-test-registry-")
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut registry = Registry { child, port, dir };
        // Ready = the API base answers 200.
        let deadline = Instant::now() + WAIT;
        let url = format!("http://{}/v2/", registry.host());
        loop {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited with {status}:\n{}", registry.log());
            }
            if let Ok(resp) = client().get(&url).send().await {
                if resp.status() == 200 {
                    return registry;
                }
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry not ready after {WAIT:?}:\n{}",
                registry.log()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// `127.0.0.1:<port>`, the registry part of image references.
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- registry log -----\n{}\n-----", self.log());
        }
    }
}

/// A reverse proxy in front of a registry that holds every blob download until it is opened:
/// a pull through it cannot finish before the test says so, which makes "progress arrives
/// while the pull is still running" deterministic.
struct BlobGate {
    port: u16,
    open: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct GateState {
    registry: String,
    open: tokio::sync::watch::Receiver<bool>,
    http: reqwest::Client,
}

impl BlobGate {
    async fn start(registry: &Registry) -> BlobGate {
        let (open, receiver) = tokio::sync::watch::channel(false);
        let state = GateState {
            registry: registry.host(),
            open: receiver,
            http: reqwest::Client::builder()
                .no_proxy()
                .no_gzip()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        };
        let app = axum::Router::new().fallback(gate_forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        BlobGate { port, open, task }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn open(&self) {
        let _ = self.open.send(true);
    }
}

impl Drop for BlobGate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn gate_forward(
    axum::extract::State(mut gate): axum::extract::State<GateState>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    if parts.method == http::Method::GET && parts.uri.path().contains("/blobs/") {
        // Bounded: a test that never opens the gate still ends.
        let _ = tokio::time::timeout(WAIT, gate.open.wait_for(|open| *open)).await;
    }
    let body = axum::body::to_bytes(body, 256 << 20)
        .await
        .unwrap_or_default();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut out = gate
        .http
        .request(parts.method, format!("http://{}{target}", gate.registry));
    for (name, value) in &parts.headers {
        if name != http::header::HOST {
            out = out.header(name, value);
        }
    }
    let mut response = axum::response::Response::builder();
    match out.body(body).send().await {
        Ok(upstream) => {
            response = response.status(upstream.status());
            for (name, value) in upstream.headers() {
                if name != http::header::TRANSFER_ENCODING && name != http::header::CONNECTION {
                    response = response.header(name, value);
                }
            }
            let bytes = upstream.bytes().await.unwrap_or_default();
            response.body(axum::body::Body::from(bytes)).unwrap()
        }
        Err(e) => response
            .status(502)
            .body(axum::body::Body::from(e.to_string()))
            .unwrap(),
    }
}

// ---------------------------------------------------------------------------------------------
// Images.

fn install(from: &Path, to: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", from.display(), to.display()));
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The shared objects (and loader) `ldd` lists for a binary; none for a static one.
fn linked_libraries(binary: &Path) -> Vec<PathBuf> {
    let Ok(out) = Command::new("ldd").arg(binary).output() else {
        return Vec::new();
    };
    if !out.status.success() {
        return Vec::new(); // "not a dynamic executable"
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// A tiny image (static busybox, nothing else), built as `reference`.
async fn build_tiny_image(reference: &str) {
    let context = TempDir::new("tiny-image");
    install(Path::new(BUSYBOX), &context.join("busybox"), 0o755);
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCMD [\"/bin/busybox\", \"true\"]\n",
    )
    .unwrap();
    build_image(&context, reference).await;
}

/// The ExApp image of tests/docker_images/exapp/, built as `reference`: busybox httpd as the
/// app and the `harp` binary under test as its FRP client.
async fn build_exapp_image(reference: &str) {
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/docker_images");
    let context = TempDir::new("exapp-image");
    std::fs::copy(sources.join("exapp/Dockerfile"), context.join("Dockerfile")).unwrap();
    let root = context.join("rootfs");
    install(Path::new(BUSYBOX), &root.join("bin/busybox"), 0o755);
    let harp = Path::new(env!("CARGO_BIN_EXE_harp"));
    install(harp, &root.join("usr/local/bin/harp"), 0o755);
    // Like docker/build-local-image.sh: every shared object harp loads, at the same path.
    for lib in linked_libraries(harp) {
        install(&lib, &root.join(lib.strip_prefix("/").unwrap()), 0o755);
    }
    install(
        &sources.join("os-release"),
        &root.join("etc/os-release"),
        0o644,
    );
    install(
        &sources.join("update-ca-certificates"),
        &root.join("usr/sbin/update-ca-certificates"),
        0o755,
    );
    for script in ["start.sh", "serve.sh", "whoami"] {
        install(
            &sources.join("exapp").join(script),
            &root.join("exapp").join(script),
            0o755,
        );
    }
    std::fs::create_dir_all(root.join("etc/ssl/certs")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    build_image(&context, reference).await;
}

/// Pushes a locally built image to its registry and deletes the local copy, so the next pull
/// really downloads it.
async fn publish(reference: &str) {
    docker_cli(&["push", reference]).await;
    docker_cli(&["rmi", reference]).await;
    assert!(!image_exists(reference).await);
}

// ---------------------------------------------------------------------------------------------
// AppAPI's side of the control channel (appapi-contract.md §3 profile D).

/// A request on `/exapps/app_api<path>` as AppAPI's HarpService client sends it (`/info`,
/// `/exapp_storage`): the key only, no `docker-engine-port`.
fn harp_service(harp: &Harp, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    client()
        .request(method, harp.url(&format!("/exapps/app_api{path}")))
        .header("harp-shared-key", KEY)
        .header("user-agent", "GuzzleHttp/7")
}

/// A request on `/exapps/app_api<path>` with the headers AppAPI's DockerActions client sends:
/// HarpService's, the engine port and the HAProxy user's basic auth.
fn appapi(harp: &Harp, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    harp_service(harp, method, path)
        .header("docker-engine-port", LOCAL_ENGINE.to_string())
        .header("authorization", basic_auth("app_api_haproxy_user", KEY))
}

/// `POST /docker/exapp/<op>` as AppAPI sends it.
async fn sidecar(harp: &Harp, op: &str, body: Value) -> Answer {
    let req = appapi(harp, reqwest::Method::POST, &format!("/docker/exapp/{op}"))
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(180))
        .body(body.to_string());
    Answer::of(req).await
}

/// Percent-encodes everything but RFC 3986's unreserved characters, as PHP's urlencode does
/// for an image reference.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn pull_path(reference: &str) -> String {
    format!("{API}/images/create?fromImage={}", urlencode(reference))
}

/// AppAPI's image pull (§4.3): a bodiless POST with `Connection: close`.
async fn start_pull(harp: &Harp, reference: &str) -> reqwest::Response {
    appapi(harp, reqwest::Method::POST, &pull_path(reference))
        .header("connection", "close")
        .send()
        .await
        .expect("pull request")
}

/// Reads a pull's progress stream to EOF (bounded) and checks it as AppAPI parses it: every
/// line JSON, no empty line (which would switch AppAPI's progress tracking off).
async fn read_progress(mut resp: reqwest::Response, mut body: Vec<u8>) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Some(chunk) = tokio::time::timeout_at(deadline, resp.chunk())
        .await
        .expect("pull stream did not end in time")
        .expect("read pull stream")
    {
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(body).expect("progress is UTF-8");
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(
        lines.last(),
        Some(&""),
        "stream ends with a newline: {text}"
    );
    lines[..lines.len() - 1]
        .iter()
        .map(|line| {
            serde_json::from_str(line.trim())
                .unwrap_or_else(|e| panic!("progress line {line:?} is not JSON ({e}): {text}"))
        })
        .collect()
}

fn statuses(progress: &[Value]) -> Vec<String> {
    progress
        .iter()
        .filter_map(|l| l["status"].as_str().map(str::to_string))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The ops listener.

/// `series` (name with labels, exactly as rendered) from harp's `/metrics`.
async fn metric(harp: &Harp, series: &str) -> f64 {
    let out = get(harp.ops_addr(), "/metrics", &[]).await;
    assert_eq!(out.status(), 200, "{out:?}");
    let text = out.body_str();
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(|value| value.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

fn docker_calls(via: &str, op: &str, outcome: &str) -> String {
    format!("harp_docker_calls_total{{via=\"{via}\",op=\"{op}\",outcome=\"{outcome}\"}}")
}

// =============================================================================================

#[tokio::test(flavor = "multi_thread")]
async fn image_pull_from_a_local_registry_streams_through_the_passthrough() {
    let Some((cleanup, registry)) = start().await else {
        return;
    };
    let name = unique("harp-test/tiny");
    let pushed = format!("{}/{name}:v1", registry.host());
    cleanup.image(&pushed);
    build_tiny_image(&pushed).await;
    publish(&pushed).await;

    // The pull goes through a gate in front of the registry that holds the layer downloads.
    let gate = BlobGate::start(&registry).await;
    let reference = format!("{}/{name}:v1", gate.host());
    cleanup.image(&reference);
    let harp = Harp::start(&[("HP_DOCKER_SOCKET", SOCKET)]);

    // AppAPI first tries the extended tag `<tag>-cpu`: Docker's 404, unchanged.
    let missing = format!("{reference}-cpu");
    let direct = docker_raw("POST", &pull_path(&missing)).await;
    assert_eq!(direct.0, 404, "{direct:?}");
    assert!(direct.1.contains("manifest unknown"), "{direct:?}");
    let relayed = Answer::read(start_pull(&harp, &missing).await).await;
    assert_eq!(
        (relayed.status, relayed.body.as_str()),
        (404, direct.1.as_str())
    );
    assert_eq!(relayed.content_type, "application/json");

    // The base tag: 200 and progress while the layers are still held back.
    let mut resp = start_pull(&harp, &reference).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    let mut early = Vec::new();
    while !early.contains(&b'\n') {
        let chunk = tokio::time::timeout(WAIT, resp.chunk())
            .await
            .expect("no progress line relayed while the pull is still running")
            .expect("read pull stream")
            .expect("pull stream ended before the layers were downloaded");
        early.extend_from_slice(&chunk);
    }
    let first_line =
        String::from_utf8_lossy(&early[..early.iter().position(|b| *b == b'\n').unwrap()])
            .trim()
            .to_string();
    let first: Value = serde_json::from_str(&first_line).expect("first progress line is JSON");
    assert_eq!(
        first,
        json!({"status": format!("Pulling from {name}"), "id": "v1"})
    );
    assert!(
        !image_exists(&reference).await,
        "the pull finished although its layers were held back"
    );
    gate.open();
    let progress = read_progress(resp, early).await;
    let statuses = statuses(&progress);
    assert!(
        statuses.iter().any(|s| s == "Pulling fs layer")
            && statuses.iter().any(|s| s == "Pull complete"),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.last().map(String::as_str),
        Some(format!("Status: Downloaded newer image for {reference}").as_str()),
        "{statuses:?}"
    );
    assert!(image_exists(&reference).await);

    assert_eq!(
        metric(&harp, &docker_calls("passthrough", "image_pull", "ok")).await,
        1.0
    );
    assert_eq!(
        metric(&harp, &docker_calls("passthrough", "image_pull", "error")).await,
        1.0
    );
}

/// A port in AppAPI's ExApp range 23000-23999 that is free now, away from the fixed ports the
/// tunnel tests use (23000-23504).
fn free_exapp_port() -> u16 {
    let offset = (std::process::id() % 300) as u16;
    (0..300)
        .map(|i| 23600 + (offset + i) % 300)
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port in 23600-23899")
}

/// AppAPI's requests to the ExApp itself (channel B, §5.1 step 1): the six AppAPI headers.
async fn appapi_to_exapp(
    harp: &Harp,
    method: reqwest::Method,
    app: &str,
    path: &str,
    secret: &str,
    port: u16,
) -> Answer {
    use base64::Engine;
    let authorization = base64::engine::general_purpose::STANDARD.encode(format!(":{secret}"));
    let req = client()
        .request(method, harp.url(&format!("/exapps/{app}{path}")))
        .header("accept", "application/json")
        .header("content-type", "application/json")
        .header("aa-version", "32.0.0")
        .header("ex-app-id", app)
        .header("ex-app-version", "1.0.0")
        .header("authorization-app-api", authorization)
        .header("aa-request-id", "CLI")
        .header("harp-shared-key", KEY)
        .header("ex-app-port", port.to_string())
        .header("ex-app-host", "127.0.0.1")
        .header("user-agent", "Nextcloud-Server-Crawler/32.0.0")
        .timeout(Duration::from_secs(30));
    Answer::of(req).await
}

/// Polls AppAPI's heartbeat through the gateway, as AppAPI does after a deploy, until it
/// answers `want` (bounded by `WAIT`).
async fn heartbeat_until(harp: &Harp, app: &str, secret: &str, port: u16, want: u16) -> Answer {
    let deadline = Instant::now() + WAIT;
    loop {
        let out =
            appapi_to_exapp(harp, reqwest::Method::GET, app, "/heartbeat", secret, port).await;
        if out.status == want {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "heartbeat still {} {} after {WAIT:?}",
            out.status,
            out.body
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `docker exec <container> cat <file>`.
async fn cat_in(container: &str, file: &str) -> String {
    docker_cli(&["exec", container, "cat", file]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn appapi_deploy_sequence_through_harp_and_the_frp_tunnel() {
    let Some((cleanup, registry)) = start().await else {
        return;
    };
    let app = unique("harpdeploy");
    let container = format!("nc_app_{app}");
    let volume = format!("nc_app_{app}_data");
    cleanup.container(&container);
    cleanup.volume(&volume);
    let image = format!("{}/harp-test/{app}:1.0.0", registry.host());
    cleanup.image(&image);
    build_exapp_image(&image).await;
    publish(&image).await;

    // Nextcloud knows the ExApp at its tunnel port, so strict port checking lets the ExApp's
    // FRP client have it. harp runs with TLS on the tunnel (its certificates are generated in
    // HP_CERTS_DIR on first start).
    let app_port = free_exapp_port();
    let httpd_port = common::free_port();
    let secret = unique("secret-").repeat(4);
    let nonce = unique("nonce-");
    let record = StubNextcloud::record(
        &secret,
        "1.0.0",
        "127.0.0.1",
        app_port,
        &[("^/cgi-bin/", PUBLIC, &[])],
    );
    let nc = StubNextcloud::start().await;
    nc.set_app(&app, record.clone());
    let nc_url = nc.url();
    let harp = Harp::start(&[
        ("HP_DOCKER_SOCKET", SOCKET),
        ("NC_INSTANCE_URL", nc_url.as_str()),
    ]);
    assert_eq!(harp.env("HP_FRP_DISABLE_TLS"), None);
    let frp_dir = harp.certs_dir().join("frp");
    for file in ["ca.crt", "client.crt", "client.key"] {
        assert!(frp_dir.join(file).exists(), "harp generated {file}");
    }
    let frp = harp.frp_addr();

    // Setup checks: ping and info.
    let ping = Answer::of(appapi(&harp, reqwest::Method::GET, &format!("{API}/_ping"))).await;
    assert_eq!((ping.status, ping.body.as_str()), (200, "OK"));
    let info = Answer::of(harp_service(&harp, reqwest::Method::GET, "/info")).await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert_eq!(info.json()["version"], env!("CARGO_PKG_VERSION"));

    // Pull (§4.3): the extended tag first, then the base tag to EOF.
    let cpu = Answer::read(start_pull(&harp, &format!("{image}-cpu")).await).await;
    assert_eq!(cpu.status, 404, "{}", cpu.body);
    let resp = start_pull(&harp, &image).await;
    assert_eq!(resp.status(), 200);
    let progress = read_progress(resp, Vec::new()).await;
    assert_eq!(
        statuses(&progress).last().map(String::as_str),
        Some(format!("Status: Downloaded newer image for {image}").as_str())
    );
    assert!(image_exists(&image).await);

    // exists (false), create.
    let out = sidecar(&harp, "exists", json!({"name": app, "instance_id": ""})).await;
    assert_eq!((out.status, out.json()), (200, json!({"exists": false})));
    let env = [
        "AA_VERSION=32.0.0".to_string(),
        format!("APP_SECRET={secret}"),
        format!("APP_ID={app}"),
        "APP_DISPLAY_NAME=harp-rs deploy test".to_string(),
        "APP_VERSION=1.0.0".to_string(),
        "APP_HOST=127.0.0.1".to_string(),
        format!("APP_PORT={app_port}"),
        format!("APP_PERSISTENT_STORAGE=/{volume}"),
        format!("NEXTCLOUD_URL={nc_url}"),
        "COMPUTE_DEVICE=CPU".to_string(),
        // info.xml environment variables of this test app.
        format!("EXAPP_HTTPD_PORT={httpd_port}"),
        format!("EXAPP_NONCE={nonce}"),
        format!("HP_FRP_ADDRESS={}", frp.ip()),
        format!("HP_FRP_PORT={}", frp.port()),
        format!("HP_SHARED_KEY={KEY}"),
    ];
    let out = sidecar(
        &harp,
        "create",
        json!({"name": app, "instance_id": "", "image_id": image, "network_mode": "host",
               "environment_variables": env, "restart_policy": "unless-stopped",
               "compute_device": "cpu", "mount_points": [], "start_container": true}),
    )
    .await;
    assert_eq!(out.status, 201, "{}", out.body);
    assert_eq!(out.json()["name"], container);
    assert!(volume_exists(&volume).await);

    // install_certificates: Nextcloud's CA bundle and harp's FRP client certificates; the
    // container is left stopped so that the following start is a 204.
    let ca = "-----BEGIN CERTIFICATE-----\nMIIBdeploytest\n-----END CERTIFICATE-----";
    sidecar(
        &harp,
        "install_certificates",
        json!({"name": app, "instance_id": "",
               "system_certs_bundle": format!("# Nextcloud's bundle\n{ca}\n"),
               "install_frp_certs": true}),
    )
    .await
    .assert_no_content();
    sidecar(&harp, "start", json!({"name": app, "instance_id": ""}))
        .await
        .assert_no_content();
    let out = sidecar(
        &harp,
        "wait_for_start",
        json!({"name": app, "instance_id": ""}),
    )
    .await;
    assert_eq!(
        (out.status, out.json()),
        (
            200,
            json!({"started": true, "status": "running", "health": null})
        )
    );
    for file in ["ca.crt", "client.crt", "client.key"] {
        assert_eq!(
            cat_in(&container, &format!("/certs/frp/{file}")).await,
            std::fs::read_to_string(frp_dir.join(file)).unwrap(),
            "/certs/frp/{file} in the container"
        );
    }
    assert_eq!(
        cat_in(
            &container,
            "/usr/local/share/ca-certificates/custom_ca_cert_0.crt"
        )
        .await,
        ca
    );

    // Healthcheck through the passthrough (§4.7).
    let inspect = Answer::of(appapi(
        &harp,
        reqwest::Method::GET,
        &format!("{API}/containers/{container}/json"),
    ))
    .await;
    assert_eq!(inspect.status, 200, "{}", inspect.body);
    let inspect = inspect.json();
    assert_eq!(inspect["State"]["Running"], true);
    assert_eq!(inspect["HostConfig"]["NetworkMode"], "host");

    // Heartbeat (§5 step 4): through the gateway into the container. The ExApp's port is the
    // tunnel's: nothing but harp's FRP server serves it, and that only once the container's
    // FRP client has logged in with the installed certificates (harp forces TLS).
    let beat = heartbeat_until(&harp, &app, &secret, app_port, 200).await;
    assert_eq!(
        beat.json(),
        json!({"status": "ok", "app": app, "nonce": nonce}),
        "answered by the ExApp in the container"
    );
    assert_eq!(
        metric(&harp, "harp_tunnel_clients").await,
        1.0,
        "one FRP client: the ExApp's"
    );
    // init: this app has none (busybox answers a POST to a missing file itself).
    let init = appapi_to_exapp(
        &harp,
        reqwest::Method::POST,
        &app,
        "/init",
        &secret,
        app_port,
    )
    .await;
    assert!(
        matches!(init.status, 404 | 405 | 501),
        "{} {}",
        init.status,
        init.body
    );

    // Enable: start (200 = already started is fine here), wait_for_start, exapp_storage.
    let out = sidecar(&harp, "start", json!({"name": app, "instance_id": ""})).await;
    assert_eq!(
        (out.status, out.body.as_str()),
        (200, "Container already started")
    );
    let out = sidecar(
        &harp,
        "wait_for_start",
        json!({"name": app, "instance_id": ""}),
    )
    .await;
    assert_eq!(out.json()["started"], true);
    let stored = Answer::of(
        harp_service(
            &harp,
            reqwest::Method::POST,
            &format!("/exapp_storage/{app}"),
        )
        .header("content-type", "application/json")
        .body(record.to_string()),
    )
    .await;
    stored.assert_no_content();

    // A user's request on a PUBLIC route, through the gateway and the tunnel.
    let out = Answer::of(
        client()
            .get(harp.url(&format!("/exapps/{app}/cgi-bin/whoami?probe=1")))
            .timeout(Duration::from_secs(30)),
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.body);
    use base64::Engine;
    let anonymous = base64::engine::general_purpose::STANDARD.encode(format!(":{secret}"));
    assert_eq!(
        out.body,
        format!(
            "app={app}\nnonce={nonce}\nuri=/cgi-bin/whoami?probe=1\nex-app-id={app}\n\
             ex-app-version=1.0.0\nauthorization-app-api={anonymous}\nharp-shared-key=\n"
        )
    );

    // Disable: stop, then the tunnel is gone and the gateway answers 503.
    sidecar(&harp, "stop", json!({"name": app, "instance_id": ""}))
        .await
        .assert_no_content();
    heartbeat_until(&harp, &app, &secret, app_port, 503).await;
    let out = Answer::of(harp_service(
        &harp,
        reqwest::Method::DELETE,
        &format!("/exapp_storage/{app}"),
    ))
    .await;
    out.assert_no_content();

    // Unregister with --rm-data: exists, remove with data; the volume is gone.
    let out = sidecar(&harp, "exists", json!({"name": app, "instance_id": ""})).await;
    assert_eq!(
        (out.status, out.json()),
        (200, json!({"exists": true, "image_ref": image}))
    );
    sidecar(
        &harp,
        "remove",
        json!({"name": app, "instance_id": "", "remove_data": true}),
    )
    .await
    .assert_no_content();
    let out = sidecar(&harp, "exists", json!({"name": app, "instance_id": ""})).await;
    assert_eq!(out.json(), json!({"exists": false}));
    assert!(
        !volume_exists(&volume).await,
        "{volume} removed with the data"
    );
    let out = sidecar(&harp, "image_remove", json!({"image_ref": image})).await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!(out.json()["deleted"], true);
    assert!(!image_exists(&image).await);

    // Every Docker call AppAPI made, by operation and outcome.
    let expected = [
        ("passthrough", "ping", 1, 0),
        ("passthrough", "image_pull", 1, 1),
        ("passthrough", "container_inspect", 1, 0),
        ("passthrough", "image_inspect", 0, 0),
        ("passthrough", "container_logs", 0, 0),
        ("sidecar", "exists", 3, 0),
        ("sidecar", "create", 1, 0),
        ("sidecar", "install_certificates", 1, 0),
        ("sidecar", "start", 2, 0),
        ("sidecar", "wait_for_start", 2, 0),
        ("sidecar", "stop", 1, 0),
        ("sidecar", "remove", 1, 0),
        ("sidecar", "image_remove", 1, 0),
    ];
    for (via, op, ok, error) in expected {
        assert_eq!(
            (
                metric(&harp, &docker_calls(via, op, "ok")).await,
                metric(&harp, &docker_calls(via, op, "error")).await
            ),
            (f64::from(ok), f64::from(error)),
            "{via} {op}"
        );
    }
}
