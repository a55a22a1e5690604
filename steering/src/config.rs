//! steering's configuration: TOML plus command-line overrides, validated with
//! the offending field named.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use control_client::wire::{ApplianceInfo, Tier};
use serde::Deserialize;

use service::config::reject;
pub use service::config::{ConfigError, EXIT_BAD_CONFIG};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    /// The store: a `postgres://` (or `postgresql://`) URL for a PostgreSQL
    /// database several instances share, or else the path of a SQLite file
    /// (the embedded default).
    pub database: String,
    /// Connections this instance keeps open to PostgreSQL at most (unused on
    /// SQLite). Requests beyond them queue in steering, which is cheaper than
    /// PostgreSQL running more backends than it has cores.
    pub database_connections: usize,
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
    /// Base URL of this service as players reach it (manifest, steering and
    /// licence URLs are built on it). Unset: taken from each request's `Host`.
    pub public_url: Option<String>,
    /// Last-resort source after every appliance: any HTTP(S) server holding the
    /// packaged tree (URLs to it are signed like an appliance's).
    pub origin_url: Option<String>,
    /// Peers whose `X-Forwarded-For` is believed (load balancers in front of us).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// A directory served read-only under `/player/` (a web player page and its
    /// scripts), so a browser player shares steering's origin.
    pub player_dir: Option<PathBuf>,
    pub play: PlayConfig,
    pub steer: SteerConfig,
    pub bookmarks: BookmarksConfig,
    pub recommendations: RecommendationsConfig,
    pub recommender: RecommenderConfig,
    /// Subscription plans.
    #[serde(rename = "plan")]
    pub plans: Vec<PlanConfig>,
    /// Device profiles: what a class of player can decode.
    #[serde(rename = "device")]
    pub devices: Vec<DeviceConfig>,
    /// Client networks: prefix → ASN, region and location, for steering clients
    /// outside every embedded appliance's prefixes.
    #[serde(rename = "network")]
    pub networks: Vec<NetworkConfig>,
    /// Autonomous systems → region, for clients mapped by the origin ASN of
    /// their prefix in an imported RIB (`steering bgp import-rib`).
    #[serde(rename = "asn")]
    pub asns: Vec<AsnConfig>,
    pub fill: FillConfig,
    pub history: HistoryConfig,
    pub instance: InstanceConfig,
    pub drm: DrmConfig,
    /// How many new plays are decided at once, and how fast one client or
    /// account may start them (`viewers::admission`).
    pub admission: AdmissionConfig,
}

/// `[admission]`: admission control on `POST /v1/play`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Off: every play is decided, however many arrive.
    pub enabled: bool,
    /// Plays decided at once, at most (the adaptive limit's ceiling).
    pub max_concurrent: usize,
    /// The adaptive limit's floor.
    pub min_concurrent: usize,
    /// A play should be decided within this; while plays take longer the
    /// limit shrinks.
    #[serde(with = "humantime_serde")]
    pub target_latency: Duration,
    /// `Retry-After` given with a refusal: this, spread up to twice it.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// New plays per minute from one client address (0: no limit), and the
    /// burst allowed above that pace. Many viewers share an address behind
    /// CGNAT: set it for the largest such pool.
    pub client_plays_per_min: u32,
    pub client_burst: u32,
    /// New plays per minute per account (0: no limit), and the burst.
    pub account_plays_per_min: u32,
    pub account_burst: u32,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            enabled: true,
            max_concurrent: 64,
            min_concurrent: 4,
            target_latency: Duration::from_millis(50),
            retry_after: Duration::from_secs(2),
            client_plays_per_min: 0,
            client_burst: 60,
            account_plays_per_min: 0,
            account_burst: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DrmConfig {
    /// The key-encryption key content keys are sealed under: a file of 64
    /// hex digits readable by its owner only (`openssl rand -hex 32`). Needed
    /// to import protected titles and to issue their licences; unset, only
    /// clear titles import and every licence request is refused.
    pub key_file: Option<std::path::PathBuf>,
    /// Licences one play may obtain (a player asks once per session; a few
    /// more cover reloads and retries).
    pub max_licences: u32,
    /// Commercial key systems whose licence requests steering checks like
    /// Clear Key's (the play, its expiry, its limit) and then forwards.
    pub proxy: Vec<LicenceProxy>,
}

impl Default for DrmConfig {
    fn default() -> Self {
        DrmConfig {
            key_file: None,
            max_licences: 8,
            proxy: Vec::new(),
        }
    }
}

