//! Command-line interface: options, their validation, and the translation of a
//! workload's options into a [`Plan`] for one target.
//!
//! Every bad input is caught here or when the catalogue is loaded, before any
//! connection is made, and ends as one line on stderr.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{ArgGroup, Args, Parser, Subcommand};
use serde::Serialize;

use crate::catalogue::Catalogue;
use crate::client::Plan;
use crate::report::Setup;
use crate::run::Control;
use crate::target::Target;
use crate::tls::{self, Trust};
use crate::zipf::Popularity;

/// Load generator for HTTP segment servers (video CDN appliances).
#[derive(Debug, Parser)]
#[command(name = "oca-bench", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load one server with segment requests and report throughput, latency,
    /// errors and CPU cost.
    Segments(SegmentsArgs),
    /// Run the same workload against two servers alternately, round by round,
    /// and report medians and A/B ratios.
    Compare(CompareArgs),
    /// Simulated viewers against a steering service: play, follow the HLS
    /// playlists, fetch segments at playback pace, fail over; report startup
    /// time, rebuffering and where the bytes came from.
    Players(PlayersArgs),
    /// A well-behaved client's latency against one server, calm and then under
    /// hostile clients (slowloris, a connection flood, readers that stall,
    /// deep pipelines, resets); the server's memory and descriptors; whether it
    /// still accepts afterwards.
    Hostile(HostileCliArgs),
    /// The control plane's play API under load: POST /v1/play for many
    /// accounts, closed loop or open loop at a fixed rate (latency from the
    /// intended send time), plays/s per window.
    Plays(PlaysArgs),
    /// Many simulated appliances against steering: register, heartbeat with
    /// inventory every --interval, answer its health polls.
    Appliances(AppliancesArgs),
    /// Simulated days of a fleet in seconds: a catalogue, regions, ISP sites
    /// and a viewing trace, filled by steering's planners and steered by its
    /// decision code; how much peak traffic stays inside the ISPs.
    FleetSim(crate::fleetsim::FleetSimArgs),
    /// Recommendations' quality offline on a viewing trace with profiles:
    /// recall@k and NDCG@k of popular-in-region, item-to-item and the full
    /// ranker, each profile's last new title held out.
    Reco(crate::reco::RecoArgs),
}

/// Serialised into `--results` files: every option in effect.
#[derive(Debug, Args, Serialize)]
pub struct AppliancesArgs {
    /// Steering's base URL (plain http://).
    #[arg(long, value_name = "URL")]
    pub steering: String,
    /// How many: ids PREFIX-0 … PREFIX-(COUNT-1), each declared in steering's
    /// config with credential `<id>-sim-credential`.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    #[arg(long, default_value = "sim")]
    pub prefix: String,
    #[arg(long, default_value = "eu-west")]
    pub region: String,
    /// Renditions each reports holding (comma-separated catalog ids).
    #[arg(long, default_value = "")]
    pub renditions: String,
    /// Objects per rendition in the inventory.
    #[arg(long, default_value_t = 10)]
    pub objects: u64,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "bench::results::secs")]
    pub interval: std::time::Duration,
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "bench::results::secs")]
    pub duration: std::time::Duration,
    /// Connections the heartbeats share.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Where the simulated admin listener (health polls) binds.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub admin_listen: String,
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,
}

