//! Health polling: every appliance's admin `/health`, on an interval, with a
//! timeout; up/down decided with hysteresis (see `registry::Hysteresis`).
//! Each round is noted, so `/health` can tell a poller that stopped.

use std::sync::Arc;
use std::time::Instant;

use control_client::wire::HealthSummary;
use serde::Deserialize;
use tokio::sync::watch;

use super::Fleet;

/// The fields of oca's /health that steering uses.
#[derive(Deserialize)]
struct OcaHealth {
    status: String,
    #[serde(default)]
    egress_bps: u64,
    #[serde(default)]
    capacity_bps: u64,
    #[serde(default)]
    connections_active: i64,
}

/// Poll until `stop` is set.
pub async fn poll_loop(state: Arc<Fleet>, mut stop: watch::Receiver<bool>) {
    let cfg = state.config.health.clone();
    let Some(client) = health_client(&state) else {
        tracing::error!("health polling disabled: cannot build HTTP client");
        return;
    };
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        state.poller_tick(Instant::now());
        // This instance's share: each appliance is polled by one instance,
        // unless it heartbeated here within the interval (its heartbeat was
        // the same report, counted as a successful poll). Polls resume one
        // interval after its heartbeats stop.
        let now = Instant::now();
        let targets: Vec<(String, String)> = state
            .registry()
            .appliances
            .iter()
            .filter(|(id, a)| state.cluster.polls(id, &a.info.region))
            .filter(|(_, a)| {
                a.heard
                    .is_none_or(|t| now.duration_since(t) >= cfg.interval)
            })
            .map(|(id, a)| {
                (
                    id.clone(),
                    format!("{}/health", a.info.admin_url.trim_end_matches('/')),
                )
            })
            .collect();
        // Spread over the interval rather than all at once: a fleet of
        // thousands polled in one burst every interval stalls the plays
        // decided meanwhile.
        let n = targets.len().max(1) as u32;
        // Over the first half of the interval, so a round ends well before the next.
        let spacing = cfg.interval / (2 * n);
        let polls = targets.into_iter().enumerate().map(|(i, (id, url))| {
            let client = client.clone();
            let delay = spacing * i as u32;
            async move {
                tokio::time::sleep(delay).await;
                (id, poll_one(&client, &url).await)
            }
        });
        let mut set = tokio::task::JoinSet::new();
        for p in polls {
            set.spawn(p);
        }
        // A round spread over a long interval must not hold up shutdown
        // (dropping the set aborts the polls not yet made).
        loop {
            tokio::select! {
                next = set.join_next() => match next {
                    Some(Ok((id, result))) => record(&state, &id, result),
                    Some(Err(_)) => {}
                    None => break,
                },
                _ = stop.changed() => return,
            }
        }
    }
}

/// Poll appliance `id` once, now, outside the interval. Called when it
/// registers (it has just started): with `up_after` = 2 it is back in
/// rotation at the next tick instead of the one after, so a restarted
/// appliance is in use again within one or two intervals.
pub async fn poll_registered(state: Arc<Fleet>, id: String) {
    let url = match state.registry().appliances.get(&id) {
        Some(a) => format!("{}/health", a.info.admin_url.trim_end_matches('/')),
        None => return,
    };
    let Some(client) = health_client(&state) else {
        return;
    };
    let result = poll_one(&client, &url).await;
    record(&state, &id, result);
}

/// The client every poll uses, built once: building one reads and parses the
/// system's CA bundle, which a registration storm of thousands must not repeat.
fn health_client(state: &Fleet) -> Option<reqwest::Client> {
    state
        .health_client
        .get_or_init(|| {
            let h = &state.config.health;
            control_client::admin_client(
                h.timeout,
                h.admin_ca_file.as_deref(),
                h.admin_token_file.as_deref(),
            )
            .inspect_err(|e| tracing::error!(error = %e, "cannot build the health-poll client"))
            .ok()
        })
        .clone()
}

/// One poll; the client's own timeout bounds the whole request, body included.
async fn poll_one(client: &reqwest::Client, url: &str) -> Result<HealthSummary, String> {
    let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let h: OcaHealth = resp.json().await.map_err(|e| e.to_string())?;
    Ok(HealthSummary {
        status: h.status,
        egress_bps: h.egress_bps,
        capacity_bps: h.capacity_bps,
        connections: h.connections_active.max(0) as u64,
    })
}

fn record(state: &Fleet, id: &str, result: Result<HealthSummary, String>) {
    let cfg = &state.config.health;
    let mut reg = state.registry();
    let Some(a) = reg.appliances.get_mut(id) else {
        return;
    };
    let ok = result.is_ok();
    let now_ms = super::cluster::wall_ms();
    let mut status_changed = false;
    match result {
        Ok(h) => {
            status_changed = a.last.as_ref().is_none_or(|l| l.status != h.status);
            state.cluster.note_report(id, &h, now_ms);
            a.last = Some(h);
            a.last_seen = Some(Instant::now());
            a.report_ms = now_ms;
        }
        Err(e) => {
            state.metrics.polls_failed.inc();
            tracing::debug!(appliance = %id, error = %e, "health poll failed");
        }
    }
    let changed = a.health.observe(ok, cfg.down_after, cfg.up_after);
    a.up_ms = now_ms;
    state.cluster.note_verdict(id, a.health.up, now_ms);
    if changed {
        state.metrics.health_changes.inc();
        tracing::warn!(appliance = %id, up = a.health.up, "appliance health changed");
    }
    if changed || status_changed {
        drop(reg);
        // Decisions must see an appliance come up, go down or start draining
        // soon (within a few snapshot build times), not at the next
        // background refresh.
        super::snapshot::changed(state);
    }
}
