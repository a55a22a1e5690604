use super::*;

const NOW: u64 = 1_800_000_000;

fn key(id: &str, not_before: u64, not_after: u64) -> KeyWire {
    KeyWire {
        id: id.into(),
        secret: "s".into(),
        not_before: Some(not_before),
        not_after: Some(not_after),
    }
}

fn limits() -> Limits {
    Limits::from_config(&Config::default())
}

/// A steering that should get traffic: every check ok.
struct Healthy {
    at: Instant,
    keys: Vec<KeyWire>,
    breakers: Vec<(&'static str, &'static str)>,
}

impl Healthy {
    fn new() -> Healthy {
        Healthy {
            at: Instant::now(),
            keys: vec![key("k1", NOW - 3600, NOW + 2 * 86_400)],
            breakers: vec![("bookmarks", "closed"), ("recommendations", "closed")],
        }
    }

    fn inputs(&self) -> Inputs<'_> {
        Inputs {
            store: Ok(()),
            store_shared: false,
            snapshot_built: self.at,
            poller_ticked: self.at,
            keys: &self.keys,
            newest_key_created: Some(NOW - 3600),
            breakers: &self.breakers,
        }
    }
}

fn states(r: &Report) -> Vec<(&'static str, Status)> {
    r.checks.iter().map(|(n, c)| (*n, c.state)).collect()
}

#[test]
fn all_good_is_200_and_names_every_check() {
    let h = Healthy::new();
    let r = assess(
        &h.inputs(),
        &limits(),
        h.at + Duration::from_millis(300),
        NOW,
    );
    assert_eq!(r.status, Status::Ok);
    assert_eq!(r.http_status(), StatusCode::OK);
    let names: Vec<&str> = r.checks.keys().copied().collect();
    assert_eq!(
        names,
        [
            "bookmarks",
            "keys",
            "poller",
            "recommendations",
            "snapshot",
            "store"
        ]
    );
    let body = serde_json::to_value(&r).unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"]["store"]["state"], "ok");
}

#[test]
fn a_shared_store_down_degrades_instead_of_failing() {
    let h = Healthy::new();
    let mut i = h.inputs();
    i.store = Err("connection refused".into());
    i.store_shared = true;
    let r = assess(&i, &limits(), h.at, NOW);
    assert_eq!(r.status, Status::Degraded);
    assert_eq!(r.http_status(), axum::http::StatusCode::OK);
    assert!(r.checks["store"].detail.contains("from memory"));
}

#[test]
fn each_failure_is_503_naming_the_check() {
    let h = Healthy::new();
    let l = limits();
    let late = h.at + l.snapshot_age.max(l.poller_age) + Duration::from_secs(1);
    type Mutate = Box<dyn Fn(&mut Inputs<'_>, &mut Instant)>;
    let cases: Vec<(&str, Mutate)> = vec![
        (
            "store",
            Box::new(|i: &mut Inputs<'_>, _: &mut Instant| {
                i.store = Err("attempt to write a readonly database".into())
            }),
        ),
        (
            "snapshot",
            Box::new(move |i: &mut Inputs<'_>, now: &mut Instant| {
                *now = late;
                i.poller_ticked = late;
            }),
        ),
        (
            "poller",
            Box::new(move |i: &mut Inputs<'_>, now: &mut Instant| {
                *now = late;
                i.snapshot_built = late;
            }),
        ),
        (
            "keys",
            Box::new(|i: &mut Inputs<'_>, _: &mut Instant| i.keys = &[]),
        ),
    ];
    for (name, mutate) in cases {
        let mut inputs = h.inputs();
        let mut now = h.at;
        mutate(&mut inputs, &mut now);
        let r = assess(&inputs, &l, now, NOW);
        assert_eq!(r.http_status(), StatusCode::SERVICE_UNAVAILABLE, "{name}");
        let failed: Vec<&str> = r
            .checks
            .iter()
            .filter(|(_, c)| c.state == Status::Failed)
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(failed, [name], "{:?}", states(&r));
    }
}

#[test]
fn ages_at_the_limit_pass_and_just_over_fail() {
    let h = Healthy::new();
    let l = limits();
    let at_limit = assess(&h.inputs(), &l, h.at + l.snapshot_age, NOW);
    assert_eq!(at_limit.checks["snapshot"].state, Status::Ok);
    let over = assess(
        &h.inputs(),
        &l,
        h.at + l.snapshot_age + Duration::from_millis(1),
        NOW,
    );
    assert_eq!(over.checks["snapshot"].state, Status::Failed);
    // A clock that went backwards is not an age.
    let earlier = Inputs {
        snapshot_built: h.at + Duration::from_secs(5),
        ..h.inputs()
    };
    assert_eq!(
        assess(&earlier, &l, h.at, NOW).checks["snapshot"].state,
        Status::Ok
    );
}

#[test]
fn key_schedule() {
    let h = Healthy::new();
    let l = limits();
    let ahead = l.publish_ahead;
    let run = |keys: &[KeyWire], newest: Option<u64>| {
        let inputs = Inputs {
            keys,
            newest_key_created: newest,
            ..h.inputs()
        };
        assess(&inputs, &l, h.at, NOW).checks["keys"].state
    };
    // Only expired or not-yet-valid keys: nothing can sign now.
    assert_eq!(run(&[key("k0", NOW - 100, NOW)], None), Status::Failed);
    assert_eq!(run(&[key("k2", NOW + 1, NOW + 100)], None), Status::Failed);
    // Live now but gone before the next one is due to be published.
    assert_eq!(
        run(&[key("k1", NOW - 100, NOW + ahead)], Some(NOW - 100)),
        Status::Degraded
    );
    // The current key plus its published successor.
    assert_eq!(
        run(
            &[
                key("k1", NOW - 100, NOW + ahead),
                key("k2", NOW + 10, NOW + 86_400)
            ],
            Some(NOW - 50)
        ),
        Status::Ok
    );
    // Rotation stalled: the newest key is older than the schedule allows.
    let stalled = NOW - l.rotate_every - 2 * l.key_check_every - 1;
    assert_eq!(
        run(&[key("k1", stalled, NOW + 86_400)], Some(stalled)),
        Status::Degraded
    );
    assert_eq!(
        run(&[key("k1", stalled + 1, NOW + 86_400)], Some(stalled + 1)),
        Status::Ok
    );
    // Keys without bounds are always live.
    let open = KeyWire {
        id: "k".into(),
        secret: "s".into(),
        not_before: None,
        not_after: None,
    };
    assert_eq!(run(&[open], None), Status::Ok);
}

#[test]
fn an_open_breaker_degrades_but_keeps_serving() {
    let mut h = Healthy::new();
    h.breakers = vec![("bookmarks", "open"), ("recommendations", "half-open")];
    let r = assess(&h.inputs(), &limits(), h.at, NOW);
    assert_eq!(r.status, Status::Degraded);
    assert_eq!(r.http_status(), StatusCode::OK);
    assert_eq!(r.checks["bookmarks"].state, Status::Degraded);
    assert_eq!(r.checks["recommendations"].state, Status::Degraded);
    assert_eq!(r.checks["store"].state, Status::Ok);
    // Degraded and failed together: failed wins.
    let inputs = Inputs {
        store: Err("gone".into()),
        ..h.inputs()
    };
    let r = assess(&inputs, &limits(), h.at, NOW);
    assert_eq!(
        (r.status, r.http_status()),
        (Status::Failed, StatusCode::SERVICE_UNAVAILABLE)
    );
}
