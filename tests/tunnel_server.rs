//! Black-box tests of the FRP-compatible tunnel server (spec `frp-protocol.md` §2-§9,
//! harp-behaviour §5.3, §10, Q10) against a real harp process.
//!
//! Until `harp tunnel` exists, the client is [`Frpc`] below: a minimal frpc built from the
//! crate's protocol layer (`harp::tunnel::{codec, msg, crypto}`) and tokio-yamux, configured
//! like HaRP's clients (tcpMux, pool_count 1, empty frp token, shared key in `metas.token`,
//! TLS with `serverName = "harp.nc"` and a client certificate when TLS is on).
//!
//! Tests run in parallel and every registered proxy listens on the one host's loopback, so each
//! test uses its own remote ports (see the constants in each test).

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::harp::tunnel::codec::{self, Decoder, HEADER_LEN};
use ::harp::tunnel::crypto::{self, AesKey, Decryptor, Encryptor};
use ::harp::tunnel::msg::{
    CloseProxy, Login, Message, MessageType, NewProxy, NewProxyResp, NewWorkConn, Ping,
};
use bytes::BytesMut;
use common::*;
use futures_util::StreamExt;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_yamux::{Config as YamuxConfig, Session};

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Test frpc
// ---------------------------------------------------------------------------------------------

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How the test client connects and logs in.
#[derive(Clone)]
struct ClientOpts {
    server: SocketAddr,
    /// `None` = plain TCP.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Write frp's 0x17 byte before the TLS handshake (`disableCustomTLSFirstByte = false`).
    custom_tls_byte: bool,
    /// Source address (strikes and bans are per client IP).
    source: Option<IpAddr>,
    /// `metas.token`; `None` sends no metas at all.
    key: Option<String>,
    /// Replaces the correct privilege key.
    privilege_key: Option<String>,
    run_id: String,
    /// Where work connections are forwarded (the client's "unix socket" service).
    backend: Option<SocketAddr>,
}

impl ClientOpts {
    fn new(server: SocketAddr) -> ClientOpts {
        ClientOpts {
            server,
            tls: None,
            custom_tls_byte: false,
            source: None,
            key: Some(KEY.to_string()),
            privilege_key: None,
            run_id: String::new(),
            backend: None,
        }
    }
}

/// frp's yamux settings (spec §3.3).
fn frp_yamux() -> YamuxConfig {
    YamuxConfig {
        max_stream_window_size: 6 * 1024 * 1024,
        ..YamuxConfig::default()
    }
}

async fn dial(opts: &ClientOpts) -> std::io::Result<Box<dyn Io>> {
    let socket = match opts.server {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = opts.source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let mut tcp = timeout(WAIT, socket.connect(opts.server)).await??;
    let Some(tls) = &opts.tls else {
        return Ok(Box::new(tcp));
    };
    if opts.custom_tls_byte {
        tcp.write_all(&[0x17]).await?;
    }
    let name = ServerName::try_from("harp.nc").unwrap();
    let stream = timeout(
        WAIT,
        tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp),
    )
    .await??;
    Ok(Box::new(stream))
}

/// Reads exactly one plain frame (no read-ahead, like Go).
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Message> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header).await?;
    let len = i64::from_be_bytes(header[1..].try_into().unwrap());
    assert!(
        (0..=10240).contains(&len),
        "server sent a frame of {len} bytes"
    );
    let mut frame = BytesMut::from(&header[..]);
    frame.resize(HEADER_LEN + len as usize, 0);
    r.read_exact(&mut frame[HEADER_LEN..]).await?;
    Decoder::new()
        .decode(&mut frame)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?
        .ok_or_else(|| std::io::ErrorKind::UnexpectedEof.into())
}

