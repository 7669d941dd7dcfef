//! Tests of `harp tunnel`, the FRP client (spec `frp-protocol.md` §2-§8, §11).
//!
//! Two servers:
//! * [`Fake`]: a minimal frps written here from the spec with the crate's protocol layer
//!   (`codec`, `crypto`, `msg`) and tokio-yamux, so the client's wire behaviour is checked
//!   independently of harp's server (first bytes, Login fields, TLS head byte, client
//!   certificates, bad frames, refused logins, heartbeats with tcpMux off).
//! * the real `harp` process: end to end, plain and mutual TLS with certificates from
//!   `harp::certs`, HTTP to a TCP backend and to a unix socket, the `harp tunnel` command
//!   line, and reconnecting after harp restarts.
//!
//! Remote ports 24091-24098 are this file's on the real server (tests run in parallel; other
//! files use other ones).

mod common;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::harp::tunnel::client::{config, Client, ProxyStatus, Status};
use ::harp::tunnel::codec::{self, Decoder, HEADER_LEN};
use ::harp::tunnel::crypto::{self, AesKey, Decryptor, Encryptor};
use ::harp::tunnel::msg::{
    Login, LoginResp, Message, NewProxy, NewProxyResp, NewWorkConn, Ping, Pong, ReqWorkConn,
    StartWorkConn,
};
use bytes::BytesMut;
use common::*;
use futures_util::StreamExt;
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_yamux::{Config as YamuxConfig, Session};

const WAIT: Duration = Duration::from_secs(10);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type BoxIo = Box<dyn Io>;

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// The client under test
// ---------------------------------------------------------------------------------------------

