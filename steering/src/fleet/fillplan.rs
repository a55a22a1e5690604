//! Fill plans: what one appliance should hold, in priority order, within its
//! disk, and where to fetch each rendition from.
//!
//! Pure: the appliance, the fleet around it, the catalog, recent plays and
//! `now` in, a plan out. The API handler loads the inputs, signs the token the
//! source URLs carry and persists the plan's version; nothing here does IO.

use std::collections::{HashMap, HashSet};

use control_client::wire::{FillItem, FillObject, FillPlan, FillSource, FillWindow, Tier};
use serde::Serialize;

use super::placement::{self, Assigned};
use crate::config::FillConfig;

/// A title as planning needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Title {
    pub id: String,
    /// Regions it may be played in; `*` is everywhere.
    pub regions: Vec<String>,
    /// Unix seconds before which it may not be played.
    pub release: Option<u64>,
    /// A launch's expected first-day audience (`title.toml`), if given.
    pub audience: Option<f64>,
    pub renditions: Vec<Rendition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rendition {
    pub id: String,
    pub objects: Vec<FillObject>,
}

impl Rendition {
    pub fn bytes(&self) -> u64 {
        self.objects
            .iter()
            .fold(0u64, |acc, o| acc.saturating_add(o.size))
    }
}

/// One recorded play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Play {
    pub title: String,
    pub region: String,
    pub at: u64,
}

/// An appliance: the one the plan is for, or a possible source.
#[derive(Debug, Clone)]
pub struct Appliance {
    pub id: String,
    pub tier: Tier,
    pub site: String,
    pub region: String,
    /// Disk size in bytes; 0: unknown.
    pub storage_bytes: u64,
    /// Up and not draining: only such appliances are handed out as sources.
    pub eligible: bool,
    /// Renditions it holds completely.
    pub complete: HashSet<String>,
    /// Root URL objects are fetched from (HTTPS or HTTP as configured); none:
    /// it cannot be a source.
    pub url: Option<String>,
}

/// Everything a plan is computed from.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub appliance: &'a Appliance,
    /// The other appliances (the planned one, if present, is skipped).
    pub fleet: &'a [Appliance],
    pub titles: &'a [Title],
    pub plays: &'a [Play],
    pub window: &'a FillWindow,
    /// Root URL of the origin, the source of last resort.
    pub origin_url: Option<&'a str>,
    /// The URL-signing token every source URL carries (`{url}/t/{token}/`).
    pub token: &'a str,
}

/// The plan for `input.appliance` at `now` by the popularity policy (decayed
/// plays, launches first). Its `version` is 0: the caller numbers plans by
/// their `digest`.
pub fn plan(input: &Input<'_>, now: u64, cfg: &FillConfig) -> FillPlan {
    let me = input.appliance;
    let titles = placement_titles(input.titles);
    let scores = popularity_scores(me, input.plays, now, cfg);
    let ranked = placement::popularity_rank(
        &titles,
        &me.region,
        |id| scores.get(id).copied().unwrap_or(0.0),
        now,
        cfg.horizon.as_secs(),
    );
    let assigned =
        placement::by_popularity(ranked, &titles, budget(me.storage_bytes, cfg.headroom));
    plan_assigned(input, &assigned, now, cfg)
}

/// Decayed plays per title as the popularity policy counts them for `me`:
/// plays of its region within the lookback (an IXP's: of every region, as it
/// holds the wider catalogue).
pub fn popularity_scores(
    me: &Appliance,
    plays: &[Play],
    now: u64,
    cfg: &FillConfig,
) -> HashMap<String, f64> {
    let since = now.saturating_sub(cfg.lookback.as_secs());
    let plays = plays
        .iter()
        .filter(|p| p.at >= since && (me.tier == Tier::Ixp || p.region == me.region))
        .map(|p| (p.title.as_str(), p.at));
    let half_life = cfg.half_life.as_secs_f64().max(1.0);
    crate::popularity::popularity(plays, now, half_life)
        .into_iter()
        .map(|(t, s)| (t.to_owned(), s))
        .collect()
}

