//! What steering knows about every appliance, in memory: identity, health (with
//! hysteresis), last heartbeat, and inventory with an index rendition →
//! appliances. The store holds the durable part; this is rebuilt from it at start.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use control_client::wire::{
    ApplianceInfo, HealthSummary, Inventory, PrefixReport, RenditionHolding, RouteAttrs,
    inventory_digest,
};
use ipnet::IpNet;
use serde::Serialize;

/// Catalog totals per rendition: (objects, bytes).
pub type CatalogTotals = HashMap<String, (u64, u64)>;

/// Up/down with hysteresis: down after `down_after` consecutive failures, up again
/// after `up_after` consecutive successes, so one lost poll neither removes a
/// healthy appliance nor lets a flapping one back in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    pub up: bool,
    fails: u32,
    oks: u32,
}

impl Hysteresis {
    /// New appliances start up: steering has no evidence against them yet, and
    /// the first failed polls take them out quickly.
    pub fn new() -> Hysteresis {
        Hysteresis {
            up: true,
            fails: 0,
            oks: 0,
        }
    }

    /// Record one observation; returns whether the up/down state changed.
    pub fn observe(&mut self, ok: bool, down_after: u32, up_after: u32) -> bool {
        if ok {
            self.fails = 0;
            self.oks = self.oks.saturating_add(1);
            if !self.up && self.oks >= up_after {
                self.up = true;
                return true;
            }
        } else {
            self.oks = 0;
            self.fails = self.fails.saturating_add(1);
            if self.up && self.fails >= down_after {
                self.up = false;
                return true;
            }
        }
        false
    }
}

impl Hysteresis {
    /// Take another instance's verdict (it polls this appliance now); the
    /// counts start again from it.
    pub fn set(&mut self, up: bool) {
        *self = Hysteresis {
            up,
            fails: 0,
            oks: 0,
        };
    }
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis::new()
    }
}

/// One appliance's live state.
#[derive(Debug, Clone)]
pub struct Appliance {
    pub info: ApplianceInfo,
    pub credential_sha256: String,
    pub health: Hysteresis,
    /// Last reported health (poll or heartbeat).
    pub last: Option<HealthSummary>,
    pub last_seen: Option<Instant>,
    /// When this instance last took a heartbeat from it (the poller leaves
    /// alone an appliance heard from within its interval).
    pub heard: Option<Instant>,
    /// When `last` was taken, wall clock ms (what instances sharing a store
    /// compare: the newer report wins).
    pub report_ms: u64,
    /// When `health.up` was last decided, wall clock ms (ditto).
    pub up_ms: u64,
    pub inventory: BTreeMap<String, RenditionHolding>,
    pub inventory_version: u64,
    pub inventory_digest: String,
    /// Client prefixes the appliance learned over BGP, with the communities
    /// and MED its router attached, and their version.
    pub learned: BTreeMap<IpNet, RouteAttrs>,
    pub prefixes_version: u64,
    /// Registered since this process started (else `info` came from the
    /// config or the database and may be stale).
    pub registered: bool,
    /// `complete`'s answer as a list, for the catalog generation it was
    /// computed against; dropped when the inventory changes. Every snapshot
    /// build needs it for every appliance, and recomputing it for ten
    /// thousand appliances dominated the build.
    complete_cache: Option<(u64, Arc<[String]>)>,
    /// Bumped on every change of `info` here, so a read from the store that
    /// raced a local write can tell and keep the write.
    pub info_writes: u64,
    /// Where enrolment placed it (none: declared in the config).
    pub bound: Option<super::store::Placement>,
}

impl Appliance {
    /// The renditions held completely (see `complete`), computed once per
    /// inventory and catalog generation.
    pub fn complete_renditions(
        &mut self,
        catalog: &CatalogTotals,
        catalog_generation: u64,
    ) -> Arc<[String]> {
        if let Some((generation, list)) = &self.complete_cache
            && *generation == catalog_generation
        {
            return Arc::clone(list);
        }
        let list: Arc<[String]> = self
            .complete(catalog)
            .map(|h| h.rendition.clone())
            .collect();
        self.complete_cache = Some((catalog_generation, Arc::clone(&list)));
        list
    }

