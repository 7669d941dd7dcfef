//! Forwarding to ExApps and what can go wrong on the way (harp-behaviour.md §3.4, §11, §12;
//! checklist B30, B31, B33, B34, B68, B69), and start-up / configuration end to end (§1, §13;
//! B63, B64, Q5, Q9, check-config, YAML, SIGTERM).

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const HARP_503: &str = "503 Service Unavailable (HaRP)";
const PAGE_503: &str = "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n";
const PAGE_504: &str = "<html><body><h1>504 Gateway Time-out</h1>\nThe server didn't respond in time.\n</body></html>\n";

/// Starts harp against `nc` with the defaults plus `env`.
fn start_harp(nc: &StubNextcloud, env: &[(&str, &str)]) -> Harp {
    let url = nc.url();
    let mut all = vec![("NC_INSTANCE_URL", url.as_str())];
    all.extend_from_slice(env);
    Harp::start(&all)
}

/// A record for an ExApp on 127.0.0.1:`port` with the given routes.
fn record(port: u16, routes: &[(&str, u8, &[u16])]) -> Value {
    StubNextcloud::record("tok", "1.0.0", "127.0.0.1", port, routes)
}

fn assert_haproxy_page(out: &RawOutcome, status: u16, page: &str) {
    assert_eq!(out.status(), status, "{out:?}");
    assert_eq!(out.header("content-type"), Some("text/html"), "{out:?}");
    assert_eq!(out.header("cache-control"), Some("no-cache"), "{out:?}");
    assert_eq!(out.body_str(), page);
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------------------------
// B30, B31: no decision → HaRP's 503

#[tokio::test(flavor = "multi_thread")]
async fn b30_appapi_request_with_a_non_numeric_port_is_harp_503() {
    let nc = StubNextcloud::start().await;
    let harp = start_harp(&nc, &[]);
    let out = get(
        harp.http_addr(),
        "/exapps/ghost/heartbeat",
        &[
            ("ex-app-version", "1.0.0"),
            ("ex-app-id", "ghost"),
            ("ex-app-host", "127.0.0.1"),
            ("ex-app-port", "abc"),
            ("authorization-app-api", "dXNlcjp0b2s="),
            ("harp-shared-key", KEY),
        ],
    )
    .await;
    assert_eq!(out.status(), 503, "{out:?}");
    assert_eq!(out.header("content-type"), Some("text/plain"));
    assert_eq!(out.body_str(), HARP_503);
}

#[tokio::test(flavor = "multi_thread")]
async fn b31_decision_over_budget_is_harp_503() {
    let nc = StubNextcloud::start().await;
    let exapp = EchoBackend::start().await;
    nc.set_app_delayed(
        "slow",
        record(exapp.port(), &[("^/", PUBLIC, &[])]),
        Duration::from_secs(3),
    );
    let harp = start_harp(&nc, &[("HP_DECISION_TIMEOUT", "1s")]);
    let started = Instant::now();
    let out = get(harp.http_addr(), "/exapps/slow/x", &[]).await;
    let took = started.elapsed();
    assert_eq!(out.status(), 503, "{out:?}");
    assert_eq!(out.header("content-type"), Some("text/plain"));
    assert_eq!(out.body_str(), HARP_503);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2900),
        "answered after {took:?}, expected about 1 s"
    );
    assert_eq!(exapp.count(), 0);
}

/// The budget covers exapp-meta and user-info together: each alone fits, both do not.
#[tokio::test(flavor = "multi_thread")]
async fn b31_budget_covers_exapp_meta_and_user_info_together() {
    let nc = StubNextcloud::start().await;
    let exapp = EchoBackend::start().await;
    nc.set_app_delayed(
        "slow",
        record(exapp.port(), &[("^/", USER, &[])]),
        Duration::from_millis(1200),
    );
    nc.set_user(
        "session-1",
        200,
        json!({"user_id": "u", "access_level": 1}),
        Duration::from_millis(1200),
    );
    let harp = start_harp(&nc, &[("HP_DECISION_TIMEOUT", "2s")]);
    let started = Instant::now();
    let out = get(
        harp.http_addr(),
        "/exapps/slow/x",
        &[("cookie", "oc_sessionPassphrase=session-1")],
    )
    .await;
    let took = started.elapsed();
    assert_eq!(out.status(), 503, "{out:?}");
    assert_eq!(out.body_str(), HARP_503);
    // Without the shared budget the request would be proxied after about 2.4 s.
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "answered after {took:?}, expected about 2 s"
    );
    assert_eq!(nc.count("user-info"), 1, "user-info was reached");
    assert_eq!(exapp.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// B33, B34: HAProxy's pages after forwarding fails

#[tokio::test(flavor = "multi_thread")]
async fn b33_exapp_refusing_connections_gets_the_503_page() {
    let nc = StubNextcloud::start().await;
    let closed = ClosedPort::new();
    nc.set_app("app", record(closed.port(), &[("^/", PUBLIC, &[])]));
    let harp = start_harp(&nc, &[]);
    let started = Instant::now();
    let out = get(harp.http_addr(), "/exapps/app/x", &[]).await;
    let took = started.elapsed();
    assert_haproxy_page(&out, 503, PAGE_503);
    // As HAProxy: three retries, one second apart.
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(10),
        "503 after {took:?}, expected about 3 s"
    );
}

