//! One session with the server (spec §3, §7.1): connect, start yamux as its client side
//! (tcpMux; frpc opens stream 1 for the control and odd ids after it), log in on the control
//! stream, then hand over to [`Control`] until the session ends.
//!
//! The outcome tells the reconnect loop whether a login happened: failures before `LoginResp`
//! (dial, TLS, yamux, timeout, a `LoginResp` error) are login failures, which `loginFailExit`
//! acts on; anything after is the end of a working session.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_yamux::{Config as YamuxConfig, Session};

use super::control::Control;
use super::limits::{
    LOGIN_TIMEOUT, OPEN_STREAM_TIMEOUT, WRITE_TIMEOUT, YAMUX_ACCEPT_BACKLOG, YAMUX_MAX_STREAMS,
    YAMUX_MAX_STREAM_WINDOW,
};
use super::work::Opener;
use super::{unix_now, Shared};
use crate::tunnel::crypto;
use crate::tunnel::frames::{read_plain, write_plain, Peer};
use crate::tunnel::msg::{Login, Message};
use crate::tunnel::stream::BoxIo;

pub enum Outcome {
    /// No login: the error as frpc would report it.
    LoginFailed(String),
    /// A logged-in session ended, for this reason.
    Ended(String),
}

/// frp's yamux settings (spec §3.3), checked against tokio-yamux 0.3: the SYN of every stream
/// we open carries the window delta 6 MiB − 256 KiB = 6029312 as frpc's does, streams get odd
/// ids from 1, pings go out every keepalive interval and are answered. One difference: a ping
/// unanswered for over 30 s (tokio-yamux's fixed limit) ends the session only at a later
/// keepalive tick, so a hung server is noticed after ≤ 90 s instead of Go's 40 s; a vanished
/// host is noticed sooner through `TCP_USER_TIMEOUT` (the unacknowledged ping).
fn yamux_config(shared: &Shared) -> YamuxConfig {
    YamuxConfig {
        accept_backlog: YAMUX_ACCEPT_BACKLOG,
        enable_keepalive: true,
        keepalive_interval: shared.config.tcp_mux_keepalive,
        connection_write_timeout: WRITE_TIMEOUT,
        max_stream_count: YAMUX_MAX_STREAMS,
        max_stream_window_size: YAMUX_MAX_STREAM_WINDOW,
    }
}

/// Aborts a task when dropped, so nothing of a session outlives it.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type EndFuture = Pin<Box<dyn Future<Output = String> + Send>>;

/// Drives the yamux session in its own task; the returned future resolves when it ends.
fn drive(mut session: Session<BoxIo>) -> (AbortOnDrop, EndFuture) {
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let reason = loop {
            match session.next().await {
                // frps never opens streams; dropping it resets it.
                Some(Ok(stream)) => {
                    log::warn!("tunnel client: the server opened yamux stream, reset");
                    drop(stream);
                }
                Some(Err(e)) => break format!("yamux session error: {e}"),
                None => break "connection closed".to_string(),
            }
        };
        let _ = tx.send(reason);
    });
    let end = async move { rx.await.unwrap_or_else(|_| "yamux session ended".into()) };
    (AbortOnDrop(task), Box::pin(end))
}

/// Go's GOARCH names, which frps logs and passes to its plugins.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        other => other,
    }
}

fn login_message(shared: &Shared, run_id: &str) -> Message {
    let config = &shared.config;
    let timestamp = unix_now();
    Message::Login(Login {
        version: super::FRP_VERSION.into(),
        os: std::env::consts::OS.into(),
        arch: go_arch().into(),
        privilege_key: crypto::privilege_key(&config.token, timestamp),
        timestamp,
        run_id: run_id.to_string(),
        metas: config.metas.clone(),
        pool_count: config.pool_count.into(),
        ..Login::default()
    })
}

/// Connects, logs in and serves the control stream until the session ends. `run_id` is the
/// previous session's (empty before the first login) and is updated on login.
pub async fn run(shared: &Arc<Shared>, run_id: &mut String) -> Outcome {
    let io = match shared.dialer.dial().await {
        Ok(io) => io,
        Err(e) => return Outcome::LoginFailed(e),
    };
    let (_driver, session_end, opener, mut control_io): (_, EndFuture, _, BoxIo) = if shared
        .config
        .tcp_mux
    {
        let session = Session::new_client(io, yamux_config(shared));
        let mut control = session.control();
        let (driver, end) = drive(session);
        let stream = match timeout(OPEN_STREAM_TIMEOUT, control.open_stream()).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                return Outcome::LoginFailed(format!("cannot open the control stream: {e:?}"))
            }
            Err(_) => return Outcome::LoginFailed("opening the control stream timed out".into()),
        };
        (Some(driver), end, Opener::Mux(control), Box::new(stream))
    } else {
        // tcpMux off: this connection is the control; its end is seen by the reader.
        let end: EndFuture = Box::pin(std::future::pending());
        (None, end, Opener::Direct(shared.dialer.clone()), io)
    };

    let login = async {
        write_plain(
            &mut control_io,
            &login_message(shared, run_id),
            WRITE_TIMEOUT,
        )
        .await
        .map_err(|e| format!("cannot send Login: {e}"))?;
        match read_plain(&mut control_io, Peer::Server).await {
            Ok(Message::LoginResp(resp)) => Ok(resp),
            Ok(other) => Err(format!(
                "expected LoginResp, the server sent {}",
                other.message_type()
            )),
            Err(e) => Err(format!("reading LoginResp: {e}")),
        }
    };
    let resp = match timeout(LOGIN_TIMEOUT, login).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => return Outcome::LoginFailed(e),
        Err(_) => return Outcome::LoginFailed(format!("no LoginResp within {LOGIN_TIMEOUT:?}")),
    };
    if !resp.error.is_empty() {
        return Outcome::LoginFailed(resp.error);
    }
    *run_id = resp.run_id;
    log::info!(
        "tunnel client: logged in to {} (run id {})",
        shared.dialer.addr(),
        run_id
    );
    shared.status.send_modify(|s| {
        s.logged_in = true;
        s.run_id = run_id.clone();
        s.logins += 1;
    });
    let control = Control {
        shared: shared.clone(),
        opener,
        run_id: run_id.clone(),
    };
    let reason = control.run(control_io, session_end).await;
    shared.status.send_modify(|s| {
        s.logged_in = false;
        s.proxies.clear();
    });
    Outcome::Ended(reason)
}
