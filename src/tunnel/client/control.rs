//! The logged-in control stream (spec §7.2-§7.6, §8): everything after `LoginResp` is
//! AES-128-CFB in both directions. Registers the proxies (`NewProxy`, re-sent like frpc when
//! unanswered or refused), answers `ReqWorkConn` by starting work connections, and runs the
//! application heartbeat (Ping/Pong) when configured.
//!
//! Runs until the session ends and returns why. A frame that is not frp ends the session with a
//! log line; messages without a client handler (`NatHoleResp`, …) are ignored, as frpc does.
//! Work connections live in a `JoinSet` owned here, so they all end with the session.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{interval_at, Instant, Interval};

use super::limits::{
    MAX_WORK_CONNS, NEW_PROXY_ERROR_RESEND, NEW_PROXY_NO_ANSWER_RESEND, PROXY_CHECK_INTERVAL,
    WRITE_TIMEOUT,
};
use super::work::{self, Opener, RunningProxies, WorkAuth};
use super::{unix_now, ProxyStatus, Shared};
use crate::tunnel::crypto::{self, Encryptor};
use crate::tunnel::frames::{ControlReader, ControlWriter, Peer, ReadError};
use crate::tunnel::msg::{Message, NewProxy, NewProxyResp, Ping};
use crate::tunnel::stream::BoxIo;

enum Phase {
    /// `NewProxy` sent at this time, no answer yet.
    Waiting(Instant),
    Running,
    /// Refused at this time.
    Failed(Instant),
}

/// The state of one control session.
pub struct Control {
    pub shared: Arc<Shared>,
    pub opener: Opener,
    pub run_id: String,
}

fn ticker(period: Duration) -> Interval {
    interval_at(Instant::now() + period, period)
}

impl Control {
    /// Runs the control stream until the session ends; `session_end` resolves (with a reason)
    /// when the connection underneath dies.
    pub async fn run(self, stream: BoxIo, session_end: impl Future<Output = String>) -> String {
        let key = &self.shared.aes_key;
        let (rd, wr) = tokio::io::split(stream);
        let mut reader = ControlReader::new(rd, key, Peer::Server);
        let mut writer = match Encryptor::with_random_iv(key) {
            Ok(enc) => ControlWriter::new(wr, enc, WRITE_TIMEOUT),
            Err(e) => return e.to_string(),
        };
        let config = &self.shared.config;
        let running: RunningProxies = Arc::default();
        let mut phases: HashMap<String, Phase> = HashMap::new();
        for proxy in &config.proxies {
            if let Err(e) = writer
                .send(&new_proxy(&proxy.name, proxy.remote_port))
                .await
            {
                return format!("cannot send NewProxy: {e}");
            }
            phases.insert(proxy.name.clone(), Phase::Waiting(Instant::now()));
            self.set_status(&proxy.name, ProxyStatus::Pending);
        }
        let work_auth = WorkAuth {
            run_id: self.run_id.clone(),
            token: config.auth_new_work_conns.then(|| config.token.clone()),
        };
        let mut work = JoinSet::new();
        let mut proxy_check = ticker(PROXY_CHECK_INTERVAL);
        // frpc's heartbeat: only with tcpMux off, or when configured explicitly.
        let mut heartbeat = config.heartbeat_interval.map(ticker);
        let mut last_pong = Instant::now();
        tokio::pin!(session_end);
        loop {
            tokio::select! {
                reason = &mut session_end => return reason,
                msg = reader.next() => match msg {
                    Ok(Some(Message::ReqWorkConn(_))) => {
                        if work.len() >= MAX_WORK_CONNS {
                            log::warn!(
                                "tunnel client: {MAX_WORK_CONNS} work connections open; \
                                 ignoring the server's request for another"
                            );
                            continue;
                        }
                        work.spawn(work::serve(
                            self.opener.clone(),
                            work_auth.clone(),
                            running.clone(),
                        ));
                    }
                    Ok(Some(Message::NewProxyResp(resp))) => {
                        self.on_new_proxy_resp(resp, &mut phases, &running);
                    }
                    Ok(Some(Message::Pong(pong))) => {
                        if !pong.error.is_empty() {
                            return format!("the server answered Ping with: {}", pong.error);
                        }
                        last_pong = Instant::now();
                    }
                    Ok(Some(other)) => log::debug!(
                        "tunnel client: ignoring {} on the control stream",
                        other.message_type()
                    ),
                    Ok(None) => return "control stream closed by the server".into(),
                    Err(e @ ReadError::Frame(..)) => {
                        log::warn!("tunnel client: closing the session: {e}");
                        return e.to_string();
                    }
                    Err(e) => return format!("control stream {e}"),
                },
                _ = proxy_check.tick() => {
                    for proxy in &config.proxies {
                        let resend = match phases.get(&proxy.name) {
                            Some(Phase::Waiting(at)) => at.elapsed() >= NEW_PROXY_NO_ANSWER_RESEND,
                            Some(Phase::Failed(at)) => at.elapsed() >= NEW_PROXY_ERROR_RESEND,
                            _ => false,
                        };
                        if resend {
                            log::info!("tunnel client: proxy {:?}: sending NewProxy again", proxy.name);
                            if let Err(e) = writer.send(&new_proxy(&proxy.name, proxy.remote_port)).await {
                                return format!("cannot send NewProxy: {e}");
                            }
                            phases.insert(proxy.name.clone(), Phase::Waiting(Instant::now()));
                        }
                    }
                }
                Some(_) = tick(&mut heartbeat) => {
                    if let Some(limit) = config.heartbeat_timeout {
                        if last_pong.elapsed() > limit {
                            return format!("no Pong from the server for {limit:?}");
                        }
                    }
                    if let Err(e) = writer.send(&self.ping()).await {
                        return format!("cannot send Ping: {e}");
                    }
                }
                Some(_) = work.join_next(), if !work.is_empty() => {}
            }
        }
    }

