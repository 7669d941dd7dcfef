//! The names of every setting: its HaRP environment variable, its YAML key and the YAML types it
//! accepts. The single table both sources are read through, so they can never disagree.

/// Which YAML values a key accepts before its text goes through the same validation as the
/// environment variable's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum YamlType {
    /// A string (paths, URLs, addresses, the key, the log level).
    Text,
    /// A number or a string holding one.
    Number,
    /// A YAML boolean.
    Bool,
    /// A list of strings or one comma-separated string.
    List,
}

/// One configurable setting.
// `SharedKey` mirrors HP_SHARED_KEY; renaming it to dodge the enum's own name would obscure that.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Key {
    SharedKey,
    SharedKeyFile,
    NcInstanceUrl,
    ExappsAddress,
    ExappsHttpsAddress,
    FrpAddress,
    FrpDisableTls,
    FrpCertValidityDays,
    TrustedProxyIps,
    LogLevel,
    SessionLifetime,
    BlacklistWindow,
    BlacklistCount,
    TimeoutConnect,
    TimeoutClient,
    TimeoutServer,
    TimeoutTunnel,
    TimeoutBody,
    CertsDir,
    DockerSocket,
    OpsAddress,
    NcTimeout,
    DecisionTimeout,
    FrpStrictPorts,
    TunnelInProcess,
    K8sEnabled,
    K8sNamespace,
    K8sApiServer,
    K8sCaFile,
    K8sBearerToken,
    K8sBearerTokenFile,
    K8sVerifySsl,
    K8sStorageClass,
    K8sDefaultStorageSize,
    K8sHostAliases,
    K8sImagePullTimeout,
    K8sStartTimeout,
    Threads,
    MaxConnections,
}

impl Key {
    pub(crate) const ALL: [Key; 39] = [
        Key::SharedKey,
        Key::SharedKeyFile,
        Key::NcInstanceUrl,
        Key::ExappsAddress,
        Key::ExappsHttpsAddress,
        Key::FrpAddress,
        Key::FrpDisableTls,
        Key::FrpCertValidityDays,
        Key::TrustedProxyIps,
        Key::LogLevel,
        Key::SessionLifetime,
        Key::BlacklistWindow,
        Key::BlacklistCount,
        Key::TimeoutConnect,
        Key::TimeoutClient,
        Key::TimeoutServer,
        Key::TimeoutTunnel,
        Key::TimeoutBody,
        Key::CertsDir,
        Key::DockerSocket,
        Key::OpsAddress,
        Key::NcTimeout,
        Key::DecisionTimeout,
        Key::FrpStrictPorts,
        Key::TunnelInProcess,
        Key::K8sEnabled,
        Key::K8sNamespace,
        Key::K8sApiServer,
        Key::K8sCaFile,
        Key::K8sBearerToken,
        Key::K8sBearerTokenFile,
        Key::K8sVerifySsl,
        Key::K8sStorageClass,
        Key::K8sDefaultStorageSize,
        Key::K8sHostAliases,
        Key::K8sImagePullTimeout,
        Key::K8sStartTimeout,
        Key::Threads,
        Key::MaxConnections,
    ];

