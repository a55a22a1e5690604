//! One keep-alive connection's request loop (segments and compare): choose an
//! object, send, read and verify the response, record. The connection itself
//! is conn.rs, which players and hostile use too.
//!
//! Efficiency matters (the client must not be the ceiling at tens of Gbit/s):
//! per connection there is one reused request-head Vec and one 256 KiB buffer
//! that heads and bodies are read into and discarded from (or fed to the
//! hasher), handed from each connection to the next on a reconnect. Nothing
//! per request is allocated.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use rand::{RngExt, SeedableRng, rngs::SmallRng};
use ring::digest;
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::catalogue::Catalogue;
use crate::conn::{self, Broken, Conn, Tls};
use crate::http1::{self, ByteRange, Framing, RequestHead, Verdict};
use crate::schedule::Schedule;
use crate::stats::{ErrorKind, Stats};
use crate::target::Target;
use crate::zipf::Popularity;

/// Size of each connection's read buffer: large reads keep syscalls per GiB low.
const READ_BUF: usize = 256 * 1024;

/// After a failed connect in closed-loop mode, wait this long before the next
/// attempt rather than spinning on a refused port.
const CONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// One object as requests see it: the escaped request path is built once.
#[derive(Debug)]
pub struct Item {
    pub path: String,
    pub size: u64,
    pub sha256: Option<[u8; 32]>,
}

/// Everything connections share, read-only, for one run against one target.
pub struct Plan {
    pub target: Target,
    pub addr: SocketAddr,
    /// Source addresses, assigned to connections round-robin.
    pub binds: Vec<IpAddr>,
    pub tls: Option<Tls>,
    pub items: Vec<Item>,
    pub popularity: Popularity,
    pub range_size: Option<u64>,
    pub verify_hash: bool,
    pub timeout: Duration,
    /// Open-loop total request rate; `None` for closed loop.
    pub rate: Option<f64>,
    pub connections: usize,
    pub seed: u64,
}

impl Plan {
    /// Builds the per-object request table for a target.
    pub fn items(target: &Target, catalogue: &Catalogue) -> Vec<Item> {
        catalogue
            .objects
            .iter()
            .map(|o| Item {
                path: target.path_for(&o.key),
                size: o.size,
                sha256: o.sha256,
            })
            .collect()
    }
}

/// The instants that bound a run.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    pub start: Instant,
    /// Requests intended before this are warmup and not recorded.
    pub warm_end: Instant,
    /// No request is intended at or after this.
    pub end: Instant,
    /// Responses still running now are abandoned and counted as timeouts.
    pub hard_stop: Instant,
}

/// Counters read by the once-a-second progress line (all requests, warmup
/// included); one per thread so threads never share a cache line.
#[derive(Debug, Default)]
pub struct Live {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

/// How one request ended.
enum Outcome {
    Ok {
        first_byte: Instant,
        done: Instant,
        /// Whether the connection is still usable (the server did not close it).
        keep: bool,
    },
    Failed {
        kind: ErrorKind,
        status: Option<u16>,
        /// Whether the connection is still usable (the body was delimited and read).
        keep: bool,
        /// Nothing at all came back (candidate for a retry on a stale keep-alive).
        nothing: bool,
    },
}

fn failed(kind: ErrorKind) -> Outcome {
    Outcome::Failed {
        kind,
        status: None,
        keep: false,
        nothing: false,
    }
}

/// Runs connection `index` until the end of the run, recording into `stats`.
pub async fn connection(
    index: usize,
    plan: Arc<Plan>,
    phases: Phases,
    stats: Rc<RefCell<Stats>>,
    live: Arc<Live>,
) {
    let seed = plan.seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut worker = Connection {
        rng: SmallRng::seed_from_u64(seed),
        schedule: plan.rate.map(|r| Schedule::new(r, plan.connections, index)),
        bind: (!plan.binds.is_empty()).then(|| plan.binds[index % plan.binds.len()]),
        conn: None,
        opened: 0,
        head: Vec::with_capacity(512),
        spare: Some(vec![0u8; READ_BUF]),
        plan,
        phases,
        stats,
        live,
    };
    worker.run().await;
}

/// The state of one connection's request loop.
struct Connection {
    plan: Arc<Plan>,
    phases: Phases,
    stats: Rc<RefCell<Stats>>,
    live: Arc<Live>,
    rng: SmallRng,
    schedule: Option<Schedule>,
    bind: Option<IpAddr>,
    conn: Option<Conn>,
    /// Connections opened so far; all but the first are reconnects.
    opened: u64,
    /// The request head, rewritten in place for each request.
    head: Vec<u8>,
    /// The read buffer while no connection holds it.
    spare: Option<Vec<u8>>,
}

impl Connection {
    async fn run(&mut self) {
        while let Some(intended) = self.next_send().await {
            let measured = intended >= self.phases.warm_end;
            let (outcome, body_bytes) = self.request(measured).await;
            self.record(intended, measured, &outcome, body_bytes);
            if let Outcome::Failed {
                kind: ErrorKind::Connect,
                ..
            } = outcome
                && self.schedule.is_none()
            {
                sleep_until((Instant::now() + CONNECT_BACKOFF).min(self.phases.end)).await;
            }
        }
        self.count_unsent();
    }

