//! The HP_* environment variables (and `NC_INSTANCE_URL`), read through a lookup function so tests
//! never touch the process environment. This is the only place in the crate that reads the
//! process environment.

use super::keys::Key;
use super::layer::{Layer, Origin};

/// A lookup of one environment variable.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Names the YAML file when no `--config` argument is given.
pub const CONFIG_PATH_VAR: &str = "HARP_CONFIG";

/// Shortens the "no such app" cache (R7, 15 s) so harp's own tests can watch it expire without
/// waiting 15 s. Not a setting: no `HP_` name, no YAML key, not in `check-config`, and a
/// warning at start when set.
pub const TEST_NEGATIVE_CACHE_TTL_VAR: &str = "HARP_TEST_NEGATIVE_CACHE_TTL";

/// HaRP variables that configured processes harp-rs no longer has (the SPOE agent, start.sh's
/// waits and watchdog). Accepted so existing deployments start unchanged;
/// `harp check-config` lists the ones that are set as ignored.
pub const IGNORED_ENV_VARS: &[&str] = &[
    "HP_SPOA_ADDRESS",
    "HP_VERBOSE_START",
    "HP_WAIT_AGENT_HTTP",
    "HP_WAIT_SPOA",
    "HP_WAIT_FRP",
    "HP_WAIT_INTERVAL",
    "HP_WATCHDOG_ENABLED",
    "HP_WATCHDOG_INTERVAL",
    "HP_WATCHDOG_FAILS",
];

/// The API server a pod reaches through the variables kubelet sets in every container
/// (`KUBERNETES_SERVICE_HOST`, `KUBERNETES_SERVICE_PORT`, default 443): `HP_K8S_API_SERVER`'s
/// default, as in HaRP.
pub(crate) fn in_cluster_api_server(env: EnvLookup<'_>) -> Option<String> {
    let host = env("KUBERNETES_SERVICE_HOST").filter(|h| !h.trim().is_empty())?;
    let host = host.trim();
    let port = env("KUBERNETES_SERVICE_PORT")
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "443".to_string());
    // An IPv6 service address needs brackets in a URL.
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Some(format!("https://{host}:{}", port.trim()))
}

/// The process environment as a lookup. Invalid UTF-8 is replaced rather than dropped, so such
/// a value fails validation (e.g. "non-ASCII" for the key) instead of silently counting as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
}

/// The recognised variables that are set. An empty value counts as unset (compose files often
/// declare `HP_X=` to mean "default"), so it never overrides the YAML file. The exception is
/// `HP_FRP_ADDRESS`: HaRP refuses to start when it is empty (B64), and so do we, rather than
/// silently listening on the default.
pub(crate) fn read(env: EnvLookup<'_>) -> Layer {
    let mut layer = Layer::new(Origin::Env);
    for key in Key::ALL {
        if let Some(text) = env(key.env_name()).filter(|t| !t.is_empty() || key == Key::FrpAddress)
        {
            layer.set(key, text);
        }
    }
    layer
}

/// Which of [`IGNORED_ENV_VARS`] are set (names only: some hold secrets).
pub fn ignored_vars(env: EnvLookup<'_>) -> Vec<&'static str> {
    IGNORED_ENV_VARS
        .iter()
        .copied()
        .filter(|name| env(name).is_some_and(|v| !v.is_empty()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_unset() {
        let layer = read(&|name| match name {
            "HP_LOG_LEVEL" => Some(String::new()),
            "HP_THREADS" => Some("2".into()),
            _ => None,
        });
        assert!(layer.get(Key::LogLevel).is_none());
        assert_eq!(layer.get(Key::Threads).map(|r| r.text), Some("2"));
    }

    #[test]
    fn ignored_vars_are_listed_when_set() {
        let env = |name: &str| match name {
            "HP_SPOA_ADDRESS" => Some("127.0.0.1:9600".to_string()),
            "HP_WATCHDOG_FAILS" => Some("12".to_string()),
            "HP_VERBOSE_START" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            ignored_vars(&env),
            vec!["HP_SPOA_ADDRESS", "HP_WATCHDOG_FAILS"]
        );
    }
}
