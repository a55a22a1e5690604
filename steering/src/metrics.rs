//! steering's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as PromRegistry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DependencyLabel {
    pub dependency: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DependencyOutcome {
    pub dependency: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

pub struct Metrics {
    registry: PromRegistry,
    pub heartbeats: Counter,
    pub resyncs: Counter,
    pub auth_failures: Counter,
    pub polls_failed: Counter,
    pub health_changes: Counter,
    appliances: Family<StateLabel, Gauge>,
    /// Breaker state per dependency: 0 closed, 1 open, 2 half-open.
    pub dependency_state: Family<DependencyLabel, Gauge>,
    pub dependency_calls: Family<DependencyOutcome, Counter>,
    /// Plays answered, by outcome (`ok` or the refusal code).
    pub plays: Family<ReasonLabel, Counter>,
    pub licences: Family<ReasonLabel, Counter>,
    /// Enrolment token presentations, by outcome (`enrolled`, `again`, the refusal).
    pub enrolments: Family<ReasonLabel, Counter>,
    /// Appliances chosen as primary, by why (`isp-embedded`, `region-ixp`, ...).
    pub steered: Family<ReasonLabel, Counter>,
    pub steering_polls: Counter,
    pub home_fallbacks: Counter,
    /// Playback heartbeats taken.
    pub play_heartbeats: Counter,
    /// Heartbeats' download samples filed as measurements of appliances.
    pub path_samples: Counter,
    /// (client network, appliance) paths with a measurement now, those
    /// judged too slow, and the client networks measured: scalars, so their
    /// cardinality does not grow with networks (`GET /v1/appliances` lists them).
    pub measured_paths: Gauge,
    pub slow_paths: Gauge,
    pub measured_networks: Gauge,
    /// Where home pages' personalised rows came from (`cache`, `service`, `stale`).
    pub home_rows: Family<ReasonLabel, Counter>,
    pub fill_plans_served: Counter,
    runtime_tasks: Gauge,
    snapshot_builds: Counter,
    snapshot_build_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Admission: the adaptive concurrency limit and the plays decided now.
    admission_limit: Gauge,
    admission_inflight: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = PromRegistry::with_prefix("steering");
        let m = Metrics {
            heartbeats: Counter::default(),
            resyncs: Counter::default(),
            auth_failures: Counter::default(),
            polls_failed: Counter::default(),
            health_changes: Counter::default(),
            appliances: Family::default(),
            dependency_state: Family::default(),
            dependency_calls: Family::default(),
            plays: Family::default(),
            licences: Family::default(),
            enrolments: Family::default(),
            steered: Family::default(),
            steering_polls: Counter::default(),
            home_fallbacks: Counter::default(),
            play_heartbeats: Counter::default(),
            path_samples: Counter::default(),
            measured_paths: Gauge::default(),
            slow_paths: Gauge::default(),
            measured_networks: Gauge::default(),
            home_rows: Family::default(),
            fill_plans_served: Counter::default(),
            runtime_tasks: Gauge::default(),
            snapshot_builds: Counter::default(),
            snapshot_build_seconds: Gauge::default(),
            admission_limit: Gauge::default(),
            admission_inflight: Gauge::default(),
            registry: PromRegistry::default(),
        };
        registry.register("heartbeats", "Heartbeats accepted", m.heartbeats.clone());
        registry.register(
            "snapshot_builds",
            "Decision snapshots built by the background builder",
            m.snapshot_builds.clone(),
        );
        registry.register(
            "snapshot_build_seconds",
            "How long the last decision snapshot took to build",
            m.snapshot_build_seconds.clone(),
        );
        registry.register(
            "runtime_tasks",
            "Tasks alive on steering's runtime (requests, pollers, background loops)",
            m.runtime_tasks.clone(),
        );
        registry.register(
            "inventory_resyncs",
            "Inventory deltas refused and answered with a resync request",
            m.resyncs.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests with a wrong appliance credential",
            m.auth_failures.clone(),
        );
        registry.register(
            "health_polls_failed",
            "Health polls that failed or timed out",
            m.polls_failed.clone(),
        );
        registry.register(
            "health_changes",
            "Appliances marked up or down",
            m.health_changes.clone(),
        );
        registry.register(
            "appliances",
            "Appliances by state (up, down, draining)",
            m.appliances.clone(),
        );
        registry.register(
            "dependency_breaker_state",
            "Circuit breaker per dependency: 0 closed, 1 open, 2 half-open",
            m.dependency_state.clone(),
        );
        registry.register(
            "dependency_calls",
            "Dependency calls by outcome (ok, error, timeout, rejected by an open breaker)",
            m.dependency_calls.clone(),
        );
        registry.register("plays", "Play requests by outcome", m.plays.clone());
        registry.register(
            "licences",
            "Clear Key licence requests by outcome",
            m.licences.clone(),
        );
        registry.register(
            "play_heartbeats",
            "Playback heartbeats taken (position, state and download samples from players)",
            m.play_heartbeats.clone(),
        );
        registry.register(
            "path_samples",
            "Download samples from heartbeats filed as measurements of appliances",
            m.path_samples.clone(),
        );
        registry.register(
            "measured_paths",
            "(client network, appliance) paths players measured, with any confidence",
            m.measured_paths.clone(),
        );
        registry.register(
            "slow_paths",
            "Measured paths too slow to take new viewers (steer.min_path_mbps, steer.min_path_confidence)",
            m.slow_paths.clone(),
        );
        registry.register(
            "measured_networks",
            "Client networks with a measured path",
            m.measured_networks.clone(),
        );
        registry.register(
            "home_rows",
            "Home pages' personalised rows by source (cache, service, stale: the last good while the service fails)",
            m.home_rows.clone(),
        );
        registry.register(
            "enrolments",
            "Enrolment token presentations by outcome (enrolled, again, or the refusal's code)",
            m.enrolments.clone(),
        );
        registry.register(
            "steered",
            "Primary appliance choices by reason (or origin)",
            m.steered.clone(),
        );
        registry.register(
            "content_steering_polls",
            "Content-steering polls answered",
            m.steering_polls.clone(),
        );
        registry.register(
            "home_fallbacks",
            "Home pages served from fallback rows",
            m.home_fallbacks.clone(),
        );
        registry.register(
            "fill_plans_served",
            "Fill plans handed to appliances",
            m.fill_plans_served.clone(),
        );
        registry.register(
            "admission_limit",
            "New plays decided at once at most now (the adaptive limit of [admission])",
            m.admission_limit.clone(),
        );
        registry.register(
            "admission_inflight",
            "New plays being decided now",
            m.admission_inflight.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The text exposition, with `appliances` = (up, down, draining) now.
    /// A decision snapshot was built in `took`.
    pub fn snapshot_built(&self, took: std::time::Duration) {
        self.snapshot_builds.inc();
        self.snapshot_build_seconds.set(took.as_secs_f64());
    }

    /// Admission's (limit, plays in flight), shown at the next render.
    pub fn admission(&self, (limit, inflight): (usize, usize)) {
        self.admission_limit.set(limit as i64);
        self.admission_inflight.set(inflight as i64);
    }

    pub fn render(&self, (up, down, draining): (i64, i64, i64)) -> String {
        for (state, n) in [("up", up), ("down", down), ("draining", draining)] {
            self.appliances.get_or_create(&StateLabel { state }).set(n);
        }
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
