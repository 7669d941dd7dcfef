//! One logged-in client (frps' "control"): the Login answer, the encrypted control stream
//! (`NewProxy`, `CloseProxy`, Ping in; `NewProxyResp`, `ReqWorkConn`, Pong out), its work-connection
//! pool, and the teardown that frees its ports.
//!
//! Lifecycle: `serve` authenticates, registers the control (replacing, and waiting for, an
//! older one with the same `run_id`), answers `LoginResp` in plain text, then runs reader and
//! writer concurrently until the client goes, a frame is bad, or it is stopped (new login with
//! its `run_id`, session end, server shutdown). Teardown always runs, also when the task is
//! aborted (a drop guard), and a control is `done` only once its listeners are closed.
//! This module must never block the reader on the writer (the writer has its own bounded
//! queue and write timeouts) and never keep a proxy of a finished control.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::timeout;

use super::limits::{
    CONTROL_QUEUE, MAX_PENDING_WORK_REQUESTS, MAX_POOL_COUNT, MAX_RUN_ID_LEN, POOL_EXTRA,
    TEARDOWN_TIMEOUT, WORK_CONN_TIMEOUT, WRITE_TIMEOUT,
};
use super::login::{self, Rejection, ERR_INTERNAL, SERVER_VERSION};
use super::proxy;
use super::registry::stop_listener;
use super::session::SessionCtx;
use super::work_conn::{Pool, Take};
use super::Tunnel;
use crate::tunnel::crypto::{self, Encryptor};
use crate::tunnel::frames::{write_plain, ControlReader, ControlWriter, Peer, ReadError};
use crate::tunnel::msg::{Login, LoginResp, Message, Pong, ReqWorkConn, StartWorkConn};
use crate::tunnel::stream::{BoxIo, WorkStream};

/// The shared face of a control: what listeners, the registry and work streams use.
pub struct ControlHandle {
    /// Unique per login (a `run_id` can be reused by a re-login).
    pub id: u64,
    pub run_id: String,
    pub peer: SocketAddr,
    pub pool_count: usize,
    pool: Pool,
    queue: mpsc::Sender<Message>,
    /// `ReqWorkConn` still to send: a counter rather than queue entries, so a burst of user
    /// connections never loses a request to a full queue.
    work_wanted: AtomicUsize,
    work_wanted_notify: Notify,
    stop: watch::Sender<bool>,
    done: watch::Sender<bool>,
}

impl ControlHandle {
    /// Asks the client for one more work connection (sent by the writer). Never waits.
    pub fn request_work_conn(&self) {
        let _ = self
            .work_wanted
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_PENDING_WORK_REQUESTS).then_some(n + 1)
            });
        self.work_wanted_notify.notify_one();
    }

    /// Parks a work stream; a full pool gives it back (the caller drops it).
    pub fn offer_work_conn(&self, stream: WorkStream) -> Result<(), WorkStream> {
        if *self.stop.borrow() {
            return Err(stream);
        }
        self.pool.offer(stream)
    }

    /// Ends this control (idempotent); `wait_done` tells when its ports are free.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    pub async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Waits until teardown finished; false on timeout.
    pub async fn wait_done(&self, limit: Duration) -> bool {
        let mut rx = self.done.subscribe();
        let finished = timeout(limit, async { rx.wait_for(|d| *d).await.is_ok() }).await;
        finished.unwrap_or(false)
    }

    /// Takes a pooled work stream (asking the client for one if the pool is empty, waiting at
    /// most `WORK_CONN_TIMEOUT`), replenishes the pool and binds the stream to `proxy_name`
    /// with `StartWorkConn`. A stream whose write fails is skipped, up to `pool_count + 1` tries.
    pub async fn open_work_conn(
        &self,
        proxy_name: &str,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Result<WorkStream, String> {
        for _ in 0..self.pool_count + 1 {
            let mut stream = match self.pool.try_take().await {
                Take::Ready(s) => s,
                Take::Empty => {
                    self.request_work_conn();
                    tokio::select! {
                        s = self.pool.wait() => s.ok_or_else(|| format!(
                            "the client sent no work connection within {WORK_CONN_TIMEOUT:?}"
                        ))?,
                        _ = self.stopped() => return Err("the client disconnected".into()),
                    }
                }
            };
            self.request_work_conn();
            let start = Message::StartWorkConn(StartWorkConn {
                proxy_name: proxy_name.to_string(),
                src_addr: src.ip().to_string(),
                dst_addr: dst.ip().to_string(),
                src_port: src.port(),
                dst_port: dst.port(),
                error: String::new(),
            });
            match write_plain(&mut stream, &start, WRITE_TIMEOUT).await {
                Ok(()) => return Ok(stream),
                Err(e) => log::debug!(
                    "tunnel: work connection of {} unusable ({e}), trying the next",
                    self.run_id
                ),
            }
        }
        Err("every work connection the client offered failed".into())
    }

    async fn send(&self, msg: Message) -> bool {
        matches!(
            timeout(WRITE_TIMEOUT, self.queue.send(msg)).await,
            Ok(Ok(()))
        )
    }
}

