//! Placement: which titles each appliance of a region should hold, in the
//! order it should fetch them. Two policies:
//!
//! - [`by_popularity`], the first one: every appliance on its own, titles by
//!   decayed plays of its region (IXPs: of everywhere), launches first, cut
//!   at its disk. Kept selectable (`fill.planner = "popularity"`).
//! - [`by_forecast`], the default: titles by the demand forecast, one site at
//!   a time, so a site's appliances hold the head of the distribution each
//!   and split the tail between them without duplicates, and a region's IXPs
//!   hold what its embedded sites leave uncovered.
//!
//! Pure: titles (index-aligned with their values), who is where with how much
//! disk and what they hold, and `now` in; an ordered list per appliance out.
//! [`super::fillplan`] turns one appliance's list into its fill plan, and the
//! fleet simulator (`oca-bench fleet-sim`) runs these same functions.

use std::collections::{HashMap, HashSet};

/// A title as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Title {
    pub id: String,
    /// Regions it may be played in; `*` is everywhere.
    pub regions: Vec<String>,
    /// Unix seconds before which it may not be played.
    pub release: Option<u64>,
    /// All its renditions' bytes: what holding it costs.
    pub bytes: u64,
    /// Bytes a play of it is expected to move: what holding it is worth per
    /// play.
    pub bytes_per_play: f64,
}

impl Title {
    /// A title from its renditions' sizes. A play is taken to move one
    /// rendition's worth, the mean (a viewer watches one rung at a time; how
    /// much of the title is watched is not known here).
    pub fn from_sizes(id: &str, regions: &[String], release: Option<u64>, sizes: &[u64]) -> Title {
        let bytes = sizes.iter().fold(0u64, |a, &b| a.saturating_add(b));
        Title {
            id: id.to_owned(),
            regions: regions.to_vec(),
            release,
            // A title with renditions is playable even if they are empty.
            bytes: if sizes.is_empty() { 0 } else { bytes.max(1) },
            bytes_per_play: if sizes.is_empty() {
                0.0
            } else {
                bytes as f64 / sizes.len() as f64
            },
        }
    }

    pub fn available_in(&self, region: &str) -> bool {
        self.regions.iter().any(|r| r == "*" || r == region)
    }
}

/// An appliance to place titles on.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: String,
    /// Bytes it may fill (storage minus headroom); 0: unknown, no limit.
    pub budget: u64,
    /// Titles (indices) it holds completely now: kept where they are when
    /// there is a choice, so a new plan moves as little as it can.
    pub holds: HashSet<usize>,
}

/// The embedded appliances of one site: they serve the same client networks.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub name: String,
    /// Share of the region's plays from the networks this site serves.
    pub weight: f64,
    pub members: Vec<Member>,
}

/// One region, as the forecast policy places it.
#[derive(Debug, Clone, Copy)]
pub struct Region<'a> {
    pub name: &'a str,
    pub titles: &'a [Title],
    /// Expected plays per title (index-aligned with `titles`): the next 24 h,
    /// or a launch's first day (`Forecast::value`).
    pub demand: &'a [f64],
    pub sites: &'a [Site],
    /// The region's IXP appliances.
    pub ixps: &'a [Member],
    /// Share of the region's plays from networks no embedded site serves.
    pub uncovered: f64,
}

/// Knobs of the forecast policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// The most watched titles that together make this share of a site's
    /// expected bytes go on every appliance of the site (failures and load
    /// spread over the site); the rest on `replicas` of them.
    pub head_share: f64,
    /// Appliances of a site that hold a title outside the head.
    pub replicas: usize,
    /// Titles released further ahead than this are not placed yet.
    pub horizon: u64,
    /// Launch fills of embedded appliances start spread over this long, so a
    /// region's parents and the origin are not all asked at once.
    pub stagger: u64,
    /// Share of a site's demand for a title it holds that still reaches the
    /// IXP (failures, overload): what keeps the head on IXPs too.
    pub ixp_spill: f64,
    /// A title a group already holds is ranked as if worth this much more:
    /// a newcomer must be clearly better to push it out, so forecast noise
    /// at the edge of the disk does not refill the same bytes night after
    /// night.
    pub keep_bonus: f64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            head_share: 0.5,
            replicas: 1,
            horizon: 48 * 3600,
            stagger: 2 * 3600,
            ixp_spill: 0.1,
            keep_bonus: 0.5,
        }
    }
}

/// A title placed on an appliance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assigned {
    /// Index into the titles.
    pub title: usize,
    /// What it is expected to be worth there (the policy's score).
    pub value: f64,
    /// Not released yet: fetch it now, inside or outside the fill window.
    pub launch: bool,
    /// Do not start fetching before this (a launch's place in the stagger).
    pub not_before: Option<u64>,
}

/// Appliance id → what it should hold, in fetch order.
pub type Placement = HashMap<String, Vec<Assigned>>;

