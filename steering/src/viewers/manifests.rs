//! What a play hands out after it started: the per-play HLS and DASH
//! manifests and the Clear Key licences (content steering is in `play`).

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
    // A protected title's key ID and this play's licence URL, for the
    // manifest to signal (HLS players get the licence URL from the play).
    let protection = protection(&state, &id, &row.title, row.expires, &headers).await?;
    let text = match protocol {
        "hls" => {
            manifest::hls_multivariant(packaged.as_bytes(), key, &keep, &pathways, Some(&steering))
                .map(|m| match &protection {
                    Some(p) => manifest::protect_master(&m, &p.kid),
                    None => m,
                })
        }
        _ => manifest::dash_mpd(packaged, key, &keep, &pathways, Some(&steering)).and_then(|mpd| {
            match &protection {
                Some(p) => manifest::protect_mpd(&mpd, p),
                None => Ok(mpd),
            }
        }),
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

/// What a protected title's manifest signals for play `id`: the title's key
/// ID and a licence URL signed until the play expires; None for a clear title.
async fn protection(
    state: &Viewers,
    id: &str,
    title: &str,
    expires: u64,
    headers: &HeaderMap,
) -> Result<Option<manifest::Protection>, ApiError> {
    let kid = match state.store.content_keys(title).await {
        Ok(keys) => {
            let kid = keys
                .first()
                .and_then(|(k, _)| hex::decode(k).ok())
                .and_then(|v| <[u8; 16]>::try_from(v).ok());
            state
                .key_ids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(title.to_owned(), kid);
            kid
        }
        // The store is unreachable: the key ID as last read (they are not
        // secret), so plays started meanwhile still signal their protection.
        Err(e) => {
            let known = state
                .key_ids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(title)
                .copied();
            match known {
                Some(kid) => kid,
                None => {
                    tracing::warn!(%title, error = %e, "manifest without protection signalling: key ID unknown");
                    None
                }
            }
        }
    };
    let Some(kid) = kid else {
        return Ok(None);
    };
    let token = state
        .keys
        .sign(&format!("/v1/drm/{id}/"), expires, None, crate::unix_now())?;
    Ok(Some(manifest::Protection {
        kid,
        licence_url: format!(
            "{}/v1/drm/{id}/license?token={token}",
            public_base(state, headers)
        ),
    }))
}

#[derive(Deserialize)]
pub struct LicenseQuery {
    #[serde(default)]
    token: String,
}

/// `POST /v1/drm/{id}/license`: a W3C Clear Key licence for the play `id`.
/// The URL is the one the play handed out (signed for this play, until the
/// play's tokens expire); the body names the key IDs the player found in the
/// content. Answered with the JSON Web Key set of exactly those keys when
/// each belongs to the play's title, the play has not ended or expired, and
/// it has had fewer than `drm.max_licences` licences. Players on other
/// origins may ask (`http::cors`): the signed URL is the authority.
pub async fn drm_license(
    State(state): State<Arc<Viewers>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(q): Query<LicenseQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let result = licence(&state, peer, &id, &q.token, &headers, &body)
        .await
        .map(|jwks| ([(header::CACHE_CONTROL, "no-store")], axum::Json(jwks)).into_response());
    answered(&state, &id, "org.w3.clearkey", result)
}

/// Checks every licence request shares, whatever the key system: the signed
/// URL, the play (known, neither ended nor expired). Returns the play.
async fn licensed_play(
    state: &Viewers,
    peer: SocketAddr,
    id: &str,
    token: &str,
    headers: &HeaderMap,
    now: u64,
) -> Result<crate::viewers::store::StreamRow, ApiError> {
    let path = format!("/v1/drm/{id}/license");
    let client = client_of(state, peer, headers);
    super::play::check_signed(state, token, &path, client, now, "licence URL")?;
    let row = state.store.stream(id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_play",
            format!("no play {id:?}"),
        )
    })?;
    if row.ended.is_some() || row.expires <= now {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "expired",
            "the play has ended or expired: start a new one",
        ));
    }
    Ok(row)
}

/// Count one licence for play `id`, or refuse past `drm.max_licences`.
async fn count_licence(state: &Viewers, id: &str) -> Result<(), ApiError> {
    let max = state.config.drm.max_licences;
    match state.store.count_licence(id, max).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_licences",
            format!("this play has had its {max} licences: start a new play"),
        )),
    }
}

