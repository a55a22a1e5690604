//! `POST /v1/play`, `DELETE /v1/plays/{id}` and content steering
//! (`GET /v1/steering/{id}/{hls|dash}`).
//!
//! A play is authorised (account, entitlement, device, plan), steered (the
//! fleet half picks a primary appliance and fallbacks), recorded as a stream,
//! and answered with manifest URLs whose every object URL carries one token
//! signed for the title's path prefix. The issued pathways are stored with the
//! stream so the manifests (`manifests`) can be rebuilt exactly, even after a
//! restart.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lru::LruCache;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::Viewers;
use super::accounts;
use super::entitle::{self, NoRendition, Selection};
use super::store::StreamRow;
use crate::http::{ApiError, json};
use crate::steerer::IssuedPathway;
use crate::store::TitleRecord;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlayRequest {
    pub title: String,
    /// A configured device profile (`browser`, `tv`, ...).
    pub device: String,
    pub profile: String,
}

/// What a stream keeps of its play, to rebuild manifests and steer it later.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Issued {
    pub selection: Selection,
    pub pathways: Vec<IssuedPathway>,
}

#[derive(Debug, Serialize)]
pub struct Formats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hls: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dash: Option<String>,
}

/// The JSON manifest for native clients: renditions with one URL per pathway.
#[derive(Debug, Serialize)]
pub struct NativeRendition {
    pub id: String,
    pub protocol: String,
    pub kind: String,
    pub codecs: Option<String>,
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub bandwidth: u64,
    pub segment_duration: f64,
    /// Directory URL of the rendition on each pathway, primary first.
    pub base_urls: Vec<String>,
    /// Media playlist URL on each pathway (HLS renditions).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub playlists: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PlayResponse {
    pub play_id: String,
    pub title: String,
    /// Unix seconds when the signed URLs expire.
    pub expires: u64,
    pub manifests: Formats,
    pub content_steering: Formats,
    pub native: Vec<NativeRendition>,
    pub drm_license_url: String,
    /// Where the player posts its playback heartbeats: signed for this play,
    /// so it needs no viewer token (one is accepted too).
    pub heartbeat_url: String,
    pub resume_position: f64,
    pub appliances: Vec<IssuedPathway>,
    /// Dependencies that failed during this play (it went ahead without them).
    pub degraded: Vec<&'static str>,
}

fn denied(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, code, message)
}

/// The base URL players reach this service at.
pub fn public_base(state: &Viewers, headers: &HeaderMap) -> String {
    if let Some(u) = &state.config.public_url {
        return u.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| state.config.listen.to_string());
    format!("http://{host}")
}

pub fn client_of(state: &Viewers, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let xff = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    super::clientip::client_ip(peer.ip(), xff, &state.config.trusted_proxies)
}

/// Checks a URL steering signed for a play (`what`: the licence URL, the
/// heartbeat URL): `403 expired` once the play's tokens expired, `403`
/// with the reason for any other bad signature, `503` without a usable key.
pub fn check_signed(
    state: &Viewers,
    token: &str,
    path: &str,
    client: IpAddr,
    now: u64,
    what: &str,
) -> Result<(), ApiError> {
    match state.keys.verify(token, path, client, now) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(r)) if r.code() == "expired" => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "expired",
            "the play has expired",
        )),
        Ok(Err(r)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            r.code(),
            format!("{what} is not validly signed"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_signing_key",
            "no usable key",
        )),
    }
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("the system RNG works");
    hex::encode(b)
}

