//! Typed configuration, read once per cold start from environment variables.
//!
//! Setting names keep the v1 convention of nesting with `__` (for example
//! `AUTH__JWT_SECRET_KEY`). Every reader takes a lookup function so tests can
//! pass a map instead of mutating the process environment.

use std::fmt;
use std::str::FromStr;

/// A configuration problem, reported as one line naming the setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration error: {} {}", self.setting, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// Looks a setting up by name.
type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Reads settings through a lookup function (the process environment in production).
pub struct Settings<'a> {
    lookup: Lookup<'a>,
}

impl Settings<'static> {
    pub fn from_env() -> Self {
        Self::new(|name| std::env::var(name).ok())
    }
}

impl<'a> Settings<'a> {
    pub fn new(lookup: impl Fn(&str) -> Option<String> + 'a) -> Self {
        Self {
            lookup: Box::new(lookup),
        }
    }

    /// A trimmed, non-empty value, or `None`.
    pub fn optional(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.optional(name).ok_or_else(|| ConfigError {
            setting: name.to_string(),
            problem: "is required but not set".to_string(),
        })
    }

    pub fn parsed_or<T: FromStr>(&self, name: &str, default: T) -> Result<T, ConfigError> {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|_| ConfigError {
                setting: name.to_string(),
                problem: format!("has an invalid value {raw:?}"),
            }),
        }
    }

    /// Like [`Settings::parsed_or`], and the value must lie in `range`.
    pub fn bounded_or<T>(
        &self,
        name: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let value = self.parsed_or(name, default)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError {
                setting: name.to_string(),
                problem: format!(
                    "must be between {} and {}, got {value}",
                    range.start(),
                    range.end()
                ),
            })
        }
    }

    pub fn flag_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
            Some(v) => Err(ConfigError {
                setting: name.to_string(),
                problem: format!("must be true or false, got {v:?}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Settings<'static> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::new(move |k| map.get(k).cloned())
    }

    #[test]
    fn a_missing_required_setting_is_named_in_the_error() {
        let err = settings(&[]).required("TASKS_TABLE").unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration error: TASKS_TABLE is required but not set"
        );
    }

    #[test]
    fn blank_values_count_as_unset() {
        assert_eq!(settings(&[("X", "  ")]).optional("X"), None);
    }

    #[test]
    fn out_of_range_numbers_are_refused() {
        let s = settings(&[("N", "0")]);
        assert!(s.bounded_or("N", 5u32, 1..=10).is_err());
        assert_eq!(settings(&[]).bounded_or("N", 5u32, 1..=10), Ok(5));
    }

    #[test]
    fn flags_accept_the_usual_spellings_and_refuse_others() {
        assert_eq!(settings(&[("F", "TRUE")]).flag_or("F", false), Ok(true));
        assert_eq!(settings(&[("F", "off")]).flag_or("F", true), Ok(false));
        assert!(settings(&[("F", "maybe")]).flag_or("F", true).is_err());
    }
}
