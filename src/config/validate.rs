//! Validation of single values, identical whether the text came from an HP_* variable or from the
//! YAML file. Each parser returns the typed value or a problem that says what was expected.
//!
//! Deliberate differences from HaRP (Q9): an unknown log level, a blacklist count of 0 or less,
//! and non-numeric numbers are start-up errors here, where HaRP crashes its agent or bans every
//! client.

use super::settings::LogLevel;
use super::time;
use std::path::PathBuf;
use std::time::Duration;

/// HaRP's `strip_quotes`: one leading `"`, one trailing `"`, then one leading `'`, one trailing
/// `'`, each independently (so an unbalanced quote goes too). Compose files and env files leak
/// these quotes into values.
pub(crate) fn strip_quotes(text: &str) -> &str {
    let text = text.strip_prefix('"').unwrap_or(text);
    let text = text.strip_suffix('"').unwrap_or(text);
    let text = text.strip_prefix('\'').unwrap_or(text);
    text.strip_suffix('\'').unwrap_or(text)
}

/// `NC_INSTANCE_URL`, normalised as HaRP's agent does before appending `/index.php/apps/...`:
/// one trailing `/` removed, then one trailing `/index.php`.
pub(crate) fn nc_instance_url(text: &str) -> Result<String, String> {
    let url = strip_quotes(text.trim()).trim();
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    if !rest.is_some_and(|host| !host.is_empty() && !host.starts_with('/')) {
        return Err(
            "expected the base URL of Nextcloud starting with http:// or https:// \
                    (e.g. https://cloud.example.com)"
                .to_string(),
        );
    }
    let url = url.strip_suffix('/').unwrap_or(url);
    Ok(url.strip_suffix("/index.php").unwrap_or(url).to_string())
}

/// `HP_EXAPPS_ADDRESS`, `HP_EXAPPS_HTTPS_ADDRESS`, `HP_FRP_ADDRESS`, `HP_OPS_ADDRESS`.
pub(crate) fn address(text: &str) -> Result<std::net::SocketAddr, String> {
    super::net::parse_address(strip_quotes(text.trim()))
}

/// `HP_FRP_DISABLE_TLS`: HaRP compares with exactly `true`; anything else keeps TLS on, which is
/// the safe side, so it is never an error.
pub(crate) fn exactly_true(text: &str) -> Result<bool, String> {
    Ok(text.trim() == "true")
}

/// `HP_FRP_STRICT_PORTS`: a new setting, so it can be strict about typos.
pub(crate) fn boolean(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err("expected true or false (or 1/0, yes/no)".to_string()),
    }
}

/// `HP_K8S_ENABLED`: HaRP's agent enables on case-insensitive 1/true/yes and disables otherwise.
pub(crate) fn k8s_enabled(text: &str) -> Result<bool, String> {
    Ok(matches!(
        text.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes"
    ))
}

/// `HP_FRP_CERT_VALIDITY_DAYS`: `^[0-9]+$` and at least 1, as start.sh checks.
pub(crate) fn cert_validity_days(text: &str) -> Result<u32, String> {
    let text = text.trim();
    let expected = || "expected a whole number of days, at least 1".to_string();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected());
    }
    match text.parse::<u32>() {
        Ok(days) if days >= 1 => Ok(days),
        _ => Err(expected()),
    }
}

pub(crate) fn log_level(text: &str) -> Result<LogLevel, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "debug" => Ok(LogLevel::Debug),
        "info" => Ok(LogLevel::Info),
        "warning" | "warn" => Ok(LogLevel::Warning),
        "error" | "err" => Ok(LogLevel::Error),
        _ => Err("expected one of debug, info, warning, error".to_string()),
    }
}

/// `HP_SESSION_LIFETIME`: a float as Python reads it, within the agent's 0..=10 range. NaN and
/// infinities, which Python would let through, are refused.
pub(crate) fn session_lifetime(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=10.0).contains(&secs) => {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err("expected a number of seconds from 0 to 10".to_string()),
    }
}

/// `HP_BLACKLIST_WINDOW`: `0` is allowed and means strikes never count.
pub(crate) fn blacklist_window(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<u32>() {
        Ok(secs) => Ok(Duration::from_secs(secs.into())),
        Err(_) => Err(format!(
            "expected a whole number of seconds from 0 to {}",
            u32::MAX
        )),
    }
}

