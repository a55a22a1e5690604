//! What a connection's bytes travel over. The HTTP logic (heads, planning,
//! keep-alive) is written once against this trait; plaintext sends bodies with
//! sendfile, TLS encrypts them from pooled buffers.

use std::fs::File;
use std::io;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::cold::ColdReads;
use crate::sys;

/// A byte stream to one client.
pub trait Transport: Send {
    /// Read request bytes into `buf`; 0 means the client closed.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;

    /// Wait until a read would find data (or EOF), without reading it. May
    /// return spuriously; `try_read` then says `WouldBlock`.
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send;

    /// Read without waiting: `WouldBlock` if nothing is there yet.
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// Write all of `buf`. `more` says a body follows at once, so the transport
    /// may hold these bytes back to send them together with it.
    fn write_all(
        &mut self,
        buf: &[u8],
        more: bool,
        timeout: Duration,
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// Send `len` bytes of `file` from `offset`. On failure, says how many bytes
    /// were left unsent.
    fn send_file(
        &mut self,
        file: &File,
        file_len: u64,
        offset: u64,
        len: u64,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), (u64, io::Error)>> + Send;

    /// Close the connection politely (TLS: close_notify). Errors are irrelevant.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// Body bytes checked (and, if cold, loaded) per step, so a long body never pulls
/// a whole rendition file into memory at once.
pub const WARM_WINDOW: u64 = 4 << 20;

/// Make sure `file[offset..offset+len]` is in the page cache before a serving
/// thread reads it. If it is not, the cold-read loader reads it (`cold`) and
/// this connection waits for it while the serving thread keeps serving the
/// others: a cold object must not stall hot ones.
async fn ensure_cached(
    file: &File,
    file_len: u64,
    offset: u64,
    len: u64,
    cold: &ColdReads,
) -> io::Result<()> {
    if sys::is_cached(file, file_len, offset, len) == Some(false) {
        cold.load(file, offset, len).await?;
    }
    Ok(())
}

/// Keeps the body ahead of a sender in the page cache, a [`WARM_WINDOW`] at a
/// time, so every transport warms the same way.
#[derive(Debug)]
pub struct Warmer {
    until: u64,
}

impl Warmer {
    /// For a body starting at `offset`: nothing of it is warm yet.
    pub fn new(offset: u64) -> Warmer {
        Warmer { until: offset }
    }

    /// Before sending from `offset`, with `len` bytes of the body left: once
    /// the sender has reached the end of the warm window, warm the next one.
    /// Returns where the warm window ends.
    pub async fn ahead(
        &mut self,
        file: &File,
        file_len: u64,
        offset: u64,
        len: u64,
        cold: &ColdReads,
    ) -> io::Result<u64> {
        if offset >= self.until {
            let piece = len.min(WARM_WINDOW);
            ensure_cached(file, file_len, offset, piece, cold).await?;
            self.until = offset + piece;
        }
        Ok(self.until)
    }
}

/// Plain TCP: heads with send(2), bodies with sendfile(2), no user-space copy.
pub struct Plain {
    pub stream: TcpStream,
    cold: ColdReads,
}

impl Plain {
    pub fn new(stream: TcpStream, cold: ColdReads) -> Plain {
        let _ = stream.set_nodelay(true);
        Plain { stream, cold }
    }
}

impl Transport for Plain {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_some(&self.stream, buf).await
    }

    async fn readable(&mut self) -> io::Result<()> {
        self.stream.readable().await
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.try_read(buf)
    }

    async fn write_all(&mut self, buf: &[u8], more: bool, timeout: Duration) -> io::Result<()> {
        send_all(&self.stream, buf, more, timeout).await
    }

    async fn send_file(
        &mut self,
        file: &File,
        file_len: u64,
        mut offset: u64,
        mut len: u64,
        timeout: Duration,
    ) -> Result<(), (u64, io::Error)> {
        // At most this much per call, then other connections get a turn: a
        // connection whose socket buffer has grown large must not take the whole
        // worker for a whole object while the others wait.
        const FAIR_CHUNK: u64 = 512 * 1024;
        let stream = &self.stream;
        let mut warm = Warmer::new(offset);
        while len > 0 {
            let warm_until = warm
                .ahead(file, file_len, offset, len, &self.cold)
                .await
                .map_err(|e| (len, e))?;
            let chunk = len.min(FAIR_CHUNK).min(warm_until - offset) as usize;
            let op = stream.async_io(Interest::WRITABLE, || {
                sys::sendfile(stream, file, &mut offset, chunk)
            });
            let n = match tokio::time::timeout(timeout, op).await {
                Ok(Ok(0)) => return Err((len, io::ErrorKind::UnexpectedEof.into())),
                Ok(Ok(n)) => n as u64,
                Ok(Err(e)) => return Err((len, e)),
                Err(_) => return Err((len, io::ErrorKind::TimedOut.into())),
            };
            len -= n;
            if n as usize == chunk && len > 0 {
                tokio::task::yield_now().await;
            }
        }
        Ok(())
    }

    async fn close(&mut self) {}
}

/// Read whatever is available (waiting for at least one byte).
pub async fn read_some(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.try_read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.readable().await?,
            Err(e) => return Err(e),
        }
    }
}

/// Write all of `buf`; `more` holds it in the kernel until the body follows
/// (MSG_MORE), so head and first body bytes share a packet.
pub async fn send_all(
    stream: &TcpStream,
    mut buf: &[u8],
    more: bool,
    timeout: Duration,
) -> io::Result<()> {
    while !buf.is_empty() {
        let op = stream.async_io(Interest::WRITABLE, || {
            if more {
                sys::send_more(stream, buf)
            } else {
                sys::send(stream, buf)
            }
        });
        let n = tokio::time::timeout(timeout, op)
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        buf = &buf[n..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window moves only when the sender reaches its end, and never past the body.
    #[tokio::test]
    async fn the_warm_window_moves_when_the_sender_reaches_its_end() {
        let len = WARM_WINDOW + 1000;
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &vec![7u8; len as usize]).unwrap();
        let cold = ColdReads::start(Default::default(), false, 1, 0);
        let mut warm = Warmer::new(0);
        assert_eq!(
            warm.ahead(&f, len, 0, len, &cold).await.unwrap(),
            WARM_WINDOW
        );
        let mid = WARM_WINDOW / 2;
        assert_eq!(
            warm.ahead(&f, len, mid, len - mid, &cold).await.unwrap(),
            WARM_WINDOW,
            "still inside the warm window"
        );
        assert_eq!(
            warm.ahead(&f, len, WARM_WINDOW, 1000, &cold).await.unwrap(),
            len,
            "the next window is what is left of the body"
        );
    }
}