/// A logged-in test client. Dropping it (or [`Frpc::kill`]) drops the connection without
/// CloseProxy or GoAway, like a killed frpc.
struct Frpc {
    run_id: String,
    to_server: mpsc::Sender<Message>,
    from_server: mpsc::Receiver<Message>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Frpc {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Frpc {
    /// Connects and logs in; `Err` carries the LoginResp error, or what failed before it.
    async fn login(opts: &ClientOpts) -> Result<Frpc, String> {
        let io = dial(opts).await.map_err(|e| format!("dial: {e}"))?;
        let mut session = Session::new_client(io, frp_yamux());
        let mut yamux = session.control();
        let driver = tokio::spawn(async move { while let Some(Ok(_)) = session.next().await {} });
        let mut tasks = vec![driver];
        let result = Frpc::login_on(opts, &mut yamux, &mut tasks).await;
        if result.is_err() {
            for t in &tasks {
                t.abort();
            }
        }
        result
    }

    async fn login_on(
        opts: &ClientOpts,
        yamux: &mut tokio_yamux::Control,
        tasks: &mut Vec<JoinHandle<()>>,
    ) -> Result<Frpc, String> {
        let mut ctl = yamux
            .open_stream()
            .await
            .map_err(|e| format!("open control stream: {e:?}"))?;
        let timestamp = 1_700_000_000;
        let mut metas = BTreeMap::new();
        if let Some(key) = &opts.key {
            metas.insert("token".to_string(), key.clone());
        }
        let login = Login {
            version: "0.61.1".into(),
            os: "linux".into(),
            arch: "amd64".into(),
            privilege_key: opts
                .privilege_key
                .clone()
                .unwrap_or_else(|| crypto::privilege_key("", timestamp)),
            timestamp,
            run_id: opts.run_id.clone(),
            metas,
            pool_count: 1,
            ..Login::default()
        };
        ctl.write_all(&codec::encode(&Message::Login(login)))
            .await
            .map_err(|e| format!("write Login: {e}"))?;
        let resp = match timeout(WAIT, read_frame(&mut ctl)).await {
            Ok(Ok(Message::LoginResp(r))) => r,
            Ok(Ok(other)) => return Err(format!("unexpected {:?}", other.message_type())),
            Ok(Err(e)) => return Err(format!("read LoginResp: {e}")),
            Err(_) => return Err("no LoginResp within 10 s".into()),
        };
        if !resp.error.is_empty() {
            return Err(resp.error);
        }
        assert_eq!(resp.version, "0.61.1");
        assert_eq!(resp.run_id.len(), 16, "run_id {:?}", resp.run_id);
        let run_id = resp.run_id;

        let key = AesKey::from_token("");
        let (mut rd, mut wr) = tokio::io::split(ctl);
        let (to_server, mut outbox) = mpsc::channel::<Message>(16);
        let (inbox, from_server) = mpsc::channel::<Message>(64);
        tasks.push(tokio::spawn(async move {
            let mut enc = Encryptor::with_random_iv(&key).unwrap();
            while let Some(msg) = outbox.recv().await {
                let mut out = BytesMut::new();
                enc.encrypt(&codec::encode(&msg), &mut out);
                if wr.write_all(&out).await.is_err() {
                    return;
                }
            }
        }));
        let key = AesKey::from_token("");
        let work_yamux = yamux.clone();
        let work_run_id = run_id.clone();
        let backend = opts.backend;
        tasks.push(tokio::spawn(async move {
            let mut dec = Decryptor::new(&key);
            let mut plain = BytesMut::new();
            let mut decoder = Decoder::new();
            let mut chunk = vec![0u8; 4096];
            loop {
                while let Ok(Some(msg)) = decoder.decode(&mut plain) {
                    if let Message::ReqWorkConn(_) = msg {
                        tokio::spawn(work_conn(work_yamux.clone(), work_run_id.clone(), backend));
                    } else if inbox.send(msg).await.is_err() {
                        return;
                    }
                }
                match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => dec.decrypt(&chunk[..n], &mut plain),
                }
            }
        }));
        Ok(Frpc {
            run_id,
            to_server,
            from_server,
            tasks: std::mem::take(tasks),
        })
    }

    async fn send(&self, msg: Message) {
        self.to_server.send(msg).await.expect("control writer gone");
    }

    /// The next control message other than ReqWorkConn.
    async fn recv(&mut self) -> Option<Message> {
        timeout(WAIT, self.from_server.recv())
            .await
            .expect("no control message within 10 s")
    }

    /// Registers a proxy and returns the server's answer.
    async fn new_proxy(&mut self, name: &str, proxy_type: &str, port: i64) -> NewProxyResp {
        self.send(Message::NewProxy(NewProxy {
            proxy_name: name.into(),
            proxy_type: proxy_type.into(),
            remote_port: port,
            ..NewProxy::default()
        }))
        .await;
        match self.recv().await {
            Some(Message::NewProxyResp(r)) => {
                assert_eq!(r.proxy_name, name);
                r
            }
            other => panic!("expected NewProxyResp, got {other:?}"),
        }
    }

    /// Registers a tcp proxy that must succeed.
    async fn tcp_proxy(&mut self, name: &str, port: u16) {
        let resp = self.new_proxy(name, "tcp", port.into()).await;
        assert_eq!(resp.error, "", "NewProxy {name}:{port} refused");
        assert_eq!(resp.remote_addr, format!(":{port}"));
    }

    /// Drops the connection at once (no CloseProxy, no GoAway), like a killed frpc.
    fn kill(self) {}
}

/// Every StartWorkConn the test clients got: (proxy port, the user's address as frps reports it).
static STARTS: std::sync::Mutex<Vec<(u16, String)>> = std::sync::Mutex::new(Vec::new());

fn start_sources(port: u16) -> Vec<String> {
    STARTS
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| *p == port)
        .map(|(_, s)| s.clone())
        .collect()
}

/// One work connection: NewWorkConn, wait for StartWorkConn, then join with the backend.
async fn work_conn(mut yamux: tokio_yamux::Control, run_id: String, backend: Option<SocketAddr>) {
    let Ok(mut stream) = yamux.open_stream().await else {
        return;
    };
    let hello = Message::NewWorkConn(NewWorkConn {
        run_id,
        ..NewWorkConn::default()
    });
    if stream.write_all(&codec::encode(&hello)).await.is_err() {
        return;
    }
    let Ok(Message::StartWorkConn(start)) = read_frame(&mut stream).await else {
        return;
    };
    assert!(start.error.is_empty());
    assert_eq!(start.dst_addr, "127.0.0.1");
    STARTS
        .lock()
        .unwrap()
        .push((start.dst_port, start.src_addr.clone()));
    let Some(backend) = backend else { return };
    let Ok(mut local) = TcpStream::connect(backend).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut stream, &mut local).await;
}

// ---------------------------------------------------------------------------------------------
// Certificates (HaRP's shape, §2.3: CA and server leaf share the subject CN=harp.nc)
// ---------------------------------------------------------------------------------------------

struct Certs {
    dir: TempDir,
    ca: CertificateDer<'static>,
    client_chain: Vec<CertificateDer<'static>>,
    client_key: PrivateKeyDer<'static>,
}

fn issue_ca(cn: &str) -> (rcgen::Certificate, rcgen::KeyPair, rcgen::CertificateParams) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert, key, params)
}

