//! Learned prefixes per neighbour (Adj-RIB-In) and their merged view.
//!
//! Pure: every operation takes `now`. The rule for a lost session: its
//! prefixes become *stale* and keep counting in the merged view until
//! `grace` after the loss, so a router restart does not empty steering.
//! When the neighbour comes back, its stale prefixes of a family are dropped
//! as soon as the new session sends End-of-RIB for that family (by then it
//! has re-announced everything it still has), or when the grace period ends,
//! whichever comes first. An explicit withdrawal also removes a stale prefix.
//! If a session is lost again before that, the stale set keeps what it had
//! plus what the new session announced, and the grace period restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use control_client::wire::RouteAttrs;
use ipnet::IpNet;

use super::Family;

#[derive(Debug, Default)]
struct Adj {
    established: bool,
    live: BTreeSet<IpNet>,
    stale: BTreeSet<IpNet>,
    stale_until: Option<Instant>,
    /// Communities and MED of the prefixes (live or stale) announced with
    /// any, as last announced.
    attrs: BTreeMap<IpNet, RouteAttrs>,
}

impl Adj {
    /// Forget `p`'s attributes once the neighbour holds it no more.
    fn forget_if_gone(&mut self, p: &IpNet) {
        if !self.live.contains(p) && !self.stale.contains(p) {
            self.attrs.remove(p);
        }
    }
}

/// Prefix counts of one neighbour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub ipv4: usize,
    pub ipv6: usize,
    pub stale: usize,
}

/// Every neighbour's Adj-RIB-In and the merged set steering uses.
#[derive(Debug)]
pub struct Rib {
    grace: Duration,
    adj: BTreeMap<IpAddr, Adj>,
    /// How many sources (live or stale sets) hold each prefix. Kept
    /// incrementally so an UPDATE costs its own size, not the table's.
    merged: BTreeMap<IpNet, u32>,
    version: u64,
}

impl Rib {
    pub fn new(grace: Duration) -> Rib {
        Rib {
            grace,
            adj: BTreeMap::new(),
            merged: BTreeMap::new(),
            version: 0,
        }
    }