/// Serialised into `--results` files: every option in effect.
#[derive(Debug, Args, Serialize)]
pub struct PlaysArgs {
    /// Steering's base URL (plain http://); repeatable: connections are
    /// spread over the instances round-robin.
    #[arg(long, value_name = "URL", required = true)]
    pub steering: Vec<String>,
    /// Viewer tokens, one a line, taken round-robin (`steering users seed`
    /// writes such a file).
    #[arg(long, value_name = "FILE")]
    pub tokens: PathBuf,
    /// Open loop at this many plays/s (all connections together); without
    /// it, closed loop.
    #[arg(long, value_name = "PER_S", value_parser = positive::<f64>)]
    pub rate: Option<f64>,
    /// A flash crowd (with --rate): from --surge-at the rate rises linearly
    /// to this many times --rate over --surge-over, then stays there; the
    /// report splits calm, rise and peak.
    #[arg(long, value_name = "FACTOR", value_parser = positive::<f64>, requires = "rate")]
    pub surge: Option<f64>,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "bench::results::secs")]
    pub surge_at: std::time::Duration,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "bench::results::secs")]
    pub surge_over: std::time::Duration,
    #[arg(long, default_value_t = 16, value_parser = positive::<usize>)]
    pub connections: usize,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "bench::results::secs")]
    pub duration: std::time::Duration,
    /// Throughput is reported per window of this length.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "bench::results::secs")]
    pub window: std::time::Duration,
    /// A play without an answer by then counts as an error.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "bench::results::secs")]
    pub timeout: std::time::Duration,
    #[arg(long, default_value = "t1")]
    pub title: String,
    #[arg(long, default_value = "browser")]
    pub device: String,
    #[arg(long, default_value = "main")]
    pub profile: String,
    /// Ask for home pages (`GET /v1/home?profile=`) instead of plays: the
    /// same accounts, schedule and report.
    #[arg(long)]
    pub home: bool,
    /// Source address of the plays (a client network steering knows).
    #[arg(long, value_name = "IP")]
    pub bind: Option<std::net::IpAddr>,
    /// Each play comes from an address drawn from this prefix, sent as
    /// `X-Forwarded-For` (steering must list the bench's own address in
    /// `trusted_proxies`): plays from many client networks at once.
    #[arg(long, value_name = "CIDR")]
    pub clients: Option<ipnet::IpNet>,
    /// Run this many simulated appliances alongside (PREFIX-0 …, declared in
    /// steering's config with credential `<id>-sim-credential`, as for
    /// `oca-bench appliances`): each admitted play becomes a stream on the
    /// appliance it was steered to, the appliances heartbeat the egress of
    /// their streams, and the report adds their load and heartbeat latency
    /// per phase. Plays start once steering lists them all as eligible.
    #[arg(long, default_value_t = 0)]
    pub appliances: u64,
    #[arg(long, default_value = "sim")]
    pub appliance_prefix: String,
    #[arg(long, default_value = "eu-west")]
    pub appliance_region: String,
    /// Renditions the simulated appliances hold (comma-separated catalog ids).
    #[arg(long, default_value = "")]
    pub appliance_renditions: String,
    /// Objects per rendition in their inventories.
    #[arg(long, default_value_t = 10)]
    pub appliance_objects: u64,
    /// Each simulated appliance's egress capacity.
    #[arg(long, default_value_t = 10.0, value_parser = positive::<f64>)]
    pub appliance_gbps: f64,
    /// One stream's bitrate.
    #[arg(long, default_value_t = 5.0, value_parser = positive::<f64>)]
    pub stream_mbps: f64,
    /// How often each simulated appliance heartbeats.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "bench::results::secs")]
    pub heartbeat_every: std::time::Duration,
    /// Every admitted play then sends playback heartbeats this often
    /// (`POST /v1/plays/{id}/heartbeat`, with the downloads of the segments
    /// since the last from its primary appliance), for `--watch`, and a last
    /// one saying `ended`: the play API's capacity with every active play
    /// reporting. The report adds their rate, latency and outcomes.
    #[arg(long, value_name = "TIME", value_parser = nonzero_duration)]
    #[serde(serialize_with = "bench::results::opt_secs")]
    pub play_heartbeats: Option<std::time::Duration>,
    /// How long each play watches (heartbeats) before it ends (default: to
    /// the end of the run).
    #[arg(long, value_name = "TIME", value_parser = nonzero_duration, requires = "play_heartbeats")]
    #[serde(serialize_with = "bench::results::opt_secs")]
    pub watch: Option<std::time::Duration>,
    /// Connections the heartbeats go over (apart from the plays'); enough
    /// that they are not what delays heartbeats (real players each have one).
    #[arg(long, default_value_t = 256, value_parser = positive::<usize>)]
    pub heartbeat_connections: usize,
    /// Client threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long)]
    pub json: bool,
    /// Also write the report with the options, command line, date and
    /// machine to FILE (docs/BENCHMARKS.md is rendered from such files).
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,
}