    /// Renditions held completely: at least the catalog's object count and
    /// bytes (an appliance's directory may also hold files the catalog does not
    /// list, so "at least" rather than "equal").
    pub fn complete<'a>(
        &'a self,
        catalog: &'a CatalogTotals,
    ) -> impl Iterator<Item = &'a RenditionHolding> {
        self.inventory.values().filter(|h| {
            catalog
                .get(&h.rendition)
                .is_some_and(|&(o, b)| h.objects >= o && h.bytes >= b)
        })
    }
}

/// What `GET /v1/appliances` shows for one appliance.
#[derive(Debug, Serialize)]
pub struct ApplianceView {
    pub id: String,
    pub info: ApplianceInfo,
    pub up: bool,
    /// `ok`, `degraded`, `draining`, or `unknown` before the first report.
    pub status: String,
    pub egress_bps: u64,
    pub utilisation: f64,
    pub seconds_since_seen: Option<f64>,
    pub inventory_version: u64,
    pub renditions: usize,
    /// Renditions held completely (see `Registry::complete`), as the decision
    /// snapshot has them once the appliance is in it (the API fills that in).
    pub renditions_complete: usize,
    /// Whether steering may send new viewers here: up and not draining, in
    /// the decision snapshot (the API fills that in).
    pub eligible: bool,
    /// Client prefixes learned over BGP (count), and their version.
    pub bgp_prefixes: usize,
    /// Of those, how many carry BGP communities or a MED (the ISP's
    /// preferences, see `steer.fallback_communities`).
    pub bgp_prefixes_with_attributes: usize,
    pub bgp_prefixes_version: u64,
    /// The steering instance that polls it now (several instances share the
    /// polling; see `fleet::cluster`); filled in by the API.
    pub polled_by: Option<String>,
    /// What players measured of it, per client network (the 20 with the
    /// most weight); filled in by the API.
    pub measured: Vec<MeasuredPath>,
}

/// Players' estimate of one appliance from one client network.
#[derive(Debug, Serialize)]
pub struct MeasuredPath {
    pub network: String,
    pub throughput_mbps: f64,
    pub ttfb_ms: f64,
    pub error_rate: f64,
    /// 0 to 1, from the weight of recent observations.
    pub confidence: f64,
}

/// How a heartbeat's prefix report was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixOutcome {
    Applied,
    ResyncNeeded,
    /// A prefix did not parse.
    Invalid,
}

/// How a heartbeat's inventory was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InventoryOutcome {
    Unchanged,
    Applied,
    /// The delta did not start from what steering holds, or its digest does not
    /// match the result: the appliance must send a full inventory.
    ResyncNeeded,
}

#[derive(Default)]
pub struct Registry {
    pub appliances: HashMap<String, Appliance>,
    /// rendition → appliances holding it.
    index: HashMap<String, HashSet<String>>,
    /// Appliances whose credential was revoked: refused, and not in
    /// `appliances` (so neither polled nor steered to).
    pub revoked: HashSet<String>,
}

impl Registry {
    pub fn insert(&mut self, id: &str, info: ApplianceInfo, credential_sha256: String) {
        match self.appliances.get_mut(id) {
            Some(a) => {
                a.info = info;
                a.credential_sha256 = credential_sha256;
                a.info_writes += 1;
            }
            None => {
                self.appliances.insert(
                    id.to_owned(),
                    Appliance {
                        info,
                        credential_sha256,
                        health: Hysteresis::new(),
                        last: None,
                        last_seen: None,
                        heard: None,
                        report_ms: 0,
                        up_ms: 0,
                        inventory: BTreeMap::new(),
                        inventory_version: 0,
                        inventory_digest: inventory_digest([]),
                        learned: BTreeMap::new(),
                        prefixes_version: 0,
                        registered: false,
                        complete_cache: None,
                        info_writes: 1,
                        bound: None,
                    },
                );
            }
        }
        self.revoked.remove(id);
    }

    /// Set where enrolment placed an appliance.
    pub fn bind(&mut self, id: &str, bound: Option<super::store::Placement>) {
        if let Some(a) = self.appliances.get_mut(id) {
            a.bound = bound;
        }
    }

