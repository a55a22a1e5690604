//! Viewers: bearer-token authentication, profiles, bookmarks and the home page.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;

use crate::api::{ApiError, AppState, json};
use crate::home::{Home, Item, Row};
use crate::store::UserRow;

/// An authenticated viewer.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: UserRow,
}

/// Prefix of viewer tokens, so a leaked one is recognisable in logs and scans.
pub const TOKEN_PREFIX: &str = "vt_";

/// A new viewer token (shown once) and its hash (what is stored).
pub fn new_token() -> (String, String) {
    let mut b = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("the system RNG works");
    use base64::Engine;
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    );
    let hash = crate::sha256_hex(&token);
    (token, hash)
}

/// `Authorization: Bearer vt_...` → the account (401 otherwise).
pub fn authenticate(state: &AppState, headers: &HeaderMap, now: u64) -> Result<Viewer, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "missing Bearer viewer token",
            )
        })?;
    let bad = || {
        state.metrics.auth_failures.inc();
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_token",
            "viewer token unknown or expired",
        )
    };
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
        return Err(bad());
    }
    // Looked up by hash: the store never holds a usable token, and the lookup
    // key reveals nothing about near-miss guesses.
    let user = state
        .store
        .user_by_token(&crate::sha256_hex(token), now)?
        .ok_or_else(bad)?;
    Ok(Viewer { user })
}

pub fn check_profile(state: &AppState, viewer: &Viewer, profile: &str) -> Result<(), ApiError> {
    if state
        .store
        .profiles(&viewer.user.id)?
        .iter()
        .any(|(id, _)| id == profile)
    {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "unknown_profile",
            format!("the account has no profile {profile:?}"),
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookmarkRequest {
    pub play_id: String,
    /// Seconds into the title.
    pub position: f64,
}

/// `POST /v1/bookmarks`: keeps the stream counted as active, then saves the
/// position. The stream is touched first and regardless, so a bookmark store
/// outage never ends anyone's stream.
pub async fn bookmark(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let now = crate::unix_now();
    let viewer = authenticate(&state, &headers, now)?;
    let req: BookmarkRequest = json(body)?;
    if !(req.position.is_finite() && req.position >= 0.0) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_position",
            "position must be a non-negative number of seconds",
        ));
    }
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_play",
            "no such active play of yours",
        )
    };
    if !state
        .store
        .touch_stream(&req.play_id, &viewer.user.id, now)?
    {
        return Err(unknown());
    }
    let stream = state.store.stream(&req.play_id)?.ok_or_else(unknown)?;
    state
        .bookmarks
        .put(
            &viewer.user.id,
            &stream.profile,
            &stream.title,
            req.position,
            now,
        )
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "bookmarks_unavailable",
                format!("position not saved ({e}); the stream stays active"),
            )
        })?;
    Ok(axum::Json(
        serde_json::json!({"saved": true, "position": req.position}),
    ))
}

#[derive(Deserialize)]
pub struct HomeQuery {
    profile: String,
}

/// `GET /v1/home?profile=...`.
pub async fn home(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HomeQuery>,
    headers: HeaderMap,
) -> Result<axum::Json<Home>, ApiError> {
    let now = crate::unix_now();
    let viewer = authenticate(&state, &headers, now)?;
    check_profile(&state, &viewer, &q.profile)?;
    let u = &viewer.user;
    let available: Vec<(String, String)> = state
        .store
        .title_names()?
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
                .plays_since(&u.region, now.saturating_sub(week), 50_000)?;
            let ranked = crate::home::popularity(&plays, now, 86_400.0);
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
