//! `GET /v1/home`: rows of titles. Personalised rows come from the
//! recommendation service (`steering recommender`, `[recommendations] url`),
//! cached per profile for `cache_ttl`; when it fails or is slow, the
//! profile's last good rows are served (marked stale) up to `stale_for` old,
//! else the page is built from what steering has itself: popular titles in
//! the viewer's region (recent plays with time decay). A continue-watching
//! row comes from bookmarks either way. Never a title the account may not
//! play now.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::Viewers;
use super::accounts;
use super::deps::{DepError, Guard};
use crate::http::ApiError;
use crate::store::TitleBrief;

/// The backend's answer: `{"model_version": "...", "rows": [{"title": "...",
/// "kind": "...", "because": "t1", "items": ["t1", ...]}]}` (`model_version`,
/// `kind` and `because` optional).
#[derive(Debug, Clone, Deserialize)]
pub struct BackendRows {
    #[serde(default)]
    pub model_version: Option<String>,
    pub rows: Vec<BackendRow>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BackendRow {
    pub title: String,
    #[serde(default)]
    pub kind: Option<String>,
    /// The title a "because you watched" row is about.
    #[serde(default)]
    pub because: Option<String>,
    pub items: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Row {
    pub title: String,
    /// `continue-watching`, `popular`, or the service's kind (`top-picks`,
    /// `because-you-watched`, `trending`, `new-releases`; `personalised` when
    /// it gives none).
    pub kind: String,
    /// Why these titles (e.g. "Because you watched One").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub items: Vec<Item>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Item {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_position: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Home {
    pub rows: Vec<Row>,
    /// True when the personalised source was not used.
    pub fallback: bool,
    /// The personalised rows are a profile's last good ones, served while
    /// the service fails.
    pub stale: bool,
    /// The model that ranked the personalised rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// Dependencies that failed while building this page.
    pub degraded: Vec<&'static str>,
}

/// A profile's rows as last answered.
struct Cached {
    at: Instant,
    rows: Arc<BackendRows>,
}

pub struct Recommendations {
    url: Option<String>,
    client: Option<reqwest::Client>,
    pub guard: Guard,
    cache: Mutex<lru::LruCache<(String, String), Cached>>,
    ttl: Duration,
    stale_for: Duration,
}

/// Where a page's personalised rows came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Service,
    /// The service failed: the last good rows.
    Stale,
}

impl Recommendations {
    pub fn new(guard: Guard, cfg: &crate::config::RecommendationsConfig) -> Recommendations {
        let url = cfg.url.clone();
        let client = url.as_ref().and_then(|_| {
            control_client::http_client(cfg.timeout, None)
                .map_err(|e| tracing::error!(error = %e, "recommendations disabled: cannot build HTTP client"))
                .ok()
        });
        Recommendations {
            url,
            client,
            guard,
            cache: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(cfg.cache_entries).unwrap_or(NonZeroUsize::MIN),
            )),
            ttl: cfg.cache_ttl,
            stale_for: cfg.stale_for,
        }
    }

    pub fn configured(&self) -> bool {
        self.client.is_some()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, lru::LruCache<(String, String), Cached>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A profile's rows: from the cache while fresh, else from the service
    /// (then cached), else the last good ones while not too old.
    pub async fn rows(
        &self,
        user: &str,
        profile: &str,
        region: &str,
        country: &str,
    ) -> Result<(Arc<BackendRows>, Source), DepError> {
        let key = (user.to_owned(), profile.to_owned());
        if let Some(c) = self.cache().get(&key)
            && c.at.elapsed() < self.ttl
        {
            return Ok((Arc::clone(&c.rows), Source::Cache));
        }
        match self.fetch(user, profile, region, country).await {
            Ok(rows) => {
                let rows = Arc::new(rows);
                self.cache().put(
                    key,
                    Cached {
                        at: Instant::now(),
                        rows: Arc::clone(&rows),
                    },
                );
                Ok((rows, Source::Service))
            }
            Err(e) => match self.cache().peek(&key) {
                Some(c) if c.at.elapsed() < self.stale_for => {
                    Ok((Arc::clone(&c.rows), Source::Stale))
                }
                _ => Err(e),
            },
        }
    }

    async fn fetch(
        &self,
        user: &str,
        profile: &str,
        region: &str,
        country: &str,
    ) -> Result<BackendRows, DepError> {
        let (Some(url), Some(client)) = (&self.url, &self.client) else {
            return Err(DepError::Failed(self.guard.name(), "not configured".into()));
        };
        let req = client.get(url).query(&[
            ("user", user),
            ("profile", profile),
            ("region", region),
            ("country", country),
        ]);
        self.guard
            .call(async move {
                let resp = req.send().await.map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("HTTP {}", resp.status()));
                }
                resp.json::<BackendRows>().await.map_err(|e| e.to_string())
            })
            .await
    }
}