pub async fn play(
    State(state): State<Arc<Viewers>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<PlayResponse>, ApiError> {
    // Admitted before any work: a refusal costs next to nothing, so a
    // flash crowd's excess cannot slow the plays that are admitted.
    let client = client_of(&state, peer, &headers);
    let result = match state.admission.admit(client, std::time::Instant::now()) {
        Ok(permit) => {
            let r = start(&state, peer, &headers, body).await;
            drop(permit);
            r
        }
        Err(refusal) => Err(refused(refusal)),
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    state
        .metrics
        .plays
        .get_or_create(&crate::metrics::ReasonLabel { reason: outcome })
        .inc();
    result.map(axum::Json)
}

/// The answer to a play admission refused: 503 when steering is at its
/// limit, 429 when one client or account is over its rate; both with
/// `Retry-After`.
fn refused(r: super::admission::Refusal) -> ApiError {
    use super::admission::Refusal;
    let (status, message) = match r {
        Refusal::Overloaded { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "steering is deciding as many plays as it can; retry after the given seconds",
        ),
        Refusal::ClientRate { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many new plays from this address; retry after the given seconds",
        ),
        Refusal::AccountRate { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many new plays for this account; retry after the given seconds",
        ),
    };
    ApiError::new(status, r.code(), message).with_retry_after(r.retry_after_s())
}

async fn start(
    state: &Viewers,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<PlayResponse, ApiError> {
    let now = crate::unix_now();
    let viewer = accounts::authenticate(state, headers, now).await?;
    state
        .admission
        .account(&viewer.user.id, std::time::Instant::now())
        .map_err(refused)?;
    let req: PlayRequest = json(body)?;
    let user = &viewer.user;
    let device = state
        .config
        .devices
        .iter()
        .find(|d| d.name == req.device)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_device",
                format!("no device profile {:?}", req.device),
            )
        })?;
    let mut from_memory = viewer.recalled;
    from_memory |= accounts::check_profile(state, &viewer, &req.profile).await?;
    let (title, recalled) = recall_title(state, &req.title).await?;
    from_memory |= recalled;
    entitle::entitle(user, &title, now).map_err(|d| denied(d.code(), d.message()))?;
    let plan = state
        .config
        .plans
        .iter()
        .find(|p| p.name == user.plan)
        .ok_or_else(|| {
            denied(
                "unknown_plan",
                format!("plan {:?} is not offered", user.plan),
            )
        })?;
    let selection = entitle::select(&title, device, plan).map_err(|e| match e {
        NoRendition::Device => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_compatible_rendition",
            format!(
                "device {:?} decodes no rendition of this title",
                device.name
            ),
        ),
        NoRendition::Plan(d) => denied(d.code(), d.message()),
    })?;
    let client = client_of(state, peer, headers);
    let expires = now + state.config.play.token_lifetime.as_secs();
    let token = state.keys.sign(
        &format!("/titles/{}/", title.id),
        expires,
        state.config.play.bind_client.then_some(client),
        now,
    )?;
    let pathways = state.steerer.steer(client, &selection.all(), &token);
    if pathways.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_capacity",
            "no appliance can serve this title now and no origin is configured",
        ));
    }
    let play_id = random_id();
    let issued = Issued {
        selection,
        pathways,
    };
    let row = StreamRow {
        id: play_id.clone(),
        user: user.id.clone(),
        profile: req.profile.clone(),
        title: title.id.clone(),
        client: client.to_string(),
        body: serde_json::to_string(&issued).expect("plain data serialises"),
        expires,
        started: now,
        last_seen: now,
        ended: None,
    };
    let active_since = now.saturating_sub(state.config.play.stream_timeout.as_secs());
    let started = state
        .store
        .start_stream(&row, &user.region, plan.max_streams, active_since)
        .await;
    match started {
        Ok(Ok(())) => {}
        Ok(Err(active)) => {
            let d = entitle::Denied::StreamLimit {
                active,
                max: plan.max_streams,
            };
            return Err(denied(d.code(), d.message()));
        }
        // The store is unreachable but the account was just recalled (or
        // read): play on, keep the stream here, and write it when the store
        // is back (`recall::save_loop`).
        Err(e) if e.is_unavailable() && state.config.play.outage_grace > Duration::ZERO => {
            tracing::warn!(error = %e, play = %row.id, "store unreachable: stream kept in memory");
            state.recall.keep_unsaved(row.clone(), user.region.clone());
            from_memory = true;
        }
        Err(e) => return Err(e.into()),
    }
    let mut degraded = Vec::new();
    if from_memory {
        degraded.push("store");
    }
    // A position a heartbeat left waiting here is newer than the store's.
    let waiting = state
        .beats
        .waiting_position(&user.id, &req.profile, &title.id);
    let stored = match waiting {
        Some(p) => Ok(p),
        None => state.bookmarks.get(&user.id, &req.profile, &title.id).await,
    };
    let resume_position = match stored {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "playing without a resume position");
            degraded.push("bookmarks");
            0.0
        }
    };
    // Its heartbeats find it in memory.
    state.beats.started(
        &play_id,
        super::beats::Watching {
            user: user.id.clone(),
            profile: req.profile.clone(),
            title: title.id.clone(),
            client: Some(client),
            pathways: issued.pathways.iter().map(|p| p.id.clone()).collect(),
        },
        now,
    );
    let primary = &issued.pathways[0];
    // Metric labels are static: map the stored reason back onto the known set.
    let steered_reason = ["isp-embedded", "region-ixp", "any-appliance", "saturated"]
        .into_iter()
        .find(|r| *r == primary.reason)
        .unwrap_or("origin");
    state
        .metrics
        .steered
        .get_or_create(&crate::metrics::ReasonLabel {
            reason: steered_reason,
        })
        .inc();
    tracing::info!(play = %play_id, user = %user.id, title = %title.id, %client,
        primary = %primary.id, reason = %primary.reason, fallbacks = issued.pathways.len() - 1, "play");
    let base = public_base(state, headers);
    let has = |p: &str| issued.selection_for(p).is_some();
    let drm_token = state
        .keys
        .sign(&format!("/v1/drm/{play_id}/"), expires, None, now)?;
    let beat_path = format!("/v1/plays/{play_id}/heartbeat");
    let beat_token = state.keys.sign(&beat_path, expires, None, now)?;
    Ok(PlayResponse {
        manifests: Formats {
            hls: has("hls").then(|| format!("{base}/v1/plays/{play_id}/master.m3u8")),
            dash: has("dash").then(|| format!("{base}/v1/plays/{play_id}/manifest.mpd")),
        },
        content_steering: Formats {
            hls: has("hls").then(|| format!("{base}/v1/steering/{play_id}/hls")),
            dash: has("dash").then(|| format!("{base}/v1/steering/{play_id}/dash")),
        },
        native: native(&title, &issued),
        drm_license_url: format!("{base}/v1/drm/{play_id}/license?token={drm_token}"),
        heartbeat_url: format!("{base}{beat_path}?token={beat_token}"),
        resume_position,
        appliances: issued.pathways.clone(),
        degraded,
        play_id,
        title: title.id,
        expires,
    })
}

