//! The full ExApp path as deployed: a browser asks harp for `/exapps/<app>/...`, harp reaches the
//! ExApp through the FRP tunnel that a separate `harp tunnel` process (our frpc) opened with
//! HaRP's TLS client config. HTTP and WebSockets, on the in-process path and through the loopback
//! listener; the tunnel going away gives HaRP's 503 page and traffic flows again right after the
//! client logs in anew.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);
const PAGE_503: &str = "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n";

/// harp with TLS on the tunnel (its certificates generated on first start), a stub Nextcloud
/// knowing `app` on tunnel port `port`, an echo ExApp, and the frpc config an ExApp image
/// would write, using the client certificates harp generated.
struct Deployment {
    harp: Harp,
    _nc: StubNextcloud,
    echo: EchoBackend,
    config: std::path::PathBuf,
    dir: TempDir,
    app: &'static str,
}

impl Deployment {
    async fn start(app: &'static str, port: u16, env: &[(&str, &str)]) -> Deployment {
        let nc = StubNextcloud::start().await;
        nc.set_app(
            app,
            StubNextcloud::record("tok", "1.0.0", "127.0.0.1", port, &[(".*", PUBLIC, &[])]),
        );
        let echo = EchoBackend::start().await;
        let url = nc.url();
        let mut all = vec![("NC_INSTANCE_URL", url.as_str())];
        all.extend_from_slice(env);
        let harp = Harp::start(&all);
        let frp = harp.certs_dir().join("frp");
        let deadline = Instant::now() + WAIT;
        while !frp.join("client.key").exists() {
            assert!(Instant::now() < deadline, "no certificates in {frp:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let dir = TempDir::new("frpc");
        let config = dir.join("frpc.toml");
        std::fs::write(&config, frpc_toml(&harp, app, port, echo.port(), false)).unwrap();
        Deployment {
            harp,
            _nc: nc,
            echo,
            config,
            dir,
            app,
        }
    }

    /// Starts the ExApp's tunnel and waits until harp has accepted its proxy.
    fn start_tunnel(&self) -> TunnelProcess {
        let mut tunnel = TunnelProcess::start(&self.config);
        tunnel.wait_for_line(&format!("proxy {:?} started", self.app));
        tunnel
    }

    async fn get(&self, path: &str) -> RawOutcome {
        get(
            self.harp.http_addr(),
            &format!("/exapps/{}{path}", self.app),
            &[],
        )
        .await
    }

    fn ws_url(&self, path: &str) -> String {
        format!("ws://{}/exapps/{}{path}", self.harp.http_addr(), self.app)
    }
}

/// The frpc config an ExApp image writes: HaRP's TLS client shape with the client certificates
/// from harp's `$HP_CERTS_DIR/frp`, one TCP proxy named after the app.
fn frpc_toml(harp: &Harp, app: &str, port: u16, local_port: u16, login_fail_exit: bool) -> String {
    let frp = harp.certs_dir().join("frp");
    let server = harp.frp_addr();
    format!(
        "serverAddr = \"{}\"\nserverPort = {}\nloginFailExit = {login_fail_exit}\n\
         transport.tls.enable = true\ntransport.tls.certFile = \"{}\"\n\
         transport.tls.keyFile = \"{}\"\ntransport.tls.trustedCaFile = \"{}\"\n\
         transport.tls.serverName = \"harp.nc\"\nmetadatas.token = \"{KEY}\"\n\n\
         [[proxies]]\nname = \"{app}\"\ntype = \"tcp\"\nremotePort = {port}\n\
         localIP = \"127.0.0.1\"\nlocalPort = {local_port}\n",
        server.ip(),
        server.port(),
        frp.join("client.crt").display(),
        frp.join("client.key").display(),
        frp.join("ca.crt").display(),
    )
}

async fn http_and_websocket_through_the_tunnel(app: &'static str, port: u16, in_process: &str) {
    let d = Deployment::start(app, port, &[("HP_TUNNEL_IN_PROCESS", in_process)]).await;
    let _tunnel = d.start_tunnel();

    let out = d.get("/hello?x=1").await;
    assert_eq!(out.status(), 200, "{out:?}\n{}", d.harp.log());
    let seen = d.echo.last_request().expect("the ExApp got nothing");
    assert_eq!(seen.target, "/hello?x=1");
    assert_eq!(seen.header("ex-app-id"), Some(app));

    let mut ws = ws_connect(&d.ws_url("/ws?room=7"), &[]).await;
    ws.send(Message::text("hello through the tunnel"))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("hello through the tunnel")
    );
    // Larger than one yamux window (256 KiB): the echo only comes back whole if flow control
    // works in both directions.
    let big = big_body(1 << 20);
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
    ws.close(None).await.unwrap();
    let upgrade = d.echo.last_request().unwrap();
    assert_eq!(upgrade.target, "/ws?room=7");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_and_websocket_through_the_in_process_tunnel() {
    http_and_websocket_through_the_tunnel("tunws", 23501, "true").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_and_websocket_through_the_loopback_listener() {
    http_and_websocket_through_the_tunnel("tunwsport", 23502, "false").await;
}

/// Polls the gateway until `want` answers or [`WAIT`] passes; returns the last answer and when
/// it came.
async fn poll_until(d: &Deployment, want: u16) -> (RawOutcome, Instant) {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = d.get("/poll").await;
        if out.status() == want || Instant::now() > deadline {
            return (out, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn tunnel_loss_and_return(app: &'static str, port: u16, in_process: &str) {
    let d = Deployment::start(app, port, &[("HP_TUNNEL_IN_PROCESS", in_process)]).await;
    let mut tunnel = d.start_tunnel();
    assert_eq!(d.get("/before").await.status(), 200);
    let mut ws = ws_connect(&d.ws_url("/ws"), &[]).await;
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ping"));

    tunnel.kill();
    // The open WebSocket ends with its tunnel instead of hanging.
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the WebSocket outlived its tunnel");
    let (out, _) = poll_until(&d, 503).await;
    assert_eq!(out.status(), 503, "{out:?}");
    assert_eq!(out.header("content-type"), Some("text/html"), "{out:?}");
    assert_eq!(out.body_str(), PAGE_503);

    let _again = d.start_tunnel();
    let registered = Instant::now();
    let (out, answered) = poll_until(&d, 200).await;
    assert_eq!(out.status(), 200, "{out:?}\n{}", d.harp.log());
    let took = answered - registered;
    assert!(
        took < Duration::from_secs(1),
        "traffic flowed {took:?} after re-login"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_tunnel_is_503_and_in_process_traffic_returns_after_re_login() {
    tunnel_loss_and_return("tunloss", 23503, "true").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_tunnel_is_503_and_loopback_traffic_returns_after_re_login() {
    tunnel_loss_and_return("tunlossport", 23504, "false").await;
}

/// Issue 10 (4): an ExApp's record names a tunnel port on loopback; while its tunnel is down,
/// another program holds that port. Before the fix harp forwarded AppAPI's requests, with the
/// ExApp's secret in AUTHORIZATION-APP-API, and users' requests to that program. Now only a
/// port harp's own tunnel server holds is forwarded to; anything else is the 503 page of a dead
/// ExApp.
#[tokio::test(flavor = "multi_thread")]
async fn exapp_secret_never_reaches_a_stranger_on_a_tunnel_port() {
    const PORT: u16 = 23506;
    let d = Deployment::start("tunstranger", PORT, &[]).await;
    let stranger = EchoBackend::start_on(&format!("127.0.0.1:{PORT}")).await;
    let port = PORT.to_string();
    let appapi = [
        ("EX-APP-VERSION", "1.0.0"),
        ("EX-APP-ID", "tunstranger"),
        ("EX-APP-HOST", "127.0.0.1"),
        ("EX-APP-PORT", port.as_str()),
        ("AUTHORIZATION-APP-API", "YWRtaW46dG9r"),
        ("harp-shared-key", KEY),
    ];
    let out = get(d.harp.http_addr(), "/exapps/tunstranger/heartbeat", &appapi).await;
    assert_eq!(out.status(), 503, "{out:?}");
    assert_eq!(out.body_str(), PAGE_503);
    let out = d.get("/page").await;
    assert_eq!(out.status(), 503, "{out:?}");
    assert_eq!(out.body_str(), PAGE_503);
    assert_eq!(stranger.count(), 0, "a stranger got the ExApp's requests");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_frp_certificates() {
    const PORT: u16 = 23505;
    let d = Deployment::start("tuncerts", PORT, &[]).await;
    // A new certificate set (another CA) replaces harp's files, as an admin renewing them would.
    let fresh = TempDir::new("fresh-frp");
    assert!(::harp::certs::generate_frp_certs(fresh.path(), 30).unwrap());
    let frp = d.harp.certs_dir().join("frp");
    for file in [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
    ] {
        std::fs::copy(fresh.path().join("frp").join(file), frp.join(file)).unwrap();
    }
    // Until SIGHUP harp still presents the old server certificate, which the new CA rejects.
    let once = d.dir.join("once.toml");
    std::fs::write(&once, frpc_toml(&d.harp, d.app, PORT, d.echo.port(), true)).unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_harp"))
        .args(["tunnel", "-c"])
        .arg(&once)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");

    d.harp.signal("HUP");
    let deadline = Instant::now() + WAIT;
    while !d.harp.log().contains("SIGHUP: FRP certificates reloaded") {
        assert!(Instant::now() < deadline, "{}", d.harp.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let _tunnel = d.start_tunnel();
    let out = d.get("/renewed").await;
    assert_eq!(out.status(), 200, "{out:?}");
}
