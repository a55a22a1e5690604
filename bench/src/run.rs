//! One bounded load run: worker threads, phases, CPU samples, progress, and
//! the merged result.
//!
//! Each worker thread runs a current-thread tokio runtime with its share of
//! the connections as local tasks: no work stealing, no cross-thread wakeups,
//! and one [`Stats`] per thread recorded without locks. The main thread only
//! samples CPU at the edges of the measured window and prints progress.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::client::{self, Live, Phases, Plan};
use crate::cpu;
use crate::stats::Stats;

/// Time allowed after the end for in-flight responses before they are
/// abandoned as timeouts (at most `--timeout`).
const GRACE: Duration = Duration::from_secs(3);

/// After the hard stop, how long to wait for a worker thread to hand back its
/// measurements before reporting without them (every await in a worker is
/// bounded by the hard stop, so this only guards against bugs).
const BACKSTOP: Duration = Duration::from_secs(2);

/// How long and how to run.
#[derive(Debug, Clone)]
pub struct Control {
    pub duration: Duration,
    pub warmup: Duration,
    pub threads: usize,
    pub server_pids: Vec<u32>,
    /// Print a progress line each second (only for runs longer than 3 s).
    pub progress: bool,
}

/// What a run measured, before it is turned into a report.
#[derive(Debug)]
pub struct Outcome {
    pub stats: Stats,
    /// Server CPU seconds over the measured window, if pids were given.
    pub server_cpu_s: Option<f64>,
    /// This process's CPU seconds over the measured window.
    pub client_cpu_s: f64,
    /// Worker threads actually used.
    pub threads: usize,
    /// Worker threads that did not report in time (their figures are missing).
    pub threads_lost: usize,
}

/// Runs `plan` for the control's duration and returns the merged measurements.
pub fn run(plan: &Arc<Plan>, control: &Control) -> Result<Outcome> {
    let threads = control.threads.clamp(1, plan.connections.max(1));
    let start = Instant::now();
    let warm_end = start + control.warmup;
    let end = warm_end + control.duration;
    let hard_stop = end + GRACE.min(plan.timeout);
    let phases = Phases {
        start: start.into(),
        warm_end: warm_end.into(),
        end: end.into(),
        hard_stop: hard_stop.into(),
    };

    let (tx, rx) = mpsc::channel::<Stats>();
    let mut lives = Vec::with_capacity(threads);
    for t in 0..threads {
        let live = Arc::new(Live::default());
        lives.push(live.clone());
        let conns: Vec<usize> = (t..plan.connections).step_by(threads).collect();
        let plan = plan.clone();
        let tx = tx.clone();
        std::thread::Builder::new()
            .name(format!("bench-{t}"))
            .spawn(move || {
                let stats = worker(&plan, phases, &conns, live);
                let _ = tx.send(stats);
            })
            .context("cannot start a worker thread")?;
    }
    drop(tx);

    let progress = control.progress && control.warmup + control.duration > Duration::from_secs(3);
    let mut before = (control.warmup.is_zero()).then(|| cpu::sample(&control.server_pids));
    let mut after = None;
    let mut reporter = Progress::default();
    let mut next_tick = start + Duration::from_secs(1);
    let mut merged = Stats::default();
    let mut reported = 0;
    while reported < threads {
        let now = Instant::now();
        if before.is_none() && now >= warm_end {
            before = Some(cpu::sample(&control.server_pids));
        }
        if after.is_none() && now >= end {
            after = Some(cpu::sample(&control.server_pids));
        }
        if now >= next_tick {
            if progress && now < end {
                reporter.print(now - start, &lives, now < warm_end);
            }
            next_tick += Duration::from_secs(1);
        }
        if now >= hard_stop + BACKSTOP {
            break;
        }
        let mut wake = next_tick.min(hard_stop + BACKSTOP);
        if before.is_none() {
            wake = wake.min(warm_end);
        }
        if after.is_none() {
            wake = wake.min(end);
        }
        match rx.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(stats) => {
                merged.merge(&stats);
                reported += 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let after = after.unwrap_or_else(|| cpu::sample(&control.server_pids));
    let before = before.unwrap_or_else(|| after.clone());
    let (server_cpu_s, client_cpu_s) = cpu::used(&before, &after);
    Ok(Outcome {
        stats: merged,
        server_cpu_s,
        client_cpu_s,
        threads,
        threads_lost: threads - reported,
    })
}

/// One worker thread: its connections as tasks on a current-thread runtime.
fn worker(plan: &Arc<Plan>, phases: Phases, conns: &[usize], live: Arc<Live>) -> Stats {
    let stats = Rc::new(RefCell::new(Stats::default()));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => {
            // Without a runtime no request can be made; say so in the figures.
            let mut s = stats.borrow_mut();
            for _ in conns {
                s.error(crate::stats::ErrorKind::Connect);
            }
            drop(s);
            return stats.take();
        }
    };
    let local = tokio::task::LocalSet::new();
    for &i in conns {
        local.spawn_local(client::connection(
            i,
            plan.clone(),
            phases,
            stats.clone(),
            live.clone(),
        ));
    }
    let backstop = phases.hard_stop + BACKSTOP / 2;
    rt.block_on(async {
        let _ = tokio::time::timeout_at(backstop, local).await;
    });
    stats.take()
}

/// The once-a-second progress line on stderr.
#[derive(Debug, Default)]
struct Progress {
    requests: u64,
    bytes: u64,
    errors: u64,
}

impl Progress {
    fn print(&mut self, elapsed: Duration, lives: &[Arc<Live>], warmup: bool) {
        let sum = |f: fn(&Live) -> u64| lives.iter().map(|l| f(l)).sum::<u64>();
        let requests = sum(|l| l.requests.load(Relaxed));
        let bytes = sum(|l| l.bytes.load(Relaxed));
        let errors = sum(|l| l.errors.load(Relaxed));
        eprintln!(
            "{:>6.1}s {}{:>10} req/s {:>8.3} Gbit/s {:>6} errors",
            elapsed.as_secs_f64(),
            if warmup { "warmup " } else { "" },
            requests - self.requests,
            (bytes - self.bytes) as f64 * 8.0 / 1e9,
            errors - self.errors,
        );
        *self = Progress {
            requests,
            bytes,
            errors,
        };
    }
}
