//! Human-facing renderings of settings: `harp check-config` output and log-level names. Every
//! value is printed in the syntax its variable accepts, so a line can be pasted back into an env
//! file; the shared key is always masked.

use super::keys::Key;
use super::settings::{LogLevel, Settings};
use super::time;
use std::fmt;

const MASK: &str = "********";

impl Settings {
    /// Every effective setting, one `NAME=value` line each, in the order of the settings table.
    pub fn describe(&self) -> String {
        let mut lines = Vec::with_capacity(Key::ALL.len());
        for key in Key::ALL {
            if let Some(value) = self.value_of(key) {
                lines.push(format!("{}={value}", key.env_name()));
            }
        }
        lines.join("\n")
    }

    /// The variables whose effective value differs in `other`, in the order of the settings
    /// table (SIGHUP applies some and reports the rest).
    pub fn changed_vars(&self, other: &Settings) -> Vec<&'static str> {
        Key::ALL
            .into_iter()
            .filter(|&key| match key {
                Key::SharedKey => self.shared_key != other.shared_key,
                Key::K8sBearerToken => self.k8s.bearer_token != other.k8s.bearer_token,
                _ => self.value_of(key) != other.value_of(key),
            })
            .map(Key::env_name)
            .collect()
    }

    /// Exhaustive on purpose: a new setting cannot be added without deciding how it is shown.
    fn value_of(&self, key: Key) -> Option<String> {
        let value = match key {
            Key::SharedKey => MASK.to_string(),
            // The key has been read already; the effective value is what matters.
            Key::SharedKeyFile => return None,
            Key::NcInstanceUrl => self.nc_instance_url_for_display(),
            Key::ExappsAddress => self.exapps_address.to_string(),
            Key::ExappsHttpsAddress => self.exapps_https_address.to_string(),
            Key::FrpAddress => self.frp_address.to_string(),
            Key::FrpDisableTls => self.frp_disable_tls.to_string(),
            Key::FrpCertValidityDays => self.frp_cert_validity_days.to_string(),
            Key::TrustedProxyIps => self
                .trusted_proxies
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            Key::LogLevel => self.log_level.to_string(),
            Key::SessionLifetime => self.session_lifetime.as_secs_f64().to_string(),
            Key::BlacklistWindow => self.blacklist_window.as_secs().to_string(),
            Key::BlacklistCount => self.blacklist_count.to_string(),
            Key::TimeoutConnect => time::format(self.timeout_connect),
            Key::TimeoutClient => time::format(self.timeout_client),
            Key::TimeoutServer => time::format(self.timeout_server),
            Key::TimeoutTunnel => self
                .timeout_tunnel
                .map_or_else(|| "0".to_string(), time::format),
            Key::TimeoutBody => self
                .timeout_body
                .map_or_else(|| "0".to_string(), time::format),
            Key::CertsDir => self.certs_dir.display().to_string(),
            Key::DockerSocket => self.docker_socket.display().to_string(),
            Key::OpsAddress => self.ops_address.to_string(),
            Key::NcTimeout => time::format(self.nc_timeout),
            Key::DecisionTimeout => time::format(self.decision_timeout),
            Key::FrpStrictPorts => self.frp_strict_ports.to_string(),
            Key::TunnelInProcess => self.tunnel_in_process.to_string(),
            Key::K8sEnabled => self.k8s.enabled.to_string(),
            Key::K8sNamespace => self.k8s.namespace.clone(),
            Key::K8sApiServer => self.k8s.api_server.clone().unwrap_or_default(),
            Key::K8sCaFile => self.k8s.ca_file.display().to_string(),
            Key::K8sBearerToken => match &self.k8s.bearer_token {
                Some(_) => MASK.to_string(),
                None => return None,
            },
            Key::K8sBearerTokenFile => self.k8s.bearer_token_file.display().to_string(),
            Key::K8sVerifySsl => self.k8s.verify_ssl.to_string(),
            Key::K8sStorageClass => self.k8s.storage_class.clone().unwrap_or_default(),
            Key::K8sDefaultStorageSize => self.k8s.default_storage_size.clone(),
            Key::K8sHostAliases => self
                .k8s
                .host_aliases
                .iter()
                .flat_map(|a| a.hostnames.iter().map(move |h| format!("{h}:{}", a.ip)))
                .collect::<Vec<_>>()
                .join(","),
            Key::K8sImagePullTimeout => time::format(self.k8s.image_pull_timeout),
            Key::K8sStartTimeout => time::format(self.k8s.start_timeout),
            Key::Threads => self.threads.to_string(),
            Key::MaxConnections => self.max_connections.to_string(),
        };
        Some(value)
    }
}

impl LogLevel {
    /// HaRP's name for the level, as `HP_LOG_LEVEL` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
        }
    }

    /// The `log` crate filter that shows this level and everything more severe.
    pub fn to_level_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Warning => log::LevelFilter::Warn,
            LogLevel::Error => log::LevelFilter::Error,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
