//! The outer reverse-proxy snippets in docs/reverse-proxy/, checked against the real servers
//! (nginx, Apache httpd, Caddy), each run unprivileged in the foreground with its own config in a
//! temp dir on a loopback port: /exapps/ is forwarded unchanged (encoded path and query
//! included), WebSockets pass, streamed responses are not buffered, and with
//! HP_TRUSTED_PROXY_IPS set to the proxy's address a ban lands on the client, not on the proxy
//! (HaRP users' most common trouble). Traefik is not packaged in Debian; its snippet is untested.
//!
//! A missing server binary skips its tests with a SKIPPED line, except when `CI` is set: then it
//! fails, since CI (.ci/run) installs all three.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// How long a server may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Nginx,
    Apache,
    Caddy,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Nginx => "nginx",
            Server::Apache => "apache2",
            Server::Caddy => "caddy",
        }
    }

    /// Debian's install location; Caddy is also looked up on PATH.
    fn candidates(self) -> &'static [&'static str] {
        match self {
            Server::Nginx => &["/usr/sbin/nginx"],
            Server::Apache => &["/usr/sbin/apache2"],
            Server::Caddy => &["/usr/bin/caddy"],
        }
    }

    fn package(self) -> &'static str {
        match self {
            Server::Nginx => "nginx-light",
            Server::Apache => "apache2",
            Server::Caddy => "caddy",
        }
    }

    fn snippet_file(self) -> &'static str {
        match self {
            Server::Nginx => "docs/reverse-proxy/nginx.conf",
            Server::Apache => "docs/reverse-proxy/apache.conf",
            Server::Caddy => "docs/reverse-proxy/Caddyfile",
        }
    }

    /// The server binary, or `None` (after saying so) to skip; panics when `CI` is set.
    fn binary(self) -> Option<PathBuf> {
        let on_path = std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|dir| dir.join(self.name()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let found = self
            .candidates()
            .iter()
            .map(PathBuf::from)
            .chain(on_path)
            .find(|p| p.is_file());
        if found.is_none() {
            let msg = format!(
                "{} is missing (apt-get install {}); .ci/run installs it",
                self.candidates()[0],
                self.package()
            );
            assert!(std::env::var_os("CI").is_none(), "{msg}");
            eprintln!("SKIPPED: {msg}");
        }
        found
    }

    /// The documented snippet, pointed at `harp` instead of the default 127.0.0.1:8780.
    fn snippet(self, harp: SocketAddr) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(self.snippet_file());
        let snippet = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert!(
            snippet.contains("127.0.0.1:8780"),
            "{} must name harp's default address 127.0.0.1:8780",
            self.snippet_file()
        );
        snippet.replace("127.0.0.1:8780", &harp.to_string())
    }
}