    /// Take an appliance as the store holds it: revoked, it leaves the
    /// registry; else its identity, credential and placement are replaced.
    pub fn apply_row(&mut self, row: super::store::ApplianceRow) {
        if row.revoked {
            self.revoke(&row.id);
        } else {
            self.insert(&row.id, row.info, row.credential_sha256);
            self.bind(&row.id, row.bound);
        }
    }

    /// Drop a revoked appliance (its inventory and prefixes with it) and
    /// remember that it was revoked; whether it was here.
    pub fn revoke(&mut self, id: &str) -> bool {
        self.revoked.insert(id.to_owned());
        let Some(a) = self.appliances.remove(id) else {
            return false;
        };
        for r in a.inventory.keys() {
            if let Some(set) = self.index.get_mut(r) {
                set.remove(id);
                if set.is_empty() {
                    self.index.remove(r);
                }
            }
        }
        true
    }

    /// Replace an appliance's inventory wholesale (from the store or a full report).
    pub fn set_inventory(&mut self, id: &str, version: u64, renditions: Vec<RenditionHolding>) {
        let Some(a) = self.appliances.get_mut(id) else {
            return;
        };
        for r in a.inventory.keys() {
            if let Some(set) = self.index.get_mut(r) {
                set.remove(id);
            }
        }
        a.inventory = renditions
            .into_iter()
            .map(|r| (r.rendition.clone(), r))
            .collect();
        a.inventory_version = version;
        a.inventory_digest = inventory_digest(a.inventory.values());
        a.complete_cache = None;
        for r in a.inventory.keys() {
            self.index
                .entry(r.clone())
                .or_default()
                .insert(id.to_owned());
        }
    }

    /// Take an inventory report. Pure bookkeeping: the caller persists it.
    pub fn take_inventory(&mut self, id: &str, inv: &Inventory) -> InventoryOutcome {
        let Some(a) = self.appliances.get(id) else {
            return InventoryOutcome::ResyncNeeded;
        };
        match inv {
            Inventory::Full {
                version,
                digest,
                renditions,
            } => {
                if *digest != inventory_digest(renditions) {
                    return InventoryOutcome::ResyncNeeded;
                }
                self.set_inventory(id, *version, renditions.clone());
                InventoryOutcome::Applied
            }
            Inventory::Delta {
                base_version,
                version,
                digest,
                upserted,
                removed,
            } => {
                if *base_version != a.inventory_version {
                    return InventoryOutcome::ResyncNeeded;
                }
                if *version == a.inventory_version {
                    return InventoryOutcome::Unchanged;
                }
                let mut next = a.inventory.clone();
                for r in removed {
                    next.remove(r);
                }
                for r in upserted {
                    next.insert(r.rendition.clone(), r.clone());
                }
                if inventory_digest(next.values()) != *digest {
                    return InventoryOutcome::ResyncNeeded;
                }
                self.set_inventory(id, *version, next.into_values().collect());
                InventoryOutcome::Applied
            }
        }
    }

    /// Take a report of BGP-learned prefixes (pure bookkeeping; the caller
    /// validated the strings and persists the result). A delta must start from
    /// the version held, else the appliance is asked for the full set.
    pub fn take_prefixes(&mut self, id: &str, report: &PrefixReport) -> PrefixOutcome {
        let Some(a) = self.appliances.get_mut(id) else {
            return PrefixOutcome::ResyncNeeded;
        };
        // Each prefix with its attributes (none unless `attrs` names it).
        let parse = |v: &[String], attrs: &BTreeMap<String, RouteAttrs>| {
            v.iter()
                .map(|p| {
                    let net = p.parse::<IpNet>().ok()?.trunc();
                    Some((net, attrs.get(p).cloned().unwrap_or_default()))
                })
                .collect::<Option<Vec<_>>>()
        };
        match report {
            PrefixReport::Full {
                version,
                prefixes,
                attrs,
            } => {
                let Some(routes) = parse(prefixes, attrs) else {
                    return PrefixOutcome::Invalid;
                };
                a.learned = routes.into_iter().collect();
                a.prefixes_version = *version;
                PrefixOutcome::Applied
            }
            PrefixReport::Delta {
                base_version,
                version,
                announced,
                withdrawn,
                attrs,
            } => {
                let (Some(add), Some(remove)) =
                    (parse(announced, attrs), parse(withdrawn, &BTreeMap::new()))
                else {
                    return PrefixOutcome::Invalid;
                };
                if *base_version != a.prefixes_version {
                    return PrefixOutcome::ResyncNeeded;
                }
                for (p, _) in remove {
                    a.learned.remove(&p);
                }
                a.learned.extend(add);
                a.prefixes_version = *version;
                PrefixOutcome::Applied
            }
        }
    }

