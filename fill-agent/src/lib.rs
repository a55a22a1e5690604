//! `fill-agent`: makes an appliance's disks match its fill plan, off-peak.
//!
//! Each pass: fetch the plan (or use the last good one), work out which
//! planned objects are missing (urgent ones at any time, the rest inside the
//! fill window), make room by evicting what the plan no longer wants, then
//! download under the rate and concurrency caps from the plan's sources in
//! order, verify, commit atomically and tell oca. Pure decisions live in
//! `window`, `work`, `evict`, `rate` and `sources`; this module only drives them.

pub mod config;
pub mod disk;
pub mod evict;
pub mod fetch;
pub mod rate;
pub mod scrub;
pub mod sources;
pub mod status;
pub mod window;
pub mod work;

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use control_client::wire::{FillPlan, FillSource};
use control_client::{ControlClient, RetryPolicy};
use tokio::sync::{Semaphore, watch};

use crate::config::Config;
use crate::disk::Disks;
use crate::sources::Sources;
use crate::status::{Metrics, OutcomeLabel, SourceLabel, Status};

/// The agent's idea of the time: the wall clock, or (for labs and tests) a
/// given start time running at a given speed, so windows can be exercised
/// without waiting for the night.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: f64,
    speed: f64,
    started: Instant,
}

impl Clock {
    pub fn real() -> Clock {
        Clock::starting_at(wall(), 1.0)
    }

    pub fn starting_at(unix: f64, speed: f64) -> Clock {
        Clock {
            base: unix,
            speed,
            started: Instant::now(),
        }
    }

    pub fn now(&self) -> u64 {
        (self.base + self.started.elapsed().as_secs_f64() * self.speed).max(0.0) as u64
    }
}

fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Everything a pass uses.
struct Agent {
    cfg: Config,
    clock: Clock,
    disks: Disks,
    control: ControlClient,
    oca: Option<(String, reqwest::Client)>,
    fetch: Arc<fetch::Shared>,
    sources: Mutex<Sources>,
    status: Mutex<Status>,
    metrics: Metrics,
}

impl Agent {
    fn set(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The one-line STATUS= for `systemctl status`.
    fn status_line(&self) -> String {
        let s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let mut line = format!(
            "{}: {}/{} objects, {:.1}/{:.1} GB",
            s.state,
            s.objects_done,
            s.objects_total,
            s.bytes_done as f64 / 1e9,
            s.bytes_total as f64 / 1e9
        );
        if !s.sources.is_empty() {
            line += &format!(
                " from {} at {:.1} Mbit/s",
                s.sources.join(", "),
                s.rate_bps as f64 / 1e6
            );
        }
        line
    }

    fn fail(&self, msg: String) {
        tracing::warn!(error = %msg, "fill");
        self.set(|s| {
            s.failures += 1;
            s.last_error = Some(msg);
        });
    }

    /// Tell oca that `key` was committed or removed (it also finds committed
    /// objects on first request, but would not report them until then).
    async fn tell_oca(&self, key: &str) {
        let Some((base, http)) = &self.oca else {
            return;
        };
        let url = format!("{base}/store/refresh/{key}");
        match http.post(&url).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(%key, status = %r.status(), "oca refused a refresh"),
            Err(e) => tracing::warn!(%key, error = %e, "cannot reach oca's admin listener"),
        }
    }

    /// Eviction candidates: renditions on disk with oca's access statistics
    /// (or none, if oca does not answer: then recency is unknown and size
    /// alone orders them).
    async fn candidates(&self, on_disk: &[(String, u64)]) -> Vec<evict::Candidate> {
        #[derive(serde::Deserialize)]
        struct Stat {
            rendition: String,
            hits: u64,
            last_access: u64,
        }
        let mut stats: Vec<Stat> = Vec::new();
        if let Some((base, http)) = &self.oca {
            match http.get(format!("{base}/store/renditions")).send().await {
                Ok(r) => stats = r.json().await.unwrap_or_default(),
                Err(e) => tracing::warn!(error = %e, "no access statistics from oca"),
            }
        }
        let mut by: std::collections::BTreeMap<&str, u64> = Default::default();
        for (key, size) in on_disk {
            let dir = key.rsplit_once('/').map_or("", |(d, _)| d);
            *by.entry(dir).or_default() += size;
        }
        by.into_iter()
            .map(|(r, bytes)| {
                let s = stats.iter().find(|s| s.rendition == r);
                evict::Candidate {
                    rendition: r.to_owned(),
                    bytes,
                    hits: s.map_or(0, |s| s.hits),
                    last_access: s.map_or(0, |s| s.last_access),
                }
            })
            .collect()
    }
}