/// A running server, killed on drop. Each runs as one process (nginx without a master, httpd
/// with -X, caddy), so killing it leaves no worker behind holding the port.
struct Proxy {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn log(&self) -> String {
        ["error.log", "stderr.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.join(f)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Starts `server` with its documented snippet in front of `harp` and waits until it listens.
fn start_proxy(server: Server, binary: &Path, harp: SocketAddr) -> Proxy {
    let dir = TempDir::new(server.name());
    let snippet = server.snippet(harp);
    let port = free_port();
    let d = dir.path().display().to_string();
    let mut cmd = Command::new(binary);
    match server {
        Server::Nginx => {
            let conf = format!(
                "master_process off;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
                 events {{}}\nhttp {{\naccess_log off;\nclient_body_temp_path {d}/body;\n\
                 proxy_temp_path {d}/proxy;\nfastcgi_temp_path {d}/fcgi;\n\
                 uwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n\
                 map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}\n\
                 server {{\nlisten 127.0.0.1:{port};\n{snippet}\n}}\n}}\n"
            );
            let conf_path = dir.join("nginx.conf");
            std::fs::write(&conf_path, conf).unwrap();
            cmd.arg("-p").arg(&d).arg("-c").arg(&conf_path);
        }
        Server::Apache => {
            // Only the modules the snippet says it needs, from Debian's module directory; no
            // /etc/apache2 file is read. -X keeps httpd in one foreground process (no forked
            // children to leave behind).
            let modules = [
                ("mpm_event_module", "mod_mpm_event.so"),
                ("authz_core_module", "mod_authz_core.so"),
                ("proxy_module", "mod_proxy.so"),
                ("proxy_http_module", "mod_proxy_http.so"),
            ]
            .iter()
            .map(|(name, file)| format!("LoadModule {name} /usr/lib/apache2/modules/{file}\n"))
            .collect::<String>();
            let conf = format!(
                "ServerRoot {d}\nServerName 127.0.0.1\nDefaultRuntimeDir {d}\n\
                 PidFile {d}/httpd.pid\nErrorLog {d}/error.log\nLogLevel warn\n\
                 Mutex file:{d} default\n{modules}Listen 127.0.0.1:{port}\n\
                 <VirtualHost 127.0.0.1:{port}>\n{snippet}\n</VirtualHost>\n"
            );
            let conf_path = dir.join("httpd.conf");
            std::fs::write(&conf_path, conf).unwrap();
            cmd.arg("-X").arg("-f").arg(&conf_path);
        }
        Server::Caddy => {
            let conf = format!(
                "{{\n\tadmin off\n\tauto_https off\n\
                 \tstorage file_system {d}/data\n}}\n\
                 http://127.0.0.1:{port} {{\n\tbind 127.0.0.1\n{snippet}\n}}\n"
            );
            let conf_path = dir.join("Caddyfile");
            std::fs::write(&conf_path, conf).unwrap();
            cmd.arg("run")
                .arg("--config")
                .arg(&conf_path)
                .arg("--adapter")
                .arg("caddyfile")
                .env("HOME", &d)
                .env("XDG_CONFIG_HOME", dir.join("config"))
                .env("XDG_DATA_HOME", dir.join("data"));
        }
    }
    let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
    let mut proxy = Proxy {
        child,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        dir,
    };
    let deadline = Instant::now() + START_TIMEOUT;
    while std::net::TcpStream::connect(proxy.addr).is_err() {
        if let Ok(Some(status)) = proxy.child.try_wait() {
            panic!("{server:?} exited with {status}:\n{}", proxy.log());
        }
        assert!(
            Instant::now() < deadline,
            "{server:?} did not listen on {} within {START_TIMEOUT:?}:\n{}",
            proxy.addr,
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    proxy
}

struct Setup {
    nc: StubNextcloud,
    exapp: EchoBackend,
    harp: Harp,
    proxy: Proxy,
}

/// A stub Nextcloud with the ExApp `proxied`, harp, and `server` in front of harp; `None` when
/// the server is not installed.
async fn setup(server: Server, env: &[(&str, &str)]) -> Option<Setup> {
    let binary = server.binary()?;
    let nc = StubNextcloud::start().await;
    let exapp = EchoBackend::start().await;
    nc.set_app(
        "proxied",
        StubNextcloud::record(
            "tok",
            "1.0.0",
            "127.0.0.1",
            exapp.port(),
            &[
                ("^/public", PUBLIC, &[]),
                ("^/sse", PUBLIC, &[]),
                ("^/ws", USER, &[]),
            ],
        ),
    );
    nc.set_user_level("sess-rp", "alice", USER);
    let mut all = vec![("NC_INSTANCE_URL", nc.url())];
    all.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let harp = Harp::start(&all);
    let proxy = start_proxy(server, &binary, harp.http_addr());
    Some(Setup {
        nc,
        exapp,
        harp,
        proxy,
    })
}

// ---------------------------------------------------------------------------------------------
// The checks, one per behaviour, run against each server
// ---------------------------------------------------------------------------------------------

/// The ExApp sees the same path and query through the proxy as when harp is called directly:
/// percent-escapes (an encoded slash, a space, a non-ASCII byte) and the query stay as sent.
async fn forwards_exapps_unchanged(server: Server) {
    let Some(s) = setup(server, &[]).await else {
        return;
    };
    let target = "/exapps/proxied/public/a%2Fb%20c%C3%A9/page?x=%2F1&y=a+b&z=%C3%A9";
    let direct = get(s.harp.http_addr(), target, &[]).await;
    assert_eq!(direct.status(), 200, "{direct:?}");
    let direct = s.exapp.last_request().unwrap();
    assert_eq!(direct.path, "/public/a%2Fb%20c%C3%A9/page");
    assert_eq!(direct.query.as_deref(), Some("x=%2F1&y=a+b&z=%C3%A9"));

    s.exapp.clear();
    let out = get(s.proxy.addr, target, &[]).await;
    assert_eq!(out.status(), 200, "{server:?}: {out:?}\n{}", s.proxy.log());
    let seen = s.exapp.last_request().unwrap();
    assert_eq!(seen.path, direct.path, "{server:?} changed the path");
    assert_eq!(seen.query, direct.query, "{server:?} changed the query");
    assert_eq!(seen.header("ex-app-id"), Some("proxied"));
}

async fn passes_websockets(server: Server) {
    let Some(s) = setup(server, &[]).await else {
        return;
    };
    let url = format!("ws://{}/exapps/proxied/ws", s.proxy.addr);
    let mut ws = ws_connect(&url, &[("cookie", "oc_sessionPassphrase=sess-rp")]).await;
    for text in ["through the proxy", "and again"] {
        ws.send(Message::Text(text.into())).await.unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap_or_else(|_| panic!("{server:?}: no WebSocket echo within 5 s"))
            .unwrap()
            .unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), text);
    }
}

/// The ExApp's `/sse` sends five events 200 ms apart: the first must reach the client before
/// the last is sent, or the proxy buffers (which breaks SSE and long polling).
async fn streams_responses(server: Server) {
    let Some(s) = setup(server, &[]).await else {
        return;
    };
    let mut conn = tokio::net::TcpStream::connect(s.proxy.addr).await.unwrap();
    let request = format!(
        "GET /exapps/proxied/sse HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        s.proxy.addr
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains("data: 0") {
        let n = tokio::time::timeout_at(deadline, conn.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{server:?}: no first event within 10 s"))
            .unwrap();
        assert!(n > 0, "{server:?}: closed before the first event");
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{server:?}: {text}");
    assert!(
        !text.contains("data: 4"),
        "{server:?} buffered the stream: the first event came with the last\n{text}"
    );
}

async fn with_trusted_proxy_bans_the_client_not_the_proxy(server: Server) {
    let Some(s) = setup(
        server,
        &[
            ("HP_TRUSTED_PROXY_IPS", "127.0.0.1/32"),
            ("HP_BLACKLIST_COUNT", "1"),
        ],
    )
    .await
    else {
        return;
    };
    let attacker: IpAddr = "127.0.0.77".parse().unwrap();
    let bystander: IpAddr = "127.0.0.78".parse().unwrap();
    // One unknown-path request (404 + strike) bans the attacker with HP_BLACKLIST_COUNT=1.
    assert_eq!(
        get_from(attacker, s.proxy.addr, "/exapps/", &[])
            .await
            .status(),
        404
    );
    // The proxy turns harp's reset into a 502 for the attacker; the bystander is still served,
    // also right after (the proxy must not take harp out of rotation over one reset).
    for _ in 0..2 {
        assert_eq!(
            get_from(attacker, s.proxy.addr, "/exapps/proxied/public", &[])
                .await
                .status(),
            502,
            "{server:?}: the banned client"
        );
        let out = get_from(bystander, s.proxy.addr, "/exapps/proxied/public", &[]).await;
        assert_eq!(
            out.status(),
            200,
            "{server:?}: a bystander: {out:?}\n{}",
            s.proxy.log()
        );
    }
}

/// A request while harp is down (an upgrade, a restart) gets an error, and the next one after
/// harp is back is served: the proxy must not keep harp marked as failed (Apache's default
/// `retry=60` would refuse /exapps/ for a minute).
async fn recovers_right_after_harp_restarts(server: Server) {
    let http = format!("127.0.0.1:{}", free_port());
    let Some(mut s) = setup(server, &[("HP_EXAPPS_ADDRESS", http.as_str())]).await else {
        return;
    };
    let path = "/exapps/proxied/public";
    assert_eq!(get(s.proxy.addr, path, &[]).await.status(), 200);
    s.harp.kill();
    let down = get(s.proxy.addr, path, &[]).await;
    assert!(
        matches!(down.status(), 502 | 503),
        "{server:?} while harp is down: {down:?}"
    );
    s.harp = Harp::start(&[
        ("NC_INSTANCE_URL", s.nc.url().as_str()),
        ("HP_EXAPPS_ADDRESS", http.as_str()),
    ]);
    let back = get(s.proxy.addr, path, &[]).await;
    assert_eq!(
        back.status(),
        200,
        "{server:?} right after harp is back: {back:?}\n{}",
        s.proxy.log()
    );
}

// ---------------------------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn nginx_snippet_forwards_exapps_unchanged() {
    forwards_exapps_unchanged(Server::Nginx).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_snippet_passes_websockets() {
    passes_websockets(Server::Nginx).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_snippet_streams_responses() {
    streams_responses(Server::Nginx).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_snippet_recovers_right_after_harp_restarts() {
    recovers_right_after_harp_restarts(Server::Nginx).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_snippet_with_trusted_proxy_bans_the_client_not_nginx() {
    with_trusted_proxy_bans_the_client_not_the_proxy(Server::Nginx).await;
}

// ---------------------------------------------------------------------------------------------
// Apache httpd
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn apache_snippet_forwards_exapps_unchanged() {
    forwards_exapps_unchanged(Server::Apache).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn apache_snippet_passes_websockets() {
    passes_websockets(Server::Apache).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn apache_snippet_streams_responses() {
    streams_responses(Server::Apache).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn apache_snippet_recovers_right_after_harp_restarts() {
    recovers_right_after_harp_restarts(Server::Apache).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn apache_snippet_with_trusted_proxy_bans_the_client_not_apache() {
    with_trusted_proxy_bans_the_client_not_the_proxy(Server::Apache).await;
}

// ---------------------------------------------------------------------------------------------
// Caddy
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn caddy_snippet_forwards_exapps_unchanged() {
    forwards_exapps_unchanged(Server::Caddy).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_snippet_passes_websockets() {
    passes_websockets(Server::Caddy).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_snippet_streams_responses() {
    streams_responses(Server::Caddy).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_snippet_recovers_right_after_harp_restarts() {
    recovers_right_after_harp_restarts(Server::Caddy).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_snippet_with_trusted_proxy_bans_the_client_not_caddy() {
    with_trusted_proxy_bans_the_client_not_the_proxy(Server::Caddy).await;
}
