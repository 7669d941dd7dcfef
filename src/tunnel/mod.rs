//! The FRP-compatible tunnel: what frps was in HaRP, so the official frpc 0.61.1 connects
//! unchanged (spec: `shared/spec/frp-protocol.md`).
//!
//! Two layers. [`server`] owns the sockets: accept, TLS, yamux, the control session, work
//! connections and the loopback listeners of registered proxies; [`client`] is its counterpart
//! for `harp tunnel`. Both run work connections on [`stream`] and copy their bytes with [`pipe`],
//! one implementation because the same tokio-yamux behaviour constrains both ends. They also
//! share [`frames`] (exact plain reads, timed writes, the encrypted control stream) and [`pem`]
//! (TLS files), so the frame limits and the no-read-ahead rule cannot drift apart between the
//! two. Below them, the wire protocol as plain types and codecs that do no I/O, so every byte
//! frpc sees is pinned by unit tests against the spec's §12 vectors and fuzzed (`fuzz/`):
//!
//! * [`msg`]: the message catalogue (§5) and the Go-identical JSON encoding.
//! * [`codec`]: message framing (§4) with frp's 10240-byte body limit.
//! * [`crypto`]: privilege key (§6) and the AES-128-CFB control-stream cipher (§8).
//! * `yamux_header`: the yamux frame header (§3.2), an independent check of what tokio-yamux
//!   writes; built for the unit tests and the fuzz targets only.
//!
//! The protocol layer must never:
//! * panic or allocate without bound on anything a peer sends: every length is checked
//!   against its limit before it is trusted, and every malformed input is an error value;
//! * send a message frpc would reject (a body over [`codec::MAX_BODY_LEN`], see
//!   [`codec::try_encode`]) or whose bytes differ from what Go frps writes for the same
//!   values;
//! * expose a secret in `Debug` output (privilege keys, `metas` values such as HaRP's shared
//!   key, AES keys), since sessions log messages;
//! * compare secrets with anything but [`crypto::ct_eq`] and [`crypto::privilege_key_matches`].

pub mod client;
pub mod codec;
pub mod crypto;
pub mod frames;
pub mod msg;
pub mod pem;
pub mod pipe;
pub mod server;
pub mod stream;
// Only the unit tests and fuzz/ read it; `fuzzing` is the cfg cargo-fuzz sets on every crate.
#[cfg(any(test, fuzzing))]
pub mod yamux_header;

pub use codec::{Decoder, FrameError};
pub use msg::{Message, MessageType};

#[cfg(test)]
mod tests;
