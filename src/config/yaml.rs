//! The YAML file (`--config` or `HARP_CONFIG)`: a flat mapping whose keys are the HP_* variable
//! names in lower snake case without the `HP_` prefix. Turns each value into the text the
//! variable would hold, so both sources share one validation. Unknown keys are errors: a typo
//! must not silently leave a default in place.

use super::error::{ConfigError, HIDDEN};
use super::keys::{Key, YamlType};
use super::layer::{named_error, Layer, Origin};
use serde_yaml::Value;
use std::path::Path;

/// Reads and translates the file. `Err` means the file itself could not be read (the caller
/// knows whether `--config` or `HARP_CONFIG` named it); problems inside the file come back with
/// the layer of everything that was usable, so they are reported together with the rest.
pub(crate) fn read(path: &Path) -> Result<(Layer, Vec<ConfigError>), String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read the config file: {e}"))?;
    Ok(parse(&text, path))
}

pub(crate) fn parse(text: &str, path: &Path) -> (Layer, Vec<ConfigError>) {
    let origin = Origin::Yaml(path.to_path_buf());
    let mut layer = Layer::new(origin.clone());
    let mut errors = Vec::new();
    let file_error =
        |problem: String| ConfigError::new("", None, problem).in_file(Some(path.to_path_buf()));

    let mapping = match serde_yaml::from_str::<Value>(text) {
        // A file of comments only is an empty configuration, not an error.
        Ok(Value::Null) => return (layer, errors),
        Ok(Value::Mapping(mapping)) => mapping,
        Ok(_) => {
            errors.push(file_error(
                "expected a mapping of setting: value at the top level".to_string(),
            ));
            return (layer, errors);
        }
        Err(e) => {
            errors.push(file_error(format!("invalid YAML: {e}")));
            return (layer, errors);
        }
    };

    for (name, value) in mapping {
        let Some(key) = name.as_str().and_then(Key::from_yaml_name) else {
            errors.push(unknown_key(&name).in_file(Some(path.to_path_buf())));
            continue;
        };
        match to_text(key, value) {
            Ok(Some(text)) => layer.set(key, text),
            Ok(None) => {}
            Err((shown, problem)) => errors.push(named_error(key, &origin, shown, problem)),
        }
    }
    (layer, errors)
}

fn unknown_key(name: &Value) -> ConfigError {
    let Some(name) = name.as_str() else {
        return ConfigError::new("", None, "every key must be a setting name (a string)");
    };
    // People paste variable names; point them at the key they meant.
    let lower = name.to_ascii_lowercase();
    let guess = Key::from_yaml_name(lower.strip_prefix("hp_").unwrap_or(&lower));
    let problem = match guess {
        Some(key) => format!("unknown key; did you mean {}?", key.yaml_name()),
        None => "unknown key; see conf/harp.yaml for the valid keys".to_string(),
    };
    ConfigError::new(name, None, problem)
}

