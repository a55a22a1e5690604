use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use control_client::wire::Tier::{self, Embedded, Ixp, Origin};
use ipnet::IpNet;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Reason::*;
use super::*;

type Fleet = (Vec<Node>, Vec<(IpNet, String)>, Vec<ClientNetwork>);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn geo(lat: f64, lon: f64) -> Option<GeoPoint> {
    Some(GeoPoint { lat, lon })
}

/// Space-separated ids, so expected orders fit on one line.
fn ids(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn node(id: &str, tier: Tier, site: &str, region: &str, now: Instant) -> Node {
    Node {
        id: id.into(),
        tier,
        site: site.into(),
        region: region.into(),
        location: None,
        up: true,
        draining: false,
        utilisation: 0.1,
        load_reported_at: Some(now),
        renditions: ["t1/v720".to_owned(), "t1/v1080".to_owned()].into(),
    }
}

fn network(prefix: &str, asn: u32, region: &str) -> ClientNetwork {
    let (prefix, region) = (net(prefix), region.into());
    ClientNetwork {
        prefix,
        asn,
        region,
        location: None,
    }
}

/// Two ISPs (A in eu with a covering /8 and a more specific /16, B in us), one IXP per region.
fn fleet(now: Instant) -> Fleet {
    let nodes = vec![
        node("isp-a-1", Embedded, "a1", "eu", now),
        node("isp-a-2", Embedded, "a2", "eu", now),
        node("ixp-eu-1", Ixp, "x1", "eu", now),
        node("ixp-us-1", Ixp, "y1", "us", now),
        node("isp-b-1", Embedded, "b1", "us", now),
    ];
    let served = [
        ("10.0.0.0/8", "isp-a-1"),
        ("2001:db8::/32", "isp-a-1"),
        ("10.1.0.0/16", "isp-a-2"),
        ("20.0.0.0/8", "isp-b-1"),
        ("20.0.0.0/8", "no-such-node"),
    ];
    let networks = vec![
        network("10.0.0.0/8", 1, "eu"),
        network("2001:db8::/32", 1, "eu"),
        network("20.0.0.0/8", 2, "us"),
        network("30.0.0.0/8", 3, "eu"),
        network("40.0.0.0/8", 4, "antarctica"),
    ];
    let served = served
        .iter()
        .map(|(p, id)| (net(p), id.to_string()))
        .collect();
    (nodes, served, networks)
}

fn snap_of((nodes, served, networks): Fleet, fallbacks: usize) -> Snapshot {
    let policy = Policy {
        fallbacks,
        ..Policy::default()
    };
    Snapshot::build(nodes, served, networks, policy)
}

fn names(snap: &Snapshot, d: &Decision) -> Vec<String> {
    d.picks
        .iter()
        .map(|p| snap.node(p.node).id.clone())
        .collect()
}

fn run(snap: &Snapshot, client: &str, renditions: &[&str], now: Instant, seed: u64) -> Decision {
    let mut rng = StdRng::seed_from_u64(seed);
    decide(snap, ip(client), renditions, now, &mut rng)
}

#[test]
fn primary_by_tier() {
    let now = Instant::now();
    let snap = snap_of(fleet(now), 0);
    const IXPS: &[&str] = &["ixp-eu-1", "ixp-us-1"];
    let cases: &[(&str, &[&str], Reason, Option<(u32, &str)>)] = &[
        ("10.2.3.4", &["isp-a-1"], IspEmbedded, Some((1, "eu"))),
        ("10.1.2.3", &["isp-a-2"], IspEmbedded, Some((1, "eu"))), // longest prefix
        ("20.9.9.9", &["isp-b-1"], IspEmbedded, Some((2, "us"))),
        ("2001:db8:1::5", &["isp-a-1"], IspEmbedded, Some((1, "eu"))),
        (
            "::ffff:10.2.3.4",
            &["isp-a-1"],
            IspEmbedded,
            Some((1, "eu")),
        ),
        ("30.1.1.1", &["ixp-eu-1"], RegionIxp, Some((3, "eu"))),
        ("40.1.1.1", IXPS, AnyAppliance, Some((4, "antarctica"))),
        ("50.1.1.1", IXPS, AnyAppliance, None),
        ("2001:db9::1", IXPS, AnyAppliance, None),
    ];
    for &(client, allowed, reason, network) in cases {
        for seed in 0..20 {
            let d = run(&snap, client, &["t1/v720"], now, seed);
            let got = names(&snap, &d);
            assert!(
                got.len() == 1 && allowed.contains(&got[0].as_str()),
                "{client}: {got:?}"
            );
            assert_eq!(d.picks[0].reason, reason, "{client}");
            assert_eq!(d.network, network.map(|(a, r)| (a, r.into())), "{client}");
            assert!(!d.overflowed, "{client}");
        }
    }
}

#[test]
fn ixps_before_foreign_embedded() {
    let now = Instant::now();
    let snap = snap_of(fleet(now), 10);
    for seed in 0..20 {
        let d = run(&snap, "40.1.1.1", &["t1/v720"], now, seed);
        let tiers: Vec<Tier> = d.picks.iter().map(|p| snap.node(p.node).tier).collect();
        assert_eq!(tiers, [Ixp, Ixp, Embedded, Embedded, Embedded]);
        assert!(d.picks.iter().all(|p| p.reason == AnyAppliance));
    }
}

#[test]
fn ineligible_nodes_skipped() {
    let now = Instant::now();
    let cases: &[(&str, fn(&mut Node), &str, Reason, bool)] = &[
        ("healthy", |_| {}, "isp-a-1", IspEmbedded, false),
        ("down", |n| n.up = false, "ixp-eu-1", RegionIxp, false),
        (
            "draining",
            |n| n.draining = true,
            "ixp-eu-1",
            RegionIxp,
            false,
        ),
        (
            "lacks a rendition",
            |n| n.renditions = n.renditions[..1].into(),
            "ixp-eu-1",
            RegionIxp,
            false,
        ),
        (
            "at threshold",
            |n| n.utilisation = 0.85,
            "ixp-eu-1",
            RegionIxp,
            true,
        ),
        (
            "over threshold",
            |n| n.utilisation = 3.0,
            "ixp-eu-1",
            RegionIxp,
            true,
        ),
        (
            "just under",
            |n| n.utilisation = 0.849,
            "isp-a-1",
            IspEmbedded,
            false,
        ),
        (
            "origin is no node",
            |n| n.tier = Origin,
            "ixp-eu-1",
            RegionIxp,
            false,
        ),
        (
            "no report: stale_utilisation",
            |n| (n.utilisation, n.load_reported_at) = (0.99, None),
            "isp-a-1",
            IspEmbedded,
            false,
        ),
    ];
    for (name, mutate, want, reason, overflowed) in cases {
        let mut f = fleet(now);
        mutate(&mut f.0[0]);
        let snap = snap_of(f, 0);
        let d = run(&snap, "10.2.3.4", &["t1/v720", "t1/v1080"], now, 1);
        assert_eq!(names(&snap, &d), [*want], "{name}");
        assert_eq!(d.picks[0].reason, *reason, "{name}");
        assert_eq!(d.overflowed, *overflowed, "{name}");
    }
}

#[test]
fn stale_report_uses_stale_utilisation() {
    let now = Instant::now();
    let mk = |util: f64, at: Option<Instant>, id: &str| Node {
        utilisation: util,
        load_reported_at: at,
        ..node(id, Ixp, id, "eu", now)
    };
    let snap = |nodes: Vec<Node>, stale_utilisation: f64| {
        let policy = Policy {
            stale_utilisation,
            fallbacks: 0,
            ..Policy::default()
        };
        Snapshot::build(
            nodes,
            Vec::<Served>::new(),
            vec![network("30.0.0.0/8", 3, "eu")],
            policy,
        )
    };
    let (old, edge) = (now - Duration::from_secs(31), now - Duration::from_secs(30));
    let future = now + Duration::from_secs(1);
    // (nodes, stale_utilisation, the only possible primary, its reason): a pair always
    // compares both nodes, so the lower effective utilisation must win every time.
    let cases = [
        // Stale 0.0 is really 0.5, so the fresh 0.3 wins.
        (
            vec![mk(0.0, Some(old), "stale"), mk(0.3, Some(now), "fresh")],
            0.5,
            "fresh",
            RegionIxp,
        ),
        // Exactly stale_after old is still trusted; a report from the future is fresh.
        (
            vec![mk(0.0, Some(edge), "edge"), mk(0.3, Some(future), "ahead")],
            0.5,
            "edge",
            RegionIxp,
        ),
        // A pessimistic stale_utilisation makes silent nodes saturated.
        (
            vec![mk(0.0, None, "silent"), mk(0.3, Some(old), "old")],
            0.9,
            "silent",
            Saturated,
        ),
    ];
    for (nodes, stale_utilisation, want, reason) in cases {
        let snap = snap(nodes, stale_utilisation);
        for seed in 0..30 {
            let d = run(&snap, "30.1.1.1", &[], now, seed);
            assert_eq!(names(&snap, &d), [want]);
            assert_eq!(d.picks[0].reason, reason);
            assert_eq!(d.overflowed, reason == Saturated);
        }
    }
}

#[test]
fn saturated_last_resort_least_utilised_first() {
    let now = Instant::now();
    let mut f = fleet(now);
    for (n, u) in f.0.iter_mut().zip([0.95, 0.9, 1.5, 0.86, 2.0]) {
        n.utilisation = u;
    }
    f.0[4].up = false;
    let snap = snap_of(f, 2);
    let d = run(&snap, "10.2.3.4", &["t1/v720"], now, 7);
    assert_eq!(names(&snap, &d), ids("ixp-us-1 isp-a-2 isp-a-1"));
    assert!(d.picks.iter().all(|p| p.reason == Saturated));
    assert!(d.overflowed);
}

#[test]
fn nothing_means_origin() {
    let now = Instant::now();
    let empty = snap_of((vec![], vec![], vec![]), 2);
    let mut f = fleet(now);
    f.0.iter_mut().for_each(|n| n.up = false);
    let all_down = snap_of(f, 2);
    let healthy = snap_of(fleet(now), 2);
    let cases: &[(&Snapshot, &[&str])] = &[
        (&empty, &[]),
        (&empty, &["t1/v720"]),
        (&all_down, &["t1/v720"]),
        (&healthy, &["no/such/rendition"]),
        (&healthy, &["t1/v720", "no/such/rendition"]),
    ];
    for (i, (snap, renditions)) in cases.iter().enumerate() {
        let d = run(snap, "10.2.3.4", renditions, now, 1);
        assert!(d.picks.is_empty() && !d.overflowed, "case {i}");
    }
    // No rendition constraint: a node holding nothing still qualifies.
    let bare = Node {
        renditions: Arc::from([]),
        ..node("bare", Ixp, "s", "eu", now)
    };
    let snap = snap_of((vec![bare], vec![], vec![]), 2);
    assert_eq!(names(&snap, &run(&snap, "1.2.3.4", &[], now, 1)), ["bare"]);
}

#[test]
fn fallbacks_distinct_and_site_diverse() {
    let now = Instant::now();
    let isp = |id: &str, site: &str| node(id, Embedded, site, "eu", now);
    let mut nodes = vec![
        isp("e1", "s1"),
        isp("e2", "s1"),
        isp("e3", "s2"),
        isp("e4", "s2"),
    ];
    let served: Vec<_> = nodes
        .iter()
        .map(|n| (net("10.0.0.0/8"), n.id.clone()))
        .collect();
    nodes.push(node("ixp", Ixp, "x", "eu", now));
    let networks = vec![network("10.0.0.0/8", 1, "eu")];
    for fallbacks in [1, 9] {
        let snap = snap_of((nodes.clone(), served.clone(), networks.clone()), fallbacks);
        for seed in 0..200 {
            let d = run(&snap, "10.0.0.1", &[], now, seed);
            let sites: Vec<&str> = d
                .picks
                .iter()
                .map(|p| snap.node(p.node).site.as_str())
                .collect();
            let reasons: Vec<Reason> = d.picks.iter().map(|p| p.reason).collect();
            assert_ne!(sites[0], sites[1], "seed {seed}");
            if fallbacks == 1 {
                assert_eq!(reasons, [IspEmbedded; 2]);
                continue;
            }
            // A site repeats only once every site of the tier is taken, and the tier is
            // exhausted before the next one is touched.
            assert_ne!(sites[2], sites[3], "seed {seed}");
            assert_eq!(sites[4], "x");
            assert_eq!(
                reasons,
                [
                    IspEmbedded,
                    IspEmbedded,
                    IspEmbedded,
                    IspEmbedded,
                    RegionIxp
                ]
            );
            assert_eq!(
                d.picks.iter().map(|p| p.node).collect::<HashSet<_>>().len(),
                5
            );
        }
    }
}

/// Primary picks per node among `n` region IXPs at 0.2, except the first at `first_util`.
fn shares(n: usize, first_util: f64, decisions: u64) -> Vec<u64> {
    let now = Instant::now();
    let nodes = (0..n)
        .map(|i| Node {
            utilisation: if i == 0 { first_util } else { 0.2 },
            ..node(&format!("x{i}"), Ixp, &format!("s{i}"), "eu", now)
        })
        .collect();
    let snap = snap_of((nodes, vec![], vec![network("30.0.0.0/8", 3, "eu")]), 0);
    let mut rng = StdRng::seed_from_u64(42);
    let mut counts = vec![0u64; n];
    for _ in 0..decisions {
        let d = decide(&snap, ip("30.0.0.1"), &["t1/v720"], now, &mut rng);
        counts[d.picks[0].node as usize] += 1;
    }
    counts
}

#[test]
fn two_choice_spreads_load() {
    // 8 nodes: evaluated outright; 100 nodes: probed.
    for (n, decisions) in [(8usize, 8_000u64), (100, 50_000)] {
        let fair = decisions / n as u64;
        let equal = shares(n, 0.2, decisions);
        assert!(
            equal.iter().all(|&c| c > fair / 2 && c < fair * 2),
            "{n}: {equal:?}"
        );
        let skewed = shares(n, 0.8, decisions);
        assert!(skewed[0] < fair / 4, "{n}: {skewed:?}");
        assert!(skewed[1..].iter().all(|&c| c > fair / 2), "{n}: {skewed:?}");
    }
}

#[test]
fn distance_counts() {
    let now = Instant::now();
    let at = |id: &str, location| Node {
        location,
        ..node(id, Ixp, id, "eu", now)
    };
    let nodes = vec![
        at("paris", geo(48.86, 2.35)),
        at("sydney", geo(-33.87, 151.21)),
    ];
    let london = ClientNetwork {
        location: geo(51.5, -0.13),
        ..network("30.0.0.0/8", 3, "eu")
    };
    let snap = snap_of((nodes, vec![], vec![london]), 0);
    for seed in 0..20 {
        assert_eq!(
            names(&snap, &run(&snap, "30.0.0.1", &[], now, seed)),
            ["paris"]
        );
    }
    let km = distance_km(
        unit_vector(geo(51.5, -0.13)).unwrap(),
        unit_vector(geo(48.86, 2.35)).unwrap(),
    );
    assert!((km - 343.0).abs() < 5.0, "{km}");
}

#[test]
fn deterministic_for_seed() {
    let now = Instant::now();
    let snap = snap_of(fleet(now), 2);
    let clients = [
        "10.2.3.4",
        "10.1.0.1",
        "20.0.0.1",
        "30.0.0.1",
        "40.0.0.1",
        "2001:db8::1",
        "9.9.9.9",
    ];
    let all = |seed| -> Vec<Decision> {
        let mut rng = StdRng::seed_from_u64(seed);
        clients
            .iter()
            .map(|c| decide(&snap, ip(c), &["t1/v720"], now, &mut rng))
            .collect()
    };
    assert_eq!(all(5), all(5));
    assert!(
        (0..20).any(|seed| all(seed) != all(5)),
        "the seed must matter"
    );
}

#[test]
fn pathway_priority_orders_and_never_empties() {
    let now = Instant::now();
    let mut f = fleet(now);
    f.0[0].utilisation = 0.9; // isp-a-1 saturated
    f.0.push(Node {
        up: false,
        ..node("down", Ixp, "z", "eu", now)
    });
    f.0.push(Node {
        renditions: Arc::from([]),
        ..node("old-content", Ixp, "o", "eu", now)
    });
    let snap = snap_of(f, 2);
    let input = ids("isp-b-1 old-content ixp-us-1 isp-a-1 down nope ixp-eu-1 isp-a-2 ixp-eu-1");
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "10.1.0.1",
            &["t1/v720"],
            "isp-a-2 ixp-eu-1 ixp-us-1 isp-b-1 isp-a-1 old-content",
        ),
        (
            "20.0.0.1",
            &["t1/v720"],
            "isp-b-1 ixp-us-1 ixp-eu-1 isp-a-2 isp-a-1 old-content",
        ),
        // No constraint: old-content qualifies; equal scores keep the input order.
        (
            "40.0.0.1",
            &[],
            "old-content ixp-us-1 ixp-eu-1 isp-b-1 isp-a-2 isp-a-1",
        ),
        // Nobody holds it: live ones in input order.
        (
            "40.0.0.1",
            &["gone"],
            "isp-b-1 old-content ixp-us-1 isp-a-1 ixp-eu-1 isp-a-2",
        ),
    ];
    for (client, renditions, want) in cases {
        let got = pathway_priority(&snap, ip(client), renditions, &input, None, now);
        assert_eq!(got, ids(want), "{client} {renditions:?}");
    }
    let hopeless = ids("down nope");
    assert_eq!(
        pathway_priority(&snap, ip("10.1.0.1"), &[], &hopeless, None, now),
        hopeless
    );
    assert!(pathway_priority(&snap, ip("10.1.0.1"), &[], &[], None, now).is_empty());

    // The pathway a player was last sent to stays first while it is in the best
    // class present; a worse class, a saturated one or an unknown id changes nothing.
    let sticky = |client: &str, renditions: &[&str], sticky: &str| {
        pathway_priority(&snap, ip(client), renditions, &input, Some(sticky), now)
    };
    assert_eq!(
        sticky("40.0.0.1", &[], "ixp-eu-1"),
        ids("ixp-eu-1 old-content ixp-us-1 isp-b-1 isp-a-2 isp-a-1")
    );
    for (client, renditions, stays_second) in [
        ("40.0.0.1", &[][..], "isp-b-1"),
        ("10.1.0.1", &["t1/v720"][..], "ixp-eu-1"),
        ("10.1.0.1", &["t1/v720"][..], "isp-a-1"),
        ("10.1.0.1", &["t1/v720"][..], "nope"),
    ] {
        assert_eq!(
            sticky(client, renditions, stays_second),
            pathway_priority(&snap, ip(client), renditions, &input, None, now),
            "{client} sticky {stays_second}"
        );
    }
}

