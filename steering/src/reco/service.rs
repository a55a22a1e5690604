//! `steering recommender`: trains the model from the store's play history at
//! start and every `recommender.retrain_every`, and answers
//! `GET /rows?user=&profile=&region=` with the profile's rows (the format
//! steering's `[recommendations] url` expects) and `GET /health`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::model::{self, Model, Params, RowsInput};
use crate::config::{Config, RecommenderConfig};
use crate::forecast;
use crate::http::ApiError;
use crate::store::{Store, TitleBrief};

/// What a training produced: the model and what rows need besides it.
pub struct Trained {
    pub model: Model,
    /// Per region, titles by recent plays.
    trending: HashMap<String, Vec<String>>,
    /// The catalogue by id, as read for this training.
    titles: HashMap<String, TitleBrief>,
    /// Titles with a release time, newest first.
    releases: Vec<(u64, String)>,
    took: Duration,
}

pub struct Recommender {
    store: Arc<dyn Store>,
    config: RecommenderConfig,
    /// A launch's audience when its title gives none (`fill.launch_audience`).
    launch_audience: f64,
    current: ArcSwapOption<Trained>,
}

impl Recommender {
    pub fn new(
        store: Arc<dyn Store>,
        config: RecommenderConfig,
        launch_audience: f64,
    ) -> Arc<Recommender> {
        Arc::new(Recommender {
            store,
            config,
            launch_audience,
            current: ArcSwapOption::empty(),
        })
    }

    /// Read the history, train (on the blocking pool: seconds of CPU), and
    /// serve the new model.
    pub async fn train_now(&self) -> Result<(), String> {
        let now = crate::unix_now();
        let since = now.saturating_sub(self.config.lookback.as_secs());
        let events = self
            .store
            .viewing_since(since, self.config.max_events)
            .await
            .map_err(|e| e.to_string())?;
        let titles = self.store.titles_brief().await.map_err(|e| e.to_string())?;
        let counts = self
            .store
            .demand(now, forecast::HISTORY_DAYS as u32)
            .await
            .map_err(|e| e.to_string())?;
        let half_life = self.config.trending_half_life.as_secs_f64();
        let launch_audience = self.launch_audience;
        let started = Instant::now();
        let trained = tokio::task::spawn_blocking(move || {
            let model = super::eval::train_tuned(&events, now, &Params::default());
            // Trending: the demand forecast's next 24 hours per region (the
            // one fill planning places content by); a region without one,
            // its decayed plays.
            let metas: Vec<forecast::TitleMeta<'_>> = titles
                .iter()
                .map(|t| forecast::TitleMeta {
                    id: &t.id,
                    release: t.release,
                    audience: t.audience.unwrap_or(launch_audience),
                })
                .collect();
            let params = forecast::Params::default();
            let mut trending: HashMap<String, Vec<String>> =
                forecast::histories(&counts, forecast::HISTORY_DAYS)
                    .iter()
                    .map(|(region, h)| {
                        let f = forecast::forecast(h, &metas, now, &params);
                        let mut by: Vec<(&String, &f64)> = f.next_day.iter().collect();
                        by.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
                        let list = by.into_iter().take(200).map(|(t, _)| t.clone()).collect();
                        (region.clone(), list)
                    })
                    .collect();
            let mut regions: Vec<&str> = events.iter().map(|e| e.region.as_str()).collect();
            regions.sort_unstable();
            regions.dedup();
            for r in regions {
                let list = trending.entry(r.to_owned()).or_default();
                if list.is_empty() {
                    *list = model::trending(&events, r, now, half_life)
                        .into_iter()
                        .take(200)
                        .map(str::to_owned)
                        .collect();
                }
            }
            let mut releases: Vec<(u64, String)> = titles
                .iter()
                .filter_map(|t| Some((t.release?, t.id.clone())))
                .collect();
            releases.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            Trained {
                model,
                trending,
                titles: titles.into_iter().map(|t| (t.id.clone(), t)).collect(),
                releases,
                took: started.elapsed(),
            }
        })
        .await
        .map_err(|e| e.to_string())?;
        tracing::info!(
            version = %trained.model.version,
            events = trained.model.events,
            seconds = trained.took.as_secs_f64(),
            "recommendation model trained"
        );
        self.current.store(Some(Arc::new(trained)));
        Ok(())
    }

