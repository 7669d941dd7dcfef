//! frp messages on a byte stream, for both ends (spec §4, §8): exact plain reads for the first
//! message of a stream (Login, `NewWorkConn`, `LoginResp`, `StartWorkConn`), plain writes, and the
//! AES-128-CFB control-stream reader and writer.
//!
//! The plain reader takes exactly one frame off the stream and nothing more (no read-ahead, as
//! Go), so what follows (user bytes on a work stream, the IV and ciphertext on the control
//! stream) stays in the stream for the next layer. Lengths are checked against the 10240-byte
//! limit before anything is allocated; this module must never buffer more than one frame plus
//! one read. Every write is bounded by the caller's write timeout, which stays in each side's
//! `limits` module.

use std::fmt;
use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use crate::tunnel::codec::{self, Decoder, FrameError, HEADER_LEN, MAX_BODY_LEN};
use crate::tunnel::crypto::{AesKey, Decryptor, Encryptor};
use crate::tunnel::msg::{Message, MessageType};

/// The end a stream is read from, so an error says which side closed it or sent garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Client,
    Server,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Peer::Client => "the client",
            Peer::Server => "the server",
        })
    }
}

#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the stream before a complete frame.
    Eof(Peer),
    Io(io::Error),
    /// Not an frp frame: the session must end.
    Frame(Peer, FrameError),
}

impl ReadError {
    fn io(e: io::Error, peer: Peer) -> ReadError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ReadError::Eof(peer)
        } else {
            ReadError::Io(e)
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Eof(peer) => write!(f, "closed by {peer}"),
            ReadError::Io(e) => write!(f, "read error: {e}"),
            ReadError::Frame(peer, e) => write!(f, "bad frame from {peer}: {e}"),
        }
    }
}

/// Reads exactly one plain frame sent by `peer`. Like frp, the type byte is checked before the
/// length is read, and the length before the body is.
pub async fn read_plain<R: AsyncRead + Unpin>(r: &mut R, peer: Peer) -> Result<Message, ReadError> {
    let io_err = |e| ReadError::io(e, peer);
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header[..1]).await.map_err(io_err)?;
    if MessageType::from_byte(header[0]).is_none() {
        return Err(ReadError::Frame(peer, FrameError::UnknownType(header[0])));
    }
    r.read_exact(&mut header[1..]).await.map_err(io_err)?;
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[1..]);
    let body_len = usize::try_from(i64::from_be_bytes(len))
        .ok()
        .filter(|n| *n <= MAX_BODY_LEN);
    let mut frame = BytesMut::with_capacity(HEADER_LEN + body_len.unwrap_or(0));
    frame.extend_from_slice(&header);
    // Out of range, the body is never read: the decoder rejects the header alone, with the
    // same error the control stream would give.
    if let Some(n) = body_len {
        frame.resize(HEADER_LEN + n, 0);
        r.read_exact(&mut frame[HEADER_LEN..])
            .await
            .map_err(io_err)?;
    }
    match Decoder::new().decode(&mut frame) {
        Ok(Some(msg)) => Ok(msg),
        Ok(None) => Err(ReadError::Eof(peer)),
        Err(e) => Err(ReadError::Frame(peer, e)),
    }
}

/// Writes one plain frame within `limit`, refusing a body the peer would reject as too long.
pub async fn write_plain<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &Message,
    limit: Duration,
) -> io::Result<()> {
    write_all_timeout(w, &encode(msg)?, limit).await
}

fn encode(msg: &Message) -> io::Result<Vec<u8>> {
    codec::try_encode(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

async fn write_all_timeout<W: AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
    limit: Duration,
) -> io::Result<()> {
    match timeout(limit, async {
        w.write_all(bytes).await?;
        w.flush().await
    })
    .await
    {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("write not finished within {limit:?}"),
        )),
    }
}

/// Decrypts and frames what the peer sends on a control stream.
pub struct ControlReader<R> {
    inner: R,
    peer: Peer,
    decryptor: Decryptor,
    plain: BytesMut,
    decoder: Decoder,
    chunk: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> ControlReader<R> {
    pub fn new(inner: R, key: &AesKey, peer: Peer) -> Self {
        ControlReader {
            inner,
            peer,
            decryptor: Decryptor::new(key),
            plain: BytesMut::new(),
            decoder: Decoder::new(),
            chunk: vec![0u8; 4096].into_boxed_slice(),
        }
    }

    /// The next message; `Ok(None)` when the peer closed the stream between messages.
    /// Cancel-safe: everything read so far stays buffered in `self`.
    pub async fn next(&mut self) -> Result<Option<Message>, ReadError> {
        loop {
            if let Some(msg) = self
                .decoder
                .decode(&mut self.plain)
                .map_err(|e| ReadError::Frame(self.peer, e))?
            {
                return Ok(Some(msg));
            }
            let n = self
                .inner
                .read(&mut self.chunk)
                .await
                .map_err(|e| ReadError::io(e, self.peer))?;
            if n == 0 {
                return if self.plain.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::Eof(self.peer))
                };
            }
            self.decryptor.decrypt(&self.chunk[..n], &mut self.plain);
        }
    }
}

