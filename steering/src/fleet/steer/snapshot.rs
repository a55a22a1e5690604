//! The precomputed fleet index behind [`Snapshot`]: everything a decision would otherwise
//! have to search for is laid out here once per fleet change.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use control_client::wire::Tier;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

use super::{ClientNetwork, GeoPoint, Node, NodeId, Policy};

/// The snapshot's tables hash with foldhash: SipHash dominated building one
/// for ten thousand appliances, and the keys (ids, renditions, sites) come
/// from the operator's config and authenticated appliances.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// What a probe reads about a node, packed so one probe touches one cache line instead of
/// chasing the `Node`'s strings.
#[derive(Debug, Clone)]
pub(super) struct Hot {
    /// Up, not draining and an appliance tier: fixed for the snapshot's lifetime.
    pub(super) live: bool,
    pub(super) tier: Tier,
    pub(super) site: u32,
    pub(super) region: u32,
    pub(super) utilisation: f64,
    pub(super) reported_at: Option<Instant>,
    /// Unit vector on the sphere, so a distance is one sqrt and one asin.
    pub(super) pos: Option<[f64; 3]>,
}

/// Live holders of one rendition (or of anything, for requests without a rendition
/// constraint), pre-split by tier so that a tier's pool is already filtered by content.
#[derive(Debug, Default)]
pub(super) struct Holders {
    /// Sorted by id: membership by binary search, and the saturated last-resort scan.
    pub(super) all: Vec<NodeId>,
    /// Bitset over node ids, kept only when it is no bigger than `all` (≥ 1 in 32 nodes
    /// hold the rendition): popular renditions get O(1) membership, rare ones cost no memory.
    bits: Vec<u64>,
    /// IXP holders sorted by (region, id); `ixp_regions` indexes the runs.
    pub(super) ixp: Vec<NodeId>,
    ixp_regions: Vec<(u32, u32, u32)>,
    pub(super) emb: Vec<NodeId>,
}

impl Holders {
    fn new(all: Vec<NodeId>, hot: &[Hot]) -> Holders {
        let mut bits = Vec::new();
        if all.len().saturating_mul(32) >= hot.len() {
            bits = vec![0u64; hot.len().div_ceil(64)];
            for &id in &all {
                bits[id as usize / 64] |= 1 << (id % 64);
            }
        }
        let mut ixp: Vec<NodeId> = all
            .iter()
            .copied()
            .filter(|&id| hot[id as usize].tier == Tier::Ixp)
            .collect();
        ixp.sort_by_key(|&id| (hot[id as usize].region, id));
        let mut ixp_regions: Vec<(u32, u32, u32)> = Vec::new();
        for (i, &id) in ixp.iter().enumerate() {
            let region = hot[id as usize].region;
            match ixp_regions.last_mut() {
                Some(run) if run.0 == region => run.2 = i as u32 + 1,
                _ => ixp_regions.push((region, i as u32, i as u32 + 1)),
            }
        }
        let emb = all
            .iter()
            .copied()
            .filter(|&id| hot[id as usize].tier == Tier::Embedded)
            .collect();
        Holders {
            all,
            bits,
            ixp,
            ixp_regions,
            emb,
        }
    }

    pub(super) fn holds(&self, id: NodeId) -> bool {
        if self.bits.is_empty() {
            self.all.binary_search(&id).is_ok()
        } else {
            self.bits
                .get(id as usize / 64)
                .is_some_and(|w| w >> (id % 64) & 1 == 1)
        }
    }

