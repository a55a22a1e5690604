//! fill-agent's configuration: TOML plus command-line overrides, validated
//! with the offending field named.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use service::config::reject;
pub use service::config::{ConfigError, EXIT_BAD_CONFIG};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// oca's disk roots (objects go to `<root>/objects/<key>`, downloads in
    /// progress to `<root>/tmp/`).
    pub stores: Vec<PathBuf>,
    /// Write only into roots that are mount points (as oca's `require_mount`):
    /// an unmounted disk's empty mount point must not fill the root filesystem.
    pub require_mount: bool,
    /// oca's admin base URL, told about every object committed or evicted.
    pub oca_admin: Option<String>,
    /// This agent's bearer token for oca's admin listener (listed in oca's
    /// `admin.callers_file` with `refresh,renditions`).
    pub oca_admin_token_file: Option<PathBuf>,
    /// CA bundle for an admin listener served over TLS with a private CA.
    pub oca_admin_ca_file: Option<PathBuf>,
    /// DiffServ code point (0..=63) on every fill connection's packets, so
    /// the ISP can police fill traffic (e.g. 8, CS1, "lower effort").
    pub dscp: Option<u8>,
    /// Local address fill connections are made from, so the ISP can route
    /// or police fill traffic by address.
    pub source_address: Option<std::net::IpAddr>,
    /// Where the progress document goes (oca's `fill_status` shows it).
    pub status_file: PathBuf,
    /// Serve `/metrics` here (optional).
    pub metrics_listen: Option<SocketAddr>,
    /// Global download rate cap, bits per second.
    pub rate_bps: u64,
    /// Objects downloaded at once.
    pub concurrency: usize,
    /// A source slower than this (after `slow_grace`) is dropped for a while.
    pub min_throughput_bps: u64,
    #[serde(with = "humantime_serde")]
    pub slow_grace: Duration,
    /// Most content bytes the stores may hold (planned or not); unset: the
    /// filesystems' size less the headroom.
    pub max_bytes: Option<u64>,
    /// Percentage of each filesystem always left free.
    pub headroom_percent: f64,
    /// How often the plan is fetched again.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Connect and per-read timeout of a download.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Committed planned objects are read back and hash-checked at this rate,
    /// bits per second (0: never).
    pub scrub_rate_bps: u64,
    /// First backoff of a failing source (doubles, up to 64×).
    #[serde(with = "humantime_serde")]
    pub source_backoff: Duration,
    /// How downloads reach the disks: `threads` (blocking calls on disk
    /// threads), `io_uring` or `auto` (io_uring where the kernel allows it,
    /// else threads).
    pub disk_io: crate::diskio::DiskIoChoice,
    pub control: ControlConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// steering's URL, or several in order of preference (see oca's `control.url`).
    pub url: control_client::Urls,
    pub appliance_id: String,
    /// The appliance's credential (a declared appliance)...
    pub credential: String,
    /// ...or the file oca keeps it in once enrolled
    /// (`/var/lib/oca/control/credential`), read at start.
    pub credential_file: Option<PathBuf>,
    /// Last good plan, kept for when the control plane is down.
    pub cache_dir: PathBuf,
    pub ca_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            stores: Vec::new(),
            require_mount: false,
            oca_admin: Some("http://127.0.0.1:9090".into()),
            oca_admin_token_file: None,
            oca_admin_ca_file: None,
            dscp: None,
            source_address: None,
            status_file: PathBuf::from("/var/lib/fill-agent/status.json"),
            metrics_listen: None,
            rate_bps: 1_000_000_000,
            concurrency: 4,
            min_throughput_bps: 1_000_000,
            slow_grace: Duration::from_secs(5),
            max_bytes: None,
            headroom_percent: 10.0,
            poll_interval: Duration::from_secs(60),
            scrub_rate_bps: 100_000_000,
            request_timeout: Duration::from_secs(10),
            source_backoff: Duration::from_secs(5),
            disk_io: Default::default(),
            control: ControlConfig::default(),
        }
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            url: control_client::Urls::default(),
            appliance_id: String::new(),
            credential: String::new(),
            credential_file: None,
            cache_dir: PathBuf::from("/var/lib/fill-agent/control"),
            ca_file: None,
        }
    }
}

