//! One tunnel connection after detection: a yamux session (tcpMux) whose streams are frp
//! connections, or a single direct frp connection (tcpMux off). Dispatches each new frp
//! connection on its first message: Login (a control), `NewWorkConn` (into a pool), anything else
//! closed.
//!
//! A yamux session carries at most one control; its work streams must name that control's
//! `run_id`. The session ends when its control ends, when no login succeeded within the first-
//! message timeout, when the client goes, on a bad frame, or at shutdown; then the control is
//! stopped and awaited (its ports are free) before the connection closes.
//! yamux details (eager stream ACK with frp's 6 MiB window, ping answers, keepalive) are the
//! crate's; see `limits` and the module docs of `super` for what was checked.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt;
use pingora::server::ShutdownWatch;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout, Instant};
use tokio_yamux::{Config, Session, StreamHandle};

use super::accept::{Accepted, Framing};
use super::control::{self, ControlHandle};
use super::limits::{
    DIRECT_HEARTBEAT_TIMEOUT, FIRST_BYTES_TIMEOUT, LOGIN_FAILURE_LINGER, TEARDOWN_TIMEOUT,
    WRITE_TIMEOUT, YAMUX_ACCEPT_BACKLOG, YAMUX_KEEPALIVE_INTERVAL, YAMUX_MAX_STREAMS,
    YAMUX_MAX_STREAM_WINDOW,
};
use super::Tunnel;
use crate::tunnel::frames::{read_plain, Peer, ReadError};
use crate::tunnel::msg::{Message, NewWorkConn};
use crate::tunnel::stream::{BoxIo, WorkStream};

/// Where a yamux session is in its life.
#[derive(Clone)]
enum Phase {
    Fresh,
    LoggingIn,
    Active(Arc<ControlHandle>),
    /// Login refused: linger so the answer reaches the client, then close.
    Failed,
    /// The control ended: close.
    Ended,
}

/// Shared between a session's loop and its stream tasks.
pub struct SessionCtx {
    pub peer: SocketAddr,
    /// The connection presented a client certificate from harp's CA.
    pub client_cert: bool,
    phase: watch::Sender<Phase>,
}

impl SessionCtx {
    fn new(peer: SocketAddr, client_cert: bool) -> SessionCtx {
        SessionCtx {
            peer,
            client_cert,
            phase: watch::channel(Phase::Fresh).0,
        }
    }

    /// Claims the session for a login; false if one already happened.
    fn begin_login(&self) -> bool {
        self.phase.send_if_modified(|p| {
            if matches!(p, Phase::Fresh) {
                *p = Phase::LoggingIn;
                true
            } else {
                false
            }
        })
    }

    pub fn set_active(&self, control: Arc<ControlHandle>) {
        self.phase.send_replace(Phase::Active(control));
    }

    pub fn set_failed(&self) {
        self.phase.send_replace(Phase::Failed);
    }

    pub fn set_ended(&self) {
        self.phase.send_replace(Phase::Ended);
    }

    fn control(&self) -> Option<Arc<ControlHandle>> {
        match &*self.phase.borrow() {
            Phase::Active(c) => Some(c.clone()),
            _ => None,
        }
    }
}

fn yamux_config() -> Config {
    Config {
        accept_backlog: YAMUX_ACCEPT_BACKLOG,
        enable_keepalive: true,
        keepalive_interval: YAMUX_KEEPALIVE_INTERVAL,
        connection_write_timeout: WRITE_TIMEOUT,
        max_stream_count: YAMUX_MAX_STREAMS,
        max_stream_window_size: YAMUX_MAX_STREAM_WINDOW,
    }
}

pub async fn serve(
    tunnel: Arc<Tunnel>,
    accepted: Accepted,
    peer: SocketAddr,
    shutdown: ShutdownWatch,
) {
    let client_cert = accepted.client_cert;
    match accepted.framing {
        Framing::Yamux => serve_yamux(tunnel, accepted.io, peer, client_cert, shutdown).await,
        Framing::Direct => serve_direct(tunnel, accepted.io, peer, client_cert).await,
    }
}

