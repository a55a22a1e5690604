//! Passive BGP: the ISP's router opens a session to the appliance and
//! announces the client prefixes it should serve; we learn them and announce
//! nothing. `Learned` is the table the rest of oca reads (/health, metrics,
//! and the control loop that reports prefixes to steering).
//!
//! Layers: `codec` (framing, bgpkit-parser wrappers), `fsm` (one session,
//! pure), `rib` (prefixes per neighbour and the merged set, pure),
//! `listener` (the sockets and timers that drive them).

pub mod codec;
pub mod fsm;
pub mod listener;
pub mod rib;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use control_client::wire::RouteAttrs;
use ipnet::IpNet;
use serde::Serialize;

use self::fsm::{Peer, Reason, State};
use self::rib::Rib;

/// The unicast address families we learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::Ipv4,
            IpNet::V6(_) => Family::Ipv6,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

/// A point-in-time copy of what BGP has taught us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedSnapshot {
    /// Bumped on every change of the merged prefix set, so a reader can skip
    /// work when nothing changed.
    pub version: u64,
    /// Prefixes of established sessions plus those of lost sessions still in
    /// their grace period, with the communities and MED they carry.
    pub prefixes: BTreeMap<IpNet, RouteAttrs>,
    /// One entry per configured neighbour, connected or not.
    pub sessions: Vec<SessionView>,
}

/// One neighbour's session as /health shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionView {
    pub neighbor: IpAddr,
    pub asn: u32,
    /// `idle`, `open_sent`, `open_confirm` or `established`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router_id: Option<Ipv4Addr>,
    /// Negotiated hold time in seconds, once the OPENs are exchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_time: Option<u16>,
    /// Seconds since the session reached Established.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_secs: Option<u64>,
    pub prefixes_ipv4: usize,
    pub prefixes_ipv6: usize,
    /// Prefixes of a lost session kept for the grace period.
    pub prefixes_stale: usize,
    /// Seconds since the last UPDATE from this neighbour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update_secs: Option<u64>,
    /// Why the last session ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct Neighbor {
    asn: u32,
    /// The connection that owns this neighbour's state; reports from an
    /// older connection (one being replaced) are ignored.
    conn: u64,
    state: State,
    peer: Option<Peer>,
    established_at: Option<Instant>,
    last_update: Option<Instant>,
    last_error: Option<String>,
}

#[derive(Debug)]
struct Inner {
    rib: Rib,
    neighbors: BTreeMap<IpAddr, Neighbor>,
}

/// Most prefixes /health lists by name.
const HEALTH_PREFIXES: usize = 1000;

/// Notification codes 1..=7 are counted each; anything else in slot 0.
const CODES: usize = 8;

/// Counters for /metrics, read without the table's lock.
#[derive(Debug, Default)]
pub struct Counters {
    pub updates: AtomicU64,
    pub connections_refused: AtomicU64,
    /// Connections from a `ttl_security` neighbour whose SYN had TTL < 255.
    pub ttl_refused: AtomicU64,
    notifications_sent: [AtomicU64; CODES],
    notifications_received: [AtomicU64; CODES],
}

impl Counters {
    /// (code, count) pairs of NOTIFICATIONs sent, for codes seen at least once.
    pub fn notifications_sent(&self) -> Vec<(u8, u64)> {
        nonzero(&self.notifications_sent)
    }

    pub fn notifications_received(&self) -> Vec<(u8, u64)> {
        nonzero(&self.notifications_received)
    }
}

/// Segments the kernel dropped before any BGP socket saw them: TCP MD5
/// signatures missing, unexpected or wrong, and TTLs under a socket's
/// minimum (GTSM). Counted for the whole network namespace (`TcpExt` in
/// `/proc/net/netstat`), so other TCP MD5 users on the host count too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelDrops {
    pub md5_missing: u64,
    pub md5_unexpected: u64,
    pub md5_wrong: u64,
    pub min_ttl: u64,
}