/// Frees the registry entries of a control however its task ends (also on abort, where no
/// await is possible: listeners are then aborted without waiting).
struct Teardown {
    tunnel: Arc<Tunnel>,
    control: Arc<ControlHandle>,
    armed: bool,
}

impl Teardown {
    async fn run(mut self, reason: &str) {
        self.armed = false;
        self.control.stop();
        self.tunnel.registry.remove_control(&self.control);
        let closed = self.tunnel.registry.close_all(self.control.id).await;
        self.control.done.send_replace(true);
        let ports: Vec<String> = closed.iter().map(|(n, p)| format!("{n}:{p}")).collect();
        log::info!(
            "tunnel: client {} (run_id {}) disconnected: {reason}; released [{}]",
            self.control.peer,
            self.control.run_id,
            ports.join(", ")
        );
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.control.stop();
        self.tunnel.registry.remove_control(&self.control);
        for (_, _, listener) in self.tunnel.registry.take_all(self.control.id) {
            if let Some(task) = listener {
                task.abort();
            }
        }
        self.control.done.send_replace(true);
        log::info!(
            "tunnel: client {} (run_id {}) dropped",
            self.control.peer,
            self.control.run_id
        );
    }
}

async fn refuse(io: &mut BoxIo, peer: SocketAddr, error: &str, reason: &str) {
    log::warn!("tunnel: login from {peer} refused: {reason} (LoginResp error: {error:?})");
    let resp = Message::LoginResp(LoginResp {
        version: SERVER_VERSION.into(),
        run_id: String::new(),
        error: error.into(),
    });
    let _ = write_plain(io, &resp, WRITE_TIMEOUT).await;
    let _ = timeout(WRITE_TIMEOUT, io.shutdown()).await;
}

/// Handles a Login received as the first message of `io` (a yamux stream, or a whole direct
/// connection), then runs the control until it ends. `session` is the yamux session it came on;
/// `client_cert`: the connection presented a client certificate from harp's CA.
pub async fn serve(
    tunnel: Arc<Tunnel>,
    mut io: BoxIo,
    login: Login,
    peer: SocketAddr,
    client_cert: bool,
    session: Option<Arc<SessionCtx>>,
    heartbeat_timeout: Option<Duration>,
) {
    let fail = |s: &Option<Arc<SessionCtx>>| {
        if let Some(s) = s {
            s.set_failed();
        }
    };
    // Canonical (an IPv4 client on a dual-stack listener is ::ffff:a.b.c.d), as the gateway
    // keys the shared ban list.
    let ip = peer.ip().to_canonical();
    if let Err(Rejection {
        error,
        reason,
        strike,
    }) = login::authenticate(&tunnel.admission, ip, &login, client_cert)
    {
        if strike {
            tunnel.admission.strike(ip);
        }
        refuse(&mut io, peer, error, reason).await;
        fail(&session);
        return;
    }
    let run_id = if login.run_id.is_empty() {
        match crypto::new_run_id() {
            Ok(id) => id,
            Err(e) => {
                refuse(&mut io, peer, ERR_INTERNAL, &e.to_string()).await;
                fail(&session);
                return;
            }
        }
    } else if !valid_run_id(&login.run_id) {
        refuse(
            &mut io,
            peer,
            ERR_INTERNAL,
            "run_id too long or not [A-Za-z0-9_-]",
        )
        .await;
        fail(&session);
        return;
    } else {
        login.run_id.clone()
    };
    let encryptor = match Encryptor::with_random_iv(&tunnel.aes_key) {
        Ok(e) => e,
        Err(e) => {
            refuse(&mut io, peer, ERR_INTERNAL, &e.to_string()).await;
            fail(&session);
            return;
        }
    };
    let pool_count = login.pool_count.clamp(0, MAX_POOL_COUNT) as usize;
    let (queue, queue_rx) = mpsc::channel(CONTROL_QUEUE);
    let control = Arc::new(ControlHandle {
        id: tunnel.registry.next_id(),
        run_id: run_id.clone(),
        peer,
        pool_count,
        pool: Pool::new(pool_count + POOL_EXTRA),
        queue,
        work_wanted: AtomicUsize::new(0),
        work_wanted_notify: Notify::new(),
        stop: watch::channel(false).0,
        done: watch::channel(false).0,
    });
    let old = match tunnel.registry.insert_control(control.clone()) {
        Err(_) => {
            refuse(&mut io, peer, ERR_INTERNAL, "too many clients logged in").await;
            fail(&session);
            return;
        }
        Ok(old) => old,
    };
    // From here on the registry holds this control: the guard removes it however this ends.
    let teardown = Teardown {
        tunnel: tunnel.clone(),
        control: control.clone(),
        armed: true,
    };
    if let Some(old) = old {
        log::info!(
            "tunnel: client {peer} logs in again with run_id {run_id}; closing its previous \
             session from {}",
            old.peer
        );
        old.stop();
        if !old.wait_done(TEARDOWN_TIMEOUT).await {
            log::warn!("tunnel: previous session of run_id {run_id} did not end in time");
        }
    }
    let resp = Message::LoginResp(LoginResp {
        version: SERVER_VERSION.into(),
        run_id: run_id.clone(),
        error: String::new(),
    });
    if let Err(e) = write_plain(&mut io, &resp, WRITE_TIMEOUT).await {
        fail(&session);
        teardown.run(&format!("LoginResp not sent: {e}")).await;
        return;
    }
    if let Some(s) = &session {
        s.set_active(control.clone());
    }
    log::info!(
        "tunnel: client {peer} logged in (run_id {run_id}, frpc {:?} {:?}/{:?}, pool {pool_count}{})",
        login.version,
        login.os,
        login.arch,
        if session.is_some() { ", tcpMux" } else { "" }
    );
    let reason = run(
        &tunnel,
        &control,
        io,
        encryptor,
        queue_rx,
        heartbeat_timeout,
    )
    .await;
    teardown.run(&reason).await;
    if let Some(s) = &session {
        s.set_ended();
    }
}

