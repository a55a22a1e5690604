//! The admin listener: `/health` for steering and operators, `/metrics` for Prometheus.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::http::Shared;
use crate::http::reader::{HeadReader, ReadEnd};
use crate::http::request::{self, Method};
use crate::http::response;
use crate::http::transport::{Plain, Transport};
use crate::store::DiskState;

/// Egress rate over a sliding window of samples of the bytes-sent counter.
#[derive(Debug)]
pub struct RateWindow {
    samples: VecDeque<(Instant, u64)>,
    span: Duration,
}

impl RateWindow {
    pub fn new(span: Duration) -> RateWindow {
        RateWindow {
            samples: VecDeque::new(),
            span,
        }
    }

    /// Record the counter's value at `now`, dropping samples older than the span
    /// (but always keeping one to measure from).
    pub fn record(&mut self, now: Instant, total: u64) {
        self.samples.push_back((now, total));
        while self.samples.len() > 2
            && now.saturating_duration_since(self.samples[1].0) >= self.span
        {
            self.samples.pop_front();
        }
    }

    /// Bits per second between the oldest and newest sample.
    pub fn bits_per_sec(&self) -> u64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, b0)), Some(&(t1, b1))) if t1 > t0 => {
                let secs = t1.duration_since(t0).as_secs_f64();
                (b1.saturating_sub(b0) as f64 * 8.0 / secs) as u64
            }
            _ => 0,
        }
    }
}

/// Everything the admin endpoints read.
pub struct Admin {
    pub shared: Arc<Shared>,
    pub started: Instant,
    pub capacity_bps: u64,
    pub workers: usize,
    pub rate: Mutex<RateWindow>,
    /// The fill agent's status file, if one runs beside this daemon.
    pub fill_status: Option<std::path::PathBuf>,
    /// `/health` answers `{"status": …}` without a credential.
    pub open_health: bool,
    /// Accept admin connections over TLS (`admin.tls`).
    pub tls: bool,
}

/// The `Authorization` header's value in a request head, if any.
fn authorization(head: &[u8]) -> Option<&[u8]> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(head).ok()?;
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
        .map(|h| h.value)
}

#[derive(Serialize)]
struct DiskHealth<'a> {
    root: String,
    state: &'a str,
    objects: u64,
    bytes: u64,
    io_errors: u64,
    /// Damaged objects moved to `<root>/quarantine/` since start.
    quarantined: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'a str,
    version: &'a str,
    uptime_secs: u64,
    workers: usize,
    connections_active: i64,
    egress_bps: u64,
    capacity_bps: u64,
    utilisation: f64,
    objects: u64,
    bytes: u64,
    disks: Vec<DiskHealth<'a>>,
    access: &'a str,
    token_keys: Vec<String>,
    tls: TlsHealth,
    #[serde(skip_serializing_if = "Option::is_none")]
    fill: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bgp: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct TlsHealth {
    enabled: bool,
    /// `kernel` when sessions are handed to kernel TLS, `userspace` otherwise.
    path: &'static str,
    /// Whether this build includes the kernel-TLS path at all.
    kernel_tls_built: bool,
    connections_userspace: u64,
    connections_kernel: u64,
}

/// The fill agent's status file as JSON, with how old it is (a stale status
/// means the agent is not running).
fn fill_status(path: &std::path::Path) -> serde_json::Value {
    let read = std::fs::read(path).ok().and_then(|b| {
        let age = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map_or(0, |d| d.as_secs());
        let mut v: serde_json::Value = serde_json::from_slice(&b).ok()?;
        v.as_object_mut()?
            .insert("age_secs".into(), serde_json::Value::from(age));
        Some(v)
    });
    read.unwrap_or_else(|| serde_json::json!({"state": "unknown"}))
}

impl Admin {
    /// `POST /store/refresh/<key>`: a local agent committed or removed `key`;
    /// look again so it is served (or not) and reported at once.
    fn refresh(&self, raw: &[u8]) -> (u16, String) {
        let mut key = String::new();
        match crate::path::object_key(raw, &mut key) {
            Ok(_) if !key.is_empty() => {}
            _ => return (400, r#"{"error":"bad key"}"#.to_owned()),
        }
        match self.shared.store.refresh(&key) {
            Ok(size) => (
                200,
                serde_json::json!({"key": key, "present": size.is_some(), "size": size})
                    .to_string(),
            ),
            Err(e) => (503, serde_json::json!({"error": e.to_string()}).to_string()),
        }
    }

    /// `ok`, `degraded` when any disk is missing or erroring, or `draining`
    /// once shutdown started (steering stops sending viewers).
    pub fn status(&self) -> &'static str {
        let shared = &self.shared;
        if shared.draining.load(Ordering::Acquire) {
            "draining"
        } else if shared
            .store
            .disks
            .iter()
            .any(|d| d.state() != DiskState::Ok)
        {
            "degraded"
        } else {
            "ok"
        }
    }