impl Config {
    /// Read and parse a TOML file (without validating it).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        service::config::from_file(path)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.stores.is_empty() {
            return reject("stores", "list at least one disk root");
        }
        if self.rate_bps < 8_000 {
            return reject("rate_bps", "at least 8000 (1 kB/s)");
        }
        if self.concurrency == 0 || self.concurrency > 64 {
            return reject("concurrency", "between 1 and 64");
        }
        if !(0.0..=99.0).contains(&self.headroom_percent) {
            return reject("headroom_percent", "between 0 and 99");
        }
        if self.poll_interval.is_zero() || self.request_timeout.is_zero() {
            return reject(
                "poll_interval",
                "poll_interval and request_timeout must be greater than zero",
            );
        }
        if self.source_backoff.is_zero() {
            return reject("source_backoff", "must be greater than zero");
        }
        if let Some(u) = &self.oca_admin
            && !u.starts_with("http://")
            && !u.starts_with("https://")
        {
            return reject("oca_admin", "an http:// or https:// URL");
        }
        if self.dscp.is_some_and(|d| d > 63) {
            return reject("dscp", "a DiffServ code point, 0 to 63 (e.g. 8 for CS1)");
        }
        if self
            .source_address
            .is_some_and(|a| a.is_unspecified() || a.is_multicast())
        {
            return reject("source_address", "a unicast address of this host");
        }

        let c = &self.control;
        if let Err(e) = c.url.check() {
            return reject("control.url", e);
        }
        if c.appliance_id.is_empty() {
            return reject("control.appliance_id", "required");
        }
        match (&c.credential_file, c.credential.len()) {
            (Some(_), 0) => {}
            (Some(_), _) => {
                return reject(
                    "control.credential_file",
                    "set credential or credential_file, not both",
                );
            }
            (None, n) if n < 16 => {
                return reject("control.credential", "at least 16 characters");
            }
            (None, _) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diskio::DiskIoChoice;

    /// Every key of the configuration reference, each set to something other
    /// than its default.
    const EVERY_KEY: &str = r#"
        stores = ["/d0", "/d1"]
        require_mount = true
        oca_admin = "http://127.0.0.1:9191"
        oca_admin_token_file = "/etc/oca/fill-agent-admin-token"
        oca_admin_ca_file = "/etc/oca/admin-ca.pem"
        dscp = 8
        source_address = "198.51.100.20"
        status_file = "/run/fill/status.json"
        metrics_listen = "127.0.0.1:9200"
        rate_bps = 24000000
        concurrency = 2
        min_throughput_bps = 64000
        slow_grace = "2s"
        max_bytes = 5000000000
        headroom_percent = 5.5
        poll_interval = "30s"
        request_timeout = "3s"
        source_backoff = "250ms"
        scrub_rate_bps = 0
        disk_io = "io_uring"

        [control]
        url = "https://steering.example:7000"
        appliance_id = "isp-a-paris-1"
        credential = "credential-of-isp-a-paris-1"
        cache_dir = "/var/cache/fill"
        ca_file = "/etc/oca/control-ca.pem"
    "#;

    #[test]
    fn parses_every_key() {
        let c: Config = toml::from_str(EVERY_KEY).unwrap();
        c.validate().unwrap();
        let d = Config::default();
        // Destructured without `..`, so a new field does not compile until it
        // is read back here too.
        let Config {
            stores,
            require_mount,
            oca_admin,
            oca_admin_token_file,
            oca_admin_ca_file,
            dscp,
            source_address,
            status_file,
            metrics_listen,
            rate_bps,
            concurrency,
            min_throughput_bps,
            slow_grace,
            max_bytes,
            headroom_percent,
            poll_interval,
            request_timeout,
            scrub_rate_bps,
            source_backoff,
            disk_io,
            control,
        } = c;
        let secs = Duration::from_secs;
        assert_eq!(stores, [PathBuf::from("/d0"), PathBuf::from("/d1")]);
        assert!(require_mount && !d.require_mount);
        assert_eq!(oca_admin.as_deref(), Some("http://127.0.0.1:9191"));
        assert_ne!(oca_admin, d.oca_admin);
        // Read at start (a missing file stops the agent with its name).
        assert_eq!(
            (oca_admin_token_file, d.oca_admin_token_file),
            (Some("/etc/oca/fill-agent-admin-token".into()), None)
        );
        assert_eq!(
            (oca_admin_ca_file, d.oca_admin_ca_file),
            (Some("/etc/oca/admin-ca.pem".into()), None)
        );
        assert_eq!((dscp, d.dscp), (Some(8), None));
        assert_eq!(
            (source_address, d.source_address),
            (Some("198.51.100.20".parse().unwrap()), None)
        );
        assert_eq!(status_file, PathBuf::from("/run/fill/status.json"));
        assert_ne!(status_file, d.status_file);
        assert_eq!(metrics_listen, Some("127.0.0.1:9200".parse().unwrap()));
        assert_eq!((rate_bps, d.rate_bps), (24_000_000, 1_000_000_000));
        assert_eq!((concurrency, d.concurrency), (2, 4));
        assert_eq!(
            (min_throughput_bps, d.min_throughput_bps),
            (64_000, 1_000_000)
        );
        assert_eq!((slow_grace, d.slow_grace), (secs(2), secs(5)));
        assert_eq!((max_bytes, d.max_bytes), (Some(5_000_000_000), None));
        assert_eq!((headroom_percent, d.headroom_percent), (5.5, 10.0));
        assert_eq!((poll_interval, d.poll_interval), (secs(30), secs(60)));
        assert_eq!((request_timeout, d.request_timeout), (secs(3), secs(10)));
        assert_eq!(
            (source_backoff, d.source_backoff),
            (Duration::from_millis(250), secs(5))
        );
        assert_eq!((scrub_rate_bps, d.scrub_rate_bps), (0, 100_000_000));
        assert_eq!(
            (disk_io, d.disk_io),
            (DiskIoChoice::IoUring, DiskIoChoice::Threads)
        );
        let ControlConfig {
            url,
            appliance_id,
            credential,
            credential_file,
            cache_dir,
            ca_file,
        } = control;
        assert_eq!(credential_file, None, "the other way, tested below");
        assert_eq!(url, "https://steering.example:7000");
        assert_eq!(appliance_id, "isp-a-paris-1");
        assert_eq!(credential, "credential-of-isp-a-paris-1");
        assert_eq!(cache_dir, PathBuf::from("/var/cache/fill"));
        assert_ne!(cache_dir, d.control.cache_dir);
        assert_eq!(ca_file, Some("/etc/oca/control-ca.pem".into()));
    }

    /// An enrolled appliance's agent reads oca's credential file instead;
    /// one of the two, not both.
    #[test]
    fn credential_or_credential_file() {
        let file = EVERY_KEY.replace(
            "credential = \"credential-of-isp-a-paris-1\"",
            "credential_file = \"/var/lib/oca/control/credential\"",
        );
        let c: Config = toml::from_str(&file).unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.control.credential_file,
            Some(PathBuf::from("/var/lib/oca/control/credential"))
        );
        let both = format!("{EVERY_KEY}credential_file = \"/x\"\n");
        let e = toml::from_str::<Config>(&both)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        let neither = EVERY_KEY.replace("credential = \"credential-of-isp-a-paris-1\"", "");
        let e = toml::from_str::<Config>(&neither)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("control.credential"), "{e}");
    }

    /// The README's fill-agent reference names every key `EVERY_KEY` sets,
    /// and its table lists no key `EVERY_KEY` leaves out.
    #[test]
    fn every_key_is_in_the_readme_reference() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
        let start = readme
            .find("## Running fill-agent")
            .expect("fill-agent section");
        let end = readme[start + 1..]
            .find("\n## ")
            .map_or(readme.len(), |e| start + 1 + e);
        let section = &readme[start..end];
        let every: toml::Table = toml::from_str(EVERY_KEY).unwrap();
        let mut tested = Vec::new();
        for (k, v) in &every {
            match v.as_table() {
                Some(t) => tested.extend(t.keys().map(|c| format!("{k}.{c}"))),
                None => tested.push(k.clone()),
            }
        }
        for key in &tested {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(
                section.contains(&format!("`{leaf}`")),
                "README's fill-agent reference does not name `{key}`"
            );
        }
        for row in section.lines().filter_map(|l| l.strip_prefix("| `")) {
            let key = row.split('`').next().unwrap();
            assert!(
                key.starts_with('[') || tested.iter().any(|t| t == key),
                "`{key}` is in the README but not set by the test"
            );
        }
    }
}
