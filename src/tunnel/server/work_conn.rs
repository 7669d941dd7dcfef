//! Work connections (spec §7.3, §7.4): the streams frpc opens on `ReqWorkConn`, parked in a
//! per-client pool until a user connection needs one, then bound to a proxy by `StartWorkConn`.
//!
//! The pool is a bounded queue (`pool_count + 10`, as frps); a stream offered to a full pool is
//! closed. Taking a stream never waits longer than `WORK_CONN_TIMEOUT`. This module must never
//! hold a stream it cannot hand out: streams of a finished client are dropped with its pool.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, Mutex};
use tokio::time::timeout;
use tokio_yamux::StreamHandle;

use super::io::BoxIo;
use super::limits::WORK_CONN_TIMEOUT;

/// A work connection: a yamux stream (tcpMux) or a whole connection (tcpMux off).
pub enum WorkStream {
    Mux(StreamHandle),
    Direct(BoxIo),
}

impl WorkStream {
    /// Lets a yamux stream take in frames that arrived for it while nobody reads it.
    ///
    /// Why: tokio-yamux hands frames to a stream through an 8-slot channel and stops reading the
    /// whole connection while one stream's channel is full. A user connection that is slow to
    /// accept data would then stall every stream of that client, the control stream and the
    /// keepalive included. Peeking moves the frames into the stream's own buffer, which the
    /// yamux window bounds (the peer gets no new window until the bytes are really read), so
    /// this costs no unbounded memory. The peeked bytes stay in place for the next read.
    pub fn poll_drain(&mut self, cx: &mut Context<'_>) {
        if let WorkStream::Mux(stream) = self {
            let mut one = [0u8; 1];
            let mut buf = ReadBuf::new(&mut one);
            // Only the side effect matters: readiness and errors show up on the next read.
            let _ = stream.poll_peek(cx, &mut buf);
        }
    }
}

impl AsyncRead for WorkStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WorkStream::Mux(s) => Pin::new(s).poll_read(cx, buf),
            WorkStream::Direct(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WorkStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WorkStream::Mux(s) => Pin::new(s).poll_write(cx, buf),
            WorkStream::Direct(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WorkStream::Mux(s) => Pin::new(s).poll_flush(cx),
            WorkStream::Direct(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WorkStream::Mux(s) => Pin::new(s).poll_shutdown(cx),
            WorkStream::Direct(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

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
