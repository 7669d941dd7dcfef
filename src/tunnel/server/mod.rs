//! The FRP-compatible tunnel server (what frps was in HaRP): frpc 0.61.1 from ExApp containers
//! and remote Docker hosts connects unchanged, logs in with HaRP's shared key, and registers
//! one `tcp` proxy whose port then listens on `127.0.0.1` here.
//!
//! Layers, one file each:
//! * [`accept`]: first byte → custom TLS head byte / TLS / plain (refused when TLS is on);
//!   then yamux or direct frp framing. [`tls`]: certificates and mutual TLS.
//! * [`session`]: the yamux session (tokio-yamux) and first-message dispatch of each stream.
//! * [`control`] with [`login`]: authentication, the encrypted control stream, teardown.
//! * [`proxy`], [`policy`], [`registry`]: `NewProxy` checks and the name/port registry
//!   ([`Registry::lookup`] is the API for in-process users).
//! * [`work_conn`], [`listener`]: work-connection pool and loopback listeners; the bytes are
//!   copied by the tunnel's shared [`pipe`](crate::tunnel::pipe).
//!
//! yamux (tokio-yamux 0.3) was checked against spec §3 rather than assumed: it ACKs every
//! accepted stream at once with the configured max window (6 MiB → delta 6029312, as Go frps),
//! answers pings, pings every 30 s, resets streams beyond the backlog, and sends `GoAway` on a
//! duplicate SYN. Two differences are handled here: its ping deadline is a fixed 30 s, checked
//! at the next ping (so `TCP_USER_TIMEOUT` is set to notice vanished hosts sooner), and it stops
//! reading the connection while one stream's 8-frame queue is full (so the pipe keeps draining
//! work streams whose user side is slow).
//!
//! Rules for everything below: nothing a client sends may crash or stall the server or another
//! client; every wait has a timeout (or a documented liveness check instead); every map and
//! queue is bounded (`limits`); a client that goes away frees its ports before anything else
//! can observe them taken.

pub mod accept;
pub mod admission;
pub mod control;
pub mod io;
pub mod limits;
pub mod listener;
pub mod login;
pub mod policy;
pub mod pre_login;
pub mod proxy;
pub mod registry;
pub mod session;
pub mod tls;
pub mod work_conn;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use pingora::services::listening::Service;
use socket2::SockRef;
use tokio::sync::Semaphore;

pub use crate::tunnel::stream::WorkStream;
pub use admission::Admission;
pub use registry::{ProxyHandle, Registry};

use crate::config::Settings;
use crate::tunnel::crypto::AesKey;
use limits::{MAX_CONNECTIONS, MAX_PRE_LOGIN_PER_IP, PRE_LOGIN_TIMEOUT, TCP_USER_TIMEOUT};
use tls::TlsSetup;

/// What every connection of the tunnel service shares.
pub struct Tunnel {
    admission: Admission,
    /// `HP_TIMEOUT_TUNNEL`: how long a user connection through a proxy may idle (`None`: no
    /// limit).
    idle_timeout: Option<Duration>,
    registry: Arc<Registry>,
    tls: Arc<TlsSetup>,
    /// Control-stream key, from the (empty) frp token.
    aes_key: AesKey,
    connections: Arc<Semaphore>,
    pre_login: pre_login::PreLogin,
    refusals: pre_login::RefusalLog,
}

/// The Pingora app of the tunnel listener.
pub struct TunnelApp {
    tunnel: Arc<Tunnel>,
}

impl TunnelApp {
    /// `registry` is shared with whoever needs [`Registry::lookup`], `tls` with the SIGHUP
    /// reload.
    pub fn new(
        settings: &Settings,
        admission: Admission,
        registry: Arc<Registry>,
        tls: Arc<TlsSetup>,
    ) -> TunnelApp {
        TunnelApp {
            tunnel: Arc::new(Tunnel {
                admission,
                idle_timeout: settings.timeout_tunnel,
                registry,
                tls,
                aes_key: AesKey::from_token(login::FRP_TOKEN),
                connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
                pre_login: pre_login::PreLogin::new(MAX_PRE_LOGIN_PER_IP),
                refusals: pre_login::RefusalLog::default(),
            }),
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.tunnel.registry
    }
}

/// The tunnel as a Pingora service listening on `HP_FRP_ADDRESS`, with the certificates of
/// `$HP_CERTS_DIR/frp` (which `crate::certs::ensure_frp_certs` creates on first start).
pub fn service(
    settings: &Settings,
    admission: Admission,
    registry: Arc<Registry>,
    tls: Arc<TlsSetup>,
) -> Service<TunnelApp> {
    let addr = settings.frp_address.to_string();
    let mut service = Service::new(
        "harp tunnel".to_string(),
        TunnelApp::new(settings, admission, registry, tls),
    );
    service.add_tcp(&addr);
    service
}

fn peer_of(stream: &Stream) -> Option<SocketAddr> {
    stream.get_socket_digest()?.peer_addr()?.as_inet().copied()
}

#[async_trait]
impl ServerApp for TunnelApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Some(peer) = peer_of(&stream) else {
            log::warn!("tunnel: connection without a peer address, closed");
            return None;
        };
        // Per address first: one flooding address is refused before it can take global slots.
        let Some(first_phase) = self.tunnel.pre_login.enter(peer.ip()) else {
            self.tunnel.refusals.note(
                pre_login::Refusal::PerAddress,
                format_args!(
                    "{} connections from {} have not logged in yet; closing new ones",
                    MAX_PRE_LOGIN_PER_IP,
                    peer.ip()
                ),
            );
            return None;
        };
        let Ok(_permit) = self.tunnel.connections.clone().try_acquire_owned() else {
            self.tunnel.refusals.note(
                pre_login::Refusal::Global,
                format_args!("{MAX_CONNECTIONS} connections open; closing a new one from {peer}"),
            );
            return None;
        };
        if let Some(fd) = crate::tunnel::stream::pingora_socket(&stream) {
            crate::tunnel::stream::set_tcp_user_timeout(SockRef::from(&fd), TCP_USER_TIMEOUT);
        }
        let accepted = match tokio::time::timeout(
            PRE_LOGIN_TIMEOUT,
            accept::accept(Box::new(stream), &self.tunnel.tls),
        )
        .await
        {
            Ok(accepted) => accepted,
            Err(_) => Err(accept::AcceptError::NoData(format!(
                "first phase not finished within {PRE_LOGIN_TIMEOUT:?}"
            ))),
        };
        drop(first_phase);
        match accepted {
            Ok(accepted) => {
                log::debug!(
                    "tunnel: connection from {peer} ({}, {:?})",
                    if accepted.tls { "TLS" } else { "plain" },
                    accepted.framing
                );
                session::serve(self.tunnel.clone(), accepted, peer, shutdown.clone()).await;
            }
            // Port probes and health checks connect and close: not worth a warning.
            Err(e @ accept::AcceptError::NoData(_)) => {
                log::debug!("tunnel: connection from {peer} closed: {e}");
            }
            Err(e) => log::warn!("tunnel: connection from {peer} refused: {e}"),
        }
        None
    }
}