    /// (environment variable, YAML key, accepted YAML type).
    fn spec(self) -> (&'static str, &'static str, YamlType) {
        use YamlType::*;
        match self {
            Key::SharedKey => ("HP_SHARED_KEY", "shared_key", Text),
            Key::SharedKeyFile => ("HP_SHARED_KEY_FILE", "shared_key_file", Text),
            Key::NcInstanceUrl => ("NC_INSTANCE_URL", "nc_instance_url", Text),
            Key::ExappsAddress => ("HP_EXAPPS_ADDRESS", "exapps_address", Text),
            Key::ExappsHttpsAddress => ("HP_EXAPPS_HTTPS_ADDRESS", "exapps_https_address", Text),
            Key::FrpAddress => ("HP_FRP_ADDRESS", "frp_address", Text),
            Key::FrpDisableTls => ("HP_FRP_DISABLE_TLS", "frp_disable_tls", Bool),
            Key::FrpCertValidityDays => (
                "HP_FRP_CERT_VALIDITY_DAYS",
                "frp_cert_validity_days",
                Number,
            ),
            Key::TrustedProxyIps => ("HP_TRUSTED_PROXY_IPS", "trusted_proxy_ips", List),
            Key::LogLevel => ("HP_LOG_LEVEL", "log_level", Text),
            Key::SessionLifetime => ("HP_SESSION_LIFETIME", "session_lifetime", Number),
            Key::BlacklistWindow => ("HP_BLACKLIST_WINDOW", "blacklist_window", Number),
            Key::BlacklistCount => ("HP_BLACKLIST_COUNT", "blacklist_count", Number),
            Key::TimeoutConnect => ("HP_TIMEOUT_CONNECT", "timeout_connect", Number),
            Key::TimeoutClient => ("HP_TIMEOUT_CLIENT", "timeout_client", Number),
            Key::TimeoutServer => ("HP_TIMEOUT_SERVER", "timeout_server", Number),
            Key::TimeoutTunnel => ("HP_TIMEOUT_TUNNEL", "timeout_tunnel", Number),
            Key::TimeoutBody => ("HP_TIMEOUT_BODY", "timeout_body", Number),
            Key::CertsDir => ("HP_CERTS_DIR", "certs_dir", Text),
            Key::DockerSocket => ("HP_DOCKER_SOCKET", "docker_socket", Text),
            Key::OpsAddress => ("HP_OPS_ADDRESS", "ops_address", Text),
            Key::NcTimeout => ("HP_NC_TIMEOUT", "nc_timeout", Number),
            Key::DecisionTimeout => ("HP_DECISION_TIMEOUT", "decision_timeout", Number),
            Key::FrpStrictPorts => ("HP_FRP_STRICT_PORTS", "frp_strict_ports", Bool),
            Key::TunnelInProcess => ("HP_TUNNEL_IN_PROCESS", "tunnel_in_process", Bool),
            Key::K8sEnabled => ("HP_K8S_ENABLED", "k8s_enabled", Bool),
            Key::K8sNamespace => ("HP_K8S_NAMESPACE", "k8s_namespace", Text),
            Key::K8sApiServer => ("HP_K8S_API_SERVER", "k8s_api_server", Text),
            Key::K8sCaFile => ("HP_K8S_CA_FILE", "k8s_ca_file", Text),
            Key::K8sBearerToken => ("HP_K8S_BEARER_TOKEN", "k8s_bearer_token", Text),
            Key::K8sBearerTokenFile => ("HP_K8S_BEARER_TOKEN_FILE", "k8s_bearer_token_file", Text),
            Key::K8sVerifySsl => ("HP_K8S_VERIFY_SSL", "k8s_verify_ssl", Bool),
            Key::K8sStorageClass => ("HP_K8S_STORAGE_CLASS", "k8s_storage_class", Text),
            Key::K8sDefaultStorageSize => (
                "HP_K8S_DEFAULT_STORAGE_SIZE",
                "k8s_default_storage_size",
                Text,
            ),
            Key::K8sHostAliases => ("HP_K8S_HOST_ALIASES", "k8s_host_aliases", List),
            Key::K8sImagePullTimeout => (
                "HP_K8S_IMAGE_PULL_TIMEOUT",
                "k8s_image_pull_timeout",
                Number,
            ),
            Key::K8sStartTimeout => ("HP_K8S_START_TIMEOUT", "k8s_start_timeout", Number),
            Key::Threads => ("HP_THREADS", "threads", Number),
            Key::MaxConnections => ("HP_MAX_CONNECTIONS", "max_connections", Number),
        }
    }

    /// Settings whose value is never shown (messages, `check-config`).
    pub(crate) fn is_secret(self) -> bool {
        matches!(self, Key::SharedKey | Key::K8sBearerToken)
    }

    pub(crate) fn env_name(self) -> &'static str {
        self.spec().0
    }

    pub(crate) fn yaml_name(self) -> &'static str {
        self.spec().1
    }

    pub(crate) fn yaml_type(self) -> YamlType {
        self.spec().2
    }

    pub(crate) fn from_yaml_name(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.yaml_name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_key_is_the_variable_in_lower_snake_case_without_hp_prefix() {
        for key in Key::ALL {
            let env = key.env_name();
            let expected = env.strip_prefix("HP_").unwrap_or(env).to_ascii_lowercase();
            assert_eq!(key.yaml_name(), expected);
            assert_eq!(Key::from_yaml_name(&expected), Some(key));
        }
    }
}