/// One commercial key system's licence server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenceProxy {
    /// The EME key system players name (`com.widevine.alpha`,
    /// `com.microsoft.playready`, `com.apple.fps`): the last segment of the
    /// proxied licence URL.
    pub key_system: String,
    /// The licence server's URL; the player's challenge is POSTed there as is.
    pub url: String,
    /// This service's credential with that server, sent as
    /// `Authorization: Bearer …`: a file readable by its owner only.
    pub credential_file: std::path::PathBuf,
    #[serde(default = "default_proxy_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_proxy_timeout() -> Duration {
    Duration::from_secs(5)
}

/// This instance, among several sharing one store (see `fleet::cluster`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InstanceConfig {
    /// Unique among the instances sharing the store; default: the host name
    /// and process id.
    pub id: Option<String>,
    /// The control-plane region this instance runs in: appliances of this
    /// region are polled from here while it has a live instance.
    pub region: String,
    /// How often this instance shares what it learned and takes what the
    /// others did: the bound on how stale one instance's view of another's
    /// changes is.
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        InstanceConfig {
            id: None,
            region: String::new(),
            sync_interval: Duration::from_millis(500),
        }
    }
}

impl InstanceConfig {
    pub fn id(&self) -> String {
        self.id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "steering".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

/// How long the store keeps what only matters for a while; pruned in the
/// background (`store::prune_loop`), so no play pays for history.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Streams last seen longer ago than this are dropped. At least
    /// `play.token_lifetime`: a play's manifests are rebuilt from its stream.
    #[serde(with = "humantime_serde")]
    pub keep_streams: Duration,
    /// Plays (the demand log) older than this are dropped. At least
    /// `fill.lookback` and the home rows' week.
    #[serde(with = "humantime_serde")]
    pub keep_plays: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            keep_streams: Duration::from_secs(86_400),
            keep_plays: Duration::from_secs(30 * 86_400),
        }
    }
}

/// Fill planning: what each appliance is told to hold (see `fillplan`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FillConfig {
    /// Titles released within this long from now are launches: they rank first
    /// and are filled at once, so a launch is on the disks before its viewers.
    #[serde(with = "humantime_serde")]
    pub horizon: Duration,
    /// Fraction of an appliance's `storage_bytes` kept free (filesystem
    /// overhead, objects in flight, eviction slack).
    pub headroom: f64,
    /// Off-peak window `HH:MM-HH:MM`, for appliances without their own
    /// `fill_window` (in UTC unless the appliance sets `utc_offset`).
    pub window: String,
    /// How long the signed source URLs in a plan work; appliances fetch a new
    /// plan well before.
    #[serde(with = "humantime_serde")]
    pub plan_ttl: Duration,
    /// Popularity decay: a play this old counts half as much as one now.
    #[serde(with = "humantime_serde")]
    pub half_life: Duration,
    /// Plays older than this are not considered at all (popularity planner).
    #[serde(with = "humantime_serde")]
    pub lookback: Duration,
    /// Which planner fills disks: `forecast` (the demand forecast, placed per
    /// site) or `popularity` (decayed plays, each appliance on its own).
    pub planner: FillPlanner,
    /// Forecast planner: appliances of a site that hold a title outside the
    /// head (the head is on every one).
    pub replicas: usize,
    /// Forecast planner: the most watched titles making up this share of a
    /// site's expected bytes are the head.
    pub head_share: f64,
    /// Forecast planner: embedded appliances start fetching a launch spread
    /// over this long, so parents and the origin are not all asked at once.
    #[serde(with = "humantime_serde")]
    pub launch_stagger: Duration,
    /// Forecast planner: a launch's expected first-day plays, relative to the
    /// region's most watched title, when its `title.toml` sets no `audience`.
    pub launch_audience: f64,
    /// Forecast planner: how long a forecast (and the placement made from it)
    /// is reused before plays are read again.
    #[serde(with = "humantime_serde")]
    pub forecast_refresh: Duration,
}

