//! `oca-bench hostile`: a well-behaved client's latency against a server, calm
//! and then under hostile clients: slowloris (request heads trickled a byte
//! group at a time), a flood of idle connections (past the connection cap),
//! clients that request a large object and stop reading, deep pipelines, and
//! abrupt resets. Reports the well-behaved client's percentiles in both phases,
//! the server's memory, descriptors and threads over time, and whether it still
//! accepts new connections afterwards.
//!
//! The well-behaved client and every attacker that reads responses do so with
//! the connections of every other mode (conn.rs); the attacks themselves
//! (partial heads, silence, resets) are written to raw sockets.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::conn::{self, Conn};
use crate::http1::{self, ByteRange, RequestHead};
use crate::sampler::Sampler;
use crate::url::Url;

/// Read buffer of each connection that reads responses.
const READ_BUF: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct HostileArgs {
    /// The object the well-behaved client fetches, again and again.
    pub url: String,
    /// A large object the stalled readers ask for (default: `url`).
    pub big_url: Option<String>,
    pub server_pid: Option<u32>,
    pub calm: Duration,
    pub attack: Duration,
    pub slowloris: usize,
    pub flood: usize,
    pub stalled: usize,
    pub pipelines: usize,
    pub pipeline_depth: usize,
    pub resets_per_s: u32,
}

/// The well-behaved client in one phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Probe {
    /// Requests on its keep-alive connection (a player's).
    pub requests: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Requests on a new connection each (a viewer arriving): answered 200,
    /// refused at the connection cap (503), or failed.
    pub new_ok: u64,
    pub new_refused: u64,
    pub new_failed: u64,
    pub new_p99_us: u64,
    /// What went wrong first on the keep-alive connection, if anything did.
    pub first_error: Option<String>,
}

/// The server process, sampled once a second.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Server {
    pub rss_kib_calm_max: u64,
    pub rss_kib_attack_max: u64,
    pub rss_kib_after: u64,
    pub fds_calm_max: u64,
    pub fds_attack_max: u64,
    pub fds_after: u64,
    pub threads_max: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Attackers {
    pub slowloris_open_max: i64,
    pub slowloris_connects: u64,
    pub flood_open_max: i64,
    pub flood_refused: u64,
    pub stalled_connects: u64,
    pub pipelined_responses: u64,
    pub resets: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostileReport {
    pub url: String,
    pub calm_s: f64,
    pub attack_s: f64,
    pub calm: Probe,
    pub attack: Probe,
    /// attack p99 / calm p99 of the keep-alive client.
    pub p99_ratio: f64,
    pub attackers: Attackers,
    pub server: Option<Server>,
    /// After the attack stops: a new connection is served (and how soon).
    pub accepts_after: bool,
    pub accept_after_ms: u64,
}

/// Counters the attackers share.
#[derive(Default)]
struct Tally {
    slowloris_open: AtomicI64,
    slowloris_open_max: AtomicI64,
    slowloris_connects: AtomicU64,
    flood_open: AtomicI64,
    flood_open_max: AtomicI64,
    flood_refused: AtomicU64,
    stalled_connects: AtomicU64,
    pipelined: AtomicU64,
    resets: AtomicU64,
}

fn up(open: &AtomicI64, max: &AtomicI64) {
    let n = open.fetch_add(1, Relaxed) + 1;
    max.fetch_max(n, Relaxed);
}

pub fn run(args: &HostileArgs) -> Result<HostileReport> {
    let url = Url::parse(&args.url).context("--url")?;
    let big = match &args.big_url {
        Some(u) => Url::parse(u).context("--big-url")?,
        None => url.clone(),
    };
    if url.tls || big.tls {
        bail!(
            "hostile load is plain HTTP (TLS would measure handshakes, not the server's defences)"
        );
    }
    let needed = (args.slowloris + args.flood + args.stalled + args.pipelines + 256) as u64;
    let limit = raise_fd_limit();
    if limit < needed {
        bail!("open-file limit {limit} is below the {needed} connections asked for");
    }
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", url.host))?
        .next()
        .with_context(|| format!("{} has no address", url.host))?;
    // The well-behaved client has a thread and runtime of its own, so the
    // attackers' work does not delay its measurements on our side.
    let probe_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let attack_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sampler = args.server_pid.map(Sampler::start);

    // Calm.
    let calm_end = Instant::now() + args.calm;
    let mut player = None;
    let calm = probe_rt.block_on(probe(addr, &url, calm_end, &mut player))?;
    let calm_server = sampler.as_ref().map(Sampler::take);

    // Attack.
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let attack_thread = {
        let (stop, tally, url, big) = (
            Arc::clone(&stop),
            Arc::clone(&tally),
            url.clone(),
            big.clone(),
        );
        let args = args.clone();
        std::thread::spawn(move || {
            attack_rt.block_on(attack(&args, addr, &url, &big, &stop, &tally));
        })
    };
    // Let the attack build up before measuring it.
    std::thread::sleep(Duration::from_secs(3).min(args.attack / 4));
    let attack_end = Instant::now() + args.attack;
    let attacked = probe_rt.block_on(probe(addr, &url, attack_end, &mut player))?;
    let attack_server = sampler.as_ref().map(Sampler::take);
    stop.store(true, Relaxed);
    let _ = attack_thread.join();

    // After: a new connection must be served again, soon.
    let started = Instant::now();
    let mut accepts_after = false;
    while started.elapsed() < Duration::from_secs(30) {
        let ok = probe_rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(2), one_new(addr, &url))
                .await
                .is_ok_and(|r| matches!(r, Ok(200)))
        });
        if ok {
            accepts_after = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let accept_after_ms = started.elapsed().as_millis() as u64;
    // Give the server a moment to drop what the attackers left, then sample.
    std::thread::sleep(Duration::from_secs(2));
    let server = sampler.map(|s| {
        let after = s.sample();
        let calm = calm_server.unwrap_or_default();
        let attack = attack_server.unwrap_or_default();
        Server {
            rss_kib_calm_max: calm.rss_max,
            rss_kib_attack_max: attack.rss_max,
            rss_kib_after: after.rss_max,
            fds_calm_max: calm.fds_max,
            fds_attack_max: attack.fds_max,
            fds_after: after.fds_max,
            threads_max: calm.threads_max.max(attack.threads_max),
        }
    });
    let t = &tally;
    Ok(HostileReport {
        url: args.url.clone(),
        calm_s: args.calm.as_secs_f64(),
        attack_s: args.attack.as_secs_f64(),
        p99_ratio: attacked.p99_us as f64 / calm.p99_us.max(1) as f64,
        calm,
        attack: attacked,
        attackers: Attackers {
            slowloris_open_max: t.slowloris_open_max.load(Relaxed),
            slowloris_connects: t.slowloris_connects.load(Relaxed),
            flood_open_max: t.flood_open_max.load(Relaxed),
            flood_refused: t.flood_refused.load(Relaxed),
            stalled_connects: t.stalled_connects.load(Relaxed),
            pipelined_responses: t.pipelined.load(Relaxed),
            resets: t.resets.load(Relaxed),
        },
        server,
        accepts_after,
        accept_after_ms,
    })
}

