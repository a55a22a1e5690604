//! `oca-bench fleet-sim`: simulated days of a fleet in seconds, to measure how
//! much peak traffic the fill planners keep inside the ISPs.
//!
//! A world (regions, ISP sites, a catalogue, a viewing trace: [`trace`]) is
//! generated from a seed or read from files; each planner runs over the same
//! trace at each disk size ([`sim`]), in parallel on the machine's cores; the
//! report says where the bytes came from, hour by hour and at each region's
//! peak, what filling cost, and draws the hourly split ([`svg`]).

pub mod sim;
pub mod svg;
pub mod trace;

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use steering::fleet::placement::Rules;

use sim::{Outcome, Planner, Setup};

/// Serialised into `--results` files: every option in effect.
#[derive(Debug, Args, Serialize)]
pub struct FleetSimArgs {
    /// Days reported (after the warm-up days); ignored with --trace, whose
    /// own length counts.
    #[arg(long, default_value_t = 30)]
    pub days: usize,
    /// Days simulated first and not reported: the planners' history, and
    /// disks filled from empty.
    #[arg(long, default_value_t = 7)]
    pub warmup_days: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 5000)]
    pub titles: usize,
    /// ISP sites (one ISP each), spread over four regions.
    #[arg(long, default_value_t = 100)]
    pub sites: usize,
    #[arg(long, default_value_t = 200_000.0)]
    pub sessions_per_day: f64,
    /// New releases per day (with a launch spike each).
    #[arg(long, default_value_t = 3.0)]
    pub launches_per_day: f64,
    /// Per-site disk as a fraction of the catalogue's bytes; a comma list
    /// runs each size (the curve).
    #[arg(long, value_delimiter = ',', default_value = "0.1")]
    pub disk_fraction: Vec<f64>,
    /// Each IXP appliance's disk as a fraction of the catalogue's bytes.
    #[arg(long, default_value_t = 0.3)]
    pub ixp_disk_fraction: f64,
    #[arg(long, default_value_t = 2)]
    pub ixps_per_region: usize,
    /// One appliance's fill rate.
    #[arg(long, default_value_t = 10.0)]
    pub fill_gbps: f64,
    /// Local fill window of every appliance.
    #[arg(long, default_value = "02:00-06:00")]
    pub fill_window: String,
    /// Planners to compare: current, forecast, oracle (comma list).
    #[arg(long, value_delimiter = ',', default_value = "current,forecast,oracle")]
    pub planner: Vec<String>,
    /// Replay this trace (see the file format in `fleetsim/trace.rs` and
    /// docs/FLEET-SIM.md) instead of generating one.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Write the generated trace (and its companion files) here.
    #[arg(long, value_name = "FILE")]
    pub write_trace: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    /// Draw the hour-by-hour split of the first disk size.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Also write the report with the options, command line, date and machine.
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,
    /// Runs in parallel (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// One point of the curve.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub disk_fraction: f64,
    pub planner: Planner,
    pub peak_inside_isp_share: f64,
    pub inside_isp_share: f64,
    pub launch_inside_isp_share: Option<f64>,
    pub fill_bytes_per_night: f64,
    pub churn_bytes: f64,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub seed: u64,
    pub days: usize,
    pub warmup_days: usize,
    pub titles: usize,
    pub sites: usize,
    pub appliances: usize,
    pub regions: usize,
    pub sessions: usize,
    pub catalogue_bytes: u64,
    pub trace_seconds: f64,
    pub seconds: f64,
    /// The first disk size's full outcome, per planner.
    pub planners: std::collections::BTreeMap<String, Outcome>,
    pub curve: Vec<Point>,
}

