//! The frp message catalogue (spec `frp-protocol.md` §5): one plain struct per message, and
//! [`Message`], the sum of them keyed by the one-byte type tag that precedes every frame.
//!
//! Field order is the JSON output order and follows frp 0.61.1, so that what we encode is
//! byte-identical to what Go's `encoding/json` produces (§12 checks this). Every field is
//! skipped when it holds its zero value, like Go's `omitempty`, except `Login.client_spec`
//! and `NatHoleResp.detect_behavior` (Go never omits a struct).
//!
//! Decoding is as lenient as Go where it matters for interoperability: unknown fields are
//! ignored and missing fields take their zero value. Two Go leniencies are not reproduced
//! because frpc never relies on them: case-insensitive key matching and `null` for a scalar.
//! Two differences go the other way and are harmless: a duplicated key is rejected (Go keeps
//! the last one), and serde accepts a struct written as a JSON array (Go refuses it).

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};

/// Go's `map[string]string`; a `BTreeMap` because Go writes map keys sorted.
pub type StringMap = BTreeMap<String, String>;

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// What `Debug` prints for a secret, so logging a message never leaks a credential.
fn redacted(s: &str) -> &'static str {
    if s.is_empty() {
        ""
    } else {
        "<redacted>"
    }
}

/// `metas` can carry HaRP's shared key (`metas.token`): show the keys, never the values.
struct RedactedMap<'a>(&'a StringMap);

impl fmt::Debug for RedactedMap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, redacted(v))))
            .finish()
    }
}

/// `o`, first message of the control stream (client → server, plain).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Login {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Never set by frpc 0.61.1; kept because older clients send it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub os: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub arch: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// `md5(token ‖ timestamp)` in lowercase hex; see [`super::crypto::privilege_key`].
    #[serde(skip_serializing_if = "String::is_empty")]
    pub privilege_key: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub timestamp: i64,
    /// Empty on a first login; the previous id on a re-login, which then replaces that session.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    /// The client's `metadatas`; HaRP's shared key travels here as `metas.token`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metas: StringMap,
    pub client_spec: ClientSpec,
    /// Go `int`; signed so that an out-of-range value is capped by the server, not a decode error.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub pool_count: i64,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("version", &self.version)
            .field("hostname", &self.hostname)
            .field("os", &self.os)
            .field("arch", &self.arch)
            .field("user", &self.user)
            .field("privilege_key", &redacted(&self.privilege_key))
            .field("timestamp", &self.timestamp)
            .field("run_id", &self.run_id)
            .field("metas", &RedactedMap(&self.metas))
            .field("client_spec", &self.client_spec)
            .field("pool_count", &self.pool_count)
            .finish()
    }
}

/// `Login.client_spec`: only set by frp's SSH tunnel gateway; normally `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientSpec {
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub client_type: String,
    #[serde(skip_serializing_if = "is_false")]
    pub always_auth_pass: bool,
}

/// `1`, answer to [`Login`] (server → client, plain). Exactly one of `run_id` / `error` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoginResp {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// `p`, proxy registration (client → server, encrypted control stream).
///
/// HaRP's clients only set `proxy_name`, `proxy_type` (`tcp`) and `remote_port`; the other
/// fields exist so that a richer client's registration decodes and can be refused precisely.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewProxy {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_name: String,
    /// Empty means `tcp` on the server side.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_type: String,
    #[serde(skip_serializing_if = "is_false")]
    pub use_encryption: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub use_compression: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub bandwidth_limit: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub bandwidth_limit_mode: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group_key: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metas: StringMap,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: StringMap,
    /// Go `int`: signed and wide so that `70000` or `-1` reach the port checks (`port not
    /// allowed`) instead of failing the whole message.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub remote_port: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_domains: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subdomain: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub http_user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub http_pwd: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host_header_rewrite: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: StringMap,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub response_headers: StringMap,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub route_by_http_user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sk: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_users: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub multiplexer: String,
}