/// The fill planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FillPlanner {
    Forecast,
    Popularity,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlayConfig {
    /// How long the signed URLs in a manifest stay valid.
    #[serde(with = "humantime_serde")]
    pub token_lifetime: Duration,
    /// A stream stops counting against the plan's limit after this long without
    /// a bookmark update.
    #[serde(with = "humantime_serde")]
    pub stream_timeout: Duration,
    /// While the store is unreachable, accounts, profiles and titles read
    /// within this long are recalled from memory so plays go on (marked
    /// degraded); zero turns that off.
    #[serde(with = "humantime_serde")]
    pub outage_grace: Duration,
    /// How long players may cache a content-steering answer.
    #[serde(with = "humantime_serde")]
    pub steering_ttl: Duration,
    /// Bind tokens to the client's address (breaks viewers whose address changes
    /// mid-session, e.g. mobile handover; off by default).
    pub bind_client: bool,
    /// Prefer an appliance's HTTPS URL when it has one.
    pub prefer_https: bool,
    /// Playback heartbeats' writes (the stream's last sighting, the
    /// position) are batched and written this often (`viewers::beats`).
    #[serde(with = "humantime_serde")]
    pub heartbeat_flush: Duration,
    /// A title's position from heartbeats is written at most this often per
    /// profile (the latest waits in memory meanwhile; a play started on this
    /// instance resumes from it).
    #[serde(with = "humantime_serde")]
    pub heartbeat_position_every: Duration,
    /// Plays kept in memory for their heartbeats (least recently used
    /// dropped first; a dropped one is read from the store again).
    pub heartbeat_plays: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SteerConfig {
    /// At or above this utilisation an appliance takes no new viewers.
    pub max_utilisation: f64,
    /// This many km of distance weigh as much as a fully loaded appliance.
    pub km_per_utilisation: f64,
    /// Load reports older than this are not trusted.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// Fallback appliances handed out besides the primary.
    pub fallbacks: usize,
    /// The fleet snapshot decisions run on is rebuilt at most this often.
    #[serde(with = "humantime_serde")]
    pub snapshot_refresh: Duration,
    /// Players' measurements of an appliance from a client network weigh
    /// half after this long (see `fleet::measure`).
    #[serde(with = "humantime_serde")]
    pub measure_half_life: Duration,
    /// Client networks whose measurements are kept (the least recently
    /// reported go first).
    pub measure_networks: usize,
    /// A path (client network, appliance) players measured below this many
    /// Mbit/s, with at least `min_path_confidence`, takes no new viewers
    /// from that network: they go to the next best, and content steering
    /// moves those already playing.
    pub min_path_mbps: f64,
    pub min_path_confidence: f64,
    /// A path measured at or above this many Mbit/s has all the throughput a
    /// play needs; below, its shortfall counts against it in the score (a
    /// path at half of it as much as utilisation 0.5), weighted by confidence.
    pub good_path_mbps: f64,
    /// BGP communities (`"asn:value"`, large `"global:data1:data2"`) with which
    /// an ISP marks a prefix "serve from this appliance only as a fallback":
    /// its viewers go to the ISP's other appliances for that prefix first.
    pub fallback_communities: Vec<String>,
}

/// Whether `c` is a community as BGP carries it: `0-65535:0-65535`, or a
/// large one, `u32:u32:u32`.
pub fn valid_community(c: &str) -> bool {
    let parts: Vec<&str> = c.split(':').collect();
    let numbers = match parts[..] {
        [a, b] => a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok(),
        [a, b, d] => [a, b, d].iter().all(|p| p.parse::<u32>().is_ok()),
        _ => false,
    };
    // Canonical numbers only ("064500:1" would never match what oca reports).
    numbers
        && parts
            .iter()
            .all(|p| *p == "0" || !p.starts_with(['0', '+']))
}

/// How a dependency call is guarded: a timeout and a circuit breaker (read
/// from the `[bookmarks]` and `[recommendations]` tables).
#[derive(Debug, Clone, Copy)]
pub struct GuardConfig {
    pub timeout: Duration,
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long an open breaker fails fast before one trial call.
    pub cool_down: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BookmarksConfig {
    /// The bookmark store, kept apart from the main one so it can fail (or
    /// move to its own service) without taking plays down: a SQLite file or a
    /// postgres:// URL. Default: `bookmarks.db` beside a SQLite `database`,
    /// or the same PostgreSQL database (a table of its own, reached through
    /// its own pool and guard), so every instance sees the same positions.
    pub database: Option<String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long an open breaker fails fast before one trial call.
    #[serde(with = "humantime_serde")]
    pub cool_down: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecommendationsConfig {
    /// The personalised rows backend (`GET URL?user=&profile=&region=`); unset:
    /// home rows are always the popular-in-region fallback.
    pub url: Option<String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub failures: u32,
    #[serde(with = "humantime_serde")]
    pub cool_down: Duration,
    /// A profile's rows are asked for again after this long; until then
    /// they are served from steering's cache.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// When the backend fails, a profile's last good rows are served
    /// (marked stale) up to this old; after that, the regional fallback.
    #[serde(with = "humantime_serde")]
    pub stale_for: Duration,
    /// Profiles whose rows are cached (least recently used leave first).
    pub cache_entries: usize,
}

/// `steering recommender`: the recommendation service (see `reco`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecommenderConfig {
    pub listen: SocketAddr,
    /// The model is trained again this often (and at start).
    #[serde(with = "humantime_serde")]
    pub retrain_every: Duration,
    /// Plays this far back are learned from.
    #[serde(with = "humantime_serde")]
    pub lookback: Duration,
    /// At most this many plays (the newest) are learned from.
    pub max_events: u32,
    /// Titles per row.
    pub per_row: usize,
    /// "Trending" weighs a play half after this long.
    #[serde(with = "humantime_serde")]
    pub trending_half_life: Duration,
    /// "New releases": titles released within this.
    #[serde(with = "humantime_serde")]
    pub new_for: Duration,
}

impl Default for RecommenderConfig {
    fn default() -> Self {
        RecommenderConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7100)),
            retrain_every: Duration::from_secs(3600),
            lookback: Duration::from_secs(30 * 86_400),
            max_events: 2_000_000,
            per_row: 20,
            trending_half_life: Duration::from_secs(2 * 86_400),
            new_for: Duration::from_secs(30 * 86_400),
        }
    }
}