/// The catalogue as placement sees it (index-aligned with `titles`).
pub fn placement_titles(titles: &[Title]) -> Vec<placement::Title> {
    titles
        .iter()
        .map(|t| {
            let sizes: Vec<u64> = t.renditions.iter().map(Rendition::bytes).collect();
            placement::Title::from_sizes(&t.id, &t.regions, t.release, &sizes)
        })
        .collect()
}

/// The plan for `input.appliance` holding `assigned` (indices into
/// `input.titles`, in fetch order).
pub fn plan_assigned(
    input: &Input<'_>,
    assigned: &[Assigned],
    now: u64,
    cfg: &FillConfig,
) -> FillPlan {
    let me = input.appliance;
    let groups = source_groups(input);
    let mut items = Vec::new();
    for a in assigned {
        let Some(title) = input.titles.get(a.title) else {
            continue;
        };
        for rendition in &title.renditions {
            items.push(FillItem {
                rendition: rendition.id.clone(),
                title: title.id.clone(),
                score: a.value,
                urgent: a.launch,
                not_before: a.not_before,
                bytes: rendition.bytes(),
                objects: rendition.objects.clone(),
                sources: sources(&groups, &rendition.id, input),
            });
        }
    }
    FillPlan {
        appliance: me.id.clone(),
        version: 0,
        generated_at: now,
        expires: now.saturating_add(cfg.plan_ttl.as_secs()),
        window: input.window.clone(),
        budget_bytes: budget(me.storage_bytes, cfg.headroom),
        items,
    }
}

/// Bytes the plan may fill: storage minus headroom; 0 when storage is unknown.
pub fn budget(storage_bytes: u64, headroom: f64) -> u64 {
    if storage_bytes == 0 {
        return 0;
    }
    let keep = 1.0 - headroom.clamp(0.0, 1.0);
    // At least one byte, so a known (if tiny) disk never reads as "unknown".
    ((storage_bytes as f64 * keep).floor() as u64).max(1)
}

