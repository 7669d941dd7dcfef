//! The ExApp record Nextcloud returns from `exapp-meta` and AppAPI pushes to `exapp_storage`.
//!
//! Parsed leniently where HaRP's pydantic model is lenient (numeric strings for ints, unknown
//! fields ignored) and strictly where it is strict (a numeric `exapp_version` is rejected).
//! Route regexes are compiled once here so the request path never compiles anything.

use serde_json::Value;
use std::net::IpAddr;

use super::route_regex::RouteRegex;

/// Who may use a route (AppAPI's PUBLIC / USER / ADMIN).
pub type AccessLevel = u8;
pub const PUBLIC: AccessLevel = 0;

/// One route rule, in the order Nextcloud sent it.
#[derive(Debug)]
pub struct Route {
    /// `None` when the pattern does not compile even as a backtracking regex: HaRP logs and
    /// skips such a route.
    pub regex: Option<RouteRegex>,
    pub source: String,
    pub access_level: AccessLevel,
    pub bruteforce_protection: Vec<u16>,
}

/// Where the ExApp listens: an IP literal needs no DNS, a name is resolved with a TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Host {
    pub fn parse(host: &str) -> Host {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(host.to_string()),
        }
    }
}

#[derive(Debug)]
pub struct ExAppRecord {
    pub token: String,
    pub version: String,
    pub host: Host,
    pub port: u16,
    /// The port Nextcloud has for the app (AppAPI's `ex-app-port`), also when the Kubernetes
    /// backend replaced `host` and `port` with where the app really runs.
    pub nextcloud_port: u16,
    pub routes: Vec<Route>,
}

/// Why a record body was refused; the text is for the log, never for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError(pub String);

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid ExApp record: {}", self.0)
    }
}

fn lax_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(_) | Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn required_str<'a>(
    obj: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Result<&'a str, SchemaError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(SchemaError(format!("`{key}` must be a string"))),
        None => Err(SchemaError(format!("`{key}` is missing"))),
    }
}

fn parse_route(v: &Value) -> Result<Route, SchemaError> {
    let obj = v
        .as_object()
        .ok_or_else(|| SchemaError("a route must be an object".into()))?;
    let url = required_str(obj, "url")?;
    let access_level = obj
        .get("access_level")
        .and_then(lax_int)
        .filter(|l| (0..=2).contains(l))
        .ok_or_else(|| SchemaError("`access_level` must be 0, 1 or 2".into()))?
        as AccessLevel;
    let bruteforce_protection = match obj.get("bruteforce_protection") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                lax_int(i)
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| {
                        SchemaError("`bruteforce_protection` must list status codes".into())
                    })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(SchemaError("`bruteforce_protection` must be a list".into())),
    };
    let regex = match RouteRegex::compile(url) {
        Ok(r) => Some(r),
        Err(e) => {
            log::warn!("route regex {url:?} does not compile and will be skipped: {e}");
            None
        }
    };
    Ok(Route {
        regex,
        source: url.to_string(),
        access_level,
        bruteforce_protection,
    })
}

impl ExAppRecord {
    pub fn from_json(body: &[u8]) -> Result<ExAppRecord, SchemaError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| SchemaError(format!("not JSON: {e}")))?;
        Self::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<ExAppRecord, SchemaError> {
        let obj = value
            .as_object()
            .ok_or_else(|| SchemaError("the record must be a JSON object".into()))?;
        let token = required_str(obj, "exapp_token")?.to_string();
        let version = required_str(obj, "exapp_version")?.to_string();
        let host = Host::parse(required_str(obj, "host")?);
        let port = obj
            .get("port")
            .ok_or_else(|| SchemaError("`port` is missing".into()))
            .and_then(|p| {
                lax_int(p)
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n != 0)
                    .ok_or_else(|| SchemaError("`port` must be an integer from 1 to 65535".into()))
            })?;
        let routes = match obj.get("routes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.iter().map(parse_route).collect::<Result<_, _>>()?,
            Some(_) => return Err(SchemaError("`routes` must be a list".into())),
        };
        Ok(ExAppRecord {
            token,
            version,
            host,
            port,
            nextcloud_port: port,
            routes,
        })
    }

    /// The first route whose regex matches the start of `path` decides (HaRP R2).
    pub fn first_matching_route(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.regex.as_ref().is_some_and(|re| re.is_match(path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_php_escaped_example() {
        let body = br#"{"exapp_token":"t","exapp_version":"1.0.0","host":"127.0.0.1","port":23000,"routes":[{"url":"^public\/.*","access_level":0,"bruteforce_protection":[401,403]},{"url":"^api\/.*","access_level":"1"}]}"#;
        let r = ExAppRecord::from_json(body).unwrap();
        assert_eq!(r.port, 23000);
        assert_eq!(r.host, Host::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!(r.routes[0].bruteforce_protection, vec![401, 403]);
        assert_eq!(r.routes[1].access_level, 1);
        assert!(r.first_matching_route("public/x").is_some());
        assert!(r.first_matching_route("/public/x").is_none());
    }

    #[test]
    fn numeric_version_and_bad_port_are_rejected() {
        assert!(ExAppRecord::from_json(
            br#"{"exapp_token":"t","exapp_version":1,"host":"h","port":1}"#
        )
        .is_err());
        assert!(ExAppRecord::from_json(
            br#"{"exapp_token":"t","exapp_version":"1","host":"h","port":"x"}"#
        )
        .is_err());
        assert!(ExAppRecord::from_json(
            br#"{"exapp_token":"t","exapp_version":"1","host":"h","port":"23000"}"#
        )
        .is_ok());
    }

    #[test]
    fn invalid_regex_is_skipped_and_alternation_stays_anchored() {
        let r = ExAppRecord::from_json(
            br#"{"exapp_token":"t","exapp_version":"1","host":"h","port":1,"routes":[{"url":"(","access_level":0},{"url":"/a|/b","access_level":1}]}"#,
        )
        .unwrap();
        assert!(r.routes[0].regex.is_none());
        assert_eq!(r.first_matching_route("/b").unwrap().access_level, 1);
        assert!(r.first_matching_route("/x/b").is_none());
    }
}