/// A running client; stopped (its connections dropped) when this is dropped.
struct Running {
    status: watch::Receiver<Status>,
    task: JoinHandle<Result<Infallible, String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn start_client(toml: &str) -> Running {
    let (config, warnings) = config::parse(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    let client = Client::new(config).expect("client setup");
    let status = client.status();
    Running {
        status,
        task: tokio::spawn(client.run()),
    }
}

impl Running {
    async fn wait_for(&mut self, what: &str, limit: Duration, pred: impl Fn(&Status) -> bool) {
        let reached = matches!(
            timeout(limit, self.status.wait_for(|s| pred(s))).await,
            Ok(Ok(_))
        );
        let now = self.status.borrow().clone();
        assert!(
            reached,
            "client did not reach {what:?} within {limit:?}; status {now:?}"
        );
    }

    async fn wait_running(&mut self, proxy: &str) {
        self.wait_for(&format!("{proxy} running"), WAIT, |s| {
            matches!(s.proxies.get(proxy), Some(ProxyStatus::Running { .. }))
        })
        .await;
    }

    /// The client's end: `Err` with its message when it gave up.
    async fn finished(self, limit: Duration) -> Result<Infallible, String> {
        let mut this = self;
        let task = &mut this.task;
        timeout(limit, task)
            .await
            .expect("client still running")
            .expect("client task panicked")
    }
}

/// `[[proxies]]` to a TCP backend.
fn tcp_proxy(name: &str, remote_port: u16, local: SocketAddr) -> String {
    format!(
        "[[proxies]]\nname = \"{name}\"\ntype = \"tcp\"\nremotePort = {remote_port}\n\
         localIP = \"{}\"\nlocalPort = {}\n",
        local.ip(),
        local.port()
    )
}

/// `[[proxies]]` to a unix socket, as HaRP's configs write it.
fn unix_proxy(name: &str, remote_port: u16, path: &Path) -> String {
    format!(
        "[[proxies]]\nname = \"{name}\"\ntype = \"tcp\"\nremotePort = {remote_port}\n\
         [proxies.plugin]\ntype = \"unix_domain_socket\"\nunixPath = \"{}\"\n",
        path.display()
    )
}

fn plain_config(server: SocketAddr, extra: &str) -> String {
    format!(
        "serverAddr = \"{}\"\nserverPort = {}\ntransport.tls.enable = false\n\
         metadatas.token = \"{KEY}\"\n{extra}",
        server.ip(),
        server.port()
    )
}

/// HaRP's TLS client config shape (frpc-docker.toml, harp-behaviour §10.3).
fn tls_config(server: SocketAddr, certs: &Path, extra: &str) -> String {
    let frp = certs.join("frp");
    format!(
        "serverAddr = \"{}\"\nserverPort = {}\ntransport.tls.enable = true\n\
         transport.tls.certFile = \"{}\"\ntransport.tls.keyFile = \"{}\"\n\
         transport.tls.trustedCaFile = \"{}\"\ntransport.tls.serverName = \"harp.nc\"\n\
         metadatas.token = \"{KEY}\"\n{extra}",
        server.ip(),
        server.port(),
        frp.join("client.crt").display(),
        frp.join("client.key").display(),
        frp.join("ca.crt").display(),
    )
}

fn generated_certs() -> TempDir {
    let dir = TempDir::new("client-certs");
    assert!(::harp::certs::generate_frp_certs(dir.path(), 30).unwrap());
    dir
}

// ---------------------------------------------------------------------------------------------
// Local services: a TCP echo backend (common) and a tiny HTTP server on a unix socket
// ---------------------------------------------------------------------------------------------

struct UnixHttp {
    _dir: TempDir,
    path: PathBuf,
    _task: AbortOnDrop,
}

/// Answers every request with `200 unix:<request line>` and closes.
fn unix_http() -> UnixHttp {
    let dir = TempDir::new("client-unix");
    let path = dir.join("app.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let body = format!("unix:{line}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    UnixHttp {
        _dir: dir,
        path,
        _task: AbortOnDrop(task),
    }
}

/// Sends one HTTP/1.1 request with `Connection: close` over `io`; returns the raw response.
async fn http_over<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: tunnel\r\nConnection: close\r\n\r\n");
    io.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    timeout(WAIT, io.read_to_end(&mut resp))
        .await
        .expect("no response through the tunnel")
        .unwrap();
    String::from_utf8_lossy(&resp).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Fake frps
// ---------------------------------------------------------------------------------------------

const FAKE_RUN_ID: &str = "0123456789abcdef";

#[derive(Debug)]
enum Event {
    /// First byte of a connection (0x17, 0x16 for TLS, 0x00 for yamux).
    FirstByte(u8),
    /// The client's certificate CN, when it showed one.
    ClientCert(Option<String>),
    Login(Box<Login>),
    NewProxy(Box<NewProxy>),
    Ping(Ping),
}

#[derive(Default)]
struct Script {
    /// Errors for the next logins, in order.
    login_errors: VecDeque<String>,
    /// Errors for the next NewProxy messages, in order.
    proxy_errors: VecDeque<String>,
    pong_error: Option<String>,
}

/// What the test sends down the current control stream (plaintext, encrypted by the fake).
enum Inject {
    Msg(Box<Message>),
    Plain(Vec<u8>),
}

struct FakeState {
    mux: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
    script: Mutex<Script>,
    events: mpsc::UnboundedSender<Event>,
    work: mpsc::UnboundedSender<BoxIo>,
    control: Mutex<Option<mpsc::UnboundedSender<Inject>>>,
    sessions: Mutex<Vec<AbortOnDrop>>,
}

struct Fake {
    addr: SocketAddr,
    state: Arc<FakeState>,
    events: mpsc::UnboundedReceiver<Event>,
    work: mpsc::UnboundedReceiver<BoxIo>,
    _accept: AbortOnDrop,
}

fn fake_yamux() -> YamuxConfig {
    YamuxConfig {
        max_stream_window_size: 6 * 1024 * 1024,
        ..YamuxConfig::default()
    }
}

impl Fake {
    async fn start(mux: bool, tls: Option<Arc<rustls::ServerConfig>>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (events_tx, events) = mpsc::unbounded_channel();
        let (work_tx, work) = mpsc::unbounded_channel();
        let state = Arc::new(FakeState {
            mux,
            tls,
            script: Mutex::default(),
            events: events_tx,
            work: work_tx,
            control: Mutex::default(),
            sessions: Mutex::default(),
        });
        let st = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let task = tokio::spawn(serve_conn(st.clone(), tcp));
                st.sessions.lock().unwrap().push(AbortOnDrop(task));
            }
        });
        Fake {
            addr,
            state,
            events,
            work,
            _accept: AbortOnDrop(accept),
        }
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.state.script.lock().unwrap()
    }

    async fn event(&mut self) -> Event {
        timeout(WAIT, self.events.recv())
            .await
            .expect("no event from the client within 10 s")
            .expect("fake closed")
    }

    async fn login(&mut self) -> Login {
        loop {
            if let Event::Login(login) = self.event().await {
                return *login;
            }
        }
    }

    async fn new_proxy(&mut self) -> NewProxy {
        loop {
            if let Event::NewProxy(p) = self.event().await {
                return *p;
            }
        }
    }

    /// A user connection through `proxy`: takes a pooled work stream, binds it with
    /// StartWorkConn and asks the client for a replacement, as frps does.
    async fn user_conn(&mut self, proxy: &str) -> BoxIo {
        let mut work = timeout(WAIT, self.work.recv())
            .await
            .expect("no work connection within 10 s")
            .unwrap();
        let start = Message::StartWorkConn(StartWorkConn {
            proxy_name: proxy.into(),
            src_addr: "127.0.0.1".into(),
            dst_addr: "127.0.0.1".into(),
            src_port: 50000,
            dst_port: 24000,
            error: String::new(),
        });
        work.write_all(&codec::encode(&start)).await.unwrap();
        self.inject(Inject::Msg(Box::new(Message::ReqWorkConn(ReqWorkConn {}))));
        work
    }