fn request(url: &Url, close: bool) -> Vec<u8> {
    let headers: &[(&str, &str)] = if close {
        &[("Connection", "close")]
    } else {
        &[]
    };
    let mut buf = Vec::new();
    let head = RequestHead {
        headers,
        ..RequestHead::get(&url.path, &url.authority)
    };
    http1::write_request(&mut buf, &head);
    buf
}

/// A new plain-HTTP connection that reads responses.
async fn open(addr: SocketAddr) -> Result<Conn> {
    let io = conn::connect(addr, None, None).await?;
    Ok(Conn::new(io, vec![0; READ_BUF]))
}

/// Reads one response (its body discarded); returns its status. Bytes read
/// past it stay on `c` for the next (pipelining).
async fn read_response(c: &mut Conn) -> Result<u16> {
    let (head, _) = c.read_head().await?;
    let framing = http1::framing(&head, false)
        .map_err(|_| anyhow::anyhow!("interim response {}", head.status))?;
    c.read_body(framing, |_| {}).await?;
    Ok(head.status)
}

/// One GET on a new connection; its status.
async fn one_new(addr: SocketAddr, url: &Url) -> Result<u16> {
    let mut c = open(addr).await?;
    c.send(&request(url, true), &[]).await?;
    read_response(&mut c).await
}