#[test]
fn snapshot_lookups() {
    let snap = snap_of(fleet(Instant::now()), 2);
    assert_eq!(snap.find("ixp-us-1"), Some(3));
    assert_eq!(snap.find("nope"), None);
    assert_eq!(snap.network(ip("10.200.0.1")).map(|n| n.asn), Some(1));
    assert_eq!(snap.network(ip("2001:db8:ffff::1")).map(|n| n.asn), Some(1));
    assert!(snap.network(ip("11.0.0.1")).is_none());
    fn shared<T: Send + Sync>(_: &T) {}
    shared(&snap);
}

fn random_fleet(rng: &mut StdRng, now: Instant, catalogue: &[&str]) -> Fleet {
    let mut pick = |k: u32| rng.next_u32() % k;
    let nodes = (0..pick(150))
        .map(|i| Node {
            id: format!("n{}", pick(70)), // duplicates on purpose
            tier: [Embedded, Ixp, Origin][pick(3) as usize],
            site: format!("s{}", pick(6)),
            region: format!("r{}", pick(3)),
            location: if pick(2) == 0 {
                geo(f64::from(pick(180)) - 90.0, f64::from(i))
            } else {
                None
            },
            up: pick(5) != 0,
            draining: pick(8) == 0,
            utilisation: match pick(40) {
                0 => f64::NAN,
                1 => -1.0,
                _ => f64::from(pick(120)) / 100.0,
            },
            load_reported_at: [Some(now), Some(now - Duration::from_secs(100)), None]
                [pick(3) as usize],
            renditions: catalogue
                .iter()
                .filter(|_| pick(2) == 0)
                .map(|s| s.to_string())
                .collect(),
        })
        .collect();
    let served = (0..pick(60))
        .map(|_| {
            (
                net(&format!("10.{}.0.0/{}", pick(4), 8 * (1 + pick(2)))),
                format!("n{}", pick(70)),
            )
        })
        .collect();
    let networks = (0..4)
        .map(|i| network(&format!("10.{i}.0.0/16"), i, &format!("r{}", pick(4))))
        .collect();
    (nodes, served, networks)
}

