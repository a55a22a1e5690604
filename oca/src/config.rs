//! Typed configuration: TOML file, command-line overrides, and validation that
//! names the offending field.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::access::AccessMode;

use service::config::reject;
pub use service::config::{ConfigError, EXIT_BAD_CONFIG};
pub use service::logging::LogFormat;

/// How worker threads are arranged; chosen by measurement (see docs/BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Threading {
    /// One single-threaded runtime per worker, each with its own SO_REUSEPORT
    /// listener: no cross-core task migration, no shared run queue.
    PerCore,
    /// One multi-threaded work-stealing runtime sharing one listener.
    Shared,
}

/// The whole daemon configuration. Every key is optional; see README for each.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Addresses to serve objects on.
    pub listen: Vec<SocketAddr>,
    /// Addresses to serve objects on over HTTPS (needs `tls_cert` and `tls_key`).
    pub tls_listen: Vec<SocketAddr>,
    /// PEM certificate chain (leaf first) for the HTTPS listeners.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for the HTTPS listeners.
    pub tls_key: Option<PathBuf>,
    /// Address of the admin listener (/health, /metrics).
    pub admin_listen: SocketAddr,
    /// Disk roots, one per disk.
    pub stores: Vec<PathBuf>,
    /// A disk root must be a mount point: an unmounted disk's empty mount point
    /// is then "missing" rather than a disk on the wrong filesystem.
    pub require_mount: bool,
    /// How often every disk is checked (vanished, unreadable, unmounted, back).
    #[serde(with = "humantime_serde")]
    pub disk_check_interval: Duration,
    /// Worker threads; 0 means one per available CPU.
    pub workers: usize,
    pub threading: Threading,
    /// Connections served at once across all workers; beyond it new connections
    /// get a 503 and are closed.
    pub max_connections: usize,
    /// Time allowed to receive a complete request head once it has started.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Time an idle keep-alive connection is kept open waiting for a request.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Time a response may make no progress writing to a client before we give up.
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
    /// Grace period for in-flight responses after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Longest request line (method, target, version) accepted; beyond it 414.
    pub max_request_line: usize,
    /// Largest request head (request line + headers) accepted; beyond it 431.
    pub max_header_bytes: usize,
    /// Open files cached per worker so hot objects are not opened per request.
    pub open_file_cache: usize,
    /// How long a cached open file is trusted before it is checked against the disk.
    #[serde(with = "humantime_serde")]
    pub open_file_cache_valid: Duration,
    /// How windows of objects not in the page cache are read into it, off
    /// the serving threads: `threads` (sendfile to /dev/null) or `io_uring`
    /// (reads; threads where the kernel refuses io_uring).
    pub cold_reads: ColdReadsMode,
    /// Threads loading cold windows with `cold_reads = "threads"`: at most
    /// this many windows are read at once (1 to 64).
    pub cold_threads: usize,
    /// CPU priority (nice, 0 to 19) of the cold-read threads (and of the
    /// kernel workers io_uring starts for them): above 0, hot viewers win the
    /// CPU from cold reads, at the cost of cold viewers' throughput.
    pub cold_nice: i32,
    /// HTTPS: encrypt bodies straight from a read-only mapping of the object
    /// (memmap2) instead of reading them into a buffer first. A page that
    /// cannot be read fails that response (SIGBUS is caught), not the process.
    pub tls_mapped_bodies: bool,
    /// Egress capacity of this appliance in megabits per second (for utilisation).
    pub capacity_mbps: u64,
    /// Cache-Control sent with every object.
    pub cache_control: String,
    pub log_format: LogFormat,
    /// `token` (default): object requests need a signed-URL token; `open`: none needed.
    pub access: AccessMode,
    /// Key file for verifying tokens (TOML, mode 0600); required with `access = "token"`.
    pub token_keys: Option<PathBuf>,
    /// Clock difference tolerated between the signer and this appliance.
    #[serde(with = "humantime_serde")]
    pub token_skew: Duration,
    /// The control plane this appliance registers with (optional).
    pub control: Option<ControlConfig>,
    /// Status file the fill agent writes; shown as `fill` in /health.
    pub fill_status: Option<PathBuf>,
    /// Passive BGP session(s) from the ISP's router (optional).
    pub bgp: Option<BgpConfig>,
    /// Who may call the admin listener, and how.
    pub admin: AdminConfig,
}

