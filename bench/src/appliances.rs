//! Many appliances against the control plane at once: each registers, then
//! heartbeats every `--interval` (its first heartbeat with the full
//! inventory, later ones with nothing new, as a quiet appliance does), and
//! answers steering's health polls on one shared admin listener. Heartbeats
//! are open loop (each appliance keeps its own schedule whatever steering
//! does), spread evenly over the interval, and share a pool of connections.
//! Reported: heartbeats answered, their latency, and polls answered.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use control_client::wire::{
    ApplianceInfo, HealthSummary, Heartbeat, Inventory, RegisterRequest, RenditionHolding, Tier,
    inventory_digest,
};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::agent::{Agent, Request};
use crate::cli::AppliancesArgs;
use crate::plays::Latency;
use crate::schedule::Surge;
use crate::stats::histogram;
use crate::url::Url;

#[derive(Debug, Clone, Serialize)]
pub struct AppliancesReport {
    pub appliances: u64,
    pub interval_s: f64,
    pub duration_s: f64,
    pub registered: u64,
    pub heartbeats_ok: u64,
    pub heartbeats_per_s: f64,
    pub heartbeats_failed: u64,
    /// Heartbeats not sent: due before the end, but their appliance's
    /// connection was still busy with earlier ones when the run ended.
    pub heartbeats_missed: u64,
    /// Heartbeat latency from the intended send time, ms.
    pub latency_ms: Latency,
    /// Health polls steering made to the simulated admin listener.
    pub polls_answered: u64,
}

/// The credential steering's config declares for simulated appliance `id`
/// (bench/control.py writes the same).
pub fn credential(id: &str) -> String {
    format!("{id}-sim-credential")
}

/// Simulated appliances as another run uses them (`plays --appliances`):
/// registered and heartbeating alongside, each reporting the egress of the
/// streams steered to it.
#[derive(Clone)]
pub struct Sims {
    pub base: String,
    pub count: u64,
    pub prefix: String,
    pub region: String,
    pub renditions: Vec<RenditionHolding>,
    pub interval: Duration,
    pub connections: usize,
    pub capacity_bps: u64,
    /// The streams on each appliance; without it every appliance reports
    /// 1 Gbit/s.
    pub load: Option<Arc<Load>>,
    /// Heartbeat latency is split by the surge's phases, counted from when
    /// the other run starts (set once it does; heartbeats before are not
    /// recorded).
    pub surge: Option<(Surge, Arc<OnceLock<Instant>>)>,
    /// Heartbeats stop when this turns true (besides at `end`).
    pub stop: Option<watch::Receiver<bool>>,
    /// Appliances registered so far.
    pub registered: Arc<AtomicU64>,
}

/// Streams steered to each simulated appliance, and the bitrate of one.
pub struct Load {
    streams: Vec<AtomicU64>,
    stream_bps: u64,
}

impl Load {
    pub fn new(count: u64, stream_bps: u64) -> Load {
        Load {
            streams: (0..count).map(|_| AtomicU64::new(0)).collect(),
            stream_bps,
        }
    }

    /// One more stream on appliance `j`.
    pub fn add(&self, j: usize) {
        if let Some(s) = self.streams.get(j) {
            s.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn stream_bps(&self) -> u64 {
        self.stream_bps
    }

    pub fn egress_bps(&self, j: usize) -> u64 {
        self.streams
            .get(j)
            .map_or(0, |s| s.load(Ordering::Relaxed) * self.stream_bps)
    }
}

/// What the simulated fleet saw: the report's figures, and heartbeat
/// latency per surge phase (all in the first without a surge).
pub struct SimsOutcome {
    pub report: AppliancesReport,
    pub by_phase: [hdrhistogram::Histogram<u64>; 3],
}

pub fn appliances(args: &AppliancesArgs) -> Result<AppliancesReport> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let base = args.steering.trim_end_matches('/').to_owned();
    Url::parse(&base).context("--steering")?;
    let renditions = holdings(&args.renditions, args.objects);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.unwrap_or(1))
        .enable_all()
        .build()?;
    let sims = Sims {
        base,
        count: args.count,
        prefix: args.prefix.clone(),
        region: args.region.clone(),
        renditions,
        interval: args.interval,
        connections: args.connections,
        capacity_bps: 10_000_000_000,
        load: None,
        surge: None,
        stop: None,
        registered: Arc::default(),
    };
    let admin = args.admin_listen.clone();
    rt.block_on(async move {
        let start = Instant::now();
        run_sims(sims, &admin, start, start + args.duration)
            .await
            .map(|o| o.report)
    })
}