/// A title worth placing, with what it is worth.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    title: usize,
    /// Expected bytes served from it.
    value: f64,
    launch: bool,
    head: bool,
}

/// The forecast policy for one region at `now`. Titles nobody is expected to
/// watch come last, in id order, on `replicas` appliances per site: spare
/// disk is better spent on them than on nothing (a new service has no plays
/// to forecast from), and the first title with demand pushes them out.
pub fn by_forecast(region: &Region<'_>, now: u64, rules: &Rules) -> Placement {
    let titles = region.titles;
    let mut candidates: Vec<Candidate> = titles
        .iter()
        .enumerate()
        .filter(|(_, t)| t.bytes > 0 && t.available_in(region.name))
        .filter(|(_, t)| {
            t.release
                .is_none_or(|r| r <= now.saturating_add(rules.horizon))
        })
        .map(|(i, t)| Candidate {
            title: i,
            value: region.demand.get(i).copied().unwrap_or(0.0).max(0.0) * t.bytes_per_play,
            launch: t.release.is_some_and(|r| r > now),
            head: false,
        })
        .collect();
    mark_head(&mut candidates, rules.head_share);
    order_by_density(&mut candidates, titles);

    let mut out = Placement::new();
    let mut held_at: Vec<HashSet<usize>> = Vec::with_capacity(region.sites.len());
    for site in region.sites {
        let assigned = assign(&site.members, &candidates, titles, rules, now, true);
        held_at.push(
            assigned
                .values()
                .flat_map(|list| list.iter().map(|a| a.title))
                .collect(),
        );
        out.extend(assigned);
    }

    // The IXPs: what the sites leave uncovered, plus the spill of what they hold.
    if !region.ixps.is_empty() {
        let weights: f64 = region.uncovered + region.sites.iter().map(|s| s.weight).sum::<f64>();
        let mut residual: Vec<Candidate> = candidates
            .iter()
            .map(|c| {
                let mut share = region.uncovered;
                for (site, held) in region.sites.iter().zip(&held_at) {
                    share += site.weight
                        * if held.contains(&c.title) {
                            rules.ixp_spill
                        } else {
                            1.0
                        };
                }
                Candidate {
                    value: if weights > 0.0 {
                        c.value * share / weights
                    } else {
                        c.value
                    },
                    head: false,
                    ..*c
                }
            })
            .collect();
        mark_head(&mut residual, rules.head_share);
        order_by_density(&mut residual, titles);
        out.extend(assign(region.ixps, &residual, titles, rules, now, false));
    }
    out
}

/// Mark the most valuable candidates that make up `share` of all the value,
/// and every launch, as the head.
fn mark_head(candidates: &mut [Candidate], share: f64) {
    let total: f64 = candidates.iter().map(|c| c.value).sum();
    let mut by_value: Vec<usize> = (0..candidates.len()).collect();
    by_value.sort_by(|&a, &b| candidates[b].value.total_cmp(&candidates[a].value));
    let mut sum = 0.0;
    for i in by_value {
        if sum >= share * total {
            break;
        }
        sum += candidates[i].value;
        candidates[i].head = true;
    }
    // Launches go wide: their first evening is the one that must not miss.
    for c in candidates.iter_mut().filter(|c| c.launch) {
        c.head = true;
    }
}

/// Expected bytes per byte of disk, best first; ties by id.
fn order_by_density(candidates: &mut [Candidate], titles: &[Title]) {
    let density = |c: &Candidate| c.value / titles[c.title].bytes as f64;
    candidates.sort_by(|a, b| {
        density(b)
            .total_cmp(&density(a))
            .then_with(|| titles[a.title].id.cmp(&titles[b.title].id))
    });
}

