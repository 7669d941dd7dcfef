//! The brute-force guard and the client IP (harp-behaviour.md §3.2 D1-D9, §3.4, §3.9, §4, §5,
//! §16 Q1/Q2/Q4/Q22, §18 E1/E6; checklist B2-B7, B26, B29, B35-B39), and the gateway's
//! robustness against malformed requests.
//!
//! Strikes are observable only through bans. With `HP_BLACKLIST_COUNT=1` one strike bans, so
//! "a strike was recorded" means the next request from that client IP is silently dropped, and
//! "no strike" means it is still served. Each test connects from its own loopback addresses
//! (`127.<checklist number>.x.y`), and trusted-proxy tests choose the peer address the same way.
//!
//! harp-rs differs from HaRP on purpose (README): a valid `harp-shared-key` is never refused by a
//! ban and never adds strikes (Q1), the client IP is the rightmost untrusted `X-Forwarded-For`
//! entry (Q1), a wrong key on AppAPI's six-header request strikes the client IP (Q2), and
//! non-ASCII bytes never give a 503 (Q4). These tests assert harp-rs's behaviour.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use base64::Engine;
use common::raw::{build_request, DEFAULT_TIMEOUT};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const TOKEN: &str = "tok";

/// HaRP's own answers (§3.4): `text/plain`, no charset, no trailing newline.
const BODY_401: &str = "401 Unauthorized";
const BODY_404: &str = "404 Not Found";

/// The three traversal spellings of B5.
const TRAVERSALS: [&str; 4] = [
    "/exapps/app/../x",
    "/exapps/app/%2e%2E/x",
    "/exapps/app%2F..%2Fx",
    // The first segment counts too.
    "/../exapps/app/x",
];

/// B26: the lifecycle endpoints only AppAPI may call (the query is not part of the target path).
const LIFECYCLE: [&str; 4] = [
    "/exapps/app/heartbeat",
    "/exapps/app/init",
    "/exapps/app/enabled",
    "/exapps/app/init?x=1",
];

/// Request headers as (name, value) pairs.
type Headers<'a> = Vec<(&'a str, &'a str)>;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("IP literal")
}

/// harp with a stub Nextcloud and an echo ExApp behind two apps:
/// - `app`: `^/user` USER, then `^/` PUBLIC, no brute-force statuses;
/// - `bfapp`: `^/` PUBLIC with `bruteforce_protection: [401]`.
struct Gateway {
    nc: StubNextcloud,
    exapp: EchoBackend,
    harp: Harp,
}

impl Gateway {
    async fn start(env: &[(&str, &str)]) -> Gateway {
        let nc = StubNextcloud::start().await;
        let exapp = EchoBackend::start().await;
        nc.set_app(
            "app",
            StubNextcloud::record(
                TOKEN,
                "1.0.0",
                "127.0.0.1",
                exapp.port(),
                &[("^/user", USER, &[]), ("^/", PUBLIC, &[])],
            ),
        );
        nc.set_app(
            "bfapp",
            StubNextcloud::record(
                TOKEN,
                "1.0.0",
                "127.0.0.1",
                exapp.port(),
                &[("^/", PUBLIC, &[401])],
            ),
        );
        let url = nc.url();
        let mut all = vec![("NC_INSTANCE_URL", url.as_str())];
        all.extend_from_slice(env);
        let harp = Harp::start(&all);
        Gateway { nc, exapp, harp }
    }

    fn addr(&self) -> SocketAddr {
        self.harp.http_addr()
    }

    async fn get(&self, from: IpAddr, path: &str, headers: &[(&str, &str)]) -> RawOutcome {
        get_from(from, self.addr(), path, headers).await
    }

    /// Sends exactly `bytes` from `from` and reads one response (or the silent drop).
    async fn send(&self, from: IpAddr, bytes: &[u8]) -> RawOutcome {
        raw_request_from(from, self.addr(), bytes, DEFAULT_TIMEOUT).await
    }

    /// A PUBLIC ExApp request from `from` (with `headers`) reaches the ExApp: not banned.
    async fn assert_served(&self, from: IpAddr, headers: &[(&str, &str)], why: &str) {
        let out = self.get(from, "/exapps/app/ok", headers).await;
        assert!(
            matches!(out, RawOutcome::Response { status: 200, .. }),
            "{why}: expected the ExApp's 200 for {from} {headers:?}, got {out:?}"
        );
        assert_eq!(out.json()["path"], "/ok", "{why}");
    }

    /// The same request is silently dropped: `from` (or the client it names) is banned.
    async fn assert_dropped(&self, from: IpAddr, headers: &[(&str, &str)], why: &str) {
        let out = self.get(from, "/exapps/app/ok", headers).await;
        assert!(
            out.is_silent_drop(),
            "{why}: expected a silent drop for {from} {headers:?}, got {out:?}"
        );
    }
}

fn assert_harp_text(out: &RawOutcome, status: u16, body: &str, what: &str) {
    assert_eq!(out.status(), status, "{what}: {out:?}");
    assert_eq!(out.header("content-type"), Some("text/plain"), "{what}");
    assert_eq!(out.body_str(), body, "{what}");
}

fn assert_silent_drop(out: &RawOutcome, what: &str) {
    assert!(
        out.is_silent_drop(),
        "{what}: expected a silent drop, got {out:?}"
    );
}

/// AppAPI's six headers (D7) with the given key, aimed at the echo ExApp.
fn appapi_headers(exapp: &EchoBackend, key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ex-app-version", "1.0.0".to_string()),
        ("ex-app-id", "app".to_string()),
        ("ex-app-host", "127.0.0.1".to_string()),
        ("ex-app-port", exapp.port().to_string()),
        ("authorization-app-api", "c2lnbmVk".to_string()),
        ("harp-shared-key", key.to_string()),
    ]
}

fn borrowed<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

