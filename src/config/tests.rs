//! Whole-load tests, named after the spec's checklist where one applies (B39, B63, B64).

use super::test_support::temp_file;
use super::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

const KEY: &str = "s3cret-Key";
const URL: &str = "https://cloud.example.com";

/// An environment with the two required settings plus `vars`.
fn env_with(vars: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env = HashMap::from([
        ("HP_SHARED_KEY".to_string(), KEY.to_string()),
        ("NC_INSTANCE_URL".to_string(), URL.to_string()),
    ]);
    for (name, value) in vars {
        env.insert(name.to_string(), value.to_string());
    }
    env
}

fn load_env(
    env: &HashMap<String, String>,
    config: Option<&Path>,
) -> Result<Settings, ConfigErrors> {
    load(config, &|name| env.get(name).cloned())
}

fn ok(vars: &[(&str, &str)]) -> Settings {
    load_env(&env_with(vars), None).expect("valid configuration")
}

/// The error lines for an otherwise valid environment plus `vars`.
fn errors(vars: &[(&str, &str)]) -> Vec<String> {
    errors_of(&env_with(vars), None)
}

fn errors_of(env: &HashMap<String, String>, config: Option<&Path>) -> Vec<String> {
    match load_env(env, config) {
        Ok(_) => panic!("configuration unexpectedly valid"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn yaml(text: &str) -> PathBuf {
    temp_file("harp.yaml", text.as_bytes())
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn defaults() {
    let s = ok(&[]);
    assert_eq!(s.shared_key, KEY);
    assert_eq!(s.nc_instance_url, URL);
    assert_eq!(s.exapps_address, addr("0.0.0.0:8780"));
    assert_eq!(s.exapps_https_address, addr("0.0.0.0:8781"));
    assert_eq!(s.frp_address, addr("0.0.0.0:8782"));
    assert!(!s.frp_disable_tls);
    assert_eq!(s.frp_cert_validity_days, 5000);
    assert!(s.trusted_proxies.is_empty());
    assert_eq!(s.log_level, LogLevel::Warning);
    assert_eq!(s.session_lifetime, Duration::from_secs(3));
    assert_eq!(s.blacklist_window, Duration::from_secs(300));
    assert_eq!(s.blacklist_count, 10);
    assert_eq!(s.timeout_connect, Duration::from_secs(30));
    assert_eq!(s.timeout_client, Duration::from_secs(30));
    assert_eq!(s.timeout_server, Duration::from_secs(1800));
    assert_eq!(s.timeout_tunnel, Some(Duration::from_secs(1800)));
    assert_eq!(s.certs_dir, PathBuf::from("/certs"));
    assert_eq!(s.docker_socket, PathBuf::from("/var/run/docker.sock"));
    assert_eq!(s.ops_address, addr("127.0.0.1:8790"));
    assert_eq!(s.nc_timeout, Duration::from_secs(25));
    assert_eq!(s.decision_timeout, Duration::from_secs(30));
    assert!(s.frp_strict_ports);
    assert!(!s.tunnel_in_process);
    assert!(!s.k8s.enabled);
    assert_eq!(s.k8s, crate::config::K8sSettings::default());
    assert!(s.threads >= 1);
}

#[test]
fn kubernetes_api_server_defaults_to_the_in_cluster_service() {
    let env = |extra: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            [("HP_SHARED_KEY", KEY), ("NC_INSTANCE_URL", "http://nc")]
                .iter()
                .chain(extra)
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    let load = |lookup: &dyn Fn(&str) -> Option<String>| load(None, lookup).unwrap().k8s;
    assert_eq!(load(&env(&[])).api_server, None);
    let in_pod = env(&[("KUBERNETES_SERVICE_HOST", "10.96.0.1")]);
    assert_eq!(
        load(&in_pod).api_server.as_deref(),
        Some("https://10.96.0.1:443")
    );
    let in_pod = env(&[
        ("KUBERNETES_SERVICE_HOST", "fd00::1"),
        ("KUBERNETES_SERVICE_PORT", "6443"),
    ]);
    assert_eq!(
        load(&in_pod).api_server.as_deref(),
        Some("https://[fd00::1]:6443")
    );
    let explicit = env(&[
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("HP_K8S_API_SERVER", "https://api.example:6443/"),
    ]);
    let k8s = load(&explicit);
    assert_eq!(k8s.api_server.as_deref(), Some("https://api.example:6443"));
    assert_eq!(k8s.namespace, "nextcloud-exapps");
    assert_eq!(
        k8s.bearer_token_file,
        PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token")
    );
}

#[test]
fn every_variable_is_read_from_the_environment() {
    let s = ok(&[
        ("HP_EXAPPS_ADDRESS", "127.0.0.1:1"),
        ("HP_EXAPPS_HTTPS_ADDRESS", "[::1]:2"),
        ("HP_FRP_ADDRESS", "\"*:3\""),
        ("HP_FRP_DISABLE_TLS", "true"),
        ("HP_FRP_CERT_VALIDITY_DAYS", "7"),
        ("HP_TRUSTED_PROXY_IPS", "10.0.0.0/8"),
        ("HP_LOG_LEVEL", "debug"),
        ("HP_SESSION_LIFETIME", "0.5"),
        ("HP_BLACKLIST_WINDOW", "0"),
        ("HP_BLACKLIST_COUNT", "1"),
        ("HP_TIMEOUT_CONNECT", "1s"),
        ("HP_TIMEOUT_CLIENT", "2s"),
        ("HP_TIMEOUT_SERVER", "3s"),
        ("HP_TIMEOUT_TUNNEL", "4s"),
        ("HP_CERTS_DIR", "/c"),
        ("HP_DOCKER_SOCKET", "/d.sock"),
        ("HP_OPS_ADDRESS", "localhost:5"),
        ("HP_NC_TIMEOUT", "6s"),
        ("HP_DECISION_TIMEOUT", "7s"),
        ("HP_FRP_STRICT_PORTS", "no"),
        ("HP_K8S_ENABLED", "yes"),
        ("HP_THREADS", "3"),
    ]);
    assert_eq!(
        (
            s.exapps_address,
            s.exapps_https_address,
            s.frp_address,
            s.ops_address
        ),
        (
            addr("127.0.0.1:1"),
            addr("[::1]:2"),
            addr("0.0.0.0:3"),
            addr("127.0.0.1:5")
        )
    );
    assert!(s.frp_disable_tls && !s.frp_strict_ports && s.k8s.enabled);
    assert_eq!(
        (s.frp_cert_validity_days, s.blacklist_count, s.threads),
        (7, 1, 3)
    );
    assert_eq!(
        s.trusted_proxies,
        vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]
    );
    assert_eq!(s.log_level, LogLevel::Debug);
    assert_eq!(
        (s.session_lifetime, s.blacklist_window),
        (Duration::from_millis(500), Duration::ZERO)
    );
    let secs = Duration::from_secs;
    assert_eq!(
        (
            s.timeout_connect,
            s.timeout_client,
            s.timeout_server,
            s.timeout_tunnel
        ),
        (secs(1), secs(2), secs(3), Some(secs(4)))
    );
    assert_eq!((s.nc_timeout, s.decision_timeout), (secs(6), secs(7)));
    assert_eq!(
        (s.certs_dir, s.docker_socket),
        (PathBuf::from("/c"), PathBuf::from("/d.sock"))
    );
}

#[test]
fn yaml_overrides_defaults_and_env_overrides_yaml() {
    let file = yaml(
        "log_level: debug\nblacklist_count: 5\ntimeout_server: 2m\nexapps_address: \"[::]:9000\"\n\
         trusted_proxy_ips:\n  - 10.0.0.0/8\n  - \"'192.168.0.7/24'\"\nfrp_disable_tls: true\n",
    );
    let s = load_env(
        &env_with(&[("HP_LOG_LEVEL", "error"), ("HP_BLACKLIST_COUNT", "")]),
        Some(&file),
    )
    .unwrap();
    assert_eq!(s.log_level, LogLevel::Error, "env wins over YAML");
    assert_eq!(
        s.blacklist_count, 5,
        "an empty variable does not override YAML"
    );
    assert_eq!(s.timeout_server, Duration::from_secs(120));
    assert_eq!(
        s.timeout_tunnel,
        Some(Duration::from_secs(120)),
        "tunnel follows the server timeout"
    );
    assert_eq!(s.exapps_address, addr("[::]:9000"));
    assert_eq!(s.trusted_proxies.len(), 2);
    assert_eq!(
        s.trusted_proxies[1],
        "192.168.0.0/24".parse::<IpNet>().unwrap()
    );
    assert!(s.frp_disable_tls);
}

#[test]
fn required_settings_can_come_from_yaml() {
    let file = yaml("shared_key: \"'from-yaml'\"\nnc_instance_url: http://nc/index.php/\n");
    let s = load_env(&HashMap::new(), Some(&file)).unwrap();
    assert_eq!(
        (s.shared_key.as_str(), s.nc_instance_url.as_str()),
        ("from-yaml", "http://nc")
    );
}

#[test]
fn harp_config_names_the_file_when_no_argument_is_given() {
    let file = yaml("blacklist_count: 4\n");
    let other = yaml("blacklist_count: 6\n");
    let env = env_with(&[("HARP_CONFIG", file.to_str().unwrap())]);
    assert_eq!(load_env(&env, None).unwrap().blacklist_count, 4);
    assert_eq!(
        load_env(&env, Some(&other)).unwrap().blacklist_count,
        6,
        "--config wins"
    );
}

#[test]
fn missing_config_file_names_its_source() {
    let missing = Path::new("/nonexistent/harp.yaml");
    let lines = errors_of(&env_with(&[]), Some(missing));
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("--config=/nonexistent/harp.yaml: cannot read the config file"),
        "{lines:?}"
    );
    let lines = errors_of(
        &env_with(&[("HARP_CONFIG", "/nonexistent/harp.yaml")]),
        None,
    );
    assert!(
        lines[0].starts_with("HARP_CONFIG=/nonexistent/harp.yaml: cannot read"),
        "{lines:?}"
    );
}

#[test]
fn shipped_conf_file_yields_the_defaults() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/harp.yaml");
    let from_file = load_env(&env_with(&[]), Some(&conf)).expect("conf/harp.yaml is valid");
    assert_eq!(from_file.describe(), ok(&[]).describe());
}

#[test]
fn shipped_conf_file_documents_every_setting_and_ignored_variable() {
    let conf =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/harp.yaml"))
            .unwrap();
    for key in keys::Key::ALL {
        assert!(
            conf.contains(&format!("#{}:", key.yaml_name())),
            "{} missing",
            key.yaml_name()
        );
        assert!(conf.contains(key.env_name()), "{} missing", key.env_name());
    }
    for name in IGNORED_ENV_VARS
        .iter()
        .filter(|n| !n.starts_with("HP_K8S_"))
    {
        assert!(conf.contains(name), "{name} missing");
    }
}

#[test]
fn validation_messages_name_variable_value_and_expectation() {
    let cases = [
        ("HP_SESSION_LIFETIME", "11", "HP_SESSION_LIFETIME=11: expected a number of seconds from 0 to 10"),
        (
            "HP_FRP_CERT_VALIDITY_DAYS",
            "0",
            "HP_FRP_CERT_VALIDITY_DAYS=0: expected a whole number of days, at least 1",
        ),
        ("HP_LOG_LEVEL", "verbose", "HP_LOG_LEVEL=verbose: expected one of debug, info, warning, error"),
        (
            "HP_BLACKLIST_COUNT",
            "0",
            "HP_BLACKLIST_COUNT=0: expected a whole number of strikes, at least 1 (0 or less would ban every client)",
        ),
        (
            "HP_BLACKLIST_WINDOW",
            "5m",
            "HP_BLACKLIST_WINDOW=5m: expected a whole number of seconds from 0 to 4294967295",
        ),
        (
            "HP_TIMEOUT_CLIENT",
            "30 s",
            "HP_TIMEOUT_CLIENT=\"30 s\": expected a time like 30s, 1800s, 2m or 500 (milliseconds); units us, ms, s, m, h, d",
        ),
        (
            "HP_TIMEOUT_CONNECT",
            "0",
            "HP_TIMEOUT_CONNECT=0: expected a time greater than 0, like 30s or 500 (milliseconds)",
        ),
        (
            "HP_EXAPPS_ADDRESS",
            "example.com:80",
            "HP_EXAPPS_ADDRESS=example.com:80: expected host:port with an IPv4 address, [IPv6 address], \
             localhost or * as host (e.g. 0.0.0.0:8780)",
        ),
        (
            "NC_INSTANCE_URL",
            "cloud.example.com",
            "NC_INSTANCE_URL=cloud.example.com: expected the base URL of Nextcloud starting with http:// or \
             https:// (e.g. https://cloud.example.com)",
        ),
        ("HP_FRP_STRICT_PORTS", "maybe", "HP_FRP_STRICT_PORTS=maybe: expected true or false (or 1/0, yes/no)"),
        ("HP_THREADS", "0", "HP_THREADS=0: expected a whole number of worker threads, at least 1"),
    ];
    for (name, value, expected) in cases {
        assert_eq!(
            errors(&[(name, value)]),
            vec![expected.to_string()],
            "{name}={value}"
        );
    }
}

#[test]
fn yaml_validation_messages_name_file_and_key() {
    let file = yaml("session_lifetime: 11\n");
    let lines = errors_of(&env_with(&[]), Some(&file));
    assert_eq!(
        lines,
        vec![format!(
            "{}: session_lifetime=11: expected a number of seconds from 0 to 10",
            file.display()
        )]
    );
}

#[test]
fn b63_both_key_and_file_is_an_error() {
    let file = temp_file("key", b"other\n");
    let lines = errors(&[("HP_SHARED_KEY_FILE", file.to_str().unwrap())]);
    assert_eq!(
        lines,
        vec![
            "HP_SHARED_KEY=<hidden>: HP_SHARED_KEY_FILE (shared_key_file) is set too; expected only one \
             of the key and the key file"
        ]
    );
}

#[test]
fn b63_forbidden_and_non_ascii_keys_are_errors_and_stay_hidden() {
    for (key, problem) in [
        ("pa\"ss", "contains a forbidden character"),
        ("pa\\ss", "contains a forbidden character"),
        ("päss", "contains non-ASCII characters"),
    ] {
        let lines = errors(&[("HP_SHARED_KEY", key)]);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with(&format!("HP_SHARED_KEY=<hidden>: {problem}")),
            "{lines:?}"
        );
        assert!(!lines[0].contains("ss"), "key leaked: {lines:?}");
    }
}

