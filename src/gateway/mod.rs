//! The gateway: a Pingora `ProxyHttp` for `/exapps/...` with HaRP's decision pipeline (§3).
//!
//! `request_filter` decides, as a list of phase units (`phases/`: timeouts, identify, ban,
//! `path_guard`, dispatch, `exapp_access`), and either answers itself or leaves an `Upstream` in the
//! context; later phases only carry that decision out. The gateway never awaits Docker, and
//! awaits Nextcloud only on a cache miss, within `HP_DECISION_TIMEOUT`.

pub mod admission;
pub mod decide;
#[cfg(test)]
mod decide_tests;
pub mod https;
pub mod listener;
pub mod path;
pub mod phases;
/// HaRP's answers live in the leaf room `answers`, shared with the control API.
pub use crate::answers as responses;
pub mod tunnel_peer;

use crate::docker::{passthrough, target};
use crate::metrics::{DockerOp, Outcome};
use crate::state::AppState;
use async_trait::async_trait;
use decide::ExAppTarget;
use http::Uri;
use phases::{ban, dispatch, exapp_access, identify, path_guard, timeouts};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::ErrorType;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a request that passed the decision goes.
pub enum Upstream {
    ExApp {
        target: ExAppTarget,
        uri: Uri,
        app_id: String,
    },
    DockerEngine {
        target: target::EngineTarget,
        uri: Uri,
        /// Which allowed call this is, for `harp_docker_calls_total`.
        op: passthrough::PassthroughCall,
    },
}

/// Per-request state: decisions made in `request_filter`, used by later phases.
pub struct RequestCtx {
    started: Instant,
    outcome: Outcome,
    client_ip: IpAddr,
    key_valid: bool,
    upstream: Option<Upstream>,
    silent_drop: bool,
    connect_attempts: u8,
    upgrade: bool,
    /// `HP_TIMEOUT_BODY`: when the request body must be complete.
    body_deadline: Option<Instant>,
}

pub struct Gateway {
    state: Arc<AppState>,
    engine_versions: target::EngineVersions,
}

/// HAProxy retries a refused connect three times before its 503 page, pausing the connect timeout
/// but at most one second between attempts: an ExApp that is restarting gets about 3 s to come
/// back before its users see an error.
const CONNECT_RETRIES: u8 = 3;
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);
const UPSTREAM_POOL_IDLE: Duration = Duration::from_secs(60);

impl Gateway {
    pub fn new(state: Arc<AppState>) -> Self {
        Gateway {
            state,
            engine_versions: target::EngineVersions::default(),
        }
    }
}