/// A GET whose header values are raw bytes (non-ASCII on purpose), with `Connection: close`.
fn get_with_raw_headers(path: &[u8], headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"GET ".to_vec();
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: harp.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

// ---------------------------------------------------------------------------------------------
// B2-B4: the control channel's key check and the ban window

#[tokio::test(flavor = "multi_thread")]
async fn b2_app_api_without_key_is_401_and_strikes() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "1")]).await;
    let client = ip("127.2.0.1");
    let out = gw.get(client, "/exapps/app_api/info", &[]).await;
    assert_harp_text(&out, 401, BODY_401, "GET /exapps/app_api/info without key");
    gw.assert_dropped(client, &[], "after the 401").await;
    gw.assert_served(ip("127.2.0.2"), &[], "another client")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn b2_app_api_without_key_adds_exactly_one_strike() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "2")]).await;
    let client = ip("127.2.1.1");
    let out = gw.get(client, "/exapps/app_api/info", &[]).await;
    assert_harp_text(&out, 401, BODY_401, "first request without key");
    gw.assert_served(client, &[], "one strike of two").await;
    let out = gw.get(client, "/exapps/app_api/info", &[]).await;
    assert_harp_text(&out, 401, BODY_401, "second request without key");
    gw.assert_dropped(client, &[], "two strikes of two").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn b3_tenth_wrong_key_bans_the_ip() {
    let gw = Gateway::start(&[]).await;
    let client = ip("127.3.0.1");
    for n in 1..=10 {
        let out = gw
            .get(
                client,
                "/exapps/app_api/info",
                &[("harp-shared-key", "wrong")],
            )
            .await;
        assert_harp_text(&out, 401, BODY_401, &format!("wrong-key request {n}"));
    }
    // The 11th request gets no HTTP response, whatever the path.
    for (path, headers) in [
        ("/exapps/app/ok", &[][..]),
        ("/exapps/app_api/info", &[("harp-shared-key", "wrong")][..]),
        ("/exapps/app_api/info", &[][..]),
        ("/", &[][..]),
    ] {
        let out = gw.get(client, path, headers).await;
        assert_silent_drop(&out, &format!("banned: GET {path} {headers:?}"));
    }
    assert_eq!(gw.exapp.count(), 0, "nothing reached the ExApp");
    gw.assert_served(ip("127.3.0.2"), &[], "another client")
        .await;
}

/// Q1 (README): HaRP refuses even the valid key from a banned IP; harp-rs serves it, so AppAPI
/// cannot be locked out.
#[tokio::test(flavor = "multi_thread")]
async fn b3_q1_banned_ip_with_the_valid_key_is_served() {
    let gw = Gateway::start(&[]).await;
    let client = ip("127.3.1.1");
    for n in 1..=10 {
        let out = gw
            .get(
                client,
                "/exapps/app_api/info",
                &[("harp-shared-key", "wrong")],
            )
            .await;
        assert_eq!(out.status(), 401, "wrong-key request {n}: {out:?}");
    }
    gw.assert_dropped(client, &[], "banned without key").await;

    let out = gw
        .get(client, "/exapps/app_api/info", &[("harp-shared-key", KEY)])
        .await;
    assert_eq!(out.status(), 200, "control API with the valid key: {out:?}");
    assert_eq!(out.json()["docker"], true);
    gw.assert_served(
        client,
        &[("harp-shared-key", KEY)],
        "ExApp with the valid key",
    )
    .await;
    // The key opens the door for its own requests only.
    gw.assert_dropped(client, &[], "still banned without key")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn b4_ban_lifts_once_the_first_strike_leaves_the_window() {
    let window = Duration::from_secs(2);
    let gw = Gateway::start(&[("HP_BLACKLIST_WINDOW", "2"), ("HP_BLACKLIST_COUNT", "3")]).await;
    let client = ip("127.4.0.1");
    let first_strike = Instant::now();
    for n in 1..=3 {
        let out = gw.get(client, "/exapps/app_api/info", &[]).await;
        assert_eq!(out.status(), 401, "strike {n}: {out:?}");
        if n == 1 {
            // Deliberately spaced: the ban must lift when the first strike is 2 s old, while the
            // later two are still in the window (a ban counted from the last strike lifts at 3 s).
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    gw.assert_dropped(client, &[], "banned after three strikes")
        .await;

    // Banned requests add no strikes (D2), so polling does not extend the ban.
    let deadline = first_strike + window + Duration::from_secs(5);
    let lifted_at = loop {
        let out = gw.get(client, "/exapps/app/ok", &[]).await;
        match out {
            RawOutcome::Response { status: 200, .. } => break first_strike.elapsed(),
            RawOutcome::Reset if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => panic!(
                "still not served {:?} after the first strike: {other:?}",
                first_strike.elapsed()
            ),
        }
    };
    assert!(
        lifted_at >= window,
        "the ban lifted after {lifted_at:?}, before the {window:?} window"
    );
    assert!(
        lifted_at < window + Duration::from_millis(800),
        "the ban lifted after {lifted_at:?}: counted from a later strike than the first"
    );
}

// ---------------------------------------------------------------------------------------------
// B5-B7: traversal and paths without an app id

#[tokio::test(flavor = "multi_thread")]
async fn b5_traversal_is_dropped_and_strikes() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "1")]).await;
    for (i, path) in TRAVERSALS.iter().enumerate() {
        let client = ip(&format!("127.5.0.{}", i + 1));
        let out = gw.get(client, path, &[]).await;
        assert_silent_drop(&out, &format!("GET {path}"));
        gw.assert_dropped(client, &[], &format!("after GET {path}"))
            .await;
    }
    assert_eq!(gw.exapp.count(), 0, "nothing reached the ExApp");
}

#[tokio::test(flavor = "multi_thread")]
async fn b5_traversal_with_the_valid_key_is_dropped_without_strike() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "1")]).await;
    let client = ip("127.5.1.1");
    for path in TRAVERSALS {
        let out = gw.get(client, path, &[("harp-shared-key", KEY)]).await;
        assert_silent_drop(&out, &format!("GET {path} with the valid key"));
    }
    gw.assert_served(client, &[], "no strike for the key holder")
        .await;
    assert_eq!(gw.exapp.count(), 1, "only the final request was forwarded");
}

#[tokio::test(flavor = "multi_thread")]
async fn b6_dot_lookalikes_are_routed_normally() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "1")]).await;
    let client = ip("127.6.0.1");
    for (path, target) in [("/exapps/app/.../x", "/.../x"), ("/exapps/app/..x", "/..x")] {
        let out = gw.get(client, path, &[]).await;
        assert_eq!(out.status(), 200, "GET {path}: {out:?}");
        assert_eq!(out.json()["path"], target, "GET {path}");
    }
    gw.assert_served(client, &[], "no strike").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn b7_path_without_app_id_is_404_and_strikes() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "1")]).await;
    for (i, path) in ["/", "/foo", "/exapps/", "/exapps//x", "/EXAPPS/app/x"]
        .iter()
        .enumerate()
    {
        let client = ip(&format!("127.7.0.{}", i + 1));
        let out = gw.get(client, path, &[]).await;
        assert_harp_text(&out, 404, BODY_404, &format!("GET {path}"));
        gw.assert_dropped(client, &[], &format!("after GET {path}"))
            .await;
    }
    assert_eq!(gw.exapp.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn b7_path_without_app_id_with_the_valid_key_adds_no_strike() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "1")]).await;
    let client = ip("127.7.1.1");
    for path in ["/", "/foo"] {
        let out = gw.get(client, path, &[("harp-shared-key", KEY)]).await;
        assert_harp_text(
            &out,
            404,
            BODY_404,
            &format!("GET {path} with the valid key"),
        );
    }
    gw.assert_served(client, &[], "no strike for the key holder")
        .await;
}

