//! Phase unit of `request_filter`, the last step (Q3, D7-D13, B31): every other app id is an
//! ExApp. The target path is normalised (Q3), `decide` rules within `HP_DECISION_TIMEOUT` (no
//! verdict in time is HaRP 503 without a strike), and a forward becomes the upstream the later
//! Pingora phases dial (`upstream_peer`) and dress (`upstream_request_filter`, §3.5).

use super::super::decide::{self, Lookups, Request, Verdict};
use super::super::{path, RequestCtx, Upstream};
use super::path_guard::AppPath;
use super::{upstream_uri, Answer, Refusal};
use crate::config::Settings;
use crate::metrics::Outcome;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::future::Future;
use std::task::Poll;
use std::time::{Duration, Instant};

/// The ExApp upstream for this request, or why not. The outer `Result` is a target that is not
/// a valid URI.
pub async fn decide(
    lookups: &impl Lookups,
    budget: Duration,
    req: &RequestHeader,
    app: AppPath<'_>,
    key_valid: bool,
) -> Result<Result<Upstream, Refusal>> {
    // Our Q3 fix: the routes see, and the ExApp receives, the normalised path.
    let target = path::normalize(app.target);
    let alt_path = path::separator_view(&target);
    let app_lower = super::super::lowercase(app.id);
    let decision = Request {
        app_lower: &app_lower,
        target_path: &target,
        alt_path: alt_path.as_deref(),
        headers: &req.headers,
        key_valid,
    };
    let verdict = match within(budget, decide::decide(lookups, &decision)).await {
        Some(v) => v,
        None => {
            crate::logging::warn_limited(
                "decision timeout",
                format_args!("decision for ExApp {app_lower:?} exceeded {budget:?}"),
            );
            Verdict::Deny {
                status: 503,
                strike: false,
            }
        }
    };
    Ok(match verdict {
        Verdict::Forward(target_info) => Ok(Upstream::ExApp {
            uri: upstream_uri(&target, req.uri.query())?,
            target: target_info,
            app_id: app.id.to_string(),
        }),
        Verdict::Drop { strike } => Err(Refusal {
            answer: Answer::Drop,
            strike,
        }),
        Verdict::Deny { status, strike } => Err(Refusal {
            answer: Answer::Status(status),
            strike,
        }),
    })
}

