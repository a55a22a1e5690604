//! The fleet as steering decisions see it: an immutable `steer::Snapshot`
//! built from the registry and config and swapped in, so decisions never wait
//! on the registry lock or the store. `/health` reports how old it is.
//!
//! One builder task makes every snapshot: every `steer.snapshot_refresh`,
//! and soon after a change asks for one ([`Snapshots::changed`]). Changes
//! arriving while it builds are coalesced into the next build, and builds are
//! spaced by at least four times the last build's duration (and
//! [`MIN_GAP`]), so a fleet of thousands reporting at once costs a bounded
//! share of a core (a fifth at most) instead of one full build per report: a
//! change is in the snapshot within about five build times. A caller that must
//! not answer before decisions see its change awaits [`Snapshots::refreshed`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{Notify, watch};

use super::Fleet;
use super::bgp::point;
use super::steer::{self, Node, Policy, RoutePref, Served, Snapshot};

/// The shortest gap between two builds.
pub const MIN_GAP: Duration = Duration::from_millis(10);

pub struct Snapshots {
    current: ArcSwap<Snapshot>,
    built: Mutex<Instant>,
    /// Changes asked for so far (a counter), and the count the published
    /// snapshot includes.
    wanted: AtomicU64,
    published: watch::Sender<u64>,
    wake: Notify,
    /// Whether the builder task runs; without it, callers build inline.
    builder: AtomicBool,
}

