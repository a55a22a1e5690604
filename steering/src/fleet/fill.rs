//! `GET /v1/appliances/{id}/fill-plan`: load what the planner needs (catalog,
//! the fleet around the appliance, and the demand forecast or the recent
//! plays), sign one token for the plan's source URLs, run the pure planner
//! (`placement`, `fillplan`), and number the plan so an appliance can tell
//! "same plan" from "new plan".
//!
//! The forecast planner places a whole region at once (a site's appliances
//! split its tail; IXPs take what sites leave), so the forecast and each
//! region's placement are kept for `fill.forecast_refresh` and shared by
//! every plan request of the region: a fleet asking for plans costs one
//! count of plays by the database and one placement per region and refresh,
//! not one per request. A region is placed again sooner when its appliances
//! change (one joins, leaves or reports another disk size).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use control_client::wire::Tier;
use tokio::sync::Mutex;

use super::Fleet;
use super::api::authenticate;
use super::fillplan::{self, Appliance, Input};
use super::placement::{self, Assigned};
use super::registry::CatalogTotals;
use crate::config::{FillConfig, FillPlanner};
use crate::forecast::{self, Forecast, TitleMeta};
use crate::http::ApiError;

/// Plays read per plan at most by the popularity planner: about a week of a
/// busy service's plays in a region; beyond it the oldest (least weighted)
/// are left out.
const MAX_PLAYS: u32 = 2_000_000;

/// The forecast and the regions placed from it.
#[derive(Default)]
pub struct Placements {
    inner: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    /// Unix seconds the forecast was made at (0: never).
    at: u64,
    forecasts: Arc<HashMap<String, Forecast>>,
    /// Region → (its appliances' fingerprint, appliance → titles by id).
    regions: HashMap<String, (u64, Arc<HashMap<String, Vec<(String, Assigned)>>>)>,
}