    /// Bumped on every change of the merged prefix set.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The merged set: prefixes of established sessions plus stale ones in grace.
    pub fn prefixes(&self) -> impl Iterator<Item = &IpNet> + '_ {
        self.merged.keys()
    }

    /// The merged set with each prefix's attributes: those of the first
    /// neighbour (by address) announcing it live, else of the first holding
    /// it stale. Neighbours that disagree are rare (one router, two
    /// sessions); the rule only has to be stable.
    pub fn routes(&self) -> impl Iterator<Item = (IpNet, RouteAttrs)> + '_ {
        self.merged.keys().map(|p| {
            let holder = self
                .adj
                .values()
                .find(|a| a.live.contains(p))
                .or_else(|| self.adj.values().find(|a| a.stale.contains(p)));
            let attrs = holder.and_then(|a| a.attrs.get(p)).cloned();
            (*p, attrs.unwrap_or_default())
        })
    }

    pub fn counts(&self, neighbor: IpAddr) -> Counts {
        let Some(a) = self.adj.get(&neighbor) else {
            return Counts::default();
        };
        let ipv4 = a.live.iter().filter(|p| matches!(p, IpNet::V4(_))).count();
        Counts {
            ipv4,
            ipv6: a.live.len() - ipv4,
            stale: a.stale.len(),
        }
    }

    /// Merged-set sizes per family.
    pub fn totals(&self) -> (usize, usize) {
        let v4 = self
            .merged
            .keys()
            .filter(|p| matches!(p, IpNet::V4(_)))
            .count();
        (v4, self.merged.len() - v4)
    }

    /// When the next stale set runs out, if any.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.adj.values().filter_map(|a| a.stale_until).min()
    }

    /// A session with `neighbor` reached Established.
    pub fn session_up(&mut self, neighbor: IpAddr, now: Instant) {
        self.expire(now);
        self.adj.entry(neighbor).or_default().established = true;
    }

    /// Apply one UPDATE: withdrawals first, so a prefix in both is announced
    /// (RFC 4271 §9.1.4 lets the later field win); the announced prefixes
    /// carry `attrs` (an UPDATE's path attributes are its NLRI's). A
    /// re-announcement with other attributes is a change. Ignored unless
    /// established.
    pub fn apply(
        &mut self,
        neighbor: IpAddr,
        attrs: &RouteAttrs,
        announced: &[IpNet],
        withdrawn: &[IpNet],
        now: Instant,
    ) {
        self.expire(now);
        let Some(a) = self.adj.get_mut(&neighbor).filter(|a| a.established) else {
            return;
        };
        let mut changed = false;
        for p in withdrawn {
            let p = p.trunc();
            if a.live.remove(&p) {
                changed |= dec(&mut self.merged, p);
            }
            if a.stale.remove(&p) {
                changed |= dec(&mut self.merged, p);
            }
            a.forget_if_gone(&p);
        }
        for p in announced {
            let p = p.trunc();
            if a.live.insert(p) {
                changed |= inc(&mut self.merged, p);
            }
            let before = if attrs.is_empty() {
                a.attrs.remove(&p)
            } else {
                a.attrs.insert(p, attrs.clone())
            };
            changed |= before.as_ref() != Some(attrs) && !(before.is_none() && attrs.is_empty());
        }
        if a.stale.is_empty() {
            a.stale_until = None;
        }
        self.bump(changed);
    }

    /// The new session has sent everything it has for `family`: stale
    /// prefixes of that family from the previous session go.
    pub fn end_of_rib(&mut self, neighbor: IpAddr, family: Family, now: Instant) {
        self.expire(now);
        let Some(a) = self.adj.get_mut(&neighbor).filter(|a| a.established) else {
            return;
        };
        let gone: Vec<IpNet> = a
            .stale
            .iter()
            .filter(|p| Family::of(p) == family)
            .copied()
            .collect();
        let mut changed = false;
        for p in gone {
            a.stale.remove(&p);
            a.forget_if_gone(&p);
            changed |= dec(&mut self.merged, p);
        }
        if a.stale.is_empty() {
            a.stale_until = None;
        }
        self.bump(changed);
    }

    /// The session with `neighbor` ended: its prefixes become stale until
    /// `now + grace`.
    pub fn session_down(&mut self, neighbor: IpAddr, now: Instant) {
        let Some(a) = self.adj.get_mut(&neighbor).filter(|a| a.established) else {
            // Only an established session has prefixes to lose. A connection
            // that never got there (a refused OPEN, the hold timer in
            // OpenSent) must not restart the grace period of an earlier
            // session's stale prefixes, or a router that keeps failing to
            // reconnect would keep them (even expired ones) alive for ever.
            self.expire(now);
            return;
        };
        a.established = false;
        let mut changed = false;
        for p in std::mem::take(&mut a.live) {
            // The live count moves to the stale set; a prefix already stale
            // was counted twice and is now counted once.
            if !a.stale.insert(p) {
                changed |= dec(&mut self.merged, p);
            }
        }
        a.stale_until = (!a.stale.is_empty()).then(|| now + self.grace);
        self.bump(changed);
        self.expire(now);
    }

    /// Drop stale sets whose grace period is over.
    pub fn expire(&mut self, now: Instant) {
        let mut changed = false;
        for a in self.adj.values_mut() {
            if a.stale_until.is_some_and(|t| t <= now) {
                for p in std::mem::take(&mut a.stale) {
                    a.forget_if_gone(&p);
                    changed |= dec(&mut self.merged, p);
                }
                a.stale_until = None;
            }
        }
        self.bump(changed);
    }

    fn bump(&mut self, changed: bool) {
        if changed {
            self.version += 1;
        }
    }
}

/// Count one more holder; true if the prefix is new to the merged set.
fn inc(merged: &mut BTreeMap<IpNet, u32>, p: IpNet) -> bool {
    let n = merged.entry(p).or_insert(0);
    *n += 1;
    *n == 1
}