    pub(super) fn ixp_in(&self, region: u32) -> &[NodeId] {
        match self.ixp_regions.binary_search_by_key(&region, |run| run.0) {
            Ok(i) => {
                let (_, start, end) = self.ixp_regions[i];
                &self.ixp[start as usize..end as usize]
            }
            Err(_) => &[],
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct NetInfo {
    pub(super) asn: u32,
    pub(super) region: u32,
    pub(super) pos: Option<[f64; 3]>,
}

/// Client networks indexed for longest-prefix match. Built apart from the
/// fleet (and shared between snapshots) because it is large — a whole RIB — and
/// changes only on import or reconfiguration, while the fleet changes every
/// few hundred milliseconds.
pub struct Networks {
    v4: PrefixMap<Ipv4Net, u32>,
    v6: PrefixMap<Ipv6Net, u32>,
    list: Vec<ClientNetwork>,
    /// Per network: asn, index into `region_names`, position.
    info: Vec<(u32, u32, Option<[f64; 3]>)>,
    region_names: Vec<String>,
}

impl Networks {
    /// Of duplicate prefixes the last wins.
    pub fn build(networks: Vec<ClientNetwork>) -> Networks {
        let (mut v4, mut v6) = (PrefixMap::new(), PrefixMap::new());
        let mut regions = HashMap::default();
        let mut info = Vec::with_capacity(networks.len());
        for (i, net) in networks.iter().enumerate() {
            match net.prefix.trunc() {
                IpNet::V4(p) => v4.insert(p, i as u32),
                IpNet::V6(p) => v6.insert(p, i as u32),
            };
            info.push((
                net.asn,
                intern(&mut regions, &net.region),
                unit_vector(net.location),
            ));
        }
        let mut region_names = vec![String::new(); regions.len()];
        for (name, id) in regions {
            region_names[id as usize] = name;
        }
        Networks {
            v4,
            v6,
            list: networks,
            info,
            region_names,
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// How the ISP ranks an embedded appliance for a prefix, from what its router
/// attached to the announcement: a community configured as "fallback" puts
/// it after the others, then the lower MED (missing: 0) goes first, as BGP
/// itself prefers. Lower sorts first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoutePref {
    pub fallback: bool,
    pub med: u32,
}

/// One prefix an embedded appliance serves, and how the ISP ranks it there.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    pub prefix: IpNet,
    pub appliance: String,
    pub pref: RoutePref,
}

impl From<(IpNet, String)> for Served {
    /// A prefix without preference (configured `serves`, or nothing attached).
    fn from((prefix, appliance): (IpNet, String)) -> Served {
        Served {
            prefix,
            appliance,
            pref: RoutePref::default(),
        }
    }
}

/// The live embedded nodes serving a prefix, in groups of equal preference,
/// the preferred group first; each group sorted by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(super) struct ServedSet {
    pub(super) groups: Vec<(RoutePref, Vec<NodeId>)>,
}

impl ServedSet {
    /// The group `id` is in (0: preferred), if any.
    pub(super) fn group_of(&self, id: NodeId) -> Option<usize> {
        self.groups
            .iter()
            .position(|(_, nodes)| nodes.binary_search(&id).is_ok())
    }
}

/// Immutable view of the fleet, built once per fleet change and shared by many decisions.
pub struct Snapshot {
    nodes: Vec<Node>,
    pub(super) hot: Vec<Hot>,
    by_id: HashMap<String, NodeId>,
    pub(super) policy: Policy,
    served4: PrefixMap<Ipv4Net, u32>,
    served6: PrefixMap<Ipv6Net, u32>,
    /// Live embedded nodes per distinct served set; an ISP's many prefixes share one entry.
    served_sets: Vec<ServedSet>,
    nets: Arc<Networks>,
    /// `nets`' region indices translated to this snapshot's region ids.
    net_region: Vec<u32>,
    /// Interned region names: cloning the decision's region from here hits a warm line.
    pub(super) region_names: Vec<String>,
    renditions: HashMap<String, u32>,
    pub(super) holders: Vec<Holders>,
    /// The pools for a request without rendition constraint.
    pub(super) everything: Holders,
    /// Per client network (`network_key`), what players there measured of
    /// each node (see `set_measured_paths`).
    measured: HashMap<String, Vec<MeasuredPath>>,
}

/// A node as measured from one network, with that network's best time to
/// first byte (of any node): a path is judged against what the network's
/// players saw was possible, so a measured path is not worse off than an
/// unmeasured one for having a first byte that takes time at all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct MeasuredPath {
    pub node: NodeId,
    pub m: Measured,
    pub best_ttfb_ms: f64,
}

/// What players in one client network measured of one node, as decisions
/// use it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Too slow, with confidence: takes no new viewers from the network.
    pub slow: bool,
    pub throughput_bps: f64,
    pub ttfb_ms: f64,
    /// 0 to 1: how much the measurement counts against distance.
    pub confidence: f64,
}

fn intern(table: &mut HashMap<String, u32>, key: &str) -> u32 {
    if let Some(&id) = table.get(key) {
        return id;
    }
    let id = table.len() as u32;
    table.insert(key.to_owned(), id);
    id
}

/// Dual-stack listeners hand us IPv4 clients as `::ffff:a.b.c.d`; canonicalise so they hit
/// the v4 tables.
fn lpm(v4: &PrefixMap<Ipv4Net, u32>, v6: &PrefixMap<Ipv6Net, u32>, client: IpAddr) -> Option<u32> {
    match client.to_canonical() {
        IpAddr::V4(a) => v4.get_lpm(&Ipv4Net::from(a)).map(|(_, &v)| v),
        IpAddr::V6(a) => v6.get_lpm(&Ipv6Net::from(a)).map(|(_, &v)| v),
    }
}

pub(super) fn unit_vector(p: Option<GeoPoint>) -> Option<[f64; 3]> {
    let p = p.filter(|p| p.lat.is_finite() && p.lon.is_finite())?;
    let (lat, lon) = (p.lat.to_radians(), p.lon.to_radians());
    Some([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()])
}

/// Great-circle distance, equal to haversine's, from the chord between two unit vectors.
pub(super) fn distance_km(a: [f64; 3], b: [f64; 3]) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0088;
    let chord = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt();
    2.0 * EARTH_RADIUS_KM * (chord / 2.0).min(1.0).asin()
}