impl BookmarksConfig {
    pub fn guard(&self) -> GuardConfig {
        GuardConfig {
            timeout: self.timeout,
            failures: self.failures,
            cool_down: self.cool_down,
        }
    }
}

impl RecommendationsConfig {
    pub fn guard(&self) -> GuardConfig {
        GuardConfig {
            timeout: self.timeout,
            failures: self.failures,
            cool_down: self.cool_down,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    pub name: String,
    /// Tallest video rendition (pixels) the plan allows.
    pub max_height: u64,
    /// Concurrent streams per account.
    pub max_streams: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub name: String,
    /// Codec families the device decodes (`avc1`, `hvc1`, `mp4a`, ...): every
    /// codec of a rendition's CODECS must start with one of them.
    pub codecs: Vec<String>,
    pub max_height: u64,
    /// Manifest formats it plays (`hls`, `dash`).
    #[serde(default = "both_protocols")]
    pub protocols: Vec<String>,
}

fn both_protocols() -> Vec<String> {
    vec!["hls".into(), "dash".into()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsnConfig {
    pub number: u32,
    pub region: String,
    /// `[latitude, longitude]` in degrees.
    pub location: Option<[f64; 2]>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    pub prefix: ipnet::IpNet,
    #[serde(default)]
    pub asn: u32,
    pub region: String,
    /// `[latitude, longitude]` in degrees.
    pub location: Option<[f64; 2]>,
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
    /// This instance's bearer token for the appliances' admin listeners
    /// (their `admin.callers_file` lists it with `health`).
    pub admin_token_file: Option<PathBuf>,
    /// CA bundle for admin listeners served over TLS with a private CA.
    pub admin_ca_file: Option<PathBuf>,
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
    /// A new key is published this long before it signs anything, so every
    /// appliance has it (next heartbeat) before the first URL signed with it
    /// arrives. At most half of `rotate_every`.
    #[serde(with = "humantime_serde")]
    pub publish_ahead: Duration,
}

impl KeysConfig {
    /// `publish_ahead`, capped at half of `rotate_every`.
    pub fn lead(&self) -> Duration {
        self.publish_ahead.min(self.rotate_every / 2)
    }
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
    /// Client prefixes an embedded appliance serves (its ISP's customers).
    #[serde(default)]
    pub serves: Vec<ipnet::IpNet>,
    /// `[latitude, longitude]` in degrees.
    pub location: Option<[f64; 2]>,
    /// The appliance's own off-peak window, `HH:MM-HH:MM` in its local time
    /// (unset: `fill.window`).
    pub fill_window: Option<String>,
    /// Local time = UTC + this, `+HH:MM` or `-HH:MM`.
    #[serde(default = "utc")]
    pub utc_offset: String,
}

fn utc() -> String {
    "+00:00".into()
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
            storage_bytes: 0,
            version: String::new(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7000)),
            database: "steering.db".into(),
            database_connections: 16,
            heartbeat_interval: Duration::from_secs(5),
            max_body_bytes: 4 << 20,
            health: HealthConfig::default(),
            keys: KeysConfig::default(),
            appliances: Vec::new(),
            public_url: None,
            origin_url: None,
            trusted_proxies: Vec::new(),
            player_dir: None,
            play: PlayConfig::default(),
            steer: SteerConfig::default(),
            bookmarks: BookmarksConfig::default(),
            recommendations: RecommendationsConfig::default(),
            recommender: RecommenderConfig::default(),
            plans: vec![
                PlanConfig {
                    name: "basic".into(),
                    max_height: 540,
                    max_streams: 1,
                },
                PlanConfig {
                    name: "standard".into(),
                    max_height: 1080,
                    max_streams: 2,
                },
                PlanConfig {
                    name: "premium".into(),
                    max_height: 2160,
                    max_streams: 4,
                },
            ],
            devices: vec![
                DeviceConfig {
                    name: "browser".into(),
                    codecs: vec!["avc1".into(), "mp4a".into()],
                    max_height: 1080,
                    protocols: both_protocols(),
                },
                DeviceConfig {
                    name: "tv".into(),
                    codecs: vec!["avc1".into(), "hvc1".into(), "mp4a".into(), "ec-3".into()],
                    max_height: 2160,
                    protocols: both_protocols(),
                },
                DeviceConfig {
                    name: "phone".into(),
                    codecs: vec!["avc1".into(), "hvc1".into(), "mp4a".into()],
                    max_height: 720,
                    protocols: vec!["hls".into()],
                },
            ],
            networks: Vec::new(),
            asns: Vec::new(),
            fill: FillConfig::default(),
            history: HistoryConfig::default(),
            drm: DrmConfig::default(),
            admission: AdmissionConfig::default(),
            instance: InstanceConfig::default(),
        }
    }
}

impl Default for FillConfig {
    fn default() -> Self {
        FillConfig {
            horizon: Duration::from_secs(48 * 3600),
            headroom: 0.10,
            window: "02:00-06:00".into(),
            plan_ttl: Duration::from_secs(24 * 3600),
            half_life: Duration::from_secs(24 * 3600),
            lookback: Duration::from_secs(7 * 24 * 3600),
            planner: FillPlanner::Forecast,
            replicas: 1,
            head_share: 0.5,
            launch_stagger: Duration::from_secs(2 * 3600),
            launch_audience: 0.5,
            forecast_refresh: Duration::from_secs(600),
        }
    }
}

impl Default for PlayConfig {
    fn default() -> Self {
        PlayConfig {
            token_lifetime: Duration::from_secs(6 * 3600),
            stream_timeout: Duration::from_secs(120),
            outage_grace: Duration::from_secs(600),
            steering_ttl: Duration::from_secs(10),
            bind_client: false,
            prefer_https: true,
            heartbeat_flush: Duration::from_secs(1),
            heartbeat_position_every: Duration::from_secs(10),
            heartbeat_plays: 200_000,
        }
    }
}

impl Default for SteerConfig {
    fn default() -> Self {
        SteerConfig {
            max_utilisation: 0.85,
            km_per_utilisation: 5000.0,
            stale_after: Duration::from_secs(30),
            fallbacks: 2,
            snapshot_refresh: Duration::from_millis(500),
            fallback_communities: Vec::new(),
            measure_half_life: Duration::from_secs(600),
            measure_networks: 10_000,
            min_path_mbps: 8.0,
            min_path_confidence: 0.5,
            good_path_mbps: 25.0,
        }
    }
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            timeout: Duration::from_millis(250),
            failures: 5,
            cool_down: Duration::from_secs(10),
        }
    }
}