    /// Waits until the next request is due and returns its intended send time
    /// (now, in closed loop), or `None` when the run is over.
    async fn next_send(&mut self) -> Option<Instant> {
        let now = Instant::now();
        if now >= self.phases.end {
            return None;
        }
        let Some(s) = &mut self.schedule else {
            return Some(now);
        };
        let start = self.phases.start;
        let slot = s.next_slot(now - start);
        if start + slot.intended >= self.phases.end {
            return None;
        }
        sleep_until(start + slot.send_at).await;
        Some(start + slot.intended)
    }

    /// Chooses an object and makes one request for it, connecting first if
    /// needed. Returns the outcome and the body bytes received.
    async fn request(&mut self, measured: bool) -> (Outcome, u64) {
        let plan = self.plan.clone();
        let item = &plan.items[plan.popularity.pick(&mut self.rng)];
        let range = plan
            .range_size
            .and_then(|len| choose_range(item.size, len, &mut self.rng));
        let head = RequestHead {
            range,
            ..RequestHead::get(&item.path, &plan.target.authority)
        };
        http1::write_request(&mut self.head, &head);
        let verify = (plan.verify_hash && range.is_none())
            .then_some(item.sha256)
            .flatten();

        let mut body_bytes = 0;
        let mut retried = false;
        loop {
            let mut c = match self.conn.take() {
                Some(c) => c,
                None => match self.connect(measured).await {
                    Some(c) => c,
                    None => return (failed(ErrorKind::Connect), body_bytes),
                },
            };
            let deadline = (Instant::now() + plan.timeout).min(self.phases.hard_stop);
            let exchange = exchange(
                &mut c,
                &self.head,
                item.size,
                range,
                verify,
                &mut body_bytes,
            );
            let outcome = timeout_at(deadline, exchange)
                .await
                .unwrap_or_else(|_| failed(ErrorKind::Timeout));
            let kept = matches!(
                outcome,
                Outcome::Ok { keep: true, .. } | Outcome::Failed { keep: true, .. }
            );
            // A keep-alive connection the server closed just before our request
            // arrived yields nothing at all: retry once on a fresh connection, as
            // any HTTP client does for an idempotent GET.
            let stale = matches!(outcome, Outcome::Failed { nothing: true, .. })
                && c.responses() > 0
                && !retried;
            if kept {
                self.conn = Some(c);
            } else {
                self.spare = Some(c.into_buffer());
            }
            if stale {
                retried = true;
                continue;
            }
            return (outcome, body_bytes);
        }
    }

    async fn connect(&mut self, measured: bool) -> Option<Conn> {
        let deadline = (Instant::now() + self.plan.timeout).min(self.phases.hard_stop);
        let plan = &self.plan;
        let connect = conn::connect(plan.addr, self.bind, plan.tls.as_ref());
        match timeout_at(deadline, connect).await {
            Ok(Ok(io)) => {
                self.opened += 1;
                if self.opened > 1 && measured {
                    self.stats.borrow_mut().reconnects += 1;
                }
                let buf = self.spare.take().unwrap_or_else(|| vec![0u8; READ_BUF]);
                Some(Conn::new(io, buf))
            }
            Ok(Err(_)) | Err(_) => None,
        }
    }

    fn record(&self, intended: Instant, measured: bool, outcome: &Outcome, body_bytes: u64) {
        let ok = matches!(outcome, Outcome::Ok { .. });
        self.live.requests.fetch_add(u64::from(ok), Relaxed);
        self.live.errors.fetch_add(u64::from(!ok), Relaxed);
        self.live.bytes.fetch_add(body_bytes, Relaxed);
        if !measured {
            return;
        }
        let mut s = self.stats.borrow_mut();
        s.bytes += body_bytes;
        match *outcome {
            Outcome::Ok {
                first_byte, done, ..
            } => s.ok(done - intended, first_byte - intended),
            Outcome::Failed {
                status: Some(code), ..
            } => s.status_error(code),
            Outcome::Failed { kind, .. } => s.error(kind),
        }
    }

