use super::*;

const NOW: u64 = 1_000_000;

fn title(id: &str, bytes: u64) -> Title {
    Title {
        id: id.into(),
        regions: vec!["*".into()],
        release: None,
        bytes,
        bytes_per_play: bytes as f64,
    }
}

fn member(id: &str, budget: u64, holds: &[usize]) -> Member {
    Member {
        id: id.into(),
        budget,
        holds: holds.iter().copied().collect(),
    }
}

fn site(name: &str, weight: f64, members: Vec<Member>) -> Site {
    Site {
        name: name.into(),
        weight,
        members,
    }
}

fn ids<'a>(p: &Placement, titles: &'a [Title], who: &str) -> Vec<&'a str> {
    p[who].iter().map(|a| titles[a.title].id.as_str()).collect()
}

fn region<'a>(
    titles: &'a [Title],
    demand: &'a [f64],
    sites: &'a [Site],
    ixps: &'a [Member],
) -> Region<'a> {
    Region {
        name: "eu",
        titles,
        demand,
        sites,
        ixps,
        uncovered: 0.0,
    }
}

#[test]
fn the_head_goes_on_every_appliance_and_the_tail_is_split() {
    // Demand 50, 20, 10, 8, 6, 4, 2 (sum 100): the head (half of the bytes
    // served) is "a" alone.
    let titles: Vec<Title> = ["a", "b", "c", "d", "e", "f", "g"]
        .iter()
        .map(|id| title(id, 10))
        .collect();
    let demand = [50.0, 20.0, 10.0, 8.0, 6.0, 4.0, 2.0];
    // Two appliances of 40 and 30 bytes: seven titles, a on both, so six
    // distinct.
    let sites = [site(
        "s",
        1.0,
        vec![member("x", 40, &[]), member("y", 30, &[])],
    )];
    let p = by_forecast(
        &region(&titles, &demand, &sites, &[]),
        NOW,
        &Rules::default(),
    );
    let (x, y) = (ids(&p, &titles, "x"), ids(&p, &titles, "y"));
    assert!(x.contains(&"a") && y.contains(&"a"));
    let mut all: Vec<&str> = x.iter().chain(&y).copied().collect();
    all.sort();
    // a twice, then the best six of the rest once each: g (the least wanted)
    // does not fit.
    assert_eq!(all, ["a", "a", "b", "c", "d", "e", "f"]);
    assert_eq!(x.len(), 4);
    assert_eq!(y.len(), 3);
}

#[test]
fn a_title_stays_where_it_is_when_there_is_a_choice() {
    let titles: Vec<Title> = ["a", "b", "c"].iter().map(|id| title(id, 10)).collect();
    let demand = [10.0, 9.0, 8.0];
    let rules = Rules {
        head_share: 0.0,
        ..Rules::default()
    };
    for holder in ["x", "y"] {
        let (hx, hy): (&[usize], &[usize]) = if holder == "x" {
            (&[1], &[])
        } else {
            (&[], &[1])
        };
        let sites = [site(
            "s",
            1.0,
            vec![member("x", 100, hx), member("y", 100, hy)],
        )];
        let p = by_forecast(&region(&titles, &demand, &sites, &[]), NOW, &rules);
        assert!(
            ids(&p, &titles, holder).contains(&"b"),
            "b stays on {holder}"
        );
    }
}

#[test]
fn bytes_per_byte_of_disk_rank_not_plays() {
    // "big" has twice the plays of "small" but takes ten times the disk.
    let mut titles = vec![title("big", 100), title("small", 10)];
    for t in &mut titles {
        t.bytes_per_play = 5.0;
    }
    let demand = [2.0, 1.0];
    let rules = Rules {
        head_share: 0.0,
        ..Rules::default()
    };
    let sites = [site("s", 1.0, vec![member("x", 100, &[])])];
    let p = by_forecast(&region(&titles, &demand, &sites, &[]), NOW, &rules);
    // small first; big no longer fits in what is left.
    assert_eq!(ids(&p, &titles, "x"), ["small"]);
}

#[test]
fn ixps_take_what_sites_leave_and_keep_the_head() {
    let titles: Vec<Title> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| title(id, 10))
        .collect();
    let demand = [100.0, 10.0, 9.0, 8.0];
    // The site holds two titles: a (head) and b.
    let sites = [site("s", 0.8, vec![member("x", 20, &[])])];
    let ixps = [member("ixp", 20, &[])];
    let mut r = region(&titles, &demand, &sites, &ixps);
    r.uncovered = 0.2;
    let p = by_forecast(&r, NOW, &Rules::default());
    assert_eq!(ids(&p, &titles, "x"), ["a", "b"]);
    // IXP values: a 100 × (0.2 + 0.8 × 0.1) = 28, b 10 × 0.28 = 2.8,
    // c 9 × 1.0 = 9, d 8 × 1.0 = 8: a, then c (the tail the site left).
    assert_eq!(ids(&p, &titles, "ixp"), ["a", "c"]);
    let value = |t: &str| {
        p["ixp"]
            .iter()
            .find(|a| titles[a.title].id == t)
            .map(|a| a.value)
    };
    assert!((value("a").unwrap() - 28.0 * 10.0).abs() < 1e-9);
}