fn check(args: &FleetSimArgs) -> anyhow::Result<Vec<Planner>> {
    let planners = args
        .planner
        .iter()
        .map(|p| {
            Planner::parse(p.trim())
                .with_context(|| format!("--planner {p:?}: expected current, forecast or oracle"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if planners.is_empty() {
        bail!("--planner: name at least one planner");
    }
    if args.disk_fraction.iter().any(|f| !(*f > 0.0 && *f <= 1.0)) {
        bail!("--disk-fraction: each size must be in (0, 1]");
    }
    if !(args.ixp_disk_fraction >= 0.0 && args.ixp_disk_fraction <= 1.0) {
        bail!("--ixp-disk-fraction must be in [0, 1]");
    }
    if args.trace.is_none() && (args.days == 0 || args.days > 366) {
        bail!("--days must be 1 to 366");
    }
    if args.trace.is_none() && (args.titles < 10 || args.sites == 0 || args.sites > 10_000) {
        bail!("--titles must be at least 10 and --sites 1 to 10000");
    }
    if !(args.sessions_per_day > 0.0 && args.sessions_per_day <= 1e8) {
        bail!("--sessions-per-day must be in (0, 1e8]");
    }
    if args.fill_gbps.is_nan() || args.fill_gbps <= 0.0 {
        bail!("--fill-gbps must be positive");
    }
    if args.warmup_days > 60 {
        bail!("--warmup-days must be at most 60");
    }
    Ok(planners)
}

fn window(spec: &str) -> anyhow::Result<(String, String)> {
    let (start, end) = steering::fleet::fillplan::parse_window(spec)
        .map_err(|e| anyhow::anyhow!("--fill-window: {e}"))?;
    let fmt = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
    Ok((fmt(start), fmt(end)))
}

pub fn fleet_sim(args: &FleetSimArgs) -> anyhow::Result<Report> {
    let planners = check(args)?;
    let window = window(&args.fill_window)?;
    let started = Instant::now();
    let world = match &args.trace {
        Some(path) => trace::read(path)?,
        None => trace::generate(&trace::Spec {
            seed: args.seed,
            days: args.days + args.warmup_days,
            titles: args.titles,
            sites: args.sites,
            sessions_per_day: args.sessions_per_day,
            launches_per_day: args.launches_per_day,
        }),
    };
    if world.days <= args.warmup_days {
        bail!(
            "the trace covers {} days: more than --warmup-days {} are needed",
            world.days,
            args.warmup_days
        );
    }
    if let Some(path) = &args.write_trace {
        trace::write(&world, path)?;
    }
    let trace_seconds = started.elapsed().as_secs_f64();

    let jobs: Vec<Setup> = args
        .disk_fraction
        .iter()
        .flat_map(|&f| planners.iter().map(move |&p| (f, p)))
        .map(|(disk_fraction, planner)| Setup {
            planner,
            disk_fraction,
            ixp_disk_fraction: args.ixp_disk_fraction,
            ixps_per_region: args.ixps_per_region,
            fill_rate: args.fill_gbps * 1e9 / 8.0,
            window: window.clone(),
            warmup_days: args.warmup_days,
            rules: Rules::default(),
            half_life: 86_400.0,
            lookback: 7 * 86_400,
            seed: args.seed,
        })
        .collect();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, jobs.len().max(1));
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; jobs.len()]);
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let outcome = sim::run(&world, job);
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(outcome);
                }
            });
        }
    });
    let outcomes: Vec<Outcome> = results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect();

    let first = args.disk_fraction[0];
    let curve = outcomes
        .iter()
        .map(|o| Point {
            disk_fraction: o.disk_fraction,
            planner: o.planner,
            peak_inside_isp_share: o.peak_inside_isp_share,
            inside_isp_share: o.inside_isp_share,
            launch_inside_isp_share: o.launch_inside_isp_share,
            fill_bytes_per_night: o.fill_bytes_per_night,
            churn_bytes: o.churn_bytes,
            seconds: o.seconds,
        })
        .collect();
    let planners = outcomes
        .into_iter()
        .filter(|o| o.disk_fraction == first)
        .map(|o| (o.planner.name().to_owned(), o))
        .collect();
    let report = Report {
        seed: args.seed,
        days: world.days - args.warmup_days,
        warmup_days: args.warmup_days,
        titles: world.titles.len(),
        sites: world.sites.len(),
        appliances: world.sites.iter().map(|s| s.appliances).sum::<usize>()
            + world.regions.len() * args.ixps_per_region,
        regions: world.regions.len(),
        sessions: world.sessions.len(),
        catalogue_bytes: world.catalogue_bytes(),
        trace_seconds,
        seconds: started.elapsed().as_secs_f64(),
        planners,
        curve,
    };
    if let Some(path) = &args.svg {
        std::fs::write(path, svg::hourly(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(report)
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

impl Report {
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} days (+{} warm-up), {} titles ({:.1} TB), {} sites, {} appliances, {} sessions; {:.1} s\n\n",
            self.days,
            self.warmup_days,
            self.titles,
            self.catalogue_bytes as f64 / 1e12,
            self.sites,
            self.appliances,
            self.sessions,
            self.seconds
        );
        out.push_str(
            "disk   planner    peak inside ISP  inside ISP  launches inside  fill/night  churn     run\n",
        );
        for p in &self.curve {
            out.push_str(&format!(
                "{:<6} {:<10} {:>15}  {:>10}  {:>15}  {:>7.1} TB  {:>5.1} TB  {:>4.1} s\n",
                pct(p.disk_fraction),
                p.planner.name(),
                pct(p.peak_inside_isp_share),
                pct(p.inside_isp_share),
                p.launch_inside_isp_share.map_or("-".to_owned(), pct),
                p.fill_bytes_per_night / 1e12,
                p.churn_bytes / 1e12,
                p.seconds
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests;