impl Issued {
    pub(crate) fn selection_for(&self, protocol: &str) -> Option<&[String]> {
        let s = match protocol {
            "hls" => &self.selection.hls,
            _ => &self.selection.dash,
        };
        (!s.is_empty()).then_some(s.as_slice())
    }
}

/// How long a title read from the store is used without reading it again: a
/// catalog import reaches plays within this.
const TITLE_FRESH: Duration = Duration::from_secs(1);

pub async fn load_title(state: &Viewers, id: &str) -> Result<TitleRecord, ApiError> {
    Ok(recall_title(state, id).await?.0)
}

/// A title, and whether it came from memory (the store unreachable).
pub async fn recall_title(state: &Viewers, id: &str) -> Result<(TitleRecord, bool), ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_title",
            format!("no title {id:?}"),
        )
    };
    if !crate::config::valid_id(id) {
        return Err(not_found());
    }
    if let Some(t) = state.recall.recent_title(id, TITLE_FRESH) {
        return Ok((t, false));
    }
    let read = state.store.title(id).await;
    match state.recall.title(id, read)? {
        (Some(t), recalled) => Ok((t, recalled)),
        (None, _) => Err(not_found()),
    }
}

fn native(title: &TitleRecord, issued: &Issued) -> Vec<NativeRendition> {
    let chosen = issued.selection.all();
    title
        .renditions
        .iter()
        .filter(|r| chosen.contains(&r.id.as_str()))
        .map(|r| NativeRendition {
            id: r.id.clone(),
            protocol: r.protocol.clone(),
            kind: r.kind.clone(),
            codecs: r.codec.clone(),
            width: r.width,
            height: r.height,
            bandwidth: r.bandwidth,
            segment_duration: r.segment_duration,
            base_urls: issued
                .pathways
                .iter()
                .map(|p| format!("{}{}/", p.base_url, r.id))
                .collect(),
            playlists: r
                .playlist
                .iter()
                .flat_map(|key| {
                    issued
                        .pathways
                        .iter()
                        .map(move |p| format!("{}{key}", p.base_url))
                })
                .collect(),
        })
        .collect()
}

