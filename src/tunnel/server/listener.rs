//! The loopback listener of a registered proxy (frps' `proxyBindAddr = 127.0.0.1`): every
//! accepted connection gets a work connection bound by `StartWorkConn`, then bytes flow both
//! ways. The gateway reaches ExApps at `127.0.0.1:<port>` from Nextcloud's metadata, and
//! AppAPI/bollard reach Docker at `127.0.0.1:24000`, so this is all they need.
//!
//! The task owns the socket: stopping it (abort, then await) closes the port at once. User
//! connections live in the task's `JoinSet`, so they end with it. At most
//! `MAX_USER_CONNS_PER_PROXY` at once; beyond that new connections are closed immediately.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::limits::MAX_USER_CONNS_PER_PROXY;
use super::registry::ProxyHandle;
use crate::tunnel::pipe::{pipe, PipeEnd};

pub async fn bind(port: u16) -> io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await
}

pub fn spawn(socket: TcpListener, proxy: ProxyHandle, idle: Option<Duration>) -> JoinHandle<()> {
    tokio::spawn(accept_loop(socket, proxy, idle))
}

async fn accept_loop(socket: TcpListener, proxy: ProxyHandle, idle: Option<Duration>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = socket.accept() => match accepted {
                Ok((user, peer)) => {
                    if conns.len() >= MAX_USER_CONNS_PER_PROXY {
                        log::warn!(
                            "tunnel: proxy [{}] has {MAX_USER_CONNS_PER_PROXY} connections \
                             open; closing a new one from {peer}",
                            proxy.name
                        );
                        continue;
                    }
                    conns.spawn(serve_user(user, peer, proxy.clone(), idle));
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    log::warn!("tunnel: accept on 127.0.0.1:{} failed: {e}", proxy.port);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

async fn serve_user(
    mut user: TcpStream,
    peer: SocketAddr,
    proxy: ProxyHandle,
    idle: Option<Duration>,
) {
    let local = match user.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let _ = user.set_nodelay(true);
    let mut work = match proxy.connect(peer, local).await {
        Ok(w) => w,
        Err(e) => {
            log::warn!(
                "tunnel: connection from {peer} to proxy [{}] (127.0.0.1:{}) closed: {e}",
                proxy.name,
                proxy.port
            );
            return;
        }
    };
    let (result, up, down) = pipe(&mut user, &mut work, idle).await;
    match result {
        Ok(PipeEnd::Done) => log::debug!(
            "tunnel: [{}] connection from {peer} done ({up} bytes in, {down} bytes out)",
            proxy.name
        ),
        Ok(PipeEnd::Idle) => log::info!(
            "tunnel: [{}] connection from {peer} closed after {:?} idle (HP_TIMEOUT_TUNNEL)",
            proxy.name,
            idle.unwrap_or_default()
        ),
        Err(e) => log::debug!(
            "tunnel: [{}] connection from {peer} ended: {e} ({up} bytes in, {down} bytes out)",
            proxy.name
        ),
    }
}
