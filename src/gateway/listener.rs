//! Listener phase, before Pingora's: the gateway's own accept loop and connection loop, with
//! HaRP's client timeouts and HaRP's HAProxy `maxconn` (`HP_MAX_CONNECTIONS`).
//!
//! HaRP (HAProxy `timeout client`, which `timeout http-request` falls back to) gives a client
//! `HP_TIMEOUT_CLIENT` to send a whole request head and never waits longer than that for a client
//! to read or write. Pingora reads a new connection's first request with a fixed 60 s timeout,
//! applies its read timeout to each read rather than to the head, and has no write timeout by
//! default; so a client sending one header byte now and then, or never reading its response,
//! would hold a connection (and the ExApp's) for as long as it liked.
//!
//! The accept loop is ours rather than Pingora's listening service because of what a connection
//! costs before it has sent anything. Pingora spawns every accepted connection as a task whose
//! state holds its TLS handshake inline and gives it a 64 KiB read buffer: about 38 KB of memory
//! per idle connection, where HAProxy spends about 1 KB. Here a connection over the limit is
//! closed before anything is allocated for it, and an admitted one waits for its first byte
//! holding only its socket, a small write buffer and a small task; the TLS state and the HTTP
//! session are allocated once bytes arrive, and released between keep-alive requests.

use super::admission::{Admission, Place};
use crate::listeners::Listener;
use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings as PersistentSettings, HttpServerApp};
use pingora::listeners::tls::Acceptor;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::socket::SocketAddr as DigestAddr;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use pingora::proxy::{HttpProxy, ProxyHttp};
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;
use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, BufWriter, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::{Instant, Sleep};

tokio::task_local! {
    /// Set once the request head of the connection's current request has been read.
    static HEAD_READ: Cell<bool>;
}

/// Called from the first proxy hook: the head is complete, the head deadline no longer applies.
pub fn mark_head_read() {
    let _ = HEAD_READ.try_with(|read| read.set(true));
}

/// Pending connections the kernel queues for a listener (Pingora's and HAProxy's figure).
const BACKLOG: u32 = 65535;
/// A write buffer as Pingora's: a response's head and a small body leave in one write.
const WRITE_BUFFER: usize = 1460;
/// How long the accept loop rests when the process is out of file descriptors, rather than
/// spinning on an `accept` that fails at once.
const OUT_OF_DESCRIPTORS_PAUSE: Duration = Duration::from_millis(100);

/// How often an accept loop with ended connections gives their memory back.
const COLLECT_EVERY: Duration = Duration::from_secs(1);

/// The proxy and its client timeout, shared by the HTTP and HTTPS listeners.
pub struct GatewayApp<SV> {
    proxy: Arc<HttpProxy<SV>>,
    client_timeout: Duration,
}

/// What a finished request leaves for the connection's next one.
type NextRequest = Option<(Stream, Option<PersistentSettings>)>;

