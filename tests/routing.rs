//! Black-box tests of the `/exapps/<app>/...` routing pipeline (spec §3 D4-D13, §3.5, §3.7,
//! §3.8; checklist B8-B40, B72; quirks Q3, Q11, Q12, Q17, Q20; erratum E3).
//!
//! One test per behaviour family goes through the real binary here; every edge of the decision
//! itself (each D/Q rule against anonymous, user and admin callers, AppAPI's signed requests,
//! lookup failures, strikes) is a row of the unit tables in `src/gateway/decide_tests.rs` and
//! `src/gateway/phases/`, which need no sockets.
//!
//! Every test starts its own harp with a stub Nextcloud and an echo ExApp, and uses its own app
//! id, so tests are independent. Call counts come from the stubs' request records. Strikes are
//! observed with `HP_BLACKLIST_COUNT=1`: after one strike the same client IP is silently dropped.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use common::nextcloud::{EXAPP_META_PATH, NC_SET_COOKIE, USER_INFO_PATH};
use common::*;
use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const TOKEN: &str = "tok";
const VERSION: &str = "1.2.3";

type Routes<'a> = &'a [(&'a str, u8, &'a [u16])];

/// One route that accepts everybody.
const ALL_PUBLIC: Routes<'static> = &[(".*", PUBLIC, &[])];
const ALL_USER: Routes<'static> = &[(".*", USER, &[])];

