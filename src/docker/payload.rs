//! Request bodies of `/docker/exapp/*`, validated like HaRP's pydantic v2 models in lax mode
//! (§6.1): strings are never coerced from numbers, booleans accept `0`/`1` and `"true"`/`"no"`
//! style strings, extra fields are ignored. Errors read like pydantic's so AppAPI's logs look
//! the same (`Payload validation error: 1 validation error for ExAppName\nname\n  Field
//! required [type=missing]`).
//!
//! Deviation (Q16): the fields that end up in Docker API URLs are checked against Docker's
//! grammars here, and a few values HaRP passed through for Docker to reject (restart policy,
//! resource limits) are checked too, so the admin gets a 400 naming the field instead of a 503.

use super::names::{self, ExAppNames};
use crate::pydantic::{Fields, Invalid};
use bollard::models::RestartPolicyNameEnum;
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
        // Q16: these three are pasted into container and volume names, which go into URLs.
        for (key, value) in [
            ("name", &app.name),
            ("instance_id", &app.instance_id),
            ("role_suffix", &app.role_suffix),
        ] {
            if !names::is_name_part(value) {
                fields.error(
                    key,
                    "Value error, may only contain letters, digits, '_', '.' and '-' \
                     (it becomes part of a Docker container or volume name)",
                    "value_error",
                );
            }
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// `CreateExAppPayload`.
#[derive(Debug, Clone)]
pub struct CreatePayload {
    pub app: ExAppName,
    pub image_id: String,
    pub network_mode: String,
    pub environment_variables: Vec<String>,
    pub restart_policy: RestartPolicyNameEnum,
    pub compute_device: ComputeDevice,
    pub mount_points: Vec<MountPoint>,
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
}

impl CreatePayload {
    pub fn parse(value: &Value) -> Result<CreatePayload, Invalid> {
        let mut fields = Fields::of("CreateExAppPayload", value)?;
        let app = ExAppName::read(&mut fields);
        // HaRP's model_validator: `image` stands in for a missing `image_id`, and a missing
        // `network_mode` means `bridge` (a present `null` is still an error).
        let image_id = match (fields.obj.get("image_id"), fields.obj.get("image")) {
            (None, Some(image)) => fields.string_at("image_id", image).unwrap_or_default(),
            _ => fields.required_str("image_id"),
        };
        let network_mode = fields.str_or("network_mode", "bridge");
        let environment_variables = fields.str_list("environment_variables");
        let restart_policy = match fields.obj.get("restart_policy") {
            None => RestartPolicyNameEnum::UNLESS_STOPPED,
            Some(v) => match fields.string_at("restart_policy", v) {
                Some(s) => restart_policy(&s).unwrap_or_else(|| {
                    fields.error(
                        "restart_policy",
                        "Value error, Docker knows 'no', 'always', 'unless-stopped', \
                         'on-failure' or ''",
                        "value_error",
                    );
                    RestartPolicyNameEnum::UNLESS_STOPPED
                }),
                None => RestartPolicyNameEnum::UNLESS_STOPPED,
            },
        };
        let compute_device = match fields.obj.get("compute_device").map(Value::as_str) {
            None | Some(Some("cpu")) => ComputeDevice::Cpu,
            Some(Some("rocm")) => ComputeDevice::Rocm,
            Some(Some("cuda")) => ComputeDevice::Cuda,
            Some(_) => {
                fields.error(
                    "compute_device",
                    "Input should be 'cpu', 'rocm' or 'cuda'",
                    "literal_error",
                );
                ComputeDevice::Cpu
            }
        };
        let mount_points = read_mounts(&mut fields);
        let (memory, nano_cpus) = read_limits(&mut fields);
        let payload = CreatePayload {
            app,
            image_id,
            network_mode,
            environment_variables,
            restart_policy,
            compute_device,
            mount_points,
            memory,
            nano_cpus,
        };
        fields.finish(payload)
    }
}

fn restart_policy(name: &str) -> Option<RestartPolicyNameEnum> {
    Some(match name {
        "" => RestartPolicyNameEnum::EMPTY,
        "no" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => return None,
    })
}

fn read_mounts(fields: &mut Fields<'_>) -> Vec<MountPoint> {
    let items = match fields.obj.get("mount_points") {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            fields.error("mount_points", "Input should be a valid list", "list_type");
            return Vec::new();
        }
    };
    let mut mounts = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let loc = format!("mount_points.{i}");
        let Some(obj) = item.as_object() else {
            fields.error(
                loc,
                "Input should be a valid dictionary or instance of CreateExAppMounts",
                "model_type",
            );
            continue;
        };
        let mut field = |key: &str, default: Option<&str>| match (obj.get(key), default) {
            (Some(v), _) => fields.string_at(&format!("{loc}.{key}"), v),
            (None, Some(d)) => Some(d.to_string()),
            (None, None) => {
                fields.error(format!("{loc}.{key}"), "Field required", "missing");
                None
            }
        };
        let source = field("source", None);
        let target = field("target", None);
        let mode = field("mode", Some("rw"));
        if let (Some(source), Some(target), Some(mode)) = (source, target, mode) {
            mounts.push(MountPoint {
                source,
                target,
                read_only: mode == "ro",
            });
        }
    }
    mounts
}