impl Snapshot {
    /// `served`: prefixes each embedded appliance serves (prefix, appliance id) — an ISP's prefixes
    /// map to that ISP's embedded appliances; several appliances may serve the same prefix;
    /// unknown ids and ids of non-embedded nodes are ignored. `networks`: client networks for
    /// region lookup; of duplicate prefixes the last wins. Of duplicate node ids the first wins.
    pub fn build<S: Into<Served>>(
        nodes: Vec<Node>,
        served: impl IntoIterator<Item = S>,
        networks: Vec<ClientNetwork>,
        policy: Policy,
    ) -> Snapshot {
        Snapshot::build_with(nodes, served, Arc::new(Networks::build(networks)), policy)
    }

    /// Like `build`, with client networks indexed beforehand (and shared).
    pub fn build_with<S: Into<Served>>(
        mut nodes: Vec<Node>,
        served: impl IntoIterator<Item = S>,
        nets: Arc<Networks>,
        policy: Policy,
    ) -> Snapshot {
        nodes.truncate(NodeId::MAX as usize);
        let mut by_id = HashMap::default();
        let (mut regions, mut sites) = (HashMap::default(), HashMap::default());
        let mut hot = Vec::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            by_id.entry(n.id.clone()).or_insert(i as NodeId);
            hot.push(Hot {
                live: n.up && !n.draining && matches!(n.tier, Tier::Embedded | Tier::Ixp),
                tier: n.tier,
                site: intern(&mut sites, &n.site),
                region: intern(&mut regions, &n.region),
                utilisation: n.utilisation,
                reported_at: n.load_reported_at,
                pos: unit_vector(n.location),
            });
        }

