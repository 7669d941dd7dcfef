//! Copies bytes both ways between a work stream and the local service until both directions
//! have ended; an end of file on one side half-closes the other (more forgiving than frp's
//! join, which closes both at once and can cut a response short).
//!
//! Why not `tokio::io::copy_bidirectional`: tokio-yamux hands a stream its frames through an
//! 8-slot queue and stops reading the whole connection while one queue is full, so a local
//! service that is slow to take bytes would stall every stream of the session, the control
//! stream and yamux keepalive answers included. While the local side cannot take more, this
//! pipe keeps draining the work stream into the stream's own buffer (bounded by the 6 MiB
//! yamux window: the server gets no new window until the bytes are really consumed).
//!
//! No idle timeout: frpc has none, Docker API streams (logs, attach, events) sit idle for long,
//! and the server side applies HaRP's tunnel timeout; a dead session ends the pipe's task.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::limits::PIPE_BUF;

/// A byte stream that can take in data it has already been sent without it being read.
pub trait Drain {
    fn poll_drain(&mut self, cx: &mut Context<'_>);
}

/// One direction: a buffer filled from `r` and emptied into `w`.
struct Direction {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    read_eof: bool,
    shut_down: bool,
}

impl Direction {
    fn new() -> Direction {
        Direction {
            buf: vec![0u8; PIPE_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            read_eof: false,
            shut_down: false,
        }
    }

    /// Ready when this direction is finished (EOF read, everything written, `w` shut down).
    /// Sets `write_blocked` when it waits for `w` with bytes in hand.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut R,
        w: &mut W,
        write_blocked: &mut bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            if self.start < self.end {
                match Pin::new(&mut *w).poll_write(cx, &self.buf[self.start..self.end]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => self.start += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        *write_blocked = true;
                        return Poll::Pending;
                    }
                }
                continue;
            }
            if self.read_eof {
                if !self.shut_down {
                    // A failed half-close only matters to a peer that is gone anyway.
                    let _ = ready!(Pin::new(&mut *w).poll_shutdown(cx));
                    self.shut_down = true;
                }
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut self.buf);
            match Pin::new(&mut *r).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    self.start = 0;
                    self.end = n;
                    self.read_eof = n == 0;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Nothing to read now: make sure what was written goes out.
                    ready!(Pin::new(&mut *w).poll_flush(cx))?;
                    return Poll::Pending;
                }
            }
        }
    }
}

struct Pipe<'a, A, B> {
    work: &'a mut A,
    local: &'a mut B,
    up: Direction,
    down: Direction,
    up_done: bool,
    down_done: bool,
}

impl<A, B> Future for Pipe<'_, A, B>
where
    A: AsyncRead + AsyncWrite + Drain + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.down_done {
            // work → local
            let mut blocked = false;
            match this.down.poll_copy(cx, this.work, this.local, &mut blocked) {
                Poll::Ready(r) => {
                    r?;
                    this.down_done = true;
                }
                Poll::Pending if blocked => this.work.poll_drain(cx),
                Poll::Pending => {}
            }
        }
        if !this.up_done {
            // local → work
            let mut blocked = false;
            if let Poll::Ready(r) = this.up.poll_copy(cx, this.local, this.work, &mut blocked) {
                r?;
                this.up_done = true;
            }
        }
        if this.up_done && this.down_done {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

/// Runs until both directions ended; an error in either ends both.
pub async fn pipe<A, B>(work: &mut A, local: &mut B) -> io::Result<()>
where
    A: AsyncRead + AsyncWrite + Drain + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    Pipe {
        work,
        local,
        up: Direction::new(),
        down: Direction::new(),
        up_done: false,
        down_done: false,
    }
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

    struct NoDrain(DuplexStream);

    impl Drain for NoDrain {
        fn poll_drain(&mut self, _cx: &mut Context<'_>) {}
    }

    impl AsyncRead for NoDrain {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for NoDrain {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    #[tokio::test]
    async fn copies_both_ways_with_half_close() {
        let (work_near, mut work_far) = duplex(64);
        let (local_near, mut local_far) = duplex(64);
        let task = tokio::spawn(async move {
            let mut work = NoDrain(work_near);
            let mut local = local_near;
            pipe(&mut work, &mut local).await
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
        task.await.unwrap().unwrap();
    }
}