/// Random fleets, clients and requests: whatever happens, the invariants hold.
#[test]
fn invariants_on_random_fleets() {
    let now = Instant::now();
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let catalogue = ["a", "b", "c", "d", "e", "f"];
    for round in 0..300 {
        let (nodes, served, networks) = random_fleet(&mut rng, now, &catalogue);
        let policy = Policy {
            fallbacks: rng.next_u32() as usize % 5,
            km_per_utilisation: [5000.0, 0.0, f64::NAN][rng.next_u32() as usize % 3],
            ..Policy::default()
        };
        let want = 1 + policy.fallbacks;
        let snap = Snapshot::build(nodes, served, networks, policy);
        for _ in 0..20 {
            let mut pick = |k: u32| rng.next_u32() % k;
            let client = ip(&format!("10.{}.0.{}", pick(6), pick(255)));
            let renditions: Vec<&str> = catalogue
                .iter()
                .chain(&["zz"])
                .copied()
                .filter(|_| pick(4) == 0)
                .collect();
            let pathways: Vec<String> = (0..pick(5)).map(|_| format!("n{}", pick(70))).collect();
            let d = decide(&snap, client, &renditions, now, &mut rng);

            let holds = |n: &Node| {
                renditions
                    .iter()
                    .all(|r| n.renditions.iter().any(|h| h == r))
            };
            let usable = |n: &Node| n.up && !n.draining && n.tier != Origin && holds(n);
            let available = snap.nodes().iter().filter(|n| usable(n)).count();
            assert_eq!(
                d.picks.len(),
                available.min(want),
                "round {round}: wrong count"
            );
            let distinct: HashSet<NodeId> = d.picks.iter().map(|p| p.node).collect();
            assert_eq!(distinct.len(), d.picks.len(), "round {round}: duplicate");
            let (mut saturated, mut foreign_embedded) = (false, false);
            for p in &d.picks {
                let node = snap.node(p.node);
                assert!(usable(node), "round {round}: unusable pick");
                saturated |= p.reason == Saturated;
                assert_eq!(
                    saturated,
                    p.reason == Saturated,
                    "round {round}: saturated first"
                );
                match p.reason {
                    IspEmbedded | IspFallback => assert_eq!(node.tier, Embedded),
                    RegionIxp => assert_eq!(node.tier, Ixp),
                    AnyAppliance => {
                        foreign_embedded |= node.tier == Embedded;
                        assert!(
                            !foreign_embedded || node.tier == Embedded,
                            "round {round}: IXP late"
                        );
                    }
                    Saturated => {}
                }
            }
            let order = pathway_priority(&snap, client, &renditions, &pathways, None, now);
            assert_eq!(order.is_empty(), pathways.is_empty(), "round {round}");
            assert!(
                order.iter().all(|id| pathways.contains(id)),
                "round {round}"
            );
        }
    }
}