/// `HP_BLACKLIST_COUNT`: at least 1, since HaRP bans every client at 0 or less.
pub(crate) fn blacklist_count(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(count) if count >= 1 => Ok(count),
        _ => Err(
            "expected a whole number of strikes, at least 1 (0 or less would ban every client)"
                .to_string(),
        ),
    }
}

pub(crate) fn threads(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number of worker threads, at least 1".to_string()),
    }
}

/// `HP_MAX_CONNECTIONS`: at least 1; the upper bound keeps the count far from overflow and
/// within what a file-descriptor limit can grant (two descriptors per proxied connection).
pub(crate) fn max_connections(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err("expected a whole number of connections from 1 to 1000000".to_string()),
    }
}

pub(crate) fn path(text: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(text))
}

/// `HP_TIMEOUT_CONNECT`, _CLIENT, _SERVER, `HP_NC_TIMEOUT`, `HP_DECISION_TIMEOUT`: zero would make
/// every request fail, so it is refused.
pub(crate) fn timeout(text: &str) -> Result<Duration, String> {
    match time::parse(text)? {
        Duration::ZERO => {
            Err("expected a time greater than 0, like 30s or 500 (milliseconds)".to_string())
        }
        d => Ok(d),
    }
}

/// `HP_TIMEOUT_TUNNEL`: `0` (with any unit) means unlimited, which HaRP emulates with 24d.
pub(crate) fn tunnel_timeout(text: &str) -> Result<Option<Duration>, String> {
    Ok(Some(time::parse(text)?).filter(|d| !d.is_zero()))
}

/// `HP_TIMEOUT_BODY`: `0` (with any unit) means off.
pub(crate) fn off_or_timeout(text: &str) -> Result<Option<Duration>, String> {
    Ok(Some(time::parse(text)?).filter(|d| !d.is_zero()))
}

/// `HP_K8S_VERIFY_SSL`: HaRP turns verification off only for `false` (any case); a typo keeps
/// the safe side.
pub(crate) fn not_false(text: &str) -> Result<bool, String> {
    Ok(!text.trim().eq_ignore_ascii_case("false"))
}

/// `HP_K8S_API_SERVER`: an http(s) URL with a host; a trailing `/` is dropped.
pub(crate) fn k8s_api_server(text: &str) -> Result<String, String> {
    let text = strip_quotes(text.trim()).trim_end_matches('/');
    let expected = || {
        "expected the API server's URL, like https://kubernetes.default.svc or \
         https://10.0.0.1:6443"
            .to_string()
    };
    let uri: http::Uri = text.parse().map_err(|_| expected())?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() && uri.query().is_none() => {
            Ok(text.to_string())
        }
        _ => Err(expected()),
    }
}

/// `HP_K8S_BEARER_TOKEN`: surrounding white space is dropped (as HaRP's `strip()`); a token is
/// one header value, so control characters are refused.
pub(crate) fn k8s_token(text: &str) -> Result<String, String> {
    let token = text.trim();
    if token.is_empty() || token.bytes().any(|b| b.is_ascii_control() || !b.is_ascii()) {
        return Err("expected a bearer token (printable ASCII, not empty)".to_string());
    }
    Ok(token.to_string())
}

/// A DNS-1123 label: what Kubernetes accepts as a namespace name.
pub(crate) fn is_dns1123_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub(crate) fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns1123_label)
}

/// `HP_K8S_NAMESPACE`.
pub(crate) fn k8s_namespace(text: &str) -> Result<String, String> {
    let name = strip_quotes(text.trim());
    if is_dns1123_label(name) {
        Ok(name.to_string())
    } else {
        Err(
            "expected a Kubernetes namespace name (lower-case letters, digits and '-', at \
             most 63, starting and ending with a letter or digit)"
                .to_string(),
        )
    }
}

/// `HP_K8S_STORAGE_CLASS`: a `StorageClass` name (DNS-1123 subdomain).
pub(crate) fn k8s_storage_class(text: &str) -> Result<String, String> {
    let name = strip_quotes(text.trim());
    if is_dns1123_subdomain(name) {
        Ok(name.to_string())
    } else {
        Err("expected a StorageClass name (lower-case letters, digits, '-' and '.')".to_string())
    }
}