/// The point of HAProxy's retries: an ExApp that is back within them serves the request.
#[tokio::test(flavor = "multi_thread")]
async fn b33_exapp_back_within_the_retries_serves_the_request() {
    let nc = StubNextcloud::start().await;
    let closed = ClosedPort::new();
    nc.set_app("app", record(closed.port(), &[("^/", PUBLIC, &[])]));
    let harp = start_harp(&nc, &[]);
    let request = tokio::spawn(get(harp.http_addr(), "/exapps/app/x", &[]));
    // Deliberately late: the first connect must have been refused already.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let exapp = EchoBackend::start_on(&closed.addr().to_string()).await;
    let out = request.await.expect("request task");
    assert_eq!(out.status(), 200, "{out:?}");
    assert_eq!(exapp.count(), 1);
}

/// HP_TIMEOUT_CONNECT below one second shortens the pause between retries, as in HAProxy.
#[tokio::test(flavor = "multi_thread")]
async fn b33_retry_pause_is_at_most_the_connect_timeout() {
    let nc = StubNextcloud::start().await;
    let closed = ClosedPort::new();
    nc.set_app("app", record(closed.port(), &[("^/", PUBLIC, &[])]));
    let harp = start_harp(&nc, &[("HP_TIMEOUT_CONNECT", "100ms")]);
    let started = Instant::now();
    let out = get(harp.http_addr(), "/exapps/app/x", &[]).await;
    let took = started.elapsed();
    assert_haproxy_page(&out, 503, PAGE_503);
    assert!(took < Duration::from_millis(2000), "503 after {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn b34_silent_exapp_gets_the_504_page_after_the_server_timeout() {
    let nc = StubNextcloud::start().await;
    let silent = SilentBackend::start().await;
    nc.set_app("app", record(silent.port(), &[("^/", PUBLIC, &[])]));
    let harp = start_harp(&nc, &[("HP_TIMEOUT_SERVER", "1s")]);
    let started = Instant::now();
    let out = get(harp.http_addr(), "/exapps/app/x", &[]).await;
    let took = started.elapsed();
    assert_haproxy_page(&out, 504, PAGE_504);
    assert!(
        took >= Duration::from_millis(900),
        "504 after {took:?}, before the 1 s server timeout"
    );
    assert!(silent.accepted() >= 1);
}

// ---------------------------------------------------------------------------------------------
// B68: HTTPS

/// A self-signed certificate and its private key in one PEM, as HaRP's `/certs/cert.pem`.
fn write_cert_pem(dir: &std::path::Path) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()])
        .expect("generate self-signed certificate");
    let pem = format!(
        "{}{}",
        certified.cert.pem(),
        certified.signing_key.serialize_pem()
    );
    std::fs::write(dir.join("cert.pem"), pem).expect("write cert.pem");
}

/// What a client sees of an answer, apart from the headers that differ by time or connection.
async fn status_and_body(res: reqwest::Response) -> (u16, Vec<(String, String)>, String) {
    let status = res.status().as_u16();
    let headers = [
        "content-type",
        "content-length",
        "cache-control",
        "connection",
    ]
    .iter()
    .filter_map(|name| {
        let value = res.headers().get(*name)?.to_str().ok()?;
        Some((name.to_string(), value.to_string()))
    })
    .collect();
    (status, headers, res.text().await.expect("response body"))
}