/// Three appliances in one ISP announce one prefix: the ISP marked one a
/// fallback (a community) and gave the other two different MEDs. New plays
/// go to the lowest MED, then the higher, then the fallback; content
/// steering orders pathways the same way; an overloaded preferred appliance
/// hands its viewers to the next group, not to an IXP.
#[test]
fn the_isps_communities_and_med_order_its_appliances() {
    let now = Instant::now();
    let nodes = vec![
        node("near", Embedded, "a1", "eu", now),
        node("far", Embedded, "a2", "eu", now),
        node("spare", Embedded, "a3", "eu", now),
        node("ixp-eu-1", Ixp, "x1", "eu", now),
    ];
    let pref = |fallback, med| RoutePref { fallback, med };
    let served = [
        ("near", pref(false, 10)),
        ("far", pref(false, 50)),
        ("spare", pref(true, 0)),
        // Also configured without preference: the learned rank wins.
        ("spare", pref(true, 0)),
    ]
    .map(|(id, pref)| Served {
        prefix: net("10.0.0.0/8"),
        appliance: id.into(),
        pref,
    });
    let build = |nodes: Vec<Node>| {
        Snapshot::build(
            nodes,
            served.clone(),
            vec![network("10.0.0.0/8", 1, "eu")],
            Policy {
                fallbacks: 3,
                ..Policy::default()
            },
        )
    };
    let snap = build(nodes.clone());
    for seed in 0..10 {
        let d = run(&snap, "10.1.2.3", &["t1/v720"], now, seed);
        assert_eq!(names(&snap, &d), ids("near far spare ixp-eu-1"));
        let reasons: Vec<Reason> = d.picks.iter().map(|p| p.reason).collect();
        assert_eq!(reasons, [IspEmbedded, IspFallback, IspFallback, RegionIxp]);
    }
    let pathways = ids("ixp-eu-1 spare far near");
    assert_eq!(
        pathway_priority(&snap, ip("10.1.2.3"), &["t1/v720"], &pathways, None, now),
        ids("near far spare ixp-eu-1")
    );
    // A sticky pathway in a worse group does not hold viewers there.
    assert_eq!(
        pathway_priority(
            &snap,
            ip("10.1.2.3"),
            &["t1/v720"],
            &pathways,
            Some("far"),
            now
        )[0],
        "near"
    );
    // The preferred appliance is full: the next group takes its viewers.
    let mut full = nodes;
    full[0].utilisation = 0.99;
    let snap = build(full);
    let d = run(&snap, "10.1.2.3", &["t1/v720"], now, 1);
    assert_eq!(names(&snap, &d)[..2], ids("far spare"));
    assert!(d.overflowed);
}

