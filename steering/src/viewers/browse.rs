//! Browse and search the catalogue: `GET /v1/titles` (paged), `GET
//! /v1/titles/{id}` (metadata and the ladder a device may play), `GET
//! /v1/search?q=`. Only what the account may see: titles listed in its region
//! or country (a title not yet released is listed, marked `coming`).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::{Viewers, accounts, entitle};
use crate::http::ApiError;
use crate::store::TitleBrief;

#[derive(Debug, Serialize)]
pub struct Summary {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<u64>,
    /// Listed, not playable yet.
    pub coming: bool,
}

fn summary(t: &TitleBrief, now: u64) -> Summary {
    Summary {
        id: t.id.clone(),
        name: t.name.clone(),
        release: t.release,
        coming: t.release.is_some_and(|r| r > now),
    }
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    offset: usize,
    #[serde(default = "page")]
    limit: usize,
}

fn page() -> usize {
    50
}

#[derive(Debug, Serialize)]
pub struct Page {
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub items: Vec<Summary>,
}

fn bad(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_query", message)
}

/// `GET /v1/titles?offset=&limit=`: the account's titles by name.
pub async fn titles(
    State(state): State<Arc<Viewers>>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Result<axum::Json<Page>, ApiError> {
    if q.limit == 0 || q.limit > 500 {
        return Err(bad("limit: 1 to 500"));
    }
    let now = crate::unix_now();
    let viewer = accounts::authenticate(&state, &headers, now).await?;
    let u = &viewer.user;
    let all = state.titles().await?;
    let mut listed: Vec<&TitleBrief> = all
        .list
        .iter()
        .filter(|t| t.listed(&u.region, &u.country))
        .collect();
    listed.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    Ok(axum::Json(Page {
        total: listed.len(),
        offset: q.offset,
        limit: q.limit,
        items: listed
            .into_iter()
            .skip(q.offset)
            .take(q.limit)
            .map(|t| summary(t, now))
            .collect(),
    }))
}

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    q: String,
    #[serde(default = "hits")]
    limit: usize,
}

fn hits() -> usize {
    20
}

#[derive(Debug, Serialize)]
pub struct Hits {
    pub query: String,
    pub items: Vec<Summary>,
}

/// `GET /v1/search?q=&limit=`: prefix and typo-tolerant (see `search`).
pub async fn search(
    State(state): State<Arc<Viewers>>,
    Query(q): Query<SearchQuery>,
    headers: HeaderMap,
) -> Result<axum::Json<Hits>, ApiError> {
    if q.q.len() > 200 {
        return Err(bad("q: at most 200 bytes"));
    }
    if q.limit == 0 || q.limit > 100 {
        return Err(bad("limit: 1 to 100"));
    }
    let now = crate::unix_now();
    let viewer = accounts::authenticate(&state, &headers, now).await?;
    let u = &viewer.user;
    let all = state.titles().await?;
    let listed = all.list.iter().filter(|t| t.listed(&u.region, &u.country));
    let ids = super::search::search(
        listed.map(|t| (t.id.as_str(), t.name.as_str())),
        &q.q,
        q.limit,
    );
    let items = ids
        .into_iter()
        .filter_map(|id| all.get(id))
        .map(|t| summary(t, now))
        .collect();
    Ok(axum::Json(Hits { query: q.q, items }))
}

#[derive(Debug, Deserialize)]
pub struct TitleQuery {
    /// A device profile: the answer lists the renditions it may play under
    /// the account's plan.
    device: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Rung {
    pub id: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    pub bandwidth: u64,
}

#[derive(Debug, Serialize)]
pub struct Artwork {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// How long an artwork URL works.
const ARTWORK_TTL: u64 = 86_400;

#[derive(Debug, Serialize)]
pub struct Details {
    #[serde(flatten)]
    pub summary: Summary,
    /// Playable now by this account (region, release, subscription).
    pub playable: bool,
    /// Why not, when not (the play's refusal code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<&'static str>,
    /// The title's images (`artwork` in its `title.toml`), each with a URL
    /// on the origin signed for a day (none without an `origin_url`: the
    /// appliances hold renditions, not images).
    pub artwork: Vec<Artwork>,
    /// With `device`: per manifest format, the renditions it may play.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ladders: Option<std::collections::BTreeMap<String, Vec<Rung>>>,
}

/// `GET /v1/titles/{id}?device=`.
pub async fn title(
    State(state): State<Arc<Viewers>>,
    Path(id): Path<String>,
    Query(q): Query<TitleQuery>,
    headers: HeaderMap,
) -> Result<axum::Json<Details>, ApiError> {
    let now = crate::unix_now();
    let viewer = accounts::authenticate(&state, &headers, now).await?;
    let u = &viewer.user;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no title {id:?} here"),
        )
    };
    let record = state.store.title(&id).await?.ok_or_else(not_found)?;
    let brief = TitleBrief {
        id: record.id.clone(),
        name: record.name.clone(),
        regions: record.regions.clone(),
        release: record.release,
        audience: None,
    };
    if !brief.listed(&u.region, &u.country) {
        return Err(not_found());
    }
    let refusal = entitle::entitle(u, &record, now).err().map(|d| d.code());
    let ladders = match &q.device {
        None => None,
        Some(name) => {
            let device = state
                .config
                .devices
                .iter()
                .find(|d| &d.name == name)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "unknown_device",
                        format!("no device profile {name:?}"),
                    )
                })?;
            let plan = state.config.plans.iter().find(|p| p.name == u.plan);
            let selection = plan.and_then(|p| entitle::select(&record, device, p).ok());
            let mut out = std::collections::BTreeMap::new();
            if let Some(sel) = selection {
                for (protocol, ids) in [("hls", &sel.hls), ("dash", &sel.dash)] {
                    let rungs: Vec<Rung> = record
                        .renditions
                        .iter()
                        .filter(|r| ids.contains(&r.id))
                        .map(|r| Rung {
                            id: r.id.clone(),
                            kind: r.kind.clone(),
                            codec: r.codec.clone(),
                            height: r.height,
                            bandwidth: r.bandwidth,
                        })
                        .collect();
                    if !rungs.is_empty() {
                        out.insert(protocol.to_owned(), rungs);
                    }
                }
            }
            Some(out)
        }
    };
    let artwork = record
        .artwork
        .iter()
        .map(|name| {
            let path = format!("/titles/{}/{name}", record.id);
            let url = state.config.origin_url.as_ref().and_then(|origin| {
                let token = state.keys.sign(&path, now + ARTWORK_TTL, None, now).ok()?;
                Some(format!("{}/t/{token}{path}", origin.trim_end_matches('/')))
            });
            Artwork {
                name: name.clone(),
                url,
            }
        })
        .collect();
    Ok(axum::Json(Details {
        summary: summary(&brief, now),
        playable: refusal.is_none(),
        refusal,
        artwork,
        ladders,
    }))
}