/// Serialised into `--results` files: every option in effect.
#[derive(Debug, Args, Serialize)]
pub struct HostileCliArgs {
    /// The object the well-behaved client fetches (plain http://).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// A large object the stalled readers and resets ask for (default: --url).
    #[arg(long, value_name = "URL")]
    pub big_url: Option<String>,
    /// The server process, sampled for memory, descriptors and threads.
    #[arg(long = "server-pid", value_name = "PID")]
    pub server_pid: Option<u32>,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "bench::results::secs")]
    pub calm: std::time::Duration,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "bench::results::secs")]
    pub attack: std::time::Duration,
    /// Connections trickling a request head (a header line a second).
    #[arg(long, default_value_t = 10_000)]
    pub slowloris: usize,
    /// Idle connections held open (past the server's cap, with --slowloris).
    #[arg(long, default_value_t = 3_000)]
    pub flood: usize,
    /// Connections that ask for --big-url and never read.
    #[arg(long, default_value_t = 200)]
    pub stalled: usize,
    /// Connections sending --pipeline-depth requests in one write.
    #[arg(long, default_value_t = 20)]
    pub pipelines: usize,
    #[arg(long, default_value_t = 500)]
    pub pipeline_depth: usize,
    /// Connections reset (RST) mid-response, per second.
    #[arg(long, default_value_t = 200)]
    pub resets_per_s: u32,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the report, the options, the command line, the date and the
    /// machine to FILE as JSON (docs/RELIABILITY.md is rendered from such files).
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SegmentsArgs {
    /// Base URL of the server: http[s]://host[:port][/prefix].
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// Server process whose CPU (with all its descendants) is measured; repeatable.
    #[arg(long = "server-pid", value_name = "PID")]
    pub server_pids: Vec<u32>,
    #[command(flatten)]
    pub workload: Workload,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Base URL of server A.
    #[arg(long, value_name = "URL")]
    pub a: String,
    /// Base URL of server B.
    #[arg(long, value_name = "URL")]
    pub b: String,
    /// Server A's process (CPU measured with descendants); repeatable.
    #[arg(long = "a-pid", value_name = "PID")]
    pub a_pids: Vec<u32>,
    /// Server B's process; repeatable.
    #[arg(long = "b-pid", value_name = "PID")]
    pub b_pids: Vec<u32>,
    /// Label for A in the table and JSON.
    #[arg(long = "a-name", value_name = "NAME", default_value = "A")]
    pub a_name: String,
    /// Label for B.
    #[arg(long = "b-name", value_name = "NAME", default_value = "B")]
    pub b_name: String,
    /// Rounds; each runs A then B for --duration.
    #[arg(long, value_name = "R", default_value = "3", value_parser = positive::<usize>)]
    pub rounds: usize,
    #[command(flatten)]
    pub workload: Workload,
}