/// What `--renditions` names, each with `objects` objects.
pub fn holdings(renditions: &str, objects: u64) -> Vec<RenditionHolding> {
    renditions
        .split(',')
        .filter(|r| !r.is_empty())
        .map(|r| RenditionHolding {
            rendition: r.to_owned(),
            objects,
            bytes: objects * 1_000_000,
        })
        .collect()
}

/// Register every simulated appliance, heartbeat each every interval from
/// `start` to `end`, and answer health polls on `admin_listen`.
pub async fn run_sims(
    sims: Sims,
    admin_listen: &str,
    start: Instant,
    end: Instant,
) -> Result<SimsOutcome> {
    let polls = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind(admin_listen)
        .await
        .with_context(|| format!("--admin-listen {admin_listen}"))?;
    let admin = listener.local_addr()?;
    tokio::spawn(serve_health(listener, Arc::clone(&polls)));
    // Heartbeats start once every appliance has registered.
    let registering = Arc::new(AtomicU64::new(0));
    let conns = sims.connections.min(sims.count as usize).max(1);
    let mut tasks = Vec::new();
    for k in 0..conns {
        let mine: Vec<u64> = (0..sims.count)
            .filter(|j| *j as usize % conns == k)
            .collect();
        let job = Job {
            registering: Arc::clone(&registering),
            conns: conns as u64,
            sims: sims.clone(),
            admin,
            start,
            end,
        };
        tasks.push(tokio::spawn(async move { job.run(mine).await }));
    }
    let mut by_phase = [histogram(), histogram(), histogram()];
    let (mut registered, mut failed, mut missed) = (0, 0, 0);
    for t in tasks {
        let (r, f, m, h) = t.await?;
        registered += r;
        failed += f;
        missed += m;
        for (all, one) in by_phase.iter_mut().zip(&h) {
            all.add(one).expect("same bounds");
        }
    }
    let mut lat = histogram();
    for h in &by_phase {
        lat.add(h).expect("same bounds");
    }
    let ok = lat.len();
    let duration = end.duration_since(start).as_secs_f64();
    Ok(SimsOutcome {
        report: AppliancesReport {
            appliances: sims.count,
            interval_s: sims.interval.as_secs_f64(),
            duration_s: duration,
            registered,
            heartbeats_ok: ok,
            heartbeats_per_s: ok as f64 / duration,
            heartbeats_failed: failed,
            heartbeats_missed: missed,
            latency_ms: Latency::of(&lat),
            polls_answered: polls.load(Ordering::Relaxed),
        },
        by_phase,
    })
}

struct Job {
    /// Tasks done registering (the last one says so on stderr).
    registering: Arc<AtomicU64>,
    conns: u64,
    sims: Sims,
    admin: SocketAddr,
    start: Instant,
    end: Instant,
}

type Latencies = [hdrhistogram::Histogram<u64>; 3];

impl Job {
    fn id(&self, j: u64) -> String {
        format!("{}-{j}", self.sims.prefix)
    }

