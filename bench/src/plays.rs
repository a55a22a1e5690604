//! The control plane's capacity, measured the way oca's is: `POST /v1/play`
//! for many accounts, closed loop (each connection waits for its answer) or
//! open loop at a fixed rate (latency from the intended send time, so a
//! stall counts for every play it delayed: no coordinated omission), with
//! plays per second in windows so a run shows whether throughput holds as
//! history accumulates.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

use crate::agent::{Agent, Request};
use crate::appliances::{AppliancesReport, Load, Sims, SimsOutcome, holdings, run_sims};
use crate::cli::PlaysArgs;
use crate::play_beats::{self, Active, Beats, BeatsReport};
use crate::schedule::{Phase, Schedule, Surge};
use crate::stats::histogram;
use crate::url::Url;

#[derive(Debug, Clone, Serialize)]
pub struct PlaysReport {
    /// `closed` (each connection waits for its answer) or `open` (a fixed rate).
    pub mode: &'static str,
    /// Steering instances the connections were spread over.
    pub instances: usize,
    pub connections: usize,
    /// The open loop's target, plays/s.
    pub target_per_s: Option<f64>,
    pub duration_s: f64,
    pub accounts: usize,
    /// Plays answered 200.
    pub ok: u64,
    pub ok_per_s: f64,
    /// Other answers by status (e.g. 403 stream_limit, 503).
    pub refused: BTreeMap<u16, u64>,
    /// No answer: connect failures, resets, timeouts.
    pub errors: u64,
    /// Latency of the 200s, ms (open loop: from the intended send time).
    pub latency_ms: Latency,
    /// 200s per second in each `window_s` window, in order.
    pub window_s: f64,
    pub windows_per_s: Vec<f64>,
    /// The last full window's rate over the first's (throughput as history grows).
    pub last_over_first: Option<f64>,
    /// With --surge: the same figures for the calm, the rise and the peak,
    /// by when each play was meant to be sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseReport>,
    /// With --appliances: the simulated appliances' side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetLoadReport>,
    /// With --play-heartbeats: the admitted plays' heartbeats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub play_heartbeats: Option<BeatsReport>,
}

/// Steering's default `steer.max_utilisation`: an appliance at or above it
/// takes no new viewers.
pub const FULL: f64 = 0.85;

/// The simulated appliances' side of a run (`--appliances`): the streams the
/// admitted plays put on them, and their heartbeats.
#[derive(Debug, Clone, Serialize)]
pub struct FleetLoadReport {
    pub appliances: u64,
    pub capacity_gbps: f64,
    pub stream_mbps: f64,
    /// Admitted plays whose primary was not a simulated appliance (the
    /// origin).
    pub streams_elsewhere: u64,
    pub heartbeats: AppliancesReport,
    /// Once a second from the start of the plays.
    pub samples: Vec<LoadSample>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<FleetPhase>,
}

/// The fleet's load at one moment: streams on simulated appliances, their
/// mean and highest utilisation, and how many were at or above `FULL`.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSample {
    pub t_s: f64,
    pub streams: u64,
    pub mean_utilisation: f64,
    pub max_utilisation: f64,
    pub full: u64,
}

/// The fleet at the end of one part of a surge, and the appliances'
/// heartbeat latency during it.
#[derive(Debug, Clone, Serialize)]
pub struct FleetPhase {
    pub phase: &'static str,
    pub at_end: LoadSample,
    pub heartbeat_latency_ms: Latency,
    pub heartbeats: u64,
}

/// One part of a surge's run.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub phase: &'static str,
    pub from_s: f64,
    pub to_s: f64,
    /// Plays meant to be sent in this part, per second.
    pub offered_per_s: f64,
    pub ok: u64,
    pub ok_per_s: f64,
    pub refused: BTreeMap<u16, u64>,
    pub refused_per_s: f64,
    pub errors: u64,
    /// Latency of the 200s (from the intended send time).
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// One connection's tally.
struct Tally {
    latency: Histogram<u64>,
    refused: BTreeMap<u16, u64>,
    errors: u64,
    /// 200s completed in each window.
    windows: Vec<u64>,
    /// With a surge: per phase (calm, rise, peak), the same counts.
    phases: [PhaseTally; 3],
}

struct PhaseTally {
    latency: Histogram<u64>,
    refused: BTreeMap<u16, u64>,
    errors: u64,
    offered: u64,
}

