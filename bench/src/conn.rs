//! The one HTTP/1.1 client connection every mode uses (segments and compare,
//! players, hostile): connect (a source address, TCP_NODELAY, TLS), send a
//! request, read a response head (http1::parse_head) and its body as the head
//! frames it.
//!
//! A connection owns its read buffer. Heads and bodies are read into it and
//! handed to the caller's sink a slice at a time, so nothing per response is
//! allocated in proportion to the body; the buffer can be taken back when a
//! connection is dropped and given to the next (segments does, so reconnects
//! allocate nothing either). Bytes read past a response stay in the buffer for
//! the next one: pipelining (hostile) reads its responses in turn, and the
//! other modes, which never pipeline, treat such bytes as a server bug.

use std::io;
use std::net::{IpAddr, SocketAddr};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::chunked;
use crate::http1::{self, Framing, Head};

/// A byte stream: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// TLS for https: the connector (its configuration) and the name to present.
pub type Tls = (TlsConnector, ServerName<'static>);

/// Which step of opening a connection failed.
#[derive(Debug)]
pub enum ConnectError {
    Tcp(io::Error),
    Tls(io::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Tcp(_) => f.write_str("cannot connect"),
            ConnectError::Tls(_) => f.write_str("TLS handshake failed"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Tcp(e) | ConnectError::Tls(e) => Some(e),
        }
    }
}

/// Opens a TCP connection to `addr` (from `bind` if given) and, with `tls`,
/// does the handshake.
pub async fn connect(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    tls: Option<&Tls>,
) -> Result<Box<dyn Io>, ConnectError> {
    let tcp = async {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = bind {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    };
    let stream = tcp.await.map_err(ConnectError::Tcp)?;
    match tls {
        None => Ok(Box::new(stream)),
        Some((connector, name)) => {
            let tls = connector
                .connect(name.clone(), stream)
                .await
                .map_err(ConnectError::Tls)?;
            Ok(Box::new(tls))
        }
    }
}

/// Why a response could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// The server closed the connection.
    Closed,
    /// A read failed.
    Io(io::ErrorKind),
    /// Not HTTP/1.1 as understood here: a head that does not parse or does
    /// not fit in the buffer, or bad chunked coding.
    Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadError {
    pub broken: Broken,
    /// Not a byte of the response came back (a keep-alive connection the
    /// server closed while idle looks like this: worth one retry).
    pub nothing: bool,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.broken, self.nothing) {
            (Broken::Closed, true) => f.write_str("closed before a response"),
            (Broken::Closed, false) => f.write_str("closed mid-response"),
            (Broken::Io(kind), _) => write!(f, "read failed: {kind}"),
            (Broken::Protocol, _) => f.write_str("not an HTTP/1.1 response"),
        }
    }
}

impl std::error::Error for ReadError {}

fn broken(broken: Broken) -> ReadError {
    ReadError {
        broken,
        nothing: false,
    }
}

/// An open connection with its read buffer.
pub struct Conn {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    /// Bytes of `buf` read but not yet consumed: `buf[start..end]`.
    start: usize,
    end: usize,
    responses: u64,
}

impl Conn {
    /// `buf` is the read buffer (its length, not its capacity, counts): a
    /// response head must fit in it.
    pub fn new(io: Box<dyn Io>, buf: Vec<u8>) -> Conn {
        debug_assert!(!buf.is_empty());
        Conn {
            io,
            buf,
            start: 0,
            end: 0,
            responses: 0,
        }
    }

    /// The read buffer back, for the next connection.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// Response heads read on this connection so far.
    pub fn responses(&self) -> u64 {
        self.responses
    }

    /// Bytes received past the last response read.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Writes a request (head, then body) and flushes it (TLS buffers records
    /// until flushed).
    pub async fn send(&mut self, head: &[u8], body: &[u8]) -> io::Result<()> {
        self.io.write_all(head).await?;
        if !body.is_empty() {
            self.io.write_all(body).await?;
        }
        self.io.flush().await
    }