    /// Open loop: counts requests the schedule meant to send in the measured
    /// window that the end of the run overtook (the load the server never saw).
    fn count_unsent(&mut self) {
        let Some(s) = &mut self.schedule else {
            return;
        };
        let (start, warm_end, end) = (self.phases.start, self.phases.warm_end, self.phases.end);
        let mut unsent = 0;
        while start + s.peek() < end {
            if start + s.next_slot(Duration::ZERO).intended >= warm_end {
                unsent += 1;
            }
        }
        self.stats.borrow_mut().unsent += unsent;
    }
}

/// A range of `len` bytes at a uniformly random offset (not aligned: players
/// ask for arbitrary byte offsets); the whole object, still as a range, if the
/// object is no larger than `len`; no range at all for an empty object, which
/// no range can address.
pub fn choose_range(size: u64, len: u64, rng: &mut SmallRng) -> Option<ByteRange> {
    if size == 0 {
        return None;
    }
    if size <= len {
        return Some(ByteRange {
            first: 0,
            last: size - 1,
        });
    }
    let first = rng.random_range(0..=size - len);
    Some(ByteRange {
        first,
        last: first + len - 1,
    })
}

/// Sends one request and reads its whole response. `body_bytes` counts body
/// bytes as they arrive, so a response cut off by the timeout still counts
/// what it delivered.
async fn exchange(
    c: &mut Conn,
    head: &[u8],
    size: u64,
    range: Option<ByteRange>,
    verify: Option<[u8; 32]>,
    body_bytes: &mut u64,
) -> Outcome {
    if let Err(e) = c.send(head, &[]).await {
        return Outcome::Failed {
            kind: io_kind(e.kind()),
            status: None,
            keep: false,
            nothing: true,
        };
    }
    let (parsed, first_byte) = match c.read_head().await {
        Ok(h) => h,
        Err(e) => {
            return Outcome::Failed {
                kind: match e.broken {
                    Broken::Closed => ErrorKind::Reset,
                    Broken::Io(k) => io_kind(k),
                    Broken::Protocol => ErrorKind::Protocol,
                },
                status: None,
                keep: false,
                nothing: e.nothing,
            };
        }
    };
    let (body_len, error) = match http1::check(&parsed, size, range) {
        Verdict::Good { body_len } => (body_len, None),
        Verdict::Bad { kind, body_len } => (body_len, Some(kind)),
        Verdict::Fatal { kind } => return failed(kind),
    };
    let mut hasher = verify.map(|_| digest::Context::new(&digest::SHA256));
    let read = c
        .read_body(Framing::Length(body_len), |bytes| {
            if let Some(h) = &mut hasher {
                h.update(bytes);
            }
            *body_bytes += bytes.len() as u64;
        })
        .await;
    if let Err(e) = read {
        // Cut short: the length was not delivered.
        return failed(match e.broken {
            Broken::Io(k) if io_kind(k) != ErrorKind::Reset => io_kind(k),
            _ => ErrorKind::Length,
        });
    }
    // There is no pipelining, so anything beyond the body is a server bug.
    if c.pending() > 0 {
        return failed(ErrorKind::Protocol);
    }
    let done = Instant::now();

    let keep = !parsed.close;
    if let Some(kind) = error {
        let status = (kind == ErrorKind::Status).then_some(parsed.status);
        return Outcome::Failed {
            kind,
            status,
            keep,
            nothing: false,
        };
    }
    if let (Some(h), Some(want)) = (hasher, verify)
        && h.finish().as_ref() != want
    {
        return Outcome::Failed {
            kind: ErrorKind::Hash,
            status: None,
            keep,
            nothing: false,
        };
    }
    Outcome::Ok {
        first_byte,
        done,
        keep,
    }
}

/// Maps an IO error to the error kind it is reported as.
fn io_kind(e: io::ErrorKind) -> ErrorKind {
    use io::ErrorKind as K;
    match e {
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            ErrorKind::Reset
        }
        K::TimedOut => ErrorKind::Timeout,
        // rustls reports alerts and bad records as InvalidData.
        _ => ErrorKind::Protocol,
    }
}