    fn inject(&self, what: Inject) {
        let control = self.state.control.lock().unwrap();
        control
            .as_ref()
            .expect("no control stream")
            .send(what)
            .map_err(|_| ())
            .expect("control stream gone");
    }

    /// Drops every connection at once, like a crashed server.
    fn drop_sessions(&self) {
        self.state.sessions.lock().unwrap().clear();
        *self.state.control.lock().unwrap() = None;
    }
}

async fn serve_conn(state: Arc<FakeState>, tcp: TcpStream) {
    let mut first = [0u8; 1];
    let Ok(1) = tcp.peek(&mut first).await else {
        return;
    };
    let _ = state.events.send(Event::FirstByte(first[0]));
    let mut tcp = tcp;
    let io: BoxIo = match &state.tls {
        Some(config) => {
            if first[0] == 0x17 {
                tcp.read_exact(&mut first).await.unwrap();
            }
            let Ok(tls) = tokio_rustls::TlsAcceptor::from(config.clone())
                .accept(tcp)
                .await
            else {
                return;
            };
            let cn = tls.get_ref().1.peer_certificates().map(|chain| {
                let (_, cert) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
                let cn = cert.subject().iter_common_name().next().unwrap();
                cn.as_str().unwrap().to_string()
            });
            let _ = state.events.send(Event::ClientCert(cn));
            Box::new(tls)
        }
        None => Box::new(tcp),
    };
    if !state.mux {
        serve_stream(state, io).await;
        return;
    }
    let mut session = Session::new_server(io, fake_yamux());
    let mut streams = Vec::new();
    while let Some(Ok(stream)) = session.next().await {
        streams.push(AbortOnDrop(tokio::spawn(serve_stream(
            state.clone(),
            Box::new(stream),
        ))));
    }
}

/// Reads exactly one plain frame, independently of the client's reader.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Message> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header).await?;
    let len = i64::from_be_bytes(header[1..].try_into().unwrap());
    assert!((0..=10240).contains(&len), "client sent a {len}-byte frame");
    let mut frame = BytesMut::from(&header[..]);
    frame.resize(HEADER_LEN + len as usize, 0);
    r.read_exact(&mut frame[HEADER_LEN..]).await?;
    Ok(Decoder::new()
        .decode(&mut frame)
        .expect("client sent a bad frame")
        .unwrap())
}

async fn serve_stream(state: Arc<FakeState>, mut io: BoxIo) {
    let Ok(first) = read_frame(&mut io).await else {
        return;
    };
    match first {
        Message::Login(login) => serve_control(state, io, login).await,
        Message::NewWorkConn(NewWorkConn { run_id, .. }) => {
            assert_eq!(run_id, FAKE_RUN_ID, "work connection with a foreign run id");
            let _ = state.work.send(io);
        }
        other => panic!("unexpected first message {other:?}"),
    }
}

