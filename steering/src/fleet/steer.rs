//! Request steering: which appliances should serve a play, and in what order a player
//! should try the pathways it was given.
//!
//! Pure by design (inputs in, decision out; time and randomness are arguments) so every
//! decision can be unit-tested and replayed from a seed. All the expensive work — prefix
//! tries, per-tier and per-rendition node lists — happens once in [`Snapshot::build`], so
//! that a decision costs a couple of trie walks and a handful of random probes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use control_client::wire::Tier;
use ipnet::IpNet;
use rand::Rng;
use serde::Serialize;

mod snapshot;
#[cfg(test)]
use snapshot::unit_vector;
pub use snapshot::{Measured, Networks, RoutePref, Served, Snapshot};
use snapshot::{MeasuredPath, Need, distance_km};

/// Index into the snapshot's nodes: decisions carry indices, not strings, so they stay cheap.
pub type NodeId = u32;

/// One appliance as the registry sees it at snapshot time.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    /// Embedded or Ixp; origin-tier entries are not appliances and are never picked.
    pub tier: Tier,
    pub site: String,
    pub region: String,
    /// Latitude/longitude in degrees.
    pub location: Option<GeoPoint>,
    /// Health, with hysteresis already applied by the caller.
    pub up: bool,
    pub draining: bool,
    /// Last reported egress / capacity (0.0 ..).
    pub utilisation: f64,
    pub load_reported_at: Option<Instant>,
    /// Renditions this node holds completely, e.g. "titles/t1/v720"
    /// (shared with the registry's cache, so a rebuild does not copy them).
    pub renditions: Arc<[String]>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
}

/// A client network from config (later from an MRT RIB dump): prefix → origin ASN, region, location.
#[derive(Debug, Clone)]
pub struct ClientNetwork {
    pub prefix: IpNet,
    pub asn: u32,
    pub region: String,
    pub location: Option<GeoPoint>,
}

/// Knobs of the decision; see [`Policy::default`] for the values we run with.
#[derive(Debug, Clone)]
pub struct Policy {
    /// At or above this a node takes no new viewers: the headroom absorbs viewers already
    /// steered there whose traffic has not shown up in a load report yet.
    pub max_utilisation: f64,
    /// This many km weigh as much as utilisation 1.0. Zero, negative or NaN ignores distance.
    pub km_per_utilisation: f64,
    /// Load reports older than this are not trusted.
    pub stale_after: Duration,
    /// Utilisation assumed for a stale or missing report: pessimistic enough that a silent
    /// node is not flooded, optimistic enough that it is still used.
    pub stale_utilisation: f64,
    /// A path players measured at or above this (bit/s) has all the throughput a play
    /// needs; below, the shortfall counts against it (a path at half of it as utilisation
    /// 0.5), as far as the measurement is trusted.
    pub good_path_bps: f64,
    /// How many fallbacks besides the primary.
    pub fallbacks: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_utilisation: 0.85,
            km_per_utilisation: 5000.0,
            stale_after: Duration::from_secs(30),
            stale_utilisation: 0.5,
            good_path_bps: 25e6,
            fallbacks: 2,
        }
    }
}

/// Why a node was picked; serialised into decision logs and metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    IspEmbedded,
    /// In the client's ISP, but the ISP marked this appliance as a fallback
    /// for the client's prefix, or gave it a higher MED than the first pick's.
    IspFallback,
    RegionIxp,
    AnyAppliance,
    Saturated,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::IspEmbedded => "isp-embedded",
            Reason::IspFallback => "isp-fallback",
            Reason::RegionIxp => "region-ixp",
            Reason::AnyAppliance => "any-appliance",
            Reason::Saturated => "saturated",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    pub node: NodeId,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Primary first, then fallbacks; distinct nodes; at most 1 + policy.fallbacks.
    /// Empty means: send the player to the origin.
    pub picks: Vec<Pick>,
    /// The client's (asn, region) if known.
    pub network: Option<(u32, String)>,
    /// A preferred tier held the content but was saturated, so we went further.
    pub overflowed: bool,
}

/// Per-decision context: everything the score and eligibility checks read.
struct Ctx<'a> {
    snap: &'a Snapshot,
    need: Need<'a>,
    /// Reports at or after this are fresh; None: all are (the process is younger than
    /// `stale_after`). Comparing instants is cheaper than computing each report's age.
    fresh_from: Option<Instant>,
    client_pos: Option<[f64; 3]>,
    km_weight: f64,
    want: usize,
    /// What players in the client's network measured, per node.
    measured: &'a [MeasuredPath],
}

/// Kilometres of distance per millisecond of round trip: light in fibre
/// covers about 200 km a millisecond, there and back.
const KM_PER_RTT_MS: f64 = 100.0;

