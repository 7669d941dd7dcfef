//! The routing decision for one ExApp request (HaRP D7-D13): who may reach which ExApp, at
//! which address, with which AppAPI headers. Reads only the request head; never writes.
//!
//! Everything the decision needs from outside (the ExApp's record, the user behind a
//! credential, a host's address) comes through [`Lookups`], so every rule can be tested against
//! a table (`decide_tests.rs`) without Nextcloud, DNS or sockets. The gateway's implementation
//! is `AppState`, whose caches answer the cached path from memory.

use crate::logging::warn_limited;
use crate::nextcloud::record::PUBLIC;
use crate::nextcloud::{ExAppRecord, Host, LookupError, SessionError, User};
use crate::state::AppState;
use base64::Engine;
use http::HeaderMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The three questions the decision asks. Used as a generic parameter, never as `dyn`: the
/// cached path must not pay for boxing futures.
pub trait Lookups: Sync {
    /// The ExApp's record (D8, and D7 when there is one). A cached answer that `outdated`
    /// doubts (it sees the cached record, or `None` for a cached "no such app") may be asked
    /// again.
    fn record(
        &self,
        app_lower: &str,
        outdated: impl FnOnce(Option<&ExAppRecord>) -> bool + Send,
    ) -> impl Future<Output = Result<Arc<ExAppRecord>, LookupError>> + Send;

    /// The user behind the session cookie and `Authorization` header (D9c); `headers` is what
    /// user-info is asked with.
    fn user(
        &self,
        app_lower: &str,
        cookie: &[u8],
        authorization: &[u8],
        headers: &HeaderMap,
    ) -> impl Future<Output = Result<Arc<User>, SessionError>> + Send;

    /// The address to dial for an ExApp's host (D12).
    fn resolve(&self, host: &Host) -> impl Future<Output = Result<IpAddr, String>> + Send;
}

/// The caches in front of Nextcloud (records, sessions) and DNS.
impl Lookups for AppState {
    async fn record(
        &self,
        app_lower: &str,
        outdated: impl FnOnce(Option<&ExAppRecord>) -> bool + Send,
    ) -> Result<Arc<ExAppRecord>, LookupError> {
        self.apps
            .get_current(&self.nextcloud, app_lower, outdated)
            .await
    }

    async fn user(
        &self,
        app_lower: &str,
        cookie: &[u8],
        authorization: &[u8],
        headers: &HeaderMap,
    ) -> Result<Arc<User>, SessionError> {
        self.sessions
            .user(&self.nextcloud, app_lower, cookie, authorization, headers)
            .await
    }

    async fn resolve(&self, host: &Host) -> Result<IpAddr, String> {
        self.apps.resolve(host).await
    }
}

/// What to do with the request.
pub enum Verdict {
    /// Reset the connection without a response.
    Drop {
        strike: bool,
    },
    /// One of HaRP's plain-text answers (401, 403, 404, 503).
    Deny {
        status: u16,
        strike: bool,
    },
    Forward(ExAppTarget),
}

/// Everything the proxy phases need to forward to an ExApp.
pub struct ExAppTarget {
    pub addr: SocketAddr,
    pub version: String,
    pub authorization: String,
    /// Statuses that count as brute-force strikes when the ExApp answers with them.
    pub record: Option<Arc<ExAppRecord>>,
    pub route: Option<usize>,
}

impl ExAppTarget {
    pub fn bruteforce_statuses(&self) -> &[u16] {
        match (&self.record, self.route) {
            (Some(r), Some(i)) => &r.routes[i].bruteforce_protection,
            _ => &[],
        }
    }
}

/// The request facts the decision needs.
pub struct Request<'a> {
    pub app_lower: &'a str,
    /// Target path after our Q3 normalisation, without the query.
    pub target_path: &'a str,
    /// The same path as a server that decodes `%2F` and `\` or drops `;parameters` would route
    /// it, when that differs (`path::separator_view`): the route rules must allow it too.
    pub alt_path: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub key_valid: bool,
}

const APPAPI_HEADERS: [&str; 6] = [
    "ex-app-version",
    "ex-app-id",
    "ex-app-host",
    "ex-app-port",
    "authorization-app-api",
    "harp-shared-key",
];

pub use crate::answers::last_header;

