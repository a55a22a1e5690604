//! Buffering of request heads off a socket, with the idle and header timeouts.

use std::io;

use tokio::sync::watch;
use tokio::time::Instant;

use super::Settings;
use super::request::HeadError;
use super::transport::Transport;

/// Why no further request head will come from this connection.
#[derive(Debug)]
pub enum ReadEnd {
    /// The client closed cleanly between requests.
    Closed,
    /// Nothing arrived within the idle timeout, or the server is draining.
    Idle,
    /// A head started but did not complete within the header timeout.
    HeaderTimeout,
    /// The head broke a limit before it was complete.
    Refused(HeadError),
    Io(io::Error),
}

/// A connection's read buffer. It grows only as far as the head limit allows, and
/// keeps any bytes after a head (pipelined requests) for the next round.
pub struct HeadReader {
    buf: Vec<u8>,
    filled: usize,
    /// Bytes already searched for the end of the head.
    scanned: usize,
}

impl HeadReader {
    pub fn new(initial: usize) -> HeadReader {
        HeadReader {
            buf: vec![0; initial],
            filled: 0,
            scanned: 0,
        }
    }

    /// The buffered bytes; after `fill_head` returns, they start with a whole head.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[..self.filled]
    }

    /// Drop the first `n` bytes (the head just answered).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.filled);
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
        self.scanned = 0;
    }

    /// Wait until a complete request head is buffered.
    pub async fn fill_head<T: Transport>(
        &mut self,
        stream: &mut T,
        settings: &Settings,
        drain: &mut watch::Receiver<bool>,
    ) -> Result<(), ReadEnd> {
        let limits = settings.limits;
        let mut deadline = None;
        loop {
            // Empty lines before a request line are allowed and ignored (RFC 9112 §2.2).
            let blank = self.buf[..self.filled]
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            if blank > 0 {
                self.consume(blank);
            }
            if self.head_complete() {
                return Ok(());
            }
            let data = &self.buf[..self.filled];
            let line_end = data.iter().position(|&b| b == b'\n');
            if line_end.map_or(self.filled, |e| e) > limits.max_request_line {
                return Err(ReadEnd::Refused(HeadError::UriTooLong));
            }
            if self.filled >= limits.max_header_bytes {
                return Err(ReadEnd::Refused(HeadError::HeadersTooLarge));
            }
            if self.filled == self.buf.len() {
                let grown = (self.buf.len() * 2).min(limits.max_header_bytes + 1);
                self.buf.resize(grown.max(self.filled + 1), 0);
            }
            let n = if self.filled == 0 {
                // Between requests: wait for the first byte, the idle timeout, or a drain.
                if *drain.borrow() {
                    return Err(ReadEnd::Idle);
                }
                let idle_until = Instant::now() + settings.idle_timeout;
                tokio::select! {
                    r = tokio::time::timeout_at(idle_until, stream.read(&mut self.buf[self.filled..])) => match r {
                        Ok(r) => r.map_err(ReadEnd::Io)?,
                        Err(_) => return Err(ReadEnd::Idle),
                    },
                    _ = crate::http::until_set(drain) => return Err(ReadEnd::Idle),
                }
            } else {
                let until =
                    *deadline.get_or_insert_with(|| Instant::now() + settings.header_timeout);
                match tokio::time::timeout_at(until, stream.read(&mut self.buf[self.filled..]))
                    .await
                {
                    Ok(r) => r.map_err(ReadEnd::Io)?,
                    Err(_) => return Err(ReadEnd::HeaderTimeout),
                }
            };
            if n == 0 {
                return Err(if self.filled == 0 {
                    ReadEnd::Closed
                } else {
                    ReadEnd::Io(io::ErrorKind::UnexpectedEof.into())
                });
            }
            self.filled += n;
        }
    }

    /// Whether the buffer holds a blank line ending a head, scanning only new bytes.
    fn head_complete(&mut self) -> bool {
        let data = &self.buf[..self.filled];
        // Restart a little before the last scan so a terminator split across reads is found.
        let from = self.scanned.saturating_sub(3);
        let mut i = from;
        while let Some(p) = data[i..].iter().position(|&b| b == b'\n') {
            let nl = i + p;
            let rest = &data[nl + 1..];
            if rest.first() == Some(&b'\n') || rest.starts_with(b"\r\n") {
                return true;
            }
            i = nl + 1;
        }
        self.scanned = self.filled;
        false
    }
}
