//! Viewers: bearer-token authentication, profiles and bookmarks.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::Viewers;
use super::store::UserRow;
use crate::http::{ApiError, bearer, json};

/// An authenticated viewer.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: UserRow,
    /// The account came from memory: the store is unreachable (see `recall`).
    pub recalled: bool,
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
pub async fn authenticate(
    state: &Viewers,
    headers: &HeaderMap,
    now: u64,
) -> Result<Viewer, ApiError> {
    let token = bearer(headers)
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
    let hash = crate::sha256_hex(token);
    let read = state.store.user_by_token(&hash, now).await;
    let (user, recalled) = state.recall.user(&hash, read)?;
    Ok(Viewer {
        user: user.ok_or_else(bad)?,
        recalled,
    })
}

/// That the account has `profile`; whether that came from memory.
pub async fn check_profile(
    state: &Viewers,
    viewer: &Viewer,
    profile: &str,
) -> Result<bool, ApiError> {
    let read = state.store.profiles(&viewer.user.id).await;
    let (profiles, recalled) = state.recall.profiles(&viewer.user.id, read)?;
    if profiles.iter().any(|(id, _)| id == profile) {
        Ok(recalled)
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
    State(state): State<Arc<Viewers>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let now = crate::unix_now();
    let viewer = authenticate(&state, &headers, now).await?;
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
        .touch_stream(&req.play_id, &viewer.user.id, now)
        .await?
    {
        return Err(unknown());
    }
    let stream = state
        .store
        .stream(&req.play_id)
        .await?
        .ok_or_else(unknown)?;
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