/// A tier's nodes, and whether they all hold the request's rarest rendition (`inline[0]`),
/// which then needs no check.
type Pool<'a> = (&'a [NodeId], bool);

/// A candidate evaluated once: node, score, site.
type Cand = (NodeId, f64, u32);

/// Pools up to this size are evaluated outright: cheaper than probing with its misses.
const SCAN_MAX: usize = 16;
/// Probes per pick in a big pool before falling back to evaluating all of it.
const PROBES: usize = 16;

impl<'a> Ctx<'a> {
    fn new(
        snap: &'a Snapshot,
        need: Need<'a>,
        now: Instant,
        pos: Option<[f64; 3]>,
        measured: &'a [MeasuredPath],
    ) -> Self {
        let km = snap.policy.km_per_utilisation;
        Ctx {
            snap,
            need,
            fresh_from: now.checked_sub(snap.policy.stale_after),
            client_pos: pos,
            km_weight: if km > 0.0 { 1.0 / km } else { 0.0 },
            want: snap.policy.fallbacks.saturating_add(1),
            measured,
        }
    }

    /// Holds every requested rendition; `in_pool` skips the one the pool is drawn from.
    fn holds(&self, id: NodeId, in_pool: bool) -> bool {
        let need = &self.need;
        let inline = &need.inline[usize::from(in_pool && need.len > 0)..need.len];
        let held = |rid: &u32| self.snap.holders[*rid as usize].holds(id);
        inline.iter().all(held) && need.spill.iter().all(held)
    }

    fn utilisation(&self, id: NodeId) -> f64 {
        let h = &self.snap.hot[id as usize];
        match h.reported_at {
            // A report from the future (clock skew between threads) counts as fresh.
            Some(at) if self.fresh_from.is_none_or(|f| at >= f) => h.utilisation,
            _ => self.snap.policy.stale_utilisation,
        }
    }

    /// Takes new viewers from this client: under the utilisation threshold,
    /// and not measured too slow from the client's network.
    fn under(&self, id: NodeId) -> bool {
        self.utilisation(id) < self.snap.policy.max_utilisation
            && !self.measured_of(id).is_some_and(|p| p.m.slow)
    }

    fn measured_of(&self, id: NodeId) -> Option<&MeasuredPath> {
        self.measured.iter().find(|p| p.node == id)
    }

    /// Lower is better: utilisation, plus distance (`km_per_utilisation` km weigh as
    /// much as a full node), plus what players measured beyond what distance explains,
    /// as far as the measurement is trusted (its confidence): time to first byte above
    /// both the distance's round trip and the best the client's network measured of any
    /// node, weighed as the distance light covers in it; and a throughput short of
    /// `good_path_bps`. Without a measurement, distance alone.
    fn score(&self, id: NodeId) -> f64 {
        let km = match (self.snap.hot[id as usize].pos, self.client_pos) {
            (Some(a), Some(b)) if self.km_weight > 0.0 => distance_km(a, b),
            _ => 0.0,
        };
        let mut score = self.utilisation(id) + km * self.km_weight;
        if let Some(p) = self.measured_of(id) {
            let m = &p.m;
            let excess_ms = (m.ttfb_ms - (km / KM_PER_RTT_MS).max(p.best_ttfb_ms)).max(0.0);
            let good = self.snap.policy.good_path_bps;
            let shortfall = if good > 0.0 {
                (1.0 - m.throughput_bps / good).clamp(0.0, 1.0)
            } else {
                0.0
            };
            score += m.confidence * (excess_ms * KM_PER_RTT_MS * self.km_weight + shortfall);
        }
        score
    }

    fn new_site(&self, site: u32, picks: &[Pick]) -> bool {
        picks
            .iter()
            .all(|p| self.snap.hot[p.node as usize].site != site)
    }

    /// Adds picks from one tier until `want` or the tier runs dry; true if the tier was
    /// saturated (live holders, but none under the threshold).
    fn fill<R: Rng + ?Sized>(
        &self,
        pool: Pool<'_>,
        reason: Reason,
        picks: &mut Vec<Pick>,
        rng: &mut R,
    ) -> bool {
        if pool.0.len() <= SCAN_MAX {
            return self.fill_exact(pool, reason, picks, rng, &mut [(0, 0.0, 0); SCAN_MAX]);
        }
        while picks.len() < self.want {
            match self.probe(pool.0, pool.1, picks, rng) {
                Some(node) => picks.push(Pick { node, reason }),
                None => {
                    // Candidates are scarce here (most of the pool saturated or missing some
                    // rendition): rare, so the buffer may come from the heap.
                    let mut buf = vec![(0, 0.0, 0); pool.0.len()];
                    return self.fill_exact(pool, reason, picks, rng, &mut buf);
                }
            }
        }
        false
    }