    /// Egress over the last few seconds, in bits per second.
    pub fn egress_bps(&self) -> u64 {
        self.rate.lock().map_or(0, |r| r.bits_per_sec())
    }

    /// The /health document (status as in `status`).
    pub fn health_json(&self) -> String {
        let shared = &self.shared;
        let disks: Vec<DiskHealth<'_>> = shared
            .store
            .disks
            .iter()
            .map(|d| DiskHealth {
                root: d.root.display().to_string(),
                state: d.state().as_str(),
                objects: d.objects.load(Ordering::Relaxed),
                bytes: d.bytes.load(Ordering::Relaxed),
                io_errors: d.io_errors.load(Ordering::Relaxed),
                quarantined: d.quarantined.load(Ordering::Relaxed),
                problem: d.problem(),
            })
            .collect();
        let status = self.status();
        let egress = self.egress_bps();
        let (objects, bytes) = shared.store.totals();
        let h = Health {
            status,
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: self.started.elapsed().as_secs(),
            workers: self.workers,
            connections_active: shared.metrics.connections_active.get(),
            egress_bps: egress,
            capacity_bps: self.capacity_bps,
            utilisation: egress as f64 / self.capacity_bps as f64,
            objects,
            bytes,
            disks,
            access: match shared.access.mode() {
                crate::access::AccessMode::Token => "token",
                crate::access::AccessMode::Open => "open",
            },
            token_keys: shared.access.key_ids(),
            tls: TlsHealth {
                enabled: shared.tls.is_some(),
                path: if shared.kernel_tls {
                    "kernel"
                } else {
                    "userspace"
                },
                kernel_tls_built: cfg!(feature = "ktls"),
                connections_userspace: shared.metrics.tls_connections_userspace.get(),
                connections_kernel: shared.metrics.tls_connections_kernel.get(),
            },
            fill: self.fill_status.as_deref().map(fill_status),
            bgp: shared.bgp.as_ref().map(|b| b.health()),
        };
        serde_json::to_string_pretty(&h).unwrap_or_default() + "\n"
    }