        // Only live nodes enter any pool: dead ones could never be picked, and probing
        // them would waste the probe budget.
        let mut rendition_ids = HashMap::default();
        let mut lists: Vec<Vec<NodeId>> = Vec::new();
        for (i, n) in nodes.iter().enumerate().filter(|(i, _)| hot[*i].live) {
            for r in n.renditions.iter() {
                let rid = intern(&mut rendition_ids, r) as usize;
                if rid == lists.len() {
                    lists.push(Vec::new());
                }
                if lists[rid].last() != Some(&(i as NodeId)) {
                    lists[rid].push(i as NodeId);
                }
            }
        }
        for list in &mut lists {
            // A node listing a rendition twice, non-adjacently.
            list.dedup();
        }
        let holders = lists
            .into_iter()
            .map(|all| Holders::new(all, &hot))
            .collect();
        let live_ids = (0..nodes.len() as NodeId)
            .filter(|&i| hot[i as usize].live)
            .collect();
        let everything = Holders::new(live_ids, &hot);

        // A prefix stays in the trie even when all its appliances are down, so it still
        // masks shorter covering prefixes: longest match is what the ISP configured.
        let mut per_prefix: HashMap<IpNet, Vec<(RoutePref, NodeId)>> = HashMap::default();
        for s in served {
            let s: Served = s.into();
            if let Some(&n) = by_id.get(&s.appliance)
                && nodes[n as usize].tier == Tier::Embedded
            {
                per_prefix
                    .entry(s.prefix.trunc())
                    .or_default()
                    .push((s.pref, n));
            }
        }
        let mut set_ids: HashMap<ServedSet, u32> = HashMap::default();
        let mut served_sets = Vec::new();
        let (mut served4, mut served6) = (PrefixMap::new(), PrefixMap::new());
        for (prefix, mut list) in per_prefix {
            list.retain(|&(_, n)| hot[n as usize].live);
            // A node listed twice (configured and learned) keeps its best rank.
            list.sort_unstable_by_key(|&(pref, n)| (n, pref));
            list.dedup_by_key(|&mut (_, n)| n);
            list.sort_unstable();
            let mut set = ServedSet::default();
            for (pref, n) in list {
                match set.groups.last_mut() {
                    Some((p, nodes)) if *p == pref => nodes.push(n),
                    _ => set.groups.push((pref, vec![n])),
                }
            }
            let next = served_sets.len() as u32;
            let sid = *set_ids.entry(set).or_insert_with_key(|set| {
                served_sets.push(set.clone());
                next
            });
            match prefix {
                IpNet::V4(p) => served4.insert(p, sid),
                IpNet::V6(p) => served6.insert(p, sid),
            };
        }

        let net_region = nets
            .region_names
            .iter()
            .map(|name| intern(&mut regions, name))
            .collect();