// ---------------------------------------------------------------------------------------------
// B26, B29, Q2: AppAPI-only endpoints and AppAPI's signed requests

#[tokio::test(flavor = "multi_thread")]
async fn b26_lifecycle_paths_without_appapi_headers_are_dropped_and_strike() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "1")]).await;
    for (i, path) in LIFECYCLE.iter().enumerate() {
        let client = ip(&format!("127.26.0.{}", i + 1));
        let out = gw.get(client, path, &[]).await;
        assert_silent_drop(&out, &format!("GET {path}"));
        gw.assert_dropped(client, &[], &format!("after GET {path}"))
            .await;
    }
    assert_eq!(gw.exapp.count(), 0, "nothing reached the ExApp");
}

/// HaRP strikes even with the valid key here; harp-rs never strikes a key holder (Q1).
#[tokio::test(flavor = "multi_thread")]
async fn b26_lifecycle_paths_with_the_valid_key_are_dropped_without_strike() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "1")]).await;
    let client = ip("127.26.1.1");
    for path in LIFECYCLE {
        let out = gw.get(client, path, &[("harp-shared-key", KEY)]).await;
        assert_silent_drop(&out, &format!("GET {path} with the valid key"));
    }
    gw.assert_served(client, &[], "no strike for the key holder")
        .await;
    assert_eq!(gw.exapp.count(), 1, "only the final request was forwarded");
}

#[tokio::test(flavor = "multi_thread")]
async fn b26_init_with_a_trailing_slash_is_routed_normally() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "1")]).await;
    let client = ip("127.26.2.1");
    let out = gw.get(client, "/exapps/app/init/", &[]).await;
    assert_eq!(out.status(), 200, "{out:?}");
    assert_eq!(out.json()["path"], "/init/");
    gw.assert_served(client, &[], "no strike").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn b29_appapi_headers_with_a_wrong_key_are_dropped_and_strike() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "1")]).await;
    let client = ip("127.29.0.1");
    let headers = appapi_headers(&gw.exapp, "wrong");
    let out = gw
        .get(client, "/exapps/app/anything", &borrowed(&headers))
        .await;
    assert_silent_drop(&out, "six AppAPI headers with a wrong key");
    gw.assert_dropped(client, &[], "after the wrong key").await;
    assert_eq!(gw.exapp.count(), 0, "nothing reached the ExApp");
}

/// "Strike" means exactly one: with a ban at two strikes, one refusal leaves the client served.
#[tokio::test(flavor = "multi_thread")]
async fn b26_b29_each_refusal_is_exactly_one_strike() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "2")]).await;
    let wrong_key = appapi_headers(&gw.exapp, "wrong");
    let refusals: [(&str, Headers); 2] = [
        ("/exapps/app/heartbeat", vec![]),
        ("/exapps/app/anything", borrowed(&wrong_key)),
    ];
    for (i, (path, headers)) in refusals.iter().enumerate() {
        let client = ip(&format!("127.29.2.{}", i + 1));
        let out = gw.get(client, path, headers).await;
        assert_silent_drop(&out, &format!("first GET {path}"));
        gw.assert_served(client, &[], &format!("one strike of two after {path}"))
            .await;
        let out = gw.get(client, path, headers).await;
        assert_silent_drop(&out, &format!("second GET {path}"));
        gw.assert_dropped(client, &[], &format!("two strikes after {path}"))
            .await;
    }
}

/// Q2: behind a trusted proxy the wrong key strikes the client, not the proxy (HaRP bans the
/// proxy, i.e. everyone behind it).
#[tokio::test(flavor = "multi_thread")]
async fn q2_wrong_appapi_key_strikes_the_forwarded_client_not_the_proxy() {
    let gw = Gateway::start(&[
        ("HP_BLACKLIST_COUNT", "1"),
        ("HP_TRUSTED_PROXY_IPS", "127.29.1.0/24"),
    ])
    .await;
    let proxy = ip("127.29.1.1");
    let mut headers = appapi_headers(&gw.exapp, "wrong");
    headers.push(("x-forwarded-for", "198.51.100.29".to_string()));
    let out = gw
        .get(proxy, "/exapps/app/anything", &borrowed(&headers))
        .await;
    assert_silent_drop(&out, "six AppAPI headers with a wrong key via the proxy");

    gw.assert_dropped(
        proxy,
        &[("x-forwarded-for", "198.51.100.29")],
        "the client is banned",
    )
    .await;
    gw.assert_served(proxy, &[], "the proxy itself is not banned")
        .await;
    gw.assert_served(
        proxy,
        &[("x-forwarded-for", "198.51.100.30")],
        "other clients of the proxy",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// B35-B36: strikes from the ExApp's own statuses

#[tokio::test(flavor = "multi_thread")]
async fn b35_bruteforce_status_is_relayed_unchanged_and_strikes() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "1")]).await;
    let client = ip("127.35.0.1");
    let out = gw.get(client, "/exapps/bfapp/status/401", &[]).await;
    assert_eq!(out.status(), 401, "{out:?}");
    assert_eq!(out.header("content-type"), Some("text/plain"));
    assert_eq!(out.body_str(), "status 401", "the ExApp's own body");
    gw.assert_dropped(client, &[], "after the ExApp's 401")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn b35_third_bruteforce_status_bans_with_count_3() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "3")]).await;
    let client = ip("127.35.1.1");
    for n in 1..=3 {
        let out = gw.get(client, "/exapps/bfapp/status/401", &[]).await;
        assert_eq!(
            (out.status(), out.body_str().as_str()),
            (401, "status 401"),
            "ExApp 401 number {n}: {out:?}"
        );
    }
    gw.assert_dropped(client, &[], "three strikes of three")
        .await;
    assert_eq!(gw.exapp.count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn b35_status_outside_the_list_adds_no_strike() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "1")]).await;
    let client = ip("127.35.2.1");
    for status in [403u16, 200] {
        let out = gw
            .get(client, &format!("/exapps/bfapp/status/{status}"), &[])
            .await;
        assert_eq!(out.status(), status, "{out:?}");
        assert_eq!(out.body_str(), format!("status {status}"));
    }
    gw.assert_served(client, &[], "no strike").await;
}

/// HaRP has no key exemption in the response phase; harp-rs never strikes a key holder (Q1).
#[tokio::test(flavor = "multi_thread")]
async fn b35_q1_bruteforce_status_with_the_valid_key_adds_no_strike() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "1")]).await;
    let client = ip("127.35.3.1");
    let out = gw
        .get(
            client,
            "/exapps/bfapp/status/401",
            &[("harp-shared-key", KEY)],
        )
        .await;
    assert_eq!(
        (out.status(), out.body_str().as_str()),
        (401, "status 401"),
        "{out:?}"
    );
    gw.assert_served(client, &[], "no strike for the key holder")
        .await;
}

