//! `oca-lab --soak`: the lab under mixed load for a long time, with
//! every daemon's memory, open files, threads and tasks sampled throughout.
//!
//! The load: viewers in both ISPs (every segment checked against the packaged
//! files), steering's own health polls plus this tool's `/health` and
//! `/metrics` scrapes of every daemon, and a fill that never ends: a third
//! embedded appliance (`oca-c1`, no viewers) has its content removed and its
//! agent fills it again, over and over, from the sources its plan names, in
//! its order (peers that hold the content, the IXP parent, the origin).
//!
//! What a leak looks like: a series that keeps rising. Each series gets a
//! least-squares slope after a warm-up, and a second slope over its last half;
//! it is called growing only when both are above a threshold (a cache filling
//! towards its bound rises early and flattens, a leak does not).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use e2e::stack::{ApplianceSpec, Holds};
use serde::Serialize;

use crate::lab::{self, Lab, LabArgs, say};

/// The churned appliance: embedded, in a third ISP without viewers.
pub const CHURNED: &str = "oca-c1";

pub fn churned_spec() -> ApplianceSpec {
    ApplianceSpec {
        id: CHURNED,
        tier: "embedded",
        site: "isp-c",
        serves: &["127.3.0.0/16"],
        holds: Holds::Nothing,
        ..ApplianceSpec::default()
    }
}

#[derive(Debug, Clone)]
pub struct SoakArgs {
    pub lab: LabArgs,
    pub sample_every: Duration,
    /// Write every sample here as CSV.
    pub samples: Option<PathBuf>,
}

/// One daemon the soak watches.
pub struct Watched {
    pub name: String,
    pub pid: u32,
    /// Where its `/metrics` are, and the name of its task gauge.
    pub metrics: Option<(SocketAddr, &'static str)>,
    /// Its `/health` (appliances).
    pub health: Option<SocketAddr>,
}

/// Every daemon of the lab: steering, the appliances, the fill agents.
pub fn watched(lab: &Lab) -> Vec<Watched> {
    let mut out = vec![Watched {
        name: "steering".into(),
        pid: lab.s.steering.child.id(),
        metrics: Some((lab.s.addr, "steering_runtime_tasks")),
        health: None,
    }];
    for (id, (p, _)) in &lab.s.appliances {
        let admin = lab.s.admin(id);
        out.push(Watched {
            name: (*id).to_owned(),
            pid: p.child.id(),
            metrics: admin.map(|a| (a, "oca_runtime_tasks")),
            health: admin,
        });
    }
    for (id, p) in &lab.agents {
        out.push(Watched {
            name: format!("fill-agent {id}"),
            pid: p.child.id(),
            metrics: Some((p.addr("metrics="), "fill_runtime_tasks")),
            health: None,
        });
    }
    out
}

/// One process at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
    /// Tasks alive on its tokio runtimes, from its metrics.
    pub tasks: Option<u64>,
}

/// Resident memory, open descriptors and threads of `pid`; `None` once it is gone.
pub fn usage(pid: u32) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    // A zombie (killed, not yet reaped) has no VmRSS: it is gone.
    let rss_kib = field("VmRSS:")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Usage {
        rss_kib,
        fds,
        threads: field("Threads:").unwrap_or(0),
        tasks: None,
    })
}

/// The value of gauge `name` in a Prometheus text exposition.
pub fn gauge(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))?
        .trim()
        .parse::<f64>()
        .ok()
        .map(|v| v as u64)
}

/// Requests that answered 200 and that did not.
#[derive(Debug, Default, Serialize, Clone, Copy)]
pub struct Polls {
    pub ok: u64,
    pub failed: u64,
}

/// Sample `w` once, scraping its metrics (and health) on the way.
fn sample(w: &Watched, polls: &mut Polls) -> Option<Usage> {
    let mut u = usage(w.pid)?;
    if let Some(addr) = w.health {
        let ok = e2e::http(addr, "GET", "/health", &[], b"").is_some_and(|r| r.status == 200);
        count(polls, ok);
    }
    if let Some((addr, name)) = w.metrics {
        let r = e2e::http(addr, "GET", "/metrics", &[], b"");
        let ok = r.as_ref().is_some_and(|r| r.status == 200);
        count(polls, ok);
        u.tasks = r.and_then(|r| gauge(&String::from_utf8_lossy(&r.body), name));
    }
    Some(u)
}

