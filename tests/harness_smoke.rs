//! The test harness on its own (no harp involved): stubs, raw client and WebSocket helper.

mod common;

use std::time::{Duration, Instant};

use common::nextcloud::{BAD_KEY_BODY, EXAPP_META_PATH, JSON_CT, NC_SET_COOKIE, USER_INFO_PATH};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

fn meta_url(nc: &StubNextcloud, app: &str) -> String {
    format!("{}{EXAPP_META_PATH}?appId={app}", nc.url())
}

fn user_url(nc: &StubNextcloud, app: &str) -> String {
    format!("{}{USER_INFO_PATH}?appId={app}", nc.url())
}

#[tokio::test(flavor = "multi_thread")]
async fn stub_nextcloud_exapp_meta() {
    let nc = StubNextcloud::start().await;
    let record = StubNextcloud::record(
        "tok",
        "1.0.0",
        "127.0.0.1",
        23000,
        &[("^api/.*", USER, &[401])],
    );
    nc.set_app("myapp", record.clone());
    let c = client();

    let res = c
        .get(meta_url(&nc, "myapp"))
        .header("harp-shared-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], JSON_CT);
    assert_eq!(res.headers()["set-cookie"], NC_SET_COOKIE);
    let text = res.text().await.unwrap();
    assert!(
        text.contains(r#""^api\/.*""#),
        "Nextcloud-style escaping: {text}"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        record
    );

    // Unknown app and wrong/missing key look the same.
    for (app, key) in [
        ("other", Some(KEY)),
        ("myapp", Some("wrong")),
        ("myapp", None),
    ] {
        let mut req = c.get(meta_url(&nc, app));
        if let Some(key) = key {
            req = req.header("harp-shared-key", key);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401);
        assert_eq!(res.text().await.unwrap(), BAD_KEY_BODY);
    }
    let no_app_id = format!("{}{EXAPP_META_PATH}?appid=myapp", nc.url());
    let res = c
        .get(no_app_id)
        .header("harp-shared-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = c
        .post(meta_url(&nc, "myapp"))
        .header("harp-shared-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);

    // Canned answer with a delay.
    nc.set_app_response(
        "slow",
        500,
        "oops",
        "text/plain",
        Duration::from_millis(300),
    );
    let started = Instant::now();
    let res = c
        .get(meta_url(&nc, "slow"))
        .header("harp-shared-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(res.text().await.unwrap(), "oops");

    // Recording.
    assert_eq!(nc.count("exapp-meta"), 7);
    assert_eq!(nc.count("user-info"), 0);
    let first = &nc.requests()[0];
    assert_eq!(first.method, "GET");
    assert_eq!(first.path, EXAPP_META_PATH);
    assert_eq!(first.query.as_deref(), Some("appId=myapp"));
    assert_eq!(first.app_id().as_deref(), Some("myapp"));
    assert_eq!(first.header("Harp-Shared-Key"), Some(KEY));
    nc.clear();
    assert!(nc.requests().is_empty());

    // Other paths are recorded as "other" and answer 404.
    let res = c
        .get(format!("{}/index.php/index.php/apps/x", nc.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(nc.requests_for("other").len(), 1);
    assert!(nc.url_with_index().ends_with("/index.php/"));
}

#[tokio::test(flavor = "multi_thread")]
async fn stub_nextcloud_user_info() {
    let nc = StubNextcloud::start().await;
    nc.set_app(
        "myapp",
        StubNextcloud::record("tok", "1.0.0", "127.0.0.1", 1, &[]),
    );
    nc.set_user_level("sess-alice", "alice", USER);
    nc.set_user_level(&basic_auth("admin", "pw"), "admin", ADMIN);
    let c = client();
    let ask = |headers: &[(&str, &str)], app: &str| {
        let mut req = c.get(user_url(&nc, app)).header("harp-shared-key", KEY);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }
    };

    assert_eq!(
        ask(&[], "myapp").await,
        (200, r#"{"user_id":"","access_level":0}"#.into())
    );
    let cookie = "a=b; oc_sessionPassphrase=sess-alice";
    let (status, body) = ask(&[("cookie", cookie)], "myapp").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({"user_id":"alice","access_level":1})
    );
    let auth = basic_auth("admin", "pw");
    let (status, body) = ask(&[("authorization", &auth)], "myapp").await;
    assert_eq!((status, body.contains(r#""access_level":2"#)), (200, true));
    // The session wins over Authorization, as in Nextcloud.
    let (_, body) = ask(&[("cookie", cookie), ("authorization", &auth)], "myapp").await;
    assert!(body.contains("alice"));
    assert_eq!(
        ask(&[("authorization", "Basic eDp5")], "myapp").await,
        (401, r#"{"message":""}"#.into())
    );
    assert_eq!(ask(&[], "unknown").await, (401, BAD_KEY_BODY.into()));

    nc.set_user_info_default(500, json!({"message": "boom"}), Duration::ZERO);
    assert_eq!(ask(&[("cookie", cookie)], "myapp").await.0, 500);
    nc.clear_user_info_default();
    assert_eq!(ask(&[("cookie", cookie)], "myapp").await.0, 200);

    assert_eq!(nc.count("user-info"), 8);
    let last = nc.requests_for("user-info").pop().unwrap();
    assert_eq!(last.header("cookie"), Some(cookie));
}

#[tokio::test(flavor = "multi_thread")]
async fn stub_nextcloud_gzip() {
    let nc = StubNextcloud::start().await;
    let record = StubNextcloud::record("tok", "1.0.0", "127.0.0.1", 1, &[("^/", PUBLIC, &[])]);
    nc.set_app("myapp", record.clone());
    nc.set_gzip(true);
    let path = format!("{EXAPP_META_PATH}?appId=myapp");
    let raw = get(
        nc.addr(),
        &path,
        &[("harp-shared-key", KEY), ("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.header("content-encoding"), Some("gzip"));
    assert_eq!(&raw.body()[..2], &[0x1f, 0x8b]);
    // reqwest (gzip feature) must decode our hand-made stream.
    let res = client()
        .get(meta_url(&nc, "myapp"))
        .header("harp-shared-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.json_value().await, record);
    // Without Accept-Encoding: plain.
    let raw = get(nc.addr(), &path, &[("harp-shared-key", KEY)]).await;
    assert_eq!(raw.header("content-encoding"), None);
    assert_eq!(raw.json(), record);
}

/// reqwest here has no "json" feature.
trait JsonValue {
    async fn json_value(self) -> serde_json::Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_backend_echoes_raw_target() {
    let echo = EchoBackend::start().await;
    let out = get(
        echo.addr(),
        "/a/../b%2e/./c?x=1&y=%2F",
        &[("X-Test", "1"), ("x-test", "2")],
    )
    .await;
    assert_eq!(out.status(), 200);
    assert_eq!(out.header("content-type"), Some("application/json"));
    let body = out.json();
    assert_eq!(body["method"], "GET");
    assert_eq!(body["path"], "/a/../b%2e/./c");
    assert_eq!(body["query"], "x=1&y=%2F");
    assert_eq!(body["headers"]["x-test"], json!(["1", "2"]));
    let last = echo.last_request().unwrap();
    assert_eq!(last.path, "/a/../b%2e/./c");
    assert_eq!(last.header_all("x-test"), vec!["1", "2"]);

    let out = request(echo.addr(), "POST", b"/p", &[], b"hello").await;
    assert_eq!(out.json()["body"], "hello");
    assert_eq!(out.json()["query"], serde_json::Value::Null);
    let out = get(echo.addr(), "/status/418", &[]).await;
    assert_eq!(
        (out.status(), out.body_str()),
        (418, "status 418".to_string())
    );
    let started = Instant::now();
    assert_eq!(get(echo.addr(), "/sleep/200", &[]).await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    let big = client()
        .get(format!("http://{}/big/300000", echo.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        big.bytes().await.unwrap().as_ref(),
        big_body(300_000).as_slice()
    );
    assert_eq!(echo.count(), 5);
    echo.clear();
    assert_eq!(echo.requests().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_backend_streams_sse() {
    let echo = EchoBackend::start().await;
    let started = Instant::now();
    let mut res = client()
        .get(format!("http://{}/sse", echo.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let first = res.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"data: 0\n\n");
    let first_at = started.elapsed();
    let mut all = first.to_vec();
    while let Some(chunk) = res.chunk().await.unwrap() {
        all.extend_from_slice(&chunk);
    }
    assert_eq!(
        all,
        b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n"
    );
    assert!(
        first_at < Duration::from_millis(700),
        "first event after {first_at:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(1000));
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_backend_websocket() {
    let echo = EchoBackend::start().await;
    let mut ws = ws_connect(
        &format!("ws://{}/ws/chat?room=1", echo.addr()),
        &[("x-hello", "1")],
    )
    .await;
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
    ws.send(Message::binary(vec![0u8, 1, 2])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 2])
    );
    ws.close(None).await.unwrap();
    let upgrade = echo.last_request().unwrap();
    assert_eq!(upgrade.path, "/ws/chat");
    assert_eq!(upgrade.header("x-hello"), Some("1"));
    // A plain GET on /ws is not an upgrade.
    assert!(try_ws_connect(&format!("ws://{}/nows", echo.addr()), &[])
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_request_outcomes() {
    // A server that accepts and closes without a byte: the silent-drop classification.
    let closer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closer_addr = closer.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = closer.accept().await {
            drop(stream);
        }
    });
    let out = get(closer_addr, "/x", &[]).await;
    assert!(out.is_silent_drop(), "{out:?}");

    // Chunked response with an extension and a trailer.
    let chunked = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let chunked_addr = chunked.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = chunked.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
        s.write_all(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n5;e=1\r\nhello\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(b"6\r\n world\r\n0\r\nT: v\r\n\r\n")
            .await
            .unwrap();
        // Keep the connection open: the parser must not wait for close.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let out = raw_request(
        chunked_addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(out.status(), 201);
    assert_eq!(out.body_str(), "hello world");
    assert_eq!(out.header("x-a"), Some("b"));

    // A backend that never answers.
    let silent = SilentBackend::start().await;
    let out = raw_request(
        silent.addr(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(out, RawOutcome::Timeout);
    assert_eq!(silent.accepted(), 1);

    // Content-Length and read-to-close against the echo backend, from another loopback IP.
    let echo = EchoBackend::start().await;
    let out = get_from("127.0.0.2".parse().unwrap(), echo.addr(), "/from", &[]).await;
    assert_eq!(out.json()["path"], "/from");
    let out = request(echo.addr(), "HEAD", b"/h", &[], b"").await;
    assert_eq!((out.status(), out.body().len()), (200, 0));

    // Nothing listens on a ClosedPort.
    let closed = ClosedPort::new();
    let err = client()
        .get(format!("http://{}/", closed.addr()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
}

#[test]
fn temp_dirs_and_ports() {
    let a = TempDir::new("smoke");
    let b = TempDir::new("smoke");
    assert_ne!(a.path(), b.path());
    std::fs::write(a.join("f"), "x").unwrap();
    let path = a.path().to_path_buf();
    drop(a);
    assert!(!path.exists());
    let ports = free_ports(4);
    let mut unique = ports.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 4);
}