impl<SV> GatewayApp<SV>
where
    SV: ProxyHttp + Send + Sync + 'static,
    SV::CTX: Send + Sync,
{
    pub fn new(proxy: HttpProxy<SV>, client_timeout: Duration) -> Arc<Self> {
        Arc::new(GatewayApp {
            proxy: Arc::new(proxy),
            client_timeout,
        })
    }

    /// One accepted connection, from its first byte (its TLS handshake, when `tls`) to its end.
    async fn connection(
        self: Arc<Self>,
        tls: Option<Arc<Acceptor>>,
        mut stream: Stream,
        place: Place,
        shutdown: ShutdownWatch,
    ) {
        let _place = place;
        let deadline = Instant::now() + self.client_timeout;
        if !first_bytes(
            &mut stream,
            std::pin::pin!(tokio::time::sleep_until(deadline)),
        )
        .await
        {
            return;
        }
        if let Some(tls) = tls {
            stream = match Box::pin(self.tls_handshake(&tls, stream, deadline)).await {
                Some(tls) => tls,
                None => return,
            };
        } else {
            stream = Box::new(Conn::new(stream));
        }
        self.serve(stream, deadline, &shutdown).await;
    }

    /// HTTPS: the handshake within `HP_TIMEOUT_CLIENT`, as HAProxy bounds it (`timeout
    /// client`). A failed handshake is the client's doing: a DEBUG line, not an ERROR.
    async fn tls_handshake(
        &self,
        tls: &Acceptor,
        stream: Stream,
        deadline: Instant,
    ) -> Option<Stream> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().cloned());
        match tokio::time::timeout_at(deadline, tls.tls_handshake(Conn::new(stream))).await {
            Ok(Ok(tls)) => Some(Box::new(tls)),
            Ok(Err(e)) => {
                log::debug!("TLS handshake with {peer:?} failed: {e}");
                None
            }
            Err(_) => {
                log::debug!("TLS handshake with {peer:?} not done within {deadline:?}");
                None
            }
        }
    }

    /// Serves a connection's requests one after another. Between requests (and before the
    /// first) the connection waits for its next bytes holding only the stream: the request's
    /// session, header buffer and proxy state are allocated once bytes have arrived (measured:
    /// no dearer per request than letting Pingora wait in its read). One timer serves the whole
    /// connection, reset for each request.
    async fn serve(&self, mut stream: Stream, first_deadline: Instant, shutdown: &ShutdownWatch) {
        let mut persistent = None;
        // The first request's head is due within the client timeout of the connection's start.
        let head_deadline = tokio::time::sleep_until(first_deadline);
        let mut head_deadline = std::pin::pin!(head_deadline);
        loop {
            // HaRP (`timeout http-request`, falling back to `timeout client`): the whole head
            // within the client timeout, the wait for its first byte included.
            if persistent.is_some() {
                head_deadline
                    .as_mut()
                    .reset(Instant::now() + self.client_timeout);
                if !first_bytes(&mut stream, head_deadline.as_mut()).await {
                    return;
                }
            }
            // harp never turns on Pingora's HTTP/1 pipelining, so no request is ever left
            // buffered in `persistent` for this wait to miss: its next bytes are on the socket.
            let request = self.one_request(stream, persistent, head_deadline.as_mut(), shutdown);
            match Box::pin(request).await {
                Some(next) => (stream, persistent) = (next.0, next.1),
                None => return,
            }
        }
    }

    /// One request on a connection whose bytes have started to arrive; gives up (closing the
    /// connection) if its head is not complete when `head_deadline` fires. Once the head is in,
    /// the request runs under the per-read and per-write timeouts alone.
    async fn one_request(
        &self,
        stream: Stream,
        persistent: Option<PersistentSettings>,
        head_deadline: Pin<&mut Sleep>,
        shutdown: &ShutdownWatch,
    ) -> NextRequest {
        let mut session = ServerSession::new_http1(stream);
        match persistent {
            Some(persistent) => persistent.apply_to_session(&mut session),
            None if *shutdown.borrow() => session.set_keepalive(None),
            None => session.set_keepalive(Some(self.client_timeout.as_secs().max(1))),
        }
        session.set_read_timeout(Some(self.client_timeout));
        session.set_write_timeout(Some(self.client_timeout));
        let done = HEAD_READ
            .scope(Cell::new(false), async {
                let request = self.proxy.process_new_http(session, shutdown);
                let mut request = std::pin::pin!(request);
                tokio::select! {
                    done = &mut request => return done,
                    () = head_deadline => {}
                }
                if HEAD_READ.with(Cell::get) {
                    request.await
                } else {
                    None
                }
            })
            .await;
        done.map(pingora::apps::ReusedHttpStream::consume)
    }
}

/// Waits until the client has sent something (or gone) before `deadline` fires: true when there
/// are bytes to read.
async fn first_bytes(stream: &mut Stream, deadline: Pin<&mut Sleep>) -> bool {
    let mut byte = [0u8; 1];
    tokio::select! {
        // A stream that cannot peek (TLS) goes on to read as it would have. An error is a
        // client that closed before a request: HAProxy closes silently too.
        peeked = stream.try_peek(&mut byte) => peeked.is_ok(),
        // No request within the client timeout.
        () = deadline => false,
    }
}

/// One gateway listener (`HP_EXAPPS_ADDRESS`, or `HP_EXAPPS_HTTPS_ADDRESS` with `tls`), as a
/// Pingora service so that it runs on the server's worker threads and stops with it.
pub struct GatewayListener<SV> {
    name: String,
    listener: Listener,
    app: Arc<GatewayApp<SV>>,
    tls: Option<Arc<Acceptor>>,
    admission: Admission,
}

impl<SV> GatewayListener<SV> {
    pub fn new(
        listener: Listener,
        app: Arc<GatewayApp<SV>>,
        tls: Option<Acceptor>,
        admission: Admission,
    ) -> Self {
        GatewayListener {
            name: format!("harp {}", listener.setting),
            listener,
            app,
            tls: tls.map(Arc::new),
            admission,
        }
    }
}

