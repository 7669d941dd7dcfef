//! Copies bytes both ways between a work stream and the connection it serves (a user
//! connection on the server, the proxy's local service on the client) until both directions
//! have ended, an error ends both, or, with an idle timeout, nothing moved for that long.
//!
//! Why not `tokio::io::copy_bidirectional`:
//! * tokio-yamux stops reading the whole connection while one stream's frame queue is full, so
//!   while the other side cannot take more bytes the work stream is still drained
//!   ([`Drain`]): one slow connection never stalls its session, the control stream and yamux
//!   keepalive included;
//! * the server needs an idle timeout (`HP_TIMEOUT_TUNNEL`, HAProxy's `timeout tunnel`) so no
//!   user connection waits forever. The client runs without one (`None`): frpc has none, Docker
//!   API streams (logs, attach, events) sit idle for long, the server side already applies
//!   HaRP's tunnel timeout, and a dead session ends the pipe's task.
//!
//! End of file in one direction half-closes the other side (more forgiving than frp's join,
//! which closes both at once and can cut a response short), then the pipe waits for the other
//! direction. Buffers are fixed ([`PIPE_BUF`] each way); this module must never grow them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::stream::Drain;

/// Copy buffer of one direction of a pipe.
pub const PIPE_BUF: usize = 16 * 1024;

/// How a pipe ended, for the log line.
#[derive(Debug, PartialEq, Eq)]
pub enum PipeEnd {
    Done,
    Idle,
}

/// One direction: a buffer filled from `r` and emptied into `w`.
struct Half {
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    read_done: bool,
    shut_done: bool,
    /// Written but maybe not flushed: Pingora's stream (the server's work connection with
    /// tcpMux off) buffers writes until a flush.
    need_flush: bool,
    /// Bytes moved, for the log line.
    total: u64,
}

impl Half {
    fn new() -> Half {
        Half {
            buf: vec![0u8; PIPE_BUF].into_boxed_slice(),
            pos: 0,
            end: 0,
            read_done: false,
            shut_done: false,
            need_flush: false,
            total: 0,
        }
    }

    /// End of file read, everything written and flushed, `w` shut down.
    fn finished(&self) -> bool {
        self.shut_done
    }

    /// Moves what it can from `r` to `w`. Returns whether anything happened (for the idle
    /// timer); errors end the whole pipe. `blocked_on_write` reports a pending write with a
    /// full buffer, so the caller can drain the work stream meanwhile.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut R,
        w: &mut W,
        blocked_on_write: &mut bool,
    ) -> io::Result<bool>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut progress = false;
        loop {
            if self.pos == self.end && !self.read_done {
                let mut rb = ReadBuf::new(&mut self.buf);
                match Pin::new(&mut *r).poll_read(cx, &mut rb)? {
                    Poll::Ready(()) => {
                        let n = rb.filled().len();
                        progress = true;
                        if n == 0 {
                            self.read_done = true;
                        } else {
                            self.pos = 0;
                            self.end = n;
                        }
                    }
                    Poll::Pending => {
                        // Nothing more to send for now: push out what is buffered.
                        if self.need_flush {
                            if let Poll::Ready(r) = Pin::new(&mut *w).poll_flush(cx) {
                                r?;
                                self.need_flush = false;
                            }
                        }
                        return Ok(progress);
                    }
                }
            }
            while self.pos < self.end {
                match Pin::new(&mut *w).poll_write(cx, &self.buf[self.pos..self.end])? {
                    Poll::Ready(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::WriteZero,
                            "peer accepts no more bytes",
                        ))
                    }
                    Poll::Ready(n) => {
                        self.pos += n;
                        self.total += n as u64;
                        self.need_flush = true;
                        progress = true;
                    }
                    Poll::Pending => {
                        *blocked_on_write = true;
                        return Ok(progress);
                    }
                }
            }
            if self.read_done && !self.shut_done {
                if self.need_flush {
                    match Pin::new(&mut *w).poll_flush(cx)? {
                        Poll::Ready(()) => self.need_flush = false,
                        Poll::Pending => return Ok(progress),
                    }
                }
                match Pin::new(&mut *w).poll_shutdown(cx) {
                    // A failed half-close only matters to a peer that is gone anyway.
                    Poll::Ready(_) => {
                        self.shut_done = true;
                        return Ok(true);
                    }
                    Poll::Pending => return Ok(progress),
                }
            }
            if self.shut_done {
                return Ok(progress);
            }
        }
    }
}

