//! The HTTP/1.1 requests of one simulated viewer: any method, a request
//! body, one keep-alive connection per origin, every connection bound to the
//! viewer's source address.
//!
//! A player talks to steering and to whichever appliances a play names, sends
//! JSON, and reads bodies of unknown length (Content-Length, chunked, or to the
//! close), keeping playlists and JSON and counting segment bytes. The
//! connections are the same as the segment load's (conn.rs: one connect, one
//! head parser, one body reader), as is the TLS configuration.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;

use crate::conn::{self, Broken, Conn, ConnectError};
use crate::http1::{self, RequestHead};
use crate::url::Url;

/// Largest body kept in memory (playlists and JSON; segments are counted,
/// not kept).
const MAX_KEPT: usize = 16 << 20;
/// Read buffer per connection; heads must fit in it.
const READ_BUF: usize = 32 * 1024;

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
    /// `Retry-After`, seconds, when the server gave one.
    pub retry_after: Option<u64>,
    /// From the start of the fetch (connecting included, as a player's
    /// resource timing counts it) to the response head.
    pub ttfb: std::time::Duration,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A viewer's connections and request buffer.
pub struct Agent {
    bind: Option<IpAddr>,
    tls: Option<Arc<rustls::ClientConfig>>,
    conns: HashMap<(bool, String), Conn>,
    head: Vec<u8>,
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
        let with_body = !req.body.is_empty() || matches!(req.method, "POST" | "PUT");
        let head = RequestHead {
            method: req.method,
            headers: req.headers,
            body_len: with_body.then_some(req.body.len()),
            ..RequestHead::get(&req.url.path, &req.url.authority)
        };
        http1::write_request(&mut self.head, &head);
        let started = Instant::now();
        let mut retried = false;
        loop {
            let (mut c, reused) = match self.conns.remove(&key) {
                Some(c) => (c, true),
                None => match timeout_at(deadline, connect(self.bind, self.tls.clone(), req.url))
                    .await
                {
                    Ok(r) => (r?, false),
                    Err(_) => return Err(FetchError::Timeout),
                },
            };
            match timeout_at(deadline, exchange(&mut c, &self.head, req, started)).await {
                Err(_) => return Err(FetchError::Timeout),
                Ok(Ok((reply, reusable))) => {
                    if reusable {
                        self.conns.insert(key, c);
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
) -> Result<Conn, FetchError> {
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
    let tls = match (url.tls, tls) {
        (false, _) => None,
        (true, None) => return Err(FetchError::Tls),
        (true, Some(config)) => {
            let name = crate::tls::server_name(&url.host).map_err(|_| FetchError::Tls)?;
            Some((TlsConnector::from(config), name))
        }
    };
    match conn::connect(addr, bind, tls.as_ref()).await {
        Ok(io) => Ok(Conn::new(io, vec![0; READ_BUF])),
        Err(ConnectError::Tcp(_)) => Err(FetchError::Connect),
        Err(ConnectError::Tls(_)) => Err(FetchError::Tls),
    }
}

/// What a broken response is reported as: anything but garbage is a reset.
fn broken(b: Broken) -> FetchError {
    match b {
        Broken::Protocol => FetchError::Protocol,
        Broken::Closed | Broken::Io(_) => FetchError::Reset,
    }
}

async fn exchange(
    c: &mut Conn,
    head: &[u8],
    req: &Request<'_>,
    started: Instant,
) -> Result<(Reply, bool), Failure> {
    if c.send(head, req.body).await.is_err() {
        return Err(Failure {
            kind: FetchError::Reset,
            nothing: true,
        });
    }
    let (parsed, _) = c.read_head().await.map_err(|e| Failure {
        kind: broken(e.broken),
        nothing: e.nothing,
    })?;
    let ttfb = started.elapsed();
    let framing =
        http1::framing(&parsed, req.method == "HEAD").map_err(|_| fail(FetchError::Protocol))?;
    let mut body = Vec::new();
    let mut len = 0u64;
    let sink = |bytes: &[u8]| {
        len += bytes.len() as u64;
        if req.keep && body.len() <= MAX_KEPT {
            body.extend_from_slice(&bytes[..bytes.len().min(MAX_KEPT + 1 - body.len())]);
        }
    };
    c.read_body(framing, sink)
        .await
        .map_err(|e| fail(broken(e.broken)))?;
    // No pipelining: bytes past the body are a server bug.
    if c.pending() > 0 {
        return Err(fail(FetchError::Protocol));
    }
    if req.keep && body.len() > MAX_KEPT {
        return Err(fail(FetchError::TooLarge));
    }
    let reusable = !parsed.close && framing != http1::Framing::Close;
    Ok((
        Reply {
            status: parsed.status,
            body,
            len,
            retry_after: parsed.retry_after,
            ttfb,
        },
        reusable,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
