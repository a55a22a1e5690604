//! The HTTP client fills download with: hyper over connections made here, so
//! every fill socket can carry the DSCP mark (`dscp`) and come from the
//! source address (`source_address`) the ISP asked for, and the ISP can
//! police or route fill traffic apart from viewers'. (reqwest, used for the
//! agent's other calls, offers a source address but no way to set a socket's
//! TOS.) Plain HTTP and HTTPS (rustls, the control plane's CA settings);
//! HTTP/1.1 with connections kept for reuse.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Uri;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};

/// How fill connections are made.
#[derive(Debug, Clone, Default)]
pub struct Marking {
    /// DiffServ code point (0..=63) for every packet the agent sends on a
    /// fill connection: the TOS byte's upper six bits (IPv4), the traffic
    /// class's (IPv6).
    pub dscp: Option<u8>,
    /// Local address fill connections are made from.
    pub source: Option<IpAddr>,
}

/// Fill downloads' client.
pub struct Transfers {
    client: Client<Connector, Empty<Bytes>>,
    read_timeout: Duration,
}

/// A response whose body is read chunk by chunk, each read bounded by the
/// read timeout (a stalled source fails instead of hanging the download).
pub struct Response {
    pub status: u16,
    body: Incoming,
    read_timeout: Duration,
}

impl Response {
    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            let frame = tokio::time::timeout(self.read_timeout, self.body.frame())
                .await
                .map_err(|_| format!("no data for {:?}", self.read_timeout))?;
            match frame {
                None => return Ok(None),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data()
                        && !data.is_empty()
                    {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

impl Transfers {
    pub fn new(
        connect_timeout: Duration,
        read_timeout: Duration,
        ca_file: Option<&std::path::Path>,
        marking: Marking,
    ) -> Result<Transfers, String> {
        let tls = control_client::tls_client_config(ca_file)?;
        let connector = Connector(Arc::new(Dialer {
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            marking,
            connect_timeout,
        }));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Transfers {
            client,
            read_timeout,
        })
    }

    /// `GET url`, from byte `from` on when it is not 0 (`Range`); the status
    /// and headers arrive within the read timeout.
    pub async fn get(&self, url: &str, from: u64) -> Result<Response, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let mut req = hyper::Request::get(uri);
        if from > 0 {
            req = req.header(hyper::header::RANGE, format!("bytes={from}-"));
        }
        let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(self.read_timeout, self.client.request(req))
            .await
            .map_err(|_| format!("no answer within {:?}", self.read_timeout))?
            .map_err(|e| {
                // The connector's own error says more than hyper's wrapper.
                let mut s = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(inner) = src {
                    s = format!("{s}: {inner}");
                    src = inner.source();
                }
                s
            })?;
        Ok(Response {
            status: resp.status().as_u16(),
            body: resp.into_body(),
            read_timeout: self.read_timeout,
        })
    }
}

/// Makes one connection: resolve, mark, bind, connect, TLS for `https`.
struct Dialer {
    tls: tokio_rustls::TlsConnector,
    marking: Marking,
    connect_timeout: Duration,
}

impl Dialer {
    async fn dial(&self, uri: Uri) -> io::Result<Stream> {
        let invalid =
            |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{uri}: {why}"));
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(invalid("not an http:// or https:// URL")),
        };
        let host = uri.host().ok_or_else(|| invalid("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address"));
        for addr in addrs {
            // The source address decides the family: skip the others.
            if self
                .marking
                .source
                .is_some_and(|s| s.is_ipv4() != addr.is_ipv4())
            {
                continue;
            }
            match tokio::time::timeout(self.connect_timeout, self.connect(addr)).await {
                Ok(Ok(tcp)) => {
                    let _ = tcp.set_nodelay(true);
                    if !https {
                        return Ok(Stream::Plain(tcp));
                    }
                    let name = rustls_pki_types::ServerName::try_from(host.clone())
                        .map_err(|_| invalid("not a usable server name"))?;
                    let tls = self.tls.connect(name, tcp).await?;
                    return Ok(Stream::Tls(Box::new(tls)));
                }
                Ok(Err(e)) => last = e,
                Err(_) => {
                    last = io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr}"))
                }
            }
        }
        Err(last)
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(dscp) = self.marking.dscp {
            let sock = socket2::SockRef::from(&socket);
            let tos = u32::from(dscp) << 2;
            if addr.is_ipv4() {
                sock.set_tos_v4(tos)?;
            } else {
                sock.set_tclass_v6(tos)?;
            }
        }
        if let Some(source) = self.marking.source {
            socket.bind(SocketAddr::new(source, 0))?;
        }
        socket.connect(addr).await
    }
}

#[derive(Clone)]
struct Connector(Arc<Dialer>);

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Stream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = Arc::clone(&self.0);
        Box::pin(async move { dialer.dial(uri).await.map(TokioIo::new) })
    }
}

/// One fill connection, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
