//! `GET /health`: whether steering should get traffic, for an operator's load
//! balancer. Each check is `ok`, `degraded` (still serving, something is
//! missing) or `failed` (steering should not get traffic): 200 while none
//! failed, 503 otherwise, the same JSON body naming every check either way.
//!
//! `assess` is the decision, pure (inputs and `now` in, a report out); the
//! handler below gathers the inputs, the store's with a real write bounded by
//! a timeout.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use control_client::wire::KeyWire;
use serde::Serialize;

use crate::App;
use crate::config::Config;

/// How long the store's probe may take before the store counts as failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Degraded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub state: Status,
    pub detail: String,
}

/// The answer: the worst state of any check, and every check by name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub status: Status,
    pub checks: BTreeMap<&'static str, Check>,
}

impl Report {
    pub fn http_status(&self) -> StatusCode {
        match self.status {
            Status::Failed => StatusCode::SERVICE_UNAVAILABLE,
            Status::Ok | Status::Degraded => StatusCode::OK,
        }
    }
}

/// How old things may get, from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The decision snapshot is rebuilt at least every `steer.snapshot_refresh`
    /// (stretched to twenty build times when builds are slow); ten missed
    /// rebuilds (at least 2 s, so a busy machine does not flap) mean the
    /// builder is stuck or too slow, and decisions run on an old fleet.
    pub snapshot_age: Duration,
    /// A polling round starts every `health.interval` and takes at most
    /// `health.timeout`; three rounds without a start mean the poller stopped
    /// and appliance health is frozen.
    pub poller_age: Duration,
    /// Seconds: the key schedule's rotation period, how far ahead a key is
    /// published, and how often the schedule is applied.
    pub rotate_every: u64,
    pub publish_ahead: u64,
    pub key_check_every: u64,
}

impl Limits {
    pub fn from_config(c: &Config) -> Limits {
        Limits {
            snapshot_age: (c.steer.snapshot_refresh * 10).max(Duration::from_secs(2)),
            poller_age: (c.health.interval + c.health.timeout) * 3,
            rotate_every: c.keys.rotate_every.as_secs(),
            publish_ahead: c.keys.lead().as_secs(),
            key_check_every: crate::fleet::keys::check_every(&c.keys).as_secs(),
        }
    }
}

/// What the checks look at.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The store's write probe: done, or why not.
    pub store: Result<(), String>,
    /// The store is shared by every instance (PostgreSQL): when it is down
    /// it is down for all of them, so taking this one out of a load balancer
    /// helps no one, and plays go on from memory (`viewers::recall`).
    pub store_shared: bool,
    pub snapshot_built: Instant,
    pub poller_ticked: Instant,
    pub keys: &'a [KeyWire],
    /// Unix seconds the newest key was created, if any was.
    pub newest_key_created: Option<u64>,
    /// Each guarded dependency's name and breaker state (`closed`, `open`,
    /// `half-open`).
    pub breakers: &'a [(&'static str, &'static str)],
}

fn check(state: Status, detail: impl Into<String>) -> Check {
    Check {
        state,
        detail: detail.into(),
    }
}

fn age_check(what: &str, at: Instant, limit: Duration, now: Instant) -> Check {
    let age = now.saturating_duration_since(at);
    let ms = age.as_millis();
    if age > limit {
        check(
            Status::Failed,
            format!(
                "{what} {ms} ms ago, over the {} ms limit",
                limit.as_millis()
            ),
        )
    } else {
        check(Status::Ok, format!("{what} {ms} ms ago"))
    }
}