/// Players in one network measured an appliance too slow: that network's
/// new viewers go to the ISP's other appliance and content steering puts it
/// last, while another network served by the same appliance keeps it.
#[test]
fn a_path_measured_too_slow_loses_that_networks_viewers_only() {
    let now = Instant::now();
    let nodes = vec![
        node("a1", Embedded, "s1", "eu", now),
        node("a2", Embedded, "s2", "eu", now),
    ];
    let served = ["10.1.0.0/16", "10.2.0.0/16"]
        .iter()
        .flat_map(|p| ["a1", "a2"].map(|id| (net(p), id.to_string())))
        .collect::<Vec<_>>();
    let networks = vec![
        network("10.1.0.0/16", 1, "eu"),
        network("10.2.0.0/16", 1, "eu"),
    ];
    let mut snap = Snapshot::build(nodes, served, networks, Policy::default());
    assert_eq!(snap.network_key(ip("10.1.2.3")), "10.1.0.0/16");
    assert_eq!(
        snap.network_key(ip("100.64.9.77")),
        "100.64.9.0/24",
        "no network: its /24"
    );
    let slow = Measured {
        slow: true,
        throughput_bps: 2e6,
        ttfb_ms: 300.0,
        confidence: 1.0,
    };
    snap.set_measured_paths([("10.1.0.0/16".to_owned(), "a1".to_owned(), slow)]);
    let mut from_slow = HashSet::new();
    let mut from_other = HashSet::new();
    for seed in 0..40 {
        let d = run(&snap, "10.1.2.3", &["t1/v720"], now, seed);
        from_slow.insert(names(&snap, &d)[0].clone());
        let d = run(&snap, "10.2.2.3", &["t1/v720"], now, seed);
        from_other.insert(names(&snap, &d)[0].clone());
    }
    assert_eq!(from_slow, HashSet::from(["a2".to_owned()]));
    assert_eq!(from_other.len(), 2, "the other network still uses both");
    let order = pathway_priority(
        &snap,
        ip("10.1.2.3"),
        &["t1/v720"],
        &ids("a1 a2"),
        Some("a1"),
        now,
    );
    assert_eq!(order, ids("a2 a1"), "viewers already playing move");
}