    fn on_new_proxy_resp(
        &self,
        resp: NewProxyResp,
        phases: &mut HashMap<String, Phase>,
        running: &RunningProxies,
    ) {
        let Some(proxy) = self
            .shared
            .config
            .proxies
            .iter()
            .find(|p| p.name == resp.proxy_name)
        else {
            log::warn!(
                "tunnel client: NewProxyResp for unknown proxy {:?}",
                resp.proxy_name
            );
            return;
        };
        let mut running = running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if resp.error.is_empty() {
            log::info!(
                "tunnel client: proxy {:?} started: server port {} → {}",
                proxy.name,
                resp.remote_addr,
                proxy.target
            );
            phases.insert(proxy.name.clone(), Phase::Running);
            running.insert(proxy.name.clone(), proxy.target.clone());
            self.set_status(
                &proxy.name,
                ProxyStatus::Running {
                    remote_addr: resp.remote_addr,
                },
            );
        } else {
            log::warn!(
                "tunnel client: proxy {:?} refused by the server: {} (retrying in {:?})",
                proxy.name,
                resp.error,
                NEW_PROXY_ERROR_RESEND
            );
            phases.insert(proxy.name.clone(), Phase::Failed(Instant::now()));
            running.remove(&proxy.name);
            self.set_status(&proxy.name, ProxyStatus::Failed { error: resp.error });
        }
    }

    fn ping(&self) -> Message {
        let config = &self.shared.config;
        let mut ping = Ping::default();
        if config.auth_heartbeats {
            ping.timestamp = unix_now();
            ping.privilege_key = crypto::privilege_key(&config.token, ping.timestamp);
        }
        Message::Ping(ping)
    }

    fn set_status(&self, name: &str, status: ProxyStatus) {
        self.shared.status.send_modify(|s| {
            s.proxies.insert(name.to_string(), status);
        });
    }
}

/// The next tick of an optional interval; never resolves without one.
async fn tick(interval: &mut Option<Interval>) -> Option<Instant> {
    match interval {
        Some(i) => Some(i.tick().await),
        None => std::future::pending().await,
    }
}

/// What frpc 0.61.1 sends for a tcp proxy: name, type and port only (spec §5).
fn new_proxy(name: &str, remote_port: u16) -> Message {
    Message::NewProxy(NewProxy {
        proxy_name: name.to_string(),
        proxy_type: "tcp".into(),
        remote_port: remote_port.into(),
        ..NewProxy::default()
    })
}