#[test]
fn b63_quoted_key_is_unquoted() {
    assert_eq!(ok(&[("HP_SHARED_KEY", "'abc'")]).shared_key, "abc");
}

#[test]
fn q5_key_of_only_quotes_is_an_error() {
    let lines = errors(&[("HP_SHARED_KEY", "\"\"")]);
    assert_eq!(
        lines,
        vec!["HP_SHARED_KEY=<hidden>: is empty once surrounding quotes are removed; expected a non-empty key"]
    );
}

#[test]
fn key_file_is_read_and_its_errors_name_the_file_setting() {
    let file = temp_file("key", b"'from-file'\r\n");
    let mut env = env_with(&[("HP_SHARED_KEY_FILE", file.to_str().unwrap())]);
    env.remove("HP_SHARED_KEY");
    assert_eq!(load_env(&env, None).unwrap().shared_key, "from-file");

    let empty = temp_file("key", b"");
    env.insert("HP_SHARED_KEY_FILE".into(), empty.to_str().unwrap().into());
    let lines = errors_of(&env, None);
    assert_eq!(
        lines,
        vec![format!(
            "HP_SHARED_KEY_FILE={}: the file is empty; expected the shared key",
            empty.display()
        )]
    );
}

#[test]
fn env_key_overrides_yaml_key_file() {
    let file = yaml("shared_key_file: /nonexistent/key\n");
    assert_eq!(
        load_env(&env_with(&[]), Some(&file)).unwrap().shared_key,
        KEY
    );
}

