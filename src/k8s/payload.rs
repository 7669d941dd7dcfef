//! Request bodies of `/k8s/exapp/*`, read like HaRP's pydantic models (see `crate::pydantic`).
//!
//! Deviation from HaRP (docs/migrating-from-harp.md): what would make the API server refuse an
//! object, or would put a surprising value into one, is refused here with a 400 naming the
//! field: an app id that leaves nothing after sanitising or holds characters outside
//! `[A-Za-z0-9_.-]`, an instance id that is not a valid label value, environment entries
//! without `=` or with a name Kubernetes refuses, negative or absurd resource limits, and
//! invalid Service labels. HaRP passed most of these on and answered 503 with the API's error.

use super::names::ExAppNames;
use crate::pydantic::{Bounds, Fields, Invalid};
use serde_json::Value;

/// `ExAppName`: which ExApp (and role) a request is about.
#[derive(Debug, Clone)]
pub struct ExAppName {
    pub name: String,
    pub instance_id: String,
    pub role_suffix: String,
}

impl ExAppName {
    pub fn names(&self) -> ExAppNames {
        ExAppNames::derive(&self.name, &self.instance_id, &self.role_suffix)
    }

    fn read(fields: &mut Fields<'_>) -> ExAppName {
        let app = ExAppName {
            name: fields.required_str("name"),
            instance_id: fields.str_or("instance_id", ""),
            role_suffix: fields.str_or("role_suffix", ""),
        };
        if !fields.errors.is_empty() {
            return app;
        }
        if !is_name_part(&app.name) || !app.name.bytes().any(|b| b.is_ascii_alphanumeric()) {
            fields.error(
                "name",
                "Value error, an ExApp id needs letters or digits and may only contain letters, \
                 digits, '_', '.' and '-' (it becomes part of Kubernetes object names and a \
                 mount path)",
                "value_error",
            );
        }
        if !app.instance_id.is_empty() && !is_label_value(&app.instance_id) {
            fields.error(
                "instance_id",
                "Value error, must be a valid Kubernetes label value (at most 63 letters, \
                 digits, '-', '_' or '.', starting and ending with a letter or digit)",
                "value_error",
            );
        }
        if !is_name_part(&app.role_suffix) {
            fields.error(
                "role_suffix",
                "Value error, may only contain letters, digits, '_', '.' and '-'",
                "value_error",
            );
        }
        app
    }

