//! `GET /v1/appliances/{id}/fill-plan`: load what the planner needs (catalog,
//! plays, the fleet around the appliance), sign one token for the plan's
//! source URLs, run the pure planner (`fillplan`), and number the plan so an
//! appliance can tell "same plan" from "new plan".

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Fleet;
use super::api::authenticate;
use super::fillplan::{self, Appliance, Input};
use super::registry::CatalogTotals;
use crate::http::ApiError;

/// Plays read per plan at most: about a week of a busy service's plays in a
/// region; beyond it the oldest (least weighted) are left out.
const MAX_PLAYS: u32 = 2_000_000;

pub async fn fill_plan(
    State(state): State<Arc<Fleet>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = authenticate(&state, &headers, Some(&id))?;
    let now = crate::unix_now();
    let cfg = &state.config.fill;
    let titles = state.store.fill_catalog().await?;
    let plays = state
        .store
        .plays_all_since(now.saturating_sub(cfg.lookback.as_secs()), MAX_PLAYS)
        .await?;
    // Completeness is judged against the catalog just read, not the periodically
    // refreshed totals, so a re-import is reflected in the same plan.
    let totals: CatalogTotals = titles
        .iter()
        .flat_map(|t| &t.renditions)
        .map(|r| (r.id.clone(), (r.objects.len() as u64, r.bytes())))
        .collect();
    let (me, fleet) = fleet(&state, &id, &totals).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_appliance",
            format!("no appliance {id:?}"),
        )
    })?;
    let configured = state.config.appliances.iter().find(|a| a.id == id);
    let window = fillplan::window_for(configured, cfg).map_err(|e| {
        // Validated at start; reaching this means the config changed under us.
        tracing::error!(appliance = %id, error = %e, "bad fill window");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "bad_fill_window",
            e.to_string(),
        )
    })?;
    let expires = now.saturating_add(state.config.fill_plan_ttl().as_secs());
    // One token for the whole catalogue prefix: a plan spans many titles, and
    // the appliance needs nothing else from its sources.
    let token = state.keys.sign("/titles/", expires, None, now)?;
    let input = Input {
        appliance: &me,
        fleet: &fleet,
        titles: &titles,
        plays: &plays,
        window: &window,
        origin_url: state.config.origin_url.as_deref(),
        token: &token,
    };
    let mut plan = fillplan::plan(&input, now, cfg);
    plan.expires = expires;
    plan.version = state
        .store
        .fill_plan_version(&id, &fillplan::digest(&plan), now)
        .await?;
    state.metrics.fill_plans_served.inc();
    tracing::debug!(appliance = %id, version = plan.version, items = plan.items.len(),
        budget = plan.budget_bytes, "fill plan served");
    Ok((
        [(header::CACHE_CONTROL, "private, no-store")],
        axum::Json(plan),
    )
        .into_response())
}

/// The appliance `id` and the appliances that could be its sources (same site
/// or same region: nobody else is ever one), as the planner sees them.
fn fleet(state: &Fleet, id: &str, totals: &CatalogTotals) -> Option<(Appliance, Vec<Appliance>)> {
    let prefer_https = state.config.play.prefer_https;
    let reg = state.registry();
    let me = reg.appliances.get(id)?;
    let view = |aid: &str, a: &super::registry::Appliance, complete: HashSet<String>| Appliance {
        id: aid.to_owned(),
        tier: a.info.tier,
        site: a.info.site.clone(),
        region: a.info.region.clone(),
        storage_bytes: a.info.storage_bytes,
        eligible: a.health.up && a.last.as_ref().is_none_or(|h| h.status != "draining"),
        complete,
        url: super::api::appliance_url(&a.info, prefer_https).map(str::to_owned),
    };
    let fleet = reg
        .appliances
        .iter()
        .filter(|(aid, a)| {
            aid.as_str() != id && (a.info.site == me.info.site || a.info.region == me.info.region)
        })
        .map(|(aid, a)| {
            let complete = a.complete(totals).map(|h| h.rendition.clone()).collect();
            view(aid, a, complete)
        })
        .collect();
    Some((view(id, me, HashSet::new()), fleet))
}
