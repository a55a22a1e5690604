//! The `players` command: checks its input, starts the viewers over the ramp
//! on one multi-threaded runtime, prints progress, and merges what they
//! measured into a report.
//!
//! Unlike `segments`, per-viewer work is small (a request every few seconds),
//! so one shared runtime is simpler than a runtime per thread and costs
//! nothing measurable.

use std::net::{IpAddr, SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::cli::PlayersArgs;
use crate::play_report::{self, PlayersReport};
use crate::play_stats::{Live, PlayStats};
use crate::tls::{self, Trust};
use crate::url::Url;
use crate::verify::Packaged;
use crate::viewer::{self, Setup};

/// Time after the end for closing requests (last heartbeat; or bookmark and DELETE), at most
/// `--timeout`.
const GRACE: Duration = Duration::from_secs(3);

/// After the grace period, how long to wait for viewer tasks before reporting
/// without them (every await in a viewer is bounded, so only a bug needs it).
const BACKSTOP: Duration = Duration::from_secs(2);

/// Runs the command and returns its report.
pub fn players(args: &PlayersArgs) -> Result<PlayersReport> {
    let mut bases = Vec::with_capacity(args.steering.len());
    for s in &args.steering {
        let base = Url::parse(s).with_context(|| format!("--steering {s}"))?;
        if base.path.contains('?') {
            bail!("--steering {s:?} must not have a query");
        }
        check_sources(&base, &args.source_ips)?;
        bases.push(base);
    }
    let base = bases[0].clone();
    if args.ramp >= args.duration {
        bail!("--ramp must be shorter than --duration, or some viewers never start");
    }
    let tls = match (&args.ca, args.insecure) {
        (Some(ca), _) => Some(tls::client_config(&Trust::Ca(ca.clone()), false)?),
        (None, true) => Some(tls::client_config(&Trust::Insecure, false)?),
        // Needed only if an https URL turns up; an error then is a TLS failure.
        (None, false) if !base.tls => tls::client_config(&Trust::System, false).ok(),
        (None, false) => Some(tls::client_config(&Trust::System, false)?),
    };
    let at = |p: &str| -> Result<Url> {
        Url::parse(&format!("{}{}", base.to_string().trim_end_matches('/'), p))
    };
    let body = serde_json::json!({
        "title": args.title, "device": args.device, "profile": args.profile,
    });
    let verify = match &args.verify {
        Some(dir) => Some(Arc::new(
            Packaged::load(dir).with_context(|| format!("--verify {}", dir.display()))?,
        )),
        None => None,
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let start = Instant::now();
    let end = start + args.duration;
    let setup = Arc::new(Setup {
        play_url: at("/v1/play")?,
        bookmarks_url: at("/v1/bookmarks")?,
        plays_url: at("/v1/plays/")?,
        steering: bases.clone(),
        tokens: args.tokens.clone(),
        play_body: body.to_string().into_bytes(),
        watch: args.watch,
        startup: args.startup_buffer,
        max_buffer: args.max_buffer,
        heartbeats: !args.bookmarks,
        report_every: args.report_every,
        timeout: args.timeout,
        tls,
        verify,
        end,
        grace_end: end + GRACE.min(args.timeout),
    });
    let progress = !args.quiet && args.duration > Duration::from_secs(3);
    let (stats, lost) = rt.block_on(run(setup, args, start, progress));
    rt.shutdown_timeout(Duration::from_secs(1));
    let report_setup = play_report::Setup {
        steering: bases
            .iter()
            .map(Url::to_string)
            .collect::<Vec<_>>()
            .join(","),
        title: args.title.clone(),
        device: args.device.clone(),
        profile: args.profile.clone(),
        viewers: args.viewers,
        tokens: args.tokens.len(),
        sources: args.source_ips.iter().map(IpAddr::to_string).collect(),
        duration_s: args.duration.as_secs_f64(),
        watch_s: args.watch.map(|w| w.as_secs_f64()),
        ramp_s: args.ramp.as_secs_f64(),
    };
    Ok(PlayersReport::new(report_setup, &stats, lost))
}

async fn run(
    setup: Arc<Setup>,
    args: &PlayersArgs,
    start: Instant,
    progress: bool,
) -> (PlayStats, usize) {
    let live = Arc::new(Live::default());
    let mut handles = Vec::with_capacity(args.viewers);
    for i in 0..args.viewers {
        let at = start + args.ramp.mul_f64(i as f64 / args.viewers as f64);
        let source =
            (!args.source_ips.is_empty()).then(|| args.source_ips[i % args.source_ips.len()]);
        let (setup, live) = (setup.clone(), live.clone());
        handles.push(tokio::spawn(async move {
            sleep_until(at).await;
            viewer::viewer(i, setup, source, live).await
        }));
    }
    if progress {
        let mut tick = start + Duration::from_secs(1);
        let mut last = 0;
        while tick < setup.end {
            sleep_until(tick).await;
            last = print_progress(tick - start, &live, last);
            tick += Duration::from_secs(1);
        }
    }
    let backstop = setup.grace_end + BACKSTOP;
    let mut merged = PlayStats::default();
    let mut lost = 0;
    for h in handles {
        match timeout_at(backstop, h).await {
            Ok(Ok(s)) => merged.merge(&s),
            _ => lost += 1,
        }
    }
    (merged, lost)
}

/// One progress line on stderr; returns the byte count it was based on.
fn print_progress(elapsed: Duration, live: &Live, last_bytes: u64) -> u64 {
    let bytes = live.bytes.load(Relaxed);
    eprintln!(
        "{:>6.1}s plays {:>6} playing {:>5} rebuffers {:>5} failovers {:>4} errors {:>4} {:>9.3} Mbit/s",
        elapsed.as_secs_f64(),
        live.plays.load(Relaxed),
        live.playing.load(Relaxed),
        live.rebuffers.load(Relaxed),
        live.failovers.load(Relaxed),
        live.errors.load(Relaxed),
        (bytes - last_bytes) as f64 * 8.0 / 1e6,
    );
    bytes
}

/// Every --source-ip must be a local address of the steering address's
/// family: found now, one line, rather than as a run of connect errors.
fn check_sources(steering: &Url, sources: &[IpAddr]) -> Result<()> {
    if sources.is_empty() {
        return Ok(());
    }
    let addrs: Vec<SocketAddr> = (steering.host.as_str(), steering.port)
        .to_socket_addrs()
        .map_err(|e| anyhow!("cannot resolve {}: {e}", steering.host))?
        .collect();
    for ip in sources {
        if !addrs.iter().any(|a| a.is_ipv4() == ip.is_ipv4()) {
            bail!(
                "--source-ip {ip} cannot reach {}: address families differ",
                steering.host
            );
        }
        TcpListener::bind((*ip, 0))
            .map_err(|e| anyhow!("--source-ip {ip} is not a local address: {e}"))?;
    }
    Ok(())
}
