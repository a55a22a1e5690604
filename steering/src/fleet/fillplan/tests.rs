use super::*;
use crate::config::ApplianceConfig;

const NOW: u64 = 1_800_000_000;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// A title whose renditions (`name`, bytes) each hold one object.
fn title(id: &str, regions: &[&str], release: Option<u64>, renditions: &[(&str, u64)]) -> Title {
    Title {
        id: id.into(),
        regions: regions.iter().map(|r| r.to_string()).collect(),
        release,
        audience: None,
        renditions: renditions
            .iter()
            .map(|(name, size)| Rendition {
                id: format!("titles/{id}/{name}"),
                objects: vec![FillObject {
                    key: format!("titles/{id}/{name}/seg1.m4s"),
                    size: *size,
                    sha256: "ab".repeat(32),
                }],
            })
            .collect(),
    }
}

/// A released title available everywhere with one 100-byte rendition.
fn plain(id: &str) -> Title {
    title(id, &["*"], None, &[("v1", 100)])
}

fn app(id: &str, tier: Tier, site: &str, region: &str) -> Appliance {
    Appliance {
        id: id.into(),
        tier,
        site: site.into(),
        region: region.into(),
        storage_bytes: 0,
        eligible: true,
        complete: HashSet::new(),
        url: Some(format!("http://{id}:8080/")),
    }
}

fn embedded(id: &str) -> Appliance {
    app(id, Tier::Embedded, "isp-a", "eu")
}

fn holding(mut a: Appliance, renditions: &[&str]) -> Appliance {
    a.complete = renditions.iter().map(|r| r.to_string()).collect();
    a
}

fn plays(list: &[(&str, &str, u64)]) -> Vec<Play> {
    list.iter()
        .map(|(t, r, at)| Play {
            title: t.to_string(),
            region: r.to_string(),
            at: *at,
        })
        .collect()
}

fn window() -> FillWindow {
    FillWindow {
        start: "02:00".into(),
        end: "06:00".into(),
        utc_offset_minutes: 0,
    }
}

fn run(me: &Appliance, fleet: &[Appliance], titles: &[Title], plays: &[Play]) -> FillPlan {
    run_with(me, fleet, titles, plays, &FillConfig::default())
}

fn run_with(
    me: &Appliance,
    fleet: &[Appliance],
    titles: &[Title],
    plays: &[Play],
    cfg: &FillConfig,
) -> FillPlan {
    let w = window();
    let input = Input {
        appliance: me,
        fleet,
        titles,
        plays,
        window: &w,
        origin_url: Some("http://origin/"),
        token: "TOK",
    };
    plan(&input, NOW, cfg)
}

/// Titles in plan order (each once).
fn order(p: &FillPlan) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for i in &p.items {
        if out.last() != Some(&i.title.as_str()) {
            out.push(&i.title);
        }
    }
    out
}