/// Count one holder less; true if the prefix left the merged set.
fn dec(merged: &mut BTreeMap<IpNet, u32>, p: IpNet) -> bool {
    match merged.get_mut(&p) {
        Some(n) if *n > 1 => {
            *n -= 1;
            false
        }
        Some(_) => {
            merged.remove(&p);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn set(r: &Rib) -> Vec<String> {
        r.prefixes().map(|p| p.to_string()).collect()
    }
    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 2));
    const GRACE: Duration = Duration::from_secs(300);
    const NONE: RouteAttrs = RouteAttrs {
        communities: Vec::new(),
        med: None,
    };

    #[test]
    fn announce_and_withdraw_per_family() {
        let t = Instant::now();
        let mut r = Rib::new(GRACE);
        r.session_up(A, t);
        r.apply(A, &NONE, &[n("10.0.0.0/8"), n("2001:db8::/32")], &[], t);
        assert_eq!(set(&r), ["10.0.0.0/8", "2001:db8::/32"]);
        assert_eq!(
            r.counts(A),
            Counts {
                ipv4: 1,
                ipv6: 1,
                stale: 0
            }
        );
        assert_eq!(r.totals(), (1, 1));
        let v = r.version();
        r.apply(A, &NONE, &[], &[n("2001:db8::/32")], t);
        assert_eq!(set(&r), ["10.0.0.0/8"]);
        assert!(r.version() > v);
        // Withdrawing what is not there, or re-announcing, changes nothing.
        let v = r.version();
        r.apply(A, &NONE, &[n("10.0.0.0/8")], &[n("192.168.0.0/16")], t);
        assert_eq!(r.version(), v);
        // A prefix in both fields of one UPDATE ends up announced.
        r.apply(A, &NONE, &[n("10.1.0.0/16")], &[n("10.1.0.0/16")], t);
        assert_eq!(set(&r), ["10.0.0.0/8", "10.1.0.0/16"]);
        // Host bits are dropped: 10.2.0.1/16 is 10.2.0.0/16.
        r.apply(A, &NONE, &[n("10.2.0.1/16")], &[], t);
        assert!(set(&r).contains(&"10.2.0.0/16".to_owned()));
    }

    #[test]
    fn updates_before_established_are_ignored() {
        let t = Instant::now();
        let mut r = Rib::new(GRACE);
        r.apply(A, &NONE, &[n("10.0.0.0/8")], &[], t);
        assert!(set(&r).is_empty());
        assert_eq!(r.version(), 0);
    }

    #[test]
    fn union_across_sessions() {
        let t = Instant::now();
        let mut r = Rib::new(GRACE);
        r.session_up(A, t);
        r.session_up(B, t);
        r.apply(A, &NONE, &[n("10.0.0.0/8"), n("10.1.0.0/16")], &[], t);
        r.apply(B, &NONE, &[n("10.0.0.0/8"), n("172.16.0.0/12")], &[], t);
        assert_eq!(set(&r), ["10.0.0.0/8", "10.1.0.0/16", "172.16.0.0/12"]);
        // One neighbour withdrawing a shared prefix leaves it in the union.
        let v = r.version();
        r.apply(A, &NONE, &[], &[n("10.0.0.0/8")], t);
        assert_eq!(r.version(), v);
        assert_eq!(set(&r), ["10.0.0.0/8", "10.1.0.0/16", "172.16.0.0/12"]);
        r.apply(B, &NONE, &[], &[n("10.0.0.0/8")], t);
        assert_eq!(set(&r), ["10.1.0.0/16", "172.16.0.0/12"]);
    }

    #[test]
    fn lost_session_keeps_prefixes_for_the_grace_period() {
        let t = Instant::now();
        let mut r = Rib::new(GRACE);
        r.session_up(A, t);
        r.apply(A, &NONE, &[n("10.0.0.0/8"), n("2001:db8::/32")], &[], t);
        let v = r.version();
        r.session_down(A, t + Duration::from_secs(10));
        assert_eq!(r.version(), v, "still in the merged set");
        assert_eq!(
            r.counts(A),
            Counts {
                ipv4: 0,
                ipv6: 0,
                stale: 2
            }
        );
        assert_eq!(r.next_expiry(), Some(t + Duration::from_secs(310)));
        r.expire(t + Duration::from_secs(309));
        assert_eq!(set(&r).len(), 2);
        r.expire(t + Duration::from_secs(310));
        assert!(set(&r).is_empty());
        assert!(r.version() > v);
        assert_eq!(r.next_expiry(), None);
        // Updates after the loss are ignored.
        r.apply(
            A,
            &NONE,
            &[n("10.0.0.0/8")],
            &[],
            t + Duration::from_secs(311),
        );
        assert!(set(&r).is_empty());
    }

    #[test]
    fn zero_grace_drops_at_once() {
        let t = Instant::now();
        let mut r = Rib::new(Duration::ZERO);
        r.session_up(A, t);
        r.apply(A, &NONE, &[n("10.0.0.0/8")], &[], t);
        r.session_down(A, t);
        assert!(set(&r).is_empty());
    }

    #[test]
    fn re_establishment_replaces_stale_per_family_on_end_of_rib() {
        let t = Instant::now();
        let mut r = Rib::new(GRACE);
        r.session_up(A, t);
        r.apply(
            A,
            &NONE,
            &[n("10.0.0.0/8"), n("10.1.0.0/16"), n("2001:db8::/32")],
            &[],
            t,
        );
        r.session_down(A, t);
        let t1 = t + Duration::from_secs(30);
        r.session_up(A, t1);
        // The new session re-announces one prefix and withdraws another.
        r.apply(A, &NONE, &[n("10.0.0.0/8")], &[n("2001:db8::/32")], t1);
        assert_eq!(set(&r), ["10.0.0.0/8", "10.1.0.0/16"]);
        assert_eq!(
            r.counts(A),
            Counts {
                ipv4: 1,
                ipv6: 0,
                stale: 2
            }
        );
        // IPv6 End-of-RIB leaves stale IPv4 alone.
        r.end_of_rib(A, Family::Ipv6, t1);
        assert_eq!(set(&r), ["10.0.0.0/8", "10.1.0.0/16"]);
        // IPv4 End-of-RIB: the silently dropped 10.1/16 goes, 10/8 stays live.
        r.end_of_rib(A, Family::Ipv4, t1);
        assert_eq!(set(&r), ["10.0.0.0/8"]);
        assert_eq!(r.next_expiry(), None);
        // No stale prefix is kept past the grace period even without End-of-RIB.
        r.session_down(A, t1);
        r.session_up(A, t1);
        r.apply(A, &NONE, &[n("192.168.0.0/16")], &[], t1);
        r.expire(t1 + GRACE);
        assert_eq!(set(&r), ["192.168.0.0/16"]);
    }

    /// Found by fuzzing (fuzz/regressions/bgp): a reconnect that failed in
    /// OpenSent restarted the grace period of the stale prefixes.
    #[test]
    fn failed_reconnects_do_not_extend_the_grace_period() {
        let t = Instant::now();
        let mut r = Rib::new(GRACE);
        r.session_up(A, t);
        r.apply(A, &NONE, &[n("10.0.0.0/8")], &[], t);
        r.session_down(A, t);
        // The router reconnects and fails before Established, twice: once
        // within the grace period, once after it (before anything expired
        // the stale set).
        r.session_down(A, t + GRACE / 2);
        assert_eq!(r.next_expiry(), Some(t + GRACE));
        r.session_down(A, t + GRACE + Duration::from_secs(1));
        assert!(
            set(&r).is_empty(),
            "stale prefixes outlived the grace period"
        );
        assert_eq!(r.next_expiry(), None);
    }

    #[test]
    fn flapping_session_restarts_the_grace_period() {
        let t = Instant::now();
        let mut r = Rib::new(GRACE);
        r.session_up(A, t);
        r.apply(A, &NONE, &[n("10.0.0.0/8")], &[], t);
        r.session_down(A, t);
        let t1 = t + Duration::from_secs(200);
        r.session_up(A, t1);
        r.apply(A, &NONE, &[n("10.0.0.0/8"), n("10.9.0.0/16")], &[], t1);
        r.session_down(A, t1);
        assert_eq!(r.counts(A).stale, 2);
        r.expire(t + GRACE);
        assert_eq!(set(&r), ["10.0.0.0/8", "10.9.0.0/16"]);
        r.expire(t1 + GRACE);
        assert!(set(&r).is_empty());
    }

    #[test]
    fn attributes_follow_the_latest_announcement_and_the_first_holder() {
        let t = Instant::now();
        let mut r = Rib::new(GRACE);
        r.session_up(A, t);
        r.session_up(B, t);
        let fallback = RouteAttrs {
            communities: vec!["64500:100".into()],
            med: Some(10),
        };
        let routes = |r: &Rib| {
            r.routes()
                .map(|(p, a)| (p.to_string(), a))
                .collect::<Vec<_>>()
        };
        r.apply(B, &NONE, &[n("10.0.0.0/8")], &[], t);
        r.apply(A, &fallback, &[n("10.0.0.0/8"), n("10.1.0.0/16")], &[], t);
        assert_eq!(
            routes(&r),
            [
                ("10.0.0.0/8".to_owned(), fallback.clone()),
                ("10.1.0.0/16".to_owned(), fallback.clone())
            ],
            "A sorts before B"
        );
        // The same prefix re-announced with other attributes is a change;
        // with the same ones it is not.
        let v = r.version();
        r.apply(A, &fallback, &[n("10.1.0.0/16")], &[], t);
        assert_eq!(r.version(), v);
        r.apply(A, &NONE, &[n("10.1.0.0/16")], &[], t);
        assert!(r.version() > v);
        assert_eq!(routes(&r)[1].1, NONE);
        // A's session drops: its prefixes are stale, B's live announcement
        // decides the shared prefix; stale attributes survive the grace.
        r.session_down(A, t);
        assert_eq!(routes(&r)[0].1, NONE);
        r.apply(A, &NONE, &[], &[], t);
        r.apply(B, &NONE, &[], &[n("10.0.0.0/8")], t);
        assert_eq!(routes(&r)[0].1, fallback, "only A holds it now, stale");
        r.expire(t + GRACE);
        assert!(routes(&r).is_empty());
    }
}
