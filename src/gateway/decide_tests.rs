//! Every rule `decide` applies (HaRP D7-D12, Q3, Q17, E3 and the B-rows they answer), one table
//! row each, against a fake [`Lookups`]: no Nextcloud, no DNS, no sockets, milliseconds in all.
//! The black-box tests in `tests/routing.rs` keep one request per behaviour family through the
//! real binary; the edges live here.

use super::decide::{decide, ExAppTarget, Lookups, Request, Verdict};
use crate::nextcloud::{ExAppRecord, Host, LookupError, SessionError, User};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

const PUBLIC: u8 = 0;
const USER: u8 = 1;
const ADMIN: u8 = 2;

type Routes = &'static [(&'static str, u8, &'static [u16])];
const ALL_PUBLIC: Routes = &[(".*", PUBLIC, &[])];
const ALL_USER: Routes = &[(".*", USER, &[])];
const ALL_ADMIN: Routes = &[(".*", ADMIN, &[])];
const ADMIN_THEN_PUBLIC: Routes = &[("^/admin", ADMIN, &[]), (".*", PUBLIC, &[])];

/// D10 values for token `tok`: base64 of `<user id>:tok`.
const ANON: &str = "OnRvaw==";
const ALICE: &str = "YWxpY2U6dG9r";
const ROOT: &str = "cm9vdDp0b2s=";
const BOB: &str = "Ym9iOnRvaw==";
/// What AppAPI signs its own requests with (D7), passed on as is.
const SIGNED: &str = "YWRtaW46c2VjcmV0";

/// Credentials the fake knows, as request headers.
const ALICE_COOKIE: (&str, &str) = ("cookie", "oc_sessionPassphrase=alice");
const ROOT_COOKIE: (&str, &str) = ("cookie", "oc_sessionPassphrase=root");
/// user-info answers 4xx: anonymous (B23).
const GUEST_COOKIE: (&str, &str) = ("cookie", "oc_sessionPassphrase=guest");
/// user-info fails (5xx, timeout, schema) (B22).
const DOWN_COOKIE: (&str, &str) = ("cookie", "oc_sessionPassphrase=down");
const BOB_BASIC: (&str, &str) = ("authorization", "Basic Ym9iOnB3");
/// user-info fails for this Basic user.
const DOWN_BASIC: (&str, &str) = ("authorization", "Basic ZG93bjpwdw==");

/// What Nextcloud says about the app.
#[derive(Clone, Copy)]
enum Meta {
    /// The record: these routes, at `Case::host`, port 8080.
    Record(Routes),
    NotFound,
    Failed,
    Unavailable,
}

/// AppAPI's six headers (D7); the key header is always present, `Case::key` says whether it
/// holds the valid key.
#[derive(Clone, Copy)]
struct Signed {
    host: &'static str,
    port: &'static str,
    authorization: &'static str,
}

const SIGNED_FOR_7000: Signed = Signed {
    host: "10.0.0.9",
    port: "7000",
    authorization: SIGNED,
};

#[derive(Debug, PartialEq)]
enum Want {
    Drop {
        strike: bool,
    },
    Deny {
        status: u16,
        strike: bool,
    },
    Forward {
        addr: &'static str,
        version: &'static str,
        authorization: &'static str,
        bruteforce: &'static [u16],
    },
}

use Want::{Deny, Drop};

const fn forward(addr: &'static str, authorization: &'static str) -> Want {
    Want::Forward {
        addr,
        version: "1.2.3",
        authorization,
        bruteforce: &[],
    }
}

/// The record's address for an IP-literal host.
const RECORD_ADDR: &str = "10.0.0.7:8080";

struct Case {
    rule: &'static str,
    meta: Meta,
    /// The record's host: `10.0.0.7`, `exapp.test` (resolves to 10.0.0.8) or `nowhere.test`.
    host: &'static str,
    /// Nextcloud's answer when a doubted cached record is asked again (D7's port check).
    refetched_port: Option<u16>,
    path: &'static str,
    alt: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
    signed: Option<Signed>,
    key: bool,
    want: Want,
    /// The lookups made, in order: `record`, `recheck` (a doubted cached answer asked again),
    /// `user`, `resolve`.
    calls: &'static [&'static str],
}

