//! Docker object names derived from AppAPI's payloads, and the grammars they must match
//! before they go into a Docker API URL (HaRP quirk Q16: HaRP pasted them in unchecked, so
//! `name: "../../x"` could reach other endpoints of the engine).

use regex::Regex;
use std::sync::LazyLock;

/// Docker's grammar for container and volume names is `[a-zA-Z0-9][a-zA-Z0-9_.-]*`
/// (`RestrictedNamePattern`). Derived names start with `nc_app_`, so each payload field pasted
/// into one may contain the rest of that grammar.
static NAME_PART: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_.-]*$").expect("static name grammar compiles"));

/// distribution/reference's grammar (`[domain/]path[:tag][@digest]`), or an image ID.
static IMAGE_REF: LazyLock<Regex> = LazyLock::new(|| {
    let domain_component = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    let domain =
        format!(r"(?:{domain_component}(?:\.{domain_component})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?");
    let path_component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
    let tag = r"[\w][\w.-]{0,127}";
    let digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
    let reference =
        format!(r"^(?:{domain}/)?{path_component}(?:/{path_component})*(?::{tag})?(?:@{digest})?$");
    Regex::new(&reference).expect("static reference grammar compiles")
});

static IMAGE_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^sha256:[a-f0-9]{64}$").expect("static id grammar compiles"));

/// Docker refuses repository names longer than this.
const MAX_REFERENCE_NAME: usize = 255;

/// The container and volume an ExApp payload designates (§6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExAppNames {
    /// `nc_app_[<instance_id>_]<name>[_<role_suffix>]`
    pub container: String,
    /// `nc_app_[<instance_id>_]<name>_data`; roles share one volume.
    pub volume: String,
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
        ExAppNames {
            container,
            volume: format!("{base}_data"),
        }
    }
}

/// Whether a payload field may be pasted into a container or volume name.
pub fn is_name_part(value: &str) -> bool {
    NAME_PART.is_match(value)
}

/// Whether `image_ref` is an image reference or ID Docker could resolve.
pub fn is_image_ref(image_ref: &str) -> bool {
    if IMAGE_ID.is_match(image_ref) {
        return true;
    }
    let name_len = image_ref
        .split(['@', ':'])
        .next()
        .map(str::len)
        .unwrap_or(0);
    if name_len > MAX_REFERENCE_NAME || !IMAGE_REF.is_match(image_ref) {
        return false;
    }
    // Docker reads the first component as a registry only if it looks like a host name
    // (`.`, `:`, `[` or `localhost`); otherwise it is part of the repository, which must be
    // lower-case.
    match image_ref.split_once('/') {
        Some((first, _)) if !first.contains(['.', ':', '[']) && first != "localhost" => {
            !first.bytes().any(|b| b.is_ascii_uppercase())
        }
        _ => true,
    }
}

/// Python's `urllib.parse.quote(s, safe="")`: everything but `A-Za-z0-9_.-~` is
/// percent-encoded, so `repo/img:1` becomes `repo%2Fimg%3A1` (HaRP's `/images/<ref>` paths).
pub fn quote_all(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_harp() {
        let n = ExAppNames::derive("app", "", "");
        assert_eq!(n.container, "nc_app_app");
        assert_eq!(n.volume, "nc_app_app_data");
        let n = ExAppNames::derive("app", "i1", "rp");
        assert_eq!(n.container, "nc_app_i1_app_rp");
        assert_eq!(n.volume, "nc_app_i1_app_data");
    }

    #[test]
    fn name_grammar() {
        assert!(is_name_part(""));
        assert!(is_name_part("a.b-c_d"));
        for bad in ["../x", "a b", "a?b", "a%2F", "é"] {
            assert!(!is_name_part(bad), "{bad}");
        }
    }

    #[test]
    fn image_reference_grammar() {
        for good in [
            "busybox",
            "repo/img:1",
            "ghcr.io/nextcloud/app-skeleton-python:latest",
            "localhost:5000/a/b:v1.0",
            "registry.example/nextcloud/app:release-cpu",
            "img@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "0123456789ab",
            "[::1]:5000/x:y",
        ] {
            assert!(is_image_ref(good), "{good}");
        }
        for bad in [
            "",
            "Upper/case",
            "a/../b",
            "a b",
            "img:",
            "img:tag/extra",
            "x?y",
            "/abs",
            "img@sha256:short",
        ] {
            assert!(!is_image_ref(bad), "{bad}");
        }
        assert!(!is_image_ref(&"a".repeat(256)));
    }

    #[test]
    fn quoting_matches_python() {
        assert_eq!(quote_all("repo/img:1"), "repo%2Fimg%3A1");
        assert_eq!(quote_all("a@sha256:ab"), "a%40sha256%3Aab");
        assert_eq!(quote_all("x_y.z-~"), "x_y.z-~");
    }
}