#[test]
fn missing_key_is_an_error() {
    let env = HashMap::from([("NC_INSTANCE_URL".to_string(), URL.to_string())]);
    let lines = errors_of(&env, None);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("HP_SHARED_KEY: not set"), "{lines:?}");
}

#[test]
fn b64_missing_nc_instance_url_is_an_error() {
    let env = HashMap::from([("HP_SHARED_KEY".to_string(), KEY.to_string())]);
    assert_eq!(
        errors_of(&env, None),
        vec![
            "NC_INSTANCE_URL: not set; expected the base URL of Nextcloud, e.g. \
             https://cloud.example.com (or nc_instance_url in the config file)"
        ]
    );
}

#[test]
fn b64_session_lifetime_11_and_cert_days_0_are_errors() {
    assert_eq!(errors(&[("HP_SESSION_LIFETIME", "11")]).len(), 1);
    assert_eq!(errors(&[("HP_FRP_CERT_VALIDITY_DAYS", "0")]).len(), 1);
}

#[test]
fn b39_quoted_network_with_host_bits() {
    let s = ok(&[("HP_TRUSTED_PROXY_IPS", "'10.0.0.7/24'")]);
    assert_eq!(
        s.trusted_proxies,
        vec!["10.0.0.0/24".parse::<IpNet>().unwrap()]
    );
}

