//! `harp doctor` diagnoses a broken set-up and says what to fix.

mod common;

use common::*;

fn doctor(env: &[(&str, &str)], extra: &[&str]) -> (bool, String) {
    let mut args = vec!["doctor"];
    args.extend_from_slice(extra);
    let out = run_harp(&args, env);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_an_unreachable_nextcloud_with_the_fix() {
    let down = ClosedPort::new();
    let url = format!("http://127.0.0.1:{}", down.port());
    let (ok, text) = doctor(&[("NC_INSTANCE_URL", &url)], &[]);
    assert!(!ok, "{text}");
    assert!(text.contains("FAIL  nextcloud"), "{text}");
    assert!(text.contains("unreachable"), "{text}");
    assert!(text.contains("fix: set NC_INSTANCE_URL"), "{text}");
    assert!(!text.contains(KEY), "the key must never be printed: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_a_wrong_shared_key() {
    let nc = StubNextcloud::start_with_key("the-daemons-key").await;
    nc.set_app(
        "skeleton",
        StubNextcloud::record("tok", "1.0.0", "127.0.0.1", 23000, &[]),
    );
    let (ok, text) = doctor(&[("NC_INSTANCE_URL", &nc.url())], &["--app", "skeleton"]);
    assert!(!ok, "{text}");
    assert!(text.contains("ok    nextcloud"), "{text}");
    assert!(text.contains("FAIL  shared key"), "{text}");
    assert!(text.contains("HP_SHARED_KEY"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_finds_the_missing_exapps_location_and_a_running_gateway() {
    let nc = StubNextcloud::start().await;
    nc.set_app(
        "skeleton",
        StubNextcloud::record("tok", "1.0.0", "127.0.0.1", 23000, &[]),
    );
    let harp = Harp::start(&[("NC_INSTANCE_URL", &nc.url())]);
    let address = harp.http_addr().to_string();
    let env = [
        ("NC_INSTANCE_URL", nc.url()),
        ("HP_EXAPPS_ADDRESS", address),
        ("HP_OPS_ADDRESS", harp.ops_addr().to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, text) = doctor(&env, &["--app", "skeleton"]);
    assert!(!ok, "{text}");
    assert!(text.contains("ok    shared key"), "{text}");
    assert!(text.contains("ok    gateway"), "{text}");
    // The stub Nextcloud has no /exapps/ location: the outer proxy check must say so.
    assert!(text.contains("FAIL  reverse proxy"), "{text}");
    assert!(text.contains("docs/reverse-proxy"), "{text}");
}

/// A stale key in the doctor's environment must never ban the host it runs on: it asks the
/// ops listener instead of sending the key to the gateway (issue 11, item 6).
#[tokio::test(flavor = "multi_thread")]
async fn doctor_with_a_stale_key_never_strikes_the_gateway() {
    let nc = StubNextcloud::start().await;
    let harp = Harp::start(&[("NC_INSTANCE_URL", &nc.url()), ("HP_BLACKLIST_COUNT", "2")]);
    let env = [
        ("NC_INSTANCE_URL", nc.url()),
        ("HP_SHARED_KEY", "the-old-key".to_string()),
        ("HP_EXAPPS_ADDRESS", harp.http_addr().to_string()),
        ("HP_OPS_ADDRESS", harp.ops_addr().to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for _ in 0..3 {
        let (ok, text) = doctor(&env, &[]);
        assert!(!ok, "{text}");
        assert!(
            text.contains(
                "the running harp has a different key; restart it after changing HP_SHARED_KEY"
            ),
            "{text}"
        );
        assert!(!text.contains("is another program"), "{text}");
    }
    // With two strikes allowed, three doctor runs that had struck would have banned 127.0.0.1.
    let status = client()
        .get(harp.url("/exapps/app_api/info"))
        .header("harp-shared-key", "wrong-but-harmless-once")
        .send()
        .await
        .expect("not dropped: 127.0.0.1 is not banned")
        .status();
    assert_eq!(status, 401);
    // The key check itself answers once a second at most (no brute-force oracle).
    let ops = |key: &'static str| {
        client()
            .get(harp.ops_url("/key-check"))
            .header("harp-shared-key", key)
            .send()
    };
    let first = ops(KEY).await.unwrap().status().as_u16();
    let second = ops("guess").await.unwrap().status().as_u16();
    assert!(first == 204 || first == 429, "{first}");
    assert_eq!(second, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_connected_and_missing_tunnels_and_pings_remote_engines() {
    const APP_PORT: u16 = 23520;
    const LOST_PORT: u16 = 23521;
    const ENGINE_PORT: u16 = 24052;
    let nc = StubNextcloud::start().await;
    for (app, port) in [("docapp", APP_PORT), ("lostapp", LOST_PORT)] {
        nc.set_app(
            app,
            StubNextcloud::record("tok", "1.0.0", "127.0.0.1", port, &[]),
        );
    }
    // Answers 200 on every path, /_ping included, as an engine would.
    let backend = EchoBackend::start().await;
    let harp = Harp::start(&[
        ("NC_INSTANCE_URL", &nc.url()),
        ("HP_FRP_DISABLE_TLS", "true"),
    ]);
    // One port per client (HaRP's max_ports_per_client): the ExApp and the engine's host each
    // run their own.
    let dir = TempDir::new("frpc");
    let frp = harp.frp_addr();
    let start_tunnel = |name: &str, port: u16| {
        let config = dir.join(&format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "serverAddr = \"{}\"\nserverPort = {}\nloginFailExit = false\n\
                 transport.tls.enable = false\nmetadatas.token = \"{KEY}\"\n\
                 [[proxies]]\nname = \"{name}\"\ntype = \"tcp\"\nremotePort = {port}\n\
                 localIP = \"127.0.0.1\"\nlocalPort = {}\n",
                frp.ip(),
                frp.port(),
                backend.port()
            ),
        )
        .unwrap();
        let mut tunnel = TunnelProcess::start(&config);
        tunnel.wait_for_line(&format!("proxy {name:?} started"));
        tunnel
    };
    let _exapp = start_tunnel("docapp", APP_PORT);
    let mut engine_host = start_tunnel("remote-engine", ENGINE_PORT);

    let ops = harp.ops_addr().to_string();
    let env = [("NC_INSTANCE_URL", nc.url()), ("HP_OPS_ADDRESS", ops)];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_, text) = doctor(&env, &["--app", "docapp"]);
    assert!(
        text.contains("ok    tunnels: ExApp \"docapp\" is connected on port 23520"),
        "{text}"
    );
    assert!(
        text.contains("ok    remote docker: _ping answered by remote-engine on 24052"),
        "{text}"
    );
    let (ok, text) = doctor(&env, &["--app", "lostapp"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("FAIL  tunnels: no tunnel holds port 23521, the port of ExApp \"lostapp\"; connected: docapp on 23520, remote-engine on 24052"),
        "{text}"
    );
    assert!(
        text.contains("fix: read the ExApp container's log"),
        "{text}"
    );

    // The engine's host goes away: its tunnel with it, and the doctor says so.
    engine_host.kill();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while get(harp.ops_addr(), "/tunnels", &[])
        .await
        .body_str()
        .contains("remote-engine")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the engine's proxy stayed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, text) = doctor(&env, &[]);
    assert!(
        text.contains("ok    tunnels: connected: docapp on 23520\n"),
        "{text}"
    );
    assert!(
        text.contains("skip  remote docker: no Docker engine connected"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_skips_the_tunnel_checks_when_harp_is_not_running() {
    let nc = StubNextcloud::start().await;
    let down = ClosedPort::new();
    let ops = format!("127.0.0.1:{}", down.port());
    let (_, text) = doctor(
        &[("NC_INSTANCE_URL", &nc.url()), ("HP_OPS_ADDRESS", &ops)],
        &[],
    );
    assert!(
        text.contains("skip  tunnels: harp's ops listener does not answer"),
        "{text}"
    );
}
