//! One keep-alive connection's request loop: choose an object, send, read and
//! verify the response, record.
//!
//! Efficiency matters (the client must not be the ceiling at tens of Gbit/s):
//! per connection there is one reused request-head Vec and one 256 KiB buffer
//! that heads and bodies are read into and discarded from (or fed to the
//! hasher). Nothing per request is allocated in proportion to the body.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use rand::{RngExt, SeedableRng, rngs::SmallRng};
use ring::digest;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::time::{Instant, sleep_until, timeout_at};
use tokio_rustls::TlsConnector;

use crate::catalogue::Catalogue;
use crate::http1::{self, ByteRange, Verdict};
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
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
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

trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

/// An open connection and how many responses it has carried.
struct Conn {
    io: Box<dyn Io>,
    served: u64,
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
        buf: vec![0u8; READ_BUF],
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
    /// Where response heads and bodies are read to.
    buf: Vec<u8>,
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
        http1::write_request(&mut self.head, &item.path, &plan.target.authority, range);
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
                &mut self.buf,
                item.size,
                range,
                verify,
                &mut body_bytes,
            );
            let outcome = timeout_at(deadline, exchange)
                .await
                .unwrap_or_else(|_| failed(ErrorKind::Timeout));
            // A keep-alive connection the server closed just before our request
            // arrived yields nothing at all: retry once on a fresh connection, as
            // any HTTP client does for an idempotent GET.
            if let Outcome::Failed { nothing: true, .. } = outcome
                && c.served > 0
                && !retried
            {
                retried = true;
                continue;
            }
            if let Outcome::Ok { keep: true, .. } | Outcome::Failed { keep: true, .. } = outcome {
                c.served += 1;
                self.conn = Some(c);
            }
            return (outcome, body_bytes);
        }
    }

    async fn connect(&mut self, measured: bool) -> Option<Conn> {
        let deadline = (Instant::now() + self.plan.timeout).min(self.phases.hard_stop);
        match timeout_at(deadline, connect(&self.plan, self.bind)).await {
            Ok(Ok(io)) => {
                self.opened += 1;
                if self.opened > 1 && measured {
                    self.stats.borrow_mut().reconnects += 1;
                }
                Some(Conn { io, served: 0 })
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

/// Opens a TCP connection (bound to `bind` if given) and, for https, does the
/// TLS handshake.
async fn connect(plan: &Plan, bind: Option<IpAddr>) -> io::Result<Box<dyn Io>> {
    let socket = if plan.addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = bind {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(plan.addr).await?;
    stream.set_nodelay(true)?;
    match &plan.tls {
        None => Ok(Box::new(stream)),
        Some((connector, name)) => Ok(Box::new(connector.connect(name.clone(), stream).await?)),
    }
}

/// Sends one request and reads its whole response. `body_bytes` counts body
/// bytes as they arrive, so a response cut off by the timeout still counts
/// what it delivered.
async fn exchange(
    c: &mut Conn,
    head: &[u8],
    buf: &mut [u8],
    size: u64,
    range: Option<ByteRange>,
    verify: Option<[u8; 32]>,
    body_bytes: &mut u64,
) -> Outcome {
    if let Err(e) = send(&mut c.io, head).await {
        return Outcome::Failed {
            kind: io_kind(&e),
            status: None,
            keep: false,
            nothing: true,
        };
    }

    // Read until the head is complete.
    let mut filled = 0;
    let mut first_byte = None;
    let parsed = loop {
        let n = match c.io.read(&mut buf[filled..]).await {
            Ok(0) => {
                return Outcome::Failed {
                    kind: ErrorKind::Reset,
                    status: None,
                    keep: false,
                    nothing: filled == 0,
                };
            }
            Ok(n) => n,
            Err(e) => {
                return Outcome::Failed {
                    kind: io_kind(&e),
                    status: None,
                    keep: false,
                    nothing: filled == 0,
                };
            }
        };
        first_byte.get_or_insert_with(Instant::now);
        filled += n;
        match http1::parse_head(&buf[..filled]) {
            Ok(Some(h)) => break h,
            Ok(None) if filled < buf.len() => {}
            Ok(None) | Err(_) => return failed(ErrorKind::Protocol),
        }
    };
    let first_byte = first_byte.unwrap_or_else(Instant::now);

    let (body_len, error) = match http1::check(&parsed, size, range) {
        Verdict::Good { body_len } => (body_len, None),
        Verdict::Bad { kind, body_len } => (body_len, Some(kind)),
        Verdict::Fatal { kind } => return failed(kind),
    };

    // Bytes after the head are the start of the body. There is no pipelining,
    // so anything beyond the body is a server bug.
    let early = filled - parsed.len;
    if early as u64 > body_len {
        return failed(ErrorKind::Protocol);
    }
    let mut hasher = verify.map(|_| digest::Context::new(&digest::SHA256));
    if let Some(h) = &mut hasher {
        h.update(&buf[parsed.len..filled]);
    }
    *body_bytes += early as u64;
    let mut remaining = body_len - early as u64;
    while remaining > 0 {
        let want = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        match c.io.read(&mut buf[..want]).await {
            Ok(0) => return failed(ErrorKind::Length),
            Ok(n) => {
                if let Some(h) = &mut hasher {
                    h.update(&buf[..n]);
                }
                *body_bytes += n as u64;
                remaining -= n as u64;
            }
            Err(e) if io_kind(&e) == ErrorKind::Reset => return failed(ErrorKind::Length),
            Err(e) => return failed(io_kind(&e)),
        }
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

async fn send(io: &mut Box<dyn Io>, head: &[u8]) -> io::Result<()> {
    io.write_all(head).await?;
    // TLS buffers records until flushed; for plain TCP this is a no-op.
    io.flush().await
}

/// Maps an IO error to the error kind it is reported as.
fn io_kind(e: &io::Error) -> ErrorKind {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            ErrorKind::Reset
        }
        K::TimedOut => ErrorKind::Timeout,
        // rustls reports alerts and bad records as InvalidData.
        _ => ErrorKind::Protocol,
    }
}
