//! The viewer-facing half: accounts and viewer tokens, plays (entitlement,
//! renditions, manifests, content steering, the DRM licence stub), bookmarks
//! and home rows, and the web player's files. Where a play's bytes come from
//! it asks the fleet half, through `Steerer`, and nothing else.

pub mod accounts;
pub mod admission;
pub mod beats;
pub mod bookmarks;
pub mod browse;
pub mod clientip;
pub mod deps;
pub mod entitle;
pub mod heartbeat;
pub mod home;
pub mod manifests;
pub mod play;
pub mod recall;
pub mod search;
pub mod store;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

use crate::config::Config;
use crate::http::ApiError;
use crate::metrics::Metrics;
use crate::signing::KeyRing;
use crate::steerer::Steerer;
use store::ViewerStore;

/// The viewers half's state, shared by its handlers.
pub struct Viewers {
    pub config: Arc<Config>,
    pub store: Arc<dyn ViewerStore>,
    /// URL signing (play tokens, licence URLs), with the fleet's keys.
    pub keys: Arc<KeyRing>,
    pub metrics: Arc<Metrics>,
    /// The one way into the fleet half.
    pub steerer: Arc<dyn Steerer>,
    pub bookmarks: bookmarks::Bookmarks,
    pub recommendations: home::Recommendations,
    /// What each play's content-steering poll last put first.
    pub steered: play::LastSteered,
    /// Recent answers of the store, for plays during an outage.
    pub recall: recall::Recall,
    /// The key-encryption key content keys are sealed under (`drm.key_file`).
    pub kek: Option<Arc<crate::drm::Kek>>,
    /// Commercial key systems' licence servers: key system → (config,
    /// credential, client).
    pub licence_proxies: std::collections::HashMap<String, manifests::Proxy>,
    /// Each title's content key ID as last read (None: clear), so manifests
    /// keep their protection signalling while the store is unreachable.
    pub key_ids: std::sync::Mutex<std::collections::HashMap<String, Option<[u8; 16]>>>,
    /// Which new plays are decided now (`[admission]`).
    pub admission: Arc<admission::Admission>,
    /// Plays being watched, and heartbeats' batched writes.
    pub beats: beats::Beats,
    /// The catalogue's titles as last read, and when (browse, search and
    /// home rows read them at every request; an import shows within
    /// `TITLES_FRESH`).
    titles: std::sync::Mutex<Option<(std::time::Instant, Arc<Titles>)>>,
}

/// The catalogue's titles as browse, search and home rows read them, with
/// an index by id (built once per read, not per request).
pub struct Titles {
    pub list: Vec<crate::store::TitleBrief>,
    index: std::collections::HashMap<String, usize>,
}

impl Titles {
    fn new(list: Vec<crate::store::TitleBrief>) -> Titles {
        let index = list
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        Titles { list, index }
    }

    pub fn get(&self, id: &str) -> Option<&crate::store::TitleBrief> {
        self.index.get(id).map(|&i| &self.list[i])
    }
}

/// How long the titles read for browse, search and home rows are reused.
const TITLES_FRESH: std::time::Duration = std::time::Duration::from_secs(5);

impl Viewers {
    /// Every title (id, name, regions, release), read at most every
    /// `TITLES_FRESH`; on a store error, the last read while there is one.
    pub async fn titles(&self) -> Result<Arc<Titles>, ApiError> {
        let held = self
            .titles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some((at, list)) = &held
            && at.elapsed() < TITLES_FRESH
        {
            return Ok(Arc::clone(list));
        }
        match self.store.titles_brief().await {
            Ok(list) => {
                let list = Arc::new(Titles::new(list));
                *self.titles.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((std::time::Instant::now(), Arc::clone(&list)));
                Ok(list)
            }
            Err(e) => held.map(|(_, l)| l).ok_or_else(|| e.into()),
        }
    }
}