/// The last `oc_sessionPassphrase` cookie, as HAProxy's `req.cook` finds it.
pub fn session_cookie(headers: &HeaderMap) -> Option<&[u8]> {
    let mut found = None;
    for line in headers.get_all("cookie") {
        for pair in line.as_bytes().split(|b| *b == b';') {
            let pair = pair.trim_ascii();
            if let Some(value) = pair.strip_prefix(b"oc_sessionPassphrase=") {
                found = Some(value);
            } else if pair == b"oc_sessionPassphrase" {
                found = Some(&b""[..]);
            }
        }
    }
    found
}

fn authorization_app_api(user_id: &str, token: &str) -> String {
    let mut plain = String::with_capacity(user_id.len() + 1 + token.len());
    plain.push_str(user_id);
    plain.push(':');
    plain.push_str(token);
    base64::engine::general_purpose::STANDARD.encode(plain)
}

fn is_lifecycle_path(p: &str) -> bool {
    matches!(p, "/heartbeat" | "/init" | "/enabled")
}

impl Request<'_> {
    /// AppAPI's own lifecycle endpoints, under either reading of the path.
    fn is_lifecycle(&self) -> bool {
        is_lifecycle_path(self.target_path) || self.alt_path.is_some_and(is_lifecycle_path)
    }

    /// Our Q3 fix: the first matching route for the path, and for its second reading when there
    /// is one; the stricter of the two decides, and no route under either reading is no route.
    fn route(&self, record: &ExAppRecord) -> Option<usize> {
        let first = |p: &str| {
            record
                .routes
                .iter()
                .position(|r| r.regex.as_ref().is_some_and(|re| re.is_match(p)))
        };
        let main = first(self.target_path)?;
        let Some(alt) = self.alt_path else {
            return Some(main);
        };
        let alt = first(alt)?;
        if record.routes[alt].access_level > record.routes[main].access_level {
            Some(alt)
        } else {
            Some(main)
        }
    }
}

pub async fn decide(lookups: &impl Lookups, req: &Request<'_>) -> Verdict {
    let direct = APPAPI_HEADERS.iter().all(|h| req.headers.contains_key(*h));
    if direct {
        return decide_direct(lookups, req).await;
    }
    let record = match lookups.record(req.app_lower, |_| false).await {
        Ok(r) => r,
        Err(LookupError::NotFound) => {
            return Verdict::Deny {
                status: 404,
                strike: true,
            }
        }
        Err(LookupError::Failed(why)) => return lookup_failed(req, &why, 404),
        Err(LookupError::Unavailable(why)) => return lookup_failed(req, &why, 503),
    };
    authorize_by_routes(lookups, req, record).await
}

/// A record that could not be had: Nextcloud failing is HaRP's 404, a Kubernetes API error
/// while finding the app's address is 503; neither is the client's fault.
fn lookup_failed(req: &Request<'_>, why: &str, status: u16) -> Verdict {
    warn_limited(
        "exapp lookup",
        format_args!("ExApp {:?}: {why}", req.app_lower),
    );
    Verdict::Deny {
        status,
        strike: false,
    }
}

/// HaRP D7: AppAPI's own signed request, authorised by the key instead of a user.
async fn decide_direct(lookups: &impl Lookups, req: &Request<'_>) -> Verdict {
    if !req.key_valid {
        return Verdict::Drop { strike: true };
    }
    let header = |n| {
        last_header(req.headers, n)
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or("")
    };
    let authorization = header("authorization-app-api");
    // AppAPI names the port it has for the app. Another port than the cached record's means a
    // stale record (AppAPI tells harp only on enable and disable; an app unregistered before it
    // was enabled and registered again elsewhere): Nextcloud is asked again, at most once per
    // app every 2 s.
    let named_port = header("ex-app-port").trim().parse::<u16>().ok();
    let outdated = |cached: Option<&ExAppRecord>| match (cached, named_port) {
        (Some(r), Some(p)) => r.nextcloud_port != p,
        _ => false,
    };
    let record = match lookups.record(req.app_lower, outdated).await {
        Ok(record) => Some(record),
        // The app is known but where it runs is not (a Kubernetes API error): the address in
        // the headers is AppAPI's logical host, not one to dial.
        Err(LookupError::Unavailable(why)) => return lookup_failed(req, &why, 503),
        Err(_) => None,
    };
    if authorization.is_empty() {
        // An empty signature proves nothing: route rules apply as for any request.
        return match record {
            Some(r) => authorize_by_routes(lookups, req, r).await,
            None if req.is_lifecycle() => Verdict::Drop { strike: true },
            None => Verdict::Deny {
                status: 404,
                strike: true,
            },
        };
    }
    let (host, port, version) = match &record {
        Some(r) => (r.host.clone(), r.port, r.version.clone()),
        None => {
            let Some(port) = named_port else {
                return Verdict::Deny {
                    status: 503,
                    strike: false,
                };
            };
            (
                Host::parse(header("ex-app-host")),
                port,
                header("ex-app-version").to_string(),
            )
        }
    };
    match lookups.resolve(&host).await {
        Ok(ip) => Verdict::Forward(ExAppTarget {
            addr: SocketAddr::new(ip, port),
            version,
            authorization: authorization.to_string(),
            record: None,
            route: None,
        }),
        Err(why) => {
            warn_limited(
                "exapp lookup",
                format_args!("ExApp {:?}: {why}", req.app_lower),
            );
            Verdict::Deny {
                status: 404,
                strike: false,
            }
        }
    }
}

