//! frp messages on the client's byte streams (spec §4, §8): exact plain reads (LoginResp,
//! StartWorkConn), plain writes (Login, NewWorkConn), and the AES-128-CFB control stream.
//!
//! The plain reader takes exactly one frame and nothing more, so the bytes after it (the
//! server's IV right behind LoginResp, user bytes right behind StartWorkConn) stay in the
//! stream for the next layer. Every length is checked against the 10240-byte limit before
//! anything is allocated; every write is bounded by `WRITE_TIMEOUT`.

use std::fmt;
use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::timeout;

use super::limits::WRITE_TIMEOUT;
use crate::tunnel::codec::{self, Decoder, FrameError, HEADER_LEN, MAX_BODY_LEN};
use crate::tunnel::crypto::{AesKey, Decryptor, Encryptor};
use crate::tunnel::msg::{Message, MessageType};
use crate::tunnel::stream::BoxIo;

#[derive(Debug)]
pub enum ReadError {
    /// The server closed the stream (before a complete frame).
    Eof,
    Io(io::Error),
    /// Not an frp frame: the session must end.
    Frame(FrameError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Eof => f.write_str("closed by the server"),
            ReadError::Io(e) => write!(f, "read error: {e}"),
            ReadError::Frame(e) => write!(f, "bad frame from the server: {e}"),
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

/// Reads exactly one plain frame.
pub async fn read_plain<R: AsyncRead + Unpin>(r: &mut R) -> Result<Message, ReadError> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header[..1]).await?;
    // Like frp: an unknown type fails before the length is read.
    if MessageType::from_byte(header[0]).is_none() {
        return Err(ReadError::Frame(FrameError::UnknownType(header[0])));
    }
    r.read_exact(&mut header[1..]).await?;
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[1..]);
    let len = i64::from_be_bytes(len);
    let body_len = usize::try_from(len)
        .ok()
        .filter(|n| *n <= MAX_BODY_LEN)
        // Out of range: let the decoder produce the precise error from the header alone.
        .unwrap_or(0);
    let mut frame = BytesMut::with_capacity(HEADER_LEN + body_len);
    frame.extend_from_slice(&header);
    if len >= 0 && body_len as i64 == len {
        frame.resize(HEADER_LEN + body_len, 0);
        r.read_exact(&mut frame[HEADER_LEN..]).await?;
    }
    match Decoder::new().decode(&mut frame) {
        Ok(Some(msg)) => Ok(msg),
        Ok(None) => Err(ReadError::Eof),
        Err(e) => Err(ReadError::Frame(e)),
    }
}

/// Writes one plain frame, refusing one the server would reject as too long.
pub async fn write_plain<W: AsyncWrite + Unpin>(w: &mut W, msg: &Message) -> io::Result<()> {
    let frame =
        codec::try_encode(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    write_timed(w, &frame).await
}

async fn write_timed<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    timeout(WRITE_TIMEOUT, async {
        w.write_all(bytes).await?;
        w.flush().await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))?
}

/// The receiving half of the encrypted control stream.
pub struct ControlReader {
    rd: ReadHalf<BoxIo>,
    dec: Decryptor,
    plain: BytesMut,
    decoder: Decoder,
    chunk: Box<[u8]>,
}

impl ControlReader {
    pub fn new(rd: ReadHalf<BoxIo>, key: &AesKey) -> ControlReader {
        ControlReader {
            rd,
            dec: Decryptor::new(key),
            plain: BytesMut::new(),
            decoder: Decoder::new(),
            chunk: vec![0u8; 4096].into_boxed_slice(),
        }
    }

    /// The next message. Cancel-safe: everything read so far stays buffered in `self`.
    pub async fn next(&mut self) -> Result<Message, ReadError> {
        loop {
            if let Some(msg) = self
                .decoder
                .decode(&mut self.plain)
                .map_err(ReadError::Frame)?
            {
                return Ok(msg);
            }
            let n = self.rd.read(&mut self.chunk).await?;
            if n == 0 {
                return Err(ReadError::Eof);
            }
            self.dec.decrypt(&self.chunk[..n], &mut self.plain);
        }
    }
}

/// The sending half of the encrypted control stream.
pub struct ControlWriter {
    wr: WriteHalf<BoxIo>,
    enc: Encryptor,
}

impl ControlWriter {
    pub fn new(wr: WriteHalf<BoxIo>, key: &AesKey) -> Result<ControlWriter, String> {
        let enc = Encryptor::with_random_iv(key).map_err(|e| e.to_string())?;
        Ok(ControlWriter { wr, enc })
    }

    pub async fn send(&mut self, msg: &Message) -> io::Result<()> {
        let frame =
            codec::try_encode(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut wire = BytesMut::with_capacity(frame.len() + 16);
        self.enc.encrypt(&frame, &mut wire);
        write_timed(&mut self.wr, &wire).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plain_read_takes_one_frame_and_leaves_the_rest() {
        let mut bytes = codec::encode(&Message::ReqWorkConn(Default::default()));
        bytes.extend_from_slice(b"rest");
        let mut r = &bytes[..];
        assert!(matches!(
            read_plain(&mut r).await.unwrap(),
            Message::ReqWorkConn(_)
        ));
        assert_eq!(r, b"rest");
    }

    #[tokio::test]
    async fn plain_read_rejects_bad_frames_without_reading_bodies() {
        let mut r = &b"zzzz"[..];
        assert!(matches!(
            read_plain(&mut r).await,
            Err(ReadError::Frame(FrameError::UnknownType(b'z')))
        ));
        let mut huge = vec![b'1'];
        huge.extend_from_slice(&(1i64 << 40).to_be_bytes());
        assert!(matches!(
            read_plain(&mut &huge[..]).await,
            Err(ReadError::Frame(FrameError::TooLong { .. }))
        ));
        let mut negative = vec![b'1'];
        negative.extend_from_slice(&(-1i64).to_be_bytes());
        assert!(matches!(
            read_plain(&mut &negative[..]).await,
            Err(ReadError::Frame(FrameError::NegativeLength { .. }))
        ));
        let truncated = &codec::encode(&Message::ReqWorkConn(Default::default()))[..5];
        assert!(matches!(
            read_plain(&mut &truncated[..]).await,
            Err(ReadError::Eof)
        ));
    }
}
