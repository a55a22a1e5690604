//! The HTTP API (`/v1/...`), JSON in and out; every error is JSON with a stable
//! code, mapped in exactly one place (`ApiError::into_response`).

use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use control_client::wire::{
    ErrorBody, Heartbeat, HeartbeatResponse, Inventory, KeySetWire, RegisterRequest,
    RegisterResponse,
};
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::registry::{InventoryOutcome, PrefixOutcome, Registry};
use crate::store::{InventoryRow, Store};

/// Everything handlers share.
pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub registry: Mutex<Registry>,
    pub keys: RwLock<KeySetWire>,
    /// Catalog totals, refreshed periodically and on a miss (imports run offline).
    pub catalog: RwLock<crate::registry::CatalogTotals>,
    pub metrics: Metrics,
    pub fleet: crate::fleet::Fleet,
    /// Client networks (config plus the imported RIB), rebuilt only when those change.
    pub networks: arc_swap::ArcSwap<crate::steer::Networks>,
    /// Generation of the RIB import the networks were built from.
    pub rib_generation: std::sync::atomic::AtomicU64,
    pub bookmarks: crate::bookmarks::Bookmarks,
    pub recommendations: crate::home::Recommendations,
    /// Notified on SIGHUP: re-read the RIB, catalogue totals and keys now.
    pub reload: Arc<tokio::sync::Notify>,
}

impl AppState {
    /// Whether the catalog has `rendition`, from memory or, on a miss, the store
    /// (so an import made while steering runs is seen at once).
    pub fn knows_rendition(&self, rendition: &str) -> Result<bool, crate::store::StoreError> {
        if self
            .catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(rendition)
        {
            return Ok(true);
        }
        match self.store.rendition_totals(rendition)? {
            Some(t) => {
                self.catalog
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(rendition.to_owned(), t);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The one-line STATUS= for `systemctl status`.
    pub fn status_line(&self) -> String {
        let (total, up) = {
            let r = self.registry();
            let up = r.appliances.values().filter(|a| a.health.up).count();
            (r.appliances.len(), up)
        };
        let titles = self.catalog.read().unwrap_or_else(|p| p.into_inner()).len();
        format!("serving: {up} of {total} appliances up; {titles} renditions in the catalogue")
    }
}

/// An error answer: status, stable code, message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<String>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }
}

impl ApiError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        tracing::error!(error = %e, "store failure");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the store could not complete the request",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.to_owned(),
            message: self.message,
            details: self.details,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/v1/appliances", get(list_appliances))
        .route("/v1/appliances/{id}/register", post(register))
        .route("/v1/appliances/{id}/heartbeat", post(heartbeat))
        .route("/v1/keys", get(keys))
        .route("/v1/appliances/{id}/fill-plan", get(crate::fill::fill_plan))
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/metrics", get(metrics))
        .route("/v1/play", post(crate::play::play))
        .route("/v1/plays/{id}", axum::routing::delete(crate::play::stop))
        .route("/v1/plays/{id}/{file}", get(crate::play::manifest))
        .route(
            "/v1/steering/{id}/{protocol}",
            get(crate::play::content_steering),
        )
        .route(
            "/v1/drm/{id}/license",
            get(crate::play::drm_license).post(crate::play::drm_license),
        )
        .route("/v1/bookmarks", post(crate::viewer::bookmark))
        .route("/v1/home", get(crate::viewer::home))
        .route("/player/{*file}", get(player_file))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(cors))
        .with_state(state)
}

/// `GET /player/<file>`: a file of `player_dir` (404 without one). Only plain
/// names below the directory: no `..`, no hidden files.
async fn player_file(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such file");
    let dir = state.config.player_dir.as_ref().ok_or_else(not_found)?;
    if file.is_empty()
        || file.len() > 256
        || file
            .split('/')
            .any(|seg| seg.is_empty() || seg.starts_with('.'))
        || !file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    {
        return Err(not_found());
    }
    // Small files, read rarely (a page load): the blocking pool is plenty.
    let path = dir.join(&file);
    let body = tokio::task::spawn_blocking(move || std::fs::read(path))
        .await
        .map_err(|_| not_found())?
        .map_err(|_| not_found())?;
    let content_type = match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        _ => "application/octet-stream",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// Browser players call the API from pages served elsewhere: allow any origin
/// (credentials travel in the Authorization header, never in cookies) and
/// answer preflights here.
async fn cors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let preflight = req.method() == axum::http::Method::OPTIONS;
    let mut resp = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::HeaderValue::from_static("*"),
    );
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            header::HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            header::HeaderValue::from_static("authorization, content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            header::HeaderValue::from_static("600"),
        );
    }
    resp
}

/// Parse a JSON body ourselves so that every failure has our error shape.
pub(crate) fn json<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "request body over the size limit",
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.body_text())
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))
}

/// Constant-time equality, so a credential check leaks nothing through timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Check `Authorization: Bearer <id>:<credential>`; returns the appliance id.
pub(crate) fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    expect_id: Option<&str>,
) -> Result<String, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "missing Bearer credential",
            )
        })?;
    let (id, credential) = value.split_once(':').ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "credential must be <id>:<secret>",
        )
    })?;
    if let Some(expect) = expect_id
        && expect != id
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_appliance",
            "credential is for another appliance",
        ));
    }
    let reg = state.registry();
    let a = reg.appliances.get(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_appliance",
            format!("no appliance {id:?}"),
        )
    })?;
    if !same(
        crate::sha256_hex(credential).as_bytes(),
        a.credential_sha256.as_bytes(),
    ) {
        state.metrics.auth_failures.inc();
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credential",
            "credential does not match",
        ));
    }
    Ok(id.to_owned())
}