fn count(p: &mut Polls, ok: bool) {
    if ok {
        p.ok += 1;
    } else {
        p.failed += 1;
    }
}

/// What the churn did.
#[derive(Debug, Default)]
pub struct Churn {
    pub cycles: AtomicU64,
    pub bytes: AtomicU64,
    /// Objects filled again whose bytes differ from the packaged file.
    pub wrong: Mutex<Vec<String>>,
    pub longest_ms: AtomicU64,
    pub error: Mutex<Option<String>>,
}

#[derive(Debug, Serialize)]
pub struct ChurnReport {
    pub cycles: u64,
    pub bytes: u64,
    pub wrong: Vec<String>,
    pub longest_cycle_s: f64,
    pub error: Option<String>,
}

impl Churn {
    pub fn report(&self) -> ChurnReport {
        ChurnReport {
            cycles: self.cycles.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            wrong: self.wrong.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            longest_cycle_s: self.longest_ms.load(Relaxed) as f64 / 1000.0,
            error: self.error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

/// Every committed object under an oca disk root's `objects/`: key → size.
pub fn objects(disk: &Path) -> BTreeMap<String, u64> {
    let base = disk.join("objects");
    let mut out = BTreeMap::new();
    let mut todo = vec![base.clone()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(p),
                Ok(m) => {
                    if let Ok(k) = p.strip_prefix(&base) {
                        out.insert(k.to_string_lossy().into_owned(), m.len());
                    }
                }
                Err(_) => {}
            }
        }
    }
    out
}

/// Objects of `disk` whose bytes differ from the packaged file of that key.
pub fn differing(disk: &Path, packaged: &Path, keys: &[String]) -> Vec<String> {
    keys.iter()
        .filter(|k| {
            let have = std::fs::read(disk.join("objects").join(k));
            let want = std::fs::read(packaged.join(k));
            !matches!((have, want), (Ok(h), Ok(w)) if h == w)
        })
        .cloned()
        .collect()
}

/// Until `finish` (at the end of a cycle) or `abort`: remove every object of the churned appliance (telling its
/// oca, as an eviction does), wake its fill agent (SIGHUP, pid in
/// `agent_pid`: a chaos run restarts it), wait until it has filled them all
/// again, and check their bytes.
pub fn churn(
    disk: &Path,
    admin: SocketAddr,
    packaged: &Path,
    agent_pid: &AtomicU32,
    finish: &AtomicBool,
    abort: &AtomicBool,
    out: &Churn,
) {
    let fail = |msg: String| {
        *out.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
    };
    let planned = objects(disk);
    if planned.is_empty() {
        return fail(format!("{CHURNED} holds nothing to churn"));
    }
    let keys: Vec<String> = planned.keys().cloned().collect();
    while !finish.load(Relaxed) && !abort.load(Relaxed) {
        let started = Instant::now();
        for k in &keys {
            let _ = std::fs::remove_file(disk.join("objects").join(k));
            let path = format!("/store/refresh/{k}");
            let _ = e2e::http(admin, "POST", &path, &[], b"");
        }
        let deadline = started + Duration::from_secs(300);
        let mut woken = None;
        loop {
            if abort.load(Relaxed) {
                return;
            }
            // Wake the agent now, and again if a restart took the signal.
            let pid = agent_pid.load(Relaxed);
            if woken != Some(pid) {
                let ok = std::process::Command::new("kill")
                    .args(["-HUP", &pid.to_string()])
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    woken = Some(pid);
                }
            }
            if objects(disk) == planned {
                break;
            }
            if Instant::now() > deadline {
                return fail(format!(
                    "{CHURNED}'s agent did not fill it again within 300 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let wrong = differing(disk, packaged, &keys);
        out.wrong
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(wrong);
        out.cycles.fetch_add(1, Relaxed);
        out.bytes.fetch_add(planned.values().sum(), Relaxed);
        out.longest_ms
            .fetch_max(started.elapsed().as_millis() as u64, Relaxed);
    }
}

/// A fitted trend of one series.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Trend {
    pub first: f64,
    pub last: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Least-squares slope after the warm-up, per hour.
    pub slope_per_hour: f64,
    /// The same over the last half of the run.
    pub late_slope_per_hour: f64,
}

/// Least-squares slope of `(seconds, value)` points, per second.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// The trend of `points` (time-ordered), ignoring those before `warmup` seconds.
pub fn trend(points: &[(f64, f64)], warmup: f64) -> Option<Trend> {
    let kept: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.0 >= warmup).collect();
    let (first, last) = (kept.first()?.1, kept.last()?.1);
    let mid = (kept.first()?.0 + kept.last()?.0) / 2.0;
    let late: Vec<(f64, f64)> = kept.iter().copied().filter(|p| p.0 >= mid).collect();
    Some(Trend {
        first,
        last,
        min: kept.iter().map(|p| p.1).fold(f64::INFINITY, f64::min),
        max: kept.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max),
        mean: kept.iter().map(|p| p.1).sum::<f64>() / kept.len() as f64,
        slope_per_hour: slope(&kept) * 3600.0,
        late_slope_per_hour: slope(&late) * 3600.0,
    })
}

/// Growth over `span_s` that is not noise: more than 10% of the mean and
/// more than `floor` (a few descriptors or MiB come and go with load).
pub fn growing(t: &Trend, span_s: f64, floor: f64) -> bool {
    let limit = (0.1 * t.mean).max(floor);
    let hours = span_s / 3600.0;
    // The late slope, over the same span, must say so too: a bounded cache
    // rises early and then flattens.
    t.slope_per_hour * hours > limit && t.late_slope_per_hour * hours > limit
}

/// The measures sampled, their unit as shown, the scale from the sample and
/// the floor under which growth is noise.
const MEASURES: [(&str, &str, f64, f64); 4] = [
    ("rss", "MiB", 1.0 / 1024.0, 4.0),
    ("fds", "", 1.0, 8.0),
    ("threads", "", 1.0, 4.0),
    ("tasks", "", 1.0, 16.0),
];

fn measure(u: &Usage, name: &str) -> Option<f64> {
    match name {
        "rss" => Some(u.rss_kib as f64),
        "fds" => Some(u.fds as f64),
        "threads" => Some(u.threads as f64),
        _ => u.tasks.map(|t| t as f64),
    }
}

#[derive(Debug, Serialize)]
pub struct Series {
    pub process: String,
    pub measure: String,
    pub unit: String,
    #[serde(flatten)]
    pub trend: Trend,
    pub growing: bool,
}

/// What the churn and the viewers' reports say went wrong with bytes (shared
/// by the soak and the chaos run).
pub fn byte_failures(
    churn: &ChurnReport,
    players: &BTreeMap<String, serde_json::Value>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(e) = &churn.error {
        out.push(e.clone());
    }
    if !churn.wrong.is_empty() {
        out.push(format!("fills wrote wrong bytes: {:?}", churn.wrong));
    }
    for (isp, r) in players {
        match r["wrong_bytes"].as_object() {
            Some(w) if w.is_empty() => {}
            Some(w) => out.push(format!("ISP {isp}'s viewers got wrong bytes: {w:?}")),
            None => out.push(format!("ISP {isp}'s viewers reported nothing")),
        }
    }
    out
}

#[derive(Debug, Serialize)]
pub struct SoakReport {
    pub duration_s: f64,
    pub sample_every_s: f64,
    pub samples: usize,
    pub warmup_s: f64,
    pub series: Vec<Series>,
    pub exited: Vec<String>,
    pub polls: Polls,
    pub churn: ChurnReport,
    pub players: BTreeMap<String, serde_json::Value>,
}

impl SoakReport {
    /// Everything that makes the soak a failure, one line each.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .exited
            .iter()
            .map(|p| format!("{p} exited during the soak"))
            .collect();
        for s in self.series.iter().filter(|s| s.growing) {
            out.push(format!(
                "{} {} keeps growing: {:+.1}{}/h",
                s.process, s.measure, s.trend.slope_per_hour, s.unit
            ));
        }
        out.extend(byte_failures(&self.churn, &self.players));
        out
    }

