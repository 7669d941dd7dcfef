//! The byte streams both tunnel ends carry frp over: the boxed transport, the work connection
//! that is either a yamux stream or a whole connection, and the socket option that bounds how
//! long a vanished peer goes unnoticed.
//!
//! Shared by [`super::server`] and [`super::client`] because the same tokio-yamux behaviour
//! constrains both sides (see [`Drain`]).

use std::io;
use std::os::fd::BorrowedFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_yamux::StreamHandle;

/// frp raises yamux's maximum stream window to 6 MiB on both sides (spec §3.3); both ends give
/// tokio-yamux this value.
pub const FRP_MAX_STREAM_WINDOW: u32 = 6 * 1024 * 1024;

/// Anything the tunnel can run on: TCP, TLS over TCP, a yamux stream.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection between the tunnel's ends: plain TCP or TLS over it.
pub type BoxIo = Box<dyn Io>;

/// A byte stream that can take in data it has already been sent without that data being read.
pub trait Drain {
    /// Never consumes bytes: what it takes in is still there for the next read.
    fn poll_drain(&mut self, cx: &mut Context<'_>);
}

/// A work connection: a yamux stream (tcpMux) or a whole connection (tcpMux off).
pub enum WorkStream {
    Mux(StreamHandle),
    Direct(BoxIo),
}

impl Drain for WorkStream {
    /// Lets a yamux stream take in frames that arrived for it while nobody reads it.
    ///
    /// Why: tokio-yamux hands frames to a stream through an 8-slot channel and stops reading the
    /// whole connection while one stream's channel is full. A peer of the work stream that is
    /// slow to accept data would then stall every stream of that session, the control stream
    /// and the keepalive included. Peeking moves the frames into the stream's own buffer, which
    /// the yamux window bounds (the other end gets no new window until the bytes are really
    /// read), so this costs no unbounded memory. The peeked bytes stay in place for the next
    /// read. A whole connection has no such queue: nothing to do.
    fn poll_drain(&mut self, cx: &mut Context<'_>) {
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

/// Sets `TCP_USER_TIMEOUT` on a tunnel socket: the kernel drops the connection when data it
/// sent (yamux keepalive pings every 30 s, at the least) stays unacknowledged that long.
///
/// Why: the yamux crate's own ping deadline is fixed at 30 s and checked only on the next ping
/// tick, so a peer whose host vanished (power loss, network cut: no FIN, no RST) would be
/// noticed only after 60 to 90 s (a client would hold its ports that long; Go frps: at most
/// 40 s); with this it is at most 30 s + `timeout`. Failure is only logged: the yamux
/// keepalive still notices, later.
pub fn set_tcp_user_timeout(socket: SockRef<'_>, timeout: Duration) {
    #[cfg(target_os = "linux")]
    if let Err(e) = socket.set_tcp_user_timeout(Some(timeout)) {
        log::debug!(
            "tunnel: cannot set TCP_USER_TIMEOUT on fd {}: {e}",
            std::os::fd::AsRawFd::as_raw_fd(&*socket)
        );
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (socket, timeout);
    }
}

/// The socket under a connection Pingora accepted, which exposes it only as its raw descriptor
/// (`UniqueID::id`); `None` for a stream without one.
pub fn pingora_socket(stream: &pingora::protocols::Stream) -> Option<BorrowedFd<'_>> {
    let fd = stream.id();
    // SAFETY: the descriptor is the stream's own socket, open as long as the stream lives, and
    // the borrow cannot outlive `stream`; -1 (no socket), which `borrow_raw` forbids, is excluded.
    (fd >= 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn tcp_user_timeout_reaches_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        set_tcp_user_timeout(SockRef::from(&tcp), Duration::from_secs(20));
        assert_eq!(
            SockRef::from(&tcp).tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(20))
        );
    }
}
