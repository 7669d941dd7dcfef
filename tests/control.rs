//! The control channel `/exapps/app_api/...` (harp-behaviour.md §3.2 D6, §6, §7; checklist B1,
//! B40-B42, B45-B48): AppAPI's control API served by harp itself, and the Docker Engine
//! passthrough selected by the `docker-engine-port` header.
//!
//! The "Docker engine" is an [`EchoBackend`] (or, for image pulls, the small [`PullBackend`]
//! below) on a loopback port given as `docker-engine-port`.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use common::*;
use serde_json::{json, Value};
use tokio::sync::Notify;

/// aiohttp's content types for the control API's own answers (§6).
const JSON_UTF8: &str = "application/json; charset=utf-8";
const TEXT_UTF8: &str = "text/plain; charset=utf-8";

/// HAProxy's pages (§3.4), byte for byte.
const PAGE_403: &str = "<html><body><h1>403 Forbidden</h1>\nRequest forbidden by administrative rules.\n</body></html>\n";
const PAGE_503: &str = "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n";

/// Starts harp on the defaults plus `env`, with Nextcloud at `nc` when given.
fn start_harp(nc: Option<&StubNextcloud>, env: &[(&str, &str)]) -> Harp {
    let url = nc.map(StubNextcloud::url);
    let mut all: Vec<(&str, &str)> = Vec::new();
    if let Some(url) = url.as_deref() {
        all.push(("NC_INSTANCE_URL", url));
    }
    all.extend_from_slice(env);
    Harp::start(&all)
}

/// A request on the control channel with the valid key plus `extra` headers.
async fn control(
    harp: &Harp,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> RawOutcome {
    let mut headers = vec![("harp-shared-key", KEY)];
    headers.extend_from_slice(extra);
    request(harp.http_addr(), method, path.as_bytes(), &headers, body).await
}

/// `exapp_storage/<app>` with the valid key.
async fn storage(harp: &Harp, method: &str, app: &str, body: &[u8]) -> RawOutcome {
    let path = format!("/exapps/app_api/exapp_storage/{app}");
    control(harp, method, &path, &[], body).await
}

/// A request to the Docker passthrough: valid key and `docker-engine-port: port`.
async fn docker(harp: &Harp, port: u16, method: &str, path: &str) -> RawOutcome {
    let port = port.to_string();
    control(harp, method, path, &[("docker-engine-port", &port)], b"").await
}

/// An ExApp record pointing at `port` with one PUBLIC route for every path.
fn public_record(port: u16) -> Value {
    StubNextcloud::record("tok", "1.0.0", "127.0.0.1", port, &[("^/", PUBLIC, &[])])
}

/// Calls that AppAPI made, leaving out harp's own `GET /version` (it asks each engine for its
/// API versions before forwarding a version-prefixed path).
fn forwarded_calls(engine: &EchoBackend) -> usize {
    engine
        .requests()
        .iter()
        .filter(|r| r.path != "/version")
        .count()
}

fn assert_text(out: &RawOutcome, status: u16, content_type: &str, body: &str) {
    assert_eq!(out.status(), status, "{out:?}");
    assert_eq!(out.header("content-type"), Some(content_type), "{out:?}");
    assert_eq!(out.body_str(), body);
}

fn assert_haproxy_page(out: &RawOutcome, status: u16, page: &str) {
    assert_eq!(out.status(), status, "{out:?}");
    assert_eq!(out.header("content-type"), Some("text/html"), "{out:?}");
    assert_eq!(out.header("cache-control"), Some("no-cache"), "{out:?}");
    assert_eq!(out.body_str(), page);
}

// ---------------------------------------------------------------------------------------------
// B1 and the control API's generic behaviour (§6)

#[tokio::test(flavor = "multi_thread")]
async fn b1_info_reports_version_docker_and_kubernetes() {
    let harp = start_harp(None, &[]);
    let out = control(&harp, "GET", "/exapps/app_api/info", &[], b"").await;
    assert_eq!(out.status(), 200, "{out:?}");
    assert_eq!(out.header("content-type"), Some(JSON_UTF8));
    assert_eq!(
        out.json(),
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "docker": true,
            "kubernetes": {"enabled": false},
        })
    );
    // AppAPI compares it with PHP's version_compare: a full x.y.z.
    let version = out.json()["version"].as_str().unwrap().to_string();
    let parts: Vec<&str> = version.split('.').collect();
    assert_eq!(parts.len(), 3, "{version}");
    assert!(parts.iter().all(|p| p.parse::<u32>().is_ok()), "{version}");
}