impl Default for BookmarksConfig {
    fn default() -> Self {
        let g = GuardConfig::default();
        BookmarksConfig {
            database: None,
            timeout: g.timeout,
            failures: g.failures,
            cool_down: g.cool_down,
        }
    }
}

impl Default for RecommendationsConfig {
    fn default() -> Self {
        let g = GuardConfig::default();
        RecommendationsConfig {
            url: None,
            timeout: g.timeout,
            failures: g.failures,
            cool_down: g.cool_down,
            cache_ttl: Duration::from_secs(300),
            stale_for: Duration::from_secs(86_400),
            cache_entries: 100_000,
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
            admin_token_file: None,
            admin_ca_file: None,
        }
    }
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            rotate_every: Duration::from_secs(24 * 3600),
            lifetime: Duration::from_secs(3 * 24 * 3600),
            publish_ahead: Duration::from_secs(600),
        }
    }
}

impl Config {
    /// Where the bookmark store is: `bookmarks.database` (a relative path is
    /// relative to the main database's directory, not to wherever steering
    /// was started from), else beside the main store.
    pub fn bookmarks_location(&self) -> crate::store::Location {
        use crate::store::Location;
        let main = Location::parse(&self.database);
        let dir = |db: &Path| db.parent().map(Path::to_path_buf).unwrap_or_default();
        match (&self.bookmarks.database, main) {
            (None, Location::Sqlite(db)) => Location::Sqlite(dir(&db).join("bookmarks.db")),
            (None, Location::Postgres(url)) => Location::Postgres(url),
            (Some(b), main) => match Location::parse(b) {
                Location::Sqlite(p) if p.is_relative() => match main {
                    Location::Sqlite(db) => Location::Sqlite(dir(&db).join(p)),
                    Location::Postgres(_) => Location::Sqlite(p),
                },
                other => other,
            },
        }
    }