/// `[admin]`: credentials for the admin listener.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// One line per caller: name, scopes, bearer token (`oca::admin_auth`).
    /// Without it the admin listener answers anyone who reaches it (said
    /// once at start).
    pub callers_file: Option<PathBuf>,
    /// `/health` without a credential answers `{"status": …}` only, for a
    /// load balancer's check; the full document still needs `health`.
    pub open_health: bool,
    /// Serve the admin listener over TLS with `tls_cert` and `tls_key`.
    pub tls: bool,
}

/// `cold_reads`: how cold windows reach the page cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColdReadsMode {
    /// `cold_threads` threads, each loading a window with sendfile(2) to
    /// /dev/null: no byte copied to user space. Measured ahead of io_uring
    /// reads (docs/DISK-PATHS.md).
    #[default]
    Threads,
    /// One thread keeping up to 32 reads of 512 KiB in flight on an io_uring
    /// (threads where the kernel refuses io_uring). `auto`, the default
    /// before the threads were measured ahead, and fill-agent's word for the
    /// same choice, means this.
    #[serde(alias = "auto")]
    IoUring,
}

/// `[bgp]`: learn client prefixes from the ISP's router. Passive: we accept
/// sessions from the listed neighbours only and announce nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BgpConfig {
    /// Address to accept BGP connections on.
    pub listen: SocketAddr,
    /// Our AS number (4-byte ASNs allowed).
    pub local_asn: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Hold time we propose, in seconds: 0 (no keepalives) or at least 3.
    pub hold_time: u16,
    /// How long a lost session's prefixes are still used, so a router
    /// restart does not empty steering.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// Routers allowed to connect.
    #[serde(rename = "neighbor")]
    pub neighbors: Vec<BgpNeighbor>,
}

/// `[[bgp.neighbor]]`: a router allowed to open a session, its AS, and how
/// the session is protected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpNeighbor {
    pub address: IpAddr,
    pub asn: u32,
    /// TCP MD5 signature key (RFC 2385), the router's `password`: every
    /// segment of the session is signed with it, and the kernel drops
    /// segments from this neighbour without it.
    #[serde(default)]
    pub password: Option<Secret>,
    /// GTSM (RFC 5082): the router is directly connected and sends with TTL
    /// 255; a connection whose packets arrive with less is refused, and we
    /// send with 255 too (BIRD's `ttl security`).
    #[serde(default)]
    pub ttl_security: bool,
}

/// A string that is never printed: `Debug` shows its length only.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Default for BgpConfig {
    fn default() -> Self {
        BgpConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 179)),
            local_asn: 0,
            router_id: Ipv4Addr::UNSPECIFIED,
            hold_time: 90,
            grace: Duration::from_secs(300),
            neighbors: Vec::new(),
        }
    }
}

impl BgpConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        // AS 0 is reserved (RFC 7607) and AS_TRANS only stands in for a
        // 4-byte AS on the wire (RFC 6793); neither can be a speaker's AS.
        let usable = |asn: u32| asn != 0 && asn != u32::from(crate::bgp::codec::AS_TRANS);
        if !usable(self.local_asn) {
            return reject(
                "bgp.local_asn",
                "required: an AS number other than 0 and 23456",
            );
        }
        if self.router_id.is_unspecified() || self.router_id.is_broadcast() {
            return reject(
                "bgp.router_id",
                "required: an IPv4 address other than 0.0.0.0 and 255.255.255.255",
            );
        }
        if self.hold_time == 1 || self.hold_time == 2 {
            return reject(
                "bgp.hold_time",
                "0 (no keepalives) or at least 3 seconds (RFC 4271)",
            );
        }
        if self.grace > Duration::from_secs(86_400) {
            return reject("bgp.grace", "at most 24h");
        }
        if self.neighbors.is_empty() {
            return reject("bgp.neighbor", "at least one [[bgp.neighbor]] is required");
        }
        for (i, n) in self.neighbors.iter().enumerate() {
            if n.address.is_unspecified() || n.address.is_multicast() {
                return reject(
                    "bgp.neighbor.address",
                    format!("{} is not a router address", n.address),
                );
            }
            if self.neighbors[..i].iter().any(|m| m.address == n.address) {
                return reject(
                    "bgp.neighbor.address",
                    format!("{} is listed twice", n.address),
                );
            }
            if !usable(n.asn) {
                return reject(
                    "bgp.neighbor.asn",
                    format!("{}: an AS number other than 0 and 23456", n.address),
                );
            }
            if let Some(p) = &n.password
                && (p.0.is_empty() || p.0.len() > crate::sys::TCP_MD5_MAX_KEY)
            {
                return reject(
                    "bgp.neighbor.password",
                    format!(
                        "{}: 1 to 80 bytes (the kernel's TCP MD5 key limit)",
                        n.address
                    ),
                );
            }
        }
        Ok(())
    }
}

