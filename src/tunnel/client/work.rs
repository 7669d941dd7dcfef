//! Work connections (spec §7.3, §7.4), the client side: on each `ReqWorkConn` a new yamux stream
//! (or, with tcpMux off, a new connection) announces itself with `NewWorkConn`, waits in the
//! server's pool for `StartWorkConn`, then carries one user connection to the proxy's local
//! service.
//!
//! The wait for `StartWorkConn` has no timeout of its own (frpc's has none either: a pooled
//! stream may wait hours for a user); it is bounded by the session instead, whose end aborts
//! every work task (yamux keepalive, or the heartbeat with tcpMux off, detects a dead server).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::time::timeout;

use super::config::Target;
use super::dial::{dial_local, Dialer};
use super::limits::{OPEN_STREAM_TIMEOUT, WRITE_TIMEOUT};
use crate::tunnel::crypto;
use crate::tunnel::frames::{read_plain, write_plain, Peer};
use crate::tunnel::msg::{Message, NewWorkConn};
use crate::tunnel::pipe::pipe;
use crate::tunnel::stream::WorkStream;

/// How a session opens new frp connections to the server.
#[derive(Clone)]
pub enum Opener {
    Mux(tokio_yamux::Control),
    Direct(Arc<Dialer>),
}

impl Opener {
    pub async fn open(&self) -> Result<WorkStream, String> {
        let open = async {
            match self {
                Opener::Mux(control) => control
                    .clone()
                    .open_stream()
                    .await
                    .map(WorkStream::Mux)
                    .map_err(|e| format!("cannot open a yamux stream: {e:?}")),
                Opener::Direct(dialer) => dialer.dial().await.map(WorkStream::Direct),
            }
        };
        timeout(OPEN_STREAM_TIMEOUT, open)
            .await
            .map_err(|_| "opening a connection to the server timed out".to_string())?
    }
}

/// Proxies the server accepted (`NewProxyResp` without error), by name, with their targets.
/// Work connections for any other name are closed, as frpc does.
pub type RunningProxies = Arc<Mutex<HashMap<String, Target>>>;

/// What a work connection needs to introduce itself.
#[derive(Clone)]
pub struct WorkAuth {
    pub run_id: String,
    /// With the `NewWorkConns` auth scope: the frp token for its privilege key.
    pub token: Option<String>,
}

impl WorkAuth {
    fn hello(&self) -> Message {
        let mut hello = NewWorkConn {
            run_id: self.run_id.clone(),
            ..NewWorkConn::default()
        };
        if let Some(token) = &self.token {
            hello.timestamp = super::unix_now();
            hello.privilege_key = crypto::privilege_key(token, hello.timestamp);
        }
        Message::NewWorkConn(hello)
    }
}

/// One work connection, from opening to the end of its user connection. Failures are logged
/// and end only this connection.
pub async fn serve(opener: Opener, auth: WorkAuth, proxies: RunningProxies) {
    let mut work = match opener.open().await {
        Ok(w) => w,
        Err(e) => {
            log::warn!("tunnel client: work connection: {e}");
            return;
        }
    };
    if let Err(e) = write_plain(&mut work, &auth.hello(), WRITE_TIMEOUT).await {
        log::warn!("tunnel client: work connection: cannot send NewWorkConn: {e}");
        return;
    }
    let start = match read_plain(&mut work, Peer::Server).await {
        Ok(Message::StartWorkConn(start)) => start,
        Ok(other) => {
            log::warn!(
                "tunnel client: work connection: expected StartWorkConn, got {}; closed",
                other.message_type()
            );
            return;
        }
        Err(e) => {
            log::debug!("tunnel client: pooled work connection ended: {e}");
            return;
        }
    };
    if !start.error.is_empty() {
        log::warn!(
            "tunnel client: work connection refused by the server: {}",
            start.error
        );
        return;
    }
    let target = proxies
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&start.proxy_name)
        .cloned();
    let Some(target) = target else {
        log::warn!(
            "tunnel client: work connection for proxy {:?}, which is not running here; closed",
            start.proxy_name
        );
        return;
    };
    let user = format!("{}:{}", start.src_addr, start.src_port);
    let mut local = match dial_local(&target).await {
        Ok(l) => l,
        Err(e) => {
            log::warn!(
                "tunnel client: proxy {:?}: cannot connect to {target} for user {user}: {e}",
                start.proxy_name
            );
            return;
        }
    };
    log::debug!(
        "tunnel client: proxy {:?}: user {user} joined to {target}",
        start.proxy_name
    );
    // No idle timeout here: the server applies HaRP's (see `crate::tunnel::pipe`).
    let (result, _, _) = pipe(&mut local, &mut work, None).await;
    if let Err(e) = result {
        log::debug!(
            "tunnel client: proxy {:?}: user {user} ended with {e}",
            start.proxy_name
        );
    }
}