    /// How long a fill plan's URLs work: `fill.plan_ttl`, shortened to what the
    /// signing key is sure to live (the newest key is at most `rotate_every`
    /// old, so it verifies for at least `lifetime - rotate_every` more).
    pub fn fill_plan_ttl(&self) -> Duration {
        self.fill
            .plan_ttl
            .min(self.keys.lifetime.saturating_sub(self.keys.rotate_every))
            .max(Duration::from_secs(60))
    }

    /// Read and parse a TOML file (without validating it).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        service::config::from_file(path)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let a = &self.admission;
        if a.min_concurrent == 0 || a.max_concurrent < a.min_concurrent {
            return reject(
                "admission",
                "min_concurrent at least 1 and max_concurrent at least min_concurrent",
            );
        }
        if a.target_latency.is_zero() || a.retry_after < Duration::from_secs(1) {
            return reject(
                "admission",
                "target_latency above zero and retry_after at least 1s",
            );
        }
        if !(1..=1000).contains(&self.drm.max_licences) {
            return reject("drm.max_licences", "must be 1 to 1000");
        }
        for (i, p) in self.drm.proxy.iter().enumerate() {
            let valid = p.key_system.len() <= 64
                && !p.key_system.is_empty()
                && p.key_system
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !valid || p.key_system == "org.w3.clearkey" {
                return reject(
                    "drm.proxy.key_system",
                    format!(
                        "{:?}: a commercial key system name (Clear Key is served here)",
                        p.key_system
                    ),
                );
            }
            if self.drm.proxy[..i]
                .iter()
                .any(|q| q.key_system == p.key_system)
            {
                return reject("drm.proxy.key_system", format!("{:?} twice", p.key_system));
            }
            if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
                return reject("drm.proxy.url", "an http:// or https:// URL");
            }
            if p.timeout.is_zero() || p.timeout > Duration::from_secs(60) {
                return reject("drm.proxy.timeout", "between 1ms and 60s");
            }
            if let Err(e) = crate::drm::read_credential(&p.credential_file) {
                return reject("drm.proxy.credential_file", e.to_string());
            }
        }
        if let Some(path) = &self.drm.key_file
            && let Err(e) = crate::drm::Kek::load(path)
        {
            return reject("drm.key_file", e.to_string());
        }
        if self.database.is_empty() {
            return reject("database", "must name a SQLite file or a postgres:// URL");
        }
        if let crate::store::Location::Postgres(url) = crate::store::Location::parse(&self.database)
        {
            crate::store::check_url(&url).or_else(|e| reject("database", &e))?;
        }
        if self.database_connections == 0 || self.database_connections > 1000 {
            return reject("database_connections", "must be 1 to 1000");
        }
        if self.heartbeat_interval.is_zero() {
            return reject("heartbeat_interval", "must be greater than zero");
        }
        if self.max_body_bytes < 1024 {
            return reject("max_body_bytes", "must be at least 1024");
        }
        if self.health.interval.is_zero() || self.health.timeout.is_zero() {
            return reject("health", "interval and timeout must be greater than zero");
        }
        if self.health.down_after == 0 || self.health.up_after == 0 {
            return reject("health", "down_after and up_after must be at least 1");
        }
        if let Some(p) = &self.health.admin_token_file
            && let Err(e) = control_client::read_token(p)
        {
            return reject("health.admin_token_file", format!("{}: {e}", p.display()));
        }
        if self.keys.lifetime <= self.keys.rotate_every {
            return reject(
                "keys.lifetime",
                "must be longer than keys.rotate_every, so keys overlap",
            );
        }
        for (field, url) in [
            ("public_url", &self.public_url),
            ("origin_url", &self.origin_url),
            ("recommendations.url", &self.recommendations.url),
        ] {
            if let Some(u) = url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                return reject(field, "must be an http:// or https:// URL");
            }
        }
        if self.play.token_lifetime < Duration::from_secs(60) {
            return reject("play.token_lifetime", "must be at least 1 minute");
        }
        if self.play.stream_timeout.is_zero() || self.play.steering_ttl.is_zero() {
            return reject(
                "play",
                "stream_timeout and steering_ttl must be greater than zero",
            );
        }
        if !(self.steer.max_utilisation > 0.0 && self.steer.max_utilisation <= 1.0) {
            return reject("steer.max_utilisation", "must be in (0, 1]");
        }
        if self.steer.km_per_utilisation <= 0.0 || !self.steer.km_per_utilisation.is_finite() {
            return reject("steer.km_per_utilisation", "must be a positive number");
        }
        let (mbps, sure) = (self.steer.min_path_mbps, self.steer.min_path_confidence);
        let good = self.steer.good_path_mbps;
        if !(mbps >= 0.0 && mbps.is_finite() && (0.0..=1.0).contains(&sure)) {
            return reject(
                "steer",
                "min_path_mbps a number from 0, min_path_confidence from 0 to 1",
            );
        }
        if !(good >= 0.0 && good.is_finite()) {
            return reject("steer.good_path_mbps", "must be a number from 0");
        }
        if self.steer.measure_half_life < Duration::from_secs(1) || self.steer.measure_networks == 0
        {
            return reject(
                "steer",
                "measure_half_life at least 1s and measure_networks at least 1",
            );
        }
        if let Some(c) = self
            .steer
            .fallback_communities
            .iter()
            .find(|c| !valid_community(c))
        {
            return reject(
                "steer.fallback_communities",
                format!("{c:?}: use ASN:VALUE (each 0-65535) or GLOBAL:DATA1:DATA2 (large)"),
            );
        }
        let r = &self.recommender;
        if r.retrain_every.is_zero() || r.lookback.is_zero() || r.trending_half_life.is_zero() {
            return reject(
                "recommender",
                "retrain_every, lookback and trending_half_life must be greater than zero",
            );
        }
        if r.max_events == 0 || r.per_row == 0 || r.per_row > 100 {
            return reject("recommender", "max_events at least 1, per_row 1 to 100");
        }
        if self.recommendations.cache_entries == 0 {
            return reject("recommendations.cache_entries", "at least 1");
        }
        for (field, g) in [
            ("bookmarks", self.bookmarks.guard()),
            ("recommendations", self.recommendations.guard()),
        ] {
            if g.timeout.is_zero() || g.failures == 0 {
                return reject(
                    field,
                    "timeout must be greater than zero and failures at least 1",
                );
            }
        }
        match self.bookmarks.database.as_deref() {
            Some("") => {
                return reject(
                    "bookmarks.database",
                    "must name a SQLite file or a postgres:// URL",
                );
            }
            Some(b) => {
                if let crate::store::Location::Postgres(url) = crate::store::Location::parse(b) {
                    crate::store::check_url(&url).or_else(|e| reject("bookmarks.database", &e))?;
                }
            }
            None => {}
        }
        for (i, p) in self.plans.iter().enumerate() {
            if !valid_id(&p.name) || self.plans[..i].iter().any(|o| o.name == p.name) {
                return reject("plan.name", "plain and unique (A-Z a-z 0-9 - _ .)");
            }
            if p.max_streams == 0 || p.max_height == 0 {
                return reject("plan", "max_streams and max_height must be at least 1");
            }
        }
        for (i, d) in self.devices.iter().enumerate() {
            if !valid_id(&d.name) || self.devices[..i].iter().any(|o| o.name == d.name) {
                return reject("device.name", "plain and unique (A-Z a-z 0-9 - _ .)");
            }
            if d.codecs.is_empty() || d.max_height == 0 {
                return reject(
                    "device",
                    "codecs must not be empty and max_height at least 1",
                );
            }
            if d.protocols.is_empty() || d.protocols.iter().any(|p| p != "hls" && p != "dash") {
                return reject(
                    "device.protocols",
                    "a non-empty list of \"hls\" and \"dash\"",
                );
            }
        }
        for (i, a) in self.asns.iter().enumerate() {
            if a.region.is_empty() || self.asns[..i].iter().any(|o| o.number == a.number) {
                return reject("asn", "each number once, with a region");
            }
            if a.location.is_some_and(|l| !valid_location(l)) {
                return reject("asn.location", "[latitude, longitude] in degrees");
            }
        }
        for n in &self.networks {
            if n.region.is_empty() {
                return reject("network.region", "must not be empty");
            }
            if n.location.is_some_and(|l| !valid_location(l)) {
                return reject("network.location", "[latitude, longitude] in degrees");
            }
        }
        for (i, a) in self.appliances.iter().enumerate() {
            if a.location.is_some_and(|l| !valid_location(l)) {
                return reject("appliance.location", "[latitude, longitude] in degrees");
            }
            if !valid_id(&a.id) {
                return reject("appliance.id", "use 1-64 of A-Z a-z 0-9 - _ .");
            }
            if self.appliances[..i].iter().any(|o| o.id == a.id) {
                return reject("appliance.id", "listed twice");
            }
            if a.credential.len() < 16 {
                return reject("appliance.credential", "at least 16 characters");
            }
            if a.capacity_bps == 0 {
                return reject("appliance.capacity_bps", "must be greater than zero");
            }
            if let Some(w) = &a.fill_window
                && let Err(e) = crate::fleet::fillplan::parse_window(w)
            {
                return reject("appliance.fill_window", e.to_string());
            }
            if let Err(e) = crate::fleet::fillplan::parse_utc_offset(&a.utc_offset) {
                return reject("appliance.utc_offset", e.to_string());
            }
        }
        self.validate_fill()
    }

    fn validate_fill(&self) -> Result<(), ConfigError> {
        let f = &self.fill;
        if !(0.0..1.0).contains(&f.headroom) {
            return reject("fill.headroom", "a fraction in [0, 1)");
        }
        if let Err(e) = crate::fleet::fillplan::parse_window(&f.window) {
            return reject("fill.window", e.to_string());
        }
        if f.plan_ttl < Duration::from_secs(60) {
            return reject("fill.plan_ttl", "must be at least 1 minute");
        }

        if f.half_life.is_zero() {
            return reject("fill.half_life", "must be greater than zero");
        }
        if f.lookback.is_zero() {
            return reject("fill.lookback", "must be greater than zero");
        }
        if !(1..=64).contains(&f.replicas) {
            return reject("fill.replicas", "must be 1 to 64");
        }
        if !(0.0..=1.0).contains(&f.head_share) {
            return reject("fill.head_share", "a fraction in [0, 1]");
        }
        if f.launch_stagger > Duration::from_secs(24 * 3600) {
            return reject("fill.launch_stagger", "must be at most 24h");
        }
        if !(0.0..=100.0).contains(&f.launch_audience) {
            return reject("fill.launch_audience", "must be between 0 and 100");
        }
        if f.forecast_refresh < Duration::from_secs(1)
            || f.forecast_refresh > Duration::from_secs(86_400)
        {
            return reject("fill.forecast_refresh", "must be between 1s and 24h");
        }
        if self.instance.sync_interval < Duration::from_millis(50)
            || self.instance.sync_interval > Duration::from_secs(60)
        {
            return reject("instance.sync_interval", "must be between 50ms and 60s");
        }
        if self.instance.id.as_deref().is_some_and(|id| !valid_id(id)) {
            return reject("instance.id", "use 1-64 of A-Z a-z 0-9 - _ .");
        }
        if self.history.keep_streams < self.play.token_lifetime {
            return reject(
                "history.keep_streams",
                "must be at least play.token_lifetime (manifests are rebuilt from the stream)",
            );
        }
        let week = Duration::from_secs(7 * 86_400);
        if self.history.keep_plays < f.lookback.max(week) {
            return reject(
                "history.keep_plays",
                "must be at least fill.lookback and 7 days (home rows read a week)",
            );
        }
        Ok(())
    }
}

fn valid_location([lat, lon]: [f64; 2]) -> bool {
    (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)
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