/// `resource_limits.memory` and `.nanoCPUs`: HaRP copies them verbatim and Docker wants int64.
fn read_limits(fields: &mut Fields<'_>) -> (Option<i64>, Option<i64>) {
    let limits = match fields.obj.get("resource_limits") {
        None => return (None, None),
        Some(Value::Object(limits)) => limits,
        Some(_) => {
            fields.error(
                "resource_limits",
                "Input should be a valid dictionary",
                "dict_type",
            );
            return (None, None);
        }
    };
    let mut int = |key: &str| match limits.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64().or_else(|| {
            v.as_f64()
                .filter(|x| x.fract() == 0.0 && x.abs() < 9.0e18)
                .map(|x| x as i64)
        }) {
            Some(n) => Some(n),
            None => {
                fields.error(
                    format!("resource_limits.{key}"),
                    "Input should be a valid integer (Docker wants an int64 here)",
                    "int_type",
                );
                None
            }
        },
    };
    (int("memory"), int("nanoCPUs"))
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

/// `InstallCertificatesPayload`.
#[derive(Debug, Clone)]
pub struct CertificatesPayload {
    pub app: ExAppName,
    pub system_certs_bundle: Option<String>,
    pub install_frp_certs: bool,
}

impl CertificatesPayload {
    pub fn parse(value: &Value) -> Result<CertificatesPayload, Invalid> {
        let mut fields = Fields::of("InstallCertificatesPayload", value)?;
        let app = ExAppName::read(&mut fields);
        let system_certs_bundle = fields.optional_str("system_certs_bundle");
        let install_frp_certs = fields.bool_or("install_frp_certs", true);
        fields.finish(CertificatesPayload {
            app,
            system_certs_bundle,
            install_frp_certs,
        })
    }
}

/// `RemoveImagePayload`.
#[derive(Debug, Clone)]
pub struct ImageRemovePayload {
    pub image_ref: String,
}

