//! The fleet as steering decisions see it: an immutable `steer::Snapshot`
//! built from the registry and config, rebuilt in the background every
//! `steer.snapshot_refresh` and swapped in, so decisions never wait on the
//! registry lock or the store. `/health` reports how old it is.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{Notify, watch};

use super::Fleet;
use super::bgp::point;
use super::steer::{Node, Policy, Snapshot};

pub struct Snapshots {
    current: ArcSwap<Snapshot>,
    built: Mutex<Instant>,
    /// A change arrived within `MIN_GAP` of the last build: the refresh loop
    /// builds again once the gap is over.
    dirty: AtomicBool,
    wake: Notify,
}

/// Changes rebuild the snapshot at once, but not more often than this: a
/// fleet of thousands reporting its inventories (a registration storm, a
/// steering restart) would otherwise rebuild a snapshot of thousands of
/// nodes once per report.
const MIN_GAP: Duration = Duration::from_millis(50);

impl Snapshots {
    /// An empty snapshot, counted as built at `now`.
    pub fn new(policy: Policy, now: Instant) -> Snapshots {
        Snapshots {
            current: ArcSwap::from_pointee(Snapshot::build(
                Vec::new(),
                Vec::new(),
                Vec::new(),
                policy,
            )),
            built: Mutex::new(now),
            dirty: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// The snapshot decisions run on now.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// When the current snapshot was built.
    pub fn built(&self) -> Instant {
        *self.built.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Rebuild the snapshot now from what the fleet holds in memory.
pub fn rebuild(fleet: &Fleet, now: Instant) {
    fleet.snapshots.current.store(Arc::new(build(fleet)));
    *fleet
        .snapshots
        .built
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = now;
}

/// After a change decisions must see: rebuild at once, unless a build ran
/// within `MIN_GAP`; then the refresh loop builds when the gap is over.
pub fn rebuild_soon(fleet: &Fleet, now: Instant) {
    let s = &fleet.snapshots;
    if now.saturating_duration_since(s.built()) >= MIN_GAP {
        rebuild(fleet, now);
    } else {
        s.dirty.store(true, Ordering::Release);
        s.wake.notify_one();
    }
}

/// Rebuild every `steer.snapshot_refresh` until `stop` is set.
pub async fn refresh_loop(fleet: Arc<Fleet>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(fleet.config.steer.snapshot_refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // Notice a RIB import made offline on the way.
                if let Err(e) = fleet.refresh_networks().await {
                    tracing::warn!(error = %e, "cannot read the RIB");
                }
                fleet.snapshots.dirty.store(false, Ordering::Release);
                rebuild(&fleet, Instant::now());
            }
            _ = fleet.snapshots.wake.notified() => {
                let due = fleet.snapshots.built() + MIN_GAP;
                tokio::time::sleep_until(due.into()).await;
                if fleet.snapshots.dirty.swap(false, Ordering::AcqRel) {
                    rebuild(&fleet, Instant::now());
                }
            }
            _ = stop.changed() => return,
        }
    }
}

pub fn policy(cfg: &crate::config::SteerConfig) -> Policy {
    Policy {
        max_utilisation: cfg.max_utilisation,
        km_per_utilisation: cfg.km_per_utilisation,
        stale_after: cfg.stale_after,
        fallbacks: cfg.fallbacks,
        ..Policy::default()
    }
}

fn build(state: &Fleet) -> Snapshot {
    let config = &state.config;
    let located: HashMap<&str, Option<[f64; 2]>> = config
        .appliances
        .iter()
        .map(|a| (a.id.as_str(), a.location))
        .collect();
    let catalog = state
        .catalog
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let nodes: Vec<Node> = {
        let reg = state.registry();
        reg.appliances
            .iter()
            .filter(|(_, a)| a.info.http_url.is_some() || a.info.https_url.is_some())
            .map(|(id, a)| Node {
                id: id.clone(),
                tier: a.info.tier,
                site: a.info.site.clone(),
                region: a.info.region.clone(),
                location: point(located.get(id.as_str()).copied().flatten()),
                up: a.health.up,
                draining: a.last.as_ref().is_some_and(|h| h.status == "draining"),
                utilisation: a.last.as_ref().map_or(0.0, |h| {
                    h.egress_bps as f64 / a.info.capacity_bps.max(1) as f64
                }),
                load_reported_at: a.last_seen,
                renditions: a.complete(&catalog).map(|h| h.rendition.clone()).collect(),
            })
            .collect()
    };
    // What each embedded appliance serves: its configured prefixes (an
    // override that always applies) plus what its ISP's router announced.
    let mut served: Vec<(ipnet::IpNet, String)> = config
        .appliances
        .iter()
        .flat_map(|a| a.serves.iter().map(move |p| (*p, a.id.clone())))
        .collect();
    {
        let reg = state.registry();
        for (id, a) in &reg.appliances {
            served.extend(a.learned.iter().map(|p| (*p, id.clone())));
        }
    }
    Snapshot::build_with(
        nodes,
        served,
        state.networks.load_full(),
        policy(&config.steer),
    )
}
