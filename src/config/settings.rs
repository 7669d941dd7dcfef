//! The one truth of configuration: every part of harp-rs reads `Settings`, never `std::env`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A network of trusted reverse proxies (`HP_TRUSTED_PROXY_IPS` entry); `config::net` masks its
/// host bits.
pub use ipnet::IpNet;

/// Log verbosity as HaRP names it (`HP_LOG_LEVEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
}

/// The Kubernetes backend's settings (`HP_K8S_*`), with HaRP's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sSettings {
    /// `HP_K8S_ENABLED`: `1`, `true` or `yes` in any case (default false).
    pub enabled: bool,
    /// `HP_K8S_NAMESPACE` (default `nextcloud-exapps`), a DNS-1123 label.
    pub namespace: String,
    /// `HP_K8S_API_SERVER`, else `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`;
    /// `None` when neither is set (every Kubernetes call then answers 503).
    pub api_server: Option<String>,
    /// `HP_K8S_CA_FILE` (default: the service account's `ca.crt`, used only if it exists).
    pub ca_file: PathBuf,
    /// Whether `HP_K8S_CA_FILE` was set: a set file that cannot be read is an error, the default
    /// one that does not exist is simply not used.
    pub ca_file_explicit: bool,
    /// `HP_K8S_BEARER_TOKEN`: a static token; wins over the token file. Never printed.
    pub bearer_token: Option<String>,
    /// `HP_K8S_BEARER_TOKEN_FILE` (default: the service account's token), read on every call so
    /// projected tokens can rotate.
    pub bearer_token_file: PathBuf,
    /// `HP_K8S_VERIFY_SSL`: only `false` (any case) turns verification off, as in HaRP.
    pub verify_ssl: bool,
    /// `HP_K8S_STORAGE_CLASS`: the ExApp volumes' storageClassName (default: the cluster's).
    pub storage_class: Option<String>,
    /// `HP_K8S_DEFAULT_STORAGE_SIZE` (default `10Gi`), a Kubernetes quantity.
    pub default_storage_size: String,
    /// `HP_K8S_HOST_ALIASES` `host:ip,...`, grouped by address in first-seen order.
    pub host_aliases: Vec<HostAlias>,
    /// `HP_K8S_IMAGE_PULL_TIMEOUT`: how long `wait_for_start` lets a pod pull its image
    /// (default 3600 s, HaRP's fixed value).
    pub image_pull_timeout: Duration,
    /// `HP_K8S_START_TIMEOUT`: how long a pod may take to become Ready once its image is pulled
    /// (default 90 s, HaRP's fixed value).
    pub start_timeout: Duration,
}

/// One `hostAliases` entry of the ExApp pods: the names that resolve to `ip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAlias {
    pub ip: std::net::IpAddr,
    pub hostnames: Vec<String>,
}

/// Where a pod finds its service account's credentials.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

impl Default for K8sSettings {
    fn default() -> Self {
        K8sSettings {
            enabled: false,
            namespace: "nextcloud-exapps".to_string(),
            api_server: None,
            ca_file: PathBuf::from(SERVICE_ACCOUNT_DIR).join("ca.crt"),
            ca_file_explicit: false,
            bearer_token: None,
            bearer_token_file: PathBuf::from(SERVICE_ACCOUNT_DIR).join("token"),
            verify_ssl: true,
            storage_class: None,
            default_storage_size: "10Gi".to_string(),
            host_aliases: Vec::new(),
            image_pull_timeout: Duration::from_secs(3600),
            start_timeout: Duration::from_secs(90),
        }
    }
}

/// How long Nextcloud's "no such app" is believed (HaRP R7).
pub const NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(15);