async fn serve_control(state: Arc<FakeState>, mut io: BoxIo, login: Login) {
    let pool = login.pool_count;
    let login_error = state.script.lock().unwrap().login_errors.pop_front();
    let _ = state.events.send(Event::Login(Box::new(login)));
    let resp = match login_error {
        Some(error) => LoginResp {
            version: "0.61.1".into(),
            error,
            ..LoginResp::default()
        },
        None => LoginResp {
            version: "0.61.1".into(),
            run_id: FAKE_RUN_ID.into(),
            ..LoginResp::default()
        },
    };
    let refused = !resp.error.is_empty();
    io.write_all(&codec::encode(&Message::LoginResp(resp)))
        .await
        .unwrap();
    if refused {
        let _ = io.shutdown().await;
        tokio::time::sleep(WAIT).await;
        return;
    }
    let key = AesKey::from_token("");
    let mut enc = Encryptor::with_random_iv(&key).unwrap();
    let mut dec = Decryptor::new(&key);
    let (inject_tx, mut inject) = mpsc::unbounded_channel();
    *state.control.lock().unwrap() = Some(inject_tx);
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut send = |msg: &[u8], wr_buf: &mut BytesMut| enc.encrypt(msg, wr_buf);
    let mut out = BytesMut::new();
    for _ in 0..pool {
        send(
            &codec::encode(&Message::ReqWorkConn(ReqWorkConn {})),
            &mut out,
        );
    }
    wr.write_all(&out).await.unwrap();
    let mut plain = BytesMut::new();
    let mut decoder = Decoder::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        let mut out = BytesMut::new();
        tokio::select! {
            n = rd.read(&mut chunk) => {
                let n = match n { Ok(0) | Err(_) => return, Ok(n) => n };
                dec.decrypt(&chunk[..n], &mut plain);
                while let Some(msg) = decoder.decode(&mut plain).expect("bad control frame") {
                    match msg {
                        Message::NewProxy(p) => {
                            let error = state.script.lock().unwrap().proxy_errors.pop_front();
                            let resp = NewProxyResp {
                                proxy_name: p.proxy_name.clone(),
                                remote_addr: if error.is_none() { format!(":{}", p.remote_port) } else { String::new() },
                                error: error.unwrap_or_default(),
                            };
                            let _ = state.events.send(Event::NewProxy(Box::new(p)));
                            send(&codec::encode(&Message::NewProxyResp(resp)), &mut out);
                        }
                        Message::Ping(ping) => {
                            let _ = state.events.send(Event::Ping(ping));
                            let error = state.script.lock().unwrap().pong_error.clone().unwrap_or_default();
                            send(&codec::encode(&Message::Pong(Pong { error })), &mut out);
                        }
                        other => panic!("unexpected control message {other:?}"),
                    }
                }
            }
            Some(what) = inject.recv() => match what {
                Inject::Msg(msg) => send(&codec::encode(&msg), &mut out),
                Inject::Plain(bytes) => send(&bytes, &mut out),
            },
        }
        if !out.is_empty() && wr.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn fake_tls(certs: &Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let frp = certs.join("frp");
    let read_certs = |name: &str| {
        let pem = std::fs::read(frp.join(name)).unwrap();
        rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    let key_pem = std::fs::read(frp.join("server.key")).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key_pem).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for ca in read_certs("ca.crt") {
        roots.add(ca).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs("server.crt"), key)
        .unwrap();
    Arc::new(config)
}

// ---------------------------------------------------------------------------------------------
// Against the fake server
// ---------------------------------------------------------------------------------------------

/// The bytes frpc 0.61.1 starts a plain session with (spec §7.5, §12.3, §12.6).
#[tokio::test]
async fn first_bytes_are_frpcs() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _client = start_client(&plain_config(addr, ""));
    let (mut tcp, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let mut open = [0u8; 12];
    tcp.read_exact(&mut open).await.unwrap();
    // yamux WindowUpdate SYN on stream 1 with frp's window delta 6029312.
    assert_eq!(hex(&open), "0001000100000001005c0000");
    let mut data = [0u8; 12];
    tcp.read_exact(&mut data).await.unwrap();
    assert_eq!(
        hex(&data[..8]),
        "0000000000000001",
        "Data frame on stream 1"
    );
    let len = u32::from_be_bytes(data[8..].try_into().unwrap()) as usize;
    let mut frame = vec![0u8; len];
    tcp.read_exact(&mut frame).await.unwrap();
    let Message::Login(login) = read_frame(&mut &frame[..]).await.unwrap() else {
        panic!("first message is not Login");
    };
    assert_eq!(login.version, "0.61.1");
    assert_eq!(login.os, "linux");
    assert!(
        ["amd64", "arm64"].contains(&login.arch.as_str()),
        "{}",
        login.arch
    );
    assert_eq!(login.hostname, "");
    assert_eq!(login.pool_count, 1);
    assert_eq!(login.run_id, "");
    assert_eq!(login.metas.get("token").map(String::as_str), Some(KEY));
    assert!((login.timestamp - now()).abs() < 60);
    // frp token "" (HaRP): the privilege key is md5 of the timestamp alone.
    assert_eq!(
        login.privilege_key,
        crypto::privilege_key("", login.timestamp)
    );
    // The body is exactly what Go would write for these values (field order, client_spec).
    let expected = codec::encode(&Message::Login(login.clone()));
    assert_eq!(frame, expected);
    assert!(String::from_utf8_lossy(&frame).contains(r#""client_spec":{},"pool_count":1}"#));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn plain_login_proxy_and_http_to_a_tcp_backend() {
    let mut fake = Fake::start(true, None).await;
    let echo = EchoBackend::start().await;
    let mut client = start_client(&plain_config(
        fake.addr,
        &tcp_proxy("web", 24000, echo.addr()),
    ));
    assert_eq!(fake.event().await.first_byte(), 0x00, "yamux, no TLS");
    fake.login().await;
    let proxy = fake.new_proxy().await;
    assert_eq!(
        codec::encode(&Message::NewProxy(proxy)),
        codec::encode(&Message::NewProxy(NewProxy {
            proxy_name: "web".into(),
            proxy_type: "tcp".into(),
            remote_port: 24000,
            ..NewProxy::default()
        })),
        "exactly frpc's NewProxy"
    );
    client.wait_running("web").await;
    assert_eq!(client.status.borrow().run_id, FAKE_RUN_ID);
    for path in ["/one", "/two"] {
        let mut user = fake.user_conn("web").await;
        let resp = http_over(&mut user, path).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.contains(&format!("\"path\":\"{path}\"")), "{resp}");
    }
    assert_eq!(echo.count(), 2);
}

impl Event {
    fn first_byte(self) -> u8 {
        match self {
            Event::FirstByte(b) => b,
            other => panic!("expected the first byte, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn http_to_a_unix_socket_backend() {
    let mut fake = Fake::start(true, None).await;
    let app = unix_http();
    let mut client = start_client(&plain_config(
        fake.addr,
        &unix_proxy("exapp", 23001, &app.path),
    ));
    fake.login().await;
    assert_eq!(fake.new_proxy().await.remote_port, 23001);
    client.wait_running("exapp").await;
    let mut user = fake.user_conn("exapp").await;
    let resp = http_over(&mut user, "/index.php").await;
    assert!(resp.ends_with("unix:GET /index.php HTTP/1.1"), "{resp}");
}

/// A local service that stops reading must not stall the client's other streams: tokio-yamux
/// stops reading the connection while one stream's frame queue is full.
#[tokio::test]
async fn a_stalled_local_service_does_not_stall_the_session() {
    let mut fake = Fake::start(true, None).await;
    let echo = EchoBackend::start().await;
    // Accepts and never reads: only the unix socket buffer (~200 KiB) takes bytes.
    let dir = TempDir::new("client-stalled");
    let stalled_path = dir.join("stalled.sock");
    let stalled = UnixListener::bind(&stalled_path).unwrap();
    let _holder = AbortOnDrop(tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = stalled.accept().await {
            held.push(conn);
        }
    }));
    let mut client = start_client(&plain_config(
        fake.addr,
        &format!(
            "{}{}",
            unix_proxy("stalled", 24001, &stalled_path),
            tcp_proxy("web", 24002, echo.addr())
        ),
    ));
    client.wait_running("stalled").await;
    client.wait_running("web").await;
    let mut slow = fake.user_conn("stalled").await;
    // 4 MiB in 16 KiB frames: far more than the stream's 8-frame queue, within its window.
    let writer = tokio::spawn(async move {
        let chunk = vec![1u8; 16 * 1024];
        for _ in 0..256 {
            if slow.write_all(&chunk).await.is_err() {
                break;
            }
        }
        slow
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut user = fake.user_conn("web").await;
    assert!(http_over(&mut user, "/still-alive")
        .await
        .contains("/still-alive"));
    writer.abort();
}

#[tokio::test]
async fn a_work_connection_for_an_unknown_proxy_is_closed() {
    let mut fake = Fake::start(true, None).await;
    let echo = EchoBackend::start().await;
    let mut client = start_client(&plain_config(
        fake.addr,
        &tcp_proxy("web", 24000, echo.addr()),
    ));
    client.wait_running("web").await;
    let mut user = fake.user_conn("someone-else").await;
    let mut buf = Vec::new();
    let n = timeout(WAIT, user.read_to_end(&mut buf)).await.unwrap();
    assert!(n.is_err() || buf.is_empty());
    assert_eq!(echo.count(), 0);
}

#[tokio::test]
async fn mutual_tls_with_the_generated_certificates() {
    let certs = generated_certs();
    let mut fake = Fake::start(true, Some(fake_tls(certs.path()))).await;
    let app = unix_http();
    let mut client = start_client(&tls_config(
        fake.addr,
        certs.path(),
        &unix_proxy("app", 23002, &app.path),
    ));
    // frpc 0.61.1 default: a standard ClientHello, no 0x17 head byte.
    assert_eq!(fake.event().await.first_byte(), 0x16);
    match fake.event().await {
        Event::ClientCert(cn) => assert_eq!(cn.as_deref(), Some("harp.client.nc")),
        other => panic!("{other:?}"),
    }
    fake.login().await;
    client.wait_running("app").await;
    let mut user = fake.user_conn("app").await;
    let resp = http_over(&mut user, "/tls").await;
    assert!(resp.ends_with("unix:GET /tls HTTP/1.1"), "{resp}");
}

#[tokio::test]
async fn custom_tls_head_byte_when_configured() {
    let certs = generated_certs();
    let mut fake = Fake::start(true, Some(fake_tls(certs.path()))).await;
    let mut client = start_client(&tls_config(
        fake.addr,
        certs.path(),
        "transport.tls.disableCustomTLSFirstByte = false\n",
    ));
    assert_eq!(fake.event().await.first_byte(), 0x17);
    fake.login().await;
    client.wait_for("logged in", WAIT, |s| s.logged_in).await;
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_fails_the_login() {
    let certs = generated_certs();
    let other = generated_certs();
    let fake = Fake::start(true, Some(fake_tls(other.path()))).await;
    let client = start_client(&tls_config(fake.addr, certs.path(), ""));
    let err = client.finished(WAIT).await.unwrap_err();
    assert!(
        err.starts_with("login to the server failed: TLS handshake with"),
        "{err}"
    );
    assert!(err.ends_with(". With loginFailExit enabled, no additional retries will be attempted"));
}

#[tokio::test]
async fn a_refused_login_exits_with_login_fail_exit() {
    let mut fake = Fake::start(true, None).await;
    fake.script().login_errors.push_back("banned".into());
    let client = start_client(&plain_config(fake.addr, ""));
    fake.login().await;
    let err = client.finished(WAIT).await.unwrap_err();
    assert_eq!(
        err,
        "login to the server failed: banned. With loginFailExit enabled, no additional \
         retries will be attempted"
    );
}

#[tokio::test]
async fn a_refused_login_is_retried_without_login_fail_exit() {
    let mut fake = Fake::start(true, None).await;
    fake.script()
        .login_errors
        .push_back("send Login request to plugin error".into());
    let mut client = start_client(&plain_config(fake.addr, "loginFailExit = false\n"));
    let first = fake.login().await;
    let started = Instant::now();
    let second = fake.login().await;
    // frpc's first retry comes after ~2 s (+ up to 10 % jitter).
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    assert_eq!((first.run_id.as_str(), second.run_id.as_str()), ("", ""));
    client
        .wait_for("logged in", WAIT, |s| s.logged_in && s.login_failures == 1)
        .await;
}

#[tokio::test]
async fn a_lost_session_is_rebuilt_with_the_same_run_id() {
    let mut fake = Fake::start(true, None).await;
    let echo = EchoBackend::start().await;
    let mut client = start_client(&plain_config(
        fake.addr,
        &format!(
            "loginFailExit = true\n{}",
            tcp_proxy("web", 24000, echo.addr())
        ),
    ));
    assert_eq!(fake.login().await.run_id, "");
    client.wait_running("web").await;
    // Drain the first session's pooled work stream: it dies with the session.
    let _ = timeout(WAIT, fake.work.recv()).await.unwrap();
    fake.drop_sessions();
    // loginFailExit only concerns the first login: the client comes back at once.
    let relogin = timeout(Duration::from_secs(3), fake.login())
        .await
        .expect("no re-login within 3 s");
    assert_eq!(
        relogin.run_id, FAKE_RUN_ID,
        "re-login names the old session"
    );
    fake.new_proxy().await;
    client
        .wait_for("second login", WAIT, |s| s.logins == 2)
        .await;
    client.wait_running("web").await;
    let mut user = fake.user_conn("web").await;
    assert!(http_over(&mut user, "/again").await.contains("/again"));
}

#[tokio::test]
async fn a_bad_frame_on_the_control_stream_ends_the_session() {
    let mut fake = Fake::start(true, None).await;
    let mut client = start_client(&plain_config(fake.addr, "loginFailExit = false\n"));
    fake.login().await;
    client.wait_for("logged in", WAIT, |s| s.logged_in).await;
    // Decrypts to an unknown message type: frpc drops the session and logs in again.
    fake.inject(Inject::Plain(b"z00000000{}".to_vec()));
    assert_eq!(fake.login().await.run_id, FAKE_RUN_ID);
    client.wait_for("re-login", WAIT, |s| s.logins == 2).await;
}

#[tokio::test]
async fn a_refused_proxy_is_reported() {
    let mut fake = Fake::start(true, None).await;
    fake.script()
        .proxy_errors
        .push_back("port already used".into());
    let mut client = start_client(&plain_config(
        fake.addr,
        &tcp_proxy("web", 24000, "127.0.0.1:9".parse().unwrap()),
    ));
    fake.new_proxy().await;
    client
        .wait_for("proxy refused", WAIT, |s| {
            s.proxies.get("web")
                == Some(&ProxyStatus::Failed {
                    error: "port already used".into(),
                })
        })
        .await;
}

#[tokio::test]
async fn without_tcp_mux_every_connection_is_its_own_and_heartbeats_run() {
    let mut fake = Fake::start(false, None).await;
    let echo = EchoBackend::start().await;
    let mut client = start_client(&plain_config(
        fake.addr,
        &format!(
            "transport.tcpMux = false\ntransport.heartbeatInterval = 1\n{}",
            tcp_proxy("web", 24000, echo.addr())
        ),
    ));
    // No yamux: the first byte is the Login frame's type.
    assert_eq!(fake.event().await.first_byte(), b'o');
    client.wait_running("web").await;
    let mut user = fake.user_conn("web").await;
    assert!(http_over(&mut user, "/direct").await.contains("/direct"));
    let deadline = Instant::now() + WAIT;
    loop {
        if let Event::Ping(ping) = fake.event().await {
            assert_eq!(ping.privilege_key, "", "no HeartBeats scope");
            break;
        }
        assert!(Instant::now() < deadline);
    }
    // A Pong with an error ends the session (then the client logs in again).
    fake.script().pong_error = Some("invalid ping".into());
    client.wait_for("re-login", WAIT, |s| s.logins >= 2).await;
}

// ---------------------------------------------------------------------------------------------
// End to end against harp's tunnel server
// ---------------------------------------------------------------------------------------------

/// harp with TLS off, or on with `certs` as `$HP_CERTS_DIR`.
fn harp(certs: Option<&Path>, extra: &[(&str, &str)]) -> Harp {
    let dir = certs.map(|c| c.display().to_string());
    let mut env: Vec<(&str, &str)> = match &dir {
        Some(d) => vec![("HP_CERTS_DIR", d.as_str())],
        None => vec![("HP_FRP_DISABLE_TLS", "true")],
    };
    env.extend_from_slice(extra);
    let harp = Harp::start(&env);
    // The harness waits for the HTTP listener; the tunnel listener may come a moment later.
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(harp.frp_addr()).is_err() {
        assert!(Instant::now() < deadline, "tunnel listener not up");
        std::thread::sleep(Duration::from_millis(20));
    }
    harp
}

/// GET through harp's loopback listener of a tunnel port, once that listens.
async fn get_through(port: u16, path: &str) -> RawOutcome {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(local(port)).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    get(local(port), path, &[]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_plain_http_backend_through_harp() {
    const PORT: u16 = 24093;
    let harp = harp(None, &[]);
    let echo = EchoBackend::start().await;
    let mut client = start_client(&plain_config(
        harp.frp_addr(),
        &tcp_proxy("e2e-plain", PORT, echo.addr()),
    ));
    client.wait_running("e2e-plain").await;
    for i in 0..3 {
        let path = format!("/plain/{i}");
        let out = get_through(PORT, &path).await;
        assert_eq!(out.status(), 200, "{out:?}");
        assert_eq!(out.json()["path"], path);
    }
    assert_eq!(echo.count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_without_tcp_mux() {
    const PORT: u16 = 24097;
    let harp = harp(None, &[]);
    let echo = EchoBackend::start().await;
    let mut client = start_client(&plain_config(
        harp.frp_addr(),
        &format!(
            "transport.tcpMux = false\n{}",
            tcp_proxy("e2e-direct", PORT, echo.addr())
        ),
    ));
    client.wait_running("e2e-direct").await;
    for i in 0..2 {
        let path = format!("/direct/{i}");
        let out = get_through(PORT, &path).await;
        assert_eq!(out.status(), 200, "{out:?}");
        assert_eq!(out.json()["path"], path);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_mutual_tls_to_a_unix_socket_with_generated_certificates() {
    const PORT: u16 = 24094;
    let certs = generated_certs();
    let harp = harp(Some(certs.path()), &[]);
    let app = unix_http();
    let mut client = start_client(&tls_config(
        harp.frp_addr(),
        certs.path(),
        &unix_proxy("e2e-tls", PORT, &app.path),
    ));
    client.wait_running("e2e-tls").await;
    let out = get_through(PORT, "/docker/version").await;
    assert_eq!(out.status(), 200, "{out:?}");
    assert_eq!(out.body_str(), "unix:GET /docker/version HTTP/1.1");
}

/// Issue 10 (6): with `HP_FRP_DISABLE_TLS=true` frps still accepts clients that speak TLS
/// (frpc's default) with a certificate it makes up; before the fix harp refused them ("no
/// usable certificate") unless `server.crt` existed. `harp tunnel` behaves like frpc here: TLS
/// on by default, and without `trustedCaFile` it takes any server certificate.
#[tokio::test(flavor = "multi_thread")]
async fn e2e_frpc_defaults_speak_tls_to_a_server_without_forced_tls() {
    const PORT: u16 = 24092;
    let harp = harp(None, &[]);
    let echo = EchoBackend::start().await;
    let mut client = start_client(&format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {}\nmetadatas.token = \"{KEY}\"\n{}",
        harp.frp_addr().port(),
        tcp_proxy("e2e-tls-default", PORT, echo.addr())
    ));
    client.wait_running("e2e-tls-default").await;
    let out = get_through(PORT, "/tls-default").await;
    assert_eq!(out.status(), 200, "{out:?}");
    assert_eq!(out.json()["path"], "/tls-default");
    assert!(
        harp.log().contains("self-signed certificate made at start"),
        "{}",
        harp.log()
    );
    assert!(
        !harp.certs_dir().join("frp").exists(),
        "nothing is written with TLS off"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_tls_without_a_client_certificate_is_refused() {
    let certs = generated_certs();
    let harp = harp(Some(certs.path()), &[]);
    let frp = certs.path().join("frp");
    let client = start_client(&format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {}\ntransport.tls.trustedCaFile = \"{}\"\n\
         transport.tls.serverName = \"harp.nc\"\nmetadatas.token = \"{KEY}\"\n",
        harp.frp_addr().port(),
        frp.join("ca.crt").display()
    ));
    let err = client.finished(WAIT).await.unwrap_err();
    assert!(err.starts_with("login to the server failed: "), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_wrong_shared_key_is_refused_like_frpc() {
    let harp = harp(None, &[]);
    let config = plain_config(harp.frp_addr(), "").replace(KEY, "not-the-key");
    let err = start_client(&config).finished(WAIT).await.unwrap_err();
    assert_eq!(
        err,
        "login to the server failed: send Login request to plugin error. With loginFailExit \
         enabled, no additional retries will be attempted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_reconnects_after_harp_restarts() {
    const PORT: u16 = 24095;
    let frp = format!("127.0.0.1:{}", free_port());
    let env = [("HP_FRP_ADDRESS", frp.as_str())];
    let mut first = harp(None, &env);
    let echo = EchoBackend::start().await;
    let mut client = start_client(&plain_config(
        first.frp_addr(),
        &format!(
            "loginFailExit = false\n{}",
            tcp_proxy("e2e-restart", PORT, echo.addr())
        ),
    ));
    client.wait_running("e2e-restart").await;
    assert_eq!(get_through(PORT, "/before").await.status(), 200);
    first.kill();
    drop(first);
    client
        .wait_for("session lost", WAIT, |s| !s.logged_in)
        .await;
    let _second = harp(None, &env);
    // Re-login retries back off 2 s, 4 s, 8 s, …: allow for a few.
    client
        .wait_for("logged in again", Duration::from_secs(30), |s| {
            s.logins >= 2
                && matches!(
                    s.proxies.get("e2e-restart"),
                    Some(ProxyStatus::Running { .. })
                )
        })
        .await;
    let out = get_through(PORT, "/after").await;
    assert_eq!(out.status(), 200, "{out:?}");
    assert_eq!(out.json()["path"], "/after");
}

// ---------------------------------------------------------------------------------------------
// The `harp tunnel` command line
// ---------------------------------------------------------------------------------------------

fn harp_tunnel(config: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_harp"));
    cmd.args(["tunnel", "-c"])
        .arg(config)
        .env_clear()
        .stdin(std::process::Stdio::null());
    cmd
}

/// Kills the child on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_runs_harps_docker_socket_config() {
    const PORT: u16 = 24096;
    let certs = generated_certs();
    let harp = harp(Some(certs.path()), &[]);
    let app = unix_http();
    let dir = TempDir::new("cli");
    let file = dir.join("frpc-docker.toml");
    std::fs::write(
        &file,
        tls_config(
            harp.frp_addr(),
            certs.path(),
            &unix_proxy("bundled-deploy-daemon", PORT, &app.path),
        ),
    )
    .unwrap();
    let _tunnel = Child(
        harp_tunnel(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = get_through(PORT, "/_ping").await;
    assert_eq!(out.status(), 200, "{out:?}");
    assert_eq!(out.body_str(), "unix:GET /_ping HTTP/1.1");
}

#[test]
fn cli_exits_1_when_the_first_login_fails() {
    let dir = TempDir::new("cli-fail");
    let file = dir.join("frpc.toml");
    let port = free_port(); // nothing listens there
    std::fs::write(
        &file,
        format!("serverAddr = \"127.0.0.1\"\nserverPort = {port}\ntransport.tls.enable = false\n"),
    )
    .unwrap();
    let out = harp_tunnel(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("login to the server failed: cannot connect to 127.0.0.1:")
            && stderr.contains("With loginFailExit enabled"),
        "{stderr}"
    );
}

#[test]
fn cli_rejects_a_bad_config() {
    let dir = TempDir::new("cli-bad");
    let file = dir.join("frpc.toml");
    std::fs::write(&file, "[[proxies]]\nname = \"x\"\ntype = \"http\"\n").unwrap();
    let out = harp_tunnel(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("type \"http\" is not supported"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_harp"))
        .arg("tunnel")
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Issue 11 (3): one address holding more idle connections than the tunnel's global cap
/// (2,048) must not lock frpc out. Before the per-address cap the idle ones took every slot
/// until their 10 s first-byte timeout, and each refusal wrote a WARN line.
#[tokio::test(flavor = "multi_thread")]
async fn e2e_idle_connections_from_one_address_do_not_lock_out_frpc() {
    const PORT: u16 = 24091;
    let harp = harp(None, &[]);
    let mut idle = Vec::new();
    for _ in 0..2100 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        if let Ok(conn) = socket.connect(harp.frp_addr()).await {
            idle.push(conn);
        }
    }
    assert!(idle.len() > 2048, "the flood connected: {}", idle.len());
    let echo = EchoBackend::start().await;
    let mut client = start_client(&format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {}\nmetadatas.token = \"{KEY}\"\n\
         transport.tls.enable = false\n{}",
        harp.frp_addr().port(),
        tcp_proxy("flooded", PORT, echo.addr())
    ));
    client
        .wait_for(
            "logged in while the flood holds",
            Duration::from_secs(3),
            |s| matches!(s.proxies.get("flooded"), Some(ProxyStatus::Running { .. })),
        )
        .await;
    let out = get_through(PORT, "/through-the-flood").await;
    assert_eq!(out.status(), 200, "{out:?}");
    let log = harp.log();
    let refusal_lines = log.matches("have not logged in yet").count();
    assert!(
        (1..=2).contains(&refusal_lines),
        "refusals are logged at a bounded rate: {refusal_lines} lines\n{log}"
    );
    drop(idle);
}
