//! The appliance-facing half: the registry of appliances with their health
//! (polled) and inventories (heartbeats), the URL-signing key schedule, BGP
//! data, fill plans, and the steering decisions the viewers half asks for
//! through `Steerer`, made on a snapshot rebuilt in the background.

pub mod api;
pub mod bgp;
pub mod cluster;
pub mod enrol;
pub mod fill;
pub mod fillplan;
pub mod keys;
pub mod measure;
pub mod placement;
pub mod poller;
pub mod registry;
pub mod snapshot;
pub mod steer;
pub mod store;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use control_client::wire::{PrefixReport, Tier};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::signing::KeyRing;
use crate::steerer::{IssuedPathway, Steerer};
use crate::store::StoreError;
use registry::{CatalogTotals, Registry};
use store::FleetStore;

/// The fleet half's state, shared by its handlers and background loops.
pub struct Fleet {
    pub config: Arc<Config>,
    pub store: Arc<dyn FleetStore>,
    pub registry: Mutex<Registry>,
    /// Where the key schedule publishes; shared with the viewers half.
    pub keys: Arc<KeyRing>,
    /// Catalog totals, refreshed periodically and on a miss (imports run offline).
    catalog: RwLock<Arc<CatalogTotals>>,
    /// Bumped after each change of `catalog` (what appliances hold completely
    /// is cached against it).
    catalog_generation: AtomicU64,
    pub metrics: Arc<Metrics>,
    /// The decision snapshot, rebuilt by one builder on changes and every
    /// `steer.snapshot_refresh` (see `snapshot`).
    pub snapshots: snapshot::Snapshots,
    /// Client networks (config plus the imported RIB), rebuilt only when those change.
    networks: ArcSwap<steer::Networks>,
    /// Generation of the RIB import the networks were built from.
    rib_generation: AtomicU64,
    /// When the health poller last started a round (for `/health`).
    poller_tick: Mutex<Instant>,
    /// What players measured, per client network and appliance.
    pub paths: Mutex<measure::Paths>,
    /// This instance among the others sharing the store.
    pub cluster: cluster::Cluster,
    /// The health poller's HTTP client, built on first use.
    health_client: std::sync::OnceLock<Option<reqwest::Client>>,
    /// The demand forecast and the placements made from it (see `fill`).
    pub placements: fill::Placements,
}

