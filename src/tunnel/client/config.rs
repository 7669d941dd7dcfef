//! The subset of frpc 0.61.1's TOML configuration that `harp tunnel` understands: what HaRP's
//! generated configs (`frpc-docker.toml`, the ExApp `start.sh` config, the remote-engine
//! README config; harp-behaviour §10.3, §10.4) and simple hand-written ones use.
//!
//! Defaults are frpc's. Keys that would change what goes on the wire and that this client does
//! not implement (another transport protocol, `user`, per-proxy encryption, other proxy or
//! plugin types, visitors, Go templates) are errors, so a config never silently means
//! something else here; other unknown keys (log files, the admin web server, …) are warnings.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::limits::{DEFAULT_DIAL_TIMEOUT, DEFAULT_KEEPALIVE_INTERVAL};

/// A validated client configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    pub server_addr: String,
    pub server_port: u16,
    /// Exit when the very first login fails (frpc default true; HaRP's ExApps set false).
    pub login_fail_exit: bool,
    /// `auth.token`, the frp token (HaRP: empty). Secret.
    pub token: String,
    /// `auth.additionalScopes` contains `HeartBeats` / `NewWorkConns`.
    pub auth_heartbeats: bool,
    pub auth_new_work_conns: bool,
    /// `None` = plain TCP (`transport.tls.enable = false`).
    pub tls: Option<TlsConfig>,
    pub tcp_mux: bool,
    pub tcp_mux_keepalive: Duration,
    pub pool_count: u32,
    pub dial_timeout: Duration,
    /// Application heartbeat (Ping/Pong); `None` = off (frpc's default with tcpMux).
    pub heartbeat_interval: Option<Duration>,
    pub heartbeat_timeout: Option<Duration>,
    /// `metadatas`: sent as Login `metas`; HaRP's shared key is `token`. Secret values.
    pub metas: BTreeMap<String, String>,
    pub proxies: Vec<ProxyConfig>,
    /// `log.level`, if set.
    pub log_level: Option<log::LevelFilter>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Client certificate and key, offered when both are set (mutual TLS).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Verify the server against this CA; without it any server certificate is accepted, as
    /// frpc does (Go's `InsecureSkipVerify`).
    pub trusted_ca_file: Option<PathBuf>,
    /// SNI and the name the server certificate must carry: `serverName`, else `serverAddr`.
    pub server_name: String,
    /// Write frp's 0x17 byte before the ClientHello (`disableCustomTLSFirstByte = false`).
    /// frpc 0.61.1 does not by default.
    pub custom_first_byte: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    pub name: String,
    /// 0 lets the server choose (frps supports it; HaRP's configs always set one).
    pub remote_port: u16,
    pub target: Target,
}