    /// Reads the next response head, and when its first byte came.
    /// Cancel-safe: bytes already read stay in the buffer.
    pub async fn read_head(&mut self) -> Result<(Head, Instant), ReadError> {
        let mut first_byte = (self.start < self.end).then(Instant::now);
        loop {
            if self.start < self.end {
                match http1::parse_head(&self.buf[self.start..self.end]) {
                    Ok(Some(head)) => {
                        self.start += head.len;
                        self.responses += 1;
                        return Ok((head, first_byte.unwrap_or_else(Instant::now)));
                    }
                    Ok(None) => {}
                    Err(_) => return Err(broken(Broken::Protocol)),
                }
            }
            // Keep the partial head at the front, and read after it.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                return Err(broken(Broken::Protocol));
            }
            let nothing = self.end == 0;
            let n = match self.io.read(&mut self.buf[self.end..]).await {
                Ok(0) => {
                    return Err(ReadError {
                        broken: Broken::Closed,
                        nothing,
                    });
                }
                Ok(n) => n,
                Err(e) => {
                    return Err(ReadError {
                        broken: Broken::Io(e.kind()),
                        nothing,
                    });
                }
            };
            first_byte.get_or_insert_with(Instant::now);
            self.end += n;
        }
    }

    /// Reads the body `framing` delimits, handing its bytes to `sink` as they
    /// arrive. A body of known length is read exactly, never past its end.
    pub async fn read_body(
        &mut self,
        framing: Framing,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(), ReadError> {
        match framing {
            Framing::Empty => Ok(()),
            Framing::Length(len) => {
                let early = (self.pending() as u64).min(len) as usize;
                sink(&self.buf[self.start..self.start + early]);
                self.start += early;
                let mut left = len - early as u64;
                while left > 0 {
                    // Everything buffered is consumed: read into the whole buffer.
                    let want = self
                        .buf
                        .len()
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.read_fresh(want).await?;
                    sink(&self.buf[..n]);
                    self.start = n;
                    left -= n as u64;
                }
                Ok(())
            }
            Framing::Chunked => {
                let mut decoder = chunked::Decoder::default();
                loop {
                    let used = decoder
                        .feed(&self.buf[self.start..self.end], &mut sink)
                        .map_err(|_| broken(Broken::Protocol))?;
                    self.start += used;
                    if decoder.done() {
                        return Ok(());
                    }
                    self.read_fresh(self.buf.len()).await?;
                }
            }
            Framing::Close => {
                sink(&self.buf[self.start..self.end]);
                self.start = self.end;
                loop {
                    match self.read_fresh(self.buf.len()).await {
                        Ok(n) => {
                            sink(&self.buf[..n]);
                            self.start = n;
                        }
                        Err(ReadError {
                            broken: Broken::Closed,
                            ..
                        }) => return Ok(()),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// Reads up to `want` bytes to the start of the buffer, once everything
    /// buffered has been consumed; the end of the stream is `Closed`.
    async fn read_fresh(&mut self, want: usize) -> Result<usize, ReadError> {
        debug_assert_eq!(self.start, self.end);
        self.start = 0;
        self.end = 0;
        match self.io.read(&mut self.buf[..want]).await {
            Ok(0) => Err(broken(Broken::Closed)),
            Ok(n) => {
                self.end = n;
                Ok(n)
            }
            Err(e) => Err(broken(Broken::Io(e.kind()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A connection whose server side writes `wire` in pieces of `step`
    /// bytes, then closes.
    fn scripted(wire: &'static [u8], step: usize, buf: usize) -> Conn {
        let (client, mut server) = tokio::io::duplex(64);
        tokio::spawn(async move {
            for piece in wire.chunks(step) {
                if server.write_all(piece).await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        });
        Conn::new(Box::new(client), vec![0; buf])
    }

    async fn response(c: &mut Conn) -> Result<(u16, Vec<u8>), ReadError> {
        let (head, _) = c.read_head().await?;
        let framing = http1::framing(&head, false).map_err(|_| broken(Broken::Protocol))?;
        let mut body = Vec::new();
        c.read_body(framing, |b| body.extend_from_slice(b)).await?;
        Ok((head.status, body))
    }

    const PIPELINED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
        HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
        HTTP/1.1 204 No Content\r\n\r\n\
        HTTP/1.0 200 OK\r\n\r\nto the end";

    #[tokio::test]
    async fn pipelined_responses_of_every_framing_at_any_split() {
        for step in [1, 2, 7, 64, PIPELINED.len()] {
            for buf in [64, 4096] {
                let mut c = scripted(PIPELINED, step, buf);
                assert_eq!(response(&mut c).await.unwrap(), (200, b"hello".to_vec()));
                assert_eq!(response(&mut c).await.unwrap(), (206, b"abc".to_vec()));
                assert_eq!(response(&mut c).await.unwrap(), (204, vec![]));
                assert_eq!(
                    response(&mut c).await.unwrap(),
                    (200, b"to the end".to_vec())
                );
                assert_eq!(c.responses(), 4);
                assert_eq!(c.pending(), 0);
            }
        }
    }

    #[tokio::test]
    async fn a_length_body_is_never_read_past() {
        let mut c = scripted(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcEXTRA",
            100,
            64,
        );
        assert_eq!(response(&mut c).await.unwrap(), (200, b"abc".to_vec()));
        // Read with the head, the extra bytes wait for a next response.
        assert_eq!(c.pending(), 5);
    }

    #[tokio::test]
    async fn closes_and_garbage_are_told_apart() {
        let mut c = scripted(b"", 1, 64);
        let e = c.read_head().await.unwrap_err();
        assert_eq!(
            e,
            ReadError {
                broken: Broken::Closed,
                nothing: true
            }
        );
        let mut c = scripted(b"HTTP/1.1 200", 1, 64);
        let e = c.read_head().await.unwrap_err();
        assert_eq!((e.broken, e.nothing), (Broken::Closed, false));
        let mut c = scripted(b"SMTP ready\r\n\r\n", 3, 64);
        assert_eq!(c.read_head().await.unwrap_err().broken, Broken::Protocol);
        let mut c = scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", 2, 64);
        assert_eq!(response(&mut c).await.unwrap_err().broken, Broken::Closed);
        let mut c = scripted(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            4,
            64,
        );
        assert_eq!(response(&mut c).await.unwrap_err().broken, Broken::Protocol);
    }

    #[tokio::test]
    async fn a_head_larger_than_the_buffer_is_refused() {
        let mut c = scripted(
            b"HTTP/1.1 200 OK\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
            8,
            32,
        );
        assert_eq!(c.read_head().await.unwrap_err().broken, Broken::Protocol);
    }

    #[tokio::test]
    async fn requests_and_their_bodies_reach_the_server() {
        let (client, mut server) = tokio::io::duplex(1024);
        let mut c = Conn::new(Box::new(client), vec![0; 64]);
        c.send(b"POST / HTTP/1.1\r\n\r\n", b"{}").await.unwrap();
        drop(c);
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"POST / HTTP/1.1\r\n\r\n{}");
    }

    #[tokio::test]
    async fn connects_over_tcp_and_reports_refusals() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let source: IpAddr = "127.0.0.7".parse().unwrap();
        let (io, accepted) = tokio::join!(connect(addr, Some(source), None), listener.accept());
        assert!(io.is_ok());
        assert_eq!(accepted.unwrap().1.ip(), source, "from the source address");
        drop(listener);
        assert!(matches!(
            connect(addr, None, None).await,
            Err(ConnectError::Tcp(_))
        ));
    }
}
