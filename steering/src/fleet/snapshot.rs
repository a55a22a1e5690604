//! The fleet as steering decisions see it: an immutable `steer::Snapshot`
//! built from the registry and config, swapped in at most every
//! `steer.snapshot_refresh`, so decisions never wait on the registry lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::api::AppState;
use crate::steer::{GeoPoint, Node, Policy, Snapshot};

pub struct Fleet {
    snapshot: ArcSwap<Snapshot>,
    built: Mutex<Option<Instant>>,
}

impl Fleet {
    pub fn new(policy: Policy) -> Fleet {
        Fleet {
            snapshot: ArcSwap::from_pointee(Snapshot::build(
                Vec::new(),
                Vec::new(),
                Vec::new(),
                policy,
            )),
            built: Mutex::new(None),
        }
    }

    /// The current snapshot, rebuilt first when it is older than the refresh
    /// interval. One caller rebuilds; the others use the previous one meanwhile.
    pub fn current(&self, state: &AppState, now: Instant) -> Arc<Snapshot> {
        let due = {
            match self.built.try_lock() {
                Ok(mut built) => {
                    let due = built.is_none_or(|t| {
                        now.saturating_duration_since(t) >= state.config.steer.snapshot_refresh
                    });
                    if due {
                        *built = Some(now);
                    }
                    due
                }
                Err(_) => false,
            }
        };
        if due {
            // A RIB import (made offline) is noticed here, within one refresh.
            if let Err(e) = crate::refresh_networks(state) {
                tracing::warn!(error = %e, "cannot read the RIB");
            }
            self.snapshot.store(Arc::new(build(state)));
        }
        self.snapshot.load_full()
    }

    /// Rebuild now (after a change that must be seen at once, and in tests).
    pub fn refresh(&self, state: &AppState, now: Instant) {
        *self.built.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
        self.snapshot.store(Arc::new(build(state)));
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

fn point(l: Option<[f64; 2]>) -> Option<GeoPoint> {
    l.map(|[lat, lon]| GeoPoint { lat, lon })
}

fn build(state: &AppState) -> Snapshot {
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
