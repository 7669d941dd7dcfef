//! Turns the layers into `Settings`: for each setting the environment wins over the YAML file,
//! which wins over the built-in default; the winner is validated, and every problem is kept so
//! that one start attempt reports them all.

use super::error::ConfigError;
use super::keys::Key;
use super::layer::{named_error, Layer, Origin, Raw};
use super::settings::{IpNet, K8sSettings, LogLevel, Settings, NEGATIVE_CACHE_TTL};
use super::shared_key::{self, Culprit, KeySource};
use super::{net, validate};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Built-in defaults (HaRP's image defaults, plus ours for the new settings).
mod default {
    pub const EXAPPS_ADDRESS: &str = "0.0.0.0:8780";
    pub const EXAPPS_HTTPS_ADDRESS: &str = "0.0.0.0:8781";
    pub const FRP_ADDRESS: &str = "0.0.0.0:8782";
    pub const OPS_ADDRESS: &str = "127.0.0.1:8790";
    pub const FRP_CERT_VALIDITY_DAYS: u32 = 5000;
    pub const SESSION_LIFETIME_SECS: u64 = 3;
    pub const BLACKLIST_WINDOW_SECS: u64 = 300;
    pub const BLACKLIST_COUNT: u32 = 10;
    pub const TIMEOUT_CONNECT_SECS: u64 = 30;
    pub const TIMEOUT_CLIENT_SECS: u64 = 30;
    pub const TIMEOUT_SERVER_SECS: u64 = 1800;
    pub const NC_TIMEOUT_SECS: u64 = 25;
    pub const DECISION_TIMEOUT_SECS: u64 = 30;
    pub const CERTS_DIR: &str = "/certs";
    pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
    /// HaRP's haproxy.cfg: `maxconn 8192`.
    pub const MAX_CONNECTIONS: usize = 8192;
}

struct Resolver<'a> {
    layers: [Option<&'a Layer>; 2],
    errors: Vec<ConfigError>,
}

impl<'a> Resolver<'a> {
    /// The value that wins for `key`: environment first, then the YAML file.
    fn raw(&self, key: Key) -> Option<Raw<'a>> {
        self.layers
            .iter()
            .flatten()
            .find_map(|layer| layer.get(key))
    }

    /// The validated value, or `None` when unset; an invalid value is recorded and also `None`.
    fn parse<T>(&mut self, key: Key, parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        let raw = self.raw(key)?;
        match parse(raw.text) {
            Ok(value) => Some(value),
            Err(problem) => {
                self.errors.push(raw.error(problem));
                None
            }
        }
    }

    fn or<T>(&mut self, key: Key, default: T, parse: impl Fn(&str) -> Result<T, String>) -> T {
        self.parse(key, parse).unwrap_or(default)
    }

    fn address(&mut self, key: Key, default: &str) -> SocketAddr {
        let fallback = default.parse().expect("built-in default address is valid");
        self.or(key, fallback, validate::address)
    }

    /// The key and its file are one choice: if the environment names either, the YAML file's
    /// pair is ignored as a whole, so `HP_SHARED_KEY` can override a `shared_key_file` in YAML.
    fn shared_key(&mut self) -> String {
        let layer = self
            .layers
            .iter()
            .flatten()
            .find(|layer| {
                layer.get(Key::SharedKey).is_some() || layer.get(Key::SharedKeyFile).is_some()
            })
            .copied();
        let key = layer.and_then(|l| l.get(Key::SharedKey));
        let file = layer.and_then(|l| l.get(Key::SharedKeyFile));
        let source = KeySource {
            key: key.map(|r| r.text),
            file: file.map(|r| r.text),
        };
        match shared_key::resolve(source) {
            Ok(key) => key,
            Err(e) => {
                let error = match (e.culprit, key, file) {
                    (Culprit::Key, Some(raw), _) | (Culprit::File, _, Some(raw)) => {
                        raw.error(e.problem)
                    }
                    _ => named_error(Key::SharedKey, &Origin::Env, None, e.problem),
                };
                self.errors.push(error);
                String::new()
            }
        }
    }

    fn nc_instance_url(&mut self) -> String {
        if self.raw(Key::NcInstanceUrl).is_none() {
            self.errors.push(named_error(
                Key::NcInstanceUrl,
                &Origin::Env,
                None,
                "not set; expected the base URL of Nextcloud, e.g. https://cloud.example.com (or \
                 nc_instance_url in the config file)",
            ));
        }
        self.parse(Key::NcInstanceUrl, validate::nc_instance_url)
            .unwrap_or_default()
    }

    fn k8s(&mut self, in_cluster_api_server: Option<String>) -> K8sSettings {
        let defaults = K8sSettings::default();
        let api_server = match self.parse(Key::K8sApiServer, validate::k8s_api_server) {
            Some(url) => Some(url),
            None if self.raw(Key::K8sApiServer).is_some() => None,
            None => in_cluster_api_server,
        };
        K8sSettings {
            enabled: self.or(Key::K8sEnabled, false, validate::k8s_enabled),
            namespace: self.or(
                Key::K8sNamespace,
                defaults.namespace,
                validate::k8s_namespace,
            ),
            api_server,
            ca_file_explicit: self.raw(Key::K8sCaFile).is_some(),
            ca_file: self.or(Key::K8sCaFile, defaults.ca_file, validate::path),
            bearer_token: self.parse(Key::K8sBearerToken, validate::k8s_token),
            bearer_token_file: self.or(
                Key::K8sBearerTokenFile,
                defaults.bearer_token_file,
                validate::path,
            ),
            verify_ssl: self.or(Key::K8sVerifySsl, true, validate::not_false),
            storage_class: self.parse(Key::K8sStorageClass, validate::k8s_storage_class),
            default_storage_size: self.or(
                Key::K8sDefaultStorageSize,
                defaults.default_storage_size,
                validate::k8s_quantity,
            ),
            host_aliases: self.or(Key::K8sHostAliases, Vec::new(), validate::k8s_host_aliases),
            image_pull_timeout: self.or(
                Key::K8sImagePullTimeout,
                defaults.image_pull_timeout,
                validate::timeout,
            ),
            start_timeout: self.or(
                Key::K8sStartTimeout,
                defaults.start_timeout,
                validate::timeout,
            ),
        }
    }

    fn trusted_proxies(&self) -> Vec<IpNet> {
        match self.raw(Key::TrustedProxyIps) {
            Some(raw) => {
                let setting = match raw.origin {
                    Origin::Env => Key::TrustedProxyIps.env_name(),
                    Origin::Yaml(_) => Key::TrustedProxyIps.yaml_name(),
                };
                net::parse_trusted_proxies(setting, raw.text)
            }
            None => Vec::new(),
        }
    }
}

