//! One simulated run: a world, a planner and a disk size in; where every
//! viewer's bytes came from, hour by hour, and what filling cost, out.
//!
//! Steering's own code decides: `steer::decide` picks the appliance for each
//! session from a snapshot of who holds what, and the planners are steering's
//! `placement` policies fed by its `forecast` (or by decayed plays, or by the
//! trace's own next day for the oracle). The appliance side is modelled after
//! fill-agent: a plan is fetched in order, whole titles, urgent ones (launches)
//! at any time from their `not_before` and the rest inside the local fill
//! window, at the configured rate, from a peer of the site holding the title,
//! else the region's IXP holding it, else the origin; room is made by evicting
//! what the plan no longer wants, least valuable first (fill-agent's `evict`).
//!
//! Not modelled: appliances' egress capacity (every appliance can serve what it
//! holds; disk is the question here), failures, and content steering moving
//! viewers mid-session (a session is served whole by the appliance picked at
//! its start).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use control_client::wire::{FillWindow, Tier};
use ipnet::IpNet;
use rand::{SeedableRng, rngs::SmallRng};
use serde::Serialize;
use steering::fleet::placement::{self, Assigned, Member, Rules};
use steering::fleet::steer::{self, ClientNetwork, Node, Policy, Reason, Snapshot};
use steering::forecast::{self, History, TitleMeta};

use super::trace::{DAY, HOUR, World};

/// Which planner fills the disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Planner {
    /// Steering's first policy: decayed plays, launches first, per appliance.
    Current,
    /// The forecast placed per site.
    Forecast,
    /// The forecast placement fed the trace's actual next day: the upper bound.
    Oracle,
}

impl Planner {
    pub fn name(self) -> &'static str {
        match self {
            Planner::Current => "current",
            Planner::Forecast => "forecast",
            Planner::Oracle => "oracle",
        }
    }

    pub fn parse(s: &str) -> Option<Planner> {
        match s {
            "current" => Some(Planner::Current),
            "forecast" => Some(Planner::Forecast),
            "oracle" => Some(Planner::Oracle),
            _ => None,
        }
    }
}

/// The fleet and its rules.
#[derive(Debug, Clone)]
pub struct Setup {
    pub planner: Planner,
    /// Each site's disk as a fraction of the catalogue's bytes, split evenly
    /// over its appliances.
    pub disk_fraction: f64,
    /// Each IXP appliance's disk as a fraction of the catalogue's bytes.
    pub ixp_disk_fraction: f64,
    pub ixps_per_region: usize,
    /// Fill rate of one appliance, bytes per second.
    pub fill_rate: f64,
    /// Local fill window, as in steering's config.
    pub window: (String, String),
    /// Days simulated before the reported ones (history for the planners,
    /// disks filled).
    pub warmup_days: usize,
    pub rules: Rules,
    /// The popularity policy's decay and lookback (steering's defaults).
    pub half_life: f64,
    pub lookback: u64,
    pub seed: u64,
}

/// Where bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An embedded appliance of the viewer's own ISP.
    Inside = 0,
    /// An IXP appliance.
    Ixp = 1,
    /// Another ISP's embedded appliance.
    OtherIsp = 2,
    Origin = 3,
}

const SOURCES: usize = 4;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Day {
    pub day: usize,
    pub bytes: f64,
    pub inside_isp_share: f64,
    pub ixp_share: f64,
    pub origin_share: f64,
    /// Inside-ISP share in each region's busiest local hour of the day, pooled.
    pub peak_inside_isp_share: f64,
    pub fill_bytes: f64,
    pub origin_fill_bytes: f64,
    pub evicted_bytes: f64,
    pub churn_bytes: f64,
}

/// Bytes per hour by source, for the picture.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Hourly {
    pub inside_isp: Vec<f64>,
    pub ixp: Vec<f64>,
    pub other_isp: Vec<f64>,
    pub origin: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub planner: Planner,
    pub disk_fraction: f64,
    /// Over the reported days, pooled over each region's busiest hour of each day.
    pub peak_inside_isp_share: f64,
    pub inside_isp_share: f64,
    pub ixp_share: f64,
    pub other_isp_share: f64,
    pub origin_share: f64,
    /// Launches released in the reported days: their first 24 h's bytes.
    pub launch_inside_isp_share: Option<f64>,
    pub launches: usize,
    pub fill_bytes_per_night: f64,
    pub origin_fill_bytes_per_night: f64,
    pub evicted_bytes: f64,
    /// Bytes filled again after being evicted earlier in the run.
    pub churn_bytes: f64,
    pub days: Vec<Day>,
    pub hourly: Hourly,
    pub seconds: f64,
}