#[derive(Debug, Args)]
pub struct PlayersArgs {
    /// Steering's base URL: http[s]://host[:port][/prefix]. Several (repeated
    /// or comma-separated, own region first): viewers move down the list when
    /// the instance in use refuses connections, times out or answers 502/503/504,
    /// and send the URLs one instance issued (manifests, content steering) to
    /// the next.
    #[arg(long, value_name = "URL", required = true, value_delimiter = ',')]
    pub steering: Vec<String>,
    /// Viewer token (vt_…); repeatable: viewers take them round-robin. Keep
    /// viewers per token within the account's stream limit.
    #[arg(long = "token", value_name = "TOKEN", required = true, value_parser = token)]
    pub tokens: Vec<String>,
    /// Title to play.
    #[arg(long, value_name = "ID")]
    pub title: String,
    #[arg(long, value_name = "NAME", default_value = "browser")]
    pub device: String,
    #[arg(long, value_name = "NAME", default_value = "main")]
    pub profile: String,
    /// Simultaneous viewers; each starts a new play when one ends.
    #[arg(long, value_name = "N", default_value = "1", value_parser = positive::<usize>)]
    pub viewers: usize,
    /// Length of the run, e.g. 60s, 5m.
    #[arg(long, value_name = "TIME", default_value = "60s", value_parser = nonzero_duration)]
    pub duration: Duration,
    /// End each play this long after pressing play (default: at the end of the title).
    #[arg(long, value_name = "TIME", value_parser = nonzero_duration)]
    pub watch: Option<Duration>,
    /// Start the viewers evenly over this time.
    #[arg(long, value_name = "TIME", default_value = "0s", value_parser = humantime::parse_duration)]
    pub ramp: Duration,
    /// Local addresses viewers bind to, round-robin (comma-separated or repeated).
    #[arg(
        long = "source-ip",
        value_name = "ADDR[,ADDR...]",
        value_delimiter = ','
    )]
    pub source_ips: Vec<IpAddr>,
    /// Buffer needed to start playing, and to resume after a stall (default:
    /// two segments).
    #[arg(long = "startup-buffer", value_name = "TIME", value_parser = humantime::parse_duration)]
    pub startup_buffer: Option<Duration>,
    /// Fetch segments while less than this is buffered.
    #[arg(long = "max-buffer", value_name = "TIME", default_value = "30s", value_parser = nonzero_duration)]
    pub max_buffer: Duration,
    /// Report progress this often: a heartbeat (position, state, the
    /// segments' downloads since the last), or with `--bookmarks` a bookmark.
    #[arg(long = "report-every", alias = "bookmark-every", value_name = "TIME", default_value = "5s", value_parser = nonzero_duration)]
    pub report_every: Duration,
    /// Report as players without heartbeats do: POST /v1/bookmarks, and
    /// DELETE the play at its end (default: POST /v1/plays/{id}/heartbeat,
    /// the last one saying `ended`).
    #[arg(long)]
    pub bookmarks: bool,
    /// Per-request timeout; a segment request that exceeds it fails over.
    #[arg(long, value_name = "TIME", default_value = "5s", value_parser = nonzero_duration)]
    pub timeout: Duration,
    /// Worker threads (default: number of CPUs).
    #[arg(long, value_name = "T", value_parser = positive::<usize>)]
    pub threads: Option<usize>,
    /// PEM file of CA certificates to trust for https (default: the system store).
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,
    /// https: accept any certificate (handshake signatures are still verified).
    #[arg(long)]
    pub insecure: bool,
    /// Check every init and media segment against the packaged files under
    /// DIR (the object key is the URL path after the token): a mismatch is
    /// counted as wrong bytes and the player fails over, as a player whose
    /// decoder choked would.
    #[arg(long, value_name = "DIR")]
    pub verify: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// What to request and how: shared by `segments` and `compare`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["keys", "dir", "catalogue"])))]
pub struct Workload {
    /// Catalogue as lines `key size [sha256hex]`.
    #[arg(long, value_name = "FILE")]
    pub keys: Option<PathBuf>,
    /// Catalogue from the files under DIR (or DIR/objects for an oca disk root).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Catalogue as JSON {"objects":[{"key","size","sha256"}]}.
    #[arg(long, value_name = "FILE")]
    pub catalogue: Option<PathBuf>,
    /// Zipf exponent of object popularity; 0 = uniform.
    #[arg(
        long,
        value_name = "S",
        default_value = "1.0",
        allow_negative_numbers = true,
        value_parser = zipf_exponent
    )]
    pub zipf: f64,
    /// Seed for the popularity ranking and the request sequence.
    #[arg(long, value_name = "N", default_value = "1")]
    pub seed: u64,
    /// Request byte ranges of this size (e.g. 262144 or 256KiB) instead of whole objects.
    #[arg(long = "range-size", value_name = "BYTES", value_parser = byte_size)]
    pub range_size: Option<u64>,
    /// Keep-alive connections.
    #[arg(long, value_name = "N", default_value = "64", value_parser = positive::<usize>)]
    pub connections: usize,
    /// Worker threads (default: number of CPUs).
    #[arg(long, value_name = "T", value_parser = positive::<usize>)]
    pub threads: Option<usize>,
    /// Open loop: total requests per second on a fixed schedule (default: closed loop).
    #[arg(long, value_name = "R", value_parser = positive::<f64>)]
    pub rate: Option<f64>,
    /// Measured time, e.g. 10s, 500ms, 2m.
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = nonzero_duration)]
    pub duration: Duration,
    /// Unrecorded time before measuring.
    #[arg(long, value_name = "TIME", default_value = "0s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Per-request timeout (connect, then response).
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = nonzero_duration)]
    pub timeout: Duration,
    /// Source addresses, spread over connections round-robin (comma-separated or repeated).
    #[arg(long, value_name = "ADDR[,ADDR...]", value_delimiter = ',')]
    pub bind: Vec<IpAddr>,
    /// PEM file of CA certificates to trust for https (default: the system store).
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,
    /// https: accept any certificate (handshake signatures are still verified).
    #[arg(long)]
    pub insecure: bool,
    /// https: TLS 1.2 instead of 1.3.
    #[arg(long)]
    pub tls12: bool,
    /// Do not check SHA-256 of whole-object bodies against the catalogue.
    #[arg(long = "no-hash")]
    pub no_hash: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