/// What a pass ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Nothing left that may be fetched now.
    Done,
    /// Work remains (failed sources, a window that just opened): look again soon.
    Again,
}

/// Run until `shutdown` completes; `wake` starts a pass at once (SIGHUP).
pub async fn run(
    cfg: Config,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send + 'static,
    wake: Arc<tokio::sync::Notify>,
) -> anyhow::Result<()> {
    let c = &cfg.control;
    let control = ControlClient::new(
        &c.url,
        &c.appliance_id,
        &c.credential,
        &c.cache_dir,
        c.ca_file.as_deref(),
        RetryPolicy::default(),
    )
    .map_err(|e| anyhow::anyhow!("control client: {e}"))?;
    let http = control_client::transfer_client(
        cfg.request_timeout,
        cfg.request_timeout,
        c.ca_file.as_deref(),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let oca = match &cfg.oca_admin {
        Some(u) => Some((
            u.trim_end_matches('/').to_owned(),
            control_client::http_client(Duration::from_secs(2), None)
                .map_err(|e| anyhow::anyhow!(e))?,
        )),
        None => None,
    };
    let agent = Arc::new(Agent {
        disks: Disks::new(cfg.stores.clone()).requiring_mounts(cfg.require_mount),
        fetch: Arc::new(fetch::Shared {
            http,
            bucket: Mutex::new(rate::Bucket::new(cfg.rate_bps, Instant::now())),
            min_throughput_bps: cfg.min_throughput_bps,
            slow_grace: cfg.slow_grace,
            received: Default::default(),
        }),
        sources: Mutex::new(Sources::new(
            cfg.source_backoff,
            cfg.source_backoff.saturating_mul(64),
        )),
        status: Mutex::new(Status {
            state: "starting",
            ..Status::default()
        }),
        metrics: Metrics::new(),
        control,
        oca,
        clock,
        cfg,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let reporter = tokio::spawn(report(Arc::clone(&agent), stop_rx.clone()));
    let metrics = match agent.cfg.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
            println!(
                "fill-agent metrics={}",
                listener.local_addr().map_err(anyhow::Error::from)?
            );
            Some(tokio::spawn(serve_metrics(
                Arc::clone(&agent),
                listener,
                stop_rx.clone(),
            )))
        }
        None => {
            println!("fill-agent started");
            None
        }
    };
    let work = {
        let agent = Arc::clone(&agent);
        let mut stop = stop_rx.clone();
        async move {
            loop {
                let pass = tokio::select! {
                    p = one_pass(&agent) => p,
                    _ = stop.changed() => return,
                };
                let wait = match pass {
                    Pass::Done => agent.cfg.poll_interval,
                    Pass::Again => agent.cfg.poll_interval.min(Duration::from_secs(1)),
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = wake.notified() => tracing::info!("woken: fetching the plan now"),
                    _ = stop.changed() => return,
                }
            }
        }
    };
    let worker = tokio::spawn(work);
    let scrubber = tokio::spawn(scrub_loop(Arc::clone(&agent), stop_rx.clone()));
    // The runtime beats; the watchdog pings systemd while it does.
    let liveness = service::Liveness::new(vec!["runtime".into()]);
    let beat = tokio::spawn(Arc::clone(&liveness).heartbeat(0));
    let status_of = Arc::clone(&agent);
    let watchdog = service::Watchdog::start(liveness, move || status_of.status_line())?;
    service::notify::ready(&agent.status_line());
    shutdown.await;
    service::notify::stopping("stopping; downloads in progress resume next run");
    drop(watchdog);
    beat.abort();
    tracing::info!("stopping; downloads in progress resume next run");
    let _ = stop_tx.send(true);
    let _ = worker.await;
    let _ = scrubber.await;
    let _ = reporter.await;
    if let Some(m) = metrics {
        let _ = m.await;
    }
    Ok(())
}

/// The plan, or the last good one when the control plane is unreachable.
async fn plan(agent: &Agent) -> Option<FillPlan> {
    match agent.control.fill_plan().await {
        Ok(p) => Some(p),
        Err(e) => {
            let cached = agent.control.cached_fill_plan();
            tracing::warn!(error = %e, cached = cached.is_some(), "cannot fetch the fill plan");
            cached
        }
    }
}

async fn one_pass(agent: &Arc<Agent>) -> Pass {
    let Some(plan) = plan(agent).await else {
        agent.set(|s| s.state = "no-plan");
        return Pass::Again;
    };
    let now = agent.clock.now();
    let open = window::is_open(&plan.window, now);
    agent.metrics.window_open.set(i64::from(open));
    agent.metrics.plan_version.set(plan.version as i64);
    // A plan is input from the network: keys and hashes are checked before
    // they name files.
    let bad: Vec<&str> = plan
        .items
        .iter()
        .flat_map(|i| &i.objects)
        .filter(|o| !disk::safe_key(&o.key) || !disk::safe_sha(&o.sha256))
        .map(|o| o.key.as_str())
        .collect();
    if !bad.is_empty() {
        agent.fail(format!(
            "plan {} has {} unusable object(s), e.g. {:?}; skipped",
            plan.version,
            bad.len(),
            bad[0]
        ));
    }
    // Everything missing, window or not (one stat per planned object): what
    // may be fetched now, and whether the rest waits for the window.
    let (wanted, later): (Vec<work::Wanted<'_>>, Vec<work::Wanted<'_>>) =
        work::missing(&plan, |k| agent.disks.present(k), true)
            .into_iter()
            .filter(|w| disk::safe_key(&w.object.key) && disk::safe_sha(&w.object.sha256))
            .partition(|w| open || w.item.urgent);
    let later = !later.is_empty();
    if wanted.is_empty() {
        agent.set(|s| {
            s.state = if later { "waiting-window" } else { "complete" };
            s.plan_version = plan.version;
            s.window_open = open;
            s.sources.clear();
        });
        agent.metrics.remaining_bytes.set(0);
        return Pass::Done;
    }
    let room = make_room(agent, &plan, &wanted, now).await;
    let (todo, left_out) = work::fit(wanted, room);
    let total: u64 = todo.iter().map(|w| w.object.size).sum();
    agent.set(|s| {
        s.state = if todo.is_empty() {
            "blocked"
        } else {
            "filling"
        };
        s.plan_version = plan.version;
        s.window_open = open;
        s.objects_total = todo.len() as u64;
        s.objects_done = 0;
        s.bytes_total = total;
        s.bytes_done = 0;
        s.bytes_left_out = left_out;
    });
    agent.metrics.remaining_bytes.set(total as i64);
    if todo.is_empty() {
        agent.fail(format!(
            "no room for the next planned item ({left_out} bytes left out)"
        ));
        return Pass::Done;
    }
    let started = Instant::now();
    let received_before = agent.fetch.received.load(Ordering::Relaxed);
    tracing::info!(
        plan = plan.version,
        objects = todo.len(),
        bytes = total,
        window_open = open,
        "fill pass starting"
    );
    let gate = Arc::new(Semaphore::new(agent.cfg.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let mut complete = true;
    for w in todo {
        // Non-urgent work stops being started once the window closes.
        if !w.item.urgent && !window::is_open(&plan.window, agent.clock.now()) {
            complete = false;
            break;
        }
        let Ok(permit) = Arc::clone(&gate).acquire_owned().await else {
            break;
        };
        let agent = Arc::clone(agent);
        let object = w.object.clone();
        let sources = w.item.sources.clone();
        tasks.spawn(async move {
            let ok = fetch_one(&agent, &object, &sources).await;
            drop(permit);
            ok
        });
    }
    while let Some(r) = tasks.join_next().await {
        complete &= r.unwrap_or(false);
    }
    let secs = started.elapsed().as_secs_f64();
    let received = agent.fetch.received.load(Ordering::Relaxed) - received_before;
    tracing::info!(
        plan = plan.version,
        bytes = received,
        secs = format!("{secs:.1}"),
        rate_bps = (received as f64 * 8.0 / secs.max(0.001)) as u64,
        complete,
        "fill pass summary"
    );
    agent.set(|s| s.sources.clear());
    if complete { Pass::Done } else { Pass::Again }
}

/// Space for `wanted`: the room under the quota and the headroom, grown by
/// evicting unplanned renditions when it falls short.
async fn make_room(agent: &Agent, plan: &FillPlan, wanted: &[work::Wanted<'_>], now: u64) -> u64 {
    let headroom = agent.cfg.headroom_percent;
    let on_disk = agent.disks.objects();
    let used: u64 = on_disk.iter().map(|(_, s)| s).sum();
    let fs_room = agent.disks.room(headroom);
    let room = match agent.cfg.max_bytes {
        Some(max) => fs_room.min(max.saturating_sub(used)),
        None => fs_room,
    };
    let need: u64 = wanted.iter().map(|w| w.object.size).sum();
    if need <= room {
        return room;
    }
    let planned_keys: HashSet<&str> = plan
        .items
        .iter()
        .flat_map(|i| i.objects.iter().map(|o| o.key.as_str()))
        .collect();
    // A directory holding any planned object is never a candidate.
    let planned: HashSet<&str> = planned_keys
        .iter()
        .map(|k| k.rsplit_once('/').map_or("", |(d, _)| d))
        .chain(plan.items.iter().map(|i| i.rendition.as_str()))
        .collect();
    let unplanned: Vec<(String, u64)> = on_disk
        .into_iter()
        .filter(|(k, _)| !planned_keys.contains(k.as_str()))
        .collect();
    let victims = evict::choose(
        agent.candidates(&unplanned).await,
        &planned,
        need - room,
        now,
    );
    let mut freed = 0u64;
    for v in victims {
        let prefix = format!("{}/", v.rendition);
        for (key, size) in unplanned
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
        {
            match agent.disks.remove(key) {
                Ok(true) => {
                    freed += size;
                    agent.tell_oca(key).await;
                }
                Ok(false) => {}
                Err(e) => agent.fail(format!("cannot evict {key}: {e}")),
            }
        }
        tracing::info!(rendition = %v.rendition, bytes = v.bytes, hits = v.hits, "evicted");
    }
    agent.metrics.evicted_bytes.inc_by(freed);
    agent.set(|s| s.evicted_bytes += freed);
    room + freed
}

/// Fetch one object from its sources in order; true once it is committed.
async fn fetch_one(
    agent: &Arc<Agent>,
    object: &control_client::wire::FillObject,
    sources: &[FillSource],
) -> bool {
    let usable: Vec<FillSource> = {
        let s = agent.sources.lock().unwrap_or_else(|p| p.into_inner());
        s.order(sources, Instant::now())
            .into_iter()
            .cloned()
            .collect()
    };
    if usable.is_empty() {
        agent.fail(format!("{}: every source is backing off", object.key));
        return false;
    }
    let root = match agent.disks.partial(&object.sha256) {
        Some((root, _)) => root,
        None => match agent.disks.pick_root(agent.cfg.headroom_percent) {
            Some(r) => r,
            None => {
                agent.fail("no usable disk root".into());
                return false;
            }
        },
    };
    for src in usable {
        agent.set(|s| s.sources.push(src.id.clone()));
        let result = fetch::fetch(&agent.fetch, &agent.disks, root, &src, object).await;
        agent.set(|s| {
            if let Some(i) = s.sources.iter().position(|x| *x == src.id) {
                s.sources.remove(i);
            }
        });
        match result {
            Ok(f) => {
                agent
                    .sources
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .succeeded(&src.id);
                agent
                    .metrics
                    .bytes
                    .get_or_create(&SourceLabel {
                        source: src.id.clone(),
                        kind: src.kind.clone(),
                    })
                    .inc_by(f.transferred);
                agent
                    .metrics
                    .objects
                    .get_or_create(&OutcomeLabel { outcome: "ok" })
                    .inc();
                agent.metrics.remaining_bytes.dec_by(object.size as i64);
                agent.set(|s| {
                    s.objects_done += 1;
                    s.bytes_done += object.size;
                });
                tracing::debug!(key = %object.key, source = %src.id, resumed_from = f.resumed_from, "committed");
                agent.tell_oca(&object.key).await;
                return true;
            }
            Err(e) => {
                agent
                    .metrics
                    .objects
                    .get_or_create(&OutcomeLabel { outcome: e.label() })
                    .inc();
                if e.blames_source() {
                    let backoff = agent
                        .sources
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .failed(&src.id, Instant::now());
                    agent.fail(format!(
                        "{} from {}: {e}; skipping that source for {backoff:?}",
                        object.key, src.id
                    ));
                } else {
                    agent.fail(format!("{}: {e}", object.key));
                    return false;
                }
            }
        }
    }
    false
}

/// Once a second: the rate, then the status file.
/// Read committed planned objects back at `scrub_rate_bps`, one at a time in
/// plan order, round and round: a damaged one is quarantined, oca is told
/// (it stops serving and reporting it), and the next pass fetches it again.
async fn scrub_loop(agent: Arc<Agent>, mut stop: watch::Receiver<bool>) {
    let rate = agent.cfg.scrub_rate_bps;
    if rate == 0 {
        return;
    }
    let (mut objects, mut cursor) = (Vec::new(), 0usize);
    loop {
        if cursor >= objects.len() {
            // A whole round done (or nothing to check yet): rest, then start
            // over with the newest plan.
            if !objects.is_empty() {
                agent.set(|s| s.scrub_rounds += 1);
            }
            tokio::select! {
                _ = tokio::time::sleep(agent.cfg.poll_interval) => {}
                _ = stop.changed() => return,
            }
            objects = agent
                .control
                .cached_fill_plan()
                .map(|p| {
                    p.items
                        .into_iter()
                        .flat_map(|i| i.objects)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            cursor = 0;
            continue;
        }
        let obj = objects[cursor].clone();
        cursor += 1;
        if !disk::safe_key(&obj.key) || !disk::safe_sha(&obj.sha256) {
            continue;
        }
        let Some((root, _)) = agent.disks.locate(&obj.key) else {
            continue;
        };
        let path = agent.disks.object_path(root, &obj.key);
        let (size, sha) = (obj.size, obj.sha256.clone());
        let check = tokio::task::spawn_blocking(move || scrub::verify(&path, size, &sha, rate));
        let verdict = tokio::select! {
            r = check => r,
            _ = stop.changed() => return,
        };
        match verdict {
            Ok(Ok(true)) => {
                agent.metrics.scrub_bytes.inc_by(obj.size);
                agent.set(|s| {
                    s.scrub_objects += 1;
                    s.scrub_bytes += obj.size;
                });
            }
            Ok(Ok(false)) => {
                agent.metrics.scrub_damaged.inc();
                agent.set(|s| s.scrub_damaged += 1);
                match scrub::quarantine(&agent.disks.roots[root], &obj.key) {
                    Ok(to) => tracing::error!(
                        key = %obj.key, to = %to.display(),
                        "damaged object (hash mismatch) quarantined; it will be fetched again"
                    ),
                    Err(e) => {
                        tracing::error!(key = %obj.key, error = %e, "damaged object could not be quarantined; removing it");
                        let _ = agent.disks.remove(&obj.key);
                    }
                }
                agent.tell_oca(&obj.key).await;
            }
            // Gone meanwhile (evicted, or oca quarantined it): nothing to check.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Ok(Err(e)) => tracing::warn!(key = %obj.key, error = %e, "cannot read an object back"),
            Err(e) => tracing::warn!(error = %e, "scrub task failed"),
        }
    }
}

async fn report(agent: Arc<Agent>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
        let received = agent.fetch.received.load(Ordering::Relaxed);
        let now = Instant::now();
        let secs = now.duration_since(last.0).as_secs_f64().max(0.001);
        let rate = ((received - last.1) as f64 * 8.0 / secs) as u64;
        last = (now, received);
        agent.metrics.rate_bps.set(rate as i64);
        let snapshot = {
            let mut s = agent.status.lock().unwrap_or_else(|p| p.into_inner());
            s.rate_bps = rate;
            s.received_bytes = received;
            s.updated = agent.clock.now();
            s.clone()
        };
        if let Err(e) = status::write(&agent.cfg.status_file, &snapshot) {
            tracing::warn!(error = %e, path = %agent.cfg.status_file.display(), "cannot write the status file");
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// A minimal `/metrics` listener (one request per connection).
async fn serve_metrics(
    agent: Arc<Agent>,
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let mut conn = tokio::select! {
            c = listener.accept() => match c {
                Ok((c, _)) => c,
                Err(_) => continue,
            },
            _ = stop.changed() => return,
        };
        let agent = Arc::clone(&agent);
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let (code, body) = if head.starts_with("GET /metrics ") {
                let received = agent.fetch.received.load(Ordering::Relaxed);
                agent.metrics.received_bytes.set(received as i64);
                ("200 OK", agent.metrics.render())
            } else {
                ("404 Not Found", "try /metrics\n".to_owned())
            };
            let resp = format!(
                "HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
        });
    }
}
