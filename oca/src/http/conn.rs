//! One client connection: read a head, plan, write the head, send the body,
//! repeat while keep-alive holds. Written once for every transport.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::reader::{HeadReader, ReadEnd};
use super::request::{self, Method, RequestHead};
use super::response::{self, Framing};
use super::transport::Transport;
use super::{ConnGuard, Shared};
use crate::access::AccessMode;
use crate::filecache;
use crate::path::{self, PathError};
use crate::plan::{self, Validators};
use crate::store::LookupError;

/// Whether the connection may carry another request after this response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

/// Serve one accepted connection until it closes, times out, or the server drains.
pub async fn serve<T: Transport>(
    mut stream: T,
    peer: SocketAddr,
    guard: ConnGuard,
    mut drain: watch::Receiver<bool>,
) {
    let shared = Arc::clone(guard.shared());
    let send_timeout = shared.settings.send_timeout;
    let mut reader = HeadReader::new();
    // Response buffers are borrowed from the worker's pool per request and given
    // back before the connection goes idle.
    let mut pooled: Option<Scratch> = None;
    loop {
        if let Some(s) = pooled.take() {
            s.give_back();
        }
        let refused = match reader
            .fill_head(&mut stream, &shared.settings, &mut drain)
            .await
        {
            Ok(()) => None,
            Err(ReadEnd::Closed | ReadEnd::Idle | ReadEnd::Io(_)) => break,
            Err(ReadEnd::HeaderTimeout) => Some((408, "request head not received in time")),
            Err(ReadEnd::Refused(e)) => Some(response::status_for(e)),
        };
        let started = Instant::now();
        let now = SystemTime::now();
        let Scratch { out, key, scratch } = pooled.insert(Scratch::take());
        let outcome = match refused {
            Some(refusal) => Err(refusal),
            None => match request::parse(reader.buffered(), shared.settings.limits) {
                Ok(Some(head)) => {
                    let len = head.len;
                    let draining = *drain.borrow();
                    let bufs = Buffers { out, key, scratch };
                    // Boxed: the response's state (body sender, timers) lives on the
                    // heap only while a response is in flight, so an idle keep-alive
                    // connection's task stays small.
                    let next = Box::pin(respond(
                        &mut stream,
                        peer,
                        &head,
                        &shared,
                        bufs,
                        draining,
                        started,
                        now,
                    ))
                    .await;
                    reader.consume(len);
                    Ok(next)
                }
                // fill_head saw a blank line, so httparse has the whole head;
                // anything else is malformed.
                Ok(None) => Err((400, "malformed request head")),
                Err(e) => Err(response::status_for(e)),
            },
        };
        match outcome {
            Ok(Next::KeepAlive) => {
                // A pipelining client has its next request buffered already:
                // let the worker's other connections go first, a response
                // each, so a deep pipeline cannot hold a player's request
                // back for a whole scheduler budget (128 operations).
                if !reader.buffered().is_empty() {
                    tokio::task::yield_now().await;
                }
                continue;
            }
            Ok(Next::Close) => {
                stream.close().await;
                break;
            }
            // A head we cannot answer normally: say why once, then close.
            Err((status, why)) => {
                out.clear();
                let framing = Framing {
                    keep_alive: false,
                    minor: 1,
                    now,
                };
                response::simple(out, status, why, framing, false);
                let _ = stream.write_all(out, false, send_timeout).await;
                finish(&shared, status, out.len() as u64, started);
                break;
            }
        }
    }
    if let Some(s) = pooled.take() {
        s.give_back();
    }
    drop(guard);
}

/// Buffers one request needs, pooled per worker thread.
struct Scratch {
    out: Vec<u8>,
    key: String,
    scratch: String,
}

const SCRATCH_POOL_MAX: usize = 4096;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<Scratch>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Scratch {
    fn take() -> Scratch {
        let mut s = SCRATCH
            .with(|p| p.borrow_mut().pop())
            .unwrap_or_else(|| Scratch {
                out: Vec::with_capacity(1024),
                key: String::with_capacity(128),
                scratch: String::with_capacity(128),
            });
        s.out.clear();
        s.key.clear();
        s.scratch.clear();
        s
    }

    fn give_back(self) {
        // Keep the pool made of ordinary-sized buffers only.
        if self.out.capacity() > 16 * 1024 {
            return;
        }
        SCRATCH.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < SCRATCH_POOL_MAX {
                p.push(self);
            }
        });
    }
}

/// Per-connection buffers reused across requests.
struct Buffers<'a> {
    /// The response head (and short bodies).
    out: &'a mut Vec<u8>,
    /// The decoded object key.
    key: &'a mut String,
    /// `/` + key, the path a token is checked against.
    scratch: &'a mut String,
}

