//! frp messages on a byte stream: exact plain reads for the first message of a stream, plain
//! writes, and the AES-128-CFB control-stream reader and writer (spec §4, §8).
//!
//! The plain reader takes exactly one frame off the stream and nothing more (no read-ahead, as
//! Go), so what follows (user bytes on a work stream, ciphertext on the control stream) stays
//! in the stream for the next layer. Lengths are checked against the 10240-byte limit before
//! anything is allocated; this module must never buffer more than one frame plus one read.

use std::fmt;
use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use super::limits::WRITE_TIMEOUT;
use crate::tunnel::codec::{self, Decoder, FrameError, HEADER_LEN, MAX_BODY_LEN};
use crate::tunnel::crypto::{AesKey, Decryptor, Encryptor};
use crate::tunnel::msg::{Message, MessageType};

#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the stream before a complete frame.
    Eof,
    Io(io::Error),
    Frame(FrameError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Eof => f.write_str("stream closed by the client"),
            ReadError::Io(e) => write!(f, "read error: {e}"),
            ReadError::Frame(e) => write!(f, "bad frame: {e}"),
        }
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ReadError::Eof
        } else {
            ReadError::Io(e)
        }
    }
}

/// Reads exactly one plain frame. The type byte is checked before the length is read and the
/// length before the body is, like frp.
pub async fn read_plain<R: AsyncRead + Unpin>(r: &mut R) -> Result<Message, ReadError> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header[..1]).await?;
    let msg_type = MessageType::from_byte(header[0])
        .ok_or(ReadError::Frame(FrameError::UnknownType(header[0])))?;
    r.read_exact(&mut header[1..]).await?;
    let mut len_field = [0u8; 8];
    len_field.copy_from_slice(&header[1..]);
    let len = i64::from_be_bytes(len_field);
    if len < 0 {
        return Err(ReadError::Frame(FrameError::NegativeLength {
            msg_type,
            len,
        }));
    }
    let body_len = match usize::try_from(len) {
        Ok(n) if n <= MAX_BODY_LEN => n,
        _ => {
            return Err(ReadError::Frame(FrameError::TooLong {
                msg_type,
                len: len as u64,
                max: MAX_BODY_LEN,
            }))
        }
    };
    let mut frame = BytesMut::with_capacity(HEADER_LEN + body_len);
    frame.extend_from_slice(&header);
    frame.resize(HEADER_LEN + body_len, 0);
    r.read_exact(&mut frame[HEADER_LEN..]).await?;
    match Decoder::new().decode(&mut frame) {
        Ok(Some(msg)) => Ok(msg),
        Ok(None) => Err(ReadError::Eof),
        Err(e) => Err(ReadError::Frame(e)),
    }
}

/// Writes one plain frame (refusing a body frpc would reject) within `WRITE_TIMEOUT`.
pub async fn write_plain<W: AsyncWrite + Unpin>(w: &mut W, msg: &Message) -> io::Result<()> {
    let bytes =
        codec::try_encode(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    write_all_timeout(w, &bytes).await
}

async fn write_all_timeout<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    match timeout(WRITE_TIMEOUT, async {
        w.write_all(bytes).await?;
        w.flush().await
    })
    .await
    {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("write not finished within {WRITE_TIMEOUT:?}"),
        )),
    }
}

/// Decrypts and frames the client → server direction of a control stream.
pub struct ControlReader<R> {
    inner: R,
    decryptor: Decryptor,
    plain: BytesMut,
    decoder: Decoder,
    chunk: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> ControlReader<R> {
    pub fn new(inner: R, key: &AesKey) -> Self {
        ControlReader {
            inner,
            decryptor: Decryptor::new(key),
            plain: BytesMut::new(),
            decoder: Decoder::new(),
            chunk: vec![0u8; 4096].into_boxed_slice(),
        }
    }

    /// The next message; `Ok(None)` when the client closed the stream between messages.
    pub async fn next(&mut self) -> Result<Option<Message>, ReadError> {
        loop {
            if let Some(msg) = self
                .decoder
                .decode(&mut self.plain)
                .map_err(ReadError::Frame)?
            {
                return Ok(Some(msg));
            }
            let n = self.inner.read(&mut self.chunk).await?;
            if n == 0 {
                return if self.plain.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::Eof)
                };
            }
            self.decryptor.decrypt(&self.chunk[..n], &mut self.plain);
        }
    }
}

/// Encrypts the server → client direction of a control stream (IV sent before the first
/// ciphertext).
pub struct ControlWriter<W> {
    inner: W,
    encryptor: Encryptor,
    out: BytesMut,
}

impl<W: AsyncWrite + Unpin> ControlWriter<W> {
    pub fn new(inner: W, encryptor: Encryptor) -> Self {
        ControlWriter {
            inner,
            encryptor,
            out: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, msg: &Message) -> io::Result<()> {
        let frame =
            codec::try_encode(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.out.clear();
        self.encryptor.encrypt(&frame, &mut self.out);
        let out = std::mem::take(&mut self.out);
        let result = write_all_timeout(&mut self.inner, &out).await;
        self.out = out;
        result
    }

    pub async fn shutdown(&mut self) {
        let _ = timeout(WRITE_TIMEOUT, self.inner.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::msg::{NewProxy, ReqWorkConn};

    #[tokio::test]
    async fn plain_read_takes_exactly_one_frame() {
        let mut bytes = codec::encode(&Message::ReqWorkConn(ReqWorkConn {}));
        bytes.extend_from_slice(b"rest");
        let mut r: &[u8] = &bytes;
        let msg = read_plain(&mut r).await.unwrap();
        assert!(matches!(msg, Message::ReqWorkConn(_)));
        assert_eq!(r, b"rest");
    }

    #[tokio::test]
    async fn plain_read_rejects_unknown_type_and_long_body() {
        let mut r: &[u8] = b"Zxxxxxxxx";
        assert!(matches!(
            read_plain(&mut r).await,
            Err(ReadError::Frame(FrameError::UnknownType(b'Z')))
        ));
        let mut long = vec![b'p'];
        long.extend_from_slice(&(MAX_BODY_LEN as i64 + 1).to_be_bytes());
        let mut r: &[u8] = &long;
        assert!(matches!(
            read_plain(&mut r).await,
            Err(ReadError::Frame(FrameError::TooLong { .. }))
        ));
    }

    #[tokio::test]
    async fn encrypted_round_trip_in_small_chunks() {
        let key = AesKey::from_token("");
        let (a, b) = tokio::io::duplex(7);
        let mut w = ControlWriter::new(a, Encryptor::with_random_iv(&key).unwrap());
        let mut r = ControlReader::new(b, &key);
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