/// A licence request's answer, counted by outcome (refusals logged with
/// their code; never a key).
fn answered(
    state: &Viewers,
    id: &str,
    key_system: &str,
    result: Result<Response, ApiError>,
) -> Response {
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    state
        .metrics
        .licences
        .get_or_create(&crate::metrics::ReasonLabel { reason: outcome })
        .inc();
    result.unwrap_or_else(|e| {
        tracing::info!(play = %id, %key_system, code = e.code(), "licence refused");
        e.into_response()
    })
}

/// A commercial key system's licence server, as configured.
pub struct Proxy {
    url: String,
    credential: String,
    client: reqwest::Client,
}

impl Proxy {
    pub fn new(p: &crate::config::LicenceProxy) -> Result<Proxy, String> {
        let credential =
            crate::drm::read_credential(&p.credential_file).map_err(|e| e.to_string())?;
        let client = control_client::http_client(p.timeout, None).map_err(|e| e.to_string())?;
        Ok(Proxy {
            url: p.url.clone(),
            credential,
            client,
        })
    }
}

/// `POST /v1/drm/{id}/license/{key_system}`: a commercial key system's
/// licence request for play `id`. Checked as a Clear Key request is (the
/// signed URL, the play, its licence limit), then the player's challenge is
/// forwarded as is to the key system's configured licence server, with this
/// service's credential and the play's title and account, and its answer
/// returned. The licence servers themselves are not part of this project.
pub async fn proxied_license(
    State(state): State<Arc<Viewers>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((id, key_system)): Path<(String, String)>,
    Query(q): Query<LicenseQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let result = proxied(&state, peer, &id, &key_system, &q.token, &headers, body).await;
    answered(&state, &id, &key_system, result)
}

async fn proxied(
    state: &Viewers,
    peer: SocketAddr,
    id: &str,
    key_system: &str,
    token: &str,
    headers: &HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let now = crate::unix_now();
    let row = licensed_play(state, peer, id, token, headers, now).await?;
    let proxy = state.licence_proxies.get(key_system).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_key_system",
            format!("no licence server for {key_system:?} here"),
        )
    })?;
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "an empty licence challenge",
        ));
    }
    count_licence(state, id).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let answer = proxy
        .client
        .post(&proxy.url)
        .bearer_auth(&proxy.credential)
        .header(header::CONTENT_TYPE, content_type)
        .header("X-Oca-Play", id)
        .header("X-Oca-Title", &row.title)
        .header("X-Oca-Account", &row.user)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            tracing::warn!(%key_system, error = %e, "licence server unreachable");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "licence_server_unreachable",
                format!("the {key_system} licence server did not answer"),
            )
        })?;
    let status = answer.status();
    if !status.is_success() {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "licence_server_refused",
            format!(
                "the {key_system} licence server answered {}",
                status.as_u16()
            ),
        ));
    }
    let content_type = answer
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let licence = answer.bytes().await.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "licence_server_unreachable",
            format!("the {key_system} licence server's answer was cut short"),
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        licence,
    )
        .into_response())
}

async fn licence(
    state: &Viewers,
    peer: SocketAddr,
    id: &str,
    token: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let now = crate::unix_now();
    let row = licensed_play(state, peer, id, token, headers, now).await?;
    let requested = crate::drm::parse_request(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
    let stored = state.store.content_keys(&row.title).await?;
    let kek = match (&state.kek, stored.is_empty()) {
        (_, true) => None,
        (Some(k), false) => Some(k),
        (None, false) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "drm_not_configured",
                "drm.key_file is not set or unreadable: no licences",
            ));
        }
    };
    let mut keys = Vec::with_capacity(stored.len());
    for (kid, sealed) in &stored {
        let Some(kid) = hex::decode(kid)
            .ok()
            .and_then(|v| <[u8; 16]>::try_from(v).ok())
        else {
            continue;
        };
        let k = kek
            .expect("keys need the kek")
            .unseal(&row.title, kid, sealed)
            .map_err(|e| {
                tracing::error!(title = %row.title, error = %e, "cannot open a content key");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "key_unavailable",
                    e.to_string(),
                )
            })?;
        keys.push(k);
    }
    // Checked before counting: a request for the wrong keys costs no licence.
    let jwks = crate::drm::licence(&keys, &requested)
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, "kid_not_in_title", e.to_string()))?;
    count_licence(state, id).await?;
    Ok(jwks)
}