const BASE: Case = Case {
    rule: "",
    meta: Meta::Record(ALL_PUBLIC),
    host: "10.0.0.7",
    refetched_port: None,
    path: "/x",
    alt: None,
    headers: &[],
    signed: None,
    key: false,
    want: forward(RECORD_ADDR, ANON),
    calls: &["record", "resolve"],
};

const CASES: &[Case] = &[
    // D8: the record.
    Case {
        rule: "D8 an app Nextcloud does not know is 404 with a strike",
        meta: Meta::NotFound,
        want: Deny {
            status: 404,
            strike: true,
        },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D8 with the valid key the verdict still strikes; the gateway exempts (Q1)",
        meta: Meta::NotFound,
        headers: &[("harp-shared-key", "k")],
        key: true,
        want: Deny {
            status: 404,
            strike: true,
        },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D8 Nextcloud failing is 404 without a strike (B9)",
        meta: Meta::Failed,
        want: Deny {
            status: 404,
            strike: false,
        },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D8 an unknown Kubernetes address is 503 without a strike",
        meta: Meta::Unavailable,
        want: Deny {
            status: 503,
            strike: false,
        },
        calls: &["record"],
        ..BASE
    },
    // D9b: lifecycle paths without AppAPI's signature.
    Case {
        rule: "D9b /heartbeat is dropped with a strike, before any user lookup (B26)",
        path: "/heartbeat",
        headers: &[ALICE_COOKIE],
        want: Drop { strike: true },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D9b /init is dropped with a strike (B26)",
        path: "/init",
        want: Drop { strike: true },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D9b /enabled is dropped with a strike; the query is not part of the path (B26)",
        path: "/enabled",
        want: Drop { strike: true },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D9b with the valid key the verdict still strikes; the gateway exempts (Q1)",
        path: "/heartbeat",
        headers: &[("harp-shared-key", "k")],
        key: true,
        want: Drop { strike: true },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D9b Q3 a lifecycle path under the second reading is dropped too",
        path: "/heartbeat;v=1",
        alt: Some("/heartbeat"),
        want: Drop { strike: true },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D9b only the exact paths: /heartbeat/x goes to the routes",
        path: "/heartbeat/x",
        ..BASE
    },
    // D9c: who the user is.
    Case {
        rule: "D9c B25 no cookie and no Authorization: no user lookup, anonymous",
        ..BASE
    },
    Case {
        rule: "D9c B25 an empty session cookie is no credential",
        headers: &[("cookie", "oc_sessionPassphrase=")],
        ..BASE
    },
    Case {
        rule: "D9c B25 other cookies are no credential",
        headers: &[("cookie", "other=1")],
        ..BASE
    },
    Case {
        rule: "D9c E3 on a PUBLIC route a logged-in user is still asked for and named",
        headers: &[ALICE_COOKIE],
        want: forward(RECORD_ADDR, ALICE),
        calls: &["record", "user", "resolve"],
        ..BASE
    },
    Case {
        rule: "D9c B23 user-info 4xx is anonymous on a PUBLIC route",
        headers: &[GUEST_COOKIE],
        calls: &["record", "user", "resolve"],
        ..BASE
    },
    Case {
        rule: "D9c Q17 user-info failing on a PUBLIC route goes on anonymously",
        headers: &[DOWN_COOKIE],
        calls: &["record", "user", "resolve"],
        ..BASE
    },
    Case {
        rule: "D9c B15 USER route, anonymous: 403 with a strike",
        meta: Meta::Record(ALL_USER),
        want: Deny {
            status: 403,
            strike: true,
        },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D9c B23 USER route, user-info 4xx: anonymous, 403 with a strike",
        meta: Meta::Record(ALL_USER),
        headers: &[GUEST_COOKIE],
        want: Deny {
            status: 403,
            strike: true,
        },
        calls: &["record", "user"],
        ..BASE
    },
    Case {
        rule: "D9c B22 USER route, user-info failing: 401 without a strike",
        meta: Meta::Record(ALL_USER),
        headers: &[DOWN_COOKIE],
        want: Deny {
            status: 401,
            strike: false,
        },
        calls: &["record", "user"],
        ..BASE
    },
    Case {
        rule: "D9c B22 USER route, user-info failing for a Basic user: 401 without a strike",
        meta: Meta::Record(ALL_USER),
        headers: &[DOWN_BASIC],
        want: Deny {
            status: 401,
            strike: false,
        },
        calls: &["record", "user"],
        ..BASE
    },
    Case {
        rule: "D9c user-info failing and no route matching: 401 without a strike",
        meta: Meta::Record(&[("^/api", PUBLIC, &[])]),
        headers: &[DOWN_COOKIE],
        want: Deny {
            status: 401,
            strike: false,
        },
        calls: &["record", "user"],
        ..BASE
    },
    Case {
        rule: "D9c USER route, a user passes and is named (D10)",
        meta: Meta::Record(ALL_USER),
        headers: &[ALICE_COOKIE],
        want: forward(RECORD_ADDR, ALICE),
        calls: &["record", "user", "resolve"],
        ..BASE
    },
    Case {
        rule: "D9c USER route, an admin passes",
        meta: Meta::Record(ALL_USER),
        headers: &[ROOT_COOKIE],
        want: forward(RECORD_ADDR, ROOT),
        calls: &["record", "user", "resolve"],
        ..BASE
    },
    Case {
        rule: "D9c B16 USER route, a Basic Authorization user passes and is named",
        meta: Meta::Record(ALL_USER),
        headers: &[BOB_BASIC],
        want: forward(RECORD_ADDR, BOB),
        calls: &["record", "user", "resolve"],
        ..BASE
    },
    Case {
        rule: "D9c B17 ADMIN route, a level-1 user: 403 with a strike",
        meta: Meta::Record(ALL_ADMIN),
        headers: &[ALICE_COOKIE],
        want: Deny {
            status: 403,
            strike: true,
        },
        calls: &["record", "user"],
        ..BASE
    },
    Case {
        rule: "D9c B17 ADMIN route, an admin passes",
        meta: Meta::Record(ALL_ADMIN),
        headers: &[ROOT_COOKIE],
        want: forward(RECORD_ADDR, ROOT),
        calls: &["record", "user", "resolve"],
        ..BASE
    },
    Case {
        rule: "D9c ADMIN route, anonymous: 403 with a strike",
        meta: Meta::Record(ALL_ADMIN),
        want: Deny {
            status: 403,
            strike: true,
        },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D9c B20 no route matches: 404 with a strike",
        meta: Meta::Record(&[("^/api", PUBLIC, &[])]),
        path: "/other",
        want: Deny {
            status: 404,
            strike: true,
        },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D9c B20 no routes at all: 404 with a strike",
        meta: Meta::Record(&[]),
        want: Deny {
            status: 404,
            strike: true,
        },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D9c B18 R2 the first matching route decides, without falling through",
        meta: Meta::Record(&[("^/a", ADMIN, &[]), (".*", PUBLIC, &[])]),
        path: "/a",
        want: Deny {
            status: 403,
            strike: true,
        },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D9c B18 a path the first route does not match goes to the next",
        meta: Meta::Record(&[("^/a", ADMIN, &[]), (".*", PUBLIC, &[])]),
        path: "/b",
        ..BASE
    },
    Case {
        rule: "D9c B19 R2 a route is a prefix match",
        meta: Meta::Record(&[("^/x", PUBLIC, &[])]),
        path: "/xyz/deeper",
        ..BASE
    },
    Case {
        rule: "D9c B19 R2 a route is anchored at the start of the path",
        meta: Meta::Record(&[("x", PUBLIC, &[])]),
        want: Deny {
            status: 404,
            strike: true,
        },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D9c B19 R2 a route is case-sensitive",
        meta: Meta::Record(&[("^/x", PUBLIC, &[])]),
        path: "/X",
        want: Deny {
            status: 404,
            strike: true,
        },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D9c B21 a route that does not compile is skipped",
        meta: Meta::Record(&[("^/a(", ADMIN, &[]), ("^/a", PUBLIC, &[])]),
        path: "/a",
        ..BASE
    },
    Case {
        rule: "D9c B21 a Python look-ahead route is evaluated, not skipped",
        meta: Meta::Record(&[("^/(?!public/)", ADMIN, &[]), (".*", PUBLIC, &[])]),
        path: "/settings",
        want: Deny {
            status: 403,
            strike: true,
        },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D9c B21 a Python backreference route is evaluated: it matches",
        meta: Meta::Record(&[(r"^/(\w+)/\1$", PUBLIC, &[]), (".*", USER, &[])]),
        path: "/ab/ab",
        ..BASE
    },
    Case {
        rule: "D9c B21 a Python backreference route is evaluated: it does not match",
        meta: Meta::Record(&[(r"^/(\w+)/\1$", PUBLIC, &[]), (".*", USER, &[])]),
        path: "/ab/cd",
        want: Deny {
            status: 403,
            strike: true,
        },
        calls: &["record"],
        ..BASE
    },
    // Q3: the second reading of the path must pass too.
    Case {
        rule: "Q3 the second reading hits a stricter route: that route decides",
        meta: Meta::Record(ADMIN_THEN_PUBLIC),
        path: "/.%2fadmin",
        alt: Some("/admin"),
        want: Deny {
            status: 403,
            strike: true,
        },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "Q3 the second reading's stricter route lets an admin through",
        meta: Meta::Record(ADMIN_THEN_PUBLIC),
        path: "/.%2fadmin",
        alt: Some("/admin"),
        headers: &[ROOT_COOKIE],
        want: forward(RECORD_ADDR, ROOT),
        calls: &["record", "user", "resolve"],
        ..BASE
    },
    Case {
        rule: "Q3 the first reading's stricter route decides when it is stricter",
        meta: Meta::Record(&[("^/private", USER, &[]), (".*", PUBLIC, &[])]),
        path: "/private%2Fx",
        alt: Some("/public/x"),
        want: Deny {
            status: 403,
            strike: true,
        },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "Q3 no route under the second reading is no route",
        meta: Meta::Record(&[("^/files", PUBLIC, &[])]),
        path: "/files%2F..%2Fsecret",
        alt: Some("/secret"),
        want: Deny {
            status: 404,
            strike: true,
        },
        calls: &["record"],
        ..BASE
    },
    // D11: the deciding route's brute-force statuses.
    Case {
        rule: "D11 the deciding route's brute-force list arms the response phase",
        meta: Meta::Record(&[(".*", PUBLIC, &[401, 403])]),
        want: Want::Forward {
            addr: RECORD_ADDR,
            version: "1.2.3",
            authorization: ANON,
            bruteforce: &[401, 403],
        },
        ..BASE
    },
    Case {
        rule: "D11 only the deciding route's list counts",
        meta: Meta::Record(&[("^/a", PUBLIC, &[]), (".*", PUBLIC, &[401])]),
        path: "/a",
        ..BASE
    },
    // D12: the address.
    Case {
        rule: "D12 B32 a host name is resolved",
        host: "exapp.test",
        want: forward("10.0.0.8:8080", ANON),
        ..BASE
    },
    Case {
        rule: "D12 B32 a host name that does not resolve is 404 without a strike",
        host: "nowhere.test",
        want: Deny {
            status: 404,
            strike: false,
        },
        ..BASE
    },
    // D7: AppAPI's own signed requests.
    Case {
        rule: "D7 B29 the six headers with a wrong key: dropped with a strike, nothing asked",
        signed: Some(SIGNED_FOR_7000),
        want: Drop { strike: true },
        calls: &[],
        ..BASE
    },
    Case {
        rule: "D7 B27 D9a the signature passes whatever the routes, to the record's address",
        meta: Meta::Record(&[(".*", ADMIN, &[401])]),
        path: "/heartbeat",
        headers: &[ALICE_COOKIE],
        signed: Some(SIGNED_FOR_7000),
        key: true,
        want: forward(RECORD_ADDR, SIGNED),
        calls: &["record", "resolve"],
        ..BASE
    },
    Case {
        rule: "D7 B28 an app Nextcloud does not know goes to the headers' address and version",
        meta: Meta::NotFound,
        path: "/enabled",
        signed: Some(SIGNED_FOR_7000),
        key: true,
        want: Want::Forward {
            addr: "10.0.0.9:7000",
            version: "4.5.6",
            authorization: SIGNED,
            bruteforce: &[],
        },
        calls: &["record", "resolve"],
        ..BASE
    },
    Case {
        rule: "D7 B28 Nextcloud failing: the headers' address",
        meta: Meta::Failed,
        path: "/init",
        signed: Some(SIGNED_FOR_7000),
        key: true,
        want: Want::Forward {
            addr: "10.0.0.9:7000",
            version: "4.5.6",
            authorization: SIGNED,
            bruteforce: &[],
        },
        calls: &["record", "resolve"],
        ..BASE
    },
    Case {
        rule: "D7 an unknown Kubernetes address is 503, not the headers' guess",
        meta: Meta::Unavailable,
        signed: Some(SIGNED_FOR_7000),
        key: true,
        want: Deny {
            status: 503,
            strike: false,
        },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D7 B30 no record and a port that is not a number: HaRP 503",
        meta: Meta::NotFound,
        signed: Some(Signed {
            port: "abc",
            ..SIGNED_FOR_7000
        }),
        key: true,
        want: Deny {
            status: 503,
            strike: false,
        },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D7 with a record, a port that is not a number does not matter",
        signed: Some(Signed {
            port: "abc",
            ..SIGNED_FOR_7000
        }),
        key: true,
        want: forward(RECORD_ADDR, SIGNED),
        ..BASE
    },
    Case {
        rule: "D7 the header's host name that does not resolve is 404 without a strike",
        meta: Meta::NotFound,
        signed: Some(Signed {
            host: "nowhere.test",
            ..SIGNED_FOR_7000
        }),
        key: true,
        want: Deny {
            status: 404,
            strike: false,
        },
        calls: &["record", "resolve"],
        ..BASE
    },
    Case {
        rule: "D7 a cached record naming the header's port is believed",
        signed: Some(Signed {
            port: "8080",
            ..SIGNED_FOR_7000
        }),
        key: true,
        refetched_port: Some(9090),
        want: forward(RECORD_ADDR, SIGNED),
        ..BASE
    },
    Case {
        rule: "D7 a cached record naming another port than the header is asked again",
        signed: Some(SIGNED_FOR_7000),
        key: true,
        refetched_port: Some(9090),
        want: forward("10.0.0.7:9090", SIGNED),
        calls: &["recheck", "resolve"],
        ..BASE
    },
    Case {
        rule: "D7 a cached 'no such app' is not doubted: the headers' address",
        meta: Meta::NotFound,
        signed: Some(SIGNED_FOR_7000),
        key: true,
        refetched_port: Some(9090),
        want: Want::Forward {
            addr: "10.0.0.9:7000",
            version: "4.5.6",
            authorization: SIGNED,
            bruteforce: &[],
        },
        calls: &["record", "resolve"],
        ..BASE
    },
    Case {
        rule: "D7 an empty signature proves nothing: the routes apply",
        meta: Meta::Record(ALL_USER),
        signed: Some(Signed {
            authorization: "",
            ..SIGNED_FOR_7000
        }),
        key: true,
        want: Deny {
            status: 403,
            strike: true,
        },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D7 an empty signature on a lifecycle path is dropped with a strike (D9b)",
        path: "/heartbeat",
        signed: Some(Signed {
            authorization: "",
            ..SIGNED_FOR_7000
        }),
        key: true,
        want: Drop { strike: true },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D7 an empty signature, no record, lifecycle path: dropped with a strike",
        meta: Meta::NotFound,
        path: "/init",
        signed: Some(Signed {
            authorization: "",
            ..SIGNED_FOR_7000
        }),
        key: true,
        want: Drop { strike: true },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D7 an empty signature, no record: 404 with a strike",
        meta: Meta::NotFound,
        signed: Some(Signed {
            authorization: "",
            ..SIGNED_FOR_7000
        }),
        key: true,
        want: Deny {
            status: 404,
            strike: true,
        },
        calls: &["record"],
        ..BASE
    },
    Case {
        rule: "D7 B14 five of the six headers are a client's: routes apply, D10 replaces its value",
        headers: &[
            ("ex-app-version", "0.0.0"),
            ("ex-app-id", "app"),
            ("ex-app-host", "10.0.0.9"),
            ("ex-app-port", "7000"),
            ("authorization-app-api", SIGNED),
        ],
        ..BASE
    },
];