fn keys_check(inputs: &Inputs<'_>, limits: &Limits, unix_now: u64) -> Check {
    let live_at = |t: u64| {
        inputs
            .keys
            .iter()
            .any(|k| k.not_before.is_none_or(|nb| nb <= t) && k.not_after.is_none_or(|na| t < na))
    };
    if !live_at(unix_now) {
        return check(
            Status::Failed,
            "no signing key is live now: plays cannot be signed",
        );
    }
    let ahead = limits.publish_ahead;
    if !live_at(unix_now.saturating_add(ahead)) {
        return check(
            Status::Degraded,
            format!("no key is live {ahead} s from now: the next one is not published ahead"),
        );
    }
    // Two missed checks of the schedule: it is not running (or cannot write).
    let due = inputs
        .newest_key_created
        .map(|c| c.saturating_add(limits.rotate_every + 2 * limits.key_check_every));
    if let Some(due) = due
        && unix_now > due
    {
        return check(
            Status::Degraded,
            format!("key rotation is {} s overdue", unix_now - due),
        );
    }
    check(
        Status::Ok,
        format!(
            "{} keys held, one live now and one {ahead} s ahead",
            inputs.keys.len()
        ),
    )
}

/// The readiness report at `now` (monotonic, for ages) and `unix_now` (for
/// key validity).
pub fn assess(inputs: &Inputs<'_>, limits: &Limits, now: Instant, unix_now: u64) -> Report {
    let mut checks = BTreeMap::new();
    checks.insert(
        "store",
        match &inputs.store {
            Ok(()) => check(Status::Ok, "a write transaction committed"),
            Err(e) if inputs.store_shared => check(
                Status::Degraded,
                format!("cannot write: {e}; recent accounts play from memory"),
            ),
            Err(e) => check(Status::Failed, format!("cannot write: {e}")),
        },
    );
    checks.insert(
        "snapshot",
        age_check("rebuilt", inputs.snapshot_built, limits.snapshot_age, now),
    );
    checks.insert(
        "poller",
        age_check("last round", inputs.poller_ticked, limits.poller_age, now),
    );
    checks.insert("keys", keys_check(inputs, limits, unix_now));
    // These degrade gracefully (plays from the start, popular rows): an open
    // breaker is worth knowing about, never a reason to take steering out.
    for &(name, breaker) in inputs.breakers {
        let c = match breaker {
            "closed" => check(Status::Ok, "breaker closed"),
            other => check(
                Status::Degraded,
                format!("breaker {other}: serving without it"),
            ),
        };
        checks.insert(name, c);
    }
    let status = checks.values().map(|c| c.state).max().unwrap_or(Status::Ok);
    Report { status, checks }
}

/// `GET /health`.
pub async fn health(State(app): State<Arc<App>>) -> Response {
    let store = probe_store(&app).await;
    let keys = app.fleet.keys.wire();
    let breakers = app.viewers.breakers();
    let inputs = Inputs {
        store,
        store_shared: matches!(
            crate::store::Location::parse(&app.config.database),
            crate::store::Location::Postgres(_)
        ),
        snapshot_built: app.fleet.snapshots.built(),
        poller_ticked: app.fleet.poller_ticked(),
        keys: &keys.keys,
        newest_key_created: app.fleet.keys.newest_created(),
        breakers: &breakers,
    };
    let report = assess(
        &inputs,
        &Limits::from_config(&app.config),
        Instant::now(),
        crate::unix_now(),
    );
    if report.status == Status::Failed {
        tracing::warn!(checks = ?report.checks, "not ready");
    }
    (report.http_status(), axum::Json(report)).into_response()
}

/// One write through the store, bounded by `PROBE_TIMEOUT`; at most one at a
/// time (it runs on as a task of its own when it overruns), so a hung store
/// does not pile up probes.
async fn probe_store(app: &App) -> Result<(), String> {
    if app.probing.swap(true, Ordering::AcqRel) {
        return Err("the previous probe has not finished".into());
    }
    let store = Arc::clone(&app.store);
    let probing: Arc<AtomicBool> = Arc::clone(&app.probing);
    let task = tokio::spawn(async move {
        let r = store.probe_write(crate::unix_now()).await;
        probing.store(false, Ordering::Release);
        r
    });
    match tokio::time::timeout(PROBE_TIMEOUT, task).await {
        Ok(Ok(r)) => r.map_err(|e| e.to_string()),
        Ok(Err(e)) => {
            app.probing.store(false, Ordering::Release);
            Err(format!("the probe failed: {e}"))
        }
        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
}

#[cfg(test)]
mod tests;
