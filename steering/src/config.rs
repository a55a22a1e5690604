//! steering's configuration: TOML plus command-line overrides, validated with
//! the offending field named.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use control_client::wire::{ApplianceInfo, Tier};
use serde::Deserialize;

pub const EXIT_BAD_CONFIG: i32 = 64;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    /// The embedded store: one SQLite file.
    pub database: PathBuf,
    /// Interval appliances are told to heartbeat at.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    pub health: HealthConfig,
    pub keys: KeysConfig,
    /// Appliances known from configuration (they may also register by API).
    #[serde(rename = "appliance")]
    pub appliances: Vec<ApplianceConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive failed polls before an appliance is marked down.
    pub down_after: u32,
    /// Consecutive good polls before a down appliance is marked up again.
    pub up_after: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// A new signing key is created this often.
    #[serde(with = "humantime_serde")]
    pub rotate_every: Duration,
    /// How long each key stays valid (must exceed `rotate_every` so keys overlap).
    #[serde(with = "humantime_serde")]
    pub lifetime: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplianceConfig {
    pub id: String,
    /// The appliance's shared secret; stored only as a SHA-256 hash.
    pub credential: String,
    pub tier: Tier,
    pub site: String,
    pub region: String,
    #[serde(default)]
    pub asn: u32,
    pub http_url: Option<String>,
    pub https_url: Option<String>,
    pub admin_url: String,
    pub capacity_bps: u64,
}

impl ApplianceConfig {
    pub fn info(&self) -> ApplianceInfo {
        ApplianceInfo {
            tier: self.tier,
            site: self.site.clone(),
            region: self.region.clone(),
            asn: self.asn,
            http_url: self.http_url.clone(),
            https_url: self.https_url.clone(),
            admin_url: self.admin_url.clone(),
            capacity_bps: self.capacity_bps,
            version: String::new(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7000)),
            database: PathBuf::from("steering.db"),
            heartbeat_interval: Duration::from_secs(5),
            max_body_bytes: 4 << 20,
            health: HealthConfig::default(),
            keys: KeysConfig::default(),
            appliances: Vec::new(),
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            down_after: 3,
            up_after: 2,
        }
    }
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            rotate_every: Duration::from_secs(24 * 3600),
            lifetime: Duration::from_secs(3 * 24 * 3600),
        }
    }
}

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

impl Config {
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.message().replace('\n', " ")
                + &e.span()
                    .map(|s| format!(" (line {})", text[..s.start].matches('\n').count() + 1))
                    .unwrap_or_default(),
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.database.as_os_str().is_empty() {
            return bad("database", "must name a file");
        }
        if self.heartbeat_interval.is_zero() {
            return bad("heartbeat_interval", "must be greater than zero");
        }
        if self.max_body_bytes < 1024 {
            return bad("max_body_bytes", "must be at least 1024");
        }
        if self.health.interval.is_zero() || self.health.timeout.is_zero() {
            return bad("health", "interval and timeout must be greater than zero");
        }
        if self.health.down_after == 0 || self.health.up_after == 0 {
            return bad("health", "down_after and up_after must be at least 1");
        }
        if self.keys.lifetime <= self.keys.rotate_every {
            return bad(
                "keys.lifetime",
                "must be longer than keys.rotate_every, so keys overlap",
            );
        }
        for (i, a) in self.appliances.iter().enumerate() {
            if !valid_id(&a.id) {
                return bad("appliance.id", "use 1-64 of A-Z a-z 0-9 - _ .");
            }
            if self.appliances[..i].iter().any(|o| o.id == a.id) {
                return bad("appliance.id", "listed twice");
            }
            if a.credential.len() < 16 {
                return bad("appliance.credential", "at least 16 characters");
            }
            if a.capacity_bps == 0 {
                return bad("appliance.capacity_bps", "must be greater than zero");
            }
        }
        Ok(())
    }
}

/// Appliance ids appear in URLs and logs: keep them plain.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A rendition id is the path prefix of its objects (`titles/t1/v720`).
pub fn valid_rendition(r: &str) -> bool {
    (1..=512).contains(&r.len())
        && !r.starts_with('/')
        && !r.ends_with('/')
        && r.split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && r.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
}