pub async fn fill_plan(
    State(state): State<Arc<Fleet>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = authenticate(&state, &headers, Some(&id))?;
    let now = crate::unix_now();
    let cfg = &state.config.fill;
    let titles = state.store.fill_catalog().await?;
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
    let (fill_window, utc_offset) = match state.config.appliances.iter().find(|a| a.id == id) {
        Some(a) => (a.fill_window.clone(), Some(a.utc_offset.clone())),
        None => state
            .registry()
            .appliances
            .get(&id)
            .and_then(|a| a.bound.as_ref())
            .map_or((None, None), |b| {
                (b.fill_window.clone(), b.utc_offset.clone())
            }),
    };
    let window =
        fillplan::window_for(fill_window.as_deref(), utc_offset.as_deref(), cfg).map_err(|e| {
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
    let mut input = Input {
        appliance: &me,
        fleet: &fleet,
        titles: &titles,
        plays: &[],
        window: &window,
        origin_url: state.config.origin_url.as_deref(),
        token: &token,
    };
    let mut plan = match cfg.planner {
        FillPlanner::Popularity => {
            let plays = state
                .store
                .plays_all_since(now.saturating_sub(cfg.lookback.as_secs()), MAX_PLAYS)
                .await?;
            input.plays = &plays;
            fillplan::plan(&input, now, cfg)
        }
        FillPlanner::Forecast => {
            let assigned = forecast_placement(&state, &me, &titles, &totals, now).await?;
            fillplan::plan_assigned(&input, &assigned, now, cfg)
        }
    };
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

/// What `me` should hold by the forecast planner: its part of its region's
/// placement, made (or reused) from the current forecast.
async fn forecast_placement(
    state: &Fleet,
    me: &Appliance,
    titles: &[fillplan::Title],
    totals: &CatalogTotals,
    now: u64,
) -> Result<Vec<Assigned>, ApiError> {
    let cfg = &state.config.fill;
    let mut cached = state.placements.inner.lock().await;
    if cached.at == 0
        || now >= cached.at.saturating_add(cfg.forecast_refresh.as_secs())
        || now < cached.at
    {
        let counts = state
            .store
            .demand(now, forecast::HISTORY_DAYS as u32)
            .await?;
        let histories = forecast::histories(&counts, forecast::HISTORY_DAYS);
        let metas = title_metas(titles, cfg);
        let params = forecast::Params::default();
        let forecasts = histories
            .iter()
            .map(|(region, h)| (region.clone(), forecast::forecast(h, &metas, now, &params)))
            .collect();
        *cached = Cached {
            at: now,
            forecasts: Arc::new(forecasts),
            regions: HashMap::new(),
        };
        tracing::debug!(
            regions = cached.forecasts.len(),
            "demand forecast refreshed"
        );
    }
    let region = me.region.clone();
    let (fingerprint, groups) = region_groups(state, &region, titles, totals, cfg);
    let fresh = cached
        .regions
        .get(&region)
        .is_some_and(|(f, _)| *f == fingerprint);
    if !fresh {
        let placed = place_region(&cached.forecasts, &region, titles, &groups, now, cfg);
        cached
            .regions
            .insert(region.clone(), (fingerprint, Arc::new(placed)));
    }
    let Some((_, placed)) = cached.regions.get(&region) else {
        return Ok(Vec::new());
    };
    // Back from ids to this catalogue's indices (an import may have run since).
    let at: HashMap<&str, usize> = titles
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    Ok(placed
        .get(&me.id)
        .map(|list| {
            list.iter()
                .filter_map(|(id, a)| {
                    Some(Assigned {
                        title: *at.get(id.as_str())?,
                        ..*a
                    })
                })
                .collect()
        })
        .unwrap_or_default())
}

fn title_metas<'a>(titles: &'a [fillplan::Title], cfg: &FillConfig) -> Vec<TitleMeta<'a>> {
    titles
        .iter()
        .map(|t| TitleMeta {
            id: &t.id,
            release: t.release,
            audience: t.audience.unwrap_or(cfg.launch_audience),
        })
        .collect()
}

/// A region's appliances as placement groups them: embedded ones by site,
/// and its IXPs; with a fingerprint of who they are and their disk sizes.
struct Groups {
    sites: Vec<placement::Site>,
    ixps: Vec<placement::Member>,
}

fn region_groups(
    state: &Fleet,
    region: &str,
    titles: &[fillplan::Title],
    totals: &CatalogTotals,
    cfg: &FillConfig,
) -> (u64, Groups) {
    // Rendition → title index, to turn what is complete into whole titles.
    let mut title_of: HashMap<&str, usize> = HashMap::new();
    for (i, t) in titles.iter().enumerate() {
        for r in &t.renditions {
            title_of.insert(&r.id, i);
        }
    }
    let reg = state.registry();
    let mut members: Vec<(&String, Tier, &String, placement::Member)> = reg
        .appliances
        .iter()
        .filter(|(_, a)| a.info.region == region && a.info.tier != Tier::Origin)
        .map(|(id, a)| {
            let mut complete: HashMap<usize, usize> = HashMap::new();
            for h in a.complete(totals) {
                if let Some(&t) = title_of.get(h.rendition.as_str()) {
                    *complete.entry(t).or_default() += 1;
                }
            }
            let holds: HashSet<usize> = complete
                .into_iter()
                .filter(|&(t, n)| n >= titles[t].renditions.len())
                .map(|(t, _)| t)
                .collect();
            (
                id,
                a.info.tier,
                &a.info.site,
                placement::Member {
                    id: id.clone(),
                    budget: fillplan::budget(a.info.storage_bytes, cfg.headroom),
                    holds,
                },
            )
        })
        .collect();
    members.sort_by(|a, b| a.0.cmp(b.0));
    let mut fingerprint = 0u64;
    let mut sites: Vec<placement::Site> = Vec::new();
    let mut ixps = Vec::new();
    for (id, tier, site, member) in members {
        let key = format!("{id}/{tier:?}/{site}/{}", member.budget);
        fingerprint = placement::spread(&fingerprint.to_string(), &key);
        if tier == Tier::Ixp {
            ixps.push(member);
            continue;
        }
        match sites.iter_mut().find(|s| s.name == *site) {
            Some(s) => s.members.push(member),
            None => sites.push(placement::Site {
                name: site.clone(),
                // Which networks each site serves, and how much they play, is
                // not in the plays log: sites weigh the same.
                weight: 1.0,
                members: vec![member],
            }),
        }
    }
    (fingerprint, Groups { sites, ixps })
}

fn place_region(
    forecasts: &HashMap<String, Forecast>,
    region: &str,
    titles: &[fillplan::Title],
    groups: &Groups,
    now: u64,
    cfg: &FillConfig,
) -> HashMap<String, Vec<(String, Assigned)>> {
    let ptitles = fillplan::placement_titles(titles);
    let empty = Forecast::default();
    let f = forecasts.get(region).unwrap_or(&empty);
    let demand: Vec<f64> = ptitles.iter().map(|t| f.value(&t.id)).collect();
    let rules = placement::Rules {
        head_share: cfg.head_share,
        replicas: cfg.replicas,
        horizon: cfg.horizon.as_secs(),
        stagger: cfg.launch_stagger.as_secs(),
        ..placement::Rules::default()
    };
    let input = placement::Region {
        name: region,
        titles: &ptitles,
        demand: &demand,
        sites: &groups.sites,
        ixps: &groups.ixps,
        uncovered: 0.0,
    };
    placement::by_forecast(&input, now, &rules)
        .into_iter()
        .map(|(app, list)| {
            let list = list
                .into_iter()
                .map(|a| (ptitles[a.title].id.clone(), a))
                .collect();
            (app, list)
        })
        .collect()
}