impl Fleet {
    /// Merge configured appliances into the store, rebuild the registry (with
    /// inventories and learned prefixes) from it, and apply the key schedule.
    pub async fn load(
        config: Arc<Config>,
        store: Arc<dyn FleetStore>,
        keys: Arc<KeyRing>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Fleet>, StoreError> {
        let instance = &config.instance;
        let shared = matches!(
            crate::store::Location::parse(&config.database),
            crate::store::Location::Postgres(_)
        );
        let cluster = cluster::Cluster::new(
            instance.id(),
            instance.region.clone(),
            instance.sync_interval,
            shared,
        );
        cluster.begin(store.as_ref()).await?;
        // Concurrently, so a fleet of thousands is declared in a few group
        // commits rather than one commit each.
        {
            use futures_util::{StreamExt, TryStreamExt};
            let now = crate::unix_now();
            futures_util::stream::iter(&config.appliances)
                .map(|a| {
                    let store = &store;
                    async move {
                        store
                            .declare_appliance(
                                &a.id,
                                &a.info(),
                                &crate::sha256_hex(&a.credential),
                                now,
                            )
                            .await
                    }
                })
                .buffer_unordered(256)
                .try_collect::<()>()
                .await?;
        }
        let mut registry = Registry::default();
        for row in store.appliances().await? {
            let (id, revoked) = (row.id.clone(), row.revoked);
            if revoked && config.appliances.iter().any(|a| a.id == id) {
                tracing::warn!(appliance = %id, "declared in the config but its credential is revoked; give it a new credential to bring it back");
            }
            registry.apply_row(row);
            if revoked {
                continue;
            }
            let inv = store.inventory(&id).await?;
            if inv.version > 0 {
                registry.set_inventory(&id, inv.version, inv.renditions);
            }
        }
        for row in store.learned_prefixes().await? {
            let report = PrefixReport::Full {
                version: row.version,
                prefixes: row.prefixes,
                attrs: row.attrs,
            };
            registry.take_prefixes(&row.appliance, &report);
        }
        let rib_generation = store.rib_generation().await?;
        let rib = store.rib().await?;
        let catalog = store.catalog_totals().await?;
        let now = Instant::now();
        let fleet = Arc::new(Fleet {
            catalog: RwLock::new(Arc::new(catalog)),
            catalog_generation: AtomicU64::new(0),
            registry: Mutex::new(registry),
            snapshots: snapshot::Snapshots::new(snapshot::policy(&config.steer), now),
            networks: ArcSwap::from_pointee(bgp::networks(&config, &rib)),
            rib_generation: AtomicU64::new(rib_generation),
            poller_tick: Mutex::new(now),
            paths: Mutex::new(measure::Paths::new(
                config.steer.measure_half_life,
                config.steer.measure_networks,
            )),
            cluster,
            health_client: std::sync::OnceLock::new(),
            placements: fill::Placements::default(),
            keys,
            metrics,
            store,
            config,
        });
        fleet.rotate_keys().await?;
        cluster::take_all_live(&fleet).await?;
        snapshot::rebuild(&fleet, now);
        Ok(fleet)
    }

    /// The background loops: health polling, the key schedule (and SIGHUP
    /// reloads), snapshot rebuilds. Each ends when `stop` turns true.
    pub fn spawn_loops(
        self: &Arc<Self>,
        reload: Arc<Notify>,
        stop: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        vec![
            tokio::spawn(poller::poll_loop(Arc::clone(self), stop.clone())),
            tokio::spawn(keys::key_loop(Arc::clone(self), reload, stop.clone())),
            tokio::spawn(snapshot::refresh_loop(Arc::clone(self), stop.clone())),
            tokio::spawn(cluster::sync_loop(Arc::clone(self), stop)),
        ]
    }

    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Apply the key schedule now: create a key when one is due, drop
    /// long-retired ones (one atomic step, whichever instance gets there
    /// first), and publish the set.
    pub async fn rotate_keys(&self) -> Result<(), StoreError> {
        let now = crate::unix_now();
        let k = &self.config.keys;
        let (rotate_every, lead, lifetime) = (
            k.rotate_every.as_secs(),
            k.lead().as_secs(),
            k.lifetime.as_secs(),
        );
        let held = self
            .store
            .step_keys(Box::new(move |held| {
                let plan = keys::plan(held, now, rotate_every);
                let create = plan.create.then(|| {
                    let key = keys::new_key(now, keys::lead_for(held, now, lead), lifetime);
                    tracing::info!(key = %key.id, "signing key created");
                    (key, now)
                });
                store::KeyStep {
                    create,
                    delete_retired_before: plan.delete_retired_before,
                }
            }))
            .await?;
        let newest = held.iter().map(|(_, created)| *created).max();
        self.keys.set(keys::key_set(&held), newest);
        Ok(())
    }

    /// Re-read the keys (another instance stepped the schedule) and publish them.
    pub async fn publish_keys(&self) -> Result<(), StoreError> {
        let held = self.store.keys().await?;
        let newest = held.iter().map(|(_, created)| *created).max();
        self.keys.set(keys::key_set(&held), newest);
        Ok(())
    }

    /// Rebuild the client networks if a RIB was imported since they were built.
    pub async fn refresh_networks(&self) -> Result<(), StoreError> {
        let generation = self.store.rib_generation().await?;
        if generation == self.rib_generation.load(Ordering::Relaxed) {
            return Ok(());
        }
        let rib = self.store.rib().await?;
        self.networks
            .store(Arc::new(bgp::networks(&self.config, &rib)));
        self.rib_generation.store(generation, Ordering::Relaxed);
        tracing::info!(
            prefixes = rib.len(),
            generation,
            "client networks rebuilt from the RIB"
        );
        Ok(())
    }

    /// Re-read the catalog totals (re-imports change them).
    pub async fn refresh_catalog(&self) -> Result<(), StoreError> {
        let totals = self.store.catalog_totals().await?;
        let mut held = self.catalog.write().unwrap_or_else(|p| p.into_inner());
        if **held != totals {
            *held = Arc::new(totals);
            self.catalog_generation.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    /// The catalog totals now, and their generation. The generation is read
    /// first: a change landing in between is then seen again at the next call.
    pub fn catalog(&self) -> (Arc<CatalogTotals>, u64) {
        let generation = self.catalog_generation.load(Ordering::SeqCst);
        let totals = Arc::clone(&self.catalog.read().unwrap_or_else(|p| p.into_inner()));
        (totals, generation)
    }

    /// Whether the catalog has `rendition`, from memory or, on a miss, the store
    /// (so an import made while steering runs is seen at once).
    pub async fn knows_rendition(&self, rendition: &str) -> Result<bool, StoreError> {
        if self
            .catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(rendition)
        {
            return Ok(true);
        }
        match self.store.rendition_totals(rendition).await? {
            Some(t) => {
                let mut held = self.catalog.write().unwrap_or_else(|p| p.into_inner());
                Arc::make_mut(&mut held).insert(rendition.to_owned(), t);
                self.catalog_generation.fetch_add(1, Ordering::SeqCst);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Appliances (up, down, draining), for the metrics.
    pub fn appliance_states(&self) -> (i64, i64, i64) {
        let (mut up, mut down, mut draining) = (0, 0, 0);
        for a in self.registry().appliances.values() {
            if !a.health.up {
                down += 1;
            } else if a.last.as_ref().is_some_and(|h| h.status == "draining") {
                draining += 1;
            } else {
                up += 1;
            }
        }
        (up, down, draining)
    }

    /// The one-line STATUS= for `systemctl status`.
    pub fn status_line(&self) -> String {
        let (total, up) = {
            let r = self.registry();
            let up = r.appliances.values().filter(|a| a.health.up).count();
            (r.appliances.len(), up)
        };
        let titles = self.catalog.read().unwrap_or_else(|p| p.into_inner()).len();
        format!("serving: {up} of {total} appliances up; {titles} renditions in the catalogue")
    }

    /// When the health poller last started a round.
    pub fn poller_ticked(&self) -> Instant {
        *self.poller_tick.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn poller_tick(&self, now: Instant) {
        *self.poller_tick.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }
}

impl Fleet {
    /// The client network a measurement is filed under: the longest client
    /// network (`[[network]]`, the imported RIB) that matches, else the
    /// client's /24 (IPv4) or /48 (IPv6).
    pub fn network_of(&self, client: IpAddr) -> String {
        self.snapshots.current().network_key(client)
    }
}

impl Steerer for Fleet {
    fn measured(&self, client: IpAddr, play: &str, samples: &[measure::Sample]) {
        let net = self.network_of(client);
        self.paths
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(&net, play, samples, crate::unix_now());
    }

    /// Steer, then turn the picks (and the origin, last) into signed pathways.
    fn steer(&self, client: IpAddr, renditions: &[&str], token: &str) -> Vec<IssuedPathway> {
        let now = Instant::now();
        let snap = self.snapshots.current();
        let decision = steer::decide(&snap, client, renditions, now, &mut rand::rng());
        if decision.overflowed {
            tracing::info!(%client, network = ?decision.network, "preferred tier saturated; overflowed");
        }
        let prefer_https = self.config.play.prefer_https;
        let mut out = Vec::with_capacity(decision.picks.len() + 1);
        {
            let reg = self.registry();
            for pick in &decision.picks {
                let node = snap.node(pick.node);
                let Some(a) = reg.appliances.get(&node.id) else {
                    continue;
                };
                let Some(url) = api::appliance_url(&a.info, prefer_https) else {
                    continue;
                };
                out.push(IssuedPathway {
                    id: node.id.clone(),
                    tier: a.info.tier,
                    site: a.info.site.clone(),
                    reason: pick.reason.as_str().to_owned(),
                    base_url: format!("{}/t/{token}/", url.trim_end_matches('/')),
                });
            }
        }
        if let Some(origin) = &self.config.origin_url {
            out.push(IssuedPathway {
                id: "origin".into(),
                tier: Tier::Origin,
                site: "origin".into(),
                reason: "origin".into(),
                base_url: format!("{}/t/{token}/", origin.trim_end_matches('/')),
            });
        }
        out
    }

    fn priority(
        &self,
        client: IpAddr,
        renditions: &[&str],
        pathways: &[IssuedPathway],
        sticky: Option<&str>,
    ) -> Vec<String> {
        let snap = self.snapshots.current();
        let appliances: Vec<String> = pathways
            .iter()
            .filter(|p| p.tier != Tier::Origin)
            .map(|p| p.id.clone())
            .collect();
        let mut priority = steer::pathway_priority(
            &snap,
            client,
            renditions,
            &appliances,
            sticky,
            Instant::now(),
        );
        if pathways.iter().any(|p| p.tier == Tier::Origin) {
            priority.push("origin".into());
        }
        priority
    }
}
