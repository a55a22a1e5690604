//! Test support: the real `oca-bench` binary with a deadline, an in-process
//! oca server, and a scripted fake origin (plain or TLS) for the behaviours oca
//! never shows (closing every connection, chunked bodies).
#![allow(dead_code)]

pub mod cdn;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

/// Upper bound for any one `oca-bench` run in these tests.
pub const DEADLINE: Duration = Duration::from_secs(30);

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

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// What a finished `oca-bench` run printed.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The `--json` report, asserting the run succeeded.
    pub fn json(&self) -> Value {
        assert_eq!(self.code, Some(0), "oca-bench failed: {}", self.stderr);
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", self.stdout))
    }
}

/// Runs the real binary; kills it and fails the test if it outlives [`DEADLINE`].
pub fn bench<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oca-bench"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn oca-bench");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let until = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("oca-bench did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// An oca disk root in a temp directory with the given objects.
pub fn store(objects: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (key, bytes) in objects {
        let path = dir.path().join("objects").join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    dir
}

/// An oca server running on its own threads inside the test process.
pub struct Oca {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn oca(root: &Path) -> Oca {
    let config = oca::Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        stores: vec![root.to_path_buf()],
        workers: 2,
        // oca requires signed-URL tokens by default; the load generator does
        // not sign URLs (yet), so the test server is open.
        access: oca::access::AccessMode::Open,
        shutdown_grace: Duration::from_secs(5),
        ..oca::Config::default()
    };
    let server = oca::Server::bind(config).expect("bind");
    let url = format!("http://{}", server.http_addrs()[0]);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        server
            .run(async {
                let _ = rx.await;
            })
            .expect("run");
    });
    Oca {
        url,
        stop: Some(tx),
        thread: Some(thread),
    }
}

impl Drop for Oca {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A scripted origin: `origin().object(k, bytes).tls().run()`.
#[derive(Clone, Default)]
pub struct OriginBuilder {
    objects: HashMap<String, Vec<u8>>,
    tls: bool,
    close_each: bool,
    chunked: bool,
    hang: bool,
}

pub fn origin() -> OriginBuilder {
    OriginBuilder::default()
}

impl OriginBuilder {
    pub fn object(mut self, key: &str, bytes: &[u8]) -> Self {
        self.objects.insert(key.to_owned(), bytes.to_vec());
        self
    }
    /// Serve https with tests/data/leaf.pem (TLS 1.2 and 1.3).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }
    /// Answer with `Connection: close` and close after every response.
    pub fn close_each(mut self) -> Self {
        self.close_each = true;
        self
    }
    /// Send bodies chunked (which oca-bench does not support).
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    /// Read requests but never answer (until the client closes).
    pub fn hang(mut self) -> Self {
        self.hang = true;
        self
    }

    pub fn run(self) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let tls = self.tls.then(server_tls);
        let url = format!("{}://{addr}", if self.tls { "https" } else { "http" });
        let script = Arc::new(self);
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(tcp) = conn else { continue };
                let script = script.clone();
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => script.serve(tcp),
                    Some(config) => {
                        let conn = rustls::ServerConnection::new(config).unwrap();
                        script.serve(rustls::StreamOwned::new(conn, tcp));
                    }
                });
            }
        });
        Origin { url, addr, stop }
    }

    fn serve<S: Read + Write>(&self, mut s: S) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let end = loop {
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break p + 4;
                }
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            if self.hang {
                while let Ok(1..) = s.read(&mut chunk) {}
                return;
            }
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end);
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            let close = if self.close_each {
                "Connection: close\r\n"
            } else {
                ""
            };
            let mut out = Vec::new();
            match self.objects.get(path.trim_start_matches('/')) {
                Some(body) if self.chunked => {
                    out.extend_from_slice(
                        format!(
                            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n{close}\r\n{:x}\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    );
                    out.extend_from_slice(body);
                    out.extend_from_slice(b"\r\n0\r\n\r\n");
                }
                Some(body) => {
                    out.extend_from_slice(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{close}\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    );
                    out.extend_from_slice(body);
                }
                None => out.extend_from_slice(
                    format!("HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n{close}\r\nnope")
                        .as_bytes(),
                ),
            }
            if s.write_all(&out).and_then(|()| s.flush()).is_err() || self.close_each {
                return;
            }
        }
    }
}

fn server_tls() -> Arc<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(data("leaf.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(data("leaf.key")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A running fake origin; stops accepting when dropped.
pub struct Origin {
    pub url: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// A keys file in a temp directory.
pub fn keys_file(lines: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(lines.as_bytes()).unwrap();
    f
}

/// Asserts the common invariants of a report: percentiles ordered, first
/// byte no later than last, and a run that completed requests.
pub fn assert_sane(v: &Value) {
    assert!(v["requests"].as_u64().unwrap() > 0, "no requests: {v}");
    for h in ["latency_us", "ttfb_us"] {
        let p = |q: &str| v[h][q].as_u64().unwrap();
        assert!(
            p("p50") <= p("p90") && p("p90") <= p("p99") && p("p99") <= p("p999"),
            "{h} not ordered: {v}"
        );
        assert!(p("p999") <= p("max"), "{h}: {v}");
        assert!(p("p50") > 0, "{h}: {v}");
    }
    assert!(v["ttfb_us"]["max"].as_u64() <= v["latency_us"]["max"].as_u64());
    assert_eq!(v["threads_lost"], 0);
}