#[test]
fn ranking() {
    let cases: Vec<(&str, Appliance, Vec<Title>, Vec<Play>, Vec<&str>)> = vec![
        (
            "more plays rank higher; no plays last; ties by id",
            embedded("me"),
            vec![plain("a"), plain("b"), plain("c"), plain("d")],
            plays(&[
                ("c", "eu", NOW - HOUR),
                ("c", "eu", NOW - HOUR),
                ("b", "eu", NOW - HOUR),
            ]),
            vec!["c", "b", "a", "d"],
        ),
        (
            "decay: one play now beats two a week ago",
            embedded("me"),
            vec![plain("old"), plain("new")],
            plays(&[
                ("old", "eu", NOW - 6 * DAY),
                ("old", "eu", NOW - 6 * DAY),
                ("new", "eu", NOW),
            ]),
            vec!["new", "old"],
        ),
        (
            "plays older than the lookback do not count",
            embedded("me"),
            vec![plain("a"), plain("b")],
            plays(&[("b", "eu", NOW - 8 * DAY), ("b", "eu", NOW - 8 * DAY)]),
            vec!["a", "b"],
        ),
        (
            "launches first, soonest first; past releases rank by plays; beyond the horizon left out",
            embedded("me"),
            vec![
                plain("hit"),
                title("soon", &["*"], Some(NOW + 2 * HOUR), &[("v1", 1)]),
                title("later", &["*"], Some(NOW + 40 * HOUR), &[("v1", 1)]),
                title("aa-far", &["*"], Some(NOW + 49 * HOUR), &[("v1", 1)]),
                title("out", &["*"], Some(NOW - DAY), &[("v1", 1)]),
            ],
            plays(&[("hit", "eu", NOW), ("hit", "eu", NOW), ("out", "eu", NOW)]),
            vec!["soon", "later", "hit", "out"],
        ),
        (
            "a release exactly at the horizon is a launch; one exactly now is out",
            embedded("me"),
            vec![
                title("edge", &["*"], Some(NOW + 48 * HOUR), &[("v1", 1)]),
                title("now", &["*"], Some(NOW), &[("v1", 1)]),
                plain("a"),
            ],
            vec![],
            vec!["edge", "a", "now"],
        ),
        (
            "embedded: its region's titles and plays only",
            embedded("me"),
            vec![
                title("eu-only", &["eu"], None, &[("v1", 1)]),
                title("us-only", &["us"], None, &[("v1", 1)]),
                title("country", &["NL"], None, &[("v1", 1)]),
                plain("everywhere"),
            ],
            plays(&[
                ("eu-only", "us", NOW),
                ("eu-only", "us", NOW),
                ("everywhere", "eu", NOW),
            ]),
            vec!["everywhere", "eu-only"],
        ),
        (
            "IXP: available titles ranked by plays summed over every region",
            app("me", Tier::Ixp, "ix-ams", "eu"),
            vec![
                title("a", &["eu", "us"], None, &[("v1", 1)]),
                title("b", &["eu"], None, &[("v1", 1)]),
                title("c", &["eu"], None, &[("v1", 1)]),
                title("us-only", &["us"], None, &[("v1", 1)]),
            ],
            plays(&[
                ("a", "us", NOW),
                ("a", "us", NOW),
                ("a", "apac", NOW),
                ("b", "eu", NOW),
                ("b", "eu", NOW),
                ("us-only", "us", NOW),
            ]),
            vec!["a", "b", "c"],
        ),
        (
            "titles without renditions are skipped",
            embedded("me"),
            vec![
                Title {
                    renditions: vec![],
                    ..plain("empty")
                },
                plain("b"),
            ],
            vec![],
            vec!["b"],
        ),
    ];
    for (name, me, titles, plays, want) in cases {
        let p = run(&me, &[], &titles, &plays);
        assert_eq!(order(&p), want, "{name}");
        // Scores never increase down the plan.
        for w in p.items.windows(2) {
            if w[0].urgent == w[1].urgent && !w[0].urgent {
                assert!(w[0].score >= w[1].score, "{name}: scores out of order");
            }
        }
    }
}

#[test]
fn launches_are_urgent_and_score_above_everything_released() {
    let titles = vec![
        plain("hit"),
        title(
            "launch",
            &["*"],
            Some(NOW + HOUR),
            &[("v1", 10), ("v2", 10)],
        ),
    ];
    let p = run(
        &embedded("me"),
        &[],
        &titles,
        &plays(&[("hit", "eu", NOW), ("hit", "eu", NOW)]),
    );
    let urgent: Vec<(&str, bool)> = p
        .items
        .iter()
        .map(|i| (i.rendition.as_str(), i.urgent))
        .collect();
    assert_eq!(
        urgent,
        [
            ("titles/launch/v1", true),
            ("titles/launch/v2", true),
            ("titles/hit/v1", false)
        ]
    );
    assert!(p.items[0].score > p.items[2].score);
    assert!((p.items[2].score - 2.0).abs() < 1e-9);
}

#[test]
fn items_are_every_rendition_with_its_objects() {
    let mut t = title("t1", &["*"], None, &[("v720", 300), ("dash/v720", 200)]);
    t.renditions[0].objects.push(FillObject {
        key: "titles/t1/v720/seg2.m4s".into(),
        size: 50,
        sha256: "cd".repeat(32),
    });
    let p = run(&embedded("me"), &[], &[t.clone()], &[]);
    assert_eq!(p.items.len(), 2, "HLS and DASH renditions alike");
    for (item, r) in p.items.iter().zip(&t.renditions) {
        assert_eq!(item.rendition, r.id);
        assert_eq!(item.title, "t1");
        assert_eq!(item.objects, r.objects);
        assert_eq!(item.bytes, r.objects.iter().map(|o| o.size).sum::<u64>());
    }
    assert_eq!(p.items[0].bytes, 350);
    assert_eq!(
        (p.appliance.as_str(), p.version, p.generated_at, p.expires),
        ("me", 0, NOW, NOW + DAY)
    );
    assert_eq!(p.window, window());
}