/// Effective settings after defaults < YAML file < HP_* environment, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `HP_SHARED_KEY` / `HP_SHARED_KEY_FILE` after HaRP's processing (quotes stripped, never empty).
    pub shared_key: String,
    /// `NC_INSTANCE_URL` with one trailing `/` and then one trailing `/index.php` removed.
    pub nc_instance_url: String,
    /// `HP_EXAPPS_ADDRESS` (default 0.0.0.0:8780).
    pub exapps_address: SocketAddr,
    /// `HP_EXAPPS_HTTPS_ADDRESS` (default 0.0.0.0:8781); used only when `$HP_CERTS_DIR/cert.pem` exists.
    pub exapps_https_address: SocketAddr,
    /// `HP_FRP_ADDRESS` (default 0.0.0.0:8782).
    pub frp_address: SocketAddr,
    /// `HP_FRP_DISABLE_TLS`: exactly `true` disables TLS.
    pub frp_disable_tls: bool,
    /// `HP_FRP_CERT_VALIDITY_DAYS` (default 5000, >= 1).
    pub frp_cert_validity_days: u32,
    /// `HP_TRUSTED_PROXY_IPS`.
    pub trusted_proxies: Vec<IpNet>,
    /// `HP_LOG_LEVEL` (default warning).
    pub log_level: LogLevel,
    /// `HP_SESSION_LIFETIME`, seconds in 0..=10 (default 3).
    pub session_lifetime: Duration,
    /// `HP_BLACKLIST_WINDOW` (default 300 s).
    pub blacklist_window: Duration,
    /// `HP_BLACKLIST_COUNT` (default 10, >= 1).
    pub blacklist_count: u32,
    /// `HP_TIMEOUT_CONNECT` (default 30 s).
    pub timeout_connect: Duration,
    /// `HP_TIMEOUT_CLIENT` (default 30 s).
    pub timeout_client: Duration,
    /// `HP_TIMEOUT_SERVER` (default 1800 s).
    pub timeout_server: Duration,
    /// `HP_TIMEOUT_TUNNEL` (default = server timeout); `None` = unlimited (`0`).
    pub timeout_tunnel: Option<Duration>,
    /// `HP_TIMEOUT_BODY`: the whole request body must arrive within this, counted from the
    /// decision to forward; `None` (`0`, the default) = no limit beyond `HP_TIMEOUT_CLIENT`'s
    /// per-read one.
    pub timeout_body: Option<Duration>,
    /// `HP_CERTS_DIR` (default /certs).
    pub certs_dir: PathBuf,
    /// `HP_DOCKER_SOCKET` (default /var/run/docker.sock).
    pub docker_socket: PathBuf,
    /// `HP_OPS_ADDRESS` (default 127.0.0.1:8790).
    pub ops_address: SocketAddr,
    /// `HP_NC_TIMEOUT`: total budget of one Nextcloud callback (default 25 s).
    pub nc_timeout: Duration,
    /// `HP_DECISION_TIMEOUT`: total budget of one routing decision (default 30 s).
    pub decision_timeout: Duration,
    /// `HP_FRP_STRICT_PORTS` (default true).
    pub frp_strict_ports: bool,
    /// `HP_TUNNEL_IN_PROCESS`: the gateway reaches tunnelled ExApps without the loopback listener
    /// (default false: Pingora 0.9 cannot keep in-process connections alive, see
    /// `gateway::tunnel_peer`, so the loopback hop measured faster).
    pub tunnel_in_process: bool,
    /// The `HP_K8S_*` settings of the Kubernetes backend.
    pub k8s: K8sSettings,
    /// `HP_THREADS`: worker threads of the proxy service (default: number of CPUs).
    pub threads: usize,
    /// `HP_MAX_CONNECTIONS`: connections the gateway's listeners (HTTP and HTTPS together) hold at
    /// once; more are closed as soon as they are accepted (default 8192, HaRP's HAProxy
    /// `maxconn`).
    pub max_connections: usize,
    /// The "no such app" cache's lifetime: [`NEGATIVE_CACHE_TTL`], shortened only by harp's own
    /// tests (`HARP_TEST_NEGATIVE_CACHE_TTL`).
    pub negative_cache_ttl: Duration,
}

impl Settings {
    /// Valid but unwise combinations, logged at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.negative_cache_ttl != NEGATIVE_CACHE_TTL {
            warnings.push(format!(
                "{} is set ({:?}): it is for harp's own tests; \"no such app\" answers are \
                 remembered {:?} instead of HaRP's 15 s",
                super::env::TEST_NEGATIVE_CACHE_TTL_VAR,
                self.negative_cache_ttl,
                self.negative_cache_ttl
            ));
        }
        if self.decision_timeout <= self.nc_timeout {
            warnings.push(format!(
                "HP_DECISION_TIMEOUT ({:?}) is not longer than HP_NC_TIMEOUT ({:?}): when \
                 Nextcloud does not answer, requests get HaRP's 503 before AppAPI's own requests \
                 can fall back to the address in their headers",
                self.decision_timeout, self.nc_timeout
            ));
        }
        warnings
    }

    /// `NC_INSTANCE_URL` for messages and `check-config`: a password in it is masked.
    pub fn nc_instance_url_for_display(&self) -> String {
        redact_password(&self.nc_instance_url)
    }
}

/// `scheme://user:secret@host/...` becomes `scheme://user:********@host/...`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    if user.len() == userinfo.len() {
        return url.to_string();
    }
    format!("{scheme}://{user}:********@{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::redact_password;

    #[test]
    fn a_password_in_the_url_is_masked() {
        assert_eq!(
            redact_password("https://admin:s3cr@t@cloud.example.com/nc?x=1"),
            "https://admin:********@cloud.example.com/nc?x=1"
        );
        for unchanged in ["https://cloud.example.com/a@b", "http://user@nc", "nc"] {
            assert_eq!(redact_password(unchanged), unchanged);
        }
    }
}