struct Pipe<'a, S, W> {
    side: &'a mut S,
    work: &'a mut W,
    to_work: Half,
    from_work: Half,
    /// The idle timeout and its deadline, re-armed whenever bytes move.
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
}

impl<S, W> Future for Pipe<'_, S, W>
where
    S: AsyncRead + AsyncWrite + Unpin,
    W: AsyncRead + AsyncWrite + Drain + Unpin,
{
    type Output = io::Result<PipeEnd>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut progress = false;
        if !this.to_work.finished() {
            let mut blocked = false;
            progress |= this
                .to_work
                .poll_copy(cx, this.side, this.work, &mut blocked)?;
        }
        if !this.from_work.finished() {
            let mut blocked = false;
            progress |= this
                .from_work
                .poll_copy(cx, this.work, this.side, &mut blocked)?;
            if blocked {
                this.work.poll_drain(cx);
            }
        }
        if this.to_work.finished() && this.from_work.finished() {
            return Poll::Ready(Ok(PipeEnd::Done));
        }
        if let Some((idle, timer)) = this.idle.as_mut() {
            if progress {
                timer.as_mut().reset(Instant::now() + *idle);
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(PipeEnd::Idle));
            }
        }
        Poll::Pending
    }
}

/// Runs the pipe between `side` and `work`, ending it after `idle` without traffic if given.
/// Returns how it ended and the bytes moved (`side` → `work`, `work` → `side`).
pub async fn pipe<S, W>(
    side: &mut S,
    work: &mut W,
    idle: Option<Duration>,
) -> (io::Result<PipeEnd>, u64, u64)
where
    S: AsyncRead + AsyncWrite + Unpin,
    W: AsyncRead + AsyncWrite + Drain + Unpin,
{
    let mut p = Pipe {
        side,
        work,
        to_work: Half::new(),
        from_work: Half::new(),
        idle: idle.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
    };
    let result = (&mut p).await;
    (result, p.to_work.total, p.from_work.total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::stream::WorkStream;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, BufWriter, DuplexStream};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::timeout;

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    /// `poll_drain` calls on a bare duplex used as the work stream (only the drain test does).
    static DRAINS: AtomicUsize = AtomicUsize::new(0);

    impl Drain for DuplexStream {
        fn poll_drain(&mut self, _cx: &mut Context<'_>) {
            DRAINS.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A peer that reads as end of file, takes no bytes and fails to half-close.
    struct Refusing;

    impl AsyncRead for Refusing {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            _buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Refusing {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            _buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(0))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
        }
    }

    #[tokio::test]
    async fn copies_both_ways_and_propagates_half_close() {
        let (mut user_far, mut user) = tcp_pair().await;
        let (work_near, mut work_far) = duplex(1024);
        let mut work = WorkStream::Direct(Box::new(work_near));
        let task = tokio::spawn(async move {
            let (r, up, down) = pipe(&mut user, &mut work, None).await;
            (r.unwrap(), up, down)
        });
        user_far.write_all(b"request").await.unwrap();
        user_far.shutdown().await.unwrap();
        let mut got = Vec::new();
        work_far.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"request");
        work_far.write_all(b"response").await.unwrap();
        work_far.shutdown().await.unwrap();
        let mut got = Vec::new();
        user_far.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"response");
        assert_eq!(task.await.unwrap(), (PipeEnd::Done, 7, 8));
    }

    #[tokio::test]
    async fn copies_more_than_every_buffer_with_half_close() {
        let (work_near, mut work_far) = duplex(64);
        let (local_near, mut local_far) = duplex(64);
        let task = tokio::spawn(async move {
            let mut work = WorkStream::Direct(Box::new(work_near));
            let mut local = local_near;
            pipe(&mut local, &mut work, None).await
        });
        // A request bigger than every buffer on the way, then a half-close.
        let request = vec![7u8; 100_000];
        let req = request.clone();
        let writer = tokio::spawn(async move {
            work_far.write_all(&req).await.unwrap();
            work_far.shutdown().await.unwrap();
            work_far
        });
        let mut got = Vec::new();
        local_far.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, request);
        let mut work_far = writer.await.unwrap();
        local_far.write_all(b"response").await.unwrap();
        local_far.shutdown().await.unwrap();
        let mut got = Vec::new();
        work_far.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"response");
        let (r, up, down) = task.await.unwrap();
        assert_eq!((r.unwrap(), up, down), (PipeEnd::Done, 8, 100_000));
    }

    /// The yamux case: while the other side takes no bytes, the work stream is drained.
    #[tokio::test]
    async fn drains_the_work_stream_while_the_other_side_is_blocked() {
        let (mut work, mut work_far) = duplex(64);
        let (mut side, mut side_far) = duplex(64);
        let task = tokio::spawn(async move { pipe(&mut side, &mut work, None).await });
        work_far.write_all(b"small").await.unwrap();
        let mut got = [0u8; 5];
        side_far.read_exact(&mut got).await.unwrap();
        assert_eq!(DRAINS.load(Ordering::Relaxed), 0, "nothing was blocked");
        // Far more than the side's 64-byte buffer, which nobody reads for now.
        let writer = tokio::spawn(async move {
            work_far.write_all(&[1u8; 10_000]).await.unwrap();
            work_far
        });
        timeout(Duration::from_secs(5), async {
            while DRAINS.load(Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the work stream was not drained while the side was blocked");
        let mut got = vec![0u8; 10_000];
        side_far.read_exact(&mut got).await.unwrap();
        drop(writer.await.unwrap());
        drop(side_far);
        let (r, _, down) = task.await.unwrap();
        assert_eq!((r.unwrap(), down), (PipeEnd::Done, 10_005));
    }

    /// Pingora's stream (the server's work connection with tcpMux off) sends nothing until
    /// flushed: bytes must go out as soon as the reading side has nothing more for now.
    #[tokio::test]
    async fn flushes_a_buffering_writer_when_input_pauses() {
        let (work_near, mut work_far) = duplex(1024);
        let (mut user_far, mut user) = tcp_pair().await;
        let mut work = WorkStream::Direct(Box::new(BufWriter::new(work_near)));
        let _task = tokio::spawn(async move { pipe(&mut user, &mut work, None).await });
        user_far.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        timeout(Duration::from_secs(5), work_far.read_exact(&mut got))
            .await
            .expect("buffered bytes were never flushed")
            .unwrap();
        assert_eq!(&got, b"ping");
    }

    #[tokio::test]
    async fn idle_connection_ends() {
        let (_user_far, mut user) = tcp_pair().await;
        let (work_near, _work_far) = duplex(1024);
        let mut work = WorkStream::Direct(Box::new(work_near));
        let (r, _, _) = pipe(&mut user, &mut work, Some(Duration::from_millis(100))).await;
        assert_eq!(r.unwrap(), PipeEnd::Idle);
    }

    #[tokio::test]
    async fn traffic_restarts_the_idle_timer() {
        let idle = Duration::from_millis(600);
        let (mut user_far, mut user) = tcp_pair().await;
        let (work_near, mut work_far) = duplex(1024);
        let mut work = WorkStream::Direct(Box::new(work_near));
        let task = tokio::spawn(async move { pipe(&mut user, &mut work, Some(idle)).await });
        // Two idle periods' worth of traffic, one byte every quarter period.
        let mut got = [0u8; 1];
        for _ in 0..8 {
            tokio::time::sleep(idle / 4).await;
            user_far.write_all(b"x").await.unwrap();
            work_far.read_exact(&mut got).await.unwrap();
        }
        assert!(!task.is_finished(), "ended while bytes were moving");
        let (r, up, down) = task.await.unwrap();
        assert_eq!((r.unwrap(), up, down), (PipeEnd::Idle, 8, 0));
    }

    /// The client's pipe has no idle timeout: a quiet connection stays open.
    #[tokio::test]
    async fn without_idle_timeout_a_quiet_connection_stays_open() {
        let (mut user_far, mut user) = tcp_pair().await;
        let (work_near, mut work_far) = duplex(1024);
        let mut work = WorkStream::Direct(Box::new(work_near));
        let task = tokio::spawn(async move { pipe(&mut user, &mut work, None).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!task.is_finished());
        user_far.write_all(b"still here").await.unwrap();
        let mut got = [0u8; 10];
        work_far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"still here");
        task.abort();
    }

    /// A peer that takes no bytes ends the pipe with an error; a failed half-close does not.
    #[tokio::test]
    async fn write_zero_is_an_error_and_a_failed_half_close_is_not() {
        let (work_near, mut work_far) = duplex(1024);
        let mut work = WorkStream::Direct(Box::new(work_near));
        work_far.write_all(b"lost").await.unwrap();
        let (r, _, _) = pipe(&mut Refusing, &mut work, None).await;
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::WriteZero);

        let (work_near, mut work_far) = duplex(1024);
        let mut work = WorkStream::Direct(Box::new(work_near));
        work_far.shutdown().await.unwrap();
        let (r, up, down) = pipe(&mut Refusing, &mut work, None).await;
        assert_eq!((r.unwrap(), up, down), (PipeEnd::Done, 0, 0));
    }
}