/// A live stream and what it was issued; 404 for unknown ids, 410 once its
/// URLs have expired.
pub(crate) async fn issued(
    state: &Viewers,
    id: &str,
    now: u64,
) -> Result<(StreamRow, Issued), ApiError> {
    let unknown = || ApiError::new(StatusCode::NOT_FOUND, "unknown_play", "no such play");
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unknown());
    }
    // A stream started during a store outage is served from memory until
    // it is written.
    let row = match state.store.stream(id).await {
        Ok(Some(row)) => row,
        Ok(None) => state.recall.unsaved(id).ok_or_else(unknown)?,
        Err(e) => state.recall.unsaved(id).ok_or(e)?,
    };
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

/// `GET /v1/steering/{id}/{hls|dash}`: the pathway priority for this play now.
/// Both answer alike: DASH content steering (ETSI TS 103 998) uses the HLS keys,
/// `PATHWAY-PRIORITY` naming `serviceLocation`s, and that is what dash.js reads.
pub async fn content_steering(
    State(state): State<Arc<Viewers>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((id, protocol)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !matches!(protocol.as_str(), "hls" | "dash") {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "use hls or dash",
        ));
    }
    let (_, issued) = issued(&state, &id, crate::unix_now()).await?;
    let client = client_of(&state, peer, &headers);
    let last = state.steered.get(&id);
    let priority = state.steerer.priority(
        client,
        &issued.selection.all(),
        &issued.pathways,
        last.as_deref(),
    );
    if let Some(first) = priority.first() {
        state.steered.put(&id, first);
    }
    state.metrics.steering_polls.inc();
    let body = serde_json::json!({
        "VERSION": 1,
        "TTL": state.config.play.steering_ttl.as_secs().max(1),
        "PATHWAY-PRIORITY": priority,
    });
    Ok((
        [(header::CACHE_CONTROL, "private, no-store")],
        axum::Json(body),
    )
        .into_response())
}

/// The pathway each play's last content-steering answer put first, so the
/// next answer can keep it there (see `fleet::steer::pathway_priority`).
/// Bounded: the least recently polled plays are forgotten first, and a
/// forgotten play only loses that preference once.
pub struct LastSteered(Mutex<LruCache<String, String>>);

impl LastSteered {
    const PLAYS: NonZeroUsize = NonZeroUsize::new(65_536).unwrap();

    fn get(&self, play: &str) -> Option<String> {
        self.lock().get(play).cloned()
    }

    fn put(&self, play: &str, first: &str) {
        let mut plays = self.lock();
        match plays.get_mut(play) {
            Some(p) if p == first => {}
            Some(p) => first.clone_into(p),
            None => {
                plays.put(play.to_owned(), first.to_owned());
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, String>> {
        // The map holds only preferences: one left half-updated by a panic is still usable.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for LastSteered {
    fn default() -> Self {
        LastSteered(Mutex::new(LruCache::new(Self::PLAYS)))
    }
}

/// `DELETE /v1/plays/{id}`: the player stopped; the stream stops counting.
pub async fn stop(
    State(state): State<Arc<Viewers>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let now = crate::unix_now();
    let viewer = accounts::authenticate(&state, &headers, now).await?;
    if state
        .beats
        .watching(&id)
        .is_some_and(|w| w.user == viewer.user.id)
    {
        state.beats.forget(&id);
    }
    if state.recall.drop_unsaved(&id, &viewer.user.id)
        || state.store.end_stream(&id, &viewer.user.id, now).await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_play",
            "no such active play of yours",
        ))
    }
}