/// Two equal appliances and a client network in the same city: what its
/// players measured decides between them, as far as it is trusted, and
/// without a measurement distance alone does.
#[test]
fn measured_paths_weigh_by_their_confidence_and_distance_without() {
    let now = Instant::now();
    let city = |id: &str, site: &str| Node {
        location: geo(52.37, 4.9),
        ..node(id, Embedded, site, "eu", now)
    };
    let nodes = vec![city("a1", "s1"), city("a2", "s2")];
    let served = ["a1", "a2"].map(|id| (net("10.1.0.0/16"), id.to_string()));
    let networks = vec![ClientNetwork {
        location: geo(52.37, 4.9),
        ..network("10.1.0.0/16", 1, "eu")
    }];
    let build = |paths: &[(&str, Measured)]| {
        let mut snap = Snapshot::build(
            nodes.clone(),
            served.to_vec(),
            networks.clone(),
            Policy::default(),
        );
        snap.set_measured_paths(
            paths
                .iter()
                .map(|(id, m)| ("10.1.0.0/16".to_owned(), (*id).to_owned(), *m)),
        );
        snap
    };
    let fast = Measured {
        slow: false,
        throughput_bps: 80e6,
        ttfb_ms: 12.0,
        confidence: 1.0,
    };
    // Congested but not too slow: its first byte comes 150 ms late, and at
    // 12 Mbit/s it is short of a good path.
    let congested = Measured {
        throughput_bps: 12e6,
        ttfb_ms: 160.0,
        ..fast
    };
    let primaries = |snap: &Snapshot| -> HashSet<String> {
        (0..40)
            .map(|seed| names(snap, &run(snap, "10.1.2.3", &["t1/v720"], now, seed))[0].clone())
            .collect()
    };
    let both = HashSet::from(["a1".to_owned(), "a2".to_owned()]);
    assert_eq!(primaries(&build(&[])), both, "equals share the network");
    let trusted = build(&[("a1", congested), ("a2", fast)]);
    assert_eq!(primaries(&trusted), HashSet::from(["a2".to_owned()]));
    let order = pathway_priority(
        &trusted,
        ip("10.1.2.3"),
        &["t1/v720"],
        &ids("a1 a2"),
        None,
        now,
    );
    assert_eq!(order, ids("a2 a1"));
    // a1's score over a2's, from the client, in `snap`.
    let client = ip("10.1.2.3");
    let gap = |snap: &Snapshot| {
        let pos = snap
            .network_index(client)
            .and_then(|i| snap.net_info(i).pos);
        let ctx = Ctx::new(
            snap,
            Need::anything(snap),
            now,
            pos,
            snap.measured_for(client),
        );
        let (a1, a2) = (snap.find("a1").unwrap(), snap.find("a2").unwrap());
        ctx.score(a1) - ctx.score(a2)
    };
    // Hardly trusted: the difference it makes is below the load's.
    let unsure = Measured {
        confidence: 0.01,
        ..congested
    };
    let g = gap(&build(&[("a1", unsure)]));
    assert!(g > 0.0 && g < 0.05, "{g}");
    // A path as good as the best its network measured costs nothing against
    // an unmeasured one: a first byte always takes some time.
    assert_eq!(gap(&build(&[("a1", fast)])), 0.0);
}

