//! A scripted steering service and appliances for `oca-bench players`:
//! `cdn().appliance("a", Serve::FailSegments).appliance("b", Serve::Ok).run()`.
//!
//! Real steering and oca are exercised by the e2e test; this fake shows the
//! behaviours they rarely do on demand: an appliance that fails mid-play, one
//! that is down, refused plays, garbage playlists, chunked answers.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How an appliance behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    Ok,
    /// Playlists and init segments work; media segments answer 503.
    FailSegments,
    /// Nothing listens: connections are refused.
    Down,
    /// Media segments take this many milliseconds.
    Slow(u64),
}

#[derive(Clone)]
pub struct CdnBuilder {
    appliances: Vec<(&'static str, Serve)>,
    /// Segments per rendition and their duration in seconds.
    segments: usize,
    segment_s: f64,
    refuse: Option<(u16, &'static str)>,
    garbage_master: bool,
    chunked: bool,
}

pub fn cdn() -> CdnBuilder {
    CdnBuilder {
        appliances: Vec::new(),
        segments: 6,
        segment_s: 0.5,
        refuse: None,
        garbage_master: false,
        chunked: false,
    }
}

impl CdnBuilder {
    /// Adds a pathway; steering's priority is the order of the calls.
    pub fn appliance(mut self, id: &'static str, serve: Serve) -> Self {
        self.appliances.push((id, serve));
        self
    }
    pub fn segments(mut self, n: usize, secs: f64) -> Self {
        (self.segments, self.segment_s) = (n, secs);
        self
    }
    /// Refuse every play with this status and code.
    pub fn refuse(mut self, status: u16, code: &'static str) -> Self {
        self.refuse = Some((status, code));
        self
    }
    pub fn garbage_master(mut self) -> Self {
        self.garbage_master = true;
        self
    }
    /// Steering's JSON and playlists with Transfer-Encoding: chunked.
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    pub fn run(self) -> Cdn {
        let log = Arc::new(Log::default());
        let mut urls = BTreeMap::new();
        let mut stops = Vec::new();
        for &(id, serve) in &self.appliances {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            urls.insert(id, format!("http://{addr}/"));
            if serve == Serve::Down {
                // Dropped: the port refuses connections.
                continue;
            }
            let app = Appliance {
                id,
                serve,
                segments: self.segments,
            };
            stops.push(serve_on(
                listener,
                Arc::new(Handler::Appliance(app)),
                log.clone(),
            ));
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let steering = Steering {
            base: format!("http://{addr}"),
            script: self,
            appliances: urls,
            plays: AtomicU64::new(0),
        };
        stops.push(serve_on(
            listener,
            Arc::new(Handler::Steering(steering)),
            log.clone(),
        ));
        Cdn {
            url: format!("http://{addr}"),
            log,
            stops,
        }
    }
}

/// What the fake saw: "METHOD path" per request, and peers per server.
#[derive(Default)]
pub struct Log {
    pub requests: Mutex<Vec<String>>,
    /// Heartbeats' bodies, parsed, in arrival order.
    pub heartbeats: Mutex<Vec<serde_json::Value>>,
    pub peers: Mutex<Vec<std::net::IpAddr>>,
}

pub struct Cdn {
    pub url: String,
    pub log: Arc<Log>,
    stops: Vec<(SocketAddr, Arc<AtomicBool>)>,
}

impl Cdn {
    pub fn count(&self, prefix: &str) -> usize {
        let r = self.log.requests.lock().unwrap();
        r.iter().filter(|l| l.starts_with(prefix)).count()
    }
}

impl Drop for Cdn {
    fn drop(&mut self) {
        for (addr, stop) in &self.stops {
            stop.store(true, Ordering::Relaxed);
            let _ = TcpStream::connect(addr);
        }
    }
}

struct Appliance {
    id: &'static str,
    serve: Serve,
    segments: usize,
}

struct Steering {
    base: String,
    script: CdnBuilder,
    appliances: BTreeMap<&'static str, String>,
    plays: AtomicU64,
}

enum Handler {
    Appliance(Appliance),
    Steering(Steering),
}

/// (status, body, chunked)
type Answer = (u16, Vec<u8>, bool);

impl Handler {
    fn answer(&self, method: &str, path: &str) -> Answer {
        match self {
            Handler::Appliance(a) => a.answer(path),
            Handler::Steering(s) => s.answer(method, path),
        }
    }
}

impl Appliance {
    fn answer(&self, path: &str) -> Answer {
        let Some(rest) = path.strip_prefix("/t/tok/") else {
            return (404, b"no".to_vec(), false);
        };
        let (rendition, file) = rest.split_once('/').unwrap_or(("", rest));
        if !matches!(rendition, "lo" | "hi") {
            return (404, b"no".to_vec(), false);
        }
        if file == "index.m3u8" {
            let mut p = String::from(
                "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n\
                 #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"init.mp4\"\n",
            );
            for i in 0..self.segments {
                p += &format!("#EXTINF:0.5,\nseg-{i}.m4s\n");
            }
            p += "#EXT-X-ENDLIST\n";
            return (200, p.into_bytes(), false);
        }
        if file == "init.mp4" {
            return (200, vec![b'i'; 1000], false);
        }
        if file.starts_with("seg-") {
            match self.serve {
                Serve::FailSegments => {
                    return (503, format!("{} is failing", self.id).into_bytes(), false);
                }
                Serve::Slow(ms) => std::thread::sleep(std::time::Duration::from_millis(ms)),
                Serve::Ok | Serve::Down => {}
            }
            let size = if rendition == "hi" { 40_000 } else { 10_000 };
            return (200, vec![b's'; size], false);
        }
        (404, b"no".to_vec(), false)
    }
}

impl Steering {
    fn answer(&self, method: &str, path: &str) -> Answer {
        let chunked = self.script.chunked;
        let b = &self.base;
        match (method, path) {
            ("POST", "/v1/play") => {
                if let Some((status, code)) = self.script.refuse {
                    let body = format!("{{\"code\":\"{code}\",\"message\":\"refused\"}}");
                    return (status, body.into_bytes(), chunked);
                }
                let n = self.plays.fetch_add(1, Ordering::Relaxed);
                let apps: Vec<String> = self
                    .script
                    .appliances
                    .iter()
                    .map(|(id, _)| {
                        format!(
                            "{{\"id\":\"{id}\",\"base_url\":\"{}t/tok/\"}}",
                            self.appliances[id]
                        )
                    })
                    .collect();
                let body = format!(
                    "{{\"play_id\":\"p{n}\",\"manifests\":{{\"hls\":\"{b}/v1/plays/p{n}/master.m3u8\"}},\
                     \"content_steering\":{{\"hls\":\"{b}/v1/steering/p{n}/hls\"}},\
                     \"appliances\":[{}],\"resume_position\":0,\"degraded\":[]}}",
                    apps.join(",")
                );
                (200, body.into_bytes(), chunked)
            }
            ("GET", p) if p.ends_with("/master.m3u8") => {
                if self.script.garbage_master {
                    return (200, b"#EXTM3U\nthis is not a playlist\n".to_vec(), chunked);
                }
                let mut m = String::from("#EXTM3U\n#EXT-X-VERSION:7\n");
                for (id, _) in &self.script.appliances {
                    let base = &self.appliances[id];
                    for (bw, r) in [(500_000, "lo"), (2_000_000, "hi")] {
                        m += &format!(
                            "#EXT-X-STREAM-INF:BANDWIDTH={bw},PATHWAY-ID=\"{id}\"\n{base}t/tok/{r}/index.m3u8\n"
                        );
                    }
                }
                let first = self.script.appliances.first().map_or("", |a| a.0);
                m += &format!(
                    "#EXT-X-CONTENT-STEERING:SERVER-URI=\"{b}/ignored\",PATHWAY-ID=\"{first}\"\n"
                );
                (200, m.into_bytes(), chunked)
            }
            ("GET", p) if p.starts_with("/v1/steering/") => {
                let ids: Vec<String> = self
                    .script
                    .appliances
                    .iter()
                    .map(|(id, _)| format!("\"{id}\""))
                    .collect();
                let body = format!(
                    "{{\"VERSION\":1,\"TTL\":1,\"PATHWAY-PRIORITY\":[{}]}}",
                    ids.join(",")
                );
                (200, body.into_bytes(), chunked)
            }
            ("POST", "/v1/bookmarks") => (204, Vec::new(), false),
            ("POST", p) if p.starts_with("/v1/plays/") && p.ends_with("/heartbeat") => {
                (200, b"{\"ended\":false}".to_vec(), false)
            }
            ("DELETE", p) if p.starts_with("/v1/plays/") => (204, Vec::new(), false),
            _ => (404, b"{\"code\":\"not_found\"}".to_vec(), false),
        }
    }
}

fn serve_on(
    listener: TcpListener,
    handler: Arc<Handler>,
    log: Arc<Log>,
) -> (SocketAddr, Arc<AtomicBool>) {
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stopping.load(Ordering::Relaxed) {
                break;
            }
            let Ok(tcp) = conn else { continue };
            if let Ok(peer) = tcp.peer_addr() {
                log.peers.lock().unwrap().push(peer.ip());
            }
            let (handler, log) = (handler.clone(), log.clone());
            std::thread::spawn(move || connection(tcp, &handler, &log));
        }
    });
    (addr, stop)
}

/// Keep-alive request loop: heads, Content-Length bodies, scripted answers.
fn connection(mut s: TcpStream, handler: &Handler, log: &Log) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
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
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < end + length {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..end + length).skip(end).collect();
        let mut words = head.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
        if method == "POST" && path.ends_with("/heartbeat") {
            let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            log.heartbeats.lock().unwrap().push(v);
        }
        log.requests
            .lock()
            .unwrap()
            .push(format!("{method} {path}"));
        let (status, body, chunked) = handler.answer(method, path);
        let mut out = format!("HTTP/1.1 {status} X\r\n").into_bytes();
        if chunked && !body.is_empty() {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            // Two chunks, so a chunk boundary falls inside the body.
            let (a, b) = body.split_at(body.len() / 2);
            for part in [a, b] {
                out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                out.extend_from_slice(part);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            out.extend_from_slice(&body);
        }
        if s.write_all(&out).is_err() {
            return;
        }
    }
}
