//! `request_filter`, the gateway's decision (HaRP §3.2), as a list of small phase units run in
//! this order; the first one that answers ends it:
//!
//! | unit | rules | what it does |
//! |---|---|---|
//! | [`timeouts`] | §11 | client read/write timeouts (tunnel timeout for an upgrade), keep-alive |
//! | [`identify`] | D1, Q1, Q5 | the shared key (constant time) and the client IP behind trusted proxies |
//! | [`ban`] | D2, Q1 | a banned client without the key: silent drop |
//! | [`path_guard`] | D3-D5, Q12 | `..` segments, the app id, the target path |
//! | [`dispatch`] | D6, §7 | `app_api`: the control API, or the Docker passthrough |
//! | [`exapp_access`] | Q3, D7-D13 | `decide` within `HP_DECISION_TIMEOUT`: forward, or refuse |
//!
//! A refusing phase returns a [`Refusal`]; [`refuse`] strikes (never a key holder) and answers.
//! The later Pingora phases (`upstream_peer` onwards, in `gateway/mod.rs`) only carry out what
//! these decided.

pub mod ban;
pub mod dispatch;
pub mod exapp_access;
pub mod identify;
pub mod path_guard;
pub mod timeouts;

use super::{responses, RequestCtx};
use crate::metrics::Outcome;
use crate::state::AppState;
use http::Uri;
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::ErrorType;

/// How harp answers a request it refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// No bytes; the connection is reset (Q22).
    Drop,
    /// One of HaRP's plain-text answers (§3.4).
    Status(u16),
}

/// A phase's refusal: the answer, and whether it adds a strike against the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub answer: Answer,
    pub strike: bool,
}

/// Our Q1 difference: callers holding the shared key are never struck.
pub fn strike(state: &AppState, ctx: &RequestCtx, strike: bool) {
    if strike && !ctx.key_valid {
        state.strike(ctx.client_ip);
    }
}

/// Ends `request_filter` with `refusal`: the strike first, then the answer.
pub async fn refuse(
    state: &AppState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    refusal: Refusal,
) -> Result<bool> {
    strike(state, ctx, refusal.strike);
    match refusal.answer {
        Answer::Drop => {
            ctx.outcome = Outcome::Dropped;
            responses::arm_reset(session);
            ctx.silent_drop = true;
            Err(Error::explain(
                ErrorType::Custom("silent drop"),
                "request dropped",
            ))
        }
        Answer::Status(code) => {
            responses::write_harp(session, code).await?;
            Ok(true)
        }
    }
}

/// The request target towards the upstream: the target path and the query as sent (§3.5).
fn upstream_uri(path: &str, query: Option<&str>) -> Result<Uri> {
    let text = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    text.parse::<Uri>().or_err(
        ErrorType::InvalidHTTPHeader,
        "upstream path is not a valid request target",
    )
}