impl Snapshots {
    /// An empty snapshot, counted as built at `now`.
    pub fn new(policy: Policy, now: Instant) -> Snapshots {
        Snapshots {
            current: ArcSwap::from_pointee(Snapshot::build(
                Vec::new(),
                Vec::<Served>::new(),
                Vec::new(),
                policy,
            )),
            built: Mutex::new(now),
            wanted: AtomicU64::new(0),
            published: watch::Sender::new(0),
            wake: Notify::new(),
            builder: AtomicBool::new(false),
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

    /// Something decisions read changed: have a snapshot built soon. Returns
    /// the ticket [`Snapshots::refreshed`] waits for.
    fn request(&self) -> u64 {
        let ticket = self.wanted.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake.notify_one();
        ticket
    }
}

/// Something decisions read changed (health, inventory, prefixes, another
/// instance's change): rebuild soon, without waiting for it.
pub fn changed(fleet: &Fleet) {
    if fleet.snapshots.builder.load(Ordering::SeqCst) {
        fleet.snapshots.request();
    } else {
        rebuild(fleet, Instant::now());
    }
}

/// Like [`changed`], and return once decisions see the change (a snapshot
/// built after this call is published).
pub async fn refreshed(fleet: &Fleet) {
    let snapshots = &fleet.snapshots;
    if !snapshots.builder.load(Ordering::SeqCst) {
        rebuild(fleet, Instant::now());
        return;
    }
    let ticket = snapshots.request();
    let mut published = snapshots.published.subscribe();
    // The builder publishes u64::MAX when it stops, so this cannot hang.
    let _ = published.wait_for(|&p| p >= ticket).await;
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

/// The builder: rebuild when a change asks for it, and every
/// `steer.snapshot_refresh` (load reports and RIB imports do not ask), until
/// `stop` is set. The periodic build is stretched to twenty build times when
/// builds are slow (a fleet of tens of thousands), so it costs at most a
/// twentieth of a core: load figures arrive once per health interval anyway.
pub async fn refresh_loop(fleet: Arc<Fleet>, mut stop: watch::Receiver<bool>) {
    let snapshots = &fleet.snapshots;
    snapshots.builder.store(true, Ordering::SeqCst);
    let period = fleet.config.steer.snapshot_refresh;
    let mut periodic = tokio::time::Instant::now() + period;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(periodic) => {
                // Notice a RIB import made offline on the way.
                if let Err(e) = fleet.refresh_networks().await {
                    tracing::warn!(error = %e, "cannot read the RIB");
                }
            }
            _ = snapshots.wake.notified() => {}
            _ = stop.changed() => break,
        }
        // Every change asked for up to here is read by the build below.
        let covered = snapshots.wanted.load(Ordering::SeqCst);
        let started = Instant::now();
        // Off the runtime's threads: a fleet of thousands takes milliseconds.
        let f = Arc::clone(&fleet);
        if tokio::task::spawn_blocking(move || rebuild(&f, Instant::now()))
            .await
            .is_err()
        {
            tracing::error!("snapshot build failed");
        }
        snapshots.published.send_replace(covered);
        let took = started.elapsed();
        fleet.metrics.snapshot_built(took);
        periodic = tokio::time::Instant::now() + period.max(took * 20);
        tokio::select! {
            _ = tokio::time::sleep((took * 4).max(MIN_GAP)) => {}
            _ = stop.changed() => break,
        }
    }
    snapshots.builder.store(false, Ordering::SeqCst);
    snapshots.published.send_replace(u64::MAX);
}

pub fn policy(cfg: &crate::config::SteerConfig) -> Policy {
    Policy {
        max_utilisation: cfg.max_utilisation,
        km_per_utilisation: cfg.km_per_utilisation,
        stale_after: cfg.stale_after,
        fallbacks: cfg.fallbacks,
        good_path_bps: cfg.good_path_mbps * 1e6,
        ..Policy::default()
    }
}

fn build(state: &Fleet) -> Snapshot {
    let config = &state.config;
    let located: foldhash::HashMap<&str, Option<[f64; 2]>> = config
        .appliances
        .iter()
        .map(|a| (a.id.as_str(), a.location))
        .collect();
    let (catalog, generation) = state.catalog();
    let nodes: Vec<Node> = {
        let mut reg = state.registry();
        reg.appliances
            .iter_mut()
            .filter(|(_, a)| a.info.http_url.is_some() || a.info.https_url.is_some())
            .map(|(id, a)| Node {
                id: id.clone(),
                tier: a.info.tier,
                site: a.info.site.clone(),
                region: a.info.region.clone(),
                // The config's location, else where enrolment placed it.
                location: point(
                    located
                        .get(id.as_str())
                        .copied()
                        .flatten()
                        .or_else(|| a.bound.as_ref().and_then(|b| b.location)),
                ),
                up: a.health.up,
                draining: a.last.as_ref().is_some_and(|h| h.status == "draining"),
                utilisation: a.last.as_ref().map_or(0.0, |h| {
                    h.egress_bps as f64 / a.info.capacity_bps.max(1) as f64
                }),
                load_reported_at: a.last_seen,
                renditions: a.complete_renditions(&catalog, generation),
            })
            .collect()
    };
    // What each embedded appliance serves: its configured prefixes (an
    // override that always applies) plus what its ISP's router announced.
    // Learned prefixes carry the ISP's preference (communities, MED).
    let mut served: Vec<Served> = config
        .appliances
        .iter()
        .flat_map(|a| {
            a.serves
                .iter()
                .map(move |p| Served::from((*p, a.id.clone())))
        })
        .collect();
    {
        let fallback = &config.steer.fallback_communities;
        let reg = state.registry();
        for (id, a) in &reg.appliances {
            served.extend(a.learned.iter().map(|(p, attrs)| Served {
                prefix: *p,
                appliance: id.clone(),
                pref: RoutePref {
                    fallback: attrs.communities.iter().any(|c| fallback.contains(c)),
                    med: attrs.med.unwrap_or(0),
                },
            }));
        }
    }
    let mut snap = Snapshot::build_with(
        nodes,
        served,
        state.networks.load_full(),
        policy(&config.steer),
    );
    // What players measured: paths too slow, with confidence, take no new
    // viewers from their network; the others' scores use it as far as it is
    // trusted.
    let floor = config.steer.min_path_mbps * 1e6;
    let sure = config.steer.min_path_confidence;
    let measured: Vec<(String, String, steer::Measured)> = state
        .paths
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .all(crate::unix_now())
        .into_iter()
        .filter(|(_, _, e)| e.confidence > 0.0)
        .map(|(net, a, e)| {
            let m = steer::Measured {
                slow: e.confidence >= sure && e.throughput_bps < floor,
                throughput_bps: e.throughput_bps,
                ttfb_ms: e.ttfb_ms,
                confidence: e.confidence,
            };
            (net.to_owned(), a.to_owned(), m)
        })
        .collect();
    let slow = measured.iter().filter(|(_, _, m)| m.slow).count();
    if slow > 0 {
        tracing::debug!(paths = slow, "paths measured too slow");
    }
    let networks: std::collections::HashSet<&str> =
        measured.iter().map(|(n, _, _)| n.as_str()).collect();
    let m = &state.metrics;
    m.measured_networks.set(networks.len() as i64);
    m.measured_paths.set(measured.len() as i64);
    m.slow_paths.set(slow as i64);
    snap.set_measured_paths(measured);
    snap
}
