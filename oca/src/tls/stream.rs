//! A TLS connection driven through rustls's unbuffered API: we own every buffer,
//! so a response body is read from the file into a pooled buffer and encrypted
//! straight into a pooled output buffer as full-size records, with no
//! allocation per record or per request.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use tokio::net::TcpStream;

use crate::cold::ColdReads;
use crate::sys;

use crate::http::transport::{Transport, Warmer, read_some, send_all};

/// Plaintext per encryption call: four full 16 KiB records, so one socket write
/// carries 64 KiB.
const BODY_CHUNK: usize = 64 * 1024;

/// Largest TLS record on the wire (TLS 1.2 allows 2048 bytes of expansion).
const MAX_RECORD: usize = 16 * 1024 + 2048 + 5;
/// Pooled buffers kept per thread.
const POOL_MAX: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn take_buffer(len: usize) -> Vec<u8> {
    let mut b = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    if b.len() < len {
        b.resize(len, 0);
    }
    b
}

fn give_buffer(b: Vec<u8>) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(b);
        }
    });
}

/// What the connection needs next.
enum Step {
    /// Records were processed; call again.
    Progress,
    /// Encoded handshake bytes are waiting in `out`; send them.
    Transmit,
    /// The handshake needs more bytes from the peer.
    NeedRead,
    /// Handshake done and nothing pending: application data may flow.
    Ready,
    /// The requested plaintext (or close_notify) was encrypted into `out`.
    Encrypted,
    /// The peer sent close_notify (or the connection is closed).
    PeerClosed,
}

/// What to do when the connection can send application data.
#[derive(Clone, Copy)]
enum Send<'a> {
    Nothing,
    Data(&'a [u8]),
    CloseNotify,
}