/// A table where the real gateway asks caches, Nextcloud and DNS; it records what was asked.
struct Fake {
    meta: Meta,
    host: &'static str,
    refetched_port: Option<u16>,
    calls: Mutex<Vec<&'static str>>,
}

fn record(routes: Routes, host: &str, port: u16) -> Arc<ExAppRecord> {
    let routes: Vec<_> = routes
        .iter()
        .map(|(url, level, statuses)| {
            json!({"url": url, "access_level": level, "bruteforce_protection": statuses})
        })
        .collect();
    let value = json!({
        "exapp_token": "tok",
        "exapp_version": "1.2.3",
        "host": host,
        "port": port,
        "routes": routes,
    });
    Arc::new(ExAppRecord::from_value(&value).expect("a valid test record"))
}

impl Fake {
    fn new(case: &Case) -> Fake {
        Fake {
            meta: case.meta,
            host: case.host,
            refetched_port: case.refetched_port,
            calls: Mutex::new(Vec::new()),
        }
    }

    fn called(&self, what: &'static str) {
        self.calls.lock().unwrap().push(what);
    }
}

impl Lookups for Fake {
    async fn record(
        &self,
        _app_lower: &str,
        outdated: impl FnOnce(Option<&ExAppRecord>) -> bool + Send,
    ) -> Result<Arc<ExAppRecord>, LookupError> {
        let cached = match self.meta {
            Meta::Record(routes) => Ok(record(routes, self.host, 8080)),
            Meta::NotFound => Err(LookupError::NotFound),
            // Failures are never cached, so nothing is there to doubt.
            Meta::Failed => {
                self.called("record");
                return Err(LookupError::Failed("exapp-meta answered 500".into()));
            }
            Meta::Unavailable => {
                self.called("record");
                return Err(LookupError::Unavailable("Kubernetes API error".into()));
            }
        };
        let doubted = outdated(cached.as_ref().ok().map(|r| &**r));
        match (doubted, self.refetched_port, self.meta) {
            (true, Some(port), Meta::Record(routes)) => {
                self.called("recheck");
                Ok(record(routes, self.host, port))
            }
            _ => {
                self.called("record");
                cached
            }
        }
    }