/// `decision`'s verdict, or `None` when it takes longer than `budget`. A decision answered from
/// the caches is ready at its first poll and sets no timer (a timer per request measured about
/// 3 % of a cached request's instructions); only one that has to wait for Nextcloud is timed.
async fn within<V>(budget: Duration, decision: impl Future<Output = V>) -> Option<V> {
    let mut decision = std::pin::pin!(decision);
    let first = std::future::poll_fn(|cx| Poll::Ready(decision.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(verdict) => Some(verdict),
        Poll::Pending => tokio::time::timeout(budget, decision).await.ok(),
    }
}

/// Hands the upstream to the later phases; `HP_TIMEOUT_BODY` starts counting here.
pub fn forward(settings: &Settings, session: &mut Session, ctx: &mut RequestCtx, up: Upstream) {
    ctx.outcome = Outcome::Proxied;
    ctx.upstream = Some(up);
    if let (Some(limit), false) = (settings.timeout_body, ctx.upgrade) {
        ctx.body_deadline = Some(Instant::now() + limit);
        session.set_read_timeout(Some(settings.timeout_client.min(limit)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nextcloud::{ExAppRecord, Host, LookupError, SessionError, User};
    use http::HeaderMap;
    use std::net::IpAddr;
    use std::sync::{Arc, Mutex};

    /// One ExApp at 10.0.0.7:8080 whose routes are an ADMIN `^/admin` then a PUBLIC catch-all,
    /// or a Nextcloud that never answers; remembers which app id it was asked for.
    struct OneApp {
        hang: bool,
        asked: Mutex<Vec<String>>,
    }

    impl OneApp {
        fn new(hang: bool) -> Self {
            OneApp {
                hang,
                asked: Mutex::new(Vec::new()),
            }
        }
    }

    impl Lookups for OneApp {
        async fn record(
            &self,
            app_lower: &str,
            _outdated: impl FnOnce(Option<&ExAppRecord>) -> bool + Send,
        ) -> Result<Arc<ExAppRecord>, LookupError> {
            self.asked.lock().unwrap().push(app_lower.to_string());
            if self.hang {
                std::future::pending::<()>().await;
            }
            let value = serde_json::json!({
                "exapp_token": "tok", "exapp_version": "1.2.3", "host": "10.0.0.7",
                "port": 8080, "routes": [
                    {"url": "^/admin", "access_level": 2},
                    {"url": ".*", "access_level": 0},
                ],
            });
            Ok(Arc::new(ExAppRecord::from_value(&value).unwrap()))
        }

        async fn user(
            &self,
            _app_lower: &str,
            _cookie: &[u8],
            _authorization: &[u8],
            _headers: &HeaderMap,
        ) -> Result<Arc<User>, SessionError> {
            Err(SessionError::Anonymous)
        }

        async fn resolve(&self, host: &Host) -> Result<IpAddr, String> {
            match host {
                Host::Ip(ip) => Ok(*ip),
                Host::Name(name) => Err(format!("no DNS in tests: {name}")),
            }
        }
    }

    async fn run(lookups: &OneApp, budget: Duration, target: &[u8]) -> Result<Upstream, Refusal> {
        let req = RequestHeader::build("GET", target, None).unwrap();
        let app = super::super::path_guard::split(req.uri.path()).unwrap();
        decide(lookups, budget, &req, app, false).await.unwrap()
    }

    #[tokio::test]
    async fn b31_no_verdict_within_the_budget_is_harp_503_without_a_strike() {
        let lookups = OneApp::new(true);
        let started = std::time::Instant::now();
        let got = run(&lookups, Duration::from_millis(20), b"/exapps/app/x").await;
        assert_eq!(
            got.err(),
            Some(Refusal {
                answer: Answer::Status(503),
                strike: false,
            })
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// Q3: the routes see the normalised path, so an escaped `admin` is the ADMIN route's.
    #[tokio::test]
    async fn q3_escaped_paths_meet_the_route_of_their_decoded_form() {
        for target in [
            &b"/exapps/app/%61dmin"[..],
            b"/exapps/app/%61%64%6D%69%6E/x",
            b"/exapps/app//./admin",
        ] {
            let got = run(&OneApp::new(false), Duration::from_secs(5), target).await;
            let refused = Refusal {
                answer: Answer::Status(403),
                strike: true,
            };
            assert_eq!(got.err(), Some(refused), "{target:?}");
        }
    }

    /// R3 B12: lookups use the lower-cased id, `EX-APP-ID` the URL's spelling; Q3: the ExApp gets
    /// the normalised path, `%2F` still escaped; §3.5: the query as sent; B72 Q12 E2:
    /// `/exapps/<id>`, with or without a slash or a query, is `/`.
    #[tokio::test]
    async fn the_upstream_request_target() {
        let rows: [(&[u8], &str, &str); 6] = [
            (b"/exapps/MyApp/x?a=%61", "MyApp", "/x?a=%61"),
            (b"/exapps/app/%7Ex//./b", "app", "/~x/b"),
            (b"/exapps/app/a%2Fb%2fc", "app", "/a%2Fb%2fc"),
            (b"/exapps/app/", "app", "/"),
            (b"/exapps/app", "app", "/"),
            (b"/exapps/app?x=1", "app", "/?x=1"),
        ];
        for (target, id, uri) in rows {
            let lookups = OneApp::new(false);
            let got = run(&lookups, Duration::from_secs(5), target).await;
            let Ok(Upstream::ExApp {
                target: to,
                uri: got_uri,
                app_id,
            }) = got
            else {
                panic!("{target:?} was not forwarded");
            };
            assert_eq!((app_id.as_str(), got_uri.to_string().as_str()), (id, uri));
            assert_eq!(to.addr.to_string(), "10.0.0.7:8080");
            assert_eq!(
                *lookups.asked.lock().unwrap(),
                vec![id.to_ascii_lowercase()]
            );
        }
    }
}