/// Where a work connection's bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp {
        host: String,
        port: u16,
    },
    /// The `unix_domain_socket` plugin (`unixPath`).
    Unix(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Tcp { host, port } => write!(f, "{host}:{port}"),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let metas: BTreeMap<&str, &str> = self
            .metas
            .keys()
            .map(|k| (k.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("ClientConfig")
            .field("server_addr", &self.server_addr)
            .field("server_port", &self.server_port)
            .field("login_fail_exit", &self.login_fail_exit)
            .field(
                "token",
                &if self.token.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("tls", &self.tls)
            .field("tcp_mux", &self.tcp_mux)
            .field("pool_count", &self.pool_count)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("metas", &metas)
            .field("proxies", &self.proxies)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// The TOML shape (frpc's camelCase keys)
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Raw {
    server_addr: Option<String>,
    server_port: Option<i64>,
    login_fail_exit: Option<bool>,
    user: String,
    auth: RawAuth,
    transport: RawTransport,
    metadatas: BTreeMap<String, String>,
    log: RawLog,
    proxies: Vec<RawProxy>,
    visitors: Vec<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawAuth {
    method: Option<String>,
    token: String,
    additional_scopes: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawTransport {
    protocol: Option<String>,
    tcp_mux: Option<bool>,
    tcp_mux_keepalive_interval: Option<i64>,
    pool_count: Option<i64>,
    dial_server_timeout: Option<i64>,
    heartbeat_interval: Option<i64>,
    heartbeat_timeout: Option<i64>,
    tls: RawTls,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawTls {
    enable: Option<bool>,
    cert_file: String,
    key_file: String,
    trusted_ca_file: String,
    server_name: String,
    #[serde(rename = "disableCustomTLSFirstByte")]
    disable_custom_tls_first_byte: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawLog {
    level: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawProxy {
    name: String,
    #[serde(rename = "type")]
    proxy_type: String,
    #[serde(rename = "localIP")]
    local_ip: Option<String>,
    local_port: Option<i64>,
    remote_port: Option<i64>,
    plugin: Option<RawPlugin>,
    transport: RawProxyTransport,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawProxyTransport {
    use_encryption: bool,
    use_compression: bool,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawPlugin {
    #[serde(rename = "type")]
    plugin_type: String,
    unix_path: String,
}

/// Known keys, to warn about the others. `Table` = a nested table, `Tables` = an array of
/// tables (`[[proxies]]`), `Map` = free-form keys (`metadatas`).
enum Key {
    Leaf,
    Map,
    Table(&'static [(&'static str, Key)]),
    Tables(&'static [(&'static str, Key)]),
}

const TLS_KEYS: &[(&str, Key)] = &[
    ("enable", Key::Leaf),
    ("certFile", Key::Leaf),
    ("keyFile", Key::Leaf),
    ("trustedCaFile", Key::Leaf),
    ("serverName", Key::Leaf),
    ("disableCustomTLSFirstByte", Key::Leaf),
];
const TRANSPORT_KEYS: &[(&str, Key)] = &[
    ("protocol", Key::Leaf),
    ("tcpMux", Key::Leaf),
    ("tcpMuxKeepaliveInterval", Key::Leaf),
    ("poolCount", Key::Leaf),
    ("dialServerTimeout", Key::Leaf),
    ("heartbeatInterval", Key::Leaf),
    ("heartbeatTimeout", Key::Leaf),
    ("tls", Key::Table(TLS_KEYS)),
];
const PROXY_KEYS: &[(&str, Key)] = &[
    ("name", Key::Leaf),
    ("type", Key::Leaf),
    ("localIP", Key::Leaf),
    ("localPort", Key::Leaf),
    ("remotePort", Key::Leaf),
    (
        "plugin",
        Key::Table(&[("type", Key::Leaf), ("unixPath", Key::Leaf)]),
    ),
    (
        "transport",
        Key::Table(&[("useEncryption", Key::Leaf), ("useCompression", Key::Leaf)]),
    ),
];
const TOP_KEYS: &[(&str, Key)] = &[
    ("serverAddr", Key::Leaf),
    ("serverPort", Key::Leaf),
    ("loginFailExit", Key::Leaf),
    ("user", Key::Leaf),
    (
        "auth",
        Key::Table(&[
            ("method", Key::Leaf),
            ("token", Key::Leaf),
            ("additionalScopes", Key::Leaf),
        ]),
    ),
    ("transport", Key::Table(TRANSPORT_KEYS)),
    ("metadatas", Key::Map),
    ("log", Key::Table(&[("level", Key::Leaf)])),
    ("proxies", Key::Tables(PROXY_KEYS)),
    ("visitors", Key::Leaf),
];

fn unknown_keys(table: &toml::Table, known: &[(&str, Key)], prefix: &str, out: &mut Vec<String>) {
    for (name, value) in table {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match (known.iter().find(|(k, _)| k == name), value) {
            (None, _) => out.push(path),
            (Some((_, Key::Table(inner))), toml::Value::Table(t)) => {
                unknown_keys(t, inner, &path, out);
            }
            (Some((_, Key::Tables(inner))), toml::Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::Value::Table(t) = item {
                        unknown_keys(t, inner, &format!("{path}[{i}]"), out);
                    }
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

fn port(value: i64, what: &str, allow_zero: bool) -> Result<u16, String> {
    match u16::try_from(value) {
        Ok(0) if !allow_zero => Err(format!("{what} must be 1-65535, not 0")),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("{what} must be 0-65535, not {value}")),
    }
}

fn seconds(value: i64) -> Option<Duration> {
    u64::try_from(value)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

fn non_empty_path(s: String) -> Option<PathBuf> {
    (!s.is_empty()).then(|| PathBuf::from(s))
}

fn log_level(level: &str) -> Result<log::LevelFilter, String> {
    Ok(match level.to_ascii_lowercase().as_str() {
        "trace" => log::LevelFilter::Trace,
        "debug" => log::LevelFilter::Debug,
        "info" => log::LevelFilter::Info,
        "warn" => log::LevelFilter::Warn,
        "error" => log::LevelFilter::Error,
        other => {
            return Err(format!(
                "log.level {other:?} is not trace/debug/info/warn/error"
            ))
        }
    })
}

fn proxy(raw: RawProxy, index: usize) -> Result<ProxyConfig, String> {
    let what = if raw.name.is_empty() {
        format!("proxies[{index}]")
    } else {
        format!("proxy {:?}", raw.name)
    };
    if raw.name.is_empty() {
        return Err(format!("{what}: name is required"));
    }
    if raw.proxy_type != "tcp" {
        return Err(format!(
            "{what}: type {:?} is not supported (only \"tcp\")",
            raw.proxy_type
        ));
    }
    if raw.transport.use_encryption || raw.transport.use_compression {
        return Err(format!(
            "{what}: transport.useEncryption / useCompression are not supported"
        ));
    }
    let remote_port = port(
        raw.remote_port.unwrap_or(0),
        &format!("{what}: remotePort"),
        true,
    )?;
    let target = match raw.plugin {
        Some(plugin) => {
            if plugin.plugin_type != "unix_domain_socket" {
                return Err(format!(
                    "{what}: plugin type {:?} is not supported (only \"unix_domain_socket\")",
                    plugin.plugin_type
                ));
            }
            if plugin.unix_path.is_empty() {
                return Err(format!("{what}: plugin.unixPath is required"));
            }
            Target::Unix(PathBuf::from(plugin.unix_path))
        }
        None => {
            let local_port = raw
                .local_port
                .ok_or_else(|| format!("{what}: localPort (or a plugin) is required"))?;
            Target::Tcp {
                host: raw.local_ip.unwrap_or_else(|| "127.0.0.1".into()),
                port: port(local_port, &format!("{what}: localPort"), false)?,
            }
        }
    };
    Ok(ProxyConfig {
        name: raw.name,
        remote_port,
        target,
    })
}

/// Parses and validates a config; also returns warnings (ignored keys) for the log.
pub fn parse(text: &str) -> Result<(ClientConfig, Vec<String>), String> {
    if text.contains("{{") {
        return Err("Go templates ({{ ... }}) are not supported; write the values in".into());
    }
    let table: toml::Table = toml::from_str(text).map_err(|e| format!("invalid TOML: {e}"))?;
    let mut ignored = Vec::new();
    unknown_keys(&table, TOP_KEYS, "", &mut ignored);
    let warnings = ignored
        .into_iter()
        .map(|k| format!("{k} is not supported by harp tunnel and is ignored"))
        .collect();
    let raw: Raw = table
        .try_into()
        .map_err(|e: toml::de::Error| format!("invalid config: {e}"))?;
    Ok((validate(raw)?, warnings))
}

fn validate(raw: Raw) -> Result<ClientConfig, String> {
    if !raw.user.is_empty() {
        return Err("user is not supported (it would prefix every proxy name)".into());
    }
    if !raw.visitors.is_empty() {
        return Err("visitors are not supported".into());
    }
    if let Some(method) = raw.auth.method.as_deref().filter(|m| *m != "token") {
        return Err(format!(
            "auth.method {method:?} is not supported (only \"token\")"
        ));
    }
    let mut auth_heartbeats = false;
    let mut auth_new_work_conns = false;
    for scope in &raw.auth.additional_scopes {
        match scope.as_str() {
            "HeartBeats" => auth_heartbeats = true,
            "NewWorkConns" => auth_new_work_conns = true,
            other => return Err(format!("auth.additionalScopes: unknown scope {other:?}")),
        }
    }
    let t = raw.transport;
    if let Some(protocol) = t.protocol.as_deref().filter(|p| *p != "tcp") {
        return Err(format!(
            "transport.protocol {protocol:?} is not supported (only \"tcp\")"
        ));
    }
    let server_addr = raw.server_addr.unwrap_or_else(|| "0.0.0.0".into());
    if server_addr.is_empty() {
        return Err("serverAddr is empty".into());
    }
    let server_port = port(raw.server_port.unwrap_or(7000), "serverPort", false)?;
    let tls = if t.tls.enable.unwrap_or(true) {
        let tls = t.tls;
        let cert_file = non_empty_path(tls.cert_file);
        let key_file = non_empty_path(tls.key_file);
        if cert_file.is_some() != key_file.is_some() {
            return Err("transport.tls.certFile and keyFile must be set together".into());
        }
        Some(TlsConfig {
            cert_file,
            key_file,
            trusted_ca_file: non_empty_path(tls.trusted_ca_file),
            server_name: if tls.server_name.is_empty() {
                server_addr.clone()
            } else {
                tls.server_name
            },
            custom_first_byte: !tls.disable_custom_tls_first_byte.unwrap_or(true),
        })
    } else {
        None
    };
    let tcp_mux = t.tcp_mux.unwrap_or(true);
    // frpc: heartbeats default to 30 s / 90 s, but are off (-1) with tcpMux, whose keepalive
    // does the job.
    let (hb_interval, hb_timeout) = if tcp_mux { (-1, -1) } else { (30, 90) };
    let pool_count = t.pool_count.unwrap_or(1);
    let pool_count = u32::try_from(pool_count)
        .ok()
        .filter(|n| *n <= 100)
        .ok_or_else(|| format!("transport.poolCount must be 0-100, not {pool_count}"))?;
    let mut proxies = Vec::new();
    for (i, raw_proxy) in raw.proxies.into_iter().enumerate() {
        let p = proxy(raw_proxy, i)?;
        if proxies.iter().any(|q: &ProxyConfig| q.name == p.name) {
            return Err(format!("proxy {:?} is defined twice", p.name));
        }
        proxies.push(p);
    }
    Ok(ClientConfig {
        server_addr,
        server_port,
        login_fail_exit: raw.login_fail_exit.unwrap_or(true),
        token: raw.auth.token,
        auth_heartbeats,
        auth_new_work_conns,
        tls,
        tcp_mux,
        tcp_mux_keepalive: t
            .tcp_mux_keepalive_interval
            .and_then(seconds)
            .unwrap_or(DEFAULT_KEEPALIVE_INTERVAL),
        pool_count,
        dial_timeout: t
            .dial_server_timeout
            .and_then(seconds)
            .unwrap_or(DEFAULT_DIAL_TIMEOUT),
        heartbeat_interval: seconds(t.heartbeat_interval.unwrap_or(hb_interval)),
        heartbeat_timeout: seconds(t.heartbeat_timeout.unwrap_or(hb_timeout)),
        metas: raw.metadatas,
        proxies,
        log_level: raw.log.level.as_deref().map(log_level).transpose()?,
    })
}

/// Reads and parses a config file.
pub fn load(path: &Path) -> Result<(ClientConfig, Vec<String>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HaRP's `frpc-docker.toml` with TLS on (harp-behaviour §10.3).
    const DOCKER: &str = r#"
serverAddr = "127.0.0.1"
serverPort = 8782

transport.tls.enable = true
transport.tls.certFile = "/certs/frp/client.crt"
transport.tls.keyFile = "/certs/frp/client.key"
transport.tls.trustedCaFile = "/certs/frp/ca.crt"
transport.tls.serverName = "harp.nc"

metadatas.token = "some_very_secure_password"

[[proxies]]
name = "bundled-deploy-daemon"
type = "tcp"
remotePort = 24000
[proxies.plugin]
type = "unix_domain_socket"
unixPath = "/var/run/docker.sock"
"#;

    #[test]
    fn harps_docker_config() {
        let (c, warnings) = parse(DOCKER).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!((c.server_addr.as_str(), c.server_port), ("127.0.0.1", 8782));
        assert!(c.login_fail_exit, "frpc's default");
        assert!(c.tcp_mux && c.pool_count == 1 && c.heartbeat_interval.is_none());
        assert_eq!(c.token, "");
        let tls = c.tls.as_ref().unwrap();
        assert_eq!(tls.server_name, "harp.nc");
        assert_eq!(
            tls.trusted_ca_file.as_deref(),
            Some(Path::new("/certs/frp/ca.crt"))
        );
        assert!(
            !tls.custom_first_byte,
            "frpc 0.61.1 sends no 0x17 by default"
        );
        assert_eq!(c.metas["token"], "some_very_secure_password");
        assert_eq!(
            c.proxies,
            [ProxyConfig {
                name: "bundled-deploy-daemon".into(),
                remote_port: 24000,
                target: Target::Unix("/var/run/docker.sock".into()),
            }]
        );
        assert!(!format!("{c:?}").contains("some_very_secure_password"));
    }

    /// The ExApp start.sh config without certificates, with the keys written as tables.
    #[test]
    fn exapp_config_without_tls() {
        let text = r#"
serverAddr = "harp.example"
serverPort = 8782
loginFailExit = false
[transport.tls]
enable = false
[metadatas]
token = "k"
[[proxies]]
name = "my_app"
type = "tcp"
remotePort = 23001
localIP = "127.0.0.2"
localPort = 9000
"#;
        let (c, _) = parse(text).unwrap();
        assert!(!c.login_fail_exit && c.tls.is_none());
        assert_eq!(
            c.proxies[0].target,
            Target::Tcp {
                host: "127.0.0.2".into(),
                port: 9000
            }
        );
    }

    #[test]
    fn defaults_are_frpcs() {
        let (c, _) = parse("").unwrap();
        assert_eq!((c.server_addr.as_str(), c.server_port), ("0.0.0.0", 7000));
        let tls = c.tls.unwrap();
        assert_eq!(tls.server_name, "0.0.0.0");
        assert!(tls.trusted_ca_file.is_none() && tls.cert_file.is_none());
        let (c, _) = parse("transport.tcpMux = false").unwrap();
        assert_eq!(c.heartbeat_interval, Some(Duration::from_secs(30)));
        assert_eq!(c.heartbeat_timeout, Some(Duration::from_secs(90)));
        let (c, _) = parse("transport.tls.disableCustomTLSFirstByte = false").unwrap();
        assert!(c.tls.unwrap().custom_first_byte);
    }

    #[test]
    fn unknown_keys_warn_and_unsupported_ones_fail() {
        let (_, w) = parse("webServer.port = 7400\n[log]\nto = \"x\"\nlevel = \"debug\"").unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("log.to") || w[1].starts_with("log.to"));
        for (text, needle) in [
            ("user = \"u\"", "user"),
            ("transport.protocol = \"kcp\"", "protocol"),
            ("auth.method = \"oidc\"", "auth.method"),
            ("serverPort = 70000", "serverPort"),
            ("[[proxies]]\nname = \"a\"\ntype = \"http\"", "type"),
            ("[[proxies]]\nname = \"a\"\ntype = \"tcp\"", "localPort"),
            (
                "[[proxies]]\nname = \"a\"\ntype = \"tcp\"\nlocalPort = 1\ntransport.useEncryption = true",
                "useEncryption",
            ),
            (
                "[[proxies]]\nname = \"a\"\ntype = \"tcp\"\n[proxies.plugin]\ntype = \"http_proxy\"",
                "plugin type",
            ),
            (
                "[[proxies]]\nname = \"a\"\ntype = \"tcp\"\nlocalPort = 1\n[[proxies]]\nname = \"a\"\ntype = \"tcp\"\nlocalPort = 2",
                "twice",
            ),
            ("serverAddr = \"{{ .Envs.X }}\"", "templates"),
            ("transport.tls.certFile = \"a\"", "together"),
            ("serverPort = \"x\"", "invalid config"),
            ("log.level = \"loud\"", "log.level"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
