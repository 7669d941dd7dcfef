//! Login checks (spec §6, §7.1, §9.2; HaRP's Login plugin, harp-behaviour §5.3), in HaRP's
//! order: a banned client IP is refused (`banned`), then `metas.token` must be HaRP's shared
//! key (else a brute-force strike and frps' plugin-failure text), then the frp
//! `privilege_key` must match the (empty) frp token.
//!
//! One difference (our Q1 rule, callers holding the shared key are never struck, applied to the
//! tunnel): a ban does not refuse a client that presents the shared key and a client
//! certificate from harp's CA. Host-network ExApps share their IP with users, and a user's bad
//! requests must not cut the ExApps' tunnels. Without both, a banned IP still gets `banned`,
//! whatever its token (no hint whether the token was right).
//!
//! A wrong `privilege_key` adds no strike: with the empty token it proves nothing secret, and a
//! client that fails it holds the right shared key but a non-empty `auth.token` (a
//! configuration mistake that frpc retries forever; striking would ban that host's IP for
//! everything). Secrets are compared in constant time only; this module never logs them.

use std::net::IpAddr;

use super::Admission;
use crate::tunnel::crypto;
use crate::tunnel::msg::Login;

/// HaRP configures no frp `auth.token`.
pub const FRP_TOKEN: &str = "";

/// What frps answers in `LoginResp.version`.
pub const SERVER_VERSION: &str = "0.61.1";

pub const ERR_BANNED: &str = "banned";
pub const ERR_PLUGIN: &str = "send Login request to plugin error";
pub const ERR_TOKEN: &str = "token in login doesn't match token from configuration";
pub const ERR_INTERNAL: &str = "unexpected error when creating new controller";

#[derive(Debug, PartialEq, Eq)]
pub struct Rejection {
    /// `LoginResp.error`, exactly as frps would send it.
    pub error: &'static str,
    /// For the log line: what was wrong, without secrets.
    pub reason: &'static str,
    pub strike: bool,
}

/// `client_cert`: the connection presented a certificate that chains to harp's CA.
pub fn authenticate(
    admission: &Admission,
    ip: IpAddr,
    login: &Login,
    client_cert: bool,
) -> Result<(), Rejection> {
    let token = login.metas.get("token");
    let key_valid = token.is_some_and(|t| admission.is_shared_key(t.as_bytes()));
    if !(client_cert && key_valid) && admission.is_banned(ip) {
        return Err(Rejection {
            error: ERR_BANNED,
            reason: "the client IP is banned (brute-force protection)",
            strike: false,
        });
    }
    match token {
        Some(_) if key_valid => {}
        Some(_) => {
            return Err(Rejection {
                error: ERR_PLUGIN,
                reason: "metadatas.token is not HP_SHARED_KEY",
                strike: true,
            })
        }
        None => {
            return Err(Rejection {
                error: ERR_PLUGIN,
                reason: "no metadatas.token (it must be HP_SHARED_KEY)",
                strike: true,
            })
        }
    }
    if !crypto::privilege_key_matches(FRP_TOKEN, login.timestamp, &login.privilege_key) {
        return Err(Rejection {
            error: ERR_TOKEN,
            reason: "privilege_key does not match the empty frp token (is auth.token set in \
                     the client configuration? HaRP uses none)",
            strike: false,
        });
    }
    Ok(())
}