    /// Sample the bytes-sent counter once a second for the egress rate.
    pub async fn sample_egress(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = crate::http::until_set(&mut stop) => return,
            }
            let total = self.shared.metrics.bytes_sent.get();
            if let Ok(mut r) = self.rate.lock() {
                r.record(Instant::now(), total);
            }
        }
    }

    /// Accept admin connections until `stop`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        let conn_stop = stop.clone();
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((stream, _)) => {
                        tokio::spawn(Arc::clone(&self).accepted(stream, conn_stop.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = crate::http::until_set(&mut stop) => return,
            }
        }
    }

    /// One admin connection: over TLS when `admin.tls` says so (a failed
    /// handshake just closes it), else plaintext.
    async fn accepted(self: Arc<Self>, stream: TcpStream, stop: watch::Receiver<bool>) {
        let cold = self.shared.cold.clone();
        match (&self.shared.tls, self.tls) {
            (Some(tls), true) => {
                let timeout = self.shared.settings.header_timeout;
                match crate::tls::stream::TlsStream::accept(
                    stream,
                    tls.config(),
                    timeout,
                    cold,
                    false,
                )
                .await
                {
                    Ok(t) => self.connection(t, stop).await,
                    Err(e) => tracing::debug!(error = %e, "admin TLS handshake failed"),
                }
            }
            _ => self.connection(Plain::new(stream, cold), stop).await,
        }
    }

    async fn connection<T: Transport>(
        self: Arc<Self>,
        mut transport: T,
        mut stop: watch::Receiver<bool>,
    ) {
        let settings = &self.shared.settings;
        let mut reader = HeadReader::new();
        let mut out = Vec::new();
        loop {
            match reader.fill_head(&mut transport, settings, &mut stop).await {
                Ok(()) => {}
                Err(ReadEnd::Refused(e)) => {
                    let (status, why) = response::status_for(e);
                    out.clear();
                    response::admin(
                        &mut out,
                        status,
                        "text/plain",
                        why.as_bytes(),
                        false,
                        false,
                        SystemTime::now(),
                    );
                    let _ = transport
                        .write_all(&out, false, settings.send_timeout)
                        .await;
                    return;
                }
                Err(_) => return,
            }
            let (len, keep_alive) = {
                let head = match request::parse(reader.buffered(), settings.limits) {
                    Ok(Some(h)) => h,
                    Ok(None) | Err(_) => {
                        out.clear();
                        response::admin(
                            &mut out,
                            400,
                            "text/plain",
                            b"bad request\n",
                            false,
                            false,
                            SystemTime::now(),
                        );
                        let _ = transport
                            .write_all(&out, false, settings.send_timeout)
                            .await;
                        return;
                    }
                };
                out.clear();
                self.route(&head, &reader.buffered()[..head.len], &mut out);
                (head.len, head.keep_alive)
            };
            reader.consume(len);
            if transport
                .write_all(&out, false, settings.send_timeout)
                .await
                .is_err()
                || !keep_alive
            {
                transport.close().await;
                return;
            }
        }
    }

    /// Answer the request whose head is `head`, parsed from `raw`.
    fn route(&self, head: &request::RequestHead<'_>, raw: &[u8], out: &mut Vec<u8>) {
        let path = head.target.split(|&b| b == b'?').next().unwrap_or_default();
        let (status, content_type, body) = match self.admit(head.method, path, raw) {
            Ok(()) => self.answer(head.method, path),
            Err(refusal) => refusal,
        };
        response::admin(
            out,
            status,
            content_type,
            body.as_bytes(),
            head.keep_alive,
            head.method == Method::Head,
            SystemTime::now(),
        );
    }

    /// Whether this request's caller may have the answer; `Err` is the
    /// answer instead (401 without a known credential, 403 with one that
    /// lacks the scope). Without a callers file everyone may.
    fn admit(
        &self,
        method: Method,
        path: &[u8],
        raw_head: &[u8],
    ) -> Result<(), (u16, &'static str, Cow<'static, str>)> {
        use crate::admin_auth::{Scope, Verdict};
        let Some(file) = &self.shared.admin_callers else {
            return Ok(());
        };
        let scope = match (method, path) {
            (Method::Post, p) if p.starts_with(b"/store/refresh") => Scope::Refresh,
            (_, b"/health") => Scope::Health,
            (_, b"/metrics") => Scope::Metrics,
            (_, b"/store/renditions") => Scope::Renditions,
            // Unknown paths and methods get their 404 or 405 either way.
            _ => return Ok(()),
        };
        let callers = file.current();
        let verdict = callers.check(authorization(raw_head), scope);
        let metrics = &self.shared.metrics;
        match &verdict {
            Verdict::Allowed(c) => metrics.admin_request(&c.name, "allowed"),
            Verdict::Forbidden(c) => metrics.admin_request(&c.name, "forbidden"),
            Verdict::Unauthenticated(_) => metrics.admin_request("", "unauthenticated"),
        }
        let refused = match verdict {
            Verdict::Allowed(_) => return Ok(()),
            // A load balancer's check: the status and nothing else.
            Verdict::Unauthenticated(_) if scope == Scope::Health && self.open_health => {
                let body = serde_json::json!({ "status": self.status() }).to_string() + "\n";
                return Err((200, "application/json", body.into()));
            }
            Verdict::Unauthenticated(why) => (401, format!("{why}\n")),
            Verdict::Forbidden(c) => {
                tracing::warn!(caller = %c.name, scope = scope.name(), "admin request refused: not in the caller's scopes");
                (
                    403,
                    format!("caller {} may not use {}\n", c.name, scope.name()),
                )
            }
        };
        Err((refused.0, "text/plain", refused.1.into()))
    }

    /// Status, content type and body of the answer to `method` on `path`.
    fn answer(&self, method: Method, path: &[u8]) -> (u16, &'static str, Cow<'static, str>) {
        const JSON: &str = "application/json";
        if method == Method::Post
            && let Some(raw) = path.strip_prefix(b"/store/refresh")
        {
            let (status, body) = self.refresh(raw);
            return (status, JSON, body.into());
        }
        if !matches!(method, Method::Get | Method::Head) {
            return (405, "text/plain", "method not allowed\n".into());
        }
        match path {
            b"/health" => (200, JSON, self.health_json().into()),
            b"/store/renditions" => {
                let body =
                    serde_json::to_string(&self.shared.store.rendition_stats()).unwrap_or_default();
                (200, JSON, body.into())
            }
            b"/metrics" => {
                let draining = self.shared.draining.load(Ordering::Acquire);
                let body = self.shared.metrics.render(
                    &self.shared.store,
                    draining,
                    self.shared.bgp.as_deref(),
                );
                (200, service::metrics::CONTENT_TYPE, body.into())
            }
            _ => (
                404,
                "text/plain",
                "try /health, /metrics or /store/renditions\n".into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window_measures_over_its_span() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(Duration::from_secs(5));
        assert_eq!(w.bits_per_sec(), 0);
        w.record(t0, 0);
        assert_eq!(w.bits_per_sec(), 0);
        for s in 1..=10u64 {
            w.record(t0 + Duration::from_secs(s), s * 1_000_000);
        }
        // 1 MB/s = 8 Mbit/s, whatever the window holds.
        assert_eq!(w.bits_per_sec(), 8_000_000);
        assert!(w.samples.len() <= 7);
        // Traffic stops: the rate decays to zero once the window has passed.
        for s in 11..=20u64 {
            w.record(t0 + Duration::from_secs(s), 10_000_000);
        }
        assert_eq!(w.bits_per_sec(), 0);
    }
}
