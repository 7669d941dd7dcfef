//! What a new tunnel connection speaks (spec §2.2, §2.4): the first byte decides TLS or plain,
//! and the first byte after that decides yamux (tcpMux, frpc's default) or one frp connection
//! per stream (tcpMux off).
//!
//! * `0x17`: frp's custom TLS head byte; dropped, then a TLS handshake.
//! * `0x16`: a TLS ClientHello; TLS handshake on the stream including that byte.
//! * anything else: plain, refused when TLS is required (nothing is sent back, as frps).
//!
//! Then `0x00` (the yamux version byte) means yamux; `o`, `w` or `v` (Login, `NewWorkConn`,
//! `NewVisitorConn`) means a direct frp connection. frps does not auto-detect tcpMux; accepting
//! both costs one byte of look-ahead and lets either client configuration in.
//! Every read here has a timeout; this module must never send anything to a refused peer.

use std::fmt;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use super::io::Rewind;
use super::limits::{FIRST_BYTES_TIMEOUT, TLS_HANDSHAKE_TIMEOUT};
use super::tls::TlsSetup;
use crate::tunnel::msg::MessageType;
use crate::tunnel::stream::BoxIo;

const CUSTOM_TLS_HEAD_BYTE: u8 = 0x17;
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
const YAMUX_VERSION: u8 = 0x00;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One yamux session; every frp connection is a stream in it.
    Yamux,
    /// This connection is one frp connection (control or work).
    Direct,
}

pub struct Accepted {
    pub io: BoxIo,
    pub tls: bool,
    /// The client presented a certificate that chains to harp's CA (mutual TLS, TLS forced).
    pub client_cert: bool,
    pub framing: Framing,
}

#[derive(Debug)]
pub enum AcceptError {
    /// Closed or silent before the first byte.
    NoData(String),
    /// Plain connection while TLS is required.
    PlainRefused,
    /// A TLS client while no certificate is usable.
    NoCertificate,
    Handshake(String),
    /// Neither yamux nor frp after the transport layer.
    Unknown(u8),
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcceptError::NoData(why) => write!(f, "no data: {why}"),
            AcceptError::PlainRefused => f.write_str(
                "non-TLS connection received on a TLS-only server (HP_FRP_DISABLE_TLS is not \
                 true; the client must set transport.tls.enable = true)",
            ),
            AcceptError::NoCertificate => f.write_str(
                "TLS connection refused: no usable certificate in $HP_CERTS_DIR/frp (see the \
                 earlier tunnel log line)",
            ),
            AcceptError::Handshake(why) => write!(f, "TLS handshake failed: {why}"),
            AcceptError::Unknown(byte) => write!(
                f,
                "unknown protocol (first byte 0x{byte:02x}; expected yamux or an frp message)"
            ),
        }
    }
}

async fn first_byte<S: AsyncRead + Unpin>(io: &mut S) -> Result<u8, AcceptError> {
    match timeout(FIRST_BYTES_TIMEOUT, io.read_u8()).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(AcceptError::NoData(e.to_string())),
        Err(_) => Err(AcceptError::NoData(format!(
            "nothing received within {FIRST_BYTES_TIMEOUT:?}"
        ))),
    }
}

fn framing_of(byte: u8) -> Result<Framing, AcceptError> {
    if byte == YAMUX_VERSION {
        return Ok(Framing::Yamux);
    }
    match MessageType::from_byte(byte) {
        Some(MessageType::Login | MessageType::NewWorkConn | MessageType::NewVisitorConn) => {
            Ok(Framing::Direct)
        }
        _ => Err(AcceptError::Unknown(byte)),
    }
}

/// Classifies `stream` and runs the TLS handshake when the client starts one.
pub async fn accept(mut stream: BoxIo, tls: &TlsSetup) -> Result<Accepted, AcceptError> {
    let byte = first_byte(&mut stream).await?;
    let (mut transport, client_cert) = match byte {
        CUSTOM_TLS_HEAD_BYTE => handshake(stream, tls).await?,
        TLS_HANDSHAKE_RECORD => handshake(Box::new(Rewind::new(vec![byte], stream)), tls).await?,
        _ if tls.forced() => return Err(AcceptError::PlainRefused),
        _ => {
            return Ok(Accepted {
                framing: framing_of(byte)?,
                io: Box::new(Rewind::new(vec![byte], stream)),
                tls: false,
                client_cert: false,
            })
        }
    };
    let byte = first_byte(&mut transport).await?;
    Ok(Accepted {
        framing: framing_of(byte)?,
        io: Box::new(Rewind::new(vec![byte], transport)),
        tls: true,
        client_cert,
    })
}

/// The TLS stream, and whether the client presented a certificate (only asked for, and then
/// verified against `ca.crt`, while TLS is forced).
async fn handshake(stream: BoxIo, tls: &TlsSetup) -> Result<(BoxIo, bool), AcceptError> {
    let config: Arc<rustls::ServerConfig> =
        tls.server_config().ok_or(AcceptError::NoCertificate)?;
    match timeout(
        TLS_HANDSHAKE_TIMEOUT,
        TlsAcceptor::from(config).accept(stream),
    )
    .await
    {
        Ok(Ok(tls_stream)) => {
            let client_cert = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|chain| !chain.is_empty());
            Ok((Box::new(tls_stream), client_cert))
        }
        Ok(Err(e)) => Err(AcceptError::Handshake(e.to_string())),
        Err(_) => Err(AcceptError::Handshake(format!(
            "not finished within {TLS_HANDSHAKE_TIMEOUT:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_detection() {
        assert_eq!(framing_of(0).unwrap(), Framing::Yamux);
        assert_eq!(framing_of(b'o').unwrap(), Framing::Direct);
        assert_eq!(framing_of(b'w').unwrap(), Framing::Direct);
        assert!(framing_of(b'p').is_err());
        assert!(framing_of(b'G').is_err());
    }
}