    async fn user(
        &self,
        _app_lower: &str,
        cookie: &[u8],
        authorization: &[u8],
        _headers: &HeaderMap,
    ) -> Result<Arc<User>, SessionError> {
        self.called("user");
        let user = |id: &str, level| {
            Ok(Arc::new(User {
                user_id: id.to_string(),
                access_level: level,
            }))
        };
        match (cookie, authorization) {
            (b"alice", _) => user("alice", USER),
            (b"root", _) => user("root", ADMIN),
            (b"", b"Basic Ym9iOnB3") => user("bob", USER),
            (b"down", _) | (b"", b"Basic ZG93bjpwdw==") => {
                Err(SessionError::Failed("user-info answered 500".into()))
            }
            _ => Err(SessionError::Anonymous),
        }
    }

    async fn resolve(&self, host: &Host) -> Result<IpAddr, String> {
        self.called("resolve");
        match host {
            Host::Ip(ip) => Ok(*ip),
            Host::Name(name) if name == "exapp.test" => Ok("10.0.0.8".parse().unwrap()),
            Host::Name(name) => Err(format!("cannot resolve {name:?}")),
        }
    }
}

/// A verdict in the table's terms.
#[derive(Debug, PartialEq)]
enum Got {
    Drop {
        strike: bool,
    },
    Deny {
        status: u16,
        strike: bool,
    },
    Forward {
        addr: String,
        version: String,
        authorization: String,
        bruteforce: Vec<u16>,
    },
}

