//! Progress: a status document (written atomically for oca's /health and for
//! operators) and Prometheus metrics (served on `metrics_listen`).

use std::path::Path;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Status {
    /// `starting`, `no-plan`, `waiting-window`, `filling`, `complete` or `blocked`.
    pub state: &'static str,
    pub plan_version: u64,
    pub window_open: bool,
    pub objects_total: u64,
    pub objects_done: u64,
    pub bytes_total: u64,
    pub bytes_done: u64,
    /// Planned bytes that do not fit in the space allowed.
    pub bytes_left_out: u64,
    /// Sources downloads are running from right now.
    pub sources: Vec<String>,
    /// Download rate over the last second, bits per second.
    pub rate_bps: u64,
    /// Bytes received since this process started (resumed bytes not included).
    pub received_bytes: u64,
    pub evicted_bytes: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    /// Committed planned objects read back and found intact (and their bytes),
    /// found damaged (quarantined and fetched again), and whole rounds done.
    pub scrub_objects: u64,
    pub scrub_bytes: u64,
    pub scrub_damaged: u64,
    pub scrub_rounds: u64,
    /// Unix seconds (on the agent's clock).
    pub updated: u64,
}

/// Write `status` so readers never see half a document.
pub fn write(path: &Path, status: &Status) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&tmp, serde_json::to_vec_pretty(status).unwrap_or_default())?;
    std::fs::rename(&tmp, path)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub bytes: Family<SourceLabel, Counter>,
    pub objects: Family<OutcomeLabel, Counter>,
    pub evicted_bytes: Counter,
    pub remaining_bytes: Gauge,
    pub rate_bps: Gauge,
    pub window_open: Gauge,
    pub plan_version: Gauge,
    /// Bytes received by this process, up to the moment of the scrape.
    pub received_bytes: Gauge,
    pub scrub_bytes: Counter,
    pub scrub_damaged: Counter,
    runtime_tasks: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("fill");
        let m = Metrics {
            registry: Registry::default(),
            bytes: Family::default(),
            objects: Family::default(),
            evicted_bytes: Counter::default(),
            remaining_bytes: Gauge::default(),
            rate_bps: Gauge::default(),
            window_open: Gauge::default(),
            plan_version: Gauge::default(),
            received_bytes: Gauge::default(),
            scrub_bytes: Counter::default(),
            scrub_damaged: Counter::default(),
            runtime_tasks: Gauge::default(),
        };
        registry.register(
            "runtime_tasks",
            "Tasks alive on the agent's runtime (downloads, scrubber, background loops)",
            m.runtime_tasks.clone(),
        );
        registry.register(
            "scrub_bytes",
            "Bytes of committed objects read back and found intact",
            m.scrub_bytes.clone(),
        );
        registry.register(
            "scrub_damaged",
            "Committed objects found damaged (hash mismatch), quarantined and fetched again",
            m.scrub_damaged.clone(),
        );
        registry.register("bytes", "Bytes downloaded, by source", m.bytes.clone());
        registry.register(
            "objects",
            "Object downloads by outcome (ok, corrupt, slow, failed, disk)",
            m.objects.clone(),
        );
        registry.register(
            "evicted_bytes",
            "Bytes deleted to make room for planned content",
            m.evicted_bytes.clone(),
        );
        registry.register(
            "remaining_bytes",
            "Planned bytes still to download in this pass",
            m.remaining_bytes.clone(),
        );
        registry.register(
            "rate_bps",
            "Download rate, bits per second",
            m.rate_bps.clone(),
        );
        registry.register(
            "window_open",
            "1 inside the fill window",
            m.window_open.clone(),
        );
        registry.register(
            "plan_version",
            "Version of the plan being filled",
            m.plan_version.clone(),
        );
        registry.register(
            "received_bytes",
            "Bytes received since start (resumed bytes excluded)",
            m.received_bytes.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn render(&self) -> String {
        let tasks = tokio::runtime::Handle::try_current()
            .map_or(0, |h| h.metrics().num_alive_tasks() as i64);
        self.runtime_tasks.set(tasks);
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