struct Appliance {
    id: String,
    tier: Tier,
    region: usize,
    /// Site index for embedded ones.
    site: Option<usize>,
    capacity: u64,
    used: u64,
    held: Vec<bool>,
    /// Bytes of titles being filled.
    partial: HashMap<u32, u64>,
    hits: Vec<u32>,
    last_access: Vec<u64>,
    evicted_once: HashSet<u32>,
    plan: Vec<Assigned>,
}

impl Appliance {
    fn held_ids(&self, titles: &[placement::Title]) -> Arc<[String]> {
        self.held
            .iter()
            .enumerate()
            .filter(|(_, h)| **h)
            .map(|(i, _)| titles[i].id.clone())
            .collect()
    }
}

/// Plays per title in one hour of one region.
type HourCounts = Vec<(u32, u32)>;

struct Run<'a> {
    world: &'a World,
    setup: &'a Setup,
    titles: Vec<placement::Title>,
    /// Title id → index.
    title_at: HashMap<String, usize>,
    appliances: Vec<Appliance>,
    /// Per region: embedded appliance indices by site, and IXP indices.
    region_sites: Vec<Vec<usize>>,
    region_ixps: Vec<Vec<usize>>,
    site_apps: Vec<Vec<usize>>,
    /// Per region, per hour: plays per title, and all plays.
    history: Vec<Vec<HourCounts>>,
    totals: Vec<Vec<f64>>,
    /// Per region, per hour: sessions per site (catchment weights).
    site_plays: Vec<f64>,
    windows: Vec<FillWindow>,
    /// Per hour: bytes by source, all regions, and per region.
    bytes: Vec<[f64; SOURCES]>,
    region_bytes: Vec<Vec<[f64; SOURCES]>>,
    launch_bytes: [f64; SOURCES],
    fill: Vec<(f64, f64)>,
    evicted: Vec<f64>,
    churn: Vec<f64>,
}

fn add(to: &mut [f64; SOURCES], bytes: &[f64; SOURCES]) {
    for (t, b) in to.iter_mut().zip(bytes) {
        *t += b;
    }
}

fn site_prefix(site: usize) -> IpNet {
    let ip = Ipv4Addr::new(10, (site >> 8) as u8, site as u8, 0);
    IpNet::new(IpAddr::V4(ip), 24).expect("a /24 is valid")
}

fn client_ip(site: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, (site >> 8) as u8, site as u8, 1))
}

