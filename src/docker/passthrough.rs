//! Which raw Docker Engine API calls AppAPI may make through the passthrough (HaRP §7).
//! Matched on the percent-decoded target path, case-insensitively; GET also means HEAD (R5).

use http::Method;
use regex::RegexSet;
use std::sync::LazyLock;

static READS: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new([
        r"(?i)^(/v[\d\.]+)?/_ping$",
        r"(?i)^(/v[\d\.]+)?/images/.*/json",
        r"(?i)^(/v[\d\.]+)?/containers/nc_app_[a-zA-Z0-9_.-]+/json",
        r"(?i)^(/v[\d\.]+)?/containers/nc_app_[a-zA-Z0-9_.-]+/logs",
    ])
    .expect("static allowlist compiles")
});

static PULL: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?i)^(/v[\d\.]+)?/images/create").expect("static allowlist compiles")
});

/// The allowlist's classification is the label metrics counts the call under.
pub use crate::metrics::PassthroughCall;

/// The allowed call this is (for metrics), or `None` when the allowlist refuses it.
pub fn operation(method: &Method, decoded_path: &str) -> Option<PassthroughCall> {
    /// What each of `READS` is, in its order.
    const READ_OPS: [PassthroughCall; 4] = [
        PassthroughCall::Ping,
        PassthroughCall::ImageInspect,
        PassthroughCall::ContainerInspect,
        PassthroughCall::ContainerLogs,
    ];
    if method == Method::GET || method == Method::HEAD {
        READS
            .matches(decoded_path)
            .iter()
            .next()
            .map(|i| READ_OPS[i])
    } else if method == Method::POST {
        PULL.is_match(decoded_path)
            .then_some(PassthroughCall::ImagePull)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_allowed(method: &Method, decoded_path: &str) -> bool {
        operation(method, decoded_path).is_some()
    }

    #[test]
    fn b45_b47_allowed_calls() {
        assert!(is_allowed(&Method::GET, "/_ping"));
        assert!(is_allowed(&Method::HEAD, "/v1.41/_ping"));
        assert!(is_allowed(&Method::POST, "/v1.41/images/create"));
        assert!(is_allowed(&Method::GET, "/v1.41/images/img/json"));
        assert!(is_allowed(&Method::GET, "/containers/nc_app_x/json"));
        assert!(is_allowed(&Method::GET, "/containers/nc_app_x/logs"));
    }

    #[test]
    fn allowed_calls_are_classified_for_metrics() {
        for (method, path, label) in [
            (Method::HEAD, "/_ping", Some("ping")),
            (
                Method::GET,
                "/v1.41/images/a/b:1/json",
                Some("image_inspect"),
            ),
            (
                Method::GET,
                "/containers/nc_app_x/json",
                Some("container_inspect"),
            ),
            (
                Method::GET,
                "/v1.44/containers/nc_app_x/logs",
                Some("container_logs"),
            ),
            (Method::POST, "/v1.41/images/create", Some("image_pull")),
            (Method::POST, "/v1.41/containers/create", None),
        ] {
            let call = operation(&method, path);
            assert_eq!(call.map(PassthroughCall::as_str), label, "{method} {path}");
        }
        for (i, call) in PassthroughCall::ALL.into_iter().enumerate() {
            assert_eq!(call as usize, i);
        }
    }

    #[test]
    fn b46_everything_else_is_denied() {
        assert!(!is_allowed(&Method::POST, "/_ping"));
        assert!(!is_allowed(&Method::GET, "/v1.41/version"));
        assert!(!is_allowed(&Method::POST, "/v1.41/containers/create"));
        assert!(!is_allowed(&Method::GET, "/containers/other/json"));
        assert!(!is_allowed(&Method::GET, "/"));
        assert!(!is_allowed(&Method::DELETE, "/containers/nc_app_x/json"));
    }
}