#[tokio::test(flavor = "multi_thread")]
async fn b68_https_answers_like_http() {
    let nc = StubNextcloud::start().await;
    let exapp = EchoBackend::start().await;
    nc.set_app("app", record(exapp.port(), &[("^/", PUBLIC, &[])]));
    let certs = TempDir::new("certs");
    write_cert_pem(certs.path());
    let certs_dir = certs.path().display().to_string();
    let harp = start_harp(&nc, &[("HP_CERTS_DIR", &certs_dir)]);
    let (http, https) = (client(), https_client());

    // (path, expected status): HaRP's 404, HaRP's 401, a proxied request.
    for (path, expected) in [
        ("/", 404),
        ("/exapps/app_api/info", 401),
        ("/exapps/app/page?x=1", 200),
    ] {
        let plain = status_and_body(
            http.get(harp.url(path))
                .header("host", "cloud.example.test")
                .send()
                .await
                .expect("HTTP request"),
        )
        .await;
        let tls = status_and_body(
            https
                .get(harp.https_url(path))
                .header("host", "cloud.example.test")
                .send()
                .await
                .unwrap_or_else(|e| panic!("HTTPS request {path}: {e:?}")),
        )
        .await;
        assert_eq!(plain.0, expected, "HTTP {path}: {plain:?}");
        assert_eq!(tls, plain, "HTTPS and HTTP differ for {path}");
    }
    assert_eq!(exapp.count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn b68_without_cert_pem_nothing_listens_on_the_https_address() {
    let nc = StubNextcloud::start().await;
    let harp = start_harp(&nc, &[]);
    assert!(!harp.certs_dir().join("cert.pem").exists());
    let connected = TcpStream::connect(harp.https_addr()).await;
    assert!(
        connected.is_err(),
        "something accepts connections on {} without cert.pem",
        harp.https_addr()
    );
}

// ---------------------------------------------------------------------------------------------
// B69: WebSockets; SSE and keep-alive

const WS_COOKIE: &str = "oc_sessionPassphrase=sess-ws";

/// Nextcloud knows `wsapp` with a USER route to the echo backend and the session `sess-ws`.
async fn ws_setup() -> (StubNextcloud, EchoBackend) {
    let nc = StubNextcloud::start().await;
    let exapp = EchoBackend::start().await;
    nc.set_app("wsapp", record(exapp.port(), &[("^/ws", USER, &[])]));
    nc.set_user_level("sess-ws", "alice", USER);
    (nc, exapp)
}

async fn ws_open(harp: &Harp) -> WsStream {
    let url = format!("ws://{}/exapps/wsapp/ws", harp.http_addr());
    ws_connect(&url, &[("cookie", WS_COOKIE)]).await
}

/// Sends `text` and expects it back within 5 s.
async fn ws_echo(ws: &mut WsStream, text: &str) {
    ws.send(Message::text(text))
        .await
        .expect("send on WebSocket");
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap_or_else(|_| panic!("no echo of {text:?} within 5 s"));
    match reply {
        Some(Ok(message)) => assert_eq!(message, Message::text(text)),
        other => panic!("expected the echo of {text:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn b69_idle_websocket_outlives_the_client_timeout() {
    let (nc, exapp) = ws_setup().await;
    let harp = start_harp(
        &nc,
        &[("HP_TIMEOUT_CLIENT", "1s"), ("HP_TIMEOUT_TUNNEL", "3s")],
    );
    let mut ws = ws_open(&harp).await;
    ws_echo(&mut ws, "before").await;
    // The idle period is the behaviour under test: twice the client timeout.
    tokio::time::sleep(Duration::from_secs(2)).await;
    ws_echo(&mut ws, "after").await;
    let upgrade = exapp.last_request().expect("the ExApp got the upgrade");
    assert_eq!(upgrade.path, "/ws");
    assert_eq!(nc.count("user-info"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn b69_idle_websocket_is_closed_after_the_tunnel_timeout() {
    let (nc, _exapp) = ws_setup().await;
    let harp = start_harp(
        &nc,
        &[("HP_TIMEOUT_CLIENT", "1s"), ("HP_TIMEOUT_TUNNEL", "3s")],
    );
    let mut ws = ws_open(&harp).await;
    ws_echo(&mut ws, "last words").await;
    let idle_since = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    let idle = idle_since.elapsed();
    assert!(end.is_ok(), "idle WebSocket still open after {idle:?}");
    assert!(
        idle >= Duration::from_millis(2500),
        "closed after {idle:?} idle, before the 3 s tunnel timeout"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn b69_tunnel_timeout_zero_is_unlimited() {
    let (nc, _exapp) = ws_setup().await;
    // Neither the client nor the server timeout applies to an established tunnel.
    let harp = start_harp(
        &nc,
        &[
            ("HP_TIMEOUT_CLIENT", "1s"),
            ("HP_TIMEOUT_SERVER", "2s"),
            ("HP_TIMEOUT_TUNNEL", "0"),
        ],
    );
    let mut ws = ws_open(&harp).await;
    ws_echo(&mut ws, "before").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    ws_echo(&mut ws, "after").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_gaps_shorter_than_the_server_timeout_keep_streaming() {
    let nc = StubNextcloud::start().await;
    let exapp = EchoBackend::start().await;
    nc.set_app("app", record(exapp.port(), &[("^/", PUBLIC, &[])]));
    // Events come every 200 ms for 1 s: the stream outlasts the timeout, no gap does.
    let harp = start_harp(&nc, &[("HP_TIMEOUT_SERVER", "600ms")]);
    let started = Instant::now();
    let mut res = client()
        .get(harp.url("/exapps/app/sse"))
        .send()
        .await
        .expect("SSE request");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), res.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            Ok(Ok(None)) => break,
            Ok(Err(e)) => panic!(
                "stream broken after {:?} with {:?}: {e}",
                started.elapsed(),
                String::from_utf8_lossy(&body)
            ),
            Err(_) => panic!("stream stalled: {:?}", String::from_utf8_lossy(&body)),
        }
    }
    assert_eq!(
        String::from_utf8_lossy(&body),
        "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
}

/// Reads one HTTP/1.1 response (Content-Length or chunked) from a kept-alive connection.
async fn read_response(stream: &mut TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await.expect("read response head");
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response head {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let mut rest = buf[head_end..].to_vec();
    let body = if let Some(len) = header("content-length") {
        let len: usize = len.parse().expect("content-length");
        while rest.len() < len {
            let n = stream.read(&mut chunk).await.expect("read body");
            assert!(n > 0, "closed inside the body");
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        rest
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        // Enough for these tests: wait for the terminal chunk, then decode.
        while find(&rest, b"0\r\n\r\n").is_none() {
            let n = stream.read(&mut chunk).await.expect("read chunked body");
            assert!(n > 0, "closed inside the chunked body");
            rest.extend_from_slice(&chunk[..n]);
        }
        let mut body = Vec::new();
        let mut pos = 0;
        loop {
            let line_end = pos + find(&rest[pos..], b"\r\n").expect("chunk size line");
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&rest[pos..line_end]).trim(), 16)
                    .expect("chunk size");
            pos = line_end + 2;
            if size == 0 {
                break body;
            }
            body.extend_from_slice(&rest[pos..pos + size]);
            pos += size + 2;
        }
    } else {
        panic!("response without a length on a kept-alive connection: {head:?}");
    };
    (status, headers, body)
}

async fn keep_alive_get(stream: &mut TcpStream, harp: &Harp, path: &str) -> (u16, Vec<u8>) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", harp.http_addr());
    stream
        .write_all(req.as_bytes())
        .await
        .expect("write request");
    let (status, headers, body) =
        tokio::time::timeout(Duration::from_secs(10), read_response(stream))
            .await
            .unwrap_or_else(|_| panic!("no response to GET {path} within 10 s"));
    assert!(
        !headers
            .iter()
            .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close")),
        "harp closes the connection after GET {path}: {headers:?}"
    );
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_connection_serves_two_proxied_requests() {
    let nc = StubNextcloud::start().await;
    let exapp = EchoBackend::start().await;
    nc.set_app("app", record(exapp.port(), &[("^/", PUBLIC, &[])]));
    let harp = start_harp(&nc, &[]);
    let mut stream = TcpStream::connect(harp.http_addr()).await.expect("connect");
    for path in ["/one", "/two"] {
        let (status, body) =
            keep_alive_get(&mut stream, &harp, &format!("/exapps/app{path}")).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let echo: Value = serde_json::from_slice(&body).expect("echo JSON");
        assert_eq!(echo["path"], path);
    }
    assert_eq!(exapp.count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_connection_survives_a_harp_answer() {
    let nc = StubNextcloud::start().await;
    let exapp = EchoBackend::start().await;
    nc.set_app("app", record(exapp.port(), &[("^/", PUBLIC, &[])]));
    let harp = start_harp(&nc, &[]);
    let mut stream = TcpStream::connect(harp.http_addr()).await.expect("connect");
    // HaRP's own 404 (valid key: no strike), then a proxied request on the same connection.
    let req = format!(
        "GET /nowhere HTTP/1.1\r\nHost: {}\r\nharp-shared-key: {KEY}\r\n\r\n",
        harp.http_addr()
    );
    stream
        .write_all(req.as_bytes())
        .await
        .expect("write request");
    let (status, _, body) =
        tokio::time::timeout(Duration::from_secs(10), read_response(&mut stream))
            .await
            .expect("no answer to the first request");
    assert_eq!((status, body.as_slice()), (404, &b"404 Not Found"[..]));
    let (status, body) = keep_alive_get(&mut stream, &harp, "/exapps/app/after").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(exapp.count(), 1);
}

/// Reads until harp closes the connection (EOF or reset); returns how long that took and what
/// arrived. Panics if the connection is still open after `limit`.
async fn wait_for_close(stream: &mut TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    };
    if tokio::time::timeout(limit, read_all).await.is_err() {
        panic!("connection still open after {limit:?}");
    }
    (started.elapsed(), received)
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_idle_connection_is_closed_after_the_client_timeout() {
    let nc = StubNextcloud::start().await;
    let exapp = EchoBackend::start().await;
    nc.set_app("app", record(exapp.port(), &[("^/", PUBLIC, &[])]));
    let harp = start_harp(&nc, &[("HP_TIMEOUT_CLIENT", "1s")]);
    let mut stream = TcpStream::connect(harp.http_addr()).await.expect("connect");
    let (status, _) = keep_alive_get(&mut stream, &harp, "/exapps/app/x").await;
    assert_eq!(status, 200);
    let (idle, extra) = wait_for_close(&mut stream, Duration::from_secs(5)).await;
    assert!(extra.is_empty(), "{:?}", String::from_utf8_lossy(&extra));
    assert!(
        idle >= Duration::from_millis(900),
        "closed after {idle:?} idle, before the 1 s client timeout"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_without_a_request_is_closed_after_the_client_timeout() {
    let nc = StubNextcloud::start().await;
    let harp = start_harp(&nc, &[("HP_TIMEOUT_CLIENT", "1s")]);
    let mut stream = TcpStream::connect(harp.http_addr()).await.expect("connect");
    let (idle, _) = wait_for_close(&mut stream, Duration::from_secs(5)).await;
    assert!(
        idle >= Duration::from_millis(900),
        "closed after {idle:?}, before the 1 s client timeout"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn incomplete_request_head_is_closed_after_the_client_timeout() {
    let nc = StubNextcloud::start().await;
    let harp = start_harp(&nc, &[("HP_TIMEOUT_CLIENT", "1s")]);
    let mut stream = TcpStream::connect(harp.http_addr()).await.expect("connect");
    let partial = format!(
        "GET /exapps/app/x HTTP/1.1\r\nHost: {}\r\n",
        harp.http_addr()
    );
    stream.write_all(partial.as_bytes()).await.expect("write");
    // HAProxy may answer 408 before closing; the point is that the connection does not stay.
    let (idle, _) = wait_for_close(&mut stream, Duration::from_secs(5)).await;
    assert!(
        idle >= Duration::from_millis(900),
        "closed after {idle:?}, before the 1 s client timeout"
    );
}

/// Slowloris: a head trickling in a byte at a time still has to be complete within the client
/// timeout (HAProxy's `timeout http-request` falls back to `timeout client`).
#[tokio::test(flavor = "multi_thread")]
async fn request_head_sent_byte_by_byte_is_cut_at_the_client_timeout() {
    let nc = StubNextcloud::start().await;
    let harp = start_harp(&nc, &[("HP_TIMEOUT_CLIENT", "1s")]);
    let mut stream = TcpStream::connect(harp.http_addr()).await.expect("connect");
    let started = Instant::now();
    let head = format!(
        "GET /exapps/app/x HTTP/1.1\r\nHost: {}\r\nX-Slow: {}",
        harp.http_addr(),
        "a".repeat(100)
    );
    let mut cut_after = None;
    for byte in head.as_bytes() {
        // Each byte well within the per-read timeout.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if stream.write_all(&[*byte]).await.is_err() {
            cut_after = Some(started.elapsed());
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await
        {
            cut_after = Some(started.elapsed());
            break;
        }
    }
    let cut_after = cut_after.expect("harp waited for the whole trickling head");
    assert!(
        cut_after >= Duration::from_millis(900) && cut_after < Duration::from_secs(4),
        "cut after {cut_after:?}, expected about 1 s"
    );
}

/// A client that stops reading its response does not hold the connection (and the ExApp's)
/// beyond the client timeout.
#[tokio::test(flavor = "multi_thread")]
async fn client_that_stops_reading_is_cut_at_the_client_timeout() {
    const SIZE: usize = 64 * 1024 * 1024;
    let nc = StubNextcloud::start().await;
    let exapp = EchoBackend::start().await;
    nc.set_app("app", record(exapp.port(), &[("^/", PUBLIC, &[])]));
    let harp = start_harp(&nc, &[("HP_TIMEOUT_CLIENT", "1s")]);
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    // A small receive window, so harp's writes block almost at once.
    socket.set_recv_buffer_size(64 * 1024).expect("SO_RCVBUF");
    let mut stream = socket.connect(harp.http_addr()).await.expect("connect");
    let request = format!(
        "GET /exapps/app/big/{SIZE} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        harp.http_addr()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    // Not reading, for three client timeouts (the condition under test is harp's timer).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let drained = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the connection stayed open");
    assert!(
        received < SIZE / 2,
        "{received} of {SIZE} bytes arrived: harp kept writing to a client that did not read"
    );
}

// ---------------------------------------------------------------------------------------------
// B63, B64, Q5, Q9: start-up validation (§13.1)

fn assert_exit_1(out: &std::process::Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: expected exit 1, got {:?}\n{}",
        out.status,
        output_text(out)
    );
}

/// Exit 1 with exactly one problem line, which starts with `setting` (the variable and the value
/// as given, or `<hidden>` for the key) and says what is expected (B63, B64, Q5, Q9).
fn assert_one_problem(out: &std::process::Output, setting: &str, expected: &str) {
    assert_exit_1(out, setting);
    let text = output_text(out);
    let problems: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with(setting.split('=').next().unwrap_or(setting)))
        .collect();
    assert_eq!(problems.len(), 1, "one line per problem:\n{text}");
    assert!(
        problems[0].starts_with(&format!("{setting}:")),
        "names the variable and value: {}",
        problems[0]
    );
    assert!(
        problems[0].contains(&format!("expected {expected}")),
        "says what is expected: {}",
        problems[0]
    );
    assert!(!text.contains("from-env"), "the key leaked:\n{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn b63_key_and_key_file_together_exit_1() {
    let dir = TempDir::new("keyfile");
    let file = dir.join("key");
    std::fs::write(&file, "from-file\n").unwrap();
    let file = file.display().to_string();
    let out = run_harp(
        &[],
        &[("HP_SHARED_KEY", "from-env"), ("HP_SHARED_KEY_FILE", &file)],
    );
    assert_one_problem(
        &out,
        "HP_SHARED_KEY=<hidden>",
        "only one of the key and the key file",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn b63_key_with_a_forbidden_character_exits_1() {
    for key in ["ab\"cd", "ab\\cd"] {
        let out = run_harp(&[], &[("HP_SHARED_KEY", key)]);
        assert_one_problem(&out, "HP_SHARED_KEY=<hidden>", "no double quote");
        assert!(!output_text(&out).contains(key), "the key leaked");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn b63_non_ascii_key_exits_1() {
    let out = run_harp(&[], &[("HP_SHARED_KEY", "schlüssel")]);
    assert_one_problem(&out, "HP_SHARED_KEY=<hidden>", "printable ASCII only");
}

#[tokio::test(flavor = "multi_thread")]
async fn b63_surrounding_quotes_are_stripped_from_the_key() {
    let nc = StubNextcloud::start_with_key("abc").await;
    let harp = start_harp(&nc, &[("HP_SHARED_KEY", "'abc'")]);
    let out = get(
        harp.http_addr(),
        "/exapps/app_api/info",
        &[("harp-shared-key", "abc")],
    )
    .await;
    assert_eq!(out.status(), 200, "{out:?}");
    let out = get(
        harp.http_addr(),
        "/exapps/app_api/info",
        &[("harp-shared-key", "'abc'")],
    )
    .await;
    assert_eq!(out.status(), 401, "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn q5_key_empty_after_quote_stripping_exits_1() {
    for key in ["\"\"", "''"] {
        let out = run_harp(&[], &[("HP_SHARED_KEY", key)]);
        assert_one_problem(&out, "HP_SHARED_KEY=<hidden>", "a non-empty key");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn b64_missing_nc_instance_url_exits_1() {
    for value in [UNSET, ""] {
        let out = run_harp(&[], &[("NC_INSTANCE_URL", value)]);
        assert_one_problem(&out, "NC_INSTANCE_URL", "the base URL of Nextcloud");
    }
}

/// HaRP refuses an empty HP_FRP_ADDRESS; `HP_FRP_ADDRESS=` in a compose file must not quietly
/// mean the default here either.
#[tokio::test(flavor = "multi_thread")]
async fn b64_empty_frp_address_exits_1() {
    for (value, shown) in [("", "\"\""), ("''", "''")] {
        let out = run_harp(&[], &[("HP_FRP_ADDRESS", value)]);
        assert_one_problem(&out, &format!("HP_FRP_ADDRESS={shown}"), "host:port");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn b64_session_lifetime_above_10_exits_1_naming_the_variable() {
    let out = run_harp(&[], &[("HP_SESSION_LIFETIME", "11")]);
    assert_exit_1(&out, "HP_SESSION_LIFETIME=11");
    let text = output_text(&out);
    let naming: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("HP_SESSION_LIFETIME"))
        .collect();
    assert_eq!(naming.len(), 1, "{text}");
    assert!(naming[0].contains("11"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn b64_cert_validity_days_zero_exits_1() {
    let out = run_harp(&[], &[("HP_FRP_CERT_VALIDITY_DAYS", "0")]);
    assert_one_problem(
        &out,
        "HP_FRP_CERT_VALIDITY_DAYS=0",
        "a whole number of days",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn q9_blacklist_count_zero_exits_1_naming_the_variable() {
    let out = run_harp(&[], &[("HP_BLACKLIST_COUNT", "0")]);
    assert_one_problem(&out, "HP_BLACKLIST_COUNT=0", "a whole number of strikes");
}

#[tokio::test(flavor = "multi_thread")]
async fn q9_unknown_log_level_exits_1_naming_the_variable() {
    let out = run_harp(&[], &[("HP_LOG_LEVEL", "verbose")]);
    assert_one_problem(
        &out,
        "HP_LOG_LEVEL=verbose",
        "one of debug, info, warning, error",
    );
}

// ---------------------------------------------------------------------------------------------
// check-config, the YAML file, signals

#[tokio::test(flavor = "multi_thread")]
async fn check_config_prints_settings_with_the_key_masked() {
    let key = "Zq7-very-secret-shared-key";
    let out = run_harp(&["check-config"], &[("HP_SHARED_KEY", key)]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains(key), "the key leaks:\n{text}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.starts_with("HP_SHARED_KEY=")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("NC_INSTANCE_URL=http://127.0.0.1:9")),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l == "HP_BLACKLIST_COUNT=10"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_warns_when_the_decision_budget_leaves_no_room_for_the_fallback() {
    let out = run_harp(&["check-config"], &[("HP_DECISION_TIMEOUT", "20s")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("# warning: HP_DECISION_TIMEOUT"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stdout}");
    let out = run_harp(&["check-config"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("# warning"), "defaults warn:\n{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_masks_a_password_in_the_nextcloud_url() {
    let out = run_harp(
        &["check-config"],
        &[(
            "NC_INSTANCE_URL",
            "https://admin:pa55word@cloud.example.test/nc",
        )],
    );
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("pa55word"), "the password leaks:\n{text}");
    assert!(
        text.lines()
            .any(|l| l == "NC_INSTANCE_URL=https://admin:********@cloud.example.test/nc"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_reports_every_problem_at_once() {
    let out = run_harp(
        &["check-config"],
        &[
            ("HP_SESSION_LIFETIME", "11"),
            ("HP_BLACKLIST_COUNT", "0"),
            ("HP_LOG_LEVEL", "verbose"),
            ("NC_INSTANCE_URL", UNSET),
        ],
    );
    assert_exit_1(&out, "four invalid settings");
    let text = output_text(&out);
    for name in [
        "HP_SESSION_LIFETIME",
        "HP_BLACKLIST_COUNT",
        "HP_LOG_LEVEL",
        "NC_INSTANCE_URL",
    ] {
        assert!(
            text.lines().any(|l| l.contains(name)),
            "{name} not reported:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn yaml_config_file_is_read_and_the_environment_overrides_it() {
    let dir = TempDir::new("yaml");
    let file = dir.join("harp.yaml");
    std::fs::write(
        &file,
        "blacklist_count: 7\nsession_lifetime: 5\nblacklist_window: 120\n",
    )
    .unwrap();
    let file = file.display().to_string();
    let out = run_harp(
        &["check-config", "--config", &file],
        &[("HP_SESSION_LIFETIME", "2")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let lines: Vec<&str> = stdout.lines().collect();
    for expected in [
        "HP_BLACKLIST_COUNT=7",
        "HP_BLACKLIST_WINDOW=120",
        "HP_SESSION_LIFETIME=2",
    ] {
        assert!(lines.contains(&expected), "{expected} missing:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn yaml_config_file_named_by_harp_config() {
    let dir = TempDir::new("yaml");
    let file = dir.join("harp.yaml");
    std::fs::write(&file, "blacklist_count: 4\n").unwrap();
    let file = file.display().to_string();
    let out = run_harp(&["check-config"], &[("HARP_CONFIG", &file)]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        stdout.lines().any(|l| l == "HP_BLACKLIST_COUNT=4"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn b70_sigterm_exits_0() {
    let nc = StubNextcloud::start().await;
    let mut harp = start_harp(&nc, &[]);
    harp.signal("TERM");
    // Grace period 5 s plus shutdown: allow 15 s.
    let status = harp
        .wait_exit(Duration::from_secs(15))
        .expect("harp still running 15 s after SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", harp.log());
}

// ---------------------------------------------------------------------------------------------
// SIGHUP: certificate reload without dropping connections (HaRP forwards SIGHUP to HAProxy)

/// A self-signed certificate for `name`, written as HaRP's cert.pem (chain + key); returns the
/// certificate's PEM so a client can trust exactly this one.
fn write_named_cert(dir: &std::path::Path, name: &str) -> String {
    let certified =
        rcgen::generate_simple_self_signed(vec![name.into()]).expect("generate certificate");
    let cert = certified.cert.pem();
    let pem = format!("{cert}{}", certified.signing_key.serialize_pem());
    std::fs::write(dir.join("cert.pem"), pem).expect("write cert.pem");
    cert
}

/// A client that trusts only `cert_pem` and reaches `name` at harp's HTTPS address.
fn client_trusting(cert_pem: &str, name: &str, addr: std::net::SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .resolve(name, addr)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_https_certificate_and_keeps_requests_in_flight() {
    let nc = StubNextcloud::start().await;
    let exapp = EchoBackend::start().await;
    nc.set_app("app", record(exapp.port(), &[("^/", PUBLIC, &[])]));
    let certs = TempDir::new("certs");
    let first = write_named_cert(certs.path(), "first.test");
    let certs_dir = certs.path().display().to_string();
    let harp = start_harp(&nc, &[("HP_CERTS_DIR", &certs_dir)]);
    let addr = harp.https_addr();

    let first_client = client_trusting(&first, "first.test", addr);
    let url = |host: &str| format!("https://{host}:{}/exapps/app/sse", addr.port());
    let mut in_flight = first_client
        .get(url("first.test"))
        .send()
        .await
        .expect("SSE over HTTPS");
    let first_chunk = in_flight
        .chunk()
        .await
        .expect("first event")
        .expect("a chunk");
    assert!(String::from_utf8_lossy(&first_chunk).contains("data: "));

    let second = write_named_cert(certs.path(), "second.test");
    let second_client = client_trusting(&second, "second.test", addr);
    assert!(
        second_client.get(url("second.test")).send().await.is_err(),
        "second cert served before SIGHUP"
    );
    harp.signal("HUP");
    wait_for_log(&harp, "HTTPS certificate reloaded").await;

    let fresh = second_client
        .get(url("second.test"))
        .send()
        .await
        .expect("new cert after SIGHUP");
    assert_eq!(fresh.status(), 200);
    let mut rest = Vec::new();
    while let Some(chunk) = in_flight
        .chunk()
        .await
        .expect("stream continues across the reload")
    {
        rest.extend_from_slice(&chunk);
    }
    assert!(
        String::from_utf8_lossy(&rest).contains("data: 4"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_with_a_broken_cert_pem_keeps_the_old_certificate() {
    let nc = StubNextcloud::start().await;
    let certs = TempDir::new("certs");
    let first = write_named_cert(certs.path(), "first.test");
    let certs_dir = certs.path().display().to_string();
    let mut harp = start_harp(&nc, &[("HP_CERTS_DIR", &certs_dir)]);
    std::fs::write(certs.path().join("cert.pem"), "not a certificate").unwrap();
    harp.signal("HUP");
    wait_for_log(&harp, "keeping the previous HTTPS certificate").await;
    let client = client_trusting(&first, "first.test", harp.https_addr());
    let out = client
        .get(format!("https://first.test:{}/", harp.https_addr().port()))
        .send()
        .await
        .expect("old certificate still served");
    assert_eq!(out.status(), 404);
    assert!(harp.is_running());
}

// ---------------------------------------------------------------------------------------------
// SIGHUP: configuration reload

async fn wait_for_log(harp: &Harp, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !harp.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "{needle:?} never logged:\n{}",
            harp.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// harp configured by a YAML file (log level warning) in front of a PUBLIC echo ExApp `app`.
struct ConfiguredByFile {
    harp: Harp,
    yaml: std::path::PathBuf,
    _nc: StubNextcloud,
    _exapp: EchoBackend,
    _dir: TempDir,
}

impl ConfiguredByFile {
    async fn start() -> ConfiguredByFile {
        let nc = StubNextcloud::start().await;
        let exapp = EchoBackend::start().await;
        nc.set_app("app", record(exapp.port(), &[("^/", PUBLIC, &[])]));
        let dir = TempDir::new("yaml");
        let yaml = dir.join("harp.yaml");
        std::fs::write(&yaml, "log_level: warning\n").unwrap();
        let yaml_path = yaml.display().to_string();
        // HP_LOG_LEVEL unset: the environment would override the file.
        let harp = start_harp(&nc, &[("HARP_CONFIG", &yaml_path), ("HP_LOG_LEVEL", UNSET)]);
        ConfiguredByFile {
            harp,
            yaml,
            _nc: nc,
            _exapp: exapp,
            _dir: dir,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_log_level_and_trusted_proxies_and_names_the_rest() {
    let setup = ConfiguredByFile::start().await;
    let (harp, yaml) = (&setup.harp, &setup.yaml);
    let forwarded = [("x-forwarded-for", "198.51.100.7")];
    let before = get(harp.http_addr(), "/exapps/app/before", &forwarded).await;
    assert_eq!(before.status(), 200, "{before:?}");

    std::fs::write(
        yaml,
        "log_level: info\ntrusted_proxy_ips: [\"127.0.0.1\"]\nsession_lifetime: 5\n",
    )
    .unwrap();
    harp.signal("HUP");
    wait_for_log(harp, "SIGHUP: applied HP_TRUSTED_PROXY_IPS, HP_LOG_LEVEL").await;
    assert!(
        harp.log()
            .contains("SIGHUP: HP_SESSION_LIFETIME changed; they take effect at the next start"),
        "{}",
        harp.log()
    );
    let after = get(harp.http_addr(), "/exapps/app/after", &forwarded).await;
    assert_eq!(after.status(), 200, "{after:?}");
    // The access log (info) now exists and names the address the trusted proxy reported.
    wait_for_log(harp, "client=198.51.100.7 app=app GET /exapps/app/after").await;
    assert!(!harp.log().contains("/exapps/app/before"), "{}", harp.log());

    // The same file again: nothing to apply, and the restart-only change is reported again.
    harp.signal("HUP");
    wait_for_log(harp, "SIGHUP: HP_SESSION_LIFETIME changed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_with_an_invalid_config_file_changes_nothing() {
    let setup = ConfiguredByFile::start().await;
    let (harp, yaml) = (&setup.harp, &setup.yaml);
    std::fs::write(yaml, "log_level: info\nblacklist_count: many\n").unwrap();
    harp.signal("HUP");
    wait_for_log(harp, "SIGHUP: configuration not reloaded, nothing changed").await;
    assert!(harp.log().contains("blacklist_count"), "{}", harp.log());
    let out = get(harp.http_addr(), "/exapps/app/x", &[]).await;
    assert_eq!(out.status(), 200, "{out:?}");
    // Still at warning: no access-log line.
    assert!(!harp.log().contains("GET /exapps/app/x"), "{}", harp.log());
}