/// RFC 9110 8.6: Pingora accepts a `Content-Length` repeated with one value (two lines, or
/// `5, 5`) and refuses differing ones with 400; the ExApp gets that value once, as HAProxy
/// sends it, since strict servers refuse the repetition.
fn single_content_length(upstream: &mut RequestHeader) -> Result<()> {
    let values = upstream.headers.get_all(http::header::CONTENT_LENGTH);
    let mut iter = values.iter();
    let repeated = match (iter.next(), iter.next()) {
        (Some(first), None) => first.as_bytes().contains(&b','),
        (Some(_), Some(_)) => true,
        _ => false,
    };
    if !repeated {
        return Ok(());
    }
    let Some(value) = values
        .iter()
        .next()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_string())
    else {
        return Ok(());
    };
    upstream.insert_header(http::header::CONTENT_LENGTH, value)
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            outcome: Outcome::Denied,
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            key_valid: false,
            upstream: None,
            silent_drop: false,
            connect_attempts: 0,
            upgrade: false,
            body_deadline: None,
        }
    }

    /// The decision (§3.2), one phase unit per step (`phases/`); the first that answers ends it.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let state = &*self.state;
        timeouts::arm(&state.settings, session, ctx);
        identify::client(state, session, ctx);
        if let Err(refusal) = ban::check(&state.bans, ctx.client_ip, ctx.key_valid) {
            return phases::refuse(state, session, ctx, refusal).await;
        }
        let req = session.req_header();
        let app = match path_guard::split(req.uri.path()) {
            Ok(app) => app,
            Err(refusal) => return phases::refuse(state, session, ctx, refusal).await,
        };
        if app.id == dispatch::APP_API {
            let route = dispatch::ControlRoute::new(app.target, req.uri.query());
            // Boxed: the control API's state machine (Docker, Kubernetes, Nextcloud calls) is
            // large, and inline it would be copied with every ExApp request's future.
            let control = dispatch::app_api(state, &self.engine_versions, session, ctx, route);
            return Box::pin(control).await;
        }
        let budget = state.settings.decision_timeout;
        match exapp_access::decide(state, budget, req, app, ctx.key_valid).await? {
            Ok(upstream) => {
                exapp_access::forward(&state.settings, session, ctx, upstream);
                Ok(false)
            }
            Err(refusal) => phases::refuse(state, session, ctx, refusal).await,
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        if ctx.connect_attempts > 0 {
            tokio::time::sleep(self.state.settings.timeout_connect.min(MAX_RETRY_PAUSE)).await;
        }
        ctx.connect_attempts += 1;
        let mut peer = match &ctx.upstream {
            Some(Upstream::ExApp { target, .. }) => {
                let port = target.addr.port();
                // A tunnel port at 127.0.0.1, where harp's tunnel listeners bind, is only ever
                // reached through harp's own tunnel server: while the ExApp's tunnel is down
                // another program may hold the port, and AppAPI's requests carry the ExApp's
                // secret. Checked at every attempt, so the request is retried and answered as
                // for a dead ExApp.
                let tunnel = target.addr.ip().to_canonical() == Ipv4Addr::LOCALHOST
                    && crate::tunnel::server::policy::port_kind(port).is_some();
                if tunnel && !self.state.tunnels.holds(port) {
                    let mut e = Error::explain(
                        ErrorType::ConnectRefused,
                        format!("no tunnel client holds port {port}"),
                    );
                    e.set_retry(ctx.connect_attempts <= CONNECT_RETRIES);
                    return Err(e);
                }
                let mut peer = HttpPeer::new(target.addr, false, String::new());
                if tunnel && self.state.settings.tunnel_in_process {
                    peer.options.custom_l4 = Some(Arc::new(tunnel_peer::TunnelConnector {
                        registry: self.state.tunnels.clone(),
                        port,
                        client: SocketAddr::new(ctx.client_ip, 0),
                    }));
                }
                peer
            }
            Some(Upstream::DockerEngine {
                target: target::EngineTarget::Tcp(port),
                ..
            }) => HttpPeer::new(
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), *port),
                false,
                String::new(),
            ),
            Some(Upstream::DockerEngine {
                target: target::EngineTarget::Unix(path),
                ..
            }) => HttpPeer::new_uds(&path.to_string_lossy(), false, String::new())?,
            None => {
                return Err(Error::explain(
                    ErrorType::InternalError,
                    "no upstream decided",
                ))
            }
        };
        let settings = &self.state.settings;
        let io_timeout = if ctx.upgrade {
            settings.timeout_tunnel
        } else {
            Some(settings.timeout_server)
        };
        peer.options.connection_timeout = Some(settings.timeout_connect);
        // The in-process tunnel's connector is outside `connection_timeout`.
        peer.options.total_connection_timeout = Some(settings.timeout_connect);
        peer.options.read_timeout = io_timeout;
        peer.options.write_timeout = io_timeout;
        peer.options.idle_timeout = Some(UPSTREAM_POOL_IDLE);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if ctx.connect_attempts <= CONNECT_RETRIES {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Our Q11 difference: the shared key never reaches an ExApp or a Docker engine.
        // (Looked up first: a removal hashes into both of Pingora's header maps.)
        if upstream.headers.contains_key("harp-shared-key") {
            upstream.remove_header("harp-shared-key");
        }
        single_content_length(upstream)?;
        match &ctx.upstream {
            Some(Upstream::ExApp {
                target,
                uri,
                app_id,
            }) => {
                upstream.set_uri(uri.clone());
                upstream.insert_header("EX-APP-ID", app_id.as_str())?;
                upstream.insert_header("EX-APP-VERSION", target.version.as_str())?;
                upstream.insert_header("AUTHORIZATION-APP-API", target.authorization.as_str())?;
                upstream.insert_header("AA-VERSION", "32")?;
            }
            Some(Upstream::DockerEngine { uri, .. }) => upstream.set_uri(uri.clone()),
            None => {}
        }
        Ok(())
    }

    /// `HP_TIMEOUT_BODY`: each read of the body may wait only for what is left of the deadline,
    /// so a body trickling in is cut off on time (408) however short its gaps.
    async fn request_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(deadline) = ctx.body_deadline else {
            return Ok(());
        };
        let client_timeout = self.state.settings.timeout_client;
        if end_of_stream {
            ctx.body_deadline = None;
            session.set_read_timeout(Some(client_timeout));
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::explain(
                ErrorType::ReadTimedout,
                "request body not complete within HP_TIMEOUT_BODY",
            )
            .into_down());
        }
        session.set_read_timeout(Some(client_timeout.min(left)));
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(Upstream::ExApp { target, .. }) = &ctx.upstream {
            if target
                .bruteforce_statuses()
                .contains(&upstream.status.as_u16())
            {
                phases::strike(&self.state, ctx, true);
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let no_reply = FailToProxy {
            error_code: 0,
            can_reuse_downstream: false,
        };
        if ctx.silent_drop {
            return no_reply;
        }
        ctx.outcome = Outcome::Failed;
        if session.response_written().is_some() {
            return no_reply;
        }
        let code = match (e.esource(), e.etype()) {
            (_, ErrorType::HTTPStatus(c)) => *c,
            (pingora::ErrorSource::Upstream, ErrorType::ReadTimedout) => 504,
            (pingora::ErrorSource::Upstream, t) if is_connect_failure(t) => 503,
            (pingora::ErrorSource::Upstream, _) => 502,
            (
                pingora::ErrorSource::Downstream,
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
            ) => {
                return no_reply;
            }
            // HAProxy's answer to a request that does not arrive in time.
            (pingora::ErrorSource::Downstream, ErrorType::ReadTimedout) => 408,
            (pingora::ErrorSource::Downstream, _) => 400,
            _ if is_connect_failure(e.etype()) => 503,
            _ => {
                let _ = responses::write_harp(session, 503).await;
                return FailToProxy {
                    error_code: 503,
                    can_reuse_downstream: false,
                };
            }
        };
        if let Err(err) = responses::write_haproxy(session, code).await {
            log::debug!("could not send the error page: {err}");
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Failures are logged by `logging`, at the level their cause deserves.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _e: &Error) -> bool {
        true
    }

    /// A retried connect is not worth a line; the final failure is (see `logging`).
    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        _ctx: &RequestCtx,
        _e: &Error,
        _context: pingora::proxy::ProxyWarnLogContext,
    ) -> bool {
        true
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.started.elapsed();
        let req = session.req_header();
        let app = match &ctx.upstream {
            // Forwarded to an ExApp: Nextcloud knows it, no second cache lookup for its label.
            Some(Upstream::ExApp { app_id, .. }) => lowercase(app_id),
            _ => self.app_label(req.uri.path()),
        };
        self.state
            .metrics
            .record_request(&app, ctx.outcome, status, elapsed);
        if let Some(Upstream::DockerEngine { op, .. }) = &ctx.upstream {
            self.state
                .metrics
                .record_docker_call(DockerOp::Passthrough(*op), status, e.is_some());
        }
        if let (Some(e), false) = (e, ctx.silent_drop) {
            log_failure(&app, ctx, req, e, status);
        }
        if !log::log_enabled!(target: "access", log::Level::Info) {
            return;
        }
        // Path only: query strings can carry tokens.
        log::info!(
            target: "access",
            "id={} client={} app={} {} {} outcome={} status={} {}ms{}",
            REQUEST_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            ctx.client_ip,
            app,
            req.method,
            req.uri.path(),
            ctx.outcome.as_str(),
            status,
            elapsed.as_millis(),
            e.map(|e| format!(" error={}", e.etype().as_str())).unwrap_or_default()
        );
    }
}

