//! The 12-byte yamux frame header (spec §3.2), as hashicorp yamux v0.1.1 writes it:
//! `version (u8) ‖ type (u8) ‖ flags (u16) ‖ stream id (u32) ‖ length (u32)`, big-endian.
//!
//! The session itself runs on a yamux implementation; this module pins the wire format
//! independently of it, so tests and fuzzing can check the bytes frpc sees (§12.6) and so a
//! capture can be decoded when debugging interop. Nothing else reads it, so it is compiled only
//! for the unit tests and the fuzz targets (`cfg(fuzzing)`, which cargo-fuzz sets).

use std::fmt;

pub const HEADER_LEN: usize = 12;

/// The only version yamux has; Go tears the session down on any other.
pub const PROTOCOL_VERSION: u8 = 0;

/// Every stream starts with this receive window; only Data payload counts against it.
pub const INITIAL_STREAM_WINDOW: u32 = 256 * 1024;

pub use super::stream::FRP_MAX_STREAM_WINDOW;

/// The window delta frp puts on a SYN and Go frps on the ACK: max window − initial window.
pub const FRP_WINDOW_DELTA: u32 = FRP_MAX_STREAM_WINDOW - INITIAL_STREAM_WINDOW;

/// GoAway codes, carried in the length field.
pub const GO_AWAY_NORMAL: u32 = 0;
pub const GO_AWAY_PROTOCOL_ERROR: u32 = 1;
pub const GO_AWAY_INTERNAL_ERROR: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// The only type followed by a payload, of `length` bytes.
    Data = 0,
    /// `length` is a window delta; also carries SYN/ACK/FIN/RST for a stream.
    WindowUpdate = 1,
    /// Stream 0; `length` is an opaque id the ACK echoes.
    Ping = 2,
    /// Stream 0; `length` is the GoAway code.
    GoAway = 3,
}

impl FrameType {
    pub const fn from_byte(byte: u8) -> Option<FrameType> {
        Some(match byte {
            0 => FrameType::Data,
            1 => FrameType::WindowUpdate,
            2 => FrameType::Ping,
            3 => FrameType::GoAway,
            _ => return None,
        })
    }
}

/// The flag bits. Unknown bits are kept, not rejected: Go only tests the bits it knows.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u16);

impl Flags {
    pub const NONE: Flags = Flags(0);
    /// Opens a stream; on Ping, a request.
    pub const SYN: Flags = Flags(0x0001);
    /// Accepts a stream; on Ping, the reply.
    pub const ACK: Flags = Flags(0x0002);
    /// Half-close.
    pub const FIN: Flags = Flags(0x0004);
    /// Reset.
    pub const RST: Flags = Flags(0x0008);

    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;

    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Flags::SYN, "SYN"),
            (Flags::ACK, "ACK"),
            (Flags::FIN, "FIN"),
            (Flags::RST, "RST"),
        ];
        let mut first = true;
        for (flag, name) in names {
            if self.contains(flag) {
                f.write_str(if first { "" } else { "|" })?;
                f.write_str(name)?;
                first = false;
            }
        }
        let unknown = self.0 & !0x000f;
        if unknown != 0 || first {
            f.write_str(if first { "" } else { "|" })?;
            write!(f, "0x{unknown:04x}")?;
        }
        Ok(())
    }
}

/// Why 12 bytes are not a yamux header; either is a session-fatal protocol error in Go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    UnsupportedVersion(u8),
    UnknownType(u8),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::UnsupportedVersion(v) => write!(
                f,
                "invalid yamux protocol version {v} (expected 0; a peer with tcpMux off, or not \
                 speaking frp?)"
            ),
            HeaderError::UnknownType(t) => write!(f, "invalid yamux frame type {t} (expected 0-3)"),
        }
    }
}

impl std::error::Error for HeaderError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    pub frame_type: FrameType,
    pub flags: Flags,
    /// Odd for streams frpc opens; 0 for Ping and GoAway.
    pub stream_id: u32,
    /// Payload length, window delta, ping id or GoAway code, depending on `frame_type`.
    pub length: u32,
}

impl Header {
    pub const fn data(stream_id: u32, flags: Flags, payload_len: u32) -> Header {
        Header {
            frame_type: FrameType::Data,
            flags,
            stream_id,
            length: payload_len,
        }
    }

    pub const fn window_update(stream_id: u32, flags: Flags, delta: u32) -> Header {
        Header {
            frame_type: FrameType::WindowUpdate,
            flags,
            stream_id,
            length: delta,
        }
    }

    /// `flags` is [`Flags::SYN`] for a request and [`Flags::ACK`] for its reply.
    pub const fn ping(flags: Flags, opaque: u32) -> Header {
        Header {
            frame_type: FrameType::Ping,
            flags,
            stream_id: 0,
            length: opaque,
        }
    }

    pub const fn go_away(code: u32) -> Header {
        Header {
            frame_type: FrameType::GoAway,
            flags: Flags::NONE,
            stream_id: 0,
            length: code,
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = PROTOCOL_VERSION;
        out[1] = self.frame_type as u8;
        out[2..4].copy_from_slice(&self.flags.0.to_be_bytes());
        out[4..8].copy_from_slice(&self.stream_id.to_be_bytes());
        out[8..12].copy_from_slice(&self.length.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Header, HeaderError> {
        if bytes[0] != PROTOCOL_VERSION {
            return Err(HeaderError::UnsupportedVersion(bytes[0]));
        }
        let frame_type =
            FrameType::from_byte(bytes[1]).ok_or(HeaderError::UnknownType(bytes[1]))?;
        Ok(Header {
            frame_type,
            flags: Flags(u16::from_be_bytes([bytes[2], bytes[3]])),
            stream_id: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            length: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        })
    }

    /// Decodes the header at the front of a byte stream: `Ok(None)` until 12 bytes are there.
    /// Consumes nothing; the caller advances by [`HEADER_LEN`] (plus the payload for Data).
    pub fn peek(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
        match buf.first_chunk::<HEADER_LEN>() {
            Some(bytes) => Header::decode(bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Length of the payload that follows this header on the wire (only Data has one).
    pub const fn payload_len(&self) -> u32 {
        match self.frame_type {
            FrameType::Data => self.length,
            _ => 0,
        }
    }
}