/// frpc only ever sends back the id we gave it (16 hex digits); anything else is not kept,
/// since the id ends up in logs and as a registry key.
fn valid_run_id(id: &str) -> bool {
    id.len() <= MAX_RUN_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The encrypted part: reader and writer run concurrently until one ends or `stop`.
async fn run(
    tunnel: &Arc<Tunnel>,
    control: &Arc<ControlHandle>,
    io: BoxIo,
    encryptor: Encryptor,
    mut queue_rx: mpsc::Receiver<Message>,
    heartbeat_timeout: Option<Duration>,
) -> String {
    let (rd, wr) = tokio::io::split(io);
    let mut reader = ControlReader::new(rd, &tunnel.aes_key, Peer::Client);
    let mut writer = ControlWriter::new(wr, encryptor, WRITE_TIMEOUT);
    for _ in 0..control.pool_count {
        control.request_work_conn();
    }
    let writing = async {
        loop {
            tokio::select! {
                msg = queue_rx.recv() => {
                    let Some(msg) = msg else { return "control queue closed".to_string() };
                    if let Err(e) = writer.send(&msg).await {
                        return format!("control stream write failed: {e}");
                    }
                }
                _ = control.work_wanted_notify.notified() => {
                    let wanted = control.work_wanted.swap(0, Ordering::Relaxed);
                    for _ in 0..wanted {
                        if let Err(e) = writer.send(&Message::ReqWorkConn(ReqWorkConn {})).await {
                            return format!("control stream write failed: {e}");
                        }
                    }
                }
            }
        }
    };
    let reading = async {
        loop {
            let next = match heartbeat_timeout {
                Some(limit) => match timeout(limit, reader.next()).await {
                    Ok(r) => r,
                    Err(_) => return format!("no message (heartbeat) for {limit:?}"),
                },
                None => reader.next().await,
            };
            match next {
                Ok(Some(msg)) => {
                    if let Err(why) = handle(tunnel, control, msg).await {
                        return why;
                    }
                }
                Ok(None) => return "the client closed the control stream".to_string(),
                Err(ReadError::Frame(_, e)) => {
                    return format!("bad frame on the control stream: {e}")
                }
                Err(e) => return format!("control stream: {e}"),
            }
        }
    };
    let reason = tokio::select! {
        r = writing => r,
        r = reading => r,
        _ = control.stopped() => "stopped (session ended, replaced by a new login, or shutdown)".to_string(),
    };
    writer.shutdown().await;
    reason
}

async fn handle(
    tunnel: &Arc<Tunnel>,
    control: &Arc<ControlHandle>,
    msg: Message,
) -> Result<(), String> {
    match msg {
        Message::NewProxy(req) => {
            let resp = proxy::register(tunnel, control, req).await;
            if !control.send(Message::NewProxyResp(resp)).await {
                return Err("control writer stalled".into());
            }
        }
        Message::CloseProxy(req) => {
            if tunnel
                .registry
                .close_proxy(control.id, &req.proxy_name)
                .await
            {
                log::info!(
                    "tunnel: client {} closed proxy [{}]",
                    control.peer,
                    req.proxy_name
                );
            }
        }
        // Answered whatever our own heartbeat setting, as frps (spec §7.6).
        Message::Ping(_) => {
            if !control.send(Message::Pong(Pong::default())).await {
                return Err("control writer stalled".into());
            }
        }
        other => log::debug!(
            "tunnel: ignoring {} on the control stream of {}",
            other.message_type(),
            control.peer
        ),
    }
    Ok(())
}

/// Stops a listener of a reservation that lost its control meanwhile.
pub(super) async fn discard_listener(task: tokio::task::JoinHandle<()>) {
    stop_listener(Some(task)).await;
}

#[cfg(test)]
impl ControlHandle {
    /// A control with no connection behind it, for registry tests.
    pub(crate) fn detached(id: u64, run_id: &str) -> Arc<ControlHandle> {
        Arc::new(ControlHandle {
            id,
            run_id: run_id.into(),
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            pool_count: 1,
            pool: Pool::new(1),
            queue: mpsc::channel(1).0,
            work_wanted: AtomicUsize::new(0),
            work_wanted_notify: Notify::new(),
            stop: watch::channel(false).0,
            done: watch::channel(false).0,
        })
    }
}