#[test]
fn bad_trusted_proxy_entries_are_skipped_not_fatal() {
    let s = ok(&[("HP_TRUSTED_PROXY_IPS", "garbage, 192.168.1.1")]);
    assert_eq!(
        s.trusted_proxies,
        vec!["192.168.1.1/32".parse::<IpNet>().unwrap()]
    );
}

#[test]
fn nc_url_trimming() {
    assert_eq!(
        ok(&[("NC_INSTANCE_URL", "http://nc/index.php/")]).nc_instance_url,
        "http://nc"
    );
    assert_eq!(
        ok(&[("NC_INSTANCE_URL", "\"https://nc/sub/\"")]).nc_instance_url,
        "https://nc/sub"
    );
}

#[test]
fn time_syntax() {
    let s = ok(&[
        ("HP_TIMEOUT_CONNECT", "500"),
        ("HP_TIMEOUT_CLIENT", "2m"),
        ("HP_NC_TIMEOUT", "1h"),
    ]);
    assert_eq!(s.timeout_connect, Duration::from_millis(500));
    assert_eq!(s.timeout_client, Duration::from_secs(120));
    assert_eq!(s.nc_timeout, Duration::from_secs(3600));
    let file = yaml("timeout_connect: 1500\ndecision_timeout: 10s\n");
    let s = load_env(&env_with(&[]), Some(&file)).unwrap();
    assert_eq!(
        (s.timeout_connect, s.decision_timeout),
        (Duration::from_millis(1500), Duration::from_secs(10))
    );
}