/// The value as the variable's text; `Ok(None)` when it means "unset" (null or empty string).
/// On error: the value to show (never the key's) and the problem.
fn to_text(key: Key, value: Value) -> Result<Option<String>, (Option<String>, String)> {
    let shown = |v: &Value| match (key, scalar(v)) {
        (key, Some(_)) if key.is_secret() => Some(HIDDEN.to_string()),
        (_, s) => s,
    };
    let fail = |v: &Value, expected: &str| {
        Err((shown(v), format!("expected {expected}, not {}", kind(v))))
    };
    let text = match (key.yaml_type(), &value) {
        (_, Value::Null) => return Ok(None),
        (YamlType::Text | YamlType::Number | YamlType::List, Value::String(s)) => s.clone(),
        (YamlType::Text, v) => return fail(v, "a string"),
        (YamlType::Number, Value::Number(n)) => n.to_string(),
        (YamlType::Number, v) => return fail(v, "a number"),
        (YamlType::Bool, Value::Bool(b)) => b.to_string(),
        (YamlType::Bool, v) => return fail(v, "true or false"),
        (YamlType::List, Value::Sequence(items)) => {
            let mut entries = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => entries.push(s.as_str()),
                    v => return fail(v, "a list of IP addresses or CIDR networks as strings"),
                }
            }
            entries.join(",")
        }
        (YamlType::List, v) => return fail(v, "a list of IP addresses or CIDR networks"),
    };
    Ok(Some(text).filter(|t| !t.is_empty()))
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Layer {
        let (layer, errors) = parse(text, Path::new("/etc/harp.yaml"));
        assert!(errors.is_empty(), "{errors:?}");
        layer
    }

    fn parse_errors(text: &str) -> Vec<String> {
        parse(text, Path::new("/etc/harp.yaml"))
            .1
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn text(layer: &Layer, key: Key) -> Option<&str> {
        layer.get(key).map(|raw| raw.text)
    }

    #[test]
    fn empty_and_comment_only_files_set_nothing() {
        for text in ["", "# only a comment\n", "---\n"] {
            let layer = parse_ok(text);
            assert!(Key::ALL.iter().all(|k| layer.get(*k).is_none()));
        }
    }

    #[test]
    fn values_become_variable_texts() {
        let layer = parse_ok(
            "session_lifetime: 2.5\nblacklist_count: 3\ntimeout_server: 500\ntimeout_client: 1m\n\
             frp_disable_tls: true\ntrusted_proxy_ips: [\"10.0.0.0/8\", \"::1\"]\nlog_level: info\n\
             certs_dir:\n",
        );
        assert_eq!(text(&layer, Key::SessionLifetime), Some("2.5"));
        assert_eq!(text(&layer, Key::BlacklistCount), Some("3"));
        assert_eq!(text(&layer, Key::TimeoutServer), Some("500"));
        assert_eq!(text(&layer, Key::TimeoutClient), Some("1m"));
        assert_eq!(text(&layer, Key::FrpDisableTls), Some("true"));
        assert_eq!(text(&layer, Key::TrustedProxyIps), Some("10.0.0.0/8,::1"));
        assert_eq!(text(&layer, Key::LogLevel), Some("info"));
        assert_eq!(text(&layer, Key::CertsDir), None);
    }

    #[test]
    fn trusted_proxies_as_comma_string() {
        let layer = parse_ok("trusted_proxy_ips: 10.0.0.0/8, 192.168.0.1\n");
        assert_eq!(
            text(&layer, Key::TrustedProxyIps),
            Some("10.0.0.0/8, 192.168.0.1")
        );
    }

    #[test]
    fn unknown_keys_are_named_all_at_once() {
        let errors = parse_errors("colour: blue\nHP_LOG_LEVEL: debug\nlog_level: info\n");
        assert_eq!(
            errors,
            vec![
                "/etc/harp.yaml: colour: unknown key; see conf/harp.yaml for the valid keys",
                "/etc/harp.yaml: HP_LOG_LEVEL: unknown key; did you mean log_level?",
            ]
        );
    }

    #[test]
    fn wrong_types_are_errors_and_hide_the_key() {
        let errors = parse_errors("frp_disable_tls: \"yes\"\nshared_key: 12345\nthreads: [1]\n");
        assert_eq!(
            errors,
            vec![
                "/etc/harp.yaml: frp_disable_tls=yes: expected true or false, not a string",
                "/etc/harp.yaml: shared_key=<hidden>: expected a string, not a number",
                "/etc/harp.yaml: threads: expected a number, not a list",
            ]
        );
    }

    #[test]
    fn broken_files_are_one_error() {
        assert_eq!(parse_errors("- a\n- b\n").len(), 1);
        let errors = parse_errors("a: [\n");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("/etc/harp.yaml: invalid YAML"),
            "{errors:?}"
        );
    }
}