/// Candidate sources in preference order, before filtering by what each holds:
/// same site, then same tier in the region, then the region's IXPs (parents of
/// embedded appliances; an IXP's parent would be another region's, and
/// fetching across regions is the origin's job).
fn source_groups<'a>(input: &Input<'a>) -> Vec<(&'a Appliance, &'static str)> {
    let me = input.appliance;
    let others = || {
        input
            .fleet
            .iter()
            .filter(|a| a.id != me.id && a.eligible && a.url.is_some())
    };
    let mut out: Vec<(&Appliance, &'static str)> = Vec::new();
    let mut group = |pred: &dyn Fn(&Appliance) -> bool, kind| {
        let mut g: Vec<&Appliance> = others()
            .filter(|a| pred(a) && !out.iter().any(|(o, _)| o.id == a.id))
            .collect();
        g.sort_by_key(|a| (spread(&me.id, &a.id), a.id.clone()));
        out.extend(g.into_iter().map(|a| (a, kind)));
    };
    group(&|a| a.site == me.site, "peer");
    group(&|a| a.tier == me.tier && a.region == me.region, "peer");
    if me.tier != Tier::Ixp {
        group(&|a| a.tier == Tier::Ixp && a.region == me.region, "parent");
    }
    out
}

/// Rendezvous order within a group: each appliance sees its equals in its own
/// stable order, so a site's or region's appliances do not all fetch from the
/// same peer first.
fn spread(me: &str, other: &str) -> u64 {
    placement::spread(me, other)
}

fn sources(
    groups: &[(&Appliance, &'static str)],
    rendition: &str,
    input: &Input<'_>,
) -> Vec<FillSource> {
    let mut out: Vec<FillSource> = groups
        .iter()
        .filter(|(a, _)| a.complete.contains(rendition))
        .filter_map(|(a, kind)| {
            Some(FillSource {
                id: a.id.clone(),
                kind: (*kind).to_owned(),
                base_url: signed_base(a.url.as_deref()?, input.token),
            })
        })
        .collect();
    if let Some(origin) = input.origin_url {
        out.push(FillSource {
            id: "origin".into(),
            kind: "origin".into(),
            base_url: signed_base(origin, input.token),
        });
    }
    out
}

fn signed_base(url: &str, token: &str) -> String {
    format!("{}/t/{token}/", url.trim_end_matches('/'))
}

/// The part of a plan that is its content, for `digest`.
#[derive(Serialize)]
struct Content<'a> {
    window: &'a FillWindow,
    budget_bytes: u64,
    items: Vec<ItemContent<'a>>,
}

#[derive(Serialize)]
struct ItemContent<'a> {
    rendition: &'a str,
    urgent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_before: Option<u64>,
    objects: &'a [FillObject],
    sources: Vec<&'a str>,
}

/// SHA-256 (hex) over what the plan asks for: items in order with their
/// objects, urgency and source ids, the window and the budget. Tokens, scores
/// and timestamps change on every request and are left out, so an equal digest
/// means the appliance has nothing new to do.
pub fn digest(plan: &FillPlan) -> String {
    let content = Content {
        window: &plan.window,
        budget_bytes: plan.budget_bytes,
        items: plan
            .items
            .iter()
            .map(|i| ItemContent {
                rendition: &i.rendition,
                urgent: i.urgent,
                not_before: i.not_before,
                objects: &i.objects,
                sources: i.sources.iter().map(|s| s.id.as_str()).collect(),
            })
            .collect(),
    };
    // Plain structs of strings and numbers always serialise.
    let bytes = serde_json::to_vec(&content).unwrap_or_default();
    crate::sha256_hex(bytes)
}

/// Why a window or offset does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("{0:?} is not HH:MM-HH:MM with a distinct start and end")]
    Window(String),
    #[error("{0:?} is not +HH:MM or -HH:MM between -12:00 and +14:00")]
    Offset(String),
}

/// `HH:MM` → minutes after midnight.
fn hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// `HH:MM-HH:MM` → (start, end) in minutes after midnight; an end before the
/// start runs over midnight.
pub fn parse_window(s: &str) -> Result<(u16, u16), WindowError> {
    let err = || WindowError::Window(s.to_owned());
    let (a, b) = s.split_once('-').ok_or_else(err)?;
    let (start, end) = (hhmm(a).ok_or_else(err)?, hhmm(b).ok_or_else(err)?);
    // Equal ends would be either nothing or all day; make the operator say which.
    if start == end {
        return Err(err());
    }
    Ok((start, end))
}

/// `+HH:MM` / `-HH:MM` → minutes east of UTC.
pub fn parse_utc_offset(s: &str) -> Result<i32, WindowError> {
    let err = || WindowError::Offset(s.to_owned());
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(err()),
    };
    let minutes = sign * i32::from(hhmm(rest).ok_or_else(err)?);
    if !(-12 * 60..=14 * 60).contains(&minutes) {
        return Err(err());
    }
    Ok(minutes)
}

/// The appliance's window: its own `fill_window` and `utc_offset` when it
/// has them (from the config, or from enrolment), else `fill.window` in UTC.
pub fn window_for(
    fill_window: Option<&str>,
    utc_offset: Option<&str>,
    cfg: &FillConfig,
) -> Result<FillWindow, WindowError> {
    let (start, end) = parse_window(fill_window.unwrap_or(&cfg.window))?;
    let offset = utc_offset.map_or(Ok(0), parse_utc_offset)?;
    let fmt = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
    Ok(FillWindow {
        start: fmt(start),
        end: fmt(end),
        utc_offset_minutes: offset,
    })
}

#[cfg(test)]
mod tests;