#[test]
fn tunnel_zero_is_unlimited() {
    assert_eq!(ok(&[("HP_TIMEOUT_TUNNEL", "0")]).timeout_tunnel, None);
    assert_eq!(ok(&[("HP_TIMEOUT_TUNNEL", "0s")]).timeout_tunnel, None);
    let file = yaml("timeout_tunnel: 0\n");
    assert_eq!(
        load_env(&env_with(&[]), Some(&file))
            .unwrap()
            .timeout_tunnel,
        None
    );
}

#[test]
fn several_errors_are_reported_together() {
    let file = yaml("colour: blue\nblacklist_window: -1\n");
    let mut env = env_with(&[
        ("HP_SESSION_LIFETIME", "11"),
        ("HP_LOG_LEVEL", "loud"),
        ("HP_SHARED_KEY", "a\\b"),
    ]);
    env.remove("NC_INSTANCE_URL");
    let err = load_env(&env, Some(&file)).unwrap_err();
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    for expected in [
        "colour: unknown key",
        "blacklist_window=-1: expected",
        "HP_SHARED_KEY=<hidden>: contains a forbidden character",
        "NC_INSTANCE_URL: not set",
        "HP_SESSION_LIFETIME=11:",
        "HP_LOG_LEVEL=loud:",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(expected)),
            "{expected:?} not in\n{text}"
        );
    }
    assert!(!text.contains("a\\b"));
}

#[test]
fn describe_lists_every_setting_and_masks_the_key() {
    let text = ok(&[
        ("HP_TRUSTED_PROXY_IPS", "10.0.0.0/8,::1"),
        ("HP_TIMEOUT_TUNNEL", "0"),
    ])
    .describe();
    assert!(text.contains("HP_SHARED_KEY=********"));
    assert!(!text.contains(KEY));
    assert!(text.contains("HP_TRUSTED_PROXY_IPS=10.0.0.0/8,::1/128"));
    assert!(text.contains("HP_TIMEOUT_TUNNEL=0\n"));
    assert!(text.contains("HP_TIMEOUT_SERVER=1800s"));
    assert!(text.contains("HP_SESSION_LIFETIME=3\n"));
    assert!(text.contains("HP_LOG_LEVEL=warning"));
    assert_eq!(
        text.lines().count(),
        keys::Key::ALL.len() - 2,
        "all but HP_SHARED_KEY_FILE and the unset HP_K8S_BEARER_TOKEN"
    );
    assert!(!text.contains("HP_K8S_BEARER_TOKEN="));
    let with_token = ok(&[("HP_K8S_BEARER_TOKEN", "sekrit-token")]).describe();
    assert!(with_token.contains("HP_K8S_BEARER_TOKEN=********"));
    assert!(!with_token.contains("sekrit-token"));
    for line in text.lines() {
        assert!(line.contains('='), "{line}");
    }
}