#[test]
fn budget_keeps_headroom_and_whole_titles() {
    // (storage, headroom, title sizes as renditions, want titles, want budget)
    let cases: Vec<(&str, u64, f64, Vec<Vec<u64>>, Vec<&str>, u64)> = vec![
        (
            "unknown storage: no limit",
            0,
            0.1,
            vec![vec![400], vec![1 << 40]],
            vec!["t0", "t1"],
            0,
        ),
        (
            "stops before the title that would not fit",
            1000,
            0.1,
            vec![vec![400], vec![400], vec![200]],
            vec!["t0", "t1"],
            900,
        ),
        (
            "an exact fit fits",
            1000,
            0.1,
            vec![vec![450], vec![450]],
            vec!["t0", "t1"],
            900,
        ),
        (
            "stops, even if a smaller title further down would fit",
            1000,
            0.1,
            vec![vec![400], vec![600], vec![100]],
            vec!["t0"],
            900,
        ),
        (
            "a title counts all its renditions: no half titles",
            1000,
            0.5,
            vec![vec![300, 300], vec![100]],
            vec![],
            500,
        ),
        (
            "no headroom: the whole disk",
            1000,
            0.0,
            vec![vec![600, 400]],
            vec!["t0"],
            1000,
        ),
        (
            "a tiny disk still reads as known",
            1,
            0.5,
            vec![vec![2]],
            vec![],
            1,
        ),
    ];
    for (name, storage, headroom, sizes, want, want_budget) in cases {
        // Rank order t0, t1, ... by plays, so sizes do not influence order.
        let titles: Vec<Title> = sizes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let renditions: Vec<(String, u64)> = s
                    .iter()
                    .enumerate()
                    .map(|(j, b)| (format!("v{j}"), *b))
                    .collect();
                let r: Vec<(&str, u64)> =
                    renditions.iter().map(|(n, b)| (n.as_str(), *b)).collect();
                title(&format!("t{i}"), &["*"], None, &r)
            })
            .collect();
        let played: Vec<Play> = (0..titles.len())
            .flat_map(|i| {
                (0..titles.len() - i).map(move |_| Play {
                    title: format!("t{i}"),
                    region: "eu".into(),
                    at: NOW,
                })
            })
            .collect();
        let mut me = embedded("me");
        me.storage_bytes = storage;
        let cfg = FillConfig {
            headroom,
            ..FillConfig::default()
        };
        let p = run_with(&me, &[], &titles, &played, &cfg);
        assert_eq!(order(&p), want, "{name}");
        assert_eq!(p.budget_bytes, want_budget, "{name}");
        let used: u64 = p.items.iter().map(|i| i.bytes).sum();
        assert!(want_budget == 0 || used <= want_budget, "{name}");
    }
}