async fn serve_yamux(
    tunnel: Arc<Tunnel>,
    io: BoxIo,
    peer: SocketAddr,
    client_cert: bool,
    mut shutdown: ShutdownWatch,
) {
    let mut session = Session::new_server(io, yamux_config());
    let ctx = Arc::new(SessionCtx::new(peer, client_cert));
    let mut phase = ctx.phase.subscribe();
    let mut tasks = JoinSet::new();
    // No control yet: the login must come within the first-message timeout.
    let deadline = sleep(FIRST_BYTES_TIMEOUT);
    tokio::pin!(deadline);
    let reason: String = loop {
        tokio::select! {
            _ = shutdown.changed() => break "server shutting down".into(),
            _ = &mut deadline => {
                match &*phase.borrow() {
                    Phase::Fresh => break format!("no Login within {FIRST_BYTES_TIMEOUT:?}"),
                    // Logging in is bounded by its own timeouts; an active control by the
                    // yamux keepalive. The deadline only guards sessions without a control.
                    Phase::LoggingIn | Phase::Active(_) => {
                        deadline.as_mut().reset(Instant::now() + FIRST_BYTES_TIMEOUT);
                    }
                    Phase::Failed => break "login refused".into(),
                    Phase::Ended => break "control ended".into(),
                }
            }
            changed = phase.changed() => {
                if changed.is_err() { break "session state lost".into(); }
                let now = phase.borrow_and_update().clone();
                match now {
                    Phase::Failed => deadline.as_mut().reset(Instant::now() + LOGIN_FAILURE_LINGER),
                    Phase::Ended => break "control ended".into(),
                    _ => {}
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            next = session.next() => match next {
                Some(Ok(stream)) => {
                    if matches!(&*phase.borrow(), Phase::Failed | Phase::Ended) {
                        continue; // dropped: reset
                    }
                    tasks.spawn(serve_stream(tunnel.clone(), ctx.clone(), stream));
                }
                Some(Err(e)) => break format!("yamux: {e}"),
                None => break "connection closed by the client".into(),
            },
        }
    };
    if let Some(control) = ctx.control() {
        control.stop();
        if !control.wait_done(TEARDOWN_TIMEOUT).await {
            log::warn!("tunnel: client {peer}: control did not finish its teardown in time");
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    log::debug!("tunnel: session with {peer} closed: {reason}");
}

/// The first message of a yamux stream decides what it is.
async fn serve_stream(tunnel: Arc<Tunnel>, ctx: Arc<SessionCtx>, mut stream: StreamHandle) {
    let peer = ctx.peer;
    let first = match timeout(FIRST_BYTES_TIMEOUT, read_plain(&mut stream, Peer::Client)).await {
        Ok(Ok(msg)) => msg,
        Ok(Err(ReadError::Frame(_, e))) => {
            log::warn!(
                "tunnel: client {peer}: bad frame on a new stream, closing the connection: {e}"
            );
            ctx.set_ended();
            return;
        }
        Ok(Err(e)) => {
            log::debug!("tunnel: client {peer}: new stream ended before its first message: {e}");
            return;
        }
        Err(_) => {
            log::warn!(
                "tunnel: client {peer}: no message on a new stream within {FIRST_BYTES_TIMEOUT:?}"
            );
            return;
        }
    };
    match first {
        Message::Login(login) => {
            if !ctx.begin_login() {
                log::warn!("tunnel: client {peer}: a second Login on one connection, ignored");
                return;
            }
            let client_cert = ctx.client_cert;
            control::serve(
                tunnel,
                Box::new(stream),
                login,
                peer,
                client_cert,
                Some(ctx),
                None,
            )
            .await;
        }
        Message::NewWorkConn(req) => {
            let control = ctx.control().filter(|c| c.run_id == req.run_id);
            offer(control, WorkStream::Mux(stream), &req, peer);
        }
        other => log::warn!(
            "tunnel: client {peer}: unexpected {} as the first message of a stream, closed",
            other.message_type()
        ),
    }
}

fn offer(
    control: Option<Arc<ControlHandle>>,
    stream: WorkStream,
    req: &NewWorkConn,
    peer: SocketAddr,
) {
    let Some(control) = control else {
        log::warn!(
            "tunnel: client {peer}: no client control found for run id {:?}; work connection closed",
            req.run_id.chars().take(64).collect::<String>()
        );
        return;
    };
    if control.offer_work_conn(stream).is_err() {
        log::warn!(
            "tunnel: client {peer} (run_id {}): work connection pool is full, discarding",
            control.run_id
        );
    }
}

/// tcpMux off: this connection is one frp connection.
async fn serve_direct(tunnel: Arc<Tunnel>, mut io: BoxIo, peer: SocketAddr, client_cert: bool) {
    let first = match timeout(FIRST_BYTES_TIMEOUT, read_plain(&mut io, Peer::Client)).await {
        Ok(Ok(msg)) => msg,
        Ok(Err(e)) => {
            log::warn!("tunnel: client {peer}: closed before or in its first message: {e}");
            return;
        }
        Err(_) => {
            log::warn!("tunnel: client {peer}: no message within {FIRST_BYTES_TIMEOUT:?}");
            return;
        }
    };
    match first {
        Message::Login(login) => {
            control::serve(
                tunnel,
                io,
                login,
                peer,
                client_cert,
                None,
                Some(DIRECT_HEARTBEAT_TIMEOUT),
            )
            .await;
        }
        Message::NewWorkConn(req) => {
            let control = tunnel.registry.control(&req.run_id);
            // The pool owns the connection now; this task (Pingora's) may return.
            offer(control, WorkStream::Direct(io), &req, peer);
        }
        other => log::warn!(
            "tunnel: client {peer}: unexpected {} as the first message, closed",
            other.message_type()
        ),
    }
}
