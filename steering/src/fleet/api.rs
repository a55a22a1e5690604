//! The fleet half's HTTP API: appliances register and heartbeat (health,
//! inventory, BGP prefixes), fetch signing keys and fill plans; anyone may
//! list the appliances.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use control_client::wire::{
    ApplianceInfo, HealthSummary, Heartbeat, HeartbeatResponse, Inventory, KeySetWire,
    RegisterRequest, RegisterResponse,
};

use super::Fleet;
use super::registry::{Appliance, InventoryOutcome, PrefixOutcome};
use super::store::InventoryRow;
use crate::http::{ApiError, bearer, json};

pub fn router(fleet: Arc<Fleet>) -> Router {
    Router::new()
        .route("/v1/appliances", get(list_appliances))
        .route("/v1/appliances/enroll", post(super::enrol::enrol))
        .route("/v1/appliances/{id}/register", post(register))
        .route("/v1/appliances/{id}/heartbeat", post(heartbeat))
        .route("/v1/keys", get(keys))
        .route("/v1/appliances/{id}/fill-plan", get(super::fill::fill_plan))
        .with_state(fleet)
}

/// The URL objects are fetched from on an appliance: HTTPS when it has it and
/// `prefer_https` is set, else whichever it has.
pub(crate) fn appliance_url(info: &ApplianceInfo, prefer_https: bool) -> Option<&str> {
    match (prefer_https, &info.https_url, &info.http_url) {
        (true, Some(u), _) | (_, None, Some(u)) | (false, _, Some(u)) => Some(u),
        _ => None,
    }
}

/// Constant-time equality, so a credential check leaks nothing through timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Check `Authorization: Bearer <id>:<credential>`; returns the appliance id.
pub(crate) fn authenticate(
    state: &Fleet,
    headers: &HeaderMap,
    expect_id: Option<&str>,
) -> Result<String, ApiError> {
    let value = bearer(headers).ok_or_else(|| {
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
    if reg.revoked.contains(id) {
        state.metrics.auth_failures.inc();
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "revoked",
            format!("appliance {id:?}'s credential was revoked"),
        ));
    }
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
    State(state): State<Arc<Fleet>>,
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
    let (credential_sha256, bound) = {
        let reg = state.registry();
        let a = &reg.appliances[&id];
        (a.credential_sha256.clone(), a.bound.clone())
    };
    if let Some(bound) = &bound
        && !super::enrol::keeps_to(bound, &req.info)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "placement_mismatch",
            format!(
                "enrolled as tier {:?} at site {:?} in region {:?}; the appliance now states {:?} at {:?} in {:?}",
                bound.tier,
                bound.site,
                bound.region.as_deref().unwrap_or(""),
                req.info.tier,
                req.info.site,
                req.info.region
            ),
        ));
    }
    state
        .store
        .upsert_appliance(&id, &req.info, &credential_sha256, crate::unix_now())
        .await?;
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
    tokio::spawn(super::poller::poll_registered(
        Arc::clone(&state),
        id.clone(),
    ));
    Ok(axum::Json(RegisterResponse {
        heartbeat_interval_ms: state.config.heartbeat_interval.as_millis() as u64,
        inventory_version: version,
        inventory_digest: digest,
        keys_version: state.keys.version(),
    }))
}

