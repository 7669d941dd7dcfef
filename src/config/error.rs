//! Configuration problems, worded so an admin can fix them without reading code: each one names
//! the setting (and the YAML file it came from), the offending value, and what was expected.
//! Owns the rule that the shared key's value never appears in any message.

use std::fmt;
use std::path::PathBuf;

/// What an error message shows in place of the shared key.
pub const HIDDEN: &str = "<hidden>";

/// One problem with one setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The YAML file the value came from; `None` for environment variables and CLI arguments.
    pub file: Option<PathBuf>,
    /// The environment variable, YAML key or argument at fault; empty when the file itself is.
    pub setting: String,
    /// The offending value as shown to the admin (`<hidden>` for the shared key); `None` when
    /// there is no value to show (unset, or not a scalar).
    pub value: Option<String>,
    /// What is wrong and what was expected.
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(
        setting: impl Into<String>,
        value: Option<String>,
        problem: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: None,
            setting: setting.into(),
            value,
            problem: problem.into(),
        }
    }

    pub(crate) fn in_file(mut self, file: Option<PathBuf>) -> Self {
        self.file = file;
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = String::new();
        if let Some(file) = &self.file {
            line.push_str(&file.display().to_string());
            line.push_str(": ");
        }
        line.push_str(&self.setting);
        if let Some(value) = &self.value {
            line.push('=');
            line.push_str(&printable(value));
        }
        if !self.setting.is_empty() || self.value.is_some() {
            line.push_str(": ");
        }
        line.push_str(&self.problem);
        // One problem, one line: a multi-line value or library message must not break the list.
        f.write_str(&line.replace(['\n', '\r'], " "))
    }
}

/// Values with blanks or control characters are quoted so that `HP_X= 3` and `HP_X=3` differ.
fn printable(value: &str) -> String {
    if value == HIDDEN {
        return value.to_string();
    }
    if value.is_empty() || value.chars().any(|c| !c.is_ascii_graphic()) {
        format!("{value:?}")
    } else {
        value.to_string()
    }
}

/// Every problem found while loading, reported together so one start attempt shows them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_error_names_variable_value_and_expectation() {
        let e = ConfigError::new(
            "HP_SESSION_LIFETIME",
            Some("11".into()),
            "expected a number of seconds from 0 to 10",
        );
        assert_eq!(
            e.to_string(),
            "HP_SESSION_LIFETIME=11: expected a number of seconds from 0 to 10"
        );
    }

    #[test]
    fn yaml_error_names_file_and_key() {
        let e = ConfigError::new("log_level", Some("verbose".into()), "expected debug")
            .in_file(Some(PathBuf::from("/etc/harp.yaml")));
        assert_eq!(
            e.to_string(),
            "/etc/harp.yaml: log_level=verbose: expected debug"
        );
    }

    #[test]
    fn blank_and_multiline_values_are_quoted_on_one_line() {
        let e = ConfigError::new("HP_X", Some(" 3\n".into()), "bad");
        assert_eq!(e.to_string(), r#"HP_X=" 3\n": bad"#);
        let e = ConfigError::new("", None, "line one\nline two");
        assert_eq!(e.to_string(), "line one line two");
    }

    #[test]
    fn errors_render_one_per_line() {
        let all = ConfigErrors(vec![
            ConfigError::new("A", None, "x"),
            ConfigError::new("B", None, "y"),
        ]);
        assert_eq!(all.to_string(), "A: x\nB: y");
    }
}