impl fmt::Debug for NewProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewProxy")
            .field("proxy_name", &self.proxy_name)
            .field("proxy_type", &self.proxy_type)
            .field("use_encryption", &self.use_encryption)
            .field("use_compression", &self.use_compression)
            .field("bandwidth_limit", &self.bandwidth_limit)
            .field("bandwidth_limit_mode", &self.bandwidth_limit_mode)
            .field("group", &self.group)
            .field("group_key", &redacted(&self.group_key))
            .field("metas", &RedactedMap(&self.metas))
            .field("annotations", &self.annotations)
            .field("remote_port", &self.remote_port)
            .field("custom_domains", &self.custom_domains)
            .field("subdomain", &self.subdomain)
            .field("locations", &self.locations)
            .field("http_user", &self.http_user)
            .field("http_pwd", &redacted(&self.http_pwd))
            .field("host_header_rewrite", &self.host_header_rewrite)
            .field("headers", &self.headers)
            .field("response_headers", &self.response_headers)
            .field("route_by_http_user", &self.route_by_http_user)
            .field("sk", &redacted(&self.sk))
            .field("allow_users", &self.allow_users)
            .field("multiplexer", &self.multiplexer)
            .finish()
    }
}

/// `2`, answer to [`NewProxy`]: `remote_addr` (tcp: `":<port>"`) on success, else `error`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewProxyResp {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remote_addr: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// `c`, the client withdraws a proxy (no answer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CloseProxy {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_name: String,
}

/// `w`, first message of a work stream (client → server, plain).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewWorkConn {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    /// Only with the `NewWorkConns` auth scope.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub privilege_key: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub timestamp: i64,
}

impl fmt::Debug for NewWorkConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewWorkConn")
            .field("run_id", &self.run_id)
            .field("privilege_key", &redacted(&self.privilege_key))
            .field("timestamp", &self.timestamp)
            .finish()
    }
}

/// `r`, the server asks for one more pooled work stream; always `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReqWorkConn {}

/// `s`, binds a pooled work stream to a proxy and user connection (server → client, plain).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StartWorkConn {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_name: String,
    /// The user connection's remote host (bare, IPv6 without brackets).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub src_addr: String,
    /// The proxy listener's local host.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dst_addr: String,
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub src_port: u16,
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub dst_port: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// `v`, first message of a visitor stream (stcp/xtcp; unused by HaRP).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewVisitorConn {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sign_key: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub timestamp: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub use_encryption: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub use_compression: bool,
}

impl fmt::Debug for NewVisitorConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewVisitorConn")
            .field("run_id", &self.run_id)
            .field("proxy_name", &self.proxy_name)
            .field("sign_key", &redacted(&self.sign_key))
            .field("timestamp", &self.timestamp)
            .field("use_encryption", &self.use_encryption)
            .field("use_compression", &self.use_compression)
            .finish()
    }
}

/// `3`, answer to [`NewVisitorConn`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewVisitorConnResp {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// `h`, application heartbeat; `{}` unless the `HeartBeats` auth scope is configured.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ping {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub privilege_key: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub timestamp: i64,
}

impl fmt::Debug for Ping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ping")
            .field("privilege_key", &redacted(&self.privilege_key))
            .field("timestamp", &self.timestamp)
            .finish()
    }
}

/// `4`, answer to [`Ping`]; a non-empty `error` makes frpc drop the session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pong {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// Go's `net.UDPAddr` as `encoding/json` writes it: capitalised keys, nothing omitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UdpAddr {
    #[serde(rename = "IP")]
    pub ip: String,
    #[serde(rename = "Port")]
    pub port: i64,
    #[serde(rename = "Zone")]
    pub zone: String,
}

/// Go `[]byte` travels as standard base64 with padding.
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// `u`, one datagram of a udp proxy (unused by HaRP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UdpPacket {
    #[serde(
        rename = "c",
        with = "base64_bytes",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub content: Vec<u8>,
    #[serde(rename = "l", skip_serializing_if = "Option::is_none")]
    pub local_addr: Option<UdpAddr>,
    #[serde(rename = "r", skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<UdpAddr>,
}

/// `i`, xtcp visitor asks for hole punching (unused by HaRP).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NatHoleVisitor {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub transaction_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_name: String,
    #[serde(skip_serializing_if = "is_false")]
    pub pre_check: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sign_key: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub timestamp: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mapped_addrs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub assisted_addrs: Vec<String>,
}