/// Whether `text` is a positive Kubernetes quantity (`10Gi`, `500m`, `1.5`, `2e3`).
pub(crate) fn is_positive_quantity(text: &str) -> bool {
    const SUFFIXES: [&str; 15] = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E",
    ];
    let number = text.strip_prefix('+').unwrap_or(text);
    let digits_end = number
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(number.len());
    let (digits, suffix) = number.split_at(digits_end);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let digits_ok = !(whole.is_empty() && fraction.is_empty())
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit());
    let suffix_ok = suffix.is_empty()
        || SUFFIXES.contains(&suffix)
        || suffix
            .strip_prefix(['e', 'E'])
            .map(|exp| exp.strip_prefix(['+', '-']).unwrap_or(exp))
            .is_some_and(|exp| !exp.is_empty() && exp.bytes().all(|b| b.is_ascii_digit()));
    let positive = digits.bytes().any(|b| (b'1'..=b'9').contains(&b));
    digits_ok && suffix_ok && positive
}

/// `HP_K8S_DEFAULT_STORAGE_SIZE`.
pub(crate) fn k8s_quantity(text: &str) -> Result<String, String> {
    let text = strip_quotes(text.trim());
    if is_positive_quantity(text) {
        Ok(text.to_string())
    } else {
        Err("expected a positive Kubernetes quantity, like 10Gi or 500Mi".to_string())
    }
}

/// `HP_K8S_HOST_ALIASES`: `host:ip` pairs separated by commas (an IPv6 address follows the first
/// `:`); names that share an address become one `hostAliases` entry. HaRP skips malformed
/// entries silently; a typo here would only show as a failing ExApp, so it is refused.
pub(crate) fn k8s_host_aliases(text: &str) -> Result<Vec<super::settings::HostAlias>, String> {
    let mut aliases: Vec<super::settings::HostAlias> = Vec::new();
    for entry in strip_quotes(text.trim())
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let parsed = entry.split_once(':').and_then(|(host, ip)| {
            let ip = ip.trim().trim_start_matches('[').trim_end_matches(']');
            let host = host.trim();
            let ip: std::net::IpAddr = ip.parse().ok()?;
            is_dns1123_subdomain(&host.to_ascii_lowercase()).then_some((host, ip))
        });
        let Some((host, ip)) = parsed else {
            return Err(format!(
                "entry {entry:?}: expected host:ip, like nextcloud.local:192.168.1.10 \
                 (several separated by commas)"
            ));
        };
        push_alias(&mut aliases, host, ip);
    }
    Ok(aliases)
}