/// Binds as Pingora would (`SO_REUSEADDR`, a long backlog), so a restarted harp can take its
/// port back while old connections linger in `TIME_WAIT`.
fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The accepted socket as Pingora's stream: no delay, and the peer's address in its digest
/// (which the gateway's client-IP phase reads).
fn stream_of(tcp: TcpStream, peer: std::net::SocketAddr) -> Stream {
    let _ = tcp.set_nodelay(true);
    let fd = tcp.as_raw_fd();
    let mut l4 = pingora::protocols::l4::stream::Stream::from(tcp);
    let digest = SocketDigest::from_raw_fd(fd);
    let _ = digest.peer_addr.set(Some(DigestAddr::Inet(peer)));
    l4.set_socket_digest(digest);
    Box::new(l4)
}

#[async_trait]
impl<SV> Service for GatewayListener<SV>
where
    SV: ProxyHttp + Send + Sync + 'static,
    SV::CTX: Send + Sync,
{
    async fn start_service(
        &mut self,
        _fds: Option<ListenFds>,
        mut shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let listener = match bind(self.listener.addr) {
            Ok(listener) => listener,
            Err(e) => {
                // Checked at start already (server::check_binds); taken in between.
                eprintln!("harp: {} cannot be bound: {e}", self.listener);
                std::process::exit(1);
            }
        };
        // Connections open at the last memory collection, or accepted since: while some may
        // have ended, this thread collects once a second what they freed (`memory`).
        // One timer for the loop: `select!` builds every branch's future on each pass, so a
        // fresh sleep there would cost a timer per accepted connection and, restarted by every
        // accept, never fire under steady traffic.
        let mut held = 0u64;
        let collect = tokio::time::sleep(COLLECT_EVERY);
        let mut collect = std::pin::pin!(collect);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut collect, if held > 0 => {
                    let open = self.admission.open();
                    if open < held {
                        crate::memory::give_back_freed();
                    }
                    held = open;
                    collect.as_mut().reset(Instant::now() + COLLECT_EVERY);
                    continue;
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                    continue;
                }
            };
            match accepted {
                Ok((tcp, peer)) => {
                    // Over the limit: closed before anything is spent on it.
                    let Some(place) = self.admission.admit() else {
                        drop(tcp);
                        continue;
                    };
                    held += 1;
                    let stream = stream_of(tcp, peer);
                    let connection = self.app.clone().connection(
                        self.tls.clone(),
                        stream,
                        place,
                        shutdown.clone(),
                    );
                    // Spread over the service's threads, as Pingora does.
                    pingora_runtime::current_handle().spawn(connection);
                }
                Err(e) => self.accept_failed(&e).await,
            }
        }
        self.app.proxy.http_cleanup().await;
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl<SV> GatewayListener<SV> {
    async fn accept_failed(&self, e: &std::io::Error) {
        match e.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                crate::logging::warn_limited(
                    "accept out of resources",
                    format_args!(
                        "{} cannot accept connections: {e}; lower HP_MAX_CONNECTIONS or raise \
                         the file-descriptor limit (ulimit -n)",
                        self.listener
                    ),
                );
                tokio::time::sleep(OUT_OF_DESCRIPTORS_PAUSE).await;
            }
            // A client that reset its connection before it was accepted.
            _ => log::debug!("{}: accept failed: {e}", self.listener),
        }
    }
}

/// An accepted connection with its write buffer, as the HTTP session's stream and as the TLS
/// layer's transport (Pingora implements its transport traits for its concrete streams only).
/// Pingora's own buffer cannot be set on a stream built outside its listeners.
#[derive(Debug)]
struct Conn(BufWriter<Stream>);

impl Conn {
    fn new(stream: Stream) -> Self {
        Conn(BufWriter::with_capacity(WRITE_BUFFER, stream))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Conn {
    async fn shutdown(&mut self) {
        // The buffer first: what was written must leave before the FIN.
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut self.0).await;
    }
}

impl UniqueID for Conn {
    fn id(&self) -> UniqueIDType {
        self.0.get_ref().id()
    }
}

impl Ssl for Conn {}

impl GetTimingDigest for Conn {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.0.get_ref().get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.0.get_ref().get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.0.get_ref().get_write_pending_time()
    }
}

impl GetProxyDigest for Conn {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.0.get_ref().get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.0.get_mut().set_proxy_digest(digest);
    }
}

impl GetSocketDigest for Conn {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.0.get_ref().get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.0.get_mut().set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for Conn {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.0.get_mut().try_peek(buf).await
    }
}
