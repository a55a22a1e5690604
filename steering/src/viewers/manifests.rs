//! What a play hands out after it started: the per-play HLS and DASH
//! manifests, content-steering answers, and the DRM licence stub.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Viewers;
use super::play::{Issued, client_of, load_title, public_base};
use super::store::StreamRow;
use crate::http::ApiError;
use crate::manifest::{self, ContentSteering, Pathway};

/// A live stream and what it was issued; 404 for unknown ids, 410 once its
/// URLs have expired.
fn issued(state: &Viewers, id: &str, now: u64) -> Result<(StreamRow, Issued), ApiError> {
    let unknown = || ApiError::new(StatusCode::NOT_FOUND, "unknown_play", "no such play");
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unknown());
    }
    let row = state.store.stream(id)?.ok_or_else(unknown)?;
    if row.expires <= now {
        return Err(ApiError::new(
            StatusCode::GONE,
            "play_expired",
            "this play's URLs have expired; start a new play",
        ));
    }
    let issued: Issued = serde_json::from_str(&row.body).map_err(|e| {
        tracing::error!(play = %id, error = %e, "stored play is unreadable");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "corrupt_play",
            "stored play is unreadable",
        )
    })?;
    Ok((row, issued))
}

/// `GET /v1/plays/{id}/master.m3u8` and `/manifest.mpd`.
pub async fn manifest(
    State(state): State<Arc<Viewers>>,
    Path((id, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (protocol, content_type) = match file.as_str() {
        "master.m3u8" => ("hls", "application/vnd.apple.mpegurl"),
        "manifest.mpd" => ("dash", "application/dash+xml"),
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such manifest",
            ));
        }
    };
    let (row, issued) = issued(&state, &id, crate::unix_now())?;
    let keep = issued.selection_for(protocol).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("this play has no {protocol} manifest"),
        )
    })?;
    let title = load_title(&state, &row.title)?;
    let Some((_, key, packaged)) = title.manifests.iter().find(|(k, _, _)| k == protocol) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the title has no {protocol} packaging"),
        ));
    };
    let pathways: Vec<Pathway> = issued
        .pathways
        .iter()
        .map(|p| Pathway {
            id: p.id.clone(),
            base_url: p.base_url.clone(),
        })
        .collect();
    let steering = ContentSteering {
        server_uri: format!(
            "{}/v1/steering/{id}/{protocol}",
            public_base(&state, &headers)
        ),
    };
    let keep = |r: &str| keep.iter().any(|k| k == r);
    let text = match protocol {
        "hls" => {
            manifest::hls_multivariant(packaged.as_bytes(), key, &keep, &pathways, Some(&steering))
        }
        _ => manifest::dash_mpd(packaged, key, &keep, &pathways, Some(&steering)),
    }
    .map_err(|e| {
        tracing::error!(play = %id, error = %e, "cannot build manifest");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "manifest_failed",
            e.to_string(),
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        text,
    )
        .into_response())
}

/// `GET /v1/steering/{id}/{hls|dash}`: the pathway priority for this play now.
pub async fn content_steering(
    State(state): State<Arc<Viewers>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((id, protocol)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let list_key = match protocol.as_str() {
        "hls" => "PATHWAY-PRIORITY",
        "dash" => "SERVICE-LOCATION-PRIORITY",
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "use hls or dash",
            ));
        }
    };
    let (_, issued) = issued(&state, &id, crate::unix_now())?;
    let client = client_of(&state, peer, &headers);
    let priority = state
        .steerer
        .priority(client, &issued.selection.all(), &issued.pathways);
    state.metrics.steering_polls.inc();
    let body = serde_json::json!({
        "VERSION": 1,
        "TTL": state.config.play.steering_ttl.as_secs().max(1),
        list_key: priority,
    });
    Ok((
        [(header::CACHE_CONTROL, "private, no-store")],
        axum::Json(body),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct LicenseQuery {
    #[serde(default)]
    token: String,
}

/// `GET|POST /v1/drm/{id}/license`: checks the signed URL, then says plainly
/// that no DRM system is configured (a licence server plugs in here).
pub async fn drm_license(
    State(state): State<Arc<Viewers>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(q): Query<LicenseQuery>,
    headers: HeaderMap,
) -> ApiError {
    let path = format!("/v1/drm/{id}/license");
    let client = client_of(&state, peer, &headers);
    match state
        .keys
        .verify(&q.token, &path, client, crate::unix_now())
    {
        Ok(Ok(())) => {}
        Ok(Err(r)) => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                r.code(),
                "licence URL is not validly signed",
            );
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_signing_key",
                "no usable key",
            );
        }
    }
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "drm_not_configured",
        "no DRM system is configured: this deployment issues no Widevine, PlayReady or FairPlay licences, so only clear content plays",
    )
}