#[tokio::test(flavor = "multi_thread")]
async fn b1_heartbeat_answers_status_ok() {
    let harp = start_harp(None, &[]);
    let out = control(&harp, "GET", "/exapps/app_api/heartbeat", &[], b"").await;
    assert_eq!(out.status(), 200, "{out:?}");
    assert_eq!(out.header("content-type"), Some(JSON_UTF8));
    assert_eq!(out.json(), json!({"status": "ok"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn b1_head_is_allowed_on_info_and_heartbeat() {
    let harp = start_harp(None, &[]);
    for path in ["/exapps/app_api/info", "/exapps/app_api/heartbeat"] {
        let out = control(&harp, "HEAD", path, &[], b"").await;
        assert_eq!(out.status(), 200, "HEAD {path}: {out:?}");
        assert_eq!(out.header("content-type"), Some(JSON_UTF8), "HEAD {path}");
        assert!(out.body().is_empty(), "HEAD {path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn b1_post_info_is_method_not_allowed() {
    let harp = start_harp(None, &[]);
    let out = control(&harp, "POST", "/exapps/app_api/info", &[], b"{}").await;
    assert_text(&out, 405, TEXT_UTF8, "405: Method Not Allowed");
}

#[tokio::test(flavor = "multi_thread")]
async fn b1_unknown_control_path_is_404() {
    let harp = start_harp(None, &[]);
    for path in ["/exapps/app_api/nope", "/exapps/app_api/info/x"] {
        let out = control(&harp, "GET", path, &[], b"").await;
        assert_text(&out, 404, TEXT_UTF8, "404: Not Found");
    }
}

// ---------------------------------------------------------------------------------------------
// B40-B42: exapp_storage

#[tokio::test(flavor = "multi_thread")]
async fn b40_posted_record_is_stored_under_the_lower_case_id() {
    let nc = StubNextcloud::start().await;
    let exapp = EchoBackend::start().await;
    let harp = start_harp(Some(&nc), &[]);
    let record = public_record(exapp.port()).to_string();

    let out = control(
        &harp,
        "POST",
        "/exapps/app_api/exapp_storage/MyApp",
        &[("content-type", "application/json")],
        record.as_bytes(),
    )
    .await;
    assert_eq!(out.status(), 204, "{out:?}");

    for (path, ex_app_id) in [("/exapps/myapp/x", "myapp"), ("/exapps/MyApp/y", "MyApp")] {
        let out = get(harp.http_addr(), path, &[]).await;
        assert_eq!(out.status(), 200, "GET {path}: {out:?}");
        let seen = exapp.last_request().expect("the ExApp got the request");
        assert_eq!(seen.header("ex-app-id"), Some(ex_app_id));
        assert_eq!(seen.header("ex-app-version"), Some("1.0.0"));
    }
    assert_eq!(nc.count("exapp-meta"), 0, "{:?}", nc.requests());
}

/// The record as PHP's json_encode writes it (escaped slashes, `\u003C`), with numeric strings
/// where pydantic accepts them and the extra route fields AppAPI sends.
#[tokio::test(flavor = "multi_thread")]
async fn b40_php_encoded_record_from_appapi_is_accepted() {
    let nc = StubNextcloud::start().await;
    let exapp = EchoBackend::start().await;
    let harp = start_harp(Some(&nc), &[]);
    let record = format!(
        r#"{{"exapp_token":"tok\u003Cx","exapp_version":"1.0.0","host":"127.0.0.1","port":"{}","routes":[{{"url":"^\/api\/.*","verb":"GET,POST","access_level":"0","headers_to_exclude":"[]","bruteforce_protection":[401]}}]}}"#,
        exapp.port()
    );
    let out = storage(&harp, "POST", "phpapp", record.as_bytes()).await;
    assert_eq!(out.status(), 204, "{out:?}");
    let out = get(harp.http_addr(), "/exapps/phpapp/api/x", &[]).await;
    assert_eq!(out.status(), 200, "{out:?}");
    let auth = exapp
        .last_request()
        .and_then(|r| r.header("authorization-app-api").map(str::to_string));
    // base64(":" + "tok<x"): the escape was decoded.
    assert_eq!(auth.as_deref(), Some("OnRvazx4"));
    let out = get(harp.http_addr(), "/exapps/phpapp/other", &[]).await;
    assert_eq!(out.status(), 404, "the escaped regex kept its meaning");
}

#[tokio::test(flavor = "multi_thread")]
async fn b40_posted_record_clears_the_negative_cache_entry() {
    let nc = StubNextcloud::start().await;
    let exapp = EchoBackend::start().await;
    let harp = start_harp(Some(&nc), &[]);

    // Unknown to Nextcloud: 404, remembered for 15 s.
    let out = get(
        harp.http_addr(),
        "/exapps/late/x",
        &[("harp-shared-key", KEY)],
    )
    .await;
    assert_eq!(out.status(), 404, "{out:?}");
    assert_eq!(nc.count("exapp-meta"), 1);

    let record = public_record(exapp.port()).to_string();
    let out = storage(&harp, "POST", "late", record.as_bytes()).await;
    assert_eq!(out.status(), 204, "{out:?}");

    let out = get(harp.http_addr(), "/exapps/late/x", &[]).await;
    assert_eq!(out.status(), 200, "{out:?}");
    assert_eq!(out.json()["path"], "/x");
    assert_eq!(nc.count("exapp-meta"), 1, "{:?}", nc.requests());

    // The stored record alone would hide a stale negative entry; once it is deleted again (well
    // within the 15 s), the next request must ask Nextcloud instead of answering from that entry.
    let out = storage(&harp, "DELETE", "late", b"").await;
    assert_eq!(out.status(), 204, "{out:?}");
    let out = get(
        harp.http_addr(),
        "/exapps/late/x",
        &[("harp-shared-key", KEY)],
    )
    .await;
    assert_eq!(out.status(), 404, "{out:?}");
    assert_eq!(nc.count("exapp-meta"), 2, "{:?}", nc.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn b41_schema_invalid_record_is_400() {
    let harp = start_harp(None, &[]);
    let invalid = [
        json!({"exapp_token": "tok"}),
        // exapp_version must be a string (pydantic does not coerce numbers to strings).
        json!({"exapp_token": "tok", "exapp_version": 1, "host": "127.0.0.1", "port": 1}),
        json!({"exapp_token": "tok", "exapp_version": "1", "host": "h", "port": "x"}),
        json!({"exapp_token": "tok", "exapp_version": "1", "host": "h", "port": 1,
               "routes": [{"url": "^/"}]}),
        json!([1, 2]),
    ];
    for body in invalid {
        let out = storage(&harp, "POST", "x", body.to_string().as_bytes()).await;
        assert_eq!(out.status(), 400, "{body}: {out:?}");
        assert_eq!(out.header("content-type"), Some(TEXT_UTF8), "{body}");
        assert!(
            out.body_str().starts_with("400: Bad Request"),
            "{body}: {}",
            out.body_str()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn b41_non_json_record_is_500() {
    let harp = start_harp(None, &[]);
    let out = storage(&harp, "POST", "x", b"this is not json").await;
    assert_text(
        &out,
        500,
        TEXT_UTF8,
        "500 Internal Server Error\n\nServer got itself in trouble",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn b42_delete_of_a_cached_record_is_204() {
    let harp = start_harp(None, &[]);
    let record = public_record(1).to_string();
    let out = storage(&harp, "POST", "app", record.as_bytes()).await;
    assert_eq!(out.status(), 204, "{out:?}");
    // AppAPI uses the id as stored; harp lower-cases it on both calls.
    let out = storage(&harp, "DELETE", "App", b"").await;
    assert_eq!(out.status(), 204, "{out:?}");
    assert!(out.body().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn b42_delete_of_an_unknown_record_is_404() {
    let harp = start_harp(None, &[]);
    let out = storage(&harp, "DELETE", "never", b"").await;
    assert_text(&out, 404, TEXT_UTF8, "404: Not Found");
}

#[tokio::test(flavor = "multi_thread")]
async fn b42_deleted_record_is_fetched_from_nextcloud_again() {
    let nc = StubNextcloud::start().await;
    let stored = EchoBackend::start().await;
    let fetched = EchoBackend::start().await;
    nc.set_app("app", public_record(fetched.port()));
    let harp = start_harp(Some(&nc), &[]);

    let record = public_record(stored.port()).to_string();
    let out = storage(&harp, "POST", "app", record.as_bytes()).await;
    assert_eq!(out.status(), 204, "{out:?}");
    assert_eq!(
        get(harp.http_addr(), "/exapps/app/a", &[]).await.status(),
        200
    );
    assert_eq!((stored.count(), nc.count("exapp-meta")), (1, 0));

    let out = storage(&harp, "DELETE", "app", b"").await;
    assert_eq!(out.status(), 204, "{out:?}");
    assert_eq!(
        get(harp.http_addr(), "/exapps/app/b", &[]).await.status(),
        200
    );
    assert_eq!(nc.count("exapp-meta"), 1, "{:?}", nc.requests());
    assert_eq!(fetched.last_request().map(|r| r.path), Some("/b".into()));
    assert_eq!(stored.count(), 1);
}

// ---------------------------------------------------------------------------------------------
// B45-B48: the Docker Engine passthrough (§7)

#[tokio::test(flavor = "multi_thread")]
async fn b45_ping_is_forwarded_to_the_engine_port() {
    let engine = EchoBackend::start().await;
    let harp = start_harp(None, &[]);
    for (path, forwarded) in [
        ("/exapps/app_api/_ping", "/_ping"),
        ("/exapps/app_api/v1.41/_ping", "/v1.41/_ping"),
    ] {
        let out = docker(&harp, engine.port(), "GET", path).await;
        assert_eq!(out.status(), 200, "GET {path}: {out:?}");
        let seen = engine.last_request().expect("the engine got the request");
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("GET", forwarded)
        );
        assert_eq!(seen.query, None);
    }
    assert_eq!(forwarded_calls(&engine), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn b45_head_ping_is_forwarded() {
    let engine = EchoBackend::start().await;
    let harp = start_harp(None, &[]);
    for (path, forwarded) in [
        ("/exapps/app_api/_ping", "/_ping"),
        ("/exapps/app_api/v1.44/_ping", "/v1.44/_ping"),
    ] {
        let out = docker(&harp, engine.port(), "HEAD", path).await;
        assert_eq!(out.status(), 200, "HEAD {path}: {out:?}");
        let seen = engine.last_request().expect("the engine got the request");
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("HEAD", forwarded)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn q11_shared_key_is_not_forwarded_to_the_engine() {
    let engine = EchoBackend::start().await;
    let harp = start_harp(None, &[]);
    let out = docker(&harp, engine.port(), "GET", "/exapps/app_api/_ping").await;
    assert_eq!(out.status(), 200, "{out:?}");
    let seen = engine.last_request().expect("the engine got the request");
    assert_eq!(seen.header("harp-shared-key"), None, "{:?}", seen.headers);
}

#[tokio::test(flavor = "multi_thread")]
async fn b46_calls_outside_the_allowlist_get_the_403_page() {
    let engine = EchoBackend::start().await;
    let harp = start_harp(None, &[]);
    for (method, path) in [
        ("POST", "/exapps/app_api/_ping"),
        ("GET", "/exapps/app_api/v1.41/version"),
        ("POST", "/exapps/app_api/v1.41/containers/create"),
        ("GET", "/exapps/app_api/containers/other/json"),
        ("DELETE", "/exapps/app_api/containers/nc_app_x"),
        ("GET", "/exapps/app_api/v1.41/images/create?fromImage=img"),
        ("GET", "/exapps/app_api"),
    ] {
        let out = docker(&harp, engine.port(), method, path).await;
        assert_eq!(out.status(), 403, "{method} {path}: {out:?}");
        assert_haproxy_page(&out, 403, PAGE_403);
    }
    assert_eq!(engine.count(), 0, "{:?}", engine.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn b47_allowlisted_calls_are_forwarded_with_path_and_query() {
    let engine = EchoBackend::start().await;
    let harp = start_harp(None, &[]);
    let cases = [
        (
            "POST",
            "/exapps/app_api/v1.41/images/create?fromImage=img",
            "/v1.41/images/create",
            Some("fromImage=img"),
        ),
        (
            "GET",
            "/exapps/app_api/v1.41/images/img/json",
            "/v1.41/images/img/json",
            None,
        ),
        (
            "GET",
            "/exapps/app_api/containers/nc_app_x/json",
            "/containers/nc_app_x/json",
            None,
        ),
        (
            "GET",
            "/exapps/app_api/containers/nc_app_x/logs?stdout=true&stderr=true&tail=5",
            "/containers/nc_app_x/logs",
            Some("stdout=true&stderr=true&tail=5"),
        ),
    ];
    for (method, path, forwarded, query) in cases {
        let out = docker(&harp, engine.port(), method, path).await;
        assert_eq!(out.status(), 200, "{method} {path}: {out:?}");
        let seen = engine.last_request().expect("the engine got the request");
        assert_eq!(seen.method, method);
        assert_eq!(seen.path, forwarded);
        assert_eq!(seen.query.as_deref(), query);
    }
    assert_eq!(forwarded_calls(&engine), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn b47_allowlist_is_matched_on_the_decoded_path() {
    let engine = EchoBackend::start().await;
    let harp = start_harp(None, &[]);
    for path in [
        // `_ping` with escaped unreserved characters.
        "/exapps/app_api/v1.41/%5Fpin%67",
        // An escaped slash: the decoded path is /containers/nc_app_x/json.
        "/exapps/app_api/containers/nc_app_x%2Fjson",
    ] {
        let out = docker(&harp, engine.port(), "GET", path).await;
        assert_eq!(out.status(), 200, "GET {path}: {out:?}");
    }
    assert_eq!(forwarded_calls(&engine), 2, "{:?}", engine.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn b47_image_pull_progress_is_streamed() {
    let engine = PullBackend::start().await;
    let harp = start_harp(None, &[]);
    // AppAPI pulls with a bodiless POST and `Connection: close` (appapi-contract.md §4.3).
    let mut res = client()
        .post(harp.url("/exapps/app_api/v1.41/images/create?fromImage=img%3Alatest"))
        .header("harp-shared-key", KEY)
        .header("docker-engine-port", engine.port().to_string())
        .header("connection", "close")
        .send()
        .await
        .expect("pull request");
    assert_eq!(res.status(), 200);

    // The engine produces its last line only after this test has seen the first one.
    let first = tokio::time::timeout(Duration::from_secs(10), res.chunk())
        .await
        .expect("first progress line not relayed while the pull is still running")
        .expect("read first chunk")
        .expect("body ended before the first line");
    let mut body = first.to_vec();
    assert!(
        String::from_utf8_lossy(&body).starts_with(PULL_FIRST),
        "{:?}",
        String::from_utf8_lossy(&body)
    );
    engine.release();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), res.chunk())
        .await
        .expect("rest of the pull stream")
        .expect("read chunk")
    {
        body.extend_from_slice(&chunk);
    }
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!("{PULL_FIRST}{PULL_LAST}")
    );
    assert_eq!(
        engine.last_query().as_deref(),
        Some("fromImage=img%3Alatest")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn b47_image_pull_error_status_is_relayed() {
    // AppAPI first tries a `<tag>-cpu` image: Docker's 404 must reach it unchanged.
    let engine = PullBackend::start().await;
    let harp = start_harp(None, &[]);
    let out = docker(
        &harp,
        engine.port(),
        "POST",
        "/exapps/app_api/v1.41/images/create?fromImage=missing&tag=latest-cpu",
    )
    .await;
    assert_eq!(out.status(), 404, "{out:?}");
    assert_eq!(out.body_str(), PULL_MISSING);
}

#[tokio::test(flavor = "multi_thread")]
async fn d6_docker_engine_port_that_is_not_a_number_is_harp_503() {
    let harp = start_harp(None, &[]);
    let out = control(
        &harp,
        "GET",
        "/exapps/app_api/_ping",
        &[("docker-engine-port", "abc")],
        b"",
    )
    .await;
    assert_text(&out, 503, "text/plain", "503 Service Unavailable (HaRP)");
}

#[tokio::test(flavor = "multi_thread")]
async fn d6_empty_docker_engine_port_goes_to_the_control_api() {
    let harp = start_harp(None, &[]);
    let out = control(
        &harp,
        "GET",
        "/exapps/app_api/info",
        &[("docker-engine-port", "")],
        b"",
    )
    .await;
    assert_eq!(out.status(), 200, "{out:?}");
    assert_eq!(out.json()["docker"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn b48_docker_exapp_routes_go_to_the_control_api() {
    let engine = EchoBackend::start().await;
    let harp = start_harp(None, &[]);
    let port = engine.port().to_string();
    let out = control(
        &harp,
        "POST",
        "/exapps/app_api/docker/exapp/exists",
        &[
            ("docker-engine-port", &port),
            ("content-type", "application/json"),
        ],
        br#"{"name":"app"}"#,
    )
    .await;
    // The Docker sidecar serves it (tests/docker.rs has the details): it inspects the container
    // on the engine itself; the request is never forwarded through the allowlist.
    assert_eq!(out.status(), 200, "{out:?}");
    assert_eq!(out.json()["exists"], true);
    let paths: Vec<String> = engine.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        paths.contains(&"/containers/nc_app_app/json".to_string())
            && paths
                .iter()
                .all(|p| p == "/version" || p == "/containers/nc_app_app/json"),
        "{paths:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn b46_docker_engine_refusing_connections_gets_the_503_page() {
    let closed = ClosedPort::new();
    let harp = start_harp(None, &[]);
    let out = docker(&harp, closed.port(), "GET", "/exapps/app_api/_ping").await;
    assert_haproxy_page(&out, 503, PAGE_503);
}

// ---------------------------------------------------------------------------------------------
// A Docker engine stand-in for image pulls.

const PULL_FIRST: &str = "{\"status\":\"Pulling from library/img\",\"id\":\"latest\"}\r\n";
const PULL_LAST: &str = "{\"status\":\"Status: Downloaded newer image for img:latest\"}\r\n";
const PULL_MISSING: &str =
    "{\"message\":\"manifest for img:latest-cpu not found: manifest unknown\"}\n";

/// Answers `POST /v1.41/images/create`: with `fromImage=missing` a 404 as Docker does, otherwise
/// a chunked 200 whose first progress line goes out at once and whose last line is only produced
/// after [`PullBackend::release`] (or 30 s).
struct PullBackend {
    addr: SocketAddr,
    release: Arc<Notify>,
    last_query: Arc<std::sync::Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PullBackend {
    async fn start() -> PullBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind pull backend");
        let addr = listener.local_addr().unwrap();
        let release = Arc::new(Notify::new());
        let last_query = Arc::new(std::sync::Mutex::new(None));
        let (r, q) = (release.clone(), last_query.clone());
        let app = Router::new().fallback(move |req: Request| {
            let (release, last_query) = (r.clone(), q.clone());
            async move { pull(req, release, last_query) }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        PullBackend {
            addr,
            release,
            last_query,
            task,
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn release(&self) {
        self.release.notify_one();
    }

    fn last_query(&self) -> Option<String> {
        self.last_query.lock().unwrap().clone()
    }
}

impl Drop for PullBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn pull(
    req: Request,
    release: Arc<Notify>,
    last_query: Arc<std::sync::Mutex<Option<String>>>,
) -> Response {
    let query = req.uri().query().map(str::to_string);
    *last_query.lock().unwrap() = query.clone();
    if req.uri().path() != "/v1.41/images/create" {
        return Response::builder().status(404).body(Body::empty()).unwrap();
    }
    if query.as_deref().unwrap_or("").contains("fromImage=missing") {
        return Response::builder()
            .status(404)
            .header("content-type", "application/json")
            .body(Body::from(PULL_MISSING))
            .unwrap();
    }
    let lines = futures_util::stream::unfold(0u8, move |step| {
        let release = release.clone();
        async move {
            match step {
                0 => Some((
                    Ok::<_, Infallible>(Bytes::from_static(PULL_FIRST.as_bytes())),
                    1,
                )),
                1 => {
                    let _ = tokio::time::timeout(Duration::from_secs(30), release.notified()).await;
                    Some((Ok(Bytes::from_static(PULL_LAST.as_bytes())), 2))
                }
                _ => None,
            }
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(lines))
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Docker API versions and the local engine (issue: Docker 29 rejects AppAPI's /v1.41/ calls)

/// A Docker engine that only supports API 1.44 and newer, recording the paths it is asked for.
async fn modern_engine() -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    fake_engine(r#"{"ApiVersion":"1.52","MinAPIVersion":"1.44"}"#).await
}

/// A Docker engine answering `GET /version` with `version` and anything else with the path
/// and query it was asked for, recording the paths.
async fn fake_engine(version: &'static str) -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = Router::new().fallback(move |req: Request| {
        let record = record.clone();
        async move {
            let path = req.uri().path().to_string();
            record.lock().unwrap().push(path.clone());
            let body = if path == "/version" {
                version.to_string()
            } else {
                format!("path {}", req.uri())
            };
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn docker29_too_old_api_version_is_raised_to_the_engine_minimum() {
    let (engine, seen) = modern_engine().await;
    let harp = start_harp(None, &[]);
    let out = docker(&harp, engine.port(), "GET", "/exapps/app_api/v1.41/_ping").await;
    assert_eq!(out.status(), 200, "{out:?}");
    assert_eq!(out.body_str(), "path /v1.44/_ping");
    let out = docker(&harp, engine.port(), "GET", "/exapps/app_api/v1.45/_ping").await;
    assert_eq!(out.body_str(), "path /v1.45/_ping");
    let out = docker(&harp, engine.port(), "GET", "/exapps/app_api/_ping").await;
    assert_eq!(out.body_str(), "path /_ping");
    let versions = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|p| *p == "/version")
        .count();
    assert_eq!(
        versions,
        1,
        "the engine's versions are cached: {:?}",
        seen.lock().unwrap()
    );
}

/// Issue 10 (5): AppAPI 31.0.12+, 32.0.3+, 33 and 34 call the passthrough with `/v1.44/`;
/// engines older than Docker 25 answer 400 "client version 1.44 is too new". Before the fix
/// the engine below was asked for `/v1.44/...`; now a too-new prefix is lowered to the
/// engine's `ApiVersion`, for each allowlisted call, and a supported one is kept.
#[tokio::test(flavor = "multi_thread")]
async fn old_engine_gets_appapis_too_new_api_version_lowered_to_its_maximum() {
    // Docker 24.0's answer.
    let (engine, _) =
        fake_engine(r#"{"Version":"24.0.7","ApiVersion":"1.43","MinAPIVersion":"1.12"}"#).await;
    let harp = start_harp(None, &[]);
    let calls = [
        ("HEAD", "/v1.44/_ping", "/v1.43/_ping"),
        ("GET", "/v1.44/_ping", "/v1.43/_ping"),
        (
            "GET",
            "/v1.44/images/ghcr.io/nc/app:1.0/json",
            "/v1.43/images/ghcr.io/nc/app:1.0/json",
        ),
        (
            "GET",
            "/v1.44/containers/nc_app_x/json",
            "/v1.43/containers/nc_app_x/json",
        ),
        (
            "GET",
            "/v1.44/containers/nc_app_x/logs?stdout=true&tail=100",
            "/v1.43/containers/nc_app_x/logs?stdout=true&tail=100",
        ),
        (
            "POST",
            "/v1.44/images/create?fromImage=ghcr.io%2Fnc%2Fapp%3A1.0",
            "/v1.43/images/create?fromImage=ghcr.io%2Fnc%2Fapp%3A1.0",
        ),
        ("GET", "/v1.41/_ping", "/v1.41/_ping"),
        ("GET", "/v1.43/_ping", "/v1.43/_ping"),
        ("GET", "/v1.9/_ping", "/v1.12/_ping"),
    ];
    for (method, path, want) in calls {
        let out = docker(
            &harp,
            engine.port(),
            method,
            &format!("/exapps/app_api{path}"),
        )
        .await;
        assert_eq!(out.status(), 200, "{method} {path}: {out:?}");
        if method != "HEAD" {
            assert_eq!(out.body_str(), format!("path {want}"), "{method} {path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn local_engine_socket_serves_port_24000_without_a_tunnel() {
    let socket = std::path::Path::new("/var/run/docker.sock");
    if !socket.exists() {
        eprintln!("SKIPPED: no Docker engine socket at {}", socket.display());
        return;
    }
    if std::net::TcpStream::connect(("127.0.0.1", 24000)).is_ok() {
        eprintln!("SKIPPED: something else listens on 127.0.0.1:24000");
        return;
    }
    let harp = start_harp(None, &[("HP_DOCKER_SOCKET", "/var/run/docker.sock")]);
    let out = docker(&harp, 24000, "GET", "/exapps/app_api/_ping").await;
    assert_eq!(out.status(), 200, "{out:?}");
    assert_eq!(out.body_str(), "OK");
    let out = docker(&harp, 24000, "GET", "/exapps/app_api/v1.41/_ping").await;
    assert_eq!(out.status(), 200, "{out:?}");
}
