//! `steering`: the thin central service, in two halves that share only a
//! narrow interface (`steerer::Steerer`: a play asks where its bytes come
//! from).
//!
//! - `fleet`: appliance-facing. The registry, health polling, heartbeats with
//!   inventory and BGP prefixes, the URL-signing key schedule, fill plans, and
//!   the steering decisions.
//! - `viewers`: viewer-facing. Accounts, entitlement, plays, per-play
//!   manifests, content steering, bookmarks, home rows.
//!
//! Shared: `config`, `catalog` (import), `manifest` (packaged-manifest
//! rewrites), `metrics`, `signing` (the keys both halves sign with), `store`
//! (opening, migrations, the catalog), `http` (error answers), `cli`; and this
//! module, which builds both halves and serves their routers merged, with
//! `/health` (`readiness`), `/metrics` and the fallbacks.

pub mod catalog;
pub mod cli;
pub mod config;
pub mod drm;
pub mod fleet;
pub mod forecast;
pub mod http;
pub mod manifest;
pub mod metrics;
pub mod popularity;
pub mod readiness;
pub mod reco;
pub mod signing;
pub mod steerer;
pub mod store;
pub mod viewers;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::fleet::Fleet;
use crate::http::ApiError;
use crate::metrics::Metrics;
use crate::signing::KeyRing;
use crate::store::{Store, StoreError};
use crate::viewers::Viewers;

/// Lowercase hex SHA-256, how credentials are stored and compared.
pub(crate) fn sha256_hex(s: impl AsRef<[u8]>) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, s.as_ref()))
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Both halves and what they share.
pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub fleet: Arc<Fleet>,
    pub viewers: Arc<Viewers>,
    /// Notified on SIGHUP: re-read the RIB, catalogue totals and keys now.
    pub reload: Arc<Notify>,
    /// A store probe is running (see `readiness`).
    probing: Arc<AtomicBool>,
}

impl App {
    /// The one-line STATUS= for `systemctl status`.
    pub fn status_line(&self) -> String {
        self.fleet.status_line()
    }
}

/// Open the store and build both halves: the fleet from what the store holds
/// (registry, inventories, keys), the viewers around the fleet's `Steerer`.
pub async fn load_state(config: Config) -> Result<Arc<App>, StoreError> {
    let config = Arc::new(config);
    let store = store::open(&config.database, config.database_connections).await?;
    let metrics = Arc::new(Metrics::new());
    let keys = Arc::new(KeyRing::new(fleet::keys::key_set(&[])));
    let fleet = Fleet::load(
        Arc::clone(&config),
        store.clone(),
        Arc::clone(&keys),
        Arc::clone(&metrics),
    )
    .await?;
    let viewers = Arc::new(Viewers::new(
        Arc::clone(&config),
        store.clone(),
        keys,
        Arc::clone(&metrics),
        fleet.clone(),
    ));
    Ok(Arc::new(App {
        config,
        store,
        metrics,
        fleet,
        viewers,
        reload: Default::default(),
        probing: Default::default(),
    }))
}

/// Both halves' routes, and what belongs to neither: `/health`, `/metrics`,
/// the JSON fallbacks, the body limit and CORS.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.config.max_body_bytes;
    let shared = Router::new()
        .route("/health", get(readiness::health))
        .route("/metrics", get(metrics))
        .with_state(Arc::clone(&app));
    Router::new()
        .merge(fleet::api::router(Arc::clone(&app.fleet)))
        .merge(viewers::router(Arc::clone(&app.viewers)))
        .merge(shared)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(http::cors))
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    app.metrics.admission(app.viewers.admission.state());
    let body = app.metrics.render(app.fleet.appliance_states());
    (
        [(header::CONTENT_TYPE, service::metrics::CONTENT_TYPE)],
        body,
    )
}

/// Serve the API on `listener` until `shutdown` completes, with the fleet's
/// background loops running alongside.
pub async fn run(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut loops = app
        .fleet
        .spawn_loops(Arc::clone(&app.reload), stop_rx.clone());
    loops.push(tokio::spawn(viewers::recall::save_loop(
        Arc::clone(&app.viewers),
        stop_rx.clone(),
    )));
    loops.push(tokio::spawn(viewers::beats::flush_loop(
        Arc::clone(&app.viewers),
        app.config.play.heartbeat_flush,
        stop_rx.clone(),
    )));
    loops.push(tokio::spawn(viewers::beats::end_loop(
        Arc::clone(&app.viewers),
        stop_rx.clone(),
    )));
    loops.push(tokio::spawn(store::prune_loop(
        Arc::clone(&app.store),
        app.config.history.clone(),
        stop_rx,
    )));
    let service =
        router(Arc::clone(&app)).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let result = axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_tx.send(true);
    for task in loops {
        let _ = task.await;
    }
    result
}
