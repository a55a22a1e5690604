//! The fleet as steering decisions see it: an immutable `steer::Snapshot`
//! built from the registry and config, rebuilt in the background every
//! `steer.snapshot_refresh` and swapped in, so decisions never wait on the
//! registry lock or the store. `/health` reports how old it is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::Fleet;
use super::bgp::point;
use super::steer::{Node, Policy, Snapshot};

pub struct Snapshots {
    current: ArcSwap<Snapshot>,
    built: Mutex<Instant>,
}

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
                rebuild(&fleet, Instant::now());
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