/// The well-behaved client until `end`, on `conn`: a player's connection,
/// opened in the calm and kept into the attack (a player already watching).
async fn probe(
    addr: SocketAddr,
    url: &Url,
    end: Instant,
    conn: &mut Option<Conn>,
) -> Result<Probe> {
    let mut keep = Histogram::<u64>::new(3)?;
    let mut fresh = Histogram::<u64>::new(3)?;
    let mut p = Probe::default();
    let req = request(url, false);
    let mut n = 0u64;
    while Instant::now() < end {
        n += 1;
        let t0 = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(5), async {
            if conn.is_none() {
                *conn = Some(open(addr).await?);
            }
            let c = conn.as_mut().context("no connection")?;
            c.send(&req, &[]).await?;
            read_response(c).await
        })
        .await;
        match r {
            Ok(Ok(200)) => {
                p.requests += 1;
                let _ = keep.record(t0.elapsed().as_micros() as u64);
            }
            other => {
                p.errors += 1;
                *conn = None;
                if p.first_error.is_none() {
                    p.first_error = Some(match other {
                        Ok(Ok(status)) => format!("status {status}"),
                        Ok(Err(e)) => format!("{e:#}"),
                        Err(_) => "no answer within 5 s".into(),
                    });
                }
            }
        }
        // Every tenth request, a viewer arriving on a new connection.
        if n.is_multiple_of(10) {
            let t0 = Instant::now();
            match tokio::time::timeout(Duration::from_secs(5), one_new(addr, url)).await {
                Ok(Ok(200)) => {
                    p.new_ok += 1;
                    let _ = fresh.record(t0.elapsed().as_micros() as u64);
                }
                Ok(Ok(503)) => p.new_refused += 1,
                _ => p.new_failed += 1,
            }
        }
        // A player's pace, not a load generator's: about 200 requests a second.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    p.p50_us = keep.value_at_quantile(0.5);
    p.p99_us = keep.value_at_quantile(0.99);
    p.max_us = keep.max();
    p.new_p99_us = fresh.value_at_quantile(0.99);
    Ok(p)
}