impl Workload {
    pub fn load_catalogue(&self) -> Result<Catalogue> {
        match (&self.keys, &self.dir, &self.catalogue) {
            (Some(p), _, _) => Catalogue::from_keys_file(p),
            (_, Some(p), _) => Catalogue::from_dir(p),
            (_, _, Some(p)) => Catalogue::from_json_file(p),
            _ => bail!("give --keys, --dir or --catalogue"),
        }
    }

    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        })
    }

    /// Everything connections to `url` need, resolved and validated.
    pub fn plan(&self, url: &str, catalogue: &Catalogue) -> Result<Arc<Plan>> {
        let target = Target::parse(url)?;
        let addr = target.resolve(self.bind.first().copied())?;
        if let Some(b) = self.bind.iter().find(|b| b.is_ipv4() != addr.is_ipv4()) {
            bail!("--bind {b} cannot reach {addr}: address families differ");
        }
        let tls = if target.tls {
            let trust = match (&self.ca, self.insecure) {
                (Some(ca), _) => Trust::Ca(ca.clone()),
                (None, true) => Trust::Insecure,
                (None, false) => Trust::System,
            };
            let config = tls::client_config(&trust, self.tls12)?;
            Some((config.into(), tls::server_name(&target.host)?))
        } else {
            None
        };
        Ok(Arc::new(Plan {
            items: Plan::items(&target, catalogue),
            popularity: Popularity::new(catalogue.objects.len(), self.zipf, self.seed),
            target,
            addr,
            binds: self.bind.clone(),
            tls,
            range_size: self.range_size,
            verify_hash: !self.no_hash,
            timeout: self.timeout,
            rate: self.rate,
            connections: self.connections,
            seed: self.seed,
        }))
    }

    pub fn control(&self, server_pids: &[u32]) -> Control {
        Control {
            duration: self.duration,
            warmup: self.warmup,
            threads: self.threads(),
            server_pids: server_pids.to_vec(),
            progress: !self.quiet,
        }
    }

    pub fn setup(&self, url: &str, catalogue: &Catalogue, server_pids: &[u32]) -> Setup {
        Setup {
            target: url.to_owned(),
            rate: self.rate,
            connections: self.connections,
            duration_s: self.duration.as_secs_f64(),
            warmup_s: self.warmup.as_secs_f64(),
            objects: catalogue.objects.len(),
            zipf: self.zipf,
            seed: self.seed,
            range_size: self.range_size,
            server_pids: server_pids.to_vec(),
        }
    }
}

/// Turns a clap error into the one line printed for bad input: the message
/// without the usage block and tips (clap's own `--help` output is left alone).
pub fn one_line(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join(" ")
}

fn positive<T>(s: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + Default,
{
    match s.parse::<T>() {
        Ok(v) if v > T::default() => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

/// Tokens go into an Authorization header: visible ASCII only.
fn token(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(s.to_owned())
    } else {
        Err("a token is visible ASCII without spaces".to_owned())
    }
}

fn zipf_exponent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not an exponent >= 0")),
    }
}

