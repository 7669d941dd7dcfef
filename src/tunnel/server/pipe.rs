//! Copies bytes both ways between a user connection and a work stream until both directions
//! have ended or the connection has been idle for the tunnel timeout.
//!
//! Like `tokio::io::copy_bidirectional`, with two differences that the tunnel needs:
//! * while the user side cannot take more bytes, the work stream is still drained
//!   (`WorkStream::poll_drain`), so one slow user connection never stalls the client's whole
//!   yamux session;
//! * an idle timeout (`HP_TIMEOUT_TUNNEL`, HAProxy's `timeout tunnel`), so no connection waits
//!   forever.
//!
//! A direction that reaches end-of-file half-closes the other side, then the pipe waits for the
//! other direction. Buffers are fixed (`PIPE_BUF` each way); this module must never grow them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::limits::PIPE_BUF;
use super::work_conn::WorkStream;

/// How a pipe ended, for the log line.
#[derive(Debug, PartialEq, Eq)]
pub enum PipeEnd {
    Done,
    Idle,
}

struct Half {
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    read_done: bool,
    shut_done: bool,
    /// Written but maybe not flushed: Pingora's TCP stream buffers writes until a flush.
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

struct Pipe<'a> {
    user: &'a mut TcpStream,
    work: &'a mut WorkStream,
    up: Half,
    down: Half,
    idle: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Future for Pipe<'_> {
    type Output = io::Result<PipeEnd>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut progress = false;
        let mut up_blocked = false;
        let mut down_blocked = false;
        if !this.up.finished() {
            progress |= this
                .up
                .poll_copy(cx, this.user, this.work, &mut up_blocked)?;
        }
        if !this.down.finished() {
            progress |= this
                .down
                .poll_copy(cx, this.work, this.user, &mut down_blocked)?;
            if down_blocked {
                this.work.poll_drain(cx);
            }
        }
        if this.up.finished() && this.down.finished() {
            return Poll::Ready(Ok(PipeEnd::Done));
        }
        if let (Some(idle), Some(timer)) = (this.idle, this.timer.as_mut()) {
            if progress {
                timer.as_mut().reset(Instant::now() + idle);
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(PipeEnd::Idle));
            }
        }
        Poll::Pending
    }
}

/// Runs the pipe; returns how it ended and the bytes moved (user → client, client → user).
pub async fn pipe(
    user: &mut TcpStream,
    work: &mut WorkStream,
    idle: Option<Duration>,
) -> (io::Result<PipeEnd>, u64, u64) {
    let mut p = Pipe {
        user,
        work,
        up: Half::new(),
        down: Half::new(),
        idle,
        timer: idle.map(|d| Box::pin(tokio::time::sleep(d))),
    };
    let result = (&mut p).await;
    (result, p.up.total, p.down.total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn copies_both_ways_and_propagates_half_close() {
        let (mut user_far, mut user) = tcp_pair().await;
        let (work_near, mut work_far) = tokio::io::duplex(1024);
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
    async fn idle_connection_ends() {
        let (_user_far, mut user) = tcp_pair().await;
        let (work_near, _work_far) = tokio::io::duplex(1024);
        let mut work = WorkStream::Direct(Box::new(work_near));
        let (r, _, _) = pipe(&mut user, &mut work, Some(Duration::from_millis(100))).await;
        assert_eq!(r.unwrap(), PipeEnd::Idle);
    }
}
