//! Request bodies checked the way HaRP's pydantic v2 models check them in lax mode: strings are
//! never coerced from numbers, booleans accept `0`/`1` and `"true"`/`"no"` style strings, extra
//! fields are ignored, and every error is collected. Errors read like pydantic's so AppAPI's logs
//! look the same (`1 validation error for ExAppName\nname\n  Field required [type=missing]`).
//! A leaf: used by the Docker and Kubernetes backends, depends on nothing of ours.

use serde_json::{Map, Value};

/// A failed validation: the text after `Payload validation error: `.
#[derive(Debug)]
pub struct Invalid {
    model: &'static str,
    errors: Vec<FieldError>,
}

#[derive(Debug)]
pub(crate) struct FieldError {
    loc: String,
    msg: String,
    kind: &'static str,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.errors.len();
        let plural = if n == 1 { "" } else { "s" };
        write!(f, "{n} validation error{plural} for {}", self.model)?;
        for e in &self.errors {
            if !e.loc.is_empty() {
                write!(f, "\n{}", e.loc)?;
            }
            write!(f, "\n  {} [type={}]", e.msg, e.kind)?;
        }
        Ok(())
    }
}

/// Reads the fields of one JSON object, collecting every error (pydantic reports all of them).
pub(crate) struct Fields<'a> {
    model: &'static str,
    pub(crate) obj: &'a Map<String, Value>,
    pub(crate) errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub(crate) fn of(model: &'static str, value: &'a Value) -> Result<Fields<'a>, Invalid> {
        match value.as_object() {
            Some(obj) => Ok(Fields {
                model,
                obj,
                errors: Vec::new(),
            }),
            None => Err(Invalid {
                model,
                errors: vec![FieldError {
                    loc: String::new(),
                    msg: format!("Input should be a valid dictionary or instance of {model}"),
                    kind: "model_type",
                }],
            }),
        }
    }

    pub(crate) fn error(
        &mut self,
        loc: impl Into<String>,
        msg: impl Into<String>,
        kind: &'static str,
    ) {
        self.errors.push(FieldError {
            loc: loc.into(),
            msg: msg.into(),
            kind,
        });
    }

    pub(crate) fn string_at(&mut self, loc: &str, value: &Value) -> Option<String> {
        match value.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.error(loc, "Input should be a valid string", "string_type");
                None
            }
        }
    }

    pub(crate) fn required_str(&mut self, key: &str) -> String {
        match self.obj.get(key) {
            Some(v) => self.string_at(key, v).unwrap_or_default(),
            None => {
                self.error(key, "Field required", "missing");
                String::new()
            }
        }
    }

    pub(crate) fn str_or(&mut self, key: &str, default: &str) -> String {
        match self.obj.get(key) {
            Some(v) => self.string_at(key, v).unwrap_or_default(),
            None => default.to_string(),
        }
    }

    pub(crate) fn optional_str(&mut self, key: &str) -> Option<String> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => self.string_at(key, v),
        }
    }

    pub(crate) fn bool_or(&mut self, key: &str, default: bool) -> bool {
        let Some(value) = self.obj.get(key) else {
            return default;
        };
        match lax_bool(value) {
            Ok(b) => b,
            Err((msg, kind)) => {
                self.error(key, msg, kind);
                default
            }
        }
    }

    pub(crate) fn str_list(&mut self, key: &str) -> Vec<String> {
        match self.obj.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| self.string_at(&format!("{key}.{i}"), v))
                .collect(),
            Some(_) => {
                self.error(key, "Input should be a valid list", "list_type");
                Vec::new()
            }
        }
    }

    pub(crate) fn finish<T>(self, value: T) -> Result<T, Invalid> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(Invalid {
                model: self.model,
                errors: self.errors,
            })
        }
    }
}

/// pydantic's lax bool: true/false, 0/1, and a few words, case-insensitively.
pub(crate) fn lax_bool(value: &Value) -> Result<bool, (&'static str, &'static str)> {
    const UNREADABLE: (&str, &str) = (
        "Input should be a valid boolean, unable to interpret input",
        "bool_parsing",
    );
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => Ok(false),
            Some(1.0) => Ok(true),
            _ => Err(UNREADABLE),
        },
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "0" | "off" | "f" | "false" | "n" | "no" => Ok(false),
            "1" | "on" | "t" | "true" | "y" | "yes" => Ok(true),
            _ => Err(UNREADABLE),
        },
        _ => Err(("Input should be a valid boolean", "bool_type")),
    }
}