/// The client IP used by tests that look for strikes.
fn striker() -> IpAddr {
    "127.0.0.2".parse().unwrap()
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn cookie(session: &str) -> String {
    format!("oc_sessionPassphrase={session}")
}

/// A stub Nextcloud, an echo ExApp and a harp wired to that Nextcloud.
struct Setup {
    nc: StubNextcloud,
    echo: EchoBackend,
    harp: Harp,
}

impl Setup {
    /// Nothing registered in Nextcloud yet.
    async fn empty(env: &[(&str, &str)]) -> Setup {
        let nc = StubNextcloud::start().await;
        let echo = EchoBackend::start().await;
        let url = nc.url();
        Setup::with_nc_url(nc, echo, &url, env)
    }

    fn with_nc_url(nc: StubNextcloud, echo: EchoBackend, url: &str, env: &[(&str, &str)]) -> Setup {
        let mut full = vec![("NC_INSTANCE_URL", url), ("HP_LOG_LEVEL", "info")];
        full.extend_from_slice(env);
        let harp = Harp::start(&full);
        Setup { nc, echo, harp }
    }

    /// `app` registered in Nextcloud with `routes`, pointing at the echo ExApp.
    async fn start(app: &str, routes: Routes<'_>, env: &[(&str, &str)]) -> Setup {
        let setup = Setup::empty(env).await;
        setup.nc.set_app(app, setup.record(routes));
        setup
    }

    /// An exapp-meta record pointing at the echo ExApp.
    fn record(&self, routes: Routes<'_>) -> Value {
        StubNextcloud::record(TOKEN, VERSION, "127.0.0.1", self.echo.port(), routes)
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> RawOutcome {
        get(self.harp.http_addr(), path, headers).await
    }

    async fn get_from(&self, ip: IpAddr, path: &str, headers: &[(&str, &str)]) -> RawOutcome {
        get_from(ip, self.harp.http_addr(), path, headers).await
    }

    /// The request the ExApp received last.
    fn forwarded(&self) -> EchoRequest {
        self.echo
            .last_request()
            .expect("the ExApp received no request")
    }

    /// Whether `ip` is banned now: a probe from it is silently dropped.
    async fn is_banned(&self, ip: IpAddr) -> bool {
        match self.get_from(ip, "/", &[]).await {
            RawOutcome::Reset => true,
            RawOutcome::Response { .. } => false,
            RawOutcome::Timeout => panic!("probe from {ip} timed out"),
        }
    }
}

/// HaRP's own answers (§3.4): exact status, `text/plain` without charset, exact body.
#[track_caller]
fn assert_harp(out: &RawOutcome, status: u16) {
    let body = match status {
        401 => "401 Unauthorized",
        403 => "403 Forbidden",
        404 => "404 Not Found",
        503 => "503 Service Unavailable (HaRP)",
        other => panic!("no HaRP answer with status {other}"),
    };
    assert_eq!(out.status(), status, "{out:?}");
    assert_eq!(out.header("content-type"), Some("text/plain"), "{out:?}");
    assert_eq!(out.body_str(), body);
}

/// A response relayed from the echo ExApp.
#[track_caller]
fn assert_forwarded(out: &RawOutcome) {
    assert_eq!(out.status(), 200, "{out:?}");
    assert_eq!(
        out.header("content-type"),
        Some("application/json"),
        "{out:?}"
    );
}

fn response_headers(out: &RawOutcome) -> Vec<(String, String)> {
    match out {
        RawOutcome::Response { headers, .. } => headers.clone(),
        other => panic!("expected an HTTP response, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// B8-B11: ExApp metadata, negative cache, singleflight, the exapp-meta call
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn b8_exapp_meta_401_is_404() {
    // Nothing registered: the stub answers exapp-meta with 401, as Nextcloud does.
    let s = Setup::empty(&[]).await;
    let out = s.get("/exapps/b8unknown/x", &[]).await;
    assert_harp(&out, 404);
    assert_eq!(s.nc.count("exapp-meta"), 1);
    assert_eq!(s.echo.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn b8_exapp_meta_404_is_404() {
    let s = Setup::empty(&[]).await;
    s.nc.set_app_response(
        "b8notfound",
        404,
        r#"{"message":"not found"}"#,
        common::nextcloud::JSON_CT,
        Duration::ZERO,
    );
    for _ in 0..2 {
        let out = s.get("/exapps/b8notfound/x", &[]).await;
        assert_harp(&out, 404);
    }
    assert_eq!(
        s.nc.count("exapp-meta"),
        1,
        "the 404 is cached like the 401"
    );
    assert_eq!(s.echo.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn b8_unknown_app_is_negatively_cached() {
    let s = Setup::empty(&[]).await;
    assert_harp(&s.get("/exapps/b8neg/x", &[]).await, 404);
    // Nextcloud learns about the app meanwhile: the negative entry still answers.
    s.nc.set_app("b8neg", s.record(ALL_PUBLIC));
    assert_harp(&s.get("/exapps/b8neg/y", &[]).await, 404);
    assert_harp(&s.get("/exapps/B8Neg/z", &[]).await, 404);
    assert_eq!(s.nc.count("exapp-meta"), 1);
}

/// R7: "no such app" is believed for the negative cache's lifetime, then asked again. The
/// lifetime is 15 s (`config::tests` checks the default); the test knob shortens it to 1.5 s so
/// both sides of the boundary are seen without waiting 16 s.
#[tokio::test(flavor = "multi_thread")]
async fn b8_negative_cache_expires_after_its_lifetime() {
    const TTL: Duration = Duration::from_millis(1500);
    let s = Setup::empty(&[(::harp::config::TEST_NEGATIVE_CACHE_TTL_VAR, "1500ms")]).await;
    // The entry is made after `sent` and before `answered`: it lives from one to the other + TTL.
    let sent = Instant::now();
    assert_harp(&s.get("/exapps/b8exp/x", &[]).await, 404);
    let answered = Instant::now();
    assert_harp(&s.get("/exapps/b8exp/x", &[]).await, 404);
    assert_eq!(s.nc.count("exapp-meta"), 1);
    s.nc.set_app("b8exp", s.record(ALL_PUBLIC));
    // Time-based behaviour: the entry lives its lifetime, not less ...
    tokio::time::sleep(Duration::from_millis(1000).saturating_sub(sent.elapsed())).await;
    assert_harp(&s.get("/exapps/b8exp/x", &[]).await, 404);
    assert_eq!(
        s.nc.count("exapp-meta"),
        1,
        "not cached {:?} after the first request",
        sent.elapsed()
    );
    // ... and not more.
    tokio::time::sleep((TTL + Duration::from_millis(100)).saturating_sub(answered.elapsed())).await;
    let out = s.get("/exapps/b8exp/x", &[]).await;
    assert_forwarded(&out);
    assert_eq!(s.nc.count("exapp-meta"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn b8_unknown_app_strikes() {
    let s = Setup::empty(&[("HP_BLACKLIST_COUNT", "1")]).await;
    assert_harp(&s.get_from(striker(), "/exapps/b8strike/x", &[]).await, 404);
    assert!(s.is_banned(striker()).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn b8_unknown_app_with_valid_key_does_not_strike() {
    let s = Setup::empty(&[("HP_BLACKLIST_COUNT", "1")]).await;
    let out = s
        .get_from(striker(), "/exapps/b8key/x", &[("harp-shared-key", KEY)])
        .await;
    assert_harp(&out, 404);
    assert!(!s.is_banned(striker()).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn b9_exapp_meta_500_is_404_and_not_cached() {
    let s = Setup::empty(&[]).await;
    s.nc.set_app_response("b9err", 500, "oops", "text/plain", Duration::ZERO);
    assert_harp(&s.get("/exapps/b9err/x", &[]).await, 404);
    assert_harp(&s.get("/exapps/b9err/x", &[]).await, 404);
    assert_eq!(s.nc.count("exapp-meta"), 2);
    // Nextcloud recovers: the very next request is served.
    s.nc.set_app("b9err", s.record(ALL_PUBLIC));
    assert_forwarded(&s.get("/exapps/b9err/x", &[]).await);
    assert_eq!(s.nc.count("exapp-meta"), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn b9_exapp_meta_500_adds_no_strike() {
    let s = Setup::empty(&[("HP_BLACKLIST_COUNT", "1")]).await;
    s.nc.set_app_response("b9nostrike", 500, "oops", "text/plain", Duration::ZERO);
    assert_harp(
        &s.get_from(striker(), "/exapps/b9nostrike/x", &[]).await,
        404,
    );
    assert!(!s.is_banned(striker()).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn b9_exapp_meta_non_json_content_type_is_404_and_not_cached() {
    let s = Setup::empty(&[]).await;
    let body = common::nextcloud::nc_json(&s.record(ALL_PUBLIC));
    s.nc.set_app_response(
        "b9html",
        200,
        &body,
        "text/html; charset=UTF-8",
        Duration::ZERO,
    );
    assert_harp(&s.get("/exapps/b9html/x", &[]).await, 404);
    assert_harp(&s.get("/exapps/b9html/x", &[]).await, 404);
    assert_eq!(s.nc.count("exapp-meta"), 2);
    assert_eq!(s.echo.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn b9_exapp_meta_numeric_version_is_404_without_strike() {
    let s = Setup::empty(&[("HP_BLACKLIST_COUNT", "1")]).await;
    let mut record = s.record(ALL_PUBLIC);
    record["exapp_version"] = json!(1);
    s.nc.set_app("b9schema", record);
    assert_harp(&s.get_from(striker(), "/exapps/b9schema/x", &[]).await, 404);
    assert!(!s.is_banned(striker()).await);
    assert_eq!(s.echo.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn exapp_meta_gzip_answer_is_decoded() {
    let s = Setup::start("gzipapp", ALL_PUBLIC, &[]).await;
    s.nc.set_gzip(true);
    assert_forwarded(&s.get("/exapps/gzipapp/x", &[]).await);
    assert_eq!(s.forwarded().header_all("ex-app-version"), vec![VERSION]);
}

#[tokio::test(flavor = "multi_thread")]
async fn b10_concurrent_first_requests_make_one_exapp_meta_call() {
    let s = Setup::empty(&[]).await;
    s.nc.set_app_delayed("b10app", s.record(ALL_PUBLIC), Duration::from_millis(500));
    let outs = join_all((0..20).map(|i| s.get_owned(format!("/exapps/b10app/r{i}")))).await;
    for out in &outs {
        assert_forwarded(out);
    }
    assert_eq!(s.nc.count("exapp-meta"), 1);
    assert_eq!(s.echo.count(), 20);
}

impl Setup {
    /// `get` with an owned path, for building many concurrent requests.
    async fn get_owned(&self, path: String) -> RawOutcome {
        self.get(&path, &[]).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn b11_exapp_meta_call_shape() {
    let s = Setup::start("b11app", ALL_PUBLIC, &[]).await;
    assert_forwarded(&s.get("/exapps/b11app/x", &[]).await);
    let calls = s.nc.requests_for("exapp-meta");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.method, "GET");
    assert_eq!(call.path, EXAPP_META_PATH);
    assert_eq!(call.query.as_deref(), Some("appId=b11app"));
    assert_eq!(call.header_all("harp-shared-key"), vec![KEY]);
}

#[tokio::test(flavor = "multi_thread")]
async fn b11_exapp_meta_call_shape_with_index_php_base_url() {
    let nc = StubNextcloud::start().await;
    let echo = EchoBackend::start().await;
    let url = nc.url_with_index();
    let s = Setup::with_nc_url(nc, echo, &url, &[]);
    s.nc.set_app("b11idx", s.record(ALL_PUBLIC));
    assert_forwarded(&s.get("/exapps/b11idx/x", &[]).await);
    assert_eq!(s.nc.count("other"), 0, "{:?}", s.nc.requests());
    let calls = s.nc.requests_for("exapp-meta");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "GET");
    assert_eq!(calls[0].path, EXAPP_META_PATH);
    assert_eq!(calls[0].query.as_deref(), Some("appId=b11idx"));
    assert_eq!(calls[0].header_all("harp-shared-key"), vec![KEY]);
}

// ---------------------------------------------------------------------------------------------
// B12-B14: app id spelling, upstream request construction
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn b12_app_id_lowercased_for_lookup_and_kept_in_ex_app_id() {
    let s = Setup::start("b12app", ALL_PUBLIC, &[]).await;
    assert_forwarded(&s.get("/exapps/B12App/x", &[]).await);
    let calls = s.nc.requests_for("exapp-meta");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].app_id().as_deref(), Some("b12app"));
    assert_eq!(s.forwarded().header_all("ex-app-id"), vec!["B12App"]);
    // The lower-cased spelling hits the same cache entry.
    assert_forwarded(&s.get("/exapps/b12app/x", &[]).await);
    assert_eq!(s.nc.count("exapp-meta"), 1);
    assert_eq!(s.forwarded().header_all("ex-app-id"), vec!["b12app"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn b13_public_route_anonymous_path_stripped_query_verbatim() {
    let s = Setup::start("b13path", ALL_PUBLIC, &[]).await;
    let out = s
        .get("/exapps/b13path/some/path?a=1&b=%2F&c=%41&d=x+y&e", &[])
        .await;
    assert_forwarded(&out);
    let up = s.forwarded();
    assert_eq!(up.method, "GET");
    assert_eq!(up.path, "/some/path");
    assert_eq!(up.query.as_deref(), Some("a=1&b=%2F&c=%41&d=x+y&e"));
    assert_eq!(up.target, "/some/path?a=1&b=%2F&c=%41&d=x+y&e");
    // The client got the ExApp's answer.
    assert_eq!(out.json()["path"], "/some/path");
}

#[tokio::test(flavor = "multi_thread")]
async fn b13_public_route_anonymous_appapi_headers() {
    let s = Setup::start("b13hdr", ALL_PUBLIC, &[]).await;
    assert_forwarded(&s.get("/exapps/b13hdr/x", &[]).await);
    let up = s.forwarded();
    assert_eq!(up.header_all("ex-app-id"), vec!["b13hdr"]);
    assert_eq!(up.header_all("ex-app-version"), vec![VERSION]);
    assert_eq!(up.header_all("aa-version"), vec!["32"]);
    assert_eq!(
        up.header_all("authorization-app-api"),
        vec![b64(&format!(":{TOKEN}")).as_str()]
    );
    assert_eq!(b64(":tok"), "OnRvaw==");
    assert_eq!(s.nc.count("user-info"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn b13_original_host_kept_and_no_forwarded_for_added() {
    let s = Setup::start("b13host", ALL_PUBLIC, &[]).await;
    let out = s
        .get(
            "/exapps/b13host/x",
            &[("Host", "cloud.example.com"), ("X-Custom", "kept")],
        )
        .await;
    assert_forwarded(&out);
    let up = s.forwarded();
    assert_eq!(up.header_all("host"), vec!["cloud.example.com"]);
    assert_eq!(up.header_all("x-custom"), vec!["kept"]);
    assert_eq!(up.header("x-forwarded-for"), None, "{:?}", up.headers);
    assert_eq!(up.header("via"), None, "{:?}", up.headers);
    assert_eq!(up.header("x-real-ip"), None, "{:?}", up.headers);
}

#[tokio::test(flavor = "multi_thread")]
async fn b13_client_forwarded_for_passes_unchanged() {
    let s = Setup::start("b13xff", ALL_PUBLIC, &[]).await;
    let out = s
        .get("/exapps/b13xff/x", &[("X-Forwarded-For", "203.0.113.7")])
        .await;
    assert_forwarded(&out);
    assert_eq!(
        s.forwarded().header_all("x-forwarded-for"),
        vec!["203.0.113.7"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn b14_client_appapi_headers_replaced_not_duplicated() {
    let s = Setup::start("b14app", ALL_PUBLIC, &[]).await;
    let out = s
        .get(
            "/exapps/b14app/x",
            &[
                ("EX-APP-ID", "evil"),
                ("EX-APP-VERSION", "0.0.0"),
                ("AUTHORIZATION-APP-API", "ZXZpbDp0b2s="),
                ("AA-VERSION", "99"),
                ("AA-REQUEST-ID", "req-1"),
            ],
        )
        .await;
    assert_forwarded(&out);
    let up = s.forwarded();
    assert_eq!(up.header_all("ex-app-id"), vec!["b14app"]);
    assert_eq!(up.header_all("ex-app-version"), vec![VERSION]);
    assert_eq!(
        up.header_all("authorization-app-api"),
        vec![b64(":tok").as_str()]
    );
    assert_eq!(up.header_all("aa-version"), vec!["32"]);
    assert_eq!(up.header_all("aa-request-id"), vec!["req-1"]);
}

// ---------------------------------------------------------------------------------------------
// B15-B21: users and route rules
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn b15_user_route_anonymous_is_403() {
    let s = Setup::start("b15app", ALL_USER, &[]).await;
    assert_harp(&s.get("/exapps/b15app/x", &[]).await, 403);
    assert_eq!(s.echo.count(), 0);
    assert_eq!(s.nc.count("user-info"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn b16_basic_auth_user_proxied_with_user_authorization() {
    let s = Setup::start("b16app", ALL_USER, &[]).await;
    let auth = basic_auth("u", "pw");
    s.nc.set_user_level(&auth, "u", USER);
    let out = s
        .get(
            "/exapps/B16App/x",
            &[("Authorization", &auth), ("X-Custom", "c1")],
        )
        .await;
    assert_forwarded(&out);
    let calls = s.nc.requests_for("user-info");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.method, "GET");
    assert_eq!(call.path, USER_INFO_PATH);
    assert_eq!(call.query.as_deref(), Some("appId=b16app"));
    assert_eq!(call.header_all("harp-shared-key"), vec![KEY]);
    assert_eq!(call.header_all("authorization"), vec![auth.as_str()]);
    assert_eq!(call.header_all("x-custom"), vec!["c1"]);
    let up = s.forwarded();
    assert_eq!(
        up.header_all("authorization-app-api"),
        vec![b64("u:tok").as_str()]
    );
    // Client credentials are kept towards the ExApp (Q11 keeps Authorization).
    assert_eq!(up.header_all("authorization"), vec![auth.as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn user_info_receives_client_headers_minus_host_and_content_length() {
    let s = Setup::start("uihdr", ALL_USER, &[]).await;
    s.nc.set_user_level("sess-uihdr", "alice", USER);
    let session = cookie("sess-uihdr");
    let out = request(
        s.harp.http_addr(),
        "POST",
        b"/exapps/UiHdr/submit?q=1",
        &[
            ("Host", "cloud.example.com"),
            ("Cookie", &format!("other=1; {session}")),
            ("X-Custom", "c1"),
            ("Accept-Language", "de"),
            ("User-Agent", "routing-test"),
        ],
        b"hello",
    )
    .await;
    assert_forwarded(&out);
    let calls = s.nc.requests_for("user-info");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.method, "GET");
    assert_eq!(call.path, USER_INFO_PATH);
    assert_eq!(call.query.as_deref(), Some("appId=uihdr"));
    assert_eq!(call.app_id().as_deref(), Some("uihdr"));
    assert_eq!(call.header_all("harp-shared-key"), vec![KEY]);
    assert_eq!(
        call.header_all("cookie"),
        vec![format!("other=1; {session}").as_str()]
    );
    assert_eq!(call.header_all("x-custom"), vec!["c1"]);
    assert_eq!(call.header_all("accept-language"), vec!["de"]);
    assert_eq!(call.header_all("user-agent"), vec!["routing-test"]);
    // Host is harp's own (the Nextcloud address), never the client's.
    assert_eq!(
        call.header_all("host"),
        vec![s.nc.addr().to_string().as_str()]
    );
    assert_eq!(call.header("content-length"), None, "{:?}", call.headers);
    // The ExApp still gets the body and the client's Host.
    let up = s.forwarded();
    assert_eq!(up.body, b"hello");
    assert_eq!(up.header_all("host"), vec!["cloud.example.com"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn user_info_shared_key_replaces_client_copy() {
    let s = Setup::start("uikey", ALL_USER, &[]).await;
    s.nc.set_user_level("sess-uikey", "alice", USER);
    let out = s
        .get(
            "/exapps/uikey/x",
            &[
                ("Cookie", &cookie("sess-uikey")),
                ("harp-shared-key", "client-guess"),
            ],
        )
        .await;
    assert_forwarded(&out);
    let calls = s.nc.requests_for("user-info");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].header_all("harp-shared-key"), vec![KEY]);
}

#[tokio::test(flavor = "multi_thread")]
async fn user_info_set_cookie_never_reaches_client() {
    let s = Setup::start("uicookie", ALL_USER, &[]).await;
    s.nc.set_user_level("sess-ok", "alice", USER);
    s.nc.set_user_level("sess-guest", "guest", PUBLIC);
    let ok = s
        .get("/exapps/uicookie/x", &[("Cookie", &cookie("sess-ok"))])
        .await;
    assert_forwarded(&ok);
    let denied = s
        .get("/exapps/uicookie/x", &[("Cookie", &cookie("sess-guest"))])
        .await;
    assert_harp(&denied, 403);
    assert_eq!(s.nc.count("user-info"), 2);
    for out in [&ok, &denied] {
        for (name, value) in response_headers(out) {
            assert!(
                !name.eq_ignore_ascii_case("set-cookie") && !value.contains("ocstubinstance"),
                "Nextcloud's {NC_SET_COOKIE:?} leaked: {name}: {value}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn b17_admin_route_level2_user_is_proxied() {
    let s = Setup::start("b17admin", &[(".*", ADMIN, &[])], &[]).await;
    s.nc.set_user_level("sess-b17a", "root", ADMIN);
    let out = s
        .get("/exapps/b17admin/x", &[("Cookie", &cookie("sess-b17a"))])
        .await;
    assert_forwarded(&out);
    assert_eq!(
        s.forwarded().header_all("authorization-app-api"),
        vec![b64("root:tok").as_str()]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn b18_first_matching_route_decides_without_fall_through() {
    let s = Setup::start("b18app", &[("^/a", ADMIN, &[]), (".*", PUBLIC, &[])], &[]).await;
    assert_harp(&s.get("/exapps/b18app/a", &[]).await, 403);
    assert_eq!(s.echo.count(), 0);
    assert_forwarded(&s.get("/exapps/b18app/b", &[]).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn b20_no_matching_route_is_404() {
    let s = Setup::start("b20app", &[("^/api", PUBLIC, &[])], &[]).await;
    assert_harp(&s.get("/exapps/b20app/other", &[]).await, 404);
    assert_eq!(s.echo.count(), 0);
}

/// Routes are Python regexes: look-ahead is valid there and must be evaluated, not skipped as
/// invalid, or an ADMIN route would let its paths fall through to a later PUBLIC one.
#[tokio::test(flavor = "multi_thread")]
async fn b21_python_look_ahead_route_is_evaluated() {
    let s = Setup::start(
        "b21look",
        &[("^/(?!public/)", ADMIN, &[]), (".*", PUBLIC, &[])],
        &[],
    )
    .await;
    assert_harp(&s.get("/exapps/b21look/settings", &[]).await, 403);
    assert_eq!(s.echo.count(), 0);
    assert_forwarded(&s.get("/exapps/b21look/public/x", &[]).await);
    assert_eq!(s.forwarded().path, "/public/x");
}

// ---------------------------------------------------------------------------------------------
// B22-B25, Q17, Q20, E3: user-info failures and the session cache
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn b22_user_info_500_on_user_route_is_401() {
    let s = Setup::start("b22app", ALL_USER, &[]).await;
    s.nc.set_user_info_default(500, json!({"message": "boom"}), Duration::ZERO);
    let out = s
        .get("/exapps/b22app/x", &[("Cookie", &cookie("sess-b22"))])
        .await;
    assert_harp(&out, 401);
    assert_eq!(s.nc.count("user-info"), 1);
    assert_eq!(s.echo.count(), 0);
}

/// A redirect on Nextcloud's own host is followed, and harp says once which URL to configure.
#[tokio::test(flavor = "multi_thread")]
async fn redirect_on_nextclouds_host_is_followed_and_reported_once() {
    let nc = StubNextcloud::start().await;
    let echo = EchoBackend::start().await;
    let moved = format!("{}/moved", nc.url());
    let s = Setup::with_nc_url(nc, echo, &moved, &[]);
    s.nc.set_app("moved", s.record(ALL_USER));
    s.nc.set_user_level("sess-moved", "u", USER);
    for _ in 0..2 {
        let out = s
            .get("/exapps/moved/x", &[("Cookie", &cookie("sess-moved"))])
            .await;
        assert_forwarded(&out);
    }
    assert_eq!(s.nc.count("exapp-meta"), 1);
    let log = s.harp.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("Nextcloud redirects harp's calls to"))
        .count();
    assert_eq!(warnings, 1, "{log}");
}

/// appapi-contract §9.2/§14.11: without `nc_sameSiteCookielax` Nextcloud answers user-info
/// with a 302 to itself; HaRP's outcome is 401, and it must not loop.
#[tokio::test(flavor = "multi_thread")]
async fn b22_user_info_redirect_is_401_without_a_loop() {
    let s = Setup::start("b22redirect", ALL_USER, &[]).await;
    s.nc.set_user_info_default(302, json!({}), Duration::ZERO);
    let out = s
        .get("/exapps/b22redirect/x", &[("Cookie", &cookie("sess-302"))])
        .await;
    assert_harp(&out, 401);
    assert_eq!(s.nc.count("user-info"), 1, "{:?}", s.nc.requests());
    assert_eq!(s.echo.count(), 0);
}

/// The same for exapp-meta: a redirect loop is a failed lookup (404, not cached), one call.
#[tokio::test(flavor = "multi_thread")]
async fn b9_exapp_meta_redirect_loop_is_404_after_one_call() {
    let s = Setup::empty(&[]).await;
    s.nc.set_app_response(
        "b9redirect",
        302,
        "",
        common::nextcloud::JSON_CT,
        Duration::ZERO,
    );
    assert_harp(&s.get("/exapps/b9redirect/x", &[]).await, 404);
    assert_eq!(s.nc.count("exapp-meta"), 1, "{:?}", s.nc.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn b22_user_info_timeout_on_user_route_is_401() {
    let s = Setup::start("b22slow", ALL_USER, &[("HP_NC_TIMEOUT", "1s")]).await;
    s.nc.set_user_info_default(
        200,
        json!({"user_id": "alice", "access_level": 1}),
        Duration::from_secs(3),
    );
    let started = Instant::now();
    let out = s
        .get("/exapps/b22slow/x", &[("Cookie", &cookie("sess-b22slow"))])
        .await;
    assert_harp(&out, 401);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.echo.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn b22_user_info_schema_error_on_user_route_is_401() {
    let s = Setup::start("b22schema", ALL_USER, &[]).await;
    s.nc.set_user(
        "sess-b22schema",
        200,
        json!({"user_id": "alice"}),
        Duration::ZERO,
    );
    let out = s
        .get(
            "/exapps/b22schema/x",
            &[("Cookie", &cookie("sess-b22schema"))],
        )
        .await;
    assert_harp(&out, 401);
    assert_eq!(s.echo.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn q17_user_info_500_on_public_route_proceeds_anonymously() {
    let s = Setup::start("q17app", ALL_PUBLIC, &[]).await;
    s.nc.set_user_info_default(500, json!({"message": "boom"}), Duration::ZERO);
    let out = s
        .get("/exapps/q17app/x", &[("Cookie", &cookie("sess-q17"))])
        .await;
    assert_forwarded(&out);
    assert_eq!(s.nc.count("user-info"), 1);
    assert_eq!(
        s.forwarded().header_all("authorization-app-api"),
        vec![b64(":tok").as_str()]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn b23_user_info_4xx_is_anonymous_on_public_route() {
    let s = Setup::start("b23pub", ALL_PUBLIC, &[]).await;
    for status in [401u16, 403, 404] {
        let session = format!("sess-b23pub-{status}");
        s.nc.set_user(&session, status, json!({"message": ""}), Duration::ZERO);
        let out = s
            .get("/exapps/b23pub/x", &[("Cookie", &cookie(&session))])
            .await;
        assert_forwarded(&out);
        assert_eq!(
            s.forwarded().header_all("authorization-app-api"),
            vec![b64(":tok").as_str()],
            "user-info {status}"
        );
    }
    assert_eq!(s.nc.count("user-info"), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn b24_session_cookie_cached_for_session_lifetime() {
    let s = Setup::start("b24app", ALL_USER, &[("HP_SESSION_LIFETIME", "1")]).await;
    s.nc.set_user_level("sess-b24", "alice", USER);
    let session = cookie("sess-b24");
    let headers = [("Cookie", session.as_str())];
    // Fetch the record first, so the timed part is the session cache alone.
    assert_harp(&s.get("/exapps/b24app/0", &[]).await, 403);
    let first = Instant::now();
    assert_forwarded(&s.get("/exapps/b24app/1", &headers).await);
    // The user was cached before this point, so has expired 1 s after it.
    let cached = Instant::now();
    assert_forwarded(&s.get("/exapps/b24app/2", &headers).await);
    assert!(
        first.elapsed() < Duration::from_secs(1),
        "too slow to test a 1 s lifetime"
    );
    assert_eq!(s.nc.count("user-info"), 1);
    // Time-based behaviour: wait out HP_SESSION_LIFETIME=1.
    tokio::time::sleep(Duration::from_millis(1100).saturating_sub(cached.elapsed())).await;
    assert_forwarded(&s.get("/exapps/b24app/3", &headers).await);
    assert_eq!(s.nc.count("user-info"), 2);
    assert_eq!(
        s.forwarded().header_all("authorization-app-api"),
        vec![b64("alice:tok").as_str()]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn b24_session_cache_shared_across_apps() {
    let s = Setup::start("b24a", ALL_USER, &[]).await;
    s.nc.set_app("b24b", s.record(ALL_USER));
    s.nc.set_user_level("sess-b24ab", "alice", USER);
    let session = cookie("sess-b24ab");
    assert_forwarded(&s.get("/exapps/b24a/x", &[("Cookie", &session)]).await);
    assert_forwarded(&s.get("/exapps/b24b/x", &[("Cookie", &session)]).await);
    assert_eq!(s.nc.count("user-info"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn b25_no_credentials_make_no_user_info_call() {
    let s = Setup::start(
        "b25app",
        &[("^/pub", PUBLIC, &[]), ("^/priv", USER, &[])],
        &[],
    )
    .await;
    assert_forwarded(&s.get("/exapps/b25app/pub", &[("Cookie", "other=1")]).await);
    assert_harp(&s.get("/exapps/b25app/priv", &[]).await, 403);
    assert_eq!(s.nc.count("user-info"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn q20_same_basic_auth_within_lifetime_makes_one_call() {
    let s = Setup::start("q20same", ALL_USER, &[]).await;
    let basic = basic_auth("u", "pw");
    let bearer = "Bearer app-password-token".to_string();
    for (calls, auth) in [(1, basic), (2, bearer)] {
        s.nc.set_user_level(&auth, "u", USER);
        for _ in 0..2 {
            assert_forwarded(
                &s.get("/exapps/q20same/x", &[("Authorization", &auth)])
                    .await,
            );
            assert_eq!(
                s.forwarded().header_all("authorization-app-api"),
                vec![b64("u:tok").as_str()]
            );
        }
        assert_eq!(s.nc.count("user-info"), calls, "{auth}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn q20_different_authorization_makes_another_call() {
    let s = Setup::start("q20diff", ALL_USER, &[]).await;
    let (alice, bob) = (basic_auth("alice", "pw"), basic_auth("bob", "pw"));
    s.nc.set_user_level(&alice, "alice", USER);
    s.nc.set_user_level(&bob, "bob", ADMIN);
    assert_forwarded(
        &s.get("/exapps/q20diff/x", &[("Authorization", &alice)])
            .await,
    );
    assert_forwarded(&s.get("/exapps/q20diff/x", &[("Authorization", &bob)]).await);
    assert_eq!(s.nc.count("user-info"), 2);
    assert_eq!(
        s.forwarded().header_all("authorization-app-api"),
        vec![b64("bob:tok").as_str()]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn q20_cached_cookie_with_other_authorization_makes_another_call() {
    let s = Setup::start("q20mix", ALL_USER, &[]).await;
    s.nc.set_user_level("sess-q20mix", "alice", USER);
    let session = cookie("sess-q20mix");
    assert_forwarded(&s.get("/exapps/q20mix/x", &[("Cookie", &session)]).await);
    let auth = basic_auth("bob", "pw");
    let out = s
        .get(
            "/exapps/q20mix/x",
            &[("Cookie", &session), ("Authorization", &auth)],
        )
        .await;
    assert_forwarded(&out);
    assert_eq!(s.nc.count("user-info"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn q20_concurrent_identical_misses_make_one_call() {
    let s = Setup::start("q20conc", ALL_USER, &[]).await;
    let auth = basic_auth("u", "pw");
    s.nc.set_user(
        &auth,
        200,
        json!({"user_id": "u", "access_level": 1}),
        Duration::from_millis(500),
    );
    let headers = [("Authorization", auth.as_str())];
    let outs = join_all((0..10).map(|_| s.get("/exapps/q20conc/x", &headers))).await;
    for out in &outs {
        assert_forwarded(out);
    }
    assert_eq!(s.nc.count("user-info"), 1);
    assert_eq!(s.echo.count(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn e3_public_route_logged_in_user_forwarded_with_user_id() {
    let s = Setup::start("e3app", ALL_PUBLIC, &[]).await;
    s.nc.set_user_level("sess-e3", "alice", USER);
    let out = s
        .get("/exapps/e3app/x", &[("Cookie", &cookie("sess-e3"))])
        .await;
    assert_forwarded(&out);
    assert_eq!(s.nc.count("user-info"), 1);
    assert_eq!(
        s.forwarded().header_all("authorization-app-api"),
        vec![b64("alice:tok").as_str()]
    );
}

// ---------------------------------------------------------------------------------------------
// B27, B28: AppAPI's six-header requests
// ---------------------------------------------------------------------------------------------

const APPAPI_AUTH: &str = "YWRtaW46c2VjcmV0LXRva2Vu";

#[tokio::test(flavor = "multi_thread")]
async fn b27_appapi_request_forwarded_regardless_of_routes() {
    // No routes at all, and a lifecycle path: only the six headers can get this through.
    let s = Setup::start("b27app", &[], &[]).await;
    let port = s.echo.port().to_string();
    let out = s
        .get(
            "/exapps/b27app/heartbeat",
            &[
                ("EX-APP-VERSION", VERSION),
                ("EX-APP-ID", "b27app"),
                ("EX-APP-HOST", "127.0.0.1"),
                ("EX-APP-PORT", &port),
                ("AUTHORIZATION-APP-API", APPAPI_AUTH),
                ("harp-shared-key", KEY),
                ("Cookie", &cookie("sess-b27")),
            ],
        )
        .await;
    assert_forwarded(&out);
    let up = s.forwarded();
    assert_eq!(up.path, "/heartbeat");
    assert_eq!(up.header_all("authorization-app-api"), vec![APPAPI_AUTH]);
    assert_eq!(up.header_all("aa-version"), vec!["32"]);
    assert_eq!(s.nc.count("user-info"), 0);
}

/// AppAPI's request to `app` (the six headers) naming `port` as the ExApp's port.
async fn appapi_heartbeat(s: &Setup, app: &str, port: u16) -> RawOutcome {
    let port = port.to_string();
    s.get(
        &format!("/exapps/{app}/heartbeat"),
        &[
            ("EX-APP-VERSION", VERSION),
            ("EX-APP-ID", app),
            ("EX-APP-HOST", "127.0.0.1"),
            ("EX-APP-PORT", &port),
            ("AUTHORIZATION-APP-API", APPAPI_AUTH),
            ("harp-shared-key", KEY),
        ],
    )
    .await
}

/// Issue 10 (2), AppAPI's exact sequence: register, heartbeats during the deploy (harp caches
/// the record), unregister without ever enabling (so no `DELETE /exapp_storage`), register
/// again on another port. A six-header request naming another `ex-app-port` than the cached
/// record fetches the record again (at most once per app every 2 s). Before the fix the
/// heartbeats kept going to the old port.
#[tokio::test(flavor = "multi_thread")]
async fn b27_appapi_request_naming_another_port_refetches_a_stale_record() {
    let s = Setup::empty(&[]).await;
    let old = EchoBackend::start().await;
    let old_record = StubNextcloud::record(TOKEN, VERSION, "127.0.0.1", old.port(), &[]);
    s.nc.set_app("b27moved", old_record);
    assert_forwarded(&appapi_heartbeat(&s, "b27moved", old.port()).await);
    assert_eq!(old.count(), 1);
    s.nc.remove_app("b27moved");
    s.nc.set_app("b27moved", s.record(&[]));
    assert_forwarded(&appapi_heartbeat(&s, "b27moved", s.echo.port()).await);
    assert_eq!(s.echo.count(), 1, "the heartbeat went to the old port");
    assert_eq!(old.count(), 1);
    assert_eq!(s.nc.count("exapp-meta"), 2);
    // Matching requests use the cache; mismatching ones ask again at most every 2 s.
    let started = Instant::now();
    for _ in 0..5 {
        assert_forwarded(&appapi_heartbeat(&s, "b27moved", s.echo.port()).await);
        assert_forwarded(&appapi_heartbeat(&s, "b27moved", old.port()).await);
    }
    let allowed = 3 + (started.elapsed().as_secs() / 2) as usize;
    assert!(
        s.nc.count("exapp-meta") <= allowed,
        "{}",
        s.nc.count("exapp-meta")
    );
    assert_eq!(
        s.echo.count(),
        11,
        "the record, not the header, is where requests go"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn b28_appapi_request_for_unknown_app_uses_header_address() {
    let s = Setup::empty(&[]).await;
    let port = s.echo.port().to_string();
    let out = s
        .get(
            "/exapps/b28app/enabled?enabled=1",
            &[
                ("EX-APP-VERSION", "4.5.6"),
                ("EX-APP-ID", "b28app"),
                ("EX-APP-HOST", "127.0.0.1"),
                ("EX-APP-PORT", &port),
                ("AUTHORIZATION-APP-API", APPAPI_AUTH),
                ("harp-shared-key", KEY),
            ],
        )
        .await;
    assert_forwarded(&out);
    let up = s.forwarded();
    assert_eq!(up.target, "/enabled?enabled=1");
    assert_eq!(up.header_all("ex-app-version"), vec!["4.5.6"]);
    assert_eq!(up.header_all("ex-app-id"), vec!["b28app"]);
    assert_eq!(up.header_all("authorization-app-api"), vec![APPAPI_AUTH]);
    assert_eq!(s.nc.count("user-info"), 0);
}

/// appapi-contract §7.1: the header address is the fallback whenever the metadata cannot be had:
/// Nextcloud failing (5xx, a bodiless `POST /init`) and the id sitting in the negative cache
/// (a bodiless-style `PUT /enabled`).
#[tokio::test(flavor = "multi_thread")]
async fn b28_appapi_request_falls_back_to_headers_on_failure_and_negative_cache() {
    let s = Setup::empty(&[]).await;
    let port = s.echo.port().to_string();
    let headers = [
        ("EX-APP-VERSION", "4.5.6"),
        ("EX-APP-ID", "b28fall"),
        ("EX-APP-HOST", "127.0.0.1"),
        ("EX-APP-PORT", port.as_str()),
        ("AUTHORIZATION-APP-API", APPAPI_AUTH),
        ("AA-REQUEST-ID", "req-28"),
        ("harp-shared-key", KEY),
    ];
    s.nc.set_app_response(
        "b28fall",
        500,
        r#"{"message":"boom"}"#,
        common::nextcloud::JSON_CT,
        Duration::ZERO,
    );
    let out = request(
        s.harp.http_addr(),
        "POST",
        b"/exapps/b28fall/init",
        &headers,
        b"",
    )
    .await;
    assert_forwarded(&out);
    assert_eq!(s.forwarded().method, "POST");
    assert_eq!(s.forwarded().target, "/init");
    assert_eq!(s.forwarded().header_all("aa-request-id"), vec!["req-28"]);

    // Unknown to Nextcloud: remembered for 15 s, and the headers still carry the request.
    assert_harp(&s.get("/exapps/b28neg/x", &[]).await, 404);
    let calls = s.nc.count("exapp-meta");
    let headers = headers.map(|(n, v)| (n, if v == "b28fall" { "b28neg" } else { v }));
    let out = request(
        s.harp.http_addr(),
        "PUT",
        b"/exapps/b28neg/enabled?enabled=0",
        &headers,
        b"",
    )
    .await;
    assert_forwarded(&out);
    assert_eq!(s.forwarded().method, "PUT");
    assert_eq!(s.forwarded().target, "/enabled?enabled=0");
    assert_eq!(
        s.nc.count("exapp-meta"),
        calls,
        "answered from the negative cache"
    );
}

// ---------------------------------------------------------------------------------------------
// B32: upstream address
// ---------------------------------------------------------------------------------------------

fn record_with_host(s: &Setup, host: &str) -> Value {
    StubNextcloud::record(TOKEN, VERSION, host, s.echo.port(), ALL_PUBLIC)
}

#[tokio::test(flavor = "multi_thread")]
async fn b32_unresolvable_exapp_host_is_404() {
    let s = Setup::empty(&[]).await;
    s.nc.set_app("b32dns", record_with_host(&s, "nonexistent.invalid"));
    assert_harp(&s.get("/exapps/b32dns/x", &[]).await, 404);
    assert_eq!(s.echo.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn b32_resolvable_host_name_is_used() {
    let s = Setup::empty(&[]).await;
    // First IPv4 answer for localhost: the echo backend's 127.0.0.1.
    s.nc.set_app("b32name", record_with_host(&s, "localhost"));
    assert_forwarded(&s.get("/exapps/b32name/x", &[]).await);
    assert_eq!(s.forwarded().path, "/x");
}

// ---------------------------------------------------------------------------------------------
// B40: records pushed by AppAPI
// ---------------------------------------------------------------------------------------------

async fn store_record(s: &Setup, app: &str, record: &Value) -> u16 {
    client()
        .post(s.harp.url(&format!("/exapps/app_api/exapp_storage/{app}")))
        .header("harp-shared-key", KEY)
        .header("content-type", "application/json")
        .body(record.to_string())
        .send()
        .await
        .expect("POST exapp_storage")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn b40_stored_record_used_without_exapp_meta() {
    let s = Setup::empty(&[]).await;
    assert_eq!(store_record(&s, "B40App", &s.record(ALL_PUBLIC)).await, 204);
    assert_forwarded(&s.get("/exapps/b40app/x", &[]).await);
    assert_forwarded(&s.get("/exapps/B40App/y", &[]).await);
    assert_eq!(s.nc.count("exapp-meta"), 0);
    assert_eq!(s.forwarded().header_all("ex-app-id"), vec!["B40App"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn b40_stored_record_clears_negative_cache() {
    let s = Setup::empty(&[]).await;
    assert_harp(&s.get("/exapps/b40neg/x", &[]).await, 404);
    assert_eq!(s.nc.count("exapp-meta"), 1);
    assert_eq!(store_record(&s, "b40neg", &s.record(ALL_PUBLIC)).await, 204);
    assert_forwarded(&s.get("/exapps/b40neg/x", &[]).await);
    assert_eq!(s.nc.count("exapp-meta"), 1);
}

// ---------------------------------------------------------------------------------------------
// Q12, Q3, Q11: target path and headers towards the ExApp
// ---------------------------------------------------------------------------------------------

const ROOT_ONLY: Routes<'static> = &[("^/$", PUBLIC, &[])];

#[tokio::test(flavor = "multi_thread")]
async fn q12_app_root_with_query_goes_upstream_as_root_with_query() {
    let s = Setup::start("q12query", ROOT_ONLY, &[]).await;
    assert_forwarded(&s.get("/exapps/q12query?x=1", &[]).await);
    let up = s.forwarded();
    assert_eq!(up.target, "/?x=1");
    assert_eq!(up.path, "/");
    assert_eq!(up.query.as_deref(), Some("x=1"));
}

const ADMIN_THEN_PUBLIC: Routes<'static> = &[("^/admin", ADMIN, &[]), (".*", PUBLIC, &[])];

#[tokio::test(flavor = "multi_thread")]
async fn q3_admin_user_exapp_receives_decoded_path() {
    let s = Setup::start("q3admin", ADMIN_THEN_PUBLIC, &[]).await;
    s.nc.set_user_level("sess-q3", "root", ADMIN);
    let out = s
        .get(
            "/exapps/q3admin/%61dmin?q=%61",
            &[("Cookie", &cookie("sess-q3"))],
        )
        .await;
    assert_forwarded(&out);
    let up = s.forwarded();
    assert_eq!(up.path, "/admin");
    // Only the path is normalised; the query stays verbatim.
    assert_eq!(up.query.as_deref(), Some("q=%61"));
}

#[tokio::test(flavor = "multi_thread")]
async fn q11_shared_key_not_forwarded_on_user_request() {
    let s = Setup::start("q11user", ALL_PUBLIC, &[]).await;
    let out = s
        .get("/exapps/q11user/x", &[("harp-shared-key", KEY)])
        .await;
    assert_forwarded(&out);
    let up = s.forwarded();
    assert_eq!(up.header("harp-shared-key"), None, "{:?}", up.headers);
}

#[tokio::test(flavor = "multi_thread")]
async fn q11_shared_key_not_forwarded_on_appapi_request() {
    let s = Setup::start("q11appapi", ALL_PUBLIC, &[]).await;
    let port = s.echo.port().to_string();
    let out = s
        .get(
            "/exapps/q11appapi/heartbeat",
            &[
                ("EX-APP-VERSION", VERSION),
                ("EX-APP-ID", "q11appapi"),
                ("EX-APP-HOST", "127.0.0.1"),
                ("EX-APP-PORT", &port),
                ("AUTHORIZATION-APP-API", APPAPI_AUTH),
                ("harp-shared-key", KEY),
            ],
        )
        .await;
    assert_forwarded(&out);
    let up = s.forwarded();
    assert_eq!(up.header("harp-shared-key"), None, "{:?}", up.headers);
    // The other AppAPI headers still reach the ExApp.
    assert_eq!(up.header_all("ex-app-host"), vec!["127.0.0.1"]);
}

// ---------------------------------------------------------------------------------------------
// Bodies, streaming, SSE, WebSocket
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn post_body_passes_through_intact() {
    let s = Setup::start("bodypost", ALL_PUBLIC, &[]).await;
    let body = big_body(300_000);
    let out = request(
        s.harp.http_addr(),
        "POST",
        b"/exapps/bodypost/upload",
        &[("Content-Type", "application/octet-stream")],
        &body,
    )
    .await;
    assert_forwarded(&out);
    let up = s.forwarded();
    assert_eq!(up.method, "POST");
    assert_eq!(up.body.len(), body.len());
    assert!(up.body == body, "the ExApp received a different body");
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_post_body_passes_through_intact() {
    let s = Setup::start("bodychunk", ALL_PUBLIC, &[]).await;
    let bytes = format!(
        "POST /exapps/bodychunk/upload HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        s.harp.http_addr()
    );
    let out = raw_request(
        s.harp.http_addr(),
        bytes.as_bytes(),
        Duration::from_secs(10),
    )
    .await;
    assert_forwarded(&out);
    let up = s.forwarded();
    assert_eq!(up.method, "POST");
    assert_eq!(up.body, b"hello world");
}

#[tokio::test(flavor = "multi_thread")]
async fn large_streamed_response_passes_through_intact() {
    let s = Setup::start("bigresp", ALL_PUBLIC, &[]).await;
    let res = client()
        .get(s.harp.url("/exapps/bigresp/big/1000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    let bytes = res.bytes().await.unwrap();
    assert_eq!(bytes.len(), 1_000_000);
    assert!(
        bytes.as_ref() == big_body(1_000_000).as_slice(),
        "body differs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_streams_events_as_they_come() {
    let s = Setup::start("sseapp", ALL_PUBLIC, &[]).await;
    // Warm the record cache so only streaming is timed.
    assert_forwarded(&s.get("/exapps/sseapp/warm", &[]).await);
    let started = Instant::now();
    let mut res = client()
        .get(s.harp.url("/exapps/sseapp/sse"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let first = res.chunk().await.unwrap().expect("a first event");
    let first_at = started.elapsed();
    assert!(first.starts_with(b"data: 0\n\n"), "{first:?}");
    let mut all = first.to_vec();
    while let Some(chunk) = res.chunk().await.unwrap() {
        all.extend_from_slice(&chunk);
    }
    assert_eq!(
        all,
        b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n"
    );
    // Events come every 200 ms; a buffering proxy would deliver the first after 1 s.
    assert!(
        first_at < Duration::from_millis(800),
        "first event after {first_at:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_echo_through_user_route_with_cookie() {
    let s = Setup::start("wsapp", ALL_USER, &[]).await;
    s.nc.set_user_level("sess-ws", "alice", USER);
    let url = format!("ws://{}/exapps/wsapp/ws?room=1", s.harp.http_addr());
    let mut ws = ws_connect(&url, &[("cookie", &cookie("sess-ws"))]).await;
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 2, 255])
    );
    ws.close(None).await.unwrap();
    let up = s.forwarded();
    assert_eq!(up.path, "/ws");
    assert_eq!(up.query.as_deref(), Some("room=1"));
    assert_eq!(
        up.header_all("authorization-app-api"),
        vec![b64("alice:tok").as_str()]
    );
    assert_eq!(s.nc.count("user-info"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrade_on_user_route_anonymous_is_403() {
    let s = Setup::start("wsanon", ALL_USER, &[]).await;
    let url = format!("ws://{}/exapps/wsanon/ws", s.harp.http_addr());
    match try_ws_connect(&url, &[]).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 403),
        Err(other) => panic!("expected a 403 answer, got {other:?}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
    assert_eq!(s.echo.count(), 0);
}