impl Viewers {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn ViewerStore>,
        keys: Arc<KeyRing>,
        metrics: Arc<Metrics>,
        steerer: Arc<dyn Steerer>,
    ) -> Viewers {
        let bookmarks = bookmarks::Bookmarks::new(
            config.bookmarks_location(),
            deps::Guard::new("bookmarks", &config.bookmarks.guard(), &metrics),
            config.bookmarks.timeout,
        );
        let recommendations = home::Recommendations::new(
            deps::Guard::new("recommendations", &config.recommendations.guard(), &metrics),
            &config.recommendations,
        );
        // Checked by `Config::validate`; unreadable now, it is as if unset,
        // and licence requests say so.
        let kek = config
            .drm
            .key_file
            .as_deref()
            .and_then(|p| match crate::drm::Kek::load(p) {
                Ok(k) => Some(Arc::new(k)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read drm.key_file: no licences");
                    None
                }
            });
        let licence_proxies = config
            .drm
            .proxy
            .iter()
            .filter_map(|p| match manifests::Proxy::new(p) {
                Ok(proxy) => Some((p.key_system.clone(), proxy)),
                Err(e) => {
                    tracing::error!(key_system = %p.key_system, error = %e, "licence proxy disabled");
                    None
                }
            })
            .collect();
        Viewers {
            kek,
            licence_proxies,
            key_ids: std::sync::Mutex::default(),
            admission: Arc::new(admission::Admission::new(config.admission.clone())),
            beats: beats::Beats::new(
                config.play.heartbeat_plays,
                config.play.stream_timeout,
                config.play.heartbeat_position_every,
            ),
            recall: recall::Recall::new(config.play.outage_grace),
            config,
            store,
            keys,
            metrics,
            steerer,
            bookmarks,
            recommendations,
            steered: play::LastSteered::default(),
            titles: std::sync::Mutex::default(),
        }
    }

    /// Each guarded dependency's name and breaker state, for `/health`.
    pub fn breakers(&self) -> [(&'static str, &'static str); 2] {
        [
            (self.bookmarks.guard.name(), self.bookmarks.guard.state()),
            (
                self.recommendations.guard.name(),
                self.recommendations.guard.state(),
            ),
        ]
    }
}

pub fn router(viewers: Arc<Viewers>) -> Router {
    Router::new()
        .route("/v1/play", post(play::play))
        .route("/v1/plays/{id}", delete(play::stop))
        .route("/v1/plays/{id}/heartbeat", post(heartbeat::heartbeat))
        .route("/v1/plays/{id}/{file}", get(manifests::manifest))
        .route("/v1/steering/{id}/{protocol}", get(play::content_steering))
        .route("/v1/drm/{id}/license", post(manifests::drm_license))
        .route(
            "/v1/drm/{id}/license/{key_system}",
            post(manifests::proxied_license),
        )
        .route("/v1/bookmarks", post(accounts::bookmark))
        .route("/v1/home", get(home::home))
        .route("/v1/titles", get(browse::titles))
        .route("/v1/titles/{id}", get(browse::title))
        .route("/v1/search", get(browse::search))
        .route("/player/{*file}", get(player_file))
        .with_state(viewers)
}

/// `GET /player/<file>`: a file of `player_dir` (404 without one). Only plain
/// names below the directory: no `..`, no hidden files.
async fn player_file(
    State(state): State<Arc<Viewers>>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such file");
    let dir = state.config.player_dir.as_ref().ok_or_else(not_found)?;
    if file.is_empty()
        || file.len() > 256
        || file
            .split('/')
            .any(|seg| seg.is_empty() || seg.starts_with('.'))
        || !file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    {
        return Err(not_found());
    }
    // Small files, read rarely (a page load): the blocking pool is plenty.
    let path = dir.join(&file);
    let body = tokio::task::spawn_blocking(move || std::fs::read(path))
        .await
        .map_err(|_| not_found())?
        .map_err(|_| not_found())?;
    let content_type = match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        _ => "application/octet-stream",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}
