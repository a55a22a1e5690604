//! Passes: fetch the plan (or use the last good one), work out what is
//! missing and may be fetched now, make room, and download it under the
//! concurrency cap; then wait for the next poll, or less while work remains.

use std::sync::Arc;
use std::time::{Duration, Instant};

use control_client::wire::FillPlan;
use tokio::sync::{Notify, Semaphore, watch};

use crate::agent::Agent;
use crate::{disk, download, room, window, work};

/// What a pass ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Nothing left that may be fetched now.
    Done,
    /// Work remains (failed sources, a window that just opened): look again soon.
    Again,
}

/// Passes, one after another, until `stop`; `wake` starts one at once.
pub(crate) async fn run(agent: Arc<Agent>, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    loop {
        let pass = tokio::select! {
            p = one_pass(&agent) => p,
            _ = stop.changed() => return,
        };
        let wait = match pass {
            Pass::Done => agent.cfg.poll_interval,
            Pass::Again => agent.cfg.poll_interval.min(Duration::from_secs(1)),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => tracing::info!("woken: fetching the plan now"),
            _ = stop.changed() => return,
        }
    }
}

/// The plan, or the last good one when the control plane is unreachable.
async fn plan(agent: &Agent) -> Option<FillPlan> {
    match agent.control.fill_plan().await {
        Ok(p) => Some(p),
        Err(e) => {
            let cached = agent.control.cached_fill_plan();
            tracing::warn!(error = %e, cached = cached.is_some(), "cannot fetch the fill plan");
            cached
        }
    }
}

async fn one_pass(agent: &Arc<Agent>) -> Pass {
    let Some(plan) = plan(agent).await else {
        agent.set(|s| s.state = "no-plan");
        return Pass::Again;
    };
    let now = agent.clock.now();
    let open = window::is_open(&plan.window, now);
    agent.metrics.window_open.set(i64::from(open));
    agent.metrics.plan_version.set(plan.version as i64);
    // A plan is input from the network: keys and hashes are checked before
    // they name files.
    let bad: Vec<&str> = plan
        .items
        .iter()
        .flat_map(|i| &i.objects)
        .filter(|o| !disk::safe_key(&o.key) || !disk::safe_sha(&o.sha256))
        .map(|o| o.key.as_str())
        .collect();
    if !bad.is_empty() {
        agent.fail(format!(
            "plan {} has {} unusable object(s), e.g. {:?}; skipped",
            plan.version,
            bad.len(),
            bad[0]
        ));
    }
    // Everything missing, window or not (one stat per planned object): what
    // may be fetched now, and whether the rest waits for the window.
    let (wanted, later): (Vec<work::Wanted<'_>>, Vec<work::Wanted<'_>>) =
        work::missing(&plan, |k| agent.disks.present(k), true)
            .into_iter()
            .filter(|w| disk::safe_key(&w.object.key) && disk::safe_sha(&w.object.sha256))
            .partition(|w| work::startable(w.item, open, now));
    let later = !later.is_empty();
    if wanted.is_empty() {
        agent.set(|s| {
            s.state = if later { "waiting-window" } else { "complete" };
            s.plan_version = plan.version;
            s.window_open = open;
            s.sources.clear();
        });
        agent.metrics.remaining_bytes.set(0);
        return Pass::Done;
    }
    let room = room::make_room(agent, &plan, &wanted, now).await;
    let (todo, left_out) = work::fit(wanted, room);
    let total: u64 = todo.iter().map(|w| w.object.size).sum();
    agent.set(|s| {
        s.state = if todo.is_empty() {
            "blocked"
        } else {
            "filling"
        };
        s.plan_version = plan.version;
        s.window_open = open;
        s.objects_total = todo.len() as u64;
        s.objects_done = 0;
        s.bytes_total = total;
        s.bytes_done = 0;
        s.bytes_left_out = left_out;
    });
    agent.metrics.remaining_bytes.set(total as i64);
    if todo.is_empty() {
        agent.fail(format!(
            "no room for the next planned item ({left_out} bytes left out)"
        ));
        return Pass::Done;
    }
    let started = Instant::now();
    let received_before = agent.received();
    tracing::info!(
        plan = plan.version,
        objects = todo.len(),
        bytes = total,
        window_open = open,
        "fill pass starting"
    );
    let gate = Arc::new(Semaphore::new(agent.cfg.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let mut complete = true;
    for w in todo {
        // Non-urgent work stops being started once the window closes.
        let at = agent.clock.now();
        if !work::startable(w.item, window::is_open(&plan.window, at), at) {
            complete = false;
            break;
        }
        let Ok(permit) = Arc::clone(&gate).acquire_owned().await else {
            break;
        };
        let agent = Arc::clone(agent);
        let object = w.object.clone();
        let sources = w.item.sources.clone();
        tasks.spawn(async move {
            let ok = download::fetch_one(&agent, &object, &sources).await;
            drop(permit);
            ok
        });
    }
    while let Some(r) = tasks.join_next().await {
        complete &= r.unwrap_or(false);
    }
    let secs = started.elapsed().as_secs_f64();
    let received = agent.received() - received_before;
    tracing::info!(
        plan = plan.version,
        bytes = received,
        secs = format!("{secs:.1}"),
        rate_bps = (received as f64 * 8.0 / secs.max(0.001)) as u64,
        complete,
        "fill pass summary"
    );
    agent.set(|s| s.sources.clear());
    if complete { Pass::Done } else { Pass::Again }
}
