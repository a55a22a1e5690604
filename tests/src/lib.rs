//! Support for end-to-end tests: the workspace's binaries as real processes,
//! and a minimal HTTP/1.1 client that shows exactly what was answered.

pub mod bird;
pub mod mrt;
pub mod netns;
pub mod stack;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Upper bound for any single wait.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// xorshift64: random enough to pick chaos victims and pauses, and
/// reproducible from its (odd) seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A workspace binary: next to the running executable (a binary such as
/// `oca-bench`), or one directory up (a test in `target/<profile>/deps/`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let here = exe.parent().expect("executable directory");
    let candidates = [Some(here), here.parent()];
    let found = candidates
        .iter()
        .flatten()
        .map(|d| d.join(name))
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!(
            "{name} not built next to {}; build the workspace's binaries first",
            exe.display()
        )
    })
}

/// A running process, killed on drop.
pub struct Proc {
    pub child: Child,
    /// The first stdout line (`... listening http=ADDR ...`).
    pub banner: String,
    /// Everything it wrote to stderr (its log), up to `LOG_CAP` bytes.
    log: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

/// How much of a process's log a test keeps; the rest still reaches the
/// test's own stderr.
const LOG_CAP: usize = 64 << 20;

impl Proc {
    pub fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut child = Command::new(binary(name))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        // The log goes on to the test's stderr (shown when a test fails) and
        // is kept for tests that read it.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut stderr = child.stderr.take().unwrap();
        let kept = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 << 10];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                let _ = std::io::stderr().write_all(&buf[..n]);
                let mut kept = kept.lock().unwrap();
                let room = LOG_CAP.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let banner = match rx.recv_timeout(DEADLINE) {
            Ok(l) if !l.is_empty() => l,
            _ => {
                let _ = child.kill();
                panic!("{name} did not start");
            }
        };
        Proc { child, banner, log }
    }

    /// What the process has logged so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// An address from the banner, e.g. `addr("http=")`.
    pub fn addr(&self, field: &str) -> SocketAddr {
        self.banner
            .split_whitespace()
            .find_map(|w| w.strip_prefix(field))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {:?}", self.banner))
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running (has not exited).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs oca-bench with `args` to the end: (exit code, stdout, stderr),
/// killing it (and failing) if it outlives `limit`.
pub fn oca_bench(args: &[&str], limit: Duration) -> (Option<i32>, String, String) {
    let mut child = Command::new(binary("oca-bench"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn oca-bench");
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let until = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!(
                "oca-bench {} did not finish within {limit:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), out.join().unwrap(), err.join().unwrap())
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// The status line and headers, as received.
    pub head: String,
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One request on a fresh connection (`Connection: close`); `None` if the server
/// is unreachable.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Response> {
    http_from(None, addr, method, path, headers, body)
}

/// Like `http`, from source address `src` (any 127.x.y.z: a client in some ISP).
pub fn http_from(
    src: Option<IpAddr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Response> {
    let mut s = connect(src, addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status: u16 = head.get(9..12)?.parse().ok()?;
    // A body cut short of its Content-Length (the server died mid-response) is
    // an error, as for any HTTP client, not a short response.
    let declared = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    let bodiless = method == "HEAD" || status == 304 || status == 204;
    if !bodiless && declared.is_some_and(|n| raw.len() - end < n) {
        return None;
    }
    Some(Response {
        status,
        body: raw[end..].to_vec(),
        head,
    })
}

fn connect(src: Option<IpAddr>, addr: SocketAddr) -> Option<TcpStream> {
    let Some(src) = src else {
        return TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok();
    };
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .ok()?;
    sock.bind(&SocketAddr::new(src, 0).into()).ok()?;
    sock.connect_timeout(&addr.into(), Duration::from_secs(2))
        .ok()?;
    Some(sock.into())
}

/// GET an absolute `http://host:port/path` URL from `src`.
pub fn get_url(src: Option<IpAddr>, url: &str) -> Option<Response> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_at(rest.find('/')?);
    http_from(src, host.parse().ok()?, "GET", path, &[], b"")
}

/// Poll `f` until it returns Some or the deadline passes.
/// The sum of the Prometheus samples in `text` whose line starts with
/// `name` (a metric name, or a name with its labels); 0 if there are none.
pub fn metric_in(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
