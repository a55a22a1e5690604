//! Prometheus metrics. Hot-path updates are single relaxed atomic adds: the
//! serving threads never take a lock to count.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::store::Store;

/// Request-duration bucket bounds in seconds: 100 µs to 10 s.
const DURATION_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A histogram whose `observe` is lock-free (prometheus-client's own takes a
/// mutex per observation, which two cores serving 100k req/s would contend on).
#[derive(Debug, Clone, Default)]
pub struct AtomicHistogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for HistogramCells {
    fn default() -> Self {
        HistogramCells {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl AtomicHistogram {
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let i = DURATION_BUCKETS.partition_point(|&b| b < secs);
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.0
            .sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = [(0.0, 0u64); DURATION_BUCKETS.len() + 1];
        let mut count = 0;
        for (i, slot) in buckets.iter_mut().enumerate() {
            let n = self.0.buckets[i].load(Ordering::Relaxed);
            count += n;
            *slot = (DURATION_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), n);
        }
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiskLabel {
    disk: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabel {
    path: &'static str,
}

/// `oca_tls_connections_total{path}` from two plain counters the accept path bumps.
#[derive(Debug)]
struct TlsPaths {
    userspace: Counter,
    kernel: Counter,
}

impl TypedMetric for TlsPaths {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for TlsPaths {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (path, c) in [("userspace", &self.userspace), ("kernel", &self.kernel)] {
            let label = PathLabel { path };
            let e = encoder.encode_family(&label)?;
            EncodeMetric::encode(c, e)?;
        }
        Ok(())
    }
    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilyLabel {
    family: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

/// BGP metrics, registered only when `[bgp]` is configured. Gauges and
/// counters are refreshed from the learned table at render time.
#[derive(Default)]
struct BgpMetrics {
    sessions_established: Gauge,
    prefixes: Family<FamilyLabel, Gauge>,
    updates: Counter,
    connections_refused: Counter,
    ttl_refused: Counter,
    kernel_drops: Family<ReasonLabel, Counter>,
    notifications_sent: Family<CodeLabel, Counter>,
    notifications_received: Family<CodeLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdminLabel {
    caller: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: &'static str,
}

/// Every metric oca exports, with handles the hot path updates directly.
pub struct Metrics {
    registry: Registry,
    /// Responses by status class 1xx..5xx (index = class - 1).
    pub responses: [Counter; 5],
    pub bytes_sent: Counter,
    pub connections_active: Gauge,
    pub connections_accepted: Counter,
    pub connections_rejected: Counter,
    pub request_duration: AtomicHistogram,
    pub tls_connections_userspace: Counter,
    /// Body ranges that were not in the page cache and were loaded off the serving threads.
    pub cold_loads: Counter,
    pub tls_connections_kernel: Counter,
    pub tls_handshake_failures: Counter,
    /// Key-file or certificate reloads refused (the previous ones stayed in use).
    pub reload_failures: Counter,
    /// Token refusals, indexed like `urlsign::Reject::ALL`.
    token_rejections: [Counter; 8],
    /// Admin requests by caller and outcome (with `admin.callers_file`).
    admin_requests: Family<AdminLabel, Counter>,
    draining: Gauge,
    store_objects: Family<DiskLabel, Gauge>,
    store_bytes: Family<DiskLabel, Gauge>,
    disk_up: Family<DiskLabel, Gauge>,
    disk_errors: Family<DiskLabel, Counter>,
    disk_quarantined: Family<DiskLabel, Counter>,
    bgp: Option<BgpMetrics>,
    /// oca's runtimes (workers and control), for the task gauge.
    pub runtimes: service::Runtimes,
    runtime_tasks: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("oca");
        let by_class: Family<ClassLabel, Counter> = Family::default();
        let responses = ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .map(|class| by_class.get_or_create(&ClassLabel { class }).clone());
        registry.register(
            "http_responses",
            "HTTP responses sent, by status class",
            by_class,
        );
        let by_reason: Family<ReasonLabel, Counter> = Family::default();
        let token_rejections = urlsign::Reject::ALL.map(|r| {
            by_reason
                .get_or_create(&ReasonLabel { reason: r.code() })
                .clone()
        });
        registry.register(
            "token_rejections",
            "Object requests refused for their signed-URL token, by reason",
            by_reason,
        );
        let m = Metrics {
            responses,
            token_rejections,
            bytes_sent: Counter::default(),
            connections_active: Gauge::default(),
            connections_accepted: Counter::default(),
            connections_rejected: Counter::default(),
            request_duration: Default::default(),
            tls_connections_userspace: Counter::default(),
            cold_loads: Counter::default(),
            tls_connections_kernel: Counter::default(),
            tls_handshake_failures: Counter::default(),
            reload_failures: Counter::default(),
            admin_requests: Family::default(),
            draining: Gauge::default(),
            store_objects: Family::default(),
            store_bytes: Family::default(),
            disk_up: Family::default(),
            disk_errors: Family::default(),
            disk_quarantined: Family::default(),
            bgp: None,
            runtimes: service::Runtimes::default(),
            runtime_tasks: Gauge::default(),
            registry,
        };
        let mut m = m;
        let r = &mut m.registry;
        r.register(
            "http_sent_bytes",
            "Bytes written to clients (heads and bodies)",
            m.bytes_sent.clone(),
        );
        r.register(
            "http_connections_active",
            "Client connections open now",
            m.connections_active.clone(),
        );
        r.register(
            "http_connections_accepted",
            "Client connections accepted",
            m.connections_accepted.clone(),
        );
        r.register(
            "http_connections_rejected",
            "Client connections refused with 503 at the connection cap",
            m.connections_rejected.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time from a complete request head to the last response byte handed to the kernel",
            m.request_duration.clone(),
        );
        let by_path: Family<PathLabel, Counter> = Family::default();
        let _ = by_path
            .get_or_create(&PathLabel { path: "userspace" })
            .inner();
        r.register(
            "disk_cold_loads",
            "Body ranges not in the page cache, read on the blocking pool so serving threads never wait for a disk",
            m.cold_loads.clone(),
        );
        r.register(
            "reload_failures",
            "Token key file, TLS certificate or admin callers file reloads refused; the previous ones stayed in use",
            m.reload_failures.clone(),
        );
        r.register(
            "admin_requests",
            "Admin listener requests by caller (from admin.callers_file; empty without a known credential) and outcome",
            m.admin_requests.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            m.tls_handshake_failures.clone(),
        );
        r.register(
            "tls_connections",
            "TLS connections established, by which path encrypts their records (userspace rustls or kernel TLS)",
            TlsPaths {
                userspace: m.tls_connections_userspace.clone(),
                kernel: m.tls_connections_kernel.clone(),
            },
        );
        r.register(
            "draining",
            "1 while shutting down gracefully",
            m.draining.clone(),
        );
        r.register(
            "store_objects",
            "Committed objects indexed, per disk",
            m.store_objects.clone(),
        );
        r.register(
            "store_bytes",
            "Bytes of committed objects indexed, per disk",
            m.store_bytes.clone(),
        );
        r.register("disk_up", "1 if the disk root is usable", m.disk_up.clone());
        r.register(
            "runtime_tasks",
            "Tasks alive on oca's runtimes: one per open connection plus background loops",
            m.runtime_tasks.clone(),
        );
        r.register(
            "disk_io_errors",
            "I/O errors while opening or reading objects, per disk",
            m.disk_errors.clone(),
        );
        r.register(
            "disk_quarantined",
            "Damaged objects (size changed underneath) moved to quarantine, per disk",
            m.disk_quarantined.clone(),
        );
        m
    }

    /// Export the `oca_bgp_*` metrics (call once, before serving).
    pub fn register_bgp(&mut self) {
        let b = BgpMetrics::default();
        let r = &mut self.registry;
        r.register(
            "bgp_sessions_established",
            "BGP sessions in the Established state",
            b.sessions_established.clone(),
        );
        r.register(
            "bgp_prefixes",
            "Prefixes learned over BGP (live and within their grace period), by family",
            b.prefixes.clone(),
        );
        r.register(
            "bgp_updates",
            "BGP UPDATE messages received",
            b.updates.clone(),
        );
        r.register(
            "bgp_connections_refused",
            "BGP connections closed because the address is not a configured neighbor",
            b.connections_refused.clone(),
        );
        r.register(
            "bgp_ttl_refused",
            "BGP connections from a ttl_security neighbor refused because the SYN's TTL was under 255",
            b.ttl_refused.clone(),
        );
        r.register(
            "bgp_kernel_drops",
            "TCP segments the kernel dropped for a missing, unexpected or wrong MD5 signature or a TTL under \
             a socket's minimum (whole network namespace, TcpExt of /proc/net/netstat)",
            b.kernel_drops.clone(),
        );
        r.register(
            "bgp_notifications_sent",
            "BGP NOTIFICATION messages sent, by error code",
            b.notifications_sent.clone(),
        );
        r.register(
            "bgp_notifications_received",
            "BGP NOTIFICATION messages received, by error code",
            b.notifications_received.clone(),
        );
        self.bgp = Some(b);
    }

    fn refresh_bgp(&self, learned: &crate::bgp::Learned) {
        let Some(b) = &self.bgp else { return };
        let (established, v4, v6) = learned.gauges();
        b.sessions_established.set(established as i64);
        for (family, n) in [("ipv4", v4), ("ipv6", v6)] {
            b.prefixes
                .get_or_create(&FamilyLabel { family })
                .set(n as i64);
        }
        // Counters mirrored from the table's own atomics, so they only rise.
        let c = &learned.counters;
        b.updates
            .inner()
            .store(c.updates.load(Ordering::Relaxed), Ordering::Relaxed);
        b.connections_refused.inner().store(
            c.connections_refused.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        b.ttl_refused
            .inner()
            .store(c.ttl_refused.load(Ordering::Relaxed), Ordering::Relaxed);
        for (reason, n) in crate::bgp::KernelDrops::read().labelled() {
            b.kernel_drops
                .get_or_create(&ReasonLabel { reason })
                .inner()
                .store(n, Ordering::Relaxed);
        }
        for (family, counts) in [
            (&b.notifications_sent, c.notifications_sent()),
            (&b.notifications_received, c.notifications_received()),
        ] {
            for (code, n) in counts {
                let code = crate::bgp::codec::code::name(code);
                family
                    .get_or_create(&CodeLabel { code })
                    .inner()
                    .store(n, Ordering::Relaxed);
            }
        }
    }

    /// Count one response with `status`.
    #[inline]
    pub fn response(&self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.responses[class].inc();
    }

    /// Count one admin request of `caller` (empty: no known credential).
    pub fn admin_request(&self, caller: &str, outcome: &'static str) {
        self.admin_requests
            .get_or_create(&AdminLabel {
                caller: caller.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Count one token refusal.
    pub fn token_rejected(&self, r: urlsign::Reject) {
        if let Some(i) = urlsign::Reject::ALL.iter().position(|x| *x == r) {
            self.token_rejections[i].inc();
        }
    }

    /// Render the text exposition, refreshing store gauges first.
    pub fn render(
        &self,
        store: &Store,
        draining: bool,
        bgp: Option<&crate::bgp::Learned>,
    ) -> String {
        self.draining.set(i64::from(draining));
        self.runtime_tasks
            .set(i64::try_from(self.runtimes.alive_tasks()).unwrap_or(i64::MAX));
        if let Some(learned) = bgp {
            self.refresh_bgp(learned);
        }
        for d in &store.disks {
            let l = DiskLabel {
                disk: d.root.display().to_string(),
            };
            self.store_objects
                .get_or_create(&l)
                .set(d.objects.load(Ordering::Relaxed) as i64);
            self.store_bytes
                .get_or_create(&l)
                .set(d.bytes.load(Ordering::Relaxed) as i64);
            self.disk_up
                .get_or_create(&l)
                .set(i64::from(d.state() != crate::store::DiskState::Missing));
            // A counter mirrored from the store's own atomic, so it only ever rises.
            self.disk_errors
                .get_or_create(&l)
                .inner()
                .store(d.io_errors.load(Ordering::Relaxed), Ordering::Relaxed);
            self.disk_quarantined
                .get_or_create(&l)
                .inner()
                .store(d.quarantined.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        service::metrics::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