fn push_alias(aliases: &mut Vec<super::settings::HostAlias>, host: &str, ip: std::net::IpAddr) {
    match aliases.iter_mut().find(|a| a.ip == ip) {
        Some(alias) => alias.hostnames.push(host.to_string()),
        None => aliases.push(super::settings::HostAlias {
            ip,
            hostnames: vec![host.to_string()],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k8s_values() {
        assert!(is_positive_quantity("10Gi") && is_positive_quantity("500m"));
        assert!(is_positive_quantity("1.5") && is_positive_quantity("2e3"));
        for bad in ["", "0", "-1", "1.5.5", "abc", "10GB", "Gi", "."] {
            assert!(!is_positive_quantity(bad), "{bad}");
        }
        assert_eq!(
            k8s_api_server("https://10.0.0.1:6443/"),
            Ok("https://10.0.0.1:6443".to_string())
        );
        assert!(k8s_api_server("10.0.0.1:6443").is_err());
        assert!(k8s_api_server("ftp://x").is_err());
        assert!(k8s_namespace("Bad_NS").is_err());
        assert_eq!(k8s_namespace("apps-1"), Ok("apps-1".to_string()));
        assert!(not_false("FALSE") == Ok(false) && not_false("no") == Ok(true));
        let aliases = k8s_host_aliases("nc.local:10.0.0.5, cloud:10.0.0.5,db:fd00::1").unwrap();
        assert_eq!(aliases.len(), 2);
        assert_eq!(aliases[0].hostnames, ["nc.local", "cloud"]);
        assert_eq!(
            aliases[1].ip,
            "fd00::1".parse::<std::net::IpAddr>().unwrap()
        );
        assert!(k8s_host_aliases("nc.local").is_err());
        assert!(k8s_host_aliases("nc.local:999.1.1.1").is_err());
        assert!(k8s_token(" abc \n") == Ok("abc".to_string()) && k8s_token(" ").is_err());
    }

    #[test]
    fn nc_url_trimming() {
        assert_eq!(
            nc_instance_url("http://nc/index.php/"),
            Ok("http://nc".into())
        );
        assert_eq!(
            nc_instance_url("http://nc/index.php"),
            Ok("http://nc".into())
        );
        assert_eq!(
            nc_instance_url("https://cloud.example.com/"),
            Ok("https://cloud.example.com".into())
        );
        assert_eq!(
            nc_instance_url("https://h/nextcloud//"),
            Ok("https://h/nextcloud/".into())
        );
        assert_eq!(nc_instance_url("\"http://nc\""), Ok("http://nc".into()));
        assert_eq!(
            nc_instance_url("'http://nc:8080/'"),
            Ok("http://nc:8080".into())
        );
        assert_eq!(nc_instance_url("HTTPS://NC"), Ok("HTTPS://NC".into()));
    }

    #[test]
    fn nc_url_needs_a_scheme_and_host() {
        for bad in [
            "",
            "\"\"",
            "nc.example.com",
            "ftp://nc",
            "http://",
            "https:///x",
        ] {
            assert!(nc_instance_url(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn quoted_addresses() {
        assert_eq!(
            address("\"0.0.0.0:8780\""),
            Ok("0.0.0.0:8780".parse().unwrap())
        );
        assert_eq!(address("'[::]:8781'"), Ok("[::]:8781".parse().unwrap()));
    }

    #[test]
    fn frp_disable_tls_only_on_exactly_true() {
        assert_eq!(exactly_true(" true "), Ok(true));
        for other in ["True", "1", "yes", "false", "x"] {
            assert_eq!(exactly_true(other), Ok(false), "{other}");
        }
    }

    #[test]
    fn strict_ports_bool() {
        for t in ["true", "TRUE", "1", "Yes"] {
            assert_eq!(boolean(t), Ok(true));
        }
        for f in ["false", "0", "NO"] {
            assert_eq!(boolean(f), Ok(false));
        }
        assert!(boolean("maybe").is_err());
    }

    #[test]
    fn k8s_enabled_values() {
        assert_eq!(k8s_enabled("YES"), Ok(true));
        assert_eq!(k8s_enabled("1"), Ok(true));
        assert_eq!(k8s_enabled("on"), Ok(false));
    }

    #[test]
    fn cert_days() {
        assert_eq!(cert_validity_days("5000"), Ok(5000));
        for bad in ["0", "-1", "+5", "1.5", "abc", "", "99999999999"] {
            assert!(cert_validity_days(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn log_levels() {
        assert_eq!(log_level("DEBUG"), Ok(LogLevel::Debug));
        assert_eq!(log_level("Info"), Ok(LogLevel::Info));
        assert_eq!(log_level("warn"), Ok(LogLevel::Warning));
        assert_eq!(log_level("err"), Ok(LogLevel::Error));
        assert!(log_level("verbose").is_err());
    }

    #[test]
    fn session_lifetime_range() {
        assert_eq!(session_lifetime("0"), Ok(Duration::ZERO));
        assert_eq!(session_lifetime("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(session_lifetime("10"), Ok(Duration::from_secs(10)));
        for bad in ["11", "-0.1", "nan", "inf", "x"] {
            assert!(session_lifetime(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn q9_blacklist_values() {
        assert_eq!(blacklist_window("0"), Ok(Duration::ZERO));
        assert!(blacklist_window("-1").is_err());
        assert!(blacklist_window("5m").is_err());
        assert_eq!(blacklist_count("1"), Ok(1));
        assert!(blacklist_count("0").is_err());
        assert!(blacklist_count("-3").is_err());
        assert!(blacklist_count("ten").is_err());
    }

    #[test]
    fn threads_at_least_one() {
        assert_eq!(threads("4"), Ok(4));
        assert!(threads("0").is_err());
        assert!(threads("many").is_err());
    }

    #[test]
    fn timeouts_must_be_positive() {
        assert_eq!(timeout("30s"), Ok(Duration::from_secs(30)));
        assert!(timeout("0").is_err());
        assert!(timeout("0s").is_err());
    }

    #[test]
    fn tunnel_zero_is_unlimited() {
        for zero in ["0", "0us", "0ms", "0s", "0m", "0h", "0d"] {
            assert_eq!(tunnel_timeout(zero), Ok(None), "{zero}");
        }
        assert_eq!(tunnel_timeout("1h"), Ok(Some(Duration::from_secs(3600))));
    }
}