impl fmt::Debug for NatHoleVisitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatHoleVisitor")
            .field("transaction_id", &self.transaction_id)
            .field("proxy_name", &self.proxy_name)
            .field("pre_check", &self.pre_check)
            .field("protocol", &self.protocol)
            .field("sign_key", &redacted(&self.sign_key))
            .field("timestamp", &self.timestamp)
            .field("mapped_addrs", &self.mapped_addrs)
            .field("assisted_addrs", &self.assisted_addrs)
            .finish()
    }
}

/// `n`, xtcp server-side client answers a hole-punch request (unused by HaRP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NatHoleClient {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub transaction_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mapped_addrs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub assisted_addrs: Vec<String>,
}

/// An inclusive port range inside [`NatHoleDetectBehavior`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PortsRange {
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub from: i64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub to: i64,
}

/// `NatHoleResp.detect_behavior`: how each peer should punch (unused by HaRP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NatHoleDetectBehavior {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub role: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub mode: i64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub ttl: i64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub send_delay_ms: i64,
    /// Milliseconds, despite the key name.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub read_timeout: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidate_ports: Vec<PortsRange>,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub send_random_ports: i64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub listen_random_ports: i64,
}

/// `m`, the server's hole-punching instructions (unused by HaRP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NatHoleResp {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub transaction_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidate_addrs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub assisted_addrs: Vec<String>,
    pub detect_behavior: NatHoleDetectBehavior,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// `5`, exchanged between the two xtcp peers directly (unused by HaRP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NatHoleSid {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub transaction_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sid: String,
    #[serde(skip_serializing_if = "is_false")]
    pub response: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub nonce: String,
}

/// `6`, the client reports a hole-punch outcome (unused by HaRP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NatHoleReport {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sid: String,
    #[serde(skip_serializing_if = "is_false")]
    pub success: bool,
}

/// The one-byte tag in front of every frame. Only these bytes are valid; frp closes the
/// connection on any other, before even reading the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    Login = b'o',
    LoginResp = b'1',
    NewProxy = b'p',
    NewProxyResp = b'2',
    CloseProxy = b'c',
    NewWorkConn = b'w',
    ReqWorkConn = b'r',
    StartWorkConn = b's',
    NewVisitorConn = b'v',
    NewVisitorConnResp = b'3',
    Ping = b'h',
    Pong = b'4',
    UdpPacket = b'u',
    NatHoleVisitor = b'i',
    NatHoleClient = b'n',
    NatHoleResp = b'm',
    NatHoleSid = b'5',
    NatHoleReport = b'6',
}

impl MessageType {
    /// Every message type, for exhaustive tests and fuzz dictionaries.
    pub const ALL: [MessageType; 18] = [
        MessageType::Login,
        MessageType::LoginResp,
        MessageType::NewProxy,
        MessageType::NewProxyResp,
        MessageType::CloseProxy,
        MessageType::NewWorkConn,
        MessageType::ReqWorkConn,
        MessageType::StartWorkConn,
        MessageType::NewVisitorConn,
        MessageType::NewVisitorConnResp,
        MessageType::Ping,
        MessageType::Pong,
        MessageType::UdpPacket,
        MessageType::NatHoleVisitor,
        MessageType::NatHoleClient,
        MessageType::NatHoleResp,
        MessageType::NatHoleSid,
        MessageType::NatHoleReport,
    ];

    /// `None` for a byte frp does not know; the caller must then drop the connection.
    pub const fn from_byte(byte: u8) -> Option<MessageType> {
        Some(match byte {
            b'o' => MessageType::Login,
            b'1' => MessageType::LoginResp,
            b'p' => MessageType::NewProxy,
            b'2' => MessageType::NewProxyResp,
            b'c' => MessageType::CloseProxy,
            b'w' => MessageType::NewWorkConn,
            b'r' => MessageType::ReqWorkConn,
            b's' => MessageType::StartWorkConn,
            b'v' => MessageType::NewVisitorConn,
            b'3' => MessageType::NewVisitorConnResp,
            b'h' => MessageType::Ping,
            b'4' => MessageType::Pong,
            b'u' => MessageType::UdpPacket,
            b'i' => MessageType::NatHoleVisitor,
            b'n' => MessageType::NatHoleClient,
            b'm' => MessageType::NatHoleResp,
            b'5' => MessageType::NatHoleSid,
            b'6' => MessageType::NatHoleReport,
            _ => return None,
        })
    }