impl From<&Want> for Got {
    fn from(want: &Want) -> Got {
        match *want {
            Want::Drop { strike } => Got::Drop { strike },
            Want::Deny { status, strike } => Got::Deny { status, strike },
            Want::Forward {
                addr,
                version,
                authorization,
                bruteforce,
            } => Got::Forward {
                addr: addr.to_string(),
                version: version.to_string(),
                authorization: authorization.to_string(),
                bruteforce: bruteforce.to_vec(),
            },
        }
    }
}

impl From<Verdict> for Got {
    fn from(verdict: Verdict) -> Got {
        match verdict {
            Verdict::Drop { strike } => Got::Drop { strike },
            Verdict::Deny { status, strike } => Got::Deny { status, strike },
            Verdict::Forward(target) => forwarded(&target),
        }
    }
}

fn forwarded(target: &ExAppTarget) -> Got {
    Got::Forward {
        addr: target.addr.to_string(),
        version: target.version.clone(),
        authorization: target.authorization.clone(),
        bruteforce: target.bruteforce_statuses().to_vec(),
    }
}

fn headers(case: &Case) -> HeaderMap {
    let mut map = HeaderMap::new();
    let mut add = |name: &str, value: &str| {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    };
    for (name, value) in case.headers {
        add(name, value);
    }
    if let Some(signed) = case.signed {
        add("ex-app-version", "4.5.6");
        add("ex-app-id", "app");
        add("ex-app-host", signed.host);
        add("ex-app-port", signed.port);
        add("authorization-app-api", signed.authorization);
        add("harp-shared-key", if case.key { "k" } else { "wrong" });
    }
    map
}

