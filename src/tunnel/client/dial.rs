//! Connecting to the server (spec §2.1): TCP with frpc's dial timeout, then, with TLS on, the
//! optional 0x17 head byte and a rustls handshake. Also the connection to a proxy's local
//! service (TCP or unix socket).

use std::io;
use std::time::Duration;

use socket2::SockRef;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};
use tokio::time::timeout;

use super::config::Target;
use super::limits::{LOCAL_DIAL_TIMEOUT, TCP_USER_TIMEOUT, TLS_HANDSHAKE_TIMEOUT};
use super::tls::TlsSetup;
use crate::tunnel::stream::{set_tcp_user_timeout, BoxIo};

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
/// vanished server is noticed soon. Best effort: failures only cost latency or detection time.
fn tune(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
    set_tcp_user_timeout(SockRef::from(tcp), TCP_USER_TIMEOUT);
}

/// Connects to a proxy's local service (TCP or unix socket).
pub async fn dial_local(target: &Target) -> io::Result<BoxIo> {
    let connect = async {
        match target {
            Target::Tcp { host, port } => {
                let tcp = TcpStream::connect((host.as_str(), *port)).await?;
                let _ = tcp.set_nodelay(true);
                Ok(Box::new(tcp) as BoxIo)
            }
            Target::Unix(path) => Ok(Box::new(UnixStream::connect(path).await?) as BoxIo),
        }
    };
    timeout(LOCAL_DIAL_TIMEOUT, connect)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
}
