use super::*;

/// A play in region `eu`.
pub(crate) fn ev(profile: &str, title: &str, at: u64) -> Event {
    Event {
        profile: profile.into(),
        region: "eu".into(),
        title: title.into(),
        at,
    }
}

/// Two tastes: `a-…` profiles watch a1–a5, `b-…` profiles b1–b5, each
/// skipping one title so the model has something to predict.
fn two_tastes() -> Vec<Event> {
    let mut out = Vec::new();
    for p in 0..20u64 {
        for (taste, skip) in [("a", p % 5), ("b", (p + 2) % 5)] {
            for k in 0..5u64 {
                if k != skip {
                    out.push(ev(
                        &format!("{taste}-{p}"),
                        &format!("{taste}{}", k + 1),
                        p * 10 + k,
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn histories_are_distinct_most_recent_first_and_capped() {
    let e = [
        ev("p", "x", 1),
        ev("p", "y", 2),
        ev("p", "x", 3),
        ev("p", "z", 4),
    ];
    let h = histories(&e, 2);
    assert_eq!(h["p"], ["z", "x"]);
}

#[test]
fn cowatched_titles_rank_by_shared_profiles() {
    let e = [
        ev("A", "x", 1),
        ev("A", "y", 2),
        ev("B", "x", 1),
        ev("B", "y", 2),
        ev("C", "x", 1),
        ev("C", "z", 2),
    ];
    let m = train(&e, 100, &Params::default());
    let sims: Vec<&str> = m.similar("x").map(|(t, _)| t).collect();
    assert_eq!(sims, ["y", "z"]);
    let (y, z) = (
        m.similar("x").next().unwrap().1,
        m.similar("x").nth(1).unwrap().1,
    );
    // cos(x,y) = 2/sqrt(3*2), shrunk by 2/(2+3); cos(x,z) = 1/sqrt(3*1), by 1/4.
    assert!((y - 2.0 / 6f32.sqrt() * 0.4).abs() < 1e-6, "{y}");
    assert!((z - 1.0 / 3f32.sqrt() * 0.25).abs() < 1e-6, "{z}");
    assert_eq!(m.similar("nothing").count(), 0);
}

#[test]
fn training_is_deterministic_and_versioned_by_its_input() {
    let e = two_tastes();
    let (m1, m2) = (
        train(&e, 7, &Params::default()),
        train(&e, 7, &Params::default()),
    );
    assert_eq!(m1.version, m2.version);
    assert!(m1.version.starts_with("m7-"));
    let h = ["a1", "a2"];
    let c = ["b3", "a3", "b4", "a4"];
    assert_eq!(m1.rank("a-0", &h, &c, &[]), m2.rank("a-0", &h, &c, &[]));
    let mut more = e.clone();
    more.push(ev("new", "a1", 999));
    assert_ne!(train(&more, 7, &Params::default()).version, m1.version);
}

#[test]
fn a_profile_gets_its_own_taste_first_known_or_new() {
    let m = train(&two_tastes(), 1000, &Params::default());
    // a-0 skipped a1; b-0 skipped b3.
    for (profile, history, want, other) in [
        ("a-0", vec!["a5", "a4", "a3", "a2"], "a1", 'b'),
        ("b-0", vec!["b5", "b4", "b2", "b1"], "b3", 'a'),
        // Not in the model: folded in from what it watched.
        ("newcomer", vec!["b1"], "b2", 'a'),
    ] {
        // Everything equally popular: the profile's own taste decides.
        let input = RowsInput {
            profile,
            history: &history,
            trending: &[],
            new_releases: &[],
            allowed: &|_| true,
            per_row: 4,
        };
        let got = rows(&m, &input);
        let picks = &got[0];
        assert_eq!(picks.kind, "top-picks");
        assert_eq!(picks.items[0], want, "{profile}: {got:?}");
        let first_other = picks.items.iter().position(|t| t.starts_with(other));
        let last_own = picks
            .items
            .iter()
            .rposition(|t| !t.starts_with(other))
            .unwrap();
        assert!(
            first_other.is_none_or(|o| o > last_own),
            "{profile}: {picks:?}"
        );
        assert!(picks.items.iter().all(|t| !history.contains(&t.as_str())));
        // With the region's popularity against it, its taste still comes first.
        let trending = ["a2", "b2", "a1", "b1", "a3", "b3", "a4", "b4", "a5", "b5"];
        let input = RowsInput {
            trending: &trending,
            ..input
        };
        assert_eq!(rows(&m, &input)[0].items[0], want, "{profile}");
    }
}

#[test]
fn rows_leave_out_what_was_watched_or_may_not_be_watched() {
    let m = train(&two_tastes(), 1000, &Params::default());
    let history = ["a2", "a1"];
    let trending = ["a1", "b1", "a3", "b2"];
    let new = ["n1", "a4"];
    let input = RowsInput {
        profile: "a-9",
        history: &history,
        trending: &trending,
        new_releases: &new,
        allowed: &|t| t != "a3",
        per_row: 10,
    };
    let rows = rows(&m, &input);
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "top-picks",
            "because-you-watched",
            "trending",
            "new-releases"
        ]
    );
    assert_eq!(rows[1].because.as_deref(), Some("a2"), "the most recent");
    for r in &rows {
        assert!(
            r.items.iter().all(|t| t != "a1" && t != "a2" && t != "a3"),
            "{r:?}"
        );
    }
    assert_eq!(rows[2].items, ["b1", "b2"]);
    assert_eq!(rows[3].items, ["n1", "a4"]);
    // No history: only the region's rows.
    let input = RowsInput {
        history: &[],
        ..input
    };
    let kinds: Vec<String> = rows_for(&m, &input);
    assert_eq!(kinds, ["trending", "new-releases"]);
}

fn rows_for(m: &Model, input: &RowsInput<'_>) -> Vec<String> {
    rows(m, input).into_iter().map(|r| r.kind).collect()
}

#[test]
fn trending_decays_with_age() {
    let e = [
        Event {
            region: "us".into(),
            ..ev("p", "old", 0)
        },
        ev("p", "old", 0),
        ev("p", "old", 0),
        ev("q", "new", 86_400),
        ev("r", "new", 86_400),
    ];
    // Two plays a day old weigh 1 against two fresh ones at a one-day half-life.
    assert_eq!(trending(&e, "eu", 86_400, 86_400.0), ["new", "old"]);
    assert_eq!(trending(&e, "us", 86_400, 86_400.0), ["old"]);
}