        let mut region_names = vec![String::new(); regions.len()];
        for (name, id) in regions {
            region_names[id as usize] = name;
        }
        Snapshot {
            nodes,
            hot,
            by_id,
            policy,
            served4,
            served6,
            served_sets,
            nets,
            net_region,
            region_names,
            renditions: rendition_ids,
            holders,
            everything,
            measured: HashMap::default(),
        }
    }

    /// What players measured: `(network_key, node id, measurement)`. From
    /// those networks, slow nodes count as full (no new viewers; the last
    /// resort, as a saturated node is), and the others' scores use the
    /// measurement as far as it is trusted (see `Ctx::score`).
    pub fn set_measured_paths(
        &mut self,
        paths: impl IntoIterator<Item = (String, String, Measured)>,
    ) {
        let mut out: HashMap<String, Vec<MeasuredPath>> = HashMap::default();
        for (net, id, m) in paths {
            if let Some(&node) = self.by_id.get(&id) {
                out.entry(net).or_default().push(MeasuredPath {
                    node,
                    m,
                    best_ttfb_ms: m.ttfb_ms,
                });
            }
        }
        for list in out.values_mut() {
            let best = list
                .iter()
                .map(|p| p.m.ttfb_ms)
                .fold(f64::INFINITY, f64::min);
            for p in list.iter_mut() {
                p.best_ttfb_ms = best;
            }
        }
        self.measured = out;
    }

    /// The client network measurements are filed under: the longest client
    /// network that matches, else the client's /24 (IPv4) or /48 (IPv6).
    pub fn network_key(&self, client: IpAddr) -> String {
        if let Some(n) = self.network(client) {
            return n.prefix.to_string();
        }
        let net = match client.to_canonical() {
            IpAddr::V4(a) => IpNet::new(IpAddr::V4(a), 24),
            IpAddr::V6(a) => IpNet::new(IpAddr::V6(a), 48),
        };
        net.map_or_else(|_| client.to_string(), |n| n.trunc().to_string())
    }

    /// What players in `client`'s network measured, per node.
    pub(super) fn measured_for(&self, client: IpAddr) -> &[MeasuredPath] {
        if self.measured.is_empty() {
            return &[];
        }
        self.measured
            .get(&self.network_key(client))
            .map_or(&[][..], Vec::as_slice)
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// # Panics
    /// If `id` did not come from this snapshot.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    pub fn find(&self, id: &str) -> Option<NodeId> {
        self.by_id.get(id).copied()
    }

    /// Whether decisions may pick node `id` (up, not draining, an appliance tier).
    ///
    /// # Panics
    /// If `id` did not come from this snapshot.
    pub fn live(&self, id: NodeId) -> bool {
        self.hot[id as usize].live
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Longest-prefix match over the client networks.
    pub fn network(&self, client: IpAddr) -> Option<&ClientNetwork> {
        self.network_index(client).map(|i| &self.nets.list[i])
    }

    pub(super) fn network_index(&self, client: IpAddr) -> Option<usize> {
        lpm(&self.nets.v4, &self.nets.v6, client).map(|i| i as usize)
    }

    /// What a decision reads of network `i`, in this snapshot's region ids.
    pub(super) fn net_info(&self, i: usize) -> NetInfo {
        let (asn, region, pos) = self.nets.info[i];
        NetInfo {
            asn,
            region: self.net_region[region as usize],
            pos,
        }
    }

    pub(super) fn served_set(&self, client: IpAddr) -> Option<&ServedSet> {
        lpm(&self.served4, &self.served6, client).map(|s| &self.served_sets[s as usize])
    }

    /// The request's content constraint, or None if some rendition is held by no live node
    /// (then nothing can serve it, and the origin is the answer).
    pub(super) fn need(&self, renditions: &[&str]) -> Option<Need<'_>> {
        let mut need = Need::anything(self);
        let mut rarest = 0;
        for r in renditions {
            let rid = *self.renditions.get(*r)?;
            if need.inline[..need.len].contains(&rid) || need.spill.contains(&rid) {
                continue;
            }
            let holders = &self.holders[rid as usize];
            // Pools come from the rarest rendition: every member already holds it, so
            // probes rarely hit a node without the content.
            if need.len == 0 || holders.all.len() < need.pool.all.len() {
                need.pool = holders;
                rarest = need.len + need.spill.len();
            }
            if need.len < INLINE {
                need.inline[need.len] = rid;
                need.len += 1;
            } else {
                need.spill.push(rid);
            }
        }
        // The rarest goes first, so pool members can skip checking it.
        if rarest < INLINE {
            need.inline.swap(0, rarest);
        } else {
            std::mem::swap(&mut need.inline[0], &mut need.spill[rarest - INLINE]);
        }
        Some(need)
    }
}

/// Rendition ids live inline for the usual short request so a decision does not allocate.
pub(super) const INLINE: usize = 8;

/// Requested rendition ids, the one `pool` was drawn from at `inline[0]`.
pub(super) struct Need<'a> {
    pub(super) pool: &'a Holders,
    pub(super) inline: [u32; INLINE],
    pub(super) len: usize,
    pub(super) spill: Vec<u32>,
}

impl<'a> Need<'a> {
    pub(super) fn anything(snap: &'a Snapshot) -> Self {
        Need {
            pool: &snap.everything,
            inline: [0; INLINE],
            len: 0,
            spill: Vec::new(),
        }
    }
}