/// `[control]`: how to reach steering and what to tell it about this appliance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// steering's base URL, e.g. `http://steering.example:7000`, or several
    /// (`["http://eu:7000", "http://us:7000"]`, own region first): calls move
    /// to the next when one gets no answer.
    pub url: control_client::Urls,
    pub appliance_id: String,
    /// Shared secret steering knows (as a hash) for this appliance (a
    /// declared appliance); else `enrolment_token`.
    pub credential: Option<String>,
    /// A one-time token from `steering appliances enroll`: the appliance
    /// enrols with it once, keeping the credential it chose in
    /// `cache_dir/credential`, which every later start uses.
    pub enrolment_token: Option<String>,
    /// PEM CA certificates to trust for an https:// `url` (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// Where last-known-good answers (keys) are kept across restarts.
    #[serde(default = "default_cache_dir")]
    pub cache_dir: PathBuf,
    pub tier: control_client::wire::Tier,
    pub site: String,
    pub region: String,
    #[serde(default)]
    pub asn: u32,
    /// Public base URLs players use; default: the first `listen` /
    /// `tls_listen` address (set them when that is not what players reach).
    pub http_url: Option<String>,
    pub https_url: Option<String>,
    /// Admin base URL steering polls; default: the bound admin address.
    pub admin_url: Option<String>,
    /// Content storage to declare to steering (fill plans fit in it); default:
    /// the size of the filesystems holding the disk roots.
    pub storage_bytes: Option<u64>,
}

fn default_cache_dir() -> PathBuf {
    PathBuf::from("/var/lib/oca/control")
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 8080))],
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            tls_listen: Vec::new(),
            tls_cert: None,
            tls_key: None,
            stores: Vec::new(),
            require_mount: false,
            disk_check_interval: Duration::from_secs(10),
            workers: 0,
            threading: Threading::PerCore,
            max_connections: 20_000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            max_request_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            open_file_cache: 4096,
            open_file_cache_valid: Duration::from_secs(30),
            cold_reads: ColdReadsMode::Threads,
            cold_threads: 4,
            cold_nice: 0,
            tls_mapped_bodies: true,
            capacity_mbps: 10_000,
            cache_control: "public, max-age=31536000, immutable".to_owned(),
            log_format: LogFormat::Text,
            access: AccessMode::Token,
            token_keys: None,
            token_skew: Duration::from_secs(30),
            control: None,
            fill_status: None,
            bgp: None,
            admin: AdminConfig::default(),
        }
    }
}

