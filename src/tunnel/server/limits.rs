//! Every timeout and bound of the tunnel server in one place, each with the reason for its
//! value. frp's own numbers (spec `frp-protocol.md` §13) are kept where clients depend on them.
//! The copy buffers are the pipe's, shared with the client
//! ([`crate::tunnel::pipe::PIPE_BUF`]).

use std::time::Duration;

/// frps waits this long for the first bytes (TLS detection) and for the first frp message of a
/// new connection or stream.
pub const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS handshake that takes longer is a stalled or hostile peer.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// frps' `userConnTimeout`: how long a user connection waits for a work connection.
pub const WORK_CONN_TIMEOUT: Duration = Duration::from_secs(10);

/// One message write (`LoginResp`, `StartWorkConn`, a control message). frpc reads promptly; a
/// write that cannot finish in this time means the peer or its network is gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for a replaced control (same `run_id`) or an ending one to release its ports.
pub const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a failed login's session stays open so the `LoginResp` error reaches frpc (which then
/// closes the connection itself).
pub const LOGIN_FAILURE_LINGER: Duration = Duration::from_secs(2);

/// Without tcpMux, frpc sends a Ping every 30 s and frps drops a control silent for 90 s.
pub const DIRECT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(90);

/// With tcpMux the yamux keepalive is the only liveness check; see `tunnel::stream::set_tcp_user_timeout`.
/// Go frps drops a client whose ping is not `ACKed` within 10 s of the 30 s ping (≤ 40 s); the
/// kernel timeout gives ≤ 50 s here, with a margin for a peer that is briefly starved.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);

/// yamux keepalive, as frp: a ping every 30 s.
pub const YAMUX_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// frp raises yamux's max stream window to 6 MiB; our ACK then carries the same delta as Go
/// frps (spec §3.3). It also bounds what one stream can buffer here.
pub const YAMUX_MAX_STREAM_WINDOW: u32 = crate::tunnel::stream::FRP_MAX_STREAM_WINDOW;

/// Streams opened but not yet accepted, as frp (beyond it the stream is reset).
pub const YAMUX_ACCEPT_BACKLOG: usize = 256;

/// Live streams per session: the control stream, the work-connection pool (at most 15) and the
/// user connections of the client's one proxy. Also bounds per-session memory (each stream can
/// buffer at most its window).
pub const YAMUX_MAX_STREAMS: usize = 256;

/// Concurrent user connections through one proxy (each holds a work stream).
pub const MAX_USER_CONNS_PER_PROXY: usize = 224;

/// Tunnel connections (TCP) at once, logged-in or not. Beyond it new connections are closed.
/// A last resort: [`MAX_PRE_LOGIN_PER_IP`] stops one address from filling it.
pub const MAX_CONNECTIONS: usize = 2048;

/// Connections from one address still in their first phase (TLS detection, handshake, framing
/// byte). A real client has one (tcpMux) or a handful (a control and its work connections);
/// more from one address is a flood, refused before it costs a TLS handshake or a slot of
/// [`MAX_CONNECTIONS`].
pub const MAX_PRE_LOGIN_PER_IP: u32 = 16;

/// The whole first phase of a connection, however the client trickles its bytes.
pub const PRE_LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Refusals of the same kind are logged at most this often, with how many there were.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Logged-in clients at once (each has at most one proxy, and there are 1100 allowed ports).
pub const MAX_CONTROLS: usize = 2048;

/// frps' `maxPoolCount`: the pool size a client may ask for is capped here.
pub const MAX_POOL_COUNT: i64 = 5;

/// Pool capacity per client = `pool_count` + this, as frps.
pub const POOL_EXTRA: usize = 10;

/// HaRP's `maxPortsPerClient`.
pub const MAX_PORTS_PER_CLIENT: usize = 1;

/// Control messages queued for the encrypting writer (`NewProxyResp`, Pong; `ReqWorkConn` is a
/// counter, see `MAX_PENDING_WORK_REQUESTS`).
pub const CONTROL_QUEUE: usize = 64;

/// `ReqWorkConn` owed to a client at most (one per waiting user connection, plus the pool).
pub const MAX_PENDING_WORK_REQUESTS: usize = 1024;

/// A client-chosen `run_id` is kept as is (frp), but not an absurdly long one.
pub const MAX_RUN_ID_LEN: usize = 64;

/// Proxy names become registry keys and appear in logs and error messages.
pub const MAX_PROXY_NAME_LEN: usize = 256;

/// Bound on the Nextcloud lookup of the port-squatting check: frpc re-sends `NewProxy` after 20 s
/// without an answer, so the answer must come well before that.
pub const STRICT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the certificates are looked for again while TLS is on and they are missing.
pub const CERT_RETRY_INTERVAL: Duration = Duration::from_secs(5);
