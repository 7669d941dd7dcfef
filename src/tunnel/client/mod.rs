//! `harp tunnel`: an FRP client compatible with frps 0.61.1 and with harp's own tunnel server,
//! for the places HaRP ran frpc: the bundled Docker-socket tunnel, remote Docker hosts, and
//! ExApp containers (spec `frp-protocol.md` §11, harp-behaviour §10.3-§10.4).
//!
//! Files, one concern each:
//! * [`config`]: the frpc TOML subset and its defaults.
//! * [`tls`], [`dial`]: the connection to the server (TLS, mutual TLS, 0x17 head byte) and
//!   to local services.
//! * [`session`]: yamux client side and Login; [`control`]: the encrypted control stream,
//!   proxies and heartbeats; [`work`]: work connections, whose bytes the tunnel's shared
//!   [`pipe`](crate::tunnel::pipe) copies, as on the server.
//! * [`backoff`]: reconnect timing; [`limits`]: every timeout and bound.
//!
//! This module (the reconnect loop) follows frpc: the first login is tried at once; if it fails
//! and `loginFailExit` is true (frpc's default) the client gives up with frpc's message, else it
//! retries with backoff. Once logged in, a lost session is re-established with a new connection
//! and the previous run id, so the server can replace the stale session (§7.1).
//!
//! Rules: every wait has a timeout or is bounded by the session's liveness check (yamux
//! keepalive, or the heartbeat with tcpMux off); nothing a server sends can crash the client or
//! make it allocate without bound; secrets (`auth.token`, `metadatas` values, keys) are never
//! logged.

pub mod backoff;
pub mod config;
pub mod control;
pub mod dial;
pub mod limits;
pub mod session;
pub mod tls;
pub mod work;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

pub use config::{ClientConfig, ProxyConfig, Target};

use crate::tunnel::crypto::AesKey;
use backoff::{jitter, Backoff, Cycles};
use dial::Dialer;
use limits::{FIRST_LOGIN_RETRY_CAP, RELOGIN_RETRY_CAP};
use session::Outcome;

/// The version we announce in Login; frps does not check it, but logs it.
pub const FRP_VERSION: &str = "0.61.1";

/// What the client is doing, for tests and callers that want to wait for a state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub logged_in: bool,
    pub run_id: String,
    /// Successful logins so far (a re-login after a lost session counts again).
    pub logins: u64,
    pub login_failures: u64,
    /// The current session's proxies; cleared when the session ends.
    pub proxies: BTreeMap<String, ProxyStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyStatus {
    /// `NewProxy` sent, no answer yet.
    Pending,
    Running {
        remote_addr: String,
    },
    /// Refused by the server; re-sent after a while.
    Failed {
        error: String,
    },
}

/// What every session of one client shares.
pub struct Shared {
    pub config: ClientConfig,
    pub dialer: Arc<Dialer>,
    pub aes_key: AesKey,
    pub status: watch::Sender<Status>,
}

/// Unix time in seconds, for Login's timestamp and privilege key.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub struct Client {
    shared: Arc<Shared>,
}

impl Client {
    /// Prepares a client; fails on unreadable TLS files, like frpc at start-up.
    pub fn new(config: ClientConfig) -> Result<Client, String> {
        let tls = config.tls.as_ref().map(tls::setup).transpose()?;
        let dialer = Dialer {
            host: config.server_addr.clone(),
            port: config.server_port,
            timeout: config.dial_timeout,
            tls,
        };
        Ok(Client {
            shared: Arc::new(Shared {
                aes_key: AesKey::from_token(&config.token),
                dialer: Arc::new(dialer),
                status: watch::channel(Status::default()).0,
                config,
            }),
        })
    }

    /// Follows the client's state.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.shared.status.subscribe()
    }

    /// Runs until the first login fails with `loginFailExit` on; the error is frpc's message.
    /// Otherwise it never returns (drop the future to stop the client).
    pub async fn run(self) -> Result<Infallible, String> {
        let shared = self.shared;
        let config = &shared.config;
        let server = shared.dialer.addr();
        log::info!(
            "tunnel client: connecting to {server} ({}, {}) with {} prox{}",
            if config.tls.is_some() {
                "TLS"
            } else {
                "plain TCP"
            },
            if config.tcp_mux {
                "tcpMux"
            } else {
                "no tcpMux"
            },
            config.proxies.len(),
            if config.proxies.len() == 1 {
                "y"
            } else {
                "ies"
            }
        );
        let mut run_id = String::new();
        let mut ever_logged_in = false;
        let mut retry = Backoff::new(FIRST_LOGIN_RETRY_CAP);
        let mut cycles = Cycles::new();
        loop {
            match session::run(&shared, &mut run_id).await {
                Outcome::LoginFailed(err) => {
                    shared.status.send_modify(|s| s.login_failures += 1);
                    if !ever_logged_in && config.login_fail_exit {
                        return Err(format!(
                            "login to the server failed: {err}. With loginFailExit enabled, \
                             no additional retries will be attempted"
                        ));
                    }
                    let delay = jitter(retry.next_delay());
                    log::warn!(
                        "tunnel client: login to {server} failed: {err}; retrying in {:.1} s",
                        delay.as_secs_f64()
                    );
                    tokio::time::sleep(delay).await;
                }
                Outcome::Ended(reason) => {
                    ever_logged_in = true;
                    retry = Backoff::new(RELOGIN_RETRY_CAP);
                    let delay = cycles.next_delay(Instant::now());
                    let delay = if delay.is_zero() {
                        delay
                    } else {
                        jitter(delay)
                    };
                    log::warn!(
                        "tunnel client: session with {server} ended ({reason}); \
                         reconnecting in {:.1} s",
                        delay.as_secs_f64()
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
