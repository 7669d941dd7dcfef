//! Phase unit of `request_filter`, first step (§11): the client's timeouts for this request.
//! `HP_TIMEOUT_CLIENT` on reads and writes, or `HP_TIMEOUT_TUNNEL` for an upgrade (WebSocket),
//! and keep-alive no longer than the client timeout.

use super::super::{listener, RequestCtx};
use crate::config::Settings;
use pingora::proxy::Session;

pub fn arm(settings: &Settings, session: &mut Session, ctx: &mut RequestCtx) {
    listener::mark_head_read();
    ctx.upgrade = session.is_upgrade_req();
    let client_timeout = if ctx.upgrade {
        settings.timeout_tunnel
    } else {
        Some(settings.timeout_client)
    };
    session.set_read_timeout(client_timeout);
    session.set_write_timeout(client_timeout);
    // Only shorten keep-alive: Pingora has already turned it off where HTTP requires a close
    // (HTTP/1.0 without keep-alive, Content-Length with Transfer-Encoding).
    if session.get_keepalive().is_some() {
        session.set_keepalive(Some(settings.timeout_client.as_secs().max(1)));
    }
}