/// Request ids for the access log, unique within the process.
static REQUEST_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Gateway {
    /// The metrics/log label for a request's app: only apps Nextcloud knows get their own label,
    /// so clients cannot mint label values.
    fn app_label<'a>(&self, raw_path: &'a str) -> std::borrow::Cow<'a, str> {
        use std::borrow::Cow;
        let Some(app) = path::app_id(raw_path) else {
            return Cow::Borrowed("-");
        };
        if app == "app_api" {
            return Cow::Borrowed(app);
        }
        let lower = lowercase(app);
        if self.state.apps.is_known(&lower) {
            lower
        } else {
            Cow::Borrowed("unknown")
        }
    }
}

/// App ids are case-insensitive; labels and cache keys are lowercase (borrowed when already).
fn lowercase(app: &str) -> std::borrow::Cow<'_, str> {
    if app.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(app.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(app)
    }
}

/// One failed request, at the level its cause deserves: what the client did (went away, reset,
/// timed out, sent garbage) is DEBUG; an ExApp or Docker engine that fails is a WARN, and
/// anything else an ERROR, each at most once a minute per app and kind.
fn log_failure(app: &str, ctx: &RequestCtx, req: &RequestHeader, e: &Error, status: u16) {
    use pingora::ErrorSource;
    let client_side = match e.esource() {
        ErrorSource::Downstream => true,
        ErrorSource::Upstream => false,
        _ => matches!(
            e.etype(),
            ErrorType::ConnectionClosed
                | ErrorType::ReadError
                | ErrorType::WriteError
                | ErrorType::ReadTimedout
                | ErrorType::WriteTimedout
        ),
    };
    if client_side {
        log::debug!(
            "client {} left {} {} (app {app}): {e}",
            ctx.client_ip,
            req.method,
            req.uri.path()
        );
        return;
    }
    let kind = format!("{app} {}", e.etype().as_str());
    let upstream = match &ctx.upstream {
        Some(Upstream::ExApp { target, .. }) => format!("ExApp {app} at {}", target.addr),
        Some(Upstream::DockerEngine { .. }) => "the Docker engine".to_string(),
        None => format!("app {app}"),
    };
    let args = format_args!(
        "{upstream}: {} {} failed ({status}): {e}",
        req.method,
        req.uri.path()
    );
    if e.esource() == &ErrorSource::Upstream || is_connect_failure(e.etype()) {
        crate::logging::warn_limited(&kind, args);
    } else {
        crate::logging::error_limited(&kind, args);
    }
}

fn is_connect_failure(t: &ErrorType) -> bool {
    matches!(
        t,
        ErrorType::ConnectTimedout
            | ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::BindError
            | ErrorType::SocketError
            | ErrorType::ConnectProxyFailure
    )
}
