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
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::{HttpProxy, ProxyHttp};
use pingora::server::ShutdownWatch;
use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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