async fn attack(
    args: &HostileArgs,
    addr: SocketAddr,
    url: &Url,
    big: &Url,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    // Ramp connections over a second or two: a SYN burst would only measure
    // the listen backlog.
    let ramp = |i: usize, n: usize| Duration::from_millis((2000 * i / n.max(1)) as u64);
    for i in 0..args.slowloris {
        let (stop, tally, addr, url) = (stop.clone(), tally.clone(), addr, url.clone());
        let delay = ramp(i, args.slowloris);
        tasks.spawn(async move {
            tokio::time::sleep(delay).await;
            while !stop.load(Relaxed) {
                slowloris(addr, &url, &stop, &tally).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    for i in 0..args.flood {
        let (stop, tally, addr) = (stop.clone(), tally.clone(), addr);
        let delay = ramp(i, args.flood);
        tasks.spawn(async move {
            tokio::time::sleep(delay).await;
            while !stop.load(Relaxed) {
                idle(addr, &stop, &tally).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    for _ in 0..args.stalled {
        let (stop, tally, addr, big) = (stop.clone(), tally.clone(), addr, big.clone());
        tasks.spawn(async move {
            while !stop.load(Relaxed) {
                stalled(addr, &big, &stop, &tally).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    for _ in 0..args.pipelines {
        let (stop, tally, addr, url) = (stop.clone(), tally.clone(), addr, url.clone());
        let depth = args.pipeline_depth;
        tasks.spawn(async move {
            while !stop.load(Relaxed) {
                let _ = pipeline(addr, &url, depth, &tally).await;
            }
        });
    }
    if args.resets_per_s > 0 {
        let (stop, tally, addr, big) = (stop.clone(), tally.clone(), addr, big.clone());
        let every = Duration::from_secs_f64(1.0 / f64::from(args.resets_per_s));
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            while !stop.load(Relaxed) {
                tick.tick().await;
                let (tally, addr, big) = (tally.clone(), addr, big.clone());
                tokio::spawn(async move {
                    if reset(addr, &big).await.is_ok() {
                        tally.resets.fetch_add(1, Relaxed);
                    }
                });
            }
        });
    }
    while !stop.load(Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Attackers notice within a second; then everything is dropped.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
}

/// Trickle a request head, a header line a second, until the server gives up.
async fn slowloris(addr: SocketAddr, url: &Url, stop: &AtomicBool, tally: &Tally) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return;
    };
    tally.slowloris_connects.fetch_add(1, Relaxed);
    up(&tally.slowloris_open, &tally.slowloris_open_max);
    let head = format!("GET {} HTTP/1.1\r\nHost: {}\r\n", url.path, url.authority);
    let mut ok = s.write_all(head.as_bytes()).await.is_ok();
    let mut sink = [0u8; 512];
    let mut n = 0u32;
    while ok && !stop.load(Relaxed) {
        tokio::select! {
            // Anything from the server (a 408, or the close) ends this one.
            _ = s.read(&mut sink) => ok = false,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                n += 1;
                ok = s.write_all(format!("X-Slow-{n}: a\r\n").as_bytes()).await.is_ok();
            }
        }
    }
    tally.slowloris_open.fetch_sub(1, Relaxed);
}

/// Connect and say nothing, until closed (or refused at the cap with a 503).
async fn idle(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let Ok(s) = TcpStream::connect(addr).await else {
        return;
    };
    up(&tally.flood_open, &tally.flood_open_max);
    let mut c = Conn::new(Box::new(s), vec![0; 4096]);
    loop {
        tokio::select! {
            // Anything from the server ends it (reading a head is cancel-safe).
            r = c.read_head() => {
                if let Ok((head, _)) = r && head.status == 503 {
                    tally.flood_refused.fetch_add(1, Relaxed);
                }
                break;
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if stop.load(Relaxed) { break; }
            }
        }
    }
    tally.flood_open.fetch_sub(1, Relaxed);
}

/// Ask for a large object and never read it.
async fn stalled(addr: SocketAddr, big: &Url, stop: &AtomicBool, tally: &Tally) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return;
    };
    tally.stalled_connects.fetch_add(1, Relaxed);
    if s.write_all(&request(big, false)).await.is_err() {
        return;
    }
    // Hold it, reading nothing, for longer than a server should wait for a
    // reader that makes no progress; then start over.
    let until = Instant::now() + Duration::from_secs(45);
    while !stop.load(Relaxed) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(s);
}

/// `depth` range requests in one write, then every response read.
async fn pipeline(addr: SocketAddr, url: &Url, depth: usize, tally: &Tally) -> Result<()> {
    let mut c = open(addr).await?;
    // Tiny ranges: the depth is the attack (queueing, memory), not bandwidth.
    let mut one = Vec::new();
    let head = RequestHead {
        range: Some(ByteRange { first: 0, last: 99 }),
        ..RequestHead::get(&url.path, &url.authority)
    };
    http1::write_request(&mut one, &head);
    let all = one.repeat(depth);
    c.send(&all, &[]).await?;
    for _ in 0..depth {
        read_response(&mut c).await?;
        tally.pipelined.fetch_add(1, Relaxed);
    }
    Ok(())
}

/// Ask for an object, then reset the connection (RST, no FIN) mid-response.
async fn reset(addr: SocketAddr, big: &Url) -> Result<()> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(&request(big, false)).await?;
    let mut first = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_millis(200), s.read(&mut first)).await;
    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
    drop(s);
    Ok(())
}

/// Raise the soft open-file limit to the hard one; returns the soft limit.
fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

impl HostileReport {
    pub fn table(&self) -> String {
        let ms = |us: u64| format!("{:.2} ms", us as f64 / 1000.0);
        let mut o = String::new();
        use std::fmt::Write as _;
        let _ = writeln!(o, "target       {}", self.url);
        for (name, p) in [("calm", &self.calm), ("attack", &self.attack)] {
            let _ = writeln!(
                o,
                "{name:<12} keep-alive: {} ok, {} errors, p50 {} p99 {} max {}; new connections: {} ok (p99 {}), {} refused at the cap, {} failed",
                p.requests,
                p.errors,
                ms(p.p50_us),
                ms(p.p99_us),
                ms(p.max_us),
                p.new_ok,
                ms(p.new_p99_us),
                p.new_refused,
                p.new_failed
            );
            if let Some(e) = &p.first_error {
                let _ = writeln!(o, "{:<12} first keep-alive error: {e}", "");
            }
        }
        let _ = writeln!(o, "p99 ratio    {:.2} (attack / calm)", self.p99_ratio);
        let a = &self.attackers;
        let _ = writeln!(
            o,
            "attackers    slowloris {} open at most ({} connections); idle flood {} open at most, {} refused with 503; stalled readers {} connections; {} pipelined responses; {} resets",
            a.slowloris_open_max,
            a.slowloris_connects,
            a.flood_open_max,
            a.flood_refused,
            a.stalled_connects,
            a.pipelined_responses,
            a.resets
        );
        if let Some(s) = &self.server {
            let _ = writeln!(
                o,
                "server       RSS max {} MiB calm, {} MiB attack, {} MiB after; descriptors {} calm, {} attack, {} after; threads {}",
                s.rss_kib_calm_max / 1024,
                s.rss_kib_attack_max / 1024,
                s.rss_kib_after / 1024,
                s.fds_calm_max,
                s.fds_attack_max,
                s.fds_after,
                s.threads_max
            );
        }
        let _ = writeln!(
            o,
            "after        new connections {} ({} ms)",
            if self.accepts_after {
                "served"
            } else {
                "NOT served"
            },
            self.accept_after_ms
        );
        o
    }
}