/// Numeric bounds as pydantic words them (`ge`, `le`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub min: f64,
    pub max: f64,
}

impl Fields<'_> {
    /// pydantic's lax int: an integer, a float without fraction, or a string holding one.
    fn int_at(&mut self, loc: &str, value: &Value) -> Option<i64> {
        let parsed = match value {
            Value::Number(n) => n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|x| x.fract() == 0.0 && x.abs() < 9.0e18)
                    .map(|x| x as i64)
            }),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        if parsed.is_none() {
            let (msg, kind) = match value {
                Value::Number(_) => (
                    "Input should be a valid integer, got a number with a fractional part",
                    "int_from_float",
                ),
                Value::String(_) => (
                    "Input should be a valid integer, unable to parse string as an integer",
                    "int_parsing",
                ),
                _ => ("Input should be a valid integer", "int_type"),
            };
            self.error(loc, msg, kind);
        }
        parsed
    }

    /// pydantic's lax float: a number or a string holding one.
    fn float_at(&mut self, loc: &str, value: &Value) -> Option<f64> {
        let parsed = match value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
            _ => None,
        };
        if parsed.is_none() {
            self.error(loc, "Input should be a valid number", "float_type");
        }
        parsed
    }

    fn check_bounds(&mut self, loc: &str, n: f64, bounds: Bounds) -> bool {
        if n < bounds.min {
            self.error(
                loc,
                format!(
                    "Input should be greater than or equal to {}",
                    python_number(bounds.min)
                ),
                "greater_than_equal",
            );
            false
        } else if n > bounds.max {
            self.error(
                loc,
                format!(
                    "Input should be less than or equal to {}",
                    python_number(bounds.max)
                ),
                "less_than_equal",
            );
            false
        } else {
            true
        }
    }

    /// A required integer within `bounds`.
    pub(crate) fn required_int(&mut self, key: &str, bounds: Bounds) -> Option<i64> {
        match self.obj.get(key) {
            Some(v) => self.int_in(key, v, bounds),
            None => {
                self.error(key, "Field required", "missing");
                None
            }
        }
    }

    /// An optional integer within `bounds` (`null` is absent).
    pub(crate) fn optional_int(&mut self, key: &str, bounds: Bounds) -> Option<i64> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => self.int_in(key, v, bounds),
        }
    }

    fn int_in(&mut self, key: &str, value: &Value, bounds: Bounds) -> Option<i64> {
        let n = self.int_at(key, value)?;
        self.check_bounds(key, n as f64, bounds).then_some(n)
    }

    /// A float within `bounds`, `default` when absent.
    pub(crate) fn float_or(&mut self, key: &str, default: f64, bounds: Bounds) -> f64 {
        let Some(value) = self.obj.get(key) else {
            return default;
        };
        match self.float_at(key, value) {
            Some(x) if self.check_bounds(key, x, bounds) => x,
            _ => default,
        }
    }

    /// One of `choices` (pydantic's `Literal`), `default` when absent; `null` counts as
    /// absent only when `nullable`.
    pub(crate) fn literal_or(
        &mut self,
        key: &str,
        choices: &[&'static str],
        default: Option<&'static str>,
        nullable: bool,
    ) -> Option<&'static str> {
        match self.obj.get(key) {
            None => default,
            Some(Value::Null) if nullable => None,
            Some(value) => {
                let found = value
                    .as_str()
                    .and_then(|s| choices.iter().copied().find(|c| *c == s));
                if found.is_none() {
                    self.error(
                        key,
                        format!("Input should be {}", python_choices(choices)),
                        "literal_error",
                    );
                }
                found.or(default)
            }
        }
    }

    /// A `dict[str, str]`, empty when absent.
    pub(crate) fn str_map(&mut self, key: &str) -> Vec<(String, String)> {
        match self.obj.get(key) {
            None => Vec::new(),
            Some(Value::Object(map)) => map
                .iter()
                .filter_map(|(k, v)| {
                    self.string_at(&format!("{key}.{k}"), v)
                        .map(|v| (k.clone(), v))
                })
                .collect(),
            Some(_) => {
                self.error(key, "Input should be a valid dictionary", "dict_type");
                Vec::new()
            }
        }
    }
}

/// `1`, `0.1`, `65535` as Python prints the bound.
fn python_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// `'a', 'b' or 'c'`, as pydantic lists a Literal's choices.
fn python_choices(choices: &[&str]) -> String {
    let quoted: Vec<String> = choices.iter().map(|c| format!("'{c}'")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}