#[test]
fn describe_output_loads_back_to_the_same_settings() {
    let original = ok(&[
        ("HP_TRUSTED_PROXY_IPS", "10.0.0.0/8"),
        ("HP_SESSION_LIFETIME", "2.5"),
    ]);
    let described = original.describe();
    let mut env: HashMap<String, String> = described
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("HP_SHARED_KEY".into(), KEY.into());
    assert_eq!(load_env(&env, None).unwrap().describe(), described);
}

#[test]
fn log_level_maps_to_log_filter() {
    assert_eq!(LogLevel::Warning.to_level_filter(), log::LevelFilter::Warn);
    assert_eq!(LogLevel::Error.to_string(), "error");
}

#[test]
fn changed_vars_names_what_differs_including_the_shared_key() {
    let base = ok(&[]);
    assert!(base.changed_vars(&ok(&[])).is_empty());
    let other = ok(&[
        ("HP_LOG_LEVEL", "info"),
        ("HP_TRUSTED_PROXY_IPS", "10.0.0.0/8"),
        ("HP_SHARED_KEY", "another-key"),
    ]);
    assert_eq!(
        base.changed_vars(&other),
        ["HP_SHARED_KEY", "HP_TRUSTED_PROXY_IPS", "HP_LOG_LEVEL"]
    );
}

#[test]
fn two_listeners_on_one_address_are_an_error() {
    assert_eq!(
        errors(&[("HP_OPS_ADDRESS", "0.0.0.0:8780")]),
        vec!["HP_OPS_ADDRESS=0.0.0.0:8780: HP_EXAPPS_ADDRESS has the same address; each listener needs its own"]
    );
    assert_eq!(
        errors(&[("HP_FRP_ADDRESS", "127.0.0.1:8781")]),
        vec!["HP_FRP_ADDRESS=127.0.0.1:8781: overlaps HP_EXAPPS_HTTPS_ADDRESS (0.0.0.0:8781) on port 8781; each listener needs its own"]
    );
    let file = yaml("exapps_address: 127.0.0.1:9000\nops_address: 127.0.0.1:9000\n");
    assert_eq!(
        errors_of(&env_with(&[]), Some(&file)),
        vec![format!(
            "{}: ops_address=127.0.0.1:9000: HP_EXAPPS_ADDRESS has the same address; each listener needs its own",
            file.display()
        )]
    );
}

#[test]
fn timeout_body_is_off_by_default_and_0_turns_it_off() {
    assert_eq!(ok(&[]).timeout_body, None);
    assert_eq!(
        ok(&[("HP_TIMEOUT_BODY", "2m")]).timeout_body,
        Some(Duration::from_secs(120))
    );
    assert_eq!(ok(&[("HP_TIMEOUT_BODY", "0s")]).timeout_body, None);
    let file = yaml("timeout_body: 10s\n");
    let s = load_env(&env_with(&[]), Some(&file)).unwrap();
    assert_eq!(s.timeout_body, Some(Duration::from_secs(10)));
    assert!(
        s.describe().contains("HP_TIMEOUT_BODY=10s"),
        "{}",
        s.describe()
    );
    assert_eq!(errors(&[("HP_TIMEOUT_BODY", "soon")]).len(), 1);
}

/// R7's 15 s, shortened only through the test knob, which is no setting (not in `check-config`)
/// and is warned about when set.
#[test]
fn r7_negative_cache_ttl_is_15s_unless_the_test_knob_shortens_it() {
    let s = ok(&[]);
    assert_eq!(s.negative_cache_ttl, Duration::from_secs(15));
    assert!(s.warnings().is_empty(), "{:?}", s.warnings());
    let s = ok(&[(TEST_NEGATIVE_CACHE_TTL_VAR, "1500ms")]);
    assert_eq!(s.negative_cache_ttl, Duration::from_millis(1500));
    assert!(!s.describe().contains(TEST_NEGATIVE_CACHE_TTL_VAR));
    let warnings = s.warnings();
    assert!(
        warnings.len() == 1 && warnings[0].contains(TEST_NEGATIVE_CACHE_TTL_VAR),
        "{warnings:?}"
    );
    assert_eq!(
        ok(&[(TEST_NEGATIVE_CACHE_TTL_VAR, "")]).negative_cache_ttl,
        Duration::from_secs(15),
        "empty is unset"
    );
    let problems = errors(&[(TEST_NEGATIVE_CACHE_TTL_VAR, "0")]);
    assert!(
        problems.len() == 1 && problems[0].contains(TEST_NEGATIVE_CACHE_TTL_VAR),
        "{problems:?}"
    );
}