    pub fn table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "soak: {:.0} s, {} samples every {:.0} s; slopes fitted after {:.0} s of warm-up",
            self.duration_s, self.samples, self.sample_every_s, self.warmup_s
        );
        let _ = writeln!(
            o,
            "{:<22} {:<8} {:>9} {:>9} {:>9} {:>11} {:>11}  verdict",
            "process", "measure", "first", "max", "last", "slope/h", "late/h"
        );
        for s in &self.series {
            let t = &s.trend;
            let m = format!(
                "{}{}",
                s.measure,
                if s.unit.is_empty() {
                    String::new()
                } else {
                    format!(" {}", s.unit)
                }
            );
            let _ = writeln!(
                o,
                "{:<22} {:<8} {:>9.1} {:>9.1} {:>9.1} {:>+11.2} {:>+11.2}  {}",
                s.process,
                m,
                t.first,
                t.max,
                t.last,
                t.slope_per_hour,
                t.late_slope_per_hour,
                if s.growing { "GROWING" } else { "flat" }
            );
        }
        let _ = writeln!(
            o,
            "health and metrics polls: {} ok, {} failed",
            self.polls.ok, self.polls.failed
        );
        let _ = writeln!(
            o,
            "churn: {} fills of {} ({}), longest {:.1} s, {} wrong objects",
            self.churn.cycles,
            CHURNED,
            lab::mb(self.churn.bytes),
            self.churn.longest_cycle_s,
            self.churn.wrong.len()
        );
        for (isp, r) in &self.players {
            let _ = writeln!(
                o,
                "ISP {isp}: {}; {} segments verified, wrong bytes {}",
                lab::summary(r),
                r["verified_segments"],
                r["wrong_bytes"]
            );
        }
        o
    }
}