impl KernelDrops {
    /// (label, count) pairs, as metrics export them.
    pub fn labelled(&self) -> [(&'static str, u64); 4] {
        [
            ("md5_missing", self.md5_missing),
            ("md5_unexpected", self.md5_unexpected),
            ("md5_wrong", self.md5_wrong),
            ("min_ttl", self.min_ttl),
        ]
    }

    /// The MD5 drops together: a neighbour's password that does not match.
    pub fn md5(&self) -> u64 {
        self.md5_missing + self.md5_unexpected + self.md5_wrong
    }

    /// Read this namespace's counters; zero where the kernel has none.
    pub fn read() -> KernelDrops {
        std::fs::read_to_string("/proc/net/netstat")
            .map(|t| KernelDrops::parse(&t))
            .unwrap_or_default()
    }

    /// The `TcpExt` counters of a `/proc/net/netstat` text: a line of names
    /// followed by a line of values.
    pub fn parse(text: &str) -> KernelDrops {
        let mut lines = text.lines();
        let mut d = KernelDrops::default();
        while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
            if !names.starts_with("TcpExt:") {
                continue;
            }
            for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
                let v = value.parse().unwrap_or(0);
                match name {
                    "TCPMD5NotFound" => d.md5_missing = v,
                    "TCPMD5Unexpected" => d.md5_unexpected = v,
                    "TCPMD5Failure" => d.md5_wrong = v,
                    "TCPMinTTLDrop" => d.min_ttl = v,
                    _ => {}
                }
            }
        }
        d
    }
}

fn nonzero(a: &[AtomicU64; CODES]) -> Vec<(u8, u64)> {
    a.iter()
        .enumerate()
        .map(|(i, c)| (i as u8, c.load(Ordering::Relaxed)))
        .filter(|&(_, n)| n > 0)
        .collect()
}

fn slot(code: u8) -> usize {
    match usize::from(code) {
        c if c < CODES => c,
        _ => 0,
    }
}

/// The shared learned-prefix table, behind an `Arc`: the listener writes,
/// /health, /metrics and the control loop read `snapshot()`.
#[derive(Debug)]
pub struct Learned {
    inner: Mutex<Inner>,
    pub counters: Counters,
}

impl Learned {
    /// An empty table for these neighbours (address, AS), with lost
    /// sessions' prefixes kept for `grace`.
    pub fn new(neighbors: &[(IpAddr, u32)], grace: Duration) -> Learned {
        let neighbors = neighbors
            .iter()
            .map(|&(addr, asn)| {
                let n = Neighbor {
                    asn,
                    conn: 0,
                    state: State::Idle,
                    peer: None,
                    established_at: None,
                    last_update: None,
                    last_error: None,
                };
                (addr, n)
            })
            .collect();
        Learned {
            inner: Mutex::new(Inner {
                rib: Rib::new(grace),
                neighbors,
            }),
            counters: Counters::default(),
        }
    }

    /// What BGP has taught us now. Stale prefixes past their grace period
    /// are dropped here, so no reader ever sees one, timer or not.
    pub fn snapshot(&self) -> LearnedSnapshot {
        self.snapshot_at(Instant::now())
    }