fn nonzero_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be more than zero".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// Bytes, optionally with a binary suffix: 262144, 256KiB, 2MiB, 1GiB (k/K/KB
/// and M/MB are read as the binary units too: segment sizes are powers of two).
pub fn byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit (use bytes, KiB, MiB or GiB)")),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?} is not a positive number of bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_a_full_command_line() {
        let cli = Cli::try_parse_from([
            "oca-bench",
            "segments",
            "--target",
            "http://127.0.0.1:8080",
            "--dir",
            "/srv",
            "--zipf",
            "0.8",
            "--range-size",
            "256KiB",
            "--rate",
            "1000",
            "--bind",
            "127.0.0.2,127.0.0.3",
            "--bind",
            "127.0.0.4",
            "--duration",
            "500ms",
            "--server-pid",
            "1",
            "--server-pid",
            "2",
        ])
        .unwrap();
        let Command::Segments(a) = cli.command else {
            panic!("not segments")
        };
        assert_eq!(a.server_pids, [1, 2]);
        let w = a.workload;
        assert_eq!(w.zipf, 0.8);
        assert_eq!(w.range_size, Some(262_144));
        assert_eq!(w.rate, Some(1000.0));
        assert_eq!(w.bind.len(), 3);
        assert_eq!(w.duration, Duration::from_millis(500));
        assert_eq!(w.connections, 64);
    }

    #[test]
    fn bad_input_is_one_line() {
        let cases: &[&[&str]] = &[
            &[
                "segments", "--target", "http://h", "--dir", "d", "--zipf", "-1",
            ],
            &[
                "segments",
                "--target",
                "http://h",
                "--dir",
                "d",
                "--connections",
                "0",
            ],
            &[
                "segments",
                "--target",
                "http://h",
                "--dir",
                "d",
                "--duration",
                "0s",
            ],
            &[
                "segments",
                "--target",
                "http://h",
                "--dir",
                "d",
                "--range-size",
                "1XB",
            ],
            &["segments", "--target", "http://h"],
            &[
                "segments", "--target", "http://h", "--dir", "d", "--keys", "k",
            ],
            &["segments", "--target", "http://h", "--dir", "d", "--bogus"],
            &["segments", "--dir", "d"],
        ];
        for args in cases {
            let err = Cli::try_parse_from(std::iter::once("oca-bench").chain(args.iter().copied()))
                .unwrap_err();
            let line = one_line(&err.render().to_string());
            assert!(!line.is_empty() && !line.contains('\n'), "{args:?}: {line}");
            assert!(!line.contains("Usage"), "{line}");
        }
    }

    #[test]
    fn parses_players() {
        let cli = Cli::try_parse_from([
            "oca-bench",
            "players",
            "--steering",
            "http://127.0.0.1:8080",
            "--token",
            "vt_a",
            "--token",
            "vt_b",
            "--title",
            "t1",
            "--viewers",
            "4",
            "--duration",
            "15s",
            "--source-ip",
            "127.1.0.9,127.2.0.9",
            "--json",
        ])
        .unwrap();
        let Command::Players(a) = cli.command else {
            panic!("not players")
        };
        assert_eq!(a.tokens, ["vt_a", "vt_b"]);
        assert_eq!((a.device.as_str(), a.profile.as_str()), ("browser", "main"));
        assert_eq!(a.viewers, 4);
        assert_eq!(a.duration, Duration::from_secs(15));
        assert_eq!(a.source_ips.len(), 2);
        assert_eq!(a.max_buffer, Duration::from_secs(30));
        assert_eq!(a.report_every, Duration::from_secs(5));
        assert!(!a.bookmarks);
        assert_eq!((a.watch, a.startup_buffer), (None, None));
        assert!(a.json);

        let base = [
            "oca-bench",
            "players",
            "--steering",
            "http://h",
            "--title",
            "t1",
        ];
        for extra in [
            &[][..],
            &["--token", "vt a"],
            &["--token", "x", "--viewers", "0"],
            &["--token", "x", "--watch", "0s"],
            &["--token", "x", "--source-ip", "nowhere"],
            &["--token", "x", "--max-buffer", "soon"],
        ] {
            let err = Cli::try_parse_from(base.iter().chain(extra)).unwrap_err();
            let line = one_line(&err.render().to_string());
            assert!(
                !line.is_empty() && !line.contains('\n'),
                "{extra:?}: {line}"
            );
        }
    }

    #[test]
    fn hostile_writes_a_results_file_with_every_option() {
        let parse = |args: &[&str]| Cli::try_parse_from(["oca-bench"].iter().chain(args));
        let cli = parse(&["hostile", "--url", "http://h/x", "--results", "h.json"]).unwrap();
        let Command::Hostile(h) = cli.command else {
            panic!("not hostile")
        };
        assert_eq!(h.results, Some(PathBuf::from("h.json")));
        // Every option in effect goes into the file, durations as seconds.
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(
            (v["calm"].as_f64(), v["slowloris"].as_u64()),
            (Some(10.0), Some(10_000))
        );
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(byte_size("1"), Ok(1));
        assert_eq!(byte_size("256KiB"), Ok(262_144));
        assert_eq!(byte_size("2 MiB"), Ok(2 << 20));
        assert_eq!(byte_size("1g"), Ok(1 << 30));
        for bad in ["0", "", "KiB", "1.5MiB", "1 TiB", "-1", "99999999999999GiB"] {
            assert!(byte_size(bad).is_err(), "{bad}");
        }
    }
}