    /// Two-choice by rejection sampling: finds two uniform candidates on new sites in a few
    /// probes when most of a big pool is usable, where evaluating thousands would not do.
    fn probe<R: Rng + ?Sized>(
        &self,
        ids: &[NodeId],
        in_pool: bool,
        picks: &[Pick],
        rng: &mut R,
    ) -> Option<NodeId> {
        let mut first: Option<(NodeId, f64)> = None;
        for _ in 0..PROBES {
            let id = ids[below(rng, ids.len())];
            let h = &self.snap.hot[id as usize];
            if first.is_some_and(|f| f.0 == id)
                || !h.live
                || picked(picks, id)
                || !self.new_site(h.site, picks)
                || !self.holds(id, in_pool)
                || !self.under(id)
            {
                continue;
            }
            let score = self.score(id);
            match first {
                None => first = Some((id, score)),
                // The first sampled wins ties, so sampling order breaks them at random.
                Some((a, s)) => return Some(if score < s { id } else { a }),
            }
        }
        None
    }

    /// Evaluates the whole pool once into `buf` (at least as long as the pool), then picks
    /// by two-choice among the candidates on sites not yet picked, or among all if none.
    fn fill_exact<R: Rng + ?Sized>(
        &self,
        pool: Pool<'_>,
        reason: Reason,
        picks: &mut Vec<Pick>,
        rng: &mut R,
        buf: &mut [Cand],
    ) -> bool {
        let (mut len, mut live, mut cand) = (0, 0, 0);
        for &id in pool.0 {
            let h = &self.snap.hot[id as usize];
            if !h.live || !self.holds(id, pool.1) {
                continue;
            }
            live += 1;
            if !self.under(id) {
                continue;
            }
            cand += 1;
            if !picked(picks, id) && len < buf.len() {
                buf[len] = (id, self.score(id), h.site);
                len += 1;
            }
        }
        while picks.len() < self.want && len > 0 {
            let mut fresh = 0;
            for k in 0..len {
                if self.new_site(buf[k].2, picks) {
                    buf.swap(fresh, k);
                    fresh += 1;
                }
            }
            let m = if fresh > 0 { fresh } else { len };
            let i = below(rng, m);
            let mut win = i;
            if m > 1 {
                let j = below(rng, m - 1);
                let j = if j >= i { j + 1 } else { j };
                if buf[j].1 < buf[i].1 {
                    win = j;
                }
            }
            picks.push(Pick {
                node: buf[win].0,
                reason,
            });
            len -= 1;
            buf.swap(win, len);
        }
        live > 0 && cand == 0
    }
}

fn picked(picks: &[Pick], id: NodeId) -> bool {
    picks.iter().any(|p| p.node == id)
}

/// Uniform index below `n` (n > 0) by multiply-shift. The bias is at most n / 2^32, far
/// below anything load balancing can notice, and unlike `random_range` it cannot panic.
fn below<R: Rng + ?Sized>(rng: &mut R, n: usize) -> usize {
    ((u64::from(rng.next_u32()) * n as u64) >> 32) as usize
}