    /// Train at start and every `retrain_every`, until `stop`.
    pub async fn train_loop(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.train_now().await {
                tracing::error!(error = %e, "training failed; serving the previous model");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.retrain_every) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// The rows for one profile, as steering's home page takes them.
    pub async fn rows(&self, q: &RowsQuery) -> Result<RowsAnswer, ApiError> {
        let Some(t) = self.current.load_full() else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the first model is still being trained",
            ));
        };
        let history = self.store.history(&q.user, &q.profile, 200).await?;
        let history: Vec<&str> = history.iter().map(String::as_str).collect();
        let now = crate::unix_now();
        let allowed = |id: &str| {
            t.titles
                .get(id)
                .is_some_and(|b| b.playable(&q.region, q.country.as_deref().unwrap_or(""), now))
        };
        let new_since = now.saturating_sub(self.config.new_for.as_secs());
        let new: Vec<&str> = t
            .releases
            .iter()
            .skip_while(|(r, _)| *r > now)
            .take_while(|(r, _)| *r > new_since)
            .map(|(_, id)| id.as_str())
            .collect();
        let trending: Vec<&str> = t
            .trending
            .get(&q.region)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(String::as_str)
            .collect();
        let profile = format!("{}/{}", q.user, q.profile);
        let input = RowsInput {
            profile: &profile,
            history: &history,
            trending: &trending,
            new_releases: &new,
            allowed: &allowed,
            per_row: self.config.per_row,
        };
        let name = |id: &str| t.titles.get(id).map_or(id.to_owned(), |b| b.name.clone());
        let rows = model::rows(&t.model, &input)
            .into_iter()
            .map(|r| {
                let title = match r.kind.as_str() {
                    "top-picks" => "Top picks for you".to_owned(),
                    "because-you-watched" => format!(
                        "Because you watched {}",
                        name(r.because.as_deref().unwrap_or(""))
                    ),
                    "trending" => format!("Trending in {}", q.region),
                    _ => "New releases".to_owned(),
                };
                AnswerRow {
                    title,
                    kind: r.kind,
                    because: r.because,
                    items: r.items,
                }
            })
            .collect();
        Ok(RowsAnswer {
            model_version: t.model.version.clone(),
            rows,
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct RowsQuery {
    pub user: String,
    pub profile: String,
    pub region: String,
    #[serde(default)]
    pub country: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RowsAnswer {
    pub model_version: String,
    pub rows: Vec<AnswerRow>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AnswerRow {
    pub title: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub because: Option<String>,
    pub items: Vec<String>,
}

async fn rows(
    State(r): State<Arc<Recommender>>,
    Query(q): Query<RowsQuery>,
) -> Result<axum::Json<RowsAnswer>, ApiError> {
    r.rows(&q).await.map(axum::Json)
}

async fn health(State(r): State<Arc<Recommender>>) -> (StatusCode, axum::Json<serde_json::Value>) {
    match r.current.load_full() {
        Some(t) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({
                "status": "ok",
                "model_version": t.model.version,
                "trained_at": t.model.trained_at,
                "events": t.model.events,
                "training_seconds": t.took.as_secs_f64(),
            })),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "training"})),
        ),
    }
}

pub fn router(r: Arc<Recommender>) -> Router {
    Router::new()
        .route("/rows", get(rows))
        .route("/health", get(health))
        .with_state(r)
}

/// Run the service on `listener` until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let store = crate::store::open(&config.database, config.database_connections)
        .await
        .map_err(|e| e.to_string())?;
    let r = Recommender::new(
        store,
        config.recommender.clone(),
        config.fill.launch_audience,
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let training = tokio::spawn(Arc::clone(&r).train_loop(stop_rx));
    axum::serve(listener, router(r))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stop_tx.send(true);
    let _ = training.await;
    Ok(())
}
