//! What a play hands out after it started: the per-play HLS and DASH
//! manifests and the DRM licence stub (content steering is in `play`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Viewers;
use super::play::{client_of, issued, load_title, public_base};
use crate::http::ApiError;
use crate::manifest::{self, ContentSteering, Pathway};

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
    let (row, issued) = issued(&state, &id, crate::unix_now()).await?;
    let keep = issued.selection_for(protocol).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("this play has no {protocol} manifest"),
        )
    })?;
    let title = load_title(&state, &row.title).await?;
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