#[tokio::test]
async fn every_rule_of_the_decision() {
    let mut failures = Vec::new();
    for case in CASES {
        let fake = Fake::new(case);
        let headers = headers(case);
        let req = Request {
            app_lower: "app",
            target_path: case.path,
            alt_path: case.alt,
            headers: &headers,
            key_valid: case.key,
        };
        let got = Got::from(decide(&fake, &req).await);
        let calls = fake.calls.into_inner().unwrap();
        if got != Got::from(&case.want) || calls != case.calls {
            failures.push(format!(
                "{}:\n    want {:?} after {:?}\n    got  {got:?} after {calls:?}",
                case.rule, case.want, case.calls
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Each row starts with the ids of the rules it checks, and each id is one docs/behaviour.md
/// explains (`D9b` is item b of D9).
#[test]
fn every_row_cites_documented_rules() {
    let doc = include_str!("../../docs/behaviour.md");
    let mut seen = std::collections::BTreeSet::new();
    for case in CASES {
        assert!(seen.insert(case.rule), "two rows named {:?}", case.rule);
        let ids: Vec<&str> = case
            .rule
            .split_whitespace()
            .take_while(|w| {
                w.len() >= 2
                    && w.starts_with(['B', 'D', 'E', 'Q', 'R'])
                    && w.as_bytes()[1].is_ascii_digit()
            })
            .collect();
        assert!(!ids.is_empty(), "{:?} cites no rule", case.rule);
        for id in ids {
            let id = id.trim_end_matches(|c: char| c.is_ascii_lowercase());
            assert!(
                doc.contains(&format!("- **{id}**")),
                "{id} (row {:?}) is not in docs/behaviour.md",
                case.rule
            );
        }
    }
}