/// Encrypts our direction of a control stream (the IV goes out before the first ciphertext).
pub struct ControlWriter<W> {
    inner: W,
    encryptor: Encryptor,
    limit: Duration,
    out: BytesMut,
}

impl<W: AsyncWrite + Unpin> ControlWriter<W> {
    /// `limit` bounds each message write, and the shutdown.
    pub fn new(inner: W, encryptor: Encryptor, limit: Duration) -> Self {
        ControlWriter {
            inner,
            encryptor,
            limit,
            out: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, msg: &Message) -> io::Result<()> {
        let frame = encode(msg)?;
        self.out.clear();
        self.encryptor.encrypt(&frame, &mut self.out);
        let out = std::mem::take(&mut self.out);
        let result = write_all_timeout(&mut self.inner, &out, self.limit).await;
        self.out = out;
        result
    }

    pub async fn shutdown(&mut self) {
        let _ = timeout(self.limit, self.inner.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::msg::{NewProxy, ReqWorkConn};

    const LIMIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn plain_read_takes_one_frame_and_leaves_the_rest() {
        let mut bytes = codec::encode(&Message::ReqWorkConn(ReqWorkConn {}));
        bytes.extend_from_slice(b"rest");
        let mut r = &bytes[..];
        assert!(matches!(
            read_plain(&mut r, Peer::Server).await.unwrap(),
            Message::ReqWorkConn(_)
        ));
        assert_eq!(r, b"rest");
    }

    #[tokio::test]
    async fn plain_read_rejects_bad_frames_without_reading_bodies() {
        for bytes in [&b"zzzz"[..], b"Zxxxxxxxx"] {
            assert!(matches!(
                read_plain(&mut &bytes[..], Peer::Client).await,
                Err(ReadError::Frame(Peer::Client, FrameError::UnknownType(t))) if t == bytes[0]
            ));
        }
        for len in [MAX_BODY_LEN as i64 + 1, 1i64 << 40] {
            let mut long = vec![b'p'];
            long.extend_from_slice(&len.to_be_bytes());
            assert!(matches!(
                read_plain(&mut &long[..], Peer::Client).await,
                Err(ReadError::Frame(_, FrameError::TooLong { .. }))
            ));
        }
        let mut negative = vec![b'1'];
        negative.extend_from_slice(&(-1i64).to_be_bytes());
        assert!(matches!(
            read_plain(&mut &negative[..], Peer::Server).await,
            Err(ReadError::Frame(_, FrameError::NegativeLength { .. }))
        ));
        let truncated = &codec::encode(&Message::ReqWorkConn(ReqWorkConn {}))[..5];
        assert!(matches!(
            read_plain(&mut &truncated[..], Peer::Server).await,
            Err(ReadError::Eof(Peer::Server))
        ));
    }

    #[test]
    fn errors_name_the_peer() {
        assert_eq!(
            ReadError::Eof(Peer::Server).to_string(),
            "closed by the server"
        );
        assert_eq!(
            ReadError::Frame(Peer::Client, FrameError::UnknownType(b'Z')).to_string(),
            format!(
                "bad frame from the client: {}",
                FrameError::UnknownType(b'Z')
            )
        );
    }

    #[tokio::test]
    async fn encrypted_round_trip_in_small_chunks() {
        let key = AesKey::from_token("");
        let (a, b) = tokio::io::duplex(7);
        let mut w = ControlWriter::new(a, Encryptor::with_random_iv(&key).unwrap(), LIMIT);
        let mut r = ControlReader::new(b, &key, Peer::Server);
        let msg = Message::NewProxy(NewProxy {
            proxy_name: "app".into(),
            proxy_type: "tcp".into(),
            remote_port: 23000,
            ..Default::default()
        });
        let sent = msg.clone();
        let writer = tokio::spawn(async move {
            w.send(&sent).await.unwrap();
            w.send(&sent).await.unwrap();
            w.shutdown().await;
        });
        assert_eq!(r.next().await.unwrap(), Some(msg.clone()));
        assert_eq!(r.next().await.unwrap(), Some(msg));
        assert_eq!(r.next().await.unwrap(), None);
        writer.await.unwrap();
    }
}