/// HaRP D9-D12: lifecycle paths, the user, the first matching route, the upstream address.
async fn authorize_by_routes(
    lookups: &impl Lookups,
    req: &Request<'_>,
    record: Arc<ExAppRecord>,
) -> Verdict {
    if req.is_lifecycle() {
        return Verdict::Drop { strike: true };
    }
    let cookie = session_cookie(req.headers).unwrap_or(b"");
    let authorization = last_header(req.headers, "authorization");
    let user: Result<Option<Arc<User>>, String> = if !cookie.is_empty() || authorization.is_some() {
        match lookups
            .user(
                req.app_lower,
                cookie,
                authorization.unwrap_or(b""),
                req.headers,
            )
            .await
        {
            Ok(u) => Ok(Some(u)),
            Err(SessionError::Anonymous) => Ok(None),
            Err(SessionError::Failed(why)) => Err(why),
        }
    } else {
        Ok(None)
    };
    let Some(route_index) = req.route(&record) else {
        return match user {
            Err(_) => Verdict::Deny {
                status: 401,
                strike: false,
            },
            Ok(_) => Verdict::Deny {
                status: 404,
                strike: true,
            },
        };
    };
    let route = &record.routes[route_index];
    let user = match user {
        Ok(u) => u,
        // Our Q17 fix: Nextcloud being down must not lock anonymous visitors out of PUBLIC pages.
        Err(_) if route.access_level == PUBLIC => None,
        Err(why) => {
            warn_limited(
                "user-info",
                format_args!("user-info for {:?} failed: {why}", req.app_lower),
            );
            return Verdict::Deny {
                status: 401,
                strike: false,
            };
        }
    };
    let allowed = route.access_level == PUBLIC
        || user
            .as_ref()
            .is_some_and(|u| route.access_level <= u.access_level);
    if !allowed {
        return Verdict::Deny {
            status: 403,
            strike: true,
        };
    }
    let ip = match lookups.resolve(&record.host).await {
        Ok(ip) => ip,
        Err(why) => {
            warn_limited(
                "exapp lookup",
                format_args!("ExApp {:?}: {why}", req.app_lower),
            );
            return Verdict::Deny {
                status: 404,
                strike: false,
            };
        }
    };
    let user_id = user.as_ref().map_or("", |u| u.user_id.as_str());
    Verdict::Forward(ExAppTarget {
        addr: SocketAddr::new(ip, record.port),
        version: record.version.clone(),
        authorization: authorization_app_api(user_id, &record.token),
        route: Some(route_index),
        record: Some(record),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d10_authorization_value() {
        assert_eq!(authorization_app_api("", "tok"), "OnRvaw==");
    }

    #[test]
    fn last_session_cookie_wins() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1; oc_sessionPassphrase=first".parse().unwrap());
        h.append(
            "cookie",
            "oc_sessionPassphrase=second; b=2".parse().unwrap(),
        );
        assert_eq!(session_cookie(&h), Some(&b"second"[..]));
        let mut h = HeaderMap::new();
        h.append("cookie", "OC_SESSIONPASSPHRASE=x".parse().unwrap());
        assert_eq!(session_cookie(&h), None);
    }
}
