//! The gateway's connection loop: Pingora's HTTP/1 loop with `HP_TIMEOUT_CLIENT` applied before
//! the first request head is read.
//!
//! Pingora reads a new connection's first request with a fixed 60 s timeout and offers no hook
//! before that read; HaRP (HAProxy `timeout client`) closes a silent or slow-header client after
//! `HP_TIMEOUT_CLIENT`. Without this, every idle connection pins resources for a minute.

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::{HttpProxy, ProxyHttp};
use pingora::server::ShutdownWatch;
use std::sync::Arc;
use std::time::Duration;

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
        let mut result = self.proxy.process_new_http(session, shutdown).await;
        while let Some((stream, persistent)) = result.map(|r| r.consume()) {
            let mut session = ServerSession::new_http1(stream);
            if let Some(persistent) = persistent {
                persistent.apply_to_session(&mut session);
            }
            self.prepare(&mut session);
            result = self.proxy.process_new_http(session, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}