#[test]
fn sources_in_order_and_only_eligible_holders() {
    const R: &str = "titles/t1/v1";
    let down = |mut a: Appliance| {
        a.eligible = false;
        a
    };
    let no_url = |mut a: Appliance| {
        a.url = None;
        a
    };
    let me_embedded = embedded("me");
    let me_ixp = app("me", Tier::Ixp, "ix-ams", "eu");
    let cases: Vec<(&str, &Appliance, Vec<Appliance>, Vec<(&str, &str)>)> = vec![
        (
            "site peer, region peer of the tier, region IXP, origin",
            &me_embedded,
            vec![
                holding(app("ix", Tier::Ixp, "ix-ams", "eu"), &[R]),
                holding(app("region-peer", Tier::Embedded, "isp-b", "eu"), &[R]),
                holding(app("site-peer", Tier::Embedded, "isp-a", "eu"), &[R]),
            ],
            vec![
                ("site-peer", "peer"),
                ("region-peer", "peer"),
                ("ix", "parent"),
                ("origin", "origin"),
            ],
        ),
        (
            "an IXP in the same site is a peer, listed once",
            &me_embedded,
            vec![holding(app("ix", Tier::Ixp, "isp-a", "eu"), &[R])],
            vec![("ix", "peer"), ("origin", "origin")],
        ),
        (
            "down, draining, not holding, incomplete, unreachable and self are left out",
            &me_embedded,
            vec![
                down(holding(embedded("down"), &[R])),
                embedded("empty"),
                holding(embedded("other-rendition"), &["titles/t1/v2"]),
                no_url(holding(embedded("no-url"), &[R])),
                holding(embedded("me"), &[R]),
            ],
            vec![("origin", "origin")],
        ),
        (
            "other regions are neither peers nor parents",
            &me_embedded,
            vec![
                holding(app("us-peer", Tier::Embedded, "isp-c", "us"), &[R]),
                holding(app("us-ix", Tier::Ixp, "ix-nyc", "us"), &[R]),
            ],
            vec![("origin", "origin")],
        ),
        (
            "IXP: the region's IXPs are peers; no parents elsewhere; embedded only by site",
            &me_ixp,
            vec![
                holding(app("ix-2", Tier::Ixp, "ix-fra", "eu"), &[R]),
                holding(app("us-ix", Tier::Ixp, "ix-nyc", "us"), &[R]),
                holding(app("isp-box", Tier::Embedded, "isp-a", "eu"), &[R]),
                holding(app("colo-box", Tier::Embedded, "ix-ams", "eu"), &[R]),
            ],
            vec![("colo-box", "peer"), ("ix-2", "peer"), ("origin", "origin")],
        ),
    ];
    for (name, me, fleet, want) in cases {
        let p = run(me, &fleet, &[plain("t1")], &[]);
        let got: Vec<(&str, &str)> = p.items[0]
            .sources
            .iter()
            .map(|s| (s.id.as_str(), s.kind.as_str()))
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn source_urls_carry_the_token_and_no_origin_means_none() {
    const R: &str = "titles/t1/v1";
    let fleet = [holding(embedded("peer"), &[R])];
    let p = run(&embedded("me"), &fleet, &[plain("t1")], &[]);
    let urls: Vec<&str> = p.items[0]
        .sources
        .iter()
        .map(|s| s.base_url.as_str())
        .collect();
    assert_eq!(urls, ["http://peer:8080/t/TOK/", "http://origin/t/TOK/"]);
    let w = window();
    let me = embedded("me");
    let titles = [plain("t1")];
    let input = Input {
        appliance: &me,
        fleet: &fleet,
        titles: &titles,
        plays: &[],
        window: &w,
        origin_url: None,
        token: "TOK",
    };
    let p = plan(&input, NOW, &FillConfig::default());
    assert_eq!(p.items[0].sources.len(), 1);
    assert_eq!(p.items[0].sources[0].id, "peer");
}

#[test]
fn peers_of_a_group_are_spread_over_requesters_and_stable() {
    const R: &str = "titles/t1/v1";
    let fleet = [
        holding(app("p1", Tier::Embedded, "isp-b", "eu"), &[R]),
        holding(app("p2", Tier::Embedded, "isp-c", "eu"), &[R]),
    ];
    let mut firsts = HashSet::new();
    for i in 0..20 {
        let me = embedded(&format!("e{i}"));
        let first = |p: FillPlan| p.items[0].sources[0].id.clone();
        let a = first(run(&me, &fleet, &[plain("t1")], &[]));
        let b = first(run(&me, &fleet, &[plain("t1")], &[]));
        assert_eq!(a, b, "the same requester always sees the same order");
        firsts.insert(a);
    }
    assert_eq!(firsts.len(), 2, "both peers are someone's first choice");
}

#[test]
fn digest_covers_content_not_tokens_scores_or_times() {
    let fleet = [holding(embedded("peer"), &["titles/t1/v1"])];
    let titles = [plain("t1"), plain("t2")];
    let base = run(&embedded("me"), &fleet, &titles, &[]);
    let d = digest(&base);
    let same: Vec<(&str, FillPlan)> = vec![
        ("another token", {
            let mut p = base.clone();
            p.items[0].sources[0].base_url = "http://peer:8080/t/OTHER/".into();
            p
        }),
        ("another time and version", {
            let mut p = base.clone();
            (p.generated_at, p.expires, p.version) = (1, 2, 3);
            p
        }),
        ("other scores", {
            let mut p = base.clone();
            p.items[0].score = 42.0;
            p
        }),
    ];
    for (name, p) in same {
        assert_eq!(digest(&p), d, "{name}");
    }
    let different: Vec<(&str, FillPlan)> = vec![
        ("urgency", {
            let mut p = base.clone();
            p.items[0].urgent = true;
            p
        }),
        ("a source dropped", {
            let mut p = base.clone();
            p.items[0].sources.remove(0);
            p
        }),
        ("item order", {
            let mut p = base.clone();
            p.items.swap(0, 1);
            p
        }),
        ("an object's hash", {
            let mut p = base.clone();
            p.items[0].objects[0].sha256 = "00".repeat(32);
            p
        }),
        ("the window", {
            let mut p = base.clone();
            p.window.utc_offset_minutes = 60;
            p
        }),
        ("the budget", {
            let mut p = base.clone();
            p.budget_bytes = 7;
            p
        }),
    ];
    for (name, p) in different {
        assert_ne!(digest(&p), d, "{name}");
    }
}

fn appliance_config(window: Option<&str>, offset: &str) -> ApplianceConfig {
    ApplianceConfig {
        id: "a".into(),
        credential: "0123456789abcdef".into(),
        tier: Tier::Embedded,
        site: "s".into(),
        region: "eu".into(),
        asn: 0,
        http_url: None,
        https_url: None,
        admin_url: "http://x".into(),
        capacity_bps: 1,
        serves: vec![],
        location: None,
        fill_window: window.map(str::to_owned),
        utc_offset: offset.into(),
    }
}

#[test]
fn window_is_the_appliances_own_or_the_default_in_utc() {
    let cfg = FillConfig::default();
    let cases: Vec<(&str, Option<ApplianceConfig>, (&str, &str, i32))> = vec![
        ("not configured: default, UTC", None, ("02:00", "06:00", 0)),
        (
            "its own window and offset",
            Some(appliance_config(Some("23:30-05:00"), "+01:00")),
            ("23:30", "05:00", 60),
        ),
        (
            "offset only: the default window in its local time",
            Some(appliance_config(None, "-05:30")),
            ("02:00", "06:00", -330),
        ),
        (
            "spaces around the dash are tolerated",
            Some(appliance_config(Some("01:00 - 04:15"), "+00:00")),
            ("01:00", "04:15", 0),
        ),
    ];
    for (name, a, (start, end, offset)) in cases {
        let w = window_for(
            a.as_ref().and_then(|a| a.fill_window.as_deref()),
            a.as_ref().map(|a| a.utc_offset.as_str()),
            &cfg,
        )
        .unwrap();
        assert_eq!(
            (w.start.as_str(), w.end.as_str(), w.utc_offset_minutes),
            (start, end, offset),
            "{name}"
        );
    }
    let bad = appliance_config(Some("25:00-01:00"), "+00:00");
    assert!(window_for(bad.fill_window.as_deref(), Some(&bad.utc_offset), &cfg).is_err());
}

#[test]
fn windows_and_offsets_parse_strictly() {
    for (text, want) in [
        ("02:00-06:00", Some((120, 360))),
        ("22:00-02:00", Some((1320, 120))),
        ("00:00-23:59", Some((0, 1439))),
        ("2:00-06:00", None),
        ("24:00-01:00", None),
        ("02:60-03:00", None),
        ("02:00-02:00", None),
        ("02:00", None),
        ("02:00-06:00-07:00", None),
        ("+2:00-06:00", None),
        ("", None),
        ("ab:cd-ef:gh", None),
    ] {
        assert_eq!(parse_window(text).ok(), want, "{text:?}");
    }
    for (text, want) in [
        ("+00:00", Some(0)),
        ("-00:00", Some(0)),
        ("+05:45", Some(345)),
        ("-12:00", Some(-720)),
        ("+14:00", Some(840)),
        ("-12:30", None),
        ("+14:01", None),
        ("01:00", None),
        ("+1:00", None),
        ("Z", None),
        ("+", None),
        ("", None),
        ("-é:00", None),
    ] {
        assert_eq!(parse_utc_offset(text).ok(), want, "{text:?}");
    }
}