impl Resolver<'_> {
    /// Two listeners on one address (or on one port where either is a wildcard) cannot both
    /// bind; the later setting is named, with the one it clashes with.
    fn listener_clashes(&mut self, s: &Settings) {
        let listeners = [
            (Key::ExappsAddress, s.exapps_address),
            (Key::ExappsHttpsAddress, s.exapps_https_address),
            (Key::FrpAddress, s.frp_address),
            (Key::OpsAddress, s.ops_address),
        ];
        for (i, (key, addr)) in listeners.iter().enumerate() {
            let Some((other, other_addr)) = listeners[..i]
                .iter()
                .find(|(_, earlier)| net::listeners_clash(*earlier, *addr))
            else {
                continue;
            };
            let problem = if addr == other_addr {
                format!(
                    "{} has the same address; each listener needs its own",
                    other.env_name()
                )
            } else {
                format!(
                    "overlaps {} ({other_addr}) on port {}; each listener needs its own",
                    other.env_name(),
                    addr.port()
                )
            };
            let error = match self.raw(*key) {
                Some(raw) => raw.error(problem),
                None => ConfigError::new(key.env_name(), Some(addr.to_string()), problem),
            };
            self.errors.push(error);
        }
    }
}

/// Validates the winning value of every setting; `Err` lists every problem found.
pub(crate) fn settings(
    env: &Layer,
    yaml: Option<&Layer>,
    in_cluster_api_server: Option<String>,
) -> Result<Settings, Vec<ConfigError>> {
    let mut r = Resolver {
        layers: [Some(env), yaml],
        errors: Vec::new(),
    };
    let secs = Duration::from_secs;

    let shared_key = r.shared_key();
    let nc_instance_url = r.nc_instance_url();
    let timeout_server = r.or(
        Key::TimeoutServer,
        secs(default::TIMEOUT_SERVER_SECS),
        validate::timeout,
    );
    let settings = Settings {
        shared_key,
        nc_instance_url,
        exapps_address: r.address(Key::ExappsAddress, default::EXAPPS_ADDRESS),
        exapps_https_address: r.address(Key::ExappsHttpsAddress, default::EXAPPS_HTTPS_ADDRESS),
        frp_address: r.address(Key::FrpAddress, default::FRP_ADDRESS),
        frp_disable_tls: r.or(Key::FrpDisableTls, false, validate::exactly_true),
        frp_cert_validity_days: r.or(
            Key::FrpCertValidityDays,
            default::FRP_CERT_VALIDITY_DAYS,
            validate::cert_validity_days,
        ),
        trusted_proxies: r.trusted_proxies(),
        log_level: r.or(Key::LogLevel, LogLevel::Warning, validate::log_level),
        session_lifetime: r.or(
            Key::SessionLifetime,
            secs(default::SESSION_LIFETIME_SECS),
            validate::session_lifetime,
        ),
        blacklist_window: r.or(
            Key::BlacklistWindow,
            secs(default::BLACKLIST_WINDOW_SECS),
            validate::blacklist_window,
        ),
        blacklist_count: r.or(
            Key::BlacklistCount,
            default::BLACKLIST_COUNT,
            validate::blacklist_count,
        ),
        timeout_connect: r.or(
            Key::TimeoutConnect,
            secs(default::TIMEOUT_CONNECT_SECS),
            validate::timeout,
        ),
        timeout_client: r.or(
            Key::TimeoutClient,
            secs(default::TIMEOUT_CLIENT_SECS),
            validate::timeout,
        ),
        timeout_server,
        // HaRP: the tunnel timeout follows the server timeout unless set on its own.
        timeout_tunnel: r.or(
            Key::TimeoutTunnel,
            Some(timeout_server),
            validate::tunnel_timeout,
        ),
        timeout_body: r.or(Key::TimeoutBody, None, validate::off_or_timeout),
        certs_dir: r.or(
            Key::CertsDir,
            PathBuf::from(default::CERTS_DIR),
            validate::path,
        ),
        docker_socket: r.or(
            Key::DockerSocket,
            PathBuf::from(default::DOCKER_SOCKET),
            validate::path,
        ),
        ops_address: r.address(Key::OpsAddress, default::OPS_ADDRESS),
        nc_timeout: r.or(
            Key::NcTimeout,
            secs(default::NC_TIMEOUT_SECS),
            validate::timeout,
        ),
        decision_timeout: r.or(
            Key::DecisionTimeout,
            secs(default::DECISION_TIMEOUT_SECS),
            validate::timeout,
        ),
        frp_strict_ports: r.or(Key::FrpStrictPorts, true, validate::boolean),
        tunnel_in_process: r.or(Key::TunnelInProcess, false, validate::boolean),
        k8s: r.k8s(in_cluster_api_server),
        threads: r.or(Key::Threads, default_threads(), validate::threads),
        max_connections: r.or(
            Key::MaxConnections,
            default::MAX_CONNECTIONS,
            validate::max_connections,
        ),
        negative_cache_ttl: NEGATIVE_CACHE_TTL,
    };
    r.listener_clashes(&settings);
    if r.errors.is_empty() {
        Ok(settings)
    } else {
        Err(r.errors)
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(std::num::NonZero::get)
        .unwrap_or(1)
}