#[test]
fn launches_go_wide_and_embedded_fetches_are_staggered() {
    let mut titles: Vec<Title> = ["old", "new", "late", "far"]
        .iter()
        .map(|id| title(id, 10))
        .collect();
    titles[1].release = Some(NOW + 12 * 3600);
    titles[2].release = Some(NOW + 3600);
    titles[3].release = Some(NOW + 5 * 86_400);
    let demand = [100.0, 1.0, 1.0, 1000.0];
    let rules = Rules {
        head_share: 0.0,
        ..Rules::default()
    };
    let members: Vec<Member> = (0..8).map(|i| member(&format!("e{i}"), 0, &[])).collect();
    let sites = [site("s", 1.0, members)];
    let ixps = [member("ixp", 0, &[])];
    let p = by_forecast(&region(&titles, &demand, &sites, &ixps), NOW, &rules);
    let mut starts = HashSet::new();
    for i in 0..8 {
        let list = &p[&format!("e{i}")];
        let get = |t: &str| list.iter().find(|a| titles[a.title].id == t);
        let new = get("new").expect("a launch is on every appliance");
        assert!(new.launch);
        let at = new.not_before.expect("staggered: twelve hours to go");
        assert!(at > NOW && at < NOW + rules.stagger);
        starts.insert(at);
        // An hour to go is too late to wait.
        assert_eq!(get("late").expect("on every appliance").not_before, None);
        assert!(get("far").is_none(), "beyond the horizon");
    }
    assert!(starts.len() > 4, "spread: {starts:?}");
    // Launches are fetched first, soonest first.
    let first: Vec<&str> = p["e0"][..2]
        .iter()
        .map(|a| titles[a.title].id.as_str())
        .collect();
    assert_eq!(first, ["late", "new"]);
    let ixp = &p["ixp"];
    assert!(
        ixp.iter().all(|a| a.not_before.is_none()),
        "parents at once"
    );
    assert!(ixp.iter().any(|a| titles[a.title].id == "new"));
}

#[test]
fn unknown_budgets_hold_everything_wanted_first_and_titles_elsewhere_are_left_out() {
    let mut titles: Vec<Title> = ["a", "b", "c"].iter().map(|id| title(id, 10)).collect();
    titles[2].regions = vec!["us".into()];
    let demand = [1.0, 0.0, 1.0];
    let sites = [site("s", 1.0, vec![member("x", 0, &[])])];
    let p = by_forecast(
        &region(&titles, &demand, &sites, &[]),
        NOW,
        &Rules::default(),
    );
    // c may not be played in this region; b, with no demand at all, comes
    // after a, as there is room.
    assert_eq!(ids(&p, &titles, "x"), ["a", "b"]);
}

#[test]
fn the_popularity_policy_is_launches_first_then_plays_cut_at_the_disk() {
    let mut titles: Vec<Title> = ["a", "b", "c", "l"]
        .iter()
        .map(|id| title(id, 10))
        .collect();
    titles[3].release = Some(NOW + 3600);
    let scores = HashMap::from([("a", 1.0), ("b", 3.0), ("c", 2.0)]);
    let ranked = popularity_rank(
        &titles,
        "eu",
        |id| scores.get(id).copied().unwrap_or(0.0),
        NOW,
        86_400,
    );
    let order: Vec<&str> = ranked.iter().map(|a| titles[a.title].id.as_str()).collect();
    assert_eq!(order, ["l", "b", "c", "a"]);
    assert!(ranked[0].launch && ranked[0].value > 3.0);
    let kept = by_popularity(ranked, &titles, 25);
    assert_eq!(kept.len(), 2);
}

#[test]
fn a_held_title_yields_only_to_one_clearly_better() {
    let titles: Vec<Title> = ["held", "new"].iter().map(|id| title(id, 10)).collect();
    let rules = Rules {
        head_share: 0.0,
        ..Rules::default()
    };
    let sites = [site("s", 1.0, vec![member("x", 10, &[0])])];
    // Worth 1.4× the held one: not enough to refill the disk for.
    let demand = [10.0, 14.0];
    let p = by_forecast(&region(&titles, &demand, &sites, &[]), NOW, &rules);
    assert_eq!(ids(&p, &titles, "x"), ["held"]);
    // Worth 1.6×: it is.
    let demand = [10.0, 16.0];
    let p = by_forecast(&region(&titles, &demand, &sites, &[]), NOW, &rules);
    assert_eq!(ids(&p, &titles, "x"), ["new"]);
}