    /// Register `mine`, then heartbeat each on its schedule until the end:
    /// (registered, failed, missed heartbeats, heartbeat latency by phase).
    async fn run(self, mine: Vec<u64>) -> (u64, u64, u64, Latencies) {
        let mut agent = Agent::new(None, None);
        let mut lat = [histogram(), histogram(), histogram()];
        let (mut registered, mut failed, mut missed) = (0, 0, 0);
        for &j in &mine {
            let id = self.id(j);
            let info = ApplianceInfo {
                tier: Tier::Embedded,
                site: format!("sim-site-{}", j / 4),
                region: self.sims.region.clone(),
                asn: 64_512 + (j % 1000) as u32,
                http_url: Some(format!("http://127.0.0.1:9/{id}")),
                https_url: None,
                admin_url: format!("http://{}/a/{id}", self.admin),
                capacity_bps: self.sims.capacity_bps,
                storage_bytes: 1 << 40,
                version: "sim".into(),
            };
            let body = serde_json::to_vec(&RegisterRequest { info }).expect("plain data");
            if self
                .post(
                    &mut agent,
                    &format!("/v1/appliances/{id}/register"),
                    &id,
                    &body,
                )
                .await
            {
                registered += 1;
                self.sims.registered.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.registering.fetch_add(1, Ordering::AcqRel) + 1 == self.conns {
            eprintln!(
                "oca-bench: {} appliances registered; heartbeating",
                self.sims.count
            );
        }
        // The schedule starts when this task is done registering.
        let start = Instant::now().max(self.start);
        let full = Inventory::Full {
            version: 1,
            digest: inventory_digest(&self.sims.renditions),
            renditions: self.sims.renditions.clone(),
        };
        let spacing = self.sims.interval.as_secs_f64() / self.sims.count as f64;
        'rounds: for n in 0u32.. {
            for &j in &mine {
                let intended =
                    start + self.sims.interval * n + Duration::from_secs_f64(spacing * j as f64);
                if intended >= self.end {
                    break 'rounds;
                }
                // The run is over even if this connection fell behind: what
                // it did not get to counts as missed, not as late forever.
                if Instant::now() >= self.end {
                    missed += 1;
                    continue;
                }
                match self.sims.stop.clone() {
                    Some(mut stop) => tokio::select! {
                        _ = tokio::time::sleep_until(intended) => {}
                        _ = stop.wait_for(|s| *s) => break 'rounds,
                    },
                    None => tokio::time::sleep_until(intended).await,
                }
                let id = self.id(j);
                let egress_bps = self
                    .sims
                    .load
                    .as_ref()
                    .map_or(1_000_000_000, |l| l.egress_bps(j as usize));
                let hb = Heartbeat {
                    health: HealthSummary {
                        status: "ok".into(),
                        egress_bps,
                        capacity_bps: self.sims.capacity_bps,
                        connections: 100,
                    },
                    inventory: (n == 0).then(|| full.clone()),
                    prefixes: None,
                };
                let body = serde_json::to_vec(&hb).expect("plain data");
                if self
                    .post(
                        &mut agent,
                        &format!("/v1/appliances/{id}/heartbeat"),
                        &id,
                        &body,
                    )
                    .await
                {
                    let us = intended.elapsed().as_micros() as u64;
                    let phase = match &self.sims.surge {
                        None => Some(0),
                        Some((surge, began)) => began
                            .get()
                            .filter(|b| intended >= **b)
                            .map(|b| surge.phase(intended.duration_since(*b)) as usize),
                    };
                    if let Some(p) = phase {
                        lat[p].saturating_record(us.max(1));
                    }
                } else {
                    failed += 1;
                }
            }
        }
        (registered, failed, missed, lat)
    }

    async fn post(&self, agent: &mut Agent, path: &str, id: &str, body: &[u8]) -> bool {
        let Ok(url) = Url::parse(&format!("{}{path}", self.sims.base)) else {
            return false;
        };
        let auth = format!("Bearer {id}:{}", credential(id));
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        let req = Request {
            method: "POST",
            url: &url,
            headers: &headers,
            body,
            keep: false,
        };
        matches!(
            agent.fetch(&req, Instant::now() + Duration::from_secs(10)).await,
            Ok(r) if r.ok()
        )
    }
}

/// Every simulated appliance's admin `/health`, on one listener: each GET
/// gets an `ok` health, on keep-alive connections.
async fn serve_health(listener: tokio::net::TcpListener, polls: Arc<AtomicU64>) {
    const BODY: &str = r#"{"status":"ok","egress_bps":1000000000,"capacity_bps":10000000000,"connections_active":100}"#;
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let polls = Arc::clone(&polls);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut have = 0;
            loop {
                // One request head at a time (GETs carry no body).
                let end = loop {
                    if let Some(p) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                    if have == buf.len() {
                        return;
                    }
                    match conn.read(&mut buf[have..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => have += n,
                    }
                };
                buf.copy_within(end..have, 0);
                have -= end;
                polls.fetch_add(1, Ordering::Relaxed);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
                    BODY.len()
                );
                if conn.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

impl AppliancesReport {
    pub fn table(&self) -> String {
        let l = &self.latency_ms;
        format!(
            "{} appliances, heartbeat every {:.0} s, {:.0} s: {} registered, {} heartbeats ({:.1}/s), {} failed, {} missed, {} polls answered\n  heartbeat latency ms: p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}\n",
            self.appliances,
            self.interval_s,
            self.duration_s,
            self.registered,
            self.heartbeats_ok,
            self.heartbeats_per_s,
            self.heartbeats_failed,
            self.heartbeats_missed,
            self.polls_answered,
            l.p50,
            l.p99,
            l.p999,
            l.max
        )
    }
}
