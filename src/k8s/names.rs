//! The names of an ExApp's Kubernetes objects, derived as HaRP derives them so harp finds the
//! Deployments, Services and volumes HaRP made (and the other way round).

/// Kubernetes' limit for object names that are also DNS labels.
pub const MAX_NAME: usize = 63;

/// HaRP's `_sanitize_k8s_name`: lower case, `_` and every other character outside
/// `[a-z0-9-]` become `-`, runs of `-` collapse, `-` trimmed at both ends, `exapp` when nothing
/// is left, cut to 63 and trimmed again.
pub fn sanitize(raw: &str) -> String {
    let mut name = String::with_capacity(raw.len());
    for c in raw.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && name.ends_with('-')) {
            name.push(c);
        }
    }
    let name = name.trim_matches('-');
    if name.is_empty() {
        return "exapp".to_string();
    }
    let mut name = name.to_string();
    if name.len() > MAX_NAME {
        name.truncate(MAX_NAME);
        name.truncate(name.trim_end_matches('-').len());
    }
    name
}

/// The names one request's objects get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExAppNames {
    /// The Deployment (and Service) of this role: `nc-app-<app>[-<role>]`.
    pub deployment: String,
    /// The volume every role of the app shares: `nc-app-<app>-data`.
    pub pvc: String,
    /// The app's name without the role, the `app.kubernetes.io/part-of` label.
    pub base: String,
    /// Where the volume is mounted: AppAPI's `APP_PERSISTENT_STORAGE`, `/nc_app_<app>_data`
    /// with the app id as AppAPI spells it.
    pub mount_path: String,
    /// The sanitised role, the `app.kubernetes.io/role` label.
    pub role: Option<String>,
}

impl ExAppNames {
    pub fn derive(name: &str, instance_id: &str, role_suffix: &str) -> ExAppNames {
        let base = if instance_id.is_empty() {
            format!("nc_app_{name}")
        } else {
            format!("nc_app_{instance_id}_{name}")
        };
        let container = if role_suffix.is_empty() {
            base.clone()
        } else {
            format!("{base}_{role_suffix}")
        };
        let volume = format!("{base}_data");
        ExAppNames {
            deployment: sanitize(&container),
            pvc: sanitize(&volume),
            base: sanitize(&base),
            mount_path: format!("/{volume}"),
            role: (!role_suffix.is_empty()).then(|| sanitize(role_suffix)),
        }
    }

    /// The names for routing: the app alone, no instance or role.
    pub fn of_app(app_id: &str) -> ExAppNames {
        ExAppNames::derive(app_id, "", "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_like_harp() {
        assert_eq!(sanitize("nc_app_My.App"), "nc-app-my-app");
        assert_eq!(sanitize("__a__b__"), "a-b");
        assert_eq!(sanitize("___"), "exapp");
        assert_eq!(sanitize("ÄB"), "b");
        let long = format!("nc_app_{}_x", "a".repeat(60));
        let s = sanitize(&long);
        assert_eq!(s.len(), 63);
        assert!(!s.ends_with('-'));
        // A cut that lands on a dash is trimmed.
        assert_eq!(sanitize(&format!("{}_b", "a".repeat(62))), "a".repeat(62));
    }

    #[test]
    fn names_of_roles_share_the_volume() {
        let main = ExAppNames::derive("llm2", "", "");
        let rp = ExAppNames::derive("llm2", "", "rp");
        assert_eq!(main.deployment, "nc-app-llm2");
        assert_eq!(rp.deployment, "nc-app-llm2-rp");
        assert_eq!(main.pvc, "nc-app-llm2-data");
        assert_eq!(rp.pvc, main.pvc);
        assert_eq!(rp.base, "nc-app-llm2");
        assert_eq!(rp.role.as_deref(), Some("rp"));
        assert_eq!(main.mount_path, "/nc_app_llm2_data");
        let inst = ExAppNames::derive("My_App", "inst1", "");
        assert_eq!(inst.deployment, "nc-app-inst1-my-app");
        assert_eq!(inst.mount_path, "/nc_app_inst1_My_App_data");
    }
}
