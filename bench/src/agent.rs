//! The HTTP/1.1 client of one simulated viewer: any method, a request body,
//! one keep-alive connection per origin, every connection bound to the
//! viewer's source address.
//!
//! The segment load path (client.rs) is built for throughput against one
//! server and objects of known size. A player instead talks to steering and to
//! whichever appliances a play names, sends JSON, and reads bodies of unknown
//! length (Content-Length, chunked, or to the close), keeping playlists and
//! JSON and counting segment bytes. Heads are parsed by the same http1 module,
//! and TLS uses the same rustls configuration.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;

use crate::chunked;
use crate::http1;
use crate::url::Url;

/// Largest body kept in memory (playlists and JSON; segments are counted,
/// not kept).
const MAX_KEPT: usize = 16 << 20;
/// Read buffer per viewer; heads must fit in it.
const READ_BUF: usize = 64 * 1024;

/// Why a request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// Name resolution or TCP connect failed.
    Connect,
    /// TLS handshake failed, or https without a usable trust store.
    Tls,
    /// No complete response before the deadline.
    Timeout,
    /// Connection closed or reset mid-exchange.
    Reset,
    /// Not HTTP/1.1 as understood here.
    Protocol,
    /// A kept body over the limit.
    TooLarge,
}

impl FetchError {
    pub fn label(self) -> &'static str {
        match self {
            FetchError::Connect => "connect",
            FetchError::Tls => "tls",
            FetchError::Timeout => "timeout",
            FetchError::Reset => "reset",
            FetchError::Protocol => "protocol",
            FetchError::TooLarge => "too_large",
        }
    }
}

/// One request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a Url,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// Keep the body (playlists, JSON) or only count it (segments).
    pub keep: bool,
}

impl<'a> Request<'a> {
    pub fn get(url: &'a Url, keep: bool) -> Request<'a> {
        Request {
            method: "GET",
            url,
            headers: &[],
            body: &[],
            keep,
        }
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// The body if it was kept.
    pub body: Vec<u8>,
    /// Body bytes received, kept or not.
    pub len: u64,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A viewer's connections and buffers.
pub struct Agent {
    bind: Option<IpAddr>,
    tls: Option<Arc<rustls::ClientConfig>>,
    conns: HashMap<(bool, String), Box<dyn Io>>,
    head: Vec<u8>,
    buf: Vec<u8>,
}

/// How a failed exchange ended: whether anything at all came back decides
/// whether a stale keep-alive connection may be retried.
struct Failure {
    kind: FetchError,
    nothing: bool,
}

fn fail(kind: FetchError) -> Failure {
    Failure {
        kind,
        nothing: false,
    }
}

impl Agent {
    pub fn new(bind: Option<IpAddr>, tls: Option<Arc<rustls::ClientConfig>>) -> Agent {
        Agent {
            bind,
            tls,
            conns: HashMap::new(),
            head: Vec::with_capacity(512),
            buf: vec![0; READ_BUF],
        }
    }

    /// Sends `req` and reads the whole response, all before `deadline`.
    pub async fn fetch(
        &mut self,
        req: &Request<'_>,
        deadline: Instant,
    ) -> Result<Reply, FetchError> {
        let (tls, authority) = req.url.origin();
        let key = (tls, authority.to_owned());
        write_head(&mut self.head, req);
        let mut retried = false;
        loop {
            let (mut io, reused) = match self.conns.remove(&key) {
                Some(io) => (io, true),
                None => match timeout_at(deadline, connect(self.bind, self.tls.clone(), req.url))
                    .await
                {
                    Ok(r) => (r?, false),
                    Err(_) => return Err(FetchError::Timeout),
                },
            };
            let exchange = exchange(&mut io, &self.head, req, &mut self.buf);
            match timeout_at(deadline, exchange).await {
                Err(_) => return Err(FetchError::Timeout),
                Ok(Ok((reply, reusable))) => {
                    if reusable {
                        self.conns.insert(key, io);
                    }
                    return Ok(reply);
                }
                // A keep-alive connection the server closed while idle yields
                // nothing at all: retry once on a fresh one, as browsers do,
                // but never a POST, which the server may have acted on.
                Ok(Err(f)) if f.nothing && reused && !retried && req.method != "POST" => {
                    retried = true;
                }
                Ok(Err(f)) => return Err(f.kind),
            }
        }
    }
}

/// Opens a connection to `url`'s origin from `bind`, with TLS for https.
/// (A free function: holding `&Agent` across its awaits would need the
/// connections to be `Sync`.)
async fn connect(
    bind: Option<IpAddr>,
    tls: Option<Arc<rustls::ClientConfig>>,
    url: &Url,
) -> Result<Box<dyn Io>, FetchError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|_| FetchError::Connect)?
        .collect();
    let addr = match bind {
        Some(b) => addrs.iter().find(|a| a.is_ipv4() == b.is_ipv4()),
        None => addrs.first(),
    }
    .copied()
    .ok_or(FetchError::Connect)?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|_| FetchError::Connect)?;
    if let Some(ip) = bind {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|_| FetchError::Connect)?;
    }
    let stream = socket
        .connect(addr)
        .await
        .map_err(|_| FetchError::Connect)?;
    let _ = stream.set_nodelay(true);
    if !url.tls {
        return Ok(Box::new(stream));
    }
    let config = tls.ok_or(FetchError::Tls)?;
    let name = crate::tls::server_name(&url.host).map_err(|_| FetchError::Tls)?;
    let tls = TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|_| FetchError::Tls)?;
    Ok(Box::new(tls))
}

