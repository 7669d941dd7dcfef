//! IPv6 end to end (HaRP breaks on IPv6 in several parsers, Q21): the gateway listening on ::1,
//! an ExApp at an IPv6 literal, an IPv6 client banned by its canonical address and named
//! through a trusted IPv6 proxy, and the tunnel server on ::1 with `harp tunnel` dialling it.

mod common;

use common::*;
use std::net::{Ipv6Addr, SocketAddr, TcpListener};

/// Whether this machine has IPv6 loopback; without it the tests say so and pass.
fn ipv6_loopback() -> bool {
    match TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIPPED: no IPv6 loopback on this machine ({e})");
            false
        }
    }
}

fn v6(port: u16) -> String {
    format!("[::1]:{port}")
}

struct Setup {
    harp: Harp,
    nc: StubNextcloud,
    echo: EchoBackend,
}

impl Setup {
    async fn start(env: &[(&str, &str)]) -> Setup {
        let nc = StubNextcloud::start().await;
        let echo = EchoBackend::start_on("[::1]:0").await;
        nc.set_app(
            "sixapp",
            StubNextcloud::record("tok", "1.0.0", "::1", echo.port(), &[("^/", PUBLIC, &[])]),
        );
        let ports = free_ports(2);
        let (http, ops) = (v6(ports[0]), v6(ports[1]));
        let url = nc.url();
        let mut all = vec![
            ("NC_INSTANCE_URL", url.as_str()),
            ("HP_EXAPPS_ADDRESS", http.as_str()),
            ("HP_OPS_ADDRESS", ops.as_str()),
        ];
        all.extend_from_slice(env);
        Setup {
            harp: Harp::start(&all),
            nc,
            echo,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.harp.http_addr()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_on_ipv6_reaches_an_exapp_at_an_ipv6_literal() {
    if !ipv6_loopback() {
        return;
    }
    let s = Setup::start(&[]).await;
    assert!(s.addr().is_ipv6());
    let out = get(s.addr(), "/exapps/sixapp/hello?x=1", &[]).await;
    assert_eq!(out.status(), 200, "{out:?}\n{}", s.harp.log());
    assert_eq!(s.echo.last_request().unwrap().target, "/hello?x=1");
    assert_eq!(s.nc.count("exapp-meta"), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !s
        .harp
        .log()
        .contains("client=::1 app=sixapp GET /exapps/sixapp/hello")
    {
        assert!(std::time::Instant::now() < deadline, "{}", s.harp.log());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_client_named_by_a_trusted_ipv6_proxy_is_banned_alone() {
    if !ipv6_loopback() {
        return;
    }
    let s = Setup::start(&[
        ("HP_TRUSTED_PROXY_IPS", "::1/128"),
        ("HP_BLACKLIST_COUNT", "2"),
    ])
    .await;
    // Written uncompressed on purpose: the ban must hold for the canonical address.
    let attacker = [("x-forwarded-for", "2001:db8:0:0:0:0:0:7")];
    let bystander = [("x-forwarded-for", "2001:db8::8")];
    for _ in 0..2 {
        let out = get(s.addr(), "/exapps/nosuchapp/x", &attacker).await;
        assert_eq!(out.status(), 404, "{out:?}");
    }
    let out = get(
        s.addr(),
        "/exapps/sixapp/x",
        &[("x-forwarded-for", "2001:db8::7")],
    )
    .await;
    assert!(out.is_silent_drop(), "the banned client got {out:?}");
    let out = get(s.addr(), "/exapps/sixapp/x", &bystander).await;
    assert_eq!(out.status(), 200, "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tunnel_server_on_ipv6_serves_a_harp_tunnel_client() {
    if !ipv6_loopback() {
        return;
    }
    const PORT: u16 = 23530;
    let frp = v6(free_port());
    let s = Setup::start(&[
        ("HP_FRP_ADDRESS", frp.as_str()),
        ("HP_FRP_DISABLE_TLS", "true"),
    ])
    .await;
    // The ExApp's record now names the tunnel port, as AppAPI's does for a tunnelled ExApp.
    s.nc.set_app(
        "sixtun",
        StubNextcloud::record("tok", "1.0.0", "127.0.0.1", PORT, &[("^/", PUBLIC, &[])]),
    );
    let dir = TempDir::new("frpc6");
    let config = dir.join("frpc.toml");
    std::fs::write(
        &config,
        format!(
            "serverAddr = \"::1\"\nserverPort = {}\nloginFailExit = false\n\
             transport.tls.enable = false\nmetadatas.token = \"{KEY}\"\n\
             [[proxies]]\nname = \"sixtun\"\ntype = \"tcp\"\nremotePort = {PORT}\n\
             localIP = \"::1\"\nlocalPort = {}\n",
            s.harp.frp_addr().port(),
            s.echo.port()
        ),
    )
    .unwrap();
    let mut tunnel = TunnelProcess::start(&config);
    tunnel.wait_for_line("proxy \"sixtun\" started");
    let out = get(s.addr(), "/exapps/sixtun/through", &[]).await;
    assert_eq!(out.status(), 200, "{out:?}\n{}", s.harp.log());
    assert_eq!(s.echo.last_request().unwrap().target, "/through");
    assert!(
        s.harp.log().contains("tunnel: client [::1]:"),
        "{}",
        s.harp.log()
    );
}