/// Simulate `world` under `setup`.
pub fn run(world: &World, setup: &Setup) -> Outcome {
    let started = Instant::now();
    let titles: Vec<placement::Title> = world
        .titles
        .iter()
        .map(|t| placement::Title::from_sizes(&t.id, &t.regions, t.release, &t.rendition_bytes()))
        .collect();
    let catalogue: u64 = titles.iter().map(|t| t.bytes).sum();
    let n = titles.len();
    let hours = world.days * 24 + 24;
    let new_app = |id: String, tier, region, site, capacity| Appliance {
        id,
        tier,
        region,
        site,
        capacity,
        used: 0,
        held: vec![false; n],
        partial: HashMap::new(),
        hits: vec![0; n],
        last_access: vec![0; n],
        evicted_once: HashSet::new(),
        plan: Vec::new(),
    };
    let mut appliances = Vec::new();
    let mut site_apps = vec![Vec::new(); world.sites.len()];
    let mut region_sites = vec![Vec::new(); world.regions.len()];
    let mut region_ixps = vec![Vec::new(); world.regions.len()];
    for (s, site) in world.sites.iter().enumerate() {
        let each = (catalogue as f64 * setup.disk_fraction / site.appliances as f64) as u64;
        for k in 0..site.appliances {
            site_apps[s].push(appliances.len());
            appliances.push(new_app(
                format!("{}-{k}", site.isp),
                Tier::Embedded,
                site.region,
                Some(s),
                each,
            ));
        }
        region_sites[site.region].push(s);
    }
    for (r, region) in world.regions.iter().enumerate() {
        for k in 0..setup.ixps_per_region {
            region_ixps[r].push(appliances.len());
            appliances.push(new_app(
                format!("ixp-{}-{k}", region.name),
                Tier::Ixp,
                r,
                None,
                (catalogue as f64 * setup.ixp_disk_fraction) as u64,
            ));
        }
    }
    let windows = world
        .regions
        .iter()
        .map(|r| FillWindow {
            start: setup.window.0.clone(),
            end: setup.window.1.clone(),
            utc_offset_minutes: r.utc_offset_minutes,
        })
        .collect();
    let title_at = titles
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.clone(), i))
        .collect();
    let mut run = Run {
        world,
        setup,
        titles,
        title_at,
        appliances,
        region_sites,
        region_ixps,
        site_apps,
        history: vec![Vec::with_capacity(hours); world.regions.len()],
        totals: vec![Vec::with_capacity(hours); world.regions.len()],
        site_plays: vec![0.0; world.sites.len()],
        windows,
        bytes: vec![[0.0; SOURCES]; hours],
        region_bytes: vec![vec![[0.0; SOURCES]; hours]; world.regions.len()],
        launch_bytes: [0.0; SOURCES],
        fill: vec![(0.0, 0.0); world.days + 1],
        evicted: vec![0.0; world.days + 1],
        churn: vec![0.0; world.days + 1],
    };
    run.simulate();
    run.outcome(started)
}