/// Run the soak; `stop` ends it early (the report covers what ran).
pub fn run(args: &SoakArgs, stop: Arc<AtomicBool>) -> Result<SoakReport> {
    let lab = lab::start(&args.lab, &[churned_spec()], &stop)?;
    let procs = watched(&lab);
    let duration = args.lab.duration;
    say(format!(
        "soak: {} viewers in each ISP for {:.0} s, {CHURNED} emptied and filled again and again, \
         every daemon sampled every {:.0} s",
        args.lab.viewers,
        duration.as_secs_f64(),
        args.sample_every.as_secs_f64()
    ));
    let players = lab::spawn_players(&lab, duration, Some(&lab.s.packaged))?;
    let churned = Churn::default();
    let agent_pid = AtomicU32::new(lab.agents[CHURNED].child.id());
    let disk = lab.s.root(CHURNED).join("disk0");
    let packaged = lab.s.packaged.clone();
    let admin = lab.s.admin(CHURNED).context("oca-c1's admin address")?;
    let done = AtomicBool::new(false);
    let mut csv = match &args.samples {
        Some(p) => {
            let mut f = std::fs::File::create(p)
                .with_context(|| format!("cannot create {}", p.display()))?;
            use std::io::Write as _;
            writeln!(f, "t_s,process,rss_kib,fds,threads,tasks")?;
            Some(f)
        }
        None => None,
    };
    let mut points: BTreeMap<(String, &str), Vec<(f64, f64)>> = BTreeMap::new();
    let mut exited = Vec::new();
    let mut polls = Polls::default();
    let mut samples = 0;
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(|| churn(&disk, admin, &packaged, &agent_pid, &done, &stop, &churned));
        let mut next = started;
        let mut last_progress = started;
        while started.elapsed() < duration && !stop.load(Relaxed) {
            let t = started.elapsed().as_secs_f64();
            for w in &procs {
                if exited.contains(&w.name) {
                    continue;
                }
                let Some(u) = sample(w, &mut polls) else {
                    exited.push(w.name.clone());
                    continue;
                };
                for (m, _, scale, _) in MEASURES {
                    if let Some(v) = measure(&u, m) {
                        points
                            .entry((w.name.clone(), m))
                            .or_default()
                            .push((t, v * scale));
                    }
                }
                if let Some(f) = csv.as_mut() {
                    use std::io::Write as _;
                    let tasks = u.tasks.map_or(String::new(), |t| t.to_string());
                    writeln!(
                        f,
                        "{t:.1},{},{},{},{},{tasks}",
                        w.name, u.rss_kib, u.fds, u.threads
                    )?;
                }
            }
            samples += 1;
            if last_progress.elapsed() >= Duration::from_secs(60) {
                last_progress = Instant::now();
                say(format!(
                    "  {:.0} s: {} fills of {CHURNED} so far",
                    started.elapsed().as_secs_f64(),
                    churned.cycles.load(Relaxed)
                ));
            }
            next += args.sample_every;
            let now = Instant::now();
            if next > now {
                std::thread::sleep((next - now).min(duration.saturating_sub(started.elapsed())));
            }
        }
        done.store(true, Relaxed);
        Ok(())
    })?;
    let ran = started.elapsed().as_secs_f64();
    let mut reports = BTreeMap::new();
    for (isp, r) in lab::collect_players(players, &stop)? {
        reports.insert(isp.to_owned(), r.unwrap_or(serde_json::Value::Null));
    }
    // Slopes after a warm-up: a fifth of the run, at most five minutes.
    let warmup = (ran / 5.0).min(300.0);
    let series = points
        .into_iter()
        .filter_map(|((process, m), pts)| {
            let (_, unit, _, floor) = MEASURES.iter().find(|x| x.0 == m)?;
            let trend = trend(&pts, warmup)?;
            let growing = growing(&trend, ran - warmup, *floor);
            Some(Series {
                process,
                measure: m.to_owned(),
                unit: (*unit).to_owned(),
                trend,
                growing,
            })
        })
        .collect();
    Ok(SoakReport {
        duration_s: ran,
        sample_every_s: args.sample_every.as_secs_f64(),
        samples,
        warmup_s: warmup,
        series,
        exited,
        polls,
        churn: churned.report(),
        players: reports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_a_flat_series() {
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 + 2.0 * i as f64)).collect();
        assert!((slope(&line) - 2.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 7.0)).collect();
        assert_eq!(slope(&flat), 0.0);
        assert_eq!(slope(&[(1.0, 1.0)]), 0.0);
    }

    #[test]
    fn a_leak_grows_and_a_filling_cache_does_not() {
        // 1 MiB a minute for an hour, sampled every 10 s.
        let leak: Vec<(f64, f64)> = (0..360)
            .map(|i| (i as f64 * 10.0, 20.0 + i as f64 / 6.0))
            .collect();
        let t = trend(&leak, 300.0).unwrap();
        assert!((t.slope_per_hour - 60.0).abs() < 0.5, "{t:?}");
        assert!(growing(&t, 3300.0, 4.0));
        // A cache that fills to 30 MiB in the first ten minutes, then stays.
        let cache: Vec<(f64, f64)> = (0..360)
            .map(|i| {
                let s = i as f64 * 10.0;
                (s, 20.0 + (s / 60.0).min(10.0))
            })
            .collect();
        let t = trend(&cache, 300.0).unwrap();
        assert!(!growing(&t, 3300.0, 4.0), "{t:?}");
        // Noise around a level.
        let noise: Vec<(f64, f64)> = (0..360)
            .map(|i| (i as f64 * 10.0, 40.0 + if i % 2 == 0 { 1.0 } else { -1.0 }))
            .collect();
        let t = trend(&noise, 300.0).unwrap();
        assert!(!growing(&t, 3300.0, 4.0), "{t:?}");
        assert_eq!(trend(&noise, 1e9), None);
    }

    #[test]
    fn gauges_are_read_from_an_exposition() {
        let text = "# HELP oca_runtime_tasks x\n# TYPE oca_runtime_tasks gauge\n\
                    oca_runtime_tasks 17\noca_runtime_tasks_other 3\n";
        assert_eq!(gauge(text, "oca_runtime_tasks"), Some(17));
        assert_eq!(gauge(text, "steering_runtime_tasks"), None);
    }

    #[test]
    fn usage_of_this_process_and_of_none() {
        let me = usage(std::process::id()).unwrap();
        assert!(me.rss_kib > 0 && me.fds > 0 && me.threads > 0);
        assert_eq!(usage(u32::MAX), None);
    }
}
