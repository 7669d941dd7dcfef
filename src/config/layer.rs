//! One source of raw setting texts (the environment or the YAML file) and where each came from,
//! so a validation error can name the variable or the file and key the admin has to edit.

use super::error::{ConfigError, HIDDEN};
use super::keys::Key;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    Env,
    Yaml(PathBuf),
}

/// The texts one source sets, before validation.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    origin: Origin,
    values: BTreeMap<Key, String>,
}

impl Layer {
    pub(crate) fn new(origin: Origin) -> Self {
        Layer {
            origin,
            values: BTreeMap::new(),
        }
    }

    pub(crate) fn set(&mut self, key: Key, text: String) {
        self.values.insert(key, text);
    }

    pub(crate) fn get(&self, key: Key) -> Option<Raw<'_>> {
        self.values.get(&key).map(|text| Raw {
            key,
            text,
            origin: &self.origin,
        })
    }
}

/// A setting's text as one source gave it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Raw<'a> {
    pub key: Key,
    pub text: &'a str,
    pub origin: &'a Origin,
}

impl Raw<'_> {
    /// An error about this value, named the way its source spells it.
    pub(crate) fn error(&self, problem: impl Into<String>) -> ConfigError {
        let value = if self.key.is_secret() {
            HIDDEN.to_string()
        } else {
            self.text.to_string()
        };
        named_error(self.key, self.origin, Some(value), problem)
    }
}

/// An error about `key` in `origin`, with `value` already masked by the caller if needed.
pub(crate) fn named_error(
    key: Key,
    origin: &Origin,
    value: Option<String>,
    problem: impl Into<String>,
) -> ConfigError {
    match origin {
        Origin::Env => ConfigError::new(key.env_name(), value, problem),
        Origin::Yaml(file) => {
            ConfigError::new(key.yaml_name(), value, problem).in_file(Some(file.clone()))
        }
    }
}