/// §3.6: only the ExApp's own answers are evaluated, not the pages harp makes when the ExApp
/// cannot be reached, even if the route lists their status.
#[tokio::test(flavor = "multi_thread")]
async fn b35_harps_own_503_page_adds_no_strike() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "1"), ("HP_TIMEOUT_CONNECT", "50ms")]).await;
    let closed = ClosedPort::new();
    gw.nc.set_app(
        "downapp",
        StubNextcloud::record(
            TOKEN,
            "1.0.0",
            "127.0.0.1",
            closed.port(),
            &[("^/", PUBLIC, &[503])],
        ),
    );
    let client = ip("127.35.4.1");
    let out = gw.get(client, "/exapps/downapp/x", &[]).await;
    assert_eq!(out.status(), 503, "{out:?}");
    assert_eq!(out.header("content-type"), Some("text/html"), "harp's page");
    gw.assert_served(client, &[], "no strike for harp's own page")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn b36_exapp_401_without_bruteforce_protection_adds_no_strike() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "1")]).await;
    let client = ip("127.36.0.1");
    let out = gw.get(client, "/exapps/app/status/401", &[]).await;
    assert_eq!(
        (out.status(), out.body_str().as_str()),
        (401, "status 401"),
        "{out:?}"
    );
    gw.assert_served(client, &[], "no strike").await;
}

// ---------------------------------------------------------------------------------------------
// B37-B39, Q1: the client IP behind trusted proxies