#[allow(clippy::too_many_arguments)]
async fn respond<T: Transport>(
    stream: &mut T,
    peer: SocketAddr,
    head: &RequestHead<'_>,
    shared: &Shared,
    bufs: Buffers<'_>,
    draining: bool,
    started: Instant,
    now: SystemTime,
) -> Next {
    let framing = Framing {
        keep_alive: head.keep_alive && !draining,
        minor: head.minor,
        now,
    };
    let Buffers { out, key, scratch } = bufs;
    let head_only = head.method == Method::Head;
    let method = match head.method {
        Method::Get => plan::Method::Get,
        Method::Head => plan::Method::Head,
        Method::Options => {
            response::preflight(out, framing);
            return send_short(stream, out, 204, framing, shared, started).await;
        }
        Method::Post | Method::Other => {
            response::simple(out, 405, "method not allowed", framing, false);
            return send_short(stream, out, 405, framing, shared, started).await;
        }
    };
    let reject = |out: &mut Vec<u8>, status, why| {
        response::simple(out, status, why, framing, head_only);
        status
    };
    let (path_token, target) = path::split_token(head.target);
    let obj = match path::object_key(target, key) {
        Err(PathError::BadRequest(why)) => {
            let status = reject(out, 400, why);
            return send_short(stream, out, status, framing, shared, started).await;
        }
        Err(PathError::NotFound) => {
            let status = reject(out, 404, "no such object");
            return send_short(stream, out, status, framing, shared, started).await;
        }
        Ok(query) => {
            // Checked before the lookup, so a refused client learns nothing about
            // which objects exist. Open access skips building the path at all.
            if shared.access.mode() == AccessMode::Token {
                let token =
                    path_token.or_else(|| query.and_then(|q| path::query_param(q, b"token")));
                scratch.clear();
                scratch.push('/');
                scratch.push_str(key);
                let unix_now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                if let Err(reason) = shared.access.check(token, scratch, peer.ip(), unix_now) {
                    shared.metrics.token_rejected(reason);
                    tracing::debug!(reason = reason.code(), path = %scratch, "token refused");
                    let status = reject(out, 403, reason.code());
                    return send_short(stream, out, status, framing, shared, started).await;
                }
            }
            let s = &shared.settings;
            match filecache::open(
                &shared.store,
                key,
                s.open_file_cache,
                s.open_file_cache_valid,
                started,
            ) {
                Ok(obj) => obj,
                Err(LookupError::NotFound) => {
                    let status = reject(out, 404, "no such object");
                    return send_short(stream, out, status, framing, shared, started).await;
                }
                Err(e) => {
                    tracing::warn!(key = %key, error = %e, "cannot open object");
                    let status = reject(out, 500, "object unreadable");
                    return send_short(stream, out, status, framing, shared, started).await;
                }
            }
        }
    };
    let validators = Validators {
        len: obj.size,
        etag: &obj.etag,
        last_modified: obj.modified,
    };
    let p = plan::plan(method, &head.conditions, &validators);
    let (status, body) = response::object_head(
        out,
        &obj,
        &p,
        !head_only,
        &shared.settings.cache_control,
        framing,
    );
    let Some(body) = body else {
        return send_short(stream, out, status, framing, shared, started).await;
    };
    let mut sent = out.len() as u64;
    if stream
        .write_all(out, true, shared.settings.send_timeout)
        .await
        .is_err()
    {
        finish(shared, status, sent, started);
        return Next::Close;
    }
    let result = stream
        .send_file(
            &obj.file,
            obj.size,
            body.offset,
            body.len,
            shared.settings.send_timeout,
        )
        .await;
    sent += body.len - result.as_ref().err().map_or(0, |(left, _)| *left);
    finish(shared, status, sent, started);
    match result {
        Ok(()) if framing.keep_alive => Next::KeepAlive,
        Ok(()) => Next::Close,
        Err((_, e)) => {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                // The file is shorter than when it was opened: damaged underneath
                // us. The client gets a cut response (and retries elsewhere).
                tracing::error!(key = %key, "object shrank while being served; connection closed");
                filecache::forget(key);
                shared
                    .store
                    .quarantine(obj.disk, key, "shrank while being served");
            } else if rustix::io::Errno::from_io_error(&e) == Some(rustix::io::Errno::IO) {
                shared.store.record_io_error(obj.disk);
                tracing::error!(key = %key, disk = obj.disk, "disk read error while serving");
            }
            Next::Close
        }
    }
}

/// Send a response that is all head (or head plus a short text body in `out`).
async fn send_short<T: Transport>(
    stream: &mut T,
    out: &[u8],
    status: u16,
    framing: Framing,
    shared: &Shared,
    started: Instant,
) -> Next {
    let ok = stream
        .write_all(out, false, shared.settings.send_timeout)
        .await
        .is_ok();
    finish(shared, status, out.len() as u64, started);
    if ok && framing.keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

fn finish(shared: &Shared, status: u16, bytes: u64, started: Instant) {
    let m = &shared.metrics;
    m.response(status);
    m.bytes_sent.inc_by(bytes);
    let elapsed = started.elapsed();
    m.request_duration.observe(elapsed);
    tracing::debug!(
        status,
        bytes,
        micros = elapsed.as_micros() as u64,
        "response"
    );
}

#[cfg(test)]
mod size_probe {
    /// Every idle keep-alive connection is one of these futures: keep it small
    /// (the response's state is boxed separately; see docs/BENCHMARKS.md, idle).
    #[test]
    fn idle_connection_task_stays_small() {
        use super::*;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
                .await
                .unwrap();
            let shared = Arc::new(Shared {
                store: crate::store::Store::open(&[]).0,
                tls: None,
                kernel_tls: false,
                access: crate::access::Access::new(crate::access::AccessMode::Open, None, 0)
                    .unwrap(),
                metrics: crate::metrics::Metrics::new(),
                settings: super::super::Settings::from_config(&crate::Config::default()),
                draining: Default::default(),
                all_closed: Default::default(),
                bgp: None,
                cold: crate::cold::ColdReads::start(Default::default(), false, 1, 0),
                admin_callers: None,
            });
            let guard = ConnGuard::admit(&shared).unwrap();
            let (_tx, rx) = watch::channel(false);
            let t = crate::http::transport::Plain::new(c, shared.cold.clone());
            let f = serve(t, "127.0.0.1:1".parse().unwrap(), guard, rx);
            let size = std::mem::size_of_val(&f);
            assert!(size <= 1536, "connection future grew to {size} bytes");
        });
    }
}