    pub fn parse(value: &Value) -> Result<ExAppName, Invalid> {
        let mut fields = Fields::of("ExAppName", value)?;
        let app = ExAppName::read(&mut fields);
        fields.finish(app)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputeDevice {
    Cpu,
    Rocm,
    Cuda,
}

/// `CreateExAppPayload` as the Kubernetes backend uses it.
#[derive(Debug, Clone)]
pub struct CreatePayload {
    pub app: ExAppName,
    pub image: String,
    /// `(name, value)` from AppAPI's `NAME=value` entries.
    pub env: Vec<(String, String)>,
    pub compute_device: ComputeDevice,
    /// Memory limit: bytes, or a quantity already in Kubernetes units (absent or 0: none).
    pub memory: Option<Limit>,
    /// CPU limit: billionths of a CPU (`nanoCPUs`), or a quantity in Kubernetes units (`cpu`).
    pub cpu: Option<Limit>,
    /// Mount points are a Docker notion; the backend ignores them with a warning, as HaRP.
    pub mount_points: usize,
}

/// A memory limit above 1 PiB or a CPU limit above a million CPUs is a unit mistake.
const MAX_MEMORY: u64 = 1 << 50;
const MAX_NANO_CPUS: u64 = 1_000_000 * 1_000_000_000;

impl CreatePayload {
    pub fn parse(value: &Value) -> Result<CreatePayload, Invalid> {
        let mut fields = Fields::of("CreateExAppPayload", value)?;
        let app = ExAppName::read(&mut fields);
        let image = match (fields.obj.get("image_id"), fields.obj.get("image")) {
            (None, Some(image)) => fields.string_at("image_id", image).unwrap_or_default(),
            _ => fields.required_str("image_id"),
        };
        if !image.is_empty() && !is_image_ref(&image) {
            fields.error(
                "image_id",
                "Value error, not an image reference ([registry/]repository[:tag][@digest])",
                "value_error",
            );
        } else if image.is_empty() && fields.errors.is_empty() {
            fields.error(
                "image_id",
                "String should have at least 1 character",
                "string_too_short",
            );
        }
        let mut env = Vec::new();
        for (i, entry) in fields
            .str_list("environment_variables")
            .into_iter()
            .enumerate()
        {
            if entry.is_empty() {
                continue;
            }
            match entry.split_once('=') {
                Some((name, value)) if is_env_name(name) => {
                    env.push((name.to_string(), value.to_string()));
                }
                _ => fields.error(
                    format!("environment_variables.{i}"),
                    "Value error, expected NAME=value with a NAME of letters, digits, '_', '-' \
                     and '.', not starting with a digit",
                    "value_error",
                ),
            }
        }
        let compute_device = match fields.literal_or(
            "compute_device",
            &["cpu", "rocm", "cuda"],
            Some("cpu"),
            false,
        ) {
            Some("rocm") => ComputeDevice::Rocm,
            Some("cuda") => ComputeDevice::Cuda,
            _ => ComputeDevice::Cpu,
        };
        let mount_points = match fields.obj.get("mount_points") {
            Some(Value::Array(items)) => items.len(),
            None | Some(Value::Null) => 0,
            Some(_) => {
                fields.error("mount_points", "Input should be a valid list", "list_type");
                0
            }
        };
        let (memory, cpu) = read_limits(&mut fields);
        let payload = CreatePayload {
            app,
            image,
            env,
            compute_device,
            memory,
            cpu,
            mount_points,
        };
        fields.finish(payload)
    }
}

/// A resource limit as AppAPI sends it: a number in Docker's unit (bytes, nanoCPUs), or a
/// string HaRP passes on as a Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    Units(u64),
    Quantity(String),
}

/// `resource_limits.memory` (bytes or quantity) and `.nanoCPUs` (or `.cpu`, a quantity).
fn read_limits(fields: &mut Fields<'_>) -> (Option<Limit>, Option<Limit>) {
    let limits = match fields.obj.get("resource_limits") {
        None | Some(Value::Null) => return (None, None),
        Some(Value::Object(limits)) => limits.clone(),
        Some(_) => {
            fields.error(
                "resource_limits",
                "Input should be a valid dictionary",
                "dict_type",
            );
            return (None, None);
        }
    };
    let mut read = |key: &str, max: u64| -> Option<Limit> {
        let value = limits.get(key)?;
        let loc = format!("resource_limits.{key}");
        if let Some(text) = value.as_str() {
            if text.is_empty() {
                return None;
            }
            if crate::config::is_positive_quantity(text) {
                return Some(Limit::Quantity(text.to_string()));
            }
            fields.error(
                loc,
                "Value error, expected a positive Kubernetes quantity such as 512Mi or 500m",
                "value_error",
            );
            return None;
        }
        if value.is_null() {
            return None;
        }
        let n = value.as_i64().or_else(|| {
            value
                .as_f64()
                .filter(|x| x.fract() == 0.0 && x.abs() < 9.0e18)
                .map(|x| x as i64)
        });
        match n {
            Some(n) if n < 0 => {
                fields.error(
                    loc,
                    "Input should be greater than or equal to 0",
                    "greater_than_equal",
                );
                None
            }
            Some(n) if n as u64 > max => {
                fields.error(
                    loc,
                    format!("Input should be less than or equal to {max}"),
                    "less_than_equal",
                );
                None
            }
            Some(0) => None,
            Some(n) => Some(Limit::Units(n as u64)),
            None => {
                fields.error(loc, "Input should be a valid integer", "int_type");
                None
            }
        }
    };
    let memory = read("memory", MAX_MEMORY);
    let cpu = match read("nanoCPUs", MAX_NANO_CPUS) {
        Some(Limit::Units(n)) => Some(Limit::Units(n)),
        // `cpu` is a quantity already; `nanoCPUs` wins when both are given, as in HaRP.
        _ => match limits.get("cpu") {
            Some(v) if v.is_string() => read("cpu", 0),
            _ => None,
        },
    };
    (memory, cpu)
}

/// `RemoveExAppPayload`.
#[derive(Debug, Clone)]
pub struct RemovePayload {
    pub app: ExAppName,
    pub remove_data: bool,
}

impl RemovePayload {
    pub fn parse(value: &Value) -> Result<RemovePayload, Invalid> {
        let mut fields = Fields::of("RemoveExAppPayload", value)?;
        let app = ExAppName::read(&mut fields);
        let remove_data = fields.bool_or("remove_data", false);
        fields.finish(RemovePayload { app, remove_data })
    }
}

/// `InstallCertificatesPayload`: checked, then nothing to do (pods get no FRP certificates).
pub fn parse_certificates(value: &Value) -> Result<(), Invalid> {
    let mut fields = Fields::of("InstallCertificatesPayload", value)?;
    ExAppName::read(&mut fields);
    fields.optional_str("system_certs_bundle");
    fields.bool_or("install_frp_certs", true);
    fields.finish(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExposeType {
    ClusterIp,
    NodePort,
    LoadBalancer,
    Manual,
}

impl ExposeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ExposeType::ClusterIp => "clusterip",
            ExposeType::NodePort => "nodeport",
            ExposeType::LoadBalancer => "loadbalancer",
            ExposeType::Manual => "manual",
        }
    }