impl Config {
    /// Read and parse a TOML file (without validating it).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        service::config::from_file(path)
    }

    /// Parse TOML text; the error is a single line naming the field where possible.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        service::config::from_toml(text)
    }

    /// Check values that parse but make no sense, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.disk_check_interval < Duration::from_millis(100) {
            return reject("disk_check_interval", "must be at least 100ms");
        }
        if self.listen.is_empty() && self.tls_listen.is_empty() {
            return reject(
                "listen",
                "at least one address (listen or tls_listen) is required",
            );
        }
        for (i, a) in self.listen.iter().enumerate() {
            if self.listen[..i].contains(a) {
                return reject("listen", format!("{a} is listed twice"));
            }
        }
        for (i, a) in self.tls_listen.iter().enumerate() {
            if self.tls_listen[..i].contains(a) || (self.listen.contains(a) && a.port() != 0) {
                return reject("tls_listen", format!("{a} is listed twice"));
            }
        }
        if !self.tls_listen.is_empty() {
            if self.tls_cert.is_none() {
                return reject("tls_cert", "required with tls_listen");
            }
            if self.tls_key.is_none() {
                return reject("tls_key", "required with tls_listen");
            }
        }
        if self.admin.tls && (self.tls_cert.is_none() || self.tls_key.is_none()) {
            return reject("admin.tls", "needs tls_cert and tls_key");
        }
        if self.admin.open_health && self.admin.callers_file.is_none() {
            return reject(
                "admin.open_health",
                "only means something with admin.callers_file (without it all is open)",
            );
        }
        if self.listen.contains(&self.admin_listen) && self.admin_listen.port() != 0 {
            return reject("admin_listen", "must differ from every `listen` address");
        }
        if self.stores.is_empty() {
            return reject("stores", "at least one disk root is required");
        }
        for (i, s) in self.stores.iter().enumerate() {
            if s.as_os_str().is_empty() {
                return reject("stores", format!("entry {i} is empty"));
            }
            if self.stores[..i].contains(s) {
                return reject("stores", format!("{} is listed twice", s.display()));
            }
        }
        if self.workers > 1024 {
            return reject("workers", "at most 1024");
        }
        if self.max_connections == 0 {
            return reject("max_connections", "must be at least 1");
        }
        for (field, d) in [
            ("header_timeout", self.header_timeout),
            ("idle_timeout", self.idle_timeout),
            ("send_timeout", self.send_timeout),
        ] {
            if d.is_zero() {
                return reject(field, "must be greater than zero");
            }
        }
        if !(256..=1024 * 1024).contains(&self.max_request_line) {
            return reject("max_request_line", "must be between 256 and 1048576 bytes");
        }
        if self.max_header_bytes < self.max_request_line || self.max_header_bytes > 1024 * 1024 {
            return reject(
                "max_header_bytes",
                "must be at least max_request_line and at most 1048576 bytes",
            );
        }
        if !(0..=19).contains(&self.cold_nice) {
            return reject("cold_nice", "between 0 and 19");
        }
        if !(1..=64).contains(&self.cold_threads) {
            return reject("cold_threads", "between 1 and 64");
        }
        if self.open_file_cache == 0 {
            return reject("open_file_cache", "must be at least 1");
        }
        if self.capacity_mbps == 0 {
            return reject("capacity_mbps", "must be greater than zero");
        }
        if self.cache_control.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return reject("cache_control", "must not contain control characters");
        }
        if self.access == AccessMode::Token && self.token_keys.is_none() && self.control.is_none() {
            return reject(
                "token_keys",
                "required when access = \"token\" (the default) and no [control] plane supplies keys; set access = \"open\" to serve without tokens",
            );
        }
        if let Some(c) = &self.control {
            if let Err(e) = c.url.check() {
                return reject("control.url", e);
            }
            if c.appliance_id.is_empty() || c.appliance_id.len() > 64 {
                return reject("control.appliance_id", "1 to 64 characters");
            }
            match (&c.credential, &c.enrolment_token) {
                (Some(cred), _) if cred.len() < 16 => {
                    return reject("control.credential", "at least 16 characters");
                }
                (_, Some(t)) if !t.starts_with("enrol-") => {
                    return reject(
                        "control.enrolment_token",
                        "not an enrolment token (steering appliances enroll prints enrol-…)",
                    );
                }
                (None, None) => {
                    return reject(
                        "control.credential",
                        "set credential (a declared appliance) or enrolment_token (to enrol)",
                    );
                }
                _ => {}
            }
        }
        if let Some(b) = &self.bgp {
            b.validate()?;
            if b.listen.port() != 0
                && (self.admin_listen == b.listen
                    || self.listen.contains(&b.listen)
                    || self.tls_listen.contains(&b.listen))
            {
                return reject(
                    "bgp.listen",
                    "must differ from the HTTP and admin addresses",
                );
            }
        }
        if self.token_skew > Duration::from_secs(3600) {
            return reject("token_skew", "at most 1h");
        }
        Ok(())
    }

    /// Worker count after resolving `0` to the number of CPUs.
    pub fn effective_workers(&self) -> usize {
        if self.workers == 0 {
            crate::sys::available_cpus()
        } else {
            self.workers
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn valid() -> Config {
        Config {
            stores: vec!["/srv/oca/d0".into()],
            token_keys: Some("/etc/oca/keys.toml".into()),
            ..Config::default()
        }
    }

    /// Every key of the configuration reference, each set to something other
    /// than its default.
    const EVERY_KEY: &str = r#"
        listen = ["127.0.0.1:8081", "[::1]:8081"]
        tls_listen = ["127.0.0.1:8443"]
        tls_cert = "/etc/oca/cert.pem"
        tls_key = "/etc/oca/key.pem"
        access = "open"
        token_keys = "/etc/oca/keys.toml"
        token_skew = "10s"
        admin_listen = "127.0.0.1:9091"
        fill_status = "/var/lib/fill-agent/status.json"
        stores = ["/d0", "/d1"]
        require_mount = true
        disk_check_interval = "3s"
        workers = 2
        threading = "shared"
        max_connections = 100
        header_timeout = "5s"
        idle_timeout = "30s"
        send_timeout = "20s"
        shutdown_grace = "1m"
        max_request_line = 4096
        max_header_bytes = 8192
        open_file_cache = 10
        open_file_cache_valid = "5s"
        cold_reads = "io_uring"
        cold_threads = 8
        cold_nice = 3
        tls_mapped_bodies = false
        capacity_mbps = 40000
        cache_control = "public, max-age=60"
        log_format = "json"

        [control]
        url = "http://steering.example:7000"
        appliance_id = "isp-a-paris-1"
        credential = "credential-of-isp-a-paris-1"
        enrolment_token = "enrol-abc"
        cache_dir = "/var/lib/oca/ctl"
        ca_file = "/etc/oca/control-ca.pem"
        tier = "ixp"
        site = "isp-a-paris"
        region = "eu-west"
        asn = 64500
        http_url = "http://198.51.100.10"
        https_url = "https://oca1.isp-a.example"
        admin_url = "http://10.0.0.10:9090"
        storage_bytes = 8000000000000

        [bgp]
        listen = "127.0.0.1:1179"
        local_asn = 4200000001
        router_id = "198.51.100.10"
        hold_time = 30
        grace = "2m"

        [[bgp.neighbor]]
        address = "198.51.100.1"
        asn = 64512
        password = "isp-a-md5-key"
        ttl_security = true

        [admin]
        callers_file = "/etc/oca/admin-callers"
        open_health = true
        tls = true
    "#;

    #[test]
    fn parses_every_key() {
        let c = Config::from_toml(EVERY_KEY).unwrap();
        c.validate().unwrap();
        let d = Config::default();
        // Destructured without `..`, so a new field does not compile until it
        // is read back here too.
        let Config {
            listen,
            tls_listen,
            tls_cert,
            tls_key,
            admin_listen,
            stores,
            require_mount,
            disk_check_interval,
            workers,
            threading,
            max_connections,
            header_timeout,
            idle_timeout,
            send_timeout,
            shutdown_grace,
            max_request_line,
            max_header_bytes,
            open_file_cache,
            open_file_cache_valid,
            cold_reads,
            cold_threads,
            cold_nice,
            tls_mapped_bodies,
            capacity_mbps,
            cache_control,
            log_format,
            access,
            token_keys,
            token_skew,
            control,
            fill_status,
            bgp,
            admin,
        } = c;
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let secs = Duration::from_secs;
        assert_eq!(listen, [addr("127.0.0.1:8081"), addr("[::1]:8081")]);
        assert_eq!(tls_listen, [addr("127.0.0.1:8443")]);
        assert_eq!(tls_cert, Some("/etc/oca/cert.pem".into()));
        assert_eq!(tls_key, Some("/etc/oca/key.pem".into()));
        assert_eq!((access, d.access), (AccessMode::Open, AccessMode::Token));
        assert_eq!(token_keys, Some("/etc/oca/keys.toml".into()));
        assert_eq!((token_skew, d.token_skew), (secs(10), secs(30)));
        assert_eq!(admin_listen, addr("127.0.0.1:9091"));
        assert_ne!(admin_listen, d.admin_listen);
        assert_eq!(fill_status, Some("/var/lib/fill-agent/status.json".into()));
        assert_eq!(stores, [PathBuf::from("/d0"), PathBuf::from("/d1")]);
        assert!(require_mount && !d.require_mount);
        assert_eq!(
            (disk_check_interval, d.disk_check_interval),
            (secs(3), secs(10))
        );
        assert_eq!((workers, d.workers), (2, 0));
        assert_eq!(
            (threading, d.threading),
            (Threading::Shared, Threading::PerCore)
        );
        assert_eq!((max_connections, d.max_connections), (100, 20_000));
        assert_eq!((header_timeout, d.header_timeout), (secs(5), secs(10)));
        assert_eq!((idle_timeout, d.idle_timeout), (secs(30), secs(60)));
        assert_eq!((send_timeout, d.send_timeout), (secs(20), secs(30)));
        assert_eq!((shutdown_grace, d.shutdown_grace), (secs(60), secs(30)));
        assert_eq!((max_request_line, d.max_request_line), (4096, 8192));
        assert_eq!((max_header_bytes, d.max_header_bytes), (8192, 16_384));
        assert_eq!((open_file_cache, d.open_file_cache), (10, 4096));
        assert_eq!(
            (cold_reads, d.cold_reads),
            (ColdReadsMode::IoUring, ColdReadsMode::Threads)
        );
        assert!(!tls_mapped_bodies && d.tls_mapped_bodies);
        assert_eq!((cold_nice, d.cold_nice), (3, 0));
        assert_eq!((cold_threads, d.cold_threads), (8, 4));
        assert_eq!(
            (open_file_cache_valid, d.open_file_cache_valid),
            (secs(5), secs(30))
        );
        assert_eq!((capacity_mbps, d.capacity_mbps), (40_000, 10_000));
        assert_eq!(cache_control, "public, max-age=60");
        assert_ne!(cache_control, d.cache_control);
        assert_eq!(
            (log_format, d.log_format),
            (LogFormat::Json, LogFormat::Text)
        );

        let ControlConfig {
            url,
            appliance_id,
            credential,
            enrolment_token,
            ca_file,
            cache_dir,
            tier,
            site,
            region,
            asn,
            http_url,
            https_url,
            admin_url,
            storage_bytes,
        } = control.expect("[control]");
        assert_eq!(url, "http://steering.example:7000");
        assert_eq!(appliance_id, "isp-a-paris-1");
        assert_eq!(credential.as_deref(), Some("credential-of-isp-a-paris-1"));
        assert_eq!(enrolment_token.as_deref(), Some("enrol-abc"));
        assert_eq!(ca_file, Some("/etc/oca/control-ca.pem".into()));
        assert_eq!(cache_dir, PathBuf::from("/var/lib/oca/ctl"));
        assert_ne!(cache_dir, default_cache_dir());
        assert_eq!(tier, control_client::wire::Tier::Ixp);
        assert_eq!((site.as_str(), region.as_str()), ("isp-a-paris", "eu-west"));
        assert_eq!(asn, 64_500);
        assert_eq!(http_url.as_deref(), Some("http://198.51.100.10"));
        assert_eq!(https_url.as_deref(), Some("https://oca1.isp-a.example"));
        assert_eq!(admin_url.as_deref(), Some("http://10.0.0.10:9090"));
        assert_eq!(storage_bytes, Some(8_000_000_000_000));

        let BgpConfig {
            listen,
            local_asn,
            router_id,
            hold_time,
            grace,
            neighbors,
        } = bgp.expect("[bgp]");
        let bd = BgpConfig::default();
        assert_eq!(listen, addr("127.0.0.1:1179"));
        assert_ne!(listen, bd.listen);
        assert_eq!(local_asn, 4_200_000_001);
        assert_eq!(router_id, Ipv4Addr::new(198, 51, 100, 10));
        assert_eq!((hold_time, bd.hold_time), (30, 90));
        assert_eq!((grace, bd.grace), (secs(120), secs(300)));
        let [
            BgpNeighbor {
                address,
                asn,
                password,
                ttl_security,
            },
        ] = neighbors.as_slice()
        else {
            panic!("one neighbour: {neighbors:?}");
        };
        assert_eq!(
            (*address, *asn),
            ("198.51.100.1".parse::<IpAddr>().unwrap(), 64_512)
        );
        assert_eq!(password.as_ref().map(Secret::expose), Some("isp-a-md5-key"));
        assert!(*ttl_security);
        let AdminConfig {
            callers_file,
            open_health,
            tls,
        } = admin;
        let ad = AdminConfig::default();
        assert_eq!(
            (callers_file, ad.callers_file),
            (Some("/etc/oca/admin-callers".into()), None)
        );
        assert_eq!((open_health, ad.open_health), (true, false));
        assert_eq!((tls, ad.tls), (true, false));
    }

    /// The keys the README's reference documents for oca (its tables and
    /// TOML examples) are exactly the keys `EVERY_KEY` sets.
    #[test]
    fn every_key_is_the_readme_reference() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
        let mut documented = BTreeSet::new();
        for heading in [
            "### Configuration reference",
            "### Control plane (`[control]`)",
            "### BGP (`[bgp]`)",
            "### Admin credentials (`[admin]`)",
        ] {
            let start = readme.find(heading).expect(heading) + heading.len();
            let end = readme[start..]
                .find("\n##")
                .map_or(readme.len(), |e| start + e);
            let section = &readme[start..end];
            for row in section.lines().filter_map(|l| l.strip_prefix("| `")) {
                documented.insert(row.split('`').next().unwrap().to_owned());
            }
            for block in section.split("```toml").skip(1) {
                let block = block.split("```").next().unwrap();
                let value: toml::Value = toml::from_str(block).expect(heading);
                key_paths(&value, "", &mut documented);
            }
        }
        let mut tested = BTreeSet::new();
        key_paths(&toml::from_str(EVERY_KEY).unwrap(), "", &mut tested);
        assert_eq!(documented, tested);
    }

    /// Dotted paths of the leaf keys in `v` (arrays of tables share one path).
    fn key_paths(v: &toml::Value, prefix: &str, out: &mut BTreeSet<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    key_paths(v, &path, out);
                }
            }
            toml::Value::Array(items)
                if items.iter().all(toml::Value::is_table) && !items.is_empty() =>
            {
                for item in items {
                    key_paths(item, prefix, out);
                }
            }
            _ => {
                out.insert(prefix.to_owned());
            }
        }
    }

    #[test]
    fn parse_errors_name_the_field_on_one_line() {
        let e = Config::from_toml("workers = \"many\"").unwrap_err();
        assert!(e.contains("workers") || e.contains("line 1"), "{e}");
        assert!(!e.contains('\n'));
        let e = Config::from_toml("listen_addr = \"x\"").unwrap_err();
        assert!(e.contains("listen_addr"), "{e}");
        let e = Config::from_toml("idle_timeout = \"soon\"").unwrap_err();
        assert!(e.contains("idle_timeout"), "{e}");
    }

    #[test]
    fn validate_names_the_bad_field() {
        type Mutation = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("listen", Box::new(|c| c.listen.clear())),
            ("stores", Box::new(|c| c.stores.clear())),
            ("stores", Box::new(|c| c.stores.push("/srv/oca/d0".into()))),
            ("max_connections", Box::new(|c| c.max_connections = 0)),
            (
                "idle_timeout",
                Box::new(|c| c.idle_timeout = Duration::ZERO),
            ),
            ("max_request_line", Box::new(|c| c.max_request_line = 10)),
            ("max_header_bytes", Box::new(|c| c.max_header_bytes = 300)),
            ("open_file_cache", Box::new(|c| c.open_file_cache = 0)),
            ("capacity_mbps", Box::new(|c| c.capacity_mbps = 0)),
            ("cold_nice", Box::new(|c| c.cold_nice = 20)),
            ("cold_threads", Box::new(|c| c.cold_threads = 0)),
            ("cold_threads", Box::new(|c| c.cold_threads = 65)),
            (
                "cache_control",
                Box::new(|c| c.cache_control = "a\nb".into()),
            ),
            ("admin_listen", Box::new(|c| c.admin_listen = c.listen[0])),
            ("listen", Box::new(|c| c.listen.push(c.listen[0]))),
            ("token_keys", Box::new(|c| c.token_keys = None)),
            (
                "tls_cert",
                Box::new(|c| c.tls_listen.push("127.0.0.1:8443".parse().unwrap())),
            ),
            (
                "token_skew",
                Box::new(|c| c.token_skew = Duration::from_secs(7200)),
            ),
        ];
        for (field, mutate) in cases {
            let mut c = valid();
            mutate(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        valid().validate().unwrap();
    }

    #[test]
    fn bgp_section_parses_with_defaults_and_names_bad_fields() {
        let base = "stores = [\"/d\"]\naccess = \"open\"\n";
        let good = format!(
            "{base}[bgp]\nlocal_asn = 4200000001\nrouter_id = \"198.51.100.10\"\n\
             [[bgp.neighbor]]\naddress = \"198.51.100.1\"\nasn = 64512\n\
             [[bgp.neighbor]]\naddress = \"2001:db8::1\"\nasn = 64512\n"
        );
        let c = Config::from_toml(&good).unwrap();
        c.validate().unwrap();
        let b = c.bgp.as_ref().unwrap();
        assert_eq!(b.listen, "0.0.0.0:179".parse().unwrap());
        assert_eq!(b.hold_time, 90);
        assert_eq!(b.grace, Duration::from_secs(300));
        assert_eq!(b.neighbors.len(), 2);
        let c = Config::from_toml(&good.replace(
            "[bgp]\n",
            "[bgp]\nlisten = \"127.0.0.1:1179\"\nhold_time = 0\ngrace = \"300ms\"\n",
        ))
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.bgp.unwrap().grace, Duration::from_millis(300));

        let e =
            Config::from_toml(&good.replace("asn = 64512", "asn = 64512\nport = 1")).unwrap_err();
        assert!(e.contains("port"), "{e}");
        let cases = [
            ("local_asn = 4200000001", "local_asn = 0", "bgp.local_asn"),
            (
                "local_asn = 4200000001",
                "local_asn = 23456",
                "bgp.local_asn",
            ),
            ("local_asn = 4200000001\n", "", "bgp.local_asn"),
            (
                "router_id = \"198.51.100.10\"",
                "router_id = \"0.0.0.0\"",
                "bgp.router_id",
            ),
            ("[bgp]\n", "[bgp]\nhold_time = 2\n", "bgp.hold_time"),
            ("[bgp]\n", "[bgp]\ngrace = \"2d\"\n", "bgp.grace"),
            (
                "\"2001:db8::1\"",
                "\"198.51.100.1\"",
                "bgp.neighbor.address",
            ),
            ("\"2001:db8::1\"", "\"::\"", "bgp.neighbor.address"),
            ("asn = 64512\n[[", "asn = 0\n[[", "bgp.neighbor.asn"),
            (
                "[bgp]\n",
                "[bgp]\nlisten = \"127.0.0.1:9090\"\n",
                "bgp.listen",
            ),
            (
                "asn = 64512\n[[",
                "asn = 64512\npassword = \"\"\n[[",
                "bgp.neighbor.password",
            ),
        ];
        for (from, to, field) in cases {
            let text = good.replacen(from, to, 1);
            assert_ne!(text, good, "{from}");
            let c = Config::from_toml(&text).unwrap();
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        // Protections per neighbour; a password is never shown.
        let c = Config::from_toml(&good.replacen(
            "asn = 64512\n[[",
            "asn = 64512\npassword = \"isp-secret\"\nttl_security = true\n[[",
            1,
        ))
        .unwrap();
        c.validate().unwrap();
        let n = &c.bgp.as_ref().unwrap().neighbors;
        assert_eq!(n[0].password.as_ref().unwrap().expose(), "isp-secret");
        assert!(n[0].ttl_security && !n[1].ttl_security && n[1].password.is_none());
        assert!(!format!("{c:?}").contains("isp-secret"));
        let long = format!("asn = 64512\npassword = \"{}\"\n[[", "k".repeat(81));
        let err = Config::from_toml(&good.replacen("asn = 64512\n[[", &long, 1))
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("bgp.neighbor.password"), "{err}");
        let none = format!("{base}[bgp]\nlocal_asn = 1\nrouter_id = \"198.51.100.10\"\n");
        let err = Config::from_toml(&none).unwrap().validate().unwrap_err();
        assert!(err.to_string().contains("bgp.neighbor"), "{err}");
    }
}