#[tokio::test(flavor = "multi_thread")]
async fn b37_trusted_proxy_forwarded_client_takes_the_strikes() {
    let gw = Gateway::start(&[
        ("HP_BLACKLIST_COUNT", "1"),
        ("HP_TRUSTED_PROXY_IPS", "127.37.0.0/24"),
    ])
    .await;
    let proxy = ip("127.37.0.5");
    let out = gw
        .get(proxy, "/", &[("x-forwarded-for", "1.2.3.4, 127.37.0.5")])
        .await;
    assert_harp_text(&out, 404, BODY_404, "strike for 1.2.3.4");

    gw.assert_dropped(
        proxy,
        &[("x-forwarded-for", "1.2.3.4")],
        "1.2.3.4 is banned",
    )
    .await;
    gw.assert_served(
        proxy,
        &[("x-forwarded-for", "5.6.7.8")],
        "5.6.7.8 is not banned",
    )
    .await;
    gw.assert_served(proxy, &[], "the proxy is not banned")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn b37_untrusted_peer_forwarded_for_is_ignored() {
    let gw = Gateway::start(&[
        ("HP_BLACKLIST_COUNT", "1"),
        ("HP_TRUSTED_PROXY_IPS", "127.37.1.0/24"),
    ])
    .await;
    let untrusted = ip("127.37.2.5");
    let trusted = ip("127.37.1.5");
    let out = gw
        .get(untrusted, "/", &[("x-forwarded-for", "1.2.3.4")])
        .await;
    assert_harp_text(&out, 404, BODY_404, "strike from an untrusted peer");

    gw.assert_dropped(untrusted, &[], "the untrusted peer took the strike")
        .await;
    gw.assert_served(
        trusted,
        &[("x-forwarded-for", "1.2.3.4")],
        "1.2.3.4 was not struck",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn b38_garbage_forwarded_for_falls_back_to_x_real_ip() {
    let gw = Gateway::start(&[
        ("HP_BLACKLIST_COUNT", "1"),
        ("HP_TRUSTED_PROXY_IPS", "127.38.0.0/24"),
    ])
    .await;
    let proxy = ip("127.38.0.5");
    let out = gw
        .get(
            proxy,
            "/",
            &[("x-forwarded-for", "garbage"), ("x-real-ip", "5.6.7.8")],
        )
        .await;
    assert_harp_text(&out, 404, BODY_404, "strike for 5.6.7.8");

    gw.assert_dropped(proxy, &[("x-real-ip", "5.6.7.8")], "5.6.7.8 via X-Real-IP")
        .await;
    gw.assert_dropped(
        proxy,
        &[("x-forwarded-for", "5.6.7.8")],
        "5.6.7.8 via X-Forwarded-For",
    )
    .await;
    gw.assert_served(proxy, &[], "the proxy is not banned")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn b38_garbage_forwarded_for_and_real_ip_fall_back_to_the_peer() {
    let gw = Gateway::start(&[
        ("HP_BLACKLIST_COUNT", "1"),
        ("HP_TRUSTED_PROXY_IPS", "127.38.1.0/24"),
    ])
    .await;
    let proxy = ip("127.38.1.5");
    let out = gw
        .get(
            proxy,
            "/",
            &[("x-forwarded-for", "garbage"), ("x-real-ip", "nope")],
        )
        .await;
    assert_harp_text(&out, 404, BODY_404, "strike for the peer");

    gw.assert_dropped(proxy, &[], "the peer took the strike")
        .await;
    gw.assert_served(
        ip("127.38.1.6"),
        &[("x-real-ip", "nope")],
        "another proxy of the same network",
    )
    .await;
}

/// `HP_TRUSTED_PROXY_IPS="'10.0.0.7/24'"` in a shell gives the value `'10.0.0.7/24'`.
#[tokio::test(flavor = "multi_thread")]
async fn b39_quoted_trusted_proxy_is_unquoted_and_masked() {
    let gw = Gateway::start(&[
        ("HP_BLACKLIST_COUNT", "1"),
        ("HP_TRUSTED_PROXY_IPS", "'127.39.0.7/24'"),
    ])
    .await;
    // .20 is outside 127.39.0.7/32 but inside the masked 127.39.0.0/24.
    let proxy = ip("127.39.0.20");
    let out = gw.get(proxy, "/", &[("x-forwarded-for", "1.2.3.4")]).await;
    assert_harp_text(&out, 404, BODY_404, "strike for 1.2.3.4");
    gw.assert_served(proxy, &[], "the proxy is trusted, not struck")
        .await;
    gw.assert_dropped(
        proxy,
        &[("x-forwarded-for", "1.2.3.4")],
        "1.2.3.4 is banned",
    )
    .await;
}

/// Double, single and curly quotes (HaRP fix #112) are all stripped.
#[tokio::test(flavor = "multi_thread")]
async fn b39_double_and_curly_quotes_are_stripped_too() {
    let gw = Gateway::start(&[
        ("HP_BLACKLIST_COUNT", "1"),
        (
            "HP_TRUSTED_PROXY_IPS",
            "\"'127.39.1.7/24'\", \u{201C}127.39.2.0/24\u{201D}",
        ),
    ])
    .await;
    for proxy in [ip("127.39.1.20"), ip("127.39.2.20")] {
        let client = format!("192.0.2.{}", proxy.to_string().split('.').nth(2).unwrap());
        let out = gw
            .get(proxy, "/", &[("x-forwarded-for", client.as_str())])
            .await;
        assert_harp_text(&out, 404, BODY_404, &format!("strike for {client}"));
        gw.assert_served(proxy, &[], &format!("{proxy} is trusted, not struck"))
            .await;
        gw.assert_dropped(
            proxy,
            &[("x-forwarded-for", client.as_str())],
            &format!("{client} is banned"),
        )
        .await;
    }
}

/// Q1: an attacker behind an appending proxy (nginx `$proxy_add_x_forwarded_for`) writes the
/// victim's address into X-Forwarded-For; the proxy appends the attacker's real address. HaRP
/// (leftmost entry) bans the victim; harp-rs bans the attacker.
#[tokio::test(flavor = "multi_thread")]
async fn q1_rightmost_untrusted_forwarded_for_is_the_client() {
    let gw = Gateway::start(&[
        ("HP_BLACKLIST_COUNT", "1"),
        ("HP_TRUSTED_PROXY_IPS", "127.41.0.0/24"),
    ])
    .await;
    let proxy = ip("127.41.0.1");
    let (victim, attacker) = ("198.51.100.7", "203.0.113.9");
    let framed = format!("{victim}, {attacker}");
    let out = gw
        .get(proxy, "/", &[("x-forwarded-for", framed.as_str())])
        .await;
    assert_harp_text(&out, 404, BODY_404, "the attacker's strike");

    gw.assert_served(
        proxy,
        &[("x-forwarded-for", victim)],
        "the victim is unaffected",
    )
    .await;
    gw.assert_dropped(
        proxy,
        &[("x-forwarded-for", attacker)],
        "the attacker is banned",
    )
    .await;
}

/// Q1: X-Real-IP counts only when there is no X-Forwarded-For.
#[tokio::test(flavor = "multi_thread")]
async fn q1_x_real_ip_is_ignored_when_forwarded_for_is_valid() {
    let gw = Gateway::start(&[
        ("HP_BLACKLIST_COUNT", "1"),
        ("HP_TRUSTED_PROXY_IPS", "127.41.1.0/24"),
    ])
    .await;
    let proxy = ip("127.41.1.1");
    let (client, named_by_real_ip) = ("198.51.100.41", "203.0.113.41");
    let out = gw
        .get(
            proxy,
            "/",
            &[("x-forwarded-for", client), ("x-real-ip", named_by_real_ip)],
        )
        .await;
    assert_harp_text(&out, 404, BODY_404, "the strike");
    gw.assert_dropped(
        proxy,
        &[("x-forwarded-for", client)],
        "X-Forwarded-For's client",
    )
    .await;
    gw.assert_served(
        proxy,
        &[("x-real-ip", named_by_real_ip)],
        "X-Real-IP's address took no strike",
    )
    .await;
}

/// Q1: once banned, the attacker cannot evade the ban by writing another address.
#[tokio::test(flavor = "multi_thread")]
async fn q1_spoofed_forwarded_for_does_not_evade_a_ban() {
    let gw = Gateway::start(&[
        ("HP_BLACKLIST_COUNT", "1"),
        ("HP_TRUSTED_PROXY_IPS", "127.41.1.0/24"),
    ])
    .await;
    let proxy = ip("127.41.1.1");
    let attacker = "203.0.113.10";
    let out = gw.get(proxy, "/", &[("x-forwarded-for", attacker)]).await;
    assert_harp_text(&out, 404, BODY_404, "the attacker's strike");

    for spoof in ["192.0.2.99", "127.41.1.1", "garbage"] {
        let appended = format!("{spoof}, {attacker}");
        gw.assert_dropped(
            proxy,
            &[("x-forwarded-for", appended.as_str())],
            &format!("attacker posing as {spoof}"),
        )
        .await;
    }
    // Several proxies appending, each trusted: still the attacker.
    gw.assert_dropped(
        proxy,
        &[("x-forwarded-for", "192.0.2.99, 203.0.113.10, 127.41.1.7")],
        "through two trusted hops",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Q4, E1: non-ASCII bytes

#[tokio::test(flavor = "multi_thread")]
async fn q4_non_ascii_header_values_are_routed_normally() {
    let gw = Gateway::start(&[]).await;
    let value: &[u8] = b"caf\xc3\xa9 \xff\xfe latin-1 \xe9";
    let bytes = get_with_raw_headers(
        b"/exapps/app/q4",
        &[("X-Name", value), ("User-Agent", b"Mozill\xe4/5.0")],
    );
    let out = gw.send(ip("127.104.0.1"), &bytes).await;
    assert_eq!(out.status(), 200, "never 503: {out:?}");
    assert_eq!(out.json()["path"], "/q4");
    let seen = gw.exapp.last_request().expect("forwarded to the ExApp");
    assert_eq!(
        seen.header("x-name"),
        Some(String::from_utf8_lossy(value).as_ref()),
        "the bytes reach the ExApp unchanged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn q4_non_ascii_cookie_is_routed_normally() {
    let gw = Gateway::start(&[]).await;
    let bytes = get_with_raw_headers(
        b"/exapps/app/q4",
        &[(
            "Cookie",
            b"lang=d\xe9; oc_sessionPassphrase=\xe9t\xe9\xff; nc_username=J\xc3\xbcrgen",
        )],
    );
    let out = gw.send(ip("127.104.1.1"), &bytes).await;
    assert_eq!(out.status(), 200, "never 503: {out:?}");
    assert_eq!(out.json()["path"], "/q4");
}

#[tokio::test(flavor = "multi_thread")]
async fn q4_non_ascii_session_cookie_reaches_user_info_as_bytes() {
    let gw = Gateway::start(&[]).await;
    gw.nc.set_user_level("s\u{e9}ss\u{e9}", "alice", USER);
    let bytes = get_with_raw_headers(
        b"/exapps/app/user/me",
        &[("Cookie", b"oc_sessionPassphrase=s\xc3\xa9ss\xc3\xa9")],
    );
    let out = gw.send(ip("127.104.2.1"), &bytes).await;
    assert_eq!(out.status(), 200, "USER route for alice: {out:?}");
    let seen = gw.exapp.last_request().expect("forwarded to the ExApp");
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("alice:{TOKEN}"));
    assert_eq!(
        seen.header("authorization-app-api"),
        Some(expected.as_str())
    );
    let asked = gw.nc.requests_for("user-info");
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(
        asked[0].header("cookie"),
        Some("oc_sessionPassphrase=s\u{e9}ss\u{e9}")
    );
}

/// E1: HAProxy answers a non-ASCII request target with its 400 page; harp-rs may answer 400 or
/// route it, never 503.
#[tokio::test(flavor = "multi_thread")]
async fn e1_non_ascii_request_target_is_400_or_routed_never_503() {
    let gw = Gateway::start(&[]).await;
    let cases: [(&[u8], &[u16]); 4] = [
        (b"/exapps/app/caf\xc3\xa9", &[200, 400]),
        (b"/exapps/app/\xff\xfe", &[200, 400]),
        (b"/exapps/app/q?name=caf\xc3\xa9", &[200, 400]),
        // Unknown app (the stub answers 401): 404 when routed.
        (b"/exapps/\xc3\xa9app/x", &[404, 400]),
    ];
    for (i, (target, allowed)) in cases.iter().enumerate() {
        let from = ip(&format!("127.118.0.{}", i + 1));
        let bytes = build_request(gw.addr(), "GET", target, &[], b"");
        let out = gw.send(from, &bytes).await;
        let shown = String::from_utf8_lossy(target);
        eprintln!("GET {shown}: {out:?}");
        match out {
            RawOutcome::Response { status, .. } => assert!(
                allowed.contains(&status),
                "GET {shown}: got {status}, expected one of {allowed:?}: {out:?}"
            ),
            other => panic!("GET {shown}: expected an HTTP answer, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Q22, E6: what a silent drop looks like on the wire

/// How a raw exchange ended, for tests that look at the connection itself.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// The peer closed (FIN) or reset the connection.
    Closed { reset: bool },
    /// Still open when the timeout expired.
    TimedOut,
}

/// Writes `bytes` from `from`, then reads until the connection ends or `timeout` expires.
/// Returns every byte received and how the connection ended; a reset while writing counts as a
/// reset.
async fn exchange(
    from: IpAddr,
    addr: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> (Vec<u8>, Ending) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(from, 0))
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    let mut stream = socket
        .connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let mut received = Vec::new();
    let ending = tokio::time::timeout(timeout, async {
        let write_failed = stream.write_all(bytes).await.is_err();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break Ending::Closed { reset: false },
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) => {
                    let reset = matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::BrokenPipe
                    );
                    break Ending::Closed {
                        reset: reset || write_failed,
                    };
                }
            }
        }
    })
    .await
    .unwrap_or(Ending::TimedOut);
    (received, ending)
}

#[tokio::test(flavor = "multi_thread")]
async fn q22_silent_drop_is_a_reset_or_close_without_http_bytes() {
    let gw = Gateway::start(&[("HP_BLACKLIST_COUNT", "1")]).await;
    let banned = ip("127.122.0.9");
    let out = gw.get(banned, "/", &[]).await;
    assert_eq!(out.status(), 404, "strike for {banned}: {out:?}");

    let wrong_key = appapi_headers(&gw.exapp, "wrong");
    let cases: Vec<(&str, IpAddr, &str, Headers)> = vec![
        ("traversal", ip("127.122.0.1"), "/exapps/app/../x", vec![]),
        (
            "lifecycle path",
            ip("127.122.0.2"),
            "/exapps/app/heartbeat",
            vec![],
        ),
        (
            "six AppAPI headers, wrong key",
            ip("127.122.0.3"),
            "/exapps/app/x",
            borrowed(&wrong_key),
        ),
        ("banned client", banned, "/exapps/app/ok", vec![]),
    ];
    for (what, from, path, mut headers) in cases {
        // Keep-alive on purpose: an answered request would leave the connection open.
        headers.push(("connection", "keep-alive"));
        let bytes = build_request(gw.addr(), "GET", path.as_bytes(), &headers, b"");
        let (received, ending) = exchange(from, gw.addr(), &bytes, Duration::from_secs(5)).await;
        eprintln!("{what}: {ending:?}");
        assert!(
            received.is_empty(),
            "{what} (GET {path}): HTTP bytes {:?}",
            String::from_utf8_lossy(&received)
        );
        assert!(
            matches!(ending, Ending::Closed { .. }),
            "{what} (GET {path}): connection not ended: {ending:?}"
        );
    }
    assert_eq!(gw.exapp.count(), 0, "nothing reached the ExApp");
}

/// README (Q22): harp-rs's silent drop is a TCP reset (`SO_LINGER 0`), as HaRP's default image
/// shows local clients.
#[tokio::test(flavor = "multi_thread")]
async fn q22_silent_drop_is_a_tcp_reset() {
    let gw = Gateway::start(&[]).await;
    let bytes = build_request(gw.addr(), "GET", b"/exapps/app/../x", &[], b"");
    let (received, ending) =
        exchange(ip("127.122.1.1"), gw.addr(), &bytes, Duration::from_secs(5)).await;
    assert!(
        received.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    assert_eq!(ending, Ending::Closed { reset: true });
}

/// A keep-alive connection from `from` to harp.
async fn connect_from(from: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(from, 0))
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    socket
        .connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// Reads exactly one response framed by Content-Length (harp's and the echo ExApp's answers)
/// from a connection that stays open; returns its head and body.
async fn read_one_response(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let complete = |buf: &[u8]| -> bool {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
        buf.len() >= end + 4 + len
    };
    while !complete(&buf) {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("a complete response in time")
            .expect("read the response");
        assert!(
            n > 0,
            "closed inside the response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    buf
}

/// Reads until the connection ends; the bytes received, or `None` if it is still open after
/// `timeout`.
async fn read_until_end(stream: &mut TcpStream, timeout: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    tokio::time::timeout(timeout, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .ok()
    .map(|()| received)
}

/// E6: on a keep-alive connection, an answered request is followed by a dropped one: the second
/// gets no byte and the connection ends.
#[tokio::test(flavor = "multi_thread")]
async fn e6_silent_drop_on_a_keep_alive_connection_writes_nothing_more() {
    let gw = Gateway::start(&[]).await;
    let mut stream = connect_from(ip("127.118.6.1"), gw.addr()).await;
    let keep_alive = [("connection", "keep-alive")];
    let first = build_request(gw.addr(), "GET", b"/exapps/app/first", &keep_alive, b"");
    stream.write_all(&first).await.unwrap();
    let answer = read_one_response(&mut stream).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    let second = build_request(gw.addr(), "GET", b"/exapps/app/../x", &keep_alive, b"");
    let _ = stream.write_all(&second).await;
    let after = read_until_end(&mut stream, Duration::from_secs(5))
        .await
        .expect("the connection stayed open after the drop");
    assert!(
        after.is_empty(),
        "bytes after the drop: {:?}",
        String::from_utf8_lossy(&after)
    );
}

// ---------------------------------------------------------------------------------------------
// Robustness: malformed requests never take harp down

/// Every case gets an HTTP answer or a closed connection (never a hang, never non-HTTP bytes),
/// and harp keeps running and serving.
#[tokio::test(flavor = "multi_thread")]
async fn robustness_malformed_requests_get_an_answer_or_a_close() {
    let mut gw = Gateway::start(&[]).await;
    let host = gw.addr().to_string();
    let head = |first_line: &str, extra: &str| -> Vec<u8> {
        format!("{first_line}\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n").into_bytes()
    };
    let with_body = |mut head: Vec<u8>, body: &[u8]| {
        head.extend_from_slice(body);
        head
    };
    let long_path = format!("/exapps/app/{}", "a/".repeat(10_000));
    let many_headers: String = (0..2_000).map(|i| format!("X-H-{i}: v\r\n")).collect();
    let junk: Vec<u8> = (0u8..=255).chain(*b"\r\n\r\n").collect();

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage request line", b"HELLO THERE\r\n\r\n".to_vec()),
        ("binary junk", junk),
        (
            "HTTP/2 preface on the HTTP/1 port",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        (
            "unknown HTTP version",
            head("GET /exapps/app/ok HTTP/9.9", ""),
        ),
        ("unknown method", head("FOO /exapps/app/ok HTTP/1.1", "")),
        (
            "target without a leading slash",
            head("GET exapps/app/ok HTTP/1.1", ""),
        ),
        (
            "space inside the target",
            head("GET /exapps/app/a b HTTP/1.1", ""),
        ),
        (
            "header over 64 KiB",
            head(
                "GET /exapps/app/ok HTTP/1.1",
                &format!("X-Big: {}\r\n", "a".repeat(70 * 1024)),
            ),
        ),
        (
            "2000 headers",
            head("GET /exapps/app/ok HTTP/1.1", &many_headers),
        ),
        (
            "header name with a space",
            head("GET /exapps/app/ok HTTP/1.1", "Bad Header: x\r\n"),
        ),
        (
            "header name with parentheses",
            head("GET /exapps/app/ok HTTP/1.1", "X(y): z\r\n"),
        ),
        (
            "empty header name",
            head("GET /exapps/app/ok HTTP/1.1", ": v\r\n"),
        ),
        (
            "header line without a colon",
            head("GET /exapps/app/ok HTTP/1.1", "NoColonHere\r\n"),
        ),
        (
            "obsolete line folding",
            head("GET /exapps/app/ok HTTP/1.1", "X-A: a\r\n b\r\n"),
        ),
        (
            "bare LF line endings",
            format!("GET /exapps/app/ok HTTP/1.1\nHost: {host}\nConnection: close\n\n")
                .into_bytes(),
        ),
        (
            "invalid chunk size",
            with_body(
                head(
                    "POST /exapps/app/ok HTTP/1.1",
                    "Transfer-Encoding: chunked\r\n",
                ),
                b"ZZZ\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        (
            "overflowing chunk size",
            with_body(
                head(
                    "POST /exapps/app/ok HTTP/1.1",
                    "Transfer-Encoding: chunked\r\n",
                ),
                b"FFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        (
            "unknown transfer coding",
            with_body(
                head(
                    "POST /exapps/app/ok HTTP/1.1",
                    "Transfer-Encoding: gzip, identity\r\n",
                ),
                b"hello",
            ),
        ),
        (
            "Content-Length and Transfer-Encoding",
            with_body(
                head(
                    "POST /exapps/app/ok HTTP/1.1",
                    "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                ),
                b"0\r\n\r\nG",
            ),
        ),
        (
            "two different Content-Lengths",
            with_body(
                head(
                    "POST /exapps/app/ok HTTP/1.1",
                    "Content-Length: 5\r\nContent-Length: 6\r\n",
                ),
                b"hello!",
            ),
        ),
        (
            "negative Content-Length",
            with_body(
                head("POST /exapps/app/ok HTTP/1.1", "Content-Length: -1\r\n"),
                b"x",
            ),
        ),
        (
            "non-numeric Content-Length",
            with_body(
                head("POST /exapps/app/ok HTTP/1.1", "Content-Length: abc\r\n"),
                b"x",
            ),
        ),
        (
            "absolute-form target",
            head(&format!("GET http://{host}/exapps/app/ok HTTP/1.1"), ""),
        ),
        (
            "absolute-form target with another authority",
            head("GET http://evil.example/exapps/app/ok HTTP/1.1", ""),
        ),
        ("asterisk-form target", head("OPTIONS * HTTP/1.1", "")),
        (
            "authority-form CONNECT",
            head("CONNECT 127.0.0.1:22 HTTP/1.1", ""),
        ),
        ("HTTP/1.0", b"GET /exapps/app/ok HTTP/1.0\r\n\r\n".to_vec()),
        (
            "pipelined requests",
            [
                format!("GET /exapps/app/one HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
                head("GET /exapps/app/two HTTP/1.1", ""),
            ]
            .concat(),
        ),
        ("NUL in the path", head("GET /exapps/app/a\0b HTTP/1.1", "")),
        (
            "NUL in a header value",
            head("GET /exapps/app/ok HTTP/1.1", "X-N: a\0b\r\n"),
        ),
        (
            "NUL in a header name",
            head("GET /exapps/app/ok HTTP/1.1", "X-\0N: v\r\n"),
        ),
        (
            "10k-segment path",
            head(&format!("GET {long_path} HTTP/1.1"), ""),
        ),
        (
            "10k traversal segments",
            head(
                &format!("GET /exapps/app/{} HTTP/1.1", "../".repeat(10_000)),
                "",
            ),
        ),
        (
            "10k percent escapes",
            head(
                &format!("GET /exapps/app/{} HTTP/1.1", "%61".repeat(10_000)),
                "",
            ),
        ),
        (
            "truncated percent escape and lone percent",
            head("GET /exapps/app/%4%zz% HTTP/1.1", ""),
        ),
    ];

    let outcomes =
        futures_util::future::join_all(cases.iter().enumerate().map(|(i, (_, bytes))| {
            let from = ip(&format!("127.200.{}.{}", i / 200, i % 200 + 1));
            exchange(from, gw.addr(), bytes, Duration::from_secs(10))
        }))
        .await;

    let mut failures = Vec::new();
    for ((name, _), (received, ending)) in cases.iter().zip(outcomes) {
        let answered = received.starts_with(b"HTTP/1.");
        let summary = if answered {
            String::from_utf8_lossy(&received[..received.len().min(12)]).into_owned()
        } else {
            format!("{} bytes", received.len())
        };
        eprintln!("{name}: {summary}, {ending:?}");
        let ok = if received.is_empty() {
            matches!(ending, Ending::Closed { .. })
        } else {
            answered
        };
        if !ok {
            failures.push(format!(
                "{name}: {ending:?} after {:?}",
                String::from_utf8_lossy(&received[..received.len().min(200)])
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "neither an answer nor a close:\n{}",
        failures.join("\n")
    );
    assert!(gw.harp.is_running(), "harp died");
    gw.assert_served(ip("127.201.0.1"), &[], "after the batch")
        .await;
    assert!(gw.harp.is_running(), "harp died");
}

/// RFC 9112 §6.3: a message with both Content-Length and Transfer-Encoding is either refused or
/// forwarded with the Content-Length removed; the bytes after the chunked body never become a
/// request to the ExApp.
#[tokio::test(flavor = "multi_thread")]
async fn robustness_content_length_with_transfer_encoding_is_not_smuggled() {
    let mut gw = Gateway::start(&[]).await;
    let host = gw.addr().to_string();
    let smuggled = format!("GET /exapps/app/smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n");
    for (i, content_length) in [4usize, 5 + smuggled.len()].iter().enumerate() {
        let request = format!(
            "POST /exapps/app/front HTTP/1.1\r\nHost: {host}\r\nContent-Length: {content_length}\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n{smuggled}"
        );
        let from = ip(&format!("127.202.0.{}", i + 1));
        let (received, ending) =
            exchange(from, gw.addr(), request.as_bytes(), Duration::from_secs(10)).await;
        assert!(
            received.starts_with(b"HTTP/1.") || (received.is_empty() && ending != Ending::TimedOut),
            "Content-Length {content_length}: {ending:?} after {:?}",
            String::from_utf8_lossy(&received)
        );
    }
    // A later request on a fresh connection flushes anything left on pooled upstream connections.
    gw.assert_served(ip("127.202.1.1"), &[], "after the attempts")
        .await;
    for seen in gw.exapp.requests() {
        assert_ne!(
            seen.path, "/smuggled",
            "a smuggled request reached the ExApp"
        );
        assert!(
            seen.header("content-length").is_none() || seen.header("transfer-encoding").is_none(),
            "forwarded with both Content-Length and Transfer-Encoding: {seen:?}"
        );
    }
    assert!(gw.harp.is_running(), "harp died");
}

/// §3.4: a request that cannot be parsed gets a 400 and the connection is closed. HaRP sends
/// HAProxy's HTML page here; Pingora answers unparsable heads before any hook runs, so harp-rs
/// sends Pingora's empty 400 (a known gap, listed in the README).
#[tokio::test(flavor = "multi_thread")]
async fn unparsable_request_gets_400_and_close() {
    let gw = Gateway::start(&[]).await;
    let host = gw.addr().to_string();
    let cases: [(&str, Vec<u8>); 3] = [
        ("garbage request line", b"HELLO THERE\r\n\r\n".to_vec()),
        (
            "header name with a space",
            format!("GET /exapps/app/ok HTTP/1.1\r\nHost: {host}\r\nBad Header: x\r\n\r\n")
                .into_bytes(),
        ),
        (
            "non-UTF-8 request target",
            [
                &b"GET /exapps/app/\xff HTTP/1.1\r\nHost: "[..],
                host.as_bytes(),
                b"\r\n\r\n",
            ]
            .concat(),
        ),
    ];
    for (i, (what, bytes)) in cases.iter().enumerate() {
        let out = gw.send(ip(&format!("127.205.0.{}", i + 1)), bytes).await;
        assert_eq!(out.status(), 400, "{what}: {out:?}");
        assert_eq!(
            out.header("connection")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("close"),
            "{what}: {out:?}"
        );
    }
}

/// RFC 9112 §9.3.2: pipelined requests are answered in order, or the connection closes after
/// a complete answer (the client then retries the rest); a request is never processed without
/// its answer reaching the client.
#[tokio::test(flavor = "multi_thread")]
async fn robustness_pipelined_requests_are_answered_in_order_or_closed() {
    let gw = Gateway::start(&[]).await;
    let host = gw.addr().to_string();
    let bytes = format!(
        "GET /exapps/app/one HTTP/1.1\r\nHost: {host}\r\n\r\n\
         GET /exapps/app/two HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    let (received, ending) = exchange(
        ip("127.203.0.1"),
        gw.addr(),
        bytes.as_bytes(),
        Duration::from_secs(10),
    )
    .await;
    let text = String::from_utf8_lossy(&received);
    assert!(
        matches!(ending, Ending::Closed { .. }),
        "{ending:?}: {text}"
    );
    let answered: Vec<&str> = text
        .match_indices(r#""path":""#)
        .map(|(i, m)| {
            let rest = &text[i + m.len()..];
            &rest[..rest.find('"').unwrap_or(rest.len())]
        })
        .collect();
    assert!(
        answered == ["/one"] || answered == ["/one", "/two"],
        "answers for {answered:?}: {text}"
    );
    assert_eq!(
        text.matches("HTTP/1.1 200 ").count(),
        answered.len(),
        "{text}"
    );
    let forwarded: Vec<String> = gw.exapp.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(forwarded, answered, "forwarded but not answered");
}

/// RFC 9112 §6.1: with both Content-Length and Transfer-Encoding, "the server MUST close the
/// connection after responding to such a request" (Pingora does; the request's keep-alive must
/// not turn it back on).
#[tokio::test(flavor = "multi_thread")]
async fn robustness_content_length_with_transfer_encoding_closes_the_connection() {
    let gw = Gateway::start(&[]).await;
    let mut stream = connect_from(ip("127.202.2.1"), gw.addr()).await;
    let host = gw.addr().to_string();
    let request = format!(
        "POST /exapps/app/front HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = read_one_response(&mut stream).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    let after = read_until_end(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(
        after.as_deref(),
        Some(&b""[..]),
        "the connection must close right after the answer {:?}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn robustness_http10_request_is_served() {
    let gw = Gateway::start(&[]).await;
    let mut stream = connect_from(ip("127.204.0.1"), gw.addr()).await;
    stream
        .write_all(b"GET /exapps/app/old HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let answer = read_one_response(&mut stream).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 200 ") || text.starts_with("HTTP/1.0 200 "),
        "{text}"
    );
    let seen = gw.exapp.last_request().expect("forwarded");
    assert_eq!(seen.path, "/old");
}

/// RFC 9112 §9.3: an HTTP/1.0 request without `Connection: keep-alive` ends its connection
/// after the answer (an HTTP/1.0 client may read the body until the close).
#[tokio::test(flavor = "multi_thread")]
async fn robustness_http10_connection_closes_after_the_answer() {
    let gw = Gateway::start(&[]).await;
    let mut stream = connect_from(ip("127.204.1.1"), gw.addr()).await;
    stream
        .write_all(b"GET /exapps/app/old HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let answer = read_one_response(&mut stream).await;
    let after = read_until_end(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(
        after.as_deref(),
        Some(&b""[..]),
        "the connection must close right after the answer {:?}",
        String::from_utf8_lossy(&answer)
    );
}
