//! Prometheus metrics, and the `/metrics` listener (`metrics_listen`) that
//! serves them with axum, as steering does.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::agent::Agent;

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
        self.runtime_tasks
            .set(service::metrics::current_runtime_tasks());
        service::metrics::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Serve `/metrics` on `listener` until `stop`.
pub(crate) async fn serve(
    agent: Arc<Agent>,
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .fallback(|| async { (StatusCode::NOT_FOUND, "try /metrics\n") })
        .with_state(agent);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await
}

async fn scrape(State(agent): State<Arc<Agent>>) -> impl IntoResponse {
    agent.metrics.received_bytes.set(agent.received() as i64);
    (
        [(header::CONTENT_TYPE, service::metrics::CONTENT_TYPE)],
        agent.metrics.render(),
    )
}
