//! Buffering of request heads off a socket, with the idle and header timeouts.

use std::io;

use tokio::sync::watch;
use tokio::time::Instant;

use super::Settings;
use super::request::HeadError;
use super::transport::Transport;

/// Size of a pooled read buffer: enough for a player's request head.
const READ_BUF: usize = 2048;
/// Buffers kept per worker thread.
const POOL_MAX: usize = 4096;

thread_local! {
    static POOL: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

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

impl Default for HeadReader {
    fn default() -> Self {
        HeadReader::new()
    }
}

impl Drop for HeadReader {
    fn drop(&mut self) {
        // A closing connection's buffer goes back to the pool, not to the allocator.
        self.filled = 0;
        self.release();
    }
}

impl HeadReader {
    /// A reader with no buffer yet: one is taken from the worker's pool when the
    /// first bytes arrive, and given back whenever the connection goes idle, so
    /// 10,000 idle keep-alive connections hold no read buffers at all.
    pub fn new() -> HeadReader {
        HeadReader {
            buf: Vec::new(),
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
        if n == 0 {
            return;
        }
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
            // Strictly more than the limit (the buffer has room for one byte
            // over it): at exactly the limit, an unterminated request line of
            // max_request_line == max_header_bytes bytes could still be too
            // long (414) or fine (431 then), and a client whose bytes came in
            // one read would be told 414; wait for the byte that decides
            // (found by fuzzing).
            if self.filled > limits.max_header_bytes {
                return Err(ReadEnd::Refused(HeadError::HeadersTooLarge));
            }
            let n = if self.filled == 0 {
                // Between requests: wait for the first byte, the idle timeout, or a
                // drain, holding no buffer meanwhile.
                if *drain.borrow() {
                    return Err(ReadEnd::Idle);
                }
                self.release();
                let idle_until = Instant::now() + settings.idle_timeout;
                loop {
                    tokio::select! {
                        r = tokio::time::timeout_at(idle_until, stream.readable()) => match r {
                            Ok(r) => r.map_err(ReadEnd::Io)?,
                            Err(_) => return Err(ReadEnd::Idle),
                        },
                        _ = crate::http::until_set(drain) => return Err(ReadEnd::Idle),
                    }
                    // Only now take a buffer; readiness can be spurious, and then
                    // the buffer goes straight back.
                    self.ensure_room(limits.max_header_bytes);
                    match stream.try_read(&mut self.buf[self.filled..]) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.release(),
                        Err(e) => return Err(ReadEnd::Io(e)),
                    }
                }
            } else {
                self.ensure_room(limits.max_header_bytes);
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

    /// Make sure there is space to read into: a pooled buffer if there is none,
    /// doubled (up to the head limit) if it is full.
    fn ensure_room(&mut self, max_header_bytes: usize) {
        if self.buf.is_empty() {
            self.buf = POOL
                .with(|p| p.borrow_mut().pop())
                .unwrap_or_else(|| vec![0; READ_BUF]);
        }
        if self.filled == self.buf.len() {
            let grown = (self.buf.len() * 2).min(max_header_bytes + 1);
            self.buf.resize(grown.max(self.filled + 1), 0);
        }
    }

    /// Give the buffer back to the pool if it holds nothing.
    pub fn release(&mut self) {
        if self.filled == 0 && !self.buf.is_empty() {
            let mut buf = std::mem::take(&mut self.buf);
            if buf.len() != READ_BUF {
                // Grown for an unusually large head: keep the pool uniform.
                buf.truncate(READ_BUF);
                buf.shrink_to_fit();
            }
            POOL.with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < POOL_MAX {
                    p.push(buf);
                }
            });
            self.scanned = 0;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::http::request::Limits;
    use crate::http::testing::Scripted;

    /// Found by fuzzing (fuzz/regressions/http_request): with
    /// max_request_line == max_header_bytes, an overlong request line got 414
    /// when it came in one read and 431 when it trickled in.
    #[tokio::test]
    async fn the_refusal_does_not_depend_on_read_sizes() {
        let limits = Limits {
            max_request_line: 256,
            max_header_bytes: 256,
        };
        let settings = Settings {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(10),
            limits,
            cache_control: "no-store".into(),
            open_file_cache: 0,
            open_file_cache_valid: Duration::from_secs(1),
            max_connections: 1,
            tls_mapped_bodies: false,
        };
        let (_tx, mut drain) = watch::channel(false);
        let long_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(300));
        for step in [1, 7, 255, 256, 257, 4096] {
            let sizes = [step];
            let mut stream = Scripted::new(long_line.as_bytes(), &sizes);
            let mut reader = HeadReader::new();
            // As the connection loop does: a complete head is parsed next.
            let refused = match reader.fill_head(&mut stream, &settings, &mut drain).await {
                Ok(()) => crate::http::request::parse(reader.buffered(), limits).err(),
                Err(ReadEnd::Refused(e)) => Some(e),
                Err(other) => panic!("reads of {step}: {other:?}"),
            };
            assert_eq!(refused, Some(HeadError::UriTooLong), "reads of {step}");
        }
    }
}
