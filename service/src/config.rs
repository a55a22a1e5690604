//! Reading a daemon's TOML configuration file, with the one error type every
//! daemon reports the same way: one line naming the file (and the line) or the
//! field, and exit status 64 ([`EXIT_BAD_CONFIG`]).

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Exit status for a bad configuration (`EX_USAGE`); systemd units carry
/// `RestartPreventExitStatus=64` so a bad config is not restarted in a loop.
pub const EXIT_BAD_CONFIG: u8 = 64;

/// A configuration problem, phrased for a one-line log or stderr message.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config field `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl ConfigError {
    /// A field that fails validation.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// Read and parse a TOML file (without validating it).
pub fn from_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_toml(&text).map_err(|message| ConfigError::Parse {
        path: path.to_owned(),
        message,
    })
}

/// Parse TOML text; the error is one line, with the line number where TOML
/// knows it.
pub fn from_toml<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| format!(" (line {})", text[..s.start].matches('\n').count() + 1))
            .unwrap_or_default();
        e.message().replace('\n', " ") + &line
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Small {
        port: u16,
    }

    #[test]
    fn errors_are_one_line_with_the_line_number() {
        let e = from_toml::<Small>("\n\nport = \"x\"\n").unwrap_err();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.ends_with("(line 3)"), "{e}");
        let e = from_toml::<Small>("port = 1\nhost = 2\n").unwrap_err();
        assert!(e.contains("host") && e.ends_with("(line 2)"), "{e}");
    }

    #[test]
    fn a_missing_file_names_the_file() {
        let e = from_file::<Small>(Path::new("/nonexistent/x.toml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read config file /nonexistent/x.toml")
        );
    }

    #[test]
    fn invalid_names_the_field() {
        let e = ConfigError::invalid("rate_bps", "at least 8000");
        assert_eq!(e.to_string(), "config field `rate_bps`: at least 8000");
    }
}