async fn heartbeat(
    State(state): State<Arc<Fleet>>,
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
            if !state.knows_rendition(r).await? {
                unknown.push(r.to_owned());
            }
        }
        if !unknown.is_empty() {
            let e = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_rendition",
                format!(
                    "{} rendition(s) not in the catalog; see details",
                    unknown.len()
                ),
            );
            return Err(e.with_details(unknown));
        }
    }
    state.metrics.heartbeats.inc();
    let (outcome, version, snapshot, register, health_changed) = {
        let mut reg = state.registry();
        let a = reg
            .appliances
            .get_mut(&id)
            .expect("authenticated appliance exists");
        let register = !a.registered;
        let health_changed = take_health(&state, &id, a, &hb.health);
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
        (
            outcome,
            a.inventory_version,
            snapshot,
            register,
            health_changed,
        )
    };
    let inventory_changed = snapshot.is_some();
    if let Some(row) = snapshot {
        // Persisted before answering: an acknowledged inventory survives a crash.
        state.store.put_inventory(&id, &row).await?;
    }
    if outcome == InventoryOutcome::ResyncNeeded {
        state.metrics.resyncs.inc();
        tracing::info!(appliance = %id, "inventory delta did not apply; asking for a full resync");
    }
    let (prefix_outcome, prefixes_version, learned) = {
        let mut reg = state.registry();
        let outcome = hb.prefixes.as_ref().map(|p| reg.take_prefixes(&id, p));
        let learned = (outcome == Some(PrefixOutcome::Applied))
            .then(|| reg.learned_row(&id))
            .flatten();
        (outcome, reg.appliances[&id].prefixes_version, learned)
    };
    if prefix_outcome == Some(PrefixOutcome::Invalid) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_prefix",
            "a reported prefix is not an IPv4 or IPv6 CIDR",
        ));
    }
    if let Some(row) = learned {
        state.store.put_learned_prefixes(&row).await?;
        tracing::info!(appliance = %id, version = prefixes_version, prefixes = row.prefixes.len(), with_attributes = row.attrs.len(), "BGP prefixes updated");
    }
    if inventory_changed || health_changed || prefix_outcome == Some(PrefixOutcome::Applied) {
        // What an appliance holds, whether it is up or draining and which
        // clients it serves decide plays: seen before the heartbeat is
        // answered, not at the next background refresh (the wait is shared
        // with every change made meanwhile).
        super::snapshot::refreshed(&state).await;
    }
    Ok(axum::Json(HeartbeatResponse {
        resync: outcome == InventoryOutcome::ResyncNeeded,
        inventory_version: version,
        keys_version: state.keys.version(),
        prefixes_version,
        prefixes_resync: prefix_outcome == Some(PrefixOutcome::ResyncNeeded),
        register,
    }))
}

/// Take the health a heartbeat carries. It is the document a poll would
/// fetch, so it counts as a successful poll: push with a pull fallback, and a
/// fleet of thousands is not polled while it reports. Returns whether
/// decisions must see it at once (up again, or a new status such as draining).
fn take_health(state: &Fleet, id: &str, a: &mut Appliance, health: &HealthSummary) -> bool {
    let now_ms = super::cluster::wall_ms();
    let status_changed = a.last.as_ref().is_none_or(|h| h.status != health.status);
    a.last = Some(health.clone());
    a.last_seen = Some(Instant::now());
    a.heard = a.last_seen;
    a.report_ms = now_ms;
    state.cluster.note_report(id, health, now_ms);
    let limits = &state.config.health;
    let came_up = a.health.observe(true, limits.down_after, limits.up_after);
    if came_up {
        a.up_ms = now_ms;
        state.cluster.note_verdict(id, true, now_ms);
        state.metrics.health_changes.inc();
        tracing::warn!(appliance = %id, up = true, "appliance health changed");
    }
    came_up || status_changed
}

async fn keys(
    State(state): State<Arc<Fleet>>,
    headers: HeaderMap,
) -> Result<axum::Json<KeySetWire>, ApiError> {
    authenticate(&state, &headers, None)?;
    Ok(axum::Json(state.keys.wire()))
}

async fn list_appliances(State(state): State<Arc<Fleet>>) -> impl IntoResponse {
    let (catalog, _) = state.catalog();
    let mut view = state.registry().view(Instant::now(), &catalog);
    let live = state.cluster.live();
    // What decisions see, which may trail the registry by a build: whoever
    // waits for `eligible` may then count on a play being steered there.
    let snap = state.snapshots.current();
    // Copied out under the lock (not the whole table): heartbeats wait on it.
    let mut measured: std::collections::HashMap<String, Vec<(f64, super::registry::MeasuredPath)>> =
        std::collections::HashMap::new();
    let paths = state.paths.lock().unwrap_or_else(|p| p.into_inner());
    for (net, appliance, e) in paths.all(crate::unix_now()) {
        measured.entry(appliance.to_owned()).or_default().push((
            e.weight,
            super::registry::MeasuredPath {
                network: net.to_owned(),
                throughput_mbps: e.throughput_bps / 1e6,
                ttfb_ms: e.ttfb_ms,
                error_rate: e.error_rate,
                confidence: e.confidence,
            },
        ));
    }
    drop(paths);
    for a in &mut view {
        if let Some(mut list) = measured.remove(&a.id) {
            list.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.network.cmp(&y.1.network)));
            a.measured = list.into_iter().take(20).map(|(_, m)| m).collect();
        }
        match snap.find(&a.id) {
            Some(n) => {
                a.eligible = snap.live(n);
                a.renditions_complete = snap.node(n).renditions.len();
            }
            None => a.eligible = false,
        }
        a.polled_by = super::cluster::poller_of(&a.id, &a.info.region, &live)
            .map(str::to_owned)
            .or_else(|| Some(state.cluster.id.clone()));
    }
    axum::Json(view)
}
