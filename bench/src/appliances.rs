//! Many appliances against the control plane at once: each registers, then
//! heartbeats every `--interval` (its first heartbeat with the full
//! inventory, later ones with nothing new, as a quiet appliance does), and
//! answers steering's health polls on one shared admin listener. Heartbeats
//! are open loop (each appliance keeps its own schedule whatever steering
//! does), spread evenly over the interval, and share a pool of connections.
//! Reported: heartbeats answered, their latency, and polls answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use control_client::wire::{
    ApplianceInfo, HealthSummary, Heartbeat, Inventory, RegisterRequest, RenditionHolding, Tier,
    inventory_digest,
};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::agent::{Agent, Request};
use crate::cli::AppliancesArgs;
use crate::plays::Latency;
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

pub fn appliances(args: &AppliancesArgs) -> Result<AppliancesReport> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let base = args.steering.trim_end_matches('/').to_owned();
    Url::parse(&base).context("--steering")?;
    let renditions: Vec<RenditionHolding> = args
        .renditions
        .split(',')
        .filter(|r| !r.is_empty())
        .map(|r| RenditionHolding {
            rendition: r.to_owned(),
            objects: args.objects,
            bytes: args.objects * 1_000_000,
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.unwrap_or(1))
        .enable_all()
        .build()?;
    rt.block_on(async {
        let polls = Arc::new(AtomicU64::new(0));
        let listener = tokio::net::TcpListener::bind(&args.admin_listen)
            .await
            .with_context(|| format!("--admin-listen {}", args.admin_listen))?;
        let admin = listener.local_addr()?;
        tokio::spawn(serve_health(listener, Arc::clone(&polls)));
        // Heartbeats start once every appliance has registered.
        let registering = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let end = start + args.duration;
        let conns = args.connections.min(args.count as usize).max(1);
        let mut tasks = Vec::new();
        for k in 0..conns {
            let mine: Vec<u64> = (0..args.count)
                .filter(|j| *j as usize % conns == k)
                .collect();
            let job = Job {
                registering: Arc::clone(&registering),
                conns: conns as u64,
                base: base.clone(),
                prefix: args.prefix.clone(),
                region: args.region.clone(),
                admin,
                renditions: renditions.clone(),
                count: args.count,
                interval: args.interval,
                start,
                end,
            };
            tasks.push(tokio::spawn(async move { job.run(mine).await }));
        }
        let mut lat = histogram();
        let (mut registered, mut failed, mut missed) = (0, 0, 0);
        for t in tasks {
            let (r, f, m, h) = t.await?;
            registered += r;
            failed += f;
            missed += m;
            lat.add(&h).expect("same bounds");
        }
        let ok = lat.len();
        anyhow::Ok(AppliancesReport {
            appliances: args.count,
            interval_s: args.interval.as_secs_f64(),
            duration_s: args.duration.as_secs_f64(),
            registered,
            heartbeats_ok: ok,
            heartbeats_per_s: ok as f64 / args.duration.as_secs_f64(),
            heartbeats_failed: failed,
            heartbeats_missed: missed,
            latency_ms: Latency::of(&lat),
            polls_answered: polls.load(Ordering::Relaxed),
        })
    })
}

struct Job {
    /// Tasks done registering (the last one says so on stderr).
    registering: Arc<AtomicU64>,
    conns: u64,
    base: String,
    prefix: String,
    region: String,
    admin: SocketAddr,
    renditions: Vec<RenditionHolding>,
    count: u64,
    interval: Duration,
    start: Instant,
    end: Instant,
}

impl Job {
    fn id(&self, j: u64) -> String {
        format!("{}-{j}", self.prefix)
    }

    /// Register `mine`, then heartbeat each on its schedule until the end:
    /// (registered, failed, missed heartbeats, heartbeat latency).
    async fn run(self, mine: Vec<u64>) -> (u64, u64, u64, hdrhistogram::Histogram<u64>) {
        let mut agent = Agent::new(None, None);
        let mut lat = histogram();
        let (mut registered, mut failed, mut missed) = (0, 0, 0);
        for &j in &mine {
            let id = self.id(j);
            let info = ApplianceInfo {
                tier: Tier::Embedded,
                site: format!("sim-site-{}", j / 4),
                region: self.region.clone(),
                asn: 64_512 + (j % 1000) as u32,
                http_url: Some(format!("http://127.0.0.1:9/{id}")),
                https_url: None,
                admin_url: format!("http://{}/a/{id}", self.admin),
                capacity_bps: 10_000_000_000,
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
            }
        }
        if self.registering.fetch_add(1, Ordering::AcqRel) + 1 == self.conns {
            eprintln!(
                "oca-bench: {} appliances registered; heartbeating",
                self.count
            );
        }
        // The schedule starts when this task is done registering.
        let start = Instant::now().max(self.start);
        let full = Inventory::Full {
            version: 1,
            digest: inventory_digest(&self.renditions),
            renditions: self.renditions.clone(),
        };
        let spacing = self.interval.as_secs_f64() / self.count as f64;
        'rounds: for n in 0u32.. {
            for &j in &mine {
                let intended =
                    start + self.interval * n + Duration::from_secs_f64(spacing * j as f64);
                if intended >= self.end {
                    break 'rounds;
                }
                // The run is over even if this connection fell behind: what
                // it did not get to counts as missed, not as late forever.
                if Instant::now() >= self.end {
                    missed += 1;
                    continue;
                }
                tokio::time::sleep_until(intended).await;
                let id = self.id(j);
                let hb = Heartbeat {
                    health: HealthSummary {
                        status: "ok".into(),
                        egress_bps: 1_000_000_000,
                        capacity_bps: 10_000_000_000,
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
                    lat.saturating_record(us.max(1));
                } else {
                    failed += 1;
                }
            }
        }
        (registered, failed, missed, lat)
    }

    async fn post(&self, agent: &mut Agent, path: &str, id: &str, body: &[u8]) -> bool {
        let Ok(url) = Url::parse(&format!("{}{path}", self.base)) else {
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