    pub const fn as_byte(self) -> u8 {
        self as u8
    }

    /// frp's name for the message, for logs and error texts.
    pub const fn name(self) -> &'static str {
        match self {
            MessageType::Login => "Login",
            MessageType::LoginResp => "LoginResp",
            MessageType::NewProxy => "NewProxy",
            MessageType::NewProxyResp => "NewProxyResp",
            MessageType::CloseProxy => "CloseProxy",
            MessageType::NewWorkConn => "NewWorkConn",
            MessageType::ReqWorkConn => "ReqWorkConn",
            MessageType::StartWorkConn => "StartWorkConn",
            MessageType::NewVisitorConn => "NewVisitorConn",
            MessageType::NewVisitorConnResp => "NewVisitorConnResp",
            MessageType::Ping => "Ping",
            MessageType::Pong => "Pong",
            MessageType::UdpPacket => "UDPPacket",
            MessageType::NatHoleVisitor => "NatHoleVisitor",
            MessageType::NatHoleClient => "NatHoleClient",
            MessageType::NatHoleResp => "NatHoleResp",
            MessageType::NatHoleSid => "NatHoleSid",
            MessageType::NatHoleReport => "NatHoleReport",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Any frp message. The session layer matches on this; variants it has no handler for are
/// ignored, as frp does.
// NewProxy makes this ~500 bytes; messages are handled one at a time, never stored in bulk,
// so boxing it would only make matching clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Login(Login),
    LoginResp(LoginResp),
    NewProxy(NewProxy),
    NewProxyResp(NewProxyResp),
    CloseProxy(CloseProxy),
    NewWorkConn(NewWorkConn),
    ReqWorkConn(ReqWorkConn),
    StartWorkConn(StartWorkConn),
    NewVisitorConn(NewVisitorConn),
    NewVisitorConnResp(NewVisitorConnResp),
    Ping(Ping),
    Pong(Pong),
    UdpPacket(UdpPacket),
    NatHoleVisitor(NatHoleVisitor),
    NatHoleClient(NatHoleClient),
    NatHoleResp(NatHoleResp),
    NatHoleSid(NatHoleSid),
    NatHoleReport(NatHoleReport),
}

/// Expands `$body` once per variant with `$m` bound to the inner struct, so the per-variant
/// plumbing (type tag, serialisation) cannot drift from the variant list.
macro_rules! each_variant {
    ($msg:expr, $m:ident => $body:expr) => {
        match $msg {
            Message::Login($m) => $body,
            Message::LoginResp($m) => $body,
            Message::NewProxy($m) => $body,
            Message::NewProxyResp($m) => $body,
            Message::CloseProxy($m) => $body,
            Message::NewWorkConn($m) => $body,
            Message::ReqWorkConn($m) => $body,
            Message::StartWorkConn($m) => $body,
            Message::NewVisitorConn($m) => $body,
            Message::NewVisitorConnResp($m) => $body,
            Message::Ping($m) => $body,
            Message::Pong($m) => $body,
            Message::UdpPacket($m) => $body,
            Message::NatHoleVisitor($m) => $body,
            Message::NatHoleClient($m) => $body,
            Message::NatHoleResp($m) => $body,
            Message::NatHoleSid($m) => $body,
            Message::NatHoleReport($m) => $body,
        }
    };
}

impl Message {
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Login(_) => MessageType::Login,
            Message::LoginResp(_) => MessageType::LoginResp,
            Message::NewProxy(_) => MessageType::NewProxy,
            Message::NewProxyResp(_) => MessageType::NewProxyResp,
            Message::CloseProxy(_) => MessageType::CloseProxy,
            Message::NewWorkConn(_) => MessageType::NewWorkConn,
            Message::ReqWorkConn(_) => MessageType::ReqWorkConn,
            Message::StartWorkConn(_) => MessageType::StartWorkConn,
            Message::NewVisitorConn(_) => MessageType::NewVisitorConn,
            Message::NewVisitorConnResp(_) => MessageType::NewVisitorConnResp,
            Message::Ping(_) => MessageType::Ping,
            Message::Pong(_) => MessageType::Pong,
            Message::UdpPacket(_) => MessageType::UdpPacket,
            Message::NatHoleVisitor(_) => MessageType::NatHoleVisitor,
            Message::NatHoleClient(_) => MessageType::NatHoleClient,
            Message::NatHoleResp(_) => MessageType::NatHoleResp,
            Message::NatHoleSid(_) => MessageType::NatHoleSid,
            Message::NatHoleReport(_) => MessageType::NatHoleReport,
        }
    }

    /// The JSON body exactly as Go's `json.Marshal` writes it (see [`to_go_json`]).
    pub fn to_json(&self) -> Vec<u8> {
        each_variant!(self, m => to_go_json(m))
    }

    /// Parses a frame body of the given type. Bounding `body`'s length is the caller's job
    /// ([`super::codec::Decoder`] does it).
    pub fn from_json(msg_type: MessageType, body: &[u8]) -> Result<Message, serde_json::Error> {
        fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
            serde_json::from_slice(body)
        }
        Ok(match msg_type {
            MessageType::Login => Message::Login(parse(body)?),
            MessageType::LoginResp => Message::LoginResp(parse(body)?),
            MessageType::NewProxy => Message::NewProxy(parse(body)?),
            MessageType::NewProxyResp => Message::NewProxyResp(parse(body)?),
            MessageType::CloseProxy => Message::CloseProxy(parse(body)?),
            MessageType::NewWorkConn => Message::NewWorkConn(parse(body)?),
            MessageType::ReqWorkConn => Message::ReqWorkConn(parse(body)?),
            MessageType::StartWorkConn => Message::StartWorkConn(parse(body)?),
            MessageType::NewVisitorConn => Message::NewVisitorConn(parse(body)?),
            MessageType::NewVisitorConnResp => Message::NewVisitorConnResp(parse(body)?),
            MessageType::Ping => Message::Ping(parse(body)?),
            MessageType::Pong => Message::Pong(parse(body)?),
            MessageType::UdpPacket => Message::UdpPacket(parse(body)?),
            MessageType::NatHoleVisitor => Message::NatHoleVisitor(parse(body)?),
            MessageType::NatHoleClient => Message::NatHoleClient(parse(body)?),
            MessageType::NatHoleResp => Message::NatHoleResp(parse(body)?),
            MessageType::NatHoleSid => Message::NatHoleSid(parse(body)?),
            MessageType::NatHoleReport => Message::NatHoleReport(parse(body)?),
        })
    }
}