/// Place `candidates` (best first) on a group of appliances: head titles on
/// every one with room, the rest on `rules.replicas`, preferring appliances
/// that hold the title already, then the one with most room left, then a
/// stable per-title order (so the tail spreads evenly and plans do not flap).
fn assign(
    members: &[Member],
    candidates: &[Candidate],
    titles: &[Title],
    rules: &Rules,
    now: u64,
    embedded: bool,
) -> Placement {
    // This group's order: what it holds already a little ahead.
    let held = |c: &Candidate| members.iter().any(|m| m.holds.contains(&c.title));
    let mut candidates: Vec<(f64, Candidate)> = candidates
        .iter()
        .map(|c| {
            let bonus = if held(c) { 1.0 + rules.keep_bonus } else { 1.0 };
            (c.value * bonus / titles[c.title].bytes as f64, *c)
        })
        .collect();
    candidates.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| titles[a.1.title].id.cmp(&titles[b.1.title].id))
    });
    let mut used = vec![0u64; members.len()];
    let mut lists: Vec<Vec<Assigned>> = vec![Vec::new(); members.len()];
    let room = |m: usize, used: &[u64]| -> u64 {
        match members[m].budget {
            0 => u64::MAX,
            b => b.saturating_sub(used[m]),
        }
    };
    let mut order: Vec<usize> = Vec::with_capacity(members.len());
    for (_, c) in &candidates {
        let t = &titles[c.title];
        let want = if c.head {
            members.len()
        } else {
            rules.replicas.clamp(1, members.len().max(1))
        };
        order.clear();
        order.extend((0..members.len()).filter(|&m| room(m, &used) >= t.bytes));
        order.sort_by(|&a, &b| {
            let holds = |m: usize| members[m].holds.contains(&c.title);
            holds(b)
                .cmp(&holds(a))
                .then_with(|| room(b, &used).cmp(&room(a, &used)))
                .then_with(|| spread(&t.id, &members[a].id).cmp(&spread(&t.id, &members[b].id)))
        });
        for &m in order.iter().take(want) {
            used[m] = used[m].saturating_add(t.bytes);
            let not_before = (c.launch && embedded)
                .then(|| stagger(now, t.release.unwrap_or(now), &members[m].id, &t.id, rules));
            lists[m].push(Assigned {
                title: c.title,
                value: c.value,
                launch: c.launch,
                not_before: not_before.filter(|&at| at > now),
            });
        }
    }
    // Launches are fetched first, soonest release first: they have a
    // deadline, and their room is already counted.
    for list in &mut lists {
        list.sort_by_key(|a| {
            (
                !a.launch,
                if a.launch {
                    titles[a.title].release
                } else {
                    None
                },
            )
        });
    }
    members
        .iter()
        .zip(lists)
        .map(|(m, l)| (m.id.clone(), l))
        .collect()
}

/// When an embedded appliance starts fetching a launch: spread over
/// `rules.stagger` from now, by a hash of the appliance and title, but only
/// while the release leaves time for it (at least twice the stagger; later,
/// everyone fetches at once, as the release matters more than the origin).
fn stagger(now: u64, release: u64, appliance: &str, title: &str, rules: &Rules) -> u64 {
    if rules.stagger == 0 || release.saturating_sub(now) < 2 * rules.stagger {
        return now;
    }
    now + spread(title, appliance) % rules.stagger
}

/// A stable hash of a pair. FNV-1a, written out because orders derived from it
/// must not change between builds (a new order is a new plan).
pub fn spread(a: &str, b: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.bytes().chain([0]).chain(b.bytes()) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Titles ranked the first way: available in `region`, not released further
/// ahead than `horizon`, launches first (soonest release first), then by
/// `score` (decayed plays), ties by id. Returns (title, score, launch) with
/// the launch boost added to launches' scores so scores order like the list.
pub fn popularity_rank(
    titles: &[Title],
    region: &str,
    score: impl Fn(&str) -> f64,
    now: u64,
    horizon: u64,
) -> Vec<Assigned> {
    let horizon_end = now.saturating_add(horizon);
    let mut ranked: Vec<(Assigned, Option<u64>)> = titles
        .iter()
        .enumerate()
        .filter(|(_, t)| t.bytes > 0 && t.available_in(region))
        .filter_map(|(i, t)| {
            let launch = match t.release {
                // Beyond the horizon: nobody can play it for a while yet; its
                // space is better spent on what plays now.
                Some(r) if r > horizon_end => return None,
                Some(r) if r > now => Some(r),
                _ => None,
            };
            Some((
                Assigned {
                    title: i,
                    value: score(&t.id),
                    launch: launch.is_some(),
                    not_before: None,
                },
                launch,
            ))
        })
        .collect();
    // The launch boost: above every title already out, so the score an
    // appliance sees orders the same way the plan does across the two groups.
    let boost = ranked
        .iter()
        .filter(|r| r.1.is_none())
        .map(|r| r.0.value)
        .fold(0.0, f64::max)
        + 1.0;
    for r in &mut ranked {
        if r.1.is_some() {
            r.0.value += boost;
        }
    }
    ranked.sort_by(|a, b| match (a.1, b.1) {
        (Some(x), Some(y)) => x
            .cmp(&y)
            .then_with(|| titles[a.0.title].id.cmp(&titles[b.0.title].id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => {
            b.0.value
                .total_cmp(&a.0.value)
                .then_with(|| titles[a.0.title].id.cmp(&titles[b.0.title].id))
        }
    });
    ranked.into_iter().map(|r| r.0).collect()
}

/// The popularity policy for one appliance: its ranking cut at its budget
/// (0: no limit). Whole titles in rank order: skipping ahead would let a less
/// wanted title take the space a more wanted one needs next time.
pub fn by_popularity(ranked: Vec<Assigned>, titles: &[Title], budget: u64) -> Vec<Assigned> {
    let mut used = 0u64;
    let mut out = Vec::new();
    for a in ranked {
        let bytes = titles[a.title].bytes;
        if budget > 0 && used.saturating_add(bytes) > budget {
            break;
        }
        used = used.saturating_add(bytes);
        out.push(a);
    }
    out
}

#[cfg(test)]
mod tests;
