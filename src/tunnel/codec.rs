//! frp message framing (spec §4): `type (1 byte) ‖ length (i64, big-endian) ‖ JSON body`.
//!
//! The codec only sees a byte stream: frames do not line up with yamux frames or with the
//! writes of the encryption layer, so the [`Decoder`] is incremental and keeps no state of its
//! own besides its limit. It never trusts the peer's length before checking it against that
//! limit, so a hostile length costs nothing.

use std::fmt;

use bytes::{Buf, BytesMut};

use super::msg::{Message, MessageType};

/// Type byte plus the eight length bytes.
pub const HEADER_LEN: usize = 9;

/// frp's fixed limit on a body; frpc drops the control stream on anything larger, and frp
/// never raises it.
pub const MAX_BODY_LEN: usize = 10240;

/// Why a frame could not be read or written. Every variant but [`FrameError::Json`] leaves
/// the stream unsynchronised, and frp closes the connection on all of them, so a caller should
/// treat any error as the end of the stream.
#[derive(Debug)]
pub enum FrameError {
    /// The first byte is not a frp message type (not consumed).
    UnknownType(u8),
    /// The length field is negative (frame not consumed).
    NegativeLength { msg_type: MessageType, len: i64 },
    /// The body is longer than the limit, read or written (frame not consumed).
    TooLong {
        msg_type: MessageType,
        len: u64,
        max: usize,
    },
    /// The body is not valid JSON for its type (the frame was consumed).
    Json {
        msg_type: MessageType,
        source: serde_json::Error,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::UnknownType(byte) => write!(
                f,
                "unknown frp message type byte 0x{byte:02x} (is the peer speaking frp, \
                 with the same tcpMux setting?)"
            ),
            FrameError::NegativeLength { msg_type, len } => {
                write!(f, "frp {msg_type} message has a negative length ({len})")
            }
            FrameError::TooLong { msg_type, len, max } => write!(
                f,
                "frp {msg_type} message body of {len} bytes exceeds the limit of {max} bytes"
            ),
            FrameError::Json { msg_type, source } => {
                write!(f, "frp {msg_type} message body is not valid JSON: {source}")
            }
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Json { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn frame(msg_type: MessageType, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(msg_type.as_byte());
    // A Vec never holds more than isize::MAX bytes, so the length always fits an i64.
    out.extend_from_slice(&(body.len() as i64).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Frames `msg` without checking the body limit, like frp's writers. Peers drop the stream on
/// a body over [`MAX_BODY_LEN`], so anything that echoes peer-controlled text (a proxy name in
/// an error, a plugin's reject reason) should go through [`try_encode`] instead.
pub fn encode(msg: &Message) -> Vec<u8> {
    frame(msg.message_type(), &msg.to_json())
}

/// Frames `msg`, refusing a body over [`MAX_BODY_LEN`] that the peer would reject anyway.
pub fn try_encode(msg: &Message) -> Result<Vec<u8>, FrameError> {
    let body = msg.to_json();
    if body.len() > MAX_BODY_LEN {
        return Err(FrameError::TooLong {
            msg_type: msg.message_type(),
            len: body.len() as u64,
            max: MAX_BODY_LEN,
        });
    }
    Ok(frame(msg.message_type(), &body))
}

/// Incremental frame reader: call [`Decoder::decode`] whenever bytes arrive.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_body_len: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder with frp's limit, [`MAX_BODY_LEN`].
    pub const fn new() -> Self {
        Decoder {
            max_body_len: MAX_BODY_LEN,
        }
    }

    /// A decoder with another body limit; only tests and fuzzing should need one.
    pub const fn with_max_body_len(max_body_len: usize) -> Self {
        Decoder { max_body_len }
    }

    pub const fn max_body_len(&self) -> usize {
        self.max_body_len
    }

    /// Takes one complete frame off the front of `src`.
    ///
    /// `Ok(None)` means more bytes are needed; `src` is then left as it was, apart from
    /// capacity reserved for the rest of a frame whose header has been checked (so at most
    /// [`HEADER_LEN`] + the limit). Like frp, an unknown type byte fails as soon as it
    /// arrives, without waiting for the length.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, FrameError> {
        let Some(&type_byte) = src.first() else {
            return Ok(None);
        };
        let msg_type =
            MessageType::from_byte(type_byte).ok_or(FrameError::UnknownType(type_byte))?;
        let Some(len_bytes) = src.get(1..HEADER_LEN) else {
            return Ok(None);
        };
        let mut len_field = [0u8; 8];
        len_field.copy_from_slice(len_bytes);
        let len = i64::from_be_bytes(len_field);
        if len < 0 {
            return Err(FrameError::NegativeLength { msg_type, len });
        }
        let too_long = FrameError::TooLong {
            msg_type,
            len: len as u64,
            max: self.max_body_len,
        };
        let body_len = match usize::try_from(len) {
            Ok(n) if n <= self.max_body_len => n,
            _ => return Err(too_long),
        };
        let frame_len = HEADER_LEN.checked_add(body_len).ok_or(too_long)?;
        if src.len() < frame_len {
            src.reserve(frame_len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let body = src.split_to(body_len);
        Message::from_json(msg_type, &body)
            .map(Some)
            .map_err(|source| FrameError::Json { msg_type, source })
    }
}