/// Run an encryption into `out[at..]`, growing `out` until rustls has room.
fn encrypt_into(
    out: &mut Vec<u8>,
    at: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> io::Result<usize> {
    loop {
        match f(&mut out[at..]) {
            Ok(n) => return Ok(n),
            Err(EncryptError::InsufficientSize(e)) => out.resize(at + e.required_size, 0),
            Err(e) => return Err(io::Error::other(e.to_string())),
        }
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// One TLS connection.
pub struct TlsStream {
    stream: TcpStream,
    conn: UnbufferedServerConnection,
    /// Ciphertext received, `incoming[..in_len]` not yet consumed.
    incoming: Vec<u8>,
    in_len: usize,
    /// Decrypted request bytes not yet handed to the HTTP layer.
    plain: Vec<u8>,
    plain_pos: usize,
    /// Ciphertext to send, `out[..out_len]`. Kept at full length so encrypting
    /// into it never zero-fills.
    out: Vec<u8>,
    out_len: usize,
    /// A response head held back to go out in the same record as the body.
    held: Vec<u8>,
    peer_closed: bool,
    closed: bool,
    cold: ColdReads,
    /// Encrypt bodies straight from a mapping of the object instead of
    /// reading them into a buffer first (`tls_mapped_bodies`).
    mapped_bodies: bool,
}

impl TlsStream {
    /// Accept a TLS session on `stream` and finish its handshake within `timeout`.
    pub async fn accept(
        stream: TcpStream,
        config: Arc<ServerConfig>,
        timeout: Duration,
        cold: ColdReads,
        mapped_bodies: bool,
    ) -> io::Result<TlsStream> {
        let _ = stream.set_nodelay(true);
        let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        let mut s = TlsStream {
            stream,
            conn,
            incoming: vec![0; 4096],
            in_len: 0,
            plain: Vec::new(),
            plain_pos: 0,
            out: vec![0; 4096],
            out_len: 0,
            held: Vec::new(),
            peer_closed: false,
            closed: false,
            cold,
            mapped_bodies,
        };
        match tokio::time::timeout(timeout, s.handshake(timeout)).await {
            Ok(r) => r.map(|()| s),
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    /// The socket and session, if nothing is buffered in either direction (the
    /// precondition for handing the session to the kernel).
    #[cfg(feature = "ktls")]
    pub fn into_parts(self) -> Result<(TcpStream, UnbufferedServerConnection), Box<TlsStream>> {
        if self.in_len == 0
            && self.plain.len() == self.plain_pos
            && self.out_len == 0
            && self.held.is_empty()
        {
            Ok((self.stream, self.conn))
        } else {
            Err(Box::new(self))
        }
    }

    /// The negotiated protocol version, for logs.
    pub fn protocol(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    async fn handshake(&mut self, timeout: Duration) -> io::Result<()> {
        loop {
            match self.step(Send::Nothing)? {
                Step::Progress | Step::Encrypted => {}
                Step::Transmit => self.flush(timeout).await?,
                Step::NeedRead => {
                    self.flush(timeout).await?;
                    if self.fill_incoming().await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Step::Ready => return self.flush(timeout).await,
                Step::PeerClosed => return Err(io::ErrorKind::UnexpectedEof.into()),
            }
        }
    }

    /// Run the rustls state machine once over the buffered input.
    fn step(&mut self, send: Send<'_>) -> io::Result<Step> {
        let UnbufferedStatus { mut discard, state } = self
            .conn
            .process_tls_records(&mut self.incoming[..self.in_len]);
        let step = match state.map_err(tls_error)? {
            ConnectionState::ReadTraffic(mut records) => {
                while let Some(record) = records.next_record() {
                    let record = record.map_err(tls_error)?;
                    discard += record.discard;
                    self.plain.extend_from_slice(record.payload);
                }
                Step::Progress
            }
            ConnectionState::EncodeTlsData(mut encoder) => {
                loop {
                    match encoder.encode(&mut self.out[self.out_len..]) {
                        Ok(n) => self.out_len += n,
                        Err(EncodeError::InsufficientSize(e)) => {
                            let want = self.out_len + e.required_size;
                            self.out.resize(want, 0);
                        }
                        Err(EncodeError::AlreadyEncoded) => break,
                    }
                }
                Step::Progress
            }
            ConnectionState::TransmitTlsData(transmit) => {
                // The bytes stay in `out` and are sent before anything is read or
                // encrypted after them, so acknowledging now keeps the order.
                transmit.done();
                Step::Transmit
            }
            ConnectionState::BlockedHandshake => Step::NeedRead,
            ConnectionState::WriteTraffic(mut writer) => {
                let out = &mut self.out;
                let at = self.out_len;
                let result = match send {
                    Send::Nothing => None,
                    Send::Data(data) => Some(encrypt_into(out, at, |b| writer.encrypt(data, b))),
                    Send::CloseNotify => {
                        Some(encrypt_into(out, at, |b| writer.queue_close_notify(b)))
                    }
                };
                match result {
                    None => Step::Ready,
                    Some(r) => {
                        self.out_len += r?;
                        Step::Encrypted
                    }
                }
            }
            ConnectionState::PeerClosed | ConnectionState::Closed => {
                self.peer_closed = true;
                Step::PeerClosed
            }
            // Early data is never enabled, and any future state we do not know is
            // a reason to stop rather than guess.
            _ => return Err(io::Error::other("unexpected TLS state")),
        };
        if discard > 0 {
            self.incoming.copy_within(discard..self.in_len, 0);
            self.in_len -= discard;
        }
        Ok(step)
    }

    /// Make room in `incoming` for more ciphertext, up to two full records.
    fn room_for_incoming(&mut self) -> io::Result<()> {
        if self.in_len == self.incoming.len() {
            if self.incoming.len() >= 2 * MAX_RECORD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS record too large",
                ));
            }
            let grown = (self.incoming.len() * 2).min(2 * MAX_RECORD);
            self.incoming.resize(grown, 0);
        }
        Ok(())
    }

    /// Read more ciphertext from the socket; 0 means the peer closed TCP.
    async fn fill_incoming(&mut self) -> io::Result<usize> {
        self.room_for_incoming()?;
        let n = read_some(&self.stream, &mut self.incoming[self.in_len..]).await?;
        self.in_len += n;
        Ok(n)
    }

    /// Hand decrypted request bytes to `buf`, if any are waiting.
    fn take_plain(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.plain_pos == self.plain.len() {
            return None;
        }
        let n = buf.len().min(self.plain.len() - self.plain_pos);
        buf[..n].copy_from_slice(&self.plain[self.plain_pos..self.plain_pos + n]);
        self.plain_pos += n;
        if self.plain_pos == self.plain.len() {
            self.plain.clear();
            self.plain_pos = 0;
        }
        Some(n)
    }

    async fn flush(&mut self, timeout: Duration) -> io::Result<()> {
        if self.out_len > 0 {
            let n = std::mem::take(&mut self.out_len);
            send_all(&self.stream, &self.out[..n], false, timeout).await?;
        }
        Ok(())
    }

    /// Encrypt `data` as application data and send it.
    async fn send_data(&mut self, data: &[u8], timeout: Duration) -> io::Result<()> {
        self.send_encrypted(timeout, |s| s.step(Send::Data(data)))
            .await
    }

    /// Encrypt `map[range]` as application data and send it. A page of it
    /// that cannot be read fails this with the file's error: the record made
    /// from it is never sent, and the session cannot go on (its sequence
    /// number has moved), so the connection ends without close_notify.
    async fn send_mapped(
        &mut self,
        map: &memmap2::Mmap,
        file: &File,
        range: std::ops::Range<usize>,
        timeout: Duration,
    ) -> io::Result<()> {
        self.send_encrypted(timeout, |s| {
            let before = s.out_len;
            match sys::read_mapped(map, |m| s.step(Send::Data(&m[range.clone()]))) {
                Ok(step) => step,
                Err(_) => {
                    s.out_len = before;
                    s.closed = true;
                    Err(mapped_read_error(file, range.end as u64))
                }
            }
        })
        .await
    }

    /// Run `encrypt` (one step of the session with application data to
    /// send) until the data is encrypted, sending what the session asks to
    /// send meanwhile, then send the records.
    async fn send_encrypted(
        &mut self,
        timeout: Duration,
        mut encrypt: impl FnMut(&mut TlsStream) -> io::Result<Step> + std::marker::Send,
    ) -> io::Result<()> {
        loop {
            match encrypt(self)? {
                Step::Encrypted => return self.flush(timeout).await,
                Step::Progress | Step::Ready | Step::PeerClosed => {}
                Step::Transmit => self.flush(timeout).await?,
                Step::NeedRead => {
                    return Err(io::Error::other("TLS renegotiation is not supported"));
                }
            }
        }
    }
}

/// What a page of a mapped object that could not be read means: the file
/// shrank under the mapping (the caller quarantines it as shrunk), else the
/// disk failed to read it (EIO, counted against the disk).
fn mapped_read_error(file: &File, needed: u64) -> io::Error {
    match file.metadata() {
        Ok(m) if m.len() < needed => io::ErrorKind::UnexpectedEof.into(),
        _ => io::Error::from_raw_os_error(libc::EIO),
    }
}

impl Transport for TlsStream {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.readable().await?;
            match self.try_read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }

    async fn readable(&mut self) -> io::Result<()> {
        // Decrypt whatever whole records are already buffered (a pipelined request
        // may sit there), and send anything rustls wants sent, before waiting.
        loop {
            if self.plain_pos < self.plain.len() || self.peer_closed {
                return Ok(());
            }
            match self.step(Send::Nothing)? {
                Step::Progress | Step::Encrypted => {}
                Step::Transmit => self.flush(Duration::from_secs(30)).await?,
                Step::NeedRead | Step::Ready => return self.stream.readable().await,
                Step::PeerClosed => return Ok(()),
            }
        }
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(n) = self.take_plain(buf) {
                return Ok(n);
            }
            if self.peer_closed {
                return Ok(0);
            }
            match self.step(Send::Nothing)? {
                Step::Progress | Step::Encrypted => {}
                // Something to send first: `readable` does that, asynchronously.
                Step::Transmit => return Err(io::ErrorKind::WouldBlock.into()),
                Step::NeedRead | Step::Ready => {
                    self.room_for_incoming()?;
                    match self.stream.try_read(&mut self.incoming[self.in_len..])? {
                        0 => return Ok(0),
                        n => self.in_len += n,
                    }
                }
                Step::PeerClosed => return Ok(0),
            }
        }
    }

    async fn write_all(&mut self, buf: &[u8], more: bool, timeout: Duration) -> io::Result<()> {
        if more {
            self.held.extend_from_slice(buf);
            return Ok(());
        }
        if self.held.is_empty() {
            return self.send_data(buf, timeout).await;
        }
        let mut all = std::mem::take(&mut self.held);
        all.extend_from_slice(buf);
        let r = self.send_data(&all, timeout).await;
        all.clear();
        self.held = all;
        r
    }

    async fn send_file(
        &mut self,
        file: &File,
        file_len: u64,
        mut offset: u64,
        mut len: u64,
        timeout: Duration,
    ) -> Result<(), (u64, io::Error)> {
        // Big buffers come from the thread's pool for the length of the body, so
        // an idle keep-alive connection holds only its small ones.
        let mut plain = take_buffer(BODY_CHUNK);
        let small_out = std::mem::replace(&mut self.out, take_buffer(BODY_CHUNK + 4 * 64));
        let held = std::mem::take(&mut self.held);
        let mut lead = held.len().min(BODY_CHUNK / 2);
        plain[..lead].copy_from_slice(&held[..lead]);
        let mut result = Ok(());
        if lead < held.len() {
            // A head larger than half a chunk (never, in practice): send it alone.
            lead = 0;
            if let Err(e) = self.send_data(&held, timeout).await {
                result = Err((len, e));
            }
        }
        let mut warm = Warmer::new(offset);
        let mut since_yield = 0usize;
        // Where the body's bytes come from: the mapping if asked for (and
        // the file maps), else reads into `plain`.
        let mapped = if self.mapped_bodies && sys::mapped_reads_guarded() {
            sys::map_object(file).ok()
        } else {
            None
        };
        while result.is_ok() && len > 0 {
            let warm_until = match warm.ahead(file, file_len, offset, len, &self.cold).await {
                Ok(u) => u,
                Err(e) => {
                    result = Err((len, e));
                    break;
                }
            };
            // Never past the warm window: a read or a page fault there could
            // wait for the disk on this serving thread.
            let n = (len as usize)
                .min(BODY_CHUNK - lead)
                .min((warm_until - offset) as usize);
            // From the mapping (the window is in the page cache, so touching
            // it only maps pages): encrypted in place of a copy, except the
            // first record, which carries the held head too.
            if let Some(map) = mapped.as_ref().filter(|_| lead == 0) {
                let end = (offset as usize + n).min(map.len());
                if end <= offset as usize {
                    result = Err((len, io::ErrorKind::UnexpectedEof.into()));
                    break;
                }
                let got = end - offset as usize;
                if let Err(e) = self
                    .send_mapped(map, file, offset as usize..end, timeout)
                    .await
                {
                    result = Err((len, e));
                    break;
                }
                offset += got as u64;
                len -= got as u64;
                since_yield += got;
                if since_yield >= 512 * 1024 && len > 0 {
                    since_yield = 0;
                    tokio::task::yield_now().await;
                }
                continue;
            }
            let chunk = &mut plain[lead..lead + n];
            match file.read_at(chunk, offset) {
                Ok(0) => result = Err((len, io::ErrorKind::UnexpectedEof.into())),
                Ok(got) => {
                    if let Err(e) = self.send_data(&plain[..lead + got], timeout).await {
                        result = Err((len, e));
                    } else {
                        offset += got as u64;
                        len -= got as u64;
                        lead = 0;
                        since_yield += got;
                        // As on the plaintext path: give other connections a turn
                        // every 512 KiB rather than sending a whole object at once.
                        if since_yield >= 512 * 1024 && len > 0 {
                            since_yield = 0;
                            tokio::task::yield_now().await;
                        }
                    }
                }
                Err(e) => result = Err((len, e)),
            }
        }
        let big_out = std::mem::replace(&mut self.out, small_out);
        self.out_len = 0;
        give_buffer(big_out);
        give_buffer(plain);
        let mut held = held;
        held.clear();
        self.held = held;
        result
    }

    async fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        loop {
            match self.step(Send::CloseNotify) {
                Ok(Step::Encrypted) => break,
                Ok(Step::Transmit | Step::Progress | Step::PeerClosed | Step::Ready) => {}
                _ => return,
            }
        }
        let _ = self.flush(Duration::from_secs(1)).await;
    }
}
