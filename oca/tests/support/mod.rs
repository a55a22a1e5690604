//! Test support: store builders, an in-process server, the real binary, and a
//! raw HTTP/1.1 client that shows exactly what went over the wire.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oca::{Config, Server};

/// Upper bound for any single wait in these tests.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Deterministic pseudo-random bytes, so a body mismatch is visible at any offset.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A disk root in a temp directory: `store().object(k, bytes).build()`.
pub struct StoreBuilder {
    dir: tempfile::TempDir,
}

pub fn store() -> StoreBuilder {
    StoreBuilder {
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

impl StoreBuilder {
    pub fn object(self, key: &str, bytes: &[u8]) -> Self {
        put_object(self.dir.path(), key, bytes);
        self
    }
    pub fn build(self) -> tempfile::TempDir {
        self.dir
    }
}

/// Write a committed object under a disk root.
pub fn put_object(root: &Path, key: &str, bytes: &[u8]) {
    let path = root.join("objects").join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A config serving `roots` on loopback port 0, with short timeouts for tests.
pub fn config(roots: &[&Path]) -> Config {
    Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        stores: roots.iter().map(|p| p.to_path_buf()).collect(),
        workers: 2,
        shutdown_grace: Duration::from_secs(5),
        access: oca::access::AccessMode::Open,
        ..Config::default()
    }
}

/// A server running on its own threads inside the test process.
pub struct Running {
    pub http: SocketAddr,
    pub admin: SocketAddr,
    /// The bound BGP address, when `[bgp]` is configured.
    pub bgp: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn serve(config: Config) -> Running {
    let server = Server::bind(config).expect("bind");
    let http = server.http_addrs()[0];
    let admin = server.admin_addr();
    let bgp = server.bgp_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        server
            .run(async {
                let _ = rx.await;
            })
            .expect("run");
    });
    Running {
        http,
        admin,
        bgp,
        stop: Some(tx),
        thread: Some(thread),
    }
}

impl Running {
    /// Ask the server to drain and wait for it to stop.
    pub fn stop(mut self) {
        self.shutdown();
    }
    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The real `oca` binary, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub bgp: Option<SocketAddr>,
}

pub fn daemon(args: &[&str]) -> Daemon {
    daemon_with(
        Command::new(env!("CARGO_BIN_EXE_oca"))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(if args.contains(&"--access") {
                &[][..]
            } else {
                &["--access", "open"][..]
            })
            .args(args),
    )
}

/// Start `cmd` (oca, perhaps behind a wrapper) and read back its addresses.
pub fn daemon_with(cmd: &mut Command) -> Daemon {
    let mut child = cmd
        .env("OCA_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn oca");
    // The first stdout line names the bound addresses; read it on a thread so a
    // daemon that never prints cannot hang the test past the deadline.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(DEADLINE) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            panic!("oca did not report its addresses");
        }
    };
    let maybe = |name: &str| -> Option<SocketAddr> {
        let v = line.split_whitespace().find_map(|w| w.strip_prefix(name))?;
        v.split(',').next().unwrap().parse().ok()
    };
    let field = |name: &str| maybe(name).unwrap_or_else(|| panic!("no {name} in {line:?}"));
    Daemon {
        http: field("http="),
        https: maybe("https="),
        admin: field("admin="),
        bgp: maybe("bgp="),
        child,
    }
}

impl Daemon {
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Wait for exit with a deadline; returns the exit code.
    pub fn wait(&mut self, within: Duration) -> Option<i32> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed response as the client saw it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A raw client connection.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

pub fn connect(addr: SocketAddr) -> Client {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    Client {
        stream,
        buf: Vec::new(),
    }
}

impl Client {
    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).unwrap();
    }

    /// Read one response; `head_request` means no body follows whatever the headers say.
    pub fn read_response(&mut self, head_request: bool) -> Response {
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            self.fill()
                .expect("connection closed before a response head");
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.to_owned(), v.trim().to_owned())
            })
            .collect();
        self.buf.drain(..head_end);
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = if head_request || status == 304 || status == 204 {
            0
        } else {
            resp.header("content-length")
                .map_or(0, |v| v.parse().unwrap())
        };
        while self.buf.len() < len {
            self.fill().expect("connection closed mid-body");
        }
        resp.body = self.buf.drain(..len).collect();
        resp
    }

    /// Send a request and read its response.
    pub fn request(&mut self, raw: &str) -> Response {
        self.send(raw.as_bytes());
        self.read_response(raw.starts_with("HEAD "))
    }

    /// Whether the server closes the connection (EOF) before the deadline.
    pub fn closed_by_server(&mut self) -> bool {
        let mut b = [0u8; 4096];
        loop {
            match self.stream.read(&mut b) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    fn fill(&mut self) -> Option<usize> {
        let mut b = [0u8; 65536];
        match self.stream.read(&mut b) {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                Some(n)
            }
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// GET `path` on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    connect(addr).request(&format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    ))
}

/// Poll `f` until it returns Some or the deadline passes.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn root_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().to_path_buf()
}