macro_rules! impl_from_for_message {
    ($($name:ident),* $(,)?) => {
        $(impl From<$name> for Message {
            fn from(m: $name) -> Message {
                Message::$name(m)
            }
        })*
    };
}

impl_from_for_message!(
    Login,
    LoginResp,
    NewProxy,
    NewProxyResp,
    CloseProxy,
    NewWorkConn,
    ReqWorkConn,
    StartWorkConn,
    NewVisitorConn,
    NewVisitorConnResp,
    Ping,
    Pong,
    UdpPacket,
    NatHoleVisitor,
    NatHoleClient,
    NatHoleResp,
    NatHoleSid,
    NatHoleReport,
);

/// `serde_json`'s compact output, plus the escapes Go's `json.Marshal` adds to stay safe inside
/// HTML: `<`, `>`, `&`, U+2028 and U+2029 become `\u003c`, `\u003e`, `\u0026`, `\u2028`,
/// `\u2029`. Everything else (control characters, `"`, `\`) `serde_json` already escapes the
/// way Go 1.23 does.
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escape = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escape.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Serialises `value` byte-identically to Go's `json.Marshal` for the shapes used here
/// (structs, string maps, strings, integers, booleans).
pub fn to_go_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    // Writing into a Vec cannot fail, and every message type has string map keys and no
    // floats, which are the only ways serde_json serialisation can fail.
    value
        .serialize(&mut ser)
        .expect("frp message types always serialise");
    out
}