impl Run<'_> {
    fn simulate(&mut self) {
        let world = self.world;
        let networks: Vec<ClientNetwork> = world
            .sites
            .iter()
            .enumerate()
            .map(|(s, site)| ClientNetwork {
                prefix: site_prefix(s),
                asn: 64_512 + s as u32,
                region: world.regions[site.region].name.clone(),
                location: None,
            })
            .collect();
        let networks = Arc::new(steer::Networks::build(networks));
        let mut snapshot = self.snapshot(&networks);
        let mut rng = SmallRng::seed_from_u64(self.setup.seed);
        let decided_at = Instant::now();
        let mut next = 0;
        let mut counts: Vec<HashMap<u32, u32>> = vec![HashMap::new(); world.regions.len()];
        for hour in 0..world.days * 24 {
            let t0 = world.start + hour as u64 * HOUR;
            for r in 0..world.regions.len() {
                if self.plans_now(r, t0) {
                    self.plan_region(r, t0, hour);
                }
            }
            if self.fill_hour(t0, hour) {
                snapshot = self.snapshot(&networks);
            }
            while next < world.sessions.len() && world.sessions[next].start < t0 + HOUR {
                let s = world.sessions[next];
                next += 1;
                if s.start < t0 {
                    continue;
                }
                let site = s.site as usize;
                let region = world.sites[site].region;
                let title = &self.titles[s.title as usize];
                let d = steer::decide(
                    &snapshot.0,
                    client_ip(site),
                    &[title.id.as_str()],
                    decided_at,
                    &mut rng,
                );
                let source = match d.picks.first() {
                    None => Source::Origin,
                    Some(p) => {
                        let a = &mut self.appliances[snapshot.1[p.node as usize]];
                        a.hits[s.title as usize] += 1;
                        a.last_access[s.title as usize] = s.start;
                        match (p.reason, a.site) {
                            (Reason::IspEmbedded, _) => Source::Inside,
                            (_, Some(x)) if x == site => Source::Inside,
                            (_, Some(_)) => Source::OtherIsp,
                            (_, None) => Source::Ixp,
                        }
                    }
                };
                self.account(&s, region, source);
                *counts[region].entry(s.title).or_default() += 1;
                self.site_plays[site] += 1.0;
            }
            for (r, c) in counts.iter_mut().enumerate() {
                let mut list: HourCounts = c.drain().collect();
                list.sort_unstable();
                let total: f64 = list.iter().map(|x| f64::from(x.1)).sum();
                self.history[r].push(list);
                self.totals[r].push(total);
            }
        }
    }

    /// A snapshot of who holds what, and each of its nodes' appliance index.
    fn snapshot(&self, networks: &Arc<steer::Networks>) -> (Snapshot, Vec<usize>) {
        let snap = self.build_snapshot(networks);
        let at: HashMap<&str, usize> = self
            .appliances
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.as_str(), i))
            .collect();
        let index = snap.nodes().iter().map(|n| at[n.id.as_str()]).collect();
        (snap, index)
    }

    fn build_snapshot(&self, networks: &Arc<steer::Networks>) -> Snapshot {
        let nodes = self
            .appliances
            .iter()
            .map(|a| Node {
                id: a.id.clone(),
                tier: a.tier,
                site: a.site.map_or_else(
                    || format!("ixp-{}", self.world.regions[a.region].name),
                    |s| self.world.sites[s].isp.clone(),
                ),
                region: self.world.regions[a.region].name.clone(),
                location: None,
                up: true,
                draining: false,
                utilisation: 0.0,
                load_reported_at: None,
                renditions: a.held_ids(&self.titles),
            })
            .collect();
        let served = self
            .appliances
            .iter()
            .filter_map(|a| Some((site_prefix(a.site?), a.id.clone())));
        Snapshot::build_with(nodes, served, Arc::clone(networks), Policy::default())
    }

    /// A region plans when its fill window opens within this hour.
    fn plans_now(&self, region: usize, t0: u64) -> bool {
        let w = &self.windows[region];
        let Some(start) = fill_agent::window::parse_hhmm(&w.start) else {
            return false;
        };
        let local = t0 as i64 + i64::from(w.utc_offset_minutes) * 60;
        let minute = (local.rem_euclid(DAY as i64) / 60) as u32;
        (minute..minute + 60).contains(&start)
    }

    fn account(&mut self, s: &super::trace::Session, region: usize, source: Source) {
        let rate = f64::from(s.kbps) * 125.0;
        let base = self.world.start;
        let (mut at, end) = (s.start, s.start + u64::from(s.watch_s));
        while at < end {
            let hour = ((at - base) / HOUR) as usize;
            let until = (base + (hour as u64 + 1) * HOUR).min(end);
            let b = (until - at) as f64 * rate;
            if hour < self.bytes.len() {
                self.bytes[hour][source as usize] += b;
                self.region_bytes[region][hour][source as usize] += b;
            }
            at = until;
        }
        let title = &self.titles[s.title as usize];
        if let Some(release) = title.release
            && s.start < release + DAY
            && release >= base + self.setup.warmup_days as u64 * DAY
            && release + DAY <= base + self.world.days as u64 * DAY
        {
            self.launch_bytes[source as usize] += s.bytes() as f64;
        }
    }

    /// Demand per title for the region's plan at `t0` (the forecast's or the
    /// oracle's), index-aligned with the titles.
    fn demand(&self, region: usize, t0: u64, hour: usize) -> Vec<f64> {
        let n = self.titles.len();
        match self.setup.planner {
            Planner::Oracle => {
                let mut d = vec![0.0; n];
                let mut first_day = vec![0.0; n];
                let horizon = t0 + self.setup.rules.horizon;
                for s in self.sessions_between(t0, horizon + DAY) {
                    if self.world.sites[s.site as usize].region != region {
                        continue;
                    }
                    let i = s.title as usize;
                    if s.start < t0 + DAY {
                        d[i] += 1.0;
                    }
                    if let Some(r) = self.titles[i].release
                        && r > t0
                        && r <= horizon
                        && s.start < r + DAY
                    {
                        first_day[i] += 1.0;
                    }
                }
                d.iter()
                    .zip(first_day)
                    .map(|(a, b): (&f64, f64)| a.max(b))
                    .collect()
            }
            _ => {
                let history = self.history_for(region, hour);
                let metas: Vec<TitleMeta<'_>> = self
                    .world
                    .titles
                    .iter()
                    .map(|t| TitleMeta {
                        id: &t.id,
                        release: t.release,
                        audience: t.audience,
                    })
                    .collect();
                let f = forecast::forecast(&history, &metas, t0, &forecast::Params::default());
                self.titles.iter().map(|t| f.value(&t.id)).collect()
            }
        }
    }

    fn sessions_between(&self, from: u64, to: u64) -> &[super::trace::Session] {
        let s = &self.world.sessions;
        let a = s.partition_point(|x| x.start < from);
        let b = s.partition_point(|x| x.start < to);
        &s[a..b]
    }

    /// The region's history at the start of `hour`, as steering's store gives it.
    fn history_for(&self, region: usize, hour: usize) -> History {
        let have = hour.min(self.history[region].len());
        let hours = have.min(forecast::HISTORY_DAYS * 24);
        let mut hourly = Vec::with_capacity(hours);
        let mut daily: HashMap<String, Vec<f64>> = HashMap::new();
        let days = hours / 24;
        for ago in 0..hours {
            let h = have - 1 - ago;
            hourly.push(self.totals[region][h]);
            let day = ago / 24;
            if day >= days {
                continue;
            }
            for &(title, count) in &self.history[region][h] {
                let series = daily
                    .entry(self.titles[title as usize].id.clone())
                    .or_insert_with(|| vec![0.0; days]);
                series[day] += f64::from(count);
            }
        }
        hourly.truncate(days * 24);
        History { hourly, daily }
    }

    /// Decayed plays at `t0` over the lookback: of `region`, or of all regions.
    fn popularity(&self, region: Option<usize>, t0: u64, hour: usize) -> HashMap<usize, f64> {
        let mut out: HashMap<usize, f64> = HashMap::new();
        let hours = (self.setup.lookback / HOUR) as usize;
        for r in 0..self.world.regions.len() {
            if region.is_some_and(|x| x != r) {
                continue;
            }
            let have = hour.min(self.history[r].len());
            for ago in 0..hours.min(have) {
                let h = have - 1 - ago;
                // A play in hour h counted at the middle of it.
                let age = (t0 - (self.world.start + h as u64 * HOUR + HOUR / 2)) as f64;
                let w = (-age * std::f64::consts::LN_2 / self.setup.half_life).exp();
                for &(title, count) in &self.history[r][h] {
                    *out.entry(title as usize).or_default() += w * f64::from(count);
                }
            }
        }
        out
    }

    fn member(&self, a: usize) -> Member {
        let app = &self.appliances[a];
        Member {
            id: app.id.clone(),
            budget: app.capacity,
            holds: app
                .held
                .iter()
                .enumerate()
                .filter(|(_, h)| **h)
                .map(|(i, _)| i)
                .collect(),
        }
    }

    fn plan_region(&mut self, region: usize, t0: u64, hour: usize) {
        let world = self.world;
        let name = world.regions[region].name.as_str();
        let mut apps: Vec<usize> = self.region_ixps[region].clone();
        for &s in &self.region_sites[region] {
            apps.extend(&self.site_apps[s]);
        }
        let plans: HashMap<String, Vec<Assigned>> = match self.setup.planner {
            Planner::Current => {
                let local = self.popularity(Some(region), t0, hour);
                let global = self.popularity(None, t0, hour);
                apps.iter()
                    .map(|&a| {
                        let app = &self.appliances[a];
                        let scores = if app.tier == Tier::Ixp {
                            &global
                        } else {
                            &local
                        };
                        let ranked = placement::popularity_rank(
                            &self.titles,
                            name,
                            |id| {
                                self.title_at
                                    .get(id)
                                    .and_then(|i| scores.get(i))
                                    .copied()
                                    .unwrap_or(0.0)
                            },
                            t0,
                            self.setup.rules.horizon,
                        );
                        (
                            app.id.clone(),
                            placement::by_popularity(ranked, &self.titles, app.capacity),
                        )
                    })
                    .collect()
            }
            Planner::Forecast | Planner::Oracle => {
                let demand = self.demand(region, t0, hour);
                let sites: Vec<placement::Site> = self.region_sites[region]
                    .iter()
                    .map(|&s| placement::Site {
                        name: world.sites[s].isp.clone(),
                        weight: self.site_plays[s],
                        members: self.site_apps[s].iter().map(|&a| self.member(a)).collect(),
                    })
                    .collect();
                let ixps: Vec<Member> = self.region_ixps[region]
                    .iter()
                    .map(|&a| self.member(a))
                    .collect();
                let input = placement::Region {
                    name,
                    titles: &self.titles,
                    demand: &demand,
                    sites: &sites,
                    ixps: &ixps,
                    uncovered: 0.0,
                };
                placement::by_forecast(&input, t0, &self.setup.rules)
            }
        };
        for a in apps {
            let id = self.appliances[a].id.clone();
            self.appliances[a].plan = plans.get(&id).cloned().unwrap_or_default();
        }
    }

    /// One hour of filling everywhere; true if what appliances hold changed.
    fn fill_hour(&mut self, t0: u64, hour: usize) -> bool {
        let day = hour / 24;
        let budget = self.setup.fill_rate * HOUR as f64;
        let mut changed = false;
        let mut done: Vec<(usize, u32)> = Vec::new();
        for a in 0..self.appliances.len() {
            let open = fill_agent::window::is_open(&self.windows[self.appliances[a].region], t0);
            let app = &self.appliances[a];
            let planned: HashSet<u32> = app.plan.iter().map(|x| x.title as u32).collect();
            // Startable and missing, in plan order.
            let wanted: Vec<u32> = app
                .plan
                .iter()
                .filter(|x| (open || x.launch) && x.not_before.is_none_or(|nb| nb < t0 + HOUR))
                .map(|x| x.title as u32)
                .filter(|&t| !app.held[t as usize])
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let need: u64 = wanted
                .iter()
                .map(|&t| self.titles[t as usize].bytes - app.partial.get(&t).copied().unwrap_or(0))
                .sum();
            let free = app.capacity.saturating_sub(app.used);
            if need > free {
                self.evict(a, &planned, need - free, t0, day);
                changed = true;
            }
            // Whole titles in order while they fit, then fetch at the rate.
            let app = &self.appliances[a];
            let mut room = app.capacity.saturating_sub(app.used);
            let mut left = budget;
            let mut take = Vec::new();
            for t in wanted {
                let remaining =
                    self.titles[t as usize].bytes - app.partial.get(&t).copied().unwrap_or(0);
                if remaining > room {
                    break;
                }
                room -= remaining;
                take.push((t, remaining));
            }
            for (t, remaining) in take {
                if left <= 0.0 {
                    break;
                }
                let got = remaining.min(left as u64);
                left -= got as f64;
                let from_origin = self.source_is_origin(a, t);
                let app = &mut self.appliances[a];
                app.used += got;
                *app.partial.entry(t).or_default() += got;
                self.fill[day].0 += got as f64;
                if from_origin {
                    self.fill[day].1 += got as f64;
                }
                if got == remaining {
                    app.partial.remove(&t);
                    done.push((a, t));
                }
            }
        }
        for (a, t) in done {
            let app = &mut self.appliances[a];
            app.held[t as usize] = true;
            if app.evicted_once.contains(&t) {
                self.churn[day] += self.titles[t as usize].bytes as f64;
            }
            changed = true;
        }
        changed
    }

    /// A peer of the site, else an IXP of the region, holding the title; else
    /// the origin.
    fn source_is_origin(&self, a: usize, t: u32) -> bool {
        let app = &self.appliances[a];
        let peers = app.site.map_or(&[][..], |s| &self.site_apps[s][..]);
        let holds = |&b: &usize| b != a && self.appliances[b].held[t as usize];
        !(peers.iter().any(holds) || self.region_ixps[app.region].iter().any(holds))
    }

    fn evict(&mut self, a: usize, planned: &HashSet<u32>, need: u64, now: u64, day: usize) {
        let app = &self.appliances[a];
        let ids: HashSet<&str> = planned
            .iter()
            .map(|&t| self.titles[t as usize].id.as_str())
            .collect();
        let candidates: Vec<fill_agent::evict::Candidate> = app
            .held
            .iter()
            .enumerate()
            .filter(|(_, h)| **h)
            .map(|(i, _)| fill_agent::evict::Candidate {
                rendition: self.titles[i].id.clone(),
                bytes: self.titles[i].bytes,
                hits: u64::from(app.hits[i]),
                last_access: app.last_access[i],
            })
            .chain(
                app.partial
                    .iter()
                    .filter(|(t, _)| !planned.contains(t))
                    .map(|(&t, &b)| fill_agent::evict::Candidate {
                        rendition: self.titles[t as usize].id.clone(),
                        bytes: b,
                        hits: 0,
                        last_access: 0,
                    }),
            )
            .collect();
        let victims = fill_agent::evict::choose(candidates, &ids, need, now);
        let app = &mut self.appliances[a];
        for v in victims {
            let Some(&i) = self.title_at.get(v.rendition.as_str()) else {
                continue;
            };
            if app.held[i] {
                app.held[i] = false;
                app.evicted_once.insert(i as u32);
            } else {
                app.partial.remove(&(i as u32));
            }
            app.used = app.used.saturating_sub(v.bytes);
            self.evicted[day] += v.bytes as f64;
        }
    }

    fn outcome(&self, started: Instant) -> Outcome {
        let w = self.setup.warmup_days;
        let days = self.world.days;
        let share = |v: &[f64; SOURCES], k: Source| {
            let total: f64 = v.iter().sum();
            if total > 0.0 {
                v[k as usize] / total
            } else {
                0.0
            }
        };
        let mut report_days = Vec::new();
        let mut all = [0.0; SOURCES];
        let mut peaks = [0.0; SOURCES];
        for day in w..days {
            let mut sum = [0.0; SOURCES];
            for hour in &self.bytes[day * 24..(day + 1) * 24] {
                add(&mut sum, hour);
            }
            // Each region's busiest hour of its local day.
            let mut peak = [0.0; SOURCES];
            for (r, region) in self.world.regions.iter().enumerate() {
                let shift = -i64::from(region.utc_offset_minutes) / 60;
                let hours = (0..24).filter_map(|lh| {
                    let h = (day * 24) as i64 + lh + shift;
                    (h >= 0 && (h as usize) < days * 24).then_some(h as usize)
                });
                if let Some(h) = hours.max_by(|&a, &b| {
                    let t = |h: usize| self.region_bytes[r][h].iter().sum::<f64>();
                    t(a).total_cmp(&t(b))
                }) {
                    add(&mut peak, &self.region_bytes[r][h]);
                }
            }
            add(&mut all, &sum);
            add(&mut peaks, &peak);
            report_days.push(Day {
                day: day - w + 1,
                bytes: sum.iter().sum(),
                inside_isp_share: share(&sum, Source::Inside),
                ixp_share: share(&sum, Source::Ixp),
                origin_share: share(&sum, Source::Origin),
                peak_inside_isp_share: share(&peak, Source::Inside),
                fill_bytes: self.fill[day].0,
                origin_fill_bytes: self.fill[day].1,
                evicted_bytes: self.evicted[day],
                churn_bytes: self.churn[day],
            });
        }
        let reported = (days - w).max(1) as f64;
        let hours = w * 24..days * 24;
        let col = |k: Source| -> Vec<f64> {
            self.bytes[hours.clone()]
                .iter()
                .map(|b| b[k as usize])
                .collect()
        };
        let launches = self
            .titles
            .iter()
            .filter(|t| {
                t.release.is_some_and(|r| {
                    r >= self.world.start + w as u64 * DAY
                        && r + DAY <= self.world.start + days as u64 * DAY
                })
            })
            .count();
        let launch_total: f64 = self.launch_bytes.iter().sum();
        Outcome {
            planner: self.setup.planner,
            disk_fraction: self.setup.disk_fraction,
            peak_inside_isp_share: share(&peaks, Source::Inside),
            inside_isp_share: share(&all, Source::Inside),
            ixp_share: share(&all, Source::Ixp),
            other_isp_share: share(&all, Source::OtherIsp),
            origin_share: share(&all, Source::Origin),
            launch_inside_isp_share: (launch_total > 0.0)
                .then(|| self.launch_bytes[Source::Inside as usize] / launch_total),
            launches,
            fill_bytes_per_night: self.fill[w..days].iter().map(|f| f.0).sum::<f64>() / reported,
            origin_fill_bytes_per_night: self.fill[w..days].iter().map(|f| f.1).sum::<f64>()
                / reported,
            evicted_bytes: self.evicted[w..days].iter().sum(),
            churn_bytes: self.churn[w..days].iter().sum(),
            days: report_days,
            hourly: Hourly {
                inside_isp: col(Source::Inside),
                ixp: col(Source::Ixp),
                other_isp: col(Source::OtherIsp),
                origin: col(Source::Origin),
            },
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}