/// A far appliance's first byte comes later by its distance's round trip:
/// only what comes later still counts against it.
#[test]
fn a_measured_first_byte_counts_only_beyond_what_distance_explains() {
    let now = Instant::now();
    // a1 in the client's city, a2 in Munich (about 660 km: a 6.6 ms round trip).
    let nodes = vec![
        Node {
            location: geo(52.37, 4.9),
            ..node("a1", Embedded, "s1", "eu", now)
        },
        Node {
            location: geo(48.14, 11.58),
            ..node("a2", Embedded, "s2", "eu", now)
        },
    ];
    let served = ["a1", "a2"].map(|id| (net("10.1.0.0/16"), id.to_string()));
    let networks = vec![ClientNetwork {
        location: geo(52.37, 4.9),
        ..network("10.1.0.0/16", 1, "eu")
    }];
    let near = Measured {
        slow: false,
        throughput_bps: 80e6,
        ttfb_ms: 1.0,
        confidence: 1.0,
    };
    let client = ip("10.1.2.3");
    // a2's score with its first byte measured after `ttfb_ms` (None: not measured).
    let a2_score = |ttfb_ms: Option<f64>| {
        let mut snap = Snapshot::build(
            nodes.clone(),
            served.to_vec(),
            networks.clone(),
            Policy::default(),
        );
        let mut paths = vec![("a1", near)];
        if let Some(t) = ttfb_ms {
            paths.push(("a2", Measured { ttfb_ms: t, ..near }));
        }
        snap.set_measured_paths(
            paths
                .into_iter()
                .map(|(id, m)| ("10.1.0.0/16".to_owned(), id.to_owned(), m)),
        );
        let pos = snap
            .network_index(client)
            .and_then(|i| snap.net_info(i).pos);
        assert!(pos.is_some());
        let ctx = Ctx::new(
            &snap,
            Need::anything(&snap),
            now,
            pos,
            snap.measured_for(client),
        );
        ctx.score(snap.find("a2").unwrap())
    };
    let unmeasured = a2_score(None);
    // 5 ms is above the network's best (1 ms) but within the round trip.
    assert_eq!(a2_score(Some(5.0)), unmeasured);
    // Beyond it, every 50 ms more weighs as much as a full appliance
    // (5000 km of distance a utilisation, light covers 100 km a ms).
    let (late, later) = (a2_score(Some(60.0)), a2_score(Some(110.0)));
    assert!(late > unmeasured);
    assert!((later - late - 1.0).abs() < 1e-9, "{}", later - late);
}