fn issue_leaf(
    cn: &str,
    ca_params: &rcgen::CertificateParams,
    ca_key: &rcgen::KeyPair,
) -> (rcgen::Certificate, rcgen::KeyPair) {
    let mut params = rcgen::CertificateParams::new(vec![cn.to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().unwrap();
    let issuer = rcgen::Issuer::from_params(ca_params, ca_key);
    (params.signed_by(&key, &issuer).unwrap(), key)
}

fn key_der(key: &rcgen::KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::try_from(key.serialize_der()).unwrap()
}

/// `<dir>/frp/{ca.crt,server.crt,server.key,client.crt,client.key}` as HaRP's start.sh makes
/// them (EC keys instead of RSA: rcgen with ring cannot generate RSA).
fn make_certs() -> Certs {
    let dir = TempDir::new("tunnel-certs");
    let frp = dir.join("frp");
    std::fs::create_dir_all(&frp).unwrap();
    let (ca, ca_key, ca_params) = issue_ca("harp.nc");
    let (server, server_key) = issue_leaf("harp.nc", &ca_params, &ca_key);
    let (client, client_key) = issue_leaf("harp.client.nc", &ca_params, &ca_key);
    let write = |name: &str, text: String| std::fs::write(frp.join(name), text).unwrap();
    write("ca.crt", ca.pem());
    write("server.crt", server.pem());
    write("server.key", server_key.serialize_pem());
    write("client.crt", client.pem());
    write("client.key", client_key.serialize_pem());
    Certs {
        ca: ca.der().clone(),
        client_chain: vec![client.der().clone()],
        client_key: key_der(&client_key),
        dir,
    }
}

fn tls_client(
    ca: &CertificateDer<'static>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

impl Certs {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn client(&self) -> Arc<rustls::ClientConfig> {
        tls_client(
            &self.ca,
            Some((self.client_chain.clone(), self.client_key.clone_key())),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// harp with TLS off (plain clients accepted).
fn plain_harp(extra: &[(&str, &str)]) -> Harp {
    let mut env = vec![("HP_FRP_DISABLE_TLS", "true")];
    env.extend_from_slice(extra);
    start(&env)
}

/// harp with TLS on, using `certs`.
fn tls_harp(certs: &Certs, extra: &[(&str, &str)]) -> Harp {
    let dir = certs.path().display().to_string();
    let mut env = vec![("HP_CERTS_DIR", dir.as_str())];
    env.extend_from_slice(extra);
    start(&env)
}

/// The harness waits for the HTTP listener; the tunnel service may start a moment later.
fn start(env: &[(&str, &str)]) -> Harp {
    let harp = Harp::start(env);
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(harp.frp_addr()).is_err() {
        assert!(Instant::now() < deadline, "tunnel listener not up");
        std::thread::sleep(Duration::from_millis(20));
    }
    harp
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Whether something listens on 127.0.0.1:`port`.
async fn listening(port: u16) -> bool {
    TcpStream::connect(loopback(port)).await.is_ok()
}

/// Waits until 127.0.0.1:`port` refuses connections; returns how long that took.
async fn wait_closed(port: u16, limit: Duration) -> Duration {
    let start = Instant::now();
    while listening(port).await {
        assert!(
            start.elapsed() < limit,
            "127.0.0.1:{port} still listening after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// An HTTP GET straight to a proxy's loopback port must reach the echo backend.
async fn assert_http_through(port: u16, echo: &EchoBackend, path: &str) {
    let before = echo.count();
    let out = get(loopback(port), path, &[]).await;
    assert_eq!(out.status(), 200, "{out:?}");
    assert_eq!(out.json()["path"], path);
    assert_eq!(echo.count(), before + 1);
}

// ---------------------------------------------------------------------------------------------
// Login and authentication (§6, §7.1, §9.2; harp-behaviour §5.3)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn login_with_shared_key_succeeds() {
    let harp = plain_harp(&[]);
    let client = Frpc::login(&ClientOpts::new(harp.frp_addr()))
        .await
        .unwrap();
    assert!(client.run_id.chars().all(|c| c.is_ascii_hexdigit()));
}

#[tokio::test(flavor = "multi_thread")]
async fn login_with_wrong_key_strikes_until_banned() {
    let harp = plain_harp(&[("HP_BLACKLIST_COUNT", "2")]);
    let ip: IpAddr = "127.0.0.61".parse().unwrap();
    let mut wrong = ClientOpts::new(harp.frp_addr());
    wrong.source = Some(ip);
    wrong.key = Some("not-the-key".into());
    for _ in 0..2 {
        let err = Frpc::login(&wrong).await.err().expect("wrong key accepted");
        assert_eq!(err, "send Login request to plugin error");
    }
    // Two strikes: banned, even with the right key (HaRP's plugin answers reject "banned").
    let mut right = wrong.clone();
    right.key = Some(KEY.into());
    let err = Frpc::login(&right).await.err().expect("banned IP accepted");
    assert_eq!(err, "banned");
    // The ban list is shared with the HTTP side: the gateway drops this IP too.
    let out = get_from(ip, harp.http_addr(), "/exapps/x/", &[]).await;
    assert!(out.is_silent_drop(), "{out:?}");
    // Another IP is unaffected.
    let mut other = right.clone();
    other.source = Some("127.0.0.62".parse().unwrap());
    Frpc::login(&other).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn login_without_metas_token_is_refused() {
    let harp = plain_harp(&[]);
    let mut opts = ClientOpts::new(harp.frp_addr());
    opts.key = None;
    let err = Frpc::login(&opts).await.err().unwrap();
    assert_eq!(err, "send Login request to plugin error");
}

#[tokio::test(flavor = "multi_thread")]
async fn login_with_wrong_privilege_key_is_refused_without_strike() {
    let harp = plain_harp(&[("HP_BLACKLIST_COUNT", "1")]);
    let mut opts = ClientOpts::new(harp.frp_addr());
    opts.source = Some("127.0.0.63".parse().unwrap());
    // What a client with `auth.token = "secret"` would send.
    opts.privilege_key = Some(crypto::privilege_key("secret", 1_700_000_000));
    let err = Frpc::login(&opts).await.err().unwrap();
    assert_eq!(err, "token in login doesn't match token from configuration");
    opts.privilege_key = None;
    Frpc::login(&opts)
        .await
        .expect("a privilege-key failure must not ban");
}

#[tokio::test(flavor = "multi_thread")]
async fn relogin_with_same_run_id_replaces_the_old_session() {
    const PORT: u16 = 24021;
    let harp = plain_harp(&[]);
    let echo = EchoBackend::start().await;
    let mut opts = ClientOpts::new(harp.frp_addr());
    opts.backend = Some(echo.addr());
    let mut first = Frpc::login(&opts).await.unwrap();
    first.tcp_proxy("relogin", PORT).await;
    // frpc reconnecting after a network blip: same run_id, new connection; the old session is
    // torn down (port released) before the new LoginResp.
    opts.run_id = first.run_id.clone();
    let mut second = Frpc::login(&opts).await.unwrap();
    assert_eq!(second.run_id, first.run_id);
    second.tcp_proxy("relogin", PORT).await;
    assert_http_through(PORT, &echo, "/after-relogin").await;
    drop(first);
}

// ---------------------------------------------------------------------------------------------
// Transport: TLS detection and mutual TLS (§2)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn tls_mutual_login_and_proxy_work() {
    const PORT: u16 = 24012;
    let certs = make_certs();
    let harp = tls_harp(&certs, &[]);
    let echo = EchoBackend::start().await;
    let mut opts = ClientOpts::new(harp.frp_addr());
    opts.tls = Some(certs.client());
    opts.backend = Some(echo.addr());
    let mut client = Frpc::login(&opts).await.unwrap();
    client.tcp_proxy("tls-daemon", PORT).await;
    assert_http_through(PORT, &echo, "/_ping").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_custom_first_byte_is_accepted() {
    const PORT: u16 = 24013;
    let certs = make_certs();
    let harp = tls_harp(&certs, &[]);
    let echo = EchoBackend::start().await;
    let mut opts = ClientOpts::new(harp.frp_addr());
    opts.tls = Some(certs.client());
    opts.custom_tls_byte = true;
    opts.backend = Some(echo.addr());
    let mut client = Frpc::login(&opts).await.unwrap();
    client.tcp_proxy("tls17", PORT).await;
    assert_http_through(PORT, &echo, "/via-0x17").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_on_refuses_plain_clients_silently() {
    let certs = make_certs();
    let harp = tls_harp(&certs, &[]);
    let err = Frpc::login(&ClientOpts::new(harp.frp_addr()))
        .await
        .err()
        .expect("plain client accepted while TLS is on");
    assert!(!err.contains("LoginResp error"), "{err}");
    // Nothing is sent back: the raw connection just closes.
    let mut tcp = TcpStream::connect(harp.frp_addr()).await.unwrap();
    tcp.write_all(&[0, 1, 0, 1, 0, 0, 0, 1, 0, 0x5c, 0, 0])
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = timeout(WAIT, tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "server answered a plain client: {:?}", &buf[..n]);
    assert!(harp
        .log()
        .contains("non-TLS connection received on a TLS-only server"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_client_without_certificate_is_refused() {
    let certs = make_certs();
    let harp = tls_harp(&certs, &[]);
    let mut opts = ClientOpts::new(harp.frp_addr());
    opts.tls = Some(tls_client(&certs.ca, None));
    let err = Frpc::login(&opts)
        .await
        .err()
        .expect("client without a certificate accepted");
    // With TLS 1.3 the client may finish its side of the handshake before the server's alert
    // arrives, so the failure shows up at dial, write or read time; never as a LoginResp.
    assert!(!err.contains("plugin") && !err.contains("token"), "{err}");
    assert_refused_at_tls(&harp).await;
}

/// harp logged a failed TLS handshake (the refusal happened in TLS, before any frp message).
async fn assert_refused_at_tls(harp: &Harp) {
    let deadline = Instant::now() + WAIT;
    while !harp.log().contains("TLS handshake failed") {
        assert!(Instant::now() < deadline, "no TLS refusal logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_client_certificate_from_another_ca_is_refused() {
    let certs = make_certs();
    let harp = tls_harp(&certs, &[]);
    let (_, rogue_ca_key, rogue_ca_params) = issue_ca("harp.nc");
    let (rogue, rogue_key) = issue_leaf("harp.client.nc", &rogue_ca_params, &rogue_ca_key);
    let mut opts = ClientOpts::new(harp.frp_addr());
    opts.tls = Some(tls_client(
        &certs.ca,
        Some((vec![rogue.der().clone()], key_der(&rogue_key))),
    ));
    assert!(Frpc::login(&opts).await.is_err());
    assert_refused_at_tls(&harp).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_off_still_accepts_tls_clients_when_a_certificate_exists() {
    let certs = make_certs();
    let harp = tls_harp(&certs, &[("HP_FRP_DISABLE_TLS", "true")]);
    let mut opts = ClientOpts::new(harp.frp_addr());
    opts.tls = Some(tls_client(&certs.ca, None));
    Frpc::login(&opts)
        .await
        .expect("TLS client refused in TLS-optional mode");
    Frpc::login(&ClientOpts::new(harp.frp_addr()))
        .await
        .expect("plain client refused in TLS-optional mode");
}

/// `harp_bruteforce_strikes_total` from the ops listener.
async fn strikes(harp: &Harp) -> f64 {
    let out = get(harp.ops_addr(), "/metrics", &[]).await;
    out.body_str()
        .lines()
        .find_map(|l| l.strip_prefix("harp_bruteforce_strikes_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("no harp_bruteforce_strikes_total in /metrics")
}

/// Issue 10 (3): host-network ExApps share their IP with users; bad user requests ban it, and
/// before the fix the ban also refused the ExApps' tunnel logins ("banned"). A login with the
/// shared key and a client certificate from harp's CA is never refused by a ban (Q1 applied to
/// the tunnel) and is no strike; without the key it is still "banned".
#[tokio::test(flavor = "multi_thread")]
async fn q1_ban_never_refuses_a_tunnel_login_with_the_key_and_a_client_certificate() {
    const PORT: u16 = 24044;
    let certs = make_certs();
    let harp = tls_harp(&certs, &[("HP_BLACKLIST_COUNT", "3")]);
    let ip: IpAddr = "127.0.0.64".parse().unwrap();
    for _ in 0..3 {
        let out = get_from(ip, harp.http_addr(), "/exapps/app_api/info", &[]).await;
        assert_eq!(out.status(), 401, "{out:?}");
    }
    let out = get_from(ip, harp.http_addr(), "/exapps/app_api/info", &[]).await;
    assert!(out.is_silent_drop(), "not banned: {out:?}");
    let echo = EchoBackend::start().await;
    let mut opts = ClientOpts::new(harp.frp_addr());
    opts.tls = Some(certs.client());
    opts.source = Some(ip);
    opts.backend = Some(echo.addr());
    let mut engine = Frpc::login(&opts)
        .await
        .expect("the ban refused a login with the key and a client certificate");
    engine.tcp_proxy("banned-host-engine", PORT).await;
    assert_http_through(PORT, &echo, "/_ping").await;
    let mut wrong = opts.clone();
    wrong.key = Some("not-the-key".into());
    assert_eq!(Frpc::login(&wrong).await.err().unwrap(), "banned");
    assert_eq!(strikes(&harp).await, 3.0, "a tunnel login was struck");
}

// ---------------------------------------------------------------------------------------------
// yamux and framing details (§3, §4)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn yamux_stream_is_acked_at_once_with_frps_window() {
    let harp = plain_harp(&[]);
    let mut tcp = TcpStream::connect(harp.frp_addr()).await.unwrap();
    // Open stream 1 (frpc's SYN, spec §12.6) and send nothing else.
    tcp.write_all(&hex("0001000100000001005c0000"))
        .await
        .unwrap();
    let mut ack = [0u8; 12];
    timeout(Duration::from_secs(2), tcp.read_exact(&mut ack))
        .await
        .expect("no ACK for an idle stream")
        .unwrap();
    assert_eq!(ack.to_vec(), hex("0001000200000001005c0000"));
}

#[tokio::test(flavor = "multi_thread")]
async fn yamux_ping_is_answered() {
    let harp = plain_harp(&[]);
    let mut tcp = TcpStream::connect(harp.frp_addr()).await.unwrap();
    tcp.write_all(&hex("0001000100000001005c0000"))
        .await
        .unwrap();
    tcp.write_all(&hex("000200010000000000000007"))
        .await
        .unwrap();
    let mut frames = [0u8; 24];
    timeout(Duration::from_secs(2), tcp.read_exact(&mut frames))
        .await
        .unwrap()
        .unwrap();
    assert!(
        frames
            .chunks(12)
            .any(|f| f == hex("000200020000000000000007")),
        "{frames:02x?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_frame_closes_the_connection() {
    let harp = plain_harp(&[]);
    let mut tcp = TcpStream::connect(harp.frp_addr()).await.unwrap();
    tcp.write_all(&hex("0001000100000001005c0000"))
        .await
        .unwrap();
    // Data on stream 1: an unknown frp type byte 'Z'.
    tcp.write_all(&hex("000000000000000100000009"))
        .await
        .unwrap();
    tcp.write_all(b"Z00000000").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let closed = timeout(WAIT, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "connection not closed after a bad frame");
    assert!(harp.log().contains("bad frame"));
    // The server is still fine.
    Frpc::login(&ClientOpts::new(harp.frp_addr()))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn control_ping_gets_pong() {
    let harp = plain_harp(&[]);
    let mut client = Frpc::login(&ClientOpts::new(harp.frp_addr()))
        .await
        .unwrap();
    client.send(Message::Ping(Ping::default())).await;
    match client.recv().await {
        Some(Message::Pong(p)) => assert!(p.error.is_empty()),
        other => panic!("expected Pong, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_mux_off_clients_work_too() {
    const PORT: u16 = 24017;
    let harp = plain_harp(&[]);
    let echo = EchoBackend::start().await;
    // Control connection: Login directly on TCP.
    let mut ctl = TcpStream::connect(harp.frp_addr()).await.unwrap();
    let ts = 1_700_000_001;
    let login = Login {
        version: "0.61.1".into(),
        privilege_key: crypto::privilege_key("", ts),
        timestamp: ts,
        metas: BTreeMap::from([("token".to_string(), KEY.to_string())]),
        pool_count: 1,
        ..Login::default()
    };
    ctl.write_all(&codec::encode(&Message::Login(login)))
        .await
        .unwrap();
    let Message::LoginResp(resp) = read_frame(&mut ctl).await.unwrap() else {
        panic!("no LoginResp")
    };
    assert!(resp.error.is_empty(), "{resp:?}");
    let key = AesKey::from_token("");
    let mut enc = Encryptor::with_random_iv(&key).unwrap();
    let mut out = BytesMut::new();
    let proxy = NewProxy {
        proxy_name: "direct".into(),
        proxy_type: "tcp".into(),
        remote_port: PORT.into(),
        ..NewProxy::default()
    };
    enc.encrypt(&codec::encode(&Message::NewProxy(proxy)), &mut out);
    ctl.write_all(&out).await.unwrap();
    // Read ReqWorkConn and NewProxyResp (encrypted).
    let mut dec = Decryptor::new(&key);
    let mut plain = BytesMut::new();
    let mut decoder = Decoder::new();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while got.len() < 2 {
        if let Some(m) = decoder.decode(&mut plain).unwrap() {
            got.push(m.message_type());
            if let Message::NewProxyResp(r) = m {
                assert!(r.error.is_empty(), "{r:?}");
            }
            continue;
        }
        let n = timeout(WAIT, ctl.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0);
        dec.decrypt(&chunk[..n], &mut plain);
    }
    assert!(got.contains(&MessageType::ReqWorkConn) && got.contains(&MessageType::NewProxyResp));
    // Work connection: its own TCP connection.
    let run_id = resp.run_id.clone();
    let backend = echo.addr();
    let frp = harp.frp_addr();
    tokio::spawn(async move {
        let mut work = TcpStream::connect(frp).await.unwrap();
        let hello = Message::NewWorkConn(NewWorkConn {
            run_id,
            ..NewWorkConn::default()
        });
        work.write_all(&codec::encode(&hello)).await.unwrap();
        let Ok(Message::StartWorkConn(_)) = read_frame(&mut work).await else {
            return;
        };
        let mut local = TcpStream::connect(backend).await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut work, &mut local).await;
    });
    assert_http_through(PORT, &echo, "/direct").await;
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Proxies (§7.2, §7.4, §9.1)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn registered_proxy_serves_http_through_work_connections() {
    const PORT: u16 = 24011;
    let harp = plain_harp(&[]);
    let echo = EchoBackend::start().await;
    let mut opts = ClientOpts::new(harp.frp_addr());
    opts.backend = Some(echo.addr());
    let mut client = Frpc::login(&opts).await.unwrap();
    client.tcp_proxy("bundled-deploy-daemon-t", PORT).await;
    // Sequential requests use the pool and its replenishment.
    for i in 0..5 {
        assert_http_through(PORT, &echo, &format!("/seq/{i}")).await;
    }
    // Concurrent requests need more work connections than the pool holds.
    let outs = futures_util::future::join_all(
        (0..8).map(|i| async move { get(loopback(PORT), &format!("/par/{i}"), &[]).await }),
    )
    .await;
    for out in outs {
        assert_eq!(out.status(), 200, "{out:?}");
    }
    // A body larger than the yamux initial window crosses intact.
    let out = get(loopback(PORT), "/big/1000000", &[]).await;
    assert_eq!(out.status(), 200);
    assert_eq!(out.body(), big_body(1_000_000).as_slice());
}

#[tokio::test(flavor = "multi_thread")]
async fn new_proxy_outside_allowed_ranges_is_refused() {
    let harp = plain_harp(&[]);
    let mut client = Frpc::login(&ClientOpts::new(harp.frp_addr()))
        .await
        .unwrap();
    for port in [22999, 24100, 8080, 0, -1, 70000] {
        let resp = client.new_proxy("outside", "tcp", port).await;
        assert_eq!(resp.error, "port not allowed", "port {port}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn new_proxy_second_port_exceeds_max_ports_per_client() {
    let harp = plain_harp(&[]);
    let mut client = Frpc::login(&ClientOpts::new(harp.frp_addr()))
        .await
        .unwrap();
    client.tcp_proxy("first", 24031).await;
    let resp = client.new_proxy("second", "tcp", 24032).await;
    assert_eq!(resp.error, "exceed the max_ports_per_client");
    // frps checks the port count before the name: a resent NewProxy gets the same error.
    let resp = client.new_proxy("first", "tcp", 24031).await;
    assert_eq!(resp.error, "exceed the max_ports_per_client");
    assert!(!listening(24032).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn new_proxy_duplicate_name_and_used_port_are_refused() {
    let harp = plain_harp(&[]);
    let mut a = Frpc::login(&ClientOpts::new(harp.frp_addr()))
        .await
        .unwrap();
    let mut b = Frpc::login(&ClientOpts::new(harp.frp_addr()))
        .await
        .unwrap();
    a.tcp_proxy("engine", 24041).await;
    let resp = b.new_proxy("engine", "tcp", 24042).await;
    assert_eq!(resp.error, "proxy [engine] already exists");
    let resp = b.new_proxy("other-engine", "tcp", 24041).await;
    assert_eq!(resp.error, "port already used");
    // Failures keep nothing: b can still register its one port.
    b.tcp_proxy("other-engine", 24043).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn new_proxy_non_tcp_types_are_refused() {
    let harp = plain_harp(&[]);
    let mut client = Frpc::login(&ClientOpts::new(harp.frp_addr()))
        .await
        .unwrap();
    let cases = [
        (
            "http",
            "type [http] not supported when vhost http port is not set",
        ),
        (
            "https",
            "type [https] not supported when vhost https port is not set",
        ),
        (
            "udp",
            "proxy type [udp] not supported by harp: only tcp proxies are served",
        ),
        (
            "stcp",
            "proxy type [stcp] not supported by harp: only tcp proxies are served",
        ),
        ("socks", "unknown proxy type: socks"),
    ];
    for (ty, error) in cases {
        let resp = client.new_proxy("typed", ty, 24051).await;
        assert_eq!(resp.error, error, "type {ty}");
    }
    // An empty type means tcp, as in frps.
    let resp = client.new_proxy("typed", "", 24051).await;
    assert_eq!(resp.error, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn close_proxy_frees_the_port() {
    const PORT: u16 = 24061;
    let harp = plain_harp(&[]);
    let mut client = Frpc::login(&ClientOpts::new(harp.frp_addr()))
        .await
        .unwrap();
    client.tcp_proxy("closing", PORT).await;
    assert!(listening(PORT).await);
    client
        .send(Message::CloseProxy(CloseProxy {
            proxy_name: "closing".into(),
        }))
        .await;
    wait_closed(PORT, Duration::from_secs(2)).await;
    client.tcp_proxy("closing", PORT).await;
}

// ---------------------------------------------------------------------------------------------
// Port squatting (harp-behaviour Q10, HP_FRP_STRICT_PORTS)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn q10_exapp_port_only_for_the_exapp_nextcloud_knows() {
    let nc = StubNextcloud::start().await;
    nc.set_app(
        "strictapp",
        StubNextcloud::record("tok", "1.0.0", "127.0.0.1", 23011, &[(".*", PUBLIC, &[])]),
    );
    let url = nc.url();
    let harp = plain_harp(&[("NC_INSTANCE_URL", url.as_str())]);
    let mut squatter = Frpc::login(&ClientOpts::new(harp.frp_addr()))
        .await
        .unwrap();
    // A name Nextcloud does not know.
    let resp = squatter.new_proxy("evilapp", "tcp", 23011).await;
    assert!(
        resp.error
            .contains("[evilapp] is not an ExApp registered in Nextcloud"),
        "{resp:?}"
    );
    // A known ExApp, but not its port.
    let resp = squatter.new_proxy("strictapp", "tcp", 23012).await;
    assert!(
        resp.error.contains("is not the port of ExApp [strictapp]"),
        "{resp:?}"
    );
    assert!(!listening(23011).await && !listening(23012).await);
    // The ExApp itself, with its port (name matched case-insensitively, like the gateway).
    squatter.tcp_proxy("StrictApp", 23011).await;
    // Docker-engine ports are not Nextcloud's business.
    let mut engine = Frpc::login(&ClientOpts::new(harp.frp_addr()))
        .await
        .unwrap();
    engine.tcp_proxy("remote-engine", 24071).await;
}

/// An ExApp record on 127.0.0.1:`port` with one PUBLIC route for every path.
fn exapp_record(port: u16) -> serde_json::Value {
    StubNextcloud::record("tok", "1.0.0", "127.0.0.1", port, &[(".*", PUBLIC, &[])])
}

/// How many exapp-meta calls Nextcloud got for `app`.
fn meta_calls(nc: &StubNextcloud, app: &str) -> usize {
    nc.requests_for("exapp-meta")
        .iter()
        .filter(|r| r.app_id().as_deref() == Some(app))
        .count()
}

/// Issue 10 (1): a request for an app that is not registered caches "not found" for 15 s; when
/// AppAPI installs the app within that time, its frpc's NewProxy must still be granted (frpc
/// retries a refused proxy only 30 s later). Before the fix the NewProxy below was refused
/// from the negative cache ("is not an ExApp registered in Nextcloud").
#[tokio::test(flavor = "multi_thread")]
async fn reinstalled_exapp_gets_its_tunnel_despite_a_cached_not_found() {
    const PORT: u16 = 23041;
    let nc = StubNextcloud::start().await;
    let url = nc.url();
    let harp = plain_harp(&[("NC_INSTANCE_URL", url.as_str())]);
    // Someone asks for the app while it is not registered: 404, remembered for 15 s.
    let out = get(harp.http_addr(), "/exapps/reinstalled/", &[]).await;
    assert_eq!(out.status(), 404, "{out:?}");
    // AppAPI installs it again at once; its frpc asks for the app's port.
    nc.set_app("reinstalled", exapp_record(PORT));
    let mut exapp = Frpc::login(&ClientOpts::new(harp.frp_addr()))
        .await
        .unwrap();
    exapp.tcp_proxy("reinstalled", PORT).await;
    assert_eq!(meta_calls(&nc, "reinstalled"), 2);
}

/// The re-check before a refusal is bounded: a flood of NewProxy for an app Nextcloud
/// does not know asks Nextcloud again at most once per app every 2 s.
#[tokio::test(flavor = "multi_thread")]
async fn refused_new_proxies_ask_nextcloud_again_at_most_every_two_seconds() {
    const PORT: u16 = 23045;
    let nc = StubNextcloud::start().await;
    let url = nc.url();
    let harp = plain_harp(&[("NC_INSTANCE_URL", url.as_str())]);
    let mut client = Frpc::login(&ClientOpts::new(harp.frp_addr()))
        .await
        .unwrap();
    let started = Instant::now();
    for _ in 0..20 {
        let resp = client.new_proxy("ghostapp", "tcp", PORT.into()).await;
        assert!(
            resp.error.contains("is not an ExApp registered"),
            "{resp:?}"
        );
    }
    // The first lookup, then at most one re-check per 2 s.
    let allowed = 2 + (started.elapsed().as_secs() / 2) as usize;
    let calls = meta_calls(&nc, "ghostapp");
    assert!((2..=allowed).contains(&calls), "{calls} exapp-meta calls");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resp = client.new_proxy("ghostapp", "tcp", PORT.into()).await;
    assert!(
        resp.error.contains("is not an ExApp registered"),
        "{resp:?}"
    );
    assert_eq!(meta_calls(&nc, "ghostapp"), calls + 1);
}

/// A request as AppAPI sends it to an ExApp through harp (the six headers, the ExApp's secret
/// in AUTHORIZATION-APP-API).
async fn appapi_get(harp: &Harp, app: &str, port: u16, path: &str) -> RawOutcome {
    let port = port.to_string();
    let headers = [
        ("EX-APP-VERSION", "1.0.0"),
        ("EX-APP-ID", app),
        ("EX-APP-HOST", "127.0.0.1"),
        ("EX-APP-PORT", port.as_str()),
        ("AUTHORIZATION-APP-API", "YWRtaW46dG9r"),
        ("harp-shared-key", KEY),
    ];
    get(harp.http_addr(), &format!("/exapps/{app}{path}"), &headers).await
}

/// Issue 10 (2), AppAPI's exact sequence: register, requests during the deploy (harp caches the
/// record), unregister without ever enabling (AppAPI then never calls `DELETE /exapp_storage`),
/// register again on another port. Before the fix the stale record stayed for good: the
/// NewProxy for the new port was refused ("Nextcloud has it on port 23042") and AppAPI's
/// heartbeats went to the old port.
#[tokio::test(flavor = "multi_thread")]
async fn reregistered_exapp_on_another_port_gets_its_tunnel_and_appapis_requests() {
    const OLD: u16 = 23042;
    const NEW: u16 = 23043;
    let nc = StubNextcloud::start().await;
    nc.set_app("moved", exapp_record(OLD));
    let url = nc.url();
    let harp = plain_harp(&[("NC_INSTANCE_URL", url.as_str())]);
    // The deploy's heartbeat: nothing runs yet, but harp now holds the record.
    let out = appapi_get(&harp, "moved", OLD, "/heartbeat").await;
    assert_eq!(out.status(), 503, "{out:?}");
    nc.remove_app("moved");
    nc.set_app("moved", exapp_record(NEW));
    let echo = EchoBackend::start().await;
    let mut opts = ClientOpts::new(harp.frp_addr());
    opts.backend = Some(echo.addr());
    let mut exapp = Frpc::login(&opts).await.unwrap();
    exapp.tcp_proxy("moved", NEW).await;
    let out = appapi_get(&harp, "moved", NEW, "/heartbeat").await;
    assert_eq!(out.status(), 200, "{out:?}");
    assert_eq!(echo.last_request().unwrap().target, "/heartbeat");
}

#[tokio::test(flavor = "multi_thread")]
async fn q10_strict_ports_off_restores_harp_behaviour() {
    let harp = plain_harp(&[("HP_FRP_STRICT_PORTS", "false")]);
    let mut client = Frpc::login(&ClientOpts::new(harp.frp_addr()))
        .await
        .unwrap();
    client.tcp_proxy("anything", 23014).await;
}

// ---------------------------------------------------------------------------------------------
// End to end through the gateway, and teardown
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn gateway_reaches_exapp_through_the_tunnel() {
    const PORT: u16 = 23010;
    let certs = make_certs();
    let nc = StubNextcloud::start().await;
    nc.set_app(
        "tunapp",
        StubNextcloud::record("tok", "1.0.0", "127.0.0.1", PORT, &[(".*", PUBLIC, &[])]),
    );
    let echo = EchoBackend::start().await;
    let url = nc.url();
    let harp = tls_harp(&certs, &[("NC_INSTANCE_URL", url.as_str())]);
    let mut opts = ClientOpts::new(harp.frp_addr());
    opts.tls = Some(certs.client());
    opts.backend = Some(echo.addr());
    let mut exapp = Frpc::login(&opts).await.unwrap();
    exapp.tcp_proxy("tunapp", PORT).await;
    let out = get(harp.http_addr(), "/exapps/tunapp/hello?x=1", &[]).await;
    assert_eq!(out.status(), 200, "{out:?}");
    let seen = echo.last_request().expect("the ExApp got nothing");
    assert_eq!(seen.target, "/hello?x=1");
    assert_eq!(seen.header("ex-app-id"), Some("tunapp"));
}

/// The gateway path used for a tunnelled ExApp, told apart by the source frpc is given: the end
/// user's address in-process, the gateway's own loopback socket through the listener.
async fn gateway_tunnel_source(port: u16, app: &str, env: &[(&str, &str)]) -> Vec<String> {
    let certs = make_certs();
    let nc = StubNextcloud::start().await;
    nc.set_app(
        app,
        StubNextcloud::record("tok", "1.0.0", "127.0.0.1", port, &[(".*", PUBLIC, &[])]),
    );
    let echo = EchoBackend::start().await;
    let url = nc.url();
    let mut all = vec![("NC_INSTANCE_URL", url.as_str())];
    all.extend_from_slice(env);
    let harp = tls_harp(&certs, &all);
    let mut opts = ClientOpts::new(harp.frp_addr());
    opts.tls = Some(certs.client());
    opts.backend = Some(echo.addr());
    let mut exapp = Frpc::login(&opts).await.unwrap();
    exapp.tcp_proxy(app, port).await;
    let user: std::net::IpAddr = "127.0.0.55".parse().unwrap();
    for _ in 0..3 {
        let out = get_from(user, harp.http_addr(), &format!("/exapps/{app}/x"), &[]).await;
        assert_eq!(out.status(), 200, "{out:?}");
    }
    start_sources(port)
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_uses_the_in_process_tunnel_path_when_asked() {
    let sources = gateway_tunnel_source(23031, "inproc", &[("HP_TUNNEL_IN_PROCESS", "true")]).await;
    assert!(!sources.is_empty());
    assert!(sources.iter().all(|s| s == "127.0.0.55"), "{sources:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_uses_the_loopback_listener_by_default() {
    let sources = gateway_tunnel_source(23032, "viaport", &[]).await;
    assert!(!sources.is_empty());
    assert!(sources.iter().all(|s| s == "127.0.0.1"), "{sources:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_client_frees_its_port_at_once_and_can_log_in_again() {
    const PORT: u16 = 24014;
    let certs = make_certs();
    let harp = tls_harp(&certs, &[]);
    let echo = EchoBackend::start().await;
    let mut opts = ClientOpts::new(harp.frp_addr());
    opts.tls = Some(certs.client());
    opts.backend = Some(echo.addr());
    let mut client = Frpc::login(&opts).await.unwrap();
    client.tcp_proxy("killme", PORT).await;
    assert_http_through(PORT, &echo, "/before").await;
    client.kill();
    let took = wait_closed(PORT, Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(1), "port freed after {took:?}");
    // A restarted frpc (new run_id) gets the same name and port back.
    let mut again = Frpc::login(&opts).await.unwrap();
    again.tcp_proxy("killme", PORT).await;
    assert_http_through(PORT, &echo, "/after").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_user_connection_does_not_stall_the_client() {
    const PORT: u16 = 24081;
    let harp = plain_harp(&[]);
    let echo = EchoBackend::start().await;
    let mut opts = ClientOpts::new(harp.frp_addr());
    opts.backend = Some(echo.addr());
    let mut client = Frpc::login(&opts).await.unwrap();
    client.tcp_proxy("slowpoke", PORT).await;
    // A user that asks for 30 MB and never reads: the client keeps sending until its yamux
    // window is used up, and harp cannot pass the bytes on.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(loopback(PORT)).await.unwrap();
    stuck
        .write_all(b"GET /big/30000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Other connections through the same client, and its control stream, still work.
    timeout(
        Duration::from_secs(5),
        assert_http_through(PORT, &echo, "/not-stalled"),
    )
    .await
    .expect("one slow user connection stalled the whole client");
    client.send(Message::Ping(Ping::default())).await;
    assert!(matches!(client.recv().await, Some(Message::Pong(_))));
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_is_refused_and_the_server_keeps_serving() {
    let harp = plain_harp(&[]);
    let payloads: [&[u8]; 5] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        // yamux version 1.
        &[1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
        // Data frame far beyond any window.
        &[0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff],
        // Direct frp Login claiming a 1 TiB body.
        &[b'o', 0, 0, 1, 0, 0, 0, 0, 0],
        // A broken TLS ClientHello.
        &[0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0],
    ];
    for payload in payloads {
        let mut tcp = TcpStream::connect(harp.frp_addr()).await.unwrap();
        let _ = tcp.write_all(payload).await;
        let mut buf = vec![0u8; 4096];
        let closed = timeout(WAIT, async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "connection kept open after {payload:02x?}");
    }
    Frpc::login(&ClientOpts::new(harp.frp_addr()))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn burst_of_user_connections_all_get_work_connections() {
    const PORT: u16 = 24091;
    let harp = plain_harp(&[]);
    let echo = EchoBackend::start().await;
    let mut opts = ClientOpts::new(harp.frp_addr());
    opts.backend = Some(echo.addr());
    let mut client = Frpc::login(&opts).await.unwrap();
    client.tcp_proxy("burst", PORT).await;
    let started = Instant::now();
    let outs = futures_util::future::join_all(
        (0..150).map(|i| async move { get(loopback(PORT), &format!("/burst/{i}"), &[]).await }),
    )
    .await;
    for out in &outs {
        assert_eq!(out.status(), 200, "{out:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(echo.count(), 150);
}

// ---------------------------------------------------------------------------------------------
// B65: HaRP's FRP certificate set on first start
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn b65_first_start_generates_harps_certificate_set() {
    use std::os::unix::fs::PermissionsExt;
    let harp = Harp::start(&[]);
    let frp = harp.certs_dir().join("frp");
    for file in [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
    ] {
        let meta = std::fs::metadata(frp.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        if file.ends_with(".key") {
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
        }
    }
}

/// Whether `program` can be run (`--version`/`version` answered).
fn have(program: &str, arg: &str) -> bool {
    std::process::Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Python's ssl (OpenSSL) does a mutual-TLS handshake, verifying the server against `ca.crt`
/// for the name harp.nc, strictly (X.509 strict mode, as Python 3.13 does by default).
const PYTHON_HANDSHAKE: &str = r#"
import socket, ssl, sys
ca, cert, key, host, port = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=ca)
ctx.verify_flags |= ssl.VERIFY_X509_STRICT
ctx.load_cert_chain(cert, key)
with socket.create_connection((host, int(port)), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="harp.nc") as tls:
        print("verified", tls.version())
"#;

/// Issue 10 (7): the generated CA and server certificate both had subject `CN=harp.nc` (as
/// HaRP's), which OpenSSL takes for a self-signed leaf: `openssl verify` failed with "self-signed
/// certificate" and so did every OpenSSL-based TLS client. Newly generated CAs have their own
/// subject, and the set verifies in OpenSSL and in Python against harp's tunnel port.
#[tokio::test(flavor = "multi_thread")]
async fn b65_generated_certificates_verify_in_openssl_and_python() {
    let harp = start(&[]);
    let frp = harp.certs_dir().join("frp");
    if have("openssl", "version") {
        for leaf in ["server.crt", "client.crt"] {
            let out = std::process::Command::new("openssl")
                .args(["verify", "-CAfile"])
                .arg(frp.join("ca.crt"))
                .arg(frp.join(leaf))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl verify {leaf}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    } else {
        eprintln!("SKIPPED: openssl is not installed; `openssl verify` not run");
    }
    if !have("python3", "--version") {
        eprintln!("SKIPPED: python3 is not installed; no OpenSSL handshake against harp");
        return;
    }
    let addr = harp.frp_addr();
    let out = std::process::Command::new("python3")
        .args(["-c", PYTHON_HANDSHAKE])
        .arg(frp.join("ca.crt"))
        .arg(frp.join("client.crt"))
        .arg(frp.join("client.key"))
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Python's ssl refused harp's certificate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("verified TLS"));
}

#[tokio::test(flavor = "multi_thread")]
async fn b65_an_existing_frp_folder_is_never_touched() {
    let certs = TempDir::new("certs");
    std::fs::create_dir(certs.join("frp")).unwrap();
    std::fs::write(certs.join("frp").join("mine.txt"), "admin's own").unwrap();
    let dir = certs.path().display().to_string();
    let _harp = Harp::start(&[("HP_CERTS_DIR", &dir)]);
    let names: Vec<_> = std::fs::read_dir(certs.join("frp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("mine.txt")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn b65_no_certificates_when_tls_is_disabled() {
    let harp = Harp::start(&[("HP_FRP_DISABLE_TLS", "true")]);
    assert!(!harp.certs_dir().join("frp").exists());
}