/// Writes the request head for `req` into `buf` (cleared first).
fn write_head(buf: &mut Vec<u8>, req: &Request<'_>) {
    buf.clear();
    // Writing to a Vec cannot fail.
    let _ = write!(
        buf,
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: oca-bench players\r\n",
        req.method, req.url.path, req.url.authority
    );
    for (k, v) in req.headers {
        let _ = write!(buf, "{k}: {v}\r\n");
    }
    if !req.body.is_empty() || matches!(req.method, "POST" | "PUT") {
        let _ = write!(buf, "Content-Length: {}\r\n", req.body.len());
    }
    buf.extend_from_slice(b"\r\n");
}

/// How the response body is delimited.
enum Framing {
    Empty,
    Length(u64),
    Chunked(chunked::Decoder),
    /// HTTP/1.0 style: until the server closes.
    Close,
}

async fn exchange(
    io: &mut Box<dyn Io>,
    head: &[u8],
    req: &Request<'_>,
    buf: &mut [u8],
) -> Result<(Reply, bool), Failure> {
    let sent = async {
        io.write_all(head).await?;
        io.write_all(req.body).await?;
        io.flush().await
    };
    if sent.await.is_err() {
        return Err(Failure {
            kind: FetchError::Reset,
            nothing: true,
        });
    }
    let mut filled = 0;
    let parsed = loop {
        let n = io.read(&mut buf[filled..]).await.unwrap_or(0);
        if n == 0 {
            return Err(Failure {
                kind: FetchError::Reset,
                nothing: filled == 0,
            });
        }
        filled += n;
        match http1::parse_head(&buf[..filled]) {
            Ok(Some(h)) => break h,
            Ok(None) if filled < buf.len() => {}
            Ok(None) | Err(_) => return Err(fail(FetchError::Protocol)),
        }
    };
    let mut framing = match (parsed.status, parsed.chunked, parsed.content_length) {
        (0..=199, _, _) => return Err(fail(FetchError::Protocol)),
        (204 | 304, _, _) => Framing::Empty,
        _ if req.method == "HEAD" => Framing::Empty,
        (_, true, _) => Framing::Chunked(chunked::Decoder::default()),
        (_, false, Some(n)) => Framing::Length(n),
        (_, false, None) => Framing::Close,
    };
    let mut body = Vec::new();
    let mut len = 0u64;
    let mut sink = |bytes: &[u8]| {
        len += bytes.len() as u64;
        if req.keep && body.len() <= MAX_KEPT {
            body.extend_from_slice(&bytes[..bytes.len().min(MAX_KEPT + 1 - body.len())]);
        }
    };
    // Body bytes that came with the head, then the rest.
    let mut pending = parsed.len..filled;
    loop {
        let chunk = &buf[pending.clone()];
        let finished = match &mut framing {
            Framing::Empty => {
                if !chunk.is_empty() {
                    return Err(fail(FetchError::Protocol));
                }
                true
            }
            Framing::Length(left) => {
                if chunk.len() as u64 > *left {
                    // No pipelining: bytes past the body are a server bug.
                    return Err(fail(FetchError::Protocol));
                }
                sink(chunk);
                *left -= chunk.len() as u64;
                *left == 0
            }
            Framing::Chunked(d) => {
                let used = d
                    .feed(chunk, &mut sink)
                    .map_err(|_| fail(FetchError::Protocol))?;
                if used < chunk.len() {
                    return Err(fail(FetchError::Protocol));
                }
                d.done()
            }
            Framing::Close => {
                sink(chunk);
                false
            }
        };
        if finished {
            break;
        }
        let n = match io.read(buf).await {
            Ok(n) => n,
            Err(_) => return Err(fail(FetchError::Reset)),
        };
        if n == 0 {
            if matches!(framing, Framing::Close) {
                break;
            }
            return Err(fail(FetchError::Reset));
        }
        pending = 0..n;
    }
    if req.keep && body.len() > MAX_KEPT {
        return Err(fail(FetchError::TooLarge));
    }
    let reusable = !parsed.close && !matches!(framing, Framing::Close);
    Ok((
        Reply {
            status: parsed.status,
            body,
            len,
        },
        reusable,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads() {
        let url = Url::parse("http://h:81/v1/play?x=1").unwrap();
        let mut buf = b"stale".to_vec();
        let req = Request {
            method: "POST",
            url: &url,
            headers: &[("Authorization", "Bearer vt_x")],
            body: b"{}",
            keep: true,
        };
        write_head(&mut buf, &req);
        assert_eq!(
            String::from_utf8(buf.clone()).unwrap(),
            "POST /v1/play?x=1 HTTP/1.1\r\nHost: h:81\r\nUser-Agent: oca-bench players\r\n\
             Authorization: Bearer vt_x\r\nContent-Length: 2\r\n\r\n"
        );
        write_head(&mut buf, &Request::get(&url, false));
        assert!(!String::from_utf8_lossy(&buf).contains("Content-Length"));
        let del = Request {
            method: "DELETE",
            ..Request::get(&url, true)
        };
        write_head(&mut buf, &del);
        assert!(buf.starts_with(b"DELETE /v1/play?x=1 HTTP/1.1\r\n"));
    }

    #[test]
    fn labels_are_distinct() {
        let all = [
            FetchError::Connect,
            FetchError::Tls,
            FetchError::Timeout,
            FetchError::Reset,
            FetchError::Protocol,
            FetchError::TooLarge,
        ];
        let mut labels: Vec<_> = all.iter().map(|e| e.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), all.len());
    }
}