impl PhaseTally {
    fn new() -> PhaseTally {
        PhaseTally {
            latency: histogram(),
            refused: BTreeMap::new(),
            errors: 0,
            offered: 0,
        }
    }
}

/// Viewer tokens, one a line (`steering users seed` writes such a file).
pub fn read_tokens(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if tokens.is_empty() {
        bail!("{}: no tokens", path.display());
    }
    Ok(tokens)
}

pub fn plays(args: &PlaysArgs) -> Result<PlaysReport> {
    let mut urls = Vec::new();
    if args.home && args.appliances > 0 {
        bail!("--home asks for no plays: --appliances has nothing to carry");
    }
    if args.home && args.play_heartbeats.is_some() {
        bail!("--home asks for no plays: --play-heartbeats has nothing to report");
    }
    let path = if args.home {
        format!("/v1/home?profile={}", args.profile)
    } else {
        "/v1/play".to_owned()
    };
    for s in &args.steering {
        let url = Url::parse(&format!("{}{path}", s.trim_end_matches('/')))
            .with_context(|| format!("--steering {s}"))?;
        if url.tls {
            bail!("--steering {s}: plain http:// only (the control plane's capacity, not TLS's)");
        }
        urls.push(url);
    }
    let tokens = Arc::new(read_tokens(&args.tokens)?);
    let body = serde_json::json!({
        "title": args.title, "device": args.device, "profile": args.profile,
    })
    .to_string();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let next_token = Arc::new(AtomicUsize::new(0));
    let surge = args.surge.map(|factor| Surge {
        factor: factor.max(1.0),
        at: args.surge_at,
        over: args.surge_over,
    });
    if surge.is_some_and(|s| s.at + s.over >= args.duration) {
        bail!("--surge-at plus --surge-over must end before --duration, so the peak is measured");
    }
    let windows = (args.duration.as_secs_f64() / args.window.as_secs_f64()).ceil() as usize;
    let sims = (args.appliances > 0).then(|| sims_for(args, surge));
    let (stop_sims, stopped) = tokio::sync::watch::channel(false);
    let sims_task = match &sims {
        Some(sims) => {
            let sims = Sims {
                stop: Some(stopped),
                ..sims.clone()
            };
            let deadline = Instant::now() + Duration::from_secs(3600);
            let task = rt.spawn(async move {
                let start = Instant::now();
                run_sims(sims, "127.0.0.1:0", start, deadline).await
            });
            rt.block_on(until_eligible(args))?;
            Some(task)
        }
        None => None,
    };
    let load = sims.as_ref().and_then(|s| s.load.clone());
    let elsewhere = Arc::new(AtomicU64::new(0));
    let plays_url = Url::parse(&format!(
        "{}/v1/plays/",
        args.steering[0].trim_end_matches('/')
    ))?;
    let mut beats_setup = None;
    let tallies = rt.block_on(async {
        let start = Instant::now();
        let end = start + args.duration;
        // Heartbeats go to the first instance (a play is known to all).
        let beats = args.play_heartbeats.map(|every| {
            let setup = play_beats::Setup {
                plays_url,
                every,
                watch: args.watch,
                end,
                timeout: args.timeout,
                bind: args.bind,
            };
            let (beats, tasks) = play_beats::start(&setup, args.heartbeat_connections);
            beats_setup = Some(setup);
            (Arc::new(beats), tasks)
        });
        let sampler = sims.as_ref().map(|s| {
            if let Some((_, began)) = &s.surge {
                let _ = began.set(start);
            }
            let (load, count, capacity) = (
                Arc::clone(s.load.as_ref().expect("sims carry a load")),
                s.count as usize,
                s.capacity_bps,
            );
            tokio::spawn(sample_load(load, count, capacity, start, end))
        });
        let mut tasks = Vec::new();
        for i in 0..args.connections {
            let (url, body, tokens, next) = (
                urls[i % urls.len()].clone(),
                body.clone(),
                Arc::clone(&tokens),
                Arc::clone(&next_token),
            );
            let schedule = args.rate.map(|r| {
                let s = Schedule::new(r, args.connections, i);
                match surge {
                    Some(surge) => s.with_surge(surge),
                    None => s,
                }
            });
            let (bind, window, timeout, home) = (args.bind, args.window, args.timeout, args.home);
            let streams = load.as_ref().map(|l| Streams {
                load: Arc::clone(l),
                prefix: format!("{}-", args.appliance_prefix),
                elsewhere: Arc::clone(&elsewhere),
            });
            let clients = args
                .clients
                .map(|net| (net, SmallRng::seed_from_u64(i as u64)));
            let beats = beats.as_ref().map(|(b, _)| Arc::clone(b));
            tasks.push(tokio::spawn(async move {
                connection(ConnArgs {
                    url,
                    body,
                    tokens,
                    next,
                    schedule,
                    bind,
                    start,
                    end,
                    window,
                    windows,
                    timeout,
                    surge,
                    streams,
                    clients,
                    home,
                    beats,
                })
                .await
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await?);
        }
        let mut beat_tallies = Vec::new();
        if let Some((beats, tasks)) = beats {
            drop(beats);
            for t in tasks {
                beat_tallies.push(t.await?);
            }
        }
        let samples = match sampler {
            Some(s) => s.await?,
            None => Vec::new(),
        };
        anyhow::Ok((out, samples, beat_tallies))
    })?;
    let (tallies, samples, beat_tallies) = tallies;
    let play_heartbeats = beats_setup.map(|setup| {
        play_beats::report(
            &setup,
            args.heartbeat_connections,
            args.duration,
            &beat_tallies,
        )
    });
    let fleet = match (sims_task, &sims) {
        (Some(task), Some(sims)) => {
            let _ = stop_sims.send(true);
            let outcome = rt.block_on(task)??;
            Some(fleet_report(
                args,
                sims,
                outcome,
                samples,
                elsewhere.load(Ordering::Relaxed),
                surge,
            ))
        }
        _ => None,
    };
    let mut latency = histogram();
    let mut refused = BTreeMap::new();
    let mut errors = 0;
    let mut per_window = vec![0u64; windows];
    let mut phases = [PhaseTally::new(), PhaseTally::new(), PhaseTally::new()];
    for t in &tallies {
        for (all, one) in phases.iter_mut().zip(&t.phases) {
            all.latency.add(&one.latency).expect("same bounds");
            for (s, n) in &one.refused {
                *all.refused.entry(*s).or_default() += n;
            }
            all.errors += one.errors;
            all.offered += one.offered;
        }
        latency.add(&t.latency).expect("same bounds");
        for (s, n) in &t.refused {
            *refused.entry(*s).or_default() += n;
        }
        errors += t.errors;
        for (w, n) in t.windows.iter().enumerate() {
            per_window[w] += n;
        }
    }
    let ok = latency.len();
    let secs = args.window.as_secs_f64();
    // The last window may be cut short by the end of the run: only full ones.
    let full = (args.duration.as_secs_f64() / secs).floor() as usize;
    let windows_per_s: Vec<f64> = per_window
        .iter()
        .take(full.max(1))
        .map(|&n| n as f64 / secs)
        .collect();
    let last_over_first = match (windows_per_s.first(), windows_per_s.last()) {
        (Some(&f), Some(&l)) if windows_per_s.len() > 1 && f > 0.0 => Some(l / f),
        _ => None,
    };
    Ok(PlaysReport {
        instances: args.steering.len(),
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        connections: args.connections,
        target_per_s: args.rate,
        duration_s: args.duration.as_secs_f64(),
        accounts: tokens.len(),
        ok,
        ok_per_s: ok as f64 / args.duration.as_secs_f64(),
        refused,
        errors,
        latency_ms: Latency::of(&latency),
        window_s: secs,
        windows_per_s,
        last_over_first,
        phases: surge.map_or_else(Vec::new, |s| phase_reports(&s, args.duration, &phases)),
        fleet,
        play_heartbeats,
    })
}

/// The simulated appliances `--appliances` asks for.
fn sims_for(args: &PlaysArgs, surge: Option<Surge>) -> Sims {
    Sims {
        base: args.steering[0].trim_end_matches('/').to_owned(),
        count: args.appliances,
        prefix: args.appliance_prefix.clone(),
        region: args.appliance_region.clone(),
        renditions: holdings(&args.appliance_renditions, args.appliance_objects),
        interval: args.heartbeat_every,
        connections: (args.appliances as usize).min(64),
        capacity_bps: (args.appliance_gbps * 1e9) as u64,
        load: Some(Arc::new(Load::new(
            args.appliances,
            (args.stream_mbps * 1e6) as u64,
        ))),
        surge: surge.map(|s| (s, Arc::new(std::sync::OnceLock::new()))),
        stop: None,
        registered: Arc::default(),
    }
}

/// Wait (at most two minutes) until steering lists every simulated
/// appliance as eligible with something complete: only then can plays be
/// steered to them.
async fn until_eligible(args: &PlaysArgs) -> Result<()> {
    let url = Url::parse(&format!(
        "{}/v1/appliances",
        args.steering[0].trim_end_matches('/')
    ))?;
    let prefix = format!("{}-", args.appliance_prefix);
    let mut agent = Agent::new(None, None);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut ready = 0;
    while Instant::now() < deadline {
        let req = Request {
            method: "GET",
            url: &url,
            headers: &[],
            body: b"",
            keep: true,
        };
        if let Ok(reply) = agent
            .fetch(&req, Instant::now() + Duration::from_secs(10))
            .await
            && let Ok(list) = serde_json::from_slice::<Vec<serde_json::Value>>(&reply.body)
        {
            ready = list
                .iter()
                .filter(|a| {
                    a["id"].as_str().is_some_and(|id| id.starts_with(&prefix))
                        && a["eligible"] == true
                        && a["renditions_complete"].as_u64().is_some_and(|n| n > 0)
                })
                .count() as u64;
            if ready >= args.appliances {
                eprintln!("oca-bench: {ready} simulated appliances eligible; playing");
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "only {ready} of {} simulated appliances eligible after 2 minutes (declared in steering's config, holding --appliance-renditions complete?)",
        args.appliances
    )
}

/// The fleet's load once a second from `start` to `end`.
async fn sample_load(
    load: Arc<Load>,
    count: usize,
    capacity_bps: u64,
    start: Instant,
    end: Instant,
) -> Vec<LoadSample> {
    let mut out = Vec::new();
    let mut next = start;
    while next <= end {
        tokio::time::sleep_until(next).await;
        out.push(load_sample(&load, count, capacity_bps, start));
        next += Duration::from_secs(1);
    }
    out
}

fn load_sample(load: &Load, count: usize, capacity_bps: u64, start: Instant) -> LoadSample {
    let cap = capacity_bps.max(1) as f64;
    let utilisation: Vec<f64> = (0..count)
        .map(|j| load.egress_bps(j) as f64 / cap)
        .collect();
    let streams = (0..count)
        .map(|j| load.egress_bps(j) / load.stream_bps().max(1))
        .sum();
    LoadSample {
        t_s: start.elapsed().as_secs_f64(),
        streams,
        mean_utilisation: utilisation.iter().sum::<f64>() / count.max(1) as f64,
        max_utilisation: utilisation.iter().copied().fold(0.0, f64::max),
        full: utilisation.iter().filter(|u| **u >= FULL).count() as u64,
    }
}

fn fleet_report(
    args: &PlaysArgs,
    sims: &Sims,
    outcome: SimsOutcome,
    samples: Vec<LoadSample>,
    elsewhere: u64,
    surge: Option<Surge>,
) -> FleetLoadReport {
    let phases = surge.map_or_else(Vec::new, |s| {
        let ends = [s.at, s.at + s.over, args.duration];
        Phase::ALL
            .iter()
            .zip(ends)
            .zip(&outcome.by_phase)
            .map(|((p, end), h)| FleetPhase {
                phase: p.name(),
                // The last sample taken by the end of the phase.
                at_end: samples
                    .iter()
                    .rev()
                    .find(|x| x.t_s <= end.as_secs_f64() + 0.5)
                    .or(samples.first())
                    .cloned()
                    .unwrap_or(LoadSample {
                        t_s: 0.0,
                        streams: 0,
                        mean_utilisation: 0.0,
                        max_utilisation: 0.0,
                        full: 0,
                    }),
                heartbeat_latency_ms: Latency::of(h),
                heartbeats: h.len(),
            })
            .collect()
    });
    FleetLoadReport {
        appliances: sims.count,
        capacity_gbps: args.appliance_gbps,
        stream_mbps: args.stream_mbps,
        streams_elsewhere: elsewhere,
        heartbeats: outcome.report,
        samples,
        phases,
    }
}

fn phase_reports(s: &Surge, duration: Duration, tallies: &[PhaseTally; 3]) -> Vec<PhaseReport> {
    let bounds = [
        (0.0, s.at.as_secs_f64()),
        (s.at.as_secs_f64(), (s.at + s.over).as_secs_f64()),
        ((s.at + s.over).as_secs_f64(), duration.as_secs_f64()),
    ];
    Phase::ALL
        .iter()
        .zip(tallies)
        .zip(bounds)
        .map(|((p, t), (from, to))| {
            let secs = (to - from).max(1e-9);
            let ok = t.latency.len();
            let refused_n: u64 = t.refused.values().sum();
            PhaseReport {
                phase: p.name(),
                from_s: from,
                to_s: to,
                offered_per_s: t.offered as f64 / secs,
                ok,
                ok_per_s: ok as f64 / secs,
                refused: t.refused.clone(),
                refused_per_s: refused_n as f64 / secs,
                errors: t.errors,
                latency_ms: Latency::of(&t.latency),
            }
        })
        .collect()
}

struct ConnArgs {
    url: Url,
    body: String,
    tokens: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    schedule: Option<Schedule>,
    bind: Option<std::net::IpAddr>,
    start: Instant,
    end: Instant,
    window: Duration,
    windows: usize,
    timeout: Duration,
    surge: Option<Surge>,
    streams: Option<Streams>,
    /// `X-Forwarded-For` addresses are drawn from this prefix.
    clients: Option<(ipnet::IpNet, SmallRng)>,
    /// `GET` the home page (`url`) instead of posting a play.
    home: bool,
    /// Admitted plays heartbeat through these (`--play-heartbeats`).
    beats: Option<Arc<Beats>>,
}

/// Where an admitted play's stream goes (`--appliances`).
struct Streams {
    load: Arc<Load>,
    /// `sim-`: the simulated appliances' ids, then their index.
    prefix: String,
    elsewhere: Arc<AtomicU64>,
}

impl Streams {
    /// Put the play answered with `body` on its primary appliance.
    fn take(&self, body: &[u8]) {
        let primary = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["appliances"][0]["id"].as_str().map(str::to_owned));
        match primary
            .as_deref()
            .and_then(|id| id.strip_prefix(&self.prefix))
            .and_then(|j| j.parse::<usize>().ok())
        {
            Some(j) => self.load.add(j),
            None => {
                self.elsewhere.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A random address in `net`.
fn client_in(net: ipnet::IpNet, rng: &mut SmallRng) -> std::net::IpAddr {
    match net {
        ipnet::IpNet::V4(n) => {
            let host_bits = 32 - u32::from(n.prefix_len());
            let host = if host_bits == 0 {
                0
            } else {
                rng.random::<u32>() >> (32 - host_bits)
            };
            std::net::Ipv4Addr::from(u32::from(n.network()) | host).into()
        }
        ipnet::IpNet::V6(n) => {
            let host_bits = 128 - u32::from(n.prefix_len());
            let host = if host_bits == 0 {
                0
            } else {
                rng.random::<u128>() >> (128 - host_bits)
            };
            std::net::Ipv6Addr::from(u128::from(n.network()) | host).into()
        }
    }
}

async fn connection(mut a: ConnArgs) -> Tally {
    let mut agent = Agent::new(a.bind, None);
    let mut t = Tally {
        latency: histogram(),
        refused: BTreeMap::new(),
        errors: 0,
        windows: vec![0; a.windows],
        phases: [PhaseTally::new(), PhaseTally::new(), PhaseTally::new()],
    };
    loop {
        let now = Instant::now();
        let intended = match &mut a.schedule {
            Some(s) => {
                let slot = s.next_slot(now - a.start);
                let send_at = a.start + slot.send_at;
                if send_at >= a.end {
                    break;
                }
                tokio::time::sleep_until(send_at).await;
                a.start + slot.intended
            }
            None => {
                if now >= a.end {
                    break;
                }
                now
            }
        };
        let token = &a.tokens[a.next.fetch_add(1, Ordering::Relaxed) % a.tokens.len()];
        let auth = format!("Bearer {token}");
        let client = a
            .clients
            .as_mut()
            .map(|(net, rng)| client_in(*net, rng).to_string());
        let mut headers = vec![
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        if let Some(c) = &client {
            headers.push(("X-Forwarded-For", c));
        }
        let req = Request {
            method: if a.home { "GET" } else { "POST" },
            url: &a.url,
            headers: if a.home { &headers[..1] } else { &headers },
            body: if a.home { b"" } else { a.body.as_bytes() },
            keep: a.streams.is_some() || a.beats.is_some(),
        };
        // Which part of a surge this play was meant for.
        let phase = a
            .surge
            .map(|s| &mut t.phases[s.phase(intended.duration_since(a.start)) as usize]);
        let outcome = agent.fetch(&req, Instant::now() + a.timeout).await;
        if let Some(p) = phase {
            p.offered += 1;
            match &outcome {
                Ok(reply) if reply.status == 200 => {
                    let us = intended.elapsed().as_micros() as u64;
                    p.latency.saturating_record(us.max(1));
                }
                Ok(reply) => *p.refused.entry(reply.status).or_default() += 1,
                Err(_) => p.errors += 1,
            }
        }
        match outcome {
            Ok(reply) if reply.status == 200 => {
                if let Some(streams) = &a.streams {
                    streams.take(&reply.body);
                }
                if let Some(beats) = &a.beats
                    && let Some(play) = watching(&reply.body, auth.clone(), client.clone())
                {
                    beats.add(play);
                }
                let done = Instant::now();
                let us = done.duration_since(intended).as_micros() as u64;
                t.latency.saturating_record(us.max(1));
                let w =
                    (done.duration_since(a.start).as_secs_f64() / a.window.as_secs_f64()) as usize;
                if let Some(slot) = t.windows.get_mut(w) {
                    *slot += 1;
                }
            }
            Ok(reply) => *t.refused.entry(reply.status).or_default() += 1,
            Err(_) => t.errors += 1,
        }
    }
    t
}

/// An admitted play's id and primary appliance, from its answer, to heartbeat.
fn watching(body: &[u8], auth: String, client: Option<String>) -> Option<Active> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(Active {
        play_id: v["play_id"].as_str()?.to_owned(),
        url: v["heartbeat_url"].as_str().and_then(|u| Url::parse(u).ok()),
        pathway: v["appliances"][0]["id"].as_str()?.to_owned(),
        auth,
        client,
        started: Instant::now(),
    })
}

impl PlaysReport {
    pub fn table(&self) -> String {
        let l = &self.latency_ms;
        let mut s = format!(
            "plays ({} loop, {} connections{}, {} accounts, {:.0} s)\n",
            self.mode,
            self.connections,
            self.target_per_s
                .map_or(String::new(), |r| format!(", {r:.0}/s target")),
            self.accounts,
            self.duration_s
        );
        s += &format!(
            "  ok {:>9}  {:>8.1}/s   refused {:?}   errors {}\n",
            self.ok, self.ok_per_s, self.refused, self.errors
        );
        s += &format!(
            "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}\n",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
        let w: Vec<String> = self
            .windows_per_s
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect();
        s += &format!("  per {:.0} s window: {}\n", self.window_s, w.join(" "));
        if let Some(r) = self.last_over_first {
            s += &format!("  last window / first: {r:.3}\n");
        }
        if let Some(f) = &self.fleet {
            s += &format!(
                "  {} simulated appliances ({:.1} Gbit/s each, {:.1} Mbit/s a stream): {} streams elsewhere; heartbeats {} ok, {} failed\n",
                f.appliances,
                f.capacity_gbps,
                f.stream_mbps,
                f.streams_elsewhere,
                f.heartbeats.heartbeats_ok,
                f.heartbeats.heartbeats_failed
            );
            for p in &f.phases {
                s += &format!(
                    "  {:<5} end: {} streams, utilisation mean {:.2} max {:.2}, {} full; heartbeat p99 {:.2} ms\n",
                    p.phase,
                    p.at_end.streams,
                    p.at_end.mean_utilisation,
                    p.at_end.max_utilisation,
                    p.at_end.full,
                    p.heartbeat_latency_ms.p99
                );
            }
        }
        if let Some(b) = &self.play_heartbeats {
            s += &format!(
                "  play heartbeats every {:.0} s from {} plays: ok {} ({:.1}/s, {} ended), refused {:?}, errors {}; p50 {:.2} ms p99 {:.2} ms\n",
                b.every_s,
                b.plays,
                b.ok,
                b.ok_per_s,
                b.ended,
                b.refused,
                b.errors,
                b.latency_ms.p50,
                b.latency_ms.p99
            );
        }
        for p in &self.phases {
            s += &format!(
                "  {:<5} {:>5.1}-{:<5.1}s offered {:>8.1}/s  ok {:>8.1}/s  refused {:>8.1}/s {:?}  errors {}  ok p99 {:.2} ms\n",
                p.phase,
                p.from_s,
                p.to_s,
                p.offered_per_s,
                p.ok_per_s,
                p.refused_per_s,
                p.refused,
                p.errors,
                p.latency_ms.p99
            );
        }
        s
    }
}
