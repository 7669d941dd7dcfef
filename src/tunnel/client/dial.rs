//! Connecting to the server (spec §2.1): TCP with frpc's dial timeout, then, with TLS on, the
//! optional 0x17 head byte and a rustls handshake. Also the connection to a proxy's local
//! service (TCP or unix socket).

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::timeout;

use super::config::Target;
use super::limits::{LOCAL_DIAL_TIMEOUT, TCP_USER_TIMEOUT, TLS_HANDSHAKE_TIMEOUT};
use super::tls::TlsSetup;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection to the server: plain TCP or TLS over it.
pub type BoxIo = Box<dyn Io>;

/// The head byte frpc writes before TLS when `disableCustomTLSFirstByte = false`.
const CUSTOM_TLS_HEAD_BYTE: u8 = 0x17;

/// Dials the server; one per client, shared by every session.
pub struct Dialer {
    pub host: String,
    pub port: u16,
    pub timeout: Duration,
    pub tls: Option<TlsSetup>,
}

impl Dialer {
    /// `host:port` for logs.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub async fn dial(&self) -> Result<BoxIo, String> {
        let addr = self.addr();
        let tcp = timeout(
            self.timeout,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| format!("connecting to {addr} timed out after {:?}", self.timeout))?
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        tune(&tcp);
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let mut tcp = tcp;
        if tls.custom_first_byte {
            timeout(
                TLS_HANDSHAKE_TIMEOUT,
                tcp.write_all(&[CUSTOM_TLS_HEAD_BYTE]),
            )
            .await
            .map_err(|_| format!("writing to {addr} timed out"))?
            .map_err(|e| format!("cannot write to {addr}: {e}"))?;
        }
        let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
        let stream = timeout(
            TLS_HANDSHAKE_TIMEOUT,
            connector.connect(tls.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| format!("TLS handshake with {addr} timed out"))?
        .map_err(|e| format!("TLS handshake with {addr} failed: {e}"))?;
        Ok(Box::new(stream))
    }
}

/// No Nagle delay for small control messages, and a bounded wait for unacknowledged data so a
/// vanished server is noticed soon (see `TCP_USER_TIMEOUT`). Best effort: failures only cost
/// latency or detection time.
fn tune(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
    let ms = libc::c_uint::try_from(TCP_USER_TIMEOUT.as_millis()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: the descriptor is a live socket owned by `tcp` for the duration of the call, and
    // the option value is a c_uint of the size passed.
    unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&ms as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        );
    }
}

/// A connection to a proxy's local service.
pub enum Local {
    Tcp(TcpStream),
    Unix(UnixStream),
}

pub async fn dial_local(target: &Target) -> io::Result<Local> {
    let connect = async {
        match target {
            Target::Tcp { host, port } => {
                let tcp = TcpStream::connect((host.as_str(), *port)).await?;
                let _ = tcp.set_nodelay(true);
                Ok(Local::Tcp(tcp))
            }
            Target::Unix(path) => UnixStream::connect(path).await.map(Local::Unix),
        }
    };
    timeout(LOCAL_DIAL_TIMEOUT, connect)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
}

impl AsyncRead for Local {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Local::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Local::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Local {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Local::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Local::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Local::Tcp(s) => Pin::new(s).poll_flush(cx),
            Local::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Local::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Local::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
