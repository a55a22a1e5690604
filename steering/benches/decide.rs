//! Micro-benchmark of `steer::decide` on a synthetic fleet the size of the target:
//! 10,000 appliances (8,000 embedded in 2,000 ISPs, 2,000 IXP nodes in 20 regions), 300
//! renditions (60 titles x 5) with popular titles held more widely, 100,000 served prefixes
//! (90% v4; 60% of them also client networks, so 40% of ISP clients have no region) and
//! 40,000 further client networks without ISP boxes. Each play asks for 3 renditions of one
//! title.
//!
//! Measured with `cargo bench --bench decide` (release, thin LTO) on the 2-core shared dev VM,
//! load average ~2 from other builds, so figures vary ±20% run to run; three runs:
//!   snapshot build                                 138-220 ms
//!   clients inside an ISP prefix      0.72-0.98 M decisions/s (StdRng), 0.84-0.95 (SmallRng)
//!   clients in a region w/o ISP box   1.52-1.62 M decisions/s (StdRng), 1.34-1.70 (SmallRng)
//!   clients matching nothing          2.41-2.82 M decisions/s (StdRng), 2.92-3.36 (SmallRng)
//! with 1 primary + 2 fallbacks per decision. ISP clients cost most: two trie hits, their
//! ISP's boxes, then region IXPs for fallbacks (a box holds 10 of 60 titles), plus the
//! `Decision.network` region String that must be allocated.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use control_client::wire::Tier;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::rngs::{SmallRng, StdRng};
use rand::{Rng, SeedableRng};
use steering::fleet::steer::{ClientNetwork, GeoPoint, Node, Policy, Reason, Snapshot, decide};

const REGIONS: usize = 20;
const ISPS: usize = 2_000;
const BOXES_PER_ISP: usize = 4;
const IXPS_PER_REGION: usize = 100;
const TITLES: usize = 60;
const LADDER: usize = 5;
const TITLES_PER_NODE: usize = 10;
const SERVED: usize = 100_000;
const EXTRA_NETWORKS: usize = 40_000;

fn unit(rng: &mut impl Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn below(rng: &mut impl Rng, n: usize) -> usize {
    (unit(rng) * n as f64) as usize
}

/// Popular titles first: squaring a uniform skews towards low indices.
fn title(rng: &mut impl Rng) -> usize {
    (unit(rng).powi(2) * TITLES as f64) as usize
}

fn rendition(t: usize, r: usize) -> String {
    format!("titles/t{t}/v{r}")
}

fn near(rng: &mut impl Rng, c: GeoPoint) -> Option<GeoPoint> {
    Some(GeoPoint {
        lat: c.lat + unit(rng) * 6.0 - 3.0,
        lon: c.lon + unit(rng) * 6.0 - 3.0,
    })
}

fn appliance(
    rng: &mut impl Rng,
    id: String,
    tier: Tier,
    site: String,
    region: usize,
    at: GeoPoint,
    now: Instant,
) -> Node {
    let mut titles: Vec<usize> = Vec::new();
    while titles.len() < TITLES_PER_NODE {
        let t = title(rng);
        if !titles.contains(&t) {
            titles.push(t);
        }
    }
    let age = if below(rng, 10) == 0 {
        60
    } else {
        below(rng, 10) as u64
    };
    Node {
        id,
        tier,
        site,
        region: format!("r{region}"),
        location: near(rng, at),
        up: below(rng, 100) != 0,
        draining: below(rng, 100) == 0,
        utilisation: unit(rng),
        load_reported_at: Some(now - Duration::from_secs(age)),
        renditions: titles
            .iter()
            .flat_map(|&t| (0..LADDER).map(move |r| rendition(t, r)))
            .collect(),
    }
}

/// v4 prefixes under 1-150 (served) or 151-223 (other networks); 240/4 is left for misses.
/// v6 likewise under 2000::/4, 3000-3eff and 3f00::/8.
fn prefix(rng: &mut impl Rng, served: bool) -> IpNet {
    if below(rng, 10) == 0 {
        let top: u128 = if served {
            0x2000 + below(rng, 0x1000) as u128
        } else {
            0x3000 + below(rng, 0xf00) as u128
        };
        let addr = (top << 112) | (u128::from(rng.next_u64()) << 48);
        IpNet::V6(
            Ipv6Net::new(Ipv6Addr::from(addr), 32 + below(rng, 17) as u8)
                .unwrap()
                .trunc(),
        )
    } else {
        let first = if served {
            1 + below(rng, 150)
        } else {
            151 + below(rng, 73)
        } as u32;
        let addr = (first << 24) | (rng.next_u32() >> 8);
        IpNet::V4(
            Ipv4Net::new(Ipv4Addr::from(addr), 16 + below(rng, 9) as u8)
                .unwrap()
                .trunc(),
        )
    }
}

fn host_in(rng: &mut impl Rng, net: IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(
            u32::from(n.network()) | (rng.next_u32() & !u32::from(n.netmask())),
        )),
        IpNet::V6(n) => {
            let host = (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()))
                & !u128::from(n.netmask());
            IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | host))
        }
    }
}

