//! The gateway's connection loop: Pingora's HTTP/1 loop with HaRP's client timeouts.
//!
//! HaRP (HAProxy `timeout client`, which `timeout http-request` falls back to) gives a client
//! `HP_TIMEOUT_CLIENT` to send a whole request head and never waits longer than that for a client
//! to read or write. Pingora reads a new connection's first request with a fixed 60 s timeout,
//! applies its read timeout to each read rather than to the head, and has no write timeout by
//! default; so a client sending one header byte now and then, or never reading its response,
//! would hold a connection (and the ExApp's) for as long as it liked.

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::listeners::tls::Acceptor;
use pingora::protocols::http::ServerSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use pingora::proxy::{HttpProxy, ProxyHttp};
use pingora::server::ShutdownWatch;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

tokio::task_local! {
    /// Set once the request head of the connection's current request has been read.
    static HEAD_READ: Cell<bool>;
}

/// Called from the first proxy hook: the head is complete, the head deadline no longer applies.
pub fn mark_head_read() {
    let _ = HEAD_READ.try_with(|read| read.set(true));
}

pub struct ClientTimeoutApp<SV> {
    proxy: Arc<HttpProxy<SV>>,
    client_timeout: Duration,
}

/// The same proxy, for another listener.
impl<SV> Clone for ClientTimeoutApp<SV> {
    fn clone(&self) -> Self {
        ClientTimeoutApp {
            proxy: self.proxy.clone(),
            client_timeout: self.client_timeout,
        }
    }
}

impl<SV> ClientTimeoutApp<SV> {
    pub fn new(proxy: HttpProxy<SV>, client_timeout: Duration) -> Self {
        ClientTimeoutApp {
            proxy: Arc::new(proxy),
            client_timeout,
        }
    }

    fn prepare(&self, session: &mut ServerSession) {
        session.set_read_timeout(Some(self.client_timeout));
        session.set_write_timeout(Some(self.client_timeout));
    }

    /// Runs one request; gives up (closing the connection) if its head is not complete within
    /// the client timeout. Once the head is in, the request runs under the per-read and
    /// per-write timeouts alone.
    async fn with_head_deadline<T>(&self, request: impl Future<Output = Option<T>>) -> Option<T> {
        HEAD_READ
            .scope(Cell::new(false), async {
                let mut request = std::pin::pin!(request);
                tokio::select! {
                    done = &mut request => return done,
                    () = tokio::time::sleep(self.client_timeout) => {}
                }
                if HEAD_READ.with(Cell::get) {
                    request.await
                } else {
                    None
                }
            })
            .await
    }
}

#[async_trait]
impl<SV> ServerApp for ClientTimeoutApp<SV>
where
    SV: ProxyHttp + Send + Sync + 'static,
    SV::CTX: Send + Sync,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut session = ServerSession::new_http1(stream);
        self.prepare(&mut session);
        if *shutdown.borrow() {
            session.set_keepalive(None);
        } else {
            session.set_keepalive(Some(self.client_timeout.as_secs().max(1)));
        }
        let mut result = self
            .with_head_deadline(self.proxy.process_new_http(session, shutdown))
            .await;
        while let Some((stream, persistent)) = result.map(|r| r.consume()) {
            let mut session = ServerSession::new_http1(stream);
            if let Some(persistent) = persistent {
                persistent.apply_to_session(&mut session);
            }
            self.prepare(&mut session);
            result = self
                .with_head_deadline(self.proxy.process_new_http(session, shutdown))
                .await;
        }
        None
    }

    async fn cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

/// The HTTPS listener: a plain TCP listener whose connections get their TLS handshake here,
/// within `HP_TIMEOUT_CLIENT` as HAProxy bounds it (`timeout client`), and then go to the same
/// proxy as HTTP. Pingora's own TLS listener waits a fixed 60 s for a client that never sends its
/// ClientHello, and logs every failed handshake, which is the client's doing, as an ERROR.
pub struct TlsHandshakeApp<SV> {
    inner: Arc<ClientTimeoutApp<SV>>,
    acceptor: Acceptor,
}

impl<SV> TlsHandshakeApp<SV> {
    pub fn new(inner: ClientTimeoutApp<SV>, acceptor: Acceptor) -> Self {
        TlsHandshakeApp {
            inner: Arc::new(inner),
            acceptor,
        }
    }
}

#[async_trait]
impl<SV> ServerApp for TlsHandshakeApp<SV>
where
    SV: ProxyHttp + Send + Sync + 'static,
    SV::CTX: Send + Sync,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().cloned());
        let limit = self.inner.client_timeout;
        let tls = match tokio::time::timeout(limit, self.acceptor.tls_handshake(Tcp(stream))).await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                log::debug!("TLS handshake with {peer:?} failed: {e}");
                return None;
            }
            Err(_) => {
                log::debug!("TLS handshake with {peer:?} not done within {limit:?}");
                return None;
            }
        };
        self.inner.process_new(Box::new(tls), shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.proxy.http_cleanup().await;
    }
}

/// An accepted connection as the TLS layer's transport (Pingora implements its transport
/// traits for concrete streams only, not for the boxed `Stream` its listeners hand over).
#[derive(Debug)]
struct Tcp(Stream);

impl AsyncRead for Tcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Tcp {
    async fn shutdown(&mut self) {
        self.0.shutdown().await
    }
}

impl UniqueID for Tcp {
    fn id(&self) -> UniqueIDType {
        self.0.id()
    }
}

impl Ssl for Tcp {}

impl GetTimingDigest for Tcp {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.0.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.0.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.0.get_write_pending_time()
    }
}

impl GetProxyDigest for Tcp {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.0.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.0.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Tcp {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.0.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.0.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Tcp {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.0.try_peek(buf).await
    }
}
