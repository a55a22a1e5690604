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

/// `Err` for a field that fails validation: `return reject("rate_bps", "at least 8000")`.
pub fn reject<T>(field: &'static str, reason: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid {
        field,
        reason: reason.into(),
    })
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

/// Parse TOML text; the error is one line, with the line and, where the
/// line shows it, the field (toml's type errors give only a position).
pub fn from_toml<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().replace('\n', " ");
        let Some(span) = e.span() else {
            return msg;
        };
        let line = text[..span.start].matches('\n').count() + 1;
        let key = text
            .lines()
            .nth(line - 1)
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| k.trim())
            .filter(|k| !k.is_empty() && !msg.contains(*k));
        match key {
            Some(k) => format!("line {line}, field `{k}`: {msg}"),
            None => format!("line {line}: {msg}"),
        }
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
        assert!(e.starts_with("line 3, field `port`: "), "{e}");
        let e = from_toml::<Small>("port = 1\nhost = 2\n").unwrap_err();
        assert!(e.starts_with("line 2: ") && e.contains("host"), "{e}");
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
        let e = reject::<()>("rate_bps", "at least 8000").unwrap_err();
        assert_eq!(e.to_string(), "config field `rate_bps`: at least 8000");
    }
}