fn main() {
    let now = Instant::now();
    let mut rng = SmallRng::seed_from_u64(1);
    let centres: Vec<GeoPoint> = (0..REGIONS)
        .map(|_| GeoPoint {
            lat: unit(&mut rng) * 120.0 - 60.0,
            lon: unit(&mut rng) * 360.0 - 180.0,
        })
        .collect();
    let isp_region: Vec<usize> = (0..ISPS).map(|_| below(&mut rng, REGIONS)).collect();

    let mut nodes = Vec::new();
    for (isp, &region) in isp_region.iter().enumerate() {
        for b in 0..BOXES_PER_ISP {
            let (id, site) = (format!("isp{isp}-{b}"), format!("isp{isp}-site{}", b % 2));
            nodes.push(appliance(
                &mut rng,
                id,
                Tier::Embedded,
                site,
                region,
                centres[region],
                now,
            ));
        }
    }
    for (region, &centre) in centres.iter().enumerate() {
        for i in 0..IXPS_PER_REGION {
            let (id, site) = (
                format!("ixp-r{region}-{i}"),
                format!("ixp-r{region}-site{}", i % 10),
            );
            nodes.push(appliance(
                &mut rng,
                id,
                Tier::Ixp,
                site,
                region,
                centre,
                now,
            ));
        }
    }

    let mut served = Vec::with_capacity(SERVED * BOXES_PER_ISP);
    let mut networks = Vec::with_capacity(SERVED);
    let mut isp_prefixes = Vec::with_capacity(SERVED);
    for i in 0..SERVED {
        let (isp, p) = (i % ISPS, prefix(&mut rng, true));
        served.extend((0..BOXES_PER_ISP).map(|b| (p, format!("isp{isp}-{b}"))));
        isp_prefixes.push(p);
        if i % 5 < 3 {
            let region = isp_region[isp];
            let location = near(&mut rng, centres[region]);
            networks.push(ClientNetwork {
                prefix: p,
                asn: 64_512 + isp as u32,
                region: format!("r{region}"),
                location,
            });
        }
    }
    let mut other_prefixes = Vec::with_capacity(EXTRA_NETWORKS);
    for i in 0..EXTRA_NETWORKS {
        let (p, region) = (prefix(&mut rng, false), below(&mut rng, REGIONS));
        let location = near(&mut rng, centres[region]);
        networks.push(ClientNetwork {
            prefix: p,
            asn: 100_000 + i as u32,
            region: format!("r{region}"),
            location,
        });
        other_prefixes.push(p);
    }
    let (nodes_n, served_n, networks_n) = (nodes.len(), served.len(), networks.len());

    let t = Instant::now();
    let snap = Snapshot::build(nodes, served, networks, Policy::default());
    let build = t.elapsed();
    println!(
        "fleet: {nodes_n} appliances, {served_n} served (prefix, appliance) pairs, {networks_n} client networks"
    );
    println!("snapshot build: {:.0} ms", build.as_secs_f64() * 1e3);

    let ladders: Vec<[String; 3]> = (0..TITLES)
        .map(|t| [rendition(t, 0), rendition(t, 2), rendition(t, 4)])
        .collect();
    let requests: Vec<[&str; 3]> = ladders
        .iter()
        .map(|l| [l[0].as_str(), l[1].as_str(), l[2].as_str()])
        .collect();
    let miss_v4 = "240.0.0.0/4".parse().unwrap();
    let miss_v6 = "3f00::/8".parse().unwrap();
    let scenarios: [(&str, Box<dyn Fn(&mut SmallRng) -> IpNet>); 3] = [
        (
            "inside an ISP prefix",
            Box::new(|r| isp_prefixes[below(r, isp_prefixes.len())]),
        ),
        (
            "region without ISP box",
            Box::new(|r| other_prefixes[below(r, other_prefixes.len())]),
        ),
        (
            "matching nothing",
            Box::new(|r| if below(r, 10) == 0 { miss_v6 } else { miss_v4 }),
        ),
    ];
    for (name, client_net) in &scenarios {
        let plays: Vec<(IpAddr, usize)> = (0..1 << 16)
            .map(|_| {
                let net = client_net(&mut rng);
                (host_in(&mut rng, net), title(&mut rng))
            })
            .collect();
        let mut reasons = [0usize; 5];
        let (mut overflowed, mut picks) = (0usize, 0usize);
        for (c, t) in &plays {
            let d = decide(&snap, *c, &requests[*t], now, &mut rng);
            overflowed += usize::from(d.overflowed);
            picks += d.picks.len();
            let primary = d.picks.first().map_or(4, |p| p.reason as usize);
            reasons[primary] += 1;
        }
        let pct = |n: usize| 100.0 * n as f64 / plays.len() as f64;
        println!(
            "{name}: primary isp {:.0}% region-ixp {:.0}% any {:.0}% saturated {:.1}% origin {:.1}%; overflowed {:.0}%; {:.2} picks/decision",
            pct(reasons[Reason::IspEmbedded as usize]),
            pct(reasons[Reason::RegionIxp as usize]),
            pct(reasons[Reason::AnyAppliance as usize]),
            pct(reasons[Reason::Saturated as usize]),
            pct(reasons[4]),
            pct(overflowed),
            picks as f64 / plays.len() as f64,
        );
        let mut std_rng = StdRng::seed_from_u64(7);
        let mut small_rng = SmallRng::seed_from_u64(7);
        let std = rate(&plays, |c, t| {
            decide(&snap, c, &requests[t], now, &mut std_rng)
        });
        let small = rate(&plays, |c, t| {
            decide(&snap, c, &requests[t], now, &mut small_rng)
        });
        println!(
            "    {:.2} M decisions/s (StdRng), {:.2} M decisions/s (SmallRng)",
            std / 1e6,
            small / 1e6
        );
    }
}

/// Decisions per second over at least one second of looping through `plays`.
fn rate(
    plays: &[(IpAddr, usize)],
    mut f: impl FnMut(IpAddr, usize) -> steering::fleet::steer::Decision,
) -> f64 {
    for (c, t) in plays.iter().take(10_000) {
        black_box(f(*c, *t));
    }
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < Duration::from_secs(1) {
        for (c, t) in plays {
            black_box(f(*c, *t));
        }
        n += plays.len() as u64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}
