//! `GET /v1/home`: rows of titles. Personalised rows come from a configured
//! recommendation backend; when it is unset, slow or down, the page is built
//! from what steering has itself: popular titles in the viewer's region (recent
//! plays with time decay) and a continue-watching row from bookmarks.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::Viewers;
use super::accounts;
use super::deps::{DepError, Guard};
use crate::http::ApiError;

/// The backend's answer: `{"rows": [{"title": "...", "items": ["t1", ...]}]}`.
#[derive(Debug, Deserialize)]
struct BackendRows {
    rows: Vec<BackendRow>,
}

#[derive(Debug, Deserialize)]
struct BackendRow {
    title: String,
    items: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Row {
    pub title: String,
    /// `personalised`, `popular` or `continue-watching`.
    pub kind: &'static str,
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
    /// Dependencies that failed while building this page.
    pub degraded: Vec<&'static str>,
}

pub struct Recommendations {
    url: Option<String>,
    client: Option<reqwest::Client>,
    pub guard: Guard,
}

impl Recommendations {
    pub fn new(url: Option<String>, guard: Guard, timeout: std::time::Duration) -> Recommendations {
        let client = url.as_ref().and_then(|_| {
            control_client::http_client(timeout, None)
                .map_err(|e| tracing::error!(error = %e, "recommendations disabled: cannot build HTTP client"))
                .ok()
        });
        Recommendations { url, client, guard }
    }

    pub fn configured(&self) -> bool {
        self.client.is_some()
    }

    /// Personalised rows as `(row title, title ids)`.
    pub async fn rows(
        &self,
        user: &str,
        profile: &str,
        region: &str,
    ) -> Result<Vec<(String, Vec<String>)>, DepError> {
        let (Some(url), Some(client)) = (&self.url, &self.client) else {
            return Err(DepError::Failed(self.guard.name(), "not configured".into()));
        };
        let req =
            client
                .get(url)
                .query(&[("user", user), ("profile", profile), ("region", region)]);
        let body: BackendRows = self
            .guard
            .call(async move {
                let resp = req.send().await.map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("HTTP {}", resp.status()));
                }
                resp.json::<BackendRows>().await.map_err(|e| e.to_string())
            })
            .await?;
        Ok(body.rows.into_iter().map(|r| (r.title, r.items)).collect())
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
    let available: Vec<(String, String)> = state
        .store
        .title_names()
        .await?
        .into_iter()
        .filter(|(_, _, regions)| {
            regions
                .iter()
                .any(|r| r == "*" || *r == u.region || *r == u.country)
        })
        .map(|(id, name, _)| (id, name))
        .collect();
    let item = |id: &str, resume_position: Option<f64>| {
        available
            .iter()
            .find(|(t, _)| t == id)
            .map(|(id, name)| Item {
                id: id.clone(),
                name: name.clone(),
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
                    kind: "continue-watching",
                    items,
                });
            }
        }
        Err(_) => degraded.push("bookmarks"),
    }
    let personalised = if state.recommendations.configured() {
        match state
            .recommendations
            .rows(&u.id, &q.profile, &u.region)
            .await
        {
            Ok(r) => Some(r),
            Err(_) => {
                degraded.push("recommendations");
                None
            }
        }
    } else {
        None
    };
    let fallback = personalised.is_none();
    match personalised {
        Some(backend_rows) => {
            for (title, ids) in backend_rows {
                let items: Vec<Item> = ids.iter().filter_map(|id| item(id, None)).collect();
                if !items.is_empty() {
                    rows.push(Row {
                        title,
                        kind: "personalised",
                        items,
                    });
                }
            }
        }
        None => {
            state.metrics.home_fallbacks.inc();
            let week = 7 * 86_400;
            let plays = state
                .store
                .plays_since(&u.region, now.saturating_sub(week), 50_000)
                .await?;
            let ranked = crate::popularity::popularity(&plays, now, 86_400.0);
            let mut items: Vec<Item> = ranked
                .iter()
                .filter_map(|(id, _)| item(id, None))
                .take(20)
                .collect();
            // A region with no plays yet still gets a page: the catalog.
            for (id, _) in &available {
                if items.len() >= 20 {
                    break;
                }
                if !items.iter().any(|i| &i.id == id) {
                    items.extend(item(id, None));
                }
            }
            rows.push(Row {
                title: format!("Popular in {}", u.region),
                kind: "popular",
                items,
            });
        }
    }
    Ok(axum::Json(Home {
        rows,
        fallback,
        degraded,
    }))
}
