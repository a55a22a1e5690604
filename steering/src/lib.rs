//! `steering`: the thin central service: the appliance registry, health
//! polling, heartbeats with inventory, the URL-signing key schedule, and plays:
//! authorisation, steering, manifests with signed URLs, bookmarks, home rows;
//! and fill plans telling each appliance what to hold.

pub mod api;
pub mod bgp;
pub mod bookmarks;
pub mod catalog;
pub mod cli;
pub mod clientip;
pub mod config;
pub mod deps;
pub mod entitle;
pub mod fill;
pub mod fillplan;
pub mod fleet;
pub mod health;
pub mod home;
pub mod keys;
pub mod manifest;
pub mod metrics;
pub mod play;
pub mod registry;
pub mod steer;
pub mod store;
pub mod viewer;

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::AppState;
use crate::config::Config;
use crate::registry::Registry;
use crate::store::{Store, StoreError};

/// Lowercase hex SHA-256, how credentials are stored and compared.
pub(crate) fn sha256_hex(s: impl AsRef<[u8]>) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Open the store, merge configured appliances into it, and rebuild the
/// in-memory registry (with inventories) from it.
pub fn load_state(config: Config) -> Result<Arc<AppState>, StoreError> {
    let store = Store::open(&config.database)?;
    for a in &config.appliances {
        store.declare_appliance(&a.id, &a.info(), &sha256_hex(&a.credential), unix_now())?;
    }
    let mut registry = Registry::default();
    for row in store.appliances()? {
        registry.insert(&row.id, row.info, row.credential_sha256);
        let inv = store.inventory(&row.id)?;
        if inv.version > 0 {
            registry.set_inventory(&row.id, inv.version, inv.renditions);
        }
    }
    for (id, version, prefixes) in store.learned_prefixes()? {
        let report = control_client::wire::PrefixReport::Full { version, prefixes };
        registry.take_prefixes(&id, &report);
    }
    let rib_generation = store.rib_generation()?;
    let rib = store.rib()?;
    let metrics = metrics::Metrics::new();
    let bookmarks = bookmarks::Bookmarks::new(
        config.bookmarks_path(),
        deps::Guard::new("bookmarks", &config.bookmarks.guard(), &metrics),
        config.bookmarks.timeout,
    );
    let recommendations = home::Recommendations::new(
        config.recommendations.url.clone(),
        deps::Guard::new("recommendations", &config.recommendations.guard(), &metrics),
        config.recommendations.timeout,
    );
    let state = Arc::new(AppState {
        keys: RwLock::new(keys::key_set(&[])),
        catalog: RwLock::new(store.catalog_totals()?),
        registry: Mutex::new(registry),
        fleet: fleet::Fleet::new(fleet::policy(&config.steer)),
        networks: arc_swap::ArcSwap::from_pointee(bgp::networks(&config, &rib)),
        rib_generation: std::sync::atomic::AtomicU64::new(rib_generation),
        bookmarks,
        recommendations,
        metrics,
        store,
        config,
        reload: Default::default(),
    });
    rotate_keys(&state)?;
    Ok(state)
}

/// Apply the key schedule now: create a key when one is due, drop long-retired ones.
pub fn rotate_keys(state: &AppState) -> Result<(), StoreError> {
    let now = unix_now();
    let k = &state.config.keys;
    let held = state.store.keys()?;
    let plan = keys::plan(&held, now, k.rotate_every.as_secs());
    if plan.create {
        let lead = keys::lead_for(&held, now, k.lead().as_secs());
        let key = keys::new_key(now, lead, k.lifetime.as_secs());
        state.store.insert_key(&key, now)?;
        tracing::info!(key = %key.id, "signing key created");
    }
    state
        .store
        .delete_keys_retired_before(plan.delete_retired_before)?;
    let set = keys::key_set(&state.store.keys()?);
    *state.keys.write().unwrap_or_else(|p| p.into_inner()) = set;
    Ok(())
}

/// Rebuild the client networks if a RIB was imported since they were built.
pub fn refresh_networks(state: &AppState) -> Result<(), StoreError> {
    use std::sync::atomic::Ordering;
    let generation = state.store.rib_generation()?;
    if generation == state.rib_generation.load(Ordering::Relaxed) {
        return Ok(());
    }
    let rib = state.store.rib()?;
    state
        .networks
        .store(Arc::new(bgp::networks(&state.config, &rib)));
    state.rib_generation.store(generation, Ordering::Relaxed);
    tracing::info!(
        prefixes = rib.len(),
        generation,
        "client networks rebuilt from the RIB"
    );
    Ok(())
}

/// Serve the API on `listener` until `shutdown` completes.
pub async fn run(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let poller = tokio::spawn(health::poll_loop(Arc::clone(&state), stop_rx.clone()));
    let keys_task = tokio::spawn(key_loop(Arc::clone(&state), stop_rx));
    let app = api::router(Arc::clone(&state));
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_tx.send(true);
    let _ = poller.await;
    let _ = keys_task.await;
    result
}

async fn key_loop(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    // Checking once a minute keeps rotation within a minute of schedule.
    let every = state
        .config
        .keys
        .rotate_every
        .min(Duration::from_secs(60))
        .max(Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            reloading = async {
                tokio::select! {
                    _ = tick.tick() => false,
                    _ = state.reload.notified() => true,
                }
            } => {
                if let Err(e) = rotate_keys(&state) {
                    tracing::error!(error = %e, "key rotation failed; will retry");
                }
                // A RIB import (offline) changes the client networks.
                if let Err(e) = refresh_networks(&state) {
                    tracing::warn!(error = %e, "cannot read the RIB");
                }
                // Re-imports change totals: pick them up here too.
                match state.store.catalog_totals() {
                    Ok(t) => *state.catalog.write().unwrap_or_else(|p| p.into_inner()) = t,
                    Err(e) => tracing::warn!(error = %e, "cannot refresh catalog totals"),
                }
                if reloading {
                    tracing::info!("reloaded: keys, RIB and catalogue totals");
                    service::notify::ready(&state.status_line());
                }
            }
            _ = stop.changed() => return,
        }
    }
}