    /// The Service type it creates (none for manual).
    pub fn service_type(self) -> Option<&'static str> {
        match self {
            ExposeType::ClusterIp => Some("ClusterIP"),
            ExposeType::NodePort => Some("NodePort"),
            ExposeType::LoadBalancer => Some("LoadBalancer"),
            ExposeType::Manual => None,
        }
    }
}

/// `ExposeExAppPayload`.
#[derive(Debug, Clone)]
pub struct ExposePayload {
    pub app: ExAppName,
    pub port: u16,
    pub expose_type: ExposeType,
    pub upstream_host: Option<String>,
    pub upstream_port: Option<u16>,
    pub service_port: Option<u16>,
    pub node_port: Option<u16>,
    pub external_traffic_policy: Option<&'static str>,
    pub load_balancer_ip: Option<String>,
    pub service_annotations: Vec<(String, String)>,
    pub service_labels: Vec<(String, String)>,
    pub wait_timeout: std::time::Duration,
    pub wait_interval: std::time::Duration,
    pub node_address_type: &'static str,
    pub node_name: Option<String>,
    pub node_label_selector: Option<String>,
}

const PORT: Bounds = Bounds {
    min: 1.0,
    max: 65535.0,
};

impl ExposePayload {
    pub fn parse(value: &Value) -> Result<ExposePayload, Invalid> {
        let mut fields = Fields::of("ExposeExAppPayload", value)?;
        let app = ExAppName::read(&mut fields);
        let port = fields.required_int("port", PORT).unwrap_or(1) as u16;
        let expose_type = match fields.literal_or(
            "expose_type",
            &["nodeport", "clusterip", "loadbalancer", "manual"],
            Some("clusterip"),
            false,
        ) {
            Some("nodeport") => ExposeType::NodePort,
            Some("loadbalancer") => ExposeType::LoadBalancer,
            Some("manual") => ExposeType::Manual,
            _ => ExposeType::ClusterIp,
        };
        let upstream_host = fields.optional_str("upstream_host");
        if let Some(host) = &upstream_host {
            if !is_host(host) {
                fields.error(
                    "upstream_host",
                    "Value error, expected a host name or an IP address",
                    "value_error",
                );
            }
        }
        let upstream_port = fields.optional_int("upstream_port", PORT).map(|p| p as u16);
        let service_port = fields.optional_int("service_port", PORT).map(|p| p as u16);
        let node_port = fields
            .optional_int(
                "node_port",
                Bounds {
                    min: 30000.0,
                    max: 32767.0,
                },
            )
            .map(|p| p as u16);
        let external_traffic_policy =
            fields.literal_or("external_traffic_policy", &["Cluster", "Local"], None, true);
        let load_balancer_ip = fields.optional_str("load_balancer_ip");
        if let Some(ip) = &load_balancer_ip {
            if ip.parse::<std::net::IpAddr>().is_err() {
                fields.error(
                    "load_balancer_ip",
                    "Value error, expected an IP address",
                    "value_error",
                );
            }
        }
        let service_annotations = fields.str_map("service_annotations");
        for (key, _) in &service_annotations {
            if !is_qualified_name(key) {
                fields.error(
                    format!("service_annotations.{key}"),
                    "Value error, not a valid annotation key ([prefix/]name)",
                    "value_error",
                );
            }
        }
        let service_labels = fields.str_map("service_labels");
        for (key, value) in &service_labels {
            if !is_qualified_name(key) || !is_label_value(value) && !value.is_empty() {
                fields.error(
                    format!("service_labels.{key}"),
                    "Value error, not a valid Kubernetes label ([prefix/]name, value of at most \
                     63 letters, digits, '-', '_' or '.')",
                    "value_error",
                );
            }
        }
        let wait_timeout = fields.float_or(
            "wait_timeout_seconds",
            60.0,
            Bounds {
                min: 0.0,
                max: 600.0,
            },
        );
        let wait_interval = fields.float_or(
            "wait_interval_seconds",
            1.0,
            Bounds {
                min: 0.1,
                max: 10.0,
            },
        );
        let node_address_type = fields
            .literal_or(
                "node_address_type",
                &["InternalIP", "ExternalIP"],
                Some("InternalIP"),
                false,
            )
            .unwrap_or("InternalIP");
        let node_name = fields.optional_str("node_name");
        let node_label_selector = fields.optional_str("node_label_selector");
        if expose_type == ExposeType::Manual
            && upstream_host.as_deref().is_none_or(str::is_empty)
            && fields.errors.is_empty()
        {
            fields.error(
                "",
                "Value error, upstream_host is required when expose_type='manual'",
                "value_error",
            );
        }
        let payload = ExposePayload {
            app,
            port,
            expose_type,
            upstream_host: upstream_host.filter(|h| !h.is_empty()),
            upstream_port,
            service_port,
            node_port,
            external_traffic_policy,
            load_balancer_ip,
            service_annotations,
            service_labels,
            wait_timeout: std::time::Duration::from_secs_f64(wait_timeout),
            wait_interval: std::time::Duration::from_secs_f64(wait_interval),
            node_address_type,
            node_name,
            node_label_selector,
        };
        fields.finish(payload)
    }
}

