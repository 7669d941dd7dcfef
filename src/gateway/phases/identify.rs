//! Phase unit of `request_filter` (D1, Q1, Q5): who is asking. Whether the request carries the
//! shared key (compared in constant time), and the client IP behind trusted proxies, which
//! every later strike and the access log use.

use super::super::RequestCtx;
use crate::answers::last_header;
use crate::state::AppState;
use pingora::proxy::Session;
use std::net::{IpAddr, Ipv4Addr};

pub fn client(state: &AppState, session: &Session, ctx: &mut RequestCtx) {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(std::net::SocketAddr::ip)
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let req = session.req_header();
    ctx.key_valid =
        last_header(&req.headers, "harp-shared-key").is_some_and(|k| state.is_shared_key(k));
    ctx.client_ip = state.client_ip.resolve(peer, &req.headers);
}
