//! Every timeout and bound of the tunnel client in one place, with the reason for its value.
//! frpc 0.61.1's own numbers (spec `frp-protocol.md` §11, §13) are kept where servers or users
//! depend on them. The copy buffers are the pipe's, shared with the server
//! ([`crate::tunnel::pipe::PIPE_BUF`]).

use std::time::Duration;

/// frpc's `transport.dialServerTimeout` default: TCP connect to the server.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS handshake that takes longer means a stalled or wrong server.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// frpc waits 10 s for `LoginResp` (the Login write shares the budget).
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// One message write on the control or a work stream. A server that does not take a small
/// message in this time is gone; the session is dropped and rebuilt.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Opening a yamux stream only queues a SYN, and a new connection (tcpMux off) is bounded by
/// the dial timeouts; this is the outer bound for either.
pub const OPEN_STREAM_TIMEOUT: Duration = Duration::from_secs(20);

/// Connecting to the local service (TCP or unix socket) of a proxy.
pub const LOCAL_DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// frpc re-sends a `NewProxy` that got no answer after 20 s, and one refused with an error
/// after 30 s, checking every 3 s (§7.2).
pub const NEW_PROXY_NO_ANSWER_RESEND: Duration = Duration::from_secs(20);
pub const NEW_PROXY_ERROR_RESEND: Duration = Duration::from_secs(30);
pub const PROXY_CHECK_INTERVAL: Duration = Duration::from_secs(3);

/// frpc's yamux keepalive (`transport.tcpMuxKeepaliveInterval` default); tokio-yamux drops the
/// session when a ping is still unanswered at the next one.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// frp raises yamux's max stream window to 6 MiB on both sides (spec §3.3): our SYN then
/// carries the delta 6029312 that frps expects.
pub const YAMUX_MAX_STREAM_WINDOW: u32 = crate::tunnel::stream::FRP_MAX_STREAM_WINDOW;

/// yamux streams per session. frps never opens streams, so ours are the control stream plus
/// work streams; see `MAX_WORK_CONNS`.
pub const YAMUX_MAX_STREAMS: usize = 2048;

/// yamux accept backlog, as frp; frps opens no streams, so it only bounds a misbehaving server.
pub const YAMUX_ACCEPT_BACKLOG: usize = 256;

/// Work connections alive at once (pooled or carrying a user connection). Each `ReqWorkConn`
/// costs a stream and a task, so a server asking for more is ignored beyond this.
pub const MAX_WORK_CONNS: usize = 1024;

/// The kernel drops the server connection when sent data stays unacknowledged this long, so a
/// vanished server is noticed within one yamux keepalive (30 s) plus this, not after TCP's
/// ~15 minutes of retransmissions.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);

/// Reconnect delays (§11): after the n-th failed first login 2 s, 4 s, 8 s, capped at 10 s;
/// after a failed re-login 2 s … capped at 20 s; +0–10 % jitter each.
pub const LOGIN_RETRY_BASE: Duration = Duration::from_secs(2);
pub const FIRST_LOGIN_RETRY_CAP: Duration = Duration::from_secs(10);
pub const RELOGIN_RETRY_CAP: Duration = Duration::from_secs(20);

/// A session that ends soon after another: short pause for the first few, then doubling up to
/// 20 s, so a server that accepts and then drops us is not hammered (§11).
pub const CYCLE_WINDOW: Duration = Duration::from_secs(60);
pub const CYCLE_SHORT_DELAY: Duration = Duration::from_millis(250);
pub const CYCLE_SHORT_COUNT: u32 = 3;
pub const CYCLE_DELAY_CAP: Duration = Duration::from_secs(20);