#[derive(Deserialize)]
pub struct HomeQuery {
    profile: String,
}

/// `GET /v1/home?profile=...`.
pub async fn home(
    State(state): State<Arc<Viewers>>,
    Query(q): Query<HomeQuery>,
    headers: HeaderMap,
) -> Result<axum::Json<Home>, ApiError> {
    let now = crate::unix_now();
    let viewer = accounts::authenticate(&state, &headers, now).await?;
    accounts::check_profile(&state, &viewer, &q.profile).await?;
    let u = &viewer.user;
    let titles = state.titles().await?;
    let item = |id: &str, resume_position: Option<f64>| {
        let t = titles.get(id)?;
        t.playable(&u.region, &u.country, now).then(|| Item {
            id: t.id.clone(),
            name: t.name.clone(),
            resume_position,
        })
    };
    let mut rows = Vec::new();
    let mut degraded = Vec::new();
    match state.bookmarks.recent(&u.id, &q.profile, 20).await {
        Ok(marks) => {
            let items: Vec<Item> = marks
                .iter()
                .filter_map(|b| item(&b.title, Some(b.position)))
                .collect();
            if !items.is_empty() {
                rows.push(Row {
                    title: "Continue watching".into(),
                    kind: "continue-watching".into(),
                    reason: None,
                    items,
                });
            }
        }
        Err(_) => degraded.push("bookmarks"),
    }
    let personalised = if state.recommendations.configured() {
        match state
            .recommendations
            .rows(&u.id, &q.profile, &u.region, &u.country)
            .await
        {
            Ok((r, source)) => {
                if source == Source::Stale {
                    degraded.push("recommendations");
                }
                state
                    .metrics
                    .home_rows
                    .get_or_create(&crate::metrics::ReasonLabel {
                        reason: match source {
                            Source::Cache => "cache",
                            Source::Service => "service",
                            Source::Stale => "stale",
                        },
                    })
                    .inc();
                Some((r, source == Source::Stale))
            }
            Err(_) => {
                degraded.push("recommendations");
                None
            }
        }
    } else {
        None
    };
    let fallback = personalised.is_none();
    let (mut stale, mut model_version) = (false, None);
    match personalised {
        Some((backend, was_stale)) => {
            stale = was_stale;
            model_version = backend.model_version.clone();
            for r in &backend.rows {
                let items: Vec<Item> = r.items.iter().filter_map(|id| item(id, None)).collect();
                if items.is_empty() {
                    continue;
                }
                let reason = match (r.kind.as_deref(), &r.because) {
                    (Some("because-you-watched"), Some(t)) => Some(format!(
                        "Because you watched {}",
                        titles.get(t).map_or(t.as_str(), |x| x.name.as_str())
                    )),
                    (Some("top-picks"), _) => backend
                        .model_version
                        .as_ref()
                        .map(|v| format!("Ranked for this profile by model {v}")),
                    _ => None,
                };
                rows.push(Row {
                    title: r.title.clone(),
                    kind: r.kind.clone().unwrap_or_else(|| "personalised".into()),
                    reason,
                    items,
                });
            }
        }
        None => {
            state.metrics.home_fallbacks.inc();
            rows.push(popular_row(&state, &u.region, &titles.list, &item, now).await?);
        }
    }
    Ok(axum::Json(Home {
        rows,
        fallback,
        stale,
        model_version,
        degraded,
    }))
}

/// The regional fallback: titles by decayed plays in the region this week,
/// topped up from the catalogue (a region with no plays yet still gets a
/// page).
async fn popular_row(
    state: &Viewers,
    region: &str,
    titles: &[TitleBrief],
    item: &(dyn Fn(&str, Option<f64>) -> Option<Item> + Sync),
    now: u64,
) -> Result<Row, ApiError> {
    let week = 7 * 86_400;
    let plays = state
        .store
        .plays_since(region, now.saturating_sub(week), 50_000)
        .await?;
    let ranked =
        crate::popularity::popularity(plays.iter().map(|(t, at)| (t.as_str(), *at)), now, 86_400.0);
    let mut items: Vec<Item> = ranked
        .iter()
        .filter_map(|(id, _)| item(id, None))
        .take(20)
        .collect();
    for t in titles {
        if items.len() >= 20 {
            break;
        }
        if !items.iter().any(|i| i.id == t.id) {
            items.extend(item(&t.id, None));
        }
    }
    Ok(Row {
        title: format!("Popular in {region}"),
        kind: "popular".into(),
        reason: None,
        items,
    })
}