    pub fn snapshot_at(&self, now: Instant) -> LearnedSnapshot {
        let mut inner = self.lock();
        inner.rib.expire(now);
        let secs = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t).as_secs());
        let sessions = inner
            .neighbors
            .iter()
            .map(|(addr, n)| {
                let c = inner.rib.counts(*addr);
                SessionView {
                    neighbor: *addr,
                    asn: n.asn,
                    state: n.state.as_str(),
                    router_id: n.peer.map(|p| p.router_id),
                    hold_time: n.peer.map(|p| p.hold_time),
                    uptime_secs: secs(n.established_at),
                    prefixes_ipv4: c.ipv4,
                    prefixes_ipv6: c.ipv6,
                    prefixes_stale: c.stale,
                    last_update_secs: secs(n.last_update),
                    last_error: n.last_error.clone(),
                }
            })
            .collect();
        LearnedSnapshot {
            version: inner.rib.version(),
            prefixes: inner.rib.routes().collect(),
            sessions,
        }
    }

    /// The `bgp` object of /health.
    pub fn health(&self) -> serde_json::Value {
        let s = self.snapshot();
        let v4 = s
            .prefixes
            .keys()
            .filter(|p| matches!(p, IpNet::V4(_)))
            .count();
        let established = s
            .sessions
            .iter()
            .filter(|v| v.state == State::Established.as_str())
            .count();
        serde_json::json!({
            "version": s.version,
            "sessions_established": established,
            "prefixes_ipv4": v4,
            "prefixes_ipv6": s.prefixes.len() - v4,
            // Listed for operators up to a limit: /health stays small when a
            // router sends far more than client prefixes.
            "prefixes": s.prefixes.keys().take(HEALTH_PREFIXES).map(|p| p.to_string()).collect::<Vec<_>>(),
            // Those carrying communities or a MED, with them, likewise limited.
            "attributes": s
                .prefixes
                .iter()
                .filter(|(_, a)| !a.is_empty())
                .take(HEALTH_PREFIXES)
                .map(|(p, a)| (p.to_string(), a))
                .collect::<BTreeMap<_, _>>(),
            "prefixes_truncated": s.prefixes.len() > HEALTH_PREFIXES,
            "sessions": s.sessions,
        })
    }

    /// (sessions established, merged IPv4 prefixes, merged IPv6 prefixes), for metrics.
    pub fn gauges(&self) -> (usize, usize, usize) {
        let mut inner = self.lock();
        inner.rib.expire(Instant::now());
        let established = inner
            .neighbors
            .values()
            .filter(|n| n.state == State::Established)
            .count();
        let (v4, v6) = inner.rib.totals();
        (established, v4, v6)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves consistent data
        // (every operation completes before returning); keep serving it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `addr`'s session is established now.
    pub(crate) fn is_established(&self, addr: IpAddr) -> bool {
        self.lock()
            .neighbors
            .get(&addr)
            .is_some_and(|n| n.state == State::Established)
    }

    /// Connection `conn` now owns `addr`'s state. Should the connection it
    /// replaces have been established after all, its prefixes start their
    /// grace period here, since its own report will be ignored.
    pub(crate) fn attach(&self, addr: IpAddr, conn: u64, now: Instant) {
        let mut inner = self.lock();
        let Inner { rib, neighbors } = &mut *inner;
        if let Some(n) = neighbors.get_mut(&addr) {
            if n.state == State::Established {
                rib.session_down(addr, now);
            }
            n.conn = conn;
            n.state = State::Idle;
            n.peer = None;
            n.established_at = None;
        }
    }

    /// Run `f` on `addr`'s state if connection `conn` still owns it.
    fn with(&self, addr: IpAddr, conn: u64, f: impl FnOnce(&mut Rib, &mut Neighbor)) {
        let mut inner = self.lock();
        let Inner { rib, neighbors } = &mut *inner;
        if let Some(n) = neighbors.get_mut(&addr).filter(|n| n.conn == conn) {
            f(rib, n);
        }
    }

    pub(crate) fn set_state(&self, addr: IpAddr, conn: u64, state: State, peer: Option<Peer>) {
        self.with(addr, conn, |_, n| {
            n.state = state;
            n.peer = peer;
        });
    }

    pub(crate) fn up(&self, addr: IpAddr, conn: u64, peer: Peer, now: Instant) {
        self.with(addr, conn, |rib, n| {
            n.state = State::Established;
            n.peer = Some(peer);
            n.established_at = Some(now);
            n.last_error = None;
            rib.session_up(addr, now);
        });
    }

    pub(crate) fn update(
        &self,
        addr: IpAddr,
        conn: u64,
        attrs: &RouteAttrs,
        announced: &[IpNet],
        withdrawn: &[IpNet],
        now: Instant,
    ) {
        self.counters.updates.fetch_add(1, Ordering::Relaxed);
        self.with(addr, conn, |rib, n| {
            n.last_update = Some(now);
            rib.apply(addr, attrs, announced, withdrawn, now);
        });
    }

    pub(crate) fn end_of_rib(&self, addr: IpAddr, conn: u64, family: Family, now: Instant) {
        self.counters.updates.fetch_add(1, Ordering::Relaxed);
        self.with(addr, conn, |rib, n| {
            n.last_update = Some(now);
            rib.end_of_rib(addr, family, now);
        });
    }

    /// The session ended: its prefixes start their grace period.
    pub(crate) fn down(&self, addr: IpAddr, conn: u64, reason: &Reason, now: Instant) {
        match reason {
            Reason::Sent(n) => {
                self.counters.notifications_sent[slot(n.code)].fetch_add(1, Ordering::Relaxed)
            }
            Reason::Received(n) => {
                self.counters.notifications_received[slot(n.code)].fetch_add(1, Ordering::Relaxed)
            }
            Reason::ConnectionLost => 0,
        };
        self.with(addr, conn, |rib, n| {
            n.state = State::Idle;
            n.established_at = None;
            n.last_error = Some(reason.to_string());
            rib.session_down(addr, now);
        });
    }

    /// A NOTIFICATION sent outside a session (a refused second connection).
    pub(crate) fn notification_sent(&self, code: u8) {
        self.counters.notifications_sent[slot(code)].fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_drops_are_read_from_the_tcpext_lines() {
        let text = "TcpExt: SyncookiesSent TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure TCPMinTTLDrop\n\
                    TcpExt: 0 3 1 7 2\n\
                    IpExt: InNoRoutes TCPMD5Failure\n\
                    IpExt: 0 99\n";
        let d = super::KernelDrops::parse(text);
        assert_eq!(
            d,
            super::KernelDrops {
                md5_missing: 3,
                md5_unexpected: 1,
                md5_wrong: 7,
                min_ttl: 2
            }
        );
        assert_eq!(d.md5(), 11);
        assert_eq!(super::KernelDrops::parse("garbage"), Default::default());
    }

    use super::*;

    #[test]
    fn snapshot_lists_every_neighbour_and_expires_stale_prefixes() {
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let l = Learned::new(&[(a, 65001), (b, 65002)], Duration::from_secs(60));
        let t = Instant::now();
        l.attach(a, 1, t);
        let peer = Peer {
            asn: 65001,
            router_id: Ipv4Addr::new(198, 51, 100, 1),
            hold_time: 90,
            four_octet_as: true,
        };
        l.up(a, 1, peer, t);
        let p: IpNet = "10.0.0.0/8".parse().unwrap();
        l.update(a, 1, &RouteAttrs::default(), &[p], &[], t);
        // A report from a connection that no longer owns the neighbour is ignored.
        l.update(
            a,
            7,
            &RouteAttrs::default(),
            &["10.9.0.0/16".parse().unwrap()],
            &[],
            t,
        );
        let s = l.snapshot_at(t + Duration::from_secs(5));
        assert_eq!(s.prefixes.keys().collect::<Vec<_>>(), [&p]);
        assert_eq!(s.sessions.len(), 2);
        assert_eq!(s.sessions[0].state, "established");
        assert_eq!(s.sessions[0].uptime_secs, Some(5));
        assert_eq!(s.sessions[0].prefixes_ipv4, 1);
        assert_eq!(s.sessions[1].state, "idle");
        l.down(a, 1, &Reason::ConnectionLost, t + Duration::from_secs(10));
        let s2 = l.snapshot_at(t + Duration::from_secs(69));
        assert_eq!(s2.version, s.version);
        assert_eq!(s2.sessions[0].prefixes_stale, 1);
        assert_eq!(
            s2.sessions[0].last_error.as_deref(),
            Some("connection lost")
        );
        let s3 = l.snapshot_at(t + Duration::from_secs(70));
        assert!(s3.prefixes.is_empty());
        assert!(s3.version > s2.version);
    }
}
