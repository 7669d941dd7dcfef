//! The outer reverse-proxy snippets in docs/reverse-proxy/, checked against the real server:
//! nginx forwards /exapps/ unchanged, WebSockets pass, and with HP_TRUSTED_PROXY_IPS set to
//! nginx's address a ban lands on the client, not on nginx (HaRP users' most common trouble).

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const NGINX: &str = "/usr/sbin/nginx";

struct Nginx {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx with the documented snippet, pointed at `harp`.
fn start_nginx(harp: SocketAddr) -> Nginx {
    let dir = TempDir::new("nginx");
    let snippet = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reverse-proxy/nginx.conf"),
    )
    .expect("read docs/reverse-proxy/nginx.conf");
    let snippet = snippet.replace("127.0.0.1:8780", &harp.to_string());
    assert!(
        snippet.contains(&harp.to_string()),
        "the snippet must name harp's default address"
    );
    let port = free_port();
    let d = dir.path().display();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n\
         access_log off;\nclient_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fcgi;\nuwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n\
         map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}\n\
         server {{\nlisten 127.0.0.1:{port};\n{snippet}\n}}\n}}\n"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(NGINX)
        .args(["-p", &d.to_string(), "-c", &conf_path.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {:?}",
            std::fs::read_to_string(dir.join("error.log"))
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Nginx {
        child,
        addr,
        _dir: dir,
    }
}

fn nginx_available() -> bool {
    if Path::new(NGINX).exists() {
        return true;
    }
    eprintln!("SKIPPED: {NGINX} is missing (apt-get install nginx-light); .ci/run installs it");
    false
}

async fn setup(env: &[(&str, &str)]) -> (StubNextcloud, EchoBackend, Harp, Nginx) {
    let nc = StubNextcloud::start().await;
    let exapp = EchoBackend::start().await;
    nc.set_app(
        "proxied",
        StubNextcloud::record(
            "tok",
            "1.0.0",
            "127.0.0.1",
            exapp.port(),
            &[("^/public", PUBLIC, &[]), ("^/ws", USER, &[])],
        ),
    );
    nc.set_user_level("sess-rp", "alice", USER);
    let mut all = vec![("NC_INSTANCE_URL", nc.url())];
    all.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let harp = Harp::start(&all);
    let nginx = start_nginx(harp.http_addr());
    (nc, exapp, harp, nginx)
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_snippet_forwards_exapps_unchanged() {
    if !nginx_available() {
        return;
    }
    let (_nc, exapp, _harp, nginx) = setup(&[]).await;
    let out = get(nginx.addr, "/exapps/proxied/public/page?x=%2F1", &[]).await;
    assert_eq!(out.status(), 200, "{out:?}");
    let seen = exapp.last_request().unwrap();
    assert_eq!(seen.path, "/public/page");
    assert_eq!(seen.query.as_deref(), Some("x=%2F1"));
    assert_eq!(seen.header("ex-app-id"), Some("proxied"));
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_snippet_passes_websockets() {
    if !nginx_available() {
        return;
    }
    let (_nc, _exapp, _harp, nginx) = setup(&[]).await;
    let url = format!("ws://{}/exapps/proxied/ws", nginx.addr);
    let mut ws = ws_connect(&url, &[("cookie", "oc_sessionPassphrase=sess-rp")]).await;
    ws.send(Message::Text("through nginx".into()))
        .await
        .unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echo.into_text().unwrap().as_str(), "through nginx");
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_snippet_with_trusted_proxy_bans_the_client_not_nginx() {
    if !nginx_available() {
        return;
    }
    let (_nc, _exapp, _harp, nginx) = setup(&[
        ("HP_TRUSTED_PROXY_IPS", "127.0.0.1/32"),
        ("HP_BLACKLIST_COUNT", "1"),
    ])
    .await;
    let attacker: IpAddr = "127.0.0.77".parse().unwrap();
    let bystander: IpAddr = "127.0.0.78".parse().unwrap();
    // One unknown-path request (404 + strike) bans the attacker with HP_BLACKLIST_COUNT=1.
    assert_eq!(
        get_from(attacker, nginx.addr, "/exapps/", &[])
            .await
            .status(),
        404
    );
    // nginx turns harp's reset into a 502 for the attacker; the bystander is still served.
    assert_eq!(
        get_from(attacker, nginx.addr, "/exapps/proxied/public", &[])
            .await
            .status(),
        502
    );
    assert_eq!(
        get_from(bystander, nginx.addr, "/exapps/proxied/public", &[])
            .await
            .status(),
        200
    );
}