    /// An appliance's learned prefixes as the store keeps them.
    pub fn learned_row(&self, id: &str) -> Option<super::store::LearnedRow> {
        let a = self.appliances.get(id)?;
        Some(super::store::LearnedRow {
            appliance: id.to_owned(),
            version: a.prefixes_version,
            prefixes: a.learned.keys().map(|p| p.to_string()).collect(),
            attrs: a
                .learned
                .iter()
                .filter(|(_, r)| !r.is_empty())
                .map(|(p, r)| (p.to_string(), r.clone()))
                .collect(),
        })
    }

    /// Appliances holding `rendition` (for steering).
    pub fn holders(&self, rendition: &str) -> impl Iterator<Item = &str> {
        self.index
            .get(rendition)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// How many renditions `id` holds completely.
    pub fn complete(&self, id: &str, catalog: &CatalogTotals) -> usize {
        self.appliances
            .get(id)
            .map_or(0, |a| a.complete(catalog).count())
    }

    pub fn view(&self, now: Instant, catalog: &CatalogTotals) -> Vec<ApplianceView> {
        let mut v: Vec<ApplianceView> = self
            .appliances
            .iter()
            .map(|(id, a)| {
                let status = a
                    .last
                    .as_ref()
                    .map_or("unknown".to_owned(), |h| h.status.clone());
                let egress = a.last.as_ref().map_or(0, |h| h.egress_bps);
                ApplianceView {
                    id: id.clone(),
                    info: a.info.clone(),
                    up: a.health.up,
                    eligible: a.health.up && status != "draining",
                    status,
                    egress_bps: egress,
                    utilisation: egress as f64 / a.info.capacity_bps.max(1) as f64,
                    seconds_since_seen: a
                        .last_seen
                        .map(|t| now.saturating_duration_since(t).as_secs_f64()),
                    inventory_version: a.inventory_version,
                    renditions: a.inventory.len(),
                    renditions_complete: self.complete(id, catalog),
                    bgp_prefixes: a.learned.len(),
                    bgp_prefixes_with_attributes: a
                        .learned
                        .values()
                        .filter(|r| !r.is_empty())
                        .count(),
                    bgp_prefixes_version: a.prefixes_version,
                    polled_by: None,
                    measured: Vec::new(),
                }
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control_client::wire::Tier;

    /// A registry holding appliance "a" of `tier`.
    fn with_one(tier: Tier) -> Registry {
        let mut reg = Registry::default();
        let info = ApplianceInfo {
            tier,
            site: "s".into(),
            region: "r".into(),
            asn: 1,
            http_url: None,
            https_url: None,
            admin_url: "http://x".into(),
            capacity_bps: 1,
            storage_bytes: 0,
            version: String::new(),
        };
        reg.insert("a", info, "h".into());
        reg
    }

    #[test]
    fn prefixes_full_delta_resync_and_garbage() {
        let mut reg = with_one(Tier::Embedded);
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let full = PrefixReport::Full {
            version: 1,
            prefixes: v(&["10.1.0.0/16", "2001:db8::/32", "10.2.3.4/16"]),
            attrs: BTreeMap::new(),
        };
        assert_eq!(reg.take_prefixes("a", &full), PrefixOutcome::Applied);
        let got: Vec<String> = reg.appliances["a"]
            .learned
            .keys()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            got,
            ["10.1.0.0/16", "10.2.0.0/16", "2001:db8::/32"],
            "host bits cleared"
        );
        let delta = PrefixReport::Delta {
            base_version: 1,
            version: 2,
            announced: v(&["10.3.0.0/16", "10.2.0.0/16"]),
            withdrawn: v(&["10.1.0.0/16"]),
            attrs: [(
                "10.2.0.0/16".to_owned(),
                RouteAttrs {
                    communities: vec!["64500:100".into()],
                    med: None,
                },
            )]
            .into(),
        };
        assert_eq!(reg.take_prefixes("a", &delta), PrefixOutcome::Applied);
        assert_eq!(reg.appliances["a"].learned.len(), 3);
        let row = reg.learned_row("a").unwrap();
        assert_eq!(
            row.attrs.len(),
            1,
            "the re-announced prefix took its community"
        );
        assert_eq!(row.attrs["10.2.0.0/16"].communities, ["64500:100"]);
        assert_eq!(
            reg.take_prefixes("a", &delta),
            PrefixOutcome::ResyncNeeded,
            "stale base"
        );
        let junk = PrefixReport::Full {
            version: 3,
            prefixes: v(&["10.0.0.0/33"]),
            attrs: BTreeMap::new(),
        };
        assert_eq!(reg.take_prefixes("a", &junk), PrefixOutcome::Invalid);
        assert_eq!(
            reg.appliances["a"].prefixes_version, 2,
            "garbage changes nothing"
        );
        assert_eq!(
            reg.take_prefixes("nobody", &full),
            PrefixOutcome::ResyncNeeded
        );
    }

    #[test]
    fn hysteresis() {
        let mut h = Hysteresis::new();
        assert!(!h.observe(false, 3, 2));
        assert!(!h.observe(false, 3, 2));
        assert!(!h.observe(true, 3, 2), "a success resets the failure count");
        assert!(!h.observe(false, 3, 2));
        assert!(!h.observe(false, 3, 2));
        assert!(h.observe(false, 3, 2));
        assert!(!h.up);
        assert!(!h.observe(true, 3, 2));
        assert!(!h.observe(false, 3, 2), "one good poll is not enough");
        assert!(!h.observe(true, 3, 2));
        assert!(h.observe(true, 3, 2));
        assert!(h.up);
    }

    fn r(name: &str, n: u64) -> RenditionHolding {
        RenditionHolding {
            rendition: name.into(),
            objects: n,
            bytes: n * 100,
        }
    }

    #[test]
    fn inventory_full_delta_and_resync() {
        let mut reg = with_one(Tier::Ixp);
        let full = vec![r("t1/v1", 10), r("t1/v2", 10)];
        let inv = Inventory::Full {
            version: 1,
            digest: inventory_digest(&full),
            renditions: full.clone(),
        };
        assert_eq!(reg.take_inventory("a", &inv), InventoryOutcome::Applied);
        assert_eq!(reg.holders("t1/v1").collect::<Vec<_>>(), ["a"]);
        // A delta from the right base with the right digest applies.
        let after = vec![r("t1/v2", 10), r("t2/v1", 5)];
        let delta = Inventory::Delta {
            base_version: 1,
            version: 2,
            digest: inventory_digest(&after),
            upserted: vec![r("t2/v1", 5)],
            removed: vec!["t1/v1".into()],
        };
        assert_eq!(reg.take_inventory("a", &delta), InventoryOutcome::Applied);
        assert_eq!(reg.holders("t1/v1").count(), 0);
        assert_eq!(reg.holders("t2/v1").count(), 1);
        // A delta that skipped a lost one asks for a resync.
        let lost = Inventory::Delta {
            base_version: 3,
            version: 4,
            digest: String::new(),
            upserted: vec![],
            removed: vec![],
        };
        assert_eq!(
            reg.take_inventory("a", &lost),
            InventoryOutcome::ResyncNeeded
        );
        // So does one whose result does not match its digest.
        let wrong = Inventory::Delta {
            base_version: 2,
            version: 3,
            digest: "nope".into(),
            upserted: vec![],
            removed: vec![],
        };
        assert_eq!(
            reg.take_inventory("a", &wrong),
            InventoryOutcome::ResyncNeeded
        );
        assert_eq!(reg.appliances["a"].inventory_version, 2);
        // Complete = at least the catalog's objects and bytes.
        let catalog: CatalogTotals = [
            ("t1/v2".to_owned(), (10, 1000)),
            ("t2/v1".to_owned(), (6, 500)),
        ]
        .into_iter()
        .collect();
        assert_eq!(reg.complete("a", &catalog), 1);
    }
}