/// Pick a primary appliance and fallbacks for `client` playing `renditions` (empty: no
/// content constraint). Deterministic for a given `rng` state.
pub fn decide(
    snap: &Snapshot,
    client: IpAddr,
    renditions: &[&str],
    now: Instant,
    rng: &mut (impl Rng + ?Sized),
) -> Decision {
    let net = snap.network_index(client);
    let info = net.map(|i| snap.net_info(i));
    let network = info.map(|n| (n.asn, snap.region_names[n.region as usize].clone()));
    let Some(need) = snap.need(renditions) else {
        return Decision {
            picks: Vec::new(),
            network,
            overflowed: false,
        };
    };
    let capacity = snap
        .policy
        .fallbacks
        .saturating_add(1)
        .min(need.pool.all.len());
    let mut picks = Vec::with_capacity(capacity);
    let ctx = Ctx::new(
        snap,
        need,
        now,
        info.and_then(|n| n.pos),
        snap.measured_for(client),
    );

    // Tier (c) is split: IXPs first, foreign embedded boxes last, because ISPs do not want
    // other ISPs' viewers on their appliances.
    let pool = ctx.need.pool;
    let region_ixps = info.map_or(&[][..], |n| pool.ixp_in(n.region));
    // The client's ISP's appliances, in the groups the ISP ranked them in
    // (BGP communities and MED), then the region's IXPs, then any.
    let isp = snap
        .served_set(client)
        .map_or(&[][..], |s| s.groups.as_slice())
        .iter()
        .enumerate()
        .map(|(g, (pref, nodes))| {
            let reason = if g == 0 && !pref.fallback {
                Reason::IspEmbedded
            } else {
                Reason::IspFallback
            };
            (reason, (nodes.as_slice(), false))
        });
    let others: [(Reason, Pool<'_>); 3] = [
        (Reason::RegionIxp, (region_ixps, true)),
        (Reason::AnyAppliance, (&pool.ixp, true)),
        (Reason::AnyAppliance, (&pool.emb, true)),
    ];
    let mut overflowed = false;
    for (reason, pool) in isp.chain(others) {
        if picks.len() >= ctx.want {
            break;
        }
        overflowed |= ctx.fill(pool, reason, &mut picks, rng);
    }
    if picks.len() < ctx.want {
        add_saturated(&ctx, &mut picks);
    }
    Decision {
        picks,
        network,
        overflowed,
    }
}

/// Serving slowly beats failing: fill up with live holders over the threshold, least
/// utilised first (ties by id, for determinism).
fn add_saturated(ctx: &Ctx<'_>, picks: &mut Vec<Pick>) {
    let start = picks.len();
    for &id in &ctx.need.pool.all {
        if picked(picks, id) || !ctx.holds(id, true) || ctx.under(id) {
            continue;
        }
        let u = ctx.utilisation(id);
        let pos = start
            + picks[start..].partition_point(|p| ctx.utilisation(p.node).total_cmp(&u).is_le());
        if pos < ctx.want {
            picks.insert(
                pos,
                Pick {
                    node: id,
                    reason: Reason::Saturated,
                },
            );
            picks.truncate(ctx.want);
        }
    }
}

/// Content steering: order `pathways` (appliance ids issued to a play earlier, primary first)
/// by current health and load for this client: eligible ones (up, not draining, under
/// max_utilisation, still holding `renditions`) first in tier order (embedded serving this
/// client, then IXP of its region, then other IXPs, then other embedded), by score within a
/// tier; then saturated-but-up ones, least utilised first; then up ones that no longer hold the
/// content, in input order (they may still fill from upstream). Down, draining or unknown ids,
/// and repeats, are omitted — unless that would leave nothing, in which case return the input
/// unchanged (a player with no pathway is worse off).
/// Deterministic (no rng) so repeated polls agree; ties keep the input order.
///
/// `sticky` is the pathway this player was last told to use first. It keeps first place while
/// it is eligible and in the best tier class present, even if another scores a little better:
/// scores follow load reports, and the load moves with the player, so without this two equal
/// appliances would swap places on every poll and the player with them.
pub fn pathway_priority(
    snap: &Snapshot,
    client: IpAddr,
    renditions: &[&str],
    pathways: &[String],
    sticky: Option<&str>,
    now: Instant,
) -> Vec<String> {
    let net = snap.network_index(client);
    let info = net.map(|i| snap.net_info(i));
    let region = info.map(|n| n.region);
    let served = snap.served_set(client);
    let need = snap.need(renditions);
    let has_content = need.is_some();
    let ctx = Ctx::new(
        snap,
        need.unwrap_or_else(|| Need::anything(snap)),
        now,
        info.and_then(|n| n.pos),
        snap.measured_for(client),
    );

    // (class, the ISP's group within class 0, score, index, node)
    let mut ranked: Vec<(u8, usize, f64, usize, NodeId)> = Vec::with_capacity(pathways.len());
    for (idx, p) in pathways.iter().enumerate() {
        let Some(id) = snap.find(p) else { continue };
        let h = &snap.hot[id as usize];
        if !h.live || ranked.iter().any(|r| r.4 == id) {
            continue;
        }
        let group = served
            .and_then(|s| s.group_of(id))
            .filter(|_| h.tier == Tier::Embedded);
        let rank = if !has_content || !ctx.holds(id, false) {
            (5, 0, 0.0)
        } else if !ctx.under(id) {
            (4, 0, ctx.utilisation(id))
        } else if let Some(g) = group {
            (0, g, ctx.score(id))
        } else if h.tier == Tier::Ixp && region == Some(h.region) {
            (1, 0, ctx.score(id))
        } else if h.tier == Tier::Ixp {
            (2, 0, ctx.score(id))
        } else {
            (3, 0, ctx.score(id))
        };
        ranked.push((rank.0, rank.1, rank.2, idx, id));
    }
    if ranked.is_empty() {
        return pathways.to_vec();
    }
    ranked.sort_by(|a, b| {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then(a.2.total_cmp(&b.2))
            .then(a.3.cmp(&b.3))
    });
    let best = (ranked[0].0, ranked[0].1);
    if let Some(at) = sticky.and_then(|s| {
        ranked
            .iter()
            .position(|r| pathways[r.3] == s && (r.0, r.1) == best && r.0 < 4)
    }) {
        ranked[..=at].rotate_right(1);
    }
    ranked.into_iter().map(|r| pathways[r.3].clone()).collect()
}

#[cfg(test)]
mod tests;