impl ImageRemovePayload {
    pub fn parse(value: &Value) -> Result<ImageRemovePayload, Invalid> {
        let mut fields = Fields::of("RemoveImagePayload", value)?;
        let image_ref = fields.required_str("image_ref");
        let well_formed = fields.errors.is_empty();
        if well_formed && image_ref.is_empty() {
            fields.error(
                "image_ref",
                "String should have at least 1 character",
                "string_too_short",
            );
        } else if well_formed && !names::is_image_ref(&image_ref) {
            // Q16: refuse what Docker could not resolve anyway, before it reaches a URL.
            fields.error(
                "image_ref",
                "Value error, not a Docker image reference ([registry/]repository[:tag][@digest]) \
                 or image ID",
                "value_error",
            );
        }
        fields.finish(ImageRemovePayload { image_ref })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(r: Result<impl std::fmt::Debug, Invalid>) -> String {
        r.expect_err("should be invalid").to_string()
    }

    #[test]
    fn exapp_name_defaults_and_errors() {
        let app = ExAppName::parse(&json!({"name": "app", "extra": 1})).unwrap();
        assert_eq!(app.names().container, "nc_app_app");
        assert_eq!(
            err(ExAppName::parse(&json!({}))),
            "1 validation error for ExAppName\nname\n  Field required [type=missing]"
        );
        assert_eq!(
            err(ExAppName::parse(&json!([]))),
            "1 validation error for ExAppName\n  Input should be a valid dictionary or \
             instance of ExAppName [type=model_type]"
        );
        // Strings are not coerced from numbers.
        let text = err(ExAppName::parse(&json!({"name": 5, "instance_id": null})));
        assert!(
            text.starts_with("2 validation errors for ExAppName\nname\n"),
            "{text}"
        );
        assert!(text.contains("instance_id\n  Input should be a valid string"));
    }

    #[test]
    fn names_are_checked_against_docker_grammar() {
        let text = err(ExAppName::parse(&json!({"name": "../../x"})));
        assert!(text.contains("\nname\n  Value error"), "{text}");
        let text = err(ExAppName::parse(
            &json!({"name": "a", "role_suffix": "x/y"}),
        ));
        assert!(text.contains("\nrole_suffix\n  Value error"), "{text}");
    }

    #[test]
    fn create_defaults_and_aliases() {
        let p = CreatePayload::parse(&json!({"name": "app", "image": "img"})).unwrap();
        assert_eq!(p.image_id, "img");
        assert_eq!(p.network_mode, "bridge");
        assert_eq!(p.restart_policy, RestartPolicyNameEnum::UNLESS_STOPPED);
        assert_eq!(p.compute_device, ComputeDevice::Cpu);
        assert!(p.environment_variables.is_empty() && p.mount_points.is_empty());
        let p = CreatePayload::parse(&json!({
            "name": "app", "image_id": "img", "network_mode": "net1", "compute_device": "cuda",
            "mount_points": [{"source": "/a", "target": "/b", "mode": "ro"}, {"source": "/c", "target": "/d"}],
            "resource_limits": {"memory": 1, "nanoCPUs": 2.0}, "start_container": true
        }))
        .unwrap();
        assert_eq!(p.compute_device, ComputeDevice::Cuda);
        assert!(p.mount_points[0].read_only && !p.mount_points[1].read_only);
        assert_eq!((p.memory, p.nano_cpus), (Some(1), Some(2)));
    }

    #[test]
    fn create_errors_name_their_field() {
        let text = err(CreatePayload::parse(&json!({
            "name": "app", "image_id": "img", "compute_device": "tpu",
            "environment_variables": ["A=1", 2], "mount_points": [{"source": "/a"}],
            "restart_policy": "sometimes", "network_mode": null,
            "resource_limits": {"memory": "1g"}
        })));
        for needle in [
            "6 validation errors for CreateExAppPayload",
            "\ncompute_device\n",
            "\nenvironment_variables.1\n",
            "\nmount_points.0.target\n  Field required",
            "\nrestart_policy\n",
            "\nnetwork_mode\n",
            "\nresource_limits.memory\n",
        ] {
            assert!(text.contains(needle), "{needle:?} not in {text}");
        }
        assert!(err(CreatePayload::parse(&json!({"name": "a"}))).contains("\nimage_id\n"));
    }

    #[test]
    fn lax_booleans() {
        for (v, want) in [
            (json!(true), true),
            (json!(0), false),
            (json!("yes"), true),
            (json!("OFF"), false),
            (json!(1.0), true),
        ] {
            let p = RemovePayload::parse(&json!({"name": "a", "remove_data": v})).unwrap();
            assert_eq!(p.remove_data, want);
        }
        let text = err(RemovePayload::parse(
            &json!({"name": "a", "remove_data": "maybe"}),
        ));
        assert!(text.contains("bool_parsing"), "{text}");
        let text = err(RemovePayload::parse(
            &json!({"name": "a", "remove_data": null}),
        ));
        assert!(text.contains("bool_type"), "{text}");
    }

    #[test]
    fn certificates_and_image_payloads() {
        let p =
            CertificatesPayload::parse(&json!({"name": "a", "system_certs_bundle": null})).unwrap();
        assert!(p.system_certs_bundle.is_none() && p.install_frp_certs);
        assert!(
            err(ImageRemovePayload::parse(&json!({"image_ref": ""}))).contains("string_too_short")
        );
        assert!(
            err(ImageRemovePayload::parse(&json!({"image_ref": "a/../b"})))
                .contains("\nimage_ref\n  Value error")
        );
        assert_eq!(
            ImageRemovePayload::parse(&json!({"image_ref": "repo/img:1"}))
                .unwrap()
                .image_ref,
            "repo/img:1"
        );
    }
}