/// Letters, digits, `_`, `.`, `-`: safe inside object names, labels and a mount path.
fn is_name_part(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !s.contains("..")
}

/// A label value: at most 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends.
pub(crate) fn is_label_value(s: &str) -> bool {
    let bytes = s.as_bytes();
    !s.is_empty()
        && s.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A label or annotation key: `[DNS-1123 subdomain/]name`.
fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    });
    prefix_ok && is_label_value(name)
}

/// An environment variable name Kubernetes accepts (`[-._a-zA-Z][-._a-zA-Z0-9]*`).
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || matches!(b, b'_' | b'-' | b'.'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A host name or IP address (no scheme, port or path).
fn is_host(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
        || (!host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }))
}

/// `[registry[:port]/]path[:tag][@digest]` in the characters image references may hold.
fn is_image_ref(image: &str) -> bool {
    image.len() <= 512
        && !image.starts_with(['-', '/', ':', '@'])
        && !image.contains("..")
        && !image.contains("//")
        && image.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'/' | b':' | b'@' | b'.' | b'_' | b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err<T: std::fmt::Debug>(r: Result<T, Invalid>) -> String {
        r.expect_err("should be invalid").to_string()
    }

    #[test]
    fn names_that_would_collide_or_escape_are_refused() {
        assert!(ExAppName::parse(&json!({"name": "app_1"})).is_ok());
        for bad in ["___", "", "../x", "a/b", "a b"] {
            let text = err(ExAppName::parse(&json!({ "name": bad })));
            assert!(text.contains("\nname\n  Value error"), "{bad}: {text}");
        }
        let text = err(ExAppName::parse(
            &json!({"name": "a", "instance_id": "-x-"}),
        ));
        assert!(text.contains("\ninstance_id\n"), "{text}");
        assert_eq!(
            err(ExAppName::parse(&json!({}))),
            "1 validation error for ExAppName\nname\n  Field required [type=missing]"
        );
    }

    #[test]
    fn create_reads_env_limits_and_device() {
        let p = CreatePayload::parse(&json!({
            "name": "app", "image": "ghcr.io/nextcloud/app:1.0",
            "environment_variables": ["A=1", "B=x=y", ""],
            "compute_device": "cuda",
            "resource_limits": {"memory": 536870912, "nanoCPUs": 500000000},
            "mount_points": [{"source": "/a", "target": "/b"}]
        }))
        .unwrap();
        assert_eq!(
            p.env,
            [("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert_eq!(p.compute_device, ComputeDevice::Cuda);
        assert_eq!(
            (p.memory, p.cpu),
            (Some(Limit::Units(536870912)), Some(Limit::Units(500000000)))
        );
        assert_eq!(p.mount_points, 1);
        let p = CreatePayload::parse(&json!({
            "name": "app", "image": "img", "resource_limits": {"memory": "512Mi", "cpu": "500m"}
        }))
        .unwrap();
        assert_eq!(
            (p.memory, p.cpu),
            (
                Some(Limit::Quantity("512Mi".into())),
                Some(Limit::Quantity("500m".into()))
            )
        );
        let text = err(CreatePayload::parse(&json!({
            "name": "app", "image": "img", "environment_variables": ["NOEQUALS", "1X=2"],
            "resource_limits": {"memory": -1, "nanoCPUs": 1e30},
            "compute_device": "tpu"
        })));
        for needle in [
            "5 validation errors for CreateExAppPayload",
            "\nenvironment_variables.0\n",
            "\nenvironment_variables.1\n",
            "\nresource_limits.memory\n  Input should be greater than or equal to 0",
            "\nresource_limits.nanoCPUs\n",
            "\ncompute_device\n  Input should be 'cpu', 'rocm' or 'cuda' [type=literal_error]",
        ] {
            assert!(text.contains(needle), "{needle:?} not in {text}");
        }
        assert!(err(CreatePayload::parse(&json!({"name": "a"}))).contains("\nimage_id\n"));
    }

    #[test]
    fn expose_defaults_bounds_and_manual_rule() {
        let p = ExposePayload::parse(&json!({"name": "app", "port": 23000})).unwrap();
        assert_eq!(p.expose_type, ExposeType::ClusterIp);
        assert_eq!(p.wait_timeout, std::time::Duration::from_secs(60));
        assert_eq!(p.node_address_type, "InternalIP");
        let text = err(ExposePayload::parse(
            &json!({"name": "app", "port": 0, "expose_type": "ingress", "node_port": 80}),
        ));
        for needle in [
            "\nport\n  Input should be greater than or equal to 1 [type=greater_than_equal]",
            "\nexpose_type\n  Input should be 'nodeport', 'clusterip', 'loadbalancer' or 'manual'",
            "\nnode_port\n  Input should be greater than or equal to 30000",
        ] {
            assert!(text.contains(needle), "{needle:?} not in {text}");
        }
        let text = err(ExposePayload::parse(
            &json!({"name": "app", "port": 80, "expose_type": "manual"}),
        ));
        assert!(
            text.contains("upstream_host is required when expose_type='manual'"),
            "{text}"
        );
        assert!(
            err(ExposePayload::parse(&json!({"name": "app"}))).contains("\nport\n  Field required")
        );
        let text = err(ExposePayload::parse(
            &json!({"name": "a", "port": 1, "service_labels": {"bad key!": "v"}}),
        ));
        assert!(text.contains("service_labels.bad key!"), "{text}");
    }
}
