//! Hostile input and failure hardening (GitHub issue 11): path forms that servers inside ExApps
//! route differently from what the route rules saw, duplicated `Content-Length`, listeners that
//! cannot bind, silent TLS clients, slow request bodies, and what a client's behaviour may log.

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Path normalisation (our Q3 fix) against a real nginx ExApp
// ---------------------------------------------------------------------------------------------

/// nginx as the ExApp's own server, one foreground process on a loopback port, killed on drop.
struct NginxExApp {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Drop for NginxExApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ADMIN_BODY: &str = "ADMIN-LOCATION";
const LIFECYCLE_BODY: &str = "LIFECYCLE-LOCATION";

impl NginxExApp {
    /// `None` (after saying so) when nginx is not installed, unless `CI` is set.
    fn start() -> Option<NginxExApp> {
        let binary = PathBuf::from("/usr/sbin/nginx");
        if !binary.is_file() {
            assert!(
                std::env::var_os("CI").is_none(),
                "/usr/sbin/nginx is missing"
            );
            eprintln!("SKIPPED: /usr/sbin/nginx is missing (apt-get install nginx-light)");
            return None;
        }
        let dir = TempDir::new("nginx-exapp");
        let port = free_port();
        let d = dir.path().display().to_string();
        // nginx's defaults: merge_slashes on, dot segments resolved, escapes (%2F too) decoded
        // before locations are matched.
        let conf = format!(
            "master_process off;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{}}\nhttp {{\naccess_log off;\nclient_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\nfastcgi_temp_path {d}/fcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n\
             server {{\nlisten 127.0.0.1:{port};\n\
             location /admin {{ return 200 \"{ADMIN_BODY}\"; }}\n\
             location = /init {{ return 200 \"{LIFECYCLE_BODY}\"; }}\n\
             location = /enabled {{ return 200 \"{LIFECYCLE_BODY}\"; }}\n\
             location = /heartbeat {{ return 200 \"{LIFECYCLE_BODY}\"; }}\n\
             location / {{ return 200 \"public:$uri\"; }}\n}}\n}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = Command::new(&binary)
            .arg("-p")
            .arg(&d)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start nginx");
        let mut nginx = NginxExApp {
            child,
            addr: local(port),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(nginx.addr).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited with {status}: {}", nginx.log());
            }
            assert!(Instant::now() < deadline, "nginx did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(nginx)
    }

    fn log(&self) -> String {
        ["error.log", "stderr.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.join(f)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Forms of `/admin` (and of AppAPI's lifecycle paths) that nginx routes to that location while
/// a route regex on the path as sent would not see it.
const HOSTILE_ADMIN: &[&str] = &[
    "//admin",
    "///admin/x",
    "/./admin",
    "/%2e/admin",
    "/%2E/admin",
    "/%2Fadmin",
    "/%2fadmin",
    "/.%2fadmin",
    "/%2e%2fadmin",
    "/.//admin",
    "/x/./../admin",
    "/x/%2e%2e/admin",
    "/x%2F..%2Fadmin",
];

const HOSTILE_LIFECYCLE: &[&str] = &[
    "//init",
    "/./init",
    "/%2e/enabled",
    "/%2Fheartbeat",
    "/.%2fheartbeat",
];

#[tokio::test(flavor = "multi_thread")]
async fn q3_hostile_path_forms_never_reach_an_nginx_admin_location() {
    let Some(nginx) = NginxExApp::start() else {
        return;
    };
    // The forms are hostile: nginx itself serves its admin location for each.
    for form in HOSTILE_ADMIN {
        let out = get(nginx.addr, form, &[]).await;
        assert_eq!(
            out.body_str(),
            ADMIN_BODY,
            "nginx on {form}: {}",
            nginx.log()
        );
    }
    for form in HOSTILE_LIFECYCLE {
        let out = get(nginx.addr, form, &[]).await;
        assert_eq!(out.body_str(), LIFECYCLE_BODY, "nginx on {form}");
    }

    let nc = StubNextcloud::start().await;
    let routes: &[(&str, u8, &[u16])] = &[
        ("^/admin", ADMIN, &[]),
        ("^/user", USER, &[]),
        (".*", PUBLIC, &[]),
    ];
    nc.set_app(
        "q3nginx",
        StubNextcloud::record("tok", "1.0.0", "127.0.0.1", nginx.addr.port(), routes),
    );
    nc.set_user_level("sess-admin", "root", ADMIN);
    let harp = Harp::start(&[
        ("NC_INSTANCE_URL", &nc.url()),
        ("HP_BLACKLIST_COUNT", "100000"),
    ]);
    let via_harp = |p: &str| format!("/exapps/q3nginx{p}");

    for form in HOSTILE_ADMIN.iter().chain(HOSTILE_LIFECYCLE) {
        let out = get(harp.http_addr(), &via_harp(form), &[]).await;
        match &out {
            RawOutcome::Reset => {}
            RawOutcome::Response { status, body, .. } => {
                let body = String::from_utf8_lossy(body);
                assert!(
                    matches!(status, 400 | 401 | 403),
                    "anonymous {form}: {status} {body}"
                );
                assert!(
                    !body.contains(ADMIN_BODY) && !body.contains(LIFECYCLE_BODY),
                    "anonymous {form}: {body}"
                );
            }
            RawOutcome::Timeout => panic!("anonymous {form}: timeout"),
        }
    }

    // Ordinary paths are untouched, and an admin still reaches /admin through a sloppy path.
    let out = get(harp.http_addr(), &via_harp("/pub%20lic/a%2Fb?x=%2e"), &[]).await;
    assert_eq!(out.body_str(), "public:/pub lic/a/b", "{out:?}");
    let admin = [("Cookie", "oc_sessionPassphrase=sess-admin")];
    for form in ["/admin", "//admin", "/%2e/admin", "/%2Fadmin"] {
        let out = get(harp.http_addr(), &via_harp(form), &admin).await;
        assert_eq!(out.body_str(), ADMIN_BODY, "admin {form}: {out:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// One Content-Length upstream (RFC 9110 8.6)
// ---------------------------------------------------------------------------------------------

async fn public_app(app: &str, env: &[(&str, &str)]) -> (StubNextcloud, EchoBackend, Harp) {
    let nc = StubNextcloud::start().await;
    let echo = EchoBackend::start().await;
    nc.set_app(
        app,
        StubNextcloud::record(
            "tok",
            "1.0.0",
            "127.0.0.1",
            echo.port(),
            &[(".*", PUBLIC, &[])],
        ),
    );
    let url = nc.url();
    let mut all = vec![("NC_INSTANCE_URL", url.as_str())];
    all.extend_from_slice(env);
    let harp = Harp::start(&all);
    (nc, echo, harp)
}

fn post_with_lengths(addr: SocketAddr, path: &str, lengths: &[&str], body: &str) -> Vec<u8> {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for l in lengths {
        req.push_str(&format!("Content-Length: {l}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req.into_bytes()
}

/// An ExApp that records each request head as received (hyper, under the echo backend, drops
/// a repeated identical `Content-Length` line before anyone can see it) and answers `ok`.
struct RawHeadBackend {
    addr: SocketAddr,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawHeadBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawHeadBackend {
    async fn start() -> RawHeadBackend {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = heads.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                    log.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..end]).into_owned());
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        RawHeadBackend { addr, heads, task }
    }

    /// The `Content-Length` lines of the last request head, values as sent.
    fn last_content_lengths(&self) -> Vec<String> {
        let heads = self.heads.lock().unwrap();
        let head = heads.last().expect("the ExApp received no request");
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_content_lengths_reach_the_exapp_as_one() {
    let exapp = RawHeadBackend::start().await;
    let nc = StubNextcloud::start().await;
    nc.set_app(
        "clone",
        StubNextcloud::record(
            "tok",
            "1.0.0",
            "127.0.0.1",
            exapp.addr.port(),
            &[(".*", PUBLIC, &[])],
        ),
    );
    let harp = Harp::start(&[("NC_INSTANCE_URL", &nc.url())]);
    let addr = harp.http_addr();
    for lengths in [&["5", "5"][..], &["5, 5"], &["5,5", "5"]] {
        let req = post_with_lengths(addr, "/exapps/clone/x", lengths, "hello");
        let out = raw_request(addr, &req, Duration::from_secs(10)).await;
        assert_eq!(out.status(), 200, "{lengths:?}: {out:?}");
        assert_eq!(exapp.last_content_lengths(), vec!["5"], "{lengths:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn differing_content_lengths_are_refused_with_400() {
    let (_nc, echo, harp) = public_app("cldiff", &[]).await;
    let addr = harp.http_addr();
    for lengths in [&["5", "6"][..], &["5, 6"], &["5", "5, 4"]] {
        let req = post_with_lengths(addr, "/exapps/cldiff/x", lengths, "hello");
        let out = raw_request(addr, &req, Duration::from_secs(10)).await;
        assert_eq!(out.status(), 400, "{lengths:?}: {out:?}");
    }
    assert_eq!(echo.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// A listener that cannot bind ends the process
// ---------------------------------------------------------------------------------------------

/// A self-signed certificate and its key in one PEM, as HaRP's `/certs/cert.pem`.
fn write_cert_pem(dir: &std::path::Path) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let pem = format!(
        "{}{}",
        certified.cert.pem(),
        certified.signing_key.serialize_pem()
    );
    std::fs::write(dir.join("cert.pem"), pem).unwrap();
}

#[test]
fn a_taken_listener_port_exits_1_naming_the_setting() {
    for setting in [
        "HP_EXAPPS_ADDRESS",
        "HP_EXAPPS_HTTPS_ADDRESS",
        "HP_FRP_ADDRESS",
        "HP_OPS_ADDRESS",
    ] {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = holder.local_addr().unwrap().to_string();
        let certs = TempDir::new("certs");
        write_cert_pem(certs.path());
        let certs_dir = certs.path().display().to_string();
        let mut harp = Harp::spawn(
            &[],
            &[(setting, taken.as_str()), ("HP_CERTS_DIR", &certs_dir)],
        );
        let status = harp.wait_exit(Duration::from_secs(5));
        let log = harp.log();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(1),
            "{setting}: harp must exit 1 at once:\n{log}"
        );
        let line = format!("{setting} {taken} is in use");
        assert!(log.contains(&line), "{setting}: no {line:?} in:\n{log}");
        assert!(!log.contains("panicked"), "{setting}:\n{log}");
    }
}

#[test]
fn check_config_reports_two_listeners_on_one_address() {
    let out = run_harp(
        &["check-config"],
        &[
            ("HP_EXAPPS_ADDRESS", "127.0.0.1:18999"),
            ("HP_OPS_ADDRESS", "127.0.0.1:18999"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("HP_OPS_ADDRESS=127.0.0.1:18999: HP_EXAPPS_ADDRESS has the same address"),
        "{stderr}"
    );
}

#[test]
fn each_listener_is_announced_at_the_default_log_level() {
    let certs = TempDir::new("certs");
    write_cert_pem(certs.path());
    let certs_dir = certs.path().display().to_string();
    let harp = Harp::start(&[("HP_LOG_LEVEL", "warning"), ("HP_CERTS_DIR", &certs_dir)]);
    let log = harp.log();
    for (scheme, setting, addr) in [
        ("http", "HP_EXAPPS_ADDRESS", harp.http_addr()),
        ("https", "HP_EXAPPS_HTTPS_ADDRESS", harp.https_addr()),
        ("frp", "HP_FRP_ADDRESS", harp.frp_addr()),
        ("http", "HP_OPS_ADDRESS", harp.ops_addr()),
    ] {
        let line = format!("listening on {scheme}://{addr} ({setting})");
        assert!(log.contains(&line), "no {line:?} in:\n{log}");
    }
    assert!(!log.contains("WARN"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// HTTPS handshakes obey HP_TIMEOUT_CLIENT
// ---------------------------------------------------------------------------------------------

/// Connects to `addr`, sends `first` (maybe nothing) and waits for harp to close the connection;
/// the time that took, or `None` when it was still open after `limit`.
async fn closed_after(addr: SocketAddr, first: &[u8], limit: Duration) -> Option<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(first).await.unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + limit).into(), conn.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_tls_client_is_closed_after_the_client_timeout() {
    let certs = TempDir::new("certs");
    write_cert_pem(certs.path());
    let certs_dir = certs.path().display().to_string();
    let (_nc, _echo, harp) = public_app(
        "tlsslow",
        &[("HP_TIMEOUT_CLIENT", "2s"), ("HP_CERTS_DIR", &certs_dir)],
    )
    .await;
    // Nothing at all, and the first bytes of a ClientHello's record header then nothing.
    for first in [&b""[..], &[0x16, 0x03, 0x01]] {
        let took = closed_after(harp.https_addr(), first, Duration::from_secs(10)).await;
        let took = took.unwrap_or_else(|| panic!("{first:?}: still open after 10 s"));
        assert!(
            took >= Duration::from_millis(1500),
            "{first:?}: closed after {took:?}"
        );
        assert!(
            took < Duration::from_secs(5),
            "{first:?}: closed after {took:?}"
        );
    }
    // A real client is served.
    let res = https_client()
        .get(harp.https_url("/exapps/tlsslow/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(!harp.log().contains("ERROR"), "{}", harp.log());
}

// ---------------------------------------------------------------------------------------------
// Slow request bodies: HP_TIMEOUT_BODY
// ---------------------------------------------------------------------------------------------

/// Sends a request whose 20-byte body trickles in one byte every 500 ms; returns what came back
/// and when.
async fn trickle_post(addr: SocketAddr, path: &str) -> (String, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if wr.write_all(b"x").await.is_err() {
                break;
            }
        }
        // Keep the write side open: a half-close reads as the client leaving.
        std::future::pending::<()>().await;
        drop(wr);
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut answer)).await;
    let took = started.elapsed();
    writer.abort();
    (String::from_utf8_lossy(&answer).into_owned(), took)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_slower_than_hp_timeout_body_is_cut_off() {
    let (_nc, echo, harp) = public_app("slowbody", &[("HP_TIMEOUT_BODY", "2s")]).await;
    let (answer, took) = trickle_post(harp.http_addr(), "/exapps/slowbody/x").await;
    assert!(took < Duration::from_secs(4), "took {took:?}: {answer}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        echo.requests().iter().all(|r| r.body.len() < 20),
        "the ExApp got the whole body"
    );
    // A body that arrives in time is not affected.
    let out = request(
        harp.http_addr(),
        "POST",
        b"/exapps/slowbody/x",
        &[],
        b"hello",
    )
    .await;
    assert_eq!(out.status(), 200, "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_hp_timeout_body_a_slow_body_is_served() {
    let (_nc, echo, harp) = public_app("slowok", &[]).await;
    let (answer, took) = trickle_post(harp.http_addr(), "/exapps/slowok/x").await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer}\n{}",
        harp.log()
    );
    assert!(took >= Duration::from_secs(10), "{took:?}");
    assert_eq!(echo.last_request().unwrap().body, vec![b'x'; 20]);
}

// ---------------------------------------------------------------------------------------------
// Client behaviour is not an ERROR
// ---------------------------------------------------------------------------------------------

/// harp's log lines at WARN or ERROR.
fn warnings_and_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_closing_a_websocket_logs_no_error() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::MaybeTlsStream;
    let (_nc, _echo, harp) = public_app("wsclose", &[("HP_LOG_LEVEL", "warning")]).await;
    let url = format!("ws://{}/exapps/wsclose/ws", harp.http_addr());
    // A clean close; a client that goes away; one that resets the connection; one that goes
    // away while its message is being echoed.
    for how in ["close", "drop", "reset", "drop-while-echoing"] {
        let mut ws = ws_connect(&url, &[]).await;
        ws.send(Message::Text("hi".into())).await.unwrap();
        if how == "drop-while-echoing" {
            ws.send(Message::Binary(vec![7u8; 1 << 20].into()))
                .await
                .unwrap();
            if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
                tcp.set_zero_linger().unwrap();
            }
            drop(ws);
            continue;
        }
        let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), "hi");
        match how {
            "close" => {
                ws.close(None).await.unwrap();
                while let Some(Ok(_)) = ws.next().await {}
            }
            "reset" => {
                if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
                    tcp.set_zero_linger().unwrap();
                }
                drop(ws);
            }
            _ => drop(ws),
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = harp.log();
    assert_eq!(warnings_and_errors(&log), Vec::<&str>::new(), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_leaving_early_log_no_error() {
    use tokio::io::AsyncWriteExt;
    let (_nc, _echo, harp) = public_app("leaving", &[("HP_LOG_LEVEL", "warning")]).await;
    let addr = harp.http_addr();
    // Half a request head, then gone; a request whose answer is never read; a body cut short.
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /exapps/leaving/x HTTP/1.1\r\nHo")
        .await
        .unwrap();
    drop(conn);
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("GET /exapps/leaving/sleep/300 HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    drop(conn);
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /exapps/leaving/x HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100\r\n\r\nabc"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(conn);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let log = harp.log();
    assert_eq!(warnings_and_errors(&log), Vec::<&str>::new(), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_exapp_is_one_warning_a_minute() {
    let nc = StubNextcloud::start().await;
    let closed = ClosedPort::new();
    nc.set_app(
        "deadapp",
        StubNextcloud::record(
            "tok",
            "1.0.0",
            "127.0.0.1",
            closed.port(),
            &[(".*", PUBLIC, &[])],
        ),
    );
    let harp = Harp::start(&[
        ("NC_INSTANCE_URL", &nc.url()),
        ("HP_LOG_LEVEL", "warning"),
        ("HP_TIMEOUT_CONNECT", "50ms"),
    ]);
    for _ in 0..3 {
        let out = get(harp.http_addr(), "/exapps/deadapp/x?token=secret", &[]).await;
        assert_eq!(out.status(), 503, "{out:?}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = harp.log();
    let lines = warnings_and_errors(&log);
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains(" WARN ")
            && lines[0].contains(&format!("ExApp deadapp at 127.0.0.1:{}", closed.port()))
            && lines[0].contains("GET /exapps/deadapp/x failed (503)"),
        "{log}"
    );
    assert!(!log.contains("secret"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// Connections: HP_MAX_CONNECTIONS, and what an idle connection costs
// ---------------------------------------------------------------------------------------------

/// One value of harp's `/metrics`.
async fn metric(harp: &Harp, name: &str) -> u64 {
    let text = client()
        .get(harp.ops_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Polls `/metrics` until `name` is `want` (connections are counted by the accept loop, a
/// moment after the client's connect returns).
async fn metric_becomes(harp: &Harp, name: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = metric(harp, name).await;
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name} stayed {now}, not {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_hp_max_connections_are_closed_at_once_and_counted() {
    use tokio::io::AsyncReadExt;
    let (_nc, _echo, harp) = public_app("capped", &[("HP_MAX_CONNECTIONS", "20")]).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(
            tokio::net::TcpStream::connect(harp.http_addr())
                .await
                .unwrap(),
        );
    }
    metric_becomes(&harp, "harp_connections_open", 20).await;
    // Over the limit: the kernel completes the connect, harp closes it at once.
    for _ in 0..5 {
        let mut extra = tokio::net::TcpStream::connect(harp.http_addr())
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a connection over the limit was not closed: {read:?}"
        );
    }
    assert_eq!(metric(&harp, "harp_connections_refused_total").await, 5);
    let warnings: Vec<_> = harp
        .log()
        .lines()
        .filter(|l| l.contains("HP_MAX_CONNECTIONS=20"))
        .map(str::to_string)
        .collect();
    assert_eq!(warnings.len(), 1, "one line a minute: {warnings:?}");
    // Places come back as connections end; then requests are served again.
    held.truncate(10);
    metric_becomes(&harp, "harp_connections_open", 10).await;
    let res = client()
        .get(harp.url("/exapps/capped/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// Raises this process's soft descriptor limit towards `want` (a fresh Debian shell starts at
/// 1,024); returns the limit now in effect.
fn raise_fd_limit(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    limit.rlim_cur
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_costs_little_and_its_memory_goes_back() {
    // 2,000 connections where the descriptor limit allows, never fewer than 500 (too few to
    // see per-connection memory through RSS).
    let fds = raise_fd_limit(2_500);
    assert!(fds >= 800, "descriptor limit {fds}: too low for this test");
    let idle: u64 = 2000.min(fds - 300);
    let (_nc, _echo, harp) = public_app("idlemem", &[("HP_MAX_CONNECTIONS", "2500")]).await;
    // The route's first use (records, upstream pool) is not what is measured.
    let res = client()
        .get(harp.url("/exapps/idlemem/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    metric_becomes(&harp, "harp_connections_open", 0).await;
    let before = rss_kib(harp.pid());
    let mut held = Vec::new();
    for _ in 0..idle {
        held.push(
            tokio::net::TcpStream::connect(harp.http_addr())
                .await
                .unwrap(),
        );
    }
    metric_becomes(&harp, "harp_connections_open", idle).await;
    let during = rss_kib(harp.pid());
    let per_connection = during.saturating_sub(before) * 1024 / idle;
    // HAProxy: about 1 KB; harp before this fix: about 38 KB.
    assert!(
        per_connection <= 8 * 1024,
        "{per_connection} bytes per idle connection (RSS {before} -> {during} KiB)"
    );
    drop(held);
    metric_becomes(&harp, "harp_connections_open", 0).await;
    // What the flood took goes back within a few seconds (the accept loop collects once a
    // second after connections ended).
    let grown = during.saturating_sub(before);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = rss_kib(harp.pid());
        if now.saturating_sub(before) <= grown / 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "RSS {before} KiB before {idle} idle connections, {during} with them, {now} after"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
