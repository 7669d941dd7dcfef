//! The one truth of configuration. Owns reading the sources — built-in defaults < the YAML file
//! (`--config`, else `HARP_CONFIG`) < HaRP's HP_* environment variables — and validating them into
//! one `Settings`. No other module may read `std::env`; all of them read `Settings`.
//!
//! Invalid settings never start the server: `load` returns every problem at once, each naming
//! the variable (or YAML file and key), the value (never the shared key's) and what was expected.

pub mod settings;

mod describe;
mod env;
mod error;
mod keys;
mod layer;
mod net;
mod resolve;
mod shared_key;
mod time;
mod validate;
mod yaml;

#[cfg(test)]
mod test_support;

pub use env::{
    ignored_vars, EnvLookup, CONFIG_PATH_VAR, IGNORED_ENV_VARS, TEST_NEGATIVE_CACHE_TTL_VAR,
};
pub use error::{ConfigError, ConfigErrors};
pub use settings::{HostAlias, IpNet, K8sSettings, LogLevel, Settings, NEGATIVE_CACHE_TTL};
/// Whether `text` is a positive Kubernetes quantity (`10Gi`, `500m`): the Kubernetes backend
/// checks limits AppAPI sends in Kubernetes units with the same rule as the settings.
pub(crate) use validate::is_positive_quantity;

use std::path::{Path, PathBuf};

/// Loads and validates the configuration. `args_config` is the `--config` argument; without it
/// the `HARP_CONFIG` variable may name the YAML file, and without either only defaults and the
/// environment apply. `env` looks up one environment variable.
pub fn load(args_config: Option<&Path>, env: EnvLookup<'_>) -> Result<Settings, ConfigErrors> {
    let mut errors = Vec::new();
    let config_file = match args_config {
        Some(path) => Some(("--config", path.to_path_buf())),
        None => env(CONFIG_PATH_VAR)
            .filter(|p| !p.is_empty())
            .map(|p| (CONFIG_PATH_VAR, PathBuf::from(p))),
    };
    let yaml = config_file.and_then(|(named_by, path)| match yaml::read(&path) {
        Ok((layer, problems)) => {
            errors.extend(problems);
            Some(layer)
        }
        Err(problem) => {
            errors.push(ConfigError::new(
                named_by,
                Some(path.display().to_string()),
                problem,
            ));
            None
        }
    });
    let negative_cache_ttl = env(TEST_NEGATIVE_CACHE_TTL_VAR)
        .filter(|text| !text.is_empty())
        .and_then(|text| match validate::timeout(&text) {
            Ok(ttl) => Some(ttl),
            Err(problem) => {
                errors.push(ConfigError::new(
                    TEST_NEGATIVE_CACHE_TTL_VAR,
                    Some(text),
                    problem,
                ));
                None
            }
        });
    let in_cluster = env::in_cluster_api_server(env);
    let env = env::read(env);
    match resolve::settings(&env, yaml.as_ref(), in_cluster) {
        Ok(mut settings) if errors.is_empty() => {
            if let Some(ttl) = negative_cache_ttl {
                settings.negative_cache_ttl = ttl;
            }
            Ok(settings)
        }
        Ok(_) => Err(ConfigErrors(errors)),
        Err(problems) => {
            errors.extend(problems);
            Err(ConfigErrors(errors))
        }
    }
}

/// [`load`] with the real process environment.
pub fn load_from_process_env(config_arg: Option<&Path>) -> Result<Settings, ConfigErrors> {
    load(config_arg, &env::process_env)
}

/// Every setting as (environment variable, YAML key), in `Settings` order; tests/docs.rs checks
/// that docs/settings.md documents each one.
pub fn setting_names() -> impl Iterator<Item = (&'static str, &'static str)> {
    keys::Key::ALL
        .into_iter()
        .map(|key| (key.env_name(), key.yaml_name()))
}

/// [`ignored_vars`] with the real process environment, for `harp check-config`.
pub fn ignored_vars_in_process_env() -> Vec<&'static str> {
    ignored_vars(&env::process_env)
}

#[cfg(test)]
mod tests;