async fn register(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<RegisterResponse>, ApiError> {
    let id = authenticate(&state, &headers, Some(&id))?;
    let req: RegisterRequest = json(body)?;
    if req.info.capacity_bps == 0 || req.info.admin_url.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_info",
            "capacity_bps and admin_url are required",
        ));
    }
    let credential_sha256 = state.registry().appliances[&id].credential_sha256.clone();
    state
        .store
        .upsert_appliance(&id, &req.info, &credential_sha256, crate::unix_now())?;
    let (version, digest) = {
        let mut reg = state.registry();
        reg.insert(&id, req.info.clone(), credential_sha256);
        if let Some(a) = reg.appliances.get_mut(&id) {
            a.registered = true;
        }
        let a = &reg.appliances[&id];
        (a.inventory_version, a.inventory_digest.clone())
    };
    tracing::info!(appliance = %id, tier = ?req.info.tier, site = %req.info.site, "appliance registered");
    tokio::spawn(crate::health::poll_registered(
        Arc::clone(&state),
        id.clone(),
    ));
    Ok(axum::Json(RegisterResponse {
        heartbeat_interval_ms: state.config.heartbeat_interval.as_millis() as u64,
        inventory_version: version,
        inventory_digest: digest,
        keys_version: state.keys.read().unwrap_or_else(|p| p.into_inner()).version,
    }))
}

async fn heartbeat(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<HeartbeatResponse>, ApiError> {
    let id = authenticate(&state, &headers, Some(&id))?;
    let hb: Heartbeat = json(body)?;
    if let Some(inv) = &hb.inventory {
        let reported = match inv {
            Inventory::Full { renditions, .. } => renditions,
            Inventory::Delta { upserted, .. } => upserted,
        };
        let renditions = reported.iter().map(|r| r.rendition.as_str());
        let mut unknown = Vec::new();
        for r in renditions {
            if !crate::config::valid_rendition(r) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "bad_rendition",
                    format!("rendition {r:?} is not a valid path prefix"),
                ));
            }
            if !state.knows_rendition(r)? {
                unknown.push(r.to_owned());
            }
        }
        if !unknown.is_empty() {
            let mut e = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_rendition",
                format!(
                    "{} rendition(s) not in the catalog; see details",
                    unknown.len()
                ),
            );
            e.details = unknown;
            return Err(e);
        }
    }
    state.metrics.heartbeats.inc();
    let (outcome, version, snapshot, register) = {
        let mut reg = state.registry();
        let a = reg
            .appliances
            .get_mut(&id)
            .expect("authenticated appliance exists");
        let register = !a.registered;
        a.last = Some(hb.health.clone());
        a.last_seen = Some(Instant::now());
        let outcome = match &hb.inventory {
            Some(inv) => reg.take_inventory(&id, inv),
            None => InventoryOutcome::Unchanged,
        };
        let a = &reg.appliances[&id];
        let snapshot = (outcome == InventoryOutcome::Applied).then(|| InventoryRow {
            version: a.inventory_version,
            digest: a.inventory_digest.clone(),
            renditions: a.inventory.values().cloned().collect(),
        });
        (outcome, a.inventory_version, snapshot, register)
    };
    if let Some(row) = snapshot {
        // Persisted before answering: an acknowledged inventory survives a crash.
        state.store.put_inventory(&id, &row)?;
    }
    if outcome == InventoryOutcome::ResyncNeeded {
        state.metrics.resyncs.inc();
        tracing::info!(appliance = %id, "inventory delta did not apply; asking for a full resync");
    }
    let (prefix_outcome, prefixes_version, learned) = {
        let mut reg = state.registry();
        let outcome = hb.prefixes.as_ref().map(|p| reg.take_prefixes(&id, p));
        let a = &reg.appliances[&id];
        let learned = (outcome == Some(PrefixOutcome::Applied))
            .then(|| a.learned.iter().map(|p| p.to_string()).collect::<Vec<_>>());
        (outcome, a.prefixes_version, learned)
    };
    if prefix_outcome == Some(PrefixOutcome::Invalid) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_prefix",
            "a reported prefix is not an IPv4 or IPv6 CIDR",
        ));
    }
    if let Some(prefixes) = learned {
        state
            .store
            .put_learned_prefixes(&id, prefixes_version, &prefixes)?;
        tracing::info!(appliance = %id, version = prefixes_version, prefixes = prefixes.len(), "BGP prefixes updated");
    }
    Ok(axum::Json(HeartbeatResponse {
        resync: outcome == InventoryOutcome::ResyncNeeded,
        inventory_version: version,
        keys_version: state.keys.read().unwrap_or_else(|p| p.into_inner()).version,
        prefixes_version,
        prefixes_resync: prefix_outcome == Some(PrefixOutcome::ResyncNeeded),
        register,
    }))
}

async fn keys(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<axum::Json<KeySetWire>, ApiError> {
    authenticate(&state, &headers, None)?;
    Ok(axum::Json(
        state.keys.read().unwrap_or_else(|p| p.into_inner()).clone(),
    ))
}

async fn list_appliances(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let catalog = state
        .catalog
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    axum::Json(state.registry().view(Instant::now(), &catalog))
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let body = state.metrics.render(&state.registry());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
