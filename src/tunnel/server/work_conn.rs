//! Work connections (spec §7.3, §7.4): the streams frpc opens on `ReqWorkConn`, parked in a
//! per-client pool until a user connection needs one, then bound to a proxy by `StartWorkConn`.
//!
//! The pool is a bounded queue (`pool_count + 10`, as frps); a stream offered to a full pool is
//! closed. Taking a stream never waits longer than `WORK_CONN_TIMEOUT`. This module must never
//! hold a stream it cannot hand out: streams of a finished client are dropped with its pool.

use tokio::sync::{mpsc, Mutex};
use tokio::time::timeout;

use super::limits::WORK_CONN_TIMEOUT;
use crate::tunnel::stream::WorkStream;

/// One client's parked work streams.
pub struct Pool {
    tx: mpsc::Sender<WorkStream>,
    rx: Mutex<mpsc::Receiver<WorkStream>>,
}

pub enum Take {
    /// Taken without waiting.
    Ready(WorkStream),
    /// The pool was empty; the caller must ask the client for one (`ReqWorkConn`) and `wait`.
    Empty,
}

impl Pool {
    pub fn new(capacity: usize) -> Pool {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Pool {
            tx,
            rx: Mutex::new(rx),
        }
    }

    /// Parks a stream; gives it back when the pool is full.
    pub fn offer(&self, stream: WorkStream) -> Result<(), WorkStream> {
        self.tx.try_send(stream).map_err(|e| match e {
            mpsc::error::TrySendError::Full(s) | mpsc::error::TrySendError::Closed(s) => s,
        })
    }

    pub async fn try_take(&self) -> Take {
        let mut rx = self.rx.lock().await;
        match rx.try_recv() {
            Ok(s) => Take::Ready(s),
            Err(_) => Take::Empty,
        }
    }

    /// Waits for a stream, at most `WORK_CONN_TIMEOUT` (including the wait for other takers).
    pub async fn wait(&self) -> Option<WorkStream> {
        timeout(WORK_CONN_TIMEOUT, async {
            let mut rx = self.rx.lock().await;
            rx.recv().await
        })
        .await
        .ok()
        .flatten()
    }
}
